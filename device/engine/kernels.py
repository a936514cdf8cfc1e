"""Numpy kernels of the runtime layers, bound once to preallocated buffers.

Each ``bind_*`` function receives the layer's buffers for one batch size and returns two closures
``(forward, backward)`` that take no arguments and work in place, so the hot loop is a flat list of
calls with no allocation, dispatch or shape logic.  Spatial tensors are ``(B, L, W, C)`` (``W = 1``
for 1-D models); flat tensors ``(B, N)``.  Conv uses an im2col copy of a strided view (one BLAS
matmul per pass); its input gradient is computed by col2im (``K`` shifted adds), which gives the same
values as the paper's padded full correlation with the flipped kernel, without the zero products.

Backward closures compute, depending on what the runtime graph asks for: the parameter gradients
(written to ``grads``, overwriting) and/or the input gradient (written to ``dx``, overwriting).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .graph import RLayer

Fn = Optional[Callable[[], object]]  # what a step returns (numpy hands back its ``out``) is not used
DTYPE = np.float32


def _noop() -> None:
    return None


def bind_conv(
    rl: RLayer,
    x: np.ndarray,
    y: np.ndarray,
    dx: np.ndarray | None,
    dy: np.ndarray | None,
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray] | None,
) -> tuple[Fn, Fn]:
    B, L, Wd, C = x.shape
    K = rl.layer.kernel
    F = y.shape[-1]
    Lo = L - K + 1
    sB, sL, sW, sC = x.strides
    xv = as_strided(x, shape=(B, Lo, Wd, K, C), strides=(sB, sL, sW, sL, sC), writeable=False)
    cols = np.empty((B, Lo, Wd, K, C), DTYPE)
    cols2 = cols.reshape(B * Lo * Wd, K * C)
    y2 = y.reshape(B * Lo * Wd, F)
    w2 = params[0]
    b = params[1] if len(params) > 1 else None
    copyto, matmul = np.copyto, np.matmul

    if b is None:

        def fwd() -> None:
            copyto(cols, xv)
            matmul(cols2, w2, out=y2)
    else:

        def fwd() -> None:
            copyto(cols, xv)
            matmul(cols2, w2, out=y2)
            np.add(y2, b, out=y2)

    if dy is None:
        return fwd, None
    dy2 = dy.reshape(B * Lo * Wd, F)
    steps: list[Callable[[], object]] = []
    if grads is not None:
        gw2 = grads[0]
        steps.append(lambda: matmul(cols2.T, dy2, out=gw2))
        if b is not None:
            gb = grads[1]
            steps.append(lambda: np.add.reduce(dy2, axis=0, out=gb))
    if dx is not None:
        dcols = np.empty((B, Lo, Wd, K, C), DTYPE)
        dcols2 = dcols.reshape(B * Lo * Wd, K * C)
        head, tail = dx[:, :Lo], dx[:, Lo:]
        shifted = [(dx[:, k : k + Lo], dcols[:, :, :, k, :]) for k in range(1, K)]
        d0 = dcols[:, :, :, 0, :]
        add = np.add

        def back_dx() -> None:
            matmul(dy2, w2.T, out=dcols2)
            copyto(head, d0)
            tail.fill(0.0)
            for dst, src in shifted:
                add(dst, src, out=dst)

        steps.append(back_dx)
    return fwd, _chain(steps)


def bind_dense(
    rl: RLayer,
    x: np.ndarray,
    y: np.ndarray,
    dx: np.ndarray | None,
    dy: np.ndarray | None,
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray] | None,
) -> tuple[Fn, Fn]:
    w = params[0]
    b = params[1] if len(params) > 1 else None
    matmul = np.matmul
    if b is None:

        def fwd() -> None:
            matmul(x, w, out=y)
    else:

        def fwd() -> None:
            matmul(x, w, out=y)
            np.add(y, b, out=y)

    if dy is None:
        return fwd, None
    steps: list[Callable[[], object]] = []
    if grads is not None:
        gw = grads[0]
        steps.append(lambda: matmul(x.T, dy, out=gw))
        if b is not None:
            gb = grads[1]
            steps.append(lambda: np.add.reduce(dy, axis=0, out=gb))
    if dx is not None:
        steps.append(lambda: matmul(dy, w.T, out=dx))
    return fwd, _chain(steps)


def bind_relu(rl: RLayer, x: np.ndarray, y: np.ndarray, dx: np.ndarray | None, dy: np.ndarray | None) -> tuple[Fn, Fn]:
    maximum, multiply, greater = np.maximum, np.multiply, np.greater
    if dx is None:
        return (lambda: maximum(x, 0.0, out=y)), None
    assert dy is not None  # a layer that computes dx is in the backward pass (Graph.needs_dx)
    mask = np.empty(y.shape, bool)

    def fwd() -> None:
        maximum(x, 0.0, out=y)
        greater(x, 0.0, out=mask)

    return fwd, (lambda: multiply(dy, mask, out=dx))


def bind_pool(rl: RLayer, x: np.ndarray, y: np.ndarray, dx: np.ndarray | None, dy: np.ndarray | None) -> tuple[Fn, Fn]:
    """Average or max pooling along time (axis 1), 'valid', any stride."""
    B, L, Wd, C = x.shape
    p = rl.layer.pool
    s = rl.layer.stride or p
    Lo = y.shape[1]
    sB, sL, sW, sC = x.strides
    win = as_strided(x, shape=(B, Lo, p, Wd, C), strides=(sB, s * sL, sL, sW, sC), writeable=False)
    # slot j = the j-th element of every window: a strided slice (elementwise chains over p slices are
    # several times faster than a reduction over a short strided axis)
    xslots = [x[:, j : j + s * (Lo - 1) + 1 : s] for j in range(p)]
    inv = DTYPE(1.0 / p)
    is_max = rl.kind == "maxpool"
    tiled = s == p  # windows tile the input: backward is one broadcast write
    reduce_op = np.maximum if is_max else np.add
    first, others = xslots[0], xslots[1:]

    def reduce_fwd() -> None:
        if others:
            reduce_op(first, others[0], out=y)
            for sl in others[1:]:
                reduce_op(y, sl, out=y)
        else:
            np.copyto(y, first)

    if not is_max:

        def fwd() -> None:
            reduce_fwd()
            np.multiply(y, inv, out=y)

        if dx is None:
            return fwd, None
        assert dy is not None  # a layer that computes dx is in the backward pass (Graph.needs_dx)
        if tiled:
            dxw = dx[:, : Lo * p].reshape(B, Lo, p, Wd, C)
            rest = dx[:, Lo * p :]
            dyb = dy[:, :, None]

            def bwd() -> None:
                np.multiply(dyb, inv, out=dxw)
                if rest.size:
                    rest.fill(0.0)

            return fwd, bwd
        scaled = np.empty_like(dy)
        slots = [dx[:, j : j + s * (Lo - 1) + 1 : s] for j in range(p)]

        def bwd_general() -> None:
            np.multiply(dy, inv, out=scaled)
            dx.fill(0.0)
            for dst in slots:
                dst += scaled

        return fwd, bwd_general

    # max pooling: remember the arg-max (first maximum, as TensorFlow) for the backward pass
    if dx is None:
        return reduce_fwd, None
    assert dy is not None
    idx = np.empty((B, Lo, Wd, C), np.intp)
    if tiled:
        mask = np.empty((B, Lo, p, Wd, C), bool)
        ar = np.arange(p).reshape(1, 1, p, 1, 1)
        dxw = dx[:, : Lo * p].reshape(B, Lo, p, Wd, C)
        rest = dx[:, Lo * p :]
        dyb = dy[:, :, None]

        def fwd_max() -> None:
            np.argmax(win, axis=2, out=idx)
            reduce_fwd()
            np.equal(idx[:, :, None], ar, out=mask)

        def bwd_max() -> None:
            np.multiply(dyb, mask, out=dxw)
            if rest.size:
                rest.fill(0.0)

        return fwd_max, bwd_max
    slots = [dx[:, j : j + s * (Lo - 1) + 1 : s] for j in range(p)]
    sel = np.empty((B, Lo, Wd, C), bool)

    def fwd_max_g() -> None:
        np.argmax(win, axis=2, out=idx)
        reduce_fwd()

    def bwd_max_g() -> None:
        dx.fill(0.0)
        for j, dst in enumerate(slots):
            np.equal(idx, j, out=sel)
            dst += dy * sel

    return fwd_max_g, bwd_max_g


def bind_global(
    rl: RLayer, x: np.ndarray, y: np.ndarray, dx: np.ndarray | None, dy: np.ndarray | None
) -> tuple[Fn, Fn]:
    """Global average/max pooling over time and axis columns: ``(B, L, W, C) -> (B, C)``."""
    B, L, Wd, C = x.shape
    n = L * Wd
    x3 = x.reshape(B, n, C)
    if rl.kind == "gap":
        inv = DTYPE(1.0 / n)

        def fwd() -> None:
            np.add.reduce(x3, axis=1, out=y)
            np.multiply(y, inv, out=y)

        if dx is None:
            return fwd, None
        assert dy is not None  # a layer that computes dx is in the backward pass (Graph.needs_dx)
        dx3 = dx.reshape(B, n, C)
        dyb = dy[:, None, :]
        return fwd, (lambda: np.multiply(dyb, inv, out=dx3))
    if dx is None:
        return (lambda: np.maximum.reduce(x3, axis=1, out=y)), None
    assert dy is not None
    idx = np.empty((B, C), np.intp)
    mask = np.empty((B, n, C), bool)
    ar = np.arange(n).reshape(1, n, 1)
    dx3 = dx.reshape(B, n, C)
    dyb = dy[:, None, :]

    def fwd_max() -> None:
        np.argmax(x3, axis=1, out=idx)
        np.maximum.reduce(x3, axis=1, out=y)
        np.equal(ar, idx[:, None, :], out=mask)

    return fwd_max, (lambda: np.multiply(dyb, mask, out=dx3))


def bind_bn(
    rl: RLayer,
    x: np.ndarray,
    y: np.ndarray,
    dx: np.ndarray | None,
    dy: np.ndarray | None,
    bn_params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray] | None,
) -> tuple[Fn, Fn]:
    """Frozen-statistics BatchNorm ``y = x*s + t``; gamma/beta gradients if trainable."""
    gamma, beta, mean, var = bn_params
    eps = rl.layer.epsilon
    C = x.shape[-1]
    s = np.empty(C, DTYPE)
    t = np.empty(C, DTYPE)
    inv = np.empty(C, DTYPE)

    def fwd() -> None:
        np.sqrt(var + DTYPE(eps), out=inv)
        np.divide(DTYPE(1.0), inv, out=inv)
        np.multiply(gamma, inv, out=s)
        np.subtract(beta, mean * s, out=t)
        np.multiply(x, s, out=y)
        np.add(y, t, out=y)

    if dy is None:
        return fwd, None
    steps: list[Callable[[], object]] = []
    axes = tuple(range(x.ndim - 1))
    if grads is not None:
        ggamma, gbeta = grads
        xhat = np.empty_like(x)

        def back_params() -> None:
            np.subtract(x, mean, out=xhat)
            np.multiply(xhat, inv, out=xhat)
            np.multiply(xhat, dy, out=xhat)
            ggamma[...] = xhat.sum(axis=axes)
            gbeta[...] = dy.sum(axis=axes)

        steps.append(back_params)
    if dx is not None:
        steps.append(lambda: np.multiply(dy, s, out=dx))
    return fwd, _chain(steps)


def bind_softmax_ce(
    x: np.ndarray, y: np.ndarray, dx: np.ndarray | None, t: np.ndarray, scale: np.ndarray, losses: np.ndarray
) -> tuple[Fn, Fn]:
    """Softmax + categorical cross-entropy.  Forward writes the probabilities ``y`` and the per-sample
    losses; backward writes ``dx = (p - t) * scale`` (``scale`` is a 1-element array set per batch)."""
    B, N = x.shape
    z = np.empty_like(x)
    m = np.empty((B, 1), DTYPE)
    ssum = np.empty((B, 1), DTYPE)
    tz = np.empty(B, DTYPE)

    def fwd() -> None:
        np.maximum.reduce(x, axis=1, out=m[:, 0])
        np.subtract(x, m, out=z)
        np.exp(z, out=y)
        np.add.reduce(y, axis=1, out=ssum[:, 0])
        np.divide(y, ssum, out=y)
        # loss_i = log(sum exp z) - sum_j t_ij z_ij   (rows of t sum to 1)
        np.einsum("ij,ij->i", t, z, out=tz)
        np.log(ssum[:, 0], out=losses)
        np.subtract(losses, tz, out=losses)

    if dx is None:
        return fwd, None

    def bwd() -> None:
        np.subtract(y, t, out=dx)
        np.multiply(dx, scale, out=dx)

    return fwd, bwd


def _chain(steps: list[Callable[[], object]]) -> Fn:
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]
    a = tuple(steps)

    def run() -> None:
        for f in a:
            f()

    return run
