"""``odlstudio loso``: leave-one-subject-out personalization study, the paper's Table II on real data.

Example::

    odlstudio loso --dataset hapt --jobs 2 --results loso-results
    odlstudio loso --dataset wisdm2019 --sizes 20,40 --subjects 1600,1604,1606 --epochs 2 --json

For each test subject and input size T the paper's 1D-CNN is pretrained on every other subject (SGD,
early stopping on a chronological hold-out of those subjects), then personalized on the subject's
local training split (first 60 % of each activity, windows of T with stride T/2) with TL and Full
(2 warm-up epochs on the last layer, then ``--epochs`` epochs, SGD lr 0.01, batch 32) and tested on
the rest (stride T).  Runs on the host engine, ``--jobs`` worker processes (or ``--executor ray``), with
a progress bar on stderr.  Results are appended to ``<results>/loso_<dataset>.jsonl`` as each task finishes, so an
interrupted run resumes; general models are cached in ``<results>/models``.

Writes ``<results>/loso_<dataset>_summary.json``, ``loso_<dataset>.md`` (table beside the paper's
WISDM Table II) and ``loso_<dataset>.png`` (plot).  Prints the table, or with ``--json`` exactly one
JSON object ``{"dataset", "settings", "summary", "wall_s", ...}``.  Exit status: 0 ok, 1 some tasks
failed (the rest is reported), 2 bad arguments or data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from app.commands._argtypes import finite_float, fraction, int_range, seed
from app.commands._procedure import add_procedure_args, procedure_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "loso",
        help="leave-one-subject-out study of none/TL/Full personalization (Table II)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset",
        choices=("hapt", "wisdm2019"),
        required=True,
        help="hapt (30 subjects, 6 activities) or wisdm2019 (16 subjects, activities A-E)",
    )
    p.add_argument("--data", default=None, help="dataset file/folder (default ../shared/data/<dataset folder>)")
    p.add_argument("--sizes", default="20,40,60,80,100", help="input sizes T, comma list (default 20,40,60,80,100)")
    p.add_argument(
        "--modes",
        default=None,
        help="comma list of none, tl, full, auto (the mode chosen per subject on the validation windows); "
        "default none,tl,full,auto (plain procedure: none,tl,full)",
    )
    p.add_argument(
        "--subjects", default=None, help="comma list of test subjects (default all; pretraining always uses all others)"
    )
    p.add_argument(
        "--epochs", type=int_range(0, 10_000), default=20, help="personalization epochs after the warm-up (default 20)"
    )
    p.add_argument(
        "--warmup-epochs", type=int_range(0, 10_000), default=2, help="warm-up epochs on the last layer (default 2)"
    )
    p.add_argument(
        "--lr", type=finite_float(0.0, 10.0, lo_open=True), default=0.01, help="personalization SGD learning rate"
    )
    p.add_argument("--batch", type=int_range(1, 1024), default=32, help="personalization batch size (default 32)")
    p.add_argument(
        "--train-fraction", type=fraction, default=0.6, help="local training share of each activity (default 0.6)"
    )
    p.add_argument(
        "--pretrain-epochs", type=int_range(1, 10_000), default=30, help="max pretraining epochs (default 30)"
    )
    p.add_argument(
        "--pretrain-patience",
        type=int_range(1, 10_000),
        default=5,
        help="early-stopping patience in epochs (default 5)",
    )
    p.add_argument(
        "--pretrain-lr",
        type=finite_float(0.0, 10.0, lo_open=True),
        default=0.01,
        help="pretraining SGD learning rate (default 0.01)",
    )
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument(
        "--pers-seed",
        type=seed,
        default=0,
        help="seed of the personalization shuffles only (ablations over seeds reuse the general models)",
    )
    add_procedure_args(p)
    p.add_argument("--jobs", type=int_range(1, 64), default=2, help="worker processes (default 2)")
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local process pool (default) or Ray (pip install 'odl-studio[cluster]'); see odlstudio sweep",
    )
    p.add_argument(
        "--address", default=None, help="with --executor ray: 'auto' or ray://host:port (default: a local Ray)"
    )
    p.add_argument(
        "--results", default="loso-results", help="results folder (default ./loso-results); reused to resume"
    )
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG plot")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what} must be a comma list of integers, got {text!r}") from None
    if not vals:
        raise ValueError(f"{what} is empty")
    return vals


def _subjects(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None  # all of them
    subjects = tuple(s.strip() for s in text.split(",") if s.strip())
    if not subjects:  # a typo must not start the hour-long run over every subject
        raise ValueError(f"--subjects is empty ({text!r}): give subject ids, or leave the option out for all")
    return subjects


def config_from_args(args: argparse.Namespace):
    from app.core.loso import ALL_MODES, MODES, LosoConfig  # noqa: PLC0415

    procedure = procedure_from_args(args)
    if args.modes is None:
        modes = ALL_MODES if procedure.validates else MODES
    else:
        modes = tuple(m.strip().lower() for m in args.modes.split(",") if m.strip())
    cfg = LosoConfig(
        dataset=args.dataset,
        data=args.data,
        sizes=_ints(args.sizes, "--sizes"),
        modes=modes,
        subjects=_subjects(args.subjects),
        train_fraction=args.train_fraction,
        epochs=args.epochs,
        warmup_epochs=args.warmup_epochs,
        lr=args.lr,
        batch=args.batch,
        pretrain_epochs=args.pretrain_epochs,
        pretrain_patience=args.pretrain_patience,
        pretrain_lr=args.pretrain_lr,
        seed=args.seed,
        pers_seed=args.pers_seed,
        **procedure.to_dict(),
    )
    cfg.validate()
    return cfg


def run(args: argparse.Namespace) -> int:
    from app.core.executors import quiet_stdout  # noqa: PLC0415

    # the whole command, not only the run: a Ray driver already connected in this process prints at any moment
    with quiet_stdout() as stdout:
        return _run(args, stdout)


def _run(args: argparse.Namespace, stdout: TextIO) -> int:
    from app.core import loso  # noqa: PLC0415

    if args.jobs < 1:
        print(f"odlstudio loso: --jobs must be >= 1, got {args.jobs}", file=sys.stderr)
        return 2
    from app.core.datasets import check_dataset_data  # noqa: PLC0415
    from app.core.executors import ExecutorError, make_executor  # noqa: PLC0415
    from app.core.outputs import check_output_dir  # noqa: PLC0415

    try:
        cfg = config_from_args(args)
        check_dataset_data(cfg.dataset, cfg.data_path)  # e.g. a HAPT npz given for --dataset wisdm2019
        check_output_dir(args.results, "--results")  # before hours of work
        executor = make_executor(args.executor, args.jobs, args.address)
        executor = None if executor.kind == "local" else executor  # local: run_loso's own pool, as before
        if executor is not None:
            executor.start()
        try:
            res = loso.run_loso(
                cfg,
                args.results,
                jobs=args.jobs,
                progress=not args.quiet,
                log=lambda m: print(f"odlstudio loso: task failed: {m}", file=sys.stderr),
                executor=executor,
            )
        finally:
            if executor is not None:
                executor.close()
    except (ValueError, OSError, ExecutorError) as exc:
        print(f"odlstudio loso: {exc}", file=sys.stderr)
        return 2
    summary = res.summary()
    paper = loso.paper_table_ii()
    table = loso.markdown_table(summary, paper)
    out_dir = Path(args.results)
    report = {
        "dataset": cfg.dataset,
        "settings": cfg.settings(),
        "settings_hash": cfg.settings_hash(),
        "data": str(cfg.data_path),
        "sizes": list(cfg.sizes),
        "modes": list(cfg.modes),
        "subjects": sorted({r["subject"] for r in res.rows}),
        "rows": len(res.rows),
        "summary": summary,
        "wall_s": round(res.wall_s, 1),
        "tasks_run": res.tasks_run,
        "tasks_resumed": res.tasks_skipped,
        "jobs": res.jobs,
        "errors": res.errors,
        "results_file": str(loso.results_path(out_dir, cfg.dataset)),
        "paper_table_ii_wisdm": paper,
    }
    (out_dir / f"loso_{cfg.dataset}_summary.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / f"loso_{cfg.dataset}.md").write_text(table + "\n", encoding="utf-8")
    if not args.no_plot and res.rows:
        try:
            png = plot_png(
                summary,
                out_dir / f"loso_{cfg.dataset}.png",
                f"LOSO macro-F1, {cfg.dataset} ({len(report['subjects'])} subjects)",
                paper,
            )
            report["plot"] = str(png)
        except Exception as exc:  # noqa: BLE001 - the plot is a convenience; the numbers are written
            print(f"odlstudio loso: plot not written: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps(report), file=stdout)
    else:
        print(table, file=stdout)
        print(
            f"{len(res.rows)} rows in {report['results_file']}; wall {res.wall_s:.0f} s for {res.tasks_run} tasks "
            f"({res.tasks_skipped} resumed), {res.jobs} jobs",
            file=stdout,
        )
    return 1 if res.errors else 0


# ------------------------------------------------------------------------------------------------
# plot (Qt's painter, offscreen: no plotting library needed)
# ------------------------------------------------------------------------------------------------

COLORS = {"none": (120, 120, 120), "tl": (31, 119, 180), "full": (214, 39, 40), "auto": (44, 160, 44)}
NAMES = {"none": "No Pers.", "tl": "TL", "full": "Full", "auto": "Auto"}


def plot_png(summary: dict, path: str | Path, title: str, paper: dict | None = None, size=(760, 480)) -> Path:
    """Mean macro-F1 (± standard-error band) per mode against T; the paper's WISDM values dashed."""
    import os  # noqa: PLC0415

    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QPointF, QRectF, Qt  # noqa: PLC0415
    from PySide6.QtGui import QColor, QFont, QGuiApplication, QImage, QPainter, QPen, QPolygonF  # noqa: PLC0415
    from PySide6.QtWidgets import QApplication  # noqa: PLC0415

    # fonts need an application; a QApplication (not a bare QGuiApplication), so that widgets can still be
    # made later in the same process (the app, a test session): Qt aborts on a QWidget under a QGuiApplication
    _app = QGuiApplication.instance() or QApplication([])  # noqa: F841
    W, H = size
    img = QImage(W, H, QImage.Format.Format_RGB32)
    img.fill(QColor(255, 255, 255))
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    left, right, top, bottom = 70, 150, 40, 50
    pw, ph = W - left - right, H - top - bottom
    sizes = sorted(summary["by_T"])
    vals = [
        summary["by_T"][T]["modes"][m]["macro_f1"]
        for T in sizes
        for m in summary["modes"]
        if summary["by_T"][T]["modes"][m]["macro_f1"] is not None
    ]
    if paper:
        vals += [v for col in paper.values() for v in col.values()]
    lo = max(0.0, min(vals) - 0.05) if vals else 0.0
    lo = float(int(lo * 10)) / 10
    hi = 1.0
    tmin, tmax = (min(sizes), max(sizes)) if len(sizes) > 1 else (sizes[0] - 10, sizes[0] + 10)

    def X(t: float) -> float:  # noqa: N802 - the plot's axes, as in the formulas
        return left + (t - tmin) / (tmax - tmin) * pw

    def Y(v: float) -> float:  # noqa: N802
        return top + (hi - v) / (hi - lo) * ph

    font = QFont()
    font.setPointSize(9)
    p.setFont(font)
    p.setPen(QPen(QColor(220, 220, 220), 1))
    steps = 10
    for i in range(steps + 1):
        v = lo + (hi - lo) * i / steps
        p.drawLine(QPointF(left, Y(v)), QPointF(left + pw, Y(v)))
    p.setPen(QPen(QColor(0, 0, 0), 1))
    p.drawRect(QRectF(left, top, pw, ph))
    for i in range(steps + 1):
        v = lo + (hi - lo) * i / steps
        p.drawText(
            QRectF(5, Y(v) - 8, left - 10, 16),
            int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
            f"{v:.2f}",
        )
    for T in sizes:
        p.drawText(QRectF(X(T) - 30, top + ph + 5, 60, 16), int(Qt.AlignmentFlag.AlignCenter), str(T))
    p.drawText(QRectF(left, H - 22, pw, 18), int(Qt.AlignmentFlag.AlignCenter), "input size T (samples at 20 Hz)")
    p.save()
    p.translate(14, top + ph / 2)
    p.rotate(-90)
    p.drawText(QRectF(-130, -8, 260, 16), int(Qt.AlignmentFlag.AlignCenter), "macro-F1 (mean over subjects)")
    p.restore()
    tf = QFont(font)
    tf.setPointSize(11)
    tf.setBold(True)
    p.setFont(tf)
    p.drawText(QRectF(left, 8, pw, 24), int(Qt.AlignmentFlag.AlignCenter), title)
    p.setFont(font)
    legend_y = top + 10
    for m in summary["modes"]:
        r, g, b = COLORS.get(m, (0, 0, 0))
        pts = [
            (T, summary["by_T"][T]["modes"][m]) for T in sizes if summary["by_T"][T]["modes"][m]["macro_f1"] is not None
        ]
        if not pts:
            continue

        def sem(s: dict) -> float:
            return s["macro_f1_std"] / max(1, s["n"]) ** 0.5

        band = QPolygonF(
            [QPointF(X(T), Y(min(hi, s["macro_f1"] + sem(s)))) for T, s in pts]
            + [QPointF(X(T), Y(max(lo, s["macro_f1"] - sem(s)))) for T, s in reversed(pts)]
        )
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(r, g, b, 40))
        p.drawPolygon(band)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor(r, g, b), 2))
        for (t0, s0), (t1, s1) in zip(pts, pts[1:]):
            p.drawLine(QPointF(X(t0), Y(s0["macro_f1"])), QPointF(X(t1), Y(s1["macro_f1"])))
        p.setBrush(QColor(r, g, b))
        for T, s in pts:
            p.drawEllipse(QPointF(X(T), Y(s["macro_f1"])), 3.5, 3.5)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawLine(QPointF(left + pw + 12, legend_y), QPointF(left + pw + 36, legend_y))
        p.setPen(QPen(QColor(0, 0, 0), 1))
        p.drawText(QPointF(left + pw + 42, legend_y + 4), NAMES.get(m, m))
        legend_y += 20
        if paper and m in paper:
            pen = QPen(QColor(r, g, b), 1.5)
            pen.setStyle(Qt.PenStyle.DashLine)
            p.setPen(pen)
            ppts = sorted(paper[m].items())
            for (t0, v0), (t1, v1) in zip(ppts, ppts[1:]):
                if tmin <= t0 <= tmax and tmin <= t1 <= tmax:
                    p.drawLine(QPointF(X(t0), Y(max(lo, v0))), QPointF(X(t1), Y(max(lo, v1))))
            p.drawLine(QPointF(left + pw + 12, legend_y), QPointF(left + pw + 36, legend_y))
            p.setPen(QPen(QColor(0, 0, 0), 1))
            p.drawText(QPointF(left + pw + 42, legend_y + 4), f"paper {NAMES.get(m, m)}")
            legend_y += 20
    p.setPen(QPen(QColor(90, 90, 90), 1))
    p.drawText(
        QRectF(left + pw + 8, legend_y + 6, right - 12, 110),
        int(Qt.TextFlag.TextWordWrap),
        "bands: ±1 standard error of the mean over subjects; dashed: paper Table II (WISDM v1.1)",
    )
    p.end()
    path = Path(path)
    if not img.save(str(path), "PNG"):
        raise OSError(f"cannot write {path}")
    return path
