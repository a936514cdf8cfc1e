"""The Export panel in a new user's first hour (2026-12-07): a disk that fills up during an export, a folder
that cannot be made, a name of dots only (offscreen, no board, no TensorFlow; docs/reliability.md)."""

from __future__ import annotations

import errno

import pytest
import pytestqt  # noqa: F401 - required (test extra): a broken install fails, never skips
from PySide6.QtWidgets import QMessageBox

from tests.gui.test_gui_user_mistakes_2 import _export, export_panel  # noqa: F401 - the fixture

pytestmark = pytest.mark.gui


def _disk_full(_model, path, *_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device", str(path.parent / f".{path.name}.tmp1-2"))


def test_a_disk_that_fills_up_lists_the_files_written_before_it(export_panel, qtbot, tmp_path, monkeypatch):  # noqa: F811
    """Was: "Export failed: <folder>: No space left on device" with an empty list, though the formats written
    before the disk filled (a .keras and its .json, here the .h) were there, whole."""
    from app.core import models

    panel, out = export_panel, tmp_path / "out"
    monkeypatch.setattr(models, "export_npz", _disk_full)  # the .h fits, then the disk is full
    assert _export(qtbot, panel, out, "r") == (
        f"Wrote 2 files to {out}; not written: npz (cannot write {out / 'r.npz'}: No space left on device)"
    )
    items = [panel.files.item(i).text() for i in range(panel.files.count())]
    assert [t.split("   ")[0] for t in items[:2]] == ["r.h", "r_report.md"]
    assert items[2] == f"NOT WRITTEN: NumPy weights (.npz): cannot write {out / 'r.npz'}: No space left on device"
    assert (out / "r.h").is_file() and not (out / "r.npz").exists()


def test_an_export_that_writes_nothing_says_so(export_panel, qtbot, tmp_path, monkeypatch):  # noqa: F811
    """Nothing written at all (a full disk from the start, the report's name taken by a folder): the stage
    began "Wrote 0 files to <folder>: ; the report …"."""
    from app.core import models

    panel, out = export_panel, tmp_path / "out"
    (out / "r_report.md").mkdir(parents=True)
    monkeypatch.setattr(models, "export_npz", _disk_full)
    monkeypatch.setattr(models, "export_c_header", _disk_full)
    monkeypatch.setattr(QMessageBox, "question", lambda *a: pytest.fail(f"asked {a[2]!r}"))
    assert _export(qtbot, panel, out, "r") == (
        f"Nothing was written to {out}: the report r_report.md was not written: Is a directory; not written: "
        f"c_header (cannot write {out / 'r.h'}: No space left on device); "
        f"npz (cannot write {out / 'r.npz'}: No space left on device)"
    )


def test_a_folder_that_cannot_be_made_is_said_once(export_panel, qtbot, tmp_path):  # noqa: F811
    """Was: "Wrote 0 files to /x/sub: ; the report x_report.md was not written: No such file or directory;
    not written: npz (/x/sub: cannot create the export folder (Read-only file system))" (the same failure
    once per format, the report's as a missing file)."""
    panel = export_panel
    (tmp_path / "f").write_text("a file")
    out = tmp_path / "f" / "sub"  # (root ignores a read-only mode: a file in the path stops the folder too)
    assert _export(qtbot, panel, out, "x") == (
        f"Export failed: {out}: cannot create the export folder (Not a directory); nothing was written"
    )
    assert panel.files.count() == 0


@pytest.mark.parametrize("name", ["...", "....", "....npz"])
def test_a_name_of_dots_only_is_refused(export_panel, qtbot, tmp_path, name):  # noqa: F811
    """Was: "..." wrote "....npz" and "..._report.md": hidden files, not shown by a file manager."""
    out = tmp_path / "out"
    stem = name.removesuffix(".npz")
    assert _export(qtbot, export_panel, out, name) == (
        f"File name {stem!r}: dots only would make hidden files ({stem}.npz); give a name with a letter or digit"
    )
    assert not out.exists()


def test_the_count_of_finished_rounds_follows_the_rounds(export_panel, qtbot):  # noqa: F811
    """Was: "1 finished round(s): pick one, a folder and the formats." still after a second round finished."""
    from tests.core.test_round_history_exact import add_round, save_weights

    panel = export_panel
    store = panel.ctx.store
    panel.stage.setText("No finished round yet: run one in the Training round panel.")  # as before the first
    panel.load_rounds()
    assert panel.stage.text() == "1 finished round: pick one, a folder and the formats."
    rid = add_round(store, {"mode": "full", "input_size": 4, "batch_size": 4}, {}, dataset_id=panel.ctx.dataset.id)
    store.update_round(rid, result={"weights_path": save_weights(store, rid, {})})
    panel.ctx.publish("round_finished", round_id=rid)
    assert panel.round.count() == 2 and panel.round.currentData() == rid
    assert panel.stage.text() == "2 finished rounds: pick one, a folder and the formats."
    about = "Finished rounds with weights downloaded from the board"
    assert panel.round.toolTip() == f"{panel.round.itemText(0)}\n\n{about}"  # the box elides it at 1280 x 800
    assert panel.round.itemText(0).startswith(f"#{rid}  T=4 FULL")
    panel.round.setCurrentIndex(1)
    assert panel.round.toolTip() == f"{panel.round.itemText(1)}\n\n{about}"
