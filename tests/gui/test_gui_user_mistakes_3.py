"""The desktop app's rough edges of the third exploratory session (offscreen, no devices): a window too large
for an 800 x 600 screen, an export that replaced files without asking or lost the list of files written when
its report failed, a dataset switch while recording, and a recording file cut in the middle of a sample."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import pytestqt  # noqa: F401 - required (test extra): a broken install fails, never skips
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox, QScrollArea

from tests.gui.test_gui_labelling import add_recording, offline_window  # noqa: F401 - the fixture
from tests.gui.test_gui_user_mistakes_2 import _export, export_panel, said  # noqa: F401 - the fixtures

pytestmark = pytest.mark.gui


# --- 1. the main window on an 800 x 600 screen ----------------------------------------------------------------
def test_every_panel_is_usable_in_an_800x600_window(offline_window):  # noqa: F811
    """Was: the window's minimum size was 1209 x 677 (the Labelling and Power toolbars, the Training and Export
    columns side by side), so it could not be made smaller than an 800 x 600 or 1024 x 600 screen.  Now every
    panel fits the 630 x 550 px left beside the sidebar without a horizontal scroll bar (toolbars wrap,
    columns shrink); what is taller scrolls vertically instead of being cut off."""
    win = offline_window
    add_recording(win.ctx, name="Walking #1")
    for key in win.panels:
        win.show_panel(key)
        QApplication.processEvents()
        hint, least = win.minimumSizeHint(), win.minimumSize()
        assert hint.width() <= 800 and hint.height() <= 600, (key, hint)
        assert least.width() <= 800 and least.height() <= 600, (key, least)
        win.resize(800, 600)
        QApplication.processEvents()
        assert (win.width(), win.height()) == (800, 600), key
        page, panel = win.stack.currentWidget(), win.panels[key]
        assert win.current_panel() is panel
        assert not page.horizontalScrollBar().isVisible(), (key, panel.minimumSizeHint())
        assert panel.width() == page.viewport().width(), key  # nothing beyond the right edge
        if page.verticalScrollBar().isVisible():  # taller than the window: all of it is reachable
            assert page.verticalScrollBar().maximum() == panel.height() - page.viewport().height(), key
        else:
            assert panel.height() == page.viewport().height(), key
        for lab in panel.findChildren(QLabel):  # no one-line text cut off
            if lab.isVisible() and not lab.wordWrap() and lab.text():
                assert lab.width() >= lab.minimumSizeHint().width(), (key, lab.text(), lab.width())
        win.resize(1280, 800)
        QApplication.processEvents()
        assert not page.verticalScrollBar().isVisible() and not page.horizontalScrollBar().isVisible(), key
        for inner in panel.findChildren(QScrollArea):  # a side column scrolls only when it is taller than its least
            if inner.isVisible() and inner.widget() is not None:  # (Power's scrolled at 1280 x 800, where it fits)
                least = inner.widget().minimumSizeHint().height()
                assert inner.verticalScrollBar().isVisible() == (least > inner.viewport().height()), (key, least)


# --- 2. Export: files of the same name ------------------------------------------------------------------------
def _stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_export_asks_before_replacing_files_and_no_writes_nothing(export_panel, qtbot, tmp_path, monkeypatch):  # noqa: F811
    """Was: a second export under the same name replaced the first one's files without a word."""
    panel, out = export_panel, tmp_path / "out"
    assert _export(qtbot, panel, out, "alice") == f"Wrote 3 files to {out}"
    first = _stamps(out)
    asked: list[tuple] = []
    answer = QMessageBox.No

    def question(*args):
        asked.append(args[2:])
        return answer

    monkeypatch.setattr(QMessageBox, "question", question)
    assert _export(qtbot, panel, out, "alice") == f"Export not started: the existing files in {out} were kept"
    assert asked == [
        (
            f"Replace 3 existing files in {out}: alice.h, alice.npz, alice_report.md?",
            QMessageBox.Yes | QMessageBox.No,
            QMessageBox.No,  # the default: Enter keeps the files
        )
    ]
    assert _stamps(out) == first  # nothing written, nothing replaced

    assert _export(qtbot, panel, out, "bob") == f"Wrote 3 files to {out}"  # other names: nothing to ask
    assert len(asked) == 1
    answer = QMessageBox.Yes
    assert _export(qtbot, panel, out, "alice") == f"Wrote 3 files to {out}"
    assert len(asked) == 2
    again = _stamps(out)
    assert all(again[n] != first[n] for n in first)  # replaced
    assert sorted(again) == sorted([*first, "bob.h", "bob.npz", "bob_report.md"])


def test_the_replace_question_lists_a_few_names_and_counts_the_rest():
    from app.core.rounds import export_files
    from app.ui.panels.export import name_list

    out = Path("/x")
    assert name_list([out / "a.h5", out / "a.tflite"]) == "a.h5, a.tflite"
    targets = export_files(out, 7, ("keras", "h5", "tflite_float32", "tflite_int8", "c_header", "npz"), "a")
    assert [p.name for p in targets] == [
        "a.keras",
        "a.h5",
        "a_float32.tflite",
        "a_int8.tflite",
        "a.h",
        "a.npz",
        "a.json",
        "a_float32.json",
        "a_int8.json",
        "a_report.md",
    ]
    assert targets[out / "a.json"] == "metadata (keras, h5)"
    assert name_list(targets) == "a.keras, a.h5, a_float32.tflite, a_int8.tflite and 6 more"
    assert [p.name for p in export_files(out, 7, ("npz",))] == [
        "personalized_round7.npz",
        "personalized_round7_report.md",
    ]


# --- 3. Export: a report that cannot be written ---------------------------------------------------------------
def test_a_report_that_cannot_be_written_still_lists_the_files_written(export_panel, qtbot, tmp_path, monkeypatch):  # noqa: F811
    """Was: "Export failed: <folder>: Is a directory", and the .h and .npz written before the report were in no
    list: the user could not tell what was written."""
    panel, out = export_panel, tmp_path / "out"
    (out / "r_report.md").mkdir(parents=True)  # a folder in the way of the report
    statuses: list[str] = []
    panel.ctx.subscribe("status", lambda text, **_: statuses.append(text))
    monkeypatch.setattr(QMessageBox, "question", lambda *a: pytest.fail(f"asked {a[2]!r}"))  # a folder: not asked
    escaped: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, exc, tb: escaped.append(exc))
    assert _export(qtbot, panel, out, "r") == (
        f"Wrote 2 files to {out}: r.h, r.npz; the report r_report.md was not written: Is a directory"
    )
    rid = panel.round.currentData()
    assert statuses[-1] == f"Exported round {rid} to {out} except report"
    items = [panel.files.item(i).text() for i in range(panel.files.count())]
    assert [t.split("   ")[0] for t in items[:2]] == ["r.h", "r.npz"]
    assert items[2] == "NOT WRITTEN: report: Is a directory"
    assert (out / "r.h").is_file() and (out / "r.npz").is_file() and not escaped


# --- 4. Labelling: switching dataset while recording --------------------------------------------------------
def test_switching_dataset_or_user_while_recording_is_refused_naming_the_dataset(
    offline_window,  # noqa: F811
    said,  # noqa: F811
    qtbot,
    monkeypatch,
):
    """Was: the switch went through while the segment kept being saved into the old dataset, out of sight
    (nothing named it), and its label was then checked against the new dataset's classes."""
    from app.core.streams import SampleStream

    ctx, (texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    ctx.store.create_dataset(ctx.user.id, "gym", ("Rowing", "Cycling"))
    panel.reload_profile()
    stream = SampleStream("accel", 52.0, 3)
    stream.append(np.zeros((52, 3), np.float32))
    monkeypatch.setattr(ctx.devices, "accel_stream", stream)
    panel.class_combo.setCurrentIndex(0)
    assert panel.start_recording(None)
    live = panel.recorder.rec
    busy = f"{live.name!r} is being recorded into dataset 'default': stop it first (■ Stop), then"

    gym = panel.dataset_combo.findData(next(d.id for d in ctx.store.datasets(ctx.user.id) if d.name == "gym"))
    panel.dataset_combo.setCurrentIndex(gym)
    panel.dataset_combo.activated.emit(gym)  # the user picks "gym"
    assert texts[-1] == f"{busy} switch datasets"
    assert ctx.dataset.name == "default" and panel.dataset_combo.currentText() == "default"

    panel.new_dataset("bike", ("Cycling",))
    assert texts[-1] == f"{busy} create the new dataset"
    assert sorted(d.name for d in ctx.store.datasets(ctx.user.id)) == ["default", "gym"]

    panel.user_combo.setCurrentText("alice")
    panel._user_entered()  # noqa: SLF001 - Enter in the User box
    assert texts[-1] == f"{busy} change the user"
    assert ctx.user.name == "engineer" and panel.user_combo.currentText() == "engineer"

    stream.append(np.ones((104, 3), np.float32))
    qtbot.waitUntil(lambda: panel.recorder.duration > 0, timeout=5000)
    panel.tick()
    assert panel.hint.text().startswith("Recording Walking into dataset 'default': ")
    row = panel.stop_recording()
    assert row.dataset_id == ctx.dataset.id and [l.label for l in ctx.store.labels(row.id)] == ["Walking"]
    panel.dataset_combo.setCurrentIndex(gym)
    panel.dataset_combo.activated.emit(gym)  # stopped: the switch goes through
    assert ctx.dataset.name == "gym" and not escaped


# --- 5. Labelling: a file cut in the middle of a sample -----------------------------------------------------
def test_a_recording_file_cut_in_a_sample_is_shown_and_said(offline_window, said):  # noqa: F811
    """Was: the whole samples were shown with no word that the file ends in a partial one."""
    from app.core.recording import write_accel

    ctx, (texts, escaped) = offline_window.ctx, said
    panel = offline_window.show_panel("labelling")
    rec = write_accel(ctx.store, "cut", np.ones((104, 3), np.float32), 52.0, ctx.dataset.id)
    path = ctx.store.resolve(rec.path)
    with path.open("ab") as f:
        f.write(b"\0" * 7)  # a partial 105th sample
    ctx.publish("recording_added", recording=rec)
    assert panel.recording.id == rec.id and panel.rec_stream.n_total == 104
    assert texts[-1] == f"The file {path} of 'cut' ends in a partial sample: its last 7 bytes were ignored " + (
        "(104 whole samples shown)"
    )
    whole = add_recording(ctx, seconds=2.0, name="whole")  # a whole file: nothing said about it
    assert panel.recording.id == whole.id and sum("partial" in t for t in texts) == 1 and not escaped
