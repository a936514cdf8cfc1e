"""The panels that read or write Keras files do it outside the app's process (``isolate=True``;
app/core/child.py): importing TensorFlow in the app stalls its device readers for about a second
(docs/reliability.md).  TensorFlow is already imported in the test process, so here it is declared absent and
the child runner is replaced by one that records each job and runs it in place: every panel's Keras work must
go through it (tests/core/test_model_isolation.py runs the real children)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytestqt  # noqa: F401 - required (test extra): a broken install fails, never skips
from PySide6.QtCore import Qt

from app.core.context import AppContext
from app.core.round_config import general_model_path
from tests.roundkit import bench_context, labelled_dataset

pytestmark = [pytest.mark.gui]


@pytest.fixture()
def jobs(monkeypatch) -> list[tuple[str, object]]:
    from app.core import child
    from app.core import models as M

    calls: list[tuple[str, object]] = []

    def run(target, args, **_kw):
        calls.append((target.__name__, args[0] if target.__name__ == "_load_here" else (args[1], Path(args[2]).name)))
        return target(*args)

    monkeypatch.setattr(M, "tensorflow_imported", lambda: False)
    monkeypatch.setattr(M, "_ISOLATED", {})
    monkeypatch.setattr(child, "run", run)
    return calls


@pytest.fixture()
def ctx(tmp_path):
    c = AppContext.create(tmp_path / "data", bench=False, discover=False)
    labelled_dataset(c, seconds_each=25.0)
    yield c
    c.close()


@pytest.mark.timeout(120)
def test_training_and_estimator_panels_read_models_in_a_child(qtbot, ctx, jobs):
    from app.ui.panels.estimator import EstimatorPanel
    from app.ui.panels.training import TrainingPanel

    model = str(general_model_path(40))
    training = TrainingPanel(ctx)
    qtbot.addWidget(training)
    training.import_model(model)
    qtbot.waitUntil(lambda: training.model.count() == 2, timeout=60_000)
    assert jobs == [("_load_here", [model])]

    jobs.clear()
    estimator = EstimatorPanel(ctx)
    qtbot.addWidget(estimator)
    other = str(general_model_path(60))
    estimator.import_model(other, wait=True)
    assert jobs == [("_load_here", [other])]

    # "Simulate on my windows" with the general models: every T's model read by one child, before any run
    jobs.clear()
    estimator.model.setCurrentIndex(0)
    assert estimator.current_model().general
    estimator.simulate(epochs=(1,))
    qtbot.waitUntil(lambda: bool(jobs) or estimator.sim_task is None, timeout=60_000)
    estimator._simulate_clicked()  # noqa: SLF001 - the button while running = Cancel
    qtbot.waitUntil(lambda: estimator.sim_task is None, timeout=120_000)
    sizes = (20, 40, 60, 80, 100)
    assert len(jobs) == 1 and jobs[0][0] == "_load_here", jobs
    assert sorted(jobs[0][1]) == sorted(str(general_model_path(T)) for T in sizes if T != 40 and T != 60), jobs


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_export_panel_writes_keras_files_in_a_child(qtbot, tmp_path, jobs):
    from app.core.rounds import RoundConfig, RoundRunner
    from app.ui.panels.export import ExportPanel

    ctx = bench_context(tmp_path / "bench")
    try:
        labelled_dataset(ctx)
        res = RoundRunner(ctx.store, ctx.devices, ctx.data_dir, RoundConfig(epochs=1), ctx.dataset.id).run()
        assert res["status"] == "done"
        assert jobs == [("_load_here", [str(general_model_path(20))])]  # the round read its model in a child
        jobs.clear()
        panel = ExportPanel(ctx)
        qtbot.addWidget(panel)
        for f, cb in panel.formats.items():
            cb.setChecked(f in ("keras", "h5", "npz"))
        panel.folder.setText(str(tmp_path / "out"))
        panel.stem.setText("p")
        qtbot.mouseClick(panel.btn_export, Qt.LeftButton)
        qtbot.waitUntil(lambda: panel.task is None, timeout=240_000)
        assert "Wrote" in panel.stage.text(), panel.stage.text()
        assert jobs == [("_export_here", ("keras", "p.keras")), ("_export_here", ("h5", "p.h5"))]
        assert (tmp_path / "out" / "p.keras").is_file() and (tmp_path / "out" / "p.h5").is_file()
    finally:
        ctx.close()
