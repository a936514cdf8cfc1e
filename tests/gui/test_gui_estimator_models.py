"""Estimator panel with imported models (pytest-qt, offscreen): a .keras paper CNN built in a tmp dir and
ST's IGN/GMP .h5 (from ../shared, skipped when absent) — input sizes, the inference figures of
`odlstudio estimate --model` — and "Simulate on my windows" (measured macro-F1 as the accuracy model)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
from pathlib import Path

import pytest
import pytestqt  # noqa: E402, F401 - required (test extra): a broken install fails, never skips

from app.core.context import AppContext  # noqa: E402
from app.ui.panels.estimator import EstimatorPanel, prior_name  # noqa: E402
from tests.roundkit import labelled_dataset  # noqa: E402

pytestmark = [pytest.mark.gui]

WISDM5 = ("walking", "jogging", "stairs", "sitting", "standing")
ST_WISDM = "v2.0.1/human_activity_recognition/pretrained_models/{kind}/ST_pretrainedmodel_public_dataset/WISDM/{name}/{name}.h5"


@pytest.fixture()
def ctx(tmp_path):
    c = AppContext.create(tmp_path / "data", bench=False, discover=False)
    yield c
    c.close()


@pytest.fixture(scope="module")
def paper_keras(tmp_path_factory) -> Path:
    """A paper CNN (T=20, WISDM-5 classes in its sidecar) saved as .keras, as a user would import it."""
    from app.core.models import build_paper_keras, export_keras, from_keras

    path = tmp_path_factory.mktemp("models") / "my_cnn_T20.keras"
    export_keras(from_keras(build_paper_keras(20, 5, WISDM5, seed=1), WISDM5), path, {"rate_hz": 20.0})
    return path


def cli_rows(model: Path, sizes: str | None = None) -> list[dict]:
    """The rows `odlstudio estimate --model FILE --json` prints (same profile and batch as the panel)."""
    from app.commands import estimate

    parser = argparse.ArgumentParser()
    estimate.register(parser.add_subparsers())
    argv = ["estimate", "--model", str(model), "--json", "--preset", "paper", "--batch-size", "32"]
    if sizes:
        argv += ["--input-sizes", sizes]
    args = parser.parse_args(argv)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.func(args) == 0
    return json.loads(out.getvalue())["rows"]


def table(panel) -> list[dict[str, str]]:
    heads = [panel.table.horizontalHeaderItem(j).text() for j in range(panel.table.columnCount())]
    return [{h: panel.table.item(i, j).text() for j, h in enumerate(heads)} for i in range(panel.table.rowCount())]


def assert_inference_like_cli(panel, model: Path, sizes: str | None = None) -> None:
    rows = table(panel)
    assert {"MACC", "wts KiB", "act KiB", "fused"} <= set(rows[0])
    for ref in cli_rows(model, sizes):
        row = next(r for r in rows if int(r["T"]) == ref["input_size"] and r["mode"] == ref["mode"].upper())
        assert row["MACC"] == f"{ref['inference_macc']:,}"
        assert row["wts KiB"] == f"{ref['weights_kib']:.2f}"
        assert row["act KiB"] == f"{ref['activation_peak_kib']:.2f}"
        assert row["fused"] == f"{ref['activation_fused_kib']:.2f}"
        assert row["train KiB"] == f"{ref['memory_kib']:.1f}"  # training memory agrees with the CLI too


def test_imported_keras_model(qtbot, ctx, paper_keras):
    panel = EstimatorPanel(ctx)
    qtbot.addWidget(panel)
    assert panel.table.rowCount() == 10 and panel.table.columnCount() == 10  # general model: T=20…100
    panel.import_model(str(paper_keras), wait=True)
    assert panel.current_model().key == str(paper_keras.resolve())
    assert "5 classes" in panel.model_info.text() and "other input sizes possible" in panel.model_info.text()
    # its own input size only, with the inference columns of `odlstudio estimate --model`
    assert [(r["T"], r["mode"]) for r in table(panel)] == [("20", "TL"), ("20", "FULL")]
    assert_inference_like_cli(panel, paper_keras)
    assert panel.rec.choice["input_size"] == 20 and "my_cnn_T20.keras" in panel.table_title.text()
    # global average pooling: the weights fit other T, so the panel may try them
    assert not panel.other_sizes.isHidden() and panel.other_sizes.isEnabled()
    panel.other_sizes.setChecked(True)
    assert sorted({int(r["T"]) for r in table(panel)}) == [20, 40, 60, 80, 100]
    assert_inference_like_cli(panel, paper_keras, "20,40,60,80,100")
    # remembered across restarts, without loading the file again (architecture saved in the settings)
    again = EstimatorPanel(ctx)
    qtbot.addWidget(again)
    assert again.current_model().key == str(paper_keras.resolve()) and again.table.rowCount() == 10
    # back to the general model: no inference columns, T = 20…100
    again.model.setCurrentIndex(0)
    assert again.table.columnCount() == 10 and again.table.rowCount() == 10
    assert not again.other_sizes.isVisibleTo(again)


def test_import_failure_is_reported(qtbot, ctx, tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip")
    panel = EstimatorPanel(ctx)
    qtbot.addWidget(panel)
    panel.import_model(str(bad), wait=True)
    assert "Import failed" in panel.model_info.text() and "broken.keras" in panel.model_info.text()
    assert panel.model.count() == 1 and panel.table.rowCount() == 10
    # the model still estimated stays named under the failure (was: only the failure, the model's line gone)
    assert panel.model_info.text().endswith(
        "<br>Still estimating: Paper CNN pretrained on WISDM-2019 (assets/models), 5 classes, 20 Hz, one model per "
        "T = 20, 40, 60, 80, 100."
    )


def test_import_opens_in_the_folder_of_the_last_model_imported(qtbot, ctx, paper_keras, monkeypatch):
    """Import… always opened the home folder; now the folder of the last model imported, also after a restart."""
    from app.ui.panels import estimator as est

    asked: list[str] = []
    monkeypatch.setattr(
        est.QFileDialog, "getOpenFileName", lambda _w, _t, start, _f: (asked.append(start), ("", ""))[1]
    )
    panel = EstimatorPanel(ctx)
    qtbot.addWidget(panel)
    panel.import_model()
    assert asked == [str(Path.home())]
    panel.import_model(str(paper_keras), wait=True)
    panel.import_model()
    again = EstimatorPanel(ctx)  # the app reopened
    qtbot.addWidget(again)
    again.import_model()
    assert asked[1:] == [str(paper_keras.parent.resolve())] * 2


@pytest.mark.parametrize("kind,name,fixed", [("ign", "ign_wl_24", True), ("gmp", "gmp_wl_48", False)])
def test_st_model_zoo_h5(qtbot, ctx, st_models, kind, name, fixed):
    path = st_models / ST_WISDM.format(kind=kind, name=name)
    if not path.is_file():
        pytest.skip(f"{path} not found")
    panel = EstimatorPanel(ctx)
    qtbot.addWidget(panel)
    panel.import_model(str(path), wait=True)
    m = panel.current_model()
    T = 24 if name.endswith("24") else 48
    assert m.arch.input_size == T and len(m.arch.classes) == 4
    assert [int(r["T"]) for r in table(panel)] == [T, T]
    assert_inference_like_cli(panel, path)
    if fixed:  # IGN: Flatten -> Dense, the weights fix T
        assert not panel.other_sizes.isEnabled() and "fixed input size T = 24" in panel.model_info.text()
    else:  # GMP: global max pooling, other T possible
        assert panel.other_sizes.isEnabled()
        panel.other_sizes.setChecked(True)
        assert sorted({int(r["T"]) for r in table(panel)}) == [20, 40, 48, 60, 80, 100]
    assert panel.rec is not None and panel.reason.toPlainText()


def test_simulate_on_my_windows(qtbot, ctx, paper_keras):
    labelled_dataset(ctx, seconds_each=25.0)  # walking, jogging, sitting from the real WISDM sample
    panel = EstimatorPanel(ctx)
    qtbot.addWidget(panel)
    panel.resize(1300, 860)
    panel.show()
    panel.import_model(str(paper_keras), wait=True)
    assert panel.accuracy_label.text() == f"Accuracy: {prior_name()}"  # the shipped LOSO table, else Table II
    panel.simulate(epochs=(1,), wait=True)  # + the table's 2 epochs
    assert panel.sim_task is None and panel.sim is not None and panel.sim.complete, panel.calib_text.toPlainText()
    assert set(panel.sim.table) == {(20, "tl", 1), (20, "tl", 2), (20, "full", 1), (20, "full", 2)}
    assert all(0.0 <= v <= 1.0 for v in panel.sim.table.values()) and panel.sim.n_test[20] > 0
    assert "measured on your windows" in panel.accuracy_label.text()
    assert "Measured on your windows (20;" in panel.calib_text.toPlainText()
    # the recommender's accuracy now comes from the simulation
    rows = [r for r in panel.rec.table if r["epochs"] == 2]
    assert all(r["accuracy_source"].startswith("measured") for r in rows)
    for r in rows:
        assert r["accuracy"] == pytest.approx(panel.sim.table[(20, r["mode"], 2)])
    assert all(row["F1"].endswith("✓") for row in table(panel))
    if os.environ.get("ODL_SCREENSHOTS"):
        panel.grab().save(str(Path(os.environ["ODL_SCREENSHOTS"]) / "estimator_imported.png"))
    # "Use prior" forgets it
    panel.use_prior()
    assert panel.sim is None and not any(r["accuracy_source"].startswith("measured") for r in panel.rec.table)
    # cancel: stops between (T, mode) runs; whatever finished is kept and marked partial
    panel.simulate(epochs=(1,))
    panel._simulate_clicked()  # noqa: SLF001 - the button while running = Cancel
    qtbot.waitUntil(lambda: panel.sim_task is None, timeout=120_000)
    assert panel.btn_simulate.isEnabled() and panel.btn_simulate.text() == "Simulate on my windows"
    assert panel.sim is None or not panel.sim.complete
    assert "cancelled" in panel.calib_text.toPlainText().lower() or "partial" in panel.accuracy_label.text()


def test_simulate_without_matching_labels_says_why(qtbot, ctx, paper_keras):
    import numpy as np

    from app.core.recording import write_accel

    rec = write_accel(ctx.store, "odd", np.zeros((400, 3), np.float32), 20.0, ctx.dataset.id)
    ctx.store.add_label(rec.id, 0.0, 20.0, "Laying")  # not a class of the model (nor gathered by one)
    panel = EstimatorPanel(ctx)
    qtbot.addWidget(panel)
    panel.import_model(str(paper_keras), wait=True)
    panel.simulate(epochs=(1,), wait=True)
    text = panel.calib_text.toPlainText()
    assert text == (  # said once (was: "none of your labels is a class of …: label some … (none of the labelled …)")
        "Simulation failed: my_cnn_T20.keras: none of the labelled activities (laying) is a class of the model "
        "(walking, jogging, stairs, sitting, standing)"
    ), text
    assert panel.sim is None and prior_name() in panel.accuracy_label.text()


def test_simulate_with_nothing_labelled_says_so_once(qtbot, ctx):
    """Was: "none of your labels is a class of General model (…): label some activities in the Labelling panel
    first (the current dataset has no labelled accelerometer recording: record and label some activities in the
    Labelling panel first)" — wrong (there are no labels) and said twice."""
    panel = EstimatorPanel(ctx)
    qtbot.addWidget(panel)
    panel.simulate(epochs=(1,), wait=True)
    assert panel.calib_text.toPlainText() == (
        "Simulation failed: the current dataset has no labelled accelerometer recording: record and label some "
        "activities in the Labelling panel first"
    )
    assert panel.sim is None and panel.accuracy_label.text() == f"Accuracy: {prior_name()}"
    assert panel.btn_simulate.isEnabled() and panel.btn_simulate.text() == "Simulate on my windows"


def test_use_in_training_panel_carries_the_imported_model(qtbot, ctx, paper_keras):
    """ "Use in Training panel" with an imported model: the Training panel imports the same file (its own
    loading path), selects it, and shows the chosen input size and mode; back to the general model too."""
    from PySide6.QtCore import Qt

    from app.ui.panels.training import TrainingPanel

    training = TrainingPanel(ctx)
    qtbot.addWidget(training)
    panel = EstimatorPanel(ctx)
    qtbot.addWidget(panel)
    assert training.model.currentData() is None and training.model.count() == 1
    panel.import_model(str(paper_keras), wait=True)
    # make Full the choice (charging, no budget) then TL (an energy budget only TL meets): both must follow
    panel.energy.setValue(0.0)
    full = panel.rec.choice
    assert full["input_size"] == 20
    statuses: list[str] = []
    ctx.subscribe("status", lambda text, **_: statuses.append(text))
    qtbot.mouseClick(panel.btn_apply, Qt.LeftButton)
    key = str(paper_keras.resolve())
    qtbot.waitUntil(lambda: training.model.currentData() == key, timeout=60_000)
    assert training.model.count() == 2 and "my_cnn_T20.keras (T=20, 5 classes)" == training.model.currentText()
    assert training.size.currentData() == 20 and not training.size.isEnabled()  # an imported model's own T
    assert training.mode.currentData() == full["mode"] and training.epochs.value() == full["epochs"]
    assert training.config().model_path == key and training.config().input_size == 20
    assert "Estimator" in training.rec_label.text() and "takes T" not in training.rec_label.text()
    assert any("my_cnn_T20.keras" in s for s in statuses) and not any("select" in s for s in statuses)
    # a second choice for the same model: selected at once, no second import, no duplicate entry
    training.model.setCurrentIndex(0)
    panel.source.setCurrentIndex(panel.source.findData("battery"))  # TL only
    assert panel.rec.choice["mode"] == "tl"
    qtbot.mouseClick(panel.btn_apply, Qt.LeftButton)
    assert training.model.currentData() == key and training.model.count() == 2
    assert training.mode.currentData() == "tl"
    # the estimator tried other sizes of this (global-pooling) model and chose one the file does not take:
    # the Training panel keeps the model's own T and says so
    training.apply_choice(60, "tl", 2, 32, "T=60 is best", model=key)
    assert training.size.currentData() == 20 and "the round runs at T = 20" in training.rec_label.text()
    # the general model: selected again, with the estimator's input size
    panel.model.setCurrentIndex(0)
    panel.source.setCurrentIndex(panel.source.findData("charging"))
    c = panel.rec.choice
    qtbot.mouseClick(panel.btn_apply, Qt.LeftButton)
    assert training.model.currentData() is None and training.size.isEnabled()
    assert training.size.currentData() == c["input_size"] and training.mode.currentData() == c["mode"]
    assert training.config().model_path is None and "(for " not in training.rec_label.text()
    # while the estimated model is being imported the box says for which model the advice is
    training.apply_choice(20, "full", 3, 32, "advice", model=str(paper_keras))
    assert training.model.currentData() == key  # already listed: selected at once
    training.model.setCurrentIndex(0)
    assert "(for my_cnn_T20.keras)" in training.rec_label.text()
