"""A training round's data and metrics (Qt-free): the current dataset's labelled windows for a model
(:func:`local_windows`) and the metrics of a confusion matrix.  Part of :mod:`app.core.rounds` (which re-exports
it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from app.core.round_config import RoundError

if TYPE_CHECKING:  # pragma: no cover
    from app.core.datasets import RecordingSet
    from app.core.procedure import Procedure
    from app.core.store import Store

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


#: A round (or a simulation) asked of a dataset with nothing labelled.
NO_LABELS = (
    "the current dataset has no labelled accelerometer recording: record and label some "
    "activities in the Labelling panel first"
)


def check_labelled(store: "Store", dataset_id: int, user: str = "user") -> None:
    """Raise :class:`RoundError` (:data:`NO_LABELS`) when the dataset has no labelled accel segment: the check
    a round makes before it loads any model."""
    from app.core.labels import labelled_recording_set

    if not labelled_recording_set(store, dataset_id, user).segments:
        raise RoundError(NO_LABELS)


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
        raise RoundError(NO_LABELS)
    try:
        mapped = class_map(classes).apply(rs)
    except ClassMapError:
        raise RoundError(
            f"none of the labelled activities ({', '.join(rs.activities())}) is a class of the model "
            f"({', '.join(classes)})"
        ) from None
    notes: list[str] = []
    if mapped.left_out:
        notes.append(
            f"labels {', '.join(sorted(mapped.left_out))} are not classes of the model ({', '.join(classes)}) "
            "and were left out"
        )
    rs = mapped.recordings
    return (rs.resampled(float(rate_hz)) if rate_hz else rs), notes


def one_class_note(present: Sequence[str]) -> str | None:
    """What a round on the windows of one activity ``present[0]`` is worth, said before it runs (the Training
    panel's warnings, ``odlstudio personalize``'s); None for two activities or more."""
    if len(present) != 1:
        return None
    return (
        f"only {present[0]} is labelled: a round on one activity can only teach the model to answer {present[0]}, "
        "and its macro-F1 is that one class's F1 — label at least two activities to personalize meaningfully"
    )


def macro_f1_scope(m: dict | None) -> str:
    """``' over 3 of 5 classes'`` after a macro-F1 computed over fewer classes than the model has (the classes
    present in the test windows: :func:`metrics_from_confusion`), ``' over 1 of 5 classes (walking)'`` for one,
    ``''`` over all of them."""
    if not m or m.get("macro_f1") is None:
        return ""
    present, k = list(m.get("per_class_f1") or {}), len(m.get("classes") or ())
    if not present or len(present) >= k:
        return ""
    if len(present) == 1:
        return f" over 1 of {k} classes ({present[0]})"
    return f" over {len(present)} of {k} classes"


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
        notes.append(f"no labelled windows for {', '.join(missing)}: the round cannot improve them")
    one = one_class_note([c for i, c in enumerate(classes) if np.any(train.y == i)])
    if one:
        notes.append(one)
    return LocalData(train.x, train.y, test.x, test.y, classes, notes)


# ================================================================================================
# What a round runs: windows, batches, validation passes
# ================================================================================================


@dataclass(frozen=True)
class RoundCounts:
    """What a round of ``epochs`` (+ ``warmup_epochs``) runs on the board: ``n_train`` windows trained on per
    epoch, ``n_val`` held out to validate (the robust round: the tail of each class), ``n_test`` evaluated
    before and after, ``batches`` in all (every epoch, warm-up included) and ``val_passes`` (one before the
    round and one after every epoch when windows validate)."""

    n_train: int
    n_val: int
    n_test: int
    batches_per_epoch: int
    batches: int
    val_passes: int


def round_counts(
    train_y: np.ndarray,
    n_test: int,
    batch_size: int,
    epochs: int,
    warmup_epochs: int = 0,
    procedure: "Procedure | None" = None,
) -> RoundCounts:
    """The :class:`RoundCounts` of a round on training windows labelled ``train_y`` (stored order) with
    ``procedure`` (default the robust round): the split :meth:`Procedure.split` makes, the board's
    ``ceil(n_train / batch)`` batches per epoch and its validation passes.  The Training panel's cost of the
    round and the Estimator panel count with it, so they cost what the round then records."""
    from app.core.procedure import ROBUST

    proc = ROBUST if procedure is None else procedure
    tr, va = proc.split(np.asarray(train_y))
    n_tr, n_va = int(len(tr)), int(len(va))
    per = -(-n_tr // max(1, int(batch_size)))
    ep = int(epochs) + int(warmup_epochs)
    return RoundCounts(n_tr, n_va, int(n_test), per, per * ep, ep + 1 if n_va else 0)


def round_counts_text(c: RoundCounts) -> str:
    """``'108 training windows per epoch, 12 batches; 12 validation windows × 4 passes'`` (what a cost is of)."""

    def n(k: int, what: str, plural: str = "s") -> str:
        return f"{k} {what}{plural if k != 1 else ''}"

    text = f"{n(c.n_train, 'training window')} per epoch, {n(c.batches, 'batch', 'es')}"
    if c.val_passes:
        text += f"; {n(c.n_val, 'validation window')} × {n(c.val_passes, 'pass', 'es')}"
    return text


def planned_counts(
    store: "Store",
    dataset_id: int,
    classes: Sequence[str],
    input_size: int,
    rate_hz: float,
    batch_size: int,
    epochs: int,
    warmup_epochs: int = 0,
    procedure: "Procedure | None" = None,
    train_fraction: float = 0.6,
    user: str = "user",
) -> RoundCounts | None:
    """:func:`round_counts` of the windows a round would cut from the dataset now (:func:`local_windows`), or
    None when it would not run (nothing labelled, no class of the model, too few windows)."""
    try:
        data = local_windows(store, dataset_id, classes, input_size, rate_hz, train_fraction, user)
    except RoundError:
        return None
    return round_counts(data.train_y, len(data.test_y), batch_size, epochs, warmup_epochs, procedure)


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
