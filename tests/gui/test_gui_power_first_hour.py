"""The Power session panel in a new user's first hour on the virtual bench: the sampling rate changed while
recording, the LPM01A unplugged while recording, Open… of a capture cut short."""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.core.devices import DeviceState
from app.ui.panels.power import si
from device.lpm01a.recorder import recorded_end

pytestmark = pytest.mark.gui


@pytest.fixture()
def said(power_window):
    """(window, panel, what the status bar was told)."""
    win, panel = power_window
    texts: list[str] = []
    panel.ctx.subscribe("status", lambda text, **_: texts.append(text))
    return win, panel, texts


def _streaming(panel, qtbot, seconds: float = 1.0):
    ctx = panel.ctx
    t_click = ctx.devices.now()
    qtbot.mouseClick(panel.btn_stream, Qt.LeftButton)
    qtbot.waitUntil(
        lambda: ctx.devices.power_stream is not None and ctx.devices.power_stream.duration > t_click + seconds,
        timeout=30_000,
    )
    return ctx.devices.power_stream


def test_the_rate_cannot_change_while_recording(said, qtbot):
    """Was: 10 kS/s picked while recording at 100 kS/s started a new stream; the recording got no sample more,
    its "● REC 1.6 s" stood still, and Stop saved the 1.6 s before the change without a word."""
    _, panel, texts = said
    stream = _streaming(panel, qtbot)
    assert stream.rate_hz == 100_000 and panel.rate.currentData() == 100_000
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
    rec = panel.recorder
    qtbot.waitUntil(lambda: rec.n_written > 20_000, timeout=10_000)
    panel.rate.setCurrentIndex(panel.rate.findData(10_000))  # what picking it in the combo box does
    assert texts[-1] == (
        "The sampling rate stays 100 kS/s while recording (a recording has one rate): "
        "stop the recording first, then change the rate"
    )
    assert panel.rate.currentData() == 100_000 and panel.ctx.settings["power.rate_hz"] == 100_000
    before = rec.duration
    qtbot.waitUntil(lambda: rec.duration > before + 0.5, timeout=10_000)  # the recording goes on
    assert panel.ctx.devices.power_stream is stream
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
    row = panel.ctx.store.recordings("power")[-1]
    assert row.rate_hz == 100_000 and row.duration > before + 0.5
    # not recording: the rate changes, and the panel says that the samples before are no longer shown (was
    # silent: the markers' energies turned "—", the window "4.4 s no data")
    panel.rate.setCurrentIndex(panel.rate.findData(10_000))
    assert texts[-1] == (
        "Sampling rate 10 kS/s: the live stream starts again at this rate; the samples streamed at 100 kS/s "
        "are no longer shown (● Record keeps a session in a file)"
    )
    qtbot.waitUntil(lambda: panel.ctx.devices.power_stream.rate_hz == 10_000, timeout=10_000)


def test_the_saved_message_counts_an_outage_as_time_without_data_not_as_samples(said, qtbot):
    """Was: "Saved …: 6.6 s, 664,161 samples" after a 2.4 s outage of the LPM01A, 243,383 of those "samples"
    being the outage's NaN positions."""
    _, panel, texts = said
    ctx = panel.ctx
    _streaming(panel, qtbot)
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
    rec = panel.recorder
    qtbot.waitUntil(lambda: rec.n_written > 20_000, timeout=10_000)
    key = panel.shield().info.key
    ctx.devices.disconnect(key)  # the Devices panel's Disconnect (or the USB cable)
    qtbot.waitUntil(lambda: panel.shield().state == DeviceState.DISCONNECTED, timeout=10_000)
    qtbot.wait(500)
    stream = _streaming(panel, qtbot, 0.5)  # Stream again: reconnects
    assert ctx.devices.power_stream is stream and stream.gaps
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
    row = ctx.store.recordings("power")[-1]
    with h5py.File(ctx.store.resolve(row.path), "r") as f:
        x = f["current"][:]
    lost = int(np.isnan(x).sum())
    assert lost > 0.3 * row.rate_hz and rec.gap_positions == lost
    assert texts[-1] == (
        f"Saved {row.name}: {row.duration:.1f} s, {len(x) - lost:,} samples and "
        f"{si(lost / row.rate_hz, 's')} without data (gaps) → {rec.path}"
    )


def test_open_of_a_capture_cut_short_says_so_at_once(said, tmp_path, monkeypatch, qtbot):
    """Was: Open… of a recording copied half-way froze the app for more than five minutes (an SWMR reader
    retrying the missing metadata), or showed it as whole."""
    _, panel, texts = said
    boxes: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: boxes.append(a[2]))
    _streaming(panel, qtbot)
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.recorder.n_written > 50_000, timeout=10_000)
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
    row = panel.ctx.store.recordings("power")[-1]
    cut = tmp_path / "copied half way.h5"
    shutil.copyfile(panel.ctx.store.resolve(row.path), cut)
    end = recorded_end(cut)[1]
    os.truncate(cut, end // 2)
    panel.open_file(str(cut), wait=True)
    said_ = f"cannot open power file {cut}: the file is cut short: {end // 2:,} of its {end:,} bytes (copy it again)"
    assert boxes == [said_] and texts[-1] == f"Open failed: {said_}"
    assert panel.replay is None
    panel.open_recording(row.id, wait=True)  # the whole one opens
    assert panel.replay is not None and panel.replay.n_total == row.n_samples


def test_neighbouring_markers_labels_are_at_different_heights(said, qtbot):
    """Was: every label at 93 % of the view's height: "start of inference" and "end" one second later ran into
    each other ("start of infereneed") on an 800 px wide window."""
    _, panel, _ = said
    stream = _streaming(panel, qtbot)
    panel.follow.setChecked(False)
    d = stream.duration
    for k, name in enumerate(("start of inference", "end", "idle", "again")):
        panel.add_marker(d - 0.9 + 0.2 * k, name)
    heights = [panel._marker_items[m.id].label.orthoPos for m in panel.markers]  # noqa: SLF001
    assert [m.name for m in panel.markers] == ["start of inference", "end", "idle", "again"]
    assert heights == [0.93, 0.86, 0.79, 0.93]


def test_the_csv_header_has_as_many_fields_as_its_rows(said, qtbot, tmp_path):
    """Was "time_s,current_A  # 100000 Hz, supply 3.3 V": three header fields over two-field rows (a spreadsheet
    showed a column " supply 3.3 V" without data)."""
    import csv

    _, panel, texts = said
    stream = _streaming(panel, qtbot)
    panel.follow.setChecked(False)
    d = stream.duration
    panel.plot.setXRange(d - 0.6, d - 0.5, padding=0)
    task = panel.export_csv(str(tmp_path / "p ü.csv"), confirm=False)
    qtbot.waitUntil(lambda: task.finished, timeout=30_000)
    with open(tmp_path / "p ü.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["time_s", "current_A (at 100000 Hz; supply 3.3 V)"]
    assert len(rows) == task.result + 1 and {len(r) for r in rows} == {2}
    assert texts[-1] == f"Exported {task.result:,} rows to {tmp_path / 'p ü.csv'}"


def test_record_while_a_recording_is_reopened_says_to_go_back_to_live(said, qtbot):
    """Was "Start the live power stream first", the shield streaming and its button saying ■ Stop."""
    _, panel, texts = said
    _streaming(panel, qtbot)
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.recorder.n_written > 20_000, timeout=10_000)
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
    row = panel.ctx.store.recordings("power")[-1]
    panel.open_recording(row.id, wait=True)
    assert panel.replay is not None
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
    assert texts[-1] == f"'{row.name}' is shown: press Back to live first (a recording is made of the live stream)"
    assert panel.recorder is None and not panel.btn_record.isChecked()
    panel.back_to_live()
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
    assert panel.recorder is not None
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
