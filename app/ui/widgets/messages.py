"""View › Messages: every status message of this session, whole, with the time it was said.

The status bar shows a message for 5–15 s and cuts what is wider than the window (on an 800-px screen, the end of
"Recorded … → <file>", where the recording went).  Here it can be read, selected and copied; the list follows
new messages while it is open."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QTextCursor
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

EMPTY = "No message yet in this session."


def message_line(t: float, text: str) -> str:
    """One message as listed: local time of day, then the text (its line breaks kept, indented)."""
    return f"{time.strftime('%H:%M:%S', time.localtime(t))}  " + text.replace("\n", "\n          ")


class MessagesDialog(QDialog):
    """The context's :attr:`~app.core.context.AppContext.messages`, oldest first, newest at the bottom."""

    def __init__(self, ctx: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.setWindowTitle("Messages")
        self.setAttribute(Qt.WA_DeleteOnClose)
        self.resize(720, 360)
        lay = QVBoxLayout(self)
        self.note = QLabel("The status bar's messages of this session, newest last (select and copy with Ctrl+C).")
        self.note.setWordWrap(True)
        lay.addWidget(self.note)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        lay.addWidget(self.text, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        lay.addWidget(buttons)
        lines = [message_line(t, s) for t, s in ctx.messages]
        self._empty = not lines
        self.text.setPlainText("\n".join(lines) if lines else EMPTY)
        self.text.moveCursor(QTextCursor.End)
        unsubscribe = ctx.subscribe("status", self._said)
        self.destroyed.connect(lambda *_: unsubscribe())  # (closed, or its window gone: never told again)

    def _said(self, **_: object) -> None:
        line = message_line(*self.ctx.messages[-1])  # (the context keeps it before it tells anyone)
        if self._empty:
            self.text.setPlainText(line)
            self._empty = False
        else:
            self.text.appendPlainText(line)  # (scrolls to it when the view was at the end)
