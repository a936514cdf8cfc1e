"""Issue 18: ``odlstudio sweep`` — spec, cell keys, the append-only store, resume (also after a kill -9),
progress and the report.  The Ray executor is in tests/core/test_sweep_ray.py."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest

from app.core import loso, sweep
from app.core.executors import ExecutorError, LocalExecutor, make_executor
from app.core.procedure import CHOOSE_RULES, VAL_SPLITS
from app.core.sweep import SweepError, load_spec, parse_spec, plan_sweep, run_sweep
from app.core.sweepstore import ResultStore, StoreError, read_store

ROOT = Path(__file__).resolve().parents[2]

FAST = dict(epochs=1, warmup_epochs=1, pretrain_epochs=2, pretrain_patience=1)
#: Row fields that are wall times (differ run to run); everything else must be identical.
TIMING = ("seconds", "task_seconds", "pretrain_seconds")


def spec_doc(data: Path, **grid) -> dict:
    g = dict(dataset="wisdm2019", T=[20, 40], mode=["none", "full"], subjects=["1600", "1604"], **FAST)
    g.update(grid)
    return {"name": "t", "grid": g, "data": {"wisdm2019": str(data)}}


def toml_text(doc: dict) -> str:
    """A tiny TOML writer for the specs of these tests (strings, numbers, flat lists, one level of tables)."""

    def val(v):
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + "}"
        return json.dumps(v)

    lines = [f"{k} = {val(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {val(x)}" for kk, x in v.items()]
    return "\n".join(lines) + "\n"


def comparable(rows) -> dict:
    out = {}
    for r in rows:
        r = json.loads(json.dumps(r))
        for k in TIMING:
            r.pop(k, None)
        r["pretrain"].pop("seconds", None)
        out[r["key"]] = r
    return out


# ------------------------------------------------------------------------------------------------
# spec
# ------------------------------------------------------------------------------------------------


#: the allowed values of LosoConfig's string fields (a new one must say which values it takes)
STR_CHOICES = {"val_split": VAL_SPLITS, "choose": CHOOSE_RULES}


def test_every_training_setting_is_a_grid_key_by_name(tiny_wisdm):
    """The grid is generic: each LosoConfig field (now or added later) is an axis, passed to the task and
    part of the key — no list of hyper-parameters in the sweep to keep up to date."""
    settable = [f for f in fields(loso.LosoConfig) if f.name not in ("dataset", "data", "sizes", "modes", "subjects")]
    assert {"lr", "epochs", "seed", "pretrain_lr", "train_fraction"} <= {f.name for f in settable}
    base = parse_spec(spec_doc(tiny_wisdm, T=20, mode="tl", subjects=["1600"]))
    base_key = plan_sweep(base).keys[0]
    for f in settable:
        base_value = FAST.get(f.name, f.default)
        if isinstance(base_value, bool):
            other = not base_value
        elif isinstance(base_value, int):
            other = base_value + 1
        elif isinstance(base_value, str):  # a choice among names: another allowed one
            other = next(v for v in STR_CHOICES[f.name] if v != base_value)
        else:
            other = base_value * 0.5 if base_value else 0.1
        grid = dict(T=20, mode="tl", subjects=["1600"], **{f.name: [base_value, other]})
        spec = parse_spec(spec_doc(tiny_wisdm, **grid))
        assert spec.axes[f.name] == (base_value, other) and spec.varying() == [f.name]
        plan = plan_sweep(spec)
        assert len(plan.keys) == 2 and plan.keys[0] == base_key and plan.keys[1] != base_key, f.name
        # the value reaches the task's settings
        cfgs = [v.cfg for t in plan.tasks for v in t.variants]
        assert sorted(getattr(c, f.name) for c in cfgs) == sorted([base_value, other])


@pytest.mark.parametrize(
    "doc,needle",
    [
        ({"grid": {"dataset": "hapt", "learning_rate": 0.1}}, "unknown keys ['learning_rate']"),
        ({"grid": {"dataset": "mnist"}}, "dataset ['mnist'] unknown"),
        ({"grid": {"T": [20]}}, "dataset is required"),
        ({"grid": {"dataset": "hapt", "T": [5]}}, "T must be integers in 10..1000"),
        ({"grid": {"dataset": "hapt", "T": []}}, "T is an empty list"),
        ({"grid": {"dataset": "hapt", "mode": ["deep"]}}, "mode must be among"),
        ({"grid": {"dataset": "hapt", "epochs": 1.5}}, "epochs must be int values"),
        ({"grid": {"dataset": "hapt", "lr": "fast"}}, "lr must be float values"),
        ({"grid": {"dataset": "hapt", "lr": [[0.1]]}}, "values must be numbers or strings"),
        ({"grid": {"dataset": "hapt", "subjects": "some"}}, 'subjects must be "all" or a non-empty list'),
        ({"grid": {"dataset": "hapt", "subjects": {"wisdm2019": ["1"]}}}, "datasets not in the grid"),
        ({"grid": {"dataset": "hapt"}, "jobs": 4}, "unknown top-level keys ['jobs']"),
        ({"grid": {"dataset": "hapt"}, "name": "../x"}, "name must be"),
        ({"grid": {"dataset": "hapt"}, "data": {"hapt": 3}}, "[data] maps a dataset"),
        ({"grid": {"dataset": "hapt", "seed": list(range(100_000))}}, "more than the"),
    ],
)
def test_bad_specs_are_named(doc, needle):
    with pytest.raises(SweepError) as e:
        parse_spec(doc, "spec.toml")
    assert needle in str(e.value) and "spec.toml" in str(e.value)


def test_bad_values_and_files_are_named(tmp_path, tiny_wisdm):
    with pytest.raises(SweepError, match=r"lr=-1\.0: --lr must be"):
        plan_sweep(parse_spec(spec_doc(tiny_wisdm, lr=[0.01, -1.0])))
    # seeds: what `loso --seed` refuses, a grid refuses too (numpy and TensorFlow take 0 .. 2**32 - 1)
    for bad in (-1, 2**32):  # (a float or a bool: the spec parser already wants int values)
        with pytest.raises(SweepError, match=r"seed=.*: --seed must be a whole number in 0 \.\. 4294967295, got "):
            plan_sweep(parse_spec(spec_doc(tiny_wisdm, seed=[0, bad])))
    with pytest.raises(SweepError, match=r"pers_seed=-3: --pers-seed must be a whole number"):
        plan_sweep(parse_spec(spec_doc(tiny_wisdm, pers_seed=[0, -3])))
    with pytest.raises(SweepError, match=r"subjects \['42'\] not in wisdm2019"):
        plan_sweep(parse_spec(spec_doc(tiny_wisdm, subjects=["42"])))
    with pytest.raises(SweepError, match="no such file"):
        plan_sweep(parse_spec(spec_doc(tmp_path / "nope")))
    with pytest.raises(SweepError, match="no such spec file"):
        load_spec(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[grid\n")
    with pytest.raises(SweepError, match="not valid TOML"):
        load_spec(tmp_path / "bad.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SweepError, match="not a text"):
        load_spec(tmp_path / "bin.toml")
    (tmp_path / "my study.toml").write_text(toml_text({"grid": {"dataset": "hapt"}}))
    assert load_spec(tmp_path / "my study.toml").name == "my_study"  # the store's name comes from the file


def test_keys_follow_the_data_contents_not_its_path(tiny_wisdm, tmp_path):
    spec = parse_spec(spec_doc(tiny_wisdm))
    keys = plan_sweep(spec).keys
    assert len(keys) == len(set(keys)) == 2 * 2 * 2
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in tiny_wisdm.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    assert plan_sweep(parse_spec(spec_doc(copy))).keys == keys  # same data elsewhere (e.g. on a cluster)
    p = copy / "data_1604_accel_phone.txt"
    lines = p.read_text().splitlines()
    lines[10] = lines[10].replace(lines[10].split(",")[3], "9.99")  # one sample changed
    p.write_text("\n".join(lines) + "\n")
    loso._DATA_CACHE.clear()
    changed = plan_sweep(parse_spec(spec_doc(copy))).keys
    assert not set(changed) & set(keys)


def test_tasks_share_the_general_model_across_personalization_settings(tiny_wisdm):
    spec = parse_spec(spec_doc(tiny_wisdm, lr=[0.01, 0.02], seed=[0, 1]))
    plan = plan_sweep(spec)
    # lr is a personalization setting: one task per (T, subject, seed) with two variants; seed is not
    assert len(plan.keys) == 2 * 2 * 2 * 2 * 2 and len(plan.tasks) == 2 * 2 * 2
    assert all(len(t.variants) == 2 and t.n_cells == 4 for t in plan.tasks)
    assert "lr" in loso.PERSONALIZE_FIELDS and "pretrain_lr" not in loso.PERSONALIZE_FIELDS
    spec = parse_spec(spec_doc(tiny_wisdm, pretrain_lr=[0.01, 0.02]))
    assert len(plan_sweep(spec).tasks) == 2 * 2 * 2  # a pretraining setting: a general model each


# ------------------------------------------------------------------------------------------------
# running, store, resume
# ------------------------------------------------------------------------------------------------


def test_sweep_runs_every_cell_once_then_resumes_and_extends(tiny_wisdm, tmp_path):
    spec = parse_spec(spec_doc(tiny_wisdm, lr=[0.01, 0.02]))
    bar = io.StringIO()
    res = run_sweep(spec, tmp_path, LocalExecutor(2), progress=bar)
    assert not res.errors and res.tasks_run == 4 and res.cells == 16 and len(res.rows) == 16
    assert "4/4" in bar.getvalue() and "ETA" in bar.getvalue()
    for r in res.rows:
        assert 0.0 <= r["macro_f1"] <= 1.0 and r["sweep_version"] == sweep.SWEEP_VERSION
        assert r["settings"]["lr"] in (0.01, 0.02) and r["settings"]["epochs"] == 1
    # pretraining once per task: the second variant used the first one's general model
    by_task: dict = {}
    for r in res.rows:
        p = {k: v for k, v in r["pretrain"].items() if k not in ("seconds", "cached")}
        by_task.setdefault(r["pretrain_key"], []).append(json.dumps(p, sort_keys=True))
    assert len(by_task) == 4 and all(len(v) == 4 and len(set(v)) == 1 for v in by_task.values())
    cached = [r for r in res.rows if r["pretrain"].get("cached")]
    assert len(cached) == 8 and {r["settings"]["lr"] for r in cached} == {0.02}
    # a personalization variant is the same computation as `odlstudio loso` with these settings
    cfg = loso.LosoConfig(dataset="wisdm2019", data=str(tiny_wisdm), lr=0.02, **FAST)
    direct = loso.run_task(cfg, 40, "1604", None, ("none", "full"))
    mine = {r["mode"]: r for r in res.rows if r["T"] == 40 and r["subject"] == "1604" and r["settings"]["lr"] == 0.02}
    assert {r["mode"]: (r["macro_f1"], r["accuracy"]) for r in direct} == {
        m: (r["macro_f1"], r["accuracy"]) for m, r in mine.items()
    }
    size = res.store.stat().st_size
    again = run_sweep(spec, tmp_path, LocalExecutor(1), progress=False)
    assert again.tasks_run == 0 and again.cells_resumed == 16 and res.store.stat().st_size == size
    assert comparable(again.rows) == comparable(res.rows)
    # a new T and a new mode: only the new cells run; the general models of T=20/40 are pretrained again
    # only where a new cell needs them (mode tl at T=20/40)
    bigger = parse_spec(spec_doc(tiny_wisdm, lr=[0.01, 0.02], T=[20, 40, 30], mode=["none", "tl", "full"]))
    res3 = run_sweep(bigger, tmp_path, LocalExecutor(2), progress=False)
    assert not res3.errors
    assert res3.cells == 36 and res3.cells_resumed == 16 and len(res3.rows) == 36 and res3.tasks_run == 6
    rows, damaged, _ = read_store(res.store)
    assert len(rows) == 36 and damaged == 0
    assert sum(1 for _ in open(res.store)) == 36  # nothing recomputed, nothing duplicated


def test_damaged_store_lines_are_skipped_and_recomputed(tiny_wisdm, tmp_path):
    spec = parse_spec(spec_doc(tiny_wisdm, T=20))
    res = run_sweep(spec, tmp_path, LocalExecutor(1), progress=False)
    lines = res.store.read_bytes().splitlines(keepends=True)
    assert len(lines) == 4
    victim = json.loads(lines[1])
    # a torn last line (crash mid-write), a row with a bad key, a keyless row (e.g. an old loso row)
    damaged = lines[0] + b'{"key": 5}\n' + b'{"T": 20, "mode": "none"}\n' + lines[2] + lines[3][:40]
    res.store.write_bytes(damaged)
    rows, n_bad, keyless = read_store(res.store)
    assert len(rows) == 2 and n_bad == 2 and keyless == 1
    log = []
    res2 = run_sweep(spec, tmp_path, LocalExecutor(1), progress=False, log=log.append)
    assert res2.damaged_lines == 2 and any("2 damaged line(s)" in m for m in log)
    assert res2.tasks_run == 2 and len(res2.rows) == 4  # the two folds that lost a row ran again
    rows, n_bad, _ = read_store(res.store)
    assert victim["key"] in rows and rows[victim["key"]]["macro_f1"] == victim["macro_f1"]
    assert n_bad == 2  # the torn line was closed with a newline: the new rows are whole
    text = res.store.read_bytes()
    assert text.endswith(b"\n") and lines[3][:40] + b"\n" in text


def test_store_refuses_a_second_writer_a_folder_and_a_full_disk(tmp_path):
    path = tmp_path / "s.jsonl"
    with ResultStore(path):
        with pytest.raises(StoreError, match=f"another sweep is writing this results file \\(process {os.getpid()}\\)"):
            ResultStore(path).open()
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(StoreError, match="is a folder"):
        ResultStore(tmp_path / "d.jsonl").open()
    with pytest.raises(StoreError, match="is a folder"):
        read_store(tmp_path / "d.jsonl")
    if Path("/dev/full").exists():
        st = ResultStore(path)
        st.open()
        os.close(st._fd)
        st._fd = os.open("/dev/full", os.O_WRONLY)
        with pytest.raises(StoreError, match="cannot append results"):
            st.append([{"key": "k"}])
        st.close()


def test_first_row_of_a_key_wins(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps({"key": "a", "v": 1}) + "\n" + json.dumps({"key": "a", "v": 2}) + "\n")
    assert read_store(p)[0]["a"]["v"] == 1


def _wait_for_lines(path: Path, n: int, proc, timeout: float = 120.0) -> int:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if path.exists():
            k = path.read_bytes().count(b"\n")
            if k >= n:
                return k
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_killed_sweep_resumes_without_recomputing_finished_cells(tiny_wisdm, tmp_path):
    doc = spec_doc(tiny_wisdm, subjects="all", seed=[0, 1, 2], epochs=3)  # 18 tasks of 2 cells
    spec_file = tmp_path / "kill.toml"
    spec_file.write_text(toml_text(dict(doc, name="kill")))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "app.cli", "sweep", str(spec_file), "--results", str(tmp_path / "r"), "--jobs", "1"]
    proc = subprocess.Popen(cmd + ["--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = tmp_path / "r" / "kill.jsonl"
    try:
        n = _wait_for_lines(store, 4, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the sweep ended before it was killed: make the test tasks longer"
    before = store.read_bytes()
    rows_before, damaged, _ = read_store(store)
    assert 4 <= n and len(rows_before) < 36
    spec = load_spec(spec_file)
    res = run_sweep(spec, tmp_path / "r", LocalExecutor(2), progress=False)
    assert not res.errors and len(res.rows) == 36 and res.cells_resumed == len(rows_before)
    # only the folds with missing cells ran: the finished ones were not recomputed
    missing_tasks = {(r["T"], r["subject"], r["seed"]) for r in res.rows if r["key"] not in rows_before}
    assert res.tasks_run == len(missing_tasks)
    after = store.read_bytes()
    assert after.startswith(before)  # appended only: finished rows untouched
    rows_after, damaged_after, _ = read_store(store)
    assert len(rows_after) == 36 and damaged_after == damaged
    assert sum(1 for line in after.splitlines() if line.strip()) == 36 + damaged  # no cell twice
    for k, r in rows_before.items():
        assert rows_after[k] == r


def test_ctrl_c_keeps_the_finished_tasks_and_says_how_to_resume(tiny_wisdm, tmp_path):
    """Ctrl-C during a sweep on the local pool: exit 130 with one sentence (no traceback), the stored rows
    whole, and the same command finishes only what is missing."""
    doc = spec_doc(tiny_wisdm, subjects="all", seed=[0, 1, 2], epochs=3)  # 18 tasks of 2 cells
    spec_file = tmp_path / "int.toml"
    spec_file.write_text(toml_text(dict(doc, name="int")))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "app.cli", "sweep", str(spec_file), "--results", str(tmp_path / "r"), "--jobs", "2"]
    proc = subprocess.Popen(
        cmd + ["--quiet"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal
    )
    store = tmp_path / "r" / "int.jsonl"
    try:
        _wait_for_lines(store, 4, proc)
        proc.send_signal(signal.SIGINT)
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted; the finished tasks are stored" in err
    rows_before, damaged, _ = read_store(store)
    assert damaged == 0 and 4 <= len(rows_before) < 36
    res = run_sweep(load_spec(spec_file), tmp_path / "r", LocalExecutor(2), progress=False)
    assert not res.errors and len(res.rows) == 36 and res.cells_resumed == len(rows_before)
    assert res.tasks_run == 18 - len(rows_before) // 2


# ------------------------------------------------------------------------------------------------
# loso on the executor layer, CLI, report
# ------------------------------------------------------------------------------------------------


def test_loso_runs_on_an_executor_with_the_data_handed_over(tiny_wisdm, tmp_path):
    cfg = loso.LosoConfig(dataset="wisdm2019", data=str(tiny_wisdm), sizes=(20,), subjects=("1600", "1606"), **FAST)
    a = loso.run_loso(cfg, tmp_path / "a", jobs=2, progress=False)
    loso._DATA_CACHE.clear()  # the workers get the recordings from the executor, not from this cache

    class Counting(LocalExecutor):
        calls = 0

        def imap(self, fn, tasks, shared=None, on_lost=None):
            Counting.calls += 1
            assert isinstance(shared, loso.ds.RecordingSet) and not shared.skipped
            yield from super().imap(fn, tasks, shared, on_lost)

    b = loso.run_loso(cfg, tmp_path / "b", jobs=2, progress=False, executor=Counting(2))
    assert Counting.calls == 1 and not b.errors
    assert comparable_loso(a.rows) == comparable_loso(b.rows)


def comparable_loso(rows):
    out = {}
    for r in rows:
        r = json.loads(json.dumps(r))
        for k in TIMING:
            r.pop(k, None)
        r["pretrain"].pop("seconds", None)
        out[(r["T"], r["subject"], r["mode"])] = r
    return out


def test_executor_choice_and_missing_ray_are_explained(monkeypatch):
    assert make_executor("local", 3).jobs == 3
    with pytest.raises(ExecutorError, match="--address is for --executor ray"):
        make_executor("local", 1, "auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ExecutorError, match=r"needs Ray, which is not installed: pip install 'odl-studio\[cluster\]'"):
        make_executor("ray", 2)


def test_cli_without_ray_says_how_to_install(tmp_path, tiny_wisdm):
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(toml_text(spec_doc(tiny_wisdm)))
    code = (
        "import sys\nsys.modules['ray'] = None\nfrom app.cli import main\n"
        f"sys.exit(main(['sweep', {str(spec_file)!r}, '--executor', 'ray', '--results', {str(tmp_path)!r}]))"
    )
    for argv in (
        [sys.executable, "-c", code],
        [sys.executable, "-c", code.replace("'sweep', " + repr(str(spec_file)), "'loso', '--dataset', 'hapt'")],
    ):
        r = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "pip install 'odl-studio[cluster]'" in r.stderr


def test_cli_sweep_dry_run_run_report(tiny_wisdm, tmp_path, capsys):
    from app.cli import main

    spec_file = tmp_path / "study.toml"
    spec_file.write_text(toml_text(spec_doc(tiny_wisdm, T=[20, 40], seed=[0, 1], lr=[0.01, 0.02])))
    out = tmp_path / "res"
    assert main(["sweep", str(spec_file), "--results", str(out), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["cells"] == 32 and plan["cells_resumed"] == 0 and plan["tasks_todo"] == 8
    assert not (out / "t.jsonl").exists()  # a dry run writes nothing
    assert main(["sweep", str(spec_file), "--results", str(out), "--jobs", "2", "--json", "--quiet"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["rows"] == 32 and done["tasks_run"] == 8 and done["varying"] == ["lr", "seed"]
    assert main(["sweep", str(spec_file), "--results", str(out), "--report"]) == 0
    md = capsys.readouterr().out
    assert md == (out / "t_report.md").read_text()
    # one table per lr (seeds pooled: 2 subjects x 2 seeds per mean), an overview, and one plot per table
    assert "## wisdm2019, lr=0.01" in md and "## wisdm2019, lr=0.02" in md and "## Overview" in md
    assert md.count("| Input size | No Pers. | paper No Pers. | Full | paper Full |") == 2
    assert "| wisdm2019, lr=0.01 | 2 × 2 |" in md and "| (40,3) |" in md and "| (20,3) |" in md
    assert "2 subjects, seeds 0, 1, 16 rows" in md
    for lr in ("0.01", "0.02"):
        png = out / f"t_wisdm2019_lr-{lr}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png.name})" in md
    # the numbers in the table are the means of the store's rows
    rows = [r for r in read_store(out / "t.jsonl")[0].values() if r["settings"]["lr"] == 0.01 and r["T"] == 40]
    full = [r["macro_f1"] for r in rows if r["mode"] == "full"]
    assert (
        len(full) == 4 and f"{round(sum(full) / 4, 4):.3f} ±" in md.split("## wisdm2019, lr=0.01")[1].split("(40,3)")[1]
    )
    # the report straight from a store file; rows it cannot use (hand-edited, foreign) are skipped
    with open(out / "t.jsonl", "a") as fh:
        bad = {"T": 20, "subject": "1600", "mode": "full", "macro_f1": "high", "accuracy": 0.5, "settings": {}}
        fh.write(json.dumps(dict(bad, key="x1", dataset="wisdm2019")) + "\n")
        fh.write(json.dumps(dict(bad, key="x2", T=[], macro_f1=0.5)) + "\n")
    assert main(["sweep", str(out / "t.jsonl"), "--report", "--no-plot", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["rows"] == 34 and len(rep["groups"]) == 2
    assert all(len(g["summary"]["modes"]) == 2 for g in rep["groups"])


@pytest.mark.parametrize(
    "setup,args,needle",
    [
        ("dir_store", [], "t.jsonl: is a folder"),
        ("file_results", [], "is an existing file"),
        ("none", ["--report"], "no results yet"),
        ("none", ["--executor", "local", "--address", "auto"], "--address is for --executor ray"),
        ("bad_value", [], "--lr must be"),
    ],
)
def test_cli_sweep_hostile_input_is_a_message(tiny_wisdm, tmp_path, setup, args, needle):
    spec_file = tmp_path / "s.toml"
    doc = spec_doc(tiny_wisdm, lr=[0.01, -2.0]) if setup == "bad_value" else spec_doc(tiny_wisdm)
    spec_file.write_text(toml_text(doc))
    results = tmp_path / "res"
    if setup == "dir_store":
        (results / "t.jsonl").mkdir(parents=True)
    if setup == "file_results":
        results.write_text("x")
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", "sweep", str(spec_file), "--results", str(results), "--quiet", *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert needle in r.stderr


def test_cli_json_is_alone_on_stdout_whatever_the_run_prints(tiny_wisdm, tmp_path, capsys, monkeypatch):
    """``--json`` prints exactly one JSON object on stdout, even when something prints to stdout during the
    command (Ray's driver does, at any moment while it is connected: "(raylet) A worker died ..." broke a CI
    run's JSON, once during the run and once while the spec was read); that goes to stderr."""
    from app.cli import main
    from app.core import sweep

    real_run, real_load = sweep.run_sweep, sweep.load_spec

    def noisy_run(*a, **kw):
        print("(raylet) A worker died or was killed while executing a task")
        return real_run(*a, **kw)

    def noisy_load(*a, **kw):
        print("(raylet) a late message of an earlier run")
        return real_load(*a, **kw)

    monkeypatch.setattr(sweep, "run_sweep", noisy_run)
    monkeypatch.setattr(sweep, "load_spec", noisy_load)
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(toml_text(spec_doc(tiny_wisdm, T=20)))
    assert main(["sweep", str(spec_file), "--results", str(tmp_path / "r"), "--json", "--quiet"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["rows"] == 4 and "(raylet) A worker" in cap.err and "(raylet) a late" in cap.err
    print("after the run, stdout is stdout again")
    assert capsys.readouterr().out == "after the run, stdout is stdout again\n"
