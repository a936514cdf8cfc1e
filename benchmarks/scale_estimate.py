"""Wall-time estimate of a large LOSO study from measured per-task times (docs/scale.md, issue 18).

    .venv/bin/python benchmarks/scale_estimate.py                      # the study of docs/scale.md
    .venv/bin/python benchmarks/scale_estimate.py --seeds 5 --remedies 4 --workers 2,64 --ray-overhead 0.2

Reads the rows of the recorded full LOSO runs (docs/results/loso_<dataset>.jsonl: one general model per
(T, subject), with its measured pretraining time, and each mode's personalization time), builds the
tasks of a study of ``--seeds`` seeds x both datasets x 5 T x 3 modes x ``--remedies`` remedies, and
schedules them, in the sweep's order, on W workers (a task goes to the first free worker: what the
local pool and Ray both do).  Two cases: remedies that only change personalization (one general model
per task, shared by the remedies: ``loso.PERSONALIZE_FIELDS``) and remedies that change pretraining too
(one general model per remedy).  A remedy's personalization is costed as the measured TL/Full/none.
``--ray-overhead`` seconds are added per task (benchmarks/sweep_overhead.py measures it).
"""

from __future__ import annotations

import argparse
import heapq
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measured(dataset: str) -> dict:
    """``{(T, subject): {"pretrain": s, "other": s, "modes": {mode: s}}}`` of the recorded run."""
    tasks: dict = {}
    for line in open(ROOT / "docs" / "results" / f"loso_{dataset}.jsonl", encoding="utf-8"):
        r = json.loads(line)
        t = tasks.setdefault((r["T"], r["subject"]), {"task": r["task_seconds"], "pretrain": r["pretrain_seconds"]})
        t.setdefault("modes", {})[r["mode"]] = r["seconds"]
    for t in tasks.values():
        t["other"] = max(0.0, t["task"] - t["pretrain"] - sum(t["modes"].values()))
    return tasks


def study_tasks(seeds: int, remedies: int, shared_pretraining: bool) -> list[float]:
    out = []
    for d in ("hapt", "wisdm2019"):
        m = measured(d)
        for _seed in range(seeds):
            for t in m.values():
                pers = sum(t["modes"].values())
                if shared_pretraining:
                    out.append(t["pretrain"] + t["other"] + remedies * pers)
                else:
                    out += [t["pretrain"] + t["other"] + pers] * remedies
    return out


def schedule(tasks: list[float], workers: int, per_task: float = 0.0) -> float:
    free = [0.0] * workers
    end = 0.0
    for t in tasks:
        start = heapq.heappop(free)
        heapq.heappush(free, start + t + per_task)
        end = max(end, start + t + per_task)
    return end


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--remedies", type=int, default=4)
    ap.add_argument("--workers", default="2,64")
    ap.add_argument(
        "--ray-overhead",
        type=float,
        default=0.13,
        help="seconds per task on Ray (default 0.13, measured by sweep_overhead.py: docs/benchmarks.md)",
    )
    args = ap.parse_args()
    print("| dataset | general models | pretraining | personalization none / TL / Full | data + evaluation |")
    print("|---|---|---|---|---|")
    for d, name in (("hapt", "HAPT"), ("wisdm2019", "WISDM-2019")):
        m = list(measured(d).values())
        pre = [t["pretrain"] for t in m]
        pers = " / ".join(f"{sum(t['modes'][k] for t in m) / len(m):.2f}" for k in ("none", "tl", "full"))
        print(
            f"| {name} | {len(m)} per seed | {sum(pre) / len(m):.1f} s mean (max {max(pre):.1f} s) | {pers} s | "
            f"{sum(t['other'] for t in m) / len(m):.2f} s |"
        )
    print()
    print("| remedies change | tasks | task time (sum) | pretraining share | workers | executor | wall |")
    print("|---|---|---|---|---|---|---|")
    for shared in (True, False):
        tasks = study_tasks(args.seeds, args.remedies, shared)
        pre = 0.0
        for d in ("hapt", "wisdm2019"):
            pre += args.seeds * sum(t["pretrain"] for t in measured(d).values()) * (1 if shared else args.remedies)
        for w in (int(x) for x in args.workers.split(",")):
            kind, over = ("local pool", 0.0) if w <= 2 else ("Ray", args.ray_overhead)
            wall = schedule(tasks, w, over)
            print(
                f"| {'personalization only' if shared else 'pretraining too'} | {len(tasks)} | "
                f"{sum(tasks) / 3600:.1f} h | {100 * pre / sum(tasks):.0f} % | {w} | {kind} | "
                f"{wall / 3600:.2f} h ({wall / 60:.1f} min) |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
