"""Exact, hand-worked checks of the reference training engine (device/engine/...): the numbers the ODL
firmware must reproduce byte for byte.

This file covers ``device/engine/weights.py`` (initialisation, validation, BatchNorm folding/unfolding)
and ``device/engine/metrics.py`` (accuracy, confusion matrix, per-class and macro F1)."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest

from device.engine.metrics import accuracy, confusion_matrix, macro_f1, per_class_f1
from device.engine.weights import check_weights, fold_conv_bn, glorot_init, unfold_conv_bn
from estimator.arch import Arch, Layer, paper_cnn

F32 = np.float32
EPS = 1e-3  # Layer's default BatchNorm epsilon
BN = Layer("batchnorm", "bn")


def tiny_arch() -> Arch:
    """conv (kernel (2, 2, 3) + bias) -> BN (epsilon 0.5) -> relu -> gap -> dense without bias (3, 2)."""
    return Arch(
        (6, 2),
        (
            Layer("conv1d", "conv", filters=3, kernel=2),
            Layer("batchnorm", "bn", epsilon=0.5),
            Layer("relu", "relu"),
            Layer("gap1d", "gap"),
            Layer("dense", "out", units=2, use_bias=False),
            Layer("softmax", "sm"),
        ),
        name="tiny",
    )


def tiny_weights() -> dict[str, list[np.ndarray]]:
    return {
        "conv": [np.arange(12, dtype=np.float64).reshape(2, 2, 3) / 8, np.array([0.5, -0.25, 1.0])],
        "bn": [np.ones(3), np.zeros(3), np.zeros(3), np.ones(3)],
        "out": [np.array([[1.0, -1.0], [0.5, 2.0], [-0.75, 0.25]])],
    }


def raises_exactly(message: str):
    return pytest.raises(ValueError, match="^" + re.escape(message) + "$")


# --- glorot_init ---------------------------------------------------------------------------------


def test_glorot_kernels_span_the_keras_glorot_uniform_limit_of_each_layer():
    """limit = sqrt(6 / (fan_in + fan_out)), fans counting the kernel's receptive field (K)."""
    w = glorot_init(paper_cnn(20), seed=0)
    limits = {
        "conv1": math.sqrt(6 / (3 * 3 + 3 * 32)),  # kernel (3, 3, 32)
        "conv2": math.sqrt(6 / (3 * 32 + 3 * 64)),  # kernel (3, 32, 64)
        "dense1": math.sqrt(6 / (64 + 50)),  # kernel (64, 50)
        "dense2": math.sqrt(6 / (50 + 6)),  # kernel (50, 6)
    }
    assert list(w) == ["conv1", "conv2", "dense1", "dense2"]
    for name, limit in limits.items():
        peak = float(np.abs(w[name][0]).max())
        assert 0.95 * limit < peak <= limit * (1 + 1e-7), name


def test_glorot_conv2d_counts_the_kernel_length_and_a_dense_without_bias_has_one_array():
    a = Arch(
        (24, 3, 1),
        (
            Layer("conv2d", "c", filters=8, kernel=5),
            Layer("gap2d", "g"),
            Layer("dense", "d", units=3, use_bias=False),
            Layer("softmax", "sm"),
        ),
    )
    w = glorot_init(a, seed=7)
    assert [x.shape for x in w["c"]] == [(5, 1, 1, 8), (8,)]
    assert [x.shape for x in w["d"]] == [(8, 3)]
    c_limit = math.sqrt(6 / (5 * 1 + 5 * 8))  # receptive field 5*1: fan_in 5, fan_out 40
    d_limit = math.sqrt(6 / (8 + 3))
    assert 0.95 * c_limit < float(np.abs(w["c"][0]).max()) <= c_limit * (1 + 1e-7)
    assert 0.9 * d_limit < float(np.abs(w["d"][0]).max()) <= d_limit * (1 + 1e-7)


def test_glorot_init_gives_float32_zero_biases_and_identity_batchnorm():
    w = glorot_init(tiny_arch(), seed=1)
    assert [[x.dtype for x in arrs] for arrs in w.values()] == [[F32, F32], [F32] * 4, [F32]]
    assert w["conv"][1].tolist() == [0.0, 0.0, 0.0]
    assert [x.tolist() for x in w["bn"]] == [[1.0] * 3, [0.0] * 3, [0.0] * 3, [1.0] * 3]


def test_glorot_init_defaults_to_seed_0_and_is_reproducible_per_seed():
    a = paper_cnn(20)
    default, seed0, again0, seed1 = glorot_init(a), glorot_init(a, 0), glorot_init(a, 0), glorot_init(a, 1)
    for name in a.param_shapes():
        np.testing.assert_array_equal(default[name][0], seed0[name][0])
        np.testing.assert_array_equal(again0[name][0], seed0[name][0])
        assert not np.array_equal(seed1[name][0], seed0[name][0])


# --- check_weights -------------------------------------------------------------------------------


def test_check_weights_returns_float32_c_contiguous_copies():
    src = tiny_weights()
    src["out"][0] = np.asfortranarray(src["out"][0])
    out = check_weights(tiny_arch(), src)
    assert list(out) == ["conv", "bn", "out"]
    for arrs in out.values():
        assert all(a.dtype == F32 and a.flags["C_CONTIGUOUS"] for a in arrs)
    assert out["out"][0].tolist() == [[1.0, -1.0], [0.5, 2.0], [-0.75, 0.25]]
    assert out["conv"][1].tolist() == [0.5, -0.25, 1.0]
    f32_in = [np.ones(3, F32), np.zeros(3, F32), np.zeros(3, F32), np.ones(3, F32)]
    out2 = check_weights(tiny_arch(), {**src, "bn": f32_in})
    f32_in[0][0] = 7.0  # the caller's arrays stay theirs
    assert out2["bn"][0].tolist() == [1.0, 1.0, 1.0]


def test_check_weights_rejects_a_non_dict_naming_its_type():
    with raises_exactly("weights must be a dict of layer name -> list of arrays, got list"):
        check_weights(tiny_arch(), [np.zeros(1)])  # type: ignore[arg-type]


def test_check_weights_names_a_missing_layer_and_its_shapes():
    w = tiny_weights()
    del w["bn"]
    with raises_exactly("layer 'bn': weights missing (expected arrays of shapes [(3,), (3,), (3,), (3,)])"):
        check_weights(tiny_arch(), w)


def test_check_weights_names_a_wrong_array_count():
    w = {**tiny_weights(), "out": [np.zeros((3, 2)), np.zeros(2)]}  # 'out' has no bias
    with raises_exactly("layer 'out': expected 1 arrays of shapes [(3, 2)], got 2"):
        check_weights(tiny_arch(), w)


def test_check_weights_rejects_non_numeric_arrays():
    w = tiny_weights()
    w["conv"][0] = np.ones((2, 2, 3), dtype=bool)
    with raises_exactly("layer 'conv': array 0 is not numeric (dtype bool)"):
        check_weights(tiny_arch(), w)


def test_check_weights_rejects_nan_and_infinity():
    w = tiny_weights()
    w["conv"][1] = np.array([0.0, np.inf, 0.0])
    with raises_exactly("layer 'conv': array 1 contains NaN or infinity"):
        check_weights(tiny_arch(), w)


def test_check_weights_needs_moving_variance_plus_epsilon_above_zero():
    """tiny_arch's BN has epsilon 0.5: var -0.25 is accepted (sum 0.25), var -0.5 (sum exactly 0) is not."""
    w = tiny_weights()
    w["bn"][3] = np.array([1.0, -0.25, 2.0])
    assert check_weights(tiny_arch(), w)["bn"][3].tolist() == [1.0, -0.25, 2.0]
    w["bn"][3] = np.array([1.0, -0.5, 2.0])
    with raises_exactly("layer 'bn': moving variance + epsilon must be > 0"):
        check_weights(tiny_arch(), w)


# --- BatchNorm folding ---------------------------------------------------------------------------

# Two channels: gamma (2, 1.25), beta (0.125, -0.25), mean (0.5, -1), var (3, 0.25), epsilon 1e-3, so
# s = (2/sqrt(3.001), 1.25/sqrt(0.251)).  The values are float32-exact; s must be computed in float64
# (computing it in float32 changes the last bits of every result below).
PARAMS = [
    np.array([2.0, 1.25], F32),
    np.array([0.125, -0.25], F32),
    np.array([0.5, -1.0], F32),
    np.array([3.0, 0.25], F32),
]
S0, S1 = 2 / math.sqrt(3.001), 1.25 / math.sqrt(0.251)
K2D = np.array([[1.0, -2.0], [0.5, 4.0]], F32)
BIAS = np.array([0.25, -1.0], F32)


def test_fold_conv_bn_scales_the_kernel_and_shifts_the_bias_in_float64():
    wf, bf = fold_conv_bn(K2D, BIAS, BN, PARAMS)
    assert wf.dtype == F32 and bf.dtype == F32
    expected_w = [[1.0 * S0, -2.0 * S1], [0.5 * S0, 4.0 * S1]]
    expected_b = [(0.25 - 0.5) * S0 + 0.125, (-1.0 + 1.0) * S1 - 0.25]  # (b - mean)*s + beta
    np.testing.assert_array_equal(wf, np.array(expected_w, F32))
    np.testing.assert_array_equal(bf, np.array(expected_b, F32))


def test_fold_conv_bn_without_conv_bias_uses_zero():
    _, bf = fold_conv_bn(K2D, None, BN, PARAMS)
    np.testing.assert_array_equal(bf, np.array([-0.5 * S0 + 0.125, 1.0 * S1 - 0.25], F32))


def test_unfold_conv_bn_with_bias_divides_back_and_keeps_the_batchnorm():
    w, b, p = unfold_conv_bn(K2D, BIAS, True, BN, PARAMS)
    assert b is not None
    assert [a.dtype for a in (w, b, *p)] == [F32] * 6
    np.testing.assert_array_equal(w, np.array([[1.0 / S0, -2.0 / S1], [0.5 / S0, 4.0 / S1]], F32))
    # b = (b_f - beta)/s + mean
    np.testing.assert_array_equal(b, np.array([(0.25 - 0.125) / S0 + 0.5, (-1.0 + 0.25) / S1 - 1.0], F32))
    assert [a.tolist() for a in p] == [[2.0, 1.25], [0.125, -0.25], [0.5, -1.0], [3.0, 0.25]]


def test_unfold_conv_bn_without_bias_moves_the_shift_into_beta():
    w, b, p = unfold_conv_bn(K2D, BIAS, False, BN, PARAMS)
    assert b is None
    assert [a.dtype for a in (w, *p)] == [F32] * 5
    np.testing.assert_array_equal(w, np.array([[1.0 / S0, -2.0 / S1], [0.5 / S0, 4.0 / S1]], F32))
    np.testing.assert_array_equal(p[1], np.array([0.25 + S0 * 0.5, -1.0 + S1 * -1.0], F32))  # b_f + s*mean
    assert [p[0].tolist(), p[2].tolist(), p[3].tolist()] == [[2.0, 1.25], [0.5, -1.0], [3.0, 0.25]]


def test_unfold_conv_bn_gives_a_dead_channel_identity_statistics():
    """Channel 1 has gamma 0 (s = 0): gamma 1, mean 0, var 1 - eps there, so s = 1 and W = W_f."""
    params = [np.array([2.0, 0.0]), np.array([0.125, 0.75]), np.array([0.5, 3.0]), np.array([3.0, 2.0])]
    wf = np.array([[1.0, 0.5], [-2.0, 1.5]], F32)
    bf = np.array([0.25, -1.0], F32)
    w, b, p = unfold_conv_bn(wf, bf, True, BN, params)
    np.testing.assert_array_equal(w, np.array([[1.0 / S0, 0.5], [-2.0 / S0, 1.5]], F32))
    np.testing.assert_array_equal(b, np.array([(0.25 - 0.125) / S0 + 0.5, -1.0 - 0.75], F32))
    assert [a.tolist() for a in p[:3]] == [[2.0, 1.0], [0.125, 0.75], [0.5, 0.0]]
    np.testing.assert_array_equal(p[3], np.array([3.0, 0.999], F32))
    w, b, p = unfold_conv_bn(wf, bf, False, BN, params)
    assert b is None
    np.testing.assert_array_equal(w, np.array([[1.0 / S0, 0.5], [-2.0 / S0, 1.5]], F32))
    np.testing.assert_array_equal(p[1], np.array([0.25 + S0 * 0.5, -1.0], F32))  # dead channel: beta = b_f
    assert [p[0].tolist(), p[2].tolist()] == [[2.0, 1.0], [0.5, 0.0]]
    np.testing.assert_array_equal(p[3], np.array([3.0, 0.999], F32))


def test_unfold_conv_bn_divides_back_a_scale_of_exactly_1e_12():
    """Only |s| < 1e-12 is degenerate: gamma 1e-12 with var + eps = 1 (s = 1e-12) is still divided."""
    params = [np.array([1e-12]), np.array([0.0]), np.array([2.0]), np.array([0.999])]
    w, b, p = unfold_conv_bn(np.array([[3e-12]]), np.array([0.0]), True, BN, params)
    assert w.tolist() == [[3.0]]
    assert b is not None and b.tolist() == [2.0]
    assert p[2].tolist() == [2.0]  # statistics kept


# --- metrics: label parsing ----------------------------------------------------------------------


def test_float_labels_with_integral_values_count_as_class_indices():
    yt = np.array([0.0, 2.0, 1.0, 2.0])
    yp = np.array([0, 2, 2, 2], dtype=np.float32)
    assert accuracy(yt, yp) == 0.75
    assert confusion_matrix(yt, yp).tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 2]]


def test_non_integral_or_nan_labels_are_rejected_naming_the_argument():
    with raises_exactly("y_true must contain integer class indices"):
        accuracy(np.array([0.0, 1.5]), np.array([0, 1]))
    with raises_exactly("y_pred must contain integer class indices"):
        accuracy(np.array([0, 1]), np.array([0.0, np.nan]))


def test_labels_of_rank_3_are_rejected_with_their_shape():
    with raises_exactly("y_pred must be 1-D class indices or 2-D one-hot/probabilities, got shape (2, 1, 2)"):
        accuracy(np.array([0, 1]), np.zeros((2, 1, 2)))


def test_negative_labels_are_rejected_with_the_smallest_index():
    with raises_exactly("y_true contains a negative class index (-3)"):
        accuracy(np.array([0, -1, -3]), np.array([0, 1, 1]))
    with raises_exactly("y_pred contains a negative class index (-2)"):
        accuracy(np.array([0, 1]), np.array([-2, 1]))


def test_empty_labels_of_object_dtype_give_nan_accuracy():
    """An empty column of object dtype (e.g. an empty pandas Series) is just an empty label list."""
    empty = np.array([], dtype=object)
    assert math.isnan(accuracy(empty, empty))


def test_empty_input_gives_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(accuracy(np.array([], int), np.array([], int)))
        assert math.isnan(macro_f1(np.array([], int), np.array([], int)))
        assert math.isnan(macro_f1(np.array([], int), np.array([], int), labels=[0, 1]))


# --- metrics: confusion matrix and F1 ------------------------------------------------------------


def test_confusion_matrix_size_defaults_to_the_largest_class_seen():
    assert confusion_matrix(np.array([0, 0]), np.array([0, 0])).tolist() == [[2]]
    cm = confusion_matrix(np.array([1, 0]), np.array([0, 0]))
    assert cm.tolist() == [[1, 0], [1, 0]] and cm.dtype == np.int64
    empty = confusion_matrix(np.array([], int), np.array([], int))
    assert empty.shape == (0, 0) and empty.dtype == np.int64


def test_confusion_matrix_counts_are_int64_with_explicit_n_classes():
    cm = confusion_matrix(np.array([0, 1, 1]), np.array([1, 1, 0]), 3)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[0, 1, 0], [1, 1, 0], [0, 0, 0]]


def test_confusion_matrix_rejects_a_class_index_equal_to_n_classes():
    with raises_exactly("class index 3 >= n_classes=3"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with raises_exactly("class index 5 >= n_classes=3"):
        confusion_matrix(np.array([0, 1]), np.array([0, 5]), 3)


def test_per_class_f1_of_an_absent_class_is_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f1 = per_class_f1(np.array([0, 1, 1]), np.array([0, 1, 0]), 3)
    # class 0: tp 1, fp 1, fn 0 -> 2/3; class 1: tp 1, fp 0, fn 1 -> 2/3; class 2: absent -> 0
    np.testing.assert_allclose(f1, [2 / 3, 2 / 3, 0.0], rtol=1e-15)


def test_macro_f1_checks_labels_against_n_classes():
    with raises_exactly("class index 5 >= n_classes=3"):
        macro_f1(np.array([0, 1, 5]), np.array([0, 1, 5]), n_classes=3)


def test_macro_f1_over_a_subset_of_the_present_classes():
    """labels [0, 1] while class 2 occurs: F1 of classes 0 (2/3) and 1 (1.0) only."""
    yt, yp = np.array([0, 1, 2, 2]), np.array([0, 1, 0, 2])
    assert macro_f1(yt, yp, labels=[0, 1]) == pytest.approx((2 / 3 + 1.0) / 2, rel=1e-15)
    assert macro_f1(yt, yp, labels=[0, 1], n_classes=3) == pytest.approx((2 / 3 + 1.0) / 2, rel=1e-15)


def test_macro_f1_accepts_labels_given_as_floats():
    yt, yp = np.array([0, 1, 2, 2]), np.array([0, 1, 0, 2])
    # F1: class 0 2/3, class 1 1.0, class 2 2/3, class 3 (absent) 0
    assert macro_f1(yt, yp, labels=np.array([0.0, 1.0, 3.0])) == pytest.approx((2 / 3 + 1.0) / 3, rel=1e-15)
