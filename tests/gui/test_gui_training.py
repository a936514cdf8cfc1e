"""Training round panel driven end to end on the virtual bench (pytest-qt, offscreen): run a TL round and
watch the per-batch bars appear, then cancel a second round; progress by batches with the time left, and
quitting mid-round keeps the batches done (issue 12 item 10).  (docs/screenshots/training.png is a round on
the QEMU board: docs/screenshots/make_screenshots.py.)"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import pytestqt  # noqa: E402, F401 - required (test extra): a broken install fails, never skips

from app.core.round_history import round_rows  # noqa: E402
from app.ui.panels.training import TrainingPanel  # noqa: E402
from tests.roundkit import bench_context, labelled_dataset  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.fixture()
def ctx(tmp_path):
    c = bench_context(tmp_path)
    labelled_dataset(c)
    yield c
    c.close()


def bars_shown(panel: TrainingPanel) -> int:
    h = panel.bars["time"].opts.get("height")
    return 0 if h is None else int(np.count_nonzero(np.asarray(h) > 0))


@pytest.mark.timeout(240)
def test_run_tl_round_and_see_per_batch_bars(qtbot, ctx):
    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    panel.resize(1400, 900)
    panel.show()
    # prefilled from the estimator; choose a TL round like the paper's with a warm-up
    panel.size.setCurrentIndex(panel.size.findData(20))
    panel.mode.setCurrentIndex(panel.mode.findData("tl"))
    panel.epochs.setValue(3)
    panel.warmup.setValue(1)
    assert panel.config().mode == "tl"
    qtbot.mouseClick(panel.btn_run, __import__("PySide6.QtCore", fromlist=["Qt"]).Qt.LeftButton)
    assert not panel.btn_run.isEnabled() and panel.btn_cancel.isEnabled()
    # bars appear while the round is still running (pulled from the RoundState on the view's timer)
    qtbot.waitUntil(lambda: bars_shown(panel) >= 2, timeout=120_000)
    assert panel.task is not None, "the round should still be running when the first bars show"
    qtbot.waitUntil(lambda: panel.task is None, timeout=120_000)
    assert panel.btn_run.isEnabled()
    assert "Error" not in panel.stage.text(), panel.warnings.text()
    rounds = ctx.store.rounds()
    assert rounds[-1]["status"] == "done"
    res = rounds[-1]["result"]
    n = res["n_batches"]  # the robust round: 4 epochs of the training windows, a validation pass per epoch + 1
    assert n == 4 * res["round_info"]["batches_per_epoch"] and res["val_passes"] == 5
    assert bars_shown(panel) == n + 5 and "validation passes" in panel.summary.text()
    assert f"kept epoch {res['validation']['kept']['epoch']}" in panel.summary.text()
    energy = np.asarray(panel.bars["energy"].opts["height"])
    assert np.all(energy > 0)  # every batch has LPM01A energy (D7-aligned)
    assert panel.cm_after.rowCount() == 5 and panel.cm_before.item(0, 0) is not None
    assert "After" in panel.summary.text() and "macro-F1" in panel.summary.text()
    # the bench's Python board: its batches are the estimator's, and the summary says so, naming the board
    e, pe = sum(r.energy_j for r in round_rows(ctx.store, rounds[-1]["id"])), res["pred_energy_j"]
    assert (
        f"{n} batches + 5 validation passes, {res['seconds']:.2f} s on NUCLEO-L496ZG (virtual: Python emulator), "
        f"{e * 1e3:.2f} mJ (estimator {pe * 1e3:.2f} mJ) — <b>not measured</b>: this board takes its batch "
        "times and current from the estimator<br>"
    ) in panel.summary.text()
    assert panel.history.count() == 1 and "done" in panel.history.item(0).text()


@pytest.mark.timeout(240)
def test_cancel_round_keeps_partial_history(qtbot, ctx):
    from PySide6.QtCore import Qt

    panel = TrainingPanel(ctx)
    qtbot.addWidget(panel)
    panel.mode.setCurrentIndex(panel.mode.findData("full"))
    panel.epochs.setValue(20)
    panel.measure.setChecked(False)
    qtbot.mouseClick(panel.btn_run, Qt.LeftButton)
    qtbot.waitUntil(lambda: bars_shown(panel) >= 1, timeout=120_000)
    qtbot.mouseClick(panel.btn_cancel, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.task is None, timeout=60_000)
    r = ctx.store.rounds()[-1]
    assert r["status"] == "cancelled"
    assert "cancelled" in panel.history.item(0).text()
    assert any("switched off" in w for w in r["result"]["warnings"])


# --- item 10: progress by batches with the time left; quitting mid-round keeps what was recorded ---------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_training_progress_shows_batches_and_time_left_and_quitting_keeps_the_round(qtbot, tmp_path):
    from app.ui.app import build_window

    ctx = bench_context(tmp_path, time_scale=10.0)
    labelled_dataset(ctx)
    win = build_window(ctx)
    qtbot.addWidget(win)
    win.show()
    panel = win.show_panel("training")
    panel.mode.setCurrentIndex(panel.mode.findData("full"))
    panel.epochs.setValue(20)
    panel.run_round()
    qtbot.waitUntil(lambda: panel.state.snapshot()["batches_done"] >= 1, timeout=120_000)
    panel.refresh()
    snap = panel.state.snapshot()
    total = snap["total_batches"]
    assert panel.progress.value() <= int(1000 * (0.05 + 0.9 * snap["batches_done"] / total)) + 1
    assert f"batch {snap['batches_done']}/{total}" in panel.progress.text()
    assert "left" in panel.stage.text()
    path = ctx.store.path
    win.close()
    ctx.close()
    db = sqlite3.connect(path)
    try:
        (status,) = db.execute("SELECT status FROM rounds ORDER BY id DESC LIMIT 1").fetchone()
        (n,) = db.execute("SELECT count(*) FROM round_batches").fetchone()
    finally:
        db.close()
    assert status == "cancelled" and n >= 1  # stopped, and the batches done are kept
