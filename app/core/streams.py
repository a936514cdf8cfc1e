"""Stream buffers that the views pull from (Qt-free, thread-safe).

A :class:`SampleStream` holds one uniformly sampled, possibly multi-channel signal on a timeline that
starts at 0 s: sample ``k`` is at ``k / rate_hz`` seconds.  Device reader threads :meth:`~SampleStream.append`
blocks; missing time (lost samples, a disconnect) is appended as a *gap* (NaN samples, recorded in
:attr:`SampleStream.gaps`) so that data after a reconnect stays on the same timeline with the hole marked.

Memory is bounded whatever the session length:

* the most recent ``recent_s`` seconds are kept at full resolution (a ring of float32);
* the whole ``history_s`` is kept as a multi-resolution **min/max pyramid**: level 1 summarises buckets of
  ``base`` samples (min, max, sum, sum of squares, count of valid samples), level ``L`` buckets of
  ``base * factor**(L-1)`` samples, each level in its own ring.

1 h of 100 kS/s (360 M samples, 1.4 GB as float32) therefore costs ~12 MB of full-resolution ring (30 s)
plus ~10 MB of pyramid (base 1000, factor 10).  The full-resolution data of a whole session go to disk
(:mod:`app.core.recording`).

Views ask for :meth:`SampleStream.view` with the pixel width of the plot and get at most two points per
pixel column (min then max of the column, "peak" decimation) or the raw samples when zoomed in, so the
cost of a frame does not depend on the length of the history.  :attr:`SampleStream.version` changes on
every append: a view skips painting when neither the version nor its range changed.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Ring", "SampleStream", "StreamView", "Stats", "StreamError"]


class StreamError(ValueError):
    """Bad input to a stream (wrong shape, bad rate); the message names the argument."""


class Ring:
    """Bounded ring of rows addressed by *absolute* row index (0 = first row ever appended).

    Not thread-safe by itself; :class:`SampleStream` serialises access with its lock.
    """

    def __init__(self, capacity: int, row_shape: tuple[int, ...] = (), dtype=np.float32, fill=np.nan):
        if capacity < 1:
            raise StreamError(f"ring capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.buf = np.full((self.capacity, *row_shape), fill, dtype=dtype)
        self.fill = fill
        self.end = 0  # absolute index one past the newest row

    @property
    def start(self) -> int:
        """Absolute index of the oldest row still held."""
        return max(0, self.end - self.capacity)

    def append(self, rows: np.ndarray) -> None:
        n = len(rows)
        if n == 0:
            return
        if n >= self.capacity:
            rows = rows[-self.capacity :]
            skipped = n - self.capacity
            self.end += skipped
            n = self.capacity
        pos = self.end % self.capacity
        first = min(n, self.capacity - pos)
        self.buf[pos : pos + first] = rows[:first]
        if first < n:
            self.buf[: n - first] = rows[first:]
        self.end += n

    def append_fill(self, n: int) -> None:
        """Append ``n`` rows of the fill value without materialising more than ``capacity`` rows."""
        if n <= 0:
            return
        k = min(n, self.capacity)
        self.end += n - k
        self.append(np.full((k, *self.buf.shape[1:]), self.fill, dtype=self.buf.dtype))

    def get(self, i0: int, i1: int) -> np.ndarray:
        """Copy of rows ``[i0, i1)`` clamped to what is held (may be shorter than asked)."""
        i0 = max(i0, self.start)
        i1 = min(i1, self.end)
        if i1 <= i0:
            return self.buf[:0].copy()
        a, b = i0 % self.capacity, i1 % self.capacity
        if a < b or (b == 0 and i1 - i0 == self.capacity - a):
            return self.buf[a : a + (i1 - i0)].copy()
        return np.concatenate([self.buf[a:], self.buf[:b]])

    def covers(self, i0: int, i1: int) -> bool:
        return self.start <= i0 and i1 <= self.end


@dataclass
class _Buckets:
    """A block of summary buckets: per bucket and channel min, max, sum, sum of squares; count of valid samples."""

    mn: np.ndarray
    mx: np.ndarray
    s: np.ndarray
    ss: np.ndarray
    n: np.ndarray  # (k,) int64, valid samples per bucket

    def __len__(self) -> int:
        return len(self.n)

    @staticmethod
    def empty(ch: int) -> "_Buckets":
        return _Buckets(
            np.empty((0, ch), np.float32),
            np.empty((0, ch), np.float32),
            np.empty((0, ch)),
            np.empty((0, ch)),
            np.empty((0,), np.int64),
        )

    @staticmethod
    def nan(k: int, ch: int) -> "_Buckets":
        return _Buckets(
            np.full((k, ch), np.nan, np.float32),
            np.full((k, ch), np.nan, np.float32),
            np.zeros((k, ch)),
            np.zeros((k, ch)),
            np.zeros((k,), np.int64),
        )

    @staticmethod
    def from_samples(x: np.ndarray, size: int) -> "_Buckets":
        """Reduce ``x`` (k*size, ch) to k buckets; NaN samples are ignored (gaps)."""
        k = len(x) // size
        g = x[: k * size].reshape(k, size, x.shape[1])
        valid = ~np.isnan(g)
        z = np.where(valid, g, 0.0).astype(np.float64)
        return _Buckets(
            np.fmin.reduce(g, axis=1),
            np.fmax.reduce(g, axis=1),
            z.sum(axis=1),
            (z * z).sum(axis=1),
            valid[:, :, 0].sum(axis=1).astype(np.int64),
        )

    def group(self, size: int) -> "_Buckets":
        """Merge consecutive groups of ``size`` buckets (drops an incomplete tail)."""
        k = len(self) // size
        ch = self.mn.shape[1]

        def r(a: np.ndarray) -> np.ndarray:
            return a[: k * size].reshape(k, size, *a.shape[1:])

        return (
            _Buckets(
                np.fmin.reduce(r(self.mn), axis=1),
                np.fmax.reduce(r(self.mx), axis=1),
                r(self.s).sum(axis=1),
                r(self.ss).sum(axis=1),
                r(self.n).sum(axis=1),
            )
            if k
            else _Buckets.empty(ch)
        )

    def concat(self, other: "_Buckets") -> "_Buckets":
        return _Buckets(*(np.concatenate([a, b]) for a, b in zip(self._t(), other._t())))  # noqa: SLF001 - same class

    def tail(self, start: int) -> "_Buckets":
        return _Buckets(*(a[start:] for a in self._t()))

    def _t(self) -> tuple[np.ndarray, ...]:
        return (self.mn, self.mx, self.s, self.ss, self.n)


class _Level:
    """One pyramid level: rings of bucket fields plus the finer-level remainder not yet filling a bucket."""

    def __init__(self, size: int, capacity: int, ch: int):
        self.size = size  # samples per bucket
        self.rings = (
            Ring(capacity, (ch,), np.float32),
            Ring(capacity, (ch,), np.float32),
            Ring(capacity, (ch,), np.float64, 0.0),
            Ring(capacity, (ch,), np.float64, 0.0),
            Ring(capacity, (), np.int64, 0),
        )

    @property
    def end(self) -> int:
        return self.rings[0].end

    @property
    def start(self) -> int:
        return self.rings[0].start

    def append(self, b: _Buckets) -> None:
        for ring, a in zip(self.rings, b._t()):  # noqa: SLF001
            ring.append(a)

    def append_nan(self, k: int) -> None:
        for ring in self.rings:
            ring.append_fill(k)

    def get(self, j0: int, j1: int) -> tuple[int, _Buckets]:
        j0c = max(j0, self.start)
        return j0c, _Buckets(*(ring.get(j0c, j1) for ring in self.rings))


@dataclass(frozen=True)
class StreamView:
    """What a plot draws: ``x`` (s) and ``y`` (points, channels).  ``decimated`` means y holds min/max pairs."""

    x: np.ndarray
    y: np.ndarray
    decimated: bool
    samples_per_point: float


class Moments:
    """Count, mean, spread, min and max of samples added in chunks, two-pass within a chunk and merged
    exactly across chunks (Chan et al.): as precise for an hour read in pieces as for one array.  NaN
    (no data) is skipped."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.min, self.max = math.inf, -math.inf

    def add(self, y: np.ndarray) -> None:
        y = np.asarray(y, np.float64)
        y = y[~np.isnan(y)]
        nb = len(y)
        if not nb:
            return
        mb = float(y.mean())
        m2b = float(((y - mb) ** 2).sum())
        n = self.n + nb
        d = mb - self.mean
        self.mean += d * nb / n
        self.m2 += m2b + d * d * self.n * nb / n
        self.n = n
        self.min, self.max = min(self.min, float(y.min())), max(self.max, float(y.max()))

    def stats(self, t0: float, t1: float, exact: bool, rate_hz: float) -> "Stats":
        if not self.n:
            return Stats.empty(t0, t1, exact, rate_hz)
        return Stats(t0, t1, self.n, self.mean, math.sqrt(self.m2 / self.n), self.min, self.max, exact, rate_hz)


@dataclass(frozen=True)
class Stats:
    """Statistics of one channel over ``[t0, t1)``.  ``integral`` (C for A, J for W) sums the samples that
    exist — ``avg x n / rate`` — so lost samples and reconnect gaps (NaN) count as no data, not as the
    average; ``missing_s`` says how much of the range has no data.

    ``exact`` is False when the range had left the full-resolution ring and the figures come from level-1
    buckets (whole buckets overlapping the range: edges are rounded to ``base`` samples).
    """

    t0: float
    t1: float
    n: int
    avg: float
    std: float
    min: float
    max: float
    exact: bool
    rate_hz: float = 0.0  # sample rate (0: unknown, then the integral is avg x dt as if nothing were missing)

    @classmethod
    def empty(cls, t0: float, t1: float, exact: bool, rate_hz: float) -> "Stats":
        """The statistics of a range without samples: n = 0, the figures NaN."""
        nan = float("nan")
        return cls(t0, t1, 0, nan, nan, nan, nan, exact, rate_hz)

    @property
    def dt(self) -> float:
        return self.t1 - self.t0

    @property
    def covered_s(self) -> float:
        """Seconds of the range that have samples."""
        return self.n / self.rate_hz if self.rate_hz > 0 else self.dt

    @property
    def missing_s(self) -> float:
        """Seconds of the range without samples (gaps, lost blocks)."""
        return max(0.0, self.dt - self.covered_s)

    @property
    def lost_s(self) -> float:
        """:attr:`missing_s` when samples were lost (1.5 samples or more), else 0: less is the rounding of the
        range's ends to samples, which the readouts do not report as missing data."""
        return self.missing_s if self.rate_hz and self.missing_s * self.rate_hz >= 1.5 else 0.0

    @property
    def p2p(self) -> float:
        return self.max - self.min

    @property
    def integral(self) -> float:
        return self.avg * self.covered_s if self.n else float("nan")


class SampleStream:
    """Bounded multi-resolution buffer of a uniformly sampled signal; see the module documentation."""

    def __init__(
        self,
        name: str,
        rate_hz: float,
        channels: int = 1,
        *,
        unit: str = "",
        channel_names: tuple[str, ...] | None = None,
        recent_s: float = 30.0,
        history_s: float = 3600.0,
        base: int = 1000,
        factor: int = 10,
        levels: int | None = None,
    ):
        if not (rate_hz > 0 and math.isfinite(rate_hz)):
            raise StreamError(f"stream {name!r}: rate_hz must be a positive number, got {rate_hz!r}")
        if channels < 1:
            raise StreamError(f"stream {name!r}: channels must be >= 1, got {channels}")
        if base < 2 or factor < 2:
            raise StreamError(f"stream {name!r}: base and factor must be >= 2 (got {base}, {factor})")
        self.name = name
        self.rate_hz = float(rate_hz)
        self.channels = int(channels)
        self.unit = unit
        self.channel_names = tuple(channel_names or [f"ch{i}" for i in range(channels)])
        if len(self.channel_names) != channels:
            raise StreamError(f"stream {name!r}: {len(self.channel_names)} channel names for {channels} channels")
        self.recent_s = float(recent_s)
        self.history_s = max(float(history_s), float(recent_s))
        self.base = int(base)
        self.factor = int(factor)
        self._lock = threading.RLock()
        self._recent = Ring(max(1, int(round(recent_s * rate_hz))), (channels,), np.float32)
        hist = int(math.ceil(self.history_s * rate_hz))
        if levels is None:  # coarsest level: about a few hundred buckets over the history
            levels = 1
            while hist // (base * factor**levels) >= 200:
                levels += 1
        self._levels: list[_Level] = []
        size = base
        for _ in range(levels):
            self._levels.append(_Level(size, max(2, hist // size + 2), channels))
            size *= factor
        self._pending = np.empty((0, channels), np.float32)  # samples not yet filling a level-1 bucket
        self._pending_b: list[_Buckets] = [_Buckets.empty(channels) for _ in range(levels)]  # per level >= 2
        self.n_total = 0
        self.version = 0
        self.gaps: list[tuple[float, float]] = []
        self._sinks: list[Callable[[int, np.ndarray], None]] = []

    # --- writing (reader threads) ----------------------------------------------------------------
    def add_sink(self, fn: Callable[[int, np.ndarray], None]) -> None:
        """Call ``fn(first_index, block)`` (in the writer's thread) for every appended block, gaps as NaN."""
        with self._lock:
            self._sinks.append(fn)

    def remove_sink(self, fn: Callable[[int, np.ndarray], None]) -> None:
        with self._lock:
            if fn in self._sinks:
                self._sinks.remove(fn)

    def append(self, block: np.ndarray) -> None:
        """Append samples, shape ``(n,)`` for one channel or ``(n, channels)``."""
        x = np.asarray(block, dtype=np.float32)
        if x.ndim == 1 and self.channels == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise StreamError(f"stream {self.name!r}: block shape {x.shape}, expected (n, {self.channels})")
        if len(x) == 0:
            return
        with self._lock:
            first = self.n_total
            self._recent.append(x)
            p = np.concatenate([self._pending, x]) if len(self._pending) else x
            full = (len(p) // self.base) * self.base
            if full:
                self._push_level(0, _Buckets.from_samples(p[:full], self.base))
            self._pending = p[full:].copy()
            self.n_total += len(x)
            self.version += 1
            sinks = list(self._sinks)
        for fn in sinks:
            fn(first, x)

    def append_gap(self, n: int, mark: bool = True) -> None:
        """Append ``n`` missing samples (NaN); O(capacity) whatever ``n``.

        ``mark``: record the interval in :attr:`gaps` (False for the idle time before a stream first
        starts, which is not a loss)."""
        n = int(n)
        if n <= 0:
            return
        with self._lock:
            first = self.n_total
            t0 = first / self.rate_hz
            self._recent.append_fill(n)
            fill = min(n, self.base - len(self._pending)) if len(self._pending) else 0
            if fill:
                p = np.concatenate([self._pending, np.full((fill, self.channels), np.nan, np.float32)])
                if len(p) == self.base:
                    self._push_level(0, _Buckets.from_samples(p, self.base))
                    p = p[:0]
                self._pending = p
            rest = n - fill
            whole = rest // self.base
            if whole:
                self._push_nan(whole)
            tail = rest - whole * self.base
            if tail:
                self._pending = np.concatenate([self._pending, np.full((tail, self.channels), np.nan, np.float32)])
            self.n_total += n
            t1 = self.n_total / self.rate_hz
            if not mark:
                pass
            elif self.gaps and abs(self.gaps[-1][1] - t0) < 1e-12:
                self.gaps[-1] = (self.gaps[-1][0], t1)
            else:
                self.gaps.append((t0, t1))
            self.version += 1
            sinks = list(self._sinks)
        if sinks:
            block = np.full((min(n, 1 << 20), self.channels), np.nan, np.float32)
            for fn in sinks:
                for k in range(0, n, len(block)):
                    fn(first + k, block[: min(len(block), n - k)])

    def extend_to(self, t: float, mark: bool = True) -> None:
        """Fill from the current end of the stream up to time ``t`` with a gap (e.g. after a reconnect)."""
        self.append_gap(int(round(t * self.rate_hz)) - self.n_total, mark)

    def _push_level(self, li: int, b: _Buckets) -> None:
        lvl = self._levels[li]
        lvl.append(b)
        if li + 1 < len(self._levels):
            p = self._pending_b[li + 1].concat(b) if len(self._pending_b[li + 1]) else b
            full = (len(p) // self.factor) * self.factor
            if full:
                self._push_level(li + 1, p.group(self.factor))
            self._pending_b[li + 1] = p.tail(full)

    def _push_nan(self, k: int, li: int = 0) -> None:
        """Append ``k`` empty buckets at level ``li`` (a long gap) without building k * size samples."""
        if k <= 0:
            return
        lvl = self._levels[li]
        if li + 1 >= len(self._levels):
            lvl.append_nan(k)
            return
        r = len(self._pending_b[li + 1])
        fill = min(k, self.factor - r) if r else 0
        if fill:  # complete the partial group of the next level first
            self._push_level(li, _Buckets.nan(fill, self.channels))
            k -= fill
        groups, rest = divmod(k, self.factor)
        if groups:
            lvl.append_nan(groups * self.factor)
            self._push_nan(groups, li + 1)
        if rest:
            self._push_level(li, _Buckets.nan(rest, self.channels))

    # --- reading (GUI thread) ------------------------------------------------------------------------
    @property
    def duration(self) -> float:
        """Time of the end of the newest sample (s)."""
        return self.n_total / self.rate_hz

    @property
    def first_time(self) -> float:
        """Oldest time still available at some resolution."""
        with self._lock:
            return self._levels[-1].start * self._levels[-1].size / self.rate_hz if self._levels else 0.0

    def level_sizes(self) -> list[int]:
        return [lvl.size for lvl in self._levels]

    def samples(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Full-resolution ``(t, y)`` over ``[t0, t1)`` if still in the recent ring, else None."""
        i0, i1 = self._index_range(t0, t1)
        with self._lock:
            if not self._recent.covers(i0, i1):
                return None
            y = self._recent.get(i0, i1)
        return (i0 + np.arange(len(y))) / self.rate_hz, y

    def view(self, t0: float, t1: float, width_px: int) -> StreamView:
        """At most ``2 * width_px`` points over ``[t0, t1)``: raw samples when zoomed in, else per-column min/max."""
        width_px = max(1, int(width_px))
        i0, i1 = self._index_range(t0, t1)
        i0 = max(0, i0 - 1)
        i1 = min(self.n_total, i1 + 1)
        if i1 <= i0:
            return StreamView(np.empty(0), np.empty((0, self.channels), np.float32), False, 1.0)
        spp = (i1 - i0) / width_px
        with self._lock:
            if spp <= 2.0 and self._recent.covers(i0, i1):
                y = self._recent.get(i0, i1)
                return StreamView((i0 + np.arange(len(y))) / self.rate_hz, y, False, 1.0)
            if spp < self.base:
                col = max(1, int(spp)) if self._recent.covers(i0, i1) else self.base
            else:
                size = max(lvl.size for lvl in self._levels if lvl.size <= spp)
                col = int(spp // size) * size
            a = (i0 // col) * col
            mn, mx = self._columns(a, i1, col)
        return _minmax_view(a, col, mn, mx, self.rate_hz)

    def _columns(self, pos: int, i1: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-column min/max over ``[pos, i1)`` for columns of ``col`` samples (``pos`` a multiple of col).

        Whole columns come from the coarsest level whose bucket divides ``col``; the newest part, not yet
        summarised there, from finer levels and finally from the raw ring.  Caller holds the lock.
        """
        ch = self.channels
        end_col = -(-i1 // col) * col
        mns, mxs = [], []
        for lvl in reversed([lv for lv in self._levels if lv.size <= col and col % lv.size == 0]):
            if pos >= i1:
                break
            m = col // lvl.size
            ncols = (min(lvl.end * lvl.size, end_col) - pos) // col
            if ncols <= 0:
                continue
            j0 = pos // lvl.size
            jstart, b = lvl.get(j0, j0 + ncols * m)
            pad = jstart - j0
            bmn, bmx = b.mn, b.mx
            if pad:
                nanpad = np.full((pad, ch), np.nan, np.float32)
                bmn, bmx = np.concatenate([nanpad, bmn]), np.concatenate([nanpad, bmx])
            mns.append(np.fmin.reduce(bmn.reshape(ncols, m, ch), axis=1))
            mxs.append(np.fmax.reduce(bmx.reshape(ncols, m, ch), axis=1))
            pos += ncols * col
        if pos < i1:
            stop = min(i1, self.n_total)
            y = self._recent.get(pos, stop)
            lead = max(0, min(self._recent.start, stop) - pos)
            k = -(-(stop - pos) // col) if stop > pos else 0
            if k:
                buf = np.full((k * col, ch), np.nan, np.float32)
                buf[lead : lead + len(y)] = y
                g = buf.reshape(k, col, ch)
                mns.append(np.fmin.reduce(g, axis=1))
                mxs.append(np.fmax.reduce(g, axis=1))
        if not mns:
            return np.empty((0, ch), np.float32), np.empty((0, ch), np.float32)
        return np.concatenate(mns), np.concatenate(mxs)

    def stats(self, t0: float, t1: float, channel: int = 0) -> Stats:
        """avg/std/min/max over ``[t0, t1)`` of one channel; exact while the range is in the recent ring."""
        if t1 < t0:
            t0, t1 = t1, t0
        i0, i1 = self._index_range(t0, t1)
        i0, i1 = max(0, i0), min(self.n_total, i1)
        if i1 <= i0:
            return Stats.empty(t0, t1, True, self.rate_hz)
        with self._lock:
            if self._recent.covers(i0, i1):
                m = Moments()
                m.add(self._recent.get(i0, i1)[:, channel])
                return m.stats(i0 / self.rate_hz, i1 / self.rate_hz, True, self.rate_hz)
            n, sm, ss, mn, mx, lo, hi = self._range_sums(i0, i1, channel)
        if n == 0:
            return Stats.empty(t0, t1, False, self.rate_hz)
        avg = sm / n
        std = math.sqrt(max(0.0, ss / n - avg * avg))
        # the range the buckets span (its edges rounded to level-1 buckets), so that missing_s compares the
        # samples counted with the span they come from, not with the range asked for (off by up to a bucket)
        return Stats(lo / self.rate_hz, hi / self.rate_hz, n, avg, std, mn, mx, False, self.rate_hz)

    def _range_sums(self, i0: int, i1: int, ch: int) -> tuple[int, float, float, float, float, int, int]:
        """Pyramid range query: whole coarse buckets inside the range, finer levels at its edges, level-1
        buckets (rounded to the nearest bucket) at the very edges.  O(levels * factor).  Caller holds the lock.
        Returns ``(n, sum, sum of squares, min, max, lo, hi)``: ``[lo, hi)`` are the sample indices the buckets
        used span."""
        n, sm, ss, mn, mx = 0, 0.0, 0.0, math.inf, -math.inf
        lo, hi = i1, i0
        todo = [(i0, i1)]
        for li in range(len(self._levels) - 1, -1, -1):
            lvl = self._levels[li]
            size = lvl.size
            rest = []
            for a, b in todo:
                if li == 0:
                    j0, j1 = int(round(a / size)), int(round(b / size))
                else:
                    j0, j1 = -(-a // size), b // size
                j0, j1 = max(j0, lvl.start), min(j1, lvl.end)
                if j1 <= j0:
                    if li:
                        rest.append((a, b))
                    continue
                _, bk = lvl.get(j0, j1)
                lo, hi = min(lo, j0 * size), max(hi, j1 * size)
                n += int(bk.n.sum())
                sm += float(bk.s[:, ch].sum())
                ss += float(bk.ss[:, ch].sum())
                if bk.n.any():
                    mn = min(mn, float(np.nanmin(np.where(bk.n > 0, bk.mn[:, ch], np.nan))))
                    mx = max(mx, float(np.nanmax(np.where(bk.n > 0, bk.mx[:, ch], np.nan))))
                if li:
                    if a < j0 * size:
                        rest.append((a, j0 * size))
                    if j1 * size < b:
                        rest.append((j1 * size, b))
            todo = rest
        return n, sm, ss, mn, mx, lo, hi

    def _index_range(self, t0: float, t1: float) -> tuple[int, int]:
        # Times usually come from index / rate: absorb the float round trip (255866 / 1e5 * 1e5 is
        # 255866.00000000003, whose ceil would ask for one sample past the end).
        eps = 1e-6
        return int(math.floor(t0 * self.rate_hz + eps)), int(math.ceil(t1 * self.rate_hz - eps))


def _minmax_view(first: int, size: int, mn: np.ndarray, mx: np.ndarray, rate: float) -> StreamView:
    """Interleave per-column min and max into one polyline (x repeated twice per column)."""
    k = len(mn)
    xc = (first + np.arange(k) * size + size / 2.0) / rate
    x = np.repeat(xc, 2)
    y = np.empty((2 * k, mn.shape[1]), np.float32)
    y[0::2] = mn
    y[1::2] = mx
    return StreamView(x, y, True, float(size))
