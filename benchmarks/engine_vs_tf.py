"""One Full training step (batch of 32 windows) on the paper's model: our numpy engine vs TensorFlow.

For T = 20, 40, 60, 80, 100 it times, in the same run and interleaved (so machine load hits both alike):

* ours: ``Model.train_batch(x, y, lr, 'full')`` - forward, backward, SGD update, op counting, input
  checks included;
* TF: a ``tf.function`` with ``GradientTape`` + ``keras.optimizers.SGD.apply_gradients`` on the Keras
  twin of the same model and weights.

It prints the median time per step of each, and the ratio TF / ours.  Goals (docs/benchmarks.md):
ours faster than TF at every T, and >= 2x faster at T = 20.

    .venv/bin/python benchmarks/engine_vs_tf.py [--repeats 400] [--T 20 40 60 80 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from device.engine import Model  # noqa: E402
from device.engine.keras_ref import to_keras  # noqa: E402
from estimator.arch import paper_cnn  # noqa: E402

BATCH = 32
LR = 1e-3


def tf_step_fn(arch, weights):
    import keras
    import tensorflow as tf

    km = to_keras(arch, weights)
    opt = keras.optimizers.SGD(learning_rate=LR)
    loss_fn = keras.losses.CategoricalCrossentropy()
    variables = km.trainable_variables

    @tf.function
    def step(x, t):
        with tf.GradientTape() as tape:
            loss = loss_fn(t, km(x, training=True))
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        return loss

    return step, tf


def bench_T(T: int, repeats: int, block: int = 20) -> tuple[float, float]:
    arch = paper_cnn(T)
    model = Model(arch, seed=0)
    rng = np.random.default_rng(T)
    x = rng.normal(size=(BATCH, T, 3)).astype(np.float32)
    y = rng.integers(0, arch.n_classes, BATCH)
    step, tf = tf_step_fn(arch, model.get_weights())
    xt = tf.constant(x)
    tt = tf.constant(np.eye(arch.n_classes, dtype=np.float32)[y])
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(30):  # warm-up: tracing, BLAS, buffers
        model.train_batch(x, y, LR, "full")
        float(step(xt, tt))
    perf = time.perf_counter
    for _ in range(max(1, repeats // block)):
        for _ in range(block):
            t0 = perf()
            model.train_batch(x, y, LR, "full")
            ours.append(perf() - t0)
        for _ in range(block):
            t0 = perf()
            float(step(xt, tt))
            theirs.append(perf() - t0)
    return float(np.median(ours)), float(np.median(theirs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=400, help="timed steps per side and T (default 400)")
    ap.add_argument("--T", type=int, nargs="+", default=[20, 40, 60, 80, 100], help="input lengths")
    args = ap.parse_args(argv)
    if args.repeats < 1 or any(t < 12 for t in args.T):
        ap.error("--repeats must be >= 1 and every --T >= 12 (the paper model needs T >= 12)")
    print(
        f"Full step, batch {BATCH}, paper model; median of {args.repeats} steps each "
        f"(OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}, cores={os.cpu_count()})"
    )
    print(f"{'T':>4} {'ours ms':>9} {'TF ms':>9} {'TF/ours':>8}  goal")
    ok = True
    for T in args.T:
        ours, theirs = bench_T(T, args.repeats)
        ratio = theirs / ours
        goal = 2.0 if T == 20 else 1.0
        met = ratio >= goal
        ok &= met
        print(
            f"{T:>4} {ours * 1e3:>9.3f} {theirs * 1e3:>9.3f} {ratio:>7.2f}x  >= {goal:.0f}x {'ok' if met else 'MISSED'}"
        )
    print("all goals met" if ok else "some goals missed")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
