"""Fixtures of the GUI tests (pytest-qt, offscreen): the main window on the bench."""

from __future__ import annotations

import pytest


@pytest.fixture()
def power_window(qtbot, tmp_path):
    """The main window on the in-process bench, showing the Power session panel: ``(window, panel)``."""
    from app.core.context import AppContext
    from app.ui.app import build_window

    ctx = AppContext.create(tmp_path, bench=True, power_recent_s=10.0)
    win = build_window(ctx)
    qtbot.addWidget(win)
    win.resize(1300, 800)
    win.show()
    panel = win.show_panel("power")
    yield win, panel
    win.close()
    ctx.close()
