"""``odlstudio bench``: run the virtual bench (emulated LPM01A + NUCLEO) until Ctrl-C / SIGTERM.

With ``--json`` it prints exactly one JSON line once every endpoint listens, e.g.
``{"powershield": "socket://127.0.0.1:40123", "board": null, "powershield_pty": null, ...}``,
then serves until interrupted and exits 0.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from app.commands._argtypes import finite_float, port, seed


def register(subparsers: argparse._SubParsersAction) -> None:  # noqa: SLF001
    p = subparsers.add_parser(
        "bench",
        help="run the virtual bench (emulated PowerShield and NUCLEO on local serial endpoints)",
        description="Host the emulated X-NUCLEO-LPM01A and NUCLEO-L496ZG on 127.0.0.1 serial endpoints "
        "(pyserial socket:// URLs; ptys on POSIX with --pty) until Ctrl-C or SIGTERM.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON line with the endpoint URLs once ready")
    p.add_argument(
        "--time-scale",
        type=finite_float(0.001, 1000.0),
        default=1.0,
        help="simulated seconds per wall second (default 1)",
    )
    p.add_argument("--pty", action="store_true", help="also expose each device as a pty (POSIX only)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the measurement noise and faults (default 0)")
    p.add_argument("--port-lpm", type=port, default=0, help="TCP port of the PowerShield (0 = ephemeral)")
    p.add_argument("--port-board", type=port, default=0, help="TCP port of the NUCLEO (0 = ephemeral)")
    p.add_argument("--no-board", action="store_true", help="do not emulate the NUCLEO (L496 profile current)")
    p.add_argument(
        "--board",
        choices=("auto", "qemu", "python"),
        default="auto",
        help="the NUCLEO: 'qemu' runs the ODL firmware under qemu-system-arm, 'python' the Python emulated "
        "board; 'auto' (default) takes QEMU when qemu-system-arm and a built firmware are available",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from device.bench import BOARD_NAMES, VirtualBench

    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {}
    for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGBREAK", None)):
        if sig is not None:
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        try:
            bench = VirtualBench(
                time_scale=args.time_scale,
                pty=args.pty,
                seed=args.seed,
                board=not args.no_board,
                port_lpm=args.port_lpm,
                port_board=args.port_board,
                board_kind=args.board,
            )
            urls = bench.start()
        except (OSError, RuntimeError, ValueError) as exc:
            print(f"odlstudio bench: cannot start the virtual bench: {exc}", file=sys.stderr)
            return 2
        try:
            if args.json:
                print(json.dumps(urls), flush=True)
            else:
                print(
                    f"PowerShield (LPM01A): {urls['powershield']}"
                    + (f"  pty {urls['powershield_pty']}" if urls["powershield_pty"] else "")
                )
                kind = BOARD_NAMES.get(urls.get("board_kind") or "", "")
                print(
                    f"Board (NUCLEO):       {urls['board'] or 'not emulated (L496 current profile)'}"
                    + (f"  pty {urls['board_pty']}" if urls["board_pty"] else "")
                    + (f"  [{kind}]" if kind else "")
                )
                if bench.board_note:
                    print(f"Note: {bench.board_note}")
                print("Serving on 127.0.0.1; Ctrl-C to stop.", flush=True)
            while not stop.wait(0.5):
                pass
        finally:
            bench.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
