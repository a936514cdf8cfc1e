"""The Orchestrator: epochs of mini-batch SGD with the paper's optional warm-up, and evaluation.

``train(model, x, y, TrainConfig(...), on_batch=..., should_stop=...)`` runs
``warmup_epochs`` epochs training only ``warmup_trainable`` (default: the last Dense layer, the
paper's warm-up), then ``epochs`` epochs training ``trainable``.  Batches are consecutive slices of
the (optionally per-epoch shuffled) data; the last partial batch is trained as a smaller batch, as
Keras does.  ``on_batch`` is called after every batch with a :class:`BatchInfo`; ``should_stop`` is
polled before every batch and ends the run cleanly (weights keep the last completed update).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from estimator.arch import OP_TYPES

from . import metrics
from .graph import lower
from .model import MODES, Model
from .ops import add_ops, batch_ops, zero_ops


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one personalization round (paper defaults: SGD, lr 0.01, batch 32)."""

    epochs: int = 1
    lr: float = 0.01
    batch_size: int = 32
    trainable: "str | Sequence[str]" = "full"
    warmup_epochs: int = 0
    warmup_trainable: "str | Sequence[str]" = "last"
    shuffle: bool = True
    seed: int = 0
    mode: str = "vectorised"  # or 'per_sample' (firmware order)
    stop_on_nan: bool = True

    def validate(self) -> None:
        if not isinstance(self.epochs, (int, np.integer)) or self.epochs < 0:
            raise ValueError(f"epochs must be an integer >= 0, got {self.epochs!r}")
        if not isinstance(self.warmup_epochs, (int, np.integer)) or self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be an integer >= 0, got {self.warmup_epochs!r}")
        if not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        try:
            lr = float(self.lr)
        except (TypeError, ValueError):
            raise ValueError(f"lr must be a number, got {self.lr!r}") from None
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"lr must be a finite number >= 0, got {self.lr!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")


@dataclass(frozen=True)
class BatchInfo:
    phase: str  # 'warmup' | 'train'
    epoch: int  # 0-based, counting warm-up epochs first
    batch: int  # 0-based within the epoch
    n_batches: int  # batches per epoch
    loss: float
    n: int
    correct: int
    ops: dict
    seen: int  # samples trained so far in this run


@dataclass
class EpochStats:
    phase: str
    epoch: int
    loss: float  # sample-weighted mean of the batch losses
    accuracy: float  # on the training batches, before each update
    n: int


@dataclass
class History:
    epochs: list[EpochStats] = field(default_factory=list)
    batch_losses: list[float] = field(default_factory=list)
    ops: dict = field(default_factory=zero_ops)
    batches: int = 0
    stopped: bool = False
    reason: str = ""

    @property
    def loss(self) -> list[float]:
        return [e.loss for e in self.epochs]


def _check_data(model: Model, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = model._check_x(x)  # noqa: SLF001 - the engine's own model
    t = model.targets(y, x.shape[0])
    return x, t


def train(
    model: Model,
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig | None = None,
    on_batch: Optional[Callable[[BatchInfo], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> History:
    """Train ``model`` in place; see the module doc.  Returns the :class:`History`."""
    cfg = config or TrainConfig()
    cfg.validate()
    x, t = _check_data(model, x, y)
    n = x.shape[0]
    bs = int(cfg.batch_size)
    n_batches = -(-n // bs)
    rng = np.random.default_rng(cfg.seed)
    hist = History()
    phases = [("warmup", cfg.warmup_trainable)] * int(cfg.warmup_epochs) + [("train", cfg.trainable)] * int(cfg.epochs)
    seen = 0
    for epoch, (phase, trainable) in enumerate(phases):
        order = rng.permutation(n) if cfg.shuffle else None
        xe, te = (x[order], t[order]) if order is not None else (x, t)
        loss_sum, correct, done = 0.0, 0, 0
        for b in range(n_batches):
            if should_stop is not None and should_stop():
                hist.stopped, hist.reason = True, "stopped on request"
                _close_epoch(hist, phase, epoch, loss_sum, correct, done)
                return hist
            s, e = b * bs, min(n, (b + 1) * bs)
            res = model.train_batch(xe[s:e], te[s:e], cfg.lr, trainable, cfg.mode)
            seen += res.n
            done += res.n
            loss_sum += res.loss * res.n
            correct += res.correct
            hist.batch_losses.append(res.loss)
            hist.batches += 1
            add_ops(hist.ops, res.ops)
            if on_batch is not None:
                on_batch(BatchInfo(phase, epoch, b, n_batches, res.loss, res.n, res.correct, res.ops, seen))
            if cfg.stop_on_nan and not math.isfinite(res.loss):
                hist.stopped, hist.reason = True, f"loss became {res.loss} (lr {cfg.lr} too large?)"
                _close_epoch(hist, phase, epoch, loss_sum, correct, done)
                return hist
        _close_epoch(hist, phase, epoch, loss_sum, correct, done)
    return hist


def _close_epoch(hist: History, phase: str, epoch: int, loss_sum: float, correct: int, done: int) -> None:
    if done:
        hist.epochs.append(EpochStats(phase, epoch, loss_sum / done, correct / done, done))


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    macro_f1: float
    per_class_f1: np.ndarray
    confusion: np.ndarray  # rows true, columns predicted
    n: int
    ops: dict  # forward operations for the whole set
    probs: np.ndarray = field(repr=False, default=None)

    def as_dict(self) -> dict:
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class_f1": self.per_class_f1.tolist(),
            "confusion": self.confusion.tolist(),
            "n": self.n,
            "ops": dict(self.ops),
        }


def evaluate(
    model: Model, x: np.ndarray, y: np.ndarray, batch_size: int = 256, labels: Sequence[int] | None = None
) -> EvalResult:
    """The Evaluation module: loss, accuracy, macro-F1 (over ``labels``, default the classes present
    in ``y`` or the predictions), per-class F1 and confusion matrix over all the model's classes."""
    x, t = _check_data(model, x, y)
    probs, loss = model._infer(x, t, batch_size, count_ops=False)  # noqa: SLF001 - the engine's own model
    yt = t.argmax(axis=1)
    yp = probs.argmax(axis=1)
    N = model.n_classes
    g = lower(model.arch, None, model.bn)
    ops = add_ops(zero_ops(), batch_ops(g, 1, training=False), x.shape[0])
    return EvalResult(
        loss=loss,
        accuracy=metrics.accuracy(yt, yp),
        macro_f1=metrics.macro_f1(yt, yp, labels=labels, n_classes=N),
        per_class_f1=metrics.per_class_f1(yt, yp, N),
        confusion=metrics.confusion_matrix(yt, yp, N),
        n=int(x.shape[0]),
        ops={k: ops[k] for k in OP_TYPES},
        probs=probs,
    )
