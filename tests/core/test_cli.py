"""The console entry point: sub-commands register, and the GUI's options work without `gui`."""

from __future__ import annotations

import pytest

from app import cli


def test_every_listed_command_registers():
    parser = cli.build_parser()
    names = cli._subcommands(parser)
    for expected in ("gui", "bench", "power", "estimate", "pretrain", "make-assets"):
        assert expected in names


def test_gui_options_without_subcommand_go_to_gui(monkeypatch):
    seen = {}

    import app.commands.gui as gui

    def fake_run(args):
        seen.update(vars(args))
        return 0

    monkeypatch.setattr(gui, "run", fake_run)
    # set_defaults(func=run) captured the original: patch the parser default instead
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser, fake_run))
    assert cli.main(["--bench", "--data-dir", "/tmp/x"]) == 0
    assert seen["command"] == "gui" and seen["bench"] is True and seen["data_dir"] == "/tmp/x"


def _with_func(parser, fn):
    for action in parser._actions:
        if hasattr(action, "choices") and isinstance(action.choices, dict) and "gui" in action.choices:
            action.choices["gui"].set_defaults(func=fn)
    return parser


def test_help_and_unknown_option_do_not_start_the_gui(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "estimate" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["--no-such-option"])
    assert exc.value.code == 2
