"""Keras models read and written in a child process where the app's devices stream (``isolate=True`` of
``load_model`` and ``export_round``; app/core/child.py): the first ``import tensorflow`` holds the
interpreter lock for about a second, and in the app's process that stopped the device readers (the board's
heartbeat went unanswered, the session reconnected and accelerometer samples were lost: the 2-minute
soak's failures in CI).

A training round on the virtual bench and the export of its model must therefore leave TensorFlow out of the
app's process; what the child reads must be the model an in-process load gives, with the same error words
for a bad file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.core import models as M

ROOT = Path(__file__).resolve().parents[2]
GENERAL = ROOT / "assets" / "models" / "paper_cnn_wisdm5_T20.keras"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_round_on_the_bench_never_imports_tensorflow_into_the_app(tmp_path):
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from app.core.procedure import PLAIN
        from app.core.rounds import RoundConfig, RoundRunner, export_round
        from tests.roundkit import bench_context, labelled_dataset

        ctx = bench_context(Path({str(tmp_path)!r}))
        try:
            labelled_dataset(ctx)
            cfg = RoundConfig(input_size=20, mode="tl", epochs=1, lr=0.01, procedure=PLAIN.to_dict())
            res = RoundRunner(ctx.store, ctx.devices, ctx.data_dir, cfg, ctx.dataset.id).run()
            again = RoundRunner(ctx.store, ctx.devices, ctx.data_dir, cfg, ctx.dataset.id).load_model()
            out = Path({str(tmp_path / "export")!r})
            written = export_round(ctx.store, res["round_id"], out, ("keras", "h5", "npz"), "p", isolate=True)
        finally:
            ctx.close()
        print("RESULT " + json.dumps({{"status": res["status"], "tf": "tensorflow" in sys.modules,
                                      "keras": "keras" in sys.modules, "classes": list(again.classes),
                                      "written": sorted(written)}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=220)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"exit {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    r = json.loads(lines[-1][7:])
    assert r["status"] == "done", r
    assert r["tf"] is False and r["keras"] is False, "the round imported TensorFlow into the app's process"
    assert r["classes"] == list(M.load_model(GENERAL).classes)
    # the export wrote real Keras files (in children), the same model as the .npz
    assert {"keras", "h5", "npz", "report"} <= set(r["written"]), r["written"]
    npz = M.load_model(tmp_path / "export" / "p.npz")
    for fmt in ("keras", "h5"):
        _same_weights(M.load_model(tmp_path / "export" / f"p.{fmt}"), npz)


def _same_weights(a: M.LoadedModel, b: M.LoadedModel) -> None:
    assert a.classes == b.classes and a.weights.keys() == b.weights.keys()
    for name in a.weights:
        assert all(np.array_equal(x, y) for x, y in zip(a.weights[name], b.weights[name], strict=True)), name


def _same(a: M.LoadedModel, b: M.LoadedModel) -> None:
    assert a.arch == b.arch and a.classes == b.classes and a.preprocessing == b.preprocessing
    assert a.meta == b.meta and a.source == b.source
    assert a.weights.keys() == b.weights.keys()
    for name in a.weights:
        assert all(np.array_equal(x, y) for x, y in zip(a.weights[name], b.weights[name], strict=True)), name


@pytest.mark.timeout(240)
def test_the_child_reads_what_an_in_process_load_reads(monkeypatch, tmp_path):
    path = tmp_path / GENERAL.name
    path.write_bytes(GENERAL.read_bytes())
    path.with_suffix(".json").write_bytes(GENERAL.with_suffix(".json").read_bytes())
    here = M.load_model(path)
    monkeypatch.setattr(M, "_ISOLATED", {})
    monkeypatch.setattr(M, "tensorflow_imported", lambda: False)  # as in the app, where it never was
    first = M.load_model(path, isolate=True)
    _same(first, here)
    # kept per file: the next load costs no child, and hands out its own arrays
    monkeypatch.setattr("app.core.child.run", lambda *a, **k: pytest.fail("a second child for the same file"))
    first.weights["dense2"][0][:] = 0.0
    second = M.load_model(path, isolate=True)
    assert np.array_equal(second.weights["dense2"][0], here.weights["dense2"][0])
    # the same file changed is read again, and so is a model whose sidecar (its class names) changed
    for f in (path, path.with_suffix(".json")):
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        with pytest.raises(pytest.fail.Exception, match="a second child"):
            M.load_model(path, isolate=True)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
        M.load_model(path, isolate=True)  # as it was: kept


@pytest.mark.timeout(240)
def test_a_bad_keras_file_gets_the_same_words_from_the_child(monkeypatch, tmp_path):
    bad = tmp_path / "broken.keras"
    with zipfile.ZipFile(GENERAL) as src, zipfile.ZipFile(bad, "w") as dst:  # a sound zip Keras cannot read
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(
                item, b'{"class_name": "NoSuchLayer", "config": {}}' if item.filename == "config.json" else data
            )
    with pytest.raises(M.ModelError) as here:
        M.load_model(bad)
    monkeypatch.setattr(M, "_ISOLATED", {})
    monkeypatch.setattr(M, "tensorflow_imported", lambda: False)
    with pytest.raises(M.ModelError) as child:
        M.load_model(bad, isolate=True)
    assert str(child.value) == str(here.value) and "cannot be loaded by Keras" in str(here.value)
    assert "Traceback" not in str(child.value) and str(bad) in str(child.value)


@pytest.mark.timeout(240)
def test_several_models_are_read_by_one_child(monkeypatch, tmp_path):
    """The Estimator's simulation needs the general model of every T: one TensorFlow start-up, not five."""
    from app.core import child

    paths = [ROOT / "assets" / "models" / f"paper_cnn_wisdm5_T{T}.keras" for T in (20, 40)]
    npz = M.export_npz(M.load_model(paths[0]), tmp_path / "m.npz")
    here = [M.load_model(p) for p in paths]
    runs, real = [], child.run

    def counted(*a, **k):
        runs.append(a[1][0])
        return real(*a, **k)

    monkeypatch.setattr(M, "_ISOLATED", {})
    monkeypatch.setattr(M, "tensorflow_imported", lambda: False)
    monkeypatch.setattr(child, "run", counted)
    got = M.load_models([paths[0], npz, paths[1], paths[0]], isolate=True)
    assert runs == [[str(p) for p in paths]]  # one child, each Keras file once, the .npz read here
    for a, b in zip(got, [here[0], M.load_npz(npz), here[1], here[0]], strict=True):
        _same(a, b)
    assert M.load_models(paths, isolate=True) and len(runs) == 1  # kept
