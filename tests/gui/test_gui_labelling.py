"""Labelling workflow end to end against the virtual bench: stream from the emulated board, record a
fixed-length segment, select a region by dragging, label it with a number key, undo/redo with the
keyboard — and check every step in SQLite through a second connection.  Then, offscreen without devices (the
recordings written directly), the defects of a new user's walkthrough (issue 12): "New dataset…", dragging
inside a label, shortcut focus, the windowing preview's rate and the recordings list's label count."""

from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest
from pyqtgraph import Point
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication, QInputDialog

pytestmark = pytest.mark.gui


def _finished(qtbot, task):
    """What an export task on the panel's task runner gave: (rows or windows written, error message)."""
    qtbot.waitUntil(lambda: task.finished, timeout=30_000)
    return task.result, task.error


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
    n, _ = _finished(qtbot, panel.export_npz(str(tmp_path / "w.npz")))
    d = np.load(tmp_path / "w.npz")
    assert n == len(d["y"]) > 500 and d["X"].shape[1:] == (panel.win_size.value(), 3)
    win.close()
    ctx.close()


@pytest.fixture()
def offline_window(qtbot, tmp_path):
    """The main window without devices (the recordings are written directly)."""
    from app.core.context import AppContext
    from app.ui.app import build_window

    ctx = AppContext.create(tmp_path, bench=False, discover=False)
    w = build_window(ctx)
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=3000)
    yield w
    w.close()
    ctx.close()


def add_recording(ctx, seconds=20.0, rate=52.0, labels=((5.0, 15.0, "Walking"),), name="rec"):
    from app.core.recording import write_accel

    t = np.arange(int(seconds * rate)) / rate
    xyz = np.stack([np.sin(2 * np.pi * 2 * t), np.cos(2 * np.pi * 1 * t), 9.8 + 0 * t], axis=1).astype(np.float32)
    rec = write_accel(ctx.store, name, xyz, rate, ctx.dataset.id)
    for a, b, lab in labels:
        ctx.store.add_label(rec.id, a, b, lab)
    ctx.publish("recording_added", recording=rec)
    return rec


def _labels(ctx, rec_id):
    return [(round(l.start_s, 3), round(l.end_s, 3), l.label) for l in ctx.store.labels(rec_id)]


def _send(widget, kind, pos, button, buttons, mods):
    if kind == QEvent.MouseMove:
        time.sleep(0.015)  # pyqtgraph drops mouse moves closer than 10 ms apart (its mouseRateLimit)
    ev = QMouseEvent(kind, QPointF(pos), widget.mapToGlobal(QPointF(pos)), button, buttons, mods)
    QApplication.sendEvent(widget, ev)


def drag(panel, x0: float, x1: float, mods=Qt.NoModifier) -> None:
    """A real mouse drag on the plot from time ``x0`` to ``x1`` (s): hover there first, as a hand does, so
    pyqtgraph's hover-claimed drag items get their chance, then press, move in steps and release."""
    vb = panel.plot.vb_select
    vp = panel.plot.viewport()

    def px(x):
        return panel.plot.mapFromScene(vb.mapViewToScene(Point(x, 0))).x()

    y = panel.plot.height() // 2
    a, b = px(x0), px(x1)
    for k in (-6, -3, 0):
        _send(vp, QEvent.MouseMove, QPoint(a + k, y), Qt.NoButton, Qt.NoButton, mods)
    _send(vp, QEvent.MouseButtonPress, QPoint(a, y), Qt.LeftButton, Qt.LeftButton, mods)
    for k in range(1, 13):
        _send(vp, QEvent.MouseMove, QPoint(a + (b - a) * k // 12, y), Qt.NoButton, Qt.LeftButton, mods)
    _send(vp, QEvent.MouseButtonRelease, QPoint(b, y), Qt.LeftButton, Qt.NoButton, mods)
    QApplication.processEvents()


# --- item 3: "New dataset…" -------------------------------------------------------------------------------
def test_new_dataset_button_creates_and_selects_the_dataset(offline_window, qtbot, monkeypatch):
    panel = offline_window.show_panel("labelling")
    answers = iter([("Mine", True), ("Walking, Sitting", True)])
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: next(answers)))
    warnings = []
    monkeypatch.setattr("app.ui.panels.labelling.QMessageBox.warning", lambda *a: warnings.append(a[-1]))
    qtbot.mouseClick(panel.btn_new_ds, Qt.LeftButton)
    assert not warnings, warnings  # was: 'bool' object has no attribute 'strip'
    assert offline_window.ctx.dataset.name == "Mine" and offline_window.ctx.dataset.classes == ("Walking", "Sitting")
    assert panel.dataset_combo.currentText() == "Mine"


# --- item 5: dragging inside a label selects; Shift moves it without shortening -------------------------------
def test_drag_inside_a_label_selects_and_shift_drag_moves_it_whole(offline_window, qtbot):
    ctx = offline_window.ctx
    panel = offline_window.show_panel("labelling")
    rec = add_recording(ctx)  # 20 s, Walking on [5, 15]
    qtbot.waitUntil(lambda: panel.recording is not None and panel.recording.id == rec.id, timeout=3000)
    panel.plot.setXRange(0, 20, padding=0)
    panel.tick()
    qtbot.wait(50)

    drag(panel, 7.0, 11.0)  # inside the label, no modifier: a selection, the label stays
    assert panel.selection is not None
    assert panel.selection == pytest.approx((7.0, 11.0), abs=0.15)
    assert _labels(ctx, rec.id) == [(5.0, 15.0, "Walking")]

    drag(panel, 13.0, 20.0, Qt.ShiftModifier)  # Shift: move it 7 s right, past the end of the recording
    (a, b, lab), *rest = [(s, e, l) for s, e, l in _labels(ctx, rec.id)]
    assert not rest and lab == "Walking"
    assert b - a == pytest.approx(10.0, abs=1e-6)  # kept its length (was cut to 5 s)
    assert b == pytest.approx(20.0, abs=1e-6)  # stopped at the end
    assert panel.model.undo_text.startswith("Move Walking") and "shortened" not in panel.model.undo_text
    qtbot.keyClick(panel.plot, Qt.Key_Z, Qt.ControlModifier)
    assert _labels(ctx, rec.id) == [(5.0, 15.0, "Walking")]


def test_a_shortening_edit_says_so_in_the_undo_text_and_status(offline_window, qtbot):
    ctx = offline_window.ctx
    panel = offline_window.show_panel("labelling")
    rec = add_recording(ctx, labels=((2.0, 8.0, "Walking"), (8.0, 12.0, "Sitting")))
    qtbot.waitUntil(lambda: panel.recording is not None and panel.recording.id == rec.id, timeout=3000)
    panel.tick()
    said = []
    ctx.subscribe("status", lambda text, timeout_ms=5000: said.append(text))
    lid = next(l.id for l in panel.model.labels if l.label == "Walking")
    panel._regions[lid].setRegion((2.0, 10.0))  # its right edge dragged into Sitting  # noqa: SLF001
    panel._region_moved(lid, panel._regions[lid])  # noqa: SLF001 - what sigRegionChangeFinished calls
    assert _labels(ctx, rec.id) == [(2.0, 10.0, "Walking"), (10.0, 12.0, "Sitting")]
    assert "trimming 1 other label(s)" in panel.model.undo_text
    sit = next(l.id for l in panel.model.labels if l.label == "Sitting")
    panel._regions[sit].setRegion((11.0, 12.0))  # noqa: SLF001
    panel._region_moved(sit, panel._regions[sit])  # noqa: SLF001
    assert "shortened by 1.00 s" in panel.model.undo_text
    assert any("shortened by 1.00 s" in t and "Ctrl+Z" in t for t in said), said


# --- item 6: shortcuts wherever the focus is, except in a text field being typed in ----------------------------
def test_labelling_keys_work_after_using_a_combo_box_but_not_while_typing_a_name(offline_window, qtbot):
    ctx = offline_window.ctx
    devices = offline_window.show_panel("devices")
    devices.btn_rescan.setFocus(Qt.TabFocusReason)  # the focus in the page being left
    qtbot.keyClick(devices.btn_rescan, Qt.Key_3, Qt.ControlModifier)  # Ctrl+3: Labelling
    panel = offline_window.panels["labelling"]
    assert offline_window.current_panel() is panel
    # opening the panel does not put the focus into the editable User box: R does not type "engineerr"
    assert QApplication.focusWidget() is not panel.user_combo.lineEdit()
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_R)
    assert panel.user_combo.currentText() == "engineer"
    rec = add_recording(ctx, labels=())
    qtbot.waitUntil(lambda: panel.recording is not None and panel.recording.id == rec.id, timeout=3000)
    # after using a combo box (focus stays on it) the number keys still label
    panel.set_selection(1.0, 3.0)
    panel.class_combo.setFocus(Qt.MouseFocusReason)
    qtbot.keyClick(panel.class_combo, Qt.Key_2)
    assert _labels(ctx, rec.id) == [(1.0, 3.0, "Jogging")]
    # ... and from the sidebar
    offline_window.sidebar.setFocus(Qt.MouseFocusReason)
    qtbot.keyClick(offline_window.sidebar, Qt.Key_Z, Qt.ControlModifier)
    assert _labels(ctx, rec.id) == []
    # typing in the User box the user clicked into types, nothing is labelled or recorded
    panel.set_selection(4.0, 6.0)
    edit = panel.user_combo.lineEdit()
    edit.setFocus(Qt.MouseFocusReason)
    edit.selectAll()
    qtbot.keyClicks(edit, "r2")
    assert edit.text() == "r2" and _labels(ctx, rec.id) == [] and panel.recorder is None
    qtbot.keyClick(edit, Qt.Key_Return)  # the new profile; the keys label again
    assert ctx.user.name == "r2" and QApplication.focusWidget() is panel.plot


def test_power_marker_key_works_without_clicking_the_plot(offline_window, qtbot):
    panel = offline_window.show_panel("power")
    panel.rate.setFocus(Qt.MouseFocusReason)  # the user just picked a rate
    qtbot.keyClick(panel.rate, Qt.Key_M)
    assert [m.name for m in panel.markers] == ["M1"]
    panel.table.selectRow(0)
    panel.show_what.setFocus(Qt.MouseFocusReason)
    qtbot.keyClick(panel.show_what, Qt.Key_Delete)  # Delete is a shortcut of the hidden Labelling panel too
    assert panel.markers == []


# --- item 12: windowing preview at the model's rate; list count after a delete ---------------------------------
def _walk_sit_at_52hz(window, qtbot):
    """The Labelling panel showing a 60 s recording at 52 Hz (30 s Walking, 30 s Sitting), windows of 20."""
    ctx = window.ctx
    panel = window.show_panel("labelling")
    rec = add_recording(ctx, seconds=60.0, rate=52.0, labels=((0.0, 30.0, "Walking"), (30.0, 60.0, "Sitting")))
    qtbot.waitUntil(lambda: panel.recording is not None and panel.recording.id == rec.id, timeout=3000)
    panel.win_size.setValue(20)
    panel.win_stride.setValue(20)
    return ctx, panel


def test_windowing_preview_counts_at_the_models_rate_and_shows_what_training_gets(offline_window, qtbot):
    from app.core.rounds import local_windows

    ctx, panel = _walk_sit_at_52hz(offline_window, qtbot)
    panel.tick()
    # 2 x 30 s at the model's 20 Hz = 2 x 30 windows of 20 samples (at the sensor's 52 Hz it said 2 x 78)
    assert panel.win_info.text().startswith("60 window(s) of 20 samples (1.00 s at the model's 20 Hz")
    assert len(panel.win_ticks.getData()[0]) == 2 * 60
    assert panel.balance_totals["Walking"] == panel.balance_totals["Sitting"] == 30
    data = local_windows(ctx.store, ctx.dataset.id, ("walking", "jogging", "stairs", "sitting", "standing"), 20, 20.0)
    want = (len(data.train_y), len(data.test_y))
    qtbot.waitUntil(lambda: panel.training_windows == want, timeout=5000)  # counted on the task runner
    assert f"trains on <b>{len(data.train_y)}</b>" in panel.train_info.text()


def test_windowing_preview_follows_the_model_chosen_for_rounds(offline_window, qtbot, tmp_path):
    """The Training panel's imported model (26 Hz, T = 24, its own classes) is the one a round would use: the
    preview and the training-window count follow it, and go back to the general model with it."""
    from app.core.models import LoadedModel, export_npz
    from app.core.rounds import local_windows
    from device.engine.weights import glorot_init
    from estimator.arch import paper_cnn

    ctx, panel = _walk_sit_at_52hz(offline_window, qtbot)
    arch = paper_cnn(24, 2, ("moving", "stationary"))
    path = export_npz(
        LoadedModel(arch, glorot_init(arch, 0), ("moving", "stationary"), meta={"rate_hz": 26.0}), tmp_path / "m.npz"
    )
    training = offline_window.panels["training"]
    training.import_model(str(path))
    qtbot.waitUntil(lambda: training.model.currentData() is not None, timeout=10_000)
    panel.tick()
    # 2 x 30 s at 26 Hz = 2 x 39 windows of 20 samples (the input size box still sets the preview's windows)
    assert panel.win_info.text().startswith("78 window(s) of 20 samples (0.77 s at the model's 26 Hz"), (
        panel.win_info.text()
    )
    assert panel.balance_totals["Walking"] == panel.balance_totals["Sitting"] == 39
    # a round trains the imported model's classes ("stationary" gathers sitting) at its T = 24 and 26 Hz
    data = local_windows(ctx.store, ctx.dataset.id, ("moving", "stationary"), 24, 26.0)
    assert len(data.train_y) and set(data.train_y.tolist()) == {1}  # only Sitting maps (walking is not "moving")
    want = (len(data.train_y), len(data.test_y))
    qtbot.waitUntil(lambda: panel.training_windows == want, timeout=5000)
    assert "A round at T=24 (m.npz, 26 Hz) trains on" in panel.train_info.text(), panel.train_info.text()
    assert "26 Hz" in panel.win_size.toolTip()
    # back to the general model
    training.model.setCurrentIndex(training.model.findData(None))
    general = local_windows(
        ctx.store, ctx.dataset.id, ("walking", "jogging", "stairs", "sitting", "standing"), 20, 20.0
    )
    qtbot.waitUntil(lambda: panel.training_windows == (len(general.train_y), len(general.test_y)), timeout=5000)
    assert "A round at T=20 (general model, 20 Hz)" in panel.train_info.text()


def test_recordings_list_counts_labels_after_a_delete_and_an_undo(offline_window, qtbot):
    ctx = offline_window.ctx
    panel = offline_window.show_panel("labelling")
    rec = add_recording(ctx, labels=((1.0, 3.0, "Walking"), (5.0, 7.0, "Sitting")))
    qtbot.waitUntil(lambda: panel.recording is not None and panel.recording.id == rec.id, timeout=3000)
    item = panel.rec_list.currentItem()
    assert item.text().endswith("2 label(s)")
    panel.selected_label = panel.model.labels[0].id
    panel.handle_key(Qt.Key_Delete, Qt.NoModifier)
    assert panel.rec_list.currentItem().text().endswith("1 label(s)")
    panel.handle_key(Qt.Key_Z, Qt.ControlModifier)
    assert panel.rec_list.currentItem().text().endswith("2 label(s)")


# --- exports: whole or not at all, and a sentence when they cannot be written ---------------------------
def test_exports_say_why_nothing_was_written(offline_window, qtbot, tmp_path):
    """No labels yet, a folder that is gone: each export (a task off the GUI thread) writes nothing and says
    why in the status bar (no "Unexpected error"); a file from before stays as it was. Then both write what
    is labelled."""
    ctx = offline_window.ctx
    panel = offline_window.show_panel("labelling")
    statuses: list[str] = []
    ctx.subscribe("status", lambda text, **_: statuses.append(text))
    old = tmp_path / "old.txt"
    old.write_text("an older export\n")
    no_labels = f"Export failed, nothing was written: no recording of dataset {ctx.dataset.name!r} has labels yet"
    assert _finished(qtbot, panel.export_csv(str(old)))[0] is None and statuses[-1] == no_labels
    assert _finished(qtbot, panel.export_npz(str(tmp_path / "w.npz")))[0] is None and statuses[-1] == no_labels
    assert old.read_text() == "an older export\n" and not (tmp_path / "w.npz").exists()

    add_recording(ctx, labels=((5.0, 15.0, "Walking"),))
    gone = tmp_path / "gone" / "me.txt"
    for out in (gone, gone.with_suffix(".npz")):
        task = panel.export_csv(str(out)) if out.suffix == ".txt" else panel.export_npz(str(out))
        why = f"cannot write {out}: the folder {gone.parent} does not exist"  # the file named (was the errno's text)
        assert _finished(qtbot, task) == (None, why)
        assert statuses[-1] == f"Export failed, nothing was written: {why}"
    assert not any("Unexpected error" in s for s in statuses)

    assert _finished(qtbot, panel.export_csv(str(old))) == (520, None)  # 10 s at 52 Hz
    assert statuses[-1] == f"Exported 520 labelled samples to {old}"
    n, _ = _finished(qtbot, panel.export_npz(str(tmp_path / "w.npz")))
    assert (
        n == len(np.load(tmp_path / "w.npz")["y"]) > 0
        and statuses[-1] == f"Exported {n} windows to {tmp_path / 'w.npz'}"
    )
    assert "older" not in old.read_text()


def test_a_cancelled_export_writes_nothing(offline_window, qtbot, tmp_path, monkeypatch):
    """Cancelling an export (the task bar's Cancel) while it reads the recordings leaves no file and keeps the
    one from before; the status bar says it was cancelled, not that it failed."""
    import app.ui.panels.labelling as panel_module
    from app.core.labels import labelled_parts

    ctx = offline_window.ctx
    panel = offline_window.show_panel("labelling")
    statuses: list[str] = []
    ctx.subscribe("status", lambda text, **_: statuses.append(text))
    add_recording(ctx, labels=((5.0, 15.0, "Walking"),))
    old = tmp_path / "old.txt"
    old.write_text("an older export\n")

    def cancel_first(store, did, name, check=None):  # the user presses Cancel as the export starts
        panel.tasks.cancel_all()
        return labelled_parts(store, did, name, check=check)

    monkeypatch.setattr(panel_module, "labelled_parts", cancel_first)
    assert _finished(qtbot, panel.export_csv(str(old))) == (None, "cancelled")
    assert old.read_text() == "an older export\n"
    assert statuses[-1] == f"Export cancelled, nothing was written to {old}"
