"""A new user's mistakes (an exploratory test, 2026-12-06): bad input found by acting as a user who makes
mistakes.  Each test reproduces one finding (a traceback or "unexpected error", a silently wasted run, lost
data) and checks the plain-words message that replaced it; none duplicates tests/core/test_cli_hostile.py or
test_hostile_files.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


# --- power --out: an existing capture is never destroyed ---------------------------------------------------
@pytest.mark.parametrize("name", ["old.h5", "old.csv"])
def test_power_out_never_destroys_an_existing_capture(tmp_path, capsys, name):
    """`power --out old.h5 --port <wrong>` emptied the earlier capture (550 KB -> an 8 KB file without samples)
    before finding out that the port did not answer; a capture that did run replaced it without a word."""
    from app.cli import main

    old = tmp_path / name
    old.write_bytes(b"an earlier capture: irreplaceable measurements\n" * 100)
    before = old.read_bytes()
    code = main(["power", "--port", "socket://127.0.0.1:1", "--duration", "1", "--timeout", "0.5", "--out", str(old)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"--out {old}: already exists" in err, err
    assert old.read_bytes() == before


# --- personalize --data: a damaged .npz ---------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["empty", "truncated", "zip_header_only"])
def test_damaged_npz_data_is_a_message(tmp_path, damage):
    """An empty or truncated .npz as --data: "unexpected error: EOFError: No data left in file" /
    "BadZipFile: File is not a zip file ... this is a bug" (the windows-export sniffing let them through)."""
    from app.core.personalize import PersonalizeError, load_user_data

    good = tmp_path / "good.npz"
    np.savez(good, X=np.zeros((50, 20, 3), np.float32), y=np.zeros(50, np.int64), classes=np.array(["walking"]))
    path = tmp_path / f"{damage}.npz"
    data = good.read_bytes()
    path.write_bytes(
        {"empty": b"", "truncated": data[: len(data) // 2], "zip_header_only": b"PK\x03\x04" + bytes(50)}[damage]
    )
    with pytest.raises(PersonalizeError, match=f"{damage}.npz"):
        load_user_data(path, ["walking", "jogging"], 20)


# --- loso: settings that silently waste a run ----------------------------------------------------------------
def test_loso_auto_without_validation_is_refused():
    """`loso --modes auto --procedure plain` (or --val-every 0) pretrained and personalized every subject for
    hours and wrote no row at all: Auto chooses on validation windows and there were none."""
    from app.core.loso import LosoConfig, LosoError
    from app.core.procedure import PLAIN

    cfg = LosoConfig(modes=("none", "auto"), **PLAIN.to_dict())
    with pytest.raises(LosoError, match="--modes auto .*validation"):
        cfg.validate()
    LosoConfig(modes=("none", "auto")).validate()  # the robust round validates: fine


def test_loso_empty_subject_list_is_refused(tmp_path, capsys):
    """`loso --subjects ,` (a typo) ran every subject of the dataset (an hour) instead of saying the list is
    empty."""
    from app.cli import main

    argv = ["loso", "--dataset", "hapt", "--subjects", " , ", "--results", str(tmp_path / "r"), "--quiet"]
    code = main([*argv, "--data", str(tmp_path / "none.npz")])  # (no data: unfixed, it fails fast, not in an hour)
    err = capsys.readouterr().err
    assert code == 2 and "--subjects" in err and "empty" in err, err


# --- accuracy-prior ------------------------------------------------------------------------------------------
@pytest.fixture
def loso_results(tmp_path) -> Path:
    from tests.core.test_accuracy_prior import results_one_row_per_mode

    return results_one_row_per_mode(tmp_path)


def test_loso_results_with_undecodable_bytes_are_skipped(loso_results, tmp_path, capsys):
    """Binary junk in a results file (a damaged disk, a wrong file copied over it): "unexpected error:
    UnicodeDecodeError ... this is a bug" from `accuracy-prior` (and from `loso` resuming); damaged lines are
    skipped like a line cut by a crash."""
    from app.cli import main
    from app.core.loso import read_rows

    path = loso_results / "loso_hapt.jsonl"
    path.write_bytes(path.read_bytes() + b"\xd8\xff\x00garbage\n")
    (loso_results / "loso_wisdm2019.jsonl").write_bytes(bytes(range(256)) * 8)
    assert len(read_rows(path)) == 3
    assert read_rows(loso_results / "loso_wisdm2019.jsonl") == []
    code = main(["accuracy-prior", "--results", str(loso_results), "--out", str(tmp_path / "prior.json")])
    err = capsys.readouterr().err
    assert code == 0 and "unexpected" not in err, err
    assert json.loads((tmp_path / "prior.json").read_text())["datasets"]["hapt"]["subjects"] == 1


@pytest.mark.parametrize("target", ["results_file", "model", "missing_folder", "a_folder"])
def test_accuracy_prior_out_is_checked_before_writing(loso_results, tmp_path, capsys, target):
    """`accuracy-prior --out` replaced any file without a word (a typo `--out results/loso_hapt.jsonl` destroyed
    the LOSO results, `--out model.keras` a model), created missing folders (`/nonexistent/x.json` "wrote"),
    and for a folder said "[Errno 21] Is a directory: '/tmp/.f.tmp123-456' -> ..." without naming --out."""
    from app.cli import main

    model = tmp_path / "model.keras"
    model.write_bytes(b"PK\x03\x04 a model")
    (tmp_path / "a_folder").mkdir()
    out = {
        "results_file": loso_results / "loso_hapt.jsonl",
        "model": model,
        "missing_folder": tmp_path / "nonexistent" / "prior.json",
        "a_folder": tmp_path / "a_folder",
    }[target]
    before = {p: p.read_bytes() for p in (loso_results / "loso_hapt.jsonl", model)}
    code = main(["accuracy-prior", "--results", str(loso_results), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "--out" in err and "Errno 21" not in err, err
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "nonexistent").exists()


def test_accuracy_prior_replaces_an_existing_json(loso_results, tmp_path, capsys):
    """A previous table is replaced (atomically), as before: re-running the command is the normal use."""
    from app.cli import main

    out = tmp_path / "prior.json"
    out.write_text("{}")
    assert main(["accuracy-prior", "--results", str(loso_results), "--out", str(out)]) == 0
    assert "hapt" in json.loads(out.read_text())["datasets"]


# --- Ctrl-C -------------------------------------------------------------------------------------------------
def test_ctrl_c_while_the_commands_load_is_not_a_traceback(monkeypatch):
    """Ctrl-C in the first tenth of a second (while the sub-commands are imported) printed a KeyboardInterrupt
    traceback: only the command itself was inside the handler."""
    from app import cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    try:
        code = cli.main(["estimate"])
    except KeyboardInterrupt:  # (would stop the whole test session)
        pytest.fail("KeyboardInterrupt escaped app.cli.main: a traceback for the user")
    assert code == 130


# --- loso / sweep --executor ray --address host:port that nothing answers -----------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "no-such-host.invalid"])
def test_ray_address_that_nothing_answers_is_said_at_once(monkeypatch, host):
    """`loso --executor ray --address nowhere:1` (a GCS address, no ray://) hung for over 5 minutes, printing
    Ray's "Failed to connect to GCS ... within 5 seconds" every 40 s and never a sentence of its own."""
    import socket
    import time

    ray = pytest.importorskip("ray")
    from app.core.executors import ExecutorError, RayExecutor

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    calls: list = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda address=None, **kw: calls.append(address))  # never reached
    t0 = time.monotonic()
    with pytest.raises(ExecutorError, match=f"cannot reach the Ray cluster at {host}:{port}: .*--address"):
        RayExecutor(address=f"{host}:{port}").start()
    assert calls == [] and time.monotonic() - t0 < 60  # (a name lookup without DNS may take a while; Ray: minutes)


# --- personalize --power-freq: a rate the LPM01A does not have --------------------------------------------
@pytest.mark.parametrize("value", ["7", "150", "99999"])
def test_personalize_power_freq_the_shield_cannot_do_is_refused_at_once(tmp_path, capsys, value):
    """`personalize --power-freq 7` was accepted (1..100000), the whole round trained, and only at the end a
    warning said "no power capture ... freq '7': must be one of ...": the round's energy, the point of the
    run, was lost.  Now argparse refuses it before anything runs (exit 2, the option and the rates named)."""
    from app.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["personalize", "--data", str(tmp_path / "user.txt"), "--power-freq", value])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert f"argument --power-freq: freq '{value}': must be one of 100k" in err, err


def test_personalize_power_freq_accepts_the_shield_rates():
    from app.cli import build_parser

    p = build_parser()
    for text, hz in (("100", 100), ("1k", 1000), ("100000", 100_000), ("1", 1)):
        assert p.parse_args(["personalize", "--data", "x", "--power-freq", text]).power_freq == hz


# --- a folder where a file is expected: said so, not "no such file" -------------------------------------------
def test_repair_of_a_folder_says_it_is_a_folder(tmp_path, capsys):
    """`repair recordings/` said "recordings: no such file" of a folder that plainly exists."""
    from app.cli import main

    (tmp_path / "cap.h5").write_bytes(b"")
    code = main(["repair", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path}: is a folder; give the .h5 files in it" in err, err
    assert "no such" not in err


def test_personalize_data_folder_without_recordings_names_the_option_once(tmp_path):
    """`personalize --data empty_folder`: "--data: --data /x: found neither ..." (the prefix twice)."""
    from app.core.personalize import PersonalizeError, load_user_data

    with pytest.raises(PersonalizeError) as exc:
        load_user_data(tmp_path, ["walking", "jogging"], 20)
    assert str(exc.value).startswith(f"--data {tmp_path}: ") and "--data: --data" not in str(exc.value)


def test_estimate_accuracy_file_with_no_measurement_is_refused(tmp_path, capsys):
    """`estimate --accuracy measured.json` holding `[]` (an export that found nothing): the file was taken and
    the recommendation silently used the paper's Table II instead of the user's figures."""
    from app.cli import main

    acc = tmp_path / "measured.json"
    acc.write_text("[]\n")
    assert main(["estimate", "--accuracy", str(acc)]) == 2
    err = capsys.readouterr().err
    assert f"--accuracy: {acc} holds an empty list" in err, err


# --- a model's JSON sidecar with a sample rate that is not one ----------------------------------------------
@pytest.mark.parametrize("rate", ["fast", 0, -1e300, float("nan"), True])
def test_model_sidecar_with_a_bad_rate_is_refused_at_load(tmp_path, rate):
    """`personalize --model m.keras` whose m.json says `"rate_hz": "fast"` (or 0, a negative number, NaN):
    "unexpected error: ValueError: could not convert string to float: 'fast'" / "PreprocessError: sample rates
    must be > 0 Hz ... this is a bug" after the model loaded (the Training panel reads the same rate)."""
    import shutil

    from app.core.models import ModelError, load_model

    src = ROOT / "assets" / "models" / "paper_cnn_wisdm5_T20.keras"
    model = tmp_path / "m.keras"
    shutil.copy(src, model)
    meta = json.loads(src.with_suffix(".json").read_text())
    meta["rate_hz"] = rate
    model.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"m\.keras: rate_hz .* in its metadata is not a sample rate"):
        load_model(model)


def test_model_sidecar_naming_a_class_twice_is_refused_at_load(tmp_path):
    """Classes `[a, a, b, c, d]`: loaded, then "user 1600 has no data for any class of the model (a <- a; a <- a;
    ...)" — a class map that cannot be right, blamed on the data."""
    import shutil

    from app.core.models import ModelError, load_model

    src = ROOT / "assets" / "models" / "paper_cnn_wisdm5_T20.keras"
    model = tmp_path / "m.keras"
    shutil.copy(src, model)
    meta = json.loads(src.with_suffix(".json").read_text())
    meta["classes"] = ["walking", "walking", "stairs", "sitting", "standing"]
    model.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="m.keras: its metadata lists the class 'walking' twice"):
        load_model(model)


# --- an option the command does not have ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "usage", "last"),
    [
        (
            ["personalize", "--data", "x.txt", "--batchsize", "3"],
            "usage: odlstudio personalize ",
            "odlstudio personalize: error: unrecognized arguments: --batchsize 3 (--batchsize: did you mean --batch?)",
        ),
        (
            ["loso", "--dataset", "hapt", "--epcohs=3", "--sedd", "1"],
            "usage: odlstudio loso ",
            "odlstudio loso: error: unrecognized arguments: --epcohs=3 --sedd 1 (--epcohs: did you mean --epochs?; "
            "--sedd: did you mean --seed?)",
        ),
        (
            ["sweep", "a.toml", "b.toml"],
            "usage: odlstudio sweep ",
            "odlstudio sweep: error: unrecognized arguments: b.toml",
        ),
        (["--bogus"], "usage: odlstudio gui ", "odlstudio gui: error: unrecognized arguments: --bogus"),
    ],
)
def test_an_unknown_option_is_said_by_its_command_with_the_closest_one(capsys, argv, usage, last):
    """Was: the top-level usage ("usage: odlstudio [-h] [--version] COMMAND ...") and "odlstudio: error:
    unrecognized arguments", which named neither the command nor the option the user meant."""
    from app.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith(usage) and err.rstrip("\n").splitlines()[-1] == last
