"""Base class of every panel."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QToolButton, QWidget

from app.core.context import AppContext


def tool_button(text: str, tip: str = "", checkable: bool = False) -> QToolButton:
    """A toolbar button as wide as its text.  A QPushButton is at least 80 px wide in most styles; a row of
    them made the Power and Labelling panels too wide for a 1280-px screen beside the sidebar."""
    b = QToolButton()
    b.setText(text)
    b.setToolTip(tip)
    b.setCheckable(checkable)
    b.setToolButtonStyle(Qt.ToolButtonTextOnly)
    return b


class Column(QWidget):
    """A widget put in a scroll area of its own (a side column, or a panel: the main window's page is a scroll
    area): it scrolls only below its least height."""

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt naming
        """The *least* height the layout needs at ``width`` (wrapped toolbars and labels whole).  A resizable
        QScrollArea makes its content at least ``heightForWidth`` tall and scrolls beyond it; Qt's default, the
        layout's *preferred* height, gave scroll bars where the content fitted (an 800 x 600 screen)."""
        lay = self.layout()
        if lay is not None and lay.hasHeightForWidth():
            return lay.totalMinimumHeightForWidth(width)
        return super().heightForWidth(width)


class Panel(Column):
    """A page of the main window.

    * ``self.ctx`` — the :class:`~app.core.context.AppContext` (store, devices, settings, user, pub/sub).
    * ``self.tasks`` — set by the main window: :class:`app.ui.tasks.TaskRunner` for long work.
    * :meth:`tick` — called by the main window's frame clock (<= 60 Hz) **only while the panel is
      visible**; pull from streams here and skip work when nothing changed.
    * :meth:`activated` / :meth:`deactivated` — the page was shown / hidden.
    * :meth:`shortcuts` — ``[(keys, what)]`` listed in Help > Keyboard shortcuts.
    * :meth:`add_shortcut` — a key that works whenever this panel is shown, wherever the focus is in the
      window (a combo box, a list, the sidebar), except in a text field being typed in.
    * :meth:`shutdown` — the app is closing (stop recorders, workers).
    """

    def __init__(self, ctx: AppContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.tasks = None  # set by MainWindow (app.ui.tasks.TaskRunner)

    def add_shortcut(self, keys: str, fn) -> QShortcut:
        """``keys`` (e.g. ``"M"``, ``"Ctrl+Z"``) calls ``fn()`` while this panel is the shown page.  Window
        context: Qt matches it only while the panel is visible, so hidden panels never react, and the focus
        widget may be anywhere in the window.  A text field with the focus (QLineEdit, spin box, editable
        combo box, table cell editor) still gets its typing keys first (Qt's ShortcutOverride)."""
        sc = QShortcut(QKeySequence(keys), self, context=Qt.WindowShortcut)
        sc.activated.connect(fn)
        return sc

    def tick(self) -> None:
        """Frame clock: refresh views from the core (cheap when nothing changed)."""

    def activated(self) -> None:
        """The panel became the visible page."""

    def deactivated(self) -> None:
        """Another page was selected."""

    def shortcuts(self) -> list[tuple[str, str]]:
        return []

    def shutdown(self) -> None:
        """The main window is closing."""
