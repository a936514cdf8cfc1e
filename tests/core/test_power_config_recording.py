"""DeviceManager.configure_power keeps a recording of the power stream whole, whoever calls it: a new rate or
supply voltage starts a new power stream (one rate and one voltage per stream: energy = charge × voltage), so
it is refused while that stream is recorded (the rule was the Power panel's alone: another caller ended the
recording silently)."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.devices import DeviceError, DeviceInfo
from app.core.recording import StreamRecorder

KEY = "powershield:test"


@pytest.fixture()
def rig(offline_ctx, monkeypatch):
    """(context, device manager, the configs sent to the LPM01A's session thread)."""
    dm = offline_ctx.devices
    session = dm._make(DeviceInfo(KEY, "powershield", "socket://127.0.0.1:9", "LPM01A test"))  # noqa: SLF001
    dm._sessions[KEY] = session  # noqa: SLF001 - a monitor that is never opened
    sent: list[tuple] = []
    monkeypatch.setattr(session, "submit", lambda *a: sent.append(a))
    return offline_ctx, dm, sent


def test_a_new_voltage_is_a_new_stream(rig):
    _, dm, _ = rig
    first = dm.ensure_power_stream(1000, 3.3)
    first.append(np.full((500, 1), 2e-3, np.float32))
    assert dm.ensure_power_stream(1000, 3.3) is first  # a restart at the same settings: the same stream
    second = dm.ensure_power_stream(1000, 1.8)
    assert second is not first and dm.voltage == 1.8 and dm.power_stream is second
    assert second.duration == first.duration == 0.5  # the timeline goes on ...
    assert first.stats(0, 0.5).n == 500 and second.stats(0, 0.5).n == 0  # ... without a sample taken at 3.3 V
    trace = dm.power_trace()  # what a training round measures its batches with
    assert trace.stream is second and trace.voltage == 1.8


def test_configure_power_is_refused_while_the_power_stream_is_recorded(rig):
    ctx, dm, sent = rig
    stream = dm.ensure_power_stream(100_000, 3.3)
    stream.append(np.full((1000, 1), 1e-3, np.float32))
    other = dm.ensure_accel_stream(104.0)  # a recording of another stream does not count
    accel = StreamRecorder(ctx.store, other, "accel", "labelling")
    rec = StreamRecorder(ctx.store, stream, "power", "bench run", voltage=3.3)
    try:
        with pytest.raises(DeviceError) as e:
            dm.configure_power(KEY, 10_000, 3.3)
        assert str(e.value) == (
            "The sampling rate stays 100 kS/s while recording (a recording has one rate): "
            "stop the recording first, then change the rate"
        )
        with pytest.raises(DeviceError) as e:
            dm.configure_power(KEY, 100_000, 1.8)
        assert str(e.value) == (
            "The supply voltage stays 3.3 V while recording (a recording has one supply voltage): "
            "stop the recording first, then change the voltage"
        )
        with pytest.raises(DeviceError) as e:
            dm.configure_power(KEY, None, 1.8)  # the rate it has (what the Power panel sends when it opens)
        assert str(e.value).startswith("The supply voltage stays 3.3 V while recording")
        dm.configure_power(KEY, 100_000, 3.3)  # the same settings (Stream again): the stream goes on
        dm.configure_power(KEY, None, 3.3)
        assert sent == [("config", 100_000, 3.3), ("config", None, 3.3)]
    finally:
        rec.stop()
    dm.configure_power(KEY, 10_000, 1.8)  # the recording stopped: applied
    assert sent[-1] == ("config", 10_000, 1.8)
    accel.stop()
    assert dm.power_stream is stream


def test_a_config_without_a_rate_keeps_the_monitors_rate(rig):
    _, dm, _ = rig
    session = dm._session(KEY)  # noqa: SLF001
    session._cmd_config(10_000, 3.3)  # noqa: SLF001 - what the session thread runs (not streaming)
    session._cmd_config(None, 2.05)  # noqa: SLF001
    assert (session.rate_hz, session.voltage) == (10_000, 2.05)
    assert dm.status(KEY).details == {"rate_hz": 10_000, "voltage": 2.05}


def test_a_config_of_the_settings_it_has_keeps_a_stream_going(rig, monkeypatch):
    """The Power panel applies the remembered voltage when it opens; the shield may already stream (the app
    connects the virtual bench first): the same settings must not stop and restart the acquisition."""
    from app.core.devices import DeviceState

    _, dm, _ = rig
    session = dm._session(KEY)  # noqa: SLF001
    calls: list[str] = []
    monkeypatch.setattr(session, "stop_stream", lambda: calls.append("stop"))
    monkeypatch.setattr(session, "start_stream", lambda: calls.append("start"))
    session.state = DeviceState.STREAMING
    session._cmd_config(None, 3.3)  # noqa: SLF001 - the default rate, 3.3 V: what it has
    session._cmd_config(int(session.rate_hz), 3.3)  # noqa: SLF001
    assert calls == []
    session._cmd_config(None, 1.8)  # noqa: SLF001
    assert calls == ["stop", "start"] and session.voltage == 1.8


def test_the_voltage_range_is_the_monitor_classs(rig, monkeypatch):
    from device.monitor import monitor_class
    from tests.boardkit import add_other_monitor

    _, dm, _ = rig
    lo, hi = monitor_class("powershield").voltage_range
    got = dm.power_voltage_range(KEY)
    assert got == (1.8, 3.3) == (lo, hi) and all(type(v) is float for v in got)
    assert dm.power_voltage_range() == got  # the first power monitor
    other = add_other_monitor(dm, monkeypatch)
    assert dm.power_voltage_range(other) == (1.0, 5.0) and dm.power_voltage_range(KEY) == (1.8, 3.3)


def test_configure_power_is_refused_while_a_training_round_measures_on_the_stream(rig):
    """Was (helper T's note): a rate or voltage change during a round replaced the stream the round's
    PowerTrace holds; its later batches got no energy, without a word."""
    from app.core.devices import DeviceState

    ctx, dm, sent = rig
    stream = dm.ensure_power_stream(100_000, 3.3)
    board = dm._make(DeviceInfo("board:test", "board", "socket://127.0.0.1:9", "NUCLEO {test}", True))  # noqa: SLF001
    dm._sessions["board:test"] = board  # noqa: SLF001
    board.state = DeviceState.READY
    dm.configure_power(KEY, 100_000, 3.3)  # no round: applied
    board.state = DeviceState.TRAINING
    with pytest.raises(DeviceError) as e:
        dm.configure_power(KEY, 10_000, 3.3)
    assert str(e.value) == (
        "The sampling rate stays 100 kS/s while a training round runs on NUCLEO {test} (its batches are measured at "
        "one rate): wait for the round to end, then change the rate"
    )
    with pytest.raises(DeviceError) as e:
        dm.configure_power(KEY, None, 1.8)
    assert str(e.value) == (
        "The supply voltage stays 3.3 V while a training round runs on NUCLEO {test} (its batches are measured at "
        "one supply voltage): wait for the round to end, then change the voltage"
    )
    dm.configure_power(KEY, 100_000, 3.3)  # the settings it has: nothing changes
    rec = StreamRecorder(ctx.store, stream, "power", "bench run", voltage=3.3)
    try:  # recording during a round: the recording's words (Stop is what the user can do now)
        with pytest.raises(DeviceError) as e:
            dm.configure_power(KEY, 10_000, 3.3)
        assert str(e.value).endswith(
            "while recording (a recording has one rate): stop the recording first, then change the rate"
        )
    finally:
        rec.stop()
    board.state = DeviceState.READY
    dm.configure_power(KEY, 10_000, 1.8)
    assert sent == [("config", 100_000, 3.3), ("config", 100_000, 3.3), ("config", 10_000, 1.8)]


def test_a_monitor_found_later_starts_at_the_voltage_last_set(rig, tmp_path, monkeypatch):
    """Was (helper T's note): a power monitor plugged in after the window opened supplied 3.3 V, whatever the
    Power panel had set, until its ▶ Stream; a round started from the Training panel measured at 3.3 V."""
    from app.core.context import AppContext
    from tests.boardkit import add_other_monitor

    _, dm, _ = rig
    assert dm.power_voltage_default == 3.3
    dm.configure_power(KEY, None, 1.8)
    assert dm.power_voltage_default == 1.8
    late = dm._make(DeviceInfo("powershield:late", "powershield", "socket://127.0.0.1:9", "LPM01A late"))  # noqa: SLF001
    assert (late.voltage, late.rate_hz) == (1.8, 100_000)
    dm.power_voltage_default = 0.9  # (a value this monitor cannot supply: brought into its range, as the panel's box)
    assert dm._make(late.info).voltage == 1.8  # noqa: SLF001
    dm.power_voltage_default = 3.6
    assert dm._make(late.info).voltage == 3.3  # noqa: SLF001
    dm.power_voltage_default = 4.5
    assert dm._session(add_other_monitor(dm, monkeypatch)).voltage == 4.5  # noqa: SLF001 - (1.0..5.0 V)
    # the rate, likewise (was: the monitor's default, 100 kS/s, whatever the Power panel's box said)
    assert dm.power_rate_default == 100_000  # (the context's: the setting's default)
    dm.configure_power(KEY, 10_000, 1.8)
    assert dm.power_rate_default == 10_000 and type(dm.power_rate_default) is int
    dm.configure_power(KEY, None, 1.8)  # (None: the rate it has; the one last asked for stays)
    assert dm.power_rate_default == 10_000
    assert dm._make(late.info).rate_hz == 10_000  # noqa: SLF001
    other = dm._session(add_other_monitor(dm, monkeypatch, "other-pm:2"))  # noqa: SLF001
    assert other.rate_hz == 500  # (20 or 500 Hz: its own default)
    dm.power_rate_default = 20
    assert dm._session(add_other_monitor(dm, monkeypatch, "other-pm:3")).rate_hz == 20  # noqa: SLF001

    ctx = AppContext.create(tmp_path / "app", bench=False, discover=False)
    try:
        assert ctx.devices.power_voltage_default == 3.3
        ctx.settings["power.voltage"] = 2.5
    finally:
        ctx.close()
    ctx = AppContext.create(tmp_path / "app", bench=False, discover=False)  # the next start: remembered
    try:
        assert ctx.devices.power_voltage_default == 2.5
    finally:
        ctx.close()
