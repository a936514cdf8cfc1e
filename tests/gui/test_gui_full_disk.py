"""Issue 13 item 1, the GUI half: a Power panel or Labelling panel recording onto a disk that fills up stops by
itself, says "disk full" in the status bar (the Power panel warns first that the disk is nearly full), and the app
keeps working (streaming goes on, the segment is kept, a new recording is refused with the reason instead of a
traceback)."""

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
            assert any("MB free" in s and "stops by itself" in s for s in said), said  # warned before it fills
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


def test_accel_recording_on_a_filling_disk_stops_and_says_so(qtbot):
    """The Labelling panel's recording (52 Hz: the disk fills because something else fills it): stops by itself
    with the reason in the status bar, the Record button released, the segment kept and labelled; the stream
    goes on and a new recording is refused with the reason."""
    from app.core.context import AppContext
    from app.core.recording import RECORDING_RESERVE
    from app.ui.app import build_window
    from device.lpm01a.recorder import room_left

    with small_tmpfs("12m") as disk:
        ctx = AppContext.create(disk, bench=True, bench_kwargs={"time_scale": 1.0})
        said: list[str] = []
        ctx.subscribe("status", lambda text, timeout_ms=0: said.append(text))
        win = build_window(ctx)
        qtbot.addWidget(win)
        win.show()
        try:
            live = win.show_panel("live_accel")
            qtbot.mouseClick(live.btn_stream, Qt.LeftButton)
            qtbot.waitUntil(
                lambda: ctx.devices.accel_stream is not None and ctx.devices.accel_stream.n_total > 20, timeout=20_000
            )
            panel = win.show_panel("labelling")
            panel.class_combo.setCurrentIndex(0)
            qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
            assert panel.recorder is not None and panel.btn_record.isChecked()
            rec_id = panel.recorder.rec.id
            qtbot.waitUntil(lambda: panel.recorder is not None and panel.recorder.n_written > 0, timeout=10_000)
            # another program takes the disk down to 1 MB below the recorder's reserve
            with open(disk / "filler", "wb") as fh:
                fh.write(b"\0" * (room_left(disk) - (RECORDING_RESERVE - (1 << 20))))
            qtbot.waitUntil(lambda: panel.recorder is None, timeout=30_000)  # stopped by itself
            assert not panel.btn_record.isChecked()
            assert any("Recording stopped: disk full" in s for s in said), said
            row = ctx.store.recording(rec_id)
            assert row.status == "recovered" and row.n_samples > 0 and "disk full" in row.meta["error"]
            assert [lab.label for lab in ctx.store.labels(rec_id)] == [panel.classes[0]]  # the segment's label
            n0 = ctx.devices.accel_stream.n_total  # still streaming
            qtbot.waitUntil(lambda: ctx.devices.accel_stream.n_total > n0 + 20, timeout=10_000)
            said.clear()
            qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
            assert panel.recorder is None and not panel.btn_record.isChecked()
            assert any("not enough to start" in s for s in said), said
        finally:
            win.close()
            ctx.close()
