"""Issue 17 item 3: the recommender's accuracy prior from LOSO measurements (with spread, Table II fallback,
the source named).  The small-test-split warning of "Simulate on my windows" is in tests/gui/test_gui_estimator.py."""

from __future__ import annotations

import json

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
