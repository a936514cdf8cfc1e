"""LOSO on tiny real slices: 3 WISDM-2019 subjects (and one HAPT fold), 1-2 epochs, one T."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core import loso
from app.core.loso import LosoConfig, LosoError, read_rows, run_loso, summarize
from app.core.procedure import choose_mode
from tests.datakit import TINY_WISDM_SUBJECTS as SUBJECTS


def cfg_for(data: Path, **kw) -> LosoConfig:
    base = dict(
        dataset="wisdm2019",
        data=str(data),
        sizes=(20,),
        epochs=1,
        warmup_epochs=1,
        pretrain_epochs=2,
        pretrain_patience=1,
        modes=loso.ALL_MODES,
    )
    base.update(kw)
    return LosoConfig(**base)


def test_run_loso_every_subject_and_mode_then_resumes(tiny_wisdm, tmp_path):
    cfg = cfg_for(tiny_wisdm)
    res = run_loso(cfg, tmp_path, jobs=2, progress=False)
    assert not res.errors and res.tasks_run == 3
    keys = {(r["T"], r["subject"], r["mode"]) for r in res.rows}
    # the default procedure validates, so the mode chosen on the validation windows ('auto') is a row too
    assert keys == {(20, s, m) for s in SUBJECTS for m in ("none", "tl", "full", "auto")}
    for r in res.rows:
        if r["mode"] == "auto":
            mine = {x["mode"]: x for x in res.rows if x["subject"] == r["subject"]}
            assert r["chosen"] in ("none", "tl", "full") and r["macro_f1"] == mine[r["chosen"]]["macro_f1"]
            # the choice is the procedure's rule on the validation scores the TL/Full rows record
            val = {"none": mine["tl"]["val_start"], "tl": mine["tl"]["val_kept"], "full": mine["full"]["val_kept"]}
            assert r["chosen"] == choose_mode({m: tuple(v) for m, v in val.items()}, cfg.procedure.choose)
    for r in res.rows:
        assert 0.0 <= r["macro_f1"] <= 1.0 and r["n_train"] > 0 and r["n_test"] > 0
        assert r["pretrain"]["train_windows"] > 0
    # strict LOSO: the general model of a fold never saw its test subject -> cached per (T, subject)
    assert len(list((tmp_path / "models").glob("*.npz"))) == 3
    # resume: nothing left to do, same rows
    again = run_loso(cfg, tmp_path, jobs=1, progress=False)
    assert again.tasks_run == 0 and again.tasks_skipped == 3
    assert sorted(json.dumps(r, sort_keys=True) for r in again.rows) == sorted(
        json.dumps(r, sort_keys=True) for r in res.rows
    )
    # other settings do not reuse these rows (settings hash)
    other = cfg_for(tiny_wisdm, epochs=2, modes=("none",), subjects=("1604",))
    assert other.settings_hash() != cfg.settings_hash()
    r3 = run_loso(other, tmp_path, jobs=1, progress=False)
    assert r3.tasks_run == 1 and {r["mode"] for r in r3.rows} == {"none"}
    # personalization settings do not change the general model: its cache is keyed by the pretraining
    # settings alone (issue 17: ablations over personalization options reuse it) ...
    assert r3.rows[0]["pretrain"].get("cached") is True
    assert len(list((tmp_path / "models").glob("*.npz"))) == 3
    # ... a pretraining setting does
    r4 = run_loso(
        cfg_for(tiny_wisdm, pretrain_epochs=1, modes=("none",), subjects=("1604",)), tmp_path, jobs=1, progress=False
    )
    assert r4.tasks_run == 1 and not r4.rows[0]["pretrain"].get("cached")
    assert len(list((tmp_path / "models").glob("*.npz"))) == 4
    assert len(read_rows(loso.results_path(tmp_path, "wisdm2019"))) == 3 * 4 + 1 + 1


def test_pretraining_cache_reproduces_results(tiny_wisdm, tmp_path):
    cfg = cfg_for(tiny_wisdm, subjects=("1606",))
    a = loso.run_task(cfg, 20, "1606", tmp_path)
    b = loso.run_task(cfg, 20, "1606", tmp_path)  # loads the cached general model
    assert b[0]["pretrain"].get("cached") is True
    assert [r["macro_f1"] for r in a] == [r["macro_f1"] for r in b]


def test_a_truncated_results_line_is_ignored(tmp_path):
    p = tmp_path / "loso_hapt.jsonl"
    good = {
        "dataset": "hapt",
        "T": 20,
        "subject": "1",
        "mode": "none",
        "macro_f1": 0.5,
        "accuracy": 0.5,
        "settings_hash": "x",
    }
    p.write_text(json.dumps(good) + "\n" + json.dumps(good)[:30] + "\n")
    assert read_rows(p) == [good] and read_rows(p, "y") == []


def test_summary_and_table():
    rows = []
    for s, (n, t, f) in {"a": (0.5, 0.7, 0.9), "b": (0.6, 0.8, 0.7)}.items():
        rows += [
            {"T": 20, "subject": s, "mode": m, "macro_f1": v, "accuracy": v}
            for m, v in zip(("none", "tl", "full"), (n, t, f))
        ]
    summ = summarize(rows)
    e = summ["by_T"][20]
    assert e["modes"]["full"]["macro_f1"] == pytest.approx(0.8) and e["modes"]["none"]["macro_f1"] == pytest.approx(
        0.55
    )
    assert e["order_full_tl_none"] is True and e["subjects_full_beats_tl"] == 1 and e["subjects"] == 2
    md = loso.markdown_table(summ, loso.paper_table_ii())
    assert "| (20,3) | 0.550 ± 0.050 | 0.804 |" in md and "1/2 (0 ties)" in md


def test_bad_settings_are_named(tmp_path, tiny_wisdm):
    with pytest.raises(LosoError, match="--sizes"):
        LosoConfig(sizes=(5,)).validate()
    with pytest.raises(LosoError, match="--modes"):
        LosoConfig(modes=("deep",)).validate()
    with pytest.raises(LosoError, match=r"^--subjects 42 not in wisdm2019 \(subjects: 1600, "):
        run_loso(cfg_for(tiny_wisdm, subjects=("42",)), tmp_path, progress=False)
    with pytest.raises(LosoError, match="no such file"):
        run_loso(cfg_for(tmp_path / "nope"), tmp_path, progress=False)


def test_cli_loso_hapt_one_fold_json_table_and_plot(tmp_path, shared_data, capsys, monkeypatch):
    from app.cli import main
    from app.core import loso

    real = loso.run_loso

    def noisy(*a, **kw):  # as Ray's driver prints its raylet's messages to stdout: they must go to stderr
        print("(raylet) A worker died or was killed while executing a task")
        return real(*a, **kw)

    monkeypatch.setattr(loso, "run_loso", noisy)

    rc = main(
        [
            "loso",
            "--dataset",
            "hapt",
            "--sizes",
            "20",
            "--subjects",
            "3",
            "--epochs",
            "1",
            "--warmup-epochs",
            "1",
            "--pretrain-epochs",
            "1",
            "--jobs",
            "1",
            "--results",
            str(tmp_path),
            "--json",
            "--quiet",
        ]
    )
    assert rc == 0
    cap = capsys.readouterr()
    obj = json.loads(cap.out)  # --json: exactly one JSON object on stdout
    assert "(raylet) A worker died" in cap.err
    assert obj["dataset"] == "hapt" and obj["subjects"] == ["3"] and obj["rows"] == 4
    modes = obj["summary"]["by_T"]["20"]["modes"]
    assert set(modes) == {"none", "tl", "full", "auto"} and all(m["n"] == 1 for m in modes.values())
    assert "goal_no_fold_below_none_0.02" in obj["summary"]["by_T"]["20"]
    # the general model was pretrained on the 29 other subjects
    row = read_rows(tmp_path / "loso_hapt.jsonl")[0]
    assert row["pretrain"]["train_windows"] > 10_000
    png = tmp_path / "loso_hapt.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(20,3)" in (tmp_path / "loso_hapt.md").read_text()


def test_the_plot_leaves_an_application_widgets_can_use(tmp_path):
    """``plot_png`` needs a Qt application for its fonts.  A bare QGuiApplication would make every later
    QWidget in the process abort (Qt's fatal 'QWidget without QApplication'), e.g. a GUI test after a loso
    test, or the app after a sweep report; it must leave a QApplication."""
    import subprocess
    import sys

    code = (
        "from app.core.loso import summarize\n"
        "from app.commands.loso import plot_png\n"
        "rows = [dict(T=20, mode=m, subject=s, macro_f1=f, accuracy=f, n_test=10) "
        "for s in (1, 2) for m, f in (('none', .5), ('tl', .7), ('full', .8))]\n"
        f"plot_png(summarize(rows), {str(tmp_path / 'p.png')!r}, 't')\n"
        "from PySide6.QtWidgets import QWidget\n"
        "QWidget()\n"
        "print('widget ok')\n"
    )
    env = {**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and "widget ok" in r.stdout, r.stderr[-2000:]
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_issue17_runs_keep_their_settings_hash():
    """Most shipped issue-17 rows (docs/results/issue17_runs.json) were made before the host-side procedure
    fields (validation split, mode choice) existed; at their legacy values those fields are left out of the
    settings, so each run's settings still hash to the rows it wrote (and resuming it reuses them).  The
    later runs record the fields and hash with them."""
    runs = json.loads((Path(__file__).parents[2] / "docs" / "results" / "issue17_runs.json").read_text())
    assert len(runs) >= 36
    n_legacy = 0
    for name, run in runs.items():
        st = dict(run["settings"])
        proc = st.pop("procedure", None) or dict(val_every=0, restore_best=False, select_f1=False, clip_norm=0.0)
        # runs made before the host-side fields existed lack them: they ran at the legacy values
        cfg = LosoConfig(**st, **{"val_split": "interleaved", "choose": "score", **proc})
        assert cfg.settings_hash() == run["settings_hash"], name
        n_legacy += "val_split" not in proc
    assert n_legacy >= 36
    # today's default differs from the first robust round only there, and so hashes differently
    first = LosoConfig(dataset="hapt", val_split="interleaved", choose="score")
    assert first.settings_hash() == runs["hapt_robust_s0"]["settings_hash"]
    assert LosoConfig(dataset="hapt").settings_hash() != first.settings_hash()


def test_auto_keeps_the_general_model_unless_validation_f1_is_strictly_higher(tiny_wisdm, tmp_path):
    """A round that barely moves the weights (lr 1e-6) fits the validation windows a little better (lower
    loss) at the same macro-F1: the default rule keeps the general model; issue 17's first rule ('score')
    took the personalized mode for that lower loss."""
    kw = dict(lr=1e-6, warmup_epochs=0, epochs=1)
    strict = run_loso(cfg_for(tiny_wisdm, **kw), tmp_path, jobs=1, progress=False)
    score = run_loso(cfg_for(tiny_wisdm, choose="score", **kw), tmp_path, jobs=1, progress=False)
    assert score.tasks_run == len(SUBJECTS)  # the rule is part of the settings: its own rows
    for run, want in ((strict, "none"), (score, ("tl", "full"))):
        rows = {(r["subject"], r["mode"]): r for r in run.rows}
        for s in SUBJECTS:
            tl, full = rows[(s, "tl")], rows[(s, "full")]
            start = tl["val_start"]
            # the premise: same validation F1 as the general model, lower loss
            assert tl["val_kept"][1] == full["val_kept"][1] == start[1]
            assert full["val_kept"][0] < start[0] and tl["val_kept"][0] < start[0]
            assert rows[(s, "auto")]["chosen"] in want


def test_a_line_torn_by_a_crash_does_not_swallow_the_next_task(tiny_wisdm, tmp_path):
    """A kill or power loss mid-append leaves a last line without its newline; the next run must end it
    before appending (the sweep's writer, shared), or the first row it writes is glued to the torn line and
    lost (recomputed on every later run)."""
    out = loso.results_path(tmp_path, "wisdm2019")
    out.write_text('{"dataset": "wisdm2019", "T": 20, "subj', encoding="utf-8")  # torn mid-row
    cfg = cfg_for(tiny_wisdm, modes=("none",), subjects=("1604",))
    res = run_loso(cfg, tmp_path, jobs=1, progress=False)
    assert res.tasks_run == 1 and not res.errors
    assert len(read_rows(out, cfg.settings_hash())) == 1  # the new row is whole
    again = run_loso(cfg, tmp_path, jobs=1, progress=False)
    assert again.tasks_run == 0  # and so nothing is recomputed
