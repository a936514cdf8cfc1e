"""A new user's mistakes in the desktop app (second exploratory session, offscreen, no devices): a recording
whose file was deleted outside the app, imports that fail or are cancelled half-way, export names and folders
that are paths, an HDF5 file that is gone, a CSV export with nothing shown, and the "New dataset…" dialog.
Each is said in one sentence naming what was wrong; nothing escapes into Qt ("Unexpected error: …") and no
label lands on a recording other than the one shown."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import pytestqt  # noqa: F401 - required (test extra): a broken install fails, never skips
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog, QMessageBox

from tests.gui.test_gui_labelling import add_recording, offline_window  # noqa: F401 - the fixture

pytestmark = pytest.mark.gui


@pytest.fixture()
def said(offline_window, monkeypatch):  # noqa: F811 - the fixture imported above
    """What the status bar was told, and what reached ``sys.excepthook`` (the app's "Unexpected error")."""
    texts: list[str] = []
    offline_window.ctx.subscribe("status", lambda text, **_: texts.append(text))
    escaped: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, exc, tb: escaped.append(exc))
    return texts, escaped


def _plot_is_empty(panel) -> bool:
    xs = [c.getData()[0] for c in panel.plot._curves]  # noqa: SLF001 - the curves drawn
    return panel.plot.last_view_points == 0 and all(x is None or len(x) == 0 for x in xs)


def _db_labels(ctx, rec_id):
    return [(round(l.start_s, 3), round(l.end_s, 3), l.label) for l in ctx.store.labels(rec_id)]


# --- Labelling: a recording whose file is gone ------------------------------------------------------------
def test_a_recording_whose_file_is_gone_is_said_and_no_key_labels_the_one_shown_before(
    offline_window,  # noqa: F811
    said,
    qtbot,
):
    """Was: selecting it raised RecordingError into Qt ("Unexpected error: RecordingError: …") and left the
    previous recording's labels loaded, so 1-9 labelled the recording shown before while the list showed
    this one selected."""
    ctx, (texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    gone = add_recording(ctx, name="gone")
    kept = add_recording(ctx, name="kept")  # selected: the newest
    assert panel.recording.id == kept.id
    panel.tick()
    assert panel.plot.last_view_points > 0  # "kept" is drawn
    path = ctx.store.resolve(gone.path)
    path.unlink()

    panel.rec_list.setCurrentRow(0)  # the user clicks "gone"
    why = f"accel recording {gone.id} file {path} is missing"
    assert escaped == []
    assert texts[-1] == f"Cannot show the recording 'gone': {why}"
    assert panel.recording.id == gone.id and panel.model is None
    panel.tick()
    assert panel.win_info.text() == f"The file of 'gone' cannot be read: {why}."
    # the plot is empty, not still showing "kept" as if it were "gone"
    assert _plot_is_empty(panel)

    panel.set_selection(1.0, 4.0)  # ignored: nothing is shown
    panel.handle_key(Qt.Key_2, Qt.NoModifier)
    assert texts[-1] == "Cannot label 'gone': its file cannot be read"
    assert _db_labels(ctx, kept.id) == [(5.0, 15.0, "Walking")]  # untouched
    assert _db_labels(ctx, gone.id) == [(5.0, 15.0, "Walking")]

    # its entry can still be deleted
    from unittest import mock

    with mock.patch.object(QMessageBox, "question", return_value=QMessageBox.Yes):
        panel.delete_recording()
    assert [r.name for r in ctx.store.recordings("accel", ctx.dataset.id)] == ["kept"]
    assert panel.recording.id == kept.id and panel.model is not None
    panel.tick()
    assert panel.plot.last_view_points > 0
    with mock.patch.object(QMessageBox, "question", return_value=QMessageBox.Yes):
        panel.delete_recording()  # the last one: nothing is left to show
    panel.tick()
    assert panel.recording is None and _plot_is_empty(panel)
    assert escaped == []


def test_labelling_keys_without_any_recording_say_what_to_do(offline_window, said):  # noqa: F811
    """Was: a number key with no recording did nothing at all."""
    texts, _ = said
    panel = offline_window.show_panel("labelling")
    panel.handle_key(Qt.Key_1, Qt.NoModifier)
    assert texts[-1] == "Nothing to label: record a segment or pick a recording in the list first"


def test_a_file_that_cannot_be_removed_is_said_after_the_entry_is_deleted(
    offline_window,  # noqa: F811
    said,
    monkeypatch,
):
    """Was: the OSError of the unlink escaped into Qt after the entry was already deleted."""
    ctx, (texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    rec = add_recording(ctx, name="locked")
    path = ctx.store.resolve(rec.path)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)

    def refuse(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    panel.delete_recording()
    assert escaped == []
    assert texts[-1] == f"Deleted 'locked'; its file {path} could not be removed: Permission denied"
    assert ctx.store.recordings("accel", ctx.dataset.id) == [] and panel.rec_list.count() == 0


def test_a_segment_recorded_after_a_delete_gets_a_name_not_in_use(offline_window, qtbot, monkeypatch):  # noqa: F811
    """Was: the count + 1, so after deleting "Walking #1" the next segment was a second "Walking #2"."""
    from app.core.streams import SampleStream

    ctx = offline_window.ctx
    panel = offline_window.show_panel("labelling")
    first = add_recording(ctx, name="Walking #1")
    add_recording(ctx, name="Walking #2")
    ctx.store.delete_recording(first.id)
    stream = SampleStream("accel", 52.0, 3)
    stream.append(np.zeros((52, 3), np.float32))
    monkeypatch.setattr(ctx.devices, "accel_stream", stream)  # the board's live stream
    panel.class_combo.setCurrentIndex(0)
    assert panel.start_recording(None)
    stream.append(np.ones((104, 3), np.float32))
    qtbot.waitUntil(lambda: panel.recorder.duration > 0, timeout=5000)
    row = panel.stop_recording()
    assert row.name == "Walking #3"
    assert sorted(r.name for r in ctx.store.recordings("accel", ctx.dataset.id)) == ["Walking #2", "Walking #3"]


def test_the_recording_in_progress_cannot_be_deleted(offline_window, said, qtbot, monkeypatch):  # noqa: F811
    """The segment being recorded shows in the list when it reloads; Delete recording on it removed the row and
    the file the recorder was writing."""
    from app.core.streams import SampleStream

    ctx, (texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    stream = SampleStream("accel", 52.0, 3)
    stream.append(np.zeros((52, 3), np.float32))
    monkeypatch.setattr(ctx.devices, "accel_stream", stream)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)
    assert panel.start_recording(None)
    live = ctx.store.recording(panel.recorder.rec.id)
    panel.open_recording(live)
    panel.delete_recording()
    assert texts[-1] == f"{live.name!r} is being recorded: stop it first (■ Stop), then delete it"
    stream.append(np.ones((104, 3), np.float32))
    qtbot.waitUntil(lambda: panel.recorder.duration > 0, timeout=5000)
    row = panel.stop_recording()
    assert row is not None and row.id == live.id and row.n_samples > 0
    assert ctx.store.resolve(row.path).is_file() and not escaped


# --- Labelling: WISDM imports that fail or are cancelled ----------------------------------------------------
def test_a_failed_import_is_said_once_and_named_in_the_status_bar(offline_window, said, qtbot, tmp_path):  # noqa: F811
    """Was: the reason twice under the list ("failed: <why>" then "<why>" again) and the status bar kept the
    previous import's "Imported …"."""
    texts, escaped = said
    panel = offline_window.show_panel("labelling")
    src = tmp_path / "windows.npz"
    np.savez(src, X=np.zeros((3, 128, 6)), y=np.zeros(3))
    panel.import_wisdm(str(src))
    qtbot.waitUntil(lambda: not panel.tasks.tasks, timeout=20_000)
    qtbot.wait(20)
    assert panel.import_report.toPlainText() == (
        f"Import of windows.npz failed: {src}: a .npz with arrays X, y, not WISDM text: WISDM text is a "
        "data_<id>_accel_phone.txt (WISDM-2019) or WISDM_ar_v1.1_raw.txt (v1.1) file of "
        "'user,activity,timestamp,x,y,z;' records, or a folder holding them"
    )
    assert texts[-1] == "Import of windows.npz failed (see below the recordings list)"
    assert escaped == []


def test_a_cancelled_import_lists_the_users_it_imported(offline_window, said, qtbot, tmp_path, monkeypatch):  # noqa: F811
    """Cancel after two of five users: the two are kept (each user is one transaction).  Was: "Import of … failed:
    cancelled" (twice) and the two recordings hidden from the list until the app was restarted, so a second
    import made duplicates."""
    import app.core.recording as recording

    ctx, (texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    src = tmp_path / "WISDM_ar_v1.1_raw.txt"
    src.write_text(
        "".join(f"{u},Walking,{(i + 1) * 50_000_000},1.0,2.0,3.0;\n" for u in range(1, 6) for i in range(200))
    )
    write = recording.write_accel

    def cancel_after_the_second(*a, **k):  # the user presses the task bar's Cancel there
        rec = write(*a, **k)
        if rec.name == "WISDM 2":
            panel.tasks.cancel_all()
        return rec

    monkeypatch.setattr(recording, "write_accel", cancel_after_the_second)
    panel.import_wisdm(str(src))
    qtbot.waitUntil(lambda: panel.import_result is not None, timeout=20_000)
    assert [r.name for r in ctx.store.recordings("accel", ctx.dataset.id)] == ["WISDM 1", "WISDM 2"]
    assert [panel.rec_list.item(i).text().split("  ·")[0] for i in range(panel.rec_list.count())] == [
        "WISDM 1",
        "WISDM 2",
    ]
    assert panel.import_report.toPlainText() == (
        "Imported 2 recording(s) with 2 label(s), 20.0 s from WISDM_ar_v1.1_raw.txt "
        "(cancelled: the rest was not imported)."
    )
    assert texts[-1] == "Imported 2 recording(s) from WISDM_ar_v1.1_raw.txt before the cancel"

    import app.core.labels as labels

    read = labels.read_wisdm

    def cancel_while_reading(*a, **k):
        panel.tasks.cancel_all()
        return read(*a, **k)

    monkeypatch.setattr(labels, "read_wisdm", cancel_while_reading)
    panel.import_result = None
    panel.import_wisdm(str(src))
    qtbot.waitUntil(lambda: not panel.tasks.tasks, timeout=20_000)
    qtbot.wait(20)
    assert panel.import_report.toPlainText() == "Import of WISDM_ar_v1.1_raw.txt cancelled, nothing was imported."
    assert texts[-1] == "Import of WISDM_ar_v1.1_raw.txt cancelled, nothing was imported."
    assert len(ctx.store.recordings("accel", ctx.dataset.id)) == 2
    assert escaped == []


# --- Labelling: "New dataset…" ---------------------------------------------------------------------------
def test_new_dataset_with_a_name_in_use_or_no_classes_is_said_in_words(offline_window, monkeypatch):  # noqa: F811
    """Was: "user 1 already has a dataset called 'default'" (the store's user id), and no classes silently gave
    the new dataset the current one's classes."""
    ctx = offline_window.ctx
    panel = offline_window.show_panel("labelling")
    boxes: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: boxes.append(a[2]))
    answers = iter([("default", True), ("Walking", True), ("Mine", True), (" , ", True)])
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: next(answers))
    panel.new_dataset()
    assert boxes == ["engineer already has a dataset called 'default': choose another name"]
    panel.new_dataset()
    assert boxes[-1] == "No classes given: type at least one, separated by commas"
    assert [d.name for d in ctx.store.datasets(ctx.user.id)] == ["default"]


# --- Export panel: names and folders ---------------------------------------------------------------------
@pytest.fixture()
def export_panel(qtbot, offline_ctx):
    """The Export panel with one finished round whose weights are saved (no board, no TensorFlow)."""
    from app.ui.panels.export import ExportPanel
    from tests.core.test_round_history_exact import add_round, save_weights

    store = offline_ctx.store
    rid = add_round(store, {"mode": "tl", "input_size": 4, "batch_size": 4}, {}, dataset_id=offline_ctx.dataset.id)
    store.update_round(rid, result={"weights_path": save_weights(store, rid, {}), "seconds": 2.0})
    panel = ExportPanel(offline_ctx)
    qtbot.addWidget(panel)
    for f, cb in panel.formats.items():
        cb.setChecked(f in ("npz", "c_header"))
    return panel


def _export(qtbot, panel, folder, name) -> str:
    panel.folder.setText(str(folder))
    panel.stem.setText(name)
    panel.export()
    qtbot.waitUntil(lambda: panel.task is None, timeout=30_000)
    return panel.stage.text()


def test_export_names_with_a_folder_part_and_bad_folders_are_refused_before_writing(
    export_panel, qtbot, tmp_path, monkeypatch
):
    """Was: "a/b" failed with "[Errno 2] No such file or directory: '…/a/b_report.md'", "../x" wrote the files
    beside the chosen folder while saying "Wrote 3 files to <folder>", a file as the folder gave "[Errno 20]
    Not a directory", a relative folder was written under the app's working directory, a 300-character name
    gave "[Errno 36] File name too long" with the temporary name, and "x.npz" was written as x.npz.npz."""
    panel, out = export_panel, tmp_path / "out"
    sep = "(no '/', '\\' or '..'); the folder is chosen above"
    assert _export(qtbot, panel, out, "sub/name") == (
        f"File name 'sub/name': a name without a folder part is expected {sep}"
    )
    assert _export(qtbot, panel, out, "../escape") == (
        f"File name '../escape': a name without a folder part is expected {sep}"
    )
    assert _export(qtbot, panel, out, "..") == f"File name '..': a name without a folder part is expected {sep}"
    assert (
        _export(qtbot, panel, out, "a" * 300)
        == "File name 'aaaaaaaaaaaaaaaaaaaaaaaa'…: too long (300 bytes; at most 180)"
    )
    assert _export(qtbot, panel, out, "tab\there") == "File name 'tab\\there': contains a control character"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert _export(qtbot, panel, a_file, "x") == f"Folder {a_file} is a file, not a folder"
    monkeypatch.chdir(tmp_path)
    assert _export(qtbot, panel, "relative", "x") == (
        f"Folder 'relative': give a full path (e.g. {Path.home() / 'odlstudio-exports'})"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "data"]  # nothing written anywhere

    assert _export(qtbot, panel, out, "alice.npz") == f"Wrote 3 files to {out}"
    assert sorted(p.name for p in out.iterdir()) == ["alice.h", "alice.npz", "alice_report.md"]
    assert _export(qtbot, panel, out, "ünï cødé") == f"Wrote 3 files to {out}"
    assert (out / "ünï cødé.npz").is_file()


def test_export_folder_with_a_tilde_is_the_home_folder(export_panel, qtbot, tmp_path, monkeypatch):
    """Was: "~/exports" made a folder named "~" in the folder the app was started from."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _export(qtbot, export_panel, "~/exports", "w") == f"Wrote 3 files to {tmp_path / 'home' / 'exports'}"
    assert (tmp_path / "home" / "exports" / "w.npz").is_file() and not (tmp_path / "~").exists()


# --- Power panel -------------------------------------------------------------------------------------------
@pytest.fixture()
def power(qtbot, offline_ctx):
    from app.ui.panels.power import PowerPanel

    panel = PowerPanel(offline_ctx)
    qtbot.addWidget(panel)
    texts: list[str] = []
    offline_ctx.subscribe("status", lambda text, **_: texts.append(text))
    return panel, texts


def test_power_open_of_a_file_that_is_gone_or_a_folder_says_so_in_words(power, tmp_path, monkeypatch):
    """Was HDF5's dump: "[Errno 2] (unable to open file: name = '…', errno = 2, error message = 'No such file or
    directory', flags = 40, o_flags = 0"."""
    panel, texts = power
    boxes: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: boxes.append(a[2]))
    gone, folder = tmp_path / "gone.h5", tmp_path / "folder.h5"
    folder.mkdir()
    panel.open_file(str(gone))
    assert boxes[-1] == f"cannot open power file {gone}: No such file or directory"
    assert texts[-1] == f"Open failed: cannot open power file {gone}: No such file or directory"
    panel.open_file(str(folder))
    assert boxes[-1] == f"cannot open power file {folder}: Is a directory"


def test_power_csv_export_with_nothing_shown_says_so(power):
    """Was: the menu item did nothing (no stream, no recording opened)."""
    panel, texts = power
    assert panel.export_csv() is None
    assert texts == ["CSV export: nothing to export yet; start the power stream or open a recording first"]
