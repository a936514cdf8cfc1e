"""View › Messages: the status bar shows a message for 5–15 s and cuts what is wider than the window (at 800 px,
the end of "Recorded … → <file>"); every message of the session is kept, whole, with its time."""

from __future__ import annotations

import time

import pytest

from app.core.devices import DeviceInfo
from app.ui.main_window import MESSAGES_TIP
from app.ui.widgets.messages import EMPTY, MessagesDialog, message_line

pytestmark = pytest.mark.gui


@pytest.fixture()
def window(qtbot, offline_ctx):
    from app.ui.app import build_window

    win = build_window(offline_ctx)
    qtbot.addWidget(win)
    win.resize(800, 600)
    win.show()
    return win


def _at(hms: str) -> float:
    return time.mktime(time.strptime(f"2026-12-07 {hms}", "%Y-%m-%d %H:%M:%S"))


def test_message_line_gives_the_time_of_day_and_keeps_line_breaks_indented():
    assert message_line(_at("09:05:07"), "Recorded walking → /data/rec 1.h5") == (
        "09:05:07  Recorded walking → /data/rec 1.h5"
    )
    assert message_line(_at("23:59:59"), "first\nsecond") == "23:59:59  first\n          second"


def test_every_message_is_kept_whole_and_listed_with_its_time(window, qtbot):
    ctx = window.ctx
    dlg = window.show_messages()
    assert isinstance(dlg, MessagesDialog) and dlg.windowTitle() == "Messages"
    assert dlg.text.toPlainText() == EMPTY == "No message yet in this session."
    path = "/home/ann/.local/share/odlstudio/recordings/" + "x" * 120 + ".h5"
    window.ctx.status(f"Recorded walking (12.0 s) → {path}", 15000)
    assert window.statusBar().currentMessage().endswith(".h5")
    ((t0, text0),) = ctx.messages
    assert text0 == f"Recorded walking (12.0 s) → {path}" and abs(t0 - time.time()) < 5
    assert dlg.text.toPlainText() == message_line(t0, text0)  # (was empty: replaced, not appended)
    ctx.status("second")
    assert dlg.text.toPlainText() == message_line(t0, text0) + "\n" + message_line(*ctx.messages[-1])
    assert window.show_messages() is dlg  # one dialog: asked again, it comes to the front
    n = len(ctx._subs["status"])  # noqa: SLF001
    dlg.close()
    qtbot.waitUntil(lambda: window.findChild(MessagesDialog) is None, timeout=5000)  # deleted on close ...
    assert len(ctx._subs["status"]) == n - 1  # noqa: SLF001 - ... and no longer told
    ctx.status("third")  # (was it still subscribed: a deleted widget would raise here)
    again = window.show_messages()
    assert again is not dlg and again.text.toPlainText().splitlines()[-1] == message_line(*ctx.messages[-1])
    assert len(again.text.toPlainText().splitlines()) == 3


def test_the_status_bar_tool_tip_gives_the_message_whole_and_says_where_the_others_are(window):
    sb = window.statusBar()
    assert sb.toolTip() == MESSAGES_TIP == "View › Messages (Ctrl+Shift+M) lists every message of this session."
    window.ctx.status("A long message " * 20)
    assert sb.toolTip() == "A long message " * 20 + "\n\n" + MESSAGES_TIP
    sb.clearMessage()
    assert sb.toolTip() == MESSAGES_TIP


def test_the_view_menu_and_the_shortcut_list_offer_the_messages(window):
    view = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    act = next(a for a in view.actions() if a.text() == "&Messages…")
    assert act.shortcut().toString() == "Ctrl+Shift+M"
    act.trigger()
    assert window.findChild(MessagesDialog).isVisible()
    from app.ui.main_window import GLOBAL_SHORTCUTS

    assert ("Ctrl+Shift+M", "Messages: every status-bar message of this session") in GLOBAL_SHORTCUTS


def test_a_device_fault_is_kept_with_the_messages(window):
    """Was: said on the status bar alone (15 s), not through the context."""
    dm = window.ctx.devices
    dm._sessions["board:t"] = dm._make(DeviceInfo("board:t", "board", "socket://127.0.0.1:9", "NUCLEO t"))  # noqa: SLF001
    dm.fault("board:t", "link lost: no answer for 3 s")
    window._update_status()  # noqa: SLF001 - the next frame
    assert window.ctx.messages[-1][1] == "NUCLEO t: link lost: no answer for 3 s"
    assert window.statusBar().currentMessage() == "NUCLEO t: link lost: no answer for 3 s"
