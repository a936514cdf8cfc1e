"""What the app shows when its database cannot be opened (issue 13 item 5).

A damaged database (:class:`~app.core.store.StoreDamaged`) gets :class:`DamagedStoreDialog` with the three
ways out, each done by :mod:`app.core.store` (Qt-free, tested there): restore the newest good backup,
rebuild what can be rebuilt from the recording files, or start a new store.  The damaged file is always
kept aside.  Any other store problem (read-only folder, locked by another program, full disk) is said in
a message box and the app exits with status 2 — never a traceback.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QMessageBox, QPushButton, QVBoxLayout

from app.core.store import StoreError, list_backups, rebuild_store, restore_backup, start_new_store

__all__ = ["DamagedStoreDialog", "repair_store", "RESTORE", "REBUILD", "NEW", "QUIT"]

RESTORE, REBUILD, NEW, QUIT = "restore", "rebuild", "new", "quit"


class DamagedStoreDialog(QDialog):
    """Explains the damage and offers restore / rebuild / new store / quit; :attr:`choice` is the answer."""

    def __init__(self, data_dir: str | Path, reason: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle("ODL Studio: the database is damaged")
        self.data_dir = Path(data_dir)
        self.choice = QUIT
        backups = list_backups(self.data_dir)
        lay = QVBoxLayout(self)
        text = QLabel(
            f"The database in {self.data_dir} cannot be used.\n{reason}\n\n"
            "Whatever you choose, the damaged file is kept aside (nothing is deleted).\n"
            + (
                f"Newest backup: {backups[0].name}."
                if backups
                else "There is no backup yet (one is made when a session ends)."
            )
        )
        text.setWordWrap(True)
        text.setTextFormat(Qt.PlainText)
        self.text = text
        lay.addWidget(text)
        box = QDialogButtonBox()
        self.btn_restore = QPushButton("Restore the last good backup")
        self.btn_restore.setEnabled(bool(backups))
        self.btn_rebuild = QPushButton("Rebuild from the recording files")
        self.btn_new = QPushButton("Start a new, empty store")
        self.btn_quit = QPushButton("Quit")
        for btn, role, choice in (
            (self.btn_restore, QDialogButtonBox.AcceptRole, RESTORE),
            (self.btn_rebuild, QDialogButtonBox.AcceptRole, REBUILD),
            (self.btn_new, QDialogButtonBox.AcceptRole, NEW),
            (self.btn_quit, QDialogButtonBox.RejectRole, QUIT),
        ):
            box.addButton(btn, role)
            btn.clicked.connect(lambda _=False, c=choice: self._choose(c))
        lay.addWidget(box)

    def _choose(self, choice: str) -> None:
        self.choice = choice
        (self.reject if choice == QUIT else self.accept)()


def repair_store(data_dir: str | Path, choice: str) -> str:
    """Do what the user chose (core functions); returns a sentence for the status bar.  Raises
    :class:`StoreError` when it cannot be done (e.g. no usable backup)."""
    data_dir = Path(data_dir)
    if choice == RESTORE:
        got = restore_backup(data_dir)
        said = f"Database restored from the backup {got['backup'].name}"
        if got["recordings"]:
            said += f", {got['recordings']} later recording(s) added back from their files"
        return said + "; the damaged file was kept aside" + _unreadable(data_dir, got["unreadable"])
    if choice == REBUILD:
        got = rebuild_store(data_dir)
        said = (
            f"Database rebuilt: {got['labels']} labels kept, {got['recordings']} recordings added back from their "
            "files; the damaged file was kept aside"
        )
        return said + _unreadable(data_dir, got["unreadable"])
    if choice == NEW:
        kept = start_new_store(data_dir)
        return f"Started a new database; the damaged one is kept as {kept.name if kept else '(none)'}"
    raise StoreError("quit")


def _unreadable(data_dir: Path, names: list[str]) -> str:
    """The end of a repair's sentence naming the recording files it could not read (at most five)."""
    if not names:
        return ""
    more = " …" if len(names) > 5 else ""
    return (
        f"; {len(names)} recording file(s) could not be read and stay in {data_dir / 'recordings'}: "
        f"{', '.join(names[:5])}{more}"
    )


def ask_and_repair(data_dir: str | Path, exc: StoreError, parent=None) -> str | None:
    """Show :class:`DamagedStoreDialog` until a repair worked; returns its sentence, or None to quit."""
    reason = getattr(exc, "reason", str(exc))
    while True:
        dlg = DamagedStoreDialog(data_dir, reason, parent)
        dlg.exec()
        if dlg.choice == QUIT:
            return None
        try:
            return repair_store(data_dir, dlg.choice)
        except (StoreError, OSError) as err:
            QMessageBox.warning(parent, "ODL Studio", f"That did not work: {err}")
            reason = f"{reason}\n\nLast attempt: {err}"


def show_store_error(exc: BaseException, parent=None) -> None:
    QMessageBox.critical(parent, "ODL Studio cannot open its database", str(exc))
