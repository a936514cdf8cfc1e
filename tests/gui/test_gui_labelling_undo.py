"""The Labelling panel's undo history: kept per recording for the session (like an editor's per-document undo)
while other recordings are shown, the automatic label of a new segment its first step, dropped when the
recording is deleted or the user/dataset changes, and never applied to labels changed by another path.
Offscreen, without devices: the recordings are written directly, the live stream is fed by the test."""

from __future__ import annotations

import numpy as np
import pytest
import pytestqt  # noqa: F401 - required (test extra): a broken install fails, never skips
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.core.store import StoreError
from tests.gui.test_gui_labelling import add_recording, offline_window  # noqa: F401 - the fixture
from tests.gui.test_gui_labelling_first_hour import _live
from tests.gui.test_gui_user_mistakes_2 import said  # noqa: F401 - the fixture

pytestmark = pytest.mark.gui

CTRL, SHIFT = Qt.ControlModifier, Qt.ShiftModifier
CHANGED = (
    "the labels of 'A' were changed outside the Labelling panel: they are shown as they are now, and the edits "
    "made on them before can no longer be undone"
)


def _db(ctx, rec_id):
    return [(round(l.start_s, 3), round(l.end_s, 3), l.label) for l in ctx.store.labels(rec_id)]


def _show(panel, qtbot, rec) -> None:
    """A click on ``rec`` in the recordings list."""
    row = next(i for i in range(panel.rec_list.count()) if panel.rec_list.item(i).data(Qt.UserRole) == rec.id)
    panel.rec_list.setCurrentRow(row)
    assert panel.recording is not None and panel.recording.id == rec.id
    qtbot.waitUntil(lambda: not panel._dirty, timeout=3000)  # noqa: SLF001 - the frame clock updated the buttons


def _buttons(panel):
    """(Undo enabled, its tooltip, Redo enabled, its tooltip), as the toolbar shows them."""
    return (
        panel.btn_undo.isEnabled(),
        panel.btn_undo.toolTip(),
        panel.btn_redo.isEnabled(),
        panel.btn_redo.toolTip(),
    )


def _entry(panel, rec) -> str:
    return next(
        panel.rec_list.item(i).text()
        for i in range(panel.rec_list.count())
        if panel.rec_list.item(i).data(Qt.UserRole) == rec.id
    )


NOTHING = (False, "Undo (Ctrl+Z): nothing to undo", False, "Redo (Ctrl+Shift+Z): nothing to redo")


def test_each_recordings_undo_history_is_kept_while_another_is_shown(offline_window, said, qtbot):  # noqa: F811
    """Was: showing another recording and coming back started an empty undo stack: Ctrl+Z did nothing and the
    edits made before could no longer be undone."""
    ctx, (texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    a = add_recording(ctx, name="A")
    b = add_recording(ctx, name="B", labels=((2.0, 4.0, "Jogging"),))
    _show(panel, qtbot, a)
    panel.set_selection(1.0, 3.0)
    panel.handle_key(Qt.Key_5, Qt.NoModifier)  # Sitting
    panel._click(10.0)  # noqa: SLF001 - a click on the Walking label
    panel.handle_key(Qt.Key_Delete, Qt.NoModifier)
    assert _db(ctx, a.id) == [(1.0, 3.0, "Sitting")]
    _show(panel, qtbot, b)
    assert _buttons(panel) == NOTHING
    panel.handle_key(Qt.Key_Z, CTRL)  # B has nothing to undo: A is not touched either
    assert _db(ctx, b.id) == [(2.0, 4.0, "Jogging")] and _db(ctx, a.id) == [(1.0, 3.0, "Sitting")]
    _show(panel, qtbot, a)
    assert _buttons(panel) == (
        True,
        "Undo: Delete Walking 5.00-15.00 s (Ctrl+Z)",
        False,
        "Redo (Ctrl+Shift+Z): nothing to redo",
    )
    panel.handle_key(Qt.Key_Z, CTRL)
    assert texts[-1] == "Undone"
    assert _db(ctx, a.id) == [(1.0, 3.0, "Sitting"), (5.0, 15.0, "Walking")]
    assert _entry(panel, a) == "A  ·  20.0 s  ·  2 label(s)"
    panel.handle_key(Qt.Key_Z, CTRL)
    assert _db(ctx, a.id) == [(5.0, 15.0, "Walking")] and _entry(panel, a) == "A  ·  20.0 s  ·  1 label(s)"
    _show(panel, qtbot, b)
    _show(panel, qtbot, a)  # the redo steps are kept too
    assert _buttons(panel) == (
        False,
        "Undo (Ctrl+Z): nothing to undo",
        True,
        "Redo: Label Sitting 1.00-3.00 s (Ctrl+Shift+Z)",
    )
    panel.handle_key(Qt.Key_Z, CTRL | SHIFT)
    assert texts[-1] == "Redone"
    assert _db(ctx, a.id) == [(1.0, 3.0, "Sitting"), (5.0, 15.0, "Walking")]
    assert _entry(panel, a) == "A  ·  20.0 s  ·  2 label(s)" and _db(ctx, b.id) == [(2.0, 4.0, "Jogging")]
    assert not escaped


def test_the_automatic_label_of_a_new_segment_is_its_first_undo_step(offline_window, said, qtbot, monkeypatch):  # noqa: F811
    """Was: with "Label segment" checked, the label given at the stop was written by a throw-away model: Ctrl+Z
    right after did not remove it.  Ctrl+Z while another segment is being recorded is still refused, and the
    first segment's history is still there after that one."""
    ctx, (texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    assert panel.auto_label.isChecked() and panel.class_combo.currentData() == "Walking"
    stream = _live(ctx, monkeypatch, 1.0)

    def record():
        assert panel.start_recording(None)
        stream.append(np.ones((104, 3), np.float32))
        qtbot.waitUntil(lambda: panel.recorder.duration >= 2.0, timeout=5000)
        return panel.stop_recording()

    row = record()
    assert row is not None and panel.recording is not None and panel.recording.id == row.id
    qtbot.waitUntil(lambda: not panel._dirty, timeout=3000)  # noqa: SLF001
    end = f"{row.duration:.2f}"
    assert _buttons(panel) == (
        True,
        f"Undo: Label Walking 0.00-{end} s (Ctrl+Z)",
        False,
        "Redo (Ctrl+Shift+Z): nothing to redo",
    )
    assert _db(ctx, row.id) == [(0.0, round(row.duration, 3), "Walking")]
    panel.handle_key(Qt.Key_Z, CTRL)
    assert texts[-1] == "Undone" and _db(ctx, row.id) == []
    assert _entry(panel, row) == f"{row.name}  ·  {row.duration:.1f} s  ·  0 label(s)"
    panel.handle_key(Qt.Key_Z, CTRL | SHIFT)
    assert texts[-1] == "Redone" and _db(ctx, row.id) == [(0.0, round(row.duration, 3), "Walking")]
    assert _entry(panel, row) == f"{row.name}  ·  {row.duration:.1f} s  ·  1 label(s)"

    assert panel.start_recording(None)  # Ctrl+Z while recording: refused, nothing undone anywhere
    name = panel.recorder.rec.name
    panel.handle_key(Qt.Key_Z, CTRL)
    assert texts[-1] == f"{name!r} is being recorded: stop it first (R or ■ Stop), then undo"
    assert _db(ctx, row.id) == [(0.0, round(row.duration, 3), "Walking")]
    stream.append(np.ones((104, 3), np.float32))
    qtbot.waitUntil(lambda: panel.recorder.duration >= 2.0, timeout=5000)
    second = panel.stop_recording()
    assert second is not None and panel.recording.id == second.id
    panel.handle_key(Qt.Key_Z, CTRL)  # the second segment's own first step
    assert _db(ctx, second.id) == [] and _db(ctx, row.id) == [(0.0, round(row.duration, 3), "Walking")]
    _show(panel, qtbot, row)
    assert _buttons(panel)[:2] == (True, f"Undo: Label Walking 0.00-{end} s (Ctrl+Z)")
    panel.handle_key(Qt.Key_Z, CTRL)
    assert _db(ctx, row.id) == [] and not escaped


def test_a_deleted_recordings_history_goes_with_it_and_its_id_given_again_starts_empty(
    offline_window,  # noqa: F811
    said,  # noqa: F811
    qtbot,
    monkeypatch,
):
    """A recording's id is given again after it is deleted (SQLite reuses the highest rowid): the new recording
    must not inherit the deleted one's undo steps, whichever path deleted it."""
    ctx, (texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    a = add_recording(ctx, name="A")
    b = add_recording(ctx, name="B", labels=())
    panel.set_selection(1.0, 3.0)
    panel.handle_key(Qt.Key_2, Qt.NoModifier)  # Jogging on B
    assert panel.model.can_undo
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)
    panel.delete_recording()
    assert b.id not in panel._models  # noqa: SLF001 - its history went with it
    c = add_recording(ctx, name="C", labels=((6.0, 8.0, "Sitting"),))
    assert c.id == b.id  # (the id is given again)
    qtbot.waitUntil(lambda: panel.recording is not None and panel.recording.id == c.id, timeout=3000)
    qtbot.waitUntil(lambda: not panel._dirty, timeout=3000)  # noqa: SLF001
    assert _buttons(panel) == NOTHING
    panel.handle_key(Qt.Key_Z, CTRL)
    assert _db(ctx, c.id) == [(6.0, 8.0, "Sitting")]

    # deleted by another path (not this panel) while another recording is shown: the new recording with its id
    # is not taken for the old one (no "changed outside" either: it is another recording)
    panel.set_selection(10.0, 12.0)
    panel.handle_key(Qt.Key_3, Qt.NoModifier)  # Upstairs on C
    _show(panel, qtbot, a)
    ctx.store.delete_recording(c.id)
    n = len(texts)
    d = add_recording(ctx, name="D", labels=((6.0, 8.0, "Sitting"), (10.0, 12.0, "Upstairs")))
    assert d.id == c.id
    qtbot.waitUntil(lambda: panel.recording is not None and panel.recording.id == d.id, timeout=3000)
    qtbot.waitUntil(lambda: not panel._dirty, timeout=3000)  # noqa: SLF001
    assert _buttons(panel) == NOTHING and not [t for t in texts[n:] if "changed outside" in t]
    assert not escaped


def test_labels_changed_by_another_path_drop_the_history_and_no_undo_is_applied_to_them(
    offline_window,  # noqa: F811
    said,  # noqa: F811
    qtbot,
):
    """A kept history whose labels were changed outside the panel (another connection to the store): shown
    again, the labels are read as they are and the history is dropped, said once; pressed Ctrl+Z on the shown
    recording after such a change, nothing is undone (the step refers to a label no longer there)."""
    ctx, (texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    a = add_recording(ctx, name="A")
    b = add_recording(ctx, name="B")
    _show(panel, qtbot, a)
    panel.set_selection(1.0, 3.0)
    panel.handle_key(Qt.Key_5, Qt.NoModifier)
    _show(panel, qtbot, b)
    jog = ctx.store.add_label(a.id, 16.0, 18.0, "Jogging")  # another path
    _show(panel, qtbot, a)
    assert texts[-1] == CHANGED[0].upper() + CHANGED[1:]
    assert [(l.start, l.end, l.label) for l in panel.model.labels] == [
        (1.0, 3.0, "Sitting"),
        (5.0, 15.0, "Walking"),
        (16.0, 18.0, "Jogging"),
    ]
    assert sorted(panel._regions) == sorted(l.id for l in panel.model.labels)  # noqa: SLF001 - all drawn
    assert _buttons(panel) == NOTHING and _entry(panel, a) == "A  ·  20.0 s  ·  3 label(s)"
    panel.handle_key(Qt.Key_Z, CTRL)
    assert _db(ctx, a.id) == [(1.0, 3.0, "Sitting"), (5.0, 15.0, "Walking"), (16.0, 18.0, "Jogging")]

    panel.set_selection(19.0, 20.0)
    panel.handle_key(Qt.Key_2, Qt.NoModifier)  # an edit, then the label it would restore is changed elsewhere
    ctx.store.update_label(jog, 16.0, 18.5, "Jogging")
    panel.handle_key(Qt.Key_Z, CTRL)
    assert texts[-1] == f"Nothing was undone: {CHANGED}"
    assert _db(ctx, a.id) == [
        (1.0, 3.0, "Sitting"),
        (5.0, 15.0, "Walking"),
        (16.0, 18.5, "Jogging"),
        (19.0, 20.0, "Jogging"),
    ]
    assert [(l.start, l.end) for l in panel.model.labels] == [(1, 3), (5, 15), (16, 18.5), (19, 20)]
    qtbot.waitUntil(lambda: not panel._dirty, timeout=3000)  # noqa: SLF001
    assert _buttons(panel) == NOTHING and not escaped


def test_another_user_or_dataset_drops_the_histories(offline_window, said, qtbot):  # noqa: F811
    ctx, (_texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    first = ctx.dataset.id
    a = add_recording(ctx, name="A")
    panel.set_selection(1.0, 3.0)
    panel.handle_key(Qt.Key_5, Qt.NoModifier)
    other = ctx.store.create_dataset(ctx.user.id, "other", ("Walking", "Sitting"))
    ctx.set_dataset(other.id)
    assert panel.recording is None
    ctx.set_dataset(first)
    assert panel.recording is not None and panel.recording.id == a.id
    qtbot.waitUntil(lambda: not panel._dirty, timeout=3000)  # noqa: SLF001
    assert _buttons(panel) == NOTHING
    panel.handle_key(Qt.Key_Z, CTRL)
    assert _db(ctx, a.id) == [(1.0, 3.0, "Sitting"), (5.0, 15.0, "Walking")] and not escaped


def test_the_panel_keeps_the_histories_of_the_most_recently_shown_recordings(offline_window, qtbot, monkeypatch):  # noqa: F811
    """At most KEPT_HISTORIES histories besides the recording shown; browsing recordings without editing them
    takes no place."""
    from app.ui.panels import labelling

    monkeypatch.setattr(labelling, "KEPT_HISTORIES", 2)
    ctx = offline_window.ctx
    panel = offline_window.show_panel("labelling")
    recs = [add_recording(ctx, name=f"R{k}", labels=()) for k in range(5)]

    def edit(rec):
        _show(panel, qtbot, rec)
        panel.set_selection(1.0, 2.0)
        panel.handle_key(Qt.Key_1, Qt.NoModifier)

    edit(recs[0])
    edit(recs[1])
    for rec in (recs[2], recs[3], recs[4], recs[2]):  # browsed
        _show(panel, qtbot, rec)
    assert list(panel._models) == [recs[0].id, recs[1].id, recs[2].id]  # noqa: SLF001
    edit(recs[2])
    _show(panel, qtbot, recs[3])  # three histories besides the one shown: the oldest goes
    assert list(panel._models) == [recs[1].id, recs[2].id, recs[3].id]  # noqa: SLF001
    for rec, kept in ((recs[0], False), (recs[1], True), (recs[2], True)):
        _show(panel, qtbot, rec)
        assert panel.btn_undo.isEnabled() is kept


def test_an_undo_the_store_cannot_take_is_said_and_stays_on_the_stack(
    offline_window,  # noqa: F811
    said,  # noqa: F811
    qtbot,
    monkeypatch,
):
    """Was: a LabelError into Qt ("Unexpected error") and the step lost: the label could no longer be undone."""
    ctx, (texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    a = add_recording(ctx, name="A", labels=())
    panel.set_selection(1.0, 3.0)
    panel.handle_key(Qt.Key_1, Qt.NoModifier)
    real = ctx.store.delete_label

    def full(*_a, **_k):
        raise StoreError("database or disk is full")

    monkeypatch.setattr(ctx.store, "delete_label", full)
    panel.handle_key(Qt.Key_Z, CTRL)
    assert texts[-1] == "Nothing was undone: the label change was not saved: database or disk is full"
    assert _db(ctx, a.id) == [(1.0, 3.0, "Walking")] and panel.model.undo_text == "Label Walking 1.00-3.00 s"
    monkeypatch.setattr(ctx.store, "delete_label", real)
    panel.handle_key(Qt.Key_Z, CTRL)
    assert texts[-1] == "Undone" and _db(ctx, a.id) == [] and not escaped
