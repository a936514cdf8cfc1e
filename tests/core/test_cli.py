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


def test_option_validators_live_in_argtypes_only():
    """Issue 14: every ``type=`` validator of the sub-commands is in app/commands/_argtypes.py, so a kind of
    value (a port, a positive number, a comma list) is checked and worded one way everywhere."""
    import ast
    from pathlib import Path

    import app.commands

    own = []
    for path in sorted(Path(app.commands.__file__).parent.glob("*.py")):
        if path.name == "_argtypes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "ArgumentTypeError":
                own.append(f"{path.name}:{node.lineno}")
    assert not own, f"argparse validators outside app/commands/_argtypes.py: {own}"


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["bench", "--port-lpm", "x"], "argument --port-lpm: port 'x' is not an integer (0 = pick a free port)"),
        (["bench", "--port-board", "-1"], "argument --port-board: port -1 out of range 0..65535"),
        (["bench", "--time-scale", "1e-9"], "argument --time-scale: 1e-9 is out of range: allowed [0.001, 1000]"),
        (["bench", "--time-scale", "inf"], "argument --time-scale: 'inf' is not a finite number"),
        (["power", "--duration", "0"], "argument --duration: '0' must be a finite number > 0"),
        (["power", "--duration", "nan"], "argument --duration: 'nan' is not a finite number"),
        (["power", "--trigdelay", "-1"], "argument --trigdelay: -1 is out of range: allowed [0, 600]"),
        (["power", "--trigdelay", "1e30"], "argument --trigdelay: 1e30 is out of range: allowed [0, 600]"),
        (["power", "--acqtime", "x"], "argument --acqtime: 'x' is not a number"),
        (["estimate", "--clock-mhz", "0"], "argument --clock-mhz: '0' must be a finite number > 0"),
        (["estimate", "--time-s", "inf"], "argument --time-s: 'inf' is not a finite number"),
        (["estimate", "--input-sizes", "20,0"], "argument --input-sizes: 0 must be >= 1"),
        (["estimate", "--input-sizes", ","], "argument --input-sizes: expected at least one integer"),
        (["estimate", "--modes", ", ,"], "argument --modes: expected at least one mode"),
        (["smoke", "--seconds", "3600"], "argument --seconds: 3600 is out of range: allowed (0, 3600)"),
        (["smoke", "--min-fraction", "0"], "argument --min-fraction: 0 is out of range: allowed (0, 1]"),
    ],
)
def test_bad_option_values_are_refused_with_the_option_and_the_reason(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_option_values_in_range_parse():
    p = cli.build_parser()
    a = p.parse_args(["bench", "--port-lpm", "0", "--port-board", "65535", "--time-scale", "1000"])
    assert (a.port_lpm, a.port_board, a.time_scale) == (0, 65535, 1000.0)
    a = p.parse_args(["estimate", "--input-sizes", "20, 40,", "--modes", "tl,dense1+dense2", "--energy-mj", "0"])
    assert a.input_sizes == [20, 40] and a.modes == ["tl", ["dense1", "dense2"]] and a.energy_mj == 0.0
    a = p.parse_args(["smoke", "--seconds", "0.5", "--min-fraction", "1"])
    assert (a.seconds, a.min_fraction) == (0.5, 1.0)
