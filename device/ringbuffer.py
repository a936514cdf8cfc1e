"""A bounded, thread-safe numpy ring buffer of float samples addressed by absolute sample index.

One producer (e.g. the LPM01A reader thread) appends blocks; any number of consumers (recorder, live
plot, statistics) read ranges by *absolute* index, so every consumer keeps its own cursor and nobody
blocks the producer.  When the producer laps a slow consumer, the oldest samples are overwritten and
the consumer is told how many it missed (``RingRead.overrun``) instead of silently getting wrong data.

Nothing here is LPM01A-specific: the GUI uses the same class for any sampled signal.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["RingBuffer", "RingRead"]


@dataclass(frozen=True)
class RingRead:
    """Result of :meth:`RingBuffer.read`.

    ``first_index`` is the absolute index of ``values[0]``; ``overrun`` counts requested samples that
    had already been overwritten (they precede ``first_index``)."""

    first_index: int
    values: np.ndarray
    overrun: int = 0

    @property
    def next_index(self) -> int:
        return self.first_index + len(self.values)


class RingBuffer:
    """Bounded FIFO of ``capacity`` samples (numpy ``dtype``) with absolute indices.

    * :meth:`write` appends and returns the absolute index of the first appended sample;
    * :meth:`read` returns a copy of ``[start, stop)`` clipped to what is still held;
    * :meth:`wait` blocks (with a timeout) until the producer passes an index or closes the buffer.

    All methods are thread-safe.  Blocks larger than the capacity keep only their newest samples.
    """

    def __init__(self, capacity: int, dtype: np.dtype | type = np.float64, start_index: int = 0) -> None:
        if int(capacity) < 1:
            raise ValueError(f"capacity must be >= 1 sample, got {capacity!r}")
        self.capacity = int(capacity)
        self._data = np.empty(self.capacity, dtype=dtype)
        self._total = int(start_index)  # absolute index of the next sample to be written
        self._start = int(start_index)  # absolute index of the first sample ever written
        self._cond = threading.Condition(threading.Lock())
        self._closed = False

    # --- producer side ------------------------------------------------------------------------
    def write(self, values: np.ndarray) -> int:
        """Append ``values``; returns the absolute index given to ``values[0]``."""
        values = np.asarray(values, dtype=self._data.dtype).ravel()
        n = len(values)
        with self._cond:
            first = self._total
            if n:
                if n > self.capacity:  # only the newest `capacity` samples can be kept
                    skip = n - self.capacity
                    values = values[skip:]
                    pos = (first + skip) % self.capacity
                else:
                    pos = first % self.capacity
                m = len(values)
                head = min(m, self.capacity - pos)
                self._data[pos : pos + head] = values[:head]
                if head < m:
                    self._data[: m - head] = values[head:]
                self._total = first + n
            self._cond.notify_all()
        return first

    def close(self) -> None:
        """Mark the stream finished: waiters wake up and :attr:`closed` becomes True."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # --- consumer side ------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def total(self) -> int:
        """Absolute index of the next sample to be written (= number written, plus ``start_index``)."""
        return self._total

    @property
    def first_available(self) -> int:
        """Oldest absolute index still held."""
        with self._cond:
            return self._first_available()

    def _first_available(self) -> int:
        return max(self._start, self._total - self.capacity)

    def __len__(self) -> int:
        with self._cond:
            return self._total - self._first_available()

    def read(self, start: int, stop: int | None = None) -> RingRead:
        """Copy of samples ``[start, stop)`` (``stop=None``: up to the newest).

        Samples already overwritten are reported in ``overrun``; samples not yet written are not
        returned (the result ends at :attr:`total`)."""
        with self._cond:
            lo = self._first_available()
            hi = self._total if stop is None else min(int(stop), self._total)
            start = int(start)
            overrun = max(0, min(lo, hi) - start)
            a = max(start, lo)
            if hi <= a:
                return RingRead(max(a, start), np.empty(0, self._data.dtype), overrun)
            return RingRead(a, self._copy(a, hi), overrun)

    def latest(self, n: int) -> RingRead:
        """The newest ``n`` samples (fewer if fewer are held; none for ``n <= 0``)."""
        with self._cond:
            hi = self._total
            a = max(self._first_available(), hi - max(0, int(n)))
            return RingRead(a, self._copy(a, hi), 0)

    def _copy(self, a: int, b: int) -> np.ndarray:
        n = b - a
        pos = a % self.capacity
        head = min(n, self.capacity - pos)
        if head == n:
            return self._data[pos : pos + n].copy()
        return np.concatenate((self._data[pos:], self._data[: n - head]))

    def wait(self, index: int, timeout: float) -> bool:
        """Block until ``total > index`` or the buffer is closed, at most ``timeout`` seconds.

        Returns True if data at ``index`` is available."""
        with self._cond:
            self._cond.wait_for(lambda: self._total > index or self._closed, timeout=max(0.0, timeout))
            return self._total > index
