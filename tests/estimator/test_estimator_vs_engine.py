"""The estimator's op counts equal what the training engine counts while it trains the same model.

Contract expected from the engine (``device/engine``, another engineer's module):

* ``from device.engine import Model`` (falls back to ``device.engine.model.Model`` while the package
  does not re-export it yet);
* ``Model(arch, weights)`` with ``weights`` a Keras-layout dict (``estimator.arch`` doc); optional
  keyword ``bn='affine'`` to run BatchNorm as its own layer (frozen statistics, trainable γ/β),
  which is how the estimator counts an :class:`Arch` as given, and ``bn='fold'`` (default) with
  ``model.runtime_arch(trainable) -> (Arch, weights)`` describing what it really runs;
* ``model.train_batch(x, y, lr, trainable)`` returns a result whose ``.ops`` is a dict keyed by
  ``estimator.arch.OP_TYPES``: the operations of that batch (B × per-sample forward + backward, plus
  the once-per-batch SGD update counted as ``elementwise``), also accumulated in ``model.ops_total``;
* ``model.predict(x, count_ops=True)`` adds the forward-only operations to ``model.ops_total``.

Expected numbers: ``estimator.count_ops(arch, trainable).per_batch(B)`` (training) and
``B × count_ops(arch, 'none').forward`` (inference), equal for every key.
"""

from __future__ import annotations

import numpy as np
import pytest

# The engine is part of the project: a broken import must fail this cross-check, not skip it.
from device.engine import Model
from estimator import count_ops
from estimator.arch import OP_TYPES, paper_cnn
from tests.estimator.test_estimator import gmp, ign

B = 8
ARCHS = {
    "paper_T20": (lambda: paper_cnn(20), None),
    "paper_T60": (lambda: paper_cnn(60), None),
    "ign_24": (lambda: ign(24), None),
    "ign_48": (lambda: ign(48), None),
    "gmp_24": (lambda: gmp(24), "affine"),
}


def _weights(arch, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shapes in arch.param_shapes().items():
        layer = arch.layer(name)
        if layer.kind == "batchnorm":
            c = shapes[0]
            out[name] = [np.ones(c, "f4"), np.zeros(c, "f4"), np.zeros(c, "f4"), np.ones(c, "f4")]
        else:
            out[name] = [(rng.standard_normal(s) * 0.1).astype("f4") for s in shapes]
    return out


def _model(arch, bn):
    kwargs = {} if bn is None else {"bn": bn}
    return Model(arch, _weights(arch), **kwargs)


def _trainable_sets(arch):
    params = [l.name for l in arch.layers if l.has_params]
    return ["tl", "full", "last", [params[0], params[-1]]]


@pytest.mark.parametrize("key", list(ARCHS))
def test_training_op_counts_match_the_engine(key):
    make, bn = ARCHS[key]
    arch = make()
    model = _model(arch, bn)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, *arch.input_shape)).astype("f4")
    y = np.arange(B) % arch.n_classes
    total = {k: 0 for k in OP_TYPES}
    for tr in _trainable_sets(arch):
        result = model.train_batch(x, y, 0.01, tr)
        expected = count_ops(arch, tr).per_batch(B)
        got = {k: int(result.ops.get(k, 0)) for k in OP_TYPES}
        assert got == expected, f"{key} trainable={tr}: engine {got} vs estimator {expected}"
        for k in OP_TYPES:
            total[k] += expected[k]
    assert {k: int(model.ops_total[k]) for k in OP_TYPES} == total


@pytest.mark.parametrize("key", list(ARCHS))
def test_inference_op_counts_match_the_engine(key):
    make, bn = ARCHS[key]
    arch = make()
    model = _model(arch, bn)
    before = {k: int(model.ops_total[k]) for k in OP_TYPES}
    x = np.random.default_rng(2).standard_normal((B, *arch.input_shape)).astype("f4")
    model.predict(x, count_ops=True)
    fwd = count_ops(arch, "none").forward
    assert {k: int(model.ops_total[k]) - before[k] for k in OP_TYPES} == {k: B * fwd[k] for k in OP_TYPES}


def test_folded_batchnorm_runtime_graph_matches_the_estimator():
    """With the firmware's BN folding the engine runs another graph; the estimator counts it exactly
    when given that graph (``Model.runtime_arch``)."""
    arch = gmp(24)
    model = Model(arch, _weights(arch))  # default: BN folded as on the device
    x = np.random.default_rng(3).standard_normal((B, *arch.input_shape)).astype("f4")
    y = np.arange(B) % arch.n_classes
    for tr in ("tl", "full"):
        runtime, _ = model.runtime_arch(tr)
        result = model.train_batch(x, y, 0.01, tr)
        expected = count_ops(runtime, tr).per_batch(B)
        assert {k: int(result.ops[k]) for k in OP_TYPES} == expected
