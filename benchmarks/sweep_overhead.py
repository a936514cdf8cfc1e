"""Per-task overhead of the Ray executor vs the local process pool on the same small sweep (issue 18).

Goal: overhead <= 5 % of the task time at the default task size (one LOSO fold with the default
settings: pretraining on every other subject, then none/TL/Full).

    .venv/bin/python benchmarks/sweep_overhead.py                       # hapt, 2 subjects x 2 T, default settings
    .venv/bin/python benchmarks/sweep_overhead.py --size small          # 1-epoch tasks: the fixed cost shows
    .venv/bin/python benchmarks/sweep_overhead.py --executors local     # pool only (no Ray installed)

Each executor runs the same sweep into a fresh store.  With ``W`` workers, ``n`` tasks, wall time ``t``
(from the first task sent to the last row stored: the store, the progress and the data shipping
included, Ray's start-up not) and ``S`` the sum of the task times measured inside the workers:

    overhead per task = (W * t - S) / n          share = overhead per task / (S / n)

It also counts what the rest of the workers' time went to (idle at the end of the run when ``n`` is not a
multiple of ``W``, and waiting on a loaded machine), so run it with ``n`` a multiple of ``W`` and read it
as an upper bound.  Ray's start-up (``ray.init`` of a local 2-CPU Ray) is reported apart: it is paid once
per sweep, not per task.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core import loso  # noqa: E402
from app.core.executors import LocalExecutor, RayExecutor  # noqa: E402
from app.core.sweep import parse_spec, run_sweep  # noqa: E402

SMALL = dict(epochs=1, warmup_epochs=1, pretrain_epochs=1, pretrain_patience=1)


def spec_for(args) -> dict:
    grid: dict = dict(
        dataset=args.dataset,
        T=[int(t) for t in args.sizes.split(",")],
        mode=["none", "tl", "full"],
        subjects=args.subjects.split(","),
        seed=[int(s) for s in args.seeds.split(",")],
    )
    if args.size == "small":
        grid.update(SMALL)
    return {"name": "overhead", "grid": grid}


def measure(kind: str, spec, jobs: int) -> dict:
    t0 = time.perf_counter()
    ex = LocalExecutor(jobs) if kind == "local" else RayExecutor(jobs=jobs).start()
    startup = time.perf_counter() - t0
    try:
        with tempfile.TemporaryDirectory(prefix="odl-sweep-bench-") as tmp:
            loso._DATA_CACHE.clear()
            res = run_sweep(spec, tmp, ex, progress=False)
    finally:
        ex.close()
    if res.errors:
        raise SystemExit(f"{kind}: {res.errors}")
    n, S, W = len(res.task_seconds), sum(res.task_seconds), jobs
    over = (W * res.wall_s - S) / n
    return {
        "executor": kind,
        "workers": W,
        "tasks": n,
        "startup_s": round(startup, 2),
        "wall_s": round(res.wall_s, 2),
        "task_s_mean": round(S / n, 3),
        "task_s_median": round(statistics.median(res.task_seconds), 3),
        "overhead_per_task_s": round(over, 3),
        "overhead_share": round(over / (S / n), 4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=tuple(loso.DATASETS), default="hapt")
    ap.add_argument("--subjects", default="3,5", help="comma list of test subjects (default 3,5)")
    ap.add_argument("--sizes", default="40,80", help="input sizes T (default 40,80)")
    ap.add_argument("--seeds", default="0", help="seeds (default 0)")
    ap.add_argument("--size", choices=("default", "small"), default="default", help="task size (default: default)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--executors", default="local,ray")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    spec = parse_spec(spec_for(args), "benchmark")
    out = [measure(k, spec, args.jobs) for k in args.executors.split(",")]
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{args.dataset}, subjects {args.subjects}, T {args.sizes}, seeds {args.seeds}, {args.size} task size")
    print("| executor | workers | tasks | start-up s | wall s | task s (mean) | overhead / task s | share |")
    print("|---|---|---|---|---|---|---|---|")
    for r in out:
        print(
            f"| {r['executor']} | {r['workers']} | {r['tasks']} | {r['startup_s']:.1f} | {r['wall_s']:.1f} | "
            f"{r['task_s_mean']:.2f} | {r['overhead_per_task_s']:.3f} | {100 * r['overhead_share']:.1f} % |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
