"""The Training round panel while a round runs and right after it (a new user's first hour on the virtual bench,
2026-12-07): the form is the running round's, Ctrl+R and the history say why they do nothing, an Estimator
choice waits for the round's end, a round whose later batches lost the power monitor compares like with like,
and the batch axis counts whole batches (docs/reliability.md)."""

from __future__ import annotations

import threading

import pytest
import pytestqt  # noqa: F401 - required (test extra): a broken install fails, never skips

from app.core.context import AppContext
from app.ui.panels import training
from app.ui.panels.training import TrainingPanel

pytestmark = [pytest.mark.gui]


@pytest.fixture()
def ctx(tmp_path):
    c = AppContext.create(tmp_path / "data")
    yield c
    c.close()


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
