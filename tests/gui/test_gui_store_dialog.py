"""Issue 13 item 5, the GUI half: a damaged database at start-up shows a dialog (not a traceback) whose three
choices each leave a working app — restore the last good backup, rebuild from the recording files, start a
new store — and Quit exits; a store that cannot be opened at all (locked) is said in a message box."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from app.core.recording import write_accel
from app.core.store import Store
from app.ui.app import open_context
from app.ui.store_dialog import DamagedStoreDialog


def _damaged_store(folder):
    st = Store(folder)
    u = st.ensure_user("ann")
    rec = write_accel(st, "walk", np.ones((100, 3), np.float32), 50.0, u.dataset_id)
    for i in range(40):
        st.add_label(rec.id, i, i + 0.5, "Walking")
    st.close()  # leaves a backup
    with open(folder / Store.FILENAME, "r+b") as fh:
        fh.write(b"\x00garbage" * 16)
    return rec


def _click_when_shown(qtbot, button_name: str, seen: list) -> None:
    """Press the dialog's button once it is shown (the dialog is modal: exec() blocks until then)."""

    def poke():
        w = QApplication.activeModalWidget()
        if isinstance(w, DamagedStoreDialog):
            seen.append(w.text.text())
            getattr(w, button_name).click()
        elif isinstance(w, QMessageBox):
            seen.append(w.text())
            w.accept()
        else:
            QTimer.singleShot(20, poke)

    QTimer.singleShot(20, poke)


@pytest.mark.parametrize("button", ["btn_restore", "btn_rebuild", "btn_new"])
def test_each_choice_leaves_a_working_app(qtbot, tmp_path, button):
    rec = _damaged_store(tmp_path)
    seen: list[str] = []
    _click_when_shown(qtbot, button, seen)
    opened = open_context(tmp_path, bench=False, discover=False)
    assert opened is not None, seen
    ctx, said = opened
    try:
        assert seen and "cannot be used" in seen[0] and "kept aside" in seen[0]
        assert list(tmp_path.glob(f"{Store.FILENAME}.damaged-*"))
        if button == "btn_restore":
            assert "restored from the backup" in said
            assert len(ctx.store.labels(rec.id)) == 40
        elif button == "btn_rebuild":
            assert "rebuilt" in said
            assert ctx.store.recording(rec.id).n_samples == 100
        else:
            assert "new database" in said
            assert ctx.store.recordings() == []
        ctx.store.set_setting("still", "works")  # the app goes on with a working store
    finally:
        ctx.close()


def test_quit_leaves_everything_as_it_was(qtbot, tmp_path):
    _damaged_store(tmp_path)
    before = (tmp_path / Store.FILENAME).read_bytes()
    seen: list[str] = []
    _click_when_shown(qtbot, "btn_quit", seen)
    assert open_context(tmp_path, bench=False, discover=False) is None
    assert seen and (tmp_path / Store.FILENAME).read_bytes() == before


def test_restore_is_disabled_without_a_backup(qtbot, tmp_path):
    dlg = DamagedStoreDialog(tmp_path, "file is not a database")
    qtbot.addWidget(dlg)
    assert not dlg.btn_restore.isEnabled() and "no backup yet" in dlg.text.text()


def test_locked_store_is_a_message_not_a_traceback(qtbot, tmp_path, capsys):
    Store(tmp_path).close()
    con = sqlite3.connect(tmp_path / Store.FILENAME)
    con.execute("BEGIN EXCLUSIVE")
    seen: list[str] = []
    try:
        _click_when_shown(qtbot, "", seen)
        assert open_context(tmp_path, bench=False, discover=False) is None
    finally:
        con.rollback()
        con.close()
    assert seen and "locked by another program" in seen[0]
    assert "locked by another program" in capsys.readouterr().err


def test_unexpected_errors_in_the_gui_are_a_status_message_and_a_log(tmp_path):
    """Issue 13 item 9: an exception escaping a slot is said in the status bar; the traceback goes to a log."""
    from app.ui.app import error_reporter

    said: list[str] = []

    class Ctx:
        def status(self, text, timeout_ms=5000):
            said.append(text)

    log = tmp_path / "odlstudio-errors.log"
    hook = error_reporter(Ctx(), log)
    try:
        raise ValueError("bad thing")
    except ValueError as exc:
        hook(type(exc), exc, exc.__traceback__)
    assert said == [f"Unexpected error: ValueError: bad thing (details in {log})"]
    assert "Traceback" in log.read_text() and "bad thing" in log.read_text()


def test_the_repair_sentence_names_recording_files_that_could_not_be_read(tmp_path):
    """The damaged-store dialog's "Rebuild": a recording file the rebuild cannot read stays where it is, and the
    sentence the user reads says so and names it."""
    from app.core.store import Store
    from app.ui.store_dialog import REBUILD, repair_store

    Store(tmp_path).close()
    (tmp_path / "odlstudio.sqlite").unlink()
    (tmp_path / "recordings" / "power").mkdir(parents=True, exist_ok=True)
    (tmp_path / "recordings" / "power" / "0.h5").write_bytes(b"not hdf5")
    assert repair_store(tmp_path, REBUILD) == (
        "Database rebuilt: 0 labels kept, 0 recordings added back from their files; the damaged file was kept "
        f"aside; 1 recording file(s) could not be read and stay in {tmp_path / 'recordings'}: 0.h5"
    )
    assert (tmp_path / "recordings" / "power" / "0.h5").read_bytes() == b"not hdf5"


def test_the_restore_sentence_names_later_recordings_and_unreadable_files(tmp_path):
    """The damaged-store dialog's "Restore": recordings made after the backup are added back from their files and
    counted; one that cannot be read stays where it is and is named (it used to be left out silently)."""
    import numpy as np

    from app.core.recording import write_accel
    from app.core.store import Store, list_backups
    from app.ui.store_dialog import RESTORE, repair_store

    Store(tmp_path).close()  # a session that ends with a backup
    backup = list_backups(tmp_path)[0]
    st = Store(tmp_path)
    late = write_accel(st, "late", np.ones((50, 3), np.float32), 50.0, None)
    st._db.close()  # noqa: SLF001 - the session dies without its end-of-session backup
    (tmp_path / "recordings" / "power").mkdir(parents=True, exist_ok=True)
    (tmp_path / "recordings" / "power" / "9.h5").write_bytes(b"not hdf5")
    (tmp_path / "odlstudio.sqlite").write_bytes(b"\xff" * 4096)
    assert repair_store(tmp_path, RESTORE) == (
        f"Database restored from the backup {backup.name}, 1 later recording(s) added back from their files; the "
        f"damaged file was kept aside; 1 recording file(s) could not be read and stay in {tmp_path / 'recordings'}: "
        "9.h5"
    )
    st = Store(tmp_path)
    assert [r.id for r in st.recordings()] == [late.id]
    st.close()
    assert (tmp_path / "recordings" / "power" / "9.h5").read_bytes() == b"not hdf5"
