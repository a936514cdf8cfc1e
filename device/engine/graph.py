"""Lowering of an :class:`estimator.arch.Arch` into the runtime graph the engine (and the firmware)
executes for one choice of trainable layers.

The runtime graph differs from the architecture in exactly one way: a BatchNorm that directly follows
a convolution is *folded* into it (kernel and bias rescaled, the BN layer disappears), which is what
ST's code generator does and what the firmware trains.  The rules (see docs/engine.md, "BatchNorm"):

* ``bn='fold'`` (default): a BatchNorm directly after a Conv1D/Conv2D is folded into that conv,
  unless the BN is trained while its conv is frozen; the folded conv is trained iff the conv is in the
  trainable set.  A BatchNorm with no conv right before it (e.g. GMP's input BN) stays an affine layer
  ``a = x * s + t`` with its moving statistics frozen; its gamma/beta are trained if it is trainable.
* ``bn='affine'``: no folding; every BatchNorm is a frozen-statistics affine layer (gamma/beta trained
  if in the trainable set).  This is exactly Keras' BatchNormalization called with ``training=False``.

Everything here is pure metadata (no weights): shapes, flags and the first trainable index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from estimator.arch import Arch, ArchError, Layer, resolve_trainable

#: kinds the runtime graph uses (conv1d/conv2d -> "conv", pools unified over 1-D/2-D, ...)
_RUNTIME_KIND = {
    "conv1d": "conv",
    "conv2d": "conv",
    "dense": "dense",
    "relu": "relu",
    "softmax": "softmax",
    "avgpool1d": "avgpool",
    "avgpool2d": "avgpool",
    "maxpool1d": "maxpool",
    "maxpool2d": "maxpool",
    "gap1d": "gap",
    "gap2d": "gap",
    "gmp1d": "gmp",
    "gmp2d": "gmp",
    "flatten": "flatten",
    "dropout": "dropout",
    "batchnorm": "bn",
}
#: runtime kinds that are pure views (no computation, no buffer of their own)
VIEW_KINDS = frozenset({"flatten", "dropout"})
#: runtime kinds that carry parameters
PARAM_KINDS = frozenset({"conv", "dense", "bn"})
BN_MODES = ("fold", "affine")


@dataclass(frozen=True)
class RLayer:
    """One runtime layer.  Spatial shapes are canonical 4-D per sample: ``(L, W, C)`` with ``W = 1``
    for 1-D models (so Conv1D and Conv2D (k x 1) share one kernel); flat shapes are ``(N,)``."""

    index: int
    kind: str
    name: str  # name of the Arch layer (for a folded conv: the conv's name)
    layer: Layer
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    trainable: bool
    use_bias: bool = False
    bn: Layer | None = None  # the BatchNorm folded into this conv, if any

    @property
    def size_in(self) -> int:
        return _prod(self.in_shape)

    @property
    def size_out(self) -> int:
        return _prod(self.out_shape)

    @property
    def param_shapes(self) -> list[tuple[int, ...]]:
        """Runtime parameter shapes (trained ones): conv ``(K*C, F)`` + ``(F,)``; dense
        ``(N, U)`` + ``(U,)``; affine BN gamma, beta ``(C,)``."""
        if self.kind == "conv":
            k, c, f = self.layer.kernel, self.in_shape[-1], self.out_shape[-1]
            return [(k * c, f)] + ([(f,)] if self.use_bias else [])
        if self.kind == "dense":
            n, u = self.in_shape[0], self.out_shape[0]
            return [(n, u)] + ([(u,)] if self.use_bias else [])
        if self.kind == "bn":
            c = self.in_shape[-1]
            return [(c,), (c,)]
        return []

    @property
    def n_params(self) -> int:
        return sum(_prod(s) for s in self.param_shapes)


@dataclass(frozen=True)
class Graph:
    arch: Arch
    layers: tuple[RLayer, ...]
    trainable: frozenset[str]  # Arch layer names (as resolved)
    bn_mode: str
    first_trainable: int  # index of the lowest trainable runtime layer; len(layers) if none

    @property
    def training(self) -> bool:
        return self.first_trainable < len(self.layers)

    @property
    def input_shape4(self) -> tuple[int, ...]:
        return _canon(tuple(self.arch.input_shape))

    def needs_dx(self, i: int) -> bool:
        """Whether runtime layer ``i`` computes its input gradient (downstream error)."""
        return i > self.first_trainable

    def in_backward(self, i: int) -> bool:
        """Whether runtime layer ``i`` takes part in the backward pass at all."""
        return i >= self.first_trainable

    @property
    def n_trainable_params(self) -> int:
        return sum(l.n_params for l in self.layers if l.trainable)


def _prod(shape: Iterable[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _canon(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Per-sample shape -> canonical runtime shape (1-D spatial ``(L, C)`` becomes ``(L, 1, C)``)."""
    if len(shape) == 2:
        return (shape[0], 1, shape[1])
    return tuple(shape)


def normalize_trainable(arch: Arch, trainable: "str | Sequence[str] | frozenset[str] | None") -> frozenset[str]:
    """Resolve ``'tl' | 'full' | 'last' | 'none' | [names] | None`` to layer names (None = none)."""
    if trainable is None:
        return frozenset()
    if isinstance(trainable, (frozenset, set)):
        trainable = sorted(trainable)
    return resolve_trainable(arch, trainable)


def check_supported(arch: Arch) -> None:
    """Raise :class:`ArchError` naming the first layer the engine cannot run."""
    if not arch.layers:
        raise ArchError(f"{arch.name!r} has no layers")
    for i, layer in enumerate(arch.layers):
        if layer.kind not in _RUNTIME_KIND:
            raise ArchError(f"layer {layer.name!r}: kind {layer.kind!r} is not supported by the training engine")
        if layer.kind in ("conv1d", "conv2d") and layer.stride not in (0, 1):
            raise ArchError(
                f"layer {layer.name!r} ({layer.kind}): only stride 1 is supported, got stride {layer.stride}"
            )
        if layer.kind == "softmax" and i != len(arch.layers) - 1:
            raise ArchError(
                f"layer {layer.name!r}: softmax is only supported as the last layer (it is fused with the "
                "cross-entropy loss)"
            )
        if layer.kind == "dropout" and not (0.0 <= layer.rate < 1.0):
            raise ArchError(f"layer {layer.name!r}: dropout rate {layer.rate} is outside [0, 1)")
        if layer.kind == "batchnorm" and not layer.epsilon > 0:
            raise ArchError(f"layer {layer.name!r}: BatchNorm epsilon must be > 0, got {layer.epsilon}")
    last = arch.layers[-1]
    if last.kind != "softmax":
        raise ArchError(
            f"layer {last.name!r} ({last.kind}): the engine needs the model to end with a softmax layer "
            "(split a fused Dense+softmax into Dense and softmax)"
        )


def lower(arch: Arch, trainable: "str | Sequence[str] | frozenset[str] | None" = None, bn: str = "fold") -> Graph:
    """Runtime graph of ``arch`` for the given trainable set (see module doc for the BN rules)."""
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
    check_supported(arch)
    names = normalize_trainable(arch, trainable)
    in_shapes = arch.input_shapes()
    out_shapes = arch.shapes()
    rl: list[RLayer] = []
    for j, (layer, s_in, s_out) in enumerate(zip(arch.layers, in_shapes, out_shapes)):
        kind = _RUNTIME_KIND[layer.kind]
        tr = layer.name in names
        prev = rl[-1] if rl else None
        if (
            kind == "bn"
            and bn == "fold"
            and prev is not None
            and prev.kind == "conv"
            and prev.bn is None
            and prev.layer is arch.layers[j - 1]
            and not (tr and not prev.trainable)
        ):
            rl[-1] = RLayer(
                prev.index,
                "conv",
                prev.name,
                prev.layer,
                prev.in_shape,
                prev.out_shape,
                prev.trainable,
                use_bias=True,
                bn=layer,
            )
            continue
        in4 = tuple(s_in) if len(s_in) == 1 else _canon(tuple(s_in))
        out4 = tuple(s_out) if len(s_out) == 1 else _canon(tuple(s_out))
        use_bias = layer.use_bias if kind in ("conv", "dense") else False
        rl.append(RLayer(len(rl), kind, layer.name, layer, in4, out4, tr, use_bias=use_bias))
    first = next((l.index for l in rl if l.trainable), len(rl))
    return Graph(arch, tuple(rl), names, bn, first)
