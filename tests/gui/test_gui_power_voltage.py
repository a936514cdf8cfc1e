"""The Power panel's supply voltage, its refusals and its view: the LPM01A's supply (1.8..3.3 V) set from the
toolbar and used for every energy shown; a rate or voltage change refused by the core while recording (the
panel says the core's words); the Window box shows the
span of a zoom."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from app.ui.panels.power import si
from tests.boardkit import OtherMonitor, add_other_monitor
from tests.gui.test_gui_power_first_hour import _streaming, said  # noqa: F401 - the fixture

pytestmark = pytest.mark.gui


def _window_energy(panel, stream, t0: float, t1: float) -> tuple[str, str, float]:
    """(charge, energy) as the Visible window box shows them over [t0, t1], and the charge there (C)."""
    panel.follow.setChecked(False)
    panel.plot.setXRange(t0, t1, padding=0)
    panel._last_stats = 0.0  # noqa: SLF001 - statistics now, not at the next 5 Hz turn
    panel.tick()
    labels = panel.stat_labels["window"]
    return labels["charge"].text(), labels["energy"].text(), stream.stats(t0, t1).integral


def test_the_supply_voltage_is_set_in_the_toolbar_and_every_energy_uses_it(said, qtbot):  # noqa: F811
    """Was: no control; the panel always sent 3.3 V.  A new voltage is a new stream: the samples measured at
    3.3 V are never counted at 1.8 V."""
    _, panel, texts = said
    ctx, dm = panel.ctx, panel.ctx.devices
    assert (panel.volt.minimum(), panel.volt.maximum(), panel.volt.singleStep()) == (1.8, 3.3, 0.05)
    assert panel.volt.value() == 3.3 and panel.volt.suffix() == " V"
    assert "the board's current, and so the energy" in panel.volt.toolTip()
    panel.show_what.setCurrentIndex(1)  # Power: current × the supply voltage
    assert panel.plot.scale == 3.3
    old = _streaming(panel, qtbot)
    d = old.duration
    charge, energy, q = _window_energy(panel, old, d - 0.8, d - 0.3)
    assert (charge, energy) == (si(q, "C"), si(q * 3.3, "J"))
    panel.volt.setValue(1.8)  # what a step down or typing 1.8 + Enter does
    assert texts[-1] == (
        "Supply voltage 1.8 V: the live stream starts again at this voltage; the samples streamed at 3.3 V are "
        "no longer shown (● Record keeps a session in a file)"
    )
    assert ctx.settings["power.voltage"] == 1.8
    qtbot.waitUntil(lambda: dm.power_stream is not old and dm.power_stream.duration > d + 1.0, timeout=30_000)
    new = dm.power_stream
    assert dm.voltage == panel.voltage == 1.8 and new.rate_hz == old.rate_hz
    assert dm.status(panel.shield().info.key).details["voltage"] == 1.8
    assert dm.power_trace().voltage == 1.8  # a training round's batch energies
    # the range streamed at 3.3 V: no sample of the new stream, so no energy at 1.8 V
    assert _window_energy(panel, new, d - 0.8, d - 0.3)[:2] == ("—", "—")
    e = new.duration
    charge, energy, q = _window_energy(panel, new, e - 0.8, e - 0.3)
    assert q > 0 and (charge, energy) == (si(q, "C"), si(q * 1.8, "J"))
    a, b = panel.add_marker(e - 0.8, "a"), panel.add_marker(e - 0.3, "b")
    joules, st = panel.energy_between(a, b)
    assert joules == st.integral * 1.8 and st.integral == q
    assert panel.plot.scale == 1.8  # the plot's power too


@pytest.mark.parametrize(("saved", "supplied"), [(2.0, 2.0), (1.0, 1.8), (5.0, 3.3)])
def test_the_remembered_voltage_is_applied_before_anything_streams(tmp_path, qtbot, saved, supplied):
    """A training round (or the Devices panel) may start the LPM01A's stream before the Power panel is opened:
    the monitor supplies the voltage the box shows (a hand-edited one out of range: brought into it, as the
    box does), not the session's 3.3 V."""
    from app.core.context import AppContext
    from app.ui.panels.power import PowerPanel

    earlier = AppContext.create(tmp_path, bench=False, discover=False)  # an earlier run of the app
    earlier.settings["power.voltage"] = saved
    earlier.close()
    ctx = AppContext.create(tmp_path, bench=True)
    try:
        key = ctx.devices.first("powershield").info.key
        ctx.devices.connect(key)  # and stream, not through the panel
        ctx.devices.set_streaming(key, True)
        qtbot.waitUntil(lambda: ctx.devices.power_stream is not None, timeout=10_000)
        assert ctx.devices.voltage == supplied and ctx.devices.status(key).details["voltage"] == supplied
        panel = PowerPanel(ctx)
        qtbot.addWidget(panel)
        assert panel.volt.value() == supplied
    finally:
        ctx.close()


def test_the_voltage_range_is_the_monitors_own(offline_ctx, monkeypatch, qtbot):
    from app.ui.panels.power import PowerPanel

    add_other_monitor(offline_ctx.devices, monkeypatch)
    panel = PowerPanel(offline_ctx)
    qtbot.addWidget(panel)
    assert (panel.volt.minimum(), panel.volt.maximum()) == OtherMonitor.voltage_range == (1.0, 5.0)


def test_rate_and_voltage_changes_are_refused_by_the_core_while_recording(said, qtbot):  # noqa: F811
    """The rule was the panel's alone: any other caller of configure_power ended a recording silently.  The
    panel now says the core's refusal and puts the applied values back."""
    _, panel, texts = said
    dm = panel.ctx.devices
    stream = _streaming(panel, qtbot)
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
    rec = panel.recorder
    qtbot.waitUntil(lambda: rec.n_written > 20_000, timeout=10_000)
    panel.volt.setValue(2.5)
    assert texts[-1] == (
        "The supply voltage stays 3.3 V while recording (a recording has one supply voltage): "
        "stop the recording first, then change the voltage"
    )
    assert panel.volt.value() == 3.3 and panel.ctx.settings["power.voltage"] == 3.3
    before = rec.duration
    qtbot.waitUntil(lambda: rec.duration > before + 0.5, timeout=10_000)  # the recording goes on
    assert dm.power_stream is stream and dm.voltage == 3.3
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
    panel.volt.setValue(2.5)  # not recording: applied
    assert panel.ctx.settings["power.voltage"] == 2.5
    qtbot.waitUntil(lambda: dm.voltage == 2.5, timeout=10_000)


def test_the_window_box_shows_the_span_of_a_zoom(power_window, qtbot):
    """Was: the Window box kept "2.000 s" after a zoom-out to 5 s, and typing a window changed nothing
    while the view did not follow live."""
    _, panel = power_window
    panel.follow.setChecked(False)
    panel.plot.setXRange(10.0, 15.0, padding=0)  # what a wheel zoom does to the view
    QApplication.processEvents()
    assert panel.window.text() == "5.000 s" and panel.window.value() == 5.0
    assert panel.plot.visible_range() == (10.0, 15.0)  # no second range change
    panel.window.setValue(2.0)  # typed in the box
    QApplication.processEvents()
    x0, x1 = panel.plot.visible_range()
    assert (x0, x1) == pytest.approx((11.5, 13.5), abs=1e-9) and panel.window.value() == 2.0
    assert panel.ctx.settings["power.window_s"] == 2.0
