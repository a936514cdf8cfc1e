"""The device manager's decisions, exactly (app/core/devices.py; mutation target ``devices``, docs/benchmarks.md).

Each session's state machine is driven here on the test's own thread, one step at a time (``_cmd_connect``,
``_tick``, ``fault``, ...), with the module's clock replaced by a hand-stepped one and the drivers by small fakes
that record what they were asked: connect, reconnect with backoff and auto-reconnect on/off, streaming, TRAINING
for a round and back, link-loss detection without I/O, and the exact words the user reads for each fault (link
lost, board reset, garbage on the line, needs firmware, the power monitor's faults and protective stop).  The
manager's look-ups (discovery, ports that moved, first, rates per monitor kind, the configure checks, lost
samples, streams) are checked the same way.  The slow fault matrices on the virtual bench
(tests/core/test_app_faults*.py) check the same paths end to end; one short bench test here checks that the
fakes behave like the real drivers on the main path."""

from __future__ import annotations

import logging
import time as real_time
from types import SimpleNamespace

import numpy as np
import pytest

from app.core import devices as D
from app.core.devices import (
    POWER_MONITOR,
    DeviceError,
    DeviceInfo,
    DeviceManager,
    DeviceState,
    DeviceStatus,
    NeedsFirmware,
)
from device.lpm01a.driver import BufferOverflow, Overcurrent, PowerShieldTimeout
from device.lpm01a.monitor import LPM01AMonitor
from device.monitor import MonitorLinkError, ProtectiveStop
from device.nucleo import protocol as P
from device.nucleo.client import NucleoTimeout
from tests.clockkit import OwnThreadTime

BOARD, POWER = "board:test", "powershield:test"
RESET = "the board reset itself ({}): its model and data are gone"
GARBAGE = "the board answers with garbage (wrong firmware, or another program on its port?)"
SILENT = "the board does not answer (firmware hung, or the USB link stalled)"
USB_BOARD = "USB link to the board lost (unplugged, or its port closed)"
HELLO = "it does not answer HELLO (no ODL firmware, or another program)"
OVERCURRENT = (
    "overcurrent: the target drew more than the LPM01A allows (59 mA for 2 ms or a 75 mA peak), "
    "so it stopped measuring to protect it; check the target, then press Stream again"
)


class Clock(OwnThreadTime):
    """The module's ``time``: monotonic() returns what the test set, sleep() advances it (for the test's own thread:
    tests/clockkit.py)."""

    def __init__(self, t: float = 1000.0):
        super().__init__()
        self.t = t

    def monotonic(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(D, "time", c)
    return c


class FakeClient:
    """What _BoardSession uses of a NucleoClient; records the calls."""

    def __init__(self, fw=(1, 1, 0), states=(P.BoardState.IDLE,)):
        self.fw = fw
        self.calls: list[tuple] = []
        self.link_error = None
        self.decoder_stats = {"discarded_bytes": 0, "frames": 0}
        self._decoder = SimpleNamespace(_buf=b"")
        self.on_event = None
        self.closed = False
        self.states = list(states)
        self.hello_error: BaseException | None = None
        self.beat_error: BaseException | None = None
        self.abort_error: BaseException | None = None

    def hello(self):
        self.calls.append(("hello",))
        if self.hello_error is not None:
            raise self.hello_error
        return SimpleNamespace(fw_major=self.fw[0], fw_minor=self.fw[1], fw_patch=self.fw[2], flags=1)

    def info(self):
        self.calls.append(("info",))
        return SimpleNamespace(
            tick_hz=1000,
            fw_major=self.fw[0],
            fw_minor=self.fw[1],
            fw_patch=self.fw[2],
            proto=3,
            board="NUCLEO-L496ZG",
            mcu="STM32L496",
            sensor="LSM6DSO",
            build="abc",
            sysclk_hz=80_000_000,
            ram_free=1234,
        )

    def status(self):
        st = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        self.calls.append(("status", st))
        return SimpleNamespace(state=st)

    def abort(self):
        self.calls.append(("abort",))
        if self.abort_error is not None:
            raise self.abort_error

    def drain_events(self, *types):
        self.calls.append(("drain", types))

    def sensor_config(self, odr_hz, fs_g):
        self.calls.append(("sensor_config", odr_hz, fs_g))
        return SimpleNamespace(sens_ng=122_000, odr_mhz=int(odr_hz * 1000), fs_g=fs_g)

    def request(self, msg, rsp, timeout, retries):
        self.calls.append(("request", type(msg).__name__, rsp.__name__, timeout, retries))
        if self.beat_error is not None:
            raise self.beat_error
        return SimpleNamespace(tx_dropped=3, rx_errors=4)

    def stream_start(self, block_len):
        self.calls.append(("stream_start", block_len))

    def stream_stop(self):
        self.calls.append(("stream_stop",))

    def close(self):
        self.closed = True

    def fail_waiters(self, exc):
        self.calls.append(("fail_waiters", type(exc).__name__, str(exc)))


class FakeCapture:
    def __init__(self):
        self.finished = False
        self.error: BaseException | None = None
        self.ended_by = "end tag"
        self.lost = 0
        self.buffer_pct = 7.5
        self.stopped = False

    def stop(self, timeout):
        self.stopped = True


class FakeMonitor:
    def __init__(self):
        self.calls: list[tuple] = []
        self.ping_error: BaseException | None = None
        self.close_error: BaseException | None = None

    def prepare(self):
        return {"firmware": "v1.0.0", "board": "LPM01A"}

    def ping(self):
        self.calls.append(("ping",))
        if self.ping_error is not None:
            raise self.ping_error

    def close(self):
        self.calls.append(("close",))
        if self.close_error is not None:
            raise self.close_error


def _manager(**kw) -> DeviceManager:
    dm = DeviceManager(**{"bench": False, **kw})
    dm.now = lambda: 100.0  # type: ignore[method-assign]  # the shared timeline, fixed
    return dm


def _add(dm: DeviceManager, kind: str = "board", key: str | None = None, name: str | None = None, **kw) -> D._Session:
    key = key or (BOARD if kind == "board" else POWER)
    name = name or ("NUCLEO test" if kind == "board" else "LPM01A test")
    info = DeviceInfo(key, kind, kw.pop("url", "socket://127.0.0.1:9"), name, **kw)
    s = dm._make(info)
    dm._sessions[key] = s
    return s


@pytest.fixture
def board(monkeypatch, clock):
    """A board session whose NucleoClient.open returns a FakeClient (``board.fake``)."""
    from device.nucleo.client import NucleoClient

    dm = _manager()
    s = _add(dm)
    s.fake = FakeClient()
    opened = []

    def fake_open(url, timeout, on_event):
        opened.append((url, timeout, on_event))
        s.seen_opening = (s.state, s.message)  # what the Devices panel shows while the port opens
        s.fake.on_event = on_event
        return s.fake

    monkeypatch.setattr(NucleoClient, "open", staticmethod(fake_open))
    s.opened = opened
    return s


def _status(s) -> tuple:
    st = s.status()
    return st.state, st.message


# ---------------------------------------------------------------------------------------------------------------
# status, _set
# ---------------------------------------------------------------------------------------------------------------
def test_status_is_a_snapshot_of_the_session(clock):
    dm = _manager()
    s = _add(dm)
    s.state, s.message, s.details, s.auto_reconnect, s.reconnects = DeviceState.READY, "hi", {"a": 1}, False, 3
    st = s.status()
    assert st == DeviceStatus(s.info, DeviceState.READY, "hi", {"a": 1}, False, 3)
    st.details["a"] = 2
    assert s.details == {"a": 1}  # a copy
    v = dm.version
    s._set(DeviceState.STREAMING, "m")
    assert (s.state, s.message, dm.version) == (DeviceState.STREAMING, "m", v + 1)
    s._set(DeviceState.READY)
    assert s.message == ""


# ---------------------------------------------------------------------------------------------------------------
# connect, needs firmware, backoff
# ---------------------------------------------------------------------------------------------------------------
def test_connect_reads_the_board(board):
    s, dm = board, board.m
    s._cmd_connect()
    assert _status(s) == (DeviceState.READY, "")
    assert s.want_connected is True
    assert board.opened == [("socket://127.0.0.1:9", 1.0, s._on_event)]
    assert s.seen_opening == (DeviceState.CONNECTING, "opening…")
    assert s.details == {
        "firmware": "1.1.0",
        "protocol": 3,
        "board": "NUCLEO-L496ZG",
        "mcu": "STM32L496",
        "sensor": "LSM6DSO",
        "build": "abc",
        "sysclk_MHz": 80.0,
        "ram_free": 1234,
        "emulated": True,
        "odr_hz": 52.0,
        "fs_g": 4,
    }
    assert s._tick_hz == 1000
    assert s._sens == pytest.approx(122_000e-9 * D.G)
    assert s.fake.calls == [
        ("hello",),
        ("info",),
        ("status", P.BoardState.IDLE),
        ("sensor_config", 52.0, 4),
    ]
    assert dm.accel_stream is not None and dm.accel_stream.rate_hz == 52.0
    assert s._last_beat == D.time.t and s._backoff == 0.5
    s.fake.calls.clear()
    s._cmd_connect()  # already connected: nothing
    assert s.fake.calls == [] and s.client is s.fake
    s.fake = FakeClient()
    s.fake.hello = lambda: SimpleNamespace(fw_major=1, fw_minor=2, fw_patch=0, flags=2)  # bit 0 clear: real
    s._connect(reconnect=True)
    assert s.seen_opening == (DeviceState.CONNECTING, "reconnecting…")
    assert s.details["emulated"] is False


def test_tick_hz_zero_falls_back_to_microseconds(board):
    s = board
    info = s.fake.info
    s.fake.info = lambda: SimpleNamespace(**{**vars(info()), "tick_hz": 0})
    s._cmd_connect()
    assert s._tick_hz == 1_000_000


@pytest.mark.parametrize(
    "fw,hello_error,why",
    [
        ((1, 1, 0), NucleoTimeout("no answer"), HELLO),
        ((1, 0, 9), None, "it runs ODL firmware 1.0.9, older than 1.1.0"),
    ],
)
def test_a_board_without_the_odl_firmware_needs_it(board, fw, hello_error, why):
    s = board
    s.fake.fw, s.fake.hello_error = fw, hello_error
    s._cmd_connect()
    assert _status(s) == (DeviceState.ERROR, f"connect failed: needs the ODL firmware: {why}; next try in 0.5 s")
    assert s.details == {"needs_firmware": why, "firmware": "needs the ODL firmware"}
    assert s.fake.closed and s.client is None
    assert s._next_try == D.time.t + 0.5 and s._backoff == 1.0
    with pytest.raises(NeedsFirmware) as e:
        s.open()
    assert str(e.value) == f"needs the ODL firmware: {why}"
    if hello_error is not None:
        assert e.value.__cause__ is hello_error


def test_a_virtual_board_that_does_not_answer_is_a_link_fault(board):
    s = board
    s.info = DeviceInfo(BOARD, "board", "socket://127.0.0.1:9", "NUCLEO test", True)
    s.fake.hello_error = NucleoTimeout("no answer")
    s._cmd_connect()
    assert _status(s) == (DeviceState.ERROR, f"connect failed: {SILENT}; next try in 0.5 s")
    assert s.details == {}


def test_garbage_during_hello_is_named(board):
    s = board
    s.info = DeviceInfo(BOARD, "board", "socket://127.0.0.1:9", "NUCLEO test", True)
    fake = s.fake

    def hello():
        fake.decoder_stats = {"discarded_bytes": 5, "frames": 0}
        raise NucleoTimeout("no answer")

    fake.hello = hello
    s._connect(reconnect=False)
    # not wanted connected: no "next try" (nobody retries)
    assert _status(s) == (DeviceState.ERROR, f"connect failed: {GARBAGE}")


def test_backoff_doubles_to_five_seconds_and_reconnect_counts(board, clock):
    s = board
    s.fake.hello_error = NucleoTimeout("x")
    s.info = DeviceInfo(BOARD, "board", "socket://127.0.0.1:9", "NUCLEO test", True)
    s._cmd_connect()
    waits = []
    for _ in range(5):
        waits.append(s.message.rsplit(" in ", 1)[-1])
        clock.t = s._next_try - 0.01
        s._tick()  # not yet
        assert s.state == DeviceState.ERROR
        clock.t = s._next_try
        n = s.reconnects
        s._tick()
        assert s.reconnects == n + 1
        assert s.message.startswith("reconnect failed: ")
    assert waits == ["0.5 s", "1.0 s", "2.0 s", "2.5 s", "2.5 s"]
    s.auto_reconnect = False
    clock.t += 100
    n = s.reconnects
    s._tick()
    assert s.reconnects == n
    s.auto_reconnect, s.want_connected = True, False
    s._tick()
    assert s.reconnects == n
    s.want_connected = True
    s._connect(reconnect=True)
    s.auto_reconnect = False
    s._connect(reconnect=True)
    assert s.message == f"reconnect failed: {SILENT}"


def test_a_port_that_is_gone_is_named(board, monkeypatch):
    s = board
    monkeypatch.setattr(s.m, "current_url", lambda sess: None)
    s._cmd_connect()
    assert _status(s) == (
        DeviceState.ERROR,
        "connect failed: its port is not there (unplugged?); next try in 0.5 s",
    )
    assert board.opened == []


def test_reconnect_resumes_streaming_and_says_so(board, clock):
    s, dm = board, board.m
    s._cmd_connect()
    s._cmd_stream(True)
    assert _status(s) == (DeviceState.STREAMING, "")
    assert s.fake.calls[-1] == ("stream_start", 13)
    s._link_lost(OSError("gone"))
    assert _status(s) == (DeviceState.ERROR, f"{USB_BOARD}; reconnecting automatically")
    assert s.lost_at == 100.0
    dm.now = lambda: 102.25
    s.fake = FakeClient()
    clock.t = s._next_try
    s._tick()
    text = "reconnected after 2.2 s; streaming resumed, the missing time is marked as a gap"
    assert _status(s) == (DeviceState.STREAMING, text)
    assert s.reconnects == 1
    assert dm.messages[-1] == f"NUCLEO test: {text}"


def test_reconnect_without_stream_and_without_a_loss_time(board, clock):
    s, dm = board, board.m
    s.want_connected = True
    s._connect(reconnect=True)
    assert _status(s) == (DeviceState.READY, "reconnected")
    assert dm.messages == ["NUCLEO test: reconnected"]
    s.want_stream = True
    s._connect(reconnect=False)
    assert _status(s) == (DeviceState.STREAMING, "")
    assert dm.messages == ["NUCLEO test: reconnected"]


def test_disconnect_stops_the_stream_and_forgets_the_wishes(board):
    s = board
    s._cmd_connect()
    s._cmd_stream(True)
    fake = s.fake
    s._cmd_disconnect()
    assert _status(s) == (DeviceState.DISCONNECTED, "")
    assert (s.want_connected, s.want_stream, s.client) == (False, False, None)
    assert fake.calls[-1] == ("stream_stop",) and fake.closed and fake.on_event is None
    # a stream_stop that fails still closes
    s._cmd_connect()
    s._cmd_stream(True)
    fake = s.fake

    def boom():
        raise OSError("dead")

    fake.stream_stop = boom
    s._cmd_disconnect()
    assert _status(s) == (DeviceState.DISCONNECTED, "") and fake.closed


def test_stream_on_and_off(board):
    s = board
    s._cmd_stream(True)  # not connected: only remembered
    assert (s.want_stream, s.state) == (True, DeviceState.DISCONNECTED)
    s._cmd_stream(False)
    s._cmd_connect()
    s._cmd_stream(1)
    assert s.want_stream is True and s.state == DeviceState.STREAMING
    s.fake.calls.clear()
    s._cmd_stream(True)  # already streaming
    assert s.fake.calls == []
    s._cmd_stream(0)
    assert s.want_stream is False and _status(s) == (DeviceState.READY, "")
    assert s.fake.calls == [("stream_stop",)]
    s._cmd_stream(False)
    assert s.fake.calls == [("stream_stop",)]


@pytest.mark.parametrize("odr,block", [(12.5, 3), (52.0, 13), (1667.0, 160), (2.0, 1), (0.1, 1)])
def test_stream_block_length(board, clock, odr, block):
    s = board
    s._cmd_connect()
    s.odr_hz = odr
    s._tick0 = 5
    s._last_sample = 0.0
    s.start_stream()
    assert s.fake.calls[-1] == ("stream_start", block)
    assert s._tick0 is None and s._last_sample == clock.t


def test_call_reports_result_or_error(board):
    s = board
    got = []
    s._cmd_call(lambda: 42, lambda r, e: got.append((r, e)))
    err = ValueError("x")

    def bad():
        raise err

    s._cmd_call(bad, lambda r, e: got.append((r, e)))
    s._cmd_call(lambda: 1, None)
    assert got == [(42, None), (None, err)]


def test_config_restarts_a_running_stream(board):
    s, dm = board, board.m
    s._cmd_config(104, 8)  # not connected: remembered
    assert (s.odr_hz, s.fs_g) == (104.0, 8) and isinstance(s.odr_hz, float)
    s._cmd_connect()
    assert s.fake.calls[-1] == ("sensor_config", 104.0, 8)
    s.fake.calls.clear()
    v = dm.version
    s._cmd_config(208.0, 2.0)
    assert s.fake.calls == [("sensor_config", 208.0, 2)] and isinstance(s.fs_g, int)
    assert dm.version == v + 2  # a new stream (another rate), then the change
    assert s.details["odr_hz"] == 208.0 and s.details["fs_g"] == 2
    s._cmd_stream(True)
    s.fake.calls.clear()
    s._cmd_config(52.0, 4)
    assert s.fake.calls == [("stream_stop",), ("sensor_config", 52.0, 4), ("stream_start", 13)]
    s.fake.calls.clear()
    s._cmd_config(52, 4.0)  # the settings it has (the Live panel opening): the stream goes on
    assert s.fake.calls == [] and (s.odr_hz, s.fs_g) == (52.0, 4)
    s._cmd_config(52.0, 8)  # another full scale alone: applied
    assert s.fake.calls == [("stream_stop",), ("sensor_config", 52.0, 8), ("stream_start", 13)]


# ---------------------------------------------------------------------------------------------------------------
# heartbeat, fast checks
# ---------------------------------------------------------------------------------------------------------------
class _Beats(D._Session):
    """A generic session whose alive() answers what the test says."""

    def __init__(self, m, info):
        super().__init__(m, info)
        self.answer = True
        self.beats = self.checks = self.training_beats = 0

    def alive(self):
        self.beats += 1
        return self.answer

    def fast_check(self):
        self.checks += 1

    def training_beat(self):
        self.training_beats += 1


def test_the_heartbeat_is_due_every_half_second(clock):
    dm = _manager()
    s = _Beats(dm, DeviceInfo("x:1", "x", "u", "Dev"))
    for state in DeviceState:
        s.state, s._last_beat, s.checks = state, clock.t - 10, 0
        s._tick()
        connected = state in (DeviceState.READY, DeviceState.STREAMING, DeviceState.TRAINING)
        assert s.checks == (1 if connected else 0), state
    assert (s.beats, s.training_beats) == (2, 1)
    s.state = DeviceState.READY
    s._last_beat = clock.t - 0.49
    s._tick()
    assert s.beats == 2
    s._last_beat = clock.t - 0.5
    s._tick()
    assert s.beats == 3 and s._last_beat == clock.t
    s.state = DeviceState.TRAINING
    s._last_beat = clock.t - 0.49
    s._tick()
    assert s.training_beats == 1
    s._last_beat = clock.t - 0.5
    s._tick()
    assert s.training_beats == 2 and s._last_beat == clock.t
    s.state, s._last_beat, s.answer = DeviceState.STREAMING, clock.t - 1, False
    with pytest.raises(DeviceError) as e:
        s._tick()
    assert str(e.value) == "Dev: link lost"


def test_the_generic_session_hooks(clock):
    s = D._Session(_manager(), DeviceInfo("x:1", "x", "u", "Dev"))
    assert s.alive() is True and s.link_broken() is False and s.handle_fault(OSError()) is False
    assert s.describe(ValueError("bad")) == "bad"
    assert s.describe(ValueError()) == "ValueError"


def test_board_beat_and_alive(board, clock):
    s = board
    s._cmd_connect()
    s.fake.decoder_stats = {"discarded_bytes": 2, "frames": 9}
    s.fake._decoder._buf = b"abc"
    assert s.alive() is True
    assert s._junk0 == (2, 3, 9)
    assert s.fake.calls[-1] == ("request", "GetStatus", "Status", 0.6, 1)
    assert (s.details["tx_dropped"], s.details["rx_errors"]) == (3, 4)
    s.fake.calls.clear()
    s.training_beat()
    assert s.fake.calls == [("request", "GetStatus", "Status", 0.6, 1)]


def test_fast_check_raises_what_the_reader_saw(board):
    s = board
    s.fast_check()  # no client: nothing
    s._cmd_connect()
    err = OSError("eof")
    s.fake.link_error = err
    with pytest.raises(OSError) as e:
        s.fast_check()
    assert e.value is err
    s.fake.link_error = "port closed"
    with pytest.raises(DeviceError) as e2:
        s.fast_check()
    assert str(e2.value) == "port closed"
    del s.fake.link_error  # a client without the attribute: only its reader's error
    s.fast_check()
    s.fake._reader_error = "reader died"
    with pytest.raises(DeviceError) as e2:
        s.fast_check()
    assert str(e2.value) == "reader died"


@pytest.mark.parametrize(
    "cause,why", [(0, "power-on or reset button"), (1, "reset request"), (2, "watchdog"), (7, "unknown cause")]
)
def test_a_boot_event_is_a_board_reset(board, cause, why):
    s = board
    s._cmd_connect()
    s._on_event(P.Boot(reset_cause=cause))
    assert s.link_broken() is True
    with pytest.raises(D._BoardReset) as e:
        s.fast_check()
    assert str(e.value) == f"reset cause {cause}" and s._boot is None
    s.fault(e.value)
    assert _status(s) == (DeviceState.ERROR, RESET.format(why) + "; reconnecting automatically")
    assert s.m.faults == [(100.0, BOARD, RESET.format(why))]


def test_board_reset_of_an_unreadable_cause(board):
    assert board.describe(D._BoardReset("reset cause x")) == RESET.format("unknown cause")
    assert board.describe(D._BoardReset("garbled")) == RESET.format("unknown cause")
    assert board.describe(D._BoardReset("1")) == RESET.format("reset request")


def test_link_broken(board):
    s = board
    assert s.link_broken() is True  # no client
    s._cmd_connect()
    assert s.link_broken() is False
    s.fake.link_error = "x"
    assert s.link_broken() is True


def test_lost_samples_are_reported_once_each(board):
    s, dm = board, board.m
    s._cmd_connect()
    s._cmd_stream(True)
    s.lost_samples = 1234
    s.fast_check()
    text = (
        "1,234 accelerometer samples lost (corrupted bytes on the USB link, or the board's transmit buffer was "
        "full; 1,234 in total): marked as gaps, streaming continues"
    )
    assert _status(s) == (DeviceState.STREAMING, text)
    assert dm.faults == [(100.0, BOARD, text)] and dm.messages == [f"NUCLEO test: {text}"]
    s.fast_check()
    assert dm.fault_count == 1
    s.lost_samples = 1235
    s.fast_check()
    assert dm.faults[-1][2].startswith("1 accelerometer samples lost (") and "1,235 in total" in dm.faults[-1][2]


def test_fast_check_drains_samples_except_in_a_round(board):
    s = board
    s._cmd_connect()
    s.fake.calls.clear()
    s.fast_check()
    assert s.fake.calls == [("drain", (P.Samples,))]
    s.state = DeviceState.TRAINING
    s.fake.calls.clear()
    s.fast_check()
    assert s.fake.calls == []


def test_a_stream_that_stopped_is_detected(board, clock):
    s = board
    s._cmd_connect()
    s._cmd_stream(True)  # 52 Hz: 1 s without samples
    s._last_sample = clock.t - 1.0
    s.fast_check()  # not more than 1 s
    clock.t += 0.01
    s.fake.calls.clear()
    with pytest.raises(DeviceError) as e:
        s.fast_check()
    assert str(e.value) == "the accelerometer stream stopped"
    assert s.fake.calls[-1][0] == "request" and s._last_sample == clock.t
    s.odr_hz = 0.5  # slow rates: 3 sample periods
    s._last_sample = clock.t - 6.0
    s.fast_check()
    clock.t += 0.01
    with pytest.raises(DeviceError):
        s.fast_check()
    s._last_sample = 0.0  # no sample yet: not checked
    clock.t += 100
    s.fast_check()
    s.state, s._last_sample = DeviceState.READY, clock.t - 50
    s.fast_check()
    s.odr_hz = 0.0  # (never offered) no division by zero: 3 s / 1e-3 Hz
    s.state = DeviceState.STREAMING
    s._last_sample = clock.t - 2999.0
    s.fast_check()
    s._last_sample = clock.t - 3001.0
    with pytest.raises(DeviceError):
        s.fast_check()
    s.fake.beat_error = NucleoTimeout("gone")  # the board is gone: that is what is raised
    s.odr_hz, s._last_sample = 52.0, clock.t - 10
    with pytest.raises(NucleoTimeout):
        s.fast_check()


# ---------------------------------------------------------------------------------------------------------------
# faults: what the user reads
# ---------------------------------------------------------------------------------------------------------------
class SerialException(OSError.__base__):  # type: ignore[misc]  # pyserial's name, without pyserial
    pass


@pytest.mark.parametrize(
    "exc,junk,words",
    [
        (NucleoTimeout("t"), None, SILENT),
        (NucleoTimeout("t"), {"discarded_bytes": 1, "frames": 0}, GARBAGE),
        (NucleoTimeout("t"), {"discarded_bytes": 0, "frames": 0, "buf": b"zz"}, GARBAGE),
        (NucleoTimeout("t"), {"discarded_bytes": 0, "frames": 1, "buf": b"zz"}, SILENT),
        (NucleoTimeout("t"), {"discarded_bytes": 0, "frames": 1}, SILENT),
        (OSError("x"), None, USB_BOARD),
        (DeviceError("NUCLEO test: link lost"), None, USB_BOARD),
        (DeviceError("NUCLEO test: Link Lost"), None, USB_BOARD),
        (SerialException("read failed"), None, USB_BOARD),
        (DeviceError("the accelerometer stream stopped"), None, "the accelerometer stream stopped"),
        (ValueError("bad"), None, "board error: bad"),
    ],
)
def test_board_fault_words(board, exc, junk, words):
    s = board
    s._cmd_connect()
    if junk is not None:
        s.fake.decoder_stats = {k: v for k, v in junk.items() if k != "buf"}
        s.fake._decoder._buf = junk.get("buf", b"")
    assert s.describe(exc) == words


def test_a_timeout_without_a_client_does_not_answer(board):
    assert board.describe(NucleoTimeout("t")) == SILENT


def test_junk_state_and_garbage_since():
    c = SimpleNamespace(decoder_stats={"discarded_bytes": 4, "frames": 2}, _decoder=SimpleNamespace(_buf=b"xyz"))
    assert D._junk_state(c) == (4, 3, 2)
    assert D._junk_state(SimpleNamespace(decoder_stats={})) == (0, 0, 0)
    assert D._garbage_since(c, (4, 3, 2)) is False
    assert D._garbage_since(c, (3, 3, 2)) is True
    assert D._garbage_since(c, (4, 2, 2)) is True
    assert D._garbage_since(c, (4, 2, 1)) is False
    assert D._garbage_since(c, (5, 2, 2)) is True


def test_faults_while_not_connected_are_ignored(board, caplog):
    s, dm = board, board.m
    for state in (DeviceState.DISCONNECTED, DeviceState.CONNECTING):
        s.state = state
        with caplog.at_level(logging.INFO, logger="app.core.devices"):
            s.fault(OSError("late"))
        assert (s.state, dm.faults) == (state, [])
    assert [r.getMessage() for r in caplog.records] == ["NUCLEO test: late (not connected)"] * 2
    caplog.clear()
    s.want_connected = True  # a connect in progress: a fault counts
    with caplog.at_level(logging.INFO, logger="app.core.devices"):
        s.fault(OSError("x"))
    assert _status(s) == (DeviceState.ERROR, f"{USB_BOARD}; reconnecting automatically")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"NUCLEO test: {USB_BOARD} (OSError('x'))")
    ]


def test_a_link_lost_while_nobody_wants_it_asks_the_user(board, clock):
    s, dm = board, board.m
    s._cmd_connect()
    fake = s.fake
    s.want_connected = False
    s._backoff = 2.0
    s.fault(OSError("x"))
    assert _status(s) == (DeviceState.ERROR, f"{USB_BOARD}; press Connect to try again")
    assert fake.closed and s.client is None and s._next_try == clock.t + 2.0
    assert dm.faults == [(100.0, BOARD, USB_BOARD)] and dm.messages == [f"NUCLEO test: {USB_BOARD}"]
    s.want_connected, s.auto_reconnect = True, False
    s.fault(OSError("x"))
    assert s.message == f"{USB_BOARD}; press Connect to try again"


def test_a_fault_in_a_round_fails_the_round(board):
    s = board
    s._cmd_connect()
    fake = s.fake
    with s.m.board_session(BOARD) as client:
        assert client is fake and _status(s) == (DeviceState.TRAINING, "training round")
        s.fault(NucleoTimeout("t"))
        assert fake.calls[-1] == ("fail_waiters", "DeviceError", f"NUCLEO test: {SILENT}")
    assert _status(s) == (DeviceState.ERROR, f"{SILENT}; reconnecting automatically")  # not READY again
    s.fail_round("nobody")  # no client: nothing to wake
    s.client = SimpleNamespace()  # a client without waiters to wake
    s.fail_round("nobody")


def test_a_fault_outside_a_round_wakes_nobody(board):
    s = board
    s._cmd_connect()
    fake = s.fake
    s.fault(OSError("x"))
    assert not [c for c in fake.calls if c[0] == "fail_waiters"]


def test_training_and_back(board, clock):
    s, dm = board, board.m
    s._cmd_connect()
    s._cmd_stream(True)
    s._last_beat = 0.0
    with dm.board_session() as client:
        assert client is s.fake
        assert _status(s) == (DeviceState.TRAINING, "training round") and s._last_beat == clock.t
    assert _status(s) == (DeviceState.STREAMING, "")
    s._cmd_stream(False)
    with dm.board_session(BOARD):
        pass
    assert _status(s) == (DeviceState.READY, "")
    # a round whose link broke leaves TRAINING for the session thread to report
    with dm.board_session(BOARD):
        s.fake.link_error = "eof"
    assert s.state == DeviceState.TRAINING
    s.leave_training(DeviceState.READY)
    assert s.state == DeviceState.TRAINING
    s.fake.link_error = None
    s.state = DeviceState.ERROR
    s.leave_training(DeviceState.READY)
    assert s.state == DeviceState.ERROR


def test_board_session_refusals(board):
    s, dm = board, board.m
    with pytest.raises(DeviceError) as e:
        with dm.board_session():
            pass
    assert str(e.value) == "no connected NUCLEO board (connect one in the Devices panel)"
    for state in (DeviceState.TRAINING, DeviceState.ERROR, DeviceState.CONNECTING):
        s.state = state
        with pytest.raises(DeviceError) as e:
            with dm.board_session(BOARD):
                pass
        assert str(e.value) == "no connected NUCLEO board (connect one in the Devices panel)"
    s.state = DeviceState.READY  # READY but its client gone (a reconnect under way)
    with pytest.raises(DeviceError) as e:
        with dm.board_session(BOARD):
            pass
    assert str(e.value) == "NUCLEO test is reconnecting: try again in a moment"
    assert s.state == DeviceState.READY


# ---------------------------------------------------------------------------------------------------------------
# orphan rounds, samples on the timeline
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("state", [P.BoardState.TRAINING, P.BoardState.EVALUATING, P.BoardState.TRANSFER])
def test_a_round_left_running_is_aborted(board, clock, state):
    s, dm = board, board.m
    s.fake.states = [state, state, state, P.BoardState.IDLE]
    s.fake.abort_error = NucleoTimeout("already ended")
    s._cmd_connect()
    st = [c for c in s.fake.calls if c[0] != "hello" and c[0] != "info"]
    if state == P.BoardState.TRANSFER:  # no wait for a transfer: abort ends it
        assert st[:4] == [("status", state), ("abort",), ("status", state), ("drain", ())]
    else:
        assert st[:6] == [
            ("status", state),
            ("abort",),
            ("status", state),
            ("status", state),
            ("status", P.BoardState.IDLE),
            ("drain", ()),
        ]
    assert dm.messages == ["NUCLEO test: aborted the round its previous connection had left running"]
    assert _status(s) == (DeviceState.READY, "")


def test_an_orphan_round_that_never_ends_is_left_after_5_s(board, clock, monkeypatch):
    s, dm = board, board.m
    s.fake.states = [P.BoardState.TRAINING]
    t0 = clock.t
    sleeps: list[float] = []

    def sleep(dt):  # exact steps of 2.5 s, whatever the poll interval asked for
        sleeps.append(dt)
        clock.t += 2.5

    monkeypatch.setattr(clock, "sleep", sleep)
    s._cmd_connect()
    assert clock.t - t0 == 5.0 and sleeps == [0.05, 0.05]  # polled at +0 and +2.5 s, not at the deadline
    assert [c for c in s.fake.calls if c[0] == "status"] == [("status", P.BoardState.TRAINING)] * 3
    assert dm.messages == ["NUCLEO test: aborted the round its previous connection had left running"]


def test_an_idle_or_streaming_board_is_left_alone(board):
    s = board
    s.fake.states = [P.BoardState.STREAMING]
    s._cmd_connect()
    assert ("abort",) not in s.fake.calls and s.m.messages == []


def _samples(tick: int, n: int, value: int = 1000) -> P.Samples:
    return P.Samples(block=0, tick=tick, odr_mhz=52_000, fs_g=4, dropped=0, n=n, xyz=np.full((n, 3), value, np.int16))


def test_samples_land_on_the_timeline_and_gaps_count_as_lost(board, clock):
    s, dm = board, board.m
    s._cmd_connect()  # tick_hz 1000 (the fake's INFO), 52 Hz
    stream = dm.accel_stream
    stream.append(np.zeros((10, 3), np.float32))  # earlier data
    dm.now = lambda: 1.0
    s._tick0 = None
    s._on_event(_samples(5000, 4))
    assert (s._tick0, s._t_origin) == (5000, 1.0)
    assert stream.n_total == 52 + 4 and stream.gaps == [(10 / 52, 1.0)]
    t, y = stream.samples(0, stream.duration)
    assert y[52:] == pytest.approx(np.full((4, 3), 1000 * 122_000e-9 * D.G, np.float32))
    assert s.lost_samples == 0 and s._last_sample == clock.t
    # 0.5 s later on the board's clock: 26 samples expected from its start, 4 arrived, 22 lost
    s._on_event(_samples(5000 + 500, 4))
    assert s.lost_samples == 22 and stream.n_total == 52 + 26 + 4
    assert dm.lost_samples() == {"board": 22}
    s._on_event(_samples(5000 + 500 + 77, 4))  # on time: nothing to fill
    assert s.lost_samples == 22 and stream.n_total == 52 + 26 + 8
    s._on_event(_samples(6000, 4))  # 2 s after the origin: 104 expected, 86 there
    assert s.lost_samples == 22 + 18 and stream.n_total == 104 + 4


def test_the_first_block_after_a_start_does_not_mark_an_empty_stream(board):
    s, dm = board, board.m
    s._cmd_connect()
    dm.now = lambda: 2.0
    s._on_event(_samples(0, 2))
    assert dm.accel_stream.gaps == [] and dm.accel_stream.n_total == 104 + 2
    dm.accel_stream = None
    stream = dm.ensure_accel_stream(52.0)
    stream.append(np.zeros((1, 3), np.float32))  # one sample before: the time after it is a gap
    s._tick0 = None
    s._on_event(_samples(0, 2))
    assert stream.gaps == [(1 / 52, 2.0)]


def test_empty_blocks_logs_and_no_stream(board, clock):
    s, dm = board, board.m
    s._on_event(_samples(0, 3))  # no stream yet
    assert s._tick0 is None and s._last_sample == clock.t
    s._cmd_connect()
    s._on_event(_samples(0, 0))
    assert s._tick0 is None and dm.accel_stream.n_total == 0
    s._on_event(P.Log(level=1, text="hello"))
    assert dm.messages == ["NUCLEO test: hello"]
    s._on_event(P.Status())
    assert s._boot is None and dm.messages == ["NUCLEO test: hello"]


# ---------------------------------------------------------------------------------------------------------------
# the power monitor's session
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def power(monkeypatch, clock):
    import device.monitor as M

    dm = _manager()
    s = _add(dm, "powershield")
    s.fake = FakeMonitor()
    opened = []

    def fake_open(kind, url, timeout):
        opened.append((kind, url, timeout))
        return s.fake

    monkeypatch.setattr(M, "open_monitor", fake_open)
    s.opened = opened
    return s


def test_power_connect_and_details(power):
    s = power
    assert (s.monitor_cls, s.rate_hz, s.voltage) == (LPM01AMonitor, LPM01AMonitor.default_rate_hz, 3.3)
    s._cmd_connect()
    assert power.opened == [("powershield", "socket://127.0.0.1:9", 2.0)]
    assert _status(s) == (DeviceState.READY, "")
    assert s.details == {"firmware": "v1.0.0", "board": "LPM01A", "rate_hz": s.rate_hz, "voltage": 3.3}
    assert s.alive() is True and s.fake.calls == [("ping",)]


def test_power_alive_while_capturing(power):
    s = power
    s._cmd_connect()
    s.cap = FakeCapture()
    s.cap.lost = 3
    assert s.alive() is True
    assert s.fake.calls == [] and (s.details["lost"], s.details["buffer_pct"]) == (3, 7.5)
    assert s.m.fault_count == 1


@pytest.mark.parametrize(
    "exc,words",
    [
        (PowerShieldTimeout("t"), "the LPM01A stopped answering or sending data"),
        (
            BufferOverflow("o"),
            "the LPM01A's transmit buffer overflowed (its data were not read fast enough); "
            "restarting the stream, the lost time is marked",
        ),
        (MonitorLinkError("gone"), "USB link to the LPM01A lost (unplugged, or it reset itself)"),
        (DeviceError("the acquisition ended on its own (x)"), "the acquisition ended on its own (x)"),
    ],
)
def test_power_fault_words(power, exc, words):
    s = power
    s._cmd_connect()
    s.fault(exc)
    assert _status(s) == (DeviceState.ERROR, f"{words}; reconnecting automatically")
    assert s.m.faults == [(100.0, POWER, words)] and s.mon is None and s.fake.calls == [("close",)]


def test_power_overcurrent_stops_and_waits_for_the_user(power, clock):
    s, dm = power, power.m
    s._cmd_connect()
    s.want_stream, s.state, s._last_beat = True, DeviceState.STREAMING, 0.0
    cap = s.cap = FakeCapture()
    s.fault(Overcurrent("oc"))
    assert _status(s) == (DeviceState.READY, OVERCURRENT)
    assert s.want_stream is False and cap.stopped and s.cap is None and s._last_beat == clock.t
    assert dm.faults == [(100.0, POWER, OVERCURRENT)]
    s.mon = None
    s.fault(ProtectiveStop("stopped"))
    assert _status(s) == (DeviceState.ERROR, "LPM01A stopped measuring to protect the target: stopped")
    assert s.handle_fault(OSError()) is False


def test_power_capture_end_and_losses(power):
    s, dm = power, power.m
    s._cmd_connect()
    s.fast_check()  # no capture
    cap = s.cap = FakeCapture()
    cap.finished = True
    s.fast_check()  # ended, but nobody wants a stream
    s.want_stream = True
    joins: list = []
    s._pump = SimpleNamespace(join=lambda timeout: joins.append(timeout))
    with pytest.raises(DeviceError) as e:
        s.fast_check()
    assert str(e.value) == "the acquisition ended on its own (end tag)"
    assert joins == [1.0]  # the samples that reached the host go into the stream first, for 1 s at most
    s._pump = None
    cap.error = BufferOverflow("o")
    with pytest.raises(BufferOverflow):
        s.fast_check()
    cap.finished = False
    cap.lost = 2500
    s.state = DeviceState.STREAMING
    s.fast_check()
    text = (
        "2,500 samples lost in transit (corrupted or dropped bytes on the USB link; 2,500 in total): marked as "
        "gaps, streaming continues"
    )
    assert _status(s) == (DeviceState.STREAMING, text) and dm.faults == [(100.0, POWER, text)]
    s.fast_check()
    cap.lost = 2501
    s.fast_check()
    assert (
        dm.fault_count == 2
        and dm.faults[-1][2].startswith("1 samples lost in transit (")
        and "2,501 in" in dm.faults[-1][2]
    )


def test_power_close_of_a_dead_port(power):
    s = power
    s._cmd_connect()
    s.fake.close_error = OSError("dead")
    s.close_link()
    assert s.mon is None
    s.close_link()  # twice: nothing


def test_power_config(power, monkeypatch):
    s, dm = power, power.m
    calls = []
    monkeypatch.setattr(s, "start_stream", lambda: calls.append("start"))
    monkeypatch.setattr(s, "stop_stream", lambda: calls.append("stop"))
    s._cmd_connect()
    v = dm.version
    s._cmd_config(1000.0, "1.8")
    assert (s.rate_hz, s.voltage) == (1000, 1.8) and isinstance(s.rate_hz, int)
    assert (s.details["rate_hz"], s.details["voltage"]) == (1000, 1.8) and calls == [] and dm.version == v + 1
    s.state = DeviceState.STREAMING
    s._cmd_config(10_000, 3.3)
    assert calls == ["stop", "start"] and s.rate_hz == 10_000


# ---------------------------------------------------------------------------------------------------------------
# the manager
# ---------------------------------------------------------------------------------------------------------------
def test_log_and_fault_keep_the_newest(clock):
    dm = _manager()
    _add(dm)
    v = dm.version
    for i in range(205):
        dm.log(f"m{i}")
    assert dm.messages == [f"m{i}" for i in range(5, 205)] and dm.version == v + 205
    for i in range(1003):
        dm.fault(BOARD if i % 2 else "gone:1", f"f{i}")
    assert len(dm.faults) == 1000 and dm.faults[0] == (100.0, BOARD, "f3") and dm.fault_count == 1003
    assert dm.messages[-2:] == ["NUCLEO test: f1001", "gone:1: f1002"]


def test_session_lookup_and_make(clock):
    dm = _manager()
    with pytest.raises(DeviceError) as e:
        dm._session("x")
    assert str(e.value) == "no device 'x' (known: none)"
    b, p = _add(dm), _add(dm, "powershield")
    assert type(b) is D._BoardSession and type(p) is D._PowerSession
    with pytest.raises(DeviceError) as e:
        dm.status("x")
    assert str(e.value) == f"no device 'x' (known: {BOARD}, {POWER})"
    assert dm._session(POWER) is p


def test_first_prefers_connected_devices(clock):
    dm = _manager()
    a = _add(dm, key="board:a")
    b = _add(dm, key="board:b")
    p = _add(dm, "powershield")
    assert dm.first("board").info.key == "board:a"
    a.state, b.state = DeviceState.ERROR, DeviceState.STREAMING
    assert dm.first("board").info.key == "board:b"
    b.state = DeviceState.DISCONNECTED
    assert dm.first("board").info.key == "board:a"
    b.state = DeviceState.CONNECTING
    assert dm.first("board").info.key == "board:b"
    assert dm.first(POWER_MONITOR).info.key == POWER == dm.first("powershield").info.key
    assert dm.first("nothing") is None
    del dm._sessions[POWER]
    assert dm.first(POWER_MONITOR) is None
    assert p.info.kind == "powershield"


def test_power_rates_per_monitor_kind(clock, monkeypatch):
    from tests.boardkit import OtherMonitor, add_other_monitor

    dm = _manager()
    assert dm.power_rates_hz() == LPM01AMonitor.rates_hz
    key = add_other_monitor(dm, monkeypatch)
    assert dm.power_rates_hz() == dm.power_rates_hz(key) == OtherMonitor.rates_hz == (20, 500)
    _add(dm, "powershield")
    assert dm.power_rates_hz(POWER) == (1_000, 10_000, 50_000, 100_000)
    _add(dm)
    with pytest.raises(DeviceError) as e:
        dm.power_rates_hz(BOARD)
    assert str(e.value) == "NUCLEO test is not a power monitor"


def test_configure_checks_and_submits(clock, monkeypatch):
    dm = _manager()
    b, p = _add(dm), _add(dm, "powershield")
    sent = []
    monkeypatch.setattr(b, "submit", lambda *a: sent.append(("board", *a)))
    monkeypatch.setattr(p, "submit", lambda *a: sent.append(("power", *a)))
    with pytest.raises(DeviceError) as e:
        dm.configure_accel(BOARD, 100.0, 4)
    assert str(e.value) == f"accelerometer ODR 100.0 Hz is not one of {D.ACCEL_ODR_HZ}"
    with pytest.raises(DeviceError) as e:
        dm.configure_accel(BOARD, 52.0, 3)
    assert str(e.value) == "accelerometer full scale ±3 g is not one of (2, 4, 8, 16)"
    assert dm.accel_default == (52.0, 4)  # (refused: not remembered for the boards found later)
    dm.configure_accel(BOARD, 12.5, 2)
    dm.configure_accel(BOARD, 1667.0, 16)
    assert dm.accel_default == (1667.0, 16)
    with pytest.raises(DeviceError) as e:
        dm.configure_power(POWER, 2000)
    assert str(e.value) == "power sampling rate 2000 Hz is not one of (1000, 10000, 50000, 100000) (LPM01A)"
    with pytest.raises(DeviceError) as e:
        dm.configure_power(POWER, 1000, 1.79)
    assert str(e.value) == "supply voltage 1.79 V outside 1.8..3.3 V (LPM01A)"
    with pytest.raises(DeviceError) as e:
        dm.configure_power(POWER, 1000, 3.31)
    assert str(e.value) == "supply voltage 3.31 V outside 1.8..3.3 V (LPM01A)"
    dm.configure_power(POWER, 1000, 1.8)
    dm.configure_power(POWER, 100_000)
    assert sent == [
        ("board", "config", 12.5, 2),
        ("board", "config", 1667.0, 16),
        ("power", "config", 1000, 1.8),
        ("power", "config", 100_000, 3.3),
    ]
    v = dm.version
    dm.set_auto_reconnect(BOARD, 0)
    assert b.auto_reconnect is False and dm.version == v + 1
    dm.set_auto_reconnect(BOARD, "yes")
    assert b.auto_reconnect is True and dm.version == v + 2


def test_lost_samples_per_kind(clock):
    dm = _manager()
    assert dm.lost_samples() == {}
    _add(dm, key="board:a").lost_samples = 3
    _add(dm, key="board:b").lost_samples = 4
    _add(dm, "powershield").lost_samples = 5
    assert dm.lost_samples() == {"board": 7, "powershield": 5}


def test_streams_keep_the_timeline_on_a_new_rate(clock):
    dm = _manager(power_recent_s=5.0)
    v = dm.version
    a = dm.ensure_accel_stream(52.0)
    assert (a.name, a.rate_hz, a.channels, a.unit, a.channel_names) == ("accel", 52.0, 3, "m/s²", ("x", "y", "z"))
    assert a.level_sizes()[:2] == [16, 128] and dm.version == v + 1
    assert dm.ensure_accel_stream(52.0) is a and dm.version == v + 1
    a.append(np.zeros((104, 3), np.float32))
    b = dm.ensure_accel_stream(104.0)
    assert b is not a and dm.accel_stream is b and b.duration == 2.0 and b.gaps == [] and dm.version == v + 2
    p = dm.ensure_power_stream(1000, 1.8)
    assert (p.name, p.rate_hz, p.channels, p.unit, p.channel_names, dm.voltage) == (
        "current",
        1000,
        1,
        "A",
        ("I",),
        1.8,
    )
    assert (p.recent_s, p.history_s, a.recent_s, a.history_s) == (5.0, 3600.0, 3600.0, 3600.0)
    assert dm.version == v + 3
    assert dm.ensure_power_stream(1000, 1.8) is p and dm.voltage == 1.8 and dm.version == v + 3
    p.append(np.zeros(500, np.float32))
    # a new supply voltage is a new stream too (energy = charge x one voltage per stream), on the same timeline
    r = dm.ensure_power_stream(1000, 3.0)
    assert r is not p and r.duration == 0.5 and r.gaps == [] and dm.voltage == 3.0 and dm.version == v + 4
    q = dm.ensure_power_stream(10_000, 3.0)
    assert q is not r and q.duration == 0.5 and q.gaps == [] and dm.power_stream is q and dm.version == v + 5
    dm2 = _manager(history_s=120.0, power_recent_s=5.0)
    a2, p2 = dm2.ensure_accel_stream(52.0), dm2.ensure_power_stream(1000, 3.3)
    assert (a2.recent_s, a2.history_s, p2.recent_s, p2.history_s) == (120.0, 120.0, 5.0, 120.0)


# ---------------------------------------------------------------------------------------------------------------
# ports, discovery, the virtual bench
# ---------------------------------------------------------------------------------------------------------------
class FakeEndpoint:
    def __init__(self, url):
        self.url, self.plugged = url, True


class FakeBench:
    def __init__(self, **kw):
        self.kw = kw
        self.endpoints = {"board": FakeEndpoint("socket://b:1"), "powershield": FakeEndpoint("socket://p:1")}
        self.unplugged: list[tuple] = []
        self.kind = "python"

    def start(self):
        return {
            "board": "socket://b:1",
            "board_kind": self.kind,
            "power_monitor": "socket://p:1",
            "power_monitor_kind": "powershield",
        }

    def unplug(self, which, seconds, new_port=False):
        self.unplugged.append((which, seconds, new_port))

    def stop(self):
        pass


def test_the_bench_devices_and_their_ports(clock):
    dm = _manager(bench=True, bench_factory=FakeBench, bench_kwargs={"seed": 3})
    assert dm.start_bench() is True
    assert dm.bench.kw == {"seed": 3}
    s = dm._session("board:virtual")
    assert s.info == DeviceInfo(
        "board:virtual", "board", "socket://b:1", "NUCLEO-L496ZG (virtual: Python emulator)", True
    )
    assert dm._session("powershield:virtual").info == DeviceInfo(
        "powershield:virtual", "powershield", "socket://p:1", "LPM01A (virtual)", True
    )
    assert dm.current_url(s) == "socket://b:1" and dm.messages == []
    dm.bench.endpoints["board"].plugged = False
    assert dm.current_url(s) is None and s.info.url == "socket://b:1"
    ep = dm.bench.endpoints["board"]
    ep.plugged, ep.url = True, "socket://b:2"
    assert dm.current_url(s) == "socket://b:2" and s.info.url == "socket://b:2"
    assert dm.messages == ["NUCLEO-L496ZG (virtual: Python emulator): port is now socket://b:2 (was socket://b:1)"]
    del dm.bench.endpoints["board"]
    assert dm.current_url(s) == "socket://b:2"
    dm.unplug("board:virtual", 2.5, new_port=True)
    dm.unplug("powershield:virtual")
    assert dm.bench.unplugged == [("board", 2.5, True), ("powershield", 1.0, False)]
    b = _add(dm)
    with pytest.raises(DeviceError) as e:
        dm.unplug(BOARD)
    assert str(e.value) == "NUCLEO test is not a virtual device"
    assert dm.current_url(b) == "socket://127.0.0.1:9"  # no serial number: its path as it was
    dm.bench = None
    with pytest.raises(DeviceError) as e:
        dm.unplug("board:virtual")
    assert str(e.value) == "NUCLEO-L496ZG (virtual: Python emulator) is not a virtual device"
    assert dm.current_url(s) == "socket://b:2"


def test_a_bench_without_endpoints_keeps_the_url(clock):
    dm = _manager()
    s = _add(dm, url="socket://v:1", virtual=True)
    assert dm.current_url(s) == "socket://v:1"
    dm.bench = SimpleNamespace()  # a bench (bench_factory) that does not list endpoints
    assert dm.current_url(s) == "socket://v:1" and dm.messages == []


def test_a_qemu_bench_says_so(clock):
    class Qemu(FakeBench):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.kind = "qemu"

    dm = _manager(bench=True, bench_factory=Qemu)
    dm.start_bench()
    assert dm._session("board:virtual").info.name == "NUCLEO-L496ZG (virtual: ODL firmware under QEMU)"


def _port(device, serial, vid_pid="0483:374B"):
    return SimpleNamespace(device=device, serial_number=serial, vid_pid=vid_pid)


def test_discover_lists_real_devices_and_follows_new_paths(clock, monkeypatch):
    import device.monitor as M
    from device import discovery

    nucleos = [_port("/dev/ttyACM0", "066A"), _port("/dev/ttyACM1", None)]
    monitors = [("powershield", _port("/dev/ttyACM2", "LPM1", "0483:5740"))]
    monkeypatch.setattr(discovery, "find_nucleo", lambda: list(nucleos))
    monkeypatch.setattr(M, "find_monitors", lambda: list(monitors))
    dm = _manager(bench_factory=FakeBench)
    dm._bench_mode = None
    got = dm.discover()
    assert got == [
        DeviceInfo(
            "powershield:LPM1", "powershield", "/dev/ttyACM2", "LPM01A /dev/ttyACM2", False, "0483:5740", "LPM1"
        ),
        DeviceInfo("board:066A", "board", "/dev/ttyACM0", "NUCLEO /dev/ttyACM0", False, "0483:374B", "066A"),
        DeviceInfo("board:/dev/ttyACM1", "board", "/dev/ttyACM1", "NUCLEO /dev/ttyACM1", False, "0483:374B", None),
    ]
    assert dm.bench is None  # real devices found: no bench
    s = dm._session("board:066A")
    nucleos[0] = _port("/dev/ttyACM5", "066A")
    v = dm.version
    dm.discover()
    assert dm._session("board:066A") is s
    assert (s.info.url, s.info.name) == ("/dev/ttyACM5", "NUCLEO /dev/ttyACM5") and dm.version == v + 1
    # a port that moved is found again by its serial number when the session reconnects
    nucleos[0] = _port("/dev/ttyACM7", "066A")
    assert dm.current_url(s) == "/dev/ttyACM7" and s.info.url == "/dev/ttyACM7"
    assert dm.messages[-1] == "NUCLEO /dev/ttyACM5: port is now /dev/ttyACM7 (was /dev/ttyACM5)"
    p = dm._session("powershield:LPM1")
    monkeypatch.setattr(LPM01AMonitor, "find", classmethod(lambda cls: [_port("/dev/ttyACM9", "LPM1")]))
    assert dm.current_url(p) == "/dev/ttyACM9"
    monkeypatch.setattr(LPM01AMonitor, "find", classmethod(lambda cls: [_port("/dev/ttyACM3", "other")]))
    assert dm.current_url(p) == "/dev/ttyACM9"  # not there: the path it had

    def broken():
        raise OSError("no ports")

    monkeypatch.setattr(LPM01AMonitor, "find", classmethod(lambda cls: broken()))
    assert dm.current_url(p) == "/dev/ttyACM9"
    monkeypatch.setattr(M, "find_monitors", broken)
    dm.discover()
    assert dm.messages[-1] == "port scan failed: no ports"
    assert dm.bench is not None  # nothing found this time: the bench


@pytest.mark.parametrize(
    "mode,found,bench", [(None, False, True), (None, True, False), (False, False, False), (True, True, True)]
)
def test_discover_starts_the_bench_when_so_configured(clock, monkeypatch, mode, found, bench):
    import device.monitor as M
    from device import discovery

    monkeypatch.setattr(discovery, "find_nucleo", lambda: [_port("/dev/ttyACM0", "1")] if found else [])
    monkeypatch.setattr(M, "find_monitors", lambda: [])
    dm = _manager(bench_factory=FakeBench)
    dm._bench_mode = mode
    keys = {i.key for i in dm.discover()}
    assert (dm.bench is not None) == bench
    assert ("board:virtual" in keys) == bench and ("board:1" in keys) == found


def test_a_bench_that_cannot_start(clock):
    def broken(**kw):
        raise RuntimeError("no sockets")

    dm = _manager(bench_factory=broken)
    assert dm.start_bench() is False
    assert dm.bench_error == "virtual bench unavailable: no sockets" == dm.messages[-1]


# ---------------------------------------------------------------------------------------------------------------
# one pass on the real virtual bench: the fakes above behave like the drivers
# ---------------------------------------------------------------------------------------------------------------
def _wait(cond, timeout, what):
    deadline = real_time.monotonic() + timeout
    while real_time.monotonic() < deadline:
        if cond():
            return
        real_time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s: {what()}")


def test_on_the_virtual_bench():
    dm = DeviceManager(bench=True, bench_kwargs={"board": True})
    try:
        dm.start_bench()
        keys = {s.info.kind: s.info.key for s in dm.snapshot()}
        b, p = keys["board"], keys["powershield"]
        dm.configure_power(p, 1000, 3.3)
        for k in (b, p):
            dm.connect(k)
            dm.set_streaming(k, True)

        def states():
            return [(s.info.key, s.state, s.message) for s in dm.snapshot()]

        _wait(lambda: all(dm.status(k).state == DeviceState.STREAMING for k in (b, p)), 20, states)
        _wait(lambda: dm.accel_stream.n_total > 0 and dm.power_stream.n_total > 0, 10, states)
        st = dm.status(b)
        assert st.message == "" and st.details["emulated"] is True and st.details["odr_hz"] == 52.0
        with dm.board_session(b):
            assert dm.status(b).state == DeviceState.TRAINING
        assert dm.status(b).state == DeviceState.STREAMING
        n = dm.fault_count
        dm.unplug(b, 0.5)
        _wait(lambda: dm.fault_count > n, 5, states)
        assert dm.faults[-1][1:] == (b, USB_BOARD)
        _wait(lambda: dm.status(b).state == DeviceState.STREAMING, 15, states)
        assert dm.status(b).message.startswith("reconnected after ")
        assert dm.status(b).reconnects >= 1
    finally:
        dm.shutdown()


def test_a_board_found_later_starts_at_the_odr_and_full_scale_last_set(clock, monkeypatch):
    """Was: a board found after the Live panel was built (plugged in later, the bench restarted) streamed at
    52 Hz / ±4 g, whatever the Live panel's boxes (and the settings) said, until its ▶ Stream there."""
    dm = _manager()
    assert dm.accel_default == (52.0, 4)
    first = _add(dm)
    assert (first.odr_hz, first.fs_g) == (52.0, 4)
    monkeypatch.setattr(first, "submit", lambda *a: None)
    dm.configure_accel(BOARD, 104, 8)  # (as a caller may give them: an int ODR)
    assert dm.accel_default == (104.0, 8) and type(dm.accel_default[0]) is float
    late = _add(dm, key="board:late", name="NUCLEO late")
    assert (late.odr_hz, late.fs_g) == (104.0, 8) and type(late.odr_hz) is float and type(late.fs_g) is int


def test_configure_accel_keeps_the_odr_of_a_segment_being_recorded(clock, monkeypatch):
    """Was (helper U): a new ODR while a Labelling segment was recorded started a new stream; the segment got
    no sample more (7 s recorded, 2 s saved) without a word.  The rule is the core's, for any caller."""
    from app.core import recording

    dm = _manager()
    b = _add(dm)
    sent: list = []
    monkeypatch.setattr(b, "submit", lambda *a: sent.append(a))
    s = dm.ensure_accel_stream(52.0)
    other = dm.ensure_power_stream(1000, 3.3)
    recs: list = [SimpleNamespace(stream=other, finished=False, rec=SimpleNamespace(name="power 1"))]
    monkeypatch.setattr(recording, "active_recorders", lambda: list(recs))
    dm.configure_accel(BOARD, 104.0, 4)  # a recording of another stream: applied
    recs.append(SimpleNamespace(stream=s, finished=True, rec=SimpleNamespace(name="done")))
    dm.configure_accel(BOARD, 208.0, 4)  # a finished one: applied
    recs.append(SimpleNamespace(stream=s, finished=False, rec=SimpleNamespace(name="Walking #1")))
    with pytest.raises(DeviceError) as e:
        dm.configure_accel(BOARD, 104.0, 4)
    assert str(e.value) == (
        "The ODR stays 52 Hz while 'Walking #1' is being recorded (a recording has one rate): stop it first "
        "(Labelling panel), then change the ODR"
    )
    assert dm.accel_default == (208.0, 4)  # (a refused ODR is not what a board found later starts with)
    dm.configure_accel(BOARD, 52.0, 16)  # the same ODR, another full scale: the same stream, applied
    assert sent == [("config", 104.0, 4), ("config", 208.0, 4), ("config", 52.0, 16)]
    assert D._recorder_of(None) is None
