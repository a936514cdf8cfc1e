"""Training engine without TensorFlow: op counts (table3-analysis §1.1 closed forms), per-sample vs
vectorised equivalence, warm-up, the train() orchestrator, BatchNorm folding, metrics,
and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from device.engine import (
    Model,
    TrainConfig,
    accuracy,
    confusion_matrix,
    count_ops,
    evaluate,
    macro_f1,
    macs,
    ops_breakdown,
    per_class_f1,
    train,
)
from device.engine.weights import fold_conv_bn, unfold_conv_bn
from estimator.arch import OP_TYPES, Arch, ArchError, Layer, paper_cnn

# --- architectures shared with test_engine_tf ---------------------------------------------------


def ign_arch(wl: int = 24, n_classes: int = 4) -> Arch:
    """ST model-zoo IGN (st-modelzoo-har.md §1.2)."""
    return Arch(
        (wl, 3, 1),
        (
            Layer("conv2d", "conv", filters=24, kernel=16),
            Layer("relu", "relu"),
            Layer("maxpool2d", "pool", pool=3),
            Layer("flatten", "flatten"),
            Layer("dense", "dense1", units=12),
            Layer("dropout", "dropout", rate=0.5),
            Layer("dense", "dense2", units=n_classes),
            Layer("softmax", "softmax"),
        ),
        name=f"ign_wl{wl}",
    )


def gmp_arch(wl: int = 24, n_classes: int = 4) -> Arch:
    """ST model-zoo GMP (st-modelzoo-har.md §1.3)."""
    return Arch(
        (wl, 3, 1),
        (
            Layer("batchnorm", "bn0"),
            Layer("conv2d", "conv1", filters=16, kernel=5),
            Layer("batchnorm", "bn1"),
            Layer("conv2d", "conv2", filters=16, kernel=5),
            Layer("gmp2d", "gmp"),
            Layer("dropout", "dropout", rate=0.5),
            Layer("dense", "dense", units=n_classes),
            Layer("softmax", "softmax"),
        ),
        name=f"gmp_wl{wl}",
    )


def random_bn(arch: Arch, w: dict, seed: int = 3) -> dict:
    """Non-trivial BatchNorm parameters (so that folding is actually exercised)."""
    rng = np.random.default_rng(seed)
    for name, arrs in w.items():
        if arch.layer(name).kind == "batchnorm":
            c = arrs[0].shape[0]
            w[name] = [
                rng.uniform(0.5, 1.5, c).astype(np.float32),
                rng.normal(0, 0.2, c).astype(np.float32),
                rng.normal(0, 0.3, c).astype(np.float32),
                rng.uniform(0.5, 2.0, c).astype(np.float32),
            ]
        else:
            w[name] = [a if i == 0 else rng.normal(0, 0.1, a.shape).astype(np.float32) for i, a in enumerate(arrs)]
    return w


def data(arch: Arch, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *arch.input_shape)).astype(np.float32)
    y = rng.integers(0, arch.n_classes, n)
    return x, y


# --- op counts ------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [20, 40, 60, 80, 100])
def test_paper_model_mac_counts_equal_table3_closed_forms(T):
    a = paper_cnn(T)
    assert macs(count_ops(a, "full")) == 9792 * T - 33660
    assert macs(count_ops(a, "tl")) == 3360 * T - 11708
    assert macs(count_ops(a, None)) == 3360 * T - 15508
    full = count_ops(a, "full")
    assert full["conv_dx"] == 6144 * (T // 2 - 1)  # conv2 only (no input gradient for conv1)
    assert full["dense_dx"] == 3500
    tl = count_ops(a, "tl")
    assert tl["conv_dw"] == tl["conv_dx"] == 0 and tl["dense_dx"] == 300 and tl["dense_dw"] == 3500


def test_engine_counters_report_the_same_as_count_ops_per_batch():
    a = paper_cnn(20)
    m = Model(a, seed=0)
    x, y = data(a, 37)
    res = m.train_batch(x[:32], y[:32], 0.01, "full")
    per_sample = count_ops(a, "full", 1, include_update=False)
    expect = {k: 32 * per_sample[k] for k in OP_TYPES}
    expect["elementwise"] += a.param_count()  # SGD update, once per batch
    assert res.ops == expect == count_ops(a, "full", 32)
    res2 = m.train_batch(x[32:], y[32:], 0.01, "tl", mode="per_sample")
    assert res2.ops == count_ops(a, "tl", 5)
    assert m.ops_total == {k: expect[k] + res2.ops[k] for k in OP_TYPES}
    # elementwise per sample at T=20 as documented in docs/engine.md
    assert count_ops(a, None)["elementwise"] == 3312
    assert count_ops(a, "tl", include_update=False)["elementwise"] == 3424
    assert count_ops(a, "full", include_update=False)["elementwise"] == 6624


def test_ops_breakdown_follows_the_documented_rules_for_st_models():
    a = gmp_arch(24)
    br = dict(ops_breakdown(a, "full"))
    # bn1 is folded into conv1, bn0 (input) stays an affine layer and is the first trainable layer
    assert "bn1" not in br
    assert br["bn0"] == {**{k: 0 for k in OP_TYPES}, "elementwise": 72 + 2 * 72}
    assert br["conv1"]["conv_fwd"] == 20 * 3 * 16 * 1 * 5 and br["conv1"]["conv_dx"] == 24 * 3 * 1 * 16 * 5
    assert br["conv2"]["conv_dx"] == 20 * 3 * 16 * 16 * 5
    tl = dict(ops_breakdown(a, "tl"))  # only one Dense: tl == last
    assert tl["conv2"]["conv_dw"] == 0 and tl["gmp"]["elementwise"] == 16 * 3 * 16
    ign = dict(ops_breakdown(ign_arch(24), "full"))
    assert ign["conv"]["conv_dx"] == 0 and ign["conv"]["conv_dw"] == 9 * 3 * 24 * 16
    assert ign["flatten"] == ign["dropout"] == {k: 0 for k in OP_TYPES}


# --- training semantics -----------------------------------------------------------------------


@pytest.mark.parametrize("arch_fn", [lambda: paper_cnn(20), lambda: ign_arch(24), lambda: gmp_arch(24)])
@pytest.mark.parametrize("trainable", ["full", "tl"])
def test_per_sample_mode_equals_vectorised_mode(arch_fn, trainable):
    a = arch_fn()
    w0 = random_bn(a, Model(a, seed=1).get_weights())
    m1, m2 = Model(a, w0), Model(a, w0)
    x, y = data(a, 23, seed=2)
    for s in (0, 16):  # a full and a partial batch
        r1 = m1.train_batch(x[s : s + 16], y[s : s + 16], 0.05, trainable)
        r2 = m2.train_batch(x[s : s + 16], y[s : s + 16], 0.05, trainable, mode="per_sample")
        assert r1.loss == pytest.approx(r2.loss, rel=1e-5) and r1.n == r2.n and r1.correct == r2.correct
        assert r1.ops == r2.ops
    w1, w2 = m1.get_weights(), m2.get_weights()
    for name in w1:
        for a1, a2 in zip(w1[name], w2[name]):
            np.testing.assert_allclose(a1, a2, rtol=1e-5, atol=1e-6, err_msg=name)


def test_warmup_trains_only_the_last_dense_layer_then_the_requested_set():
    a = paper_cnn(20)
    m = Model(a, seed=0)
    w0 = m.get_weights()
    x, y = data(a, 40)
    seen = []
    hist = train(
        m, x, y, TrainConfig(epochs=0, warmup_epochs=2, lr=0.1, batch_size=16), on_batch=lambda info: seen.append(info)
    )
    w1 = m.get_weights()
    for name in w0:
        changed = any(not np.array_equal(p, q) for p, q in zip(w0[name], w1[name]))
        assert changed == (name == "dense2"), name
    assert [i.phase for i in seen] == ["warmup"] * 6 and len(hist.epochs) == 2
    train(m, x, y, TrainConfig(epochs=1, warmup_epochs=0, lr=0.1, batch_size=16, trainable="tl"))
    w2 = m.get_weights()
    assert np.array_equal(w2["conv1"][0], w0["conv1"][0]) and not np.array_equal(w2["dense1"][0], w1["dense1"][0])


def test_train_history_partial_batches_callbacks_and_stop():
    a = paper_cnn(20)
    m = Model(a, seed=0)
    x, y = data(a, 70)
    infos = []
    hist = train(m, x, y, TrainConfig(epochs=2, warmup_epochs=1, batch_size=32, lr=0.01, seed=5), on_batch=infos.append)
    assert [i.n for i in infos] == [32, 32, 6] * 3
    assert [i.phase for i in infos] == ["warmup"] * 3 + ["train"] * 6
    assert infos[-1].seen == 210 and hist.batches == 9 and len(hist.epochs) == 3
    total = {k: sum(i.ops[k] for i in infos) for k in OP_TYPES}
    assert hist.ops == total
    assert total["elementwise"] > 0 and total["conv_dx"] == 2 * 70 * count_ops(a, "full")["conv_dx"]
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    m2 = Model(a, seed=0)
    h2 = train(m2, x, y, TrainConfig(epochs=5), should_stop=stop)
    assert h2.stopped and h2.batches == 2 and "stop" in h2.reason


def test_training_reduces_loss_on_a_learnable_task():
    a = paper_cnn(20, n_classes=3)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    t = np.arange(20)[None, :, None]
    x = (
        np.sin(t * (0.3 + 0.5 * y[:, None, None]) + rng.uniform(0, 6, (96, 1, 1))) + 0.1 * rng.normal(size=(96, 20, 3))
    ).astype(np.float32)
    m = Model(a, seed=0)
    before = evaluate(m, x, y)
    hist = train(m, x, y, TrainConfig(epochs=30, lr=0.1, batch_size=16, seed=1))
    after = evaluate(m, x, y)
    assert hist.loss[-1] < hist.loss[0] and after.loss < before.loss * 0.7
    assert after.accuracy > 0.8 and after.confusion.sum() == 96 and after.ops["conv_dw"] == 0


# --- BatchNorm folding and export ---------------------------------------------------------------


def test_fold_unfold_round_trip_keeps_the_function():
    rng = np.random.default_rng(0)
    bn = Layer("batchnorm", "bn")
    w = rng.normal(size=(15, 8)).astype(np.float32)
    b = rng.normal(size=8).astype(np.float32)
    p = [rng.uniform(0.5, 2, 8), rng.normal(size=8), rng.normal(size=8), rng.uniform(0.1, 2, 8)]
    p = [a.astype(np.float32) for a in p]
    p[0][3] = 0.0  # a dead channel: identity statistics on the way back
    wf, bf = fold_conv_bn(w, b, bn, p)
    for has_bias in (True, False):
        w2, b2, p2 = unfold_conv_bn(wf, bf, has_bias, bn, p)
        wf2, bf2 = fold_conv_bn(w2, b2 if has_bias else None, bn, p2)
        np.testing.assert_allclose(wf2, wf, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bf2, bf, rtol=1e-5, atol=1e-6)
        if has_bias:
            np.testing.assert_array_equal(p2[1][np.arange(8) != 3], p[1][np.arange(8) != 3])


def test_folded_training_exports_weights_that_reproduce_predictions():
    a = gmp_arch(24)
    m = Model(a, random_bn(a, Model(a, seed=0).get_weights()))
    x, y = data(a, 40)
    train(m, x, y, TrainConfig(epochs=2, lr=0.05, batch_size=16))
    p_folded = m.predict(x)
    w = m.get_weights()
    assert set(w) == set(a.param_shapes())
    m_affine = Model(a, w, bn="affine")  # evaluates conv + BN unfolded, like Keras
    np.testing.assert_allclose(m_affine.predict(x), p_folded, rtol=1e-4, atol=1e-6)
    # switching trainable sets back and forth keeps the weights consistent
    m.train_batch(x[:8], y[:8], 0.0, "tl")
    np.testing.assert_allclose(m.predict(x), p_folded, rtol=1e-4, atol=1e-6)


# --- metrics ---------------------------------------------------------------------


def test_metrics_match_hand_computed_values():
    yt = np.array([0, 0, 1, 1, 2, 2, 2])
    yp = np.array([0, 1, 1, 1, 2, 0, 2])
    cm = confusion_matrix(yt, yp, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    f1 = per_class_f1(yt, yp, 4)
    np.testing.assert_allclose(f1, [0.5, 0.8, 0.8, 0.0])
    assert macro_f1(yt, yp) == pytest.approx(0.7)  # class 3 absent: left out
    assert macro_f1(yt, yp, labels=[0, 1, 2, 3]) == pytest.approx(0.525)
    assert accuracy(yt, yp) == pytest.approx(5 / 7)
    assert accuracy(np.eye(3)[yt], yp) == pytest.approx(5 / 7)
    with pytest.raises(ValueError, match="y_pred has 2"):
        accuracy(yt, yp[:2])


# --- errors -----------------------------------------------------------------------------------


def test_clear_errors_name_what_is_wrong():
    a = paper_cnn(20)
    m = Model(a, seed=0)
    x, y = data(a, 4)
    with pytest.raises(ValueError, match=r"expected \(n, 20, 3\)"):
        m.train_batch(np.zeros((4, 40, 3)), y, 0.01)
    with pytest.raises(ValueError, match="outside the allowed range 0..5"):
        m.train_batch(x, np.array([0, 1, 2, 9]), 0.01)
    with pytest.raises(ValueError, match="NaN"):
        m.predict(np.full((1, 20, 3), np.nan))
    with pytest.raises(ValueError, match="lr"):
        m.train_batch(x, y, -1)
    with pytest.raises(ValueError, match="mode"):
        m.train_batch(x, y, 0.01, mode="bogus")
    with pytest.raises(ArchError, match="'nope'"):
        m.train_batch(x, y, 0.01, trainable=["nope"])
    with pytest.raises(ValueError, match="layer 'conv1': array 0 has shape"):
        Model(a, {**m.get_weights(), "conv1": [np.zeros((2, 3, 32)), np.zeros(32)]})
    with pytest.raises(ValueError, match="unknown layer"):
        Model(a, {**m.get_weights(), "extra": [np.zeros(1)]})
    with pytest.raises(ValueError, match="batch_size"):
        train(m, x, y, TrainConfig(batch_size=0))


def test_unsupported_layers_are_rejected_naming_the_layer():
    mid_softmax = Arch(
        (20, 3),
        (
            Layer("conv1d", "c", filters=2, kernel=3),
            Layer("softmax", "sm"),
            Layer("gap1d", "g"),
            Layer("dense", "d", units=2),
            Layer("softmax", "out"),
        ),
    )
    with pytest.raises(ArchError, match="'sm'.*last layer"):
        Model(mid_softmax)
    no_softmax = Arch((20, 3), (Layer("gap1d", "g"), Layer("dense", "logits", units=2)))
    with pytest.raises(ArchError, match="'logits'.*softmax"):
        Model(no_softmax)
    strided = Arch(
        (20, 3),
        (
            Layer("conv1d", "c", filters=2, kernel=3, stride=2),
            Layer("gap1d", "g"),
            Layer("dense", "d", units=2),
            Layer("softmax", "out"),
        ),
    )
    with pytest.raises(ArchError, match="'c'.*stride"):
        Model(strided)
