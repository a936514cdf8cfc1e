"""PowerShield (device/lpm01a/driver.py) against the real LPM01A emulator through an in-process port:
no endpoint thread, no socket, no real-time waits — the mutation target ``lpm01a_driver``.

* The port (:class:`EmuPort`) hands every written line to :meth:`LPM01AEmulator.receive` and reads what
  the emulator transmitted, so a reply is there as soon as the command is written.
* The emulator runs on a hand-stepped clock (:class:`StepClock`, in place of the wall-clock driven
  ``SimClock``): samples exist only when a test moves simulated time on.  Its noise source is replaced by
  :class:`NoNoise`, so readings are the model's values (28.0 °C; the supply read 0.24 % low, ``3292-03``).
* The driver's own waits (reply deadlines, the ``Error detail:`` wait, help's quiet period, the stale
  stream drain) run on :class:`FakeTime`, which the driver's ``time`` module is replaced by: every
  ``monotonic()`` call moves it on by a fixed step, so a timeout is a number of polls, not wall-clock luck.
* Commands during an acquisition are answered by the reader thread in real use; here :class:`StreamPump`
  plays that role synchronously from the port's ``write`` (decode what came, route the acks).
"""

from __future__ import annotations

import logging
import math
import threading
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest
import serial

import device.lpm01a.driver as drv_mod
from device.lpm01a.decode import ACK, ERROR_DETAIL, REPLY_ERROR, StreamEvent, make_decoder
from device.lpm01a.driver import (
    AcquisitionError,
    ArgumentError,
    BufferOverflow,
    CommandRejected,
    Disconnected,
    NotAllowedWhileAcquiring,
    Overcurrent,
    PowerShield,
    PowerShieldError,
    PowerShieldTimeout,
    Reply,
    _AcquisitionOver,
    _norm,
    _parse_value,
    _Pending,
    error_for_event,
)
from device.lpm01a.emulator import HELP_LINES, LPM01AEmulator
from device.monitor import MonitorSettingError, ProtectiveStop

URL = "emu://lpm01a"
UID = "540554545-1430736921-1900587"


# --- the rig ----------------------------------------------------------------------------------------
class StepClock:
    """Simulated time for the emulator, moved on by hand (``clock.t = 0.5``)."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


class FakeTime:
    """Stands in for the driver's ``time`` module: ``monotonic()`` advances ``step`` per call (1000.0 and
    dyadic steps add exactly, so a wait can be made to end exactly at its limit).  A wait that never ends
    fails after ``max_calls`` instead of hanging."""

    def __init__(self, step: float = 0.001, max_calls: int = 200_000) -> None:
        self.t = 1000.0
        self.step = step
        self.calls = 0
        self.max_calls = max_calls
        self.slept: list[float] = []

    def monotonic(self) -> float:
        self.calls += 1
        if self.calls > self.max_calls:
            raise RuntimeError("the driver's wait never ended")
        self.t += self.step
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


class FakeCondition:
    """``threading.Condition`` for the driver's in-stream waits, single-threaded: ``wait(s)`` records ``s`` and
    moves the fake time on by it (the replies were delivered before the wait, from the port's write)."""

    def __init__(self, clock: FakeTime) -> None:
        self.clock = clock
        self.waits: list[float] = []
        WAITS.append(self.waits)

    def __enter__(self) -> "FakeCondition":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        self.clock.t += timeout
        return False

    def notify_all(self) -> None:
        pass


WAITS: list[list[float]] = []  # the waits of every condition made in the current test


class NoNoise:
    """The emulator's noise source without noise: readings are the model's values (28.0 °C, 0.24 % low volts)."""

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: Any = None) -> Any:
        return loc if size is None else np.full(size, loc)

    def standard_normal(self, size: Any = None) -> Any:
        return 0.0 if size is None else np.zeros(size)


class EmuPort:
    """Serial-like port in front of the emulator (write -> receive; read/in_waiting -> advance + pending)."""

    def __init__(self, emu: LPM01AEmulator, clock: StepClock) -> None:
        self.emu, self.clock = emu, clock
        self.timeout: float | None = None
        self.written: list[bytes] = []
        self.flushes = 0
        self.reads: list[tuple[int, float | None]] = []
        self.closed = False
        self.on_write: Callable[[], None] | None = None
        self.fail: BaseException | None = None  # raised by the next write/read
        emu.connect()

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    def write(self, data: bytes) -> int:
        self._check()
        self.written.append(bytes(data))
        self.emu.receive(bytes(data))
        if self.on_write is not None:
            self.on_write()
        return len(data)

    def flush(self) -> None:
        self.flushes += 1

    @property
    def in_waiting(self) -> int:
        self._check()
        self.emu.advance(self.clock.now())
        return len(self.emu.tx)

    def read(self, n: int = 1) -> bytes:
        self._check()
        self.reads.append((n, self.timeout))
        self.emu.advance(self.clock.now())
        out = bytearray()
        while len(out) < n:
            pend = self.emu.pending()
            k = min(n - len(out), len(pend))
            if not k:
                break
            out += bytes(pend[:k])
            self.emu.consume(k)
        return bytes(out)

    def close(self) -> None:
        self.closed = True
        self.emu.disconnect()


class ScriptPort:
    """A port whose device answers each written line from ``replies`` (line -> bytes); nothing otherwise."""

    def __init__(self, replies: dict[str, bytes] | None = None, pending: bytes = b"") -> None:
        self.replies = dict(replies or {})
        self.rx = bytearray(pending)
        self.timeout: float | None = None
        self.written: list[bytes] = []
        self.reads: list[tuple[int, float | None]] = []
        self.closed = False
        self.close_error: BaseException | None = None
        self.read_error: BaseException | None = None
        self.write_error: BaseException | None = None
        self.waiting: int | None = None  # in_waiting override

    def write(self, data: bytes) -> int:
        if self.write_error is not None:
            raise self.write_error
        self.written.append(bytes(data))
        self.rx += self.replies.get(bytes(data).decode().rstrip("\n"), b"")
        return len(data)

    def flush(self) -> None:
        pass

    @property
    def in_waiting(self) -> int:
        if self.read_error is not None:
            raise self.read_error
        return len(self.rx) if self.waiting is None else self.waiting

    def read(self, n: int = 1) -> bytes:
        self.reads.append((n, self.timeout))
        if self.read_error is not None:
            raise self.read_error
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    def close(self) -> None:
        self.closed = True
        if self.close_error is not None:
            raise self.close_error


def ack(text: str) -> bytes:
    return f"\r\nPowerShield > ack {text}\r\n\r\n".encode()


@pytest.fixture(autouse=True)
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """Every test runs the driver on fake time: no wait of a test depends on the machine's load."""
    ft = FakeTime()
    monkeypatch.setattr(drv_mod, "time", ft)
    WAITS.clear()
    fake_threading = SimpleNamespace(RLock=threading.RLock, Lock=threading.Lock, Condition=lambda: FakeCondition(ft))
    monkeypatch.setattr(drv_mod, "threading", fake_threading)
    return ft


@pytest.fixture()
def rig(fake_time: FakeTime) -> SimpleNamespace:
    clock = StepClock()
    emu = LPM01AEmulator(clock, seed=7)
    emu._rng = NoNoise()  # type: ignore[assignment]
    port = EmuPort(emu, clock)
    opened: list[tuple[str, dict[str, Any]]] = []

    def factory(url: str, **kw: Any) -> EmuPort:
        opened.append((url, kw))
        return port

    ps = PowerShield(URL, timeout=2.0, serial_factory=factory)
    return SimpleNamespace(ps=ps, emu=emu, port=port, clock=clock, time=fake_time, opened=opened)


def scripted(replies: dict[str, bytes] | None = None, url: str = URL, **kw: Any) -> tuple[PowerShield, ScriptPort]:
    port = ScriptPort(replies)

    def factory(u: str, **k: Any) -> ScriptPort:
        port.timeout = k["timeout"]
        return port

    return PowerShield(url, serial_factory=factory, **kw), port


def endless_stream() -> tuple[PowerShield, ScriptPort]:
    """A driver on a port that never goes quiet (a shield streaming on and on): every read finds more bytes."""
    ps, port = scripted()
    port.rx += b"g"
    orig = port.read

    def read(n: int = 1) -> bytes:
        port.rx += b"more"
        return orig(n)

    port.read = read  # type: ignore[method-assign]
    return ps, port


def sent(port: EmuPort | ScriptPort) -> list[str]:
    return [w.decode() for w in port.written]


class StreamPump:
    """The capture reader thread's part, run from the port's write: decode the stream, route the replies to
    the waiting command, hand the port back at ``Acquisition completed``."""

    def __init__(self, r: SimpleNamespace, fmt: str, leftover: bytes, rate: int) -> None:
        self.r, self.dec = r, make_decoder(fmt, rate)
        self.events: list[StreamEvent] = []
        self.extra: list[StreamEvent] = []  # delivered after the decoded ones, once
        self.ended = False
        self.feed(leftover)
        r.port.on_write = self.pump

    def feed(self, data: bytes) -> None:
        out = self.dec.feed(data)
        for ev in out.events:
            self.events.append(ev)
            if ev.kind in (ACK, REPLY_ERROR, ERROR_DETAIL) or ev.kind in drv_mod._FRAME_ACK:
                self.r.ps.deliver_stream_event(ev)
        if self.dec.done and not self.ended:
            self.ended = True
            self.r.ps.end_acquisition(self.dec.take_trailing())

    def pump(self) -> None:
        if self.r.ps.state != "acquiring" or self.ended:
            return
        while True:
            data = self.r.ps.read_raw()
            if not data:
                break
            self.feed(data)
        for ev in self.extra:
            self.r.ps.deliver_stream_event(ev)
        self.extra = []


def start_stream(r: SimpleNamespace, fmt: str, hz: int = 1000, acqtime: float = 0.0) -> StreamPump:
    r.ps.configure(freq=hz, fmt=fmt, acqtime=acqtime, volt=None)
    leftover = r.ps.begin_acquisition()
    return StreamPump(r, fmt, leftover, hz)


# --- errors and small helpers -----------------------------------------------------------------------
def test_command_rejected_message_names_the_line_and_the_detail():
    e = CommandRejected("freq", "bad rate", "freq 3k")
    assert (e.cmd, e.detail, e.line) == ("freq", "bad rate", "freq 3k")
    assert str(e) == "PowerShield rejected 'freq 3k': bad rate"
    assert str(CommandRejected("freq")) == "PowerShield rejected 'freq' (no detail given)"
    assert (CommandRejected("freq").detail, CommandRejected("freq").line) == ("", "")


@pytest.mark.parametrize(
    "code,text,cls,msg",
    [
        (
            "overcurrent",
            "error: Overcurrent",
            Overcurrent,
            "PowerShield stopped the acquisition at sample 12: error: Overcurrent",
        ),
        (
            "overflow",
            "error: Tx overflow",
            BufferOverflow,
            "PowerShield stopped the acquisition at sample 12: error: Tx overflow",
        ),
        ("voltage", "", AcquisitionError, "PowerShield stopped the acquisition at sample 12: voltage"),
    ],
)
def test_error_for_event_maps_the_device_error_to_its_exception(code, text, cls, msg):
    exc = error_for_event(StreamEvent("error", 12, text, code=code))
    assert type(exc) is cls and str(exc) == msg


def test_overcurrent_is_a_protective_stop_and_argument_error_a_setting_error():
    assert issubclass(Overcurrent, ProtectiveStop) and issubclass(ArgumentError, MonitorSettingError)


def test_norm_lowercases_and_maps_the_currthres_alias():
    assert _norm("CurrThres") == "currthre"
    assert _norm("VERSION") == "version"


@pytest.mark.parametrize(
    "token,value",
    [
        ("3292-03", 3.292),
        ("1234+02", 123400.0),
        (" 28.0 ", 28.0),
        ("3300m", 3.3),
        ("12-3", 0.012),
        ("1234567", 1234567.0),
    ],
)
def test_parse_value_reads_the_shields_number_syntaxes(token, value):
    assert _parse_value(token, "volt get") == pytest.approx(value, rel=1e-12)


def test_parse_value_names_the_command_when_the_token_is_not_a_number():
    with pytest.raises(PowerShieldError, match=r"^cannot read the value in the reply to 'volt get': 'abc'$"):
        _parse_value("abc", "volt get")


def test_pending_is_done_on_a_reply_an_error_or_a_rejection_with_detail():
    p = _Pending("volt", "volt get")
    assert (p.name, p.line, p.reply, p.rejected_at, p.detail, p.error) == ("volt", "volt get", None, None, "", None)
    assert not p.done()
    p.rejected_at = 1.0
    assert not p.done()  # an error line alone: its detail may still come
    p.detail = "why"
    assert p.done()
    q = _Pending("temp", "temp")
    q.reply = Reply("temp")
    assert q.done()
    e = _Pending("temp", "temp")
    e.error = RuntimeError("x")
    assert e.done()


# --- port -------------------------------------------------------------------------------------------
def test_open_uses_the_shields_serial_settings(rig):
    assert rig.opened == [
        (
            URL,
            dict(
                baudrate=3_686_400,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                xonxoff=False,
                rtscts=False,
                dsrdtr=False,
                timeout=0.02,
                write_timeout=2.0,
            ),
        )
    ]
    assert rig.ps.state == "unknown" and rig.ps.port is rig.port


def test_default_reply_timeout_is_two_seconds():
    ps, port = scripted()
    assert ps.timeout == 2.0


def test_open_write_timeout_is_at_least_one_second():
    seen: list[dict[str, Any]] = []
    PowerShield(URL, timeout=0.1, read_timeout=0.005, serial_factory=lambda u, **k: seen.append(k) or ScriptPort())
    assert seen[0]["write_timeout"] == 1.0 and seen[0]["timeout"] == 0.005


def test_constructor_without_open_leaves_the_port_closed():
    calls: list[str] = []
    ps = PowerShield(URL, timeout=3, serial_factory=lambda u, **k: calls.append(u) or ScriptPort(), open_now=False)
    assert calls == [] and ps.port is None and ps.state == "closed"
    assert (ps.url, ps.timeout, ps.read_timeout, ps.settings, ps.firmware, ps.uid) == (URL, 3.0, 0.02, {}, None, None)
    assert isinstance(ps.timeout, float) and ps.block_size == 16384


@pytest.mark.parametrize(
    "exc", [OSError("no such port"), serial.SerialException("no such port"), ValueError("no such port")]
)
def test_open_failure_is_a_clear_disconnected(exc):
    def factory(url: str, **kw: Any) -> Any:
        raise exc

    with pytest.raises(Disconnected) as info:
        PowerShield(URL, serial_factory=factory)
    assert str(info.value) == "cannot open PowerShield port 'emu://lpm01a': no such port"
    assert info.value.__cause__ is exc


def test_open_discards_bytes_left_from_before():
    ps, port = scripted()
    ps._rx += b"stale"
    ps.state = "host"
    ps.open()
    assert ps._rx == b"" and ps.state == "unknown"


def test_close_closes_the_port_once_and_ignores_its_errors():
    ps, port = scripted()
    port.close_error = OSError("gone")
    ps.close()
    assert port.closed and ps.port is None and ps.state == "closed"
    ps.close()  # already closed: nothing to do


def test_context_manager_returns_the_driver_and_closes_it():
    ps, port = scripted()
    with ps as d:
        assert d is ps
    assert port.closed and ps.state == "closed"


def test_read_raw_reads_what_is_waiting_at_least_one_byte_at_most_a_mebibyte():
    ps, port = scripted()
    port.rx += b"abcdef"
    assert ps.read_raw() == b"abcdef" and port.reads[-1][0] == 6
    assert ps.read_raw() == b"" and port.reads[-1][0] == 1
    port.waiting = 5 << 20
    ps.read_raw()
    assert port.reads[-1][0] == 1 << 20


def test_read_raw_on_a_socket_reads_one_block():
    ps, port = scripted(url="socket://127.0.0.1:9")
    port.rx += b"x" * 20000
    assert ps.read_raw() == b"x" * 16384 and port.reads == [(16384, 0.02)]


def test_read_raw_of_a_closed_port_raises_disconnected():
    ps, port = scripted()
    ps.close()
    with pytest.raises(Disconnected, match=r"^PowerShield port 'emu://lpm01a' is closed$"):
        ps.read_raw()


@pytest.mark.parametrize(
    "exc", [OSError("EIO"), TypeError("EIO"), AttributeError("EIO"), serial.SerialException("EIO")]
)
@pytest.mark.parametrize("url", [URL, "socket://127.0.0.1:9"])
def test_read_raw_port_error_marks_the_driver_closed(exc, url):
    ps, port = scripted(url=url)
    port.read_error = exc
    with pytest.raises(Disconnected) as info:
        ps.read_raw()
    assert str(info.value) == f"PowerShield on {url!r} disconnected: EIO" and ps.state == "closed"


def test_socket_reply_read_blocks_for_one_byte_then_takes_the_rest_without_waiting():
    ps, port = scripted({"version": ack("version: 1.0.7")}, url="socket://127.0.0.1:9")
    assert ps.version() == "1.0.7"
    assert port.reads[:2] == [(1, 0.02), (1 << 16, 0)]
    assert port.timeout == 0.02  # restored


def test_socket_reply_read_returns_nothing_when_the_first_byte_does_not_come():
    ps, port = scripted(url="socket://127.0.0.1:9")
    assert ps._read_reply_bytes() == b"" and port.reads == [(1, 0.02)]


def test_socket_reply_read_errors_and_closed_port():
    ps, port = scripted(url="socket://127.0.0.1:9")
    port.read_error = OSError("reset")
    with pytest.raises(Disconnected, match=r"^PowerShield on 'socket://127.0.0.1:9' disconnected: reset$"):
        ps._read_reply_bytes()
    assert ps.state == "closed"
    ps.close()
    with pytest.raises(Disconnected, match=r"^PowerShield port 'socket://127.0.0.1:9' is closed$"):
        ps._read_reply_bytes()


def test_write_sends_the_line_with_a_newline_and_flushes(rig):
    rig.ps._write("version")
    assert rig.port.written == [b"version\n"] and rig.port.flushes == 1


def test_write_errors():
    ps, port = scripted()
    port.write_error = serial.SerialTimeoutException("slow")
    with pytest.raises(PowerShieldTimeout, match=r"^writing 'htc' to 'emu://lpm01a' timed out$"):
        ps._write("htc")
    assert ps.state == "unknown"
    port.write_error = OSError("EPIPE")
    with pytest.raises(Disconnected, match=r"^PowerShield on 'emu://lpm01a' disconnected while sending 'htc': EPIPE$"):
        ps._write("htc")
    assert ps.state == "closed"
    ps.close()
    with pytest.raises(Disconnected, match=r"^PowerShield port 'emu://lpm01a' is closed$"):
        ps._write("htc")


# --- reply grammar ----------------------------------------------------------------------------------
def test_idle_identity_commands(rig):
    ps = rig.ps
    assert ps.powershield() == UID and ps.uid == UID
    assert ps.version() == "1.0.7" and ps.firmware == "1.0.7"
    assert ps.status() == "ok"
    ps.htc()
    assert ps.range() == "1000-10 5000-05"  # 100 nA .. 50 mA
    assert sent(rig.port) == ["powershield\n", "version\n", "status\n", "htc\n", "range\n"]


def test_htc_takes_host_control_and_hrc_releases_it(rig):
    ps = rig.ps
    ps.htc()
    assert ps.state == "host" and rig.emu.state.value == "idle"
    ps.hrc()
    assert ps.state == "unknown" and rig.emu.state.value == "standalone"


def test_a_raw_htc_command_also_marks_host_control(rig):
    assert rig.ps.command("htc") == Reply("htc", "")
    assert rig.ps.state == "host"


def test_acks_of_other_commands_do_not_change_the_state(rig):
    rig.ps.command("version")
    assert rig.ps.state == "unknown"
    rig.ps.state = "closed"
    rig.ps.command("version")
    assert rig.ps.state == "closed"


def test_reply_lines_are_cleaned_of_nuls_and_stale_lines_are_kept_as_unsolicited():
    ps, port = scripted(
        {"version": b"old line\r\nPowerShield > ack temp degc 28.0\r\n\r\n\x00PowerShield > ack\x00 version: 1.0.7\r\n"}
    )
    assert ps.version() == "1.0.7"
    assert list(ps.unsolicited) == ["old line", "PowerShield > ack temp degc 28.0"]


def test_a_reply_split_over_reads_is_put_together():
    ps, port = scripted()
    port.replies["version"] = b""
    chunks = [b"\r\nPowerShield > ack ver", b"sion: 1.0.", b"7\r\n"]
    orig = port.read

    def read(n: int = 1) -> bytes:
        if chunks:
            port.rx += chunks.pop(0)
        return orig(n)

    port.read = read  # type: ignore[method-assign]
    assert ps.version() == "1.0.7"


def test_completed_banner_while_waiting_hands_the_state_back_to_host():
    ps, port = scripted()
    port.rx += b"PowerShield > Acquisition completed\r\n" + ack("version: 1.0.7")
    ps.state = "acquiring"
    assert ps._await_reply("version", "version", 1.0) == Reply("version", "1.0.7")
    assert ps.state == "host" and list(ps.unsolicited) == ["PowerShield > Acquisition completed"]


def test_completed_banner_when_not_acquiring_keeps_the_state():
    ps, port = scripted({"version": b"PowerShield > Acquisition completed\r\n" + ack("version: 1.0.7")})
    ps.version()
    assert ps.state == "unknown"


def test_command_line_must_be_printable_ascii():
    ps, port = scripted()
    for bad in ("", "   ", "freq 1k\nstart", "echo \x7f", "echo \x1fx"):
        with pytest.raises(ArgumentError) as info:
            ps.command(bad)
        assert str(info.value) == f"command line {bad.strip()!r} must be non-empty printable ASCII without line breaks"
    assert port.written == []


def test_command_line_edges_of_printable_ascii_are_sent(rig):
    assert rig.ps.echo("a ~b") == "a ~b"
    assert sent(rig.port) == ["echo a ~b\n"]


def test_command_strips_the_line_and_matches_the_ack_case_insensitively(rig):
    rig.ps.htc()
    assert rig.ps.command("  currthres 1m  ") == Reply("currthre", "1m")  # the FW-help spelling, same command
    assert sent(rig.port)[-1] == "currthres 1m\n" and rig.emu.settings.currthre == 1e-3
    ps, port = scripted({"CALIB": ack("Calib")})
    assert ps.command("CALIB") == Reply("calib", "")


def test_uppercase_command_rejected_by_the_shield_is_matched_by_name(rig):
    with pytest.raises(CommandRejected) as info:
        rig.ps.command("VERSION")
    assert info.value.cmd == "version" and info.value.detail == "unknown command 'VERSION' (see help)"
    assert str(info.value) == "PowerShield rejected 'VERSION': unknown command 'VERSION' (see help)"


def test_rejection_carries_the_detail_and_the_next_reply_is_in_step(rig):
    rig.ps.htc()
    with pytest.raises(CommandRejected) as info:
        rig.ps.command("freq 3k")
    assert info.value.detail == (
        "freq '3k': must be one of 100k, 50k, 20k, 10k, 5k, 2k, 1k, 500, 200, 100, 50, 20, 10, 5, 2, 1 Hz"
    )
    assert info.value.line == "freq 3k" and info.value.cmd == "freq"
    assert rig.ps.version() == "1.0.7"


def test_error_without_a_command_name_answers_the_waiting_command():
    ps, port = scripted({"calib": b"PowerShield > error\r\nError detail: busy\r\n"})
    with pytest.raises(CommandRejected) as info:
        ps.calib()
    assert (info.value.cmd, info.value.detail) == ("calib", "busy")


def test_error_of_another_command_is_not_ours():
    ps, port = scripted({"calib": b"PowerShield > error freq 3k\r\nError detail: x\r\n" + ack("calib")})
    ps.calib()
    assert list(ps.unsolicited) == ["PowerShield > error freq 3k", "Error detail: x"]


def test_ack_of_another_command_is_not_ours():
    ps, port = scripted({"calib": ack("version: 1.0.7") + ack("calib")})
    assert ps.command("calib") == Reply("calib", "")
    assert list(ps.unsolicited) == ["PowerShield > ack version: 1.0.7"]


def test_error_without_detail_waits_half_a_second_for_it(fake_time):
    ps, port = scripted({"calib": b"PowerShield > error calib\r\n"})
    t0 = fake_time.t
    with pytest.raises(CommandRejected) as info:
        ps.calib()
    assert str(info.value) == "PowerShield rejected 'calib' (no detail given)"
    assert 0.5 <= fake_time.t - t0 < 0.52


def test_error_detail_wait_ends_at_the_command_deadline(fake_time):
    ps, port = scripted({"calib": b"PowerShield > error calib\r\n"})
    t0 = fake_time.t
    with pytest.raises(CommandRejected):
        ps.command("calib", timeout=0.2)
    assert 0.2 <= fake_time.t - t0 < 0.22


def test_error_followed_by_another_reply_puts_that_line_back():
    ps, port = scripted({"calib": b"PowerShield > error calib\r\n\r\nPowerShield > ack version: 1.0.7\r\nmore\r\n"})
    with pytest.raises(CommandRejected) as info:
        ps.calib()
    assert info.value.detail == ""
    assert ps._rx == b"PowerShield > ack version: 1.0.7\nmore\r\n"
    assert ps._await_reply("version", "version", 1.0) == Reply("version", "1.0.7")


def test_no_reply_times_out_after_the_drivers_timeout(fake_time):
    ps, port = scripted(timeout=0.05)
    t0 = fake_time.t
    with pytest.raises(
        PowerShieldTimeout, match=r"^no reply to 'version' from 'emu://lpm01a' \(waited 0.05 s or more\)$"
    ):
        ps.command("version")
    assert 0.05 <= fake_time.t - t0 < 0.06


@pytest.mark.parametrize("line,seconds", [("help", 3.0), ("calib", 30.0), ("volt get", 10.0), ("autotest", 60.0)])
def test_long_commands_wait_longer(fake_time, line, seconds):
    ps, port = scripted(timeout=0.05)
    t0 = fake_time.t
    with pytest.raises(PowerShieldTimeout):
        ps.command(line)
    assert seconds <= fake_time.t - t0 < seconds + 0.01


def test_explicit_timeout_overrides_the_default(fake_time):
    ps, port = scripted(timeout=5.0)
    t0 = fake_time.t
    with pytest.raises(PowerShieldTimeout):
        ps.command("calib", timeout=0.1)
    assert 0.1 <= fake_time.t - t0 < 0.11


def test_echo_reply_is_the_text_after_echo():
    ps, port = scripted({"echo hi there": b"PowerShield > Echo hi there\r\n"})
    assert ps.command("echo hi there") == Reply("echo", "hi there")


def test_info_lines_answer_only_echo_and_powershield():
    ps, port = scripted({"calib": b"PowerShield > echo x\r\nPowerShield present 1\r\n" + ack("calib")})
    assert ps.command("calib") == Reply("calib", "")
    assert list(ps.unsolicited) == ["PowerShield > echo x", "PowerShield present 1"]


def test_echo_ignores_other_info_lines():
    ps, port = scripted({"echo a": b"PowerShield present 1\r\nPowerShield > echo a\r\n"})
    assert ps.echo("a") == "a" and list(ps.unsolicited) == ["PowerShield present 1"]


def test_powershield_present_line_gives_the_uid():
    ps, port = scripted({"powershield": b"PowerShield > echo z\r\nPowerShield present UID 0123\r\n"})
    assert ps.command("powershield") == Reply("powershield", "PowerShield present UID 0123")
    assert ps.powershield() == "0123" and ps.uid == "0123"
    assert list(ps.unsolicited) == ["PowerShield > echo z", "PowerShield > echo z"]


def test_powershield_without_a_token_keeps_the_text():
    ps, port = scripted({"powershield": ack("powershield :")})
    assert ps.powershield() == ""


def test_help_returns_every_help_line(rig):
    lines = rig.ps.help()
    assert len(lines) == 27
    assert lines[0] == "help                       : list commands"
    assert lines[-1] == "calib                      : self calibration"
    assert lines == list(HELP_LINES)


def test_help_keeps_the_text_of_its_ack_and_stops_after_a_quiet_period(fake_time):
    ps, port = scripted({"help": ack("help: commands") + b"a : b\r\n\x00\r\nc : d\r\n"})
    t0 = fake_time.t
    assert ps.help() == ["commands", "a : b", "c : d"]
    assert 0.2 <= fake_time.t - t0 < 0.23


def test_help_lines_that_arrive_later_extend_the_quiet_period(fake_time):
    ps, port = scripted({"help": ack("help")})
    later = [b"", b"x : 1\r", b"\n", b"", b"y : 2\r\n"]
    orig = port.read

    def read(n: int = 1) -> bytes:
        if later:
            port.rx += later.pop(0)
        return orig(n)

    port.read = read  # type: ignore[method-assign]
    assert ps.help() == ["x : 1", "y : 2"]


def test_help_drain_stops_at_the_deadline(fake_time):
    ps, port = scripted({"help": ack("help")})
    ps.LONG_COMMANDS = {}
    ps.timeout = 0.1
    t0 = fake_time.t
    assert ps.help() == []
    assert fake_time.t - t0 < 0.11


def test_status_reports_ok_or_the_latched_error():
    ps, port = scripted(
        {
            "status": ack("status OK"),
        }
    )
    assert ps.status() == "ok"
    port.replies["status"] = ack("status status ok")
    assert ps.status() == "ok"
    port.replies["status"] = ack("status STATUS OK")
    assert ps.status() == "ok"
    port.replies["status"] = ack("status Xtal fault")
    assert ps.status() == "Xtal fault"
    port.replies["status"] = ack("status error: Tx buffer overflow. Acquisition stopped.")
    assert ps.status() == "error: Tx buffer overflow. Acquisition stopped."
    port.replies["status"] = ack("status status  error: x ")
    assert ps.status() == "error: x"
    port.replies["status"] = ack("status status")
    assert ps.status() == "status"


def test_status_after_an_overflow_reads_and_clears_the_latched_error(rig):
    rig.emu.error = "error: Tx buffer overflow. Acquisition stopped."
    assert rig.ps.status() == "error: Tx buffer overflow. Acquisition stopped."
    assert rig.ps.status() == "ok"


# --- setters ----------------------------------------------------------------------------------------
def test_setters_send_the_protocols_spelling_and_remember_it(rig):
    ps, emu = rig.ps, rig.emu
    ps.htc()
    ps.set_volt(1.8)
    ps.set_freq(100_000)
    ps.set_freq("5 kHz")
    ps.set_acqtime(0.5)
    ps.set_acqmode("stat")
    ps.set_funcmode("high")
    ps.set_output("energy")
    ps.set_format("bin_hexa")
    ps.set_trigsrc("d7")
    ps.set_trigdelay(0.001)
    ps.set_currthre(2e-3)
    ps.set_pwrend(False)
    assert sent(rig.port)[1:] == [
        "volt 1800m\n",
        "freq 100k\n",
        "freq 5k\n",
        "acqtime 500m\n",
        "acqmode stat\n",
        "funcmode high\n",
        "output energy\n",
        "format bin_hexa\n",
        "trigsrc d7\n",
        "trigdelay 1m\n",
        "currthre 2m\n",
        "pwrend off\n",
    ]
    assert ps.settings == {
        "volt": 1.8,
        "freq": 5000,
        "acqtime": 0.5,
        "acqmode": "stat",
        "funcmode": "high",
        "output": "energy",
        "format": "bin_hexa",
        "trigsrc": "d7",
        "trigdelay": 0.001,
        "currthre": 2e-3,
        "pwrend": "off",
    }
    s = emu.settings
    assert (s.volt, s.freq, s.acqtime, s.acqmode, s.funcmode, s.output, s.format, s.trigsrc) == (
        1.8,
        5000,
        0.5,
        "stat",
        "high",
        "energy",
        "bin_hexa",
        "d7",
    )
    assert (s.trigdelay, s.currthre, s.pwrend) == (0.001, 2e-3, "off")


def test_set_freq_accepts_an_int_a_float_and_a_string(rig):
    rig.ps.htc()
    rig.ps.set_freq(1000)
    rig.ps.set_freq(20.0)
    rig.ps.set_freq("100k")
    assert sent(rig.port)[1:] == ["freq 1k\n", "freq 20\n", "freq 100k\n"]
    assert rig.ps.settings["freq"] == 100_000


@pytest.mark.parametrize("value", [3000, "3k"])
def test_set_freq_refuses_a_rate_the_shield_does_not_have(rig, value):
    with pytest.raises(ArgumentError) as info:
        rig.ps.set_freq(value)
    assert str(info.value) == (
        f"freq {str(value)!r}: must be one of 100k, 50k, 20k, 10k, 5k, 2k, 1k, 500, 200, 100, 50, 20, 10, 5, 2, 1 Hz"
    )
    assert rig.port.written == [] and "freq" not in rig.ps.settings


def test_set_freq_refuses_nan(rig):
    with pytest.raises(ArgumentError, match="cannot convert float NaN to integer"):
        rig.ps.set_freq(float("nan"))
    assert rig.port.written == []


@pytest.mark.parametrize("value", [0, None, math.inf])
def test_set_acqtime_zero_none_or_infinite_is_until_stop(rig, value):
    rig.ps.htc()
    rig.ps.set_acqtime(value)
    assert sent(rig.port)[-1] == "acqtime 0\n" and rig.ps.settings["acqtime"] == 0.0
    assert rig.emu.settings.acqtime == 0.0


@pytest.mark.parametrize("value,line", [(100e-6, "acqtime 100u"), (100, "acqtime 100"), (2.5, "acqtime 2500m")])
def test_set_acqtime_finite(rig, value, line):
    rig.ps.htc()
    rig.ps.set_acqtime(value)
    assert sent(rig.port)[-1] == line + "\n" and rig.ps.settings["acqtime"] == value


@pytest.mark.parametrize(
    "call,msg",
    [
        (lambda ps: ps.set_volt(3.4), "volt 3.4 V is out of range: allowed 1.8 .. 3.3 V"),
        (lambda ps: ps.set_volt("abc"), "volt 'abc': not a number"),
        (lambda ps: ps.set_volt(None), "volt None: not a number"),
        (lambda ps: ps.set_volt(math.nan), "volt nan: must be finite"),
        (lambda ps: ps.set_volt(-math.inf), "volt -inf: must be finite"),
        (lambda ps: ps.set_acqtime(1e-6), "acqtime 1e-06 s is out of range: allowed 0.0001 .. 100 s (or 0)"),
        (lambda ps: ps.set_acqtime(101), "acqtime 101 s is out of range: allowed 0.0001 .. 100 s (or 0)"),
        (lambda ps: ps.set_trigdelay(601), "trigdelay 601 s is out of range: allowed 0 .. 600 s (or 0)"),
        (lambda ps: ps.set_currthre(0.06), "currthre 0.06 A is out of range: allowed 1e-07 .. 0.05 A (or 0)"),
        (lambda ps: ps.targrst(2), "targrst 2 s is out of range: allowed 0.001 .. 1 s (or 0)"),
        (lambda ps: ps.set_acqmode("fast"), "acqmode 'fast': must be one of dyn, stat"),
        (lambda ps: ps.set_funcmode("low"), "funcmode 'low': must be one of optim, high"),
        (lambda ps: ps.set_output("power"), "output 'power': must be one of current, energy"),
        (lambda ps: ps.set_format("csv"), "format 'csv': must be one of ascii_dec, bin_hexa"),
        (lambda ps: ps.set_trigsrc("d8"), "trigsrc 'd8': must be one of sw, d7"),
        (lambda ps: ps.set_pwrend("maybe"), "pwrend 'maybe': must be one of on, off"),
        (lambda ps: ps.pwr("maybe"), "pwr 'maybe': must be one of auto, on, off, get"),
        (lambda ps: ps.pwr("on", "loud"), "pwr report 'loud': must be 'status' or 'nostatus'"),
        (lambda ps: ps.temp("kelvin"), "temp 'kelvin': must be one of degc, degf"),
        (lambda ps: ps.autotest("go"), "autotest 'go': must be one of start, status"),
        (lambda ps: ps.autotest("start", "all"), "autotest scope 'all': must be 'stat_all' or 'stat_min'"),
        (lambda ps: ps.eventsrc("d8"), "eventsrc source 'd8': must be 'd7' or 'off'"),
        (lambda ps: ps.eventsrc("d7", "both"), "eventsrc edge 'both': must be 'ris' or 'fal'"),
        (lambda ps: ps.lcd(0, "x"), "lcd line 0: must be 1 or 2"),
        (lambda ps: ps.lcd(3, "x"), "lcd line 3: must be 1 or 2"),
    ],
)
def test_bad_arguments_are_refused_before_sending(rig, call, msg):
    with pytest.raises(ArgumentError) as info:
        call(rig.ps)
    assert str(info.value) == msg
    assert rig.port.written == [] and rig.ps.settings == {}


@pytest.mark.parametrize("text", ["x" * 17, 'say "hi"', "tab\there", "del\x7f"])
def test_lcd_text_must_fit_the_display(rig, text):
    with pytest.raises(ArgumentError) as info:
        rig.ps.lcd(1, text)
    assert str(info.value) == f"lcd text {text!r}: at most 16 printable ASCII characters, no double quote"
    assert rig.port.written == []


def test_lcd_writes_both_lines(rig):
    rig.ps.htc()
    rig.ps.lcd(1, "ODL Studio ~16ch")
    rig.ps.lcd(2, "")
    assert sent(rig.port)[1:] == ['lcd 1 "ODL Studio ~16ch"\n', 'lcd 2 ""\n']
    assert rig.emu.settings.lcd == ["ODL Studio ~16ch", ""]


def test_volt_get_reads_the_measured_supply(rig):
    rig.ps.htc()
    assert rig.ps.volt_get() == pytest.approx(
        3.292, abs=1e-12
    )  # 3.3 V set, the emulator measures 0.24 % low: "3292-03"
    assert sent(rig.port)[-1] == "volt get\n"


def test_volt_get_parses_other_spellings():
    ps, port = scripted({"volt get": ack("volt get 3300m")})
    assert ps.volt_get() == pytest.approx(3.3, abs=1e-12)
    port.replies["volt get"] = ack("volt get: xyz")
    with pytest.raises(PowerShieldError, match=r"^cannot read the value in the reply to 'volt get': 'xyz'$"):
        ps.volt_get()


def test_temp_reads_degrees(rig):
    rig.ps.htc()
    assert rig.ps.temp() == 28.0  # the emulated board is at 28.0 °C
    assert rig.ps.temp("degf") == 82.4
    assert sent(rig.port)[1:] == ["temp degc\n", "temp degf\n"]


def test_pwr_sets_and_reads_the_target_supply(rig):
    ps, emu = rig.ps, rig.emu
    ps.htc()
    assert ps.pwr("off") is None and emu.target_powered is False
    assert ps.pwr("get") == "off"
    assert ps.pwr("on", "status") is None and emu.target_powered is True and emu.settings.pwr_status is True
    assert ps.pwr("auto", "nostatus") is None and emu.settings.pwr_status is False
    assert ps.pwr("get") == "on"
    assert sent(rig.port)[1:] == ["pwr off\n", "pwr get\n", "pwr on status\n", "pwr auto nostatus\n", "pwr get\n"]


def test_set_pwrend_takes_a_bool_or_a_word(rig):
    rig.ps.htc()
    rig.ps.set_pwrend(True)
    rig.ps.set_pwrend("off")
    assert sent(rig.port)[1:] == ["pwrend on\n", "pwrend off\n"] and rig.ps.settings["pwrend"] == "off"


def test_targrst_power_cycles_the_target(rig):
    rig.ps.htc()
    rig.ps.targrst(0.01)
    rig.ps.targrst(0)
    assert sent(rig.port)[1:] == ["targrst 10m\n", "targrst 0\n"]
    assert rig.emu.target_powered is False and "targrst" not in rig.ps.settings


def test_autotest_and_calib(rig):
    rig.ps.htc()
    assert rig.ps.autotest() == "start"
    assert rig.ps.autotest("status", "stat_min") == "status stat_min ok"
    assert rig.ps.autotest("start", "stat_all") == "start stat_all"
    rig.ps.calib()
    assert sent(rig.port) == [
        "htc\n",
        "autotest start\n",
        "autotest status stat_min\n",
        "autotest start stat_all\n",
        "calib\n",
    ]


def test_eventsrc_on_and_off(rig):
    rig.ps.htc()
    rig.ps.eventsrc()
    assert rig.ps.settings["eventsrc"] == ("d7", "ris")
    rig.ps.eventsrc("d7", "fal")
    assert rig.ps.settings["eventsrc"] == ("d7", "fal") and rig.emu.settings.eventsrc is True
    rig.ps.eventsrc("off", "nonsense-ignored")
    assert rig.ps.settings["eventsrc"] is None and rig.emu.settings.eventsrc is False
    assert sent(rig.port)[1:] == ["eventsrc d7 ris\n", "eventsrc d7 fal\n", "eventsrc off\n"]


def test_idle_stop_is_acked_and_a_refused_stop_is_ignored(rig):
    rig.ps.stop()  # standalone: the shield refuses it ("send htc first"), which is fine
    rig.ps.htc()
    rig.ps.stop()
    assert sent(rig.port) == ["stop\n", "htc\n", "stop\n"]
    assert list(rig.ps.unsolicited) == []


def test_stop_during_an_acquisition_must_go_through_the_capture(rig):
    rig.ps.state = "acquiring"
    with pytest.raises(
        PowerShieldError, match=r"^an acquisition is running: stop it through its Capture \(Capture.stop\)$"
    ):
        rig.ps.stop()
    assert rig.port.written == []


def test_htc_timeout_on_a_fresh_port_says_it_may_not_be_a_powershield(fake_time):
    ps, port = scripted(timeout=0.05)
    with pytest.raises(PowerShieldTimeout) as info:
        ps.htc()
    assert str(info.value) == (
        "no reply to 'htc' from 'emu://lpm01a' (waited 0.05 s or more): the device on 'emu://lpm01a' does not "
        "look like an X-NUCLEO-LPM01A (wrong port, another device, or a shield with other firmware)"
    )
    assert info.value.__cause__ is None and ps.state == "unknown"


@pytest.mark.parametrize("state,firmware", [("host", None), ("unknown", "1.0.7")])
def test_htc_timeout_of_a_known_shield_is_a_plain_timeout(fake_time, state, firmware):
    ps, port = scripted(timeout=0.05)
    ps.state, ps.firmware = state, firmware
    with pytest.raises(PowerShieldTimeout) as info:
        ps.htc()
    assert str(info.value) == "no reply to 'htc' from 'emu://lpm01a' (waited 0.05 s or more)"


# --- configure --------------------------------------------------------------------------------------
def test_configure_defaults_set_everything_an_acquisition_relies_on(rig):
    rig.ps.configure()
    assert sent(rig.port) == [
        "htc\n",
        "acqmode dyn\n",
        "output current\n",
        "funcmode optim\n",
        "format bin_hexa\n",
        "freq 1k\n",
        "acqtime 0\n",
        "trigsrc sw\n",
        "volt 3300m\n",
    ]
    assert rig.ps.state == "host"
    assert rig.ps.settings == {
        "acqmode": "dyn",
        "output": "current",
        "funcmode": "optim",
        "format": "bin_hexa",
        "freq": 1000,
        "acqtime": 0.0,
        "trigsrc": "sw",
        "volt": 3.3,
    }


def test_configure_with_every_option(rig):
    rig.ps.configure(
        freq="10k",
        fmt="ascii_dec",
        acqtime=1.0,
        output="energy",
        volt=1.8,
        acqmode="stat",
        funcmode="optim",
        trigsrc="d7",
        trigdelay=0.5,
        eventsrc=("d7", "fal"),
        pwrend=False,
    )
    assert sent(rig.port) == [
        "htc\n",
        "acqmode stat\n",
        "output energy\n",
        "format ascii_dec\n",
        "freq 10k\n",
        "acqtime 1\n",
        "trigsrc d7\n",
        "trigdelay 500m\n",
        "eventsrc d7 fal\n",
        "pwrend off\n",
        "volt 1800m\n",
    ]


def test_configure_without_funcmode_or_volt(rig):
    rig.ps.configure(freq=50, funcmode=None, volt=None, pwrend=True)
    assert sent(rig.port) == [
        "htc\n",
        "acqmode dyn\n",
        "output current\n",
        "format bin_hexa\n",
        "freq 50\n",
        "acqtime 0\n",
        "trigsrc sw\n",
        "pwrend on\n",
    ]


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(fmt="csv"), "format 'csv': must be one of ascii_dec, bin_hexa"),
        (dict(output="power"), "output 'power': must be one of current, energy"),
        (dict(volt=5.0), "volt 5 V is out of range: allowed 1.8 .. 3.3 V"),
        (dict(freq=20_000, output="energy"), "freq 20000 Hz with output energy: energy output allows at most 10000 Hz"),
        (dict(output="energy", funcmode="high"), "funcmode high requires output current"),
        (
            dict(freq=20_000, fmt="ascii_dec", acqtime=0),
            "format ascii_dec at freq 20000 Hz: acqtime infinite is beyond the ASCII throughput limit "
            "(at most 0.5 s, UM2269 Table 2); use format bin_hexa",
        ),
    ],
)
def test_configure_checks_everything_before_sending_anything(rig, kw, msg):
    with pytest.raises(ArgumentError) as info:
        rig.ps.configure(**kw)
    assert str(info.value) == msg
    assert rig.port.written == [] and rig.port.reads == []


def test_configure_refuses_an_unknown_rate_as_a_setting_error():
    ps, port = scripted()
    with pytest.raises(ArgumentError) as info:
        ps.configure(freq="3k")
    assert str(info.value) == (
        "freq '3k': must be one of 100k, 50k, 20k, 10k, 5k, 2k, 1k, 500, 200, 100, 50, 20, 10, 5, 2, 1 Hz"
    )
    assert port.written == [] and port.reads == []


# --- combination rules ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,msg",
    [
        (
            (10_000, "ascii_dec", 1.5),
            "format ascii_dec at freq 10000 Hz: acqtime 1.5 s is beyond the ASCII throughput limit "
            "(at most 1 s, UM2269 Table 2); use format bin_hexa",
        ),
        (
            (20_000, "ascii_dec", 0),
            "format ascii_dec at freq 20000 Hz: acqtime infinite is beyond the ASCII throughput limit "
            "(at most 0.5 s, UM2269 Table 2); use format bin_hexa",
        ),
        (
            (20_000, "ascii_dec", None),
            "format ascii_dec at freq 20000 Hz: acqtime infinite is beyond the ASCII throughput limit "
            "(at most 0.5 s, UM2269 Table 2); use format bin_hexa",
        ),
        (
            (10_000, "ascii_dec", math.inf),
            "format ascii_dec at freq 10000 Hz: acqtime infinite is beyond the ASCII throughput limit "
            "(at most 1 s, UM2269 Table 2); use format bin_hexa",
        ),
        (
            (50_000, "ascii_dec", 0.1),
            "format ascii_dec at freq 50000 Hz: acqtime 0.1 s is beyond the ASCII throughput limit "
            "(not supported at all, UM2269 Table 2); use format bin_hexa",
        ),
        (
            (20_000, "bin_hexa", 1.0, "energy"),
            "freq 20000 Hz with output energy: energy output allows at most 10000 Hz",
        ),
        ((1000, "bin_hexa", 1.0, "energy", "high"), "funcmode high requires output current"),
    ],
)
def test_check_combination_refuses_what_the_shield_cannot_do(args, msg):
    with pytest.raises(ArgumentError) as info:
        PowerShield.check_combination(*args)
    assert str(info.value) == msg


@pytest.mark.parametrize(
    "args",
    [
        (10_000, "ascii_dec", 1.0),
        (20_000, "ascii_dec", 0.5),
        (5000, "ascii_dec", 0),
        (5000, "ascii_dec", None),
        (100_000, "bin_hexa", 0),
        (10_000, "bin_hexa", 1.0, "energy"),
        (1000, "bin_hexa", 1.0, "current", "high"),
        (1000, "bin_hexa", 1.0, "energy", "optim"),
        (10_000, "ascii_dec", 1.0 + 1e-12),  # float noise at the limit is the limit
    ],
)
def test_check_combination_allows_what_the_shield_can_do(args):
    PowerShield.check_combination(*args)


def test_check_combination_output_defaults_to_current():
    PowerShield.check_combination(1000, "bin_hexa", 1.0, funcmode="high")


def test_check_settings_rechecks_what_was_sent():
    ps, port = scripted()
    ps.check_settings()  # nothing sent yet: nothing to check
    ps.settings.update(freq=20_000, format="ascii_dec")  # acqtime defaults to infinite
    with pytest.raises(ArgumentError, match="acqtime infinite"):
        ps.check_settings()
    ps.settings.update(acqtime=0.5)
    ps.check_settings()
    ps.settings.update(output="energy")
    with pytest.raises(ArgumentError, match="energy output allows at most 10000 Hz"):
        ps.check_settings()
    ps.settings.update(freq=1000, format="bin_hexa", funcmode="high")
    with pytest.raises(ArgumentError, match="funcmode high requires output current"):
        ps.check_settings()
    ps.settings.pop("output")
    ps.check_settings()


def test_check_settings_needs_both_rate_and_format():
    ps, port = scripted()
    ps.settings.update(freq=100_000, output="energy")
    ps.check_settings()
    ps.settings = {"format": "ascii_dec", "output": "energy", "funcmode": "high"}
    ps.check_settings()


# --- a stale stream left by a dead host -------------------------------------------------------------
def test_drain_stale_stream_costs_one_read_when_idle(rig):
    assert rig.ps.drain_stale_stream() is False
    assert rig.port.written == [] and len(rig.port.reads) == 1


def test_drain_stale_stream_refuses_while_this_driver_acquires(rig):
    rig.ps.state = "acquiring"
    with pytest.raises(
        NotAllowedWhileAcquiring, match=r"^an acquisition of this driver is running \(stop its Capture\)$"
    ):
        rig.ps.drain_stale_stream()


def test_drain_stale_stream_stops_a_running_acquisition_and_the_next_reply_is_in_step(rig):
    ps, emu = rig.ps, rig.emu
    for line in ("htc", "format bin_hexa", "freq 1k", "acqtime 0", "start"):
        emu.receive(line.encode() + b"\n")
    rig.clock.t = 0.5  # the shield streamed for half a second nobody read
    assert ps.drain_stale_stream(quiet_s=0.05) is True
    assert sent(rig.port) == ["stop\n"]
    assert emu.state.value == "idle"
    assert list(ps.unsolicited)[-1].startswith("discarded a stale stream (") and list(ps.unsolicited)[-1].endswith(
        "+ bytes) before configuring"
    )
    assert ps._rx == b""  # nothing followed the banner
    assert ps.version() == "1.0.7"


def test_drain_stale_stream_counts_the_stale_bytes():
    ps, port = scripted({"stop": b"zz\r\nPowerShield > Acquisition completed\r\nnext"})
    port.rx += b"0123456789"
    assert ps.drain_stale_stream() is True
    assert list(ps.unsolicited) == ["discarded a stale stream (10+ bytes) before configuring"]
    assert ps._rx == b"next" and sent(port) == ["stop\n"]


def test_drain_stale_stream_takes_bytes_already_buffered():
    ps, port = scripted({"stop": b"PowerShield > Acquisition completed\r\n"})
    ps._rx += b"abc"
    assert ps.drain_stale_stream() is True
    assert list(ps.unsolicited) == ["discarded a stale stream (3+ bytes) before configuring"]
    assert ps._rx == b""


def test_drain_stale_stream_banner_without_line_end(fake_time):
    ps, port = scripted({"stop": b"PowerShield > Acquisition completed"})
    port.rx += b"x"
    assert ps.drain_stale_stream() is True
    assert ps._rx == b""


def test_drain_stale_stream_banner_already_in_the_first_bytes(fake_time):
    ps, port = scripted()
    port.rx += b"12\r\nPowerShield > Acquisition completed\r\nPowerShield > ack version: 1.0.7\r\n"
    assert ps.drain_stale_stream() is True
    assert ps._rx == b"PowerShield > ack version: 1.0.7\r\n"


def test_drain_stale_stream_gives_up_after_a_quiet_period(fake_time):
    ps, port = scripted()
    port.rx += b"garbage"
    t0 = fake_time.t
    assert ps.drain_stale_stream() is True  # default: 0.3 s of silence
    assert 0.3 <= fake_time.t - t0 < 0.31 and ps._rx == b""


def test_drain_stale_stream_new_bytes_restart_the_quiet_period(fake_time):
    ps, port = scripted()
    port.rx += b"garbage"
    more = [b"", b"", b"x" * 10, b"", b"y"]
    orig = port.read

    def read(n: int = 1) -> bytes:
        if more:
            port.rx += more.pop(0)
        return orig(n)

    port.read = read  # type: ignore[method-assign]
    t0 = fake_time.t
    assert ps.drain_stale_stream(quiet_s=0.05) is True
    assert 0.05 + 0.005 <= fake_time.t - t0 < 0.07


def test_drain_stale_stream_gives_up_at_its_timeout(fake_time):
    ps, _port = endless_stream()
    t0 = fake_time.t
    assert ps.drain_stale_stream(quiet_s=0.3, timeout=0.1) is True
    assert 0.1 <= fake_time.t - t0 < 0.11


def test_drain_stale_stream_finds_a_banner_split_over_reads(fake_time):
    ps, port = scripted({"stop": b"x" * 5000 + b"PowerShield > Acquisition comp"})
    port.rx += b"s"
    orig = port.read
    later = [b"", b"leted\r\nafter"]

    def read(n: int = 1) -> bytes:
        if not port.rx and later:
            port.rx += later.pop(0)
        return orig(n)

    port.read = read  # type: ignore[method-assign]
    assert ps.drain_stale_stream(quiet_s=1.0) is True
    assert ps._rx == b"after"


# --- acquisition hand-over and commands in the stream ----------------------------------------------
def test_begin_acquisition_hands_the_port_over_with_the_bytes_after_the_ack(rig):
    rig.ps.configure(freq=1000, fmt="ascii_dec", acqtime=0, volt=None)
    leftover = rig.ps.begin_acquisition()
    assert leftover == b"\r\n\r\nTimeStamp: 000s 000ms, buff 00%\r\n"
    assert rig.ps.state == "acquiring" and rig.ps._rx == b"" and sent(rig.port)[-1] == "start\n"
    with pytest.raises(NotAllowedWhileAcquiring, match=r"^an acquisition is already running \(stop it first\)$"):
        rig.ps.begin_acquisition()


def test_begin_acquisition_rechecks_the_settings_first(rig):
    rig.ps.settings.update(freq=20_000, format="ascii_dec", acqtime=0.0)
    with pytest.raises(ArgumentError, match="acqtime infinite"):
        rig.ps.begin_acquisition()
    assert rig.port.written == []


def test_begin_acquisition_waits_the_drivers_timeout(fake_time):
    ps, port = scripted(timeout=0.07)
    with pytest.raises(PowerShieldTimeout, match="no reply to 'start'"):
        ps.begin_acquisition()
    assert ps.state == "unknown"


def test_end_acquisition_gives_the_port_back_with_the_trailing_bytes(rig):
    ps = rig.ps
    ps.state = "acquiring"
    ps._rx += b"rest"
    ps.end_acquisition(b"trail-")
    assert ps.state == "host" and ps._rx == b"trail-rest"
    ps.state = "closed"
    ps.end_acquisition()
    assert ps.state == "closed" and ps._rx == b"trail-rest"


def test_send_stop_writes_stop(rig):
    rig.ps.send_stop()
    assert sent(rig.port) == ["stop\n"]


@pytest.mark.parametrize("fmt", ["ascii_dec", "bin_hexa"])
def test_commands_during_acquisition_are_answered_in_the_stream(rig, fmt):
    pump = start_stream(rig, fmt)
    ps = rig.ps
    rig.clock.t = 0.05
    assert ps.volt_get() == pytest.approx(3.292, abs=1e-12)
    assert ps.temp() == 28.0
    assert ps.pwr("get") == "on"
    assert ps.pwr("off") is None
    assert ps.pwr("get") == "off"
    ps.targrst(0.001)
    assert ps.status() == "ok"
    assert ps.state == "acquiring" and not pump.ended and list(ps._pending) == []


def test_commands_refused_while_acquiring_are_not_sent(rig):
    start_stream(rig, "bin_hexa")
    n = len(rig.port.written)
    with pytest.raises(NotAllowedWhileAcquiring) as info:
        rig.ps.set_freq(1000)
    assert str(info.value) == (
        "'freq' is not accepted while an acquisition runs; allowed: psrst, pwr, status, stop, targrst, temp, volt "
        "(stop first)"
    )
    assert len(rig.port.written) == n


@pytest.mark.parametrize("fmt", ["ascii_dec", "bin_hexa"])
def test_a_command_the_shield_refuses_in_the_stream_carries_its_detail(rig, fmt):
    start_stream(rig, fmt)
    with pytest.raises(CommandRejected) as info:
        rig.ps.command("freq 1k", check=False)
    assert (
        info.value.detail == "freq not allowed during acquisition (allowed: stop, pwr, targrst, volt get, temp, status)"
    )
    assert info.value.line == "freq 1k" and rig.ps.state == "acquiring" and list(rig.ps._pending) == []


def test_in_stream_binary_volt_and_pwr_come_from_frame_values(rig):
    start_stream(rig, "bin_hexa")
    assert rig.ps.volt_get() == 3.292
    rig.ps.pwr("off")
    assert rig.ps.pwr("get") == "off"


def test_in_stream_rejection_without_detail_waits_then_raises(rig):
    pump = start_stream(rig, "ascii_dec")
    pump.extra = [StreamEvent(REPLY_ERROR, 0, "temp degc", cmd="temp")]
    rig.port.on_write = lambda: (rig.emu.tx.clear(), pump.pump())  # only the error line, no detail
    t0 = rig.time.t
    with pytest.raises(CommandRejected) as info:
        rig.ps.temp()
    assert str(info.value) == "PowerShield rejected 'temp degc' (no detail given)"
    assert 0.5 <= rig.time.t - t0 < 0.6  # DETAIL_WAIT_S for the detail that never came


def test_in_stream_reply_that_never_comes_times_out(rig):
    start_stream(rig, "ascii_dec")
    rig.port.on_write = lambda: rig.emu.tx.clear()  # the reply is lost
    rig.time.step = 0.02
    with pytest.raises(PowerShieldTimeout) as info:
        rig.ps.command("temp", timeout=0.1)
    assert str(info.value) == "no in-stream reply to 'temp' from 'emu://lpm01a' within 0.1 s"
    assert list(rig.ps._pending) == []


def test_in_stream_command_when_the_stream_ends_first_reads_the_queued_reply(rig):
    pump = start_stream(rig, "bin_hexa", hz=1000, acqtime=0.01)
    rig.clock.t = 0.5  # acqtime is over: the shield queues the command until its stream is drained
    assert rig.ps.temp() == 28.0  # answered after "Acquisition completed", as an ordinary ASCII reply
    assert pump.ended and rig.ps.state == "host"
    assert rig.ps.version() == "1.0.7"


def test_in_stream_error_of_the_acquisition_is_raised_to_the_waiting_command(rig):
    pump = start_stream(rig, "ascii_dec")
    rig.port.on_write = lambda: (rig.emu.tx.clear(), rig.ps.fail_pending(Disconnected("port lost")))
    with pytest.raises(Disconnected, match="^port lost$"):
        rig.ps.temp()
    assert pump is not None


def test_in_stream_rejection_after_the_stream_ended_is_a_rejection(rig):
    start_stream(rig, "ascii_dec")

    def answer() -> None:
        rig.emu.tx.clear()
        rig.ps.deliver_stream_event(StreamEvent(REPLY_ERROR, 0, "temp degc", cmd="temp"))
        rig.ps.deliver_stream_event(StreamEvent(ERROR_DETAIL, 0, "busy"))
        rig.ps.fail_pending(_AcquisitionOver("over"))

    rig.port.on_write = answer
    with pytest.raises(CommandRejected) as info:
        rig.ps.temp()
    assert info.value.detail == "busy"


def test_in_stream_reply_that_came_before_the_stream_ended_is_kept(rig):
    start_stream(rig, "ascii_dec")

    def answer() -> None:
        rig.emu.tx.clear()
        rig.ps.deliver_stream_event(StreamEvent(ACK, 0, "temp degc 30.5", cmd="temp"))
        rig.ps.end_acquisition()

    rig.port.on_write = answer
    assert rig.ps.temp() == 30.5 and rig.ps.state == "host"


def test_deliver_stream_event_routes_each_kind_to_its_command():
    ps, port = scripted()
    assert ps.deliver_stream_event(StreamEvent(ACK, 0, "temp degc 28.0", cmd="temp")) is False  # nobody waits
    volt, temp, pwr, targ, status = (
        _Pending("volt", "volt get"),
        _Pending("temp", "temp"),
        _Pending("pwr", "pwr get"),
        _Pending("targrst", "targrst 1m"),
        _Pending("status", "status"),
    )
    ps._pending.extend([volt, temp, pwr, targ, status])
    assert ps.deliver_stream_event(StreamEvent("volt", 5, "volt", value=3.291)) is True
    assert volt.reply == Reply("volt", "volt", value=3.291)
    assert ps.deliver_stream_event(StreamEvent("temp", 5, "t", value=28.0)) is True
    assert temp.reply == Reply("temp", "t", value=28.0)
    assert ps.deliver_stream_event(StreamEvent("pwr", 5, "p", value=0.0)) is True
    assert pwr.reply == Reply("pwr", "p", value=0.0)
    assert ps.deliver_stream_event(StreamEvent("targrst", 5, "")) is True
    assert targ.reply == Reply("targrst", "", value=None)
    assert ps.deliver_stream_event(StreamEvent(ACK, 5, "Status: ok", cmd="status")) is True
    assert status.reply == Reply("status", "ok")
    assert ps.deliver_stream_event(StreamEvent("timestamp", 5, "x")) is False


def test_deliver_stream_event_ignores_replies_of_commands_nobody_waits_for():
    ps, port = scripted()
    p = _Pending("temp", "temp")
    ps._pending.append(p)
    assert ps.deliver_stream_event(StreamEvent(ACK, 0, "volt get 3292-03", cmd="volt")) is False
    assert ps.deliver_stream_event(StreamEvent("volt", 0, "", value=3.3)) is False
    assert ps.deliver_stream_event(StreamEvent(REPLY_ERROR, 0, "volt x", cmd="volt")) is False
    assert ps.deliver_stream_event(StreamEvent(ERROR_DETAIL, 0, "why")) is False  # no command was rejected
    assert (p.reply, p.rejected_at, p.detail) == (None, None, "")


def test_deliver_stream_event_ack_alias_and_error_routing(fake_time):
    ps, port = scripted()
    a, b = _Pending("currthre", "currthres 1m"), _Pending("temp", "temp")
    ps._pending.extend([a, b])
    assert ps.deliver_stream_event(StreamEvent(ACK, 0, "currthres 1m", cmd="currthres")) is True
    assert a.reply == Reply("currthre", "1m")
    ps._pending.remove(a)
    assert ps.deliver_stream_event(StreamEvent(REPLY_ERROR, 0, "", cmd="")) is True  # no name: the first waiting
    assert b.rejected_at == fake_time.t and b.detail == ""
    assert ps.deliver_stream_event(StreamEvent(ERROR_DETAIL, 0, "")) is True
    assert b.detail == "(empty detail)"
    assert ps.deliver_stream_event(StreamEvent(ERROR_DETAIL, 0, "again")) is False  # b already has its detail


def test_deliver_stream_event_error_goes_to_the_named_command():
    ps, port = scripted()
    a, b = _Pending("temp", "temp"), _Pending("volt", "volt get")
    ps._pending.extend([a, b])
    assert ps.deliver_stream_event(StreamEvent(REPLY_ERROR, 0, "volt get", cmd="volt")) is True
    assert a.rejected_at is None and b.rejected_at is not None
    assert ps.deliver_stream_event(StreamEvent(ERROR_DETAIL, 0, "no")) is True
    assert (a.detail, b.detail) == ("", "no")


def test_fail_pending_wakes_only_the_unanswered_commands():
    ps, port = scripted()
    a, b = _Pending("temp", "temp"), _Pending("volt", "volt get")
    b.reply = Reply("volt", "3.3")
    ps._pending.extend([a, b])
    err = Disconnected("gone")
    ps.fail_pending(err)
    assert a.error is err and b.error is None


def test_end_acquisition_fails_pending_commands_with_acquisition_over():
    ps, port = scripted()
    a = _Pending("temp", "temp")
    ps._pending.append(a)
    ps.end_acquisition()
    assert type(a.error) is _AcquisitionOver and str(a.error) == "the acquisition ended before the reply arrived"


def test_reply_last_token():
    assert Reply("version", "version: 1.0.7").last_token == "1.0.7"
    assert Reply("x").last_token == ""


# --- edges the survivors of the first mutation run showed ------------------------------------------
def test_a_line_end_first_in_the_buffer_is_an_empty_line():
    ps, port = scripted({"version": b"\nPowerShield > ack version: 1.0.7\n"})
    assert ps.version() == "1.0.7"


def test_stale_lines_are_kept_as_received_apart_from_nuls_and_line_ends():
    ps, port = scripted({"calib": b"\txl\x00d\t \r\nXXL size\r\nbad \xb0C\r\n" + ack("calib")})
    ps.calib()
    assert list(ps.unsolicited) == ["\txld\t", "XXL size", "bad \ufffdC"]


def test_unsolicited_keeps_the_last_200_lines():
    junk = b"".join(f"junk {i}\r\n".encode() for i in range(250))
    ps, port = scripted({"calib": junk + ack("calib")})
    ps.calib()
    assert len(ps.unsolicited) == 200 and ps.unsolicited[0] == "junk 50" and ps.unsolicited[-1] == "junk 249"


def test_unsolicited_lines_are_logged(caplog):
    ps, port = scripted({"calib": b"old line\r\n" + ack("calib")})
    with caplog.at_level(logging.DEBUG, logger="device.lpm01a.driver"):
        ps.calib()
    assert [r.getMessage() for r in caplog.records] == ["unsolicited line while waiting for 'calib': 'old line'"]


def test_htc_on_a_port_marked_closed_takes_host_control():
    ps, port = scripted({"htc": ack("htc")})
    ps.state = "closed"
    ps.command("htc")
    assert ps.state == "host"


def test_ack_data_is_kept_as_sent_after_the_command_name():
    ps, port = scripted({"calib": ack("calib: Xray: done ")})
    assert ps.command("calib") == Reply("calib", "Xray: done")


def test_error_detail_wait_puts_back_a_line_with_a_byte_that_is_not_ascii():
    ps, port = scripted({"calib": b"PowerShield > error calib\r\n\xb0C\r\n"})
    with pytest.raises(CommandRejected):
        ps.calib()
    assert ps._rx == b"?C\n"


def test_help_lines_keep_their_text(fake_time):
    ps, port = scripted({"help": b"PowerShield > ack help\n\nXYZ : x\t\r\ntemp : \xb0C\r\n"})
    assert ps.help() == ["XYZ : x\t", "temp : \ufffdC"]


def test_zero_timeout_gives_up_at_once_when_time_stands_still(fake_time):
    fake_time.step = 0.0
    ps, port = scripted()
    with pytest.raises(PowerShieldTimeout):
        ps.command("version", timeout=0)


def test_drain_lines_quiet_period_ends_exactly_at_its_length(fake_time):
    fake_time.step = 0.25  # exact: 1000.25, 1000.5, ...
    ps, port = scripted()
    assert ps._drain_lines(0.75, 2000.0) == []
    # last = 1000.25; polls at 1000.5 (0.25 quiet), 1001.0 (0.75: over): one read
    assert len(port.reads) == 1


def test_drain_lines_stops_exactly_at_the_deadline(fake_time):
    fake_time.step = 0.25
    ps, port = scripted()
    assert ps._drain_lines(10.0, 1000.75) == []  # last = 1000.25; 1000.5 quiet, 1000.75 is the deadline
    assert port.reads == []


def test_drain_stale_stream_quiet_period_ends_exactly_at_its_length(fake_time):
    fake_time.step = 0.25
    ps, port = scripted()
    port.rx += b"g"
    assert ps.drain_stale_stream(quiet_s=0.5, timeout=100.0) is True
    # deadline 1100.25, last = 1000.5; 1000.75 < deadline, 1001.0 - last = 0.5: quiet over, no read
    assert port.reads == [(1, 0.02)]


def test_drain_stale_stream_stops_exactly_at_its_timeout(fake_time):
    fake_time.step = 0.25
    ps, port = scripted()
    port.rx += b"g"
    assert ps.drain_stale_stream(quiet_s=100.0, timeout=0.5) is True
    # deadline = 1000.25 + 0.5; the first poll is at 1000.75: over
    assert port.reads == [(1, 0.02)]


def test_drain_stale_stream_default_timeout_is_ten_seconds(fake_time):
    ps, _port = endless_stream()
    t0 = fake_time.t
    assert ps.drain_stale_stream() is True
    assert 10.0 <= fake_time.t - t0 < 10.01


def test_drain_stale_stream_uses_the_last_banner():
    ps, port = scripted()
    port.rx += b"Acquisition completed\r\nA\r\nAcquisition completed\r\nB"
    assert ps.drain_stale_stream() is True
    assert ps._rx == b"B"


def test_drain_stale_stream_looks_for_the_banner_in_the_last_64_bytes_read_first(fake_time):
    ps, port = scripted()
    port.rx += b"Acquisition completed\n" + b"x" * 43  # the banner starts 65 bytes from the end
    assert ps.drain_stale_stream(quiet_s=0.01) is True
    assert ps._rx == b"" and sent(port) == ["stop\n"]


def test_drain_stale_stream_looks_for_the_banner_in_the_last_4096_bytes(fake_time):
    ps, port = scripted({"stop": b"Acquisition completed\n" + b"y" * 4075})  # 1 + 4097 bytes with the first
    port.rx += b"s"
    assert ps.drain_stale_stream(quiet_s=0.01) is True
    assert ps._rx == b""


def test_in_stream_command_waits_in_short_polls_up_to_its_deadline(rig):
    start_stream(rig, "ascii_dec")
    rig.port.on_write = lambda: rig.emu.tx.clear()  # the reply is lost
    rig.time.step, rig.time.t = 0.0, 0.0
    with pytest.raises(PowerShieldTimeout):
        rig.ps.command("temp", timeout=0.125)
    assert WAITS[-1] == pytest.approx([0.05, 0.05, 0.025], abs=1e-15)  # the last one up to the deadline


def test_in_stream_rejection_without_detail_waits_for_it(rig):
    pump = start_stream(rig, "ascii_dec")
    rig.time.step, rig.time.t = 0.0, 0.0
    rig.ps.DETAIL_WAIT_S = 0.1  # two polls of 0.05 s, exactly
    rig.port.on_write = lambda: (rig.emu.tx.clear(), pump.pump())
    pump.extra = [StreamEvent(REPLY_ERROR, 0, "temp degc", cmd="temp")]
    with pytest.raises(CommandRejected) as info:
        rig.ps.temp()
    assert info.value.cmd == "temp" and info.value.detail == ""
    assert WAITS[-1] == [0.05, 0.05]


def test_in_stream_command_is_registered_with_its_line(rig):
    start_stream(rig, "ascii_dec")
    seen: list[tuple[str, str]] = []
    pump_write = rig.port.on_write
    rig.port.on_write = lambda: (seen.extend((p.name, p.line) for p in rig.ps._pending), pump_write())
    assert rig.ps.temp("degf") == 82.4
    assert seen == [("temp", "temp degf")]


def test_in_stream_rejection_names_the_command(rig):
    start_stream(rig, "bin_hexa")
    with pytest.raises(CommandRejected) as info:
        rig.ps.command("freq 1k", check=False)
    assert info.value.cmd == "freq"


def test_in_stream_command_whose_stream_ended_reads_its_reply_for_at_least_0_2_s(rig):
    start_stream(rig, "ascii_dec")
    rig.port.on_write = lambda: (rig.emu.tx.clear(), rig.ps.end_acquisition())  # ended, and no reply
    t0 = rig.time.t
    with pytest.raises(PowerShieldTimeout) as info:
        rig.ps.command("temp degc", timeout=0.1)
    assert str(info.value) == "no reply to 'temp degc' from 'emu://lpm01a' (waited 2 s or more)"
    assert 0.2 <= rig.time.t - t0 < 0.21


def test_in_stream_command_whose_stream_ended_reads_its_reply_until_its_deadline(rig):
    start_stream(rig, "ascii_dec")
    rig.port.on_write = lambda: (rig.emu.tx.clear(), rig.ps.end_acquisition())
    t0 = rig.time.t
    with pytest.raises(PowerShieldTimeout):
        rig.ps.command("temp degc", timeout=3.0)
    assert 3.0 <= rig.time.t - t0 < 3.01


def test_in_stream_rejection_then_lost_port_is_a_disconnection(rig):
    start_stream(rig, "ascii_dec")

    def answer() -> None:
        rig.emu.tx.clear()
        rig.ps.deliver_stream_event(StreamEvent(REPLY_ERROR, 0, "temp degc", cmd="temp"))
        rig.ps.fail_pending(Disconnected("port lost"))

    rig.port.on_write = answer
    with pytest.raises(Disconnected, match="^port lost$"):
        rig.ps.temp()


def test_in_stream_ack_data_is_kept_as_sent():
    ps, port = scripted()
    p = _Pending("status", "status")
    ps._pending.append(p)
    ps.deliver_stream_event(StreamEvent(ACK, 0, "status: Xtal fault", cmd="status"))
    assert p.reply == Reply("status", "Xtal fault")
