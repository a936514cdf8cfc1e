"""``odlstudio make-assets``: regenerate ``assets/`` reproducibly from ``../shared/data``.

Writes
* ``assets/sample/wisdm2019_<id>_sample.csv`` (+ ``.json``): a real recording the emulated board
  streams — ``--sample-seconds`` of each WISDM-2019 activity A–E of one subject (default 1600),
  20 Hz, m/s², columns ``t_s,x,y,z,activity`` (CC BY 4.0, see assets/ATTRIBUTION.md);
* ``assets/models/paper_cnn_wisdm5_T<T>.keras`` (+ ``.json`` sidecar): the general models the app uses
  by default, pretrained on the other WISDM-2019 subjects (the sample subject is never seen, so the
  sidecar's ``sample_subject_accuracy`` is the honest "before personalization" score);
* ``assets/manifest.json``: sha256 and size of every generated file and the command that made it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from pathlib import Path

from app.commands._argtypes import seed

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SHARED = Path(os.environ.get("ODL_SHARED", ROOT.parent / "shared"))
WISDM2019_DIR = "data/wisdm2019_phone_accel"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "make-assets",
        help="regenerate assets/ (sample recording, general models)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--shared", default=str(DEFAULT_SHARED), help=f"the shared folder (default {DEFAULT_SHARED})")
    p.add_argument("--out", default=str(ROOT / "assets"), help="assets folder (default: the repository's assets/)")
    p.add_argument(
        "--sizes", default="20,40,60,80,100", help="input sizes T of the general models (default 20,40,60,80,100)"
    )
    p.add_argument("--epochs", type=int, default=40, help="pretraining epochs per model (default 40)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument(
        "--sample-subject", default="1600", help="WISDM-2019 subject for the sample recording (default 1600)"
    )
    p.add_argument("--sample-seconds", type=float, default=90.0, help="seconds per activity in the sample (default 90)")
    p.add_argument("--skip-models", action="store_true", help="only write the sample recording")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_sample(shared: Path, out: Path, subject: str, seconds: float) -> list[Path]:
    """The sample recording CSV + JSON; returns the written paths."""
    import numpy as np  # noqa: PLC0415

    from app.core.datasets import DEFAULT_WISDM_ACTIVITIES, load_wisdm  # noqa: PLC0415

    src = shared / WISDM2019_DIR / "raw" / "phone" / "accel" / f"data_{subject}_accel_phone.txt"
    rs = load_wisdm(src, activities=DEFAULT_WISDM_ACTIVITIES, rate=20.0)
    out.mkdir(parents=True, exist_ok=True)
    n_per = int(round(seconds * 20.0))
    rows, blocks = [], []
    t0 = 0
    for act in DEFAULT_WISDM_ACTIVITIES:
        segs = sorted((s for s in rs.segments if s.activity == act), key=lambda s: s.order)
        if not segs:
            raise ValueError(f"{src}: subject {subject} has no {act!r} data")
        data = np.concatenate([s.data for s in segs])[:n_per]
        blocks.append(
            {
                "activity": act,
                "start_s": t0 / 20.0,
                "end_s": (t0 + len(data)) / 20.0,
                "first_line": segs[0].first_line,
                "samples": int(len(data)),
            }
        )
        for i, (x, y, z) in enumerate(data):
            rows.append(f"{(t0 + i) / 20.0:.2f},{x:.5f},{y:.5f},{z:.5f},{act}")
        t0 += len(data)
    csv = out / f"wisdm2019_{subject}_sample.csv"
    csv.write_text("t_s,x,y,z,activity\n" + "\n".join(rows) + "\n", encoding="utf-8")
    meta = {
        "source": f"{WISDM2019_DIR}/raw/phone/accel/{src.name}",
        "dataset": "WISDM Smartphone and Smartwatch Activity and Biometrics Dataset (Weiss 2019), UCI id 507",
        "license": "CC BY 4.0",
        "subject": subject,
        "rate_hz": 20.0,
        "native_rate_hz": round(float(rs.segments[0].native_rate), 3),
        "units": "m/s^2 (gravity included), phone accelerometer",
        "columns": ["t_s", "x", "y", "z", "activity"],
        "blocks": blocks,
        "note": "first samples of each activity block, activities concatenated A..E; t_s is re-based and continuous",
    }
    side = csv.with_suffix(".json")
    side.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return [csv, side]


def write_models(
    shared: Path, out: Path, sizes: list[int], epochs: int, seed: int, sample_subject: str, quiet: bool
) -> list[Path]:
    """Pretrain and save the general models; returns the written paths."""
    from app.commands.pretrain import pretrain  # noqa: PLC0415
    from app.core.datasets import load_wisdm, make_windows  # noqa: PLC0415
    from app.core.models import evaluate, export_keras, keras_predict  # noqa: PLC0415

    data = shared / WISDM2019_DIR
    out.mkdir(parents=True, exist_ok=True)
    sample = load_wisdm(data, subjects=[sample_subject], rate=20.0)
    written: list[Path] = []
    for T in sizes:
        log = (lambda m: None) if quiet else (lambda m: print(m, file=sys.stderr))
        model, history, _ = pretrain(
            [data],
            T,
            epochs=epochs,
            seed=seed,
            labels="wisdm5",
            val_fraction=0.2,
            exclude_subjects=[sample_subject],
            progress=not quiet,
            log=log,
        )
        ws = make_windows(sample, T, T, model.classes)
        rep = evaluate(ws.y, keras_predict(model, ws.x), model.classes)
        model.meta["training_data"] = [f"{WISDM2019_DIR} (WISDM-2019 phone accelerometer, CC BY 4.0)"]
        extra = {
            "sample_subject": sample_subject,
            "sample_subject_accuracy": rep["accuracy"],
            "sample_subject_macro_f1": rep["macro_f1"],
            "generated_by": f"odlstudio make-assets --sizes {T} --epochs {epochs} --seed {seed}",
        }
        path = out / f"paper_cnn_wisdm5_T{T}.keras"
        export_keras(model, path, extra)
        written += [path, path.with_suffix(".json")]
        print(
            f"T={T}: held-out val accuracy {model.meta.get('val_accuracy')}, sample subject {sample_subject} "
            f"accuracy {rep['accuracy']} macro-F1 {rep['macro_f1']} -> {path}"
        )
    return written


def _update_manifest(out: Path, paths: list[Path], command: str) -> Path:
    manifest = out / "manifest.json"
    entries = {}
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
        except (json.JSONDecodeError, OSError):
            entries = {}
    for p in paths:
        rel = str(p.relative_to(out))
        entries[rel] = {"bytes": p.stat().st_size, "sha256": _sha256(p), "command": command}
    manifest.write_text(json.dumps({"files": dict(sorted(entries.items()))}, indent=2) + "\n", encoding="utf-8")
    return manifest


def run(args: argparse.Namespace) -> int:
    shared = Path(args.shared)
    out = Path(args.out)
    if not (args.sample_seconds > 0 and math.isfinite(args.sample_seconds)):
        print(
            f"odlstudio make-assets: --sample-seconds must be a finite number > 0, got {args.sample_seconds:g}",
            file=sys.stderr,
        )
        return 2
    if args.epochs < 1:
        print(f"odlstudio make-assets: --epochs must be >= 1, got {args.epochs}", file=sys.stderr)
        return 2
    if not (shared / WISDM2019_DIR).is_dir():
        print(f"odlstudio make-assets: {shared / WISDM2019_DIR} not found (use --shared)", file=sys.stderr)
        return 2
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        print(f"odlstudio make-assets: --sizes must be comma-separated integers, got {args.sizes!r}", file=sys.stderr)
        return 2
    if any(not 10 <= T <= 1000 for T in sizes):
        print(f"odlstudio make-assets: --sizes must be between 10 and 1000, got {sizes}", file=sys.stderr)
        return 2
    from app.core.datasets import DatasetError  # noqa: PLC0415
    from app.core.models import ModelError  # noqa: PLC0415
    from app.core.outputs import OutputError, check_output_dir  # noqa: PLC0415

    try:  # before minutes of pretraining: a file in the way, a read-only or full disk are said now
        check_output_dir(out, "--out")
    except OutputError as exc:
        print(f"odlstudio make-assets: {exc}", file=sys.stderr)
        return 2
    command = "odlstudio make-assets " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "odlstudio make-assets"
    try:
        written = write_sample(shared, out / "sample", args.sample_subject, args.sample_seconds)
        if not args.skip_models:
            written += write_models(
                shared, out / "models", sizes, args.epochs, args.seed, args.sample_subject, args.quiet
            )
    except (DatasetError, ModelError, ValueError) as exc:
        print(f"odlstudio make-assets: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # --out not writable (a file in the way, permissions, disk full)
        print(
            f"odlstudio make-assets: --out {out}: cannot write ({exc.strerror or exc}: {exc.filename or out})",
            file=sys.stderr,
        )
        return 2
    manifest = _update_manifest(out, written, command)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {len(written)} files and {manifest}; assets/ is now {total / 1e6:.2f} MB")
    return 0
