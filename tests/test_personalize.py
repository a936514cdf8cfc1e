"""``odlstudio personalize`` over the virtual bench (emulated NUCLEO + LPM01A on real sockets, large
time scale), on a small real WISDM-2019 slice, with the shipped general model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.core.personalize import PersonalizeConfig, PersonalizeError, batch_energy, match_edges, personalize

from .test_personalize_data import real_lines, write

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(time_scale=2000.0, power_freq=10, epochs=1, warmup_epochs=1)


@pytest.fixture(scope="module")
def user_file(tmp_path_factory, shared_data) -> Path:
    d = tmp_path_factory.mktemp("user")
    # subject 1600 never trained the shipped models; 30 s of each activity
    return write(d, "data_1600_accel_phone.txt", real_lines(shared_data, "1600", 600))


@pytest.fixture(scope="module")
def npz_model(tmp_path_factory) -> Path:
    """The shipped T=20 general model as .npz (loads without TensorFlow, for the function-level tests)."""
    from app.core.models import export_npz, load_model

    src = ROOT / "assets" / "models" / "paper_cnn_wisdm5_T20.keras"
    assert src.exists(), f"{src} missing: the repository ships it (odlstudio make-assets rebuilds it)"
    out = tmp_path_factory.mktemp("model") / "general_T20.npz"
    export_npz(load_model(src), out)
    return out


def test_cli_personalize_json_has_every_field_and_exports(user_file, tmp_path, capsys):
    from app.cli import main

    out = tmp_path / "out"
    rc = main(
        [
            "personalize",
            "--data",
            str(user_file),
            "--input-size",
            "20",
            "--epochs",
            "1",
            "--warmup-epochs",
            "1",
            "--time-scale",
            "2000",
            "--power-freq",
            "10",
            "--json",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    obj = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert obj["user"] == "1600" and obj["input_size"] == 20
    assert set(obj["results"]) == {"none", "tl", "full"}
    assert set(obj["results"]["none"]) >= {"macro_f1", "accuracy"}
    for mode in ("tl", "full"):
        r = obj["results"][mode]
        for key in ("macro_f1", "accuracy", "batches", "time_per_batch_s", "energy_per_batch_mj"):
            assert r[key] is not None, (mode, key)
        assert 0.0 <= r["macro_f1"] <= 1.0 and r["batches"] > 0 and r["alignment"] == "d7"
    # the estimator's cost model drives the emulated board: Full batches take longer and cost more
    tl, full = obj["results"]["tl"], obj["results"]["full"]
    assert full["time_per_batch_s"] > 2.5 * tl["time_per_batch_s"]
    assert full["energy_per_batch_mj"] > 2.5 * tl["energy_per_batch_mj"]
    # energy = power x time per batch; the emulated board draws the `paper` profile's 2.65 mW, measured by
    # the LPM01A at its 3.3 V less 0.24 % droop: 2.644 mW seen for both modes (10 Hz sampling, 1 % bound)
    for r in (tl, full):
        assert r["power_mw"] == pytest.approx(2.65, rel=0.01)
        assert r["energy_per_batch_mj"] == pytest.approx(r["power_mw"] * r["time_per_batch_s"], rel=0.05)
    rep = json.loads((out / "report.json").read_text())
    assert rep["results"]["full"]["per_batch"][0]["energy_mj"] > 0
    for mode in ("tl", "full"):
        names = {p.name for p in (out / mode).iterdir()}
        assert {"1600_%s_T20.keras" % mode, "1600_%s_T20_float32.tflite" % mode, "1600_%s_T20.h" % mode} <= names


def test_personalize_function_improves_on_a_new_user(user_file, npz_model):
    res = personalize(
        PersonalizeConfig(data=str(user_file), model=str(npz_model), modes=("none", "full"), **dict(FAST, epochs=3))
    )
    r = res.report["results"]
    assert r["full"]["macro_f1"] > r["none"]["macro_f1"]
    assert res.report["board"]["emulated"] is True
    # downloaded weights are the personalized ones: evaluating them on the host reproduces the report
    from app.core.personalize import evaluate_host

    again = evaluate_host(res.model.arch, res.weights["full"], res.model.prepare(res.data.test.x), res.data.test.y)
    assert again["macro_f1"] == r["full"]["macro_f1"]


def test_personalize_without_power_reports_time_only(user_file, npz_model):
    res = personalize(PersonalizeConfig(data=str(user_file), model=str(npz_model), modes=("tl",), power=False, **FAST))
    r = res.report["results"]["tl"]
    assert r["time_per_batch_s"] > 0 and r["energy_per_batch_mj"] is None and r["alignment"] == "none"


def test_bad_arguments_are_named(user_file, npz_model, capsys):
    from app.cli import main

    assert main(["personalize", "--data", str(user_file), "--modes", "none,deep", "--quiet"]) == 2
    assert "--modes" in capsys.readouterr().err
    assert main(["personalize", "--data", str(user_file), "--input-size", "33", "--quiet"]) == 2
    assert "no shipped general model for T=33" in capsys.readouterr().err
    with pytest.raises(PersonalizeError, match="takes T=20 but --input-size is 40"):
        personalize(PersonalizeConfig(data=str(user_file), model=str(npz_model), input_size=40))
    assert main(
        [
            "personalize",
            "--data",
            str(user_file),
            "--model",
            str(npz_model),
            "--board",
            "socket://127.0.0.1:9",
            "--modes",
            "tl",
            "--timeout",
            "0.3",
            "--quiet",
        ]
    ) in (1, 2)
    assert "127.0.0.1:9" in capsys.readouterr().err


def test_match_edges_recovers_a_missing_edge_and_refuses_garbage():
    tau = np.array([0.0, 10.0, 20.0, 30.0])
    ev = np.array([1000.0, 1010.0, 1020.0, 1030.0])
    edges, m = match_edges(tau, ev)
    assert m == 4 and np.array_equal(edges, ev)
    edges, m = match_edges(tau, ev[1:])  # the round-start edge was missed by a late capture
    assert m == 3 and np.allclose(edges, ev)
    edges, m = match_edges(tau, np.array([5.0, 1030.0]))  # only the last edge: 1 of 4
    assert m == 1
    assert match_edges(tau, np.zeros(0)) == (None, 0)


def test_batch_energy_integrates_current_between_edges():
    f, v = 100.0, 3.3
    i = np.concatenate([np.full(100, 1e-3), np.full(300, 2e-3)])
    i[150] = np.nan  # a lost sample
    e = batch_energy(i, f, v, [(0, 100), (100, 400), (390, 500)])
    assert e[0]["energy_mj"] == pytest.approx(1e-3 * 3.3 * 1.0 * 1e3)
    assert e[1]["energy_mj"] == pytest.approx(2e-3 * 3.3 * 3.0 * 1e3) and e[1]["lost"] == 1
    assert e[2]["samples"] == 10  # clipped at the end of the capture
