"""Fixtures of the GUI tests (pytest-qt, offscreen): the main window on the bench."""

from __future__ import annotations

import gc

import pytest


@pytest.fixture(autouse=True)
def _gc_back_after_each_test():
    """A window a test left open keeps automatic garbage collection off (app/ui/gc_guard.py): turn it back on
    so that one test's leftover does not change the next ones."""
    yield
    from app.ui.gc_guard import GuiThreadGc

    if GuiThreadGc._active:  # noqa: SLF001
        GuiThreadGc._active = 0  # noqa: SLF001
    gc.enable()


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
