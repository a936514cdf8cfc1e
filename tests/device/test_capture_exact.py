"""Exact checks of the power-capture pipeline (device/lpm01a/capture.py).

The rig is deterministic and needs no device, no socket and no real-time wait:

* :class:`ScriptedShield` stands in for the :class:`~device.lpm01a.driver.PowerShield` a Capture drives: its
  ``read_raw`` hands out byte chunks written here with the protocol's framing (``ascii_dec`` sample lines
  ``DDDD-EE``, ``TimeStamp:`` lines, ``end`` and ``PowerShield > Acquisition completed``; a few ``bin_hexa``
  frames), then ``b""`` (nothing arrived).  ``send_stop`` queues what the shield answers to ``stop``.  Every
  call the Capture makes is logged in order.
* :class:`SteppedClock` replaces the capture module's ``time``: each ``monotonic()`` call moves it on by a
  fixed dyadic step, so a stall or stop timeout is a number of reader-loop turns, exactly.
* :class:`Pause` (a script item) holds the reader thread inside ``read_raw`` until the test releases it, so a
  consumer can be checked while the acquisition is running, with everything before the pause decoded.

Sample lines use the exponent ``00`` (``0007-00`` = 7.0), so every decoded value is an exact float.
"""

from __future__ import annotations

import math
import threading
import time as real_time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import device.lpm01a.capture as capture_mod
from device.lpm01a.capture import Block, Capture, Subscription
from device.lpm01a.driver import (
    AcquisitionError,
    BufferOverflow,
    Disconnected,
    PowerShieldError,
    PowerShieldTimeout,
)

pytestmark = pytest.mark.timeout(10)

COMPLETED = b"\r\nPowerShield > Acquisition completed\r\n"
END = b"\r\nend\r\n"
FINISH = END + COMPLETED


def lines(*values: int) -> bytes:
    """ascii_dec sample lines for whole-number values (exponent 00: ``0007-00`` is 7.0)."""
    return b"".join(b"%04d-00\r\n" % v for v in values)


def ts(ms: int, pct: int) -> bytes:
    """An ascii_dec timestamp line: ``ms`` since the start, the shield's transmit-buffer load."""
    return f"\r\nTimeStamp: {ms // 1000:03d}s {ms % 1000:03d}ms, buff {pct:02d}%\r\n".encode()


def text(line: str) -> bytes:
    return f"\r\n{line}\r\n".encode()


# --- the rig ----------------------------------------------------------------------------------------
class SteppedClock:
    """The capture module's ``time``: ``monotonic()`` advances ``step`` per call (from 0.0); ``time()`` gives
    1000.0, 2000.0, … (the wall clock at start and at the end).  A reader that never ends fails after
    ``max_calls`` turns instead of hanging."""

    def __init__(self, step: float = 0.25, max_calls: int = 100_000) -> None:
        self.t = 0.0
        self.step = step
        self.calls = 0
        self.max_calls = max_calls
        self.wall = 0.0

    def monotonic(self) -> float:
        self.calls += 1
        if self.calls > self.max_calls:
            raise RuntimeError("the reader never ended")
        self.t += self.step
        return self.t

    def time(self) -> float:
        self.wall += 1000.0
        return self.wall


class Pause:
    """A script item: ``read_raw`` stops there until :meth:`release` (then yields nothing, ``b""``)."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.released = threading.Event()

    def wait_reached(self) -> None:
        assert self.reached.wait(5.0), "the reader never reached the pause"

    def release(self) -> None:
        self.released.set()


class ScriptedShield:
    """The driver side of a Capture, scripted: ``chunks`` are what successive ``read_raw`` calls return
    (bytes, an exception to raise, or a :class:`Pause`), then ``b""``; ``on_stop`` is queued when ``stop``
    is sent.  ``idle_sleep`` (real seconds) slows the reader down while nothing is scripted, for tests where
    the main thread must act while the acquisition runs."""

    def __init__(
        self,
        chunks: list[Any] | tuple[Any, ...] = (),
        settings: dict[str, Any] | None = None,
        leftover: bytes = b"",
        on_stop: list[Any] | tuple[Any, ...] = (),
        stop_error: BaseException | None = None,
        idle_sleep: float = 0.0,
    ) -> None:
        self.script = list(chunks)
        self.settings: dict[str, Any] = dict(settings or {})
        self.leftover = leftover
        self.on_stop = list(on_stop)
        self.stop_error = stop_error
        self.idle_sleep = idle_sleep
        self.log: list[Any] = []
        self.delivered: list[Any] = []
        self.reads = 0
        self.reader_threads: list[threading.Thread] = []

    def begin_acquisition(self) -> bytes:
        self.log.append("begin")
        return self.leftover

    def read_raw(self) -> bytes:
        self.reads += 1
        self.reader_threads.append(threading.current_thread())
        if not self.script:
            if self.idle_sleep:
                real_time.sleep(self.idle_sleep)
            return b""
        item = self.script.pop(0)
        if isinstance(item, Pause):
            item.reached.set()
            assert item.released.wait(5.0), "the test never released the pause"
            return b""
        if isinstance(item, BaseException):
            raise item
        return bytes(item)

    def send_stop(self) -> None:
        self.log.append("stop")
        if self.stop_error is not None:
            raise self.stop_error
        self.script.extend(self.on_stop)

    def deliver_stream_event(self, ev: Any) -> bool:
        self.delivered.append(ev)
        return True

    def end_acquisition(self, trailing: bytes = b"") -> None:
        self.log.append(("end", trailing))

    def fail_pending(self, exc: BaseException) -> None:
        self.log.append(("fail_pending", exc))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SteppedClock:
    c = SteppedClock()
    monkeypatch.setattr(capture_mod, "time", c)
    return c


def run(shield: ScriptedShield, rate_hz: float = 1000, fmt: str = "ascii_dec", **kw: Any) -> Capture:
    """Start a capture on ``shield`` and wait for its reader to end."""
    cap = Capture(shield, rate_hz, fmt, **kw)  # type: ignore[arg-type]
    assert cap.start() is cap
    assert cap.wait(5.0), "the reader thread did not end"
    return cap


def vals(a: np.ndarray) -> list[float | None]:
    """Samples as a list, a lost (NaN) sample as None."""
    return [None if math.isnan(v) else float(v) for v in a]


def evs(events: list[Any]) -> list[tuple[str, int, str]]:
    return [(e.kind, e.index, e.text) for e in events]


def fields(b: Block) -> tuple[Any, ...]:
    return (b.first_index, vals(b.values), b.rate_hz, evs(b.events), b.lost, b.lost_total, b.overrun,
            b.buffer_pct, b.final)  # fmt: skip


def samples_of(cap: Capture) -> list[float | None]:
    return vals(cap.ring.read(0).values)


# --- construction -------------------------------------------------------------------------------------
def test_default_ring_holds_30_s_between_1_million_and_50_million_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``ring_capacity`` the ring holds 30 s of samples, at least 1 000 000 and at most 50 000 000."""
    made: list[int] = []
    monkeypatch.setattr(capture_mod, "RingBuffer", lambda n: made.append(n) or SimpleNamespace(capacity=n))
    for rate in (10, 40_000, 100_000, 10_000_000):
        Capture(ScriptedShield(), rate, "ascii_dec")  # type: ignore[arg-type]
    assert made == [1_000_000, 1_200_000, 3_000_000, 50_000_000]


def test_ring_capacity_argument_is_used() -> None:
    assert Capture(ScriptedShield(), 1000, "ascii_dec", ring_capacity=7).ring.capacity == 7  # type: ignore[arg-type]


def test_unknown_format_is_refused_with_the_decoders_message() -> None:
    with pytest.raises(ValueError) as ei:
        Capture(ScriptedShield(), 1000, "ascii_hex")  # type: ignore[arg-type]
    assert str(ei.value) == "format 'ascii_hex': must be 'ascii_dec' or 'bin_hexa'"


def test_fresh_capture_state() -> None:
    """Before start: nothing received, lost or accounted, no error, not finished, no events."""
    cap = Capture(ScriptedShield(), 1000, "ascii_dec")  # type: ignore[arg-type]
    assert (cap.received, cap.lost, cap.samples_total, cap.finished, cap.error, cap.ended_by) == (
        0,
        0,
        0,
        False,
        None,
        "",
    )
    assert (cap.started_wall, cap.ended_wall, cap.buffer_pct, cap.read_bytes, cap.truncated, cap.tail_lost) == (
        None, None, None, 0, 0, 0)  # fmt: skip
    assert cap.events() == []
    assert cap.diagnostics() == {"buffer_max_pct": 0, "corrupt_bytes": 0, "excess": 0, "truncated": 0}
    cap.raise_for_error()  # no error: nothing raised
    assert (cap.fmt, cap.rate_hz) == ("ascii_dec", 1000.0)


def test_wait_before_the_end_returns_false_after_its_timeout() -> None:
    cap = Capture(ScriptedShield(), 1000, "ascii_dec")  # type: ignore[arg-type]
    t0 = real_time.monotonic()
    assert cap.wait(0.05) is False
    assert real_time.monotonic() - t0 < 3.0


# --- a complete acquisition ---------------------------------------------------------------------------
def test_completed_acquisition_samples_events_and_counters(clock: SteppedClock) -> None:
    """Samples by device index, a sample lost in transit as NaN (revealed by the timestamp), the events
    (timestamps excluded) in order with their sample index, the counters, the wall clock at start and end."""
    sh2 = ScriptedShield([lines(1, 2, 3), lines(4) + ts(5, 12) + lines(6), FINISH])
    cap2 = run(sh2, 1000)
    assert samples_of(cap2) == [1.0, 2.0, 3.0, 4.0, None, 6.0]
    assert (cap2.received, cap2.lost, cap2.samples_total) == (5, 1, 6)
    assert (cap2.ended_by, cap2.error, cap2.finished, cap2.buffer_pct) == ("completed", None, True, 12)
    assert evs(cap2.events()) == [("end", 6, "end"), ("completed", 6, "Acquisition completed")]
    assert cap2.read_bytes == 27 + 9 + len(ts(5, 12)) + 9 + len(FINISH)
    assert (cap2.started_wall, cap2.ended_wall) == (1000.0, 2000.0)
    assert sh2.log == ["begin", ("end", b"")]
    assert sh2.reads == 3
    assert all(t.name == "lpm01a-reader" and t.daemon for t in sh2.reader_threads)
    assert sh2.reader_threads[0] is not threading.current_thread()


def test_bytes_given_back_by_start_are_decoded_first(clock: SteppedClock) -> None:
    """The stream bytes that came with ``ack start`` are the first samples and count as read."""
    sh = ScriptedShield([lines(1, 2) + FINISH], leftover=lines(9))
    cap = run(sh, 1000)
    assert samples_of(cap) == [9.0, 1.0, 2.0]
    assert cap.read_bytes == 27 + len(FINISH)


def test_events_and_device_replies_during_the_stream(clock: SteppedClock) -> None:
    """In-stream replies (ack, error + detail, pwr) go to the driver (for the command waiting on them);
    every non-timestamp event is logged with the index of the next sample; the last timestamp's buffer load."""
    chunks = [
        lines(1, 2) + text("PowerShield > ack volt 3300m") + ts(2, 40) + lines(3),
        text("PowerShield > error freq") + text("Error detail: not allowed while acquiring") + text("pwr on"),
        text("event 07 ris") + lines(4) + ts(4, 7) + FINISH,
    ]
    sh = ScriptedShield(chunks)
    cap = run(sh, 1000)
    assert [(e.kind, e.index, e.text) for e in sh.delivered] == [
        ("ack", 2, "volt 3300m"),
        ("reply_error", 3, "freq"),
        ("error_detail", 3, "not allowed while acquiring"),
        ("pwr", 3, "pwr on"),
    ]
    assert evs(cap.events()) == [
        ("ack", 2, "volt 3300m"),
        ("reply_error", 3, "freq"),
        ("error_detail", 3, "not allowed while acquiring"),
        ("pwr", 3, "pwr on"),
        ("event", 3, "ris"),
        ("end", 4, "end"),
        ("completed", 4, "Acquisition completed"),
    ]
    assert cap.buffer_pct == 7
    assert cap.error is None


def test_binary_frame_reply_goes_to_the_driver(clock: SteppedClock) -> None:
    """bin_hexa: an F7 frame (the reply to ``volt``) is delivered to the driver and logged; samples exact."""
    words = bytes.fromhex("1008 1004")  # 8/16 = 0.5, 4/16 = 0.25
    volt = bytes.fromhex("f0f7 0ce4 ffff")  # 3300 mV
    sh = ScriptedShield([words + volt + bytes.fromhex("1002") + bytes.fromhex("f0f4ffff") + COMPLETED])
    cap = run(sh, 1000, "bin_hexa")
    assert samples_of(cap) == [0.5, 0.25, 0.125]
    assert [(e.kind, e.index, e.value) for e in sh.delivered] == [("volt", 2, 3.3)]
    assert [(e.kind, e.index) for e in cap.events()] == [("volt", 2), ("end", 3), ("completed", 3)]


def test_bytes_after_acquisition_completed_are_handed_back_to_the_driver(clock: SteppedClock) -> None:
    """Replies to commands queued behind the end sequence are given back with the port."""
    sh = ScriptedShield([lines(1) + FINISH + b"PowerShield > ack status ok\r\n"])
    cap = run(sh, 1000)
    assert sh.log == ["begin", ("end", b"PowerShield > ack status ok\r\n")]
    assert cap.ended_by == "completed"


def test_diagnostics_report_link_quality_counters(clock: SteppedClock) -> None:
    """Highest buffer load, corrupt bytes, samples beyond the timestamps, samples cut beyond max_samples."""
    chunks = [lines(1, 2, 3, 4, 5) + ts(3, 40) + b"0006-00x\r\n" + ts(4, 9) + lines(7, 8, 9) + FINISH]
    sh = ScriptedShield(chunks, settings={"acqtime": 0.006})
    cap = run(sh, 1000, max_samples=6)
    assert cap.diagnostics() == {"buffer_max_pct": 40, "corrupt_bytes": 1, "excess": 2, "truncated": 3}
    assert cap.buffer_pct == 9
    assert samples_of(cap) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert cap.truncated == 3


def test_event_log_keeps_the_newest_max_events(clock: SteppedClock) -> None:
    sh = ScriptedShield([text("event 01 ris") + lines(1) + text("event 02 fal") + FINISH])
    cap = run(sh, 1000, max_events=2)
    assert evs(cap.events()) == [("end", 1, "end"), ("completed", 1, "Acquisition completed")]


def test_default_event_log_holds_100000_events() -> None:
    cap = Capture(ScriptedShield(), 1000, "ascii_dec")  # type: ignore[arg-type]
    assert cap._events.maxlen == 100_000


# --- device errors ------------------------------------------------------------------------------------
def test_device_error_ends_with_the_matching_exception(clock: SteppedClock) -> None:
    """A Tx-buffer overflow reported in the stream: BufferOverflow naming the sample, ended_by 'error';
    a second error does not replace the first."""
    chunks = [lines(1, 2) + text("error: Tx buffer overflow. Acquisition stopped.") + text("error: voltage drop")]
    sh = ScriptedShield(chunks + [FINISH])
    cap = run(sh, 1000)
    assert type(cap.error) is BufferOverflow
    assert (
        str(cap.error)
        == "PowerShield stopped the acquisition at sample 2: error: Tx buffer overflow. Acquisition stopped."
    )
    assert cap.ended_by == "error"
    assert sh.delivered == []
    with pytest.raises(BufferOverflow) as ei:
        cap.raise_for_error()
    assert ei.value is cap.error


def test_device_error_then_stall_keeps_the_device_error(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1) + text("error: voltage drop")])
    cap = run(sh, 1000, stall_timeout=1.0)
    assert type(cap.error) is AcquisitionError
    assert str(cap.error) == "PowerShield stopped the acquisition at sample 1: error: voltage drop"
    assert cap.ended_by == "error"
    assert sh.log == ["begin", "stop", ("end", b"")]


# --- stall ----------------------------------------------------------------------------------------------
def test_stall_ends_with_a_timeout_and_stops_the_shield(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1, 2)])
    cap = run(sh, 1000, stall_timeout=1.0)
    assert type(cap.error) is PowerShieldTimeout
    assert str(cap.error) == "the PowerShield stream stalled: no data for 1 s"
    assert cap.ended_by == "timeout"
    assert sh.log == ["begin", "stop", ("end", b"")]
    assert samples_of(cap) == [1.0, 2.0]
    with pytest.raises(PowerShieldTimeout):
        cap.raise_for_error()


def test_default_stall_timeout_is_1_5_s(clock: SteppedClock) -> None:
    cap = run(ScriptedShield(), 1000)
    assert str(cap.error) == "the PowerShield stream stalled: no data for 1.5 s"


def test_default_stall_timeout_is_5_periods_at_slow_rates(clock: SteppedClock) -> None:
    cap = run(ScriptedShield(), 2)
    assert str(cap.error) == "the PowerShield stream stalled: no data for 2.5 s"


def test_data_arriving_exactly_at_the_stall_timeout_is_accepted(clock: SteppedClock) -> None:
    """Clock step 0.25 s, stall 1 s: the 4th read after the last byte is made exactly 1 s after it (not yet a
    stall); what it brings keeps the acquisition alive."""
    sh = ScriptedShield([lines(1), b"", b"", b"", lines(2) + FINISH])
    cap = run(sh, 1000, stall_timeout=1.0)
    assert (cap.ended_by, cap.error) == ("completed", None)
    assert samples_of(cap) == [1.0, 2.0]


def test_stall_one_step_after_the_timeout(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1), b"", b"", b"", b"", lines(2) + FINISH])
    cap = run(sh, 1000, stall_timeout=1.0)
    assert cap.ended_by == "timeout"
    assert samples_of(cap) == [1.0]


def test_armed_capture_waits_for_the_trigger_without_stall(clock: SteppedClock) -> None:
    """Armed (waiting for a D7 trigger): no stall timeout before the first byte."""
    sh = ScriptedShield([b""] * 20 + [lines(1, 2) + FINISH])
    cap = run(sh, 1000, stall_timeout=1.0, armed=True)
    assert (cap.ended_by, cap.error) == ("completed", None)
    assert samples_of(cap) == [1.0, 2.0]


def test_armed_capture_stalls_once_streaming(clock: SteppedClock) -> None:
    sh = ScriptedShield([b""] * 20 + [lines(1, 2)])
    cap = run(sh, 1000, stall_timeout=1.0, armed=True)
    assert cap.ended_by == "timeout"
    assert str(cap.error) == "the PowerShield stream stalled: no data for 1 s"


def test_failing_stop_after_a_stall_is_ignored(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1)], stop_error=PowerShieldError("port busy"))
    cap = run(sh, 1000, stall_timeout=1.0)
    assert cap.ended_by == "timeout"
    assert str(cap.error) == "the PowerShield stream stalled: no data for 1 s"
    assert sh.log == ["begin", "stop", ("end", b"")]


# --- max_samples ------------------------------------------------------------------------------------------
def test_limit_stops_the_acquisition_and_cuts_the_rest(clock: SteppedClock) -> None:
    """max_samples reached (infinite acquisition): stop is sent once, samples beyond are discarded and
    counted, events after the limit are placed at the limit."""
    chunks = [lines(1, 2), lines(3, 4, 5), lines(6) + text("event 01 ris")]
    sh = ScriptedShield(chunks, on_stop=[FINISH])
    cap = run(sh, 1000, max_samples=3)
    assert samples_of(cap) == [1.0, 2.0, 3.0]
    assert (cap.truncated, cap.ended_by, cap.error, cap.samples_total) == (3, "limit", None, 3)
    assert sh.log == ["begin", "stop", ("end", b"")]
    assert evs(cap.events()) == [("event", 3, "ris"), ("end", 3, "end"), ("completed", 3, "Acquisition completed")]


def test_limit_reached_exactly_by_one_chunk(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1, 2, 3)], on_stop=[FINISH])
    cap = run(sh, 1000, max_samples=3)
    assert (cap.truncated, cap.ended_by) == (0, "limit")
    assert sh.log == ["begin", "stop", ("end", b"")]


def test_limit_not_reached(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1, 2) + FINISH])
    cap = run(sh, 1000, max_samples=3)
    assert (cap.truncated, cap.ended_by) == (0, "completed")
    assert sh.log == ["begin", ("end", b"")]


def test_shield_ending_at_the_limit_itself_gets_no_stop(clock: SteppedClock) -> None:
    """acqtime x rate == max_samples: the shield ends by itself, no ``stop`` (it would race the end)."""
    sh = ScriptedShield([lines(1, 2, 3), lines(4) + FINISH], settings={"acqtime": 0.003})
    cap = run(sh, 1000, max_samples=3)
    assert sh.log == ["begin", ("end", b"")]
    assert (cap.ended_by, cap.truncated, samples_of(cap)) == ("completed", 1, [1.0, 2.0, 3.0])


def test_shield_ending_beyond_the_limit_is_stopped(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1, 2, 3)], settings={"acqtime": 0.004}, on_stop=[FINISH])
    cap = run(sh, 1000, max_samples=3)
    assert sh.log == ["begin", "stop", ("end", b"")]
    assert cap.ended_by == "limit"


def test_infinite_acquisition_with_a_limit_is_stopped(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1, 2, 3)], settings={"acqtime": 0}, on_stop=[FINISH])
    cap = run(sh, 1000, max_samples=3)
    assert (cap.ended_by, sh.log) == ("limit", ["begin", "stop", ("end", b"")])


def test_samples_after_the_limit_are_all_counted_as_truncated(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1, 2, 3), lines(4, 5)], on_stop=[FINISH])
    cap = run(sh, 1000, max_samples=3)
    assert (cap.truncated, samples_of(cap)) == (2, [1.0, 2.0, 3.0])


# --- stop ----------------------------------------------------------------------------------------------------
def test_stop_timeout_message_and_state(clock: SteppedClock) -> None:
    """No 'Acquisition completed' after stop: a timeout naming the wait."""
    sh = ScriptedShield([lines(1, 2, 3)])
    cap = run(sh, 1000, max_samples=3, stop_timeout=1.0)
    assert type(cap.error) is PowerShieldTimeout
    assert str(cap.error) == "no 'Acquisition completed' within 1 s after stop"
    assert cap.ended_by == "timeout"
    assert sh.log == ["begin", "stop", ("end", b"")]


def test_default_stop_timeout_is_5_s(clock: SteppedClock) -> None:
    cap = run(ScriptedShield([lines(1, 2, 3)]), 1000, max_samples=3)
    assert str(cap.error) == "no 'Acquisition completed' within 5 s after stop"


def test_end_arriving_exactly_at_the_stop_deadline_is_accepted(clock: SteppedClock) -> None:
    """Step 0.25 s, stop_timeout 1 s: the read made when the deadline is reached still counts."""
    sh = ScriptedShield([lines(1, 2, 3)], on_stop=[b"", b"", b"", b"", FINISH])
    cap = run(sh, 1000, max_samples=3, stop_timeout=1.0)
    assert (cap.ended_by, cap.error) == ("limit", None)


def test_end_one_step_after_the_stop_deadline_is_a_timeout(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1, 2, 3)], on_stop=[b"", b"", b"", b"", b"", FINISH])
    cap = run(sh, 1000, max_samples=3, stop_timeout=1.0)
    assert cap.ended_by == "timeout"


def test_after_stop_the_stall_timeout_no_longer_applies(clock: SteppedClock) -> None:
    """After ``stop`` the reader waits stop_timeout for the end sequence, even if longer than the stall one."""
    sh = ScriptedShield([lines(1, 2, 3)], on_stop=[b""] * 10 + [FINISH])
    cap = run(sh, 1000, max_samples=3, stall_timeout=1.0, stop_timeout=5.0)
    assert (cap.ended_by, cap.error) == ("limit", None)


def test_error_before_a_stop_timeout_is_kept(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1, 2, 3) + text("error: voltage drop")])
    cap = run(sh, 1000, max_samples=3, stop_timeout=1.0)
    assert type(cap.error) is AcquisitionError
    assert cap.ended_by == "timeout"


def test_stop_from_the_user(clock: SteppedClock) -> None:
    """``stop()``: the reader sends stop, reads the end sequence and ends 'stopped'."""
    sh = ScriptedShield([lines(1, 2)], on_stop=[lines(3) + FINISH], idle_sleep=0.001)
    cap = Capture(sh, 1000, "ascii_dec", stall_timeout=1e9)  # type: ignore[arg-type]
    cap.start()
    cap.stop()
    assert cap.finished
    assert (cap.ended_by, cap.error, samples_of(cap)) == ("stopped", None, [1.0, 2.0, 3.0])
    assert sh.log == ["begin", "stop", ("end", b"")]


def test_stop_waits_stop_timeout_plus_2_s_by_default() -> None:
    cap = Capture(ScriptedShield(), 1000, "ascii_dec", stop_timeout=0.5)  # type: ignore[arg-type]
    waited: list[float | None] = []
    cap.wait = lambda timeout=None: waited.append(timeout) or True  # type: ignore[method-assign]
    cap.stop()
    cap.stop(timeout=0.25)
    assert waited == [2.5, 0.25]


def test_leaving_the_with_block_stops_a_running_capture(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1)], on_stop=[FINISH], idle_sleep=0.001)
    with Capture(sh, 1000, "ascii_dec", stall_timeout=1e9) as cap:  # type: ignore[arg-type]
        cap.start()
    assert cap.finished
    assert (cap.ended_by, sh.log) == ("stopped", ["begin", "stop", ("end", b"")])


def test_leaving_the_with_block_of_a_capture_never_started_returns_at_once() -> None:
    t0 = real_time.monotonic()
    with Capture(ScriptedShield(), 1000, "ascii_dec") as cap:  # type: ignore[arg-type]
        pass
    assert real_time.monotonic() - t0 < 3.0
    assert not cap.finished


def test_leaving_the_with_block_after_the_end_sends_nothing(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1) + FINISH])
    with Capture(sh, 1000, "ascii_dec") as cap:  # type: ignore[arg-type]
        cap.start()
        assert cap.wait(5.0)
    assert sh.log == ["begin", ("end", b"")]
    assert cap.ended_by == "completed"


# --- link failures and bugs ---------------------------------------------------------------------------------
def test_disconnect_fails_the_waiting_commands_and_keeps_the_port(clock: SteppedClock) -> None:
    """The port went away: the Disconnected itself is the error, waiting commands get it; no stop is sent and
    the port is not handed back."""
    gone = Disconnected("PowerShield on 'COM3' disconnected: device reports readiness to read but returned no data")
    sh = ScriptedShield([lines(1, 2), gone])
    cap = run(sh, 1000)
    assert cap.error is gone
    assert cap.ended_by == "disconnected"
    assert sh.log == ["begin", ("fail_pending", gone)]
    assert samples_of(cap) == [1.0, 2.0]
    assert cap.finished


def test_unexpected_reader_failure_is_reported_and_the_shield_stopped(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1), ValueError("bad chunk")])
    cap = run(sh, 1000)
    assert type(cap.error) is PowerShieldError
    assert str(cap.error) == "reader thread failed: ValueError('bad chunk')"
    assert cap.ended_by == "error"
    assert sh.log == ["begin", "stop", ("end", b"")]


# --- samples lost after the last timestamp --------------------------------------------------------------------
def test_finite_acquisition_nan_fills_the_samples_lost_after_the_last_timestamp(clock: SteppedClock) -> None:
    """acqtime 10 ms at 1 kHz = 10 samples; 8 arrived: the last 2 are lost (NaN), counted in lost."""
    sh = ScriptedShield([lines(1, 2, 3, 4, 5, 6, 7, 8) + FINISH], settings={"acqtime": 0.01})
    cap = run(sh, 1000)
    assert samples_of(cap) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, None, None]
    assert (cap.tail_lost, cap.lost, cap.received, cap.samples_total) == (2, 2, 8, 10)


def test_tail_fill_covers_up_to_two_timestamp_periods(clock: SteppedClock) -> None:
    sh = ScriptedShield([FINISH], settings={"acqtime": 2.0, "trigsrc": "sw", "acqmode": "dyn"})
    cap = run(sh, 1000)
    assert (cap.tail_lost, cap.samples_total) == (2000, 2000)


def test_no_tail_fill_beyond_two_timestamp_periods(clock: SteppedClock) -> None:
    sh = ScriptedShield([FINISH], settings={"acqtime": 2.001})
    cap = run(sh, 1000)
    assert (cap.tail_lost, cap.samples_total) == (0, 0)


def test_no_tail_fill_when_all_samples_arrived(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1, 2) + FINISH], settings={"acqtime": 0.002})
    cap = run(sh, 1000)
    assert (cap.tail_lost, cap.lost, samples_of(cap)) == (0, 0, [1.0, 2.0])


def test_tail_fill_of_a_very_short_acquisition_is_at_least_one_sample(clock: SteppedClock) -> None:
    sh = ScriptedShield([FINISH], settings={"acqtime": 0.0001})
    cap = run(sh, 1000)
    assert (cap.tail_lost, samples_of(cap)) == (1, [None])


def test_tail_fill_stops_at_max_samples(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1, 2, 3, 4, 5) + FINISH], settings={"acqtime": 0.01})
    cap = run(sh, 1000, max_samples=8)
    assert (cap.ended_by, cap.tail_lost, cap.samples_total) == ("completed", 3, 8)


@pytest.mark.parametrize(
    "settings, kw",
    [
        ({"acqtime": 0.01}, {"armed": True}),
        ({"acqtime": 0.01, "trigsrc": "d7"}, {}),
        ({"acqtime": 0.01, "acqmode": "stat"}, {}),
        ({"acqtime": 0}, {}),
        ({"acqtime": None}, {}),
        ({}, {}),
    ],
    ids=["armed", "d7-trigger", "static", "infinite", "acqtime-none", "no-acqtime"],
)
def test_no_tail_fill_without_a_known_sample_count(clock: SteppedClock, settings: dict, kw: dict) -> None:
    """Only a software-triggered, dynamic, finite acquisition has a known sample count."""
    sh = ScriptedShield([lines(1, 2) + FINISH], settings=settings)
    cap = run(sh, 1000, **kw)
    assert (cap.tail_lost, cap.samples_total) == (0, 2)


def test_no_tail_fill_after_a_stop(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1, 2, 3)], settings={"acqtime": 0.01}, on_stop=[FINISH])
    cap = run(sh, 1000, max_samples=3)
    assert (cap.ended_by, cap.tail_lost, cap.samples_total) == ("limit", 0, 3)


def test_no_tail_fill_after_a_user_stop(clock: SteppedClock) -> None:
    """A finite acquisition stopped early by the user is not NaN-filled up to its planned length."""
    sh = ScriptedShield([lines(1, 2)], settings={"acqtime": 0.01}, on_stop=[FINISH], idle_sleep=0.001)
    cap = Capture(sh, 1000, "ascii_dec", stall_timeout=1e9)  # type: ignore[arg-type]
    cap.start()
    cap.stop()
    assert (cap.ended_by, cap.tail_lost, cap.lost, samples_of(cap)) == ("stopped", 0, 0, [1.0, 2.0])


def test_no_tail_fill_after_a_device_error(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1, 2) + text("error: voltage drop") + FINISH], settings={"acqtime": 0.01})
    cap = run(sh, 1000)
    assert (cap.ended_by, cap.tail_lost, cap.samples_total) == ("error", 0, 2)


# --- consumers ---------------------------------------------------------------------------------------------------
def test_default_block_size_is_a_tenth_of_a_second_at_least_1000(clock: SteppedClock) -> None:
    caps = [Capture(ScriptedShield(), r, "ascii_dec", ring_capacity=10) for r in (1000, 20_000, 100_000)]  # type: ignore[arg-type]
    assert [c.subscribe().max_block for c in caps] == [1000, 2000, 10_000]
    assert caps[0].subscribe(max_block=3).max_block == 3


def test_blocks_of_a_finished_capture(clock: SteppedClock) -> None:
    """Blocks of max_block samples; each carries the events before its end, the lost counts, the buffer
    load; the last one is final and carries the remaining events; then the subscription is done."""
    sh = ScriptedShield([lines(1, 2) + text("event 01 ris") + lines(3) + ts(5, 33) + text("event 02 fal") + FINISH])
    cap = run(sh, 1000)
    sub = cap.subscribe(max_block=2)
    assert isinstance(sub, Subscription)
    b1, b2, b3 = sub.get(0.1), sub.get(0.1), sub.get(0.1)
    assert b1 is not None and b2 is not None and b3 is not None
    assert fields(b1) == (0, [1.0, 2.0], 1000.0, [], 0, 2, 0, 33, False)
    assert fields(b2) == (2, [3.0, None], 1000.0, [("event", 2, "ris")], 1, 2, 0, 33, False)
    assert fields(b3) == (4, [None], 1000.0, [("event", 5, "fal"), ("end", 5, "end"),
                                            ("completed", 5, "Acquisition completed")], 1, 2, 0, 33, True)  # fmt: skip
    assert sub.done
    assert sub.get(0.1) is None


def test_event_at_a_block_boundary_goes_with_the_next_block(clock: SteppedClock) -> None:
    """An event at index 2 happened before sample 2: it comes with the block that starts there."""
    sh = ScriptedShield([lines(1, 2) + text("event 01 ris") + lines(3, 4, 5) + FINISH])
    cap = run(sh, 1000)
    blocks = list(cap.subscribe(max_block=2))
    assert [(b.first_index, vals(b.values), evs(b.events), b.final) for b in blocks] == [
        (0, [1.0, 2.0], [], False),
        (2, [3.0, 4.0], [("event", 2, "ris")], False),
        (4, [5.0], [("end", 5, "end"), ("completed", 5, "Acquisition completed")], True),
    ]


def test_capture_without_samples_gives_one_final_block(clock: SteppedClock) -> None:
    cap = run(ScriptedShield([FINISH]), 1000)
    blocks = list(cap.subscribe())
    assert [fields(b) for b in blocks] == [
        (0, [], 1000.0, [("end", 0, "end"), ("completed", 0, "Acquisition completed")], 0, 0, 0, None, True)
    ]


def test_subscriber_that_missed_old_events_gets_the_retained_ones(clock: SteppedClock) -> None:
    sh = ScriptedShield([lines(1) + text("event 01 fal") + text("event 02 ris") + FINISH])
    cap = run(sh, 1000, max_events=3)
    (b,) = list(cap.subscribe())
    assert evs(b.events) == [("event", 1, "ris"), ("end", 1, "end"), ("completed", 1, "Acquisition completed")]


def test_consumer_behind_the_ring_is_told_the_overrun(clock: SteppedClock) -> None:
    """Ring of 4 samples, 10 written: a consumer from the start missed 6 and is told so."""
    cap = run(ScriptedShield([lines(*range(1, 11)) + FINISH]), 1000, ring_capacity=4)
    blocks = list(cap.subscribe(max_block=10))
    assert [(b.first_index, vals(b.values), b.overrun, b.final) for b in blocks] == [
        (6, [7.0, 8.0, 9.0, 10.0], 6, True)
    ]


def test_consumer_more_than_a_block_behind_the_ring_is_told_the_whole_overrun(clock: SteppedClock) -> None:
    """Ring of 4, 10 written, blocks of 3: the 6 samples missed are reported, then the held ones follow."""
    cap = run(ScriptedShield([lines(*range(1, 11)) + FINISH]), 1000, ring_capacity=4)
    blocks = list(cap.subscribe(max_block=3))
    assert [(b.first_index, vals(b.values), b.overrun, b.final) for b in blocks] == [
        (6, [], 6, False),
        (6, [7.0, 8.0, 9.0], 0, False),
        (9, [10.0], 0, True),
    ]


def test_blocks_while_the_acquisition_runs(clock: SteppedClock) -> None:
    """During the acquisition: what arrived so far (not final), None while nothing new; a late subscriber
    (not from the start) begins at the newest sample and event; after the end, the final block."""
    pause = Pause()
    sh = ScriptedShield([lines(1, 2, 3) + text("event 01 ris"), pause, lines(4) + text("event 02 fal") + FINISH])
    cap = Capture(sh, 1000, "ascii_dec", stall_timeout=1e9)  # type: ignore[arg-type]
    early = cap.subscribe(max_block=10)
    cap.start()
    pause.wait_reached()
    late = cap.subscribe(max_block=10, from_start=False)
    b = early.get(0.1)
    assert b is not None
    assert (b.first_index, vals(b.values), evs(b.events), b.final) == (0, [1.0, 2.0, 3.0], [], False)
    assert early.get(0.01) is None
    assert not early.done
    assert late.get(0.01) is None
    pause.release()
    assert cap.wait(5.0)
    b = early.get(0.1)
    assert b is not None
    assert (b.first_index, vals(b.values), evs(b.events), b.final) == (3, [4.0], [
        ("event", 3, "ris"), ("event", 4, "fal"), ("end", 4, "end"), ("completed", 4, "Acquisition completed")], True)  # fmt: skip
    assert early.done
    b = late.get(0.1)
    assert b is not None
    assert (b.first_index, vals(b.values), [e.kind for e in b.events], b.final) == (
        3, [4.0], ["event", "end", "completed"], True)  # fmt: skip


def test_event_without_later_samples_waits_for_the_end(clock: SteppedClock) -> None:
    """While running, an event with no sample after it yet is not delivered (get: None); the final block
    (empty: every sample was read) carries it."""
    first, second = Pause(), Pause()
    sh = ScriptedShield([lines(1, 2), first, text("event 01 ris"), second, FINISH])
    cap = Capture(sh, 1000, "ascii_dec", stall_timeout=1e9)  # type: ignore[arg-type]
    sub = cap.subscribe(max_block=10)
    cap.start()
    first.wait_reached()
    b = sub.get(0.1)
    assert b is not None and (b.first_index, vals(b.values), b.events, b.final) == (0, [1.0, 2.0], [], False)
    first.release()
    second.wait_reached()
    assert sub.get(0.01) is None
    second.release()
    assert cap.wait(5.0)
    b = sub.get(0.1)
    assert b is not None
    assert fields(b) == (2, [], 1000.0, [("event", 2, "ris"), ("end", 2, "end"),
                                        ("completed", 2, "Acquisition completed")], 0, 0, 0, None, True)  # fmt: skip
    assert sub.done


def test_each_event_is_delivered_once_in_order_across_blocks(clock: SteppedClock) -> None:
    chunks = [
        lines(1) + text("event 01 ris") + lines(2) + text("event 02 fal") + text("event 03 ris"),
        lines(3, 4) + text("event 04 fal") + lines(5) + FINISH,
    ]
    cap = run(ScriptedShield(chunks), 1000)
    blocks = list(cap.subscribe(max_block=2))
    assert [[(e.kind, e.index, e.value) for e in b.events] for b in blocks] == [
        [("event", 1, 1)],
        [("event", 2, 2), ("event", 2, 3)],
        [("event", 4, 4), ("end", 5, None), ("completed", 5, None)],
    ]


def test_subscription_made_directly_starts_at_the_beginning(clock: SteppedClock) -> None:
    cap = run(ScriptedShield([lines(1, 2) + text("event 01 ris") + FINISH]), 1000)
    sub = Subscription(cap, 10)
    assert sub.done is False
    assert [(b.first_index, vals(b.values), len(b.events), b.final) for b in sub] == [(0, [1.0, 2.0], 3, True)]
    assert sub.done is True


def test_get_waits_half_a_second_by_default() -> None:
    cap = Capture(ScriptedShield(), 1000, "ascii_dec")  # type: ignore[arg-type]
    waits: list[tuple[int, float]] = []
    real_wait = cap.ring.wait

    def spy(index: int, timeout: float) -> bool:
        waits.append((index, timeout))
        return real_wait(index, 0.0)

    cap.ring.wait = spy  # type: ignore[method-assign]
    sub = cap.subscribe()
    assert sub.get() is None
    assert sub.get(0.125) is None
    assert waits == [(0, 0.5), (0, 0.125)]


def test_consumer_asking_for_empty_blocks_gets_none(clock: SteppedClock) -> None:
    """max_block 0 while samples are there: nothing can be delivered, so None (never an empty block)."""
    pause = Pause()
    cap = Capture(ScriptedShield([lines(1, 2), pause, FINISH]), 1000, "ascii_dec", stall_timeout=1e9)  # type: ignore[arg-type]
    sub = Subscription(cap, 0)
    cap.start()
    pause.wait_reached()
    assert sub.get(0.01) is None
    pause.release()
    assert cap.wait(5.0)
