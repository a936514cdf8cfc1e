"""What the user sees of a fault (offscreen main window, pytest-qt), the orderly shutdown with a recorder
still running (no write to a closed database), and captures of ``odlstudio power --out`` opened in the
Power panel."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.core.devices import DeviceState

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
POWER, BOARD = "powershield:virtual", "board:virtual"


@pytest.fixture()
def window(qtbot, tmp_path):
    from app.core.context import AppContext
    from app.ui.app import build_window

    ctx = AppContext.create(tmp_path / "data", bench=True, power_recent_s=10.0)
    ctx.devices.configure_power(POWER, 10_000, 3.3)
    win = build_window(ctx)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()
    ctx.close()


def test_unplug_is_said_in_plain_words_and_recovers(window, qtbot):
    ctx = window.ctx
    dm = ctx.devices
    panel = window.show_panel("devices")
    dm.connect(POWER)
    dm.set_streaming(POWER, True)
    qtbot.waitUntil(lambda: dm.status(POWER).state == DeviceState.STREAMING, timeout=10_000)
    qtbot.wait(300)
    dm.unplug(POWER, 1.0)
    # within 2 s the status bar says what happened, in words a user understands
    qtbot.waitUntil(lambda: "USB link to the LPM01A lost" in window.statusBar().currentMessage(), timeout=2000)
    row = [s.info.key for s in panel._statuses].index(POWER)  # noqa: SLF001
    qtbot.waitUntil(
        lambda: "lost" in panel.table.item(row, 5).text() or "reconnect" in panel.table.item(row, 5).text(),
        timeout=2000,
    )
    # then it comes back by itself and the Devices panel says so
    qtbot.waitUntil(
        lambda: dm.status(POWER).state == DeviceState.STREAMING and "reconnected" in dm.status(POWER).message,
        timeout=10_000,
    )
    qtbot.waitUntil(lambda: "streaming" in window.devices_label.text(), timeout=2000)
    # the outage becomes a marked gap when the first block after the reconnect arrives
    qtbot.waitUntil(lambda: bool(dm.power_stream.gaps), timeout=3000)


def test_overcurrent_message_in_status_bar(window, qtbot):
    dm = window.ctx.devices
    window.show_panel("power")
    dm.connect(POWER)
    dm.set_streaming(POWER, True)
    qtbot.waitUntil(lambda: dm.status(POWER).state == DeviceState.STREAMING, timeout=10_000)
    dm.bench.powershield.faults.overcurrent = True
    try:
        qtbot.waitUntil(lambda: "overcurrent" in window.statusBar().currentMessage(), timeout=2000)
        assert dm.status(POWER).state == DeviceState.READY
    finally:
        dm.bench.powershield.faults.overcurrent = False


def test_close_with_a_recorder_running_writes_nothing_after_the_store_closed(tmp_path):
    """Bug: a recorder thread wrote to the closed Store during teardown (sqlite3.ProgrammingError)."""
    from app.core.context import AppContext
    from app.core.recording import StreamRecorder, active_recorders

    errors: list = []
    old = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        ctx = AppContext.create(tmp_path / "data", bench=True)
        dm = ctx.devices
        dm.configure_power(POWER, 10_000, 3.3)
        dm.connect(POWER)
        dm.set_streaming(POWER, True)
        deadline = time.monotonic() + 10
        while (dm.power_stream is None or dm.power_stream.n_total == 0) and time.monotonic() < deadline:
            time.sleep(0.02)
        rec = StreamRecorder(ctx.store, dm.power_stream, "power", "left running")
        time.sleep(0.5)
        ctx.close()  # nobody stopped the recorder
        assert rec.finished and rec not in active_recorders()
        assert not errors, errors
        assert rec._error is None, rec._error  # noqa: SLF001 - it finished cleanly before the close
        from app.core.store import Store, StoreError

        with pytest.raises(StoreError, match="closed"):
            ctx.store.recordings()
        s2 = Store(tmp_path / "data")
        row = s2.recording(rec.rec.id)
        assert row.status == "complete" and row.n_samples == rec.n_written > 0
        s2.close()
    finally:
        threading.excepthook = old


def test_cli_capture_opens_in_the_power_panel(window, qtbot, tmp_path):
    """A capture recorded with ``odlstudio power --out x.h5`` opens in the app (Power › Open… › Other file)."""
    out = tmp_path / "cli.h5"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "power",
            "--port",
            "auto",
            "--freq",
            "10k",
            "--duration",
            "1.5",
            "--out",
            str(out),
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    from device.lpm01a.recorder import read_capture

    cap = read_capture(out)
    panel = window.show_panel("power")
    panel.open_file(str(out), wait=True)
    qtbot.waitUntil(lambda: panel.replay is not None, timeout=20_000)
    s = panel.replay
    assert s.rate_hz == 10_000 and s.n_total == len(cap["samples"]) == 15_000
    t, y = s.samples(0, s.duration)
    assert np.allclose(y[:, 0], cap["samples"].astype(np.float32), equal_nan=True)
    st = s.stats(0.2, 1.2)
    assert st.exact and st.n > 0 and st.avg == pytest.approx(np.nanmean(cap["samples"][2000:12000]), rel=1e-4)
    # it is a recording of the app now (markers attach to it); registering again gives the same row
    from app.core.recording import register_power_file

    assert panel.replay_rec.status == "imported"
    assert register_power_file(window.ctx.store, out).id == panel.replay_rec.id


def test_bad_power_file_is_refused_with_its_name(window, tmp_path):
    import h5py

    from app.core.recording import RecordingError, register_power_file

    bad = tmp_path / "other.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("something", data=np.zeros(10))
    with pytest.raises(RecordingError, match="other.h5.*not a power recording"):
        register_power_file(window.ctx.store, bad)
    not_h5 = tmp_path / "x.h5"
    not_h5.write_text("hello")
    with pytest.raises(RecordingError, match="x.h5"):
        register_power_file(window.ctx.store, not_h5)
