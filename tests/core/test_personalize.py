"""``odlstudio personalize`` over the virtual bench (emulated NUCLEO + LPM01A on real sockets, large
time scale), on a small real WISDM-2019 slice, with the shipped general model."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from app.core.personalize import PersonalizeConfig, PersonalizeError, personalize
from app.core.procedure import choose_mode
from tests.datakit import real_lines, write
from tests.exportkit import strings_in

ROOT = Path(__file__).resolve().parents[2]
FAST = dict(time_scale=2000.0, power_freq=10, epochs=1, warmup_epochs=1, bench_board="python")


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
            "--bench-board",
            "python",
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
    # every epoch, each a D7 interval measured like a batch; a mode is recommended from the validation scores
    assert obj["recommended"] in ("none", "tl", "full")
    for mode in ("tl", "full"):
        r, v = rep["results"][mode], rep["results"][mode]["validation"]
        assert v["n_val"] > 0 and r["n_train_used"] + v["n_val"] == rep["data"]["n_train"]
        assert r["val_passes"] == v["passes"] == 3  # before, after the warm-up epoch, after the main epoch
        vals = [b for b in r["per_batch"] if b["phase"] == "val"]
        assert len(vals) == 3 and all(b["energy_mj"] > 0 and b["n"] == v["n_val"] for b in vals)
        assert r["round_energy_mj"] == pytest.approx(sum(b["energy_mj"] for b in r["per_batch"]))
    # the recommendation is the procedure's rule (TL/Full only on strictly higher validation F1 than 'none')
    vs = {m: (v["loss"], v["macro_f1"]) for m, v in rep["validation_scores"].items()}
    assert set(vs) == {"none", "tl", "full"} and obj["recommended"] == choose_mode(vs, "strict")
    for mode in ("tl", "full"):
        names = {p.name for p in (out / mode).iterdir()}
        assert {"1600_%s_T20.keras" % mode, "1600_%s_T20_float32.tflite" % mode, "1600_%s_T20.h" % mode} <= names
        # issue 12 item 8, the CLI's exports too: every file written is listed (the JSON sidecars included) ...
        assert sorted(Path(f).name for f in rep["outputs"][mode].values()) == sorted(names)
        # ... and the sidecars describe the personalized model, not the general model's pretraining
        for side in (f"1600_{mode}_T20.json", f"1600_{mode}_T20_float32.json"):
            meta = json.loads((out / mode / side).read_text())
            for stale in ("optimizer", "learning_rate", "best_epoch", "train_subjects", "val_macro_f1", "format"):
                assert stale not in meta, (side, stale)
            assert meta["base_model"] == "paper_cnn_wisdm5_T20.keras"
            assert not [v for v in strings_in(meta) if v.startswith("/")], "no absolute paths of this machine"
            pm = meta["personalized"]
            assert pm["mode"] == mode and pm["input_size"] == 20 and pm["user"] == "1600"
            assert pm["dataset"] == user_file.name and pm["learning_rate"] == rep["settings"]["lr"]
            assert pm["metrics"]["after"]["macro_f1"] == rep["results"][mode]["macro_f1"]
            assert pm["metrics"]["before"]["macro_f1"] == rep["results"]["none"]["macro_f1"]
            assert pm["windows"]["per_class"]["walking"]["train"] > 0 and pm["batches"] > 0
        float32 = json.loads((out / mode / f"1600_{mode}_T20_float32.json").read_text())
        assert float32["tflite_quantize"] == "float32"


def test_cli_personalize_out_survives_a_crashing_tflite_converter(user_file, tmp_path, capsys, monkeypatch):
    """The TFLite converter runs in a child process: its crash costs the .tflite files; the other formats and
    report.json (with export_errors) are written, the run says what is missing and exits 1."""
    from app.cli import main
    from app.core.tflite_convert import FAULT_ENV

    monkeypatch.setenv(FAULT_ENV, "abort")
    out = tmp_path / "out"
    args = ["personalize", "--bench-board", "python", "--data", str(user_file), "--input-size", "20", "--epochs", "1"]
    args += ["--warmup-epochs", "1"]
    rc = main([*args, "--time-scale", "2000", "--power-freq", "10", "--json", "--quiet", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 1, captured.err
    assert "tl/tflite_float32 not written: TFLite conversion (float32) of personalized tl for user 1600: the " in (
        captured.err
    )
    assert "converter process crashed (SIGABRT)" in captured.err and "Traceback" not in captured.err
    obj = json.loads(captured.out.strip().splitlines()[-1])
    assert "not written" in obj["out_error"] and set(obj["results"]) == {"none", "tl", "full"}
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["export_errors"]) == {"tl", "full"}  # "none" is the general model: nothing exported
    for mode in ("tl", "full"):
        names = {p.name for p in (out / mode).iterdir()}
        assert {f"1600_{mode}_T20.keras", f"1600_{mode}_T20.h"} <= names and not any(".tflite" in n for n in names)
        assert "crashed (SIGABRT)" in rep["export_errors"][mode]["tflite_float32"]


def test_personalize_function_improves_on_a_new_user(user_file, npz_model):
    res = personalize(
        PersonalizeConfig(data=str(user_file), model=str(npz_model), modes=("none", "full"), **dict(FAST, epochs=3))
    )
    r = res.report["results"]
    assert r["full"]["macro_f1"] > r["none"]["macro_f1"]
    assert res.report["board"]["emulated"] is True
    assert (res.report["board"]["build"], res.report["board"]["odl_firmware"]) == ("odl-firmware", False)
    # downloaded weights are the personalized ones: evaluating them on the host reproduces the report
    from app.core.personalize import evaluate_host

    again = evaluate_host(res.model.arch, res.weights["full"], res.model.prepare(res.data.test.x), res.data.test.y)
    assert again["macro_f1"] == r["full"]["macro_f1"]
    # an exported model's sidecar keeps the base model's origin and licence (ST's zoo), not its pretraining
    import dataclasses

    from app.core.personalize import export_meta

    res.model = dataclasses.replace(
        res.model, meta={**res.model.meta, "origin": "st_modelzoo", "license": "SLA0044", "optimizer": "adam"}
    )
    meta = export_meta(res, "full")
    assert meta["origin"] == "st_modelzoo" and meta["license"] == "SLA0044" and "optimizer" not in meta


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


def test_a_power_shield_named_but_not_answering_stops_before_the_round(user_file, npz_model, capsys):
    """`--power URL` names the shield whose figures the user wants: one that cannot be opened is a power failure
    (exit 1) before any round runs, not a round without energy and a warning at its end.  (The bench's own
    shield failing still only warns: test_personalize_without_power_reports_time_only covers no shield.)"""
    from app.cli import main

    t0 = time.monotonic()
    argv = ["personalize", "--bench-board", "python", "--data", str(user_file), "--model", str(npz_model)]
    argv += ["--modes", "tl"]
    code = main([*argv, "--power", "socket://127.0.0.1:9", "--timeout", "0.5", "--time-scale", "2000", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1 and "macro-F1" not in out, (out, err)
    assert err.startswith("odlstudio personalize: board/power failure: --power socket://127.0.0.1:9: "), err
    assert "--no-power" in err and time.monotonic() - t0 < 60


def batch_reports(durations_s, n_samples, phases, t0_tick=7_000_000):
    from device.nucleo import protocol as P

    out, t = [], t0_tick
    for k, (d, n, ph) in enumerate(zip(durations_s, n_samples, phases)):
        e = t + int(round(d * 1e6))
        phase = P.Phase.WARMUP if ph == "warmup" else P.Phase.MAIN
        out.append(P.BatchReport(1, phase, 0, k // 2, k % 2, 2, n, 0.5 + k, t, e, int(round(d * 80e6))))
        t = e
    return out


def trace_of(amps: np.ndarray, edges_idx, rate: float = 1000.0, volt: float = 3.3):
    """A power trace holding ``amps`` (device sample k at k / rate) and D7 edges at sample indices."""
    from app.core.energy import PowerTrace
    from app.core.streams import SampleStream

    s = SampleStream("current", rate, 1, recent_s=len(amps) / rate + 1)
    s.append(np.asarray(amps, np.float64))
    return PowerTrace(s, lambda: [(i / rate, "event", "ris") for i in edges_idx], volt)


def round_of(reports, trace, anchor_t: float):
    """The rows and RoundResult a round with these reports gets on ``trace`` (the pipeline's whole-round
    attribution)."""
    from app.core.board_round import RoundResult
    from app.core.energy import BatchRow, attribute_energy

    rows = [
        BatchRow(
            k,
            "warmup" if b.phase == 0 else "main",
            b.epoch,
            b.batch,
            b.n_samples,
            b.loss,
            b.start_tick,
            b.end_tick,
            b.cycles,
            (b.end_tick - b.start_tick) / 1e6,
        )
        for k, b in enumerate(reports)
    ]
    if trace is not None:
        rows, _ = attribute_energy(
            rows,
            trace.edges(),
            trace.mean_current,
            trace.voltage,
            tick_hz=1e6,
            round_start_tick=reports[0].start_tick,
            anchor_t=anchor_t,
            rate_hz=trace.rate_hz,
            covered=trace.covered,
        )
    else:
        import dataclasses

        rows = [dataclasses.replace(r, source="none") for r in rows]
    return RoundResult(rows, "done", {}, {}, {}, 96, None if trace is None else trace.voltage)


def test_batch_summary_reports_the_energy_the_round_pipeline_attributed():
    from app.core.personalize import batch_summary
    from device.nucleo import protocol as P

    assert P.Phase.WARMUP == 0
    # warmup 0.5 s, two full main batches of 1.0 s, a last partial batch of 0.4 s (board ticks); the
    # LPM01A (1 kHz) sees them 0.4 % longer (its clock, marker latency): edges at 200, 702, 1706, 2710, 3112
    edges = [200, 702, 1706, 2710, 3112]
    amps = np.full(3400, 1e-5)
    levels = [4e-3, 1e-3, 2e-3, 3e-3]
    for (a, b), level in zip(zip(edges, edges[1:]), levels):
        amps[a:b] = level
    amps[1000] = np.nan  # a lost sample in the first main batch
    reports = batch_reports([0.5, 1.0, 1.0, 0.4], [32, 32, 32, 10], ["warmup", "main", "main", "main"])
    rr = round_of(reports, trace_of(amps, [50, *edges]), anchor_t=0.15)  # an earlier, unrelated edge at 50
    m = batch_summary(rr, 32)
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
    assert [r["source"] for r in rows] == ["d7"] * 4
    for r, row, level, n in zip(rows, rr.rows, levels, (502, 1004, 1004, 402)):
        assert r["power_mw"] == pytest.approx(level * 3.3 * 1e3, rel=1e-6)  # float32 samples; a lost one: no data
        assert r["energy_mj"] == pytest.approx(level * 3.3 * n / 1000 * 1e3, rel=1e-6)
        assert r["energy_mj"] == row.energy_j * 1e3  # exactly what the app stores for the round
    assert m["alignment"] == "d7"
    assert m["batches"] == 3 and m["warmup_batches"] == 1 and m["batch_size"] == 32
    assert m["time_per_batch_s"] == 1.0  # full main batches only (not the 0.4 s partial one)
    assert m["round_time_s"] == pytest.approx(2.9)
    assert m["power_mw"] == pytest.approx((1e-3 + 2e-3) / 2 * 3.3e3)
    assert m["energy_per_batch_mj"] == pytest.approx((1e-3 + 2e-3) / 2 * 3.3 * 1.004 * 1e3)
    assert m["round_energy_mj"] == pytest.approx(sum(r["energy_mj"] for r in rows))

    # no edge at all: host alignment from the anchor (the power timeline when the host started the round)
    m = batch_summary(round_of(reports, trace_of(amps, []), anchor_t=0.15), 32)
    assert m["alignment"] == "host" and [r["source"] for r in m["per_batch"]] == ["host"] * 4
    assert m["per_batch"][0]["power_mw"] == pytest.approx((50 * 1e-5 + 450 * 4e-3) / 500 * 3.3e3)
    # a batch without a single good sample has no energy; the round's energy is that of the others
    gone = amps.copy()
    gone[2710:3112] = np.nan
    m = batch_summary(round_of(reports, trace_of(gone, edges), anchor_t=0.15), 32)
    assert m["per_batch"][3]["energy_mj"] is None and m["per_batch"][3]["source"] == "none"
    assert m["round_energy_mj"] == pytest.approx(sum(r["energy_mj"] for r in m["per_batch"][:3]))
    # no LPM01A: time only
    m = batch_summary(round_of(reports, None, 0.0), 32)
    assert m["alignment"] == "none" and m["power_mw"] is None and m["energy_per_batch_mj"] is None
    assert m["per_batch"][0]["power_mw"] is None and m["time_per_batch_s"] == 1.0
    assert "round_energy_mj" not in m  # no measurement is not 0 mJ


def test_batch_summary_lists_a_robust_rounds_validation_passes():
    """A robust round's validation passes (phase 'val', D7 intervals without an update) carry their macro-F1
    and whether their weights were kept; they count in the round's time and energy, not as batches."""
    from app.core.board_round import RoundResult
    from app.core.energy import BatchRow
    from app.core.personalize import batch_summary

    def row(i, phase, epoch, n, secs, energy_j, f1=None, best=False):
        return BatchRow(
            i,
            phase,
            epoch,
            0,
            n,
            0.5,
            0,
            0,
            0,
            secs,
            t0=0.0,
            t1=secs,
            avg_power_w=energy_j / secs,
            energy_j=energy_j,
            source="d7",
            macro_f1=f1,
            best=best,
        )

    rows = [
        row(0, "val", 0, 8, 0.25, 1e-3, 0.40),
        row(1, "main", 0, 32, 1.0, 3e-3),
        row(2, "val", 0, 8, 0.25, 2e-3, 0.75, True),
        row(3, "main", 1, 32, 1.0, 5e-3),
        row(4, "val", 1, 8, 0.5, 4e-3, 0.70),
    ]
    m = batch_summary(RoundResult(rows, "done", {}, {}, {}, 64, 3.3), 32)
    per = m["per_batch"]
    assert [(r["phase"], r.get("macro_f1"), r.get("best")) for r in per] == [
        ("val", 0.40, False),
        ("main", None, None),
        ("val", 0.75, True),
        ("main", None, None),
        ("val", 0.70, False),
    ]
    assert "macro_f1" not in per[1] and "best" not in per[3]  # a training batch has no validation score
    assert (m["batches"], m["warmup_batches"], m["val_passes"]) == (2, 0, 3)
    assert m["val_time_s"] == 1.0 and m["round_time_s"] == 3.0 and m["time_per_batch_s"] == 1.0
    assert m["energy_per_batch_mj"] == pytest.approx(4.0) and m["round_energy_mj"] == pytest.approx(15.0)


def _report(out: Path, outputs: dict) -> None:
    (out / "report.json").write_text(json.dumps({"outputs": outputs}), encoding="utf-8")


def test_earlier_outputs_lists_the_files_of_an_earlier_run_inside_the_folder(tmp_path):
    from app.core.personalize import earlier_outputs

    assert earlier_outputs(tmp_path) is None  # no report.json: no earlier run
    (tmp_path / "report.json").mkdir()
    assert earlier_outputs(tmp_path) is None  # (a folder named so is no report)
    (tmp_path / "report.json").rmdir()
    inside, outside, deeper = tmp_path / "full" / "u.keras", tmp_path.parent / "x" / "v.h", tmp_path / "a" / "b" / "w.h"
    _report(tmp_path, {"full": {"keras": str(inside), "h": str(outside), "deep": str(deeper)}})
    assert earlier_outputs(tmp_path) == [inside]  # only <out>/<mode>/<file>: nothing elsewhere is touched
    for damaged in ("{not json", "[1, 2]", '{"outputs": [1]}', '{"outputs": {"full": 3}}', '"x"'):
        (tmp_path / "report.json").write_text(damaged, encoding="utf-8")
        assert earlier_outputs(tmp_path) == [], damaged  # unreadable: an earlier run, but nothing to remove


def test_stale_outputs_of_modes_not_run_again_are_removed_and_the_rest_kept(tmp_path):
    from app.core.personalize import _remove_stale

    files = {n: tmp_path / n for n in ("full/u_full.keras", "full/u_full.h", "tl/u_tl.keras", "tl/u_tl.h")}
    for p in files.values():
        p.parent.mkdir(exist_ok=True)
        p.write_text("old")
    mine = tmp_path / "tl" / "notes.txt"  # a file the user put there: never listed, never removed
    mine.write_text("mine")
    now = {files["tl/u_tl.keras"]}
    _remove_stale(tmp_path, list(files.values()), now)
    assert not (tmp_path / "full").exists()  # the mode not run again: its files and its emptied folder
    assert files["tl/u_tl.keras"].read_text() == "old"  # written by this run (here: unchanged)
    assert not files["tl/u_tl.h"].exists()  # an earlier file of this mode that this run did not write
    assert mine.read_text() == "mine" and (tmp_path / "tl").is_dir()


def test_cli_personalize_refuses_an_out_folder_with_an_earlier_run(tmp_path, capsys):
    """Re-running into the same --out replaced the earlier models without a word, and left the folders of
    modes not run again beside a report.json that did not describe them."""
    from app.cli import main

    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}", encoding="utf-8")
    rc = main(["personalize", "--data", str(tmp_path / "none.txt"), "--out", str(out), "--quiet"])
    assert rc == 2
    assert capsys.readouterr().err == (
        f"odlstudio personalize: --out {out}: holds the results of an earlier run (report.json); give a new "
        "folder, or --overwrite to replace them\n"
    )
    assert (out / "report.json").read_text() == "{}"


def test_cli_personalize_overwrite_leaves_one_run_in_the_folder(user_file, tmp_path, capsys):
    from app.cli import main

    out = tmp_path / "out"
    args = ["personalize", "--bench-board", "python", "--data", str(user_file), "--input-size", "20", "--epochs", "1"]
    args += ["--warmup-epochs", "1"]
    args += ["--time-scale", "2000", "--power-freq", "10", "--quiet", "--out", str(out)]
    assert main([*args, "--modes", "none,full"]) == 0
    (out / "full" / "my_notes.txt").write_text("mine")
    assert main([*args, "--modes", "none,tl"]) == 2  # not without --overwrite
    assert main([*args, "--modes", "none,tl", "--overwrite"]) == 0
    capsys.readouterr()
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["outputs"]) == {"tl"}
    assert sorted(p.name for p in (out / "full").iterdir()) == ["my_notes.txt"]  # the earlier run's files went
    assert sorted(p.name for p in (out / "tl").iterdir()) == sorted(Path(f).name for f in rep["outputs"]["tl"].values())


def test_cli_personalize_text_says_the_in_process_boards_figures_are_the_estimators(user_file, capsys):
    """On the in-process bench's Python emulated board (``--bench-board python``) the time and energy per batch are the
    estimator's, and the summary says so above them (the JSON report has ``board.odl_firmware`` false)."""
    from app.cli import main

    args = ["personalize", "--data", str(user_file), "--input-size", "20", "--modes", "none,tl", "--epochs", "1"]
    assert main([*args, "--bench-board", "python", "--time-scale", "2000", "--power-freq", "10", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "user 1600, T=20:",
        "  (the board does not run the ODL firmware: it takes its batch times and current from the estimator's "
        "'odl-firmware' profile, so they are not measurements)",
    ]
    assert lines[2].startswith("  none  macro-F1 ") and lines[3].startswith("  tl    macro-F1 ")
    assert " s/batch  " in lines[3] and " mJ/batch  " in lines[3]


def test_cli_personalize_runs_the_odl_firmware_under_qemu_by_default(user_file, tmp_path, capsys):
    """Without --board the in-process bench takes the same board as the app's bench: the ODL firmware under
    QEMU when qemu-system-arm and a built firmware are there, so the figures printed are measured."""
    from app.cli import main
    from tests import firmwarekit

    firmwarekit.qemu_files()  # skips where QEMU or the ARM toolchain is missing
    out = tmp_path / "out"
    args = ["personalize", "--data", str(user_file), "--input-size", "20", "--modes", "none,tl", "--epochs", "1"]
    assert main([*args, "--warmup-epochs", "0", "--time-scale", "2000", "--power-freq", "10", "--out", str(out)]) == 0
    stdout, err = capsys.readouterr()
    assert "virtual bench: the ODL firmware under QEMU socket://127.0.0.1:" in err
    lines = stdout.splitlines()
    assert lines[0] == "user 1600, T=20:" and lines[1].startswith("  none  macro-F1 ")
    board = json.loads((out / "report.json").read_text())["board"]
    assert (board["build"], board["odl_firmware"], board["url"]) == (
        "qemu-mps2-an386",
        True,
        "in-process virtual bench",
    )


def test_cli_personalize_auto_says_when_it_falls_back_to_the_python_board(user_file, capsys, monkeypatch):
    from app.cli import main
    from device.nucleo import qemu_board

    monkeypatch.setattr(qemu_board.shutil, "which", lambda name: None)
    args = ["personalize", "--data", str(user_file), "--input-size", "20", "--modes", "tl", "--epochs", "1"]
    assert main([*args, "--warmup-epochs", "0", "--time-scale", "2000", "--no-power"]) == 0
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith(("virtual bench: ", "note: "))]
    assert len(said) == 2 and re.fullmatch(
        r"virtual bench: Python emulated board socket://127\.0\.0\.1:\d+, powershield socket://127\.0\.0\.1:\d+, "
        r"time scale 2000",
        said[0],
    ), err
    assert said[1] == (
        "note: QEMU board unavailable (qemu-system-arm is not installed (Debian/Ubuntu: sudo apt-get install "
        "qemu-system-arm); the bench uses the Python board instead)"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--bench-board", "qemu"],
            "odlstudio personalize: --bench-board qemu: the QEMU board cannot run: qemu-system-arm is not installed "
            "(Debian/Ubuntu: sudo apt-get install qemu-system-arm); the bench uses the Python board instead",
        ),
        (
            ["--bench-board", "python", "--board", "socket://127.0.0.1:9"],
            "odlstudio personalize: --bench-board python chooses the in-process virtual bench's board; it does not "
            "apply with --board socket://127.0.0.1:9",
        ),
    ],
)
def test_cli_personalize_bench_board_refusals(user_file, npz_model, capsys, monkeypatch, extra, message):
    from app.cli import main
    from device.nucleo import qemu_board

    monkeypatch.setattr(qemu_board.shutil, "which", lambda name: None)
    args = ["personalize", "--data", str(user_file), "--model", str(npz_model), "--modes", "tl", "--quiet"]
    assert main([*args, *extra]) == 2
    assert capsys.readouterr().err.strip() == message


def test_data_that_cannot_be_used_is_said_before_the_shipped_model_loads(tmp_path, capsys, monkeypatch):
    """The shipped model's classes and rate come from its sidecar: a data file with no usable record is refused
    before the model is loaded (TensorFlow starts: ~4 s), as the Training panel's round does."""
    from app.cli import main
    from app.core import personalize as P

    loads: list[object] = []
    monkeypatch.setattr(P, "resolve_model", lambda *a: loads.append(a))
    bad = tmp_path / "bad.txt"
    bad.write_text("garbage\n")
    assert main(["personalize", "--data", str(bad), "--input-size", "40", "--quiet"]) == 2
    assert loads == []
    assert capsys.readouterr().err.startswith(
        f"odlstudio personalize: --data: {bad}: no valid WISDM records (1 skipped"
    )


def test_data_that_cannot_be_used_is_said_before_a_model_file_with_a_sidecar_loads(tmp_path, capsys, monkeypatch):
    """Was: `--model FILE` loaded the model (TensorFlow: seconds) before reading the data; the app writes a
    sidecar beside every model it exports, whose classes, T and rate are enough to read the data first."""
    from app.cli import main
    from app.core import personalize as P

    loads: list[object] = []
    monkeypatch.setattr(P, "resolve_model", lambda *a: loads.append(a))
    model = tmp_path / "alice_T24.keras"
    model.write_bytes(b"not read")
    (tmp_path / "alice_T24.json").write_text('{"classes": ["walking"], "input_size": 24, "rate_hz": 20.0}')
    bad = tmp_path / "bad.txt"
    bad.write_text("garbage\n")
    assert main(["personalize", "--data", str(bad), "--model", str(model), "--quiet"]) == 2
    assert loads == []
    assert capsys.readouterr().err.startswith(
        f"odlstudio personalize: --data: {bad}: no valid WISDM records (1 skipped"
    )


def test_the_data_read_before_the_shipped_model_loads_is_used_once(user_file, monkeypatch):
    from app.core import personalize as P

    reads: list[tuple] = []
    real = P.load_user_data
    monkeypatch.setattr(P, "load_user_data", lambda *a: reads.append(a[1:4]) or real(*a))
    res = personalize(PersonalizeConfig(data=str(user_file), input_size=20, modes=("none",)))
    assert reads == [(("walking", "jogging", "stairs", "sitting", "standing"), 20, 20.0)]
    assert res.report["results"]["none"]["macro_f1"] > 0
    # a model given with --model (here the shipped file itself, whose sidecar states its classes, T and rate):
    # read once, before the load, and kept
    reads.clear()
    given = P.ASSET_MODELS / "paper_cnn_wisdm5_T20.keras"
    personalize(PersonalizeConfig(data=str(user_file), model=str(given), modes=("none",)))
    assert reads == [(("walking", "jogging", "stairs", "sitting", "standing"), 20, 20.0)]
