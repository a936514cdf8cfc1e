"""The Devices panel's "Flash ODL firmware…" action: a real board that does not answer HELLO is shown as
needing the ODL firmware with the action offered; the action runs app/core/flashing.py on a task thread
(never the GUI thread) with its progress in the status bar's task bar, and reports the outcome."""

from __future__ import annotations

import threading

import PySide6  # noqa: F401 - a required dependency: a broken install fails, never skips
import pytest

pytestmark = pytest.mark.gui

from tests.boardkit import add_real_board, silent_server  # noqa: E402


@pytest.fixture()
def silent_port():
    with silent_server() as url:
        yield url


@pytest.fixture()
def window(qtbot, tmp_path):
    from app.core.context import AppContext
    from app.ui.app import build_window

    ctx = AppContext.create(tmp_path, bench=False, discover=False)
    win = build_window(ctx)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()
    ctx.close()


def test_needs_firmware_is_shown_and_the_flash_runs_off_the_gui_thread(window, qtbot, silent_port, monkeypatch):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QProgressBar

    from app.core import flashing
    from app.ui.tasks import TaskBar

    dm = window.ctx.devices
    key = add_real_board(dm, silent_port)
    dm.connect(key)
    panel = window.show_panel("devices")
    qtbot.waitUntil(
        lambda: panel.table.rowCount() == 1 and "needs the ODL" in panel.table.item(0, 4).text(), timeout=15000
    )
    panel.table.selectRow(0)
    assert panel.btn_flash.isEnabled() and "bold" in panel.btn_flash.styleSheet()
    assert "needs the ODL firmware: it does not answer HELLO" in panel.details.toPlainText()

    calls = []
    release = threading.Event()

    class Report:
        def summary(self):
            return "flashed ODL firmware 1.0.0 with st-flash (fake)"

    def fake_flash_managed(manager, k, path, progress, cancel):
        calls.append((k, path, threading.current_thread() is threading.main_thread()))
        progress(0.5, "4/8 pages written")
        release.wait(10)
        return Report()

    monkeypatch.setattr(flashing, "flash_managed", fake_flash_managed)
    monkeypatch.setattr(panel, "_ask_flash", lambda st: (True, None))
    qtbot.mouseClick(panel.btn_flash, Qt.LeftButton)
    qtbot.waitUntil(lambda: bool(calls), timeout=5000)
    assert calls[0][:2] == (key, None) and calls[0][2] is False  # a worker thread did the flashing
    bar = window.findChild(TaskBar)
    qtbot.waitUntil(lambda: bar.isVisible() and "Flashing NUCLEO test" in bar.label.text(), timeout=3000)
    qtbot.waitUntil(lambda: bar.findChild(QProgressBar).value() == 500, timeout=3000)
    panel._show_details()  # noqa: SLF001
    assert not panel.btn_flash.isEnabled()  # one flash at a time
    release.set()
    qtbot.waitUntil(lambda: "with st-flash (fake)" in window.statusBar().currentMessage(), timeout=5000)
    qtbot.waitUntil(lambda: not bar.isVisible(), timeout=3000)


def test_a_failed_flash_is_shown_and_virtual_boards_are_not_offered(window, qtbot, silent_port, monkeypatch):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QMessageBox

    from app.core import flashing

    dm = window.ctx.devices
    key = add_real_board(dm, silent_port)
    panel = window.show_panel("devices")
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1, timeout=3000)
    panel.table.selectRow(0)
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: shown.append(text))

    def broken(manager, k, path, progress, cancel):
        raise flashing.FlashError("after flashing, the board does not answer: ... press the black RESET button (B2)")

    monkeypatch.setattr(flashing, "flash_managed", broken)
    monkeypatch.setattr(panel, "_ask_flash", lambda st: (True, None))
    qtbot.mouseClick(panel.btn_flash, Qt.LeftButton)
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    assert "RESET" in shown[0] and "Traceback" not in shown[0]
    assert dm.status(key).info.virtual is False
    # the virtual bench's board: no flash action
    from app.core.devices import DeviceInfo

    info = DeviceInfo("board:virtual", "board", silent_port, "NUCLEO-L496ZG (virtual)", True)
    dm._sessions[info.key] = dm._make(info)  # noqa: SLF001
    dm.notify_changed()
    qtbot.waitUntil(lambda: panel.table.rowCount() == 2, timeout=3000)
    row = next(r for r in range(2) if "virtual" in panel.table.item(r, 0).text())
    panel.table.selectRow(row)
    qtbot.waitUntil(lambda: not panel.btn_flash.isEnabled(), timeout=3000)
