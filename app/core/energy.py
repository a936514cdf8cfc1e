"""Energy of a training round's batches: the one implementation (Qt-free) of everything between the power
monitor's samples and a per-batch energy.

* :class:`PowerTrace` — what a power monitor measured, on one timeline in seconds: the current samples (a
  :class:`~app.core.streams.SampleStream`), the marker (D7) edges and the supply voltage.  The app's device
  manager keeps one for the whole session; ``odlstudio personalize`` keeps one per command
  (:class:`TimelineFeed` turns the monitor's blocks into it, the same way for both).
* :func:`align_batches` — places the board's batch reports on that timeline from the D7 edges (the firmware
  raises D7 at the round start and at every batch end; robust to lost or spurious edges; host alignment when
  no edge matches);
* :func:`with_energy` / :func:`attribute_energy` — ``V · mean(I) · Δt`` over each batch's interval;
* :func:`d7_edges` / :func:`d7_intervals` — the energy between consecutive D7 edges (the power panel's D7 view);
* :func:`round_totals`, :func:`alignment_warnings` — what a round's report says about them.

:mod:`app.core.board_round` attributes energy while a round runs with these functions, so the Training panel,
the power panel and ``odlstudio personalize`` show the same numbers for the same round.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from device.monitor import MARKER

if TYPE_CHECKING:  # pragma: no cover
    from app.core.streams import SampleStream
    from device.monitor import Block

__all__ = [
    "BatchRow",
    "D7Interval",
    "PowerTrace",
    "TimelineFeed",
    "align_batches",
    "alignment_warnings",
    "attribute_energy",
    "d7_edges",
    "d7_intervals",
    "round_totals",
    "with_energy",
]


# ================================================================================================
# The power timeline
# ================================================================================================


class PowerTrace:
    """Current samples (A), marker edges and supply voltage of a power monitor on one timeline (s).

    ``events()`` returns ``(t, kind, text)`` of the monitor's stream events (a marker edge has ``kind ==
    MARKER``); a callable so a live trace (the device manager's) is read when asked."""

    def __init__(
        self, stream: SampleStream, events: Callable[[], Iterable[tuple[float, str, str]]], voltage: float
    ) -> None:
        self.stream = stream
        self._events = events
        self.voltage = float(voltage)

    @property
    def rate_hz(self) -> float:
        return self.stream.rate_hz

    @property
    def covered(self) -> float:
        """Time of the end of the newest sample (s)."""
        return self.stream.duration

    def edges(self, t0: float = -math.inf, t1: float = math.inf) -> np.ndarray:
        """Sorted times of the marker edges in ``[t0, t1]``."""
        return d7_edges(self._events(), t0, t1)

    def mean_current(self, t0: float, t1: float) -> float | None:
        """Mean current (A) over ``[t0, t1)``, None without a (non-lost) sample there."""
        st = self.stream.stats(t0, t1)
        return float(st.avg) if st.n else None


class TimelineFeed:
    """Puts the blocks of one acquisition (:class:`device.monitor.Block`) on a power timeline: device sample 0
    lands at ``now()`` when the first block arrives (after what the stream already holds), lost samples and
    consumer overruns become marked gaps, and every stream event goes to ``on_event(t, kind, text)`` at the
    time of its sample.  Used by the app's device manager and by ``odlstudio personalize`` alike."""

    def __init__(
        self,
        stream: SampleStream,
        now: Callable[[], float],
        on_event: Callable[[float, str, str], None],
    ) -> None:
        self.stream = stream
        self.now = now
        self.on_event = on_event
        self.origin: int | None = None
        self.lost_samples = 0

    def feed(self, b: Block) -> None:
        stream = self.stream
        if len(b.values) == 0 and not b.events:
            return
        if self.origin is None:  # anchor device sample 0 on the shared timeline
            t = self.now() - b.first_index / b.rate_hz
            stream.extend_to(t, mark=stream.n_total > 0)
            self.origin = stream.n_total - b.first_index
        if b.overrun:
            self.lost_samples += b.overrun
            stream.append_gap(b.overrun)
        self.lost_samples += b.lost
        expect = self.origin + b.first_index
        if expect > stream.n_total:
            self.lost_samples += expect - stream.n_total
            stream.append_gap(expect - stream.n_total)
        if len(b.values):
            _append_marking_nan(stream, b.values, b.lost)
        for ev in b.events:
            self.on_event((self.origin + ev.index) / stream.rate_hz, ev.kind, ev.text)


def _append_marking_nan(stream: SampleStream, values: np.ndarray, lost: int) -> None:
    """Append ``values``; runs of NaN (samples lost in transit) go in as marked gaps."""
    if not lost:
        stream.append(values)
        return
    nan = np.isnan(values)
    d = np.diff(np.concatenate([[0], nan.view(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    pos = 0
    for a, b in zip(starts, ends):
        if a > pos:
            stream.append(values[pos:a])
        stream.append_gap(int(b - a))
        pos = int(b)
    if pos < len(values):
        stream.append(values[pos:])


class EventLog:
    """A thread-safe list of ``(t, kind, text)`` stream events (bounded), for a :class:`PowerTrace`."""

    def __init__(self, keep: int = 100_000) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[float, str, str]] = []
        self.keep = int(keep)

    def add(self, t: float, kind: str, text: str) -> None:
        with self._lock:
            self.items.append((t, kind, text))
            del self.items[: -self.keep]

    def __call__(self) -> list[tuple[float, str, str]]:
        with self._lock:
            return list(self.items)


# ================================================================================================
# Per-batch records and energy attribution
# ================================================================================================


@dataclass
class BatchRow:
    """One batch of a round (JSON in ``round_batches.data``).  Times ``t0``/``t1`` are on the power
    stream's timeline (s); ``source`` says how they were found: ``d7`` (end edge measured), ``d7-interp``
    (edge lost: neighbouring edge + board ticks), ``host`` (host alignment), ``none`` (no power
    measurement) or ``pending``."""

    index: int
    phase: str  # 'warmup' | 'main' | 'val' (a validation pass of a robust round: a D7 interval, no update)
    epoch: int
    batch: int
    n_samples: int
    loss: float
    start_tick: int
    end_tick: int
    cycles: int
    seconds: float
    pred_seconds: float | None = None
    pred_energy_j: float | None = None
    t0: float | None = None
    t1: float | None = None
    avg_current_a: float | None = None
    avg_power_w: float | None = None
    energy_j: float | None = None
    source: str = "pending"
    macro_f1: float | None = None  # phase 'val' (protocol v2 VAL_REPORT): the pass's macro-F1
    best: bool = False  # phase 'val': the best pass so far (its weights kept)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BatchRow":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def align_batches(
    rows: Sequence[BatchRow],
    edges: Iterable[float],
    *,
    tick_hz: float,
    round_start_tick: int,
    anchor_t: float,
    rate_hz: float,
    search_s: float = 2.0,
    rel_tol: float = 0.01,
    earliest_t: float | None = None,
) -> list[tuple[float, float, str]]:
    """``(t0, t1, source)`` of every row on the power timeline.

    ``edges``: D7 rising-edge times (s); the board raises one at the round start and one at every batch
    end.  The round start is found first: candidates are each of the first three edges at or after
    ``earliest_t`` (default ``anchor_t - search_s``; the power stream's end when the round was
    requested), and those edges minus the board-measured offsets of the first three batch ends (so a lost
    start edge is recovered); the candidate whose offsets explain most edges wins (ties: nearest to
    ``anchor_t``, the host's view of the round start).  Then each batch end is the edge nearest to the
    previous match plus the board-measured duration, within ``rel_tol`` of that duration plus two power
    samples (so clock drift never accumulates).

    ``source``: ``'d7'`` when the batch's end edge was seen (its start is the previous batch's end, or the
    round start); ``'d7-interp'`` when that edge was lost and the end is the last seen edge plus the
    board's ticks; ``'host'`` when no edge matches at all (host alignment from ``anchor_t``).
    """
    e = np.sort(np.asarray(list(edges), np.float64))
    tick_hz = float(tick_hz)
    starts = np.array([(r.start_tick - round_start_tick) / tick_hz for r in rows], np.float64)
    ends = np.array([(r.end_tick - round_start_tick) / tick_hz for r in rows], np.float64)
    slack = 2.0 / float(rate_hz) + 1e-4

    def nearest(t: float, tol: float) -> float | None:
        if not len(e):
            return None
        i = int(np.searchsorted(e, t))
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(e) and abs(e[j] - t) <= tol and (best is None or abs(e[j] - t) < abs(best - t)):
                best = float(e[j])
        return best

    def score(c: float) -> int:
        """Edges explained by a round start at ``c`` (the start itself and every batch end)."""
        offs = np.concatenate([[0.0], ends])
        t = c + offs
        i = np.clip(np.searchsorted(e, t), 1, len(e) - 1) if len(e) > 1 else np.zeros(len(t), int)
        d = np.minimum(np.abs(e[i] - t), np.abs(e[np.maximum(i - 1, 0)] - t))
        return int(np.count_nonzero(d <= rel_tol * offs + slack))

    origin: float | None = None
    lo = anchor_t - search_s if earliest_t is None else earliest_t
    after = e[e >= lo]
    if len(rows) and len(after):
        cands = {float(x) - sh for x in after[:3] for sh in (0.0, *ends[:3]) if float(x) - sh >= lo - slack}
        best = max(cands, key=lambda c: (score(c), -abs(c - anchor_t)))
        origin = best if score(best) >= (2 if len(rows) > 1 else 1) else None
    if origin is None:
        return [(anchor_t + s, anchor_t + t, "host") for s, t in zip(starts, ends)]
    out: list[tuple[float, float, str]] = []
    ref_t, ref_off = origin, 0.0  # last matched edge (or the origin) and its offset from the round start
    prev_end: float | None = None
    prev_off = 0.0
    for s, t in zip(starts, ends):
        if prev_end is not None and abs(s - prev_off) < 1e-9:
            t0 = prev_end
        else:
            t0 = ref_t + (s - ref_off)
        end_edge = nearest(ref_t + (t - ref_off), rel_tol * (t - ref_off) + slack)
        if end_edge is not None:
            ref_t, ref_off = end_edge, t
            out.append((t0, end_edge, "d7"))
            prev_end = end_edge
        else:
            t1 = ref_t + (t - ref_off)
            out.append((t0, t1, "d7-interp"))
            prev_end = t1
        prev_off = t
    return out


def attribute_energy(
    rows: Sequence[BatchRow],
    edges: Iterable[float],
    mean_current: Callable[[float, float], float | None],
    voltage: float,
    *,
    tick_hz: float,
    round_start_tick: int,
    anchor_t: float,
    rate_hz: float,
    earliest_t: float | None = None,
    covered: float = math.inf,
) -> tuple[list[BatchRow], list[str]]:
    """Whole-round attribution: rows with ``t0``, ``t1``, average current/power and energy filled in, and
    warnings (host alignment used, no samples).  ``mean_current(t0, t1)`` is the mean current (A) over
    the interval or None when there are no samples; a batch ending after ``covered`` (the end of the
    samples) has none."""
    spans = align_batches(
        rows,
        edges,
        tick_hz=tick_hz,
        round_start_tick=round_start_tick,
        anchor_t=anchor_t,
        rate_hz=rate_hz,
        earliest_t=earliest_t,
    )
    out = []
    for r, (t0, t1, src) in zip(rows, spans):
        amps = mean_current(t0, t1) if t1 <= covered else None
        out.append(with_energy(r, t0, t1, src, amps, voltage))
    return out, alignment_warnings(out)


def with_energy(r: BatchRow, t0: float, t1: float, src: str, amps: float | None, voltage: float) -> BatchRow:
    """``r`` placed at ``[t0, t1]`` (``src``: how) with ``V · amps · Δt``; ``source='none'`` without a current."""
    if amps is None or not math.isfinite(amps):
        return dataclasses.replace(r, t0=t0, t1=t1, source="none")
    p = float(amps) * float(voltage)
    return dataclasses.replace(
        r, t0=t0, t1=t1, avg_current_a=float(amps), avg_power_w=p, energy_j=p * (t1 - t0), source=src
    )


def alignment_warnings(rows: Sequence[BatchRow]) -> list[str]:
    host = sum(r.source == "host" for r in rows)
    # a robust round's validation pass can be shorter than one LPM01A sample period (a few windows of
    # inference): without a sample in it, it is not measured, which is no measurement fault
    none = sum(r.source == "none" and r.phase != "val" for r in rows)
    interp = sum(r.source == "d7-interp" for r in rows)
    w = []
    if interp:
        w.append(
            f"{interp} of {len(rows)} batches lost their D7 end edge: their interval is the neighbouring "
            "edge plus the board-measured duration"
        )
    if host:
        w.append(
            f"{host} of {len(rows)} batches had no matching D7 edges: their energy uses host alignment "
            "(board ticks from the moment the host saw the round start; off by the USB latency)"
        )
    if none:
        w.append(f"{none} of {len(rows)} batches have no power samples: energy not measured")
    return w


def round_totals(rows: Sequence[BatchRow]) -> dict:
    """A round's totals over its batches (stored in its result; the CLI's summary reads the same).  Every D7
    interval (batches and a robust round's validation passes) counts toward time and energy; ``n_batches``
    counts training batches only."""
    secs = [r.seconds for r in rows]
    energy = [r.energy_j for r in rows if r.energy_j is not None]
    dur = [r.t1 - r.t0 for r in rows if r.energy_j is not None and r.t0 is not None and r.t1 is not None]
    return {
        "n_batches": sum(1 for r in rows if r.phase != "val"),
        "val_passes": sum(1 for r in rows if r.phase == "val"),
        "seconds": float(sum(secs)),
        "energy_j": float(sum(energy)) if energy else None,
        "avg_power_w": float(sum(energy) / sum(dur)) if energy and sum(dur) > 0 else None,
        "pred_seconds": float(sum(r.pred_seconds or 0.0 for r in rows)),
        "pred_energy_j": float(sum(r.pred_energy_j or 0.0 for r in rows)),
        "energy_sources": sorted({r.source for r in rows}),
    }


# ================================================================================================
# The D7 view: energy between consecutive marker edges
# ================================================================================================


@dataclass(frozen=True)
class D7Interval:
    """The interval between two consecutive D7 edges and what the power monitor measured in it."""

    index: int  # 1-based
    t0: float
    t1: float
    avg_current_a: float
    energy_j: float  # V · mean(I) · Δt: a stretch without samples counts at the interval's mean (NaN: none at all)
    exact: bool
    missing_s: float = 0.0  # seconds of the interval without samples (lost blocks, a reconnect gap)

    @property
    def measured(self) -> bool:
        return math.isfinite(self.energy_j)


def d7_edges(events: Iterable[tuple[float, str, str]], t0: float = -math.inf, t1: float = math.inf) -> np.ndarray:
    """Sorted times of the D7 edges (``kind == MARKER``) among ``(t, kind, text)`` power events in [t0, t1]."""
    return np.array(sorted(t for t, kind, _ in list(events) if kind == MARKER and t0 <= t <= t1), np.float64)


def d7_intervals(edges: np.ndarray, stream: SampleStream, voltage: float) -> list[D7Interval]:
    """Energy between every pair of consecutive ``edges`` on ``stream``: ``V · mean(I) · Δt``, as
    :func:`with_energy` gives a batch that spans the same interval."""
    out = []
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]), 1):
        if b > stream.duration:
            break
        st = stream.stats(float(a), float(b))
        amps = float(st.avg) if st.n else math.nan
        energy = amps * float(voltage) * (float(b) - float(a))
        out.append(D7Interval(i, float(a), float(b), amps, energy, st.exact, float(st.lost_s)))
    return out
