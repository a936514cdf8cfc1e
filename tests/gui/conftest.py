"""Fixtures of the GUI tests (pytest-qt, offscreen): the main window on the bench."""

from __future__ import annotations

import gc

import pytest


@pytest.fixture(autouse=True)
def _gc_on_the_test_thread_only(request):
    """As in the app (app/ui/gc_guard.py), no automatic garbage collection while a GUI test runs; the test's
    own thread collects afterwards.  Tests build panels without a main window, so without this the
    interpreter collected on whichever thread allocated: a panel's task thread (reading a Keras model)
    finalized an earlier test's menu, whose C++ destructor waited for the GIL while the test thread, holding
    it, waited for that object's Qt lock, and the session hung.  test_gc_guard.py checks the guard's own
    switching of automatic collection, so it starts with it on.  A window a test left open keeps automatic
    collection off: it is turned back on here, so one test's leftover does not change the next ones."""
    from app.ui.gc_guard import GuiThreadGc

    own = request.module.__name__.rsplit(".", 1)[-1] != "test_gc_guard"
    if own:
        gc.disable()
    yield
    if GuiThreadGc._active:  # noqa: SLF001
        GuiThreadGc._active = 0  # noqa: SLF001
    if own:
        gc.collect()
    gc.enable()


@pytest.fixture()
def ctx(tmp_path):
    """The app's context as it starts (the bench where no hardware is found), in a fresh data folder; a test
    module may define its own (a labelled dataset, no devices)."""
    from app.core.context import AppContext

    c = AppContext.create(tmp_path / "data")
    yield c
    c.close()


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
