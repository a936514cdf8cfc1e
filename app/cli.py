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
    args, extra = parser.parse_known_args(argv)
    if extra:
        _refuse_unrecognized(parser, args, extra)  # (exits 2)
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


def _refuse_unrecognized(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """Arguments the command does not know, said by that command's parser (its usage, not the top level's),
    with the closest option it has for a mistyped one (``--batchsize``: did you mean --batch-size?)."""
    import difflib  # noqa: PLC0415

    command = getattr(args, "command", None)
    target = _subparser(parser, command) if command else None
    target = target or parser
    known = [o for a in target._actions for o in a.option_strings if o.startswith("--")]  # noqa: SLF001
    hints = []
    for arg in extra:
        if arg.startswith("--"):
            close = difflib.get_close_matches(arg.split("=", 1)[0], known, n=1, cutoff=0.6)
            if close:
                hints.append(f"{arg.split('=', 1)[0]}: did you mean {close[0]}?")
    target.error(f"unrecognized arguments: {' '.join(extra)}" + (f" ({'; '.join(hints)})" if hints else ""))


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:  # noqa: SLF001 - argparse keeps sub-parsers here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return action.choices.get(name)
    return None


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:  # noqa: SLF001 - argparse keeps sub-parsers here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return set(action.choices)
    return set()


if __name__ == "__main__":
    sys.exit(main())
