"""Exact, hand-worked checks of the reference training engine (device/engine/...): the numbers the ODL
firmware must reproduce byte for byte.

This file covers the lowering of an architecture into the runtime graph (device/engine/graph.py: BN
folding, shapes, flags, the errors naming an unsupported layer) and the operation counts the cost
estimator is fitted on (device/engine/ops.py), on a small model whose every count is worked out by
hand below.
"""

from __future__ import annotations

import re

import pytest

from device.engine import graph as graph_mod
from device.engine.graph import RLayer, lower, normalize_trainable
from device.engine.ops import add_ops, batch_ops, count_ops, layer_ops, ops_breakdown, sample_ops, zero_ops
from estimator.arch import Arch, ArchError, Layer

# --- a small model whose counts are worked out by hand ----------------------------------------------
#
# input (6, 2) -> canonical (6, 1, 2)
#   conv    conv1d F=3 K=2   (6,2) -> (5,3)   MACs L_out*W*F*C*K = 5*1*3*2*2 = 60, dX MACs 6*1*2*3*2 = 72
#   bn      batchnorm        (5,3)            15 elements (folded into conv with bn='fold')
#   relu    relu             (5,3)            15 elements
#   pool    maxpool1d p=2    (5,3) -> (2,3)   (5-2)//2+1 = 2; work = pool * n_out = 2*6 = 12
#   flat    flatten          (2,3) -> (6,)
#   dense   dense U=4        (6,) -> (4,)     MACs 6*4 = 24, bias 4
#   softmax softmax          (4,)             4 elements
#
# trained parameters: conv (K*C, F) = (4, 3) -> 12 + bias 3 = 15; dense (6, 4) -> 24 + bias 4 = 28;
# affine BN gamma+beta 3+3 = 6.
#
# 'full', bn='fold' (runtime: conv relu pool flat dense softmax; first trainable = 0), per sample:
#   conv_fwd 60, conv_dw 60, conv_dx 0 (layer 0 computes no input gradient)
#   dense_fwd 24, dense_dw 24, dense_dx 24
#   elementwise: conv bias 15 + bias grad 15, relu 15+15, pool 12+12, dense bias 4+4, softmax 4+4 = 100
#   SGD update, once per batch: 15 + 28 = 43
# 'full', bn='affine' (runtime: conv bn relu pool flat dense softmax), per sample:
#   elementwise: conv 30, bn 15 + 2*15 (dgamma, dbeta) + 15 (dx) = 60, relu 30, pool 24, dense 8,
#   softmax 8 = 160; update 15 + 6 + 28 = 49
# forward only (bn='fold'): elementwise 15 + 15 + 12 + 4 + 4 = 50; (bn='affine'): 50 + 15 = 65


def small_arch() -> Arch:
    return Arch(
        (6, 2),
        (
            Layer("conv1d", "conv", filters=3, kernel=2),
            Layer("batchnorm", "bn"),
            Layer("relu", "relu"),
            Layer("maxpool1d", "pool", pool=2),
            Layer("flatten", "flat"),
            Layer("dense", "dense", units=4),
            Layer("softmax", "softmax"),
        ),
        name="small",
    )


def ops_of(**nonzero: int) -> dict[str, int]:
    """An op-count dict with the given non-zero entries and every other key 0."""
    return {**zero_ops(), **nonzero}


FOLD_FULL_SAMPLE = ops_of(conv_fwd=60, conv_dw=60, dense_fwd=24, dense_dw=24, dense_dx=24, elementwise=100)
FOLD_FORWARD_SAMPLE = ops_of(conv_fwd=60, dense_fwd=24, elementwise=50)


def raises_exactly(exc_type: type[Exception], message: str):
    return pytest.raises(exc_type, match="^" + re.escape(message) + "$")


# --- lowering: the runtime graph --------------------------------------------------------------------


def test_lower_defaults_to_folding_a_trained_conv_bn_pair_into_one_trained_conv():
    """Default bn mode is 'fold'; the BN after the first-layer conv disappears into it, the folded conv
    keeps its trainable flag and gains a bias; non-parameter layers have no bias; 1-D shapes are
    canonical (L, 1, C), flat shapes stay (N,)."""
    a = small_arch()
    g = lower(a, "full")
    assert g.bn_mode == "fold"
    assert g.trainable == frozenset({"conv", "bn", "dense"})
    assert g.first_trainable == 0
    assert g.layers == (
        RLayer(0, "conv", "conv", a.layers[0], (6, 1, 2), (5, 1, 3), True, use_bias=True, bn=a.layers[1]),
        RLayer(1, "relu", "relu", a.layers[2], (5, 1, 3), (5, 1, 3), False, use_bias=False),
        RLayer(2, "maxpool", "pool", a.layers[3], (5, 1, 3), (2, 1, 3), False, use_bias=False),
        RLayer(3, "flatten", "flat", a.layers[4], (2, 1, 3), (6,), False, use_bias=False),
        RLayer(4, "dense", "dense", a.layers[5], (6,), (4,), True, use_bias=True),
        RLayer(5, "softmax", "softmax", a.layers[6], (4,), (4,), False, use_bias=False),
    )
    assert g.n_trainable_params == 43


def test_lower_affine_keeps_batchnorm_as_a_trained_layer_without_bias_flag():
    """bn='affine': no folding, the BN is its own runtime layer (gamma/beta trained, no bias flag) and
    the graph records the mode."""
    a = small_arch()
    g = lower(a, "full", bn="affine")
    assert g.bn_mode == "affine"
    assert [l.kind for l in g.layers] == ["conv", "bn", "relu", "maxpool", "flatten", "dense", "softmax"]
    assert g.layers[0] == RLayer(0, "conv", "conv", a.layers[0], (6, 1, 2), (5, 1, 3), True, use_bias=True)
    assert g.layers[1] == RLayer(1, "bn", "bn", a.layers[1], (5, 1, 3), (5, 1, 3), True, use_bias=False)
    assert g.n_trainable_params == 49


def test_lower_folds_a_conv_bn_pair_that_is_not_the_second_runtime_layer():
    """The folded conv replaces itself in the runtime list wherever it is (here runtime index 2)."""
    a = Arch(
        (8, 2),
        (
            Layer("batchnorm", "bn0"),
            Layer("relu", "r0"),
            Layer("conv1d", "conv", filters=2, kernel=3),
            Layer("batchnorm", "bn1"),
            Layer("gap1d", "gap"),
            Layer("dense", "dense", units=2),
            Layer("softmax", "sm"),
        ),
    )
    g = lower(a, ["conv"])
    assert [(l.index, l.kind, l.name) for l in g.layers] == [
        (0, "bn", "bn0"),
        (1, "relu", "r0"),
        (2, "conv", "conv"),
        (3, "gap", "gap"),
        (4, "dense", "dense"),
        (5, "softmax", "sm"),
    ]
    assert g.layers[2].bn is a.layers[3] and g.layers[2].trainable is True
    assert g.layers[0].bn is None and g.layers[0].trainable is False
    assert g.first_trainable == 2


def test_trainable_given_as_a_set_is_accepted():
    """A set/frozenset of layer names is a valid trainable selection (resolved like a list)."""
    a = small_arch()
    assert normalize_trainable(a, {"dense", "conv"}) == frozenset({"conv", "dense"})
    assert normalize_trainable(a, frozenset({"dense"})) == frozenset({"dense"})
    assert normalize_trainable(a, None) == frozenset()
    g = lower(a, frozenset({"dense"}))
    assert g.trainable == frozenset({"dense"})
    assert g.first_trainable == 4
    assert [l.trainable for l in g.layers] == [False, False, False, False, True, False]


def test_lower_without_trainable_is_an_inference_graph():
    g = lower(small_arch())
    assert g.trainable == frozenset()
    assert g.first_trainable == 6 and g.training is False


def test_lower_rejects_an_unknown_bn_mode_with_the_allowed_values():
    with raises_exactly(ValueError, "bn must be one of ('fold', 'affine'), got 'fuse'"):
        lower(small_arch(), "full", bn="fuse")


# --- lowering: what the engine refuses, by name ------------------------------------------------------


def _arch(*layers: Layer, shape: tuple[int, ...] = (8, 2), name: str = "m") -> Arch:
    return Arch(shape, tuple(layers), name=name)


def test_a_model_without_layers_is_refused():
    with raises_exactly(ArchError, "'empty' has no layers"):
        lower(_arch(name="empty"))


def test_a_kind_the_engine_does_not_implement_is_refused_naming_the_layer(monkeypatch):
    """A layer kind the architecture format knows but the engine has no runtime kind for (simulated by
    removing gmp1d from the engine's table) is refused by name."""
    monkeypatch.delitem(graph_mod._RUNTIME_KIND, "gmp1d")
    a = _arch(Layer("gmp1d", "g"), Layer("dense", "d", units=2), Layer("softmax", "sm"))
    with raises_exactly(ArchError, "layer 'g': kind 'gmp1d' is not supported by the training engine"):
        lower(a)


def test_strided_conv2d_is_refused_but_stride_1_is_accepted():
    def conv2d_arch(stride: int) -> Arch:
        return _arch(
            Layer("conv2d", "c", filters=2, kernel=3, stride=stride),
            Layer("gap2d", "g"),
            Layer("dense", "d", units=2),
            Layer("softmax", "sm"),
            shape=(8, 3, 1),
        )

    with raises_exactly(ArchError, "layer 'c' (conv2d): only stride 1 is supported, got stride 2"):
        lower(conv2d_arch(2))
    assert lower(conv2d_arch(1)).layers[0].out_shape == (6, 3, 2)


def test_softmax_before_the_last_layer_is_refused_with_the_reason():
    a = _arch(Layer("gap1d", "g"), Layer("softmax", "sm"), Layer("dense", "d", units=2), Layer("softmax", "out"))
    with raises_exactly(
        ArchError,
        "layer 'sm': softmax is only supported as the last layer (it is fused with the cross-entropy loss)",
    ):
        lower(a)


def _dropout_arch(rate: float) -> Arch:
    return _arch(
        Layer("gap1d", "g"), Layer("dropout", "drop", rate=rate), Layer("dense", "d", units=2), Layer("softmax", "sm")
    )


@pytest.mark.parametrize("rate", [1.0, 1.5, -0.25])
def test_dropout_rate_outside_0_1_is_refused(rate):
    with raises_exactly(ArchError, f"layer 'drop': dropout rate {rate} is outside [0, 1)"):
        lower(_dropout_arch(rate))


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.99])
def test_dropout_rate_inside_0_1_is_accepted(rate):
    assert [l.kind for l in lower(_dropout_arch(rate)).layers] == ["gap", "dropout", "dense", "softmax"]


@pytest.mark.parametrize("eps", [0.0, -1e-3])
def test_batchnorm_epsilon_must_be_positive(eps):
    a = _arch(
        Layer("batchnorm", "bn", epsilon=eps), Layer("gap1d", "g"), Layer("dense", "d", units=2), Layer("softmax", "sm")
    )
    with raises_exactly(ArchError, f"layer 'bn': BatchNorm epsilon must be > 0, got {eps}"):
        lower(a)


def test_a_model_not_ending_with_softmax_is_refused_with_the_fix():
    a = _arch(Layer("gap1d", "g"), Layer("dense", "logits", units=2))
    with raises_exactly(
        ArchError,
        "layer 'logits' (dense): the engine needs the model to end with a softmax layer "
        "(split a fused Dense+softmax into Dense and softmax)",
    ):
        lower(a)


# --- operation counts -------------------------------------------------------------------------------


def test_add_ops_adds_a_partial_mapping_times_n_in_place():
    """Keys missing from ``other`` count as 0; the accumulator is updated in place and returned."""
    acc = ops_of(conv_fwd=1, elementwise=5)
    out = add_ops(acc, {"conv_fwd": 3, "dense_dx": 2}, 4)
    assert out is acc
    assert acc == ops_of(conv_fwd=13, dense_dx=8, elementwise=5)


def test_layer_ops_default_is_training_and_frozen_flag_means_forward_only():
    """layer_ops counts forward + backward by default; with training=False a trainable layer costs
    only its forward pass (no weight gradient)."""
    g = lower(small_arch(), "full")
    conv, dense = g.layers[0], g.layers[4]
    assert layer_ops(g, conv) == ops_of(conv_fwd=60, conv_dw=60, elementwise=30)
    assert layer_ops(g, conv, training=False) == ops_of(conv_fwd=60, elementwise=15)
    assert layer_ops(g, dense) == ops_of(dense_fwd=24, dense_dw=24, dense_dx=24, elementwise=8)
    assert layer_ops(g, dense, training=False) == ops_of(dense_fwd=24, elementwise=4)
    assert layer_ops(g, g.layers[2]) == ops_of(elementwise=24)  # maxpool: 12 forward + 12 backward


def test_affine_batchnorm_ops_forward_gamma_beta_and_input_gradient():
    """An affine BN after the first trainable layer: 15 forward + 30 dgamma/dbeta + 15 input gradient;
    frozen, it still passes the gradient on (15 + 15); forward only it costs 15."""
    a = small_arch()
    g = lower(a, "full", bn="affine")
    bn = g.layers[1]
    assert layer_ops(g, bn) == ops_of(elementwise=60)
    assert layer_ops(g, bn, training=False) == ops_of(elementwise=15)
    g2 = lower(a, ["conv", "dense"], bn="affine")
    assert layer_ops(g2, g2.layers[1]) == ops_of(elementwise=30)


def test_sample_ops_totals_per_sample():
    g = lower(small_arch(), "full")
    assert sample_ops(g) == FOLD_FULL_SAMPLE
    assert sample_ops(g, training=False) == FOLD_FORWARD_SAMPLE


def test_batch_ops_multiplies_per_sample_counts_and_adds_one_update():
    g = lower(small_arch(), "full")
    assert batch_ops(g, 2) == ops_of(conv_fwd=120, conv_dw=120, dense_fwd=48, dense_dw=48, dense_dx=48, elementwise=243)
    assert batch_ops(g, 1) == {**FOLD_FULL_SAMPLE, "elementwise": 143}


def test_batch_ops_forward_only_has_no_backward_and_no_update():
    g = lower(small_arch(), "full")
    assert batch_ops(g, 2, training=False) == ops_of(conv_fwd=120, dense_fwd=48, elementwise=100)


def test_an_empty_batch_costs_nothing():
    g = lower(small_arch(), "full")
    assert batch_ops(g, 0) == zero_ops()
    assert count_ops(small_arch(), "full", 0) == zero_ops()


def test_count_ops_defaults_to_full_training_of_one_sample_with_folding():
    assert count_ops(small_arch()) == {**FOLD_FULL_SAMPLE, "elementwise": 143}
    assert count_ops(small_arch(), "full", 3) == ops_of(
        conv_fwd=180, conv_dw=180, dense_fwd=72, dense_dw=72, dense_dx=72, elementwise=343
    )
    assert count_ops(small_arch(), "full", 3, include_update=False)["elementwise"] == 300


def test_count_ops_affine_counts_the_batchnorm_layer():
    assert count_ops(small_arch(), "full", bn="affine") == ops_of(
        conv_fwd=60, conv_dw=60, dense_fwd=24, dense_dw=24, dense_dx=24, elementwise=209
    )
    assert count_ops(small_arch(), "full", bn="affine", training=False) == ops_of(
        conv_fwd=60, dense_fwd=24, elementwise=65
    )


def test_count_ops_training_false_gives_forward_counts_of_a_trainable_selection():
    assert count_ops(small_arch(), "full", 2, training=False) == ops_of(conv_fwd=120, dense_fwd=48, elementwise=100)
    assert count_ops(small_arch(), None, 2) == ops_of(conv_fwd=120, dense_fwd=48, elementwise=100)


def test_count_ops_last_dense_only():
    """Training only the dense layer (runtime index 4): no conv gradient, no backward below the dense,
    the dense computes no input gradient; update = 28 dense parameters.
    elementwise: conv bias 15, relu 15, pool 12, dense 4+4, softmax 4+4 = 58 (+ 28 update)."""
    assert count_ops(small_arch(), "last") == ops_of(conv_fwd=60, dense_fwd=24, dense_dw=24, elementwise=86)


def test_ops_breakdown_defaults_to_full_training_per_runtime_layer():
    assert ops_breakdown(small_arch()) == [
        ("conv", ops_of(conv_fwd=60, conv_dw=60, elementwise=30)),
        ("relu", ops_of(elementwise=30)),
        ("pool", ops_of(elementwise=24)),
        ("flat", zero_ops()),
        ("dense", ops_of(dense_fwd=24, dense_dw=24, dense_dx=24, elementwise=8)),
        ("softmax", ops_of(elementwise=8)),
    ]


def test_ops_breakdown_affine_lists_the_batchnorm_layer():
    br = ops_breakdown(small_arch(), "full", bn="affine")
    assert [name for name, _ in br] == ["conv", "bn", "relu", "pool", "flat", "dense", "softmax"]
    assert br[1] == ("bn", ops_of(elementwise=60))
    assert br[3] == ("pool", ops_of(elementwise=24))


def test_ops_breakdown_inference_is_forward_only():
    assert ops_breakdown(small_arch(), None) == [
        ("conv", ops_of(conv_fwd=60, elementwise=15)),
        ("relu", ops_of(elementwise=15)),
        ("pool", ops_of(elementwise=12)),
        ("flat", zero_ops()),
        ("dense", ops_of(dense_fwd=24, elementwise=4)),
        ("softmax", ops_of(elementwise=4)),
    ]
