"""The Labelling panel in a new user's first hour (exploratory session, 2026-12-07): keys pressed while a
segment is being recorded, a Record pressed and released before any sample arrived, a WISDM file imported
twice or in the wrong units, exports to a folder that cannot take the file, odd dataset names and classes.
Each is said in one sentence naming what was wrong; nothing escapes into Qt and no label is changed out of
sight.  Offscreen, without devices: the live stream is a :class:`SampleStream` the test feeds."""

from __future__ import annotations

import numpy as np
import pytest
import pytestqt  # noqa: F401 - required (test extra): a broken install fails, never skips
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from tests.gui.test_gui_labelling import _finished, add_recording, offline_window  # noqa: F401 - the fixture
from tests.gui.test_gui_user_mistakes_2 import said  # noqa: F401 - the fixture

pytestmark = pytest.mark.gui


def _live(ctx, monkeypatch, seconds: float = 0.0):
    from app.core.streams import SampleStream

    stream = SampleStream("accel", 52.0, 3)
    if seconds:
        stream.append(np.zeros((int(52 * seconds), 3), np.float32))
    monkeypatch.setattr(ctx.devices, "accel_stream", stream)
    return stream


def _db_labels(ctx, rec_id):
    return [(round(l.start_s, 3), round(l.end_s, 3), l.label) for l in ctx.store.labels(rec_id)]


# --- keys while a segment is being recorded ---------------------------------------------------------------
def test_while_recording_the_recording_shown_before_is_put_away_and_keys_say_why_they_do_nothing(
    offline_window,  # noqa: F811
    said,  # noqa: F811
    qtbot,
    monkeypatch,
):
    """Was: while recording, the plot showed the live stream but the recording shown before stayed selected in
    the list, its labels drawn over the live signal; Delete, a number key or Ctrl+Z edited that recording out of
    sight (a label clicked before pressing R was deleted by Del)."""
    ctx, (texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    rec = add_recording(ctx, labels=((5.0, 15.0, "Walking"),))
    panel._click(10.0)  # noqa: SLF001 - a click on the label: it is selected
    assert panel.selected_label is not None
    stream = _live(ctx, monkeypatch, 1.0)
    assert panel.start_recording(None)
    name = panel.recorder.rec.name
    qtbot.wait(50)
    assert panel.recording is None and panel._regions == {}  # noqa: SLF001 - nothing of rec drawn
    assert panel.rec_list.currentItem() is None and panel.rec_list.selectedItems() == []
    assert panel.win_info.text() == "Recording: its windows are shown when it stops."
    for key, mods, then in (
        (Qt.Key_Delete, Qt.NoModifier, "delete a label"),
        (Qt.Key_2, Qt.NoModifier, "label it"),
        (Qt.Key_Z, Qt.ControlModifier, "undo"),
        (Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier, "redo"),
    ):
        assert panel.handle_key(key, mods)
        assert texts[-1] == f"{name!r} is being recorded: stop it first (R or ■ Stop), then {then}"
    panel.rec_list.setCurrentRow(0)  # a click on another recording in the list
    assert texts[-1] == f"{name!r} is being recorded: stop it first (R or ■ Stop), then open another recording"
    assert panel.recording is None and panel.rec_list.currentItem() is None
    assert _db_labels(ctx, rec.id) == [(5.0, 15.0, "Walking")]  # untouched
    stream.append(np.ones((104, 3), np.float32))
    qtbot.waitUntil(lambda: panel.recorder.duration > 0, timeout=5000)
    row = panel.stop_recording()
    assert row is not None and panel.recording is not None and panel.recording.id == row.id
    assert panel.rec_list.currentItem().data(Qt.UserRole) == row.id and not escaped


def test_a_record_stopped_before_any_sample_keeps_no_empty_entry_and_shows_the_recordings_again(
    offline_window,  # noqa: F811
    said,  # noqa: F811
    qtbot,
    monkeypatch,
):
    """Was: R pressed twice quickly (no sample yet) said "Nothing recorded" but left an empty "Walking #2 ·
    0.0 s" in the list, its file on disk, the hint still "Recording … press R or Stop to end" and the plot on
    the live stream's time range instead of the recording selected."""
    ctx, (texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    rec = add_recording(ctx)
    _live(ctx, monkeypatch, 1.0)
    assert panel.start_recording(None)
    path = ctx.store.resolve(panel.recorder.rec.path)
    name = panel.recorder.rec.name
    panel.stop_recording()
    assert texts[-1] == f"Nothing recorded: no samples arrived from the board; the empty {name!r} was not kept"
    assert [r.name for r in ctx.store.recordings("accel", ctx.dataset.id)] == ["rec"] and not path.exists()
    assert panel.rec_list.count() == 1 and panel.recording is not None and panel.recording.id == rec.id
    qtbot.wait(100)
    assert panel.hint.text().startswith("Drag to select")
    x0, x1 = panel.plot.visible_range()
    assert x0 < 1.0 and x1 >= 19.9 and not escaped


# --- exports that cannot be written -----------------------------------------------------------------------
def test_an_export_that_cannot_be_written_names_the_file(offline_window, said, qtbot, tmp_path):  # noqa: F811
    """Was: "Export failed, nothing was written: Read-only file system" (or "Is a directory"), naming no file."""
    ctx, (texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    add_recording(ctx)
    folder = tmp_path / "a folder.npz"
    folder.mkdir()
    assert _finished(qtbot, panel.export_npz(str(folder)))[0] is None
    assert texts[-1] == f"Export failed, nothing was written: cannot write {folder}: it is a folder"
    gone = tmp_path / "gone" / "me.txt"
    assert _finished(qtbot, panel.export_csv(str(gone)))[0] is None
    assert texts[-1] == (
        f"Export failed, nothing was written: cannot write {gone}: the folder {gone.parent} does not exist"
    )
    assert not escaped


def test_an_export_on_a_read_only_disk_names_the_file(offline_window, said, qtbot, tmp_path, monkeypatch):  # noqa: F811
    """A read-only disk (or a full one) as the system says it, after the file's name."""
    import errno

    ctx, (texts, _) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    add_recording(ctx)

    def refuse(path, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(path) + ".tmp123")

    monkeypatch.setattr("app.ui.panels.labelling.export_labelled_csv", refuse)
    out = tmp_path / "x.txt"
    assert _finished(qtbot, panel.export_csv(str(out)))[0] is None
    assert texts[-1] == f"Export failed, nothing was written: cannot write {out}: Read-only file system"


# --- New dataset… ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "classes", "why"),
    [
        ("   ", ("Walking",), "No name given: type a name for the dataset"),
        ("mine", ("a", "b", "a"), "The class 'a' is given twice: give each class once"),
        ("mine", ("Walking", "walking"), "The class 'walking' is the same as 'Walking': give each class once"),
        (
            "mine",
            tuple(f"c{i}" for i in range(12)),
            "12 classes given, at most 9: the number keys 1–9 label with them (a 10th class could not be labelled)",
        ),
    ],
)
def test_new_dataset_refuses_an_empty_name_twice_given_or_too_many_classes(
    offline_window,  # noqa: F811
    monkeypatch,
    name,
    classes,
    why,
):
    """Was: an empty name made a dataset called '' (OK in the dialog did nothing, without a word); a class
    given twice gave the store's "dataset 'mine': classes must be non-empty and unique, got ['a', 'b', 'a']";
    'Walking' and 'walking' made two classes; 12 classes made a dataset whose classes 10-12 no key labels."""
    ctx = offline_window.ctx
    panel = offline_window.show_panel("labelling")
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda _p, _t, text, *a, **k: warnings.append(text)))
    before = [d.name for d in ctx.store.datasets(ctx.user.id)]
    panel.new_dataset(name, classes)
    assert warnings == [why]
    assert [d.name for d in ctx.store.datasets(ctx.user.id)] == before and ctx.dataset.name == "default"


def test_a_long_dataset_name_does_not_widen_the_toolbar(offline_window):  # noqa: F811
    """Was: a 300-character dataset name made its box as wide as the window, the toolbar in two rows."""
    ctx = offline_window.ctx
    panel = offline_window.show_panel("labelling")
    row = panel.btn_record.geometry().top()
    panel.new_dataset("a" * 300, ("Walking", "x" * 200))
    panel.class_combo.setCurrentIndex(1)
    offline_window.resize(1280, 800)
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    assert ctx.dataset.name == "a" * 300
    assert panel.dataset_combo.width() < 300 and panel.class_combo.width() < 300
    assert panel.btn_record.geometry().top() == row  # still in the first row
    assert panel.dataset_combo.toolTip() == "a" * 300 and panel.class_combo.toolTip() == "2  " + "x" * 200


def test_a_drag_of_no_width_drops_the_label_clicked_before_so_a_key_changes_nothing(
    offline_window,  # noqa: F811
    said,  # noqa: F811
):
    """Was: a drag that selected nothing (no width, or past the recording's end) kept the label clicked before it
    selected, and the next number key relabelled that label."""
    ctx, (texts, _escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    rec = add_recording(ctx, labels=((5.0, 15.0, "Walking"),))
    panel._click(10.0)  # noqa: SLF001 - a click on the label: it is selected
    assert panel.selected_label is not None
    panel.set_selection(12.0, 12.0)
    assert (panel.selection, panel.selected_label) == (None, None)
    panel.assign(1)
    assert texts[-1] == "Drag on the plot to select a region first"
    assert _db_labels(ctx, rec.id) == [(5.0, 15.0, "Walking")]
    panel._click(10.0)  # noqa: SLF001
    panel.set_selection(1000.0, 1010.0)  # past the recording's end
    assert (panel.selection, panel.selected_label) == (None, None)
