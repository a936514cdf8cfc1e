"""Issue 17 item 3: the recommender's accuracy prior from LOSO measurements (with spread, Table II fallback,
the source named).  The small-test-split warning of "Simulate on my windows" is in tests/gui/test_gui_estimator.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.core.accuracy_prior import PriorError, build_prior, write_prior
from app.core.loso import run_loso
from estimator.recommend import LosoPrior, TableIIPrior, load_accuracy_prior, recommend
from tests.core.test_loso import cfg_for


@pytest.fixture(scope="module")
def loso_run(tiny_wisdm, tmp_path_factory):
    out = tmp_path_factory.mktemp("loso_prior")
    cfg = cfg_for(tiny_wisdm, sizes=(20, 40))
    res = run_loso(cfg, out, jobs=1, progress=False)
    assert not res.errors
    return cfg, out, res


def test_prior_table_summarises_the_loso_rows_and_the_recommender_uses_it(loso_run, tmp_path):
    cfg, out, res = loso_run
    table = build_prior(out, ("wisdm2019",), base=cfg)
    d = table["datasets"]["wisdm2019"]
    assert d["subjects"] == 3 and set(d["modes"]) == {"none", "tl", "full", "auto"}
    for mode in ("none", "tl", "full"):
        for T in (20, 40):
            f1 = [r["macro_f1"] for r in res.rows if r["mode"] == mode and r["T"] == T]
            cell = d["modes"][mode][str(T)]
            assert cell["mean"] == pytest.approx(np.mean(f1), abs=1e-4)
            assert cell["std"] == pytest.approx(np.std(f1), abs=1e-4) and cell["min"] == pytest.approx(min(f1))
            assert cell["n"] == 3
    path = write_prior(table, tmp_path / "prior.json")
    loaded = load_accuracy_prior(path)
    prior = LosoPrior(loaded, "wisdm2019")
    # many epochs: the measured mean; T between measured sizes: interpolated
    f1, src = prior.lookup(20, "full", 1000)
    assert f1 == pytest.approx(d["modes"]["full"]["20"]["mean"], abs=1e-6)
    assert src.startswith("LOSO prior (WISDM-2019, 3 users") and "over users" in src
    mid = prior(30, "tl", 1000)
    assert mid == pytest.approx((d["modes"]["tl"]["20"]["mean"] + d["modes"]["tl"]["40"]["mean"]) / 2, abs=1e-6)
    rec = recommend(input_sizes=(20, 40), epochs=(5,), accuracy=prior, power_source="charging")
    for r in rec.table:
        assert r["accuracy_source"].startswith("LOSO prior")
        want = d["modes"]["full" if r["mode"] == "full" else "tl"][str(r["input_size"])]
        assert r["accuracy_std"] == pytest.approx(want["std"], abs=1e-6) and r["accuracy_n"] == 3
    assert "LOSO prior (WISDM-2019, 3 users" in rec.reason and " ± " in rec.reason  # the reason names the source
    # a dataset the table lacks: the paper's Table II, and it says so
    other = LosoPrior(loaded, "hapt")
    v, src = other.lookup(20, "full", 5)
    assert v == pytest.approx(TableIIPrior().lookup(20, "full", 5)[0]) and "no LOSO measurement" in src


def test_prior_command_writes_the_table_and_refuses_without_results(loso_run, tmp_path, capsys):
    cfg, out, _ = loso_run
    rc = main(["accuracy-prior", "--results", str(tmp_path), "--datasets", "hapt", "--out", str(tmp_path / "p.json")])
    assert rc == 2 and not (tmp_path / "p.json").exists()
    assert "odlstudio loso --dataset hapt" in capsys.readouterr().err
    with pytest.raises(PriorError, match="not one of"):
        build_prior(out, ("nope",))


def test_a_damaged_table_falls_back_to_table_ii(tmp_path):
    bad = tmp_path / "prior.json"
    bad.write_text("{not json", encoding="utf-8")
    assert load_accuracy_prior(bad) is None
    bad.write_text(json.dumps({"datasets": 3}), encoding="utf-8")
    assert load_accuracy_prior(bad) is None
    assert load_accuracy_prior(tmp_path / "missing.json") is None


# --- the table from rows written by hand (exact values; no LOSO run) --------------------------------------------
def _rows(dataset: str, seed: int, f1: dict, other_settings: bool = False) -> list[dict]:
    """Rows as ``odlstudio loso`` writes them for ``dataset`` and ``--pers-seed seed`` with the default
    settings; ``f1[(mode, T, subject)]``.  ``other_settings``: rows of another run (must be ignored)."""
    from app.core.loso import LosoConfig

    cfg = LosoConfig(dataset=dataset, pers_seed=seed, lr=0.02 if other_settings else LosoConfig().lr)
    return [
        {"dataset": dataset, "T": T, "subject": s, "mode": m, "macro_f1": v, "settings_hash": cfg.settings_hash()}
        for (m, T, s), v in f1.items()
    ]


def _write(results, rows):
    from app.core.loso import results_path

    with open(results_path(results, rows[0]["dataset"]), "a", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")


def test_the_table_averages_each_subject_over_the_seeds_then_summarises_the_subjects(tmp_path):
    from app.core.loso import DATASETS, LosoConfig

    seed0 = {("tl", 20, "a"): 0.9, ("tl", 20, "b"): 0.5, ("none", 20, "a"): 0.4, ("none", 20, "b"): 0.2,
             ("tl", 40, "a"): 0.123456, ("tl", 40, "b"): 0.3}  # fmt: skip
    seed1 = {("tl", 20, "a"): 0.7, ("tl", 20, "b"): 0.5, ("none", 20, "a"): 0.4, ("none", 20, "b"): 0.2,
             ("tl", 40, "a"): 0.123456, ("tl", 40, "b"): 0.3}  # fmt: skip
    _write(tmp_path, _rows("wisdm2019", 0, seed0) + _rows("wisdm2019", 1, seed1))
    _write(tmp_path, _rows("wisdm2019", 0, {k: 0.0 for k in seed0}, other_settings=True))  # another run
    _write(tmp_path, _rows("wisdm2019", 2, {k: 0.0 for k in seed0}))  # a seed not asked for
    t = build_prior(tmp_path, ("hapt", "wisdm2019"), pers_seeds=(0, 1))  # hapt has no rows: listed, not fatal
    assert t["missing"] == ["hapt"] and list(t["datasets"]) == ["wisdm2019"]
    d = t["datasets"]["wisdm2019"]
    # subject a: TL at T=20 is the mean of its seeds, 0.8; b: 0.5 -> mean 0.65, population std 0.15, worst 0.5
    assert d["modes"]["tl"]["20"] == {"mean": 0.65, "std": 0.15, "min": 0.5, "n": 2}
    assert d["modes"]["none"]["20"] == {"mean": 0.3, "std": 0.1, "min": 0.2, "n": 2}
    assert d["modes"]["tl"]["40"]["min"] == 0.1235 and d["modes"]["tl"]["40"]["mean"] == 0.2117  # 4 decimals
    assert d["modes"]["tl"]["40"]["std"] == 0.0883
    assert d["subjects"] == 2 and d["description"] == DATASETS["wisdm2019"].description
    assert d["settings"] == LosoConfig(dataset="wisdm2019", pers_seed=0).settings()
    # what the table says about itself
    assert t["schema"] == 1 and t["model_family"] == "paper_cnn" and t["pers_seeds"] == [0, 1]
    assert t["metric"] == "macro-F1 on each test subject's chronological test split (LOSO)"
    assert (
        t["generated_by"] == f"odlstudio accuracy-prior --results {tmp_path} --datasets hapt,wisdm2019 --pers-seeds 0,1"
    )
    assert time.strptime(t["generated_at"], "%Y-%m-%d") and len(t["generated_at"]) == 10
    assert t["procedure"] == LosoConfig().procedure.to_dict() and t["procedure_label"] == "robust round"
    # each dataset reads its own file with its own settings
    _write(tmp_path, _rows("hapt", 0, {("tl", 20, "7"): 0.25}))
    t = build_prior(tmp_path, ("hapt", "wisdm2019"), pers_seeds=(0,))
    assert t["missing"] == [] and t["datasets"]["hapt"]["modes"] == {"tl": {"20": {"mean": 0.25, "std": 0.0,
                                                                                 "min": 0.25, "n": 1}}}  # fmt: skip
    assert t["datasets"]["hapt"]["settings"]["dataset"] == "hapt"
    with pytest.raises(PriorError) as e:
        build_prior(tmp_path / "empty", ("wisdm2019", "hapt"))
    assert str(e.value) == (
        f"{tmp_path / 'empty'}: no 'odlstudio loso' rows with the default settings for wisdm2019, hapt "
        f"(run: odlstudio loso --dataset wisdm2019 --results {tmp_path / 'empty'})"
    )
    with pytest.raises(PriorError) as e:
        build_prior(tmp_path, ("nope",))
    assert str(e.value) == "--datasets: 'nope' is not one of hapt, wisdm2019"


def test_the_table_is_written_whole_as_sorted_json_in_a_new_folder(tmp_path):
    table = {"schema": 1, "datasets": {}, "b": [1, 2], "a": "x"}
    path = write_prior(table, tmp_path / "new" / "deeper" / "prior.json")
    assert path.read_text(encoding="utf-8") == json.dumps(table, indent=1, sort_keys=True) + "\n"
    assert [p.name for p in path.parent.iterdir()] == ["prior.json"]  # no temporary file left


def test_a_full_disk_keeps_the_previous_table_and_leaves_no_temporary_file(tmp_path):
    from tests.diskkit import python_limited

    old = {"schema": 1, "datasets": {}}
    path = write_prior(old, tmp_path / "prior.json")
    big = {"schema": 1, "datasets": {}, "pad": "x" * 100_000}
    code = (
        "import sys, json\n"
        "from app.core.accuracy_prior import write_prior\n"
        "try:\n"
        "    write_prior(json.loads(sys.argv[2]), sys.argv[1])\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
    )
    r = python_limited(code, 50_000, str(path), json.dumps(big))
    assert r.stdout.startswith("refused"), r.stderr
    assert json.loads(path.read_text(encoding="utf-8")) == old
    assert [p.name for p in tmp_path.iterdir()] == ["prior.json"]


TABLE = {
    "procedure_label": "robust round",
    "datasets": {
        "wisdm2019": {
            "subjects": 16,
            "modes": {
                "none": {"20": {"mean": 0.5, "std": 0.2, "min": 0.1, "n": 16}, "60": {"mean": 0.6, "std": 0.2, "min": 0.2, "n": 16}},
                "tl": {"20": {"mean": 0.8, "std": 0.1, "min": 0.5, "n": 16}, "60": {"mean": 0.9, "std": 0.05, "min": 0.7, "n": 15}},
                "full": {"20": {"mean": 0.85, "std": 0.12, "min": 0.4, "n": 16}, "60": {"mean": 0.95, "std": 0.04, "min": 0.8, "n": 16}},
            },
        },
        "mydata": {"modes": {"tl": {"20": {"mean": 0.7, "std": 0.1, "min": 0.6, "n": 3}}}},
    },
}  # fmt: skip


def test_the_loso_prior_gives_each_mode_its_own_figure_and_names_its_source():
    p = LosoPrior(TABLE, "wisdm2019")
    # T = 40 is halfway between the measured 20 and 60; many epochs: the measured mean
    assert p(40, "full", 10_000) == pytest.approx(0.9) and p(40, "tl", 10_000) == pytest.approx(0.85)
    f1, src = p.lookup(40, "full", 2)  # 2 epochs = tau: 1 - 1/e of the way from the general model's 0.55
    assert f1 == pytest.approx(0.55 + (0.9 - 0.55) * (1 - np.exp(-1)))
    assert src == "LOSO prior (WISDM-2019, 16 users, robust round): ± 0.080 over users, worst 0.600"
    assert p.spread(40, "tl") == {"std": pytest.approx(0.075), "min": pytest.approx(0.6), "n": 15}
    # the table's subject count, not the fewest subjects of a cell (TL at T = 60 has 15)
    assert (
        p.lookup(40, "tl", 5)[1] == "LOSO prior (WISDM-2019, 16 users, robust round): ± 0.075 over users, worst 0.600"
    )
    assert p.spread(40, "last") == p.spread(40, "tl")  # every mode but Full reads TL's column
    # a dataset without a display name, subject count or procedure label: its own name, the cells' n
    q = LosoPrior({"datasets": {"mydata": {"modes": {**TABLE["datasets"]["mydata"]["modes"],
                                                   "none": {"20": {"mean": 0.5, "std": 0.0, "min": 0.5, "n": 3}}}}}},
                  "mydata")  # fmt: skip
    assert q.lookup(20, "tl", 10_000)[1] == "LOSO prior (mydata, 3 users): ± 0.100 over users, worst 0.600"
    # without the general model's column (or the mode's) the paper's Table II, said so; without fallback an error
    cases = (
        (LosoPrior(TABLE, "mydata"), "tl"),
        (LosoPrior(TABLE, "hapt"), "full"),
        (LosoPrior({}, "wisdm2019"), "full"),
    )
    for prior, mode in cases:
        want, src = TableIIPrior().lookup(20, mode, 5)
        assert prior.lookup(20, mode, 5) == (want, src + " (no LOSO measurement)")
    assert LosoPrior(TABLE, "mydata").spread(20, "full") is None
    with pytest.raises(KeyError) as e:
        LosoPrior(TABLE, "mydata", fallback=None).lookup(20, "full", 5)
    assert e.value.args == ("no LOSO measurement of full on mydata",)


def test_the_app_default_is_the_shipped_table_for_the_general_models_dataset(tmp_path, monkeypatch):
    from estimator.recommend import default_accuracy

    monkeypatch.setenv("ODL_ASSETS", str(tmp_path))
    assert isinstance(default_accuracy(), TableIIPrior)  # no table
    write_prior(TABLE, tmp_path / "accuracy_prior.json")
    d = default_accuracy()
    assert isinstance(d, LosoPrior) and d.dataset == "wisdm2019" and d.table == TABLE
    assert default_accuracy("mydata").dataset == "mydata"
    assert isinstance(default_accuracy("hapt"), TableIIPrior)  # not in the table


def results_one_row_per_mode(tmp_path: Path) -> Path:
    """A results folder with one default-settings row per mode (what `odlstudio loso` writes)."""
    from app.core.loso import LosoConfig

    h = LosoConfig(dataset="hapt").settings_hash()
    d = tmp_path / "results"
    d.mkdir()
    rows = [
        {"dataset": "hapt", "T": 20, "subject": "1", "mode": m, "macro_f1": 0.9, "settings_hash": h}
        for m in ("none", "tl", "full")
    ]
    (d / "loso_hapt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_accuracy_prior_empty_dataset_list_is_a_message(tmp_path, capsys):
    """`accuracy-prior --datasets ,`: "unexpected error: IndexError: list index out of range"."""
    results = results_one_row_per_mode(tmp_path)
    code = main(["accuracy-prior", "--results", str(results), "--datasets", ",", "--out", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "p.json").exists()
    assert err == "odlstudio accuracy-prior: --datasets: give at least one of hapt, wisdm2019\n", err
