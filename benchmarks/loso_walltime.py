"""Wall time of the default LOSO run (``odlstudio loso``) on 2 cores, and where the time goes.

Goal: one dataset, all five T (20..100), none/TL/Full, in <= 30 min on 2 cores.

    .venv/bin/python benchmarks/loso_walltime.py --dataset hapt                 # 4 subjects x 5 T, extrapolated
    .venv/bin/python benchmarks/loso_walltime.py --dataset hapt --subjects all  # the whole run (fresh folder)
    .venv/bin/python benchmarks/loso_walltime.py --from-results loso-results --dataset hapt   # analyse a finished run

It runs ``app.core.loso.run_loso`` with the default settings into a fresh folder (``--jobs`` workers),
then prints: wall time, the per-task split (data preparation / pretraining / personalization, summed
over workers), pretraining epochs actually run (early stopping), and the extrapolation to every subject.
Peer, measured in the same run: one epoch of TensorFlow ``fit`` of the paper model (SGD, batch 32) on the
same fold's pretraining windows at T=40, and what naive strict LOSO with TF (20 fixed epochs per fold
and T) would cost, against ours.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core import loso  # noqa: E402


def breakdown(rows: list[dict]) -> dict:
    tasks: dict[tuple, dict] = {}
    for r in rows:
        tasks.setdefault((r["T"], r["subject"]), r)
    pre = [t["pretrain_seconds"] for t in tasks.values()]
    total = [t["task_seconds"] for t in tasks.values()]
    pers = {}
    for r in rows:
        pers[r["mode"]] = pers.get(r["mode"], 0.0) + r["seconds"]
    epochs = [t["pretrain"]["epochs_run"] for t in tasks.values()]
    return {
        "tasks": len(tasks),
        "task_s": sum(total),
        "pretrain_s": sum(pre),
        "personalize_s": pers,
        "other_s": sum(total) - sum(pre) - sum(pers.values()),
        "pretrain_epochs_mean": statistics.mean(epochs) if epochs else 0.0,
        "pretrain_epochs_max": max(epochs) if epochs else 0,
        "best_epoch_mean": statistics.mean(t["pretrain"]["best_epoch"] for t in tasks.values()) if tasks else 0.0,
    }


def tf_epoch_seconds(cfg: loso.LosoConfig, T: int, subject: str) -> tuple[float, int]:
    """One TF ``fit`` epoch (after a warm-up epoch) of the paper model on the fold's pretraining windows."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras  # noqa: PLC0415

    from app.core.models import arch_to_keras  # noqa: PLC0415
    from estimator.arch import paper_cnn  # noqa: PLC0415

    spec = loso.DATASETS[cfg.dataset]
    rs = loso.load_recordings(cfg)
    pre_tr, _, _, _ = loso.fold_data(rs, cfg, T, subject, spec.activities)
    km = arch_to_keras(paper_cnn(T, len(spec.activities), spec.activities), None, seed=0)
    km.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    km.fit(pre_tr.x, pre_tr.y, batch_size=32, epochs=1, verbose=0)
    t0 = time.perf_counter()
    km.fit(pre_tr.x, pre_tr.y, batch_size=32, epochs=1, verbose=0)
    return time.perf_counter() - t0, len(pre_tr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=tuple(loso.DATASETS), default="hapt")
    ap.add_argument("--subjects", default="4", help="'all', a count (first N subjects) or a comma list (default 4)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--from-results", default=None, help="analyse an existing results folder instead of running")
    ap.add_argument("--no-peer", action="store_true", help="skip the TensorFlow peer")
    args = ap.parse_args()

    base = loso.LosoConfig(dataset=args.dataset)
    all_subjects = loso.load_recordings(base).subjects()
    if args.subjects == "all":
        subjects = all_subjects
    elif args.subjects.isdigit():
        subjects = all_subjects[: int(args.subjects)]
    else:
        subjects = [s.strip() for s in args.subjects.split(",") if s.strip()]
    cfg = loso.LosoConfig(dataset=args.dataset, subjects=tuple(subjects))
    print(f"dataset {args.dataset}: {len(all_subjects)} subjects; settings {cfg.settings()}")
    if args.from_results:
        rows = [r for r in loso.read_rows(loso.results_path(args.from_results, args.dataset), cfg.settings_hash())]
        if args.subjects != "all":
            rows = [r for r in rows if r["subject"] in subjects]
        wall = None
        print(f"analysing {len(rows)} rows from {args.from_results}")
    else:
        with tempfile.TemporaryDirectory(prefix="loso-bench-") as d:
            t0 = time.perf_counter()
            res = loso.run_loso(cfg, d, jobs=args.jobs, progress=True)
            wall = time.perf_counter() - t0
            rows = res.rows
            if res.errors:
                print("errors:", *res.errors, sep="\n  ")
    b = breakdown(rows)
    n_tasks_full = len(all_subjects) * len(cfg.sizes)
    print(f"\ntasks (T x subject): {b['tasks']} of {n_tasks_full} for the whole dataset")
    if wall is not None:
        print(f"wall time: {wall:.1f} s with {args.jobs} jobs")
    print(
        f"summed over workers: {b['task_s']:.1f} s = pretraining {b['pretrain_s']:.1f} s "
        f"({100 * b['pretrain_s'] / max(b['task_s'], 1e-9):.0f} %), personalization "
        + ", ".join(f"{m} {v:.1f} s" for m, v in b["personalize_s"].items())
        + f", data/evaluation {b['other_s']:.1f} s"
    )
    print(
        f"pretraining epochs run: mean {b['pretrain_epochs_mean']:.1f} (max {b['pretrain_epochs_max']}, "
        f"best epoch mean {b['best_epoch_mean']:.1f}) of at most {cfg.pretrain_epochs} (early stopping, patience {cfg.pretrain_patience})"
    )
    if wall is not None and b["tasks"]:
        est = wall / b["tasks"] * n_tasks_full
        print(
            f"extrapolated whole dataset: {est / 60:.1f} min with {args.jobs} jobs (goal <= 30 min): "
            f"{'PASS' if est <= 1800 else 'FAIL'}"
        )
    if not args.no_peer:
        T = 40
        s, n = tf_epoch_seconds(cfg, T, all_subjects[0])
        ours = [r for r in rows if r["T"] == T]
        ours_epoch = (
            statistics.mean(r["pretrain"]["seconds"] / max(1, r["pretrain"]["epochs_run"]) for r in ours)
            if ours
            else float("nan")
        )
        naive = s * 20 * n_tasks_full
        print(
            f"\npeer: TF fit, paper model, SGD batch 32, {n} windows at T={T}: {s:.2f} s/epoch; "
            f"ours (engine, incl. validation): {ours_epoch:.2f} s/epoch -> TF/ours {s / ours_epoch:.1f}x"
        )
        print(
            f"naive strict LOSO with TF, 20 epochs x {n_tasks_full} folds x T: ~{naive / 60:.0f} min on one core "
            f"(pretraining alone)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
