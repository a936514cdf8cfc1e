"""``odlstudio personalize``: personalize a general model on a (virtual or real) board, without the GUI.

Examples::

    odlstudio personalize --data ../shared/data/wisdm2019_phone_accel/raw/phone/accel/data_1600_accel_phone.txt --json
    odlstudio personalize --data user.txt --input-size 40 --modes none,full --epochs 10 --out out/
    odlstudio personalize --data user.txt --board /dev/ttyACM0 --power /dev/ttyACM1

The user's recording (WISDM text v1.1 or 2019, the app's WISDM-text or windows ``.npz`` export, or a
HAPT npz with ``--user``) is resampled to the model's rate, mapped to its classes (``--activities``),
split chronologically per activity into local train (``--train-fraction``, stride T/2) and test
(stride T).  Then, through NUCLEO protocol v2 (docs/protocol.md): upload the general model and the
training windows, run a round per mode (``--warmup-epochs`` on the last layer, then ``--epochs`` of TL or
Full; by default the robust round: the last tenth of each activity validates and the board keeps the best
pass), download the weights and evaluate before/after on the test windows; ``recommended`` is the mode
kept (none, TL or Full, ``--choose``).  A v1 board runs the plain round, with a warning.  Time
per batch comes from the board, power and energy per batch from the LPM01A samples between the batch's
D7 edges.

Without ``--board`` an in-process virtual bench runs (a NUCLEO + an emulated LPM01A, ``--time-scale``
simulated seconds per wall second); its NUCLEO is the ODL firmware under QEMU when qemu-system-arm and a
built firmware are there, as in the app's bench, else the Python emulated board (``--bench-board``).  ``--model`` defaults to the shipped general model
``assets/models/paper_cnn_wisdm5_T<T>.keras`` (``odlstudio make-assets``).

Output: progress on stderr; a summary, or with ``--json`` exactly one JSON object
``{"user", "input_size", "results": {"none": {"macro_f1", "accuracy"}, "tl": {..., "batches",
"time_per_batch_s", "energy_per_batch_mj"}, "full": {...}}, ...}``.  ``--out DIR`` writes the
personalized models (``<mode>/*.keras``, ``.tflite``, C header) and ``report.json``.
Exit status: 0 ok, 1 the board or the power shield failed, 2 bad arguments or data.
"""

from __future__ import annotations

import argparse
import json
import sys

from app.commands._argtypes import finite_float, fraction, int_range, lpm01a_freq, seed
from app.commands._procedure import add_procedure_args, procedure_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "personalize",
        help="personalize a general model on the board and measure time/energy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", required=True, metavar="FILE|DIR", help="the user's recording (WISDM text, app export, HAPT npz)"
    )
    p.add_argument("--user", default=None, help="subject id when --data holds several")
    p.add_argument(
        "--model", default=None, help="general model (.keras/.h5/.npz); default: the shipped one for --input-size"
    )
    p.add_argument(
        "--input-size",
        "-T",
        type=int_range(10, 1000),
        default=None,
        metavar="T",
        help="window length T (default: the model's, or 20 with the shipped models)",
    )
    p.add_argument(
        "--activities",
        default=None,
        help="activities mapped to the model's classes (names compared case-insensitively): comma list of "
        "classes, or class=activity+activity (default: every class of the model gathers the activity of its "
        "name; Stationary also sitting+standing, Stairs also upstairs+downstairs)",
    )
    p.add_argument("--modes", default="none,tl,full", help="comma list of none, tl, full (default all)")
    p.add_argument("--epochs", type=int_range(0, 10_000), default=5, help="epochs after the warm-up (default 5)")
    p.add_argument(
        "--warmup-epochs",
        type=int_range(0, 10_000),
        default=2,
        help="warm-up epochs on the last layer (default 2, as the paper and the Training panel: round_config.WARMUP_EPOCHS)",
    )
    p.add_argument(
        "--lr", type=finite_float(0.0, 10.0, lo_open=True), default=0.01, help="SGD learning rate (default 0.01)"
    )
    p.add_argument("--batch", type=int_range(1, 1024), default=32, help="batch size, 1..1024 (default 32)")
    p.add_argument(
        "--train-fraction", type=fraction, default=0.6, help="local training share of each activity (default 0.6)"
    )
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument(
        "--board", default=None, metavar="URL", help="NUCLEO port or pyserial URL (default: in-process virtual bench)"
    )
    p.add_argument(
        "--bench-board",
        choices=("auto", "qemu", "python"),
        default="auto",
        help="without --board, the in-process virtual bench's NUCLEO: 'qemu' runs the ODL firmware under "
        "qemu-system-arm (its batch times are measured), 'python' the Python emulated board (its times come from "
        "the estimator); 'auto' (default) takes QEMU when qemu-system-arm and a built firmware are available",
    )
    p.add_argument(
        "--power",
        default=None,
        metavar="URL",
        help="LPM01A port or URL (default: the virtual bench's; none with a real --board unless given)",
    )
    p.add_argument("--no-power", action="store_true", help="do not capture power")
    p.add_argument(
        "--power-freq",
        type=lpm01a_freq,
        default=100,
        help="LPM01A sampling rate in Hz: 1, 2, 5, 10, 20, 50, 100 (default), 200, 500, 1k ... 100k",
    )
    p.add_argument(
        "--time-scale",
        type=finite_float(0.001, 100_000.0),
        default=500.0,
        help="virtual bench: simulated s per wall s, 0.001..100000 (default 500)",
    )
    p.add_argument(
        "--timeout", type=finite_float(0.05, 600.0), default=3.0, help="per-request timeout in s (default 3)"
    )
    p.add_argument("--out", default=None, metavar="DIR", help="write the personalized models and report.json here")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier run in --out (its models of modes not run again are removed)",
    )
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_procedure_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.core.personalize import (  # noqa: PLC0415
        PersonalizeConfig,
        PersonalizeError,
        earlier_outputs,
        personalize,
        write_outputs,
    )

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    try:
        procedure = procedure_from_args(args)
    except ValueError as exc:
        print(f"odlstudio personalize: {exc}", file=sys.stderr)
        return 2
    cfg = PersonalizeConfig(
        procedure=procedure,
        data=args.data,
        model=args.model,
        input_size=args.input_size,
        user=args.user,
        activities=args.activities,
        modes=tuple(m.strip().lower() for m in args.modes.split(",") if m.strip()),
        epochs=args.epochs,
        warmup_epochs=args.warmup_epochs,
        lr=args.lr,
        batch=args.batch,
        train_fraction=args.train_fraction,
        seed=args.seed,
        board_url=args.board,
        bench_board=args.bench_board,
        power_url=args.power,
        power=not args.no_power,
        power_freq=args.power_freq,
        time_scale=args.time_scale,
        timeout=args.timeout,
    )
    from app.core.outputs import OutputError, check_output_dir, rescue_dir  # noqa: PLC0415

    try:
        cfg.validate()
        if args.out:  # before minutes of training: an existing file, a read-only or full disk are said now
            check_output_dir(args.out, "--out")
            if not args.overwrite and earlier_outputs(args.out) is not None:
                raise OutputError(
                    f"--out {args.out}: holds the results of an earlier run (report.json); give a new folder, "
                    "or --overwrite to replace them"
                )
    except (PersonalizeError, OutputError) as exc:
        print(f"odlstudio personalize: {exc}", file=sys.stderr)
        return 2
    from app.core.models import ExportError  # noqa: PLC0415

    out_error = ""
    try:
        result = personalize(cfg, log=log)
        if args.out:
            try:
                written = write_outputs(result, args.out)
                log(
                    f"wrote {args.out}/report.json and " + ", ".join(f"{m}: {len(f)} files" for m, f in written.items())
                )
            except ExportError as exc:  # one format failed (e.g. the TFLite converter crashed): the rest is there
                out_error = str(exc)
                print(f"odlstudio personalize: {out_error}", file=sys.stderr)
            except (OSError, ValueError) as exc:  # the disk filled up meanwhile: keep the results elsewhere
                out_error = f"cannot write the results to {args.out} ({exc})"
                try:
                    kept = rescue_dir("personalize")
                    write_outputs(result, kept)
                    out_error += f"; they were saved to {kept} instead"
                except (OSError, ValueError) as exc2:
                    out_error += f", nor to a temporary folder ({exc2}); the summary below is all that is left"
                print(f"odlstudio personalize: {out_error}", file=sys.stderr)
    except PersonalizeError as exc:
        print(f"odlstudio personalize: {exc}", file=sys.stderr)
        return 2
    except (OSError, TimeoutError, RuntimeError) as exc:
        print(f"odlstudio personalize: board/power failure: {exc}", file=sys.stderr)
        return 1
    if args.json:
        obj = result.json_object()
        if out_error:
            obj["out_error"] = out_error
        print(json.dumps(obj))
    else:
        rep = result.report
        print(f"user {rep['user']}, T={rep['input_size']}:")
        board = rep.get("board") or {}
        if board and not board.get("odl_firmware"):
            print(
                f"  (the board does not run the ODL firmware: it takes its batch times and current from the estimator's "
                f"{board.get('build')!r} profile, so they are not measurements)"
            )
        for mode, r in rep["results"].items():
            line = f"  {mode:<5} macro-F1 {r['macro_f1']:.3f}  accuracy {r['accuracy']:.3f}"
            if "batches" in r:
                line += f"  {r['batches']} batches  {r['time_per_batch_s']:.3g} s/batch"
                if r.get("energy_per_batch_mj") is not None:
                    line += f"  {r['energy_per_batch_mj']:.4g} mJ/batch  {r['power_mw']:.3g} mW"
            v = r.get("validation")
            if v:
                line += f"  (validation F1 {v['kept']['macro_f1']:.3f}, kept epoch {v['kept']['epoch']})"
            print(line)
        if rep.get("recommended"):
            rule = (rep.get("settings", {}).get("procedure") or {}).get("choose", "strict")
            if rep["recommended"] == "none" and rule == "strict":
                why = "the personalized modes did not beat the general model's macro-F1 on the validation windows"
            elif rep["recommended"] == "none" and rule == "agree":
                why = "TL did not beat the general model's macro-F1 on the validation windows (Full only with TL)"
            else:
                why = "best macro-F1 on the validation windows"
            print(f"  recommended: {rep['recommended']} ({why})")
    return 1 if out_error else 0
