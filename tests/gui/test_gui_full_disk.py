"""Issue 13 item 1, the GUI half: the Power panel recording onto a disk that fills up stops by itself, says
"disk full" in the status bar, and the app keeps working (streaming goes on, labels of the saved file
load, a new recording is refused with the reason instead of a traceback)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from tests.diskkit import small_tmpfs

pytestmark = pytest.mark.gui


def test_power_recording_on_a_filling_disk_stops_and_says_so(qtbot):
    from app.core.context import AppContext
    from app.ui.app import build_window

    with small_tmpfs("12m") as disk:  # the recorder keeps 8 MB free: ~4 MB = ~10 s at 100 kS/s
        ctx = AppContext.create(disk, bench=True, power_recent_s=10.0)
        said: list[str] = []
        ctx.subscribe("status", lambda text, timeout_ms=0: said.append(text))
        win = build_window(ctx)
        qtbot.addWidget(win)
        win.show()
        panel = win.show_panel("power")
        try:
            qtbot.mouseClick(panel.btn_stream, Qt.LeftButton)
            qtbot.waitUntil(lambda: ctx.devices.power_stream is not None and ctx.devices.power_stream.duration > 1.0,
                            timeout=20_000)  # fmt: skip
            qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
            assert panel.recorder is not None
            qtbot.waitUntil(lambda: panel.recorder is None, timeout=90_000)  # stopped by itself, button released
            assert not panel.btn_record.isChecked()
            assert any("Recording stopped: disk full" in s for s in said), said
            rec = ctx.store.recordings("power")[0]
            assert rec.status == "recovered" and rec.n_samples > 100_000 and "disk full" in rec.meta["error"]
            # still streaming, and a new recording is refused with the reason (no traceback)
            n0 = ctx.devices.power_stream.n_total
            qtbot.waitUntil(lambda: ctx.devices.power_stream.n_total > n0 + 10_000, timeout=10_000)
            said.clear()
            qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
            assert panel.recorder is None and not panel.btn_record.isChecked()
            assert any("disk full" in s and "not enough to start" in s for s in said), said
        finally:
            win.close()
            ctx.close()
