"""Evaluation metrics (pure numpy): accuracy, confusion matrix, per-class and macro F1.

Conventions follow scikit-learn's defaults: the confusion matrix has true classes in rows and predicted
classes in columns; F1 of a class with no true and no predicted samples is 0 (and such classes are
left out of the macro average unless ``labels`` lists them explicitly)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _as_labels(y: np.ndarray, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2:  # one-hot / probabilities -> class index
        y = y.argmax(axis=1)
    if y.ndim != 1:
        raise ValueError(f"{what} must be 1-D class indices or 2-D one-hot/probabilities, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(f"{what} must contain integer class indices")
        y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{what} contains a negative class index ({int(y.min())})")
    return y.astype(np.int64, copy=False)


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    return t, p


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of correct predictions (NaN for empty input)."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p)) if t.size else float("nan")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """``(n_classes, n_classes)`` int64 counts, rows = true class, columns = predicted class."""
    t, p = _pair(y_true, y_pred)
    n = int(n_classes) if n_classes is not None else int(max(t.max(initial=-1), p.max(initial=-1)) + 1)
    if t.size and max(t.max(), p.max()) >= n:
        raise ValueError(f"class index {int(max(t.max(), p.max()))} >= n_classes={n}")
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n).astype(np.int64)


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """F1 of every class ``0..n_classes-1`` (0 where precision and recall are undefined)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # (tp+fp) + (tp+fn)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2.0 * tp / denom, 0.0)
    return f1


def macro_f1(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    labels: Sequence[int] | np.ndarray | None = None,
    n_classes: int | None = None,
) -> float:
    """Unweighted mean of the per-class F1 over ``labels`` (default: classes present in ``y_true`` or
    ``y_pred``, as scikit-learn)."""
    t, p = _pair(y_true, y_pred)
    if not t.size:
        return float("nan")
    n = n_classes if n_classes is not None else None
    if labels is not None:
        n = max(int(max(labels)) + 1, int(max(t.max(), p.max())) + 1, n or 0)
    f1 = per_class_f1(t, p, n)
    if labels is None:
        labels = np.union1d(t, p)
    return float(np.mean(f1[np.asarray(labels, np.int64)]))
