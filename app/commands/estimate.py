"""``odlstudio estimate``: memory, operations, time, power and energy of on-device training, and the
recommended (input size, trainable set, epochs) under RAM / time / energy budgets.

Examples::

    odlstudio estimate --arch paper --input-sizes 20,40,60,80,100 --modes tl,full --preset paper
    odlstudio estimate --model ign_wl_24.h5 --modes tl,full --preset l496-80mhz --json
    odlstudio estimate --energy-mj 300 --power-source charging --windows 64

Modes are separated by commas; an explicit trainable set joins layer names with '+'
(``--modes tl,dense1+dense2``).  Time and energy budgets are per personalization round
(epochs × windows).  With ``--json`` exactly one JSON object is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.commands._argtypes import int_list, int_range, mode_list, nonneg, positive

#: estimator.recommend.ACCOUNTINGS, repeated so that building the parser imports no numpy (tested equal)
ACCOUNTINGS = ("paper", "peak", "firmware")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "estimate",
        help="estimate memory/time/power/energy of on-device training and recommend a configuration",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--arch",
        default="paper",
        help="'paper' (the paper's 1D-CNN) or an architecture JSON file (estimator.arch.Arch.to_json)",
    )
    src.add_argument("--model", metavar="FILE", help="a Keras model (.h5 or .keras) to import")
    p.add_argument(
        "--classes", type=int_range(2, 1000), default=None, help="classes of the paper model (--arch paper; default 6)"
    )
    p.add_argument(
        "--input-sizes",
        type=int_list,
        default=None,
        help="window lengths T (default 20,40,60,80,100 for the paper model; the model's own for --model)",
    )
    p.add_argument(
        "--modes",
        type=mode_list,
        default=mode_list("tl,full"),
        help="trainable sets: tl, full, last or layerA+layerB (default tl,full)",
    )
    p.add_argument(
        "--preset",
        "--profile",
        dest="profile",
        default="paper",
        help="device profile: paper, l496-80mhz, l496-80mhz-optimized, a saved board name or a .json file",
    )
    p.add_argument(
        "--profile-dir", default=None, help="directory of saved per-board profiles (default: the app's user data dir)"
    )
    p.add_argument(
        "--clock-mhz", type=positive, default=None, help="run the profile at this clock (cycles/op unchanged)"
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--epochs",
        type=int_list,
        default=[1, 2, 3, 5, 10],
        help="epoch counts the recommender considers (default 1,2,3,5,10)",
    )
    win = p.add_mutually_exclusive_group()
    win.add_argument(
        "--windows",
        type=int_range(1, 10_000_000),
        default=None,
        help="local training windows per epoch (default: one batch)",
    )
    win.add_argument(
        "--recording-s", type=positive, default=None, help="labelled recording length; windows = seconds·rate/T"
    )
    p.add_argument("--rate-hz", type=positive, default=20.0, help="sample rate for --recording-s (default 20)")
    p.add_argument("--ram-kib", type=nonneg, default=None, help="device RAM (default: the profile's, 320 KiB)")
    p.add_argument(
        "--reserve-kib", type=nonneg, default=None, help="RAM kept for the firmware (default: the profile's, 24 KiB)"
    )
    p.add_argument("--energy-mj", type=nonneg, default=None, help="energy budget per round (mJ)")
    p.add_argument("--time-s", type=nonneg, default=None, help="time budget per round (s)")
    p.add_argument("--power-source", choices=("battery", "charging"), default="battery")
    p.add_argument(
        "--accuracy",
        default="st",
        help="accuracy model: st or wisdm (Table II priors), loso (the shipped LOSO measurements, the Estimator "
        "panel's prior) or a JSON file of measured F1 [{input_size, mode, [epochs], f1}, ...]",
    )
    p.add_argument(
        "--robust",
        action="store_true",
        help="cost the robust round the app and personalize run (a tenth of the windows validate, the board keeps "
        "the best epoch's weights): the Estimator panel's figures",
    )
    p.add_argument(
        "--accounting",
        choices=ACCOUNTINGS,
        default="paper",
        help="memory figure checked against the RAM budget: paper (Table III), peak (liveness) or firmware (the ODL "
        "firmware's arena plan, what it reports as mem_bytes)",
    )
    p.add_argument("--dataset-in-ram", action="store_true", help="count the stored local dataset against the RAM")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


class _UsageError(Exception):
    pass


def _load_accuracy(spec: str):
    if spec in ("st", "wisdm"):
        return spec
    if spec == "loso":  # the shipped measurements (Table II when they are missing), as the desktop app
        from estimator.recommend import default_accuracy

        return default_accuracy()
    path = Path(spec)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _UsageError(f"--accuracy: cannot read {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise _UsageError(f"--accuracy: {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(data, list):
        raise _UsageError(f"--accuracy: {path} must hold a JSON list of {{input_size, mode, [epochs], f1}} objects")
    if not data:  # else the recommendation would quietly use the paper's table instead of the user's figures
        raise _UsageError(f"--accuracy: {path} holds an empty list: no measured F1 to use")
    table = {}
    for i, item in enumerate(data):
        try:
            key = (int(item["input_size"]), str(item["mode"])) + (
                (int(item["epochs"]),) if item.get("epochs") is not None else ()
            )
            f1 = float(item["f1"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _UsageError(f"--accuracy: {path} item {i}: needs input_size, mode, f1 ({exc})") from exc
        if not 0.0 <= f1 <= 1.0:
            raise _UsageError(f"--accuracy: {path} item {i}: f1 {f1} is outside 0..1")
        table[key] = f1
    from estimator.recommend import MeasuredAccuracy

    return MeasuredAccuracy(table)


def _arch_source(args):
    """Returns (factory T -> Arch, default input sizes, description, is_model)."""
    from estimator.arch import Arch, ArchError, paper_cnn

    if args.classes is not None and (args.model or args.arch not in (None, "paper")):
        # (a model or architecture file has its own classes: ignoring the option would estimate another model)
        given = f"--model {args.model}" if args.model else f"--arch {args.arch}"
        raise _UsageError(f"--classes is for --arch paper only; {given} has its own classes")
    if args.model:
        path = Path(args.model)
        if not path.exists():  # (a folder, a device: the importer says what it is, as for personalize)
            raise _UsageError(f"--model: file not found: {path}")
        try:
            from app.core.models import load_model
        except ImportError as exc:
            raise _UsageError(
                f"--model needs the model importer app.core.models, which is not available in this build ({exc})"
            ) from exc
        try:
            loaded = load_model(path)
        except Exception as exc:  # importer errors name the file and the layer
            said = str(exc) if str(exc).startswith(f"{path}: ") else f"cannot load {path}: {exc}"
            raise _UsageError(f"--model: {said}") from exc
        arch = loaded.arch
        return arch.with_input_size, [arch.input_size], f"{arch.name} ({path.name})", True
    if args.arch == "paper":
        classes = 6 if args.classes is None else args.classes
        return (lambda T: paper_cnn(T, classes)), [20, 40, 60, 80, 100], "paper 1D-CNN", False
    path = Path(args.arch)
    try:
        arch = Arch.from_json(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # a binary or non-JSON file
        if isinstance(exc, ArchError):
            raise _UsageError(f"--arch: {path}: {exc}") from exc
        raise _UsageError(
            f"--arch {path}: not an architecture JSON file ({type(exc).__name__}: {str(exc)[:120]})"
        ) from exc
    except OSError as exc:
        raise _UsageError(
            f"--arch: '{args.arch}' is neither 'paper' nor a readable architecture JSON file ({exc})"
        ) from exc
    except ArchError as exc:
        raise _UsageError(f"--arch: {path}: {exc}") from exc
    return arch.with_input_size, [arch.input_size], f"{arch.name} ({path.name})", False


def _default_profile_dir():
    try:
        import platformdirs

        return Path(platformdirs.user_data_dir("odlstudio", appauthor=False)) / "profiles"
    except Exception:  # noqa: BLE001 - platformdirs missing: saved profiles simply unavailable
        return None


def run(args) -> int:
    from estimator.arch import ArchError
    from estimator.core import estimate
    from estimator.memory import robust_round_bytes
    from estimator.profiles import ProfileError, get_profile
    from estimator.recommend import n_windows_from_recording, recommend

    try:
        if args.batch_size < 1:
            raise _UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.windows is not None and args.windows < 1:
            raise _UsageError(f"--windows must be >= 1, got {args.windows}")
        if args.profile_dir is not None and not Path(args.profile_dir).is_dir():
            what = "is a file, not" if Path(args.profile_dir).exists() else "no such folder; give"
            raise _UsageError(f"--profile-dir {args.profile_dir}: {what} a folder of saved board profiles")
        profile_dir = args.profile_dir or _default_profile_dir()
        try:
            profile = get_profile(args.profile, profile_dir)
        except ProfileError as exc:
            raise _UsageError(f"--preset: {exc}") from exc
        if args.clock_mhz is not None:
            profile = profile.with_clock(args.clock_mhz * 1e6)
        factory, default_sizes, desc, is_model = _arch_source(args)
        sizes = args.input_sizes or default_sizes
        accuracy = _load_accuracy(args.accuracy)
        n_windows = n_windows_from_recording(args.recording_s, args.rate_hz) if args.recording_s else args.windows
        ram_kib = profile.ram_bytes / 1024 if args.ram_kib is None else args.ram_kib
        reserve_kib = profile.firmware_reserve_bytes / 1024 if args.reserve_kib is None else args.reserve_kib
        if reserve_kib >= ram_kib:  # nothing left for training: every row would say "-24 KiB left"
            raise _UsageError(
                f"--ram-kib {ram_kib:g} leaves nothing beside the firmware's --reserve-kib {reserve_kib:g}: "
                "give the device's RAM (the NUCLEO-L496ZG: 320) and what its firmware keeps (24)"
            )
        rows = []
        for T in sizes:
            try:
                arch = factory(T)
            except ArchError as exc:
                raise _UsageError(f"--input-sizes: T={T} does not fit the architecture: {exc}") from exc
            nw = n_windows(T) if callable(n_windows) else n_windows
            for mode in args.modes:
                try:
                    est = estimate(
                        arch, mode, args.batch_size, profile, n_windows=nw, epochs=1, dataset_in_ram=args.dataset_in_ram
                    )
                except ArchError as exc:
                    raise _UsageError(f"--modes: {exc}") from exc
                row = est.row()
                row.update(
                    {
                        k: v
                        for k, v in est.inference.to_dict().items()
                        if k in ("inference_macc", "weights_kib", "activation_peak_kib", "activation_fused_kib")
                    }
                )
                row["excluded_kib"] = {k: v / 1024 for k, v in est.memory.excluded_bytes.items()}
                # RAM check against the budget given on the command line, in the chosen accounting
                need = est.memory_for(args.accounting)
                if args.robust:  # the best epoch's weights and the confusion counts, as recommend counts them
                    row["robust_extra_kib"] = (
                        robust_round_bytes(arch, mode, False, validate=True, restore_best=True) / 1024
                    )
                    need += row["robust_extra_kib"]
                if est.memory.dataset_in_ram:
                    need += row["excluded_kib"].get("local_dataset", 0.0)
                row.update(
                    ram_kib=ram_kib,
                    reserve_kib=reserve_kib,
                    ram_needed_kib=need + reserve_kib,
                    fits_ram=need + reserve_kib <= ram_kib,
                )
                rows.append(row)
        rec = recommend(
            factory,
            sizes,
            args.modes,
            args.epochs,
            batch_size=args.batch_size,
            profile=profile,
            n_windows=n_windows,
            ram_kib=args.ram_kib,
            reserve_kib=args.reserve_kib,
            time_s=args.time_s,
            energy_mj=args.energy_mj,
            power_source=args.power_source,
            accuracy=accuracy,
            accounting=args.accounting,
            dataset_in_ram=args.dataset_in_ram,
            robust=args.robust,
        )
    except (_UsageError, ArchError, ValueError) as exc:
        print(f"odlstudio estimate: error: {exc}", file=sys.stderr)
        return 2

    notes = [
        "memory_kib follows the paper's accounting (an estimate in the paper); Table III's time and power are measurements",
        "memory_firmware_kib (fw) is what the ODL firmware holds in RAM for the round (model + its plan; docs/firmware.md); "
        f"--accounting {args.accounting} decides fits_ram",
        "time and energy budgets are per round: epochs x windows (one batch per epoch when --windows/--recording-s is not given)",
    ]
    if args.json:
        out = {
            "arch": desc,
            "profile": {
                "name": profile.name,
                "clock_hz": profile.clock_hz,
                "description": profile.description,
                "source": profile.source,
            },
            "batch_size": args.batch_size,
            "rows": rows,
            "recommendation": rec.to_dict(),
            "notes": notes,
        }
        print(json.dumps(out))
        return 0
    print(f"{desc} on {profile.name} ({profile.clock_hz / 1e6:g} MHz), batch {args.batch_size}")
    head = f"{'T':>4} {'mode':<14} {'params':>7} {'train':>7} {'mem KiB':>8} {'peak':>7} {'fw':>7} {'fits':>4} {'MACs/smp':>10} {'t/batch s':>10} {'P mW':>7} {'E/batch mJ':>10}"
    if is_model:
        head += f" {'MACC':>9} {'wts KiB':>8} {'act KiB':>8} {'fused':>7}"
    print(head)
    for r in rows:
        line = (
            f"{r['input_size']:>4} {r['mode'][:14]:<14} {r['params']:>7} {r['trainable_params']:>7} {r['memory_kib']:>8.1f} {r['memory_peak_kib']:>7.1f} {r['memory_firmware_kib']:>7.1f} "
            f"{'yes' if r['fits_ram'] else 'NO':>4} {r['macs_per_sample_total']:>10} {r['time_per_batch_s']:>10.3f} {r['power_mw']:>7.2f} {r['energy_per_batch_mj']:>10.2f}"
        )
        if is_model:
            line += f" {r['inference_macc']:>9} {r['weights_kib']:>8.2f} {r['activation_peak_kib']:>8.2f} {r['activation_fused_kib']:>7.2f}"
        print(line)
    print()
    if rec.choice:
        c = rec.choice
        print(
            f"Recommended: T={c['input_size']}, {c['mode']}, {c['epochs']} epochs (F1 ~{c['accuracy']:.3f}, {c['accuracy_source']})"
        )
    else:
        print("Recommended: nothing fits")
    print(rec.reason)
    for n in notes:
        print(f"note: {n}")
    return 0
