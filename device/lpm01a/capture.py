"""Acquisition pipeline: one reader thread per acquisition, a bounded ring buffer, and blocks for any
number of consumers (recorder, live plot, statistics).

The reader thread does only byte I/O and vectorised decoding (protocol reference §5.3 item 7: a slow
consumer must never make the shield's Tx buffer overflow).  It writes samples into a
:class:`~device.ringbuffer.RingBuffer` indexed by device sample number (lost samples are NaN) and appends
metadata events to a bounded log.  Each consumer takes a :class:`Subscription` and pulls
:class:`Block` s at its own pace; a consumer that falls more than the ring's capacity behind is told
how many samples it missed (``Block.overrun``) — the acquisition itself is unaffected.

Typical use::

    ps = PowerShield(url); ps.configure(freq=100_000, fmt="bin_hexa", acqtime=10)
    cap = Capture(ps, rate_hz=100_000, fmt="bin_hexa"); sub = cap.subscribe(); cap.start()
    for block in sub:            # ends when the acquisition is over and everything was read
        stats.update(block)
    cap.raise_for_error()
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Iterator

import numpy as np

from device.lpm01a.decode import (
    ACK,
    ERROR,
    ERROR_DETAIL,
    REPLY_ERROR,
    TIMESTAMP,
    StreamEvent,
    make_decoder,
)
from device.lpm01a.driver import (
    _FRAME_ACK,
    Disconnected,
    PowerShield,
    PowerShieldError,
    PowerShieldTimeout,
    error_for_event,
)
from device.lpm01a.spec import TIMESTAMP_EVERY
from device.monitor import Block, RunningStats
from device.ringbuffer import RingBuffer

__all__ = ["Block", "Capture", "Subscription", "RunningStats"]


class Capture:
    """Runs one acquisition on a configured :class:`PowerShield` in a reader thread.

    ``max_samples``: stop (and discard anything beyond) after that many device samples.
    ``stall_timeout``: give up if no byte arrives for that long once streaming (default
    ``max(1.5 s, 5 / rate)``, so a dead link is reported within 2 s; not applied while waiting for a D7 trigger)."""

    def __init__(
        self,
        driver: PowerShield,
        rate_hz: float,
        fmt: str,
        ring_capacity: int | None = None,
        max_samples: int | None = None,
        stall_timeout: float | None = None,
        stop_timeout: float = 5.0,
        armed: bool = False,
        max_events: int = 100_000,
    ) -> None:
        self.driver = driver
        self.rate_hz = float(rate_hz)
        self.fmt = fmt
        cap = ring_capacity or int(min(max(1_000_000, 30 * self.rate_hz), 50_000_000))
        self.ring = RingBuffer(cap)
        self.max_samples = max_samples
        self.stall_timeout = stall_timeout if stall_timeout is not None else max(1.5, 5.0 / self.rate_hz)
        self.stop_timeout = stop_timeout
        self.armed = armed
        self.decoder = make_decoder(fmt, self.rate_hz)
        self._events: collections.deque[tuple[int, StreamEvent]] = collections.deque(maxlen=max_events)
        self._ev_seq = 0
        self._ev_lock = threading.Lock()
        self._stop_req = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.ended_by = ""  # completed | stopped | limit | error | disconnected | timeout
        self.started_wall: float | None = None  # time.time() at 'ack start'
        self.ended_wall: float | None = None
        self.buffer_pct: int | None = None
        self.read_bytes = 0
        self.truncated = 0  # samples discarded beyond max_samples
        self._device_ends = False
        self._expected_total: int | None = None  # samples a finite software-triggered acquisition yields
        self.tail_lost = 0  # samples lost after the last timestamp (no later timestamp to reveal them)

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "Capture":
        """Send ``start`` and launch the reader thread."""
        acq = float(self.driver.settings.get("acqtime", 0.0) or 0.0)
        # the shield ends by itself at the limit: no `stop` (it would race the end sequence)
        self._device_ends = self.max_samples is not None and acq > 0 and round(acq * self.rate_hz) <= self.max_samples
        s = self.driver.settings
        if acq > 0 and not self.armed and s.get("trigsrc", "sw") == "sw" and s.get("acqmode", "dyn") == "dyn":
            self._expected_total = max(1, int(round(acq * self.rate_hz)))
            if self.max_samples is not None:
                self._expected_total = min(self._expected_total, self.max_samples)
        leftover = self.driver.begin_acquisition()
        self.started_wall = time.time()
        self._thread = threading.Thread(target=self._run, args=(leftover,), name="lpm01a-reader", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask for the end of the acquisition and wait (bounded) for the reader thread to finish."""
        self._stop_req.set()
        self.wait(timeout if timeout is not None else self.stop_timeout + 2.0)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the acquisition ended (True) or ``timeout`` elapsed (False)."""
        return self._finished.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def received(self) -> int:
        return self.decoder.received

    @property
    def lost(self) -> int:
        return self.decoder.lost + self.tail_lost

    @property
    def samples_total(self) -> int:
        """Device samples accounted so far (received + lost), i.e. the next sample number."""
        return self.ring.total

    def diagnostics(self) -> dict[str, Any]:
        """Link-quality counters for reports: the shield's highest transmit-buffer load, bytes that were not
        a valid sample, samples beyond what the timestamps account for, samples cut beyond ``max_samples``."""
        return {
            "buffer_max_pct": self.decoder.buffer_pct_max,
            "corrupt_bytes": self.decoder.corrupt_bytes,
            "excess": self.decoder.excess,
            "truncated": self.truncated,
        }

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise self.error

    def events(self) -> list[StreamEvent]:
        """All retained non-timestamp events so far."""
        with self._ev_lock:
            return [e for _, e in self._events]

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None and not self.finished:
            self.stop()

    # --- reader thread --------------------------------------------------------------------------
    def _run(self, data: bytes) -> None:
        drv = self.driver
        stop_deadline: float | None = None
        last_data = time.monotonic()
        streaming = not self.armed
        try:
            while True:
                if data:
                    self.read_bytes += len(data)
                    last_data = time.monotonic()
                    streaming = True
                    self._handle(data)
                    if self.decoder.done:
                        self.ended_by = self.ended_by or "completed"  # an error set ended_by already
                        self._account_tail()
                        break
                now = time.monotonic()
                if self._stop_req.is_set() and stop_deadline is None:
                    drv.send_stop()
                    stop_deadline = now + self.stop_timeout
                    self.ended_by = self.ended_by or "stopped"
                if stop_deadline is not None and now > stop_deadline:
                    if self.error is None:
                        self.error = PowerShieldTimeout(
                            f"no 'Acquisition completed' within {self.stop_timeout:g} s after stop"
                        )
                    self.ended_by = "timeout"
                    break
                if streaming and stop_deadline is None and now - last_data > self.stall_timeout:
                    if self.error is None:
                        self.error = PowerShieldTimeout(
                            f"the PowerShield stream stalled: no data for {self.stall_timeout:g} s"
                        )
                        self.ended_by = "timeout"
                    break
                data = drv.read_raw()
        except Disconnected as exc:
            self.error = exc
            self.ended_by = "disconnected"
        except Exception as exc:  # noqa: BLE001 - never leave consumers hanging on an unexpected bug
            self.error = PowerShieldError(f"reader thread failed: {exc!r}")
            self.ended_by = "error"
        finally:
            self.ended_wall = time.time()
            self.ring.close()
            if self.ended_by != "disconnected":
                if not self.decoder.done and stop_deadline is None:
                    try:  # ended abnormally (stall, bug): do not leave the shield streaming
                        drv.send_stop()
                    except PowerShieldError:
                        pass
                drv.end_acquisition(self.decoder.take_trailing())
            elif self.error is not None:  # the Disconnected that ended the reader
                drv.fail_pending(self.error)
            self._finished.set()

    def _account_tail(self) -> None:
        """A finite acquisition that ended by itself yields ``acqtime x rate`` samples; the timestamps
        (every 1000 samples) cannot reveal samples lost after the last one, so NaN-fill them here."""
        if self._expected_total is None or self.ended_by != "completed" or self.error is not None:
            return
        gap = self._expected_total - self.ring.total
        if 0 < gap <= 2 * TIMESTAMP_EVERY:
            self.ring.write(np.full(gap, np.nan))
            self.tail_lost += gap

    def _handle(self, data: bytes) -> None:
        out = self.decoder.feed(data)
        values = out.values
        if self.max_samples is not None:
            room = self.max_samples - self.ring.total
            if len(values) > room:
                self.truncated += len(values) - max(room, 0)
                values = values[: max(room, 0)]
            if (
                self.ring.total + len(values) >= self.max_samples
                and not self._stop_req.is_set()
                and not self._device_ends
            ):
                self.ended_by = self.ended_by or "limit"
                self._stop_req.set()
        if len(values):
            self.ring.write(values)
        if not out.events:
            return
        drv = self.driver
        new: list[tuple[int, StreamEvent]] = []
        for ev in out.events:
            if ev.kind == TIMESTAMP:
                self.buffer_pct = ev.buffer_pct
                continue
            if ev.kind in (ACK, REPLY_ERROR, ERROR_DETAIL) or ev.kind in _FRAME_ACK:
                drv.deliver_stream_event(ev)
            if ev.kind == ERROR and self.error is None:
                self.error = error_for_event(ev)
                self.ended_by = "error"
            if self.max_samples is not None:
                ev.index = min(ev.index, self.max_samples)
            new.append((self._ev_seq, ev))
            self._ev_seq += 1
        if new:
            with self._ev_lock:
                self._events.extend(new)

    # --- consumers ------------------------------------------------------------------------------
    def subscribe(self, max_block: int | None = None, from_start: bool = True) -> "Subscription":
        """A consumer cursor (start of the acquisition, or the newest sample if not ``from_start``)."""
        return Subscription(self, max_block or max(1000, int(self.rate_hz // 10)), from_start)


class Subscription:
    """One consumer's cursor into a :class:`Capture` (samples and events)."""

    def __init__(self, capture: Capture, max_block: int, from_start: bool = True) -> None:
        self.capture = capture
        self.max_block = int(max_block)
        self.cursor = 0 if from_start else capture.ring.total
        self._ev_seq = 0 if from_start else capture._ev_seq  # noqa: SLF001 - the capture's own cursor
        self.done = False

    def get(self, timeout: float = 0.5) -> Block | None:
        """Next block (waits up to ``timeout``); None if nothing new yet.  After the acquisition ended
        and everything was delivered, returns one ``final`` block (possibly empty), then None with
        :attr:`done` set."""
        if self.done:
            return None
        cap = self.capture
        ring = cap.ring
        if not ring.wait(self.cursor, timeout) and not cap.finished:
            return None
        finished = cap.finished  # read before the ring so nothing written after is missed
        rd = ring.read(self.cursor, self.cursor + self.max_block)
        nxt = rd.next_index if len(rd.values) else max(self.cursor, rd.first_index)
        # samples overwritten before this consumer read them (rd.overrun only counts those in the range asked
        # for: when more than a block behind the oldest sample held, the read is empty and misses the rest)
        overrun = rd.first_index - self.cursor
        final = finished and nxt >= ring.total
        events = self._events_before(nxt, final)
        self.cursor = nxt
        if final:
            self.done = True
        elif not len(rd.values) and not events and not overrun:
            return None
        lost = int(np.count_nonzero(np.isnan(rd.values))) if len(rd.values) else 0
        return Block(rd.first_index, rd.values, cap.rate_hz, events, lost, cap.lost, overrun, cap.buffer_pct, final)

    def _events_before(self, index: int, all_: bool) -> list[StreamEvent]:
        cap = self.capture
        out: list[StreamEvent] = []
        with cap._ev_lock:  # noqa: SLF001
            if not cap._events:  # noqa: SLF001
                return out
            base = cap._events[0][0]  # noqa: SLF001
            i = max(0, self._ev_seq - base)
            while i < len(cap._events):  # noqa: SLF001
                seq, ev = cap._events[i]  # noqa: SLF001
                if not all_ and ev.index >= index:
                    break
                out.append(ev)
                self._ev_seq = seq + 1
                i += 1
        return out

    def __iter__(self) -> Iterator[Block]:
        while not self.done:
            b = self.get(0.25)
            if b is not None:
                yield b
