"""The engine's model: Keras-layout weights + compiled runtime plans, one per trainable set.

A *plan* is the runtime graph for one trainable set (and BatchNorm mode) with its parameter arrays;
a *runner* binds a plan to preallocated buffers for one batch size.  Non-folded layers use the
canonical (Keras-layout) arrays directly, so training updates them in place; a conv with a folded
BatchNorm trains its own folded kernel/bias, which is unfolded back into the Keras conv + BN weights
whenever the weights are read or another plan becomes active.

Not thread-safe: drive one model from one thread.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from estimator.arch import Arch, Layer

from . import kernels as K
from .blas import blas_threads
from .graph import VIEW_KINDS, Graph, RLayer, lower
from .ops import add_ops, batch_ops, zero_ops
from .weights import DTYPE, Weights, check_weights, copy_weights, fold_conv_bn, glorot_init, unfold_conv_bn

MODES = ("vectorised", "per_sample")
_MAX_RUNNERS = 6  # batch sizes kept compiled per plan


@dataclass
class BatchResult:
    """Outcome of one training batch: mean loss, number of samples, correct predictions (during the
    forward pass, before the update) and the operations the firmware would have performed."""

    loss: float
    n: int
    ops: dict[str, int]
    correct: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")


@dataclass
class _Runner:
    B: int
    x: np.ndarray  # (B, *canonical input shape)
    x_user: np.ndarray  # same memory, (B, *arch.input_shape)
    t: np.ndarray  # targets (B, N)
    scale: np.ndarray  # (1,) factor applied to dL/dlogits
    losses: np.ndarray  # (B,)
    probs: np.ndarray  # (B, N)
    fwd: tuple[Callable[[], object], ...]
    bwd: tuple[Callable[[], object], ...]
    grads: list[np.ndarray]  # one per trained parameter (same order as plan.trained)

    def forward(self) -> None:
        for f in self.fwd:
            f()

    def backward(self) -> None:
        for f in self.bwd:
            f()


class _Plan:
    def __init__(self, graph: Graph, canonical: Weights):
        self.graph = graph
        self.params: list[list[np.ndarray]] = []  # runtime arrays per runtime layer
        self.trained: list[np.ndarray] = []  # arrays updated by SGD, in layer order
        self.trained_owner: list[tuple[int, int]] = []  # (runtime layer index, param index)
        self.feature: tuple[bool, ...] | None = None  # per trained array: a feature layer (Model._feature_mask)
        for rl in graph.layers:
            ps = self._runtime_params(rl, canonical)
            self.params.append(ps)
            if rl.trainable:
                tp = ps[:2] if rl.kind == "bn" else ps
                for j, p in enumerate(tp):
                    self.trained.append(p)
                    self.trained_owner.append((rl.index, j))
        self.runners: OrderedDict[int, _Runner] = OrderedDict()
        self.acc: list[np.ndarray] | None = None
        self._ops: dict[int, dict[str, int]] = {}

    # --- parameters ------------------------------------------------------------------------
    @staticmethod
    def _runtime_params(rl: RLayer, w: Weights) -> list[np.ndarray]:
        if rl.kind == "conv":
            kc = rl.layer.kernel * rl.in_shape[-1]
            f = rl.out_shape[-1]
            if rl.bn is not None:
                return [np.empty((kc, f), DTYPE), np.empty(f, DTYPE)]  # filled by refresh()
            arrs = w[rl.name]
            return [arrs[0].reshape(kc, f)] + arrs[1:2]  # views of the canonical arrays
        if rl.kind in ("dense", "bn"):
            return list(w[rl.name])
        return []

    def refresh(self, w: Weights) -> None:
        """Recompute folded conv parameters from the canonical weights."""
        for rl, ps in zip(self.graph.layers, self.params):
            if rl.kind == "conv" and rl.bn is not None:
                arrs = w[rl.name]
                kc, f = ps[0].shape
                wf, bf = fold_conv_bn(
                    arrs[0].reshape(kc, f), arrs[1] if rl.layer.use_bias else None, rl.bn, w[rl.bn.name]
                )
                np.copyto(ps[0], wf)
                np.copyto(ps[1], bf)

    def export(self, w: Weights) -> None:
        """Write trained folded convs back to the canonical conv + BN weights (unfolded)."""
        for rl, ps in zip(self.graph.layers, self.params):
            if rl.kind == "conv" and rl.bn is not None and rl.trainable:
                conv = w[rl.name]
                has_bias = rl.layer.use_bias
                k2, bias, bnp = unfold_conv_bn(ps[0], ps[1], has_bias, rl.bn, w[rl.bn.name])
                np.copyto(conv[0], k2.reshape(conv[0].shape))
                if bias is not None:  # there is one exactly when has_bias
                    np.copyto(conv[1], bias)
                for dst, src in zip(w[rl.bn.name], bnp):
                    np.copyto(dst, src)

    # --- compiled runners ------------------------------------------------------------------
    def ops(self, n: int) -> dict[str, int]:
        o = self._ops.get(n)
        if o is None:
            o = self._ops[n] = batch_ops(self.graph, n, training=self.graph.training)
        return o

    def runner(self, B: int) -> _Runner:
        r = self.runners.get(B)
        if r is not None:
            self.runners.move_to_end(B)
            return r
        r = self._build(B)
        self.runners[B] = r
        if len(self.runners) > _MAX_RUNNERS:
            self.runners.popitem(last=False)
        return r

    def _build(self, B: int) -> _Runner:
        g = self.graph
        arch = g.arch
        x = np.zeros((B, *g.input_shape4), DTYPE)
        x_user = x.reshape((B, *arch.input_shape))
        n_cls = g.layers[-1].out_shape[0]
        t = np.zeros((B, n_cls), DTYPE)
        scale = np.ones(1, DTYPE)
        losses = np.zeros(B, DTYPE)
        fwd: list[Callable[[], object]] = []
        bwd: list[Callable[[], object]] = []
        grads: list[np.ndarray] = []
        grad_of: dict[int, list[np.ndarray]] = {}
        for rl in g.layers:
            if rl.trainable:
                shapes = rl.param_shapes
                gl = [np.zeros(s, DTYPE) for s in shapes]
                grad_of[rl.index] = gl
                grads.extend(gl)
        act = x
        err: np.ndarray | None = None  # dL/d(input of the current layer)
        probs = None
        for rl in g.layers:
            i = rl.index
            shape = (B, *rl.out_shape)
            if rl.kind in VIEW_KINDS:
                act = act.reshape(shape)
                err = err.reshape(shape) if err is not None else None
                continue
            y = np.zeros(shape, DTYPE)
            dx = err if g.needs_dx(i) else None
            dy = np.zeros(shape, DTYPE) if (g.in_backward(i) and rl.kind != "softmax") else None
            gr = grad_of.get(i)
            ps = self.params[i]
            if rl.kind == "conv":
                f, b = K.bind_conv(rl, act, y, dx, dy, ps, gr)
            elif rl.kind == "dense":
                f, b = K.bind_dense(rl, act, y, dx, dy, ps, gr)
            elif rl.kind == "relu":
                f, b = K.bind_relu(rl, act, y, dx, dy)
            elif rl.kind in ("avgpool", "maxpool"):
                f, b = K.bind_pool(rl, act, y, dx, dy)
            elif rl.kind in ("gap", "gmp"):
                f, b = K.bind_global(rl, act, y, dx, dy)
            elif rl.kind == "bn":
                f, b = K.bind_bn(rl, act, y, dx, dy, ps, gr)
            elif rl.kind == "softmax":
                f, b = K.bind_softmax_ce(act, y, dx, t, scale, losses)
                probs = y
            else:  # pragma: no cover - graph.check_supported rejects these
                raise AssertionError(rl.kind)
            if f is not None:
                fwd.append(f)
            if b is not None and g.in_backward(i):
                bwd.append(b)
            act, err = y, dy
        assert probs is not None
        return _Runner(B, x, x_user, t, scale, losses, probs, tuple(fwd), tuple(reversed(bwd)), grads)


class Model:
    """A trainable model: ``Model(arch, weights=None, seed=0, bn='fold')``.

    ``weights`` is a Keras-layout dict (see :mod:`estimator.arch`); ``None`` initialises like Keras
    (glorot-uniform kernels, zero biases, identity BatchNorm) with ``seed``.  ``bn`` selects how
    BatchNorm layers are trained: ``'fold'`` into the preceding conv (the firmware) or ``'affine'``
    (frozen statistics, gamma/beta trainable; equals Keras with ``training=False``).
    """

    def __init__(
        self, arch: Arch, weights: Mapping[str, Sequence[np.ndarray]] | None = None, seed: int = 0, bn: str = "fold"
    ):
        if not isinstance(arch, Arch):
            raise TypeError(f"arch must be an estimator.arch.Arch, got {type(arch).__name__}")
        lower(arch, None, bn)  # validates the architecture (names the unsupported layer)
        self.arch = arch
        self.bn = bn
        self._w: Weights = check_weights(arch, weights) if weights is not None else glorot_init(arch, seed)
        self._plans: dict[frozenset[str], _Plan] = {}
        self._by_spec: dict[object, _Plan] = {}  # fast path: trainable spec as given -> plan
        self._active: _Plan | None = None
        self.ops_total: dict[str, int] = zero_ops()
        self.n_classes = arch.n_classes

    # --- weights -----------------------------------------------------------------------------
    def get_weights(self) -> Weights:
        """Keras-layout weights of the original architecture (copies).  Folded convs are unfolded so
        that Keras' model with these weights predicts what this model predicts."""
        if self._active is not None:
            self._active.export(self._w)
        return copy_weights(self._w)

    def set_weights(self, weights: Mapping[str, Sequence[np.ndarray]]) -> None:
        new = check_weights(self.arch, weights)
        for name, arrs in new.items():
            for dst, src in zip(self._w[name], arrs):
                np.copyto(dst, src)
        if self._active is not None:
            self._active.refresh(self._w)

    def runtime_arch(self, trainable: "str | Sequence[str] | None" = None) -> tuple[Arch, Weights]:
        """The architecture the engine actually runs for ``trainable`` (folded BatchNorms removed) and
        its Keras-layout weights (the folded conv kernels/biases)."""
        plan = self._plan(trainable)
        keep = [rl.layer if rl.bn is None else _with_bias(rl.layer) for rl in plan.graph.layers]
        arch = Arch(
            self.arch.input_shape,
            tuple(keep),
            self.arch.classes,
            self.arch.name + "_runtime",
            self.arch.preprocessing,
            dict(self.arch.meta),
        )
        shapes = arch.param_shapes()
        out: Weights = {}
        for rl, ps in zip(plan.graph.layers, plan.params):
            if rl.name in shapes:
                out[rl.name] = [np.array(p, copy=True).reshape(s) for p, s in zip(ps, shapes[rl.name])]
        return arch, out

    # --- plans ---------------------------------------------------------------------------------
    def _plan(self, trainable: "str | Sequence[str] | frozenset[str] | None") -> _Plan:
        key = _spec_key(trainable)
        plan = self._by_spec.get(key) if key is not None else None
        if plan is None:
            g = lower(self.arch, trainable, self.bn)
            plan = self._plans.get(g.trainable)
            if plan is None:
                plan = self._plans[g.trainable] = _Plan(g, self._w)
            if key is not None:
                self._by_spec[key] = plan
        if plan is not self._active:
            if self._active is not None:
                self._active.export(self._w)
            plan.refresh(self._w)
            self._active = plan
        return plan

    def graph(self, trainable: "str | Sequence[str] | None" = None) -> Graph:
        return lower(self.arch, trainable, self.bn)

    # --- inputs --------------------------------------------------------------------------------
    def _check_x(self, x: np.ndarray, what: str = "x") -> np.ndarray:
        try:
            x = np.asarray(x, dtype=DTYPE)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} is not a numeric array: {exc}") from exc
        want = tuple(self.arch.input_shape)
        if x.ndim == len(want):
            x = x[None]
        if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"{what} has shape {tuple(x.shape)}, expected (n, {', '.join(map(str, want))}) for {self.arch.name!r}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{what} is empty (0 windows)")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{what} contains NaN or infinity")
        return x

    def targets(self, y: np.ndarray, n: int, what: str = "y") -> np.ndarray:
        """Integer labels ``(n,)`` or one-hot/probability rows ``(n, N)`` -> float32 ``(n, N)``."""
        N = self.n_classes
        y = np.asarray(y)
        if y.ndim == 0:
            y = y[None]
        if y.shape[0] != n:
            raise ValueError(f"{what} has {y.shape[0]} labels for {n} windows")
        if y.ndim == 1:
            if not (
                np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))
            ):
                raise ValueError(f"{what}: 1-D labels must be integer class indices, got dtype {y.dtype}")
            yi = y.astype(np.int64)
            bad = (yi < 0) | (yi >= N)
            if np.any(bad):
                raise ValueError(f"{what}: label {int(yi[bad][0])} outside the allowed range 0..{N - 1}")
            t = np.zeros((n, N), DTYPE)
            t[np.arange(n), yi] = 1.0
            return t
        if y.ndim != 2 or y.shape[1] != N:
            raise ValueError(f"{what} has shape {tuple(y.shape)}, expected ({n},) integer labels or ({n}, {N}) one-hot")
        t = np.asarray(y, DTYPE)
        if not np.all(np.isfinite(t)) or np.any(t < 0):
            raise ValueError(f"{what}: one-hot targets must be finite and non-negative")
        if np.any(np.abs(t.sum(axis=1) - 1.0) > 1e-3):
            raise ValueError(f"{what}: each one-hot/probability row must sum to 1")
        return t

    # --- inference -----------------------------------------------------------------------------
    def predict(self, x: np.ndarray, batch_size: int = 256, count_ops: bool = False) -> np.ndarray:
        """Softmax probabilities ``(n, N)`` (float32).  Forward ops are added to ``ops_total`` only if
        ``count_ops``."""
        probs, _ = self._infer(self._check_x(x), None, batch_size, count_ops)
        return probs

    def _infer(self, x: np.ndarray, t: np.ndarray | None, batch_size: int, count_ops: bool) -> tuple[np.ndarray, float]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        plan = self._plan(None)
        n = x.shape[0]
        out = np.empty((n, self.n_classes), DTYPE)
        loss = 0.0
        for s in range(0, n, batch_size):
            e = min(n, s + batch_size)
            r = plan.runner(e - s)
            np.copyto(r.x_user, x[s:e])
            if t is not None:
                np.copyto(r.t, t[s:e])
            with blas_threads(1):
                r.forward()
            out[s:e] = r.probs
            if t is not None:
                loss += float(r.losses.sum(dtype=np.float64))
            if count_ops:
                add_ops(self.ops_total, plan.ops(e - s))
        return out, loss / n

    def loss(self, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
        """Mean categorical cross-entropy over ``x``."""
        x = self._check_x(x)
        return self._infer(x, self.targets(y, x.shape[0]), batch_size, False)[1]

    # --- training ------------------------------------------------------------------------------
    def gradients(
        self, x: np.ndarray, y: np.ndarray, trainable: "str | Sequence[str]" = "full"
    ) -> tuple[float, Weights]:
        """Mean loss and the batch-mean gradients of the trained runtime parameters, keyed by layer
        name in Keras layout (conv kernel ``(K, C, F)`` / ``(K, 1, C, F)`` + bias; dense kernel + bias;
        affine BatchNorm ``[dgamma, dbeta]``; a folded conv: gradients of the folded kernel/bias)."""
        x = self._check_x(x)
        n = x.shape[0]
        t = self.targets(y, n)
        plan = self._plan(trainable)
        if not plan.graph.training:
            raise ValueError("gradients(): no trainable layer selected")
        r = plan.runner(n)
        np.copyto(r.x_user, x)
        np.copyto(r.t, t)
        r.scale[0] = 1.0 / n
        with blas_threads(1):
            r.forward()
            r.backward()
        loss = float(r.losses.mean(dtype=np.float64))
        out: Weights = {}
        shapes = self.arch.param_shapes()
        for (li, j), gbuf in zip(plan.trained_owner, r.grads):
            rl = plan.graph.layers[li]
            gcopy = np.array(gbuf, copy=True)
            if rl.kind == "conv" and j == 0:
                gcopy = gcopy.reshape(shapes[rl.name][0])
            out.setdefault(rl.name, []).append(gcopy)
        return loss, out

    def train_batch(
        self,
        x: np.ndarray,
        y: np.ndarray,
        lr: float,
        trainable: "str | Sequence[str]" = "full",
        mode: str = "vectorised",
        step: "StepOptions | None" = None,
    ) -> BatchResult:
        """One SGD step on one batch: forward, backward, ``w <- w - lr * mean gradient``.

        ``mode='vectorised'`` processes the batch at once; ``mode='per_sample'`` mirrors the firmware:
        one window at a time, gradients accumulated, then ``w <- w - lr * (acc / n)``.  Both give the
        same result to float32 rounding.  Returns the mean loss (before the update), n, correct
        predictions and the firmware's operation counts for this batch.

        ``step`` (:class:`StepOptions`) turns on the robust update of docs/engine.md ("Robust
        personalization"): L2-SP pull toward ``step.anchor``, gradient-norm clipping and a smaller
        learning rate for the feature layers; ``None`` (or all options off) is the plain SGD step."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        try:
            lr_f = float(lr)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"lr must be a number, got {lr!r}") from exc
        if not math.isfinite(lr_f) or lr_f < 0:
            raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
        x = self._check_x(x)
        n = x.shape[0]
        t = self.targets(y, n)
        plan = self._plan(trainable)
        if not plan.graph.training:
            raise ValueError(f"train_batch(): trainable={trainable!r} selects no layer to train")
        if step is not None and not step.active:
            step = None
        if (
            step is not None
            and step.l2sp
            and (
                step.anchor is None
                or len(step.anchor) != len(plan.trained)
                or any(a.shape != p.shape for a, p in zip(step.anchor, plan.trained))
            )
        ):
            raise ValueError("train_batch(): L2-SP needs the anchor of this trainable set (see Model.anchor())")
        with blas_threads(1):  # small matrices: BLAS threads only fight other pools (see blas.py)
            if mode == "vectorised":
                loss, correct = self._step_vectorised(plan, x, t, lr_f, step)
            else:
                loss, correct = self._step_per_sample(plan, x, t, lr_f, step)
        ops = plan.ops(n)
        add_ops(self.ops_total, ops)
        return BatchResult(loss, n, dict(ops), correct)

    # --- robust update (StepOptions) -------------------------------------------------------------
    def anchor(self, trainable: "str | Sequence[str]") -> list[np.ndarray]:
        """Copies of the parameters ``trainable`` trains, in the runtime layout ``train_batch`` updates
        (folded convs folded): the L2-SP anchor of a round, taken at its start."""
        plan = self._plan(trainable)
        return [np.array(p, copy=True) for p in plan.trained]

    def feature_mask(self, trainable: "str | Sequence[str]") -> list[bool]:
        """Per trained parameter array of ``trainable``: True for a feature layer (outside the last two
        Dense layers, i.e. what TL leaves frozen), the arrays ``feature_lr_scale`` applies to."""
        return list(self._feature_mask(self._plan(trainable)))

    def _feature_mask(self, plan: _Plan) -> tuple[bool, ...]:
        fm = plan.feature
        if fm is None:
            head = {l.name for l in self.arch.layers if l.kind == "dense"}
            head = set([l.name for l in self.arch.layers if l.kind == "dense"][-2:]) if head else set()
            fm = plan.feature = tuple(plan.graph.layers[li].name not in head for li, _ in plan.trained_owner)
        return fm

    def _robust_update(self, plan: _Plan, grads: Sequence[np.ndarray], lr: float, step: "StepOptions") -> None:
        """``grads`` hold the batch-mean gradient g (float32, overwritten).  In this order (float32):
        g += l2sp * (w - anchor); if clip_norm > 0 and ||g|| > clip_norm: g *= clip_norm / ||g|| (||g||:
        sqrt of the sequential float32 sum of g*g over the trained arrays in order); then w -= lr_l * g with
        lr_l = lr * feature_lr_scale (float32 product) for feature arrays, lr otherwise."""
        f32 = DTYPE
        if step.l2sp:
            assert step.anchor is not None  # train_batch() rejects L2-SP without an anchor
            lam = f32(step.l2sp)
            for p, g, p0 in zip(plan.trained, grads, step.anchor):
                d = np.subtract(p, p0, dtype=f32)
                d *= lam
                g += d
        if step.clip_norm > 0:
            sq = np.concatenate([np.square(g, dtype=f32).ravel() for g in grads])
            norm = f32(np.sqrt(np.cumsum(sq, dtype=f32)[-1], dtype=f32))  # (train_batch trains >= 1 array)
            c = f32(step.clip_norm)
            if norm > c:
                k = f32(c / norm)
                for g in grads:
                    g *= k
        lr32 = f32(lr)
        lr_feat = f32(lr32 * f32(step.feature_lr_scale))
        for p, g, feat in zip(plan.trained, grads, self._feature_mask(plan)):
            g *= lr_feat if feat else lr32
            p -= g

    def _step_vectorised(
        self, plan: _Plan, x: np.ndarray, t: np.ndarray, lr: float, step: "StepOptions | None" = None
    ) -> tuple[float, int]:
        n = x.shape[0]
        r = plan.runner(n)
        np.copyto(r.x_user, x)
        np.copyto(r.t, t)
        # plain SGD: gradients come out already multiplied by the learning rate; robust: batch-mean gradient
        r.scale[0] = lr / n if step is None else DTYPE(1.0) / DTYPE(n)
        r.forward()
        r.backward()
        loss = float(r.losses.mean(dtype=np.float64))
        correct = int(np.count_nonzero(r.probs.argmax(axis=1) == t.argmax(axis=1)))
        if step is None:
            for p, gbuf in zip(plan.trained, r.grads):
                np.subtract(p, gbuf, out=p)
        else:
            self._robust_update(plan, r.grads, lr, step)
        return loss, correct

    def _step_per_sample(
        self, plan: _Plan, x: np.ndarray, t: np.ndarray, lr: float, step: "StepOptions | None" = None
    ) -> tuple[float, int]:
        n = x.shape[0]
        r = plan.runner(1)
        if plan.acc is None:
            plan.acc = [np.zeros_like(p) for p in plan.trained]
        acc = plan.acc
        for a in acc:
            a.fill(0.0)
        r.scale[0] = 1.0
        loss = 0.0
        correct = 0
        pairs = list(zip(acc, r.grads))
        for i in range(n):
            np.copyto(r.x_user[0], x[i])
            np.copyto(r.t[0], t[i])
            r.forward()
            loss += float(r.losses[0])
            correct += int(r.probs[0].argmax() == t[i].argmax())
            r.backward()
            for a, gbuf in pairs:
                a += gbuf
        if step is not None:
            for a in acc:
                a /= DTYPE(n)
            self._robust_update(plan, acc, lr, step)
            return loss / n, correct
        for p, a in zip(plan.trained, acc):
            a /= DTYPE(n)
            a *= DTYPE(lr)
            p -= a
        return loss / n, correct

    # --- validation ------------------------------------------------------------------------------
    def val_scores(self, x: np.ndarray, t: np.ndarray, mode: str = "vectorised") -> tuple[float, float]:
        """``(loss, macro_f1)`` of a validation pass, both float32 as the board computes them: the loss as
        :meth:`val_loss`; macro-F1 from the confusion counts, per class ``f = 2tp / (2tp + fp + fn)`` (float32
        division of exact integers) over the classes present in the labels or the predictions, summed in
        class order in float32 and divided by their number."""
        plan = self._plan(None)
        n = x.shape[0]
        losses = np.empty(n, DTYPE)
        pred = np.empty(n, np.int64)
        bs = 1 if mode == "per_sample" else 256
        with blas_threads(1):
            for s in range(0, n, bs):
                e = min(n, s + bs)
                r = plan.runner(e - s)
                np.copyto(r.x_user, x[s:e])
                np.copyto(r.t, t[s:e])
                r.forward()
                losses[s:e] = r.losses
                pred[s:e] = r.probs.argmax(axis=1)
        loss = float(np.cumsum(losses, dtype=DTYPE)[-1] / DTYPE(n))
        return loss, macro_f1_f32(t.argmax(axis=1), pred, self.n_classes)

    def val_loss(self, x: np.ndarray, t: np.ndarray, mode: str = "vectorised") -> float:
        """Mean cross-entropy over ``x`` (targets ``t``, float32 ``(n, N)``) in the firmware's order: per
        window loss (float32), summed sequentially in float32, divided by n in float32 (``per_sample``:
        one window at a time, as the board runs it).  The loss of :meth:`val_scores`."""
        return self.val_scores(x, t, mode)[0]


def macro_f1_f32(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 in the board's float32 arithmetic (see :meth:`Model.val_scores`)."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    total, count = DTYPE(0), 0
    for c in range(n_classes):
        den = 2 * tp[c] + fp[c] + fn[c]
        if den == 0:
            continue  # neither in the labels nor predicted
        total = DTYPE(total + DTYPE(DTYPE(2 * tp[c]) / DTYPE(den)))
        count += 1
    return float(DTYPE(total / DTYPE(count))) if count else float("nan")


@dataclass(frozen=True)
class StepOptions:
    """Options of the robust SGD step (all off by default = the paper's plain SGD step)."""

    feature_lr_scale: float = 1.0  # lr multiplier of the feature layers (outside the last two Dense)
    clip_norm: float = 0.0  # clip the global L2 norm of the batch-mean gradient to this (0: off)
    l2sp: float = 0.0  # L2-SP strength: gradient += l2sp * (w - anchor) (0: off)
    anchor: Sequence[np.ndarray] | None = None  # Model.anchor(trainable) at the round start (for l2sp)

    @property
    def active(self) -> bool:
        return self.feature_lr_scale != 1.0 or self.clip_norm > 0 or self.l2sp != 0


def _spec_key(trainable: object) -> object:
    """Hashable cache key for a trainable spec as the caller passed it (None if not hashable)."""
    if trainable is None or isinstance(trainable, (str, frozenset)):
        return ("spec", trainable)
    if isinstance(trainable, (list, tuple)) and all(isinstance(n, str) for n in trainable):
        return ("spec", tuple(trainable))
    return None


def _with_bias(layer: Layer) -> Layer:
    d = layer.to_dict()
    d["use_bias"] = True
    return Layer(**d)
