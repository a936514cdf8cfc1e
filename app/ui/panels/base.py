"""Base class of every panel."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from app.core.context import AppContext


class Panel(QWidget):
    """A page of the main window.

    * ``self.ctx`` — the :class:`~app.core.context.AppContext` (store, devices, settings, user, pub/sub).
    * ``self.tasks`` — set by the main window: :class:`app.ui.tasks.TaskRunner` for long work.
    * :meth:`tick` — called by the main window's frame clock (<= 60 Hz) **only while the panel is
      visible**; pull from streams here and skip work when nothing changed.
    * :meth:`activated` / :meth:`deactivated` — the page was shown / hidden.
    * :meth:`shortcuts` — ``[(keys, what)]`` listed in Help > Keyboard shortcuts.
    * :meth:`shutdown` — the app is closing (stop recorders, workers).
    """

    def __init__(self, ctx: AppContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.tasks = None  # set by MainWindow (app.ui.tasks.TaskRunner)

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
