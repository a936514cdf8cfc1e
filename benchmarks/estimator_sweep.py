"""Benchmark: estimator sweep of 5 input sizes x 2 modes (target < 50 ms), cold and warm caches, and
the full recommender table; peer measured in the same run: one simulated training batch of 32
windows (T=100, Full) in the numpy training engine, i.e. what a "simulate instead of estimate"
approach would pay per batch.

Run:  .venv/bin/python benchmarks/estimator_sweep.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from estimator import memory, ops  # noqa: E402
from estimator.arch import paper_cnn  # noqa: E402
from estimator.core import estimate  # noqa: E402
from estimator.recommend import recommend  # noqa: E402

SIZES = (20, 40, 60, 80, 100)
MODES = ("tl", "full")
TARGET_S = 0.050


def clear_caches() -> None:
    ops._count_ops_cached.cache_clear()
    ops._inference_cached.cache_clear()
    memory._memory_cached.cache_clear()


def sweep() -> list:
    return [estimate(paper_cnn(T), m, 32, "paper", n_windows=64, epochs=3) for T in SIZES for m in MODES]


def timed(fn, repeat: int, before=None) -> list[float]:
    out = []
    for _ in range(repeat):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def peer_engine_batch():
    try:
        import numpy as np

        try:
            from device.engine import Model  # type: ignore[attr-defined]
        except ImportError:
            from device.engine.model import Model
    except ImportError as exc:
        return None, f"engine not importable ({exc})"
    arch = paper_cnn(100)
    model = Model(arch)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 100, 3)).astype("f4")
    y = np.arange(32) % 6
    model.train_batch(x, y, 0.01, "full")  # warm-up (plan compilation)
    return (lambda: model.train_batch(x, y, 0.01, "full")), "engine.train_batch(B=32, T=100, full)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    cold = timed(sweep, args.repeat, clear_caches)
    warm = timed(sweep, args.repeat)
    rec = timed(
        lambda: recommend(n_windows=64, power_source="charging", energy_mj=300), max(3, args.repeat // 4), clear_caches
    )
    med_cold, med_warm, med_rec = statistics.median(cold), statistics.median(warm), statistics.median(rec)
    print(
        f"sweep 5 sizes x 2 modes, cold caches : median {med_cold * 1e3:7.2f} ms  (max {max(cold) * 1e3:.2f})  target < {TARGET_S * 1e3:.0f} ms"
    )
    print(f"sweep 5 sizes x 2 modes, warm caches : median {med_warm * 1e3:7.2f} ms")
    print(f"recommend 5 x 2 x 5 epochs (cold)    : median {med_rec * 1e3:7.2f} ms")
    fn, what = peer_engine_batch()
    if fn is not None:
        peer = statistics.median(timed(fn, max(3, args.repeat // 4)))
        print(
            f"peer: {what}: median {peer * 1e3:7.2f} ms  -> the whole sweep costs {med_cold / peer:.1f} simulated batches "
            f"(a {32}-window round of 10 epochs x 10 batches would be {100 * peer / med_cold:.0f}x the sweep)"
        )
    else:
        print(f"peer: {what}")
    ok = med_cold < TARGET_S
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
