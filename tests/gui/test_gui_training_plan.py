"""The Training round panel, what it says of a round before and after it (2026-12-07): the cost box's counts,
the confusion matrices at 1280 x 800 (the docs' screenshot size) and 800 x 600, the macro-F1 of a round on one
activity."""

from __future__ import annotations

import re

import numpy as np
import pytest
import pytestqt  # noqa: F401 - required (test extra): a broken install fails, never skips
from PySide6.QtCore import QPoint

from app.core.energy import BatchRow
from app.core.round_data import metrics_from_confusion
from app.ui.panels import training
from app.ui.panels.training import TrainingPanel

pytestmark = [pytest.mark.gui]

CLASSES = ("walking", "jogging", "stairs", "sitting", "standing")


def _rows() -> list[BatchRow]:
    """A robust round's rows: a validation pass, four batches, a validation pass (with power measured)."""
    out = []
    for i, phase in enumerate(("val", "main", "main", "main", "main", "val")):
        out.append(
            BatchRow(
                i, phase, 0, i, 32, 0.5, 0, 10, 800, 0.6, 0.6, 0.0016, i * 1.0, i + 0.6, 8e-4, 2.6e-3, 0.0016, "d7"
            )
        )
    return out


def _metrics(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    cm = rng.integers(0, 15, size=(5, 5))  # two-digit counts in every class (the widest matrix)
    return metrics_from_confusion(cm, CLASSES, 0.4)


def _show_round(panel: TrainingPanel) -> None:
    validation = {"n_val": 9, "kept": {"epoch": 4, "macro_f1": 0.9}, "start": {"macro_f1": 0.8}}
    board = {"name": "NUCLEO-L496ZG (virtual: Python emulator)", "odl_firmware": False}
    panel._show(
        _rows(), _metrics(1), _metrics(2), ["a warning"], CLASSES, {}, {"validation": validation, "board": board}
    )


@pytest.fixture()
def window(qtbot, ctx):
    from app.ui.app import build_window

    win = build_window(ctx)
    qtbot.addWidget(win)
    win.resize(1280, 800)  # as docs/screenshots/make_screenshots.py makes the window
    win.show()
    yield win
    win.close()


def _settle(qtbot) -> None:
    qtbot.wait(200)


def test_both_confusion_matrices_fit_the_page_at_1280x800_without_scrolling(qtbot, window):
    """At 1280 x 800 the two 5 x 5 matrices were cut: their last rows needed each table's own scroll bar."""
    panel = window.show_panel("training")
    _show_round(panel)
    _settle(qtbot)
    page = window.stack.currentWidget()
    view = page.viewport()
    assert page.verticalScrollBar().maximum() == 0  # the page itself does not scroll
    assert panel.metrics_box.stacked is False  # side by side
    for table in (panel.cm_before, panel.cm_after):
        assert (table.rowCount(), table.columnCount()) == (5, 5)
        assert table.verticalScrollBar().maximum() == 0 and table.horizontalScrollBar().maximum() == 0
        top = table.mapTo(view, QPoint(0, 0))
        assert 0 <= top.y() and top.y() + table.height() <= view.height()
        assert 0 <= top.x() and top.x() + table.width() <= view.width()
        last = table.verticalHeader()
        assert last.sectionViewportPosition(4) + last.sectionSize(4) <= table.viewport().height()
        heads = [table.horizontalHeaderItem(j) for j in range(5)]
        assert [h.text() for h in heads] == ["walk", "jogg", "stai", "sitt", "stan"]
        assert [h.toolTip() for h in heads] == [f"predicted {c}" for c in CLASSES]
    assert panel.plots.height() >= training.PLOTS_MIN_HEIGHT  # the per-batch plots keep their room


def test_at_800x600_the_matrices_stack_whole_and_the_plots_keep_their_height(qtbot, window):
    panel = window.show_panel("training")
    window.resize(800, 600)
    _show_round(panel)
    _settle(qtbot)
    assert panel.metrics_box.stacked is True
    for table in (panel.cm_before, panel.cm_after):
        assert table.verticalScrollBar().maximum() == 0 and table.horizontalScrollBar().maximum() == 0
        assert table.width() >= training.MATRIX_MIN_WIDTH
    assert panel.plots.height() >= training.PLOTS_MIN_HEIGHT
    # the summary's wrapped lines are whole (the splitter cut them)
    assert panel.summary.height() >= panel.summary.heightForWidth(panel.summary.width())


def test_a_one_activity_rounds_macro_f1_says_it_is_over_one_class(qtbot, ctx):
    """Windows of walking only: precision is 1 by construction, so the class's F1 (0.750) stood above the
    accuracy (0.600) as if it were a macro-F1 of the model's five classes."""
    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    cm = np.zeros((5, 5), int)
    cm[0, :2] = (6, 4)
    before = metrics_from_confusion(cm, CLASSES, 0.9)
    cm[0, :2] = (9, 1)
    after = metrics_from_confusion(cm, CLASSES, 0.2)
    panel._show([], before, after, [], CLASSES, None, None)
    assert panel.summary.text() == (
        "<b>Before</b>: accuracy 0.600, macro-F1 0.750 over 1 of 5 classes (walking)<br>"
        "<b>After</b>: accuracy 0.900, macro-F1 0.947 over 1 of 5 classes (walking)"
    )
    three = np.diag([3, 4, 0, 5, 0])
    m = metrics_from_confusion(three, CLASSES)
    panel._show([], m, None, [], CLASSES, None, None)
    assert panel.summary.text() == "<b>Before</b>: accuracy 1.000, macro-F1 1.000 over 3 of 5 classes"
    m = metrics_from_confusion(np.diag([3, 4, 1, 5, 2]), CLASSES)
    panel._show([], m, None, [], CLASSES, None, None)
    assert panel.summary.text() == "<b>Before</b>: accuracy 1.000, macro-F1 1.000"


def _cost_box(qtbot, ctx, mode: str, epochs: int, warmup: int) -> str:
    """The cost box of the general model at T = 20, batch 8, on 20 s of walking, jogging and sitting."""
    from tests.roundkit import labelled_dataset

    labelled_dataset(ctx, seconds_each=20.0)
    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    panel.model.setCurrentIndex(0)
    panel.size.setCurrentIndex(panel.size.findData(20))
    panel.mode.setCurrentIndex(panel.mode.findData(mode))
    panel.batch.setValue(8)
    panel.epochs.setValue(epochs)
    panel.warmup.setValue(warmup)
    assert panel._form_estimate() in panel.rec_label.text()
    return panel._form_estimate()


def test_the_cost_box_counts_the_rounds_training_windows_batches_and_validation_passes(qtbot, ctx):
    """The box counted every window of 60 % of the labelled time as trained on, with no validation pass."""
    text = _cost_box(qtbot, ctx, "tl", 2, 1)
    # walking, jogging, sitting: 23 training windows of T=20 each, the last 2 of each validate
    assert re.search(r"on the board \(([^)]*)\)", text).group(1) == (
        "63 training windows per epoch, 24 batches; 6 validation windows × 4 passes"
    )


def test_the_cost_box_writes_a_long_round_as_a_person_does(qtbot, ctx):
    """Was "≈ 1.42e+03 s and 3.88e+03 mJ" for a round of many epochs (``:.3g``); the Estimator's formatter now."""
    secs, mj = re.search(r"≈ (\S+) s and (\S+) mJ on the board", _cost_box(qtbot, ctx, "full", 1000, 0)).groups()
    assert re.fullmatch(r"\d{1,3}(,\d{3})+", secs) and re.fullmatch(r"\d{1,3}(,\d{3})+", mj), (secs, mj)


def test_batch_n_sits_at_the_same_x_in_the_four_per_batch_plots(qtbot, window):
    """The plots share the batch axis, but each y axis was as wide as its labels ("0.015" against "2"): the
    plot areas were offset and batch n stood a few pixels apart from plot to plot."""
    from PySide6.QtCore import QPointF

    panel = window.show_panel("training")
    rows = [
        BatchRow(i, "main", 0, i, 32, 0.0153 / (i + 1), 0, 10, 800, 0.6, 0.6, 0.0016, i, i + 0.6, 8e-4, 2.6e-3, 0.0016)
        for i in range(12)
    ]
    panel._show(rows, None, None, [], CLASSES, {}, None)
    _settle(qtbot)
    plots = (panel.loss_plot, panel.time_plot, panel.power_plot, panel.energy_plot)
    for batch in (0.0, 11.0):
        xs = [p.vb.mapViewToScene(QPointF(batch, 0.0)).x() for p in plots]
        assert max(xs) - min(xs) < 0.5, xs
    assert {p.getAxis("left").width() for p in plots} == {training.LEFT_AXIS_WIDTH}


def test_the_model_box_names_its_item_in_full_in_its_tool_tip(qtbot, window):
    """At 1280 x 800 the box shows "General (paper CNN, W": the tool tip names the current model in full."""
    panel = window.show_panel("training")
    about = "The pretrained general model shipped with the app, or a model you imported"
    assert panel.model.toolTip() == f"General (paper CNN, WISDM)\n\n{about}"
    panel.imported["/x/alice_T20.keras"] = (20, ("conv1", "dense1", "dense2"), CLASSES, 20.0)
    panel.model.addItem("alice_T20.keras (T=20, 5 classes)", "/x/alice_T20.keras")
    panel.model.setCurrentIndex(1)
    assert panel.model.toolTip() == f"alice_T20.keras (T=20, 5 classes)\n\n{about}"


def test_the_panel_and_personalize_start_at_the_same_warm_up(qtbot, ctx):
    """Was: the panel's box started at 0 and `odlstudio personalize` at 2 (the paper's, and the LOSO study's
    behind the accuracy prior): "the defaults" were two different rounds."""
    import argparse

    from app.commands import personalize as cli
    from app.core.personalize import PersonalizeConfig
    from app.core.round_config import WARMUP_EPOCHS

    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    sub = argparse.ArgumentParser().add_subparsers()
    cli.register(sub)
    args = sub.choices["personalize"].parse_args(["--data", "x"])
    assert WARMUP_EPOCHS == 2
    assert panel.warmup.value() == args.warmup_epochs == PersonalizeConfig(data="x").warmup_epochs == WARMUP_EPOCHS
    assert panel.config().warmup_epochs == WARMUP_EPOCHS
