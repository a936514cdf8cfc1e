"""Operation counts of on-device training and inference, per sample, by ``OP_TYPES`` key.

This module is the *definition* of what one operation is; the training engine (``device.engine``)
counts with exactly these rules so that ``tests/estimator/test_estimator_vs_engine.py`` can compare them.

Definitions (per sample; ``out`` = elements of a layer's output, ``in`` = elements of its input)
-----------------------------------------------------------------------------------------------
MAC types (one multiply-accumulate each):

* ``conv_fwd``  conv1d: ``L_out·F·K·C_in``; conv2d (kernel (K,1)): ``L_out·W·F·K·C_in``.
* ``conv_dw``   weight gradient of a *trained* conv, accumulated straight into the gradient
  accumulator: same count as ``conv_fwd``.
* ``conv_dx``   input gradient (downstream error) of a conv, computed as the paper's full correlation
  of the zero-padded error with the flipped kernel (padding zeros are multiplied too):
  ``L_in·F·K·C_in`` (·W for conv2d).
* ``dense_fwd`` / ``dense_dw`` / ``dense_dx``: ``N_in·units`` each.

``elementwise`` (one op per element touched by a non-MAC step):

* forward: bias add ``out`` (layers with ``use_bias``); relu ``out``; softmax ``out``;
  avg/max pool ``L_out·pool·(other dims)`` (elements read); gap/gmp ``in``; batchnorm (frozen
  statistics, fused scale-and-shift) ``out``; flatten and dropout 0 (identity on device).
* backward: loss + softmax error ``a − t``: ``out`` of the softmax (or of the last layer when there
  is no softmax); bias gradient ``out`` (trained layers with bias); relu mask ``out``; avg/max pool
  ``L_out·pool·(other dims)``; gap/gmp ``in``; batchnorm dx ``out`` and, when trained,
  dγ/dβ ``2·out``; flatten, dropout 0.

Which backward steps run (only what the trained set needs, as in the paper, table3-analysis §1.1):

* Let ``i0`` be the index of the first layer with trained parameters.  Layers ``i < i0`` run no
  backward at all (in TL only the Dense part runs backward).
* Every layer ``i >= i0`` gets its output error.  Trained layers compute their parameter gradients.
  Layers ``i > i0`` compute their input gradient (``*_dx``), frozen parameter layers in between
  included; the layer ``i0`` itself does **not** (the conv1 input gradient is not computed in Full).
* With an empty trained set nothing runs backward.

Parameter update (per batch, not per sample): plain SGD ``w ← w − η·g`` after gradient accumulation
is one ``elementwise`` op per trained parameter (zeroing the accumulators is not counted).

The inference figures (:func:`inference_stats`) follow ST's model-zoo reporting: MACC = all forward
MACs plus forward elementwise ops; weights = float32 parameters after folding every BatchNorm that
is adjacent to a conv/dense layer; activations = peak over layers of input + output buffers
(in-place layers, i.e. relu/dropout/flatten/batchnorm, add nothing), inputs and outputs included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

from estimator.arch import OP_TYPES, Arch, Layer, resolve_trainable

MAC_TYPES = tuple(k for k in OP_TYPES if k != "elementwise")
BYTES_PER_VALUE = 4  # float32 throughout (paper, Sec. III-B)

# Layers whose output may overwrite their input (no new buffer at run time).
INPLACE_KINDS = frozenset({"relu", "dropout", "flatten", "batchnorm", "softmax"})
CONV_KINDS = frozenset({"conv1d", "conv2d"})
POOL_KINDS = frozenset({"avgpool1d", "maxpool1d", "avgpool2d", "maxpool2d"})
GLOBAL_POOL_KINDS = frozenset({"gap1d", "gmp1d", "gap2d", "gmp2d"})


def _prod(shape: Iterable[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def zero_ops() -> dict[str, int]:
    return {k: 0 for k in OP_TYPES}


def _add(a: dict[str, int], b: Mapping[str, int], scale: int = 1) -> dict[str, int]:
    for k, v in b.items():
        a[k] = a.get(k, 0) + scale * int(v)
    return a


@dataclass(frozen=True)
class LayerOps:
    """Per-sample operation counts of one layer."""

    name: str
    kind: str
    forward: dict[str, int]
    backward: dict[str, int]

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "forward": dict(self.forward), "backward": dict(self.backward)}


@dataclass(frozen=True)
class OpCounts:
    """Operation counts of one training configuration.

    ``forward`` and ``backward`` are per sample; ``update`` is per batch (one SGD step).
    """

    forward: dict[str, int]
    backward: dict[str, int]
    update: dict[str, int]
    layers: tuple[LayerOps, ...] = field(default=())
    trainable: frozenset[str] = frozenset()

    @property
    def per_sample(self) -> dict[str, int]:
        """Forward + backward per sample, by op type."""
        return _add(dict(self.forward), self.backward)

    def per_batch(self, batch_size: int) -> dict[str, int]:
        """Operations of one batch: ``batch_size`` × (forward + backward) + one parameter update."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return _add(_add(zero_ops(), self.per_sample, batch_size), self.update)

    @property
    def macs_per_sample(self) -> int:
        ps = self.per_sample
        return sum(ps[k] for k in MAC_TYPES)

    def to_dict(self) -> dict:
        return {
            "forward": dict(self.forward),
            "backward": dict(self.backward),
            "per_sample": self.per_sample,
            "update_per_batch": dict(self.update),
            "macs_per_sample": self.macs_per_sample,
            "layers": [l.to_dict() for l in self.layers],
        }


def first_trained_index(arch: Arch, trainable: Iterable[str]) -> int | None:
    """Index of the first layer whose parameters are trained (``None`` if nothing is trained)."""
    names = set(trainable)
    for i, layer in enumerate(arch.layers):
        if layer.name in names:
            return i
    return None


def _forward_ops(layer: Layer, s_in: tuple[int, ...], s_out: tuple[int, ...]) -> dict[str, int]:
    ops = zero_ops()
    k = layer.kind
    n_out = _prod(s_out)
    if k in CONV_KINDS:
        ops["conv_fwd"] = n_out * layer.kernel * s_in[-1]
        if layer.use_bias:
            ops["elementwise"] = n_out
    elif k == "dense":
        ops["dense_fwd"] = s_in[-1] * layer.units
        if layer.use_bias:
            ops["elementwise"] = n_out
    elif k in ("relu", "softmax", "batchnorm"):
        ops["elementwise"] = n_out
    elif k in POOL_KINDS:
        ops["elementwise"] = n_out * layer.pool
    elif k in GLOBAL_POOL_KINDS:
        ops["elementwise"] = _prod(s_in)
    # flatten, dropout: identity on device
    return ops


def _backward_ops(
    layer: Layer, s_in: tuple[int, ...], s_out: tuple[int, ...], trained: bool, need_dx: bool, is_last: bool
) -> dict[str, int]:
    ops = zero_ops()
    k = layer.kind
    n_out = _prod(s_out)
    ew = 0
    if is_last and k != "softmax":
        ew += n_out  # loss gradient a - t without a softmax layer
    if k in CONV_KINDS:
        per_pos = layer.kernel * s_in[-1]
        if trained:
            ops["conv_dw"] = n_out * per_pos
            if layer.use_bias:
                ew += n_out
        if need_dx:
            ops["conv_dx"] = _prod(s_in[:-1]) * layer.filters * per_pos
    elif k == "dense":
        if trained:
            ops["dense_dw"] = s_in[-1] * layer.units
            if layer.use_bias:
                ew += n_out
        if need_dx:
            ops["dense_dx"] = s_in[-1] * layer.units
    elif k in ("relu", "softmax"):
        ew += n_out
    elif k == "batchnorm":
        if trained:
            ew += 2 * n_out
        if need_dx:
            ew += n_out
    elif k in POOL_KINDS:
        ew += n_out * layer.pool
    elif k in GLOBAL_POOL_KINDS:
        ew += _prod(s_in)
    ops["elementwise"] = ew
    return ops


def count_ops(arch: Arch, trainable: str | Sequence[str] | frozenset[str] = "tl") -> OpCounts:
    """Per-sample forward/backward operation counts and the per-batch update, by ``OP_TYPES`` key.

    ``trainable`` is a mode (``'tl'``, ``'full'``, ``'last'``, ``'none'``) or layer names; see the
    module doc for what counts as one operation.
    """
    names = trainable if isinstance(trainable, frozenset) else resolve_trainable(arch, trainable)
    return _count_ops_cached(arch, frozenset(names))


@lru_cache(maxsize=1024)
def _count_ops_cached(arch: Arch, names: frozenset[str]) -> OpCounts:
    in_shapes = arch.input_shapes()
    out_shapes = arch.shapes()
    i0 = first_trained_index(arch, names)
    n = len(arch.layers)
    fwd_total, bwd_total = zero_ops(), zero_ops()
    layers = []
    for i, (layer, s_in, s_out) in enumerate(zip(arch.layers, in_shapes, out_shapes)):
        f = _forward_ops(layer, s_in, s_out)
        if i0 is not None and i >= i0:
            b = _backward_ops(layer, s_in, s_out, layer.name in names, need_dx=i > i0, is_last=i == n - 1)
        else:
            b = zero_ops()
        _add(fwd_total, f)
        _add(bwd_total, b)
        layers.append(LayerOps(layer.name, layer.kind, f, b))
    update = zero_ops()
    update["elementwise"] = arch.param_count(names, trainable_only=True) if names else 0
    return OpCounts(fwd_total, bwd_total, update, tuple(layers), names)


# --- inference figures (ST model-zoo style) ------------------------------------------------------


@dataclass(frozen=True)
class InferenceStats:
    macc: int  # forward MACs + forward elementwise ops, per inference
    macs: int  # forward MACs only (conv + dense)
    weights_bytes: int  # float32 parameters after BatchNorm folding
    activation_peak_bytes: int  # max over layers of input + output buffers (I/O included)
    folded_batchnorms: tuple[str, ...] = ()
    activation_fused_bytes: int = 0  # the same with conv (+ BN + ReLU) + pooling fused, as ST's generator does

    def to_dict(self) -> dict:
        return {
            "inference_macc": self.macc,
            "inference_macs": self.macs,
            "weights_bytes": self.weights_bytes,
            "weights_kib": self.weights_bytes / 1024,
            "activation_peak_bytes": self.activation_peak_bytes,
            "activation_peak_kib": self.activation_peak_bytes / 1024,
            "activation_fused_bytes": self.activation_fused_bytes,
            "activation_fused_kib": self.activation_fused_bytes / 1024,
            "folded_batchnorms": list(self.folded_batchnorms),
        }


def foldable_batchnorms(arch: Arch) -> tuple[str, ...]:
    """BatchNorm layers that a code generator folds into an adjacent conv/dense (previous or next)."""
    out = []
    layers = arch.layers
    for i, layer in enumerate(layers):
        if layer.kind != "batchnorm":
            continue
        prev_ok = i > 0 and layers[i - 1].kind in CONV_KINDS | {"dense"}
        next_ok = i + 1 < len(layers) and layers[i + 1].kind in CONV_KINDS | {"dense"}
        if prev_ok or next_ok:
            out.append(layer.name)
    return tuple(out)


def inference_stats(arch: Arch) -> InferenceStats:
    """MACC, weights and activation peak of inference, as ST's model zoo reports them."""
    return _inference_cached(arch)


@lru_cache(maxsize=256)
def _inference_cached(arch: Arch) -> InferenceStats:
    counts = count_ops(arch, frozenset())
    macs = sum(counts.forward[k] for k in MAC_TYPES)
    folded = foldable_batchnorms(arch)
    shapes = arch.param_shapes()
    folded_params = sum(_prod(s) for name in folded for s in shapes.get(name, []))
    weights = (arch.params - folded_params) * BYTES_PER_VALUE
    peak = 0
    for layer, s_in, s_out in zip(arch.layers, arch.input_shapes(), arch.shapes()):
        live = _prod(s_in) + (0 if layer.kind in INPLACE_KINDS else _prod(s_out))
        peak = max(peak, live)
    return InferenceStats(
        macc=macs + counts.forward["elementwise"],
        macs=macs,
        weights_bytes=weights,
        activation_peak_bytes=peak * BYTES_PER_VALUE,
        folded_batchnorms=folded,
        activation_fused_bytes=_fused_activation_peak(arch) * BYTES_PER_VALUE,
    )


_POOL_KINDS = frozenset({"avgpool1d", "maxpool1d", "avgpool2d", "maxpool2d"})


def _fused_activation_peak(arch: Arch) -> int:
    """Activation peak (values) when, as ST's code generator does, a conv and the BatchNorm and ReLU right
    after it and a pooling layer right after those run as one layer: the conv's pre-pool output is never
    stored whole, so that fused layer holds only its input and the pooled output."""
    layers, ins, outs = arch.layers, arch.input_shapes(), arch.shapes()
    peak, i = 0, 0
    while i < len(layers):
        j = i
        if layers[i].kind in CONV_KINDS:
            while j + 1 < len(layers) and layers[j + 1].kind in ("batchnorm", "relu"):
                j += 1
            if j + 1 < len(layers) and layers[j + 1].kind in _POOL_KINDS:
                j += 1
            else:
                j = i  # no pooling to fuse with: the layers count one by one
        inplace = j == i and layers[i].kind in INPLACE_KINDS
        peak = max(peak, _prod(ins[i]) + (0 if inplace else _prod(outs[j])))
        i = j + 1
    return peak
