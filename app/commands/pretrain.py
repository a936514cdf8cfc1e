"""``odlstudio pretrain``: pretrain the paper's 1D-CNN (a *general* model) on public multi-user data.

Example::

    odlstudio pretrain --data ../shared/data/wisdm2019_phone_accel --input-size 20 --epochs 30 \\
        --seed 0 --out general_T20.keras

Data are resampled to ``--rate`` Hz (default 20), activities mapped to ``--labels`` (a label set
name such as ``wisdm5``/``hapt6``/``common4`` or a comma list; ``class=a+b`` gathers a and b), windows of T samples with stride T/2.
A few subjects are held out (``--val-subjects`` ids or ``--val-fraction``) to choose the best epoch and report accuracy and
macro-F1; the model and a JSON sidecar (classes, T, rate, preprocessing, data, seed, scores) are
written to ``--out``.  Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from app.commands._argtypes import finite_float, int_range, seed


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain a general 1D-CNN on public multi-user data (WISDM, HAPT)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="DIR_OR_FILE",
        help="WISDM text file/folder, HAPT npz/folder, or a folder holding several (repeatable)",
    )
    p.add_argument(
        "--input-size",
        "-T",
        type=int_range(10, 1000),
        required=True,
        metavar="T",
        help="window length in samples (10..1000)",
    )
    p.add_argument("--epochs", type=int_range(1, 10_000), default=30, help="training epochs (default 30)")
    p.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    p.add_argument(
        "--out", required=True, help="output model file (.keras or .h5); a .json sidecar is written beside it"
    )
    p.add_argument(
        "--labels",
        default=None,
        help="label set (wisdm5, hapt6, common4, wisdm6) or comma-separated activities, where class=a+b "
        "gathers activities a and b into one class (e.g. moving=walking+jogging,sitting,standing); "
        "default wisdm5 when WISDM data is given, else hapt6",
    )
    p.add_argument(
        "--rate",
        type=finite_float(1.0, 1000.0),
        default=20.0,
        help="sample rate in Hz the data is resampled to (default 20)",
    )
    p.add_argument(
        "--val-subjects",
        default="",
        help="comma list of held-out subject ids (default: --val-fraction of the subjects, seeded)",
    )
    p.add_argument(
        "--val-fraction",
        type=finite_float(0.0, 1.0, hi_open=True),
        default=0.2,
        help="fraction of subjects held out for validation when --val-subjects is not given (default 0.2; 0 = none)",
    )
    p.add_argument("--exclude-subjects", default="", help="comma list of subject ids never used (e.g. the demo user)")
    p.add_argument("--batch-size", type=int_range(1, 4096), default=64, help="batch size, 1..4096 (default 64)")
    p.add_argument(
        "--lr", type=finite_float(0.0, 10.0, lo_open=True), default=1e-3, help="Adam learning rate (default 1e-3)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def resolve_subjects(subjects: Sequence[str], ids: Sequence[str], what: str) -> list[str]:
    """Subject ids as they appear in the data; ``1600`` also matches a prefixed ``wisdm2019/1600``."""
    out: list[str] = []
    for raw in ids:
        sid = str(raw).strip()
        if not sid:
            continue
        hits = [s for s in subjects if s == sid] or [s for s in subjects if s.split("/")[-1] == sid]
        if not hits:
            raise ValueError(f"{what}: subject {sid!r} is not in the data (subjects: {', '.join(subjects)})")
        out += hits
    return out


def choose_val_subjects(
    subjects: Sequence[str], ids: str | Sequence[str] = "", fraction: float = 0.2, seed: int = 0
) -> list[str]:
    """Held-out subjects: the given ids (comma list), else a seeded random ``fraction`` of them
    (at least one, never all)."""
    import numpy as np  # noqa: PLC0415

    id_list = ids.split(",") if isinstance(ids, str) else list(ids)
    if any(str(i).strip() for i in id_list):
        return resolve_subjects(subjects, id_list, "--val-subjects")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return []
    k = max(1, min(int(round(fraction * len(subjects))), len(subjects) - 1))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(list(subjects), k, replace=False).tolist())


def pretrain(
    data: Sequence[str | Path],
    T: int,
    epochs: int = 30,
    seed: int = 0,
    labels: str | None = None,
    rate: float = 20.0,
    val_subjects: str | Sequence[str] = "",
    val_fraction: float = 0.2,
    exclude_subjects: Sequence[str] = (),
    batch_size: int = 64,
    lr: float = 1e-3,
    progress=True,
    log=print,
):
    """Load, window, train; returns ``(LoadedModel, history, info)``.  Raises ``DatasetError``/
    ``ModelError``/``ValueError`` with a message naming the bad argument or file."""
    from app.core import datasets as ds  # noqa: PLC0415
    from app.core.models import ModelError, train_paper_cnn  # noqa: PLC0415

    if not 10 <= int(T) <= 1000:
        raise ValueError(f"--input-size must be between 10 and 1000 samples, got {T}")
    sets = [ds.load_dataset(p, activities=None, rate=rate) for p in data]
    rs = sets[0] if len(sets) == 1 else ds.RecordingSet.concat(sets, prefix_subjects=True)
    has_wisdm = any(s.dataset.startswith("wisdm") for s in rs.segments)
    label_spec = labels or ("wisdm5" if has_wisdm else "hapt6")
    rs = rs.select(label_spec)
    classes = ds.activity_targets(label_spec)  # "moving=walking+jogging" is the class "moving"
    excluded = resolve_subjects(rs.subjects(), [s for s in exclude_subjects if s.strip()], "--exclude-subjects")
    if excluded:
        rs = rs.without_subjects(excluded)
    subjects = rs.subjects()
    if len(subjects) < 2:
        raise ValueError(f"need at least 2 subjects to pretrain, found {len(subjects)}")
    val_ids = choose_val_subjects(subjects, val_subjects, val_fraction, seed)
    train_rs = rs.without_subjects(val_ids)
    train_ws = ds.make_windows(train_rs, T, max(1, T // 2), classes)
    val_ws = ds.make_windows(rs.for_subjects(val_ids), T, T, classes) if val_ids else None
    if len(train_ws) == 0:
        raise ModelError(f"no training windows of T={T} at {rate:g} Hz in {', '.join(map(str, data))}")
    for c, n in train_ws.counts().items():
        if n == 0:
            raise ValueError(f"class {c!r} has no training windows (check --labels / --exclude-subjects)")
    log(f"data: {rs.summary()}")
    log(f"train: {len(train_rs.subjects())} subjects, {len(train_ws)} windows {train_ws.counts()}")
    if val_ws is not None:
        log(f"validation: subjects {', '.join(val_ids)}, {len(val_ws)} windows")
    info = {
        "architecture": "paper_cnn",
        "rate_hz": float(rate),
        "units": "m/s^2",
        "label_set": label_spec if isinstance(label_spec, str) else ",".join(classes),
        "training_data": [str(p) for p in data],
        "train_subjects": train_rs.subjects(),
        "val_subjects": val_ids,
        "excluded_subjects": excluded,
        "window_stride_train": max(1, T // 2),
        "skipped_records": len(rs.skipped),
    }
    model, history = train_paper_cnn(
        train_ws.x,
        train_ws.y,
        classes,
        (val_ws.x, val_ws.y) if val_ws is not None and len(val_ws) else None,
        epochs=epochs,
        seed=seed,
        batch_size=batch_size,
        lr=lr,
        progress=progress,
        meta=info,
    )
    if "val" in history:
        model.meta["val_accuracy"] = history["val"]["accuracy"]
        model.meta["val_macro_f1"] = history["val"]["macro_f1"]
        model.meta["best_epoch"] = history["best_epoch"]
    return model, history, info


def run(args: argparse.Namespace) -> int:
    from app.core.datasets import DatasetError  # noqa: PLC0415
    from app.core.models import ModelError, export_h5, export_keras  # noqa: PLC0415
    from app.core.outputs import OutputError, check_output_file, rescue_dir  # noqa: PLC0415

    out = Path(args.out)
    if args.epochs < 1:
        print(f"odlstudio pretrain: --epochs must be >= 1, got {args.epochs}", file=sys.stderr)
        return 2
    try:  # before minutes of training: a folder, a read-only or full disk are said now
        check_output_file(out, "--out", (".keras", ".h5"))
        check_output_file(out.with_suffix(".json"), "--out (its .json sidecar)")
    except OutputError as exc:
        print(f"odlstudio pretrain: {exc}", file=sys.stderr)
        return 2
    try:
        model, history, _ = pretrain(
            args.data,
            args.input_size,
            args.epochs,
            args.seed,
            args.labels,
            args.rate,
            args.val_subjects,
            args.val_fraction,
            [s for s in args.exclude_subjects.split(",")],
            args.batch_size,
            args.lr,
            progress=not args.quiet,
            log=lambda m: print(m, file=sys.stderr),
        )
    except (DatasetError, ModelError, ValueError) as exc:
        print(f"odlstudio pretrain: {exc}", file=sys.stderr)
        return 2
    export = export_keras if out.suffix.lower() == ".keras" else export_h5
    try:
        export(model, out)
    except (OSError, ModelError) as exc:  # the disk filled up or went read-only while training: keep the model
        try:
            kept = rescue_dir("pretrain") / out.name
            export(model, kept)
        except (OSError, ModelError, OutputError) as exc2:
            print(f"odlstudio pretrain: cannot write {out} ({exc}), nor a copy elsewhere ({exc2})", file=sys.stderr)
            return 1
        print(
            f"odlstudio pretrain: cannot write {out} ({exc}); the trained model was saved to {kept} "
            f"(and {kept.with_suffix('.json')}) instead",
            file=sys.stderr,
        )
        return 1
    val = history.get("val")
    score = f"; held-out accuracy {val['accuracy']:.3f}, macro-F1 {val['macro_f1']:.3f}" if val else ""
    print(f"wrote {out} and {out.with_suffix('.json')} (classes {', '.join(model.classes)}{score})")
    return 0
