"""App-level fault matrix (issue #7, part 2): faults of the LPM01A and of the NUCLEO board injected through
the virtual bench while the app is idle, streaming or recording, observed through the app's own core
(:class:`~app.core.context.AppContext`, :class:`~app.core.devices.DeviceManager`, recorders, labels).

For every row: the fault is detected within 2 s (an entry in ``DeviceManager.faults``), the device's
status message says what happened in plain words, the app recovers by itself where possible (reconnect,
streaming resumed, the missing time a marked gap on the timeline), nothing hangs, labels stay intact and
no sample that reached the host is lost from a running recording.  Faults during a training round and
the round aborted halfway are in ``tests/core/test_app_faults_round.py``; the Qt status bar in
``tests/gui/test_app_faults_gui.py``.  The table with observed behaviour is in docs/reliability.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest

from app.core.context import AppContext
from app.core.devices import DeviceState
from app.core.labels import LabelModel
from app.core.recording import StreamRecorder, load_accel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

POWER, BOARD = "powershield:virtual", "board:virtual"
DETECT_S = 2.0


def wait_for(cond, timeout: float, what) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout:g} s: {what() if callable(what) else what}")


@dataclass
class Rig:
    ctx: AppContext

    @property
    def dm(self):
        return self.ctx.devices

    def emu(self, key: str):
        return self.dm.bench.powershield if key == POWER else self.dm.bench.board

    def state(self, key: str) -> DeviceState:
        return self.dm.status(key).state

    def describe(self) -> str:
        return str([(s.info.key, s.state.value, s.message) for s in self.dm.snapshot()])

    def stream(self, key: str):
        return self.dm.power_stream if key == POWER else self.dm.accel_stream

    def put(self, key: str, state: str) -> None:
        """Bring ``key`` to 'idle' (connected, not streaming) or 'streaming', faults cleared."""
        self.emu(key).faults.clear() if hasattr(self.emu(key).faults, "clear") else _clear(self.emu(key).faults)
        self.dm.set_auto_reconnect(key, True)
        if self.state(key) in (DeviceState.DISCONNECTED, DeviceState.ERROR):
            self.dm.connect(key)
        self.dm.set_streaming(key, state != "idle")
        want = DeviceState.READY if state == "idle" else DeviceState.STREAMING
        wait_for(lambda: self.state(key) == want and self.dm.status(key).info.url is not None, 20, self.describe)
        if want == DeviceState.STREAMING:
            s = self.stream(key)
            n0 = s.n_total
            wait_for(lambda: self.stream(key).n_total > n0, 5, "samples")
        time.sleep(0.3)

    def inject(self, key: str, fn) -> tuple[float, int]:
        """Run ``fn()`` (the fault); returns (timeline time, fault count) before it."""
        n, t = self.dm.fault_count, self.dm.now()
        fn()
        return t, n

    def detected(self, key: str, t0: float, n0: int, timeout: float = 4.0) -> tuple[float, str]:
        """Wait for a new fault of ``key``; returns (seconds after t0, its text)."""

        def new():
            return (
                [f for f in list(self.dm.faults)[-(self.dm.fault_count - n0) :] if f[1] == key]
                if self.dm.fault_count > n0
                else []
            )

        wait_for(lambda: bool(new()), timeout, lambda: f"no fault detected on {key}: {self.describe()}")
        t, _k, text = new()[0]
        return t - t0, text

    def recovered(self, key: str, want: DeviceState, timeout: float = 12.0, reconnected: bool = True) -> None:
        """Back in ``want`` (after a reconnect, if ``reconnected``: the message says so) with fresh samples."""
        if reconnected:
            wait_for(
                lambda: self.state(key) == want and "reconnected" in self.dm.status(key).message, timeout, self.describe
            )
        else:
            wait_for(lambda: self.state(key) == want, timeout, self.describe)
        if want == DeviceState.STREAMING:
            s = self.stream(key)
            n0 = s.n_total
            wait_for(lambda: self.stream(key).n_total > n0 + 10, 5, "samples after the recovery")


def _clear(faults) -> None:
    import dataclasses

    for f in dataclasses.fields(faults):
        setattr(faults, f.name, f.default)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    ctx = AppContext.create(tmp_path_factory.mktemp("faults") / "data", bench=True)
    dm = ctx.devices
    dm.configure_power(POWER, 10_000, 3.3)
    dm.configure_accel(BOARD, 104.0, 4)
    r = Rig(ctx)
    for k in (POWER, BOARD):
        r.put(k, "idle")
    yield r
    ctx.close()


def _gap_covering(stream, t0: float) -> bool:
    return any(b > t0 and a <= t0 + 15 for a, b in stream.gaps)


# ---------------------------------------------------------------------------------------------------
# link faults: unplug/replug (same and new port), LPM01A psrst / spontaneous reset, board reset
# ---------------------------------------------------------------------------------------------------
LINK_FAULTS = {
    "unplug": lambda r, k: r.dm.unplug(k, 1.0),
    "unplug_new_port": lambda r, k: r.dm.unplug(k, 1.0, new_port=True),
    "reset": lambda r, k: setattr(r.emu(k).faults, "reset_now", True),  # LPM01A: = psrst; board: reset button
}
WORDS = {
    ("unplug", POWER): "USB link to the LPM01A lost",
    ("unplug", BOARD): "USB link to the board lost",
    ("unplug_new_port", POWER): "USB link to the LPM01A lost",
    ("unplug_new_port", BOARD): "USB link to the board lost",
    ("reset", POWER): "USB link to the LPM01A lost",
    ("reset", BOARD): "the board reset itself",
}


@pytest.mark.parametrize("state", ["idle", "streaming"])
@pytest.mark.parametrize("key", [POWER, BOARD])
@pytest.mark.parametrize("fault", list(LINK_FAULTS))
def test_link_fault_detected_and_recovered(rig, fault, key, state):
    rig.put(key, state)
    url0 = rig.dm.status(key).info.url
    t0, n0 = rig.inject(key, lambda: LINK_FAULTS[fault](rig, key))
    dt, text = rig.detected(key, t0, n0)
    print(f"DETECT {rig.state(key).value} {key} {dt:.2f} s: {text}")
    assert dt <= DETECT_S, f"{fault} on {key} ({state}) detected after {dt:.2f} s"
    assert WORDS[(fault, key)] in text, text
    want = DeviceState.READY if state == "idle" else DeviceState.STREAMING
    rig.recovered(key, want)
    st = rig.dm.status(key)
    assert "reconnected" in st.message, st.message
    if fault == "unplug_new_port":
        assert st.info.url != url0, "the session must follow the port to its new name"
    if state == "streaming":
        assert _gap_covering(rig.stream(key), t0), f"no marked gap after {t0:.2f} s: {rig.stream(key).gaps[-3:]}"


def test_psrst_command_while_streaming(rig):
    """``psrst`` sent by the host (another tool, a user's console): the port disappears for 3 s."""
    rig.put(POWER, "streaming")
    # the shield receives 'psrst' as if the host had sent it (it answers nothing and leaves the USB bus)
    t0, n0 = rig.inject(POWER, lambda: rig.emu(POWER).receive(b"psrst\n"))
    dt, text = rig.detected(POWER, t0, n0)
    print(f"DETECT {rig.state(POWER).value} {POWER} {dt:.2f} s: {text}")
    assert dt <= DETECT_S and "USB link to the LPM01A lost" in text, (dt, text)
    rig.recovered(POWER, DeviceState.STREAMING, timeout=15)
    assert _gap_covering(rig.stream(POWER), t0)


# ---------------------------------------------------------------------------------------------------
# byte faults: corruption, dropped bytes, NUL bursts (streaming continues, losses marked)
# ---------------------------------------------------------------------------------------------------
BYTE_FAULTS = {
    "corrupt": {"corrupt_rate": 2e-4},
    "drop": {"drop_rate": 2e-4},
    "nul_burst": {"nul_burst_rate": 2e-4, "nul_burst_len": 16},
}


@pytest.mark.parametrize("key", [POWER, BOARD])
@pytest.mark.parametrize("fault", list(BYTE_FAULTS))
def test_byte_faults_marked_and_streaming_continues(rig, fault, key):
    rig.put(key, "streaming")
    if key == BOARD:  # enough bytes per second for the fault rates to bite quickly
        rig.dm.configure_accel(BOARD, 1667.0, 4)
        rig.put(key, "streaming")
    lost0 = rig.dm._session(key).lost_samples  # noqa: SLF001
    gaps0 = len(rig.stream(key).gaps)
    t0, n0 = rig.inject(key, lambda: [setattr(rig.emu(key).faults, k, v) for k, v in BYTE_FAULTS[fault].items()])
    try:
        dt, text = rig.detected(key, t0, n0, timeout=6.0)
        print(f"DETECT {fault} {key} streaming {dt:.2f} s: {text}")
        assert "lost" in text and "marked as gaps" in text, text
        time.sleep(0.5)
    finally:
        _clear(rig.emu(key).faults)
    # still streaming (or already back after a resync), losses are counted and marked
    rig.recovered(key, DeviceState.STREAMING, reconnected=False)
    assert rig.dm._session(key).lost_samples > lost0  # noqa: SLF001
    assert len(rig.stream(key).gaps) > gaps0
    if key == BOARD:
        rig.dm.configure_accel(BOARD, 104.0, 4)


# ---------------------------------------------------------------------------------------------------
# LPM01A: overflow (host did not read), stalled link, overcurrent
# ---------------------------------------------------------------------------------------------------
def test_power_overflow_restarts_stream_with_gap(rig):
    rig.put(POWER, "streaming")
    t0, n0 = rig.inject(POWER, lambda: setattr(rig.emu(POWER).faults, "force_overflow", True))
    dt, text = rig.detected(POWER, t0, n0)
    print(f"DETECT {rig.state(POWER).value} {POWER} {dt:.2f} s: {text}")
    assert dt <= DETECT_S and "transmit buffer overflowed" in text, (dt, text)
    rig.recovered(POWER, DeviceState.STREAMING)
    assert _gap_covering(rig.stream(POWER), t0)


@pytest.mark.parametrize("key", [POWER, BOARD])
def test_peer_stops_delivering(rig, key):
    """The device's output stops reaching the host (its USB endpoint stalls): detected, then recovered."""
    rig.put(key, "streaming")
    t0, n0 = rig.inject(key, lambda: setattr(rig.emu(key).faults, "host_not_reading", True))
    try:
        dt, text = rig.detected(key, t0, n0)
        print(f"DETECT {rig.state(key).value} {key} {dt:.2f} s: {text}")
        assert dt <= DETECT_S, (dt, text)
        assert "stopped" in text or "does not answer" in text or "lost" in text, text
    finally:
        rig.emu(key).faults.host_not_reading = False
    rig.recovered(key, DeviceState.STREAMING, timeout=15)


def test_power_overcurrent_stops_and_explains(rig):
    rig.put(POWER, "streaming")
    t0, n0 = rig.inject(POWER, lambda: setattr(rig.emu(POWER).faults, "overcurrent", True))
    try:
        dt, text = rig.detected(POWER, t0, n0)
        print(f"DETECT {rig.state(POWER).value} {POWER} {dt:.2f} s: {text}")
        assert dt <= DETECT_S and "overcurrent" in text and "press Stream" in text, (dt, text)
        # not retried on its own: the shield protects the target, the user decides
        wait_for(lambda: rig.state(POWER) == DeviceState.READY, 3, rig.describe)
        time.sleep(1.0)
        assert rig.state(POWER) == DeviceState.READY
    finally:
        rig.emu(POWER).faults.overcurrent = False
    rig.dm.set_streaming(POWER, True)  # the user presses Stream again
    rig.recovered(POWER, DeviceState.STREAMING, reconnected=False)


# ---------------------------------------------------------------------------------------------------
# board answering garbage or nothing
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("state", ["idle", "streaming"])
@pytest.mark.parametrize("fault,words", [("garbage", "garbage"), ("silent", "does not answer")])
def test_board_garbage_or_silent(rig, fault, words, state):
    rig.put(BOARD, state)
    t0, n0 = rig.inject(BOARD, lambda: setattr(rig.emu(BOARD).faults, fault, True))
    try:
        dt, text = rig.detected(BOARD, t0, n0)
        print(f"DETECT {rig.state(BOARD).value} {BOARD} {dt:.2f} s: {text}")
        assert dt <= DETECT_S, (dt, text)
        if state == "idle" or fault == "garbage":
            assert words in text, text
        time.sleep(1.0)  # reconnect attempts fail with the same words, the app stays responsive
        st = rig.dm.status(BOARD)
        assert st.state in (DeviceState.ERROR, DeviceState.CONNECTING), st
        assert words in st.message or st.message == "reconnecting…", st.message
    finally:
        setattr(rig.emu(BOARD).faults, fault, False)
    rig.recovered(BOARD, DeviceState.READY if state == "idle" else DeviceState.STREAMING, timeout=15)


# ---------------------------------------------------------------------------------------------------
# recording: a fault mid-recording loses nothing that reached the host, labels stay
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [POWER, BOARD])
def test_unplug_while_recording_keeps_samples_and_labels(rig, key):
    rig.put(key, "streaming")
    ctx = rig.ctx
    kind = "power" if key == POWER else "accel"
    rec = StreamRecorder(ctx.store, rig.stream(key), kind, f"fault {kind}", dataset_id=ctx.dataset.id)
    got: list[np.ndarray] = []
    rig.stream(key).add_sink(lambda first, block: got.append(block.copy()))
    try:
        wait_for(lambda: rec.duration > 0.6, 5, "recording")
        model = LabelModel(ctx.store, rec.rec.id, ctx.dataset.classes)
        lab = model.add(0.1, 0.5, ctx.dataset.classes[0])
        t0, n0 = rig.inject(key, lambda: rig.dm.unplug(key, 1.0))
        dt, _text = rig.detected(key, t0, n0)
        print(f"DETECT {rig.state(key).value} {key} {dt:.2f} s: {_text}")
        assert dt <= DETECT_S
        rig.recovered(key, DeviceState.STREAMING)
        time.sleep(0.5)
    finally:
        row = rec.stop()
    assert rec.dropped == 0 and rec.n_written == row.n_samples
    assert [(l.id, l.start_s, l.end_s) for l in ctx.store.labels(rec.rec.id)] == [(lab.id, 0.1, 0.5)]
    # everything the stream received while recording is in the file, the outage as NaN rows
    sent = np.concatenate(got)[: row.n_samples]
    if kind == "accel":
        disk = np.asarray(load_accel(ctx.store, row))
    else:
        from app.core.recording import open_power

        s = open_power(ctx.store, row)
        disk = s.samples(0, s.duration)[1]
    assert len(disk) == row.n_samples >= len(sent) - 1
    assert np.array_equal(np.isnan(disk[: len(sent)]), np.isnan(sent))
    assert np.allclose(disk[: len(sent)], sent, equal_nan=True)
    assert np.isnan(disk).any(), "the outage must be in the recording as a marked (NaN) gap"
