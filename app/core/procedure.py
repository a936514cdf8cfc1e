"""The personalization procedure: the robust round (issue 17) and the paper's plain one.

A :class:`Procedure` says how a TL or Full round trains beyond epochs/lr/batch: which local training windows
are held out for validation, whether the board keeps the best epoch's weights, early stopping, and the
robust SGD step (gradient-norm clipping, feature-layer lr scale, L2-SP).  The same object drives the host
engine (:meth:`Procedure.train_config`, LOSO), the board (:meth:`Procedure.wire`, protocol v2 TRAIN_START)
and the mode choice (:func:`choose_mode`).  docs/personalize.md "The robust round" explains the choice;
docs/results.md has the measurements.

Defaults (:data:`ROBUST`): per class, the last 1/10 of the local training windows (in time order) are
validation windows (``val_split='tail'``), validated before the round and after every epoch, best = higher
macro-F1 then lower loss, the best weights restored at the end, gradient-norm clipping at 5, no early stopping
(``patience`` is supported, but the LOSO ablation showed that stopping after 5 epochs without a better pass
saved 9-25 % of the epochs and cost up to 0.013 mean F1); the host keeps TL or Full only when its validation
macro-F1 is strictly higher than the general model's, and Full only when TL's is too (``choose='agree'``;
``'strict'`` drops the TL condition).  The split and the choice are
host-side: the board validates on whichever windows the host uploads last.  Issue 17's first robust round
validated every 10th window and kept the best (F1, loss) of the three (``val_split='interleaved'``,
``choose='score'``); docs/results.md compares them.  :data:`PLAIN` is the paper's recipe (no validation,
plain SGD) — what a protocol-v1 board runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Mapping

import numpy as np


class ProcedureError(ValueError):
    """A bad procedure setting; the message names it."""


@dataclass(frozen=True)
class Procedure:
    val_every: int = 10  # every k-th training window of each class is a validation window (0: none)
    restore_best: bool = True  # end with the weights of the best validation pass (the start is a candidate)
    select_f1: bool = True  # best = higher validation macro-F1, then lower loss (else: lower loss)
    patience: int = 0  # stop after this many epochs without a better validation pass (0: never; see above)
    clip_norm: float = 5.0  # main phase: clip the batch-mean gradient's global L2 norm (0: off)
    feature_lr_scale: float = 1.0  # main phase: lr multiplier of the layers TL leaves frozen
    l2sp: float = 0.0  # main phase: pull toward the round's starting weights (0: off)
    # host-side only (the board validates on whichever windows the host sends last; the host picks the mode):
    val_split: str = "tail"  # which windows validate: the last 1/val_every of each class ('tail') or every k-th
    # Auto: TL/Full only on strictly higher validation F1 than 'none', Full only if TL too ('strict', 'score')
    choose: str = "agree"

    def validate(self) -> "Procedure":
        if not isinstance(self.val_every, (int, np.integer)) or not (
            self.val_every == 0 or 2 <= self.val_every <= 1000
        ):
            raise ProcedureError(f"--val-every must be 0 (no validation) or 2..1000, got {self.val_every!r}")
        if not isinstance(self.patience, (int, np.integer)) or not 0 <= self.patience <= 255:
            raise ProcedureError(f"--patience must be 0..255, got {self.patience!r}")
        if (self.patience or self.restore_best) and not self.val_every:
            raise ProcedureError("--patience and best-epoch restore need validation windows (--val-every > 0)")
        for name, hi in (("clip_norm", 1e6), ("feature_lr_scale", 10.0), ("l2sp", 100.0)):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating)) or not (math.isfinite(v) and 0 <= v <= hi):
                raise ProcedureError(f"--{name.replace('_', '-')} must be a number in 0..{hi:g}, got {v!r}")
        if self.val_split not in VAL_SPLITS:
            raise ProcedureError(f"--val-split must be one of {', '.join(VAL_SPLITS)}, got {self.val_split!r}")
        if self.choose not in CHOOSE_RULES:
            raise ProcedureError(f"--choose must be one of {', '.join(CHOOSE_RULES)}, got {self.choose!r}")
        return self

    @property
    def validates(self) -> bool:
        return self.val_every > 0

    @property
    def is_plain(self) -> bool:
        """The paper's round on the board (the host-side fields do not matter: nothing validates)."""
        return replace(self, val_split=PLAIN.val_split, choose=PLAIN.choose) == PLAIN

    def to_dict(self) -> dict:
        return asdict(self)

    def split(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(train_idx, val_idx)`` of the local training windows with labels ``y`` (stored = time order): the
        :func:`validation_split` this procedure uses."""
        return validation_split(y, self.val_every if self.validates else 0, self.val_split)

    def choose_mode(self, scores: Mapping[str, tuple[float, float] | None]) -> str | None:
        """The mode Auto keeps from validation scores (:func:`choose_mode` with this procedure's rule)."""
        return choose_mode(scores, self.choose)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Procedure":
        known = {k: d[k] for k in asdict(PLAIN) if k in d}
        if known:  # a procedure stored before the host-side fields existed ran them at their legacy values
            for k, v in LEGACY_HOST_FIELDS.items():
                known.setdefault(k, v)
        return cls(**known)

    def label(self) -> str:
        if self.is_plain:
            return "plain SGD (the paper's recipe)"
        parts = []
        if self.validates:
            if self.val_split == "tail":
                parts.append(f"validation on the last 1/{self.val_every} of each class")
            else:
                parts.append(f"validation every {self.val_every}th window")
            if self.restore_best:
                parts.append("best epoch restored" + (" (macro-F1)" if self.select_f1 else " (loss)"))
            if self.patience:
                parts.append(f"early stop after {self.patience}")
        if self.clip_norm:
            parts.append(f"gradient clip {self.clip_norm:g}")
        if self.feature_lr_scale != 1.0:
            parts.append(f"feature lr x{self.feature_lr_scale:g}")
        if self.l2sp:
            parts.append(f"L2-SP {self.l2sp:g}")
        return "robust: " + ", ".join(parts)

    # --- the host engine ------------------------------------------------------------------------
    def train_config(self, trainable: str, epochs: int, warmup_epochs: int, lr: float, batch: int, seed: int, **kw):
        """The engine's :class:`device.engine.TrainConfig` of one round training ``trainable`` (``kw``: other
        TrainConfig fields, e.g. ``mode='per_sample'`` for the firmware's order)."""
        from device.engine import TrainConfig  # noqa: PLC0415

        return TrainConfig(
            epochs=int(epochs),
            warmup_epochs=int(warmup_epochs),
            lr=float(lr),
            batch_size=int(batch),
            trainable=trainable,
            seed=int(seed),
            feature_lr_scale=float(self.feature_lr_scale),
            clip_norm=float(self.clip_norm),
            l2sp=float(self.l2sp),
            restore_best=bool(self.restore_best and self.validates),
            patience=int(self.patience) if self.validates else 0,
            val_metric="f1" if self.select_f1 else "loss",
            **kw,
        )

    # --- the board (protocol v2) ----------------------------------------------------------------
    def wire(self, n_val: int) -> dict:
        """Keyword arguments of :meth:`device.nucleo.client.NucleoClient.train` for ``n_val`` validation
        windows (all defaults — a v1 request — for the plain procedure)."""
        return {
            "n_val": int(n_val) if self.validates else 0,
            "patience": int(self.patience) if self.validates and n_val else 0,
            "restore_best": bool(self.restore_best and self.validates and n_val),
            "select_f1": bool(self.select_f1 and self.validates and n_val),
            "feature_lr_scale": float(self.feature_lr_scale),
            "clip_norm": float(self.clip_norm),
            "l2sp": float(self.l2sp),
        }


VAL_SPLITS = ("tail", "interleaved")
CHOOSE_RULES = ("strict", "agree", "score")
#: The values of the host-side fields in the runs of issue 17's first robust round, before they existed:
#: :meth:`app.core.loso.LosoConfig.settings` leaves a field at this value out, so those runs keep their hash.
LEGACY_HOST_FIELDS = {"val_split": "interleaved", "choose": "score"}

ROBUST = Procedure()
PLAIN = Procedure(
    val_every=0, restore_best=False, select_f1=False, patience=0, clip_norm=0.0, feature_lr_scale=1.0, l2sp=0.0
)


def with_overrides(p: Procedure, **kw) -> Procedure:
    return replace(p, **{k: v for k, v in kw.items() if v is not None}).validate()


def validation_split(y: np.ndarray, every: int, how: str = "tail") -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)`` of windows with labels ``y`` in stored (chronological) order, about 1/every of
    each class validating; both index arrays in stored order; ``every = 0``: everything trains.

    ``how='tail'`` (the robust round's default): per class, the **last** ``n_c // every`` windows validate
    (at least one when the class has ``every // 2`` windows or more, so that large T still validates every
    class it can).  They are the windows closest in time to what the model will see next, and they do not
    overlap a training window except the one just before them (training windows overlap by half).
    ``how='interleaved'`` (issue 17's first round): per class, the windows at positions
    ``j % every == every - 1`` (a class with fewer than ``every`` windows gives none); each overlaps the two
    training windows beside it, so it validates nearly seen data (docs/results.md: why the tail is the default)."""
    y = np.asarray(y)
    n = len(y)
    if not every:
        return np.arange(n), np.zeros(0, np.int64)
    if how not in VAL_SPLITS:
        raise ProcedureError(f"validation split must be one of {', '.join(VAL_SPLITS)}, got {how!r}")
    is_val = np.zeros(n, bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if how == "interleaved":
            is_val[idx[every - 1 :: every]] = True
            continue
        k = len(idx) // every
        if k == 0 and len(idx) >= max(2, every // 2):
            k = 1
        if k:
            is_val[idx[len(idx) - k :]] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def score(loss: float, macro_f1: float) -> tuple[float, float]:
    """The comparison key of a validation result: higher macro-F1, then lower loss (NaN ranks last)."""
    f = macro_f1 if math.isfinite(macro_f1) else -math.inf
    lo = loss if math.isfinite(loss) else math.inf
    return (f, -lo)


def choose_mode(scores: Mapping[str, tuple[float, float] | None], rule: str = "strict") -> str | None:
    """The mode to keep from validation scores ``{'none': (loss, f1), 'tl': ..., 'full': ...}`` (missing or
    None entries are not candidates); None when no mode has a score.

    ``rule='strict'`` (the default): the better personalized mode (higher macro-F1, then lower loss; exact ties:
    TL, the cheaper one) is kept only if its macro-F1 is strictly higher than the general model's; otherwise
    the general model ('none').  A lower loss at equal F1 is not enough: trained models always fit the
    validation windows better, and on HAPT that did not carry over to the test period (docs/results.md).
    ``rule='agree'``: as 'strict', but Full is a candidate only when TL (if it ran) also beats the general model's
    macro-F1 — two rounds agreeing that the user's recent windows are worth personalizing for (more
    conservative; docs/results.md measures it).
    ``rule='score'`` (issue 17's first rule): the highest :func:`score` of all three, exact ties to the cheaper
    mode."""
    if rule not in CHOOSE_RULES:
        raise ProcedureError(f"mode choice rule must be one of {', '.join(CHOOSE_RULES)}, got {rule!r}")
    base = scores.get("none")
    tl = scores.get("tl")
    if rule == "agree" and base is not None and tl is not None and not score(*tl)[0] > score(*base)[0]:
        return "none"  # TL does not beat the general model: neither may Full
    candidates = ("none", "tl", "full") if rule == "score" else ("tl", "full")
    best: str | None = None
    best_key: tuple[float, float] | None = None
    for m in candidates:
        s = scores.get(m)
        if s is None:
            continue
        k = score(*s)
        if best_key is None or k > best_key:
            best, best_key = m, k
    if rule == "score" or base is None:
        return best
    if best_key is None or not best_key[0] > score(*base)[0]:
        return "none"
    return best


def choice_reason(scores: Mapping[str, tuple[float, float] | None], rule: str, chosen: str | None) -> str:
    """Why :func:`choose_mode` with ``rule`` kept ``chosen``, in one phrase naming the validation macro-F1
    that decided (``scores`` as there)."""

    def f1(m: str) -> str:
        s = scores.get(m)
        return f"{s[1]:.3f}" if s is not None else "–"

    if rule == "score" or scores.get("none") is None:
        return "best validation macro-F1, then loss"
    if chosen in ("tl", "full"):
        return f"validation macro-F1 {f1(chosen)} above the general model's {f1('none')}"
    if rule == "agree" and chosen == "none" and choose_mode(scores, "strict") == "full":  # TL did not agree
        return (
            f"Full's validation macro-F1 {f1('full')} beat the general model's {f1('none')} but TL's "
            f"{f1('tl')} did not, and Full is kept only when TL agrees (--choose agree)"
        )
    return f"no personalized mode beat the general model's validation macro-F1 {f1('none')}"
