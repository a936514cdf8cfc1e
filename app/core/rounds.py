"""Training rounds on the board: orchestration, per-batch energy attribution, persistence (Qt-free).

A *round* personalizes a model on the NUCLEO board with the user's labelled windows and measures what
each batch costs.  :class:`RoundRunner` does it in one call (on a worker thread, never the GUI thread):

1. load the model (the general model shipped in ``assets/models`` for the chosen input size, or an
   imported ``.keras``/``.h5``/``.npz``);
2. cut the current dataset's labelled accel recordings into windows at the model's rate (the paper's
   local split: chronological 60/40 per activity, training stride T/2, test stride T) and map the labels
   to the model's classes (``upstairs``/``downstairs`` gather into ``stairs`` etc.);
3. upload the model, the training windows (slot 0) and the test windows (slot 1), CRC-checked;
4. evaluate the test windows on the board (*before*), start the round, collect the per-batch reports,
   attribute LPM01A energy to each batch (below), evaluate again (*after*);
5. download the personalized weights (CRC-32 verified) and keep them beside the database
   (``rounds/round_<id>.npz``) with the raw training windows (for int8 export);
6. persist the round (``rounds`` table: config, result) and every batch (``round_batches``, written as
   each report arrives, so a crash mid-round keeps what was measured).

Progress and results are published through a :class:`RoundState` that views *pull* (a lock-protected
snapshot with a version counter); cancelling aborts the round on the board (TRAIN_ABORT).

**Energy per batch.**  The firmware raises D7 at the start of a round and at the end of every batch; the
LPM01A reports these edges in its stream, so batch *i* spans ``[edge_i, edge_i+1]`` on the power
timeline and its energy is ``V · mean(I) · Δt`` over those samples.  :func:`align_batches` matches edges
to the board's batch ticks (robust to missing or spurious edges: each expected edge is looked for near
the previous match plus the board-measured duration; a lost edge is replaced by its neighbour plus the
board's ticks).  When no edge matches at all, the round falls back to *host alignment*: the round start on the power timeline is taken as the moment the host saw the
TRAIN_START reply, and batch times are the board's ticks from there — accurate only to the USB latency,
so the round carries a warning.  :func:`attribute_energy` is the reusable whole-round version
(e.g. for a CLI that captures first and attributes afterwards).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from app.core.memory import release_memory
from app.core.paths import asset_path
from app.core.procedure import PLAIN, ROBUST, Procedure, ProcedureError, validation_split
from estimator.arch import Arch, resolve_trainable

if TYPE_CHECKING:  # pragma: no cover
    from app.core.models import LoadedModel
    from app.core.datasets import RecordingSet
    from app.core.store import Store

__all__ = [
    "RoundError",
    "RoundConfig",
    "BatchRow",
    "LocalData",
    "RoundState",
    "RoundRunner",
    "align_batches",
    "attribute_energy",
    "local_windows",
    "general_model_path",
    "GENERAL_SIZES",
    "MODES",
    "metrics_from_confusion",
    "round_rows",
    "round_summary",
    "round_report",
    "export_round",
    "calibration_records",
    "EXPORT_FORMATS",
    "EstimatorInputs",
    "RECOMMEND_EPOCHS",
    "labelled_seconds",
    "windows_per_epoch",
    "measured_points",
    "personalized_model",
]

MODELS_DIR = asset_path("models")  # frozen or from source, honours $ODL_ASSETS
#: Input sizes of the general models shipped in ``assets/models`` (paper CNN, WISDM-2019, 20 Hz).
GENERAL_SIZES = (20, 40, 60, 80, 100)
#: Trainable sets: the paper's TL (last two Dense) and Full, the last Dense only, or a custom list.
MODES = ("tl", "full", "last", "custom")
#: Export formats (keys of :func:`app.core.models.export_all`).
EXPORT_FORMATS = ("keras", "h5", "tflite_float32", "tflite_int8", "c_header", "npz")
ROUNDS_DIR = "rounds"
#: Epoch counts the recommender tries (the Estimator's simulation measures the same ones).
RECOMMEND_EPOCHS = (1, 2, 3, 5, 10)


class RoundError(RuntimeError):
    """A round that cannot run or a bad setting; the message says what and how to fix it."""


# ================================================================================================
# Configuration
# ================================================================================================


@dataclass
class RoundConfig:
    """What the user chose in the Training panel (stored as the round's ``config`` JSON)."""

    model_path: str | None = None  # None -> the general model for ``input_size``
    input_size: int = 20
    mode: str = "tl"  # one of MODES
    layers: tuple[str, ...] = ()  # trained layers for mode 'custom'
    epochs: int = 2
    lr: float = 0.01
    batch_size: int = 32
    warmup_epochs: int = 0  # epochs of last-Dense-only training first (the paper uses 2 on ST data)
    warmup_lr: float | None = None
    seed: int = 0
    train_fraction: float = 0.6
    measure_power: bool = True
    profile: str = "paper"  # estimator profile for the predictions shown beside the measurements
    procedure: dict = field(default_factory=ROBUST.to_dict)  # app.core.procedure.Procedure (robust by default)

    @property
    def proc(self) -> Procedure:
        return Procedure.from_dict(self.procedure or {})

    def validate(self) -> "RoundConfig":
        def bad(name: str, allowed: str) -> RoundError:
            return RoundError(f"{name} = {getattr(self, name)!r} is outside the allowed range ({allowed})")

        if self.mode not in MODES:
            raise bad("mode", " | ".join(MODES))
        if self.mode == "custom" and not self.layers:
            raise RoundError("mode 'custom' needs at least one layer to train (tick layers in the list)")
        if self.model_path is None and int(self.input_size) not in GENERAL_SIZES:
            raise bad("input_size", f"general models exist for T in {GENERAL_SIZES}")
        if not 1 <= int(self.epochs) <= 1000:
            raise bad("epochs", "1..1000")
        if not 0 <= int(self.warmup_epochs) <= 100:
            raise bad("warmup_epochs", "0..100")
        if not 1 <= int(self.batch_size) <= 1024:
            raise bad("batch_size", "1..1024")
        for name in ("lr", "warmup_lr"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(float(v)) and 0 < float(v) <= 10):
                raise bad(name, "0 < lr <= 10")
        if not 0.05 <= float(self.train_fraction) <= 0.95:
            raise bad("train_fraction", "0.05..0.95")
        try:
            self.proc.validate()
        except (ProcedureError, TypeError) as exc:
            raise RoundError(f"procedure: {exc}") from None
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RoundConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "layers" in kw:
            kw["layers"] = tuple(kw["layers"])
        if not isinstance(kw.get("procedure", {}), dict):
            kw.pop("procedure")
        kw.setdefault("procedure", PLAIN.to_dict())  # rounds stored before issue 17 ran the plain round
        return cls(**kw)


def general_model_path(input_size: int) -> Path:
    """The shipped general model for ``input_size`` (raises :class:`RoundError` naming what exists)."""
    p = MODELS_DIR / f"paper_cnn_wisdm5_T{int(input_size)}.keras"
    if not p.is_file():
        have = sorted(int(q.stem.rsplit("T", 1)[1]) for q in MODELS_DIR.glob("paper_cnn_wisdm5_T*.keras"))
        raise RoundError(
            f"no general model for input size T={input_size} in {MODELS_DIR} (have T in {have}); "
            "run `make assets` or import a model"
        )
    return p


def trainable_names(arch: Arch, cfg: RoundConfig) -> frozenset[str]:
    """Layer names the round trains (``custom``: the chosen layers, checked against the model)."""
    try:
        return frozenset(resolve_trainable(arch, list(cfg.layers) if cfg.mode == "custom" else cfg.mode))
    except Exception as exc:  # ArchError: unknown layer / nothing trainable
        raise RoundError(f"trainable set {cfg.mode!r} {list(cfg.layers) or ''}: {exc}") from exc


# ================================================================================================
# Local data from the store
# ================================================================================================


@dataclass
class LocalData:
    """Raw ``(N, T, 3)`` m/s² windows at the model's rate, labels as model class indices."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, tuple[int, int]]:
        return {c: (int(np.sum(self.train_y == i)), int(np.sum(self.test_y == i))) for i, c in enumerate(self.classes)}


def model_recordings(
    store: "Store", dataset_id: int, classes: Sequence[str], user: str = "user", rate_hz: float | None = None
) -> tuple["RecordingSet", list[str]]:
    """The dataset's labelled accel segments named as the model's ``classes`` (their own spelling), and
    notes on what was left out.  What a training round trains on and what "Simulate on my windows"
    measures, so the two agree.

    Labels are matched to the classes by :func:`app.core.classmap.class_map` (canonical names: case,
    synonyms; ``Stairs`` gathers ``stairs``/``upstairs``/``downstairs``, ``Stationary`` gathers
    sitting/standing), the rule ``odlstudio personalize`` uses too; labels the model does not know are
    left out and named in the notes.  The labels are cut by
    :func:`app.core.labels.labelled_recording_set`, but unlike ``labelled_recording_set(classes=...)`` (a
    dataset import) an unsplit ``stairs`` label is left out for a model with upstairs/downstairs classes
    rather than trained as ``upstairs``.  Raises :class:`RoundError` when nothing usable is labelled."""
    from app.core.classmap import ClassMapError, class_map
    from app.core.labels import labelled_recording_set

    rs = labelled_recording_set(store, dataset_id, user)  # canonical names, own rate
    if not rs.segments:
        raise RoundError(
            "the current dataset has no labelled accelerometer recording: record and label some "
            "activities in the Labelling panel first"
        )
    try:
        mapped = class_map(classes).apply(rs)
    except ClassMapError:
        raise RoundError(
            f"none of the labelled activities {rs.activities()} is a class of the model {list(classes)}"
        ) from None
    notes: list[str] = []
    if mapped.left_out:
        notes.append(f"labels {sorted(mapped.left_out)} are not classes of the model {list(classes)} and were left out")
    rs = mapped.recordings
    return (rs.resampled(float(rate_hz)) if rate_hz else rs), notes


def local_windows(
    store: "Store",
    dataset_id: int,
    classes: Sequence[str],
    input_size: int,
    rate_hz: float,
    train_fraction: float = 0.6,
    user: str = "user",
) -> LocalData:
    """The dataset's labelled accel windows for a model with ``classes`` at ``rate_hz`` Hz and ``input_size``
    (segments from :func:`model_recordings`, split chronologically per class, no window across the cut);
    ``classes`` keep the model's spelling."""
    from app.core.datasets import personal_split

    classes = tuple(classes)
    rs, notes = model_recordings(store, dataset_id, classes, user, rate_hz)
    train, test = personal_split(rs, int(input_size), float(train_fraction), classes=classes)
    if len(train) == 0 or len(test) == 0:
        secs = sum(s.duration_s for s in rs.segments)
        raise RoundError(
            f"{secs:.1f} s of usable labels give {len(train)} training and {len(test)} test windows "
            f"of T={input_size} at {rate_hz:g} Hz: label more data (each activity needs at least "
            f"~{2.5 * input_size / rate_hz:.0f} s)"
        )
    missing = [c for i, c in enumerate(classes) if not np.any(train.y == i)]
    if missing:
        notes.append(f"no labelled windows for {missing}: the round cannot improve them")
    return LocalData(train.x, train.y, test.x, test.y, classes, notes)


# ================================================================================================
# Metrics
# ================================================================================================


def metrics_from_confusion(confusion: np.ndarray, classes: Sequence[str], loss: float | None = None) -> dict:
    """Accuracy, macro-F1 (over the classes present in the test set) and per-class F1 of a confusion matrix
    (rows = true class)."""
    from device.engine import metrics

    cm = np.asarray(confusion, np.int64)
    k = cm.shape[0]
    y_true = np.repeat(np.repeat(np.arange(k), k), cm.ravel())
    y_pred = np.repeat(np.tile(np.arange(k), k), cm.ravel())
    n = int(cm.sum())
    if n == 0:
        return {
            "n": 0,
            "accuracy": None,
            "macro_f1": None,
            "per_class_f1": {},
            "confusion": cm.tolist(),
            "classes": list(classes),
            "loss": loss,
        }
    present = np.flatnonzero(cm.sum(axis=1))
    f1 = metrics.per_class_f1(y_true, y_pred, k)
    return {
        "n": n,
        "accuracy": float(metrics.accuracy(y_true, y_pred)),
        "macro_f1": float(metrics.macro_f1(y_true, y_pred, labels=present, n_classes=k)),
        "per_class_f1": {c: float(f1[i]) for i, c in enumerate(classes) if i in set(present.tolist())},
        "confusion": cm.tolist(),
        "classes": list(classes),
        "loss": None if loss is None else float(loss),
    }


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
    macro_f1: float | None = None  # phase 'val' (a validation pass, protocol v2): its macro-F1
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
) -> tuple[list[BatchRow], list[str]]:
    """Whole-round attribution: rows with ``t0``, ``t1``, average current/power and energy filled in, and
    warnings (host alignment used, no samples).  ``mean_current(t0, t1)`` is the mean current (A) over
    the interval or None when there are no samples."""
    spans = align_batches(
        rows, edges, tick_hz=tick_hz, round_start_tick=round_start_tick, anchor_t=anchor_t, rate_hz=rate_hz
    )
    out = []
    for r, (t0, t1, src) in zip(rows, spans):
        out.append(_with_energy(r, t0, t1, src, mean_current(t0, t1), voltage))
    return out, _alignment_warnings(out)


def _with_energy(r: BatchRow, t0: float, t1: float, src: str, amps: float | None, voltage: float) -> BatchRow:
    if amps is None or not math.isfinite(amps):
        return dataclasses.replace(r, t0=t0, t1=t1, source="none")
    p = float(amps) * float(voltage)
    return dataclasses.replace(
        r, t0=t0, t1=t1, avg_current_a=float(amps), avg_power_w=p, energy_j=p * (t1 - t0), source=src
    )


def _alignment_warnings(rows: Sequence[BatchRow]) -> list[str]:
    host = sum(r.source == "host" for r in rows)
    none = sum(r.source == "none" for r in rows)
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


# ================================================================================================
# Live state (pulled by the view)
# ================================================================================================


#: Progress of a round: everything before training (model, windows, uploads, first evaluation) is the first
#: 5 %, the batches share 5 … 95 % linearly (progress by batches done), the last evaluation and the download
#: the rest.
TRAIN_FRACTION = (0.05, 0.95)


def batch_fraction(done: int, total: int) -> float:
    """Round progress after ``done`` of ``total`` batches (linear in batches)."""
    lo, hi = TRAIN_FRACTION
    return lo + (hi - lo) * min(max(done, 0), max(total, 1)) / max(total, 1)


def round_eta(plan_s: Sequence[float], done: int, elapsed_s: float, tail_s: float = 0.0) -> float:
    """Seconds left of a round: the round plan's predicted board time of the batches not done yet plus
    ``tail_s`` (the evaluation after), scaled by how the batches done so far actually went — wall-clock
    seconds since training started per predicted second (1 before the first batch: the plan as is).  So it
    holds on a board slower or faster than its profile and on the virtual bench's fast clock."""
    done = max(0, min(int(done), len(plan_s)))
    pred_done = float(sum(plan_s[:done]))
    rest = float(sum(plan_s[done:])) + float(tail_s)
    speed = elapsed_s / pred_done if done and pred_done > 0 and elapsed_s > 0 else 1.0
    return max(0.0, rest * speed)


def eta_text(seconds: float | None) -> str:
    """``'about 2 min 10 s left'`` (rounded to what a person reads), ``''`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    s = max(0.0, float(seconds))
    if s < 5:
        return "a few seconds left"
    if s < 60:
        return f"about {int(round(s / 5) * 5)} s left"
    m, r = divmod(int(round(s / 10) * 10), 60)
    if m >= 10:
        return f"about {int(round(s / 60))} min left"
    return f"about {m} min {r} s left" if r else f"about {m} min left"


class RoundState:
    """Thread-safe progress of one round; the worker writes, views read :meth:`snapshot` on a timer.

    ``batches_done``/``total_batches`` and ``eta_s`` (seconds left when written, at ``eta_at`` =
    ``time.monotonic()``; None before training) give the progress by batches and the time estimate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.version = 0
        self.stage = "idle"
        self.fraction = 0.0
        self.text = ""
        self.batches_done = 0
        self.eta_s: float | None = None
        self.eta_at = 0.0
        self.round_id: int | None = None
        self.total_batches = 0
        self.rows: list[BatchRow] = []
        self.warnings: list[str] = []
        self.before: dict | None = None
        self.after: dict | None = None
        self.classes: tuple[str, ...] = ()
        self.status = "idle"  # idle | running | done | failed | cancelled

    def update(self, **kw: Any) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, v)
            self.version += 1

    def set_row(self, row: BatchRow) -> None:
        with self._lock:
            if row.index < len(self.rows):
                self.rows[row.index] = row
            else:
                self.rows.append(row)
            self.version += 1

    def warn(self, text: str) -> None:
        with self._lock:
            if text not in self.warnings:
                self.warnings.append(text)
                self.version += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "version": self.version,
                "stage": self.stage,
                "fraction": self.fraction,
                "text": self.text,
                "batches_done": self.batches_done,
                "eta_s": self.eta_s,
                "eta_at": self.eta_at,
                "round_id": self.round_id,
                "total_batches": self.total_batches,
                "rows": list(self.rows),
                "warnings": list(self.warnings),
                "before": self.before,
                "after": self.after,
                "classes": self.classes,
                "status": self.status,
            }


# ================================================================================================
# Orchestration
# ================================================================================================


def _progress_noop(fraction: float, text: str = "") -> None:
    return None


class _Cancel(Exception):
    pass


class RoundRunner:
    """Runs one round (see the module documentation).  Construct on any thread, call :meth:`run` on a
    worker thread.  ``devices`` is the :class:`~app.core.devices.DeviceManager`; ``cancelled()`` is polled."""

    def __init__(
        self,
        store: "Store",
        devices: Any,
        data_dir: str | Path,
        config: RoundConfig,
        dataset_id: int,
        state: RoundState | None = None,
        *,
        user: str = "user",
        profile_dir: str | Path | None = None,
        board_key: str | None = None,
        eval_timeout_s: float = 120.0,
        wait_power_s: float = 5.0,
    ):
        self.store = store
        self.devices = devices
        self.data_dir = Path(data_dir)
        self.config = config.validate()
        self.dataset_id = dataset_id
        self.state = state or RoundState()
        self.user = user
        self.profile_dir = profile_dir
        self.board_key = board_key
        self.eval_timeout_s = float(eval_timeout_s)
        self.wait_power_s = float(wait_power_s)
        self.round_id: int | None = None

    # --- helpers ------------------------------------------------------------------------------------
    def _stage(self, fraction: float, text: str, progress: Callable[..., None]) -> None:
        self.state.update(stage=text, fraction=fraction, text=text)
        progress(fraction, text)

    def load_model(self) -> "LoadedModel":
        from app.core.models import ModelError, load_model

        path = Path(self.config.model_path) if self.config.model_path else general_model_path(self.config.input_size)
        try:
            return load_model(path)
        except ModelError as exc:
            raise RoundError(str(exc)) from exc

    def _power(self) -> tuple[Any, float] | None:
        """The live power stream and voltage, starting the LPM01A stream if a shield is connected."""
        dm = self.devices
        st = dm.first("powershield")
        if st is None:
            self.state.warn("no LPM01A power shield: time is measured by the board, energy is not measured")
            return None
        from app.core.devices import DeviceState

        if st.state in (DeviceState.DISCONNECTED, DeviceState.ERROR):
            dm.connect(st.info.key)
        if st.state != DeviceState.STREAMING:
            dm.set_streaming(st.info.key, True)
        deadline = time.monotonic() + self.wait_power_s
        while time.monotonic() < deadline:
            s = dm.power_stream
            if dm.status(st.info.key).state == DeviceState.STREAMING and s is not None and s.n_total > 0:
                n0 = s.n_total
                time.sleep(0.05)
                if s.n_total > n0:
                    return s, float(dm.voltage)
            time.sleep(0.05)
        self.state.warn(
            f"{st.info.name} is not streaming ({dm.status(st.info.key).message or 'no samples'}): energy not measured"
        )
        return None

    def _board_ready(self) -> str:
        """Key of a connected board with its accel stream stopped (training needs the sensor idle)."""
        from app.core.devices import DeviceState

        dm = self.devices
        st = dm.status(self.board_key) if self.board_key else dm.first("board")
        if st is None:
            raise RoundError("no NUCLEO board found: connect one (Devices panel) or start the virtual bench")
        key = st.info.key
        if st.state in (DeviceState.DISCONNECTED, DeviceState.ERROR):
            dm.connect(key)
        if st.state == DeviceState.STREAMING:
            dm.set_streaming(key, False)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            s = dm.status(key).state
            if s == DeviceState.READY:
                return key
            if s == DeviceState.TRAINING:
                raise RoundError("the board is already running a round")
            time.sleep(0.05)
        raise RoundError(f"{st.info.name} did not become ready within 10 s ({dm.status(key).message})")

    # --- the round ----------------------------------------------------------------------------------
    def run(
        self, cancelled: Callable[[], bool] = lambda: False, progress: Callable[..., None] = _progress_noop
    ) -> dict:
        """Run the round; returns the stored result dict (raises :class:`RoundError` on failure, after
        recording the round as failed).  Cancelling returns the partial result with status 'cancelled'."""
        try:
            return self._run(cancelled, progress)
        finally:  # the round's windows and models are freed now: hand their pages back (see app.core.memory)
            if cancelled():  # Cancel or quitting: no ~0.3 s gc.collect (it holds the GIL); trim in the background
                threading.Thread(target=release_memory, args=(False,), name="release-memory", daemon=True).start()
            else:
                release_memory()

    def _run(self, cancelled: Callable[[], bool], progress: Callable[..., None]) -> dict:
        cfg = self.config
        self.state.update(
            status="running",
            rows=[],
            warnings=[],
            before=None,
            after=None,
            round_id=None,
            total_batches=0,
            batches_done=0,
            eta_s=None,
        )
        self._stage(0.005, "loading the model", progress)
        model = self.load_model()
        if cfg.model_path is None and model.input_size != cfg.input_size:
            raise RoundError(f"{model.source} takes T={model.input_size}, not {cfg.input_size}")
        rate = float(model.meta.get("rate_hz", 20.0))
        trainable = trainable_names(model.arch, cfg)
        self._stage(0.01, "windowing the labelled data", progress)
        data = local_windows(
            self.store, self.dataset_id, model.classes, model.input_size, rate, cfg.train_fraction, self.user
        )
        for n in data.notes:
            self.state.warn(n)
        config = {
            **cfg.to_dict(),
            "model_source": model.source,
            "model_classes": list(model.classes),
            "input_size": model.input_size,
            "rate_hz": rate,
            "trainable": sorted(trainable),
            "n_train": int(len(data.train_y)),
            "n_test": int(len(data.test_y)),
        }
        self.round_id = rid = self.store.add_round(config, self.dataset_id)
        self.store.update_round(rid, status="running")
        self.state.update(round_id=rid, classes=model.classes)
        result: dict = {"warnings": [], "classes": list(model.classes), "counts": data.counts()}
        try:
            result = self._run_on_board(model, data, trainable, rate, cancelled, progress, result)
        except _Cancel:
            result["warnings"] = self.state.snapshot()["warnings"]
            self.store.update_round(rid, status="cancelled", result=result)
            self.state.update(status="cancelled", text="cancelled")
            return {**result, "status": "cancelled", "round_id": rid}
        except Exception as exc:
            result["error"] = str(exc)
            result["warnings"] = self.state.snapshot()["warnings"]
            self.store.update_round(rid, status="failed", result=result)
            self.state.update(status="failed", text=str(exc))
            raise RoundError(f"round {rid} failed: {exc}") from exc
        self.store.update_round(rid, status="done", result=result)
        self.state.update(status="done", fraction=1.0, text="done")
        progress(1.0, "done")
        return {**result, "status": "done", "round_id": rid}

    def _run_on_board(
        self,
        model: "LoadedModel",
        data: LocalData,
        trainable: frozenset[str],
        rate: float,
        cancelled: Callable[[], bool],
        progress: Callable[..., None],
        result: dict,
    ) -> dict:
        from device.nucleo import protocol as P
        from estimator.core import time_per_batch_s
        from estimator.profiles import get_profile

        cfg, rid = self.config, self.round_id
        assert rid is not None
        power = self._power() if cfg.measure_power else None
        if not cfg.measure_power:
            self.state.warn("power measurement switched off for this round")
        key = self._board_ready()

        def check() -> None:
            if cancelled():
                raise _Cancel()

        with self.devices.board_session(key) as client:
            client.drain_events()
            info = client.info()
            tick_hz = float(info.tick_hz or 1_000_000)
            try:
                prof = get_profile(cfg.profile, self.profile_dir)
            except Exception:  # noqa: BLE001 - unknown profile: fall back to the board's build preset
                prof = get_profile("paper")
                self.state.warn(f"estimator profile {cfg.profile!r} not found; predictions use 'paper'")
            clock = float(info.sysclk_hz)

            def upl(lo: float, hi: float, what: str) -> Callable[[int, int], None]:
                return lambda done, total: (check(), self._stage(lo + (hi - lo) * done / max(1, total), what, progress))

            self._stage(0.01, "uploading the model", progress)
            client.upload_model(model.arch, model.weights, progress=upl(0.01, 0.025, "uploading the model"))
            client.clear_data()
            data = self._fit_ram(model, data, trainable, info, prof)
            procedure = cfg.proc
            if not procedure.is_plain and not client.supports_robust:
                self.state.warn(
                    f"the board speaks protocol v{client.proto}: no robust round (validation, best-epoch restore, "
                    "gradient clipping) — the paper's plain round runs; update the board's firmware"
                )
                procedure = PLAIN
            tr_idx, va_idx = validation_split(data.train_y, procedure.val_every)
            if procedure.validates and not len(va_idx):
                self.state.warn(
                    f"too few training windows to hold out every {procedure.val_every}th one for validation: "
                    "no validation, no best-epoch restore"
                )
            n_val = int(len(va_idx))
            order = np.concatenate([tr_idx, va_idx])  # slot 0: training windows, then validation windows
            xtr, xte = _board_windows(model, data.train_x[order]), _board_windows(model, data.test_x)
            ytr = data.train_y[order]
            scale = _int16_scale(xtr, xte)
            result["procedure"] = {**procedure.to_dict(), "label": procedure.label(), "n_val": n_val}
            client.upload_dataset(
                xtr,
                ytr,
                slot=0,
                dtype=P.DType.I16,
                scale=scale,
                progress=upl(0.025, 0.04, "uploading the training windows"),
            )
            client.upload_dataset(
                xte,
                data.test_y,
                slot=1,
                dtype=P.DType.I16,
                scale=scale,
                progress=upl(0.04, 0.045, "uploading the test windows"),
            )
            check()
            self._stage(0.045, "evaluating before personalization", progress)
            ev = self._evaluate(client, cancelled)
            before = metrics_from_confusion(ev.matrix, model.classes, ev.loss)
            self.state.update(before=before)
            result["before"] = before
            check()
            layer_idx = [i for i, l in enumerate(model.arch.layers) if l.name in trainable]
            mode = "mask" if cfg.mode == "custom" else cfg.mode
            a0 = power[0].duration if power else 0.0
            rinfo = client.train(
                mode,
                epochs=cfg.epochs,
                batch=cfg.batch_size,
                lr=cfg.lr,
                warmup_epochs=cfg.warmup_epochs,
                warmup_lr=cfg.warmup_lr,
                seed=cfg.seed,
                layer_indices=layer_idx if mode == "mask" else (),
                **procedure.wire(n_val),
            )
            anchor = 0.5 * (a0 + power[0].duration) if power else 0.0
            self.state.update(total_batches=int(rinfo.total_batches))
            result["round_info"] = {
                "board_round_id": rinfo.round_id,
                "batches_per_epoch": rinfo.batches_per_epoch,
                "total_batches": rinfo.total_batches,
                "mem_bytes": rinfo.mem_bytes,
                "ram_total": rinfo.ram_total,
                "est_ticks": rinfo.est_ticks,
                "sysclk_hz": clock,
                "tick_hz": tick_hz,
                "board": info.board,
                "build": info.build,
            }
            last_tr = frozenset(resolve_trainable(model.arch, "last"))

            def predict(phase: int, n: int) -> tuple[float, float]:
                names = last_tr if phase == P.Phase.WARMUP else trainable
                t = float(time_per_batch_s(model.arch, names, n, prof, clock))
                return t, t * float(prof.power_w(clock))

            # the evaluation after training, as the board costs it (inference of the test windows)
            from estimator.core import time_per_sample_s

            tail_s = len(data.test_y) * float(time_per_sample_s(model.arch, frozenset(), prof, clock))
            val_s = float(time_per_sample_s(model.arch, frozenset(), prof, clock))
            done_msg, rows = self._collect(
                client, rinfo, power, anchor, a0 - 0.01, tick_hz, predict, cancelled, progress, tail_s=tail_s,
                val_pass=(n_val * val_s, n_val * val_s * float(prof.power_w(clock))),
            )  # fmt: skip
            if done_msg is None:
                raise _Cancel()
            result["round_done"] = {
                "status": P.RoundStatus(done_msg.status).name.lower(),
                "epochs_done": done_msg.epochs_done,
                "batches_done": done_msg.batches_done,
                "last_loss": done_msg.last_loss,
                "train_accuracy": done_msg.train_accuracy,
                "seconds": (done_msg.end_tick - done_msg.start_tick) / tick_hz,
                "cycles": done_msg.cycles,
            }
            vals = [r for r in rows if r.phase == "val"]
            if vals:
                best = [r for r in vals if r.best] if procedure.restore_best else []
                kept = best[-1] if best else vals[-1]
                result["validation"] = {
                    "n_val": n_val,
                    "passes": len(vals),
                    "start": {"loss": vals[0].loss, "macro_f1": vals[0].macro_f1},
                    "kept": {"loss": kept.loss, "macro_f1": kept.macro_f1, "epoch": kept.epoch},
                    "best_epoch": int(done_msg.best_epoch),
                }
            if done_msg.status != P.RoundStatus.DONE:
                raise RoundError(
                    f"the board ended the round with status {P.RoundStatus(done_msg.status).name}"
                    + (f" (error {done_msg.error})" if done_msg.error else "")
                )
            self._stage(TRAIN_FRACTION[1], "evaluating after personalization", progress)
            ev = self._evaluate(client, cancelled)
            after = metrics_from_confusion(ev.matrix, model.classes, ev.loss)
            self.state.update(after=after)
            result["after"] = after
            self._stage(0.97, "downloading the personalized weights", progress)
            weights = client.download_weights(model.arch)  # CRC-32 checked (IntegrityError otherwise)
        result.update(_totals(rows))
        result["weights_path"] = self._save_weights(model, weights, data)
        result["warnings"] = self.state.snapshot()["warnings"]
        result["voltage_v"] = power[1] if power else None
        result["profile"] = prof.name
        return result

    def _evaluate(self, client: Any, cancelled: Callable[[], bool]) -> Any:
        """The board's evaluation of the test slot; Cancel (or quitting) stops the wait at once."""
        from device.nucleo.client import WaitCancelled

        try:
            return client.evaluate(1, timeout=self.eval_timeout_s, cancelled=cancelled)
        except WaitCancelled:
            raise _Cancel() from None

    def _fit_ram(
        self, model: "LoadedModel", data: LocalData, trainable: frozenset[str], info: Any, prof: Any
    ) -> LocalData:
        """Subsample the windows (evenly, keeping order) when they would not fit the board's SRAM next to
        the training buffers; the board stores int16 values plus one label byte per window."""
        from estimator.memory import robust_round_bytes, training_memory

        need = training_memory(model.arch, trainable).paper_bytes
        if self.config.warmup_epochs:
            need = max(need, training_memory(model.arch, resolve_trainable(model.arch, "last")).paper_bytes)
        proc = self.config.proc
        if not proc.is_plain:  # the best epoch's weights, the L2-SP anchor, the confusion counts
            need += robust_round_bytes(
                model.arch,
                trainable,
                bool(self.config.warmup_epochs),
                validate=proc.validates,
                restore_best=proc.restore_best and proc.validates,
                l2sp=proc.l2sp > 0,
            )
        budget = int(info.ram_total) - int(prof.firmware_reserve_bytes) - int(need) - 2048
        per = 2 * int(np.prod(model.arch.input_shape)) + 1
        n_tr, n_te = len(data.train_y), len(data.test_y)
        if (n_tr + n_te) * per + 64 <= budget:
            return data
        if budget < 2 * per + 64:
            raise RoundError(
                f"training needs {need / 1024:.0f} KiB of the board's {info.ram_total / 1024:.0f} KiB "
                "SRAM: no room left for any window; choose a smaller input size or TL"
            )
        keep_te = min(n_te, max(1, budget // (3 * per)))
        keep_tr = min(n_tr, max(1, (budget - 64 - keep_te * per) // per))
        pick = lambda n, k: np.unique(np.linspace(0, n - 1, int(k)).round().astype(int))  # noqa: E731
        itr, ite = pick(n_tr, keep_tr), pick(n_te, keep_te)
        self.state.warn(
            f"the board's SRAM holds {len(itr)} of {n_tr} training and {len(ite)} of {n_te} test "
            f"windows next to {need / 1024:.0f} KiB of training buffers: the rest was left out evenly"
        )
        return dataclasses.replace(
            data, train_x=data.train_x[itr], train_y=data.train_y[itr], test_x=data.test_x[ite], test_y=data.test_y[ite]
        )

    def _collect(
        self,
        client: Any,
        rinfo: Any,
        power: tuple[Any, float] | None,
        anchor: float,
        earliest: float,
        tick_hz: float,
        predict: Callable[[int, int], tuple[float, float]],
        cancelled: Callable[[], bool],
        progress: Callable[..., None],
        tail_s: float = 0.0,
        val_pass: tuple[float, float] | None = None,
    ) -> tuple[Any, list[BatchRow]]:
        """Batch reports until ROUND_DONE, attributing energy as the power stream covers each batch.  Progress
        is by batches done; the time left comes from the round plan (the estimator's time of each batch:
        warm-up batches train the last Dense only) scaled by how the batches done so far went."""
        from device.nucleo import protocol as P

        rid = self.round_id
        total = max(1, int(rinfo.total_batches))
        t_train = time.monotonic()  # TRAIN_START acknowledged: the board trains from here
        warm = int(self.config.warmup_epochs) * max(1, int(rinfo.batches_per_epoch))
        plan = [
            predict(P.Phase.WARMUP if i < warm else P.Phase.MAIN, int(self.config.batch_size))[0] for i in range(total)
        ]
        self.state.update(
            fraction=batch_fraction(0, total),
            text=f"batch 0/{total}",
            batches_done=0,
            eta_s=round_eta(plan, 0, 0.0, tail_s),
            eta_at=t_train,
        )
        rows: list[BatchRow] = []
        measured: set[int] = set()
        round_start_tick: int | None = None
        idle_limit = 30.0 + 3.0 * max(predict(P.Phase.MAIN, 1)[0] * 32, 1.0)  # no report for this long = stuck
        last_seen = time.monotonic()
        aborted = False
        done_msg = None

        def attribute(final: bool) -> None:
            if round_start_tick is None or not rows:
                return
            if power is None:
                for r in rows:
                    if r.index not in measured:
                        measured.add(r.index)
                        self._store_row(dataclasses.replace(r, source="none"))
                return
            stream, volt = power
            edges = [t for (t, kind, _text) in list(self.devices.power_events) if kind == "event" and t >= earliest]
            spans = align_batches(
                rows,
                edges,
                tick_hz=tick_hz,
                round_start_tick=round_start_tick,
                anchor_t=anchor,
                rate_hz=stream.rate_hz,
                earliest_t=earliest,
            )
            covered = stream.duration
            for r, (t0, t1, src) in zip(rows, spans):
                if r.index in measured:
                    continue
                # a batch is final once its end is in the stream and its end edge seen (or the round is over)
                if t1 > covered or (src != "d7" and not final and (r.index == len(rows) - 1 or t1 + 1.0 > covered)):
                    continue
                st = stream.stats(t0, t1)
                row = _with_energy(r, t0, t1, src, st.avg if st.n else None, volt)
                measured.add(r.index)
                rows[r.index] = row
                self._store_row(row)

        while True:
            ev = client.next_event((P.BatchReport, P.ValReport, P.RoundDone), 0.1)
            now = time.monotonic()
            if ev is not None:
                last_seen = now
            if isinstance(ev, P.ValReport):  # a validation pass: a D7 interval of its own, not a batch
                if round_start_tick is None:
                    round_start_tick = int(ev.start_tick)
                pt, pe = val_pass if val_pass else (None, None)
                row = BatchRow(
                    len(rows), "val", ev.epoch, 0, ev.n, float(ev.loss), int(ev.start_tick), int(ev.end_tick),
                    int(ev.cycles), (ev.end_tick - ev.start_tick) / tick_hz, pt, pe,
                    macro_f1=float(ev.macro_f1), best=bool(ev.best),
                )  # fmt: skip
                rows.append(row)
                self.store.put_round_batch(rid, row.index, row.to_dict())
                self.state.set_row(row)
            elif isinstance(ev, P.BatchReport):
                if round_start_tick is None:
                    round_start_tick = int(ev.start_tick)
                pt, pe = predict(ev.phase, ev.n_samples)
                row = BatchRow(
                    len(rows),
                    "warmup" if ev.phase == P.Phase.WARMUP else "main",
                    ev.epoch,
                    ev.batch,
                    ev.n_samples,
                    float(ev.loss),
                    int(ev.start_tick),
                    int(ev.end_tick),
                    int(ev.cycles),
                    (ev.end_tick - ev.start_tick) / tick_hz,
                    pt,
                    pe,
                )
                rows.append(row)
                self.store.put_round_batch(rid, row.index, row.to_dict())
                self.state.set_row(row)
                nb = sum(1 for r in rows if r.phase != "val")
                f = batch_fraction(nb, total)
                eta = round_eta(plan, nb, now - t_train, tail_s)
                text = f"batch {nb}/{total}, loss {ev.loss:.3f}"
                self.state.update(fraction=f, text=text, batches_done=nb, eta_s=eta, eta_at=now)
                progress(f, f"{text}, {eta_text(eta)}")
            elif isinstance(ev, P.RoundDone):
                if round_start_tick is None:
                    round_start_tick = int(ev.start_tick)
                done_msg = ev
                break
            if cancelled() and not aborted:  # first: abort at once (the attribution below can wait)
                aborted = True
                self.state.update(text="aborting the round")
                try:
                    client.abort()
                except Exception:  # noqa: BLE001 - the RoundDone wait below still times out
                    pass
                last_seen = now
            attribute(final=False)
            if now - last_seen > (10.0 if aborted else idle_limit):
                raise RoundError(
                    f"no report from the board for {now - last_seen:.0f} s ({len(rows)}/{total} batches done)"
                )
        # let the power stream catch up with the end of the last batch, then settle the rest (not for long after
        # a Cancel: quitting must not wait 3 s for the energy of a round the user stopped)
        if power is not None and rows:
            deadline = time.monotonic() + (0.2 if aborted else 3.0)
            while time.monotonic() < deadline and len(measured) < len(rows):
                attribute(final=False)
                time.sleep(0.05)
        attribute(final=True)
        for r in rows:
            if r.index not in measured:  # end never covered by the stream
                measured.add(r.index)
                row = dataclasses.replace(r, source="none")
                rows[r.index] = row
                self._store_row(row)
        for w in _alignment_warnings(rows):
            self.state.warn(w)
        if aborted:
            return None, rows
        return done_msg, rows

    def _store_row(self, row: BatchRow) -> None:
        assert self.round_id is not None
        self.store.put_round_batch(self.round_id, row.index, row.to_dict())
        self.state.set_row(row)

    def _save_weights(self, model: "LoadedModel", weights: Mapping[str, Sequence[np.ndarray]], data: LocalData) -> str:
        from app.core.models import atomic_path, export_npz

        rel = f"{ROUNDS_DIR}/round_{self.round_id}.npz"
        path = self.data_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pm = model.with_weights(weights, source=f"round {self.round_id} ({model.source})")
        pm.meta.update({"personalized_round": self.round_id, "base_model": model.source})
        export_npz(pm, path)
        with atomic_path(self.data_dir / f"{ROUNDS_DIR}/round_{self.round_id}_windows.npz") as tmp:
            np.savez(tmp, x=data.train_x, y=data.train_y)
        return rel


def _board_windows(model: "LoadedModel", x: np.ndarray) -> np.ndarray:
    """Raw windows -> what the board stores: the model's preprocessing, flattened to (N, T, C)."""
    xp = model.prepare(x)
    return xp.reshape(xp.shape[0], xp.shape[1], -1)


def _int16_scale(*xs: np.ndarray) -> float:
    """Scale so the windows fit int16 counts (the sensor's own resolution is coarser)."""
    m = max(float(np.max(np.abs(x))) if x.size else 0.0 for x in xs)
    return max(m, 1e-6) / 32000.0


def _totals(rows: Sequence[BatchRow]) -> dict:
    """Totals of a round: every D7 interval (batches and validation passes) counts toward its time and
    energy; ``n_batches`` counts training batches only."""
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
# History, report, export, calibration records
# ================================================================================================


def round_rows(store: "Store", round_id: int) -> list[BatchRow]:
    return [BatchRow.from_dict(d) for d in store.round_batches(round_id)]


def _round(store: "Store", round_id: int) -> dict:
    for r in store.rounds():
        if r["id"] == round_id:
            return r
    from app.core.store import StoreError

    raise StoreError(f"no training round with id {round_id}")


def round_summary(r: Mapping[str, Any]) -> str:
    """One line for a history list: id, model, mode, epochs, status, F1 before -> after."""
    c, res = r.get("config", {}), r.get("result", {})
    f1 = ""
    if res.get("before") and res.get("after"):
        f1 = f"  F1 {res['before']['macro_f1']:.3f} → {res['after']['macro_f1']:.3f}"
    e = f"  {res['energy_j'] * 1e3:.1f} mJ" if res.get("energy_j") else ""
    return (
        f"#{r['id']}  T={c.get('input_size', '?')} {str(c.get('mode', '?')).upper()} "
        f"{c.get('epochs', '?')} ep  [{r.get('status')}]{f1}{e}"
    )


def round_report(store: "Store", round_id: int) -> str:
    """A short Markdown report of a round: model, data, round metrics, estimator vs measured."""
    r = _round(store, round_id)
    c, res = r["config"], r["result"]
    rows = round_rows(store, round_id)
    lines = [
        f"# ODL Studio — personalization round {round_id}",
        "",
        f"* date: {time.strftime('%Y-%m-%d %H:%M', time.localtime(r['created']))}; status: **{r['status']}**",
        "",
        "## Model",
        "",
        f"* base model: `{Path(str(c.get('model_source', '?'))).name}` (input T={c.get('input_size')}, "
        f"{c.get('rate_hz', '?')} Hz), classes {', '.join(c.get('model_classes', []))}",
        f"* trained: {c.get('mode')} → layers {', '.join(c.get('trainable', []))}",
        f"* epochs {c.get('epochs')} (+{c.get('warmup_epochs', 0)} warm-up), lr {c.get('lr')}, "
        f"batch {c.get('batch_size')}, seed {c.get('seed')}",
        "",
        "## Data",
        "",
        f"* {c.get('n_train')} training windows, {c.get('n_test')} test windows "
        f"(chronological {int(100 * float(c.get('train_fraction', 0.6)))}/"
        f"{100 - int(100 * float(c.get('train_fraction', 0.6)))} split per activity)",
    ]
    for cls, (ntr, nte) in (res.get("counts") or {}).items():
        lines.append(f"  * {cls}: {ntr} train / {nte} test")
    lines += ["", "## Round", ""]
    if res.get("before") and res.get("after"):
        b, a = res["before"], res["after"]
        lines += [
            "| | accuracy | macro-F1 | loss |",
            "|---|---|---|---|",
            f"| before | {b['accuracy']:.3f} | {b['macro_f1']:.3f} | {b.get('loss') or float('nan'):.3f} |",
            f"| after | {a['accuracy']:.3f} | {a['macro_f1']:.3f} | {a.get('loss') or float('nan'):.3f} |",
            "",
        ]
    if rows:
        lines.append(
            f"* {len(rows)} batches, board time {sum(r.seconds for r in rows):.2f} s, "
            f"final batch loss {rows[-1].loss:.3f}"
        )
    if res.get("energy_j") is not None:
        lines.append(
            f"* measured energy {res['energy_j'] * 1e3:.2f} mJ, average power "
            f"{res['avg_power_w'] * 1e3:.3f} mW (LPM01A, {', '.join(res.get('energy_sources', []))})"
        )
    lines += ["", "## Estimator vs measured", "", "| | predicted | measured | error |", "|---|---|---|---|"]

    def row(name: str, pred: float | None, meas: float | None, unit: str, k: float) -> str:
        if pred is None or meas is None:
            return (
                f"| {name} | {'—' if pred is None else f'{pred * k:.3f} {unit}'} | "
                f"{'—' if meas is None else f'{meas * k:.3f} {unit}'} | — |"
            )
        err = 100.0 * (pred - meas) / meas if meas else float("nan")
        return f"| {name} | {pred * k:.3f} {unit} | {meas * k:.3f} {unit} | {err:+.1f} % |"

    lines.append(row("round time", res.get("pred_seconds"), res.get("seconds"), "s", 1.0))
    lines.append(row("round energy", res.get("pred_energy_j"), res.get("energy_j"), "mJ", 1e3))
    main = [r for r in rows if r.phase == "main" and r.n_samples == c.get("batch_size")]
    if main:
        pt = np.mean([r.pred_seconds for r in main])
        mt = np.mean([r.seconds for r in main])
        lines.append(row(f"time per batch of {c.get('batch_size')}", float(pt), float(mt), "s", 1.0))
    lines.append(f"\nprofile: `{res.get('profile', c.get('profile'))}`")
    if res.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"* {w}" for w in res["warnings"]]
    return "\n".join(lines) + "\n"


def personalized_model(store: "Store", round_id: int) -> "LoadedModel":
    """The personalized model of a finished round (weights as downloaded from the board)."""
    from app.core.models import load_npz

    r = _round(store, round_id)
    rel = r["result"].get("weights_path")
    if not rel:
        raise RoundError(f"round {round_id} has no personalized weights (status {r['status']})")
    path = store.resolve(rel)
    if not path.is_file():
        raise RoundError(f"round {round_id}: weights file {path} is missing")
    return load_npz(path)


def personalized_meta(store: "Store", round_id: int, model: "LoadedModel") -> dict:
    """What an exported personalized model is: the round (mode, layers, epochs, lr, batch, T), whose data
    (user, dataset, windows per class), its metrics before/after, the board and the measured cost.  This
    replaces the base model's metadata (pretraining optimizer, lr, batch, best epoch, the developer's paths,
    ``"format": "keras"`` on a TFLite file…) in the JSON sidecars and the ``.npz``."""
    from app import __version__
    from app.core.store import StoreError

    r = _round(store, round_id)
    c, res = r["config"], r["result"]
    user, dataset = None, None
    try:
        ds = store.dataset(int(r["dataset_id"]))
        dataset = ds.name
        user = store.user(ds.user_id).name
    except (StoreError, KeyError, TypeError, ValueError):
        pass

    def metrics(m: Mapping[str, Any] | None) -> dict | None:
        return None if not m else {k: m.get(k) for k in ("accuracy", "macro_f1", "loss") if k in m}

    info = res.get("round_info") or {}
    base = model.meta.get("base_model") or c.get("model_source") or ""
    return {
        "generated_by": f"ODL Studio {__version__}",
        "description": f"personalized on the board in round {round_id} ({str(c.get('mode', '?')).upper()}, "
        f"T={c.get('input_size')}) with {user or 'the user'}'s labelled data",
        "base_model": Path(str(base)).name if base else None,
        "rate_hz": float(c.get("rate_hz") or model.meta.get("rate_hz") or 20.0),
        "personalized": {
            "round_id": int(round_id),
            "status": r.get("status"),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(r["created"])) if r.get("created") else None,
            "mode": c.get("mode"),
            "trainable": list(c.get("trainable") or []),
            "input_size": c.get("input_size"),
            "epochs": c.get("epochs"),
            "warmup_epochs": c.get("warmup_epochs"),
            "learning_rate": c.get("lr"),
            "batch_size": c.get("batch_size"),
            "seed": c.get("seed"),
            "user": user,
            "dataset": dataset,
            "windows": {
                "train": c.get("n_train"),
                "test": c.get("n_test"),
                "per_class": {k: {"train": v[0], "test": v[1]} for k, v in (res.get("counts") or {}).items()},
                "split": f"chronological {int(100 * float(c.get('train_fraction', 0.6)))} % train per activity",
            },
            "metrics": {"before": metrics(res.get("before")), "after": metrics(res.get("after"))},
            "board": {k: info.get(k) for k in ("board", "build", "sysclk_hz") if info.get(k) is not None} or None,
            "batches": res.get("n_batches"),
            "board_seconds": res.get("seconds"),
            "energy_j": res.get("energy_j"),
            "profile": res.get("profile", c.get("profile")),
        },
    }


#: Export formats written with a JSON sidecar (``<file stem>.json``; .keras and .h5 share one).
SIDECAR_FORMATS = ("keras", "h5", "tflite_float32", "tflite_int8")


def export_round(
    store: "Store",
    round_id: int,
    out_dir: str | Path,
    formats: Sequence[str] = EXPORT_FORMATS,
    stem: str | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    progress: Callable[..., None] = _progress_noop,
) -> dict[str, Path]:
    """Write the round's personalized weights in ``formats`` plus ``<stem>_report.md`` into ``out_dir``.

    ``tflite_int8`` is calibrated on the round's own training windows.  Returns every file written:
    ``{format: path}``, the JSON sidecars as ``'metadata (keras, h5)'``… and ``'report'``.  The sidecars and
    the ``.npz`` describe the personalized model (:func:`personalized_meta`), not the base model.  Checks
    ``cancelled()`` between formats; a cancelled export leaves what was written."""
    from app.core.models import ModelError, export_all, sidecar_path

    bad = [f for f in formats if f not in EXPORT_FORMATS]
    if bad:
        raise RoundError(f"unknown export formats {bad} (known: {', '.join(EXPORT_FORMATS)})")
    if not formats:
        raise RoundError("choose at least one export format")
    model = personalized_model(store, round_id)
    model = dataclasses.replace(model, meta=personalized_meta(store, round_id, model))
    stem = stem or f"personalized_round{round_id}"
    out = Path(out_dir)
    rep = None
    if "tflite_int8" in formats:
        wpath = store.resolve(f"{ROUNDS_DIR}/round_{round_id}_windows.npz")
        if not wpath.is_file():
            raise RoundError(f"int8 export needs the round's training windows ({wpath} is missing)")
        with np.load(wpath) as z:
            rep = np.array(z["x"])
    written: dict[str, Path] = {}
    for i, f in enumerate(formats):
        if cancelled():
            break
        progress(i / (len(formats) + 1), f"writing {f}")
        try:
            written.update(export_all(model, out, stem, rep, formats=(f,)))
        except ModelError as exc:
            raise RoundError(f"export {f}: {exc}") from exc
    sides: dict[Path, list[str]] = {}
    for k, p in written.items():
        if k in SIDECAR_FORMATS and sidecar_path(p).is_file():
            sides.setdefault(sidecar_path(p), []).append(k)
    for side, kinds in sides.items():
        written[f"metadata ({', '.join(kinds)})"] = side
    if not cancelled():
        report = out / f"{stem}_report.md"
        text = round_report(store, round_id)
        text += "\n## Files\n\n" + "\n".join(f"* `{p.name}` ({k})" for k, p in written.items()) + "\n"
        report.write_text(text, encoding="utf-8")
        written["report"] = report
        progress(1.0, "done")
    return written


def calibration_records(store: "Store", rounds: Iterable[Mapping[str, Any]] | None = None) -> list:
    """:class:`estimator.BatchRecord` s from the finished rounds' batches (board-measured time and, where
    both D7 edges were seen, LPM01A energy), for ``estimator.calibrate``."""
    from estimator.calibrate import BatchRecord

    recs = []
    for r in store.rounds() if rounds is None else rounds:
        c, res = r["config"], r["result"]
        if r["status"] != "done" or not res.get("round_info"):
            continue
        try:
            arch = personalized_model(store, r["id"]).arch
        except Exception:  # noqa: BLE001 - weights file moved or deleted: skip the round
            continue
        clock = res["round_info"].get("sysclk_hz")
        for b in round_rows(store, r["id"]):
            if b.phase == "val":  # a validation pass is inference, not a training batch
                continue
            tr: Any = "last" if b.phase == "warmup" else list(c.get("trainable") or [])
            recs.append(
                BatchRecord(
                    arch,
                    tr,
                    int(b.n_samples),
                    float(b.seconds),
                    clock_hz=clock,
                    energy_j=b.energy_j if b.source == "d7" else None,
                    voltage_v=res.get("voltage_v"),
                    label=f"round {r['id']} batch {b.index}",
                )
            )
    return recs


# ================================================================================================
# Estimator inputs shared by the Estimator and Training panels
# ================================================================================================


@dataclass
class EstimatorInputs:
    """Budgets and options of the Estimator panel (persisted as ``estimator.*`` settings).  Budgets of 0
    mean "no budget"."""

    profile: str = "paper"
    batch_size: int = 32
    epochs: int = 2  # epochs shown in the table and chart
    ram_kib: float = 320.0
    reserve_kib: float = 24.0
    time_s: float = 0.0
    energy_mj: float = 0.0
    power_source: str = "charging"  # 'battery' | 'charging'
    accounting: str = "paper"  # one of estimator.recommend.ACCOUNTINGS
    n_classes: int = 5

    KEYS = (
        "profile",
        "batch_size",
        "epochs",
        "ram_kib",
        "reserve_kib",
        "time_s",
        "energy_mj",
        "power_source",
        "accounting",
    )

    @classmethod
    def from_settings(cls, settings: Any) -> "EstimatorInputs":
        d = cls()
        for k in cls.KEYS:
            v = settings.get(f"estimator.{k}", getattr(d, k))
            setattr(d, k, type(getattr(d, k))(v))
        return d

    def save(self, settings: Any) -> None:
        for k in self.KEYS:
            settings.set(f"estimator.{k}", getattr(self, k))

    def recommend(
        self,
        n_windows: int | Callable[[int], int | None] | None = None,
        profile_dir: str | Path | None = None,
        input_sizes: Sequence[int] = GENERAL_SIZES,
        epochs: Sequence[int] = RECOMMEND_EPOCHS,
        *,
        arch: "Arch | Callable[[int], Arch] | None" = None,
        accuracy: Any = None,
    ) -> Any:
        """:func:`estimator.recommend.recommend` under these budgets: TL and Full at ``input_sizes`` and
        ``epochs`` (plus the table's own :attr:`epochs`).

        ``arch``: the model — None for the paper CNN (:attr:`n_classes` classes), an :class:`Arch` (resized
        to each input size) or a factory ``T -> Arch`` (e.g. an imported model that fits other sizes);
        ``n_windows``: training windows per epoch (int or ``T -> int``, e.g. from the labelled data; None =
        one batch per epoch); ``accuracy``: an accuracy model (e.g. measured by :mod:`app.core.simulate`),
        None = the Table II prior; ``profile_dir``: where calibrated profiles live.  Both the Estimator and
        the Training panel call this, so they recommend the same thing."""
        from estimator.arch import paper_cnn
        from estimator.profiles import get_profile
        from estimator.recommend import recommend

        n_classes = int(self.n_classes)
        model = arch if arch is not None else (lambda T: paper_cnn(int(T), n_classes))
        return recommend(
            model,
            tuple(int(T) for T in input_sizes),
            ("tl", "full"),
            tuple(sorted(set(int(e) for e in epochs) | {int(self.epochs)})),
            batch_size=int(self.batch_size),
            profile=get_profile(self.profile, profile_dir),
            n_windows=n_windows,
            ram_kib=self.ram_kib,
            reserve_kib=self.reserve_kib,
            time_s=self.time_s or None,
            energy_mj=self.energy_mj or None,
            power_source=self.power_source,
            accounting=self.accounting,
            accuracy=accuracy,
            robust=True,  # the app's rounds are robust rounds (issue 17): cost their validation and RAM
        )


def labelled_seconds(store: "Store", dataset_id: int) -> float:
    """Seconds of labelled accelerometer data in a dataset (for windows-per-epoch estimates)."""
    return float(
        sum(l.end_s - l.start_s for rec in store.recordings("accel", dataset_id) for l in store.labels(rec.id))
    )


def windows_per_epoch(
    store: "Store", dataset_id: int, input_size: int, rate_hz: float = 20.0, train_fraction: float = 0.6
) -> int | None:
    """Training windows a round would get (60 % of the labelled time, stride T/2), None without labels."""
    s = labelled_seconds(store, dataset_id) * float(train_fraction)
    n = int(s * rate_hz)
    if n < input_size:
        return None
    return max(1, (n - int(input_size)) // max(1, int(input_size) // 2) + 1)


def measured_points(store: "Store") -> list[dict]:
    """Per finished round: input size, mode, mean measured time and energy of its full-size main batches,
    and the predictions for the same batches (for the Estimator panel's overlay)."""
    out = []
    for r in store.rounds():
        if r["status"] != "done":
            continue
        c = r["config"]
        rows = [b for b in round_rows(store, r["id"]) if b.phase == "main" and b.n_samples == c.get("batch_size")]
        if not rows:
            continue
        e = [b.energy_j for b in rows if b.energy_j is not None]
        out.append(
            {
                "round_id": r["id"],
                "input_size": c.get("input_size"),
                "mode": c.get("mode"),
                "batch_size": c.get("batch_size"),
                "seconds": float(np.mean([b.seconds for b in rows])),
                "energy_mj": float(np.mean(e)) * 1e3 if e else None,
                "pred_seconds": float(np.mean([b.pred_seconds or 0 for b in rows])),
                "pred_energy_mj": float(np.mean([b.pred_energy_j or 0 for b in rows])) * 1e3,
            }
        )
    return out
