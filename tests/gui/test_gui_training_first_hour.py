"""The Training round panel in a new user's first hour (2026-12-07): what a Cancel that came too late says,
and the batch axis of an empty chart (docs/reliability.md)."""

from __future__ import annotations

import threading

import pytest
import pytestqt  # noqa: F401 - required (test extra): a broken install fails, never skips

from app.ui.panels import training
from app.ui.panels.training import TrainingPanel

pytestmark = [pytest.mark.gui]


class _FinishesDespiteCancel:
    """A round that is past the board's last batch when Cancel is pressed: the board finished, the weights
    were read back, the round is stored as done (what ``RoundRunner`` does when the Cancel reaches it during
    the evaluation after training or the download of the weights)."""

    pressed = threading.Event()

    def __init__(self, store, devices, data_dir, cfg, dataset_id, state, **_kw):
        self.store, self.cfg, self.dataset_id, self.state = store, cfg, dataset_id, state

    def run(self, cancelled, progress):
        rid = self.store.add_round(self.cfg.to_dict(), self.dataset_id)
        self.state.update(status="running", round_id=rid, text="evaluating after personalization")
        assert self.pressed.wait(10.0)
        assert cancelled()  # too late: the board is done
        self.store.update_round(rid, status="done", result={"weights_path": "rounds/round_1.npz"})
        self.state.update(status="done", fraction=1.0, text="done")
        return {"status": "done", "round_id": rid}


def test_a_cancel_after_the_board_finished_says_the_round_is_done_not_cancelled(qtbot, ctx, monkeypatch):
    """Cancel pressed during "evaluating after personalization": the round finished and was stored as done
    with its weights, the history said [done], yet the panel said "Cancelled (the partial round is in the
    history)"."""
    monkeypatch.setattr(training, "RoundRunner", _FinishesDespiteCancel)
    _FinishesDespiteCancel.pressed.clear()
    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    finished = []
    ctx.subscribe("round_finished", lambda round_id=None, **_: finished.append(round_id))
    panel.run_round()
    qtbot.waitUntil(lambda: panel.state.snapshot()["round_id"] is not None, timeout=10_000)
    panel.btn_cancel.click()
    _FinishesDespiteCancel.pressed.set()
    qtbot.waitUntil(lambda: panel.task is None, timeout=10_000)
    assert ctx.store.rounds()[-1]["status"] == "done"
    assert panel.stage.text() == (
        "Round 1: done — Cancel came after the board had finished training: "
        "the round and its personalized weights were kept"
    )
    assert panel.history.item(0).text().startswith("#1 ") and "[done]" in panel.history.item(0).text()
    assert finished == [1]  # the Export panel lists it


def test_the_batch_axis_of_an_empty_chart_has_no_si_prefix(qtbot, ctx):
    """Before any batch the x range is -0.6 … 0.6: the energy chart's axis read "batch (x0.001)", -400 … 400."""
    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    panel.resize(1000, 700)
    panel.show()
    qtbot.waitExposed(panel)
    panel.refresh()  # a round started, no batch yet
    qtbot.wait(50)
    assert panel.loss_plot.viewRange()[0] == pytest.approx([-0.6, 0.6])
    axis = panel.energy_plot.getAxis("bottom")
    assert axis.autoSIPrefixScale == 1.0
    assert axis.labelString() == "<span style='color: #111827'>batch </span>"  # (no "(x0.001)")


@pytest.mark.parametrize(
    ("board", "said"),
    [
        (
            {"name": "NUCLEO-L496ZG (virtual: ODL firmware under QEMU)", "odl_firmware": True},
            "2 batches, 1.50 s on NUCLEO-L496ZG (virtual: ODL firmware under QEMU), 4.00 mJ measured "
            "(estimator 3.00 mJ)<br>",
        ),
        (
            {"name": "NUCLEO-L496ZG (virtual: Python emulator)", "odl_firmware": False},
            "2 batches, 1.50 s on NUCLEO-L496ZG (virtual: Python emulator), 4.00 mJ (estimator 3.00 mJ) — "
            "<b>not measured</b>: this board takes its batch times and current from the estimator<br>",
        ),
        (None, "2 batches, 1.50 s on the board, 4.00 mJ measured (estimator 3.00 mJ)<br>"),  # (a round stored before)
    ],
)
def test_the_summary_names_the_board_and_calls_only_the_firmwares_figures_measured(qtbot, ctx, board, said):
    from app.core.energy import BatchRow

    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    rows = [
        BatchRow(i, "main", 0, i, 32, 0.5, 0, 0, 0, s, pred_energy_j=1.5e-3, energy_j=2e-3, source="d7")
        for i, s in enumerate((0.5, 1.0))
    ]
    result = {} if board is None else {"board": board}
    panel._show(rows, None, None, [], ("a", "b"), {}, result, total=2)  # noqa: SLF001
    assert said in panel.summary.text()
