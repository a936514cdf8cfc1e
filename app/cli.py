"""``odlstudio`` console entry point: the GUI when run without a sub-command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from app import __version__
from app.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odlstudio",
        description="ODL Studio: personalize HAR models on STM32 and measure time, power and energy. "
        "Without a sub-command the desktop app starts.",
    )
    parser.add_argument("--version", action="version", version=f"odlstudio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"app.commands.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet
            if exc.name == f"app.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while the sub-commands load or the arguments are read: no traceback
        print("odlstudio: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from app.core.memory import tune_allocator

    tune_allocator()  # a long-running process: keep RSS flat (see app/core/memory.py)
    parser = build_parser()
    choices = _subcommands(parser)
    # Without a sub-command the desktop app starts; its options (--bench, --data-dir, ...) may be given
    # directly: `odlstudio --bench` == `odlstudio gui --bench`.
    first = next((a for a in argv if not a.startswith("-")), None)
    if "gui" in choices and first not in choices and not {"-h", "--help", "--version"} & set(argv):
        argv = ["gui", *argv]
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"odlstudio {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last net: a message, never a traceback (issue 13 item 9)
        if os.environ.get("ODL_DEBUG"):
            raise
        where = f"odlstudio {args.command}" if getattr(args, "command", None) else "odlstudio"
        print(
            f"{where}: unexpected error: {type(exc).__name__}: {exc}\n"
            f"{where}: this is a bug; run again with ODL_DEBUG=1 for the details to report",
            file=sys.stderr,
        )
        return 1


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:  # noqa: SLF001 - argparse keeps sub-parsers here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return set(action.choices)
    return set()


if __name__ == "__main__":
    sys.exit(main())
