"""Training engine against TensorFlow/Keras: gradients equal GradientTape for every layer kind (random
small models, the ST IGN and GMP models), a full training run equals Keras SGD ``fit`` with the same
init, data order and batch size, and exported folded weights give Keras the engine's predictions.

TensorFlow is imported once per session (module fixture); shapes are kept small."""

from __future__ import annotations

import numpy as np
import pytest

from device.engine import Model, TrainConfig, train
from device.engine.keras_ref import keras_weights, to_keras
from estimator.arch import Arch, Layer, paper_cnn
from tests.device.test_engine_core import data, gmp_arch, ign_arch, random_bn

RTOL = 1e-5


@pytest.fixture(scope="module")
def tf():
    import tensorflow as tf  # a required dependency: a broken install fails, never skips

    return tf


def tf_gradients(tf, arch: Arch, weights: dict, x: np.ndarray, y: np.ndarray, names) -> tuple[float, dict]:
    """Batch-mean categorical cross-entropy and its gradients (TF GradientTape, inference-mode BN and
    dropout), keyed like Model.gradients: {layer: [kernel, bias]} or {bn: [gamma, beta]}."""
    km = to_keras(arch, weights)
    t = tf.one_hot(y, arch.n_classes)
    variables = []
    for name in names:
        layer = km.get_layer(name)
        variables += list(layer.trainable_weights[:2])
    with tf.GradientTape() as tape:
        p = km(x, training=False)
        loss = tf.reduce_mean(tf.keras.losses.categorical_crossentropy(t, p))
    grads = tape.gradient(loss, variables)
    out: dict[str, list[np.ndarray]] = {}
    for v, g in zip(variables, grads):
        out.setdefault(v.path.split("/")[-2], []).append(g.numpy())
    return float(loss), out


def assert_grads_equal(mine: dict, ref: dict) -> None:
    assert set(mine) == set(ref)
    for name in ref:
        assert len(mine[name]) == len(ref[name]), name
        for a, b in zip(mine[name], ref[name]):
            scale = float(np.max(np.abs(b))) or 1.0
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * scale, err_msg=name)


def small_models() -> list[Arch]:
    """Random small models that together use every layer kind and option the engine supports."""
    L = Layer
    return [
        Arch(
            (14, 3),
            (
                L("conv1d", "c1", filters=4, kernel=3),
                L("relu", "r1"),
                L("maxpool1d", "mp", pool=2),
                L("conv1d", "c2", filters=5, kernel=2, use_bias=False),
                L("avgpool1d", "ap", pool=3, stride=2),
                L("gmp1d", "g"),
                L("dense", "d", units=4),
                L("softmax", "s"),
            ),
            name="m1d_a",
        ),
        Arch(
            (12, 2),
            (
                L("conv1d", "c1", filters=3, kernel=3),
                L("batchnorm", "bn"),
                L("relu", "r1"),
                L("avgpool1d", "ap", pool=2),
                L("flatten", "f"),
                L("dropout", "do", rate=0.3),
                L("dense", "d1", units=6),
                L("relu", "r2"),
                L("dense", "d2", units=3, use_bias=False),
                L("softmax", "s"),
            ),
            name="m1d_b",
        ),
        Arch(
            (11, 3),
            (
                L("conv1d", "c1", filters=4, kernel=4),
                L("maxpool1d", "mp", pool=3, stride=1),
                L("gap1d", "g"),
                L("dense", "d", units=3),
                L("softmax", "s"),
            ),
            name="m1d_c",
        ),
        Arch(
            (13, 3, 1),
            (
                L("batchnorm", "bn0"),
                L("conv2d", "c1", filters=3, kernel=3),
                L("batchnorm", "bn1"),
                L("relu", "r"),
                L("maxpool2d", "mp", pool=2),
                L("conv2d", "c2", filters=4, kernel=2),
                L("avgpool2d", "ap", pool=2),
                L("gap2d", "g"),
                L("dense", "d", units=3),
                L("softmax", "s"),
            ),
            name="m2d_a",
        ),
        Arch(
            (12, 3, 2),
            (
                L("conv2d", "c1", filters=3, kernel=3, use_bias=False),
                L("batchnorm", "bn"),
                L("avgpool2d", "ap", pool=2, stride=1),
                L("maxpool2d", "mp", pool=2, stride=3),
                L("gmp2d", "g"),
                L("dense", "d", units=4),
                L("softmax", "s"),
            ),
            name="m2d_b",
        ),
        Arch(
            (10, 3, 1),
            (
                L("conv2d", "c1", filters=2, kernel=3),
                L("relu", "r"),
                L("flatten", "f"),
                L("dense", "d", units=3),
                L("softmax", "s"),
            ),
            name="m2d_c",
        ),
    ]


def _random_model_weights(arch: Arch, seed: int) -> dict:
    return random_bn(arch, Model(arch, seed=seed).get_weights(), seed=seed + 10)


@pytest.mark.parametrize("arch", small_models(), ids=lambda a: a.name)
def test_gradients_match_tensorflow_for_every_layer_kind(tf, arch):
    w = _random_model_weights(arch, seed=7)
    x, y = data(arch, 9, seed=4)
    # affine BatchNorm = Keras BN with training=False; gamma/beta trained like everything else
    m = Model(arch, w, bn="affine")
    for trainable in ("full", "last", sorted(arch.param_shapes())[1:2]):
        loss, g = m.gradients(x, y, trainable)
        names = sorted(m.graph(trainable).trainable)
        ref_loss, ref = tf_gradients(tf, arch, w, x, y, names)
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        assert_grads_equal(g, ref)
    # folded BatchNorm: the engine trains the folded conv; check against TF on the folded twin
    mf = Model(arch, w, bn="fold")
    np.testing.assert_allclose(mf.predict(x), to_keras(arch, w)(x).numpy(), rtol=1e-4, atol=1e-6)
    rarch, rw = mf.runtime_arch("full")
    loss, g = mf.gradients(x, y, "full")
    ref_loss, ref = tf_gradients(
        tf,
        rarch,
        rw,
        x,
        y,
        sorted(
            mf.graph("full").trainable
            - {l.name for l in arch.layers if l.kind == "batchnorm" and l.name not in dict(rw)}
        ),
    )
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert_grads_equal(g, ref)


@pytest.mark.parametrize("arch_fn", [ign_arch, gmp_arch], ids=["ign", "gmp"])
@pytest.mark.parametrize("wl", [24, 48])
def test_st_modelzoo_architectures_train_and_match_tensorflow(tf, arch_fn, wl):
    arch = arch_fn(wl)
    w = _random_model_weights(arch, seed=1)
    x, y = data(arch, 8, seed=wl)
    m = Model(arch, w, bn="affine")
    loss, g = m.gradients(x, y, "full")
    ref_loss, ref = tf_gradients(tf, arch, w, x, y, sorted(arch.param_shapes()))
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert_grads_equal(g, ref)
    # and it trains (folded BN, the firmware's form); exported weights give Keras the same predictions
    mf = Model(arch, w)
    before = mf.loss(x, y)
    train(mf, x, y, TrainConfig(epochs=15, lr=0.05, batch_size=4, seed=0))
    assert mf.loss(x, y) < before
    km = to_keras(arch, mf.get_weights())
    np.testing.assert_allclose(km(x, training=False).numpy(), mf.predict(x), rtol=1e-4, atol=1e-6)


def _keras_fit(tf, arch, w, x, y, lr, bs, phases):
    import keras

    km = to_keras(arch, w)
    t = np.eye(arch.n_classes, dtype=np.float32)[y]
    for trainable_layers, epochs in phases:
        for layer in km.layers:
            layer.trainable = (trainable_layers is None) or (layer.name in trainable_layers)
        km.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="categorical_crossentropy")
        km.fit(x, t, batch_size=bs, epochs=epochs, shuffle=False, verbose=0)
    return keras_weights(km, arch)


@pytest.mark.slow
def test_training_run_equals_keras_sgd_fit(tf):
    arch = paper_cnn(20)
    w0 = Model(arch, seed=3).get_weights()
    x, y = data(arch, 70, seed=9)  # 32 + 32 + 6: a partial last batch, handled like Keras
    lr, bs = 0.05, 32
    ref = _keras_fit(tf, arch, w0, x, y, lr, bs, [(None, 4)])
    for mode in ("vectorised", "per_sample"):
        m = Model(arch, w0)
        train(m, x, y, TrainConfig(epochs=4, lr=lr, batch_size=bs, shuffle=False, trainable="full", mode=mode))
        w = m.get_weights()
        moved = max(float(np.max(np.abs(w["conv1"][0] - w0["conv1"][0]))), 0.0)
        assert moved > 1e-3  # the run actually changed the weights
        for name in ref:
            for a, b in zip(w[name], ref[name]):
                np.testing.assert_allclose(a, b, atol=1e-4, rtol=0, err_msg=f"{mode} {name}")


@pytest.mark.slow
def test_warmup_then_tl_equals_keras_with_frozen_layers(tf):
    arch = paper_cnn(20)
    w0 = Model(arch, seed=5).get_weights()
    x, y = data(arch, 48, seed=1)
    ref = _keras_fit(tf, arch, w0, x, y, 0.05, 16, [({"dense2"}, 2), ({"dense1", "dense2"}, 2)])
    m = Model(arch, w0)
    train(m, x, y, TrainConfig(epochs=2, warmup_epochs=2, lr=0.05, batch_size=16, shuffle=False, trainable="tl"))
    w = m.get_weights()
    for name in ref:
        for a, b in zip(w[name], ref[name]):
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=0, err_msg=name)


@pytest.mark.needs_shared
@pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")
@pytest.mark.parametrize("kind", ["ign", "gmp"])
def test_st_pretrained_models_predict_like_keras_and_fine_tune(tf, st_models, kind):
    """ST's real pretrained v2.0.1 WISDM models (loaded from ../shared, never copied): the engine (folded
    BN) predicts what Keras predicts, trains, and its exported weights give Keras its predictions."""
    import keras

    path = (
        st_models
        / "v2.0.1/human_activity_recognition/pretrained_models"
        / kind
        / f"ST_pretrainedmodel_public_dataset/WISDM/{kind}_wl_24/{kind}_wl_24.h5"
    )
    if not path.is_file():
        pytest.skip(f"{path} not found")
    km = keras.models.load_model(path, compile=False)
    arch = (ign_arch if kind == "ign" else gmp_arch)(24)
    theirs = [l.get_weights() for l in km.layers if l.get_weights()]
    names = list(arch.param_shapes())
    assert len(theirs) == len(names)
    w = {n: arrs for n, arrs in zip(names, theirs)}
    x, y = data(arch, 24, seed=11)
    m = Model(arch, w)
    np.testing.assert_allclose(m.predict(x), km(x, training=False).numpy(), rtol=1e-4, atol=1e-5)
    before = m.loss(x, y)
    train(m, x, y, TrainConfig(epochs=3, lr=0.01, batch_size=8, warmup_epochs=1, seed=0))
    assert m.loss(x, y) < before
    exported = to_keras(arch, m.get_weights())
    np.testing.assert_allclose(exported(x, training=False).numpy(), m.predict(x), rtol=1e-4, atol=1e-5)
