"""Smoke test of the frozen app (or any ``odlstudio`` command): does it start, stream and export?

    python3 packaging/smoke_test.py                      # tests dist/odlstudio/odlstudio
    python3 packaging/smoke_test.py --bundle PATH        # another bundle folder or executable
    python3 packaging/smoke_test.py --cmd ".venv/bin/python -m app.cli" --no-frozen   # from source

Standard library only, so it also runs on a machine where only the bundle is installed.  Steps (each
with a timeout; the first failure is reported and the exit code is 1):

1. ``odlstudio --version`` — the executable starts at all (time to first output is reported);
2. ``odlstudio smoke --seconds N --export --json`` with ``QT_QPA_PLATFORM=offscreen``: the real main
   window on the in-process virtual bench, both devices connected and streaming for N seconds, samples
   counted, then the shipped model exported to .keras/.h5/TFLite float32+int8/C header/.npz and both
   TFLite files run against Keras (see ``app/commands/smoke.py``); TensorFlow must not be loaded at
   start-up;
3. ``odlstudio estimate --json`` — one JSON object with rows and a recommendation;
4. ``odlstudio flash --list --json`` — the NUCLEO-L496ZG firmware image ships inside the bundle (the app
   finds its own copy, not one elsewhere) and its version is the one the app expects.  From source
   (``--no-frozen``/``--cmd``) a missing image is only reported, a wrong version still fails.

It prints what each step measured and, for a bundle, its size on disk.  ``PACKAGING=1 bash .ci/run``
runs it after ``make package``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = ROOT / "dist" / "odlstudio"


class SmokeFailure(Exception):
    """A step failed; the message says which and why."""


def bundle_command(bundle: Path) -> tuple[list[str], Path | None]:
    """The executable to run for a bundle folder (or the executable itself) and the folder to measure."""
    if bundle.is_dir():
        for name in ("odlstudio.exe", "odlstudio"):
            if (bundle / name).is_file():
                return [str(bundle / name)], bundle
        mac = bundle / "Contents" / "MacOS" / "odlstudio"
        if mac.is_file():
            return [str(mac)], bundle
        raise SmokeFailure(f"{bundle} holds no odlstudio executable (build it with `make package`)")
    if bundle.is_file():
        return [str(bundle)], bundle.parent
    raise SmokeFailure(f"{bundle} does not exist (build it with `make package`)")


def tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for n in names:
            p = Path(dirpath) / n
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def child_env() -> dict[str, str]:
    """The environment of a user's desktop session: no Python variables leaking into the bundle."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "ODL_FIRMWARE_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["QT_QPA_PLATFORM"] = "offscreen"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_step(name: str, cmd: list[str], timeout: float) -> tuple[str, str, float]:
    t0 = time.perf_counter()
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=child_env(), stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise SmokeFailure(f"{name}: no exit after {timeout:g} s ({shlex.join(cmd)})") from exc
    except OSError as exc:
        raise SmokeFailure(f"{name}: cannot start {cmd[0]}: {exc}") from exc
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-15:])
        raise SmokeFailure(f"{name}: exit code {out.returncode} after {dt:.1f} s\n{tail}")
    return out.stdout, out.stderr, dt


def run_listing(cmd: list[str]) -> str:
    """``flash --list --json``: exit 0 with an image, 2 without one; both print the JSON object."""
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, env=child_env(), stdin=subprocess.DEVNULL
        )
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise SmokeFailure(f"flash --list: {exc}") from exc
    if out.returncode not in (0, 2):
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-15:])
        raise SmokeFailure(f"flash --list: exit code {out.returncode}\n{tail}")
    return out.stdout


def last_json(name: str, text: str) -> dict:
    """The last line of ``text`` that parses as a JSON object (commands may log before it)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    raise SmokeFailure(f"{name}: no JSON object in its output: {text.strip()[-300:]!r}")


def check_smoke(report: dict, frozen: bool, export: bool) -> list[str]:
    problems = []
    if not report.get("ok"):
        problems.append(f"smoke reported errors: {report.get('errors')}")
    if frozen and report.get("frozen") is not True:
        problems.append("the command did not run frozen (sys.frozen unset): is this really the bundle?")
    if report.get("tensorflow_at_startup") is not False:
        problems.append("TensorFlow was loaded at start-up")
    for stream in ("accel", "power"):
        if not report.get(f"{stream}_samples"):
            problems.append(f"no {stream} samples arrived")
    if export:
        ex = report.get("export") or {}
        want = {"keras", "h5", "tflite_float32", "tflite_int8", "c_header", "npz"}
        if set(ex.get("formats", ())) != want:
            problems.append(f"export wrote {ex.get('formats')} instead of {sorted(want)}")
    return problems


def check_estimate(out: dict) -> list[str]:
    problems = [f"estimate JSON lacks {k!r}" for k in ("rows", "recommendation", "profile") if k not in out]
    if not problems and not out["rows"]:
        problems.append("estimate JSON has no rows")
    return problems


def check_firmware(listing: dict, frozen: bool, bundle: Path | None) -> list[str]:
    """Problems with the shipped NUCLEO firmware as ``odlstudio flash --list --json`` reports it."""
    fw, expected = listing.get("firmware"), listing.get("expected_version")
    if not expected:
        return ["flash --list reports no expected firmware version"]
    if not fw:
        why = listing.get("firmware_error", "no image found")
        return [f"the bundle ships no NUCLEO firmware ({why})"] if frozen else []
    problems = []
    if fw.get("version") != expected:
        problems.append(f"the shipped NUCLEO firmware is {fw.get('version')}, the app expects {expected}")
    if fw.get("target") != "nucleo-l496zg":
        problems.append(f"the shipped firmware is for {fw.get('target')!r}, not nucleo-l496zg")
    path = Path(str(fw.get("path", "")))
    if frozen and bundle is not None:
        try:
            inside = path.resolve().is_relative_to(bundle.resolve())
        except (OSError, ValueError):
            inside = False
        if not inside or not path.is_file():
            problems.append(f"the firmware the app found ({path}) is not the bundle's own copy under {bundle}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Smoke-test the frozen ODL Studio app.")
    src = ap.add_mutually_exclusive_group()
    src.add_argument(
        "--bundle", default=str(DEFAULT_BUNDLE), help="bundle folder or executable (default dist/odlstudio)"
    )
    src.add_argument("--cmd", help="command line to test instead of a bundle, e.g. '.venv/bin/python -m app.cli'")
    ap.add_argument("--no-frozen", action="store_true", help="do not require sys.frozen (testing from source)")
    ap.add_argument("--seconds", type=float, default=5.0, help="streaming time (default 5)")
    ap.add_argument("--no-export", action="store_true", help="skip the export check (TensorFlow)")
    ap.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds allowed for the smoke step (default 600; TF's first load is slow on a cold disk)",
    )
    args = ap.parse_args(argv)
    if not 0 < args.seconds <= 600:
        ap.error(f"--seconds must be in (0, 600], got {args.seconds}")

    frozen = not (args.no_frozen or args.cmd)
    try:
        if args.cmd:
            base, measured = shlex.split(args.cmd), None
        else:
            base, measured = bundle_command(Path(args.bundle))
        print(f"testing: {shlex.join(base)}", flush=True)

        out, _err, dt = run_step("--version", [*base, "--version"], timeout=120)
        print(f"[1/4] --version: {out.strip()} ({dt:.1f} s)", flush=True)

        smoke_cmd = [*base, "smoke", "--seconds", f"{args.seconds:g}", "--json"]
        if not args.no_export:
            smoke_cmd.append("--export")
        out, _err, dt = run_step("smoke", smoke_cmd, timeout=args.timeout)
        report = last_json("smoke", out)
        problems = check_smoke(report, frozen, not args.no_export)
        if problems:
            raise SmokeFailure("smoke: " + "; ".join(problems))
        ex = report.get("export") or {}
        print(
            f"[2/4] smoke: start-up {report.get('startup_s')} s, connected in {report.get('connect_s')} s, "
            f"{report['accel_samples']} accel samples @ {report['accel_rate_hz']:g} Hz and "
            f"{report['power_samples']} current samples @ {report['power_rate_hz']:g} Hz in {args.seconds:g} s; "
            f"TensorFlow at start-up: {report['tensorflow_at_startup']}"
            + (
                f"; export {', '.join(ex['formats'])} in {ex['seconds']} s "
                f"(TFLite f32 vs Keras {ex['tflite_float32_max_abs_diff']:.1e}, "
                f"int8 {ex['tflite_int8_max_abs_diff']:.3f})"
                if ex
                else ""
            )
            + f" [{dt:.1f} s]",
            flush=True,
        )

        out, _err, dt = run_step("estimate --json", [*base, "estimate", "--json"], timeout=120)
        est = last_json("estimate --json", out)
        problems = check_estimate(est)
        if problems:
            raise SmokeFailure("estimate --json: " + "; ".join(problems))
        choice = (est.get("recommendation") or {}).get("choice") or {}
        picked = ", ".join(f"{k}={choice[k]}" for k in ("input_size", "mode", "epochs") if k in choice)
        print(
            f"[3/4] estimate --json: {len(est['rows'])} rows, recommendation: {picked or 'none'} ({dt:.1f} s)",
            flush=True,
        )
        out = run_listing([*base, "flash", "--list", "--json"])
        listing = last_json("flash --list --json", out)
        problems = check_firmware(listing, frozen, measured)
        if problems:
            raise SmokeFailure("flash --list --json: " + "; ".join(problems))
        fw = listing.get("firmware")
        print(
            "[4/4] flash --list: "
            + (
                f"ships NUCLEO firmware {fw['version']} ({fw['bytes']:,} bytes, {fw['path']})"
                if fw
                else "no image (from source)"
            )
            + f", the app expects {listing['expected_version']}",
            flush=True,
        )
    except SmokeFailure as exc:
        print(f"SMOKE TEST FAILED: {exc}", file=sys.stderr)
        return 1
    if measured is not None:
        size = tree_size(measured)
        print(f"bundle size: {size} bytes ({size / 2**30:.2f} GiB) in {measured}")
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
