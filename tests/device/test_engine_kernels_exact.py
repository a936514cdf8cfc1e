"""Exact, hand-worked checks of the reference training engine (device/engine/...): the numbers the ODL
firmware must reproduce byte for byte.

The kernels of device/engine/kernels.py are bound to preallocated buffers and write their results in
place; every test here pre-fills the output buffers with a garbage value (``GARBAGE``) so that a kernel
that forgets to write (or to zero) part of its output is caught.  All values below are small
integers/halves, so float32 results are exact and compared with ``==``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from device.engine.graph import RLayer
from device.engine.kernels import (
    bind_bn,
    bind_conv,
    bind_dense,
    bind_global,
    bind_pool,
    bind_softmax_ce,
)
from estimator.arch import Layer

F32 = np.float32
GARBAGE = 99.0


def _rl(kind: str, layer: Layer) -> RLayer:
    """A runtime layer for the kernels (they only read ``kind`` and the Arch layer's settings)."""
    return RLayer(0, kind, layer.name, layer, (), (), True)


def _a(values, shape=None) -> np.ndarray:
    a = np.array(values, F32)
    return a.reshape(shape) if shape is not None else a


def _buf(shape) -> np.ndarray:
    return np.full(shape, GARBAGE, F32)


def _eq(actual: np.ndarray, expected) -> None:
    np.testing.assert_array_equal(actual, np.array(expected, F32).reshape(actual.shape))


# --- convolution ---------------------------------------------------------------------------------
# B=2, L=5, W=1, C=2, K=3, F=2; x[b][l] = (c0, c1)
CONV_X = [
    [[1, 2], [3, -1], [0, 4], [-2, 1], [1, 1]],
    [[2, 0], [-1, 1], [1, -3], [0, 2], [3, -2]],
]
# runtime kernel (K*C, F): row k*C + c
CONV_W = [[1, 0], [2, -1], [-1, 3], [0.5, 1], [0, -2], [1, 0.5]]
CONV_B = [0.25, -1]
# dL/dy (B, Lo=3, F)
CONV_DY = [[[1, -1], [0.5, 2], [-2, 1]], [[0, 1], [1, 1], [3, -1.5]]]


def _conv(bias: bool, backward: bool, grads: bool = True):
    layer = Layer("conv1d", "c", filters=2, kernel=3, use_bias=bias)
    x = _a(CONV_X, (2, 5, 1, 2))
    y = _buf((2, 3, 1, 2))
    params = [_a(CONV_W)] + ([_a(CONV_B)] if bias else [])
    dx = _buf((2, 5, 1, 2)) if backward else None
    dy = _a(CONV_DY, (2, 3, 1, 2)) if backward else None
    gr = [_buf((6, 2))] + ([_buf(2)] if bias else []) if backward and grads else None
    fwd, bwd = bind_conv(_rl("conv", layer), x, y, dx, dy, params, gr)
    return fwd, bwd, y, dx, gr


def test_conv_forward_is_a_valid_correlation_plus_bias():
    fwd, bwd, y, _, _ = _conv(bias=True, backward=False)
    assert bwd is None  # inference: no backward closure
    fwd()
    # y[0, 0, f0] = (1*1 + 2*2) + (3*-1 + -1*0.5) + (0*0 + 4*1) + 0.25 = 5.75
    _eq(y, [[[5.75, 7.0], [4.25, 8.5], [11.75, -11.5]], [[0.75, -6.5], [0.75, -1.0], [-5.75, -3.0]]])


def test_conv_forward_without_bias_adds_nothing():
    fwd, _, y, _, _ = _conv(bias=False, backward=False)
    fwd()
    _eq(y, [[[5.5, 8.0], [4.0, 9.5], [11.5, -10.5]], [[0.5, -5.5], [0.5, 0.0], [-6.0, -2.0]]])


# gw[k*C + c, f] = sum_b sum_i x[b, i+k, c] * dy[b, i, f]
CONV_GW = [[4.5, 4.5], [-14.5, 5.5], [8.0, -5.0], [2.0, 5.0], [6.0, -6.5], [-1.5, 1.0]]
# dx[b, l, c] = sum_{i+k=l} sum_f dy[b, i, f] * w[k*C + c, f]  (full correlation with the flipped kernel)
CONV_DX = [
    [[1, 3], [-3.5, -1.5], [5.5, -2.25], [1.0, 1.5], [-2, -1.5]],
    [[0, -1], [4, 2.0], [3.0, 9.5], [-9.5, 1.5], [3.0, 2.25]],
]


def test_conv_backward_writes_kernel_bias_and_input_gradients():
    fwd, bwd, _, dx, gr = _conv(bias=True, backward=True)
    fwd()
    bwd()
    _eq(gr[0], CONV_GW)  # e.g. gw[0, 0] = 1*1 + 3*0.5 + 0*-2 + 2*0 + -1*1 + 1*3 = 4.5
    _eq(gr[1], [3.5, 2.5])  # sum of dy over batch and time
    _eq(dx, CONV_DX)  # e.g. dx[0, 0] = dy[0, 0] @ w[k=0].T = (1*1 + -1*0, 1*2 + -1*-1) = (1, 3)


def test_conv_without_bias_backward_writes_kernel_and_input_gradients():
    fwd, bwd, _, dx, gr = _conv(bias=False, backward=True)
    assert len(gr) == 1
    fwd()
    bwd()
    _eq(gr[0], CONV_GW)
    _eq(dx, CONV_DX)


def test_frozen_conv_backward_writes_only_the_input_gradient():
    fwd, bwd, _, dx, _ = _conv(bias=True, backward=True, grads=False)
    fwd()
    bwd()
    _eq(dx, CONV_DX)


def test_conv_computes_in_float32_like_the_firmware():
    """Products that overflow float32 give a non-finite output, as on the MCU (no double-precision
    intermediate that would cancel 4e40 - 4e40 to 0)."""
    layer = Layer("conv1d", "c", filters=1, kernel=1)
    x = _a([[2e20, 2e20]], (1, 1, 1, 2))
    y = _buf((1, 1, 1, 1))
    fwd, _ = bind_conv(_rl("conv", layer), x, y, None, None, [_a([[2e20], [-2e20]]), _a([0.0])], None)
    with np.errstate(over="ignore", invalid="ignore"):
        fwd()
    assert not np.isfinite(y[0, 0, 0, 0])


# --- dense -----------------------------------------------------------------------------------------
DENSE_X = [[1, -2, 0.5], [3, 1, -1]]
DENSE_W = [[2, -1], [0, 1], [4, 0.5]]
DENSE_B = [0.5, -2]
DENSE_DY = [[1, 2], [-0.5, 0.5]]


def _dense(bias: bool, backward: bool):
    layer = Layer("dense", "d", units=2, use_bias=bias)
    x, y = _a(DENSE_X), _buf((2, 2))
    params = [_a(DENSE_W)] + ([_a(DENSE_B)] if bias else [])
    dx = _buf((2, 3)) if backward else None
    dy = _a(DENSE_DY) if backward else None
    gr = [_buf((3, 2))] + ([_buf(2)] if bias else []) if backward else None
    fwd, bwd = bind_dense(_rl("dense", layer), x, y, dx, dy, params, gr)
    return fwd, bwd, y, dx, gr


def test_dense_forward_is_x_times_w_plus_bias():
    fwd, bwd, y, _, _ = _dense(bias=True, backward=False)
    assert bwd is None
    fwd()
    # y[0] = (1*2 + -2*0 + 0.5*4, 1*-1 + -2*1 + 0.5*0.5) + (0.5, -2) = (4.5, -4.75)
    _eq(y, [[4.5, -4.75], [2.5, -4.5]])


def test_dense_forward_without_bias():
    fwd, _, y, _, _ = _dense(bias=False, backward=False)
    fwd()
    _eq(y, [[4.0, -2.75], [2.0, -2.5]])


def test_dense_backward_writes_kernel_bias_and_input_gradients():
    fwd, bwd, _, dx, gr = _dense(bias=True, backward=True)
    fwd()
    bwd()
    _eq(gr[0], [[-0.5, 3.5], [-2.5, -3.5], [1.0, 0.5]])  # x.T @ dy
    _eq(gr[1], [0.5, 2.5])  # column sums of dy
    _eq(dx, [[0, 2, 5], [-1.5, 0.5, -1.75]])  # dy @ w.T


def test_dense_without_bias_backward_writes_kernel_and_input_gradients():
    fwd, bwd, _, dx, gr = _dense(bias=False, backward=True)
    assert len(gr) == 1
    fwd()
    bwd()
    _eq(gr[0], [[-0.5, 3.5], [-2.5, -3.5], [1.0, 0.5]])
    _eq(dx, [[0, 2, 5], [-1.5, 0.5, -1.75]])


# --- pooling ---------------------------------------------------------------------------------------


def _pool(kind: str, pool: int, stride: int, x, Lo: int, dy=None):
    """1-D pooling over time of ``x`` given as (L, C) for one sample (B=1, W=1)."""
    xa = np.array(x, F32)
    L, C = xa.shape
    layer = Layer("maxpool1d" if kind == "maxpool" else "avgpool1d", "p", pool=pool, stride=stride)
    x4 = xa.reshape(1, L, 1, C)
    y = _buf((1, Lo, 1, C))
    dx = _buf((1, L, 1, C)) if dy is not None else None
    dy4 = _a(dy, (1, Lo, 1, C)) if dy is not None else None
    fwd, bwd = bind_pool(_rl(kind, layer), x4, y, dx, dy4)
    return fwd, bwd, y, dx


def test_avgpool_tiled_forward_and_backward_zero_the_uncovered_tail():
    # pool = stride = 2 over L=5: windows [0,1], [2,3]; row 4 is in no window
    x = [[1, -2], [3, 4], [-1, 0], [6, 2], [7, 7]]
    fwd, bwd, y, dx = _pool("avgpool", 2, 0, x, 2, dy=[[1, -2], [4, 0.5]])
    fwd()
    _eq(y, [[2, 1], [2.5, 1]])
    bwd()
    _eq(dx, [[0.5, -1], [0.5, -1], [2, 0.25], [2, 0.25], [0, 0]])


def test_avgpool_forward_only_averages_windows():
    fwd, bwd, y, _ = _pool("avgpool", 2, 0, [[1, -2], [3, 4], [-1, 0], [6, 2]], 2)
    assert bwd is None
    fwd()
    _eq(y, [[2, 1], [2.5, 1]])


def test_avgpool_overlapping_windows_accumulate_the_gradient():
    # pool 3, stride 2 over L=7: windows [0..2], [2..4], [4..6]; rows 2 and 4 are shared
    x = [[1], [2], [3], [4], [5], [6], [7]]
    fwd, bwd, y, dx = _pool("avgpool", 3, 2, x, 3, dy=[[3], [6], [-3]])
    fwd()
    _eq(y, [[2], [4], [6]])
    bwd()
    # dy / 3 = (1, 2, -1) spread over each window
    _eq(dx, [[1], [1], [3], [2], [1], [-1], [-1]])


def test_avgpool_stride_one_windows():
    fwd, bwd, y, dx = _pool("avgpool", 2, 1, [[1], [3], [5], [9]], 3, dy=[[2], [4], [6]])
    fwd()
    _eq(y, [[2], [4], [7]])
    bwd()
    _eq(dx, [[1], [3], [5], [3]])


def test_avgpool_stride_larger_than_pool_skips_rows():
    # pool 2, stride 3 over L=8: windows [0,1], [3,4], [6,7]; rows 2 and 5 are skipped
    x = [[2], [4], [100], [1], [3], [100], [-2], [0]]
    fwd, bwd, y, dx = _pool("avgpool", 2, 3, x, 3, dy=[[2], [4], [-6]])
    fwd()
    _eq(y, [[3], [2], [-1]])
    bwd()
    _eq(dx, [[1], [1], [0], [2], [2], [0], [-3], [-3]])


def test_pool_of_size_one_copies_the_input():
    fwd, _, y, _ = _pool("avgpool", 1, 0, [[1.5, -2], [3, 0.25]], 2)
    fwd()
    _eq(y, [[1.5, -2], [3, 0.25]])
    fwd, _, y, _ = _pool("maxpool", 1, 0, [[1.5, -2], [3, 0.25]], 2)
    fwd()
    _eq(y, [[1.5, -2], [3, 0.25]])


def test_maxpool_tiled_routes_the_gradient_to_the_first_maximum():
    # windows [0,1], [2,3]; channel 1 has a tie in window 0 (5, 5): the first one wins, like TF
    x = [[1, 5], [3, 5], [-1, -4], [-2, -3], [9, 9]]
    fwd, bwd, y, dx = _pool("maxpool", 2, 0, x, 2, dy=[[1, 2], [3, 4]])
    fwd()
    _eq(y, [[3, 5], [-1, -3]])
    bwd()
    _eq(dx, [[0, 2], [1, 0], [3, 0], [0, 4], [0, 0]])


def test_maxpool_forward_only():
    fwd, bwd, y, _ = _pool("maxpool", 3, 2, [[1], [0], [5], [2], [3], [3], [1]], 3)
    assert bwd is None
    fwd()
    _eq(y, [[5], [5], [3]])


def test_maxpool_overlapping_windows_accumulate_on_a_shared_maximum():
    # pool 3, stride 2: windows [1,0,5], [5,2,3], [3,3,1]; row 2 is the max of two windows, the tie
    # in the last window goes to the first (row 4)
    x = [[1], [0], [5], [2], [3], [3], [1]]
    fwd, bwd, y, dx = _pool("maxpool", 3, 2, x, 3, dy=[[1], [2], [4]])
    fwd()
    _eq(y, [[5], [5], [3]])
    bwd()
    _eq(dx, [[0], [0], [3], [0], [4], [0], [0]])


def test_maxpool_stride_larger_than_pool():
    x = [[1], [4], [100], [7], [2], [100], [-5], [-6]]
    fwd, bwd, y, dx = _pool("maxpool", 2, 3, x, 3, dy=[[1], [2], [3]])
    fwd()
    _eq(y, [[4], [7], [-5]])
    bwd()
    _eq(dx, [[0], [1], [0], [2], [0], [0], [3], [0]])


def test_maxpool_stride_one_accumulates_on_a_repeated_maximum():
    # pool 2, stride 1 over L=4: windows [1,3], [3,2], [2,0]; row 1 is the max of the first two
    fwd, bwd, y, dx = _pool("maxpool", 2, 1, [[1], [3], [2], [0]], 3, dy=[[1], [2], [4]])
    fwd()
    _eq(y, [[3], [3], [2]])
    bwd()
    _eq(dx, [[0], [3], [4], [0]])


def test_maxpool_2d_pools_each_axis_column_separately():
    # (L=4, W=2, C=1), pool 2: column w0 = [1, 3, 8, 2], column w1 = [6, 5, 0, 7]
    layer = Layer("maxpool2d", "p", pool=2)
    x = _a([[1, 6], [3, 5], [8, 0], [2, 7]], (1, 4, 2, 1))
    y, dx = _buf((1, 2, 2, 1)), _buf((1, 4, 2, 1))
    dy = _a([[10, 20], [30, 40]], (1, 2, 2, 1))
    fwd, bwd = bind_pool(_rl("maxpool", layer), x, y, dx, dy)
    fwd()
    _eq(y, [[3, 6], [8, 7]])
    bwd()
    _eq(dx, [[0, 20], [10, 0], [30, 0], [0, 40]])


# --- global pooling --------------------------------------------------------------------------------


def test_global_average_pooling_forward_and_backward():
    layer = Layer("gap1d", "g")
    x = _a([[1, -3], [2, 6], [6, 0]], (1, 3, 1, 2))
    y, dx = _buf((1, 2)), _buf((1, 3, 1, 2))
    fwd, bwd = bind_global(_rl("gap", layer), x, y, dx, _a([[3, -6]]))
    fwd()
    _eq(y, [[3, 1]])
    bwd()
    _eq(dx, [[1, -2], [1, -2], [1, -2]])


def test_global_average_pooling_2d_averages_over_time_and_axis_columns():
    layer = Layer("gap2d", "g")
    x = _a([[1, 2], [3, 6]], (1, 2, 2, 1))
    y = _buf((1, 1))
    fwd, bwd = bind_global(_rl("gap", layer), x, y, None, None)
    assert bwd is None
    fwd()
    _eq(y, [[3]])


def test_global_max_pooling_forward_only():
    layer = Layer("gmp2d", "g")
    x = _a([[[1, 7], [4, 2]], [[4, 7], [-1, 0]]], (1, 2, 2, 2))
    y = _buf((1, 2))
    fwd, bwd = bind_global(_rl("gmp", layer), x, y, None, None)
    assert bwd is None
    fwd()
    _eq(y, [[4, 7]])


def test_global_max_pooling_routes_the_gradient_to_the_first_maximum():
    # (L=2, W=2, C=2) scanned (l0w0, l0w1, l1w0, l1w1): c0 = [1, 4, 4, -1] -> first max at l0w1;
    # c1 = [7, 2, 7, 0] -> first max at l0w0
    layer = Layer("gmp2d", "g")
    x = _a([[[1, 7], [4, 2]], [[4, 7], [-1, 0]]], (1, 2, 2, 2))
    y, dx = _buf((1, 2)), _buf((1, 2, 2, 2))
    fwd, bwd = bind_global(_rl("gmp", layer), x, y, dx, _a([[2, -3]]))
    fwd()
    _eq(y, [[4, 7]])
    bwd()
    _eq(dx, [[[0, -3], [2, 0]], [[0, 0], [0, 0]]])


# --- batch normalisation (frozen statistics) -------------------------------------------------------
# epsilon 0.25 and var (3.75, 0.75): 1/sqrt(var + eps) = (0.5, 1); s = gamma * inv = (1, -1);
# t = beta - mean * s = (0.5 - 1, 1 - 2) = (-0.5, -1)
BN_P = [[2, -1], [0.5, 1], [1, -2], [3.75, 0.75]]  # gamma, beta, moving mean, moving variance
BN_X = [[[3, 1], [-1, 2]], [[0, -4], [5, 0.5]]]  # (B=2, L=2, C=2)
BN_DY = [[[1, 2], [-1, 0.5]], [[2, -1], [0.5, 3]]]


def _bn(dx: bool, dy: bool, grads: bool):
    layer = Layer("batchnorm", "bn", epsilon=0.25)
    x, y = _a(BN_X, (2, 2, 1, 2)), _buf((2, 2, 1, 2))
    dxb = _buf((2, 2, 1, 2)) if dx else None
    dyb = _a(BN_DY, (2, 2, 1, 2)) if dy else None
    gr = [_buf(2), _buf(2)] if grads else None
    fwd, bwd = bind_bn(_rl("bn", layer), x, y, dxb, dyb, [_a(p) for p in BN_P], gr)
    return fwd, bwd, y, dxb, gr


BN_Y = [[[2.5, -2], [-1.5, -3]], [[-0.5, 3], [4.5, -1.5]]]  # x * s + t


def test_batchnorm_forward_is_x_times_scale_plus_shift():
    fwd, bwd, y, _, _ = _bn(dx=False, dy=False, grads=False)
    assert bwd is None
    fwd()
    _eq(y, BN_Y)


def test_batchnorm_backward_gamma_beta_and_input_gradients():
    fwd, bwd, y, dx, gr = _bn(dx=True, dy=True, grads=True)
    fwd()
    _eq(y, BN_Y)
    bwd()
    # xhat = (x - mean) * inv: c0 = (1, -1, -0.5, 2), c1 = (3, 4, -2, 2.5)
    # dgamma = sum xhat * dy = (1 + 1 - 1 + 1, 6 + 2 + 2 + 7.5); dbeta = sum dy
    _eq(gr[0], [2, 17.5])
    _eq(gr[1], [2.5, 4.5])
    _eq(dx, [[[1, -2], [-1, -0.5]], [[2, 1], [0.5, -3]]])  # dy * s


def test_batchnorm_trained_first_layer_writes_only_gamma_beta_gradients():
    fwd, bwd, _, _, gr = _bn(dx=False, dy=True, grads=True)
    fwd()
    bwd()
    _eq(gr[0], [2, 17.5])
    _eq(gr[1], [2.5, 4.5])


def test_frozen_batchnorm_backward_writes_only_the_input_gradient():
    fwd, bwd, _, dx, _ = _bn(dx=True, dy=True, grads=False)
    fwd()
    bwd()
    _eq(dx, [[[1, -2], [-1, -0.5]], [[2, 1], [0.5, -3]]])


def test_batchnorm_rounds_like_the_firmware_in_float32():
    """inv = 1/sqrtf(var + eps), s = gamma*inv, t = beta - mean*s, y = x*s + t, each step rounded to
    float32 (default epsilon 1e-3): the exact float32 results, not the float64 ones."""
    layer = Layer("batchnorm", "bn")
    x = _a([-0.9, -2.0, 0.6], (1, 3, 1, 1))
    y = _buf((1, 3, 1, 1))
    fwd, _ = bind_bn(_rl("bn", layer), x, y, None, None, [_a([v]) for v in (1.78, 0.72, 0.75, 1.47)], None)
    fwd()
    _eq(y, [-1.7015733, -3.3159554, 0.499857])


# --- softmax + cross-entropy -----------------------------------------------------------------------


def _softmax(x, t, with_dx: bool, scale: float = 1.0):
    xa, ta = _a(x), _a(t)
    B, N = xa.shape
    y, losses = _buf((B, N)), _buf(B)
    dx = _buf((B, N)) if with_dx else None
    fwd, bwd = bind_softmax_ce(xa, y, dx, ta, _a([scale]), losses)
    return fwd, bwd, y, dx, losses


def test_softmax_cross_entropy_probabilities_and_loss():
    # row 0: logits (1, 2, 3), target class 0 (not the arg-max): loss = log(1 + e^-1 + e^-2) + 2
    # row 1: logits (0, 0, 0), target class 2: p = 1/3, loss = log 3
    fwd, bwd, y, _, losses = _softmax([[1, 2, 3], [0, 0, 0]], [[1, 0, 0], [0, 0, 1]], with_dx=False)
    assert bwd is None
    fwd()
    z = 1 + math.exp(-1) + math.exp(-2)
    np.testing.assert_allclose(y, [[math.exp(-2) / z, math.exp(-1) / z, 1 / z], [1 / 3] * 3], rtol=1e-6)
    np.testing.assert_allclose(losses, [math.log(z) + 2, math.log(3)], rtol=1e-6)


def test_softmax_cross_entropy_backward_is_p_minus_t_times_scale():
    fwd, bwd, _, dx, _ = _softmax([[0, 0], [0, 0]], [[1, 0], [0, 1]], with_dx=True, scale=0.25)
    fwd()
    bwd()
    _eq(dx, [[-0.125, 0.125], [0.125, -0.125]])  # (0.5 - 1) * 0.25, ...


def test_saturated_softmax_in_float32_gives_probability_one_and_zero_loss():
    """exp(-17) = 4.1e-8 is below half an ulp of 1.0f: in float32 the sum of exponentials is exactly 1,
    so p = 1.0 and the loss is exactly 0.0 (the firmware's numbers)."""
    fwd, _, y, _, losses = _softmax([[17, 0]], [[1, 0]], with_dx=False)
    fwd()
    assert y[0, 0] == 1.0 and losses[0] == 0.0
    assert y[0, 1] == pytest.approx(math.exp(-17), rel=1e-6)


def test_soft_target_loss_is_accumulated_in_float32():
    """Probability (label-smoothed) targets: sum_j t_j z_j is computed in float32 like the firmware."""
    fwd, _, _, _, losses = _softmax([[-2.9, 1.9, 2.5]], [[0.2, 0.3, 0.5]], with_dx=False)
    fwd()
    # the same steps, each rounded to float32 (exp and log are this machine's float32 ones, which may differ from
    # another CPU's by an ulp: so the expected value is computed here, not written as a literal); here 1.7003999,
    # where a float64 sum_j t_j z_j would give 1.7004
    z = [F32(v) - F32(2.5) for v in (-2.9, 1.9, 2.5)]
    log_sum = np.log(np.add.reduce(np.exp(np.array(z, F32))))
    tz = F32(F32(F32(0.2) * z[0]) + F32(F32(0.3) * z[1])) + F32(F32(0.5) * z[2])
    _eq(losses, [F32(log_sum - tz)])
