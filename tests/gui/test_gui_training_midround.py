"""The Training round panel while a round runs and right after it (a new user's first hour on the virtual bench,
2026-12-07): the form is the running round's, Ctrl+R and the history say why they do nothing, an Estimator
choice waits for the round's end, a round whose later batches lost the power monitor compares like with like,
and the batch axis counts whole batches (docs/reliability.md)."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import pytestqt  # noqa: F401 - required (test extra): a broken install fails, never skips

from app.core.energy import BatchRow
from app.ui.panels import training
from app.ui.panels.training import TrainingPanel

pytestmark = [pytest.mark.gui]


class _HeldRound:
    """A round that runs until the test releases it (no board needed): stored, then done."""

    release = threading.Event()

    def __init__(self, store, devices, data_dir, cfg, dataset_id, state, **_kw):
        self.store, self.cfg, self.dataset_id, self.state = store, cfg, dataset_id, state

    def run(self, cancelled, progress):
        rid = self.store.add_round(self.cfg.to_dict(), self.dataset_id)
        self.state.update(status="running", round_id=rid, text="training")
        assert self.release.wait(10.0)
        self.store.update_round(rid, status="done", result={})
        self.state.update(status="done", fraction=1.0, text="done")
        return {"status": "done", "round_id": rid}


@pytest.fixture()
def held(monkeypatch):
    monkeypatch.setattr(training, "RoundRunner", _HeldRound)
    _HeldRound.release.clear()
    yield _HeldRound.release
    _HeldRound.release.set()


def _said(ctx) -> list[str]:
    out: list[str] = []
    ctx.subscribe("status", lambda text, **_: out.append(text))
    return out


def test_the_form_is_locked_while_a_round_runs_and_its_cost_box_stays_the_rounds(qtbot, ctx, held):
    """T, the mode or the model picked during a round changed nothing of the round, yet the cost box then
    read "This round (FULL, T=60 …)" beside a TL T=20 round."""
    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    panel.size.setCurrentIndex(panel.size.findData(20))
    panel.mode.setCurrentIndex(panel.mode.findData("tl"))
    box = panel.rec_label.text()
    assert "(TL, T=20," in box
    panel.run_round()
    assert not panel.form_box.isEnabled()
    for w in (panel.model, panel.btn_import, panel.size, panel.mode, panel.epochs, panel.lr, panel.batch):
        assert not w.isEnabled()
    assert panel.form_box.toolTip() == (
        "The settings of the running round: they can be changed when it ends (Cancel stops it)"
    )
    held.set()
    qtbot.waitUntil(lambda: panel.task is None, timeout=10_000)
    assert panel.form_box.isEnabled() and panel.size.isEnabled() and panel.form_box.toolTip() == ""
    assert panel.rec_label.text() == box


def test_an_imported_models_input_size_stays_fixed_after_the_round(qtbot, ctx, held):
    """The form unlocks as it was: an imported model's T box stays disabled (its T is the model's)."""
    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    path = str(ctx.data_dir / "alice_T40.keras")
    panel.imported[path] = (40, ("dense1", "dense2"), ("walking", "jogging"), 20.0)
    panel.model.addItem("alice_T40.keras (T=40, 2 classes)", path)
    panel.model.setCurrentIndex(1)
    assert not panel.size.isEnabled()
    panel.run_round()
    held.set()
    qtbot.waitUntil(lambda: panel.task is None, timeout=10_000)
    assert panel.form_box.isEnabled() and panel.model.isEnabled()
    assert not panel.size.isEnabled() and panel.size.currentData() == 40


def test_ctrl_r_and_a_past_round_clicked_during_a_round_say_why_nothing_happens(qtbot, ctx, held):
    """Ctrl+R during a round did nothing without a word; a past round clicked in the history was selected
    (highlighted) while the plots went on showing the running round."""
    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    ctx.store.add_round(panel.config().to_dict(), ctx.dataset.id)
    panel.load_history()
    said = _said(ctx)
    panel.run_round()
    assert panel.history.currentRow() == -1
    panel.run_round()  # Ctrl+R
    assert said == ["A round is already running: wait for it to end, or press Cancel to stop it"]
    panel.history.setCurrentRow(0)
    assert said[-1] == "The plots show the running round: past rounds can be looked at when it ends"
    assert panel.history.currentRow() == -1
    qtbot.waitUntil(lambda: panel.state.snapshot()["round_id"] is not None, timeout=10_000)
    assert len(ctx.store.rounds()) == 2  # one round started, not two
    held.set()
    qtbot.waitUntil(lambda: panel.task is None, timeout=10_000)
    assert panel.history.currentRow() == 0 and panel.history.item(0).text().startswith("#2 ")


def test_an_estimator_choice_made_during_a_round_is_applied_when_it_ends(qtbot, ctx, held):
    """ "Use in Training panel" pressed while a round ran rewrote the form of the running round."""
    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    panel.size.setCurrentIndex(panel.size.findData(20))
    panel.mode.setCurrentIndex(panel.mode.findData("tl"))
    epochs = panel.epochs.value()
    said = _said(ctx)
    panel.run_round()
    ctx.publish("estimator_choice", input_size=60, mode="full", epochs=7, batch_size=16, reason="because")
    assert (panel.size.currentData(), panel.mode.currentData(), panel.epochs.value()) == (20, "tl", epochs)
    assert said == ["The Estimator's choice is put in the Training panel's form when the running round ends"]
    held.set()
    qtbot.waitUntil(lambda: panel.task is None, timeout=10_000)
    assert (panel.size.currentData(), panel.mode.currentData(), panel.epochs.value(), panel.batch.value()) == (
        60,
        "full",
        7,
        16,
    )
    assert panel.rec_label.text().startswith("<b>Estimator:</b> because")


def _rows_with_power_lost() -> list[BatchRow]:
    """A robust round on the ODL firmware whose power monitor was unplugged during batches 3 and 4: a
    validation pass, four batches, a validation pass; 1.6 mJ measured where there were samples, 1.5 mJ
    predicted for each."""
    out = []
    for i, phase in enumerate(("val", "main", "main", "main", "main", "val")):
        lost = i in (3, 4)
        out.append(
            BatchRow(
                i, phase, 0, i, 32, 0.5, 0, 10, 800, 0.6, 0.6, 0.0015, i * 1.0, i + 0.6,
                None if lost else 8e-4, None if lost else 2.6e-3, None if lost else 0.0016,
                "none" if lost else "d7",
            )
        )  # fmt: skip
    return out


def test_a_round_with_batches_without_power_compares_them_with_the_estimator_for_the_same_batches(qtbot, ctx):
    """The LPM01A unplugged mid-round: "6.40 mJ measured (estimator 9.00 mJ)" set the energy of the batches
    it measured against the estimator's for the whole round, as if the round had cost less than predicted."""
    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    board = {"name": "NUCLEO-L496ZG", "odl_firmware": True}
    panel._show(_rows_with_power_lost(), None, None, [], (), {}, {"board": board})
    assert (
        "4 batches + 2 validation passes, 3.60 s on NUCLEO-L496ZG, 6.40 mJ measured over the 4 of 6 batches and "
        "validation passes with power samples (estimator 6.00 mJ for those, 9.00 mJ for the round)<br>"
    ) in panel.summary.text()
    panel._show(_rows_with_power_lost()[1:5], None, None, [], (), {}, {"board": board})  # no validation pass
    assert (
        "4 batches, 2.40 s on NUCLEO-L496ZG, 3.20 mJ measured over the 2 of 4 batches with power samples "
        "(estimator 3.00 mJ for those, 6.00 mJ for the round)<br>"
    ) in panel.summary.text()


def test_the_batch_axis_has_ticks_at_whole_batches_only(qtbot, ctx):
    """No batch yet (x from -0.6 to 0.6), or a round of three: ticks at -0.4, -0.2 … 0.4, or at 0.5 steps."""
    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    panel.resize(1000, 700)
    panel.show()
    qtbot.waitExposed(panel)
    for rows in ([], _rows_with_power_lost()[:3]):
        panel._show(rows, None, None, [], (), None, None)
        qtbot.wait(50)
        lo, hi = panel.loss_plot.viewRange()[0]
        for p in (panel.loss_plot, panel.time_plot, panel.power_plot, panel.energy_plot):
            axis = p.getAxis("bottom")
            ticks = [v for _sp, vals in axis.tickValues(lo, hi, axis.width()) for v in vals]
            assert ticks == list(range(0, len(rows) or 1)), (p.titleLabel.text, ticks)


class _CancelledAtBatch3:
    """A round cancelled at batch 3 of 8 (its three batches and a validation pass stored), as ``RoundRunner``
    stores it."""

    def __init__(self, store, devices, data_dir, cfg, dataset_id, state, **_kw):
        self.store, self.cfg, self.dataset_id, self.state = store, cfg, dataset_id, state

    def run(self, cancelled, progress):
        rid = self.store.add_round(self.cfg.to_dict(), self.dataset_id)
        for row in _rows_with_power_lost()[:4]:
            self.store.put_round_batch(rid, row.index, row.to_dict())
        self.store.update_round(rid, status="cancelled", result={"batches_done": 3, "total_batches": 8})
        self.state.update(status="cancelled", round_id=rid, batches_done=3, total_batches=8, fraction=0.375)
        raise RuntimeError("cancelled")  # what the task runner reports for a cancelled task


def test_a_cancelled_rounds_progress_bar_shows_how_far_it_got(qtbot, ctx, monkeypatch):
    """After Cancel at batch 3 of 8 (or clicking that round in the history) the bar read "0 %" beside the
    round's three bars."""
    monkeypatch.setattr(training, "RoundRunner", _CancelledAtBatch3)
    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    panel.run_round()
    qtbot.waitUntil(lambda: panel.task is None, timeout=10_000)
    assert panel.stage.text() == "Cancelled (the partial round is in the history)"
    assert (panel.progress.value(), panel.progress.format()) == (375, "cancelled at batch 3/8")
    # a round the result says nothing of (one the app's closing aborted): its stored batches
    panel._show_how_far("aborted", {}, 3)
    assert (panel.progress.value(), panel.progress.format()) == (0, "aborted after 3 batches")
    panel._show_how_far("failed", {"batches_done": 0, "total_batches": 0}, 0)
    assert panel.progress.format() == "failed before the board started training"


def test_pointing_at_a_bar_shows_its_batch_s_figures_beside_the_estimator_s(qtbot, ctx):
    """The per-batch bars had no tool tip: their values could only be guessed from the axes."""
    from PySide6.QtCore import QPointF

    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    panel.resize(1000, 700)
    panel.show()
    qtbot.waitExposed(panel)
    rows = _rows_with_power_lost()
    rows[5] = dataclasses.replace(rows[5], macro_f1=0.8)
    panel._show(rows, None, None, [], (), None, None)
    qtbot.wait(50)
    assert panel.plots.toolTip() == "Point at a bar to read its batch's time, power and energy beside the estimator's"
    scene = panel.plots.scene()
    scene.sigMouseMoved.emit(panel.energy_plot.vb.mapViewToScene(QPointF(2.2, 0.5)))
    assert panel.plots.toolTip() == (
        "Bar 2: epoch 1, batch 3 (32 windows)\n"
        "time 0.600 s (estimator 0.600 s)\n"
        "average power 2.60 mW (estimator 2.50 mW)\n"
        "energy 1.600 mJ (estimator 1.500 mJ), between the batch's D7 edges\n"
        "loss 0.500"
    )
    scene.sigMouseMoved.emit(panel.time_plot.vb.mapViewToScene(QPointF(3.0, 0.1)))
    assert panel.plots.toolTip() == (
        "Bar 3: epoch 1, batch 4 (32 windows)\n"
        "time 0.600 s (estimator 0.600 s)\n"
        "power and energy: not measured (no power samples in this batch)\n"
        "loss 0.500"
    )
    scene.sigMouseMoved.emit(panel.loss_plot.vb.mapViewToScene(QPointF(4.8, 0.1)))
    assert panel.plots.toolTip() == (
        "Bar 5: validation pass (32 windows held out, no update)\n"
        "time 0.600 s (estimator 0.600 s)\n"
        "average power 2.60 mW (estimator 2.50 mW)\n"
        "energy 1.600 mJ (estimator 1.500 mJ), between the batch's D7 edges\n"
        "loss 0.500, macro-F1 0.800"
    )
    scene.sigMouseMoved.emit(panel.loss_plot.vb.mapViewToScene(QPointF(9.0, 0.1)))  # right of the last bar
    assert panel.plots.toolTip().startswith("Point at a bar")


class _FailsAtBatch4:
    """A round whose board stops answering at batch 4 of 10, as ``RoundRunner`` ends it (RoundError)."""

    def __init__(self, store, devices, data_dir, cfg, dataset_id, state, **_kw):
        self.store, self.cfg, self.dataset_id, self.state = store, cfg, dataset_id, state

    def run(self, cancelled, progress):
        rid = self.store.add_round(self.cfg.to_dict(), self.dataset_id)
        reason = "NUCLEO link lost: the board does not answer (firmware hung, or the USB link stalled)"
        self.store.update_round(rid, status="failed", result={"error": reason, "batches_done": 4, "total_batches": 10})
        self.state.update(status="failed", round_id=rid, batches_done=4, total_batches=10, text=reason)
        raise RuntimeError(f"round {rid} failed: {reason}")


def test_a_failed_round_says_which_round_and_how_far_not_just_error(qtbot, ctx, monkeypatch):
    """The board stopped answering mid-round: the stage read "Error" above "round 1 failed: …"."""
    monkeypatch.setattr(training, "RoundRunner", _FailsAtBatch4)
    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    panel.run_round()
    qtbot.waitUntil(lambda: panel.task is None, timeout=10_000)
    assert panel.stage.text() == "Round 1 failed at batch 4/10: its 4 batches are in the history"
    assert panel.warnings.text() == (
        "Round 1 failed: NUCLEO link lost: the board does not answer (firmware hung, or the USB link stalled)"
    )
    assert (panel.progress.value(), panel.progress.format()) == (400, "failed at batch 4/10")
    assert panel.form_box.isEnabled() and panel.btn_run.isEnabled()


def test_an_empty_plot_writes_no_y_values(qtbot, ctx):
    """Before the first batch each plot's y axis showed pyqtgraph's 0.2 … 0.8, on top of each other at 800 x 600."""
    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    plots = (panel.loss_plot, panel.time_plot, panel.power_plot, panel.energy_plot)
    assert [p.getAxis("left").style["showValues"] for p in plots] == [False] * 4  # as built, no round yet
    panel._show(_rows_with_power_lost()[:2], None, None, [], (), None, None)
    panel._show([], None, None, [], (), None, None)  # a new round, no batch yet
    assert [p.getAxis("left").style["showValues"] for p in plots] == [False] * 4
    panel._show(_rows_with_power_lost()[:2], None, None, [], (), None, None)
    assert [p.getAxis("left").style["showValues"] for p in plots] == [True] * 4
