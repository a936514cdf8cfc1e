"""``odlstudio smoke`` (hidden): prove that an installed or frozen app really works, end to end.

It does what a user does first, without a screen and without hardware:

1. start the app's :class:`~app.core.context.AppContext` on a throw-away data folder with the in-process
   **virtual bench** (emulated NUCLEO-L496ZG + LPM01A behind real serial endpoints);
2. build the real main window (``app.ui.app.build_window``) on Qt's ``offscreen`` platform and run
   its event loop (``--no-window`` skips Qt entirely);
3. connect both devices through the app's device manager and stream for ``--seconds``;
4. check that samples arrived on both streams (at least ``--min-fraction`` of the nominal count) and that
   TensorFlow was *not* imported by start-up (the app imports it lazily);
5. with ``--export``: load the shipped general model and export it to every format (.keras, .h5, TFLite
   float32 and int8, C header, .npz), then run both TFLite files and compare them with Keras — this is
   what a frozen bundle must carry (TensorFlow, Keras, the TFLite converter, h5py).

Prints a one-line JSON report with ``--json`` (else a short text summary) and exits 0 only when every
check passed; otherwise 1 with the reasons on stderr.  ``packaging/smoke_test.py`` runs it against the
PyInstaller bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from app.commands._argtypes import finite_float

#: The general model exported by ``--export`` (ships in assets/models, see assets/README.md).
EXPORT_MODEL = ("models", "paper_cnn_wisdm5_T20.keras")
#: Files the app needs at run time (the emulated board plays the sample; rounds start from the models).
SHIPPED = (EXPORT_MODEL, ("sample", "wisdm2019_1600_sample.csv"), ("icons", "odlstudio.png"))


def register(subparsers: argparse._SubParsersAction) -> None:
    # No help= on purpose: a maintenance command, kept out of `odlstudio --help`'s list.
    p = subparsers.add_parser(
        "smoke",
        description="Self-test: virtual bench, offscreen main window, connect, stream, optional export. "
        "Exit 0 only if samples arrived on both devices (and export worked with --export).",
    )
    p.add_argument(
        "--seconds",
        type=finite_float(0.0, 3600.0, lo_open=True, hi_open=True),
        default=5.0,
        help="how long to stream (default 5)",
    )
    p.add_argument(
        "--connect-timeout",
        type=finite_float(0.0, 3600.0, lo_open=True, hi_open=True),
        default=30.0,
        help="seconds to wait for both virtual devices to stream (default 30)",
    )
    p.add_argument(
        "--min-fraction",
        type=finite_float(0.0, 1.0, lo_open=True),
        default=0.25,
        help="samples needed per stream as a fraction of rate x seconds (default 0.25)",
    )
    p.add_argument("--no-window", action="store_true", help="do not start Qt (core and devices only)")
    p.add_argument(
        "--onscreen",
        action="store_true",
        help="use the normal Qt platform instead of forcing QT_QPA_PLATFORM=offscreen",
    )
    p.add_argument(
        "--export", action="store_true", help="also export the shipped general model to every format (needs TensorFlow)"
    )
    p.add_argument("--data-dir", default=None, help="app data folder (default: a temporary folder removed at exit)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------
# checks
# ------------------------------------------------------------------------------------------------


def _valid_samples(stream: Any, seconds: float) -> int:
    """Rows without NaN in the last ``seconds`` of a :class:`~app.core.streams.SampleStream` (gaps are
    NaN, so this counts only samples that really arrived)."""
    import numpy as np

    if stream is None or stream.n_total == 0:
        return 0
    # Times half a sample inside the index range: ``samples`` ceils t1 * rate, and duration * rate can
    # round up to n_total + 1 (e.g. 255866 / 1e5 * 1e5), which makes it answer None.
    n = int(stream.n_total)
    k = min(n, int(round(seconds * stream.rate_hz)))
    got = stream.samples((n - k + 0.5) / stream.rate_hz, (n - 0.5) / stream.rate_hz)
    if got is None:
        return 0
    y = got[1]
    return int(np.count_nonzero(np.all(np.isfinite(y), axis=1)))


def _export_check(out_dir: Path) -> dict:
    """Export the shipped model to every format, run both TFLite files, compare with Keras."""
    import numpy as np

    from app.core import models as M
    from app.core.paths import asset_path

    src = asset_path(*EXPORT_MODEL)
    if not src.is_file():
        raise RuntimeError(f"shipped model {src} is missing (assets not bundled?)")
    t0 = time.perf_counter()
    model = M.load_model(src)
    rng = np.random.default_rng(0)
    windows = rng.normal(0.0, 3.0, (64, model.input_size, 3)).astype(np.float32)
    windows[..., 2] += 9.81
    written = M.export_all(model, out_dir, stem="smoke", representative=windows)
    x = M.prepare_input(model, windows[:8])
    ref = M.keras_predict(model, x)
    out: dict[str, Any] = {"model": src.name, "formats": sorted(written)}
    for fmt in ("tflite_float32", "tflite_int8"):
        if fmt not in written:
            raise RuntimeError(f"{fmt} export was not written")
        y = M.run_tflite(written[fmt], x)
        out[f"{fmt}_max_abs_diff"] = float(np.max(np.abs(y - ref)))
    if out["tflite_float32_max_abs_diff"] > 1e-4:
        raise RuntimeError(f"TFLite float32 output differs from Keras by {out['tflite_float32_max_abs_diff']:.3g}")
    if out["tflite_int8_max_abs_diff"] > 0.25:
        raise RuntimeError(f"TFLite int8 output differs from Keras by {out['tflite_int8_max_abs_diff']:.3g}")
    missing = {"keras", "h5", "tflite_float32", "tflite_int8", "c_header", "npz"} - set(written)
    if missing:
        raise RuntimeError(f"export formats not written: {sorted(missing)}")
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def _pump_for(pump: Callable[[], None], seconds: float, until: Callable[[], bool] | None = None) -> bool:
    """Run ``pump`` (Qt events or a short sleep) for ``seconds`` or until ``until()``; True if it came."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pump()
        if until is not None and until():
            return True
    return until is None


# ------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    from app.core.context import AppContext
    from app.core.devices import DeviceState
    from app.core.paths import asset_path, assets_dir, is_frozen
    from device.monitor import is_monitor

    report: dict[str, Any] = {
        "ok": False,
        "frozen": is_frozen(),
        "window": not args.no_window,
        "seconds": args.seconds,
        "errors": [],
    }
    errors: list[str] = report["errors"]
    tmp = tempfile.TemporaryDirectory(prefix="odl-smoke-") if args.data_dir is None else None
    data_dir = Path(args.data_dir) if args.data_dir else Path(tmp.name)  # type: ignore[union-attr]
    ctx = None
    qapp = window = None
    try:
        report["assets"] = str(assets_dir())
        missing = [str(Path(*p)) for p in SHIPPED if not asset_path(*p).is_file()]
        if missing:
            errors.append(f"shipped assets missing from {assets_dir()}: {', '.join(missing)}")
        ctx = AppContext.create(data_dir, bench=True)
        if ctx.devices.bench is None:
            raise RuntimeError(ctx.devices.bench_error or "the virtual bench did not start")

        if args.no_window:

            def pump() -> None:
                time.sleep(0.02)
        else:
            if not args.onscreen:
                os.environ["QT_QPA_PLATFORM"] = "offscreen"
            from PySide6.QtWidgets import QApplication

            from app.ui.app import build_window

            qapp = QApplication.instance() or QApplication([sys.argv[0]])
            window = build_window(ctx)
            window.show()

            def pump() -> None:
                qapp.processEvents()
                time.sleep(0.01)

        report["startup_s"] = round(time.perf_counter() - t_start, 2)
        report["tensorflow_at_startup"] = "tensorflow" in sys.modules

        virtual = [s.info for s in ctx.devices.snapshot() if s.info.virtual]
        kinds = sorted(i.kind for i in virtual)
        if len(virtual) != 2 or "board" not in kinds or not any(is_monitor(k) for k in kinds):
            raise RuntimeError(f"virtual bench offers {kinds or 'no devices'}; expected a board and a power monitor")
        for info in virtual:
            ctx.devices.connect(info.key)
            ctx.devices.set_streaming(info.key, True)

        def all_streaming() -> bool:
            return all(ctx.devices.status(i.key).state == DeviceState.STREAMING for i in virtual)

        if not _pump_for(pump, args.connect_timeout, all_streaming):
            states = {
                i.key: f"{ctx.devices.status(i.key).state.value} {ctx.devices.status(i.key).message}".strip()
                for i in virtual
            }
            raise RuntimeError(f"devices not streaming after {args.connect_timeout:g} s: {states}")
        report["connect_s"] = round(time.perf_counter() - t_start - report["startup_s"], 2)

        _pump_for(pump, args.seconds)

        streams = {"accel": ctx.devices.accel_stream, "power": ctx.devices.power_stream}
        for name, stream in streams.items():
            n = _valid_samples(stream, args.seconds)
            rate = float(stream.rate_hz) if stream is not None else 0.0
            need = max(1, int(args.min_fraction * rate * args.seconds))
            report[f"{name}_rate_hz"] = rate
            report[f"{name}_samples"] = n
            if n < need:
                detail = (
                    f"; stream has {stream.n_total} samples incl. gaps {stream.gaps[-3:]}"
                    if stream is not None
                    else "; no stream was created"
                )
                errors.append(f"{name}: {n} samples in {args.seconds:g} s at {rate:g} Hz (need >= {need}){detail}")
        report["devices"] = {i.key: ctx.devices.status(i.key).state.value for i in virtual}
        for i in virtual:
            st = ctx.devices.status(i.key)
            if st.state != DeviceState.STREAMING:
                errors.append(f"{i.name} ended in state {st.state.value}: {st.message}")
        if errors:
            report["device_log"] = list(ctx.devices.messages[-10:])
        if report["tensorflow_at_startup"]:
            errors.append("TensorFlow was imported during start-up (it must be imported lazily)")

        if args.export:
            try:
                report["export"] = _export_check(data_dir / "smoke-export")
            except Exception as exc:  # noqa: BLE001 - report what is missing instead of a traceback
                errors.append(f"export failed: {type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - any failure is a failed smoke test, with its reason
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        if window is not None:
            window.close()
            window.deleteLater()
            if qapp is not None:
                qapp.processEvents()
        if ctx is not None:
            try:
                ctx.close()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"shutdown: {exc}")
        if tmp is not None:
            tmp.cleanup()

    report["ok"] = not errors
    report["total_s"] = round(time.perf_counter() - t_start, 2)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(
            f"smoke: {'OK' if report['ok'] else 'FAILED'} — accel {report.get('accel_samples', 0)} samples, "
            f"power {report.get('power_samples', 0)} samples in {args.seconds:g} s"
            + (f"; export {', '.join(report['export']['formats'])}" if "export" in report else "")
        )
    for e in errors:
        print(f"odlstudio smoke: {e}", file=sys.stderr)
    return 0 if report["ok"] else 1
