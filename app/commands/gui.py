"""``odlstudio`` / ``odlstudio gui``: start the desktop app."""

from __future__ import annotations

import argparse

from app.commands._argtypes import finite_float


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--bench",
        dest="bench",
        action="store_const",
        const=True,
        default=None,
        help="always start the in-process virtual bench (default: only when no hardware is found)",
    )
    g.add_argument(
        "--no-bench",
        dest="bench",
        action="store_const",
        const=False,
        help="never start the virtual bench (real hardware only)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="directory of the SQLite database and recordings (default: the per-user data directory)",
    )
    p.add_argument(
        "--bench-board",
        choices=("auto", "qemu", "python"),
        default="auto",
        help="the virtual bench's NUCLEO: the ODL firmware under QEMU, or the Python emulated board; 'auto' "
        "(default) takes QEMU when qemu-system-arm and a built firmware are available",
    )
    p.add_argument("--panel", default=None, help="panel to show first (devices, live_accel, labelling, power, ...)")
    p.add_argument(
        "--quit-after", type=finite_float(0.0, 1e6, lo_open=True), default=None, metavar="S", help=argparse.SUPPRESS
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "gui",
        help="start the desktop app (the default without a sub-command)",
        description="Start the ODL Studio desktop app.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    if args.panel is not None:
        from app.ui.panels import panel_specs

        keys = [s.key for s in panel_specs()]
        if args.panel not in keys:
            print(f"odlstudio: --panel {args.panel!r} is not a panel (choose from {', '.join(keys)})", file=sys.stderr)
            return 2
    if args.data_dir is not None and os.path.exists(args.data_dir) and not os.path.isdir(args.data_dir):
        # a mistyped path: said here, not in a message box that a scripted run cannot close
        print(f"odlstudio: --data-dir {args.data_dir}: is a file, not a folder", file=sys.stderr)
        return 2
    from app.ui.app import main

    return main(
        data_dir=args.data_dir,
        bench=args.bench,
        panel=args.panel,
        quit_after_s=args.quit_after,
        board_kind=getattr(args, "bench_board", "auto"),
    )
