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
from .model import MODES, Model, StepOptions
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
    # robust personalization (docs/engine.md); all off by default = the paper's plain SGD
    feature_lr_scale: float = 1.0  # main phase: lr multiplier of the layers outside the last two Dense
    clip_norm: float = 0.0  # main phase: clip the batch-mean gradient's global L2 norm (0: off)
    l2sp: float = 0.0  # main phase: pull toward the round's starting weights (0: off)
    restore_best: bool = False  # with validation data: end with the weights of the best validation pass
    patience: int = 0  # with validation data: stop after this many epochs without improvement (0: off)
    val_metric: str = "loss"  # 'loss' (lower wins) or 'f1' (higher macro-F1 wins, equal F1: lower loss)

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
        for name, lo in (("feature_lr_scale", 0.0), ("clip_norm", 0.0), ("l2sp", 0.0)):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v) or v < lo:
                raise ValueError(f"{name} must be a finite number >= {lo:g}, got {v!r}")
        if self.val_metric not in ("loss", "f1"):
            raise ValueError(f"val_metric must be 'loss' or 'f1', got {self.val_metric!r}")
        if not isinstance(self.patience, (int, np.integer)) or self.patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {self.patience!r}")

    def step_options(self, anchor=None) -> StepOptions | None:
        """The main phase's :class:`StepOptions` (None when all robust options are off)."""
        opt = StepOptions(float(self.feature_lr_scale), float(self.clip_norm), float(self.l2sp), anchor)
        return opt if opt.active else None


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
    # with validation data: val_loss[0] before the round, val_loss[k] after epoch k (warm-up included)
    val_loss: list[float] = field(default_factory=list)
    val_f1: list[float] = field(default_factory=list)
    best_epoch: int = -1  # epoch of the best validation pass (0 = the weights the round started from)
    restored: bool = False  # restore_best put the best epoch's weights back at the end
    early_stopped: bool = False

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
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    order: Optional[Callable[[int, int], np.ndarray]] = None,
) -> History:
    """Train ``model`` in place; see the module doc.  Returns the :class:`History`.

    With ``x_val, y_val`` (both or neither) a validation pass (:meth:`Model.val_scores`: loss and macro-F1)
    runs before the round and after every epoch; the best pass is the lowest loss (``val_metric='loss'``) or
    the highest macro-F1, then the lowest loss (``'f1'``), strictly, so ties keep the earlier epoch, and
    epoch 0 — the weights the round started from — is a candidate.  ``restore_best`` ends with the best
    pass's weights (also when the round stops on request or on a NaN loss) and ``patience`` stops the round
    early.  ``order(epoch, n)`` replaces the default per-epoch shuffle (e.g. the board's
    :func:`device.nucleo.shuffle.epoch_order`)."""
    cfg = config or TrainConfig()
    cfg.validate()
    x, t = _check_data(model, x, y)
    n = x.shape[0]
    bs = int(cfg.batch_size)
    n_batches = -(-n // bs)
    rng = np.random.default_rng(cfg.seed)
    hist = History()
    phases = [("warmup", cfg.warmup_trainable)] * int(cfg.warmup_epochs) + [("train", cfg.trainable)] * int(cfg.epochs)
    step = None
    if int(cfg.epochs) and cfg.step_options() is not None:
        step = cfg.step_options(model.anchor(cfg.trainable) if cfg.l2sp else None)
    if (x_val is None) != (y_val is None):
        raise ValueError("x_val and y_val go together: give both or neither")
    validate = y_val is not None and len(y_val) > 0
    if (cfg.restore_best or cfg.patience) and not validate:
        raise ValueError("restore_best and patience need validation windows (x_val, y_val)")
    if validate:
        assert x_val is not None and y_val is not None  # validate says so
        xv, tv = _check_data(model, x_val, y_val)
        vl, vf = model.val_scores(xv, tv, cfg.mode)
        best = (vl, vf)
        hist.val_loss.append(vl)
        hist.val_f1.append(vf)
        hist.best_epoch = 0
        best_w = model.get_weights() if cfg.restore_best else None
        since = 0
    else:
        best_w = None
    at_best = True  # the model holds the best weights (none trained since the last improvement)
    seen = 0
    for epoch, (phase, trainable) in enumerate(phases):
        perm: np.ndarray | None
        if order is not None:
            perm = order(epoch, n)
        else:
            perm = rng.permutation(n) if cfg.shuffle else None
        xe, te = (x[perm], t[perm]) if perm is not None else (x, t)
        loss_sum, correct, done = 0.0, 0, 0
        for b in range(n_batches):
            if should_stop is not None and should_stop():
                hist.stopped, hist.reason = True, "stopped on request"
                _close_epoch(hist, phase, epoch, loss_sum, correct, done)
                return _finish(model, hist, best_w if validate else None, at_best)
            at_best = False
            s, e = b * bs, min(n, (b + 1) * bs)
            res = model.train_batch(xe[s:e], te[s:e], cfg.lr, trainable, cfg.mode, step if phase == "train" else None)
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
                return _finish(model, hist, best_w if validate else None, at_best)
        _close_epoch(hist, phase, epoch, loss_sum, correct, done)
        if validate:
            v = model.val_scores(xv, tv, cfg.mode)
            hist.val_loss.append(v[0])
            hist.val_f1.append(v[1])
            if _better(v, best, cfg.val_metric):
                best, hist.best_epoch, since, at_best = v, epoch + 1, 0, True
                if cfg.restore_best:
                    best_w = model.get_weights()
            else:
                since += 1
                if cfg.patience and since >= cfg.patience and epoch + 1 < len(phases):
                    what = "macro-F1" if cfg.val_metric == "f1" else "loss"
                    hist.early_stopped, hist.reason = True, f"no better validation {what} for {since} epochs"
                    break
    return _finish(model, hist, best_w, at_best)


def _better(v: tuple[float, float], best: tuple[float, float], metric: str) -> bool:
    """Does validation result ``v`` = (loss, macro-F1) beat ``best``?  Strictly; NaN never wins."""
    if metric == "f1":
        return v[1] > best[1] or (v[1] == best[1] and v[0] < best[0])
    return v[0] < best[0]


def _finish(model: Model, hist: History, best_w, at_best: bool) -> History:
    """With restore_best (``best_w`` given): put back the best weights unless the model holds them."""
    if best_w is not None and not at_best:
        model.set_weights(best_w)
        hist.restored = True
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
    probs: np.ndarray | None = field(repr=False, default=None)

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
