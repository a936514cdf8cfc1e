"""On-device training engine: a float32 numpy reference of what the STM32 firmware computes (the
paper's Network / Training / Evaluation modules, Table I), used by the emulated NUCLEO board and to
check the estimator.  Full documentation: docs/engine.md.

Public API::

    from device.engine import Model, TrainConfig, train, evaluate

    model = Model(arch, weights=None, seed=0, bn="fold")      # estimator.arch.Arch + Keras-layout weights
    probs = model.predict(x)                                   # (n, N) softmax probabilities
    res = model.train_batch(x, y, lr=0.01, trainable="full",   # one SGD step (batch-mean gradient)
                            mode="vectorised")                 #   or "per_sample" (firmware order)
    res.loss, res.n, res.correct, res.ops                      # ops: dict with keys estimator.arch.OP_TYPES
    model.ops_total                                            # cumulative op counters
    model.get_weights() / model.set_weights(w)                 # Keras layout of the original architecture
    loss, grads = model.gradients(x, y, trainable="full")      # batch-mean gradients (Keras layout)

    hist = train(model, x, y, TrainConfig(epochs=5, lr=0.01, batch_size=32, trainable="full",
                                          warmup_epochs=2, shuffle=True, seed=0),
                 on_batch=callback, should_stop=callable)
    ev = evaluate(model, x_test, y_test)                       # loss, accuracy, macro_f1, per_class_f1, confusion

    count_ops(arch, "tl", batch_size=32)                       # what one batch costs, without a model

TensorFlow is never imported by this package at import time (``keras_ref.to_keras`` imports it lazily).
"""

from .graph import Graph, RLayer, lower
from .metrics import accuracy, confusion_matrix, macro_f1, per_class_f1
from .model import MODES, BatchResult, Model, StepOptions
from .ops import batch_ops, count_ops, macs, ops_breakdown, sample_ops
from .train import BatchInfo, EpochStats, EvalResult, History, TrainConfig, evaluate, train
from .weights import Weights, fold_conv_bn, glorot_init, unfold_conv_bn

__all__ = [
    "Model",
    "BatchResult",
    "StepOptions",
    "MODES",
    "TrainConfig",
    "train",
    "evaluate",
    "BatchInfo",
    "EpochStats",
    "History",
    "EvalResult",
    "count_ops",
    "batch_ops",
    "sample_ops",
    "ops_breakdown",
    "macs",
    "accuracy",
    "confusion_matrix",
    "macro_f1",
    "per_class_f1",
    "Graph",
    "RLayer",
    "lower",
    "Weights",
    "glorot_init",
    "fold_conv_bn",
    "unfold_conv_bn",
]
