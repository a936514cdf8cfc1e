"""``odlstudio personalize`` over the virtual bench (emulated NUCLEO + LPM01A on real sockets, large
time scale), on a small real WISDM-2019 slice, with the shipped general model."""

from __future__ import annotations

import json
import threading
import time
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
    # the robust round (the default): validation windows held out, one pass before the round and one after
    # every epoch, each a D7 interval measured like a batch; the mode best on validation is recommended
    assert obj["recommended"] in ("none", "tl", "full")
    for mode in ("tl", "full"):
        r, v = rep["results"][mode], rep["results"][mode]["validation"]
        assert v["n_val"] > 0 and r["n_train_used"] + v["n_val"] == rep["data"]["n_train"]
        assert r["val_passes"] == v["passes"] == 3  # before, after the warm-up epoch, after the main epoch
        vals = [b for b in r["per_batch"] if b["phase"] == "val"]
        assert len(vals) == 3 and all(b["energy_mj"] > 0 and b["n"] == v["n_val"] for b in vals)
        assert r["round_energy_mj"] == pytest.approx(sum(b["energy_mj"] for b in r["per_batch"]))
    best = max(("none", "tl", "full"), key=lambda m: tuple(rep["validation_scores"][m][k] for k in ("macro_f1",)))
    assert rep["validation_scores"][obj["recommended"]]["macro_f1"] == rep["validation_scores"][best]["macro_f1"]
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


def recorded_session(samples: np.ndarray, events: list[int], freq: int = 1000, volt: float = 3.3):
    """A BoardSession whose PowerRecorder holds an acquisition that has already ended (samples in A and D7
    event indices, as the recorder's pump thread leaves them), for measure_batches without a bench."""
    from types import SimpleNamespace

    from app.core.personalize import BoardSession, PowerRecorder

    rec = PowerRecorder.__new__(PowerRecorder)
    rec.freq, rec.volt, rec.events = freq, volt, list(events)
    rec._chunks, rec._n, rec._lock = [np.asarray(samples, np.float64)], len(samples), threading.Lock()
    rec.capture = SimpleNamespace(finished=True)  # the acquisition is over: the waits return at once
    session = BoardSession.__new__(BoardSession)
    session.hello, session.power, session.warnings = SimpleNamespace(tick_hz=1_000_000), rec, []
    return session


def batch_reports(durations_s, n_samples, phases, t0_tick=7_000_000):
    from device.nucleo import protocol as P

    out, t = [], t0_tick
    for k, (d, n, ph) in enumerate(zip(durations_s, n_samples, phases)):
        e = t + int(round(d * 1e6))
        phase = P.Phase.WARMUP if ph == "warmup" else P.Phase.MAIN
        out.append(P.BatchReport(1, phase, 0, k // 2, k % 2, 2, n, 0.5 + k, t, e, int(round(d * 80e6))))
        t = e
    return out


def test_measure_batches_uses_the_samples_between_d7_edges():
    from app.core.personalize import RoundOutcome, measure_batches

    # warmup 0.5 s, two full main batches of 1.0 s, a last partial batch of 0.4 s (board ticks); the
    # LPM01A (1 kHz) sees them 0.4 % longer (its clock, marker latency): edges at 200, 702, 1706, 2710, 3112
    edges = [200, 702, 1706, 2710, 3112]
    amps = np.full(3400, 1e-5)
    levels = [4e-3, 1e-3, 2e-3, 3e-3]
    for (a, b), level in zip(zip(edges, edges[1:]), levels):
        amps[a:b] = level
    amps[1000] = np.nan  # a lost sample in the first main batch
    batches = batch_reports([0.5, 1.0, 1.0, 0.4], [32, 32, 32, 10], ["warmup", "main", "main", "main"])
    out = RoundOutcome("full", {}, batches, None, None, 96, 150.0, 0)
    session = recorded_session(amps, [50, *edges])  # an earlier, unrelated edge at 50
    m = measure_batches(session, out, 32)
    rows = m["per_batch"]
    assert [r["phase"] for r in rows] == ["warmup", "main", "main", "main"]
    assert [(r["epoch"], r["batch"], r["n"], r["loss"]) for r in rows] == [
        (0, 0, 32, 0.5),
        (0, 1, 32, 1.5),
        (1, 0, 32, 2.5),
        (1, 1, 10, 3.5),
    ]
    assert [r["time_s"] for r in rows] == [0.5, 1.0, 1.0, 0.4]  # board ticks, not edge spacing
    assert [r["cycles"] for r in rows] == [40_000_000, 80_000_000, 80_000_000, 32_000_000]
    assert [r["samples"] for r in rows] == [502, 1004, 1004, 402]  # between the edges
    assert [r["lost"] for r in rows] == [0, 1, 0, 0]
    for r, level, n in zip(rows, levels, (502, 1004, 1004, 402)):
        assert r["power_mw"] == pytest.approx(level * 3.3 * 1e3, rel=1e-12)
        assert r["energy_mj"] == pytest.approx(level * 3.3 * n / 1000 * 1e3, rel=1e-12)
    assert m["alignment"] == "d7" and session.warnings == []
    assert m["batches"] == 3 and m["warmup_batches"] == 1 and m["batch_size"] == 32
    assert m["time_per_batch_s"] == 1.0  # full main batches only (not the 0.4 s partial one)
    assert m["round_time_s"] == pytest.approx(2.9)
    assert m["power_mw"] == pytest.approx((1e-3 + 2e-3) / 2 * 3.3e3)
    assert m["energy_per_batch_mj"] == pytest.approx((1e-3 + 2e-3) / 2 * 3.3 * 1.004 * 1e3)
    assert m["round_energy_mj"] == pytest.approx(sum(r["energy_mj"] for r in rows))

    # the round-start edge was missed (a late capture): placed from the board's ticks, said plainly
    s1 = recorded_session(amps, edges[1:])
    m = measure_batches(s1, out, 32)
    assert m["alignment"] == "d7" and m["per_batch"][1]["samples"] == 1004
    assert m["per_batch"][0]["samples"] == 702 - 212  # start: the last edge minus the board's 2.9 s
    assert s1.warnings == [
        "full: 4 of 5 D7 edges matched the batch reports; the missing one was placed from the board's batch ticks"
    ]
    s2 = recorded_session(amps, edges[2:])  # two edges missing: host alignment from the round-start estimate
    m = measure_batches(s2, out, 32)
    assert m["alignment"] == "host"
    assert s2.warnings == [
        "full: 3 D7 events seen, 3 match the 5 edges of the round (marker off or events lost): batches aligned "
        "on host time, energy less precise"
    ]
    assert m["per_batch"][0]["samples"] == 500  # 150 .. 650: the host's estimate plus the board's ticks
    assert m["per_batch"][0]["power_mw"] == pytest.approx((50 * 1e-5 + 450 * 4e-3) / 500 * 3.3e3)
    no_estimate = RoundOutcome("full", {}, batches, None, None, 96, None, 0)  # ... or from sample 0
    m = measure_batches(recorded_session(amps, []), no_estimate, 32)
    assert m["alignment"] == "host" and m["per_batch"][0]["power_mw"] == pytest.approx(
        (200 * 1e-5 + 300 * 4e-3) / 500 * 3.3e3
    )
    # a batch without a single good sample has no energy; the round's energy is that of the others
    gone = amps.copy()
    gone[2710:3112] = np.nan
    m = measure_batches(recorded_session(gone, edges), out, 32)
    assert m["per_batch"][3]["energy_mj"] is None and m["per_batch"][3]["lost"] == 402
    assert m["round_energy_mj"] == pytest.approx(sum(r["energy_mj"] for r in m["per_batch"][:3]))
    # no LPM01A: time only
    s3 = recorded_session(amps, edges)
    s3.power = None
    m = measure_batches(s3, out, 32)
    assert m["alignment"] == "none" and m["power_mw"] is None and m["energy_per_batch_mj"] is None
    assert "power_mw" not in m["per_batch"][0] and m["time_per_batch_s"] == 1.0


def test_measure_batches_waits_for_the_last_edge_and_its_samples():
    """While the acquisition runs, the round's last D7 edge and the samples up to it may still be on their
    way: measure_batches waits for both (here they arrive 0.2 s and 0.4 s late)."""
    from app.core.personalize import RoundOutcome, measure_batches

    edges = [200, 702, 1706, 2710, 3112]
    amps = np.full(3400, 1e-3)
    batches = batch_reports([0.5, 1.0, 1.0, 0.4], [32, 32, 32, 10], ["warmup", "main", "main", "main"])
    out = RoundOutcome("full", {}, batches, None, None, 96, 150.0, 0)
    session = recorded_session(amps[:3111], edges[:-1])
    rec = session.power
    rec.capture.finished = False  # still acquiring

    def arrive():
        time.sleep(0.2)
        with rec._lock:
            rec.events.append(edges[-1])
        time.sleep(0.2)
        with rec._lock:
            rec._chunks.append(amps[3111:])
            rec._n = len(amps)

    t = threading.Thread(target=arrive)
    t.start()
    try:
        m = measure_batches(session, out, 32)
    finally:
        t.join()
    assert m["alignment"] == "d7" and session.warnings == []
    assert [r["samples"] for r in m["per_batch"]] == [502, 1004, 1004, 402]


def test_match_edges_tolerance_grows_with_the_distance_from_the_last_edge():
    # 2 samples + 0.5 % of the distance to the round's last edge (from which the offset is taken)
    tau = np.array([0.0, 100.0, 200.0])
    edges, m = match_edges(tau, np.array([1003.0, 1100.0, 1200.0]))  # 3.0 off at 200 samples: the limit
    assert m == 3 and list(edges) == [1003.0, 1100.0, 1200.0]
    edges, m = match_edges(tau, np.array([1000.0, 1102.7, 1200.0]))  # 2.7 off at 100 samples: > 2.5
    assert m == 2 and list(edges) == [1000.0, 1100.0, 1200.0]


def test_batch_energy_of_ranges_without_samples():
    i = np.concatenate([np.full(100, 1e-3), np.full(300, 2e-3)])
    i[150:160] = np.nan
    none = {"samples": 0, "mean_current_a": None, "power_mw": None, "energy_mj": None}
    e = batch_energy(i, 100.0, 3.3, [(500, 600), (300, 200), (150, 160), (100, 110)])
    assert e[0] == {**none, "lost": 0}  # beyond the capture
    assert e[1] == {**none, "lost": 0}  # an empty (reversed) range
    assert e[2] == {**none, "lost": 10}  # only lost samples
    assert e[3]["samples"] == 10 and e[3]["energy_mj"] == pytest.approx(2e-3 * 3.3 * 0.1 * 1e3)  # and on


def test_batch_energy_integrates_current_between_edges():
    f, v = 100.0, 3.3
    i = np.concatenate([np.full(100, 1e-3), np.full(300, 2e-3)])
    i[150] = np.nan  # a lost sample
    e = batch_energy(i, f, v, [(0, 100), (100, 400), (390, 500)])
    assert e[0]["energy_mj"] == pytest.approx(1e-3 * 3.3 * 1.0 * 1e3)
    assert e[1]["energy_mj"] == pytest.approx(2e-3 * 3.3 * 3.0 * 1e3) and e[1]["lost"] == 1
    assert e[2]["samples"] == 10  # clipped at the end of the capture
