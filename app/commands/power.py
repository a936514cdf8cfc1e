"""``odlstudio power``: headless X-NUCLEO-LPM01A capture.

Examples::

    odlstudio power --port /dev/ttyACM0 --freq 100k --format bin_hexa --duration 10 --json
    odlstudio power --port socket://127.0.0.1:5000 --freq 1k --output energy --duration 60 --out run.h5
    odlstudio power --port auto --duration 5          # no shield found: starts the virtual bench

``--duration D`` captures exactly D·f samples: the shield's ``acqtime`` is set to D (when D ≤ 100 s;
beyond, it runs until the host stops it and extra samples are discarded).  ``--acqtime`` sets the
shield's acquisition time explicitly (0 = until stopped / Ctrl-C).  ``ascii_dec`` cannot sustain
10 kHz beyond 1 s, 20 kHz beyond 0.5 s, nor 50/100 kHz at all (UM2269 Table 2): such requests switch
to ``bin_hexa`` with a message (``--strict-format`` refuses instead).

Output: progress on stderr; one summary line, or with ``--json`` exactly one JSON object on stdout
with ``samples, lost, rate_hz, mean_a, min_a, max_a, energy_j, duration_s`` and more.  ``--out`` writes
HDF5 (``.h5``, complete, crash-tolerant) or CSV (``.csv``, capped at ``--csv-max-mb``).
Exit status: 0 ok, 1 capture error (partial results still printed/saved), 2 bad arguments or no device.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

from app.commands._argtypes import finite_float, nonneg, positive
from device.lpm01a.spec import TRIGDELAY_MAX


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "power",
        help="capture current/energy with an X-NUCLEO-LPM01A (or the virtual bench)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--port", default="auto", help="pyserial URL (/dev/ttyACM0, COM5, socket://127.0.0.1:PORT) or 'auto' (default)"
    )
    p.add_argument(
        "--freq",
        default="1k",
        help="sampling rate: 1..100k (1, 2, 5, 10, 20, 50, 100, 200, 500, 1k, 2k, 5k, 10k, 20k, 50k, 100k)",
    )
    p.add_argument(
        "--format",
        dest="fmt",
        choices=("bin_hexa", "ascii_dec"),
        default="bin_hexa",
        help="stream format (default bin_hexa)",
    )
    p.add_argument(
        "--duration",
        type=positive,
        default=None,
        help="seconds of samples to capture (exactly duration x freq samples)",
    )
    p.add_argument(
        "--acqtime",
        type=nonneg,
        default=None,
        help="shield acquisition time in s (0 = until stopped); default: --duration",
    )
    p.add_argument("--volt", type=float, default=3.3, help="target supply voltage, 1.8..3.3 V (default 3.3)")
    p.add_argument(
        "--output",
        choices=("current", "energy"),
        default="current",
        help="stream current (A) or energy per sample period (J)",
    )
    p.add_argument(
        "--funcmode",
        choices=("optim", "high"),
        default=None,
        help="optim (default) or high (30 uA..10 mA, for 50-100 kHz)",
    )
    p.add_argument(
        "--trigdelay",
        type=finite_float(0.0, TRIGDELAY_MAX),
        default=0.0,
        help=f"delay between target power-up and acquisition (s, 0 .. {TRIGDELAY_MAX:g}, default 0)",
    )
    p.add_argument("--events", action="store_true", help="report D7 rising edges as markers (eventsrc d7)")
    p.add_argument("--out", default=None, help="save samples: FILE.h5 (HDF5, complete) or FILE.csv (capped)")
    p.add_argument("--csv-max-mb", type=positive, default=100.0, help="CSV size cap in MB (default 100)")
    p.add_argument(
        "--strict-format",
        action="store_true",
        help="refuse ascii_dec beyond its limits instead of switching to bin_hexa",
    )
    p.add_argument(
        "--timeout", type=finite_float(0.05, 600.0), default=3.0, help="reply timeout per command, s (default 3)"
    )
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def _err(msg: str) -> None:
    print(f"odlstudio power: {msg}", file=sys.stderr, flush=True)


def plan_capture(freq: str, fmt: str, duration: float | None, acqtime: float | None, output: str, strict: bool) -> dict:
    """Resolve rate, device acqtime, host sample limit and format (ASCII limits, §4).

    Raises ``device.lpm01a.driver.ArgumentError`` naming the offending argument."""
    from device.lpm01a import spec
    from device.lpm01a.driver import ArgumentError, PowerShield

    try:
        hz = spec.parse_freq_user(freq)
    except spec.ArgumentError as exc:
        raise ArgumentError(f"--freq: {exc}") from None
    if acqtime is None:
        dev_acq = duration if duration is not None and duration <= spec.ACQTIME_MAX else 0.0
    else:
        dev_acq = acqtime
        if dev_acq:
            spec.RANGES["acqtime"].check(dev_acq)
    max_samples = int(round(duration * hz)) if duration is not None else None
    if max_samples is not None and max_samples < 1:
        raise ArgumentError(f"--duration {duration:g} s at {hz} Hz is shorter than one sample")
    note = ""
    try:
        PowerShield.check_combination(hz, fmt, dev_acq, output)
    except ArgumentError as exc:
        if fmt != "ascii_dec" or strict:
            raise
        fmt = "bin_hexa"
        PowerShield.check_combination(hz, fmt, dev_acq, output)
        note = f"{exc}; switching to --format bin_hexa"
    return {"rate_hz": hz, "fmt": fmt, "acqtime": dev_acq, "max_samples": max_samples, "note": note}


def space_warning(out: str, max_samples: int | None, rate_hz: float, csv: bool) -> str:
    """A warning when the disk holding ``out`` has less room than the capture will take (None: unknown
    length, assume 10 minutes); empty when it fits."""
    from device.lpm01a.recorder import DISK_RESERVE, room_left

    n = max_samples if max_samples is not None else int(600 * rate_hz)
    need = n * (28 if csv else 8) + DISK_RESERVE
    room = room_left(out)
    if need <= room:
        return ""
    what = f"{n / rate_hz:g} s" if max_samples is not None else "10 minutes"
    return (
        f"warning: {what} at {rate_hz:g} Hz need about {need / 1e6:.1f} MB but only {room / 1e6:.1f} MB are "
        f"free for {out}: the capture will stop when the disk is full"
    )


def resolve_port(port: str, quiet: bool = False):
    """``(url, bench)``: discovery for ``auto``; falls back to an in-process virtual bench."""
    if port != "auto":
        return port, None
    from device.monitor import LPM01A_KIND, monitor_class

    found = monitor_class(LPM01A_KIND).find()
    if found:
        if len(found) > 1 and not quiet:
            _err(f"{len(found)} PowerShields found; using {found[0].device}")
        return found[0].device, None
    try:
        from device.bench import VirtualBench
    except ImportError as exc:
        raise LookupError(
            f"no PowerShield (USB 0483:5740) found and the virtual bench is unavailable ({exc})"
        ) from None
    bench = VirtualBench(board=True)
    urls = bench.start()
    _err(f"no PowerShield (USB 0483:5740) found: started an in-process virtual bench at {urls['power_monitor']}")
    return urls["power_monitor"], bench


def _close_writer(writer, write_error: list[OSError]) -> None:
    """Close the capture file; a failure (full disk) is kept with the capture's other write errors."""
    try:
        writer.close()
    except OSError as exc:
        if not write_error:
            write_error.append(exc)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def capture(args: argparse.Namespace) -> tuple[dict, int]:
    """Run one capture as the CLI does; returns (result dict, exit code)."""
    from device.lpm01a import spec
    from device.lpm01a.driver import ArgumentError
    from device.monitor import LPM01A_KIND, MARKER, MonitorError, MonitorSettingError, RunningStats, open_monitor

    try:
        plan = plan_capture(args.freq, args.fmt, args.duration, args.acqtime, args.output, args.strict_format)
        if not spec.VOLT_MIN - 1e-9 <= args.volt <= spec.VOLT_MAX + 1e-9:
            raise ArgumentError(
                f"--volt {args.volt:g} V is out of range: allowed {spec.VOLT_MIN:g} .. {spec.VOLT_MAX:g} V"
            )
    except (ArgumentError, spec.ArgumentError) as exc:
        return {"error": str(exc)}, 2
    if plan["note"] and not args.quiet:
        _err(plan["note"])
    writer = None
    if args.out:
        from device.lpm01a.recorder import CannotWrite, open_writer

        if os.path.lexists(args.out) and not os.path.isdir(args.out):  # opening it would empty it at once
            return {
                "error": f"--out {args.out}: already exists; a capture never replaces a file "
                "(choose a new name, or move the old file away)"
            }, 2
        try:
            writer_args = dict(csv_max_bytes=int(args.csv_max_mb * 1e6))
            suffix = args.out.lower().rsplit(".", 1)[-1]
            if suffix in ("h5", "hdf5"):
                writer_args.update(voltage_v=args.volt, stream_format=plan["fmt"], port=args.port)
            writer = open_writer(args.out, plan["rate_hz"], args.output, **writer_args)
        except CannotWrite as exc:  # nothing was captured, no file left behind
            return {"error": f"--out {args.out}: cannot write it: {exc.reason}"}, 2
        except (ValueError, OSError) as exc:
            msg = str(exc)
            return {"error": msg if msg.startswith("--out") else f"--out {args.out}: {msg}"}, 2
        warn = space_warning(args.out, plan["max_samples"], plan["rate_hz"], args.out.lower().endswith(".csv"))
        if warn:
            _err(warn)
    write_error: list[OSError] = []
    cap = None  # the capture, once started
    # every way out closes what was opened, in reverse order: the monitor (its own `with`), the bench, the file
    with contextlib.ExitStack() as cleanup:
        if writer is not None:
            # (LIFO: runs after the close) a capture that never started leaves no empty file to refuse next time
            cleanup.callback(lambda: cap is None and _remove_quietly(args.out))
            cleanup.callback(_close_writer, writer, write_error)
        try:
            url, bench = resolve_port(args.port, args.quiet)
        except (LookupError, OSError) as exc:
            return {"error": str(exc)}, 2
        if bench is not None:
            cleanup.callback(bench.stop)
        hz = plan["rate_hz"]
        stats = RunningStats()
        result: dict = {}
        code = 0
        t_wall0, t_cpu0 = time.monotonic(), time.process_time()
        events = 0

        def save(block) -> None:
            """Hand a block to the file; on a full disk stop the acquisition (the file stays complete up to
            what it holds) and keep the statistics of everything received."""
            if writer is None or write_error:
                return
            try:
                writer.write(block)
            except OSError as exc:
                write_error.append(exc)
                if cap is not None and not cap.finished:
                    cap.stop()

        try:
            mon = open_monitor(LPM01A_KIND, url, timeout=args.timeout)
        except MonitorError as exc:  # the port cannot be opened: no device (exit 2, see the module doc)
            return {"error": str(exc)}, 2
        try:
            with mon:
                mon.configure(
                    hz,
                    args.volt,
                    events=bool(args.events),
                    max_seconds=plan["acqtime"],
                    fmt=plan["fmt"],
                    output=args.output,
                    funcmode=args.funcmode,
                    trigdelay=args.trigdelay,
                )
                cap = mon.start(max_samples=plan["max_samples"])
                sub = cap.subscribe(from_start=True)
                deadline = None
                if plan["max_samples"] is not None:
                    deadline = time.monotonic() + plan["max_samples"] / hz + args.trigdelay + 10.0
                last_progress = time.monotonic()
                try:
                    while not sub.done:
                        block = sub.get(0.25)
                        if block is not None:
                            stats.update(block)
                            events += sum(1 for e in block.events if e.kind == MARKER)
                            save(block)
                        now = time.monotonic()
                        if deadline is not None and now > deadline and not cap.finished:
                            _err("the shield did not finish in time: stopping")
                            cap.stop()
                            deadline = None
                        if not args.quiet and now - last_progress >= 1.0:
                            last_progress = now
                            print(
                                f"\r  {cap.samples_total / hz:8.2f} s  {stats.samples:>10d} samples  lost {stats.lost}  buff {cap.buffer_pct or 0}%",
                                end="",
                                file=sys.stderr,
                                flush=True,
                            )
                except KeyboardInterrupt:
                    _err("interrupted: stopping the acquisition")
                    cap.stop()
                    for block in sub:
                        stats.update(block)
                        save(block)
                if not args.quiet:
                    print(file=sys.stderr)
                cap.wait(10.0)
                if cap.error is not None:
                    code = 1
                    result["error"] = str(cap.error)
                else:
                    mon.release()
        except MonitorSettingError as exc:
            result["error"] = str(exc)
            code = 2
        except MonitorError as exc:
            result["error"] = str(exc)
            code = 1
    if write_error:
        code = 1
        result["error"] = str(write_error[0]) + (f"; and: {result['error']}" if result.get("error") else "")
    wall = time.monotonic() - t_wall0
    cpu = time.process_time() - t_cpu0
    v = args.volt
    if args.output == "current":
        energy = stats.total * v / hz
        scale = 1.0
    else:  # values are joules per sample period: current = E * f / V
        energy = stats.total
        scale = hz / v
    result.update(
        {
            "samples": stats.samples,
            "lost": stats.lost,
            "rate_hz": hz,
            "mean_a": stats.mean * scale if stats.samples else None,
            "min_a": stats.min * scale if stats.samples else None,
            "max_a": stats.max * scale if stats.samples else None,
            "energy_j": energy,
            "mean_w": stats.mean * scale * v if stats.samples else None,
            "duration_s": (stats.samples + stats.lost) / hz,
            "format": plan["fmt"],
            "output": args.output,
            "volt_v": v,
            "port": url,
            "events": events,
            "buffer_max_pct": cap.diagnostics()["buffer_max_pct"] if cap else None,
            "corrupt_bytes": cap.diagnostics()["corrupt_bytes"] if cap else 0,
            "excess": cap.diagnostics()["excess"] if cap else 0,
            "ended_by": cap.ended_by if cap else "",
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
        }
    )
    if writer is not None:
        result["out"] = str(args.out)
        on_disk = getattr(writer, "samples_on_disk", None)
        result["out_samples" if on_disk is not None else "out_rows"] = on_disk if on_disk is not None else writer.rows
        result["out_complete"] = not write_error and not getattr(writer, "capped", False)
        if getattr(writer, "capped", False):
            result["csv_capped"] = True
            _err(
                f"CSV capped at {args.csv_max_mb:g} MB after {writer.rows} rows (use .h5 for the complete capture or raise --csv-max-mb)"
            )
    return result, code


def run(args: argparse.Namespace) -> int:
    result, code = capture(args)
    if args.json:
        print(json.dumps(result), flush=True)
    elif "samples" in result:
        mean = result["mean_a"]
        line = (
            f"{result['samples']} samples ({result['lost']} lost) at {result['rate_hz']} Hz over {result['duration_s']:.3f} s: "
            + (
                f"mean {mean * 1e3:.4f} mA, min {result['min_a'] * 1e3:.4f} mA, max {result['max_a'] * 1e3:.4f} mA, "
                if mean is not None
                else ""
            )
            + f"energy {result['energy_j'] * 1e3:.4f} mJ at {result['volt_v']:g} V"
        )
        print(line)
    if "error" in result:
        _err(result["error"])
    return code
