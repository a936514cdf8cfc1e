"""Keras-layout weights: initialisation, validation, and BatchNorm folding/unfolding.

Weights are ``dict[str, list[np.ndarray]]`` keyed by layer name, in Keras order and layout (see
:mod:`estimator.arch`).  The engine keeps them as C-contiguous float32 arrays.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from estimator.arch import Arch, Layer

Weights = dict[str, list[np.ndarray]]
DTYPE = np.float32


def glorot_init(arch: Arch, seed: int = 0) -> Weights:
    """Keras-like defaults: glorot-uniform kernels, zero biases, BN gamma=1, beta=0, mean=0, var=1.
    (Same distributions as Keras, not the same random stream.)"""
    rng = np.random.default_rng(seed)
    out: Weights = {}
    for name, shapes in arch.param_shapes().items():
        layer = arch.layer(name)
        if layer.kind == "batchnorm":
            c = shapes[0]
            out[name] = [np.ones(c, DTYPE), np.zeros(c, DTYPE), np.zeros(c, DTYPE), np.ones(c, DTYPE)]
            continue
        kshape = shapes[0]
        receptive = int(np.prod(kshape[:-2])) if len(kshape) > 2 else 1
        fan_in, fan_out = kshape[-2] * receptive, kshape[-1] * receptive
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        arrs = [rng.uniform(-limit, limit, size=kshape).astype(DTYPE)]
        arrs += [np.zeros(s, DTYPE) for s in shapes[1:]]
        out[name] = arrs
    return out


def check_weights(arch: Arch, weights: Mapping[str, Sequence[np.ndarray]]) -> Weights:
    """Validate names and shapes against ``arch`` and return float32 C-contiguous copies.

    Raises ValueError naming the layer and the expected shapes."""
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must be a dict of layer name -> list of arrays, got {type(weights).__name__}")
    expected = arch.param_shapes()
    unknown = sorted(set(weights) - set(expected))
    if unknown:
        raise ValueError(
            f"weights for unknown layer(s) {unknown}; layers with parameters in {arch.name!r}: {sorted(expected)}"
        )
    out: Weights = {}
    for name, shapes in expected.items():
        if name not in weights:
            raise ValueError(f"layer {name!r}: weights missing (expected arrays of shapes {shapes})")
        arrs = list(weights[name])
        if len(arrs) != len(shapes):
            raise ValueError(f"layer {name!r}: expected {len(shapes)} arrays of shapes {shapes}, got {len(arrs)}")
        conv: list[np.ndarray] = []
        for i, (a, s) in enumerate(zip(arrs, shapes)):
            a = np.asarray(a)
            if tuple(a.shape) != tuple(s):
                raise ValueError(f"layer {name!r}: array {i} has shape {tuple(a.shape)}, expected {tuple(s)}")
            if not np.issubdtype(a.dtype, np.number):
                raise ValueError(f"layer {name!r}: array {i} is not numeric (dtype {a.dtype})")
            a = np.ascontiguousarray(a, dtype=DTYPE)
            if not np.all(np.isfinite(a)):
                raise ValueError(f"layer {name!r}: array {i} contains NaN or infinity")
            conv.append(a.copy())
        if arch.layer(name).kind == "batchnorm" and np.any(conv[3] + arch.layer(name).epsilon <= 0):
            raise ValueError(f"layer {name!r}: moving variance + epsilon must be > 0")
        out[name] = conv
    return out


def fold_conv_bn(
    kernel2d: np.ndarray, bias: np.ndarray | None, bn: Layer, bn_params: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Fold a frozen BN into the conv before it: ``W_f = W*s``, ``b_f = (b - mean)*s + beta``.

    ``kernel2d`` is the conv kernel reshaped ``(K*C, F)``; returns float32 ``(W_f, b_f)``."""
    gamma, beta, mean, var = (np.asarray(p, np.float64) for p in bn_params)
    s = gamma / np.sqrt(var + bn.epsilon)
    b = np.zeros_like(s) if bias is None else np.asarray(bias, np.float64)
    w_f = np.asarray(kernel2d, np.float64) * s[None, :]
    b_f = (b - mean) * s + beta
    return w_f.astype(DTYPE), b_f.astype(DTYPE)


def unfold_conv_bn(
    w_f: np.ndarray, b_f: np.ndarray, has_bias: bool, bn: Layer, bn_params: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray]]:
    """Inverse of :func:`fold_conv_bn` that keeps the BN's statistics (and gamma) unchanged.

    Returns ``(kernel2d, conv_bias_or_None, bn_params)`` such that ``BN(conv(x))`` equals the folded
    conv to float32 rounding.  With a conv bias: ``W = W_f/s``, ``b = (b_f - beta)/s + mean`` (BN
    untouched).  Without one: ``W = W_f/s`` and ``beta = b_f + s*mean``.  Channels whose scale is
    (near) zero cannot be divided back; they get identity statistics (gamma=1, mean=0,
    var=1-eps) so that ``s = 1`` there."""
    gamma, beta, mean, var = (np.array(p, np.float64) for p in bn_params)
    eps = bn.epsilon
    s = gamma / np.sqrt(var + eps)
    degenerate = np.abs(s) < 1e-12
    if np.any(degenerate):
        gamma[degenerate], mean[degenerate], var[degenerate] = 1.0, 0.0, 1.0 - eps
        s = gamma / np.sqrt(var + eps)
    w = np.asarray(w_f, np.float64) / s[None, :]
    bf = np.asarray(b_f, np.float64)
    if has_bias:
        bias = (bf - beta) / s + mean
        new_bn = [gamma, beta, mean, var]
        return w.astype(DTYPE), bias.astype(DTYPE), [p.astype(DTYPE) for p in new_bn]
    beta = bf + s * mean
    return w.astype(DTYPE), None, [p.astype(DTYPE) for p in (gamma, beta, mean, var)]


def copy_weights(w: Mapping[str, Sequence[np.ndarray]]) -> Weights:
    return {k: [np.array(a, copy=True) for a in v] for k, v in w.items()}
