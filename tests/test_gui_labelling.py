"""Labelling workflow end to end against the virtual bench: stream from the emulated board, record a
fixed-length segment, select a region by dragging, label it with a number key, undo/redo with the
keyboard — and check every step in SQLite through a second connection."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from pyqtgraph import Point
from PySide6.QtCore import QPoint, Qt

pytestmark = pytest.mark.gui


def _db_labels(ctx, rec_id):
    db = sqlite3.connect(ctx.store.path)  # a separate connection: what a crash would leave on disk
    try:
        return db.execute(
            "SELECT start_s, end_s, label FROM labels WHERE recording_id=? AND deleted=0 ORDER BY start_s", (rec_id,)
        ).fetchall()
    finally:
        db.close()


@pytest.fixture()
def app_window(qtbot, tmp_path):
    from app.core.context import AppContext
    from app.ui.app import build_window

    ctx = AppContext.create(tmp_path, bench=True, bench_kwargs={"time_scale": 1.0})
    assert ctx.devices.bench.board is not None, "the virtual bench has no NUCLEO emulator"
    win = build_window(ctx)
    qtbot.addWidget(win)
    win.resize(1300, 800)
    win.show()
    yield win
    win.close()
    ctx.close()


def test_record_label_with_hotkeys_and_undo(app_window, qtbot):
    win, ctx = app_window, app_window.ctx
    from app.core.devices import DeviceState

    live = win.show_panel("live_accel")
    qtbot.mouseClick(live.btn_stream, Qt.LeftButton)
    qtbot.waitUntil(
        lambda: ctx.devices.accel_stream is not None and ctx.devices.accel_stream.n_total > 20, timeout=10_000
    )
    assert ctx.devices.first("board").state == DeviceState.STREAMING
    qtbot.waitUntil(lambda: live.plot.frames > 0, timeout=3000)

    panel = win.show_panel("labelling")
    panel.class_combo.setCurrentIndex(0)  # Walking
    panel.fixed_len.setValue(1.5)
    qtbot.mouseClick(panel.btn_fixed, Qt.LeftButton)
    assert panel.recorder is not None
    qtbot.waitUntil(lambda: panel.recorder is None, timeout=10_000)
    rec = panel.recording
    assert rec is not None and rec.n_samples == round(1.5 * 52)
    assert _db_labels(ctx, rec.id) == [(0.0, pytest.approx(1.5), "Walking")]  # the segment's own label

    # drag on the plot to select ~[0.4, 0.9] s of the segment
    qtbot.waitUntil(lambda: panel.plot.frames > 0, timeout=3000)
    vb = panel.plot.vb_select
    panel.plot.setXRange(0, 1.5, padding=0)
    qtbot.wait(50)

    def view_to_widget(x):
        scene = vb.mapViewToScene(Point(x, 0))
        return panel.plot.mapFromScene(scene)

    a, b = view_to_widget(0.4), view_to_widget(0.9)
    y = panel.plot.height() // 2
    vp = panel.plot.viewport()
    qtbot.mousePress(vp, Qt.LeftButton, pos=QPoint(a.x(), y))
    for k in range(1, 11):
        qtbot.mouseMove(vp, QPoint(a.x() + (b.x() - a.x()) * k // 10, y))
    qtbot.mouseRelease(vp, Qt.LeftButton, pos=QPoint(b.x(), y))
    assert panel.selection is not None
    s0, s1 = panel.selection
    assert s0 == pytest.approx(0.4, abs=0.03) and s1 == pytest.approx(0.9, abs=0.03)

    panel.plot.setFocus()
    qtbot.keyClick(panel.plot, Qt.Key_2)  # 2 = Jogging
    rows = _db_labels(ctx, rec.id)
    assert [r[2] for r in rows] == ["Walking", "Jogging", "Walking"]
    assert rows[1][0] == pytest.approx(s0) and rows[1][1] == pytest.approx(s1)

    qtbot.keyClick(panel.plot, Qt.Key_Z, Qt.ControlModifier)  # undo
    assert _db_labels(ctx, rec.id) == [(0.0, pytest.approx(1.5), "Walking")]
    qtbot.keyClick(panel.plot, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)  # redo
    assert [r[2] for r in _db_labels(ctx, rec.id)] == ["Walking", "Jogging", "Walking"]

    # select the jogging label by clicking it, delete it, undo the delete
    qtbot.mouseClick(vp, Qt.LeftButton, pos=QPoint(view_to_widget(0.65).x(), y))
    assert panel.selected_label is not None
    qtbot.keyClick(panel.plot, Qt.Key_Delete)
    assert [r[2] for r in _db_labels(ctx, rec.id)] == ["Walking", "Walking"]
    qtbot.keyClick(panel.plot, Qt.Key_Z, Qt.ControlModifier)
    assert [r[2] for r in _db_labels(ctx, rec.id)] == ["Walking", "Jogging", "Walking"]

    # windowing preview and balance follow the labels
    panel.win_size.setValue(10)  # samples at the model's 20 Hz: the 0.6 s labels hold one window each
    qtbot.wait(100)
    assert "window" in panel.win_info.text()
    assert panel.balance_totals["Walking"] + panel.balance_totals["Jogging"] >= 1


def test_import_and_export_dataset(qtbot, tmp_path, shared_data):
    from app.core.context import AppContext
    from app.ui.app import build_window

    ctx = AppContext.create(tmp_path / "db", bench=False, discover=False)
    win = build_window(ctx)
    qtbot.addWidget(win)
    win.show()
    panel = win.show_panel("labelling")
    src = shared_data / "wisdm2019_phone_accel" / "raw" / "phone" / "accel" / "data_1600_accel_phone.txt"
    panel.import_wisdm(str(src))
    qtbot.waitUntil(lambda: panel.rec_list.count() == 1, timeout=30_000)
    labels = ctx.store.labels(panel.recording.id)
    assert {l.label for l in labels} == {"Walking", "Jogging", "Upstairs", "Sitting", "Standing"}
    n = panel.export_npz(str(tmp_path / "w.npz"))
    d = np.load(tmp_path / "w.npz")
    assert n == len(d["y"]) > 500 and d["X"].shape[1:] == (panel.win_size.value(), 3)
    win.close()
    ctx.close()
