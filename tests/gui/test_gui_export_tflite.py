"""TFLite export from the GUI after a training round (pytest-qt, offscreen, virtual bench with the Python
board): the path where TensorFlow's converter used to run on a task-runner thread of the app, beside Qt and
the device threads, and could end the whole process (segfault, "Fatal Python error ... GIL").

* rounds run from the Training panel then exported from the Export panel, several times in one process:
  every format written, the .tflite files predict what the personalized Keras model predicts;
* the same path with the converter made to crash (``ODL_TFLITE_FAULT=abort``), in a process of its own
  (``tests/exportkit.py``): the process lives, the panel names the two TFLite formats as not written and
  why, every other format and the report are written.  Run the converter in the app's process again and
  this process dies of SIGABRT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytestqt  # noqa: F401 - required (test extra): a broken install fails, never skips

from tests.exportkit import round_then_export
from tests.roundkit import bench_context, labelled_dataset

pytestmark = [pytest.mark.gui, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
OTHERS = ("keras", "h5", "c_header", "npz")


@pytest.mark.timeout(1500)
def test_export_after_rounds_from_the_panels_repeatedly(qtbot, qapp, tmp_path):
    from app.core.models import keras_predict, prepare_input, run_tflite
    from app.core.rounds import personalized_model
    from app.ui.panels.export import ExportPanel
    from app.ui.panels.training import TrainingPanel

    ctx = bench_context(tmp_path / "store")
    try:
        labelled_dataset(ctx)
        training, export = TrainingPanel(ctx), ExportPanel(ctx)
        for w in (training, export):
            qtbot.addWidget(w)
        rng = np.random.default_rng(0)
        for i, rounds in enumerate((1, 0, 1)):  # export, export again, a new round and export: one process
            if rounds:
                res = round_then_export(qapp, ctx, training, export, tmp_path / f"e{i}")
            else:
                export.folder.setText(str(tmp_path / f"e{i}"))
                export.export()
                qtbot.waitUntil(lambda: export.task is None, timeout=900_000)
                res = {"round": export.round.currentData(), "stage": export.stage.text(), "failed": export.failed}
            assert res["stage"].startswith("Wrote 10 files") and not res["failed"], res
            written = export.written
            assert {"tflite_float32", "tflite_int8", *OTHERS} <= set(written)
            model = personalized_model(ctx.store, res["round"])
            x = prepare_input(model, rng.normal(0, 4, (16, model.input_size, 3)).astype(np.float32))
            ref = keras_predict(model, x)
            np.testing.assert_allclose(run_tflite(written["tflite_float32"], x), ref, atol=1e-5)
            assert np.max(np.abs(run_tflite(written["tflite_int8"], x) - ref)) < 0.1
        assert len(ctx.store.rounds(ctx.dataset.id)) == 2
    finally:
        ctx.close()


@pytest.mark.timeout(1200)
def test_a_converter_crash_after_a_round_costs_the_tflite_files_not_the_app(tmp_path):
    env = dict(os.environ, ODL_TFLITE_FAULT="abort", QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.exportkit", str(tmp_path), "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert proc.returncode == 0, (
        f"the app process died (exit {proc.returncode}) exporting after a round:\n{proc.stderr[-3000:]}"
    )
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 2, proc.stdout
    for i, res in enumerate(results):
        assert "done" in res["round_stage"], res
        assert set(res["failed"]) == {"tflite_float32", "tflite_int8"}, res
        for fmt in res["failed"].values():
            assert "the TFLite converter process crashed (SIGABRT)" in fmt, fmt
        stage = res["stage"]
        assert stage.startswith("Wrote 6 files"), stage  # 4 formats, the .keras/.h5 sidecar, the report
        assert "not written: tflite_float32 (TFLite conversion" in stage, stage
        assert sum(t.startswith("NOT WRITTEN: TFLite") for t in res["listed"]) == 2, res["listed"]
        assert set(OTHERS) | {"report"} <= set(res["written"]), res["written"]
        assert not any(n.endswith(".tflite") or n.startswith(".") for n in res["on_disk"]), res["on_disk"]
        stem = f"personalized_round{res['round']}"
        assert {f"{stem}.keras", f"{stem}.h5", f"{stem}.h", f"{stem}.npz", f"{stem}_report.md"} <= set(res["on_disk"])
        report = (tmp_path / f"export{i}" / f"{stem}_report.md").read_text()
        assert "## Not written" in report and "tflite_int8: TFLite conversion (int8)" in report
