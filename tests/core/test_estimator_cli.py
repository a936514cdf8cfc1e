"""``odlstudio estimate``: JSON contract, readable table, --model import, and clear errors."""

from __future__ import annotations

import json

import pytest

from app.cli import main

ROW_KEYS = {
    "input_size",
    "mode",
    "params",
    "trainable_params",
    "memory_kib",
    "memory_peak_kib",
    "macs_per_sample",
    "time_per_batch_s",
    "power_mw",
    "energy_per_batch_mj",
    "fits_ram",
}


def _json(capsys, *argv):
    assert main(["estimate", *argv, "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, "exactly one JSON line"
    return json.loads(out[0])


def test_json_rows_reproduce_table3(capsys):
    d = _json(capsys, "--arch", "paper", "--input-sizes", "20,40,60,80,100", "--modes", "tl,full", "--preset", "paper")
    assert len(d["rows"]) == 10
    for row in d["rows"]:
        assert ROW_KEYS <= set(row)
        assert set(row["macs_per_sample"]) == {
            "conv_fwd",
            "conv_dw",
            "conv_dx",
            "dense_fwd",
            "dense_dw",
            "dense_dx",
            "elementwise",
        }
    cell = next(r for r in d["rows"] if r["input_size"] == 100 and r["mode"] == "full")
    assert cell["time_per_batch_s"] == pytest.approx(48.10, rel=0.03)
    assert cell["energy_per_batch_mj"] == pytest.approx(2.65 * 48.10, rel=0.03)
    rec = d["recommendation"]
    assert rec["choice"]["mode"] == "tl" and rec["binding"] == "power_source" and rec["reason"]


def test_budgets_and_power_source_flags(capsys):
    d = _json(capsys, "--power-source", "charging", "--energy-mj", "300", "--windows", "64")
    assert d["recommendation"]["binding"] == "energy"
    assert d["recommendation"]["choice"]["energy_per_round_mj"] <= 300
    d = _json(capsys, "--ram-kib", "100", "--reserve-kib", "0", "--modes", "full", "--power-source", "charging")
    assert [r["fits_ram"] for r in d["rows"]] == [True, False, False, False, False]


def test_readable_table(capsys):
    assert main(["estimate", "--input-sizes", "20,100", "--preset", "l496-80mhz-optimized"]) == 0
    out = capsys.readouterr().out
    assert "mem KiB" in out and "Recommended:" in out and out.count("\n") > 5


def test_accuracy_file_and_saved_profile(tmp_path, capsys):
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps([{"input_size": 20, "mode": "tl", "f1": 0.99}]), encoding="utf-8")
    d = _json(capsys, "--accuracy", str(acc))
    assert (d["recommendation"]["choice"]["input_size"], d["recommendation"]["choice"]["mode"]) == (20, "tl")
    from estimator import get_profile, save_profile

    save_profile(get_profile("l496-80mhz"), tmp_path, "my-board")
    d = _json(capsys, "--preset", "my-board", "--profile-dir", str(tmp_path), "--input-sizes", "20")
    assert d["profile"]["clock_hz"] == 80e6


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--input-sizes", "20,x"], "'x' is not an integer"),
        (["--input-sizes", "4"], "T=4 does not fit"),
        (["--modes", "tl,conv9"], "conv9"),
        (["--preset", "warp-drive"], "unknown device profile"),
        (["--energy-mj", "-3"], "must be a finite number >= 0"),
        (["--model", "/nonexistent/model.h5"], "file not found"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--ram-kib", "0"], "--ram-kib 0 leaves nothing beside the firmware's --reserve-kib 24"),
        (["--reserve-kib", "1e30"], "--ram-kib 320 leaves nothing beside the firmware's --reserve-kib 1e+30"),
        (["--ram-kib", "24", "--reserve-kib", "24"], "--ram-kib 24 leaves nothing"),
    ],
)
def test_bad_input_names_the_argument(argv, needle, capsys):
    try:
        rc = main(["estimate", *argv])
    except SystemExit as exc:  # argparse type errors
        rc = exc.code
    assert rc == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize(
    "model, said",
    [
        ("{tmp}", "{tmp}: is a directory, expected a .keras/.h5/.hdf5/.npz file"),
        ("/dev/null", "/dev/null: unsupported model format '(no extension)' (use .keras, .h5, .hdf5, .npz)"),
        ("{tmp}/none.h5", "file not found: {tmp}/none.h5"),
        ("{tmp}/junk.keras", "{tmp}/junk.keras: not a Keras 3 .keras archive (no zip header)"),
    ],
)
def test_a_model_that_is_not_a_file_is_said_for_what_it_is(tmp_path, capsys, model, said):
    """Was: "--model: file not found: /tmp" for a folder or a device, which exist; and the importer's own
    message after "cannot load <the same path>:" (personalize says these as here)."""
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    assert main(["estimate", "--model", model.format(tmp=tmp_path)]) == 2
    assert capsys.readouterr().err == f"odlstudio estimate: error: --model: {said.format(tmp=tmp_path)}\n"


def test_bad_accuracy_file_names_the_item(tmp_path, capsys):
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps([{"input_size": 20, "mode": "tl", "f1": 0.9}, {"mode": "tl"}]), encoding="utf-8")
    assert main(["estimate", "--accuracy", str(acc)]) == 2
    assert "item 1" in capsys.readouterr().err


@pytest.mark.needs_shared
def test_model_import_reports_inference_figures(st_models, capsys):
    import app.core.models  # noqa: F401 - the project's own module: a broken import fails, never skips

    h5 = (
        st_models
        / "v2.0.1/human_activity_recognition/pretrained_models/ign/ST_pretrainedmodel_public_dataset/WISDM/ign_wl_24/ign_wl_24.h5"
    )
    if not h5.is_file():
        pytest.skip(f"{h5} not found")
    d = _json(capsys, "--model", str(h5), "--modes", "tl,full", "--preset", "l496-80mhz")
    assert [r["input_size"] for r in d["rows"]] == [24, 24]
    r = d["rows"][1]
    assert r["params"] == 3064 and r["trainable_params"] == 3064
    assert r["weights_kib"] == pytest.approx(11.97, abs=0.005)
    assert r["inference_macc"] > 0
    # IGN 24: input 24x3x1, Conv2D(24, (16,1)) + ReLU -> 9x3x24, MaxPool(3,1) -> 3x3x24, Flatten, Dense 12, Dense 4.
    # Unfused, the pooling holds its input and output (648 + 216 values); fused as ST's code generator does
    # (conv + ReLU + pooling as one layer), the largest layer is that one: its input and the pooled output (72 + 216)
    assert r["activation_peak_kib"] == pytest.approx((648 + 216) * 4 / 1024)
    assert r["activation_fused_kib"] == pytest.approx((72 + 216) * 4 / 1024)


def test_classes_with_a_model_or_architecture_file_is_refused(tmp_path, capsys):
    """--classes shapes only the paper model; with a model or an architecture file it was silently ignored, so
    the user saw figures for another head than the one asked for."""
    from estimator.arch import paper_cnn

    arch = tmp_path / "a.json"
    arch.write_text(paper_cnn(20, 4).to_json(), encoding="utf-8")
    assert main(["estimate", "--arch", str(arch), "--classes", "4"]) == 2
    assert capsys.readouterr().err == (
        f"odlstudio estimate: error: --classes is for --arch paper only; --arch {arch} has its own classes\n"
    )
    assert main(["estimate", "--model", str(tmp_path / "m.h5"), "--classes", "6"]) == 2
    assert capsys.readouterr().err == (
        f"odlstudio estimate: error: --classes is for --arch paper only; --model {tmp_path / 'm.h5'} has its own "
        "classes\n"
    )
    d = _json(capsys, "--arch", str(arch), "--input-sizes", "20", "--modes", "tl")
    assert d["rows"][0]["params"] == paper_cnn(20, 4).params
    for argv, classes in (([], 6), (["--classes", "3"], 3), (["--arch", "paper", "--classes", "9"], 9)):
        d = _json(capsys, *argv, "--input-sizes", "20", "--modes", "full")
        assert d["rows"][0]["params"] == paper_cnn(20, classes).params


def test_profile_dir_that_is_not_a_folder_is_refused(tmp_path, capsys):
    """A mistyped --profile-dir was ignored (the preset then came from nowhere or 'unknown device profile')."""
    f = tmp_path / "a.json"
    f.write_text("{}", encoding="utf-8")
    assert main(["estimate", "--profile-dir", str(f)]) == 2
    assert capsys.readouterr().err == (
        f"odlstudio estimate: error: --profile-dir {f}: is a file, not a folder of saved board profiles\n"
    )
    assert main(["estimate", "--profile-dir", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == (
        f"odlstudio estimate: error: --profile-dir {tmp_path / 'nope'}: no such folder; give a folder of saved "
        "board profiles\n"
    )
    assert _json(capsys, "--profile-dir", str(tmp_path), "--input-sizes", "20")["rows"]
