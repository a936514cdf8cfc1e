"""Operation counts: what the firmware computes, per sample and per batch.

The rules are spelled out in docs/engine.md ("Operation counting"); in short, with ``f`` the index of
the first (lowest) trainable runtime layer:

* every layer runs forward;
* layers ``i >= f`` run backward; a layer computes its *input* gradient only if ``i > f``;
* trainable conv/dense layers compute their weight (and bias) gradient;
* conv MACs are ``L_out*W*F*C*K`` (forward, dW) and ``L_in*W*C*F*K`` (dX, the "full" correlation of the
  zero-padded error with the flipped kernel, paper eq. (5), zero products included);
* dense MACs are ``N_in*units`` for each of forward, dW and dX;
* ``elementwise`` counts one operation per element touched by bias adds, activations, pooling,
  BatchNorm, softmax/cross-entropy, their backward passes, bias gradients, and (once per batch) one
  per trained parameter for the SGD update.

The engine adds exactly these numbers to its counters for every batch it trains.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from estimator.arch import OP_TYPES, Arch

from .graph import Graph, RLayer, lower

OpCounts = dict  # dict[str, int] with keys OP_TYPES


def zero_ops() -> dict[str, int]:
    return {k: 0 for k in OP_TYPES}


def add_ops(acc: dict[str, int], other: Mapping[str, int], times: int = 1) -> dict[str, int]:
    """``acc += times * other`` in place; returns ``acc``."""
    for k in OP_TYPES:
        acc[k] += int(other.get(k, 0)) * int(times)
    return acc


def layer_ops(g: Graph, layer: RLayer, training: bool = True) -> dict[str, int]:
    """Per-sample operation counts of one runtime layer (forward, plus backward if ``training``)."""
    ops = zero_ops()
    i = layer.index
    back = training and g.in_backward(i)
    dx = training and g.needs_dx(i)
    k = layer.kind
    n_in, n_out = layer.size_in, layer.size_out
    if k == "conv":
        L_in, W, C = layer.in_shape
        L_out, _, F = layer.out_shape
        K = layer.layer.kernel
        macs = L_out * W * F * C * K
        ops["conv_fwd"] += macs
        if layer.use_bias:
            ops["elementwise"] += n_out
        if back and layer.trainable:
            ops["conv_dw"] += macs
            if layer.use_bias:
                ops["elementwise"] += n_out
        if dx:
            ops["conv_dx"] += L_in * W * C * F * K
    elif k == "dense":
        macs = n_in * n_out
        ops["dense_fwd"] += macs
        if layer.use_bias:
            ops["elementwise"] += n_out
        if back and layer.trainable:
            ops["dense_dw"] += macs
            if layer.use_bias:
                ops["elementwise"] += n_out
        if dx:
            ops["dense_dx"] += macs
    elif k in ("relu", "softmax"):
        ops["elementwise"] += n_out
        if back:
            ops["elementwise"] += n_out
    elif k in ("avgpool", "maxpool"):
        work = layer.layer.pool * n_out
        ops["elementwise"] += work
        if dx:
            ops["elementwise"] += work
    elif k in ("gap", "gmp"):
        ops["elementwise"] += n_in
        if dx:
            ops["elementwise"] += n_in
    elif k == "bn":
        ops["elementwise"] += n_in
        if back and layer.trainable:
            ops["elementwise"] += 2 * n_in  # dgamma (dy * xhat) and dbeta (dy) accumulation
        if dx:
            ops["elementwise"] += n_in
    # flatten, dropout: views, nothing computed
    return ops


def sample_ops(g: Graph, training: bool = True) -> dict[str, int]:
    """Per-sample totals over the graph (no SGD update)."""
    total = zero_ops()
    for layer in g.layers:
        add_ops(total, layer_ops(g, layer, training))
    return total


def update_ops(g: Graph) -> int:
    """Elementwise operations of one SGD update (one per trained runtime parameter), once per batch."""
    return g.n_trainable_params


def batch_ops(g: Graph, n: int, training: bool = True) -> dict[str, int]:
    """Counts for one batch of ``n`` samples: ``n`` x per-sample + the update (if training)."""
    ops = add_ops(zero_ops(), sample_ops(g, training), n)
    if training and g.training and n > 0:
        ops["elementwise"] += update_ops(g)
    return ops


def count_ops(
    arch: Arch,
    trainable: "str | Sequence[str] | None" = "full",
    batch_size: int = 1,
    *,
    training: bool = True,
    bn: str = "fold",
    include_update: bool = True,
) -> dict[str, int]:
    """Operation counts of one batch of ``batch_size`` samples, without building a model.

    ``trainable=None`` or ``training=False`` gives the forward (inference) counts.
    """
    g = lower(arch, trainable, bn)
    training = training and g.training
    ops = add_ops(zero_ops(), sample_ops(g, training), batch_size)
    if training and include_update and batch_size > 0:
        ops["elementwise"] += update_ops(g)
    return ops


def ops_breakdown(
    arch: Arch, trainable: "str | Sequence[str] | None" = "full", *, bn: str = "fold"
) -> list[tuple[str, dict[str, int]]]:
    """Per-sample counts per runtime layer (for comparing with an estimator layer by layer)."""
    g = lower(arch, trainable, bn)
    return [(l.name, layer_ops(g, l, g.training)) for l in g.layers]


def macs(ops: Mapping[str, int]) -> int:
    """Total MACs (everything but ``elementwise``)."""
    return sum(int(v) for k, v in ops.items() if k != "elementwise")
