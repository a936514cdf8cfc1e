"""``odlstudio`` console entry point: the GUI when run without a sub-command."""

from __future__ import annotations

import argparse
import importlib
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        args = parser.parse_args(["gui", *(argv or [])]) if "gui" in COMMANDS and _has(parser, "gui") else args
        if not getattr(args, "command", None):
            parser.print_help()
            return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


def _has(parser: argparse.ArgumentParser, name: str) -> bool:
    for action in parser._subparsers._group_actions if parser._subparsers else []:  # noqa: SLF001
        if name in getattr(action, "choices", {}):
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
