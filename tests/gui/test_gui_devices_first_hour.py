"""The Devices and Live accelerometer panels in a new user's first hour on the virtual bench: the remembered ODR
and full scale, ▶ Stream while a training round holds the board, another ODR while a Labelling segment is
recorded or while streaming, the details pane's words and units."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from PySide6.QtCore import Qt

from app.core.devices import DeviceState

pytestmark = pytest.mark.gui


def _window(qtbot, tmp_path, **settings):
    """(window, ctx, what the status bar was told); ``settings`` were stored by an earlier run of the app."""
    from app.core.context import AppContext
    from app.ui.app import build_window

    if settings:  # stored by an earlier run of the app
        earlier = AppContext.create(tmp_path, bench=False, discover=False)
        for k, v in settings.items():
            earlier.settings[k.replace("__", ".")] = v
        earlier.close()
    ctx = AppContext.create(tmp_path, bench=True)
    win = build_window(ctx)
    qtbot.addWidget(win)
    win.resize(1300, 800)
    win.show()
    texts: list[str] = []
    ctx.subscribe("status", lambda text, **_: texts.append(text))
    return win, ctx, texts


@pytest.fixture()
def bench(qtbot, tmp_path):
    win, ctx, texts = _window(qtbot, tmp_path)
    yield win, ctx, texts
    win.close()
    ctx.close()


def _ready(ctx, qtbot, key: str) -> None:
    ctx.devices.connect(key)
    qtbot.waitUntil(lambda: ctx.devices.status(key).state == DeviceState.READY, timeout=20_000)


def _streaming(win, ctx, qtbot, seconds: float = 1.0):
    live = win.show_panel("live_accel")
    qtbot.mouseClick(live.btn_stream, Qt.LeftButton)
    qtbot.waitUntil(
        lambda: ctx.devices.accel_stream is not None and ctx.devices.accel_stream.n_total > seconds * 52,
        timeout=20_000,
    )
    return live


@contextmanager
def _round_holds(ctx, key: str):
    """What a training round does to the board while this block runs: it holds the board's client."""
    inside, release = threading.Event(), threading.Event()

    def round_() -> None:
        with ctx.devices.board_session(key):
            inside.set()
            release.wait(20)

    th = threading.Thread(target=round_)
    th.start()
    try:
        assert inside.wait(10)
        yield
    finally:
        release.set()
        th.join(10)


def test_the_remembered_odr_and_full_scale_are_applied_before_anything_streams(qtbot, tmp_path):
    """Was: the Live panel's boxes said 104 Hz / ±8 g (remembered), the board streamed at 52 Hz / ±4 g when the
    Devices panel (or a Labelling segment) started it: the boxes were sent only by ▶ Stream."""
    win, ctx, _ = _window(qtbot, tmp_path, accel__odr_hz=104.0, accel__fs_g=8)
    try:
        live = win.panels["live_accel"]
        assert live.odr.currentText() == "104 Hz" and live.fs.currentText() == "±8 g"
        key = ctx.devices.first("board").info.key
        _ready(ctx, qtbot, key)
        dev = win.show_panel("devices")
        dev.table.selectRow([s.info.key for s in dev._statuses].index(key))  # noqa: SLF001
        qtbot.mouseClick(dev.btn_stream, Qt.LeftButton)
        qtbot.waitUntil(lambda: ctx.devices.status(key).state == DeviceState.STREAMING, timeout=10_000)
        details = ctx.devices.status(key).details
        assert details["odr_hz"] == 104.0 and details["fs_g"] == 8
        assert ctx.devices.accel_stream.rate_hz == 104.0
    finally:
        win.close()
        ctx.close()


def test_a_broken_remembered_odr_shows_what_the_board_streams_at(qtbot, tmp_path):
    """A hand-edited "accel.odr_hz": 100 (no ODR of the sensor): the box showed its first item, 12.5 Hz, while
    the board streamed at its 52 Hz."""
    win, ctx, _ = _window(qtbot, tmp_path, accel__odr_hz=100.0, accel__fs_g="8")
    try:
        live = win.panels["live_accel"]
        assert ctx.devices.accel_default == (52.0, 4)
        assert live.odr.currentText() == "52 Hz" and live.fs.currentText() == "±4 g"
    finally:
        win.close()
        ctx.close()


def test_stream_while_a_training_round_holds_the_board_says_why(bench, qtbot):
    """Was: ▶ Stream (Space) and the Devices panel's Start streaming did nothing, without a word, while a round
    held the board (and the wish stayed queued in the session)."""
    win, ctx, texts = bench
    st = ctx.devices.first("board")
    key, name = st.info.key, st.info.name
    _ready(ctx, qtbot, key)
    with _round_holds(ctx, key):
        live = win.show_panel("live_accel")
        qtbot.mouseClick(live.btn_stream, Qt.LeftButton)
        assert texts[-1] == (
            f"{name} is busy with a training round (Training panel): it does not stream during the round; "
            "press ▶ Stream (Space) again when the round has ended"
        )
        dev = win.show_panel("devices")
        dev.table.selectRow([s.info.key for s in dev._statuses].index(key))  # noqa: SLF001
        qtbot.mouseClick(dev.btn_stream, Qt.LeftButton)
        assert texts[-1] == (
            f"{name} is busy with a training round (Training panel): it does not stream during the round; "
            "press Start streaming again when the round has ended"
        )
        assert ctx.devices._session(key).want_stream is False  # noqa: SLF001 - nothing was queued for later
    qtbot.waitUntil(lambda: ctx.devices.status(key).state == DeviceState.READY, timeout=5_000)
    dev.table.clearSelection()
    qtbot.mouseClick(dev.btn_stream, Qt.LeftButton)
    assert texts[-1] == "Select a device first"  # was: nothing


def test_the_odr_stays_while_a_labelling_segment_is_recorded(bench, qtbot):
    """Was: 104 Hz picked while a Labelling segment was recorded started a new stream: the segment got no sample
    more, and Stop saved the 2 s before the change of 7 s recorded, without a word."""
    win, ctx, texts = bench
    live = _streaming(win, ctx, qtbot)
    stream = ctx.devices.accel_stream
    lab = win.show_panel("labelling")
    assert lab.start_recording(None)
    rec = lab.recorder
    qtbot.waitUntil(lambda: rec.n_written > 20, timeout=10_000)
    live = win.show_panel("live_accel")
    live.odr.setCurrentIndex(live.odr.findData(104.0))  # what picking it in the combo box does
    assert texts[-1] == (
        f"The ODR stays 52 Hz while {rec.rec.name!r} is being recorded (a recording has one rate): stop it first "
        "(Labelling panel), then change the ODR"
    )
    assert live.odr.currentText() == "52 Hz" and ctx.settings["accel.odr_hz"] == 52.0
    n = rec.n_written
    qtbot.waitUntil(lambda: rec.n_written > n + 52, timeout=10_000)  # the segment goes on
    assert ctx.devices.accel_stream is stream
    win.show_panel("labelling")
    lab.stop_recording()
    row = ctx.store.recordings("accel")[-1]
    assert row.rate_hz == 52.0 and row.n_samples > n + 52


def test_a_new_odr_while_streaming_says_the_samples_before_are_no_longer_shown(bench, qtbot):
    """Was: the samples streamed at 52 Hz left the plot without a word when 417 Hz was picked."""
    win, ctx, texts = bench
    live = _streaming(win, ctx, qtbot)
    live.odr.setCurrentIndex(live.odr.findData(417.0))
    said = (
        "ODR 417 Hz: the live stream starts again at this rate; the samples streamed at 52 Hz are no longer shown "
        "(record a segment in the Labelling panel to keep one)"
    )
    assert texts == [said]
    # another full scale at once, before the board has the new ODR (was: the message said a second time)
    live.fs.setCurrentIndex(live.fs.findData(16))
    qtbot.waitUntil(lambda: ctx.devices.first("board").details.get("fs_g") == 16, timeout=10_000)
    assert texts == [said] and ctx.devices.accel_stream.rate_hz == 417.0


def test_a_new_odr_while_the_board_is_disconnected_says_when_the_plot_starts_again(bench, qtbot):
    """Was: said nothing; the samples streamed at 52 Hz left the plot at the next connection."""
    win, ctx, texts = bench
    live = _streaming(win, ctx, qtbot)
    key = ctx.devices.first("board").info.key
    ctx.devices.disconnect(key)
    qtbot.waitUntil(lambda: ctx.devices.status(key).state == DeviceState.DISCONNECTED, timeout=10_000)
    old = ctx.devices.accel_stream
    live.odr.setCurrentIndex(live.odr.findData(104.0))
    assert texts == [
        "ODR 104 Hz: when the board connects, the live stream starts again at this rate; the samples streamed at "
        "52 Hz are no longer shown (record a segment in the Labelling panel to keep one)"
    ]
    assert ctx.devices.accel_stream is old  # (not yet: at the connection)
    _ready(ctx, qtbot, key)
    assert ctx.devices.accel_stream is not old and ctx.devices.accel_stream.rate_hz == 104.0


def test_settings_picked_with_no_device_are_what_a_device_found_later_starts_with(offline_ctx, qtbot):
    """Was: kept in the settings only; a board or monitor found later in the same run started at the settings
    the app had at start-up (52 Hz / ±4 g, 100 kS/s at 3.3 V)."""
    from app.core.devices import DeviceInfo
    from app.ui.panels.live_accel import LiveAccelPanel
    from app.ui.panels.power import PowerPanel

    dm = offline_ctx.devices
    live, power = LiveAccelPanel(offline_ctx), PowerPanel(offline_ctx)
    qtbot.addWidget(live)
    qtbot.addWidget(power)
    live.odr.setCurrentIndex(live.odr.findData(208.0))
    live.fs.setCurrentIndex(live.fs.findData(16))
    power.rate.setCurrentIndex(power.rate.findData(10_000))
    power.volt.setValue(2.5)
    assert dm.accel_default == (208.0, 16) and (dm.power_rate_default, dm.power_voltage_default) == (10_000, 2.5)
    board = dm._make(DeviceInfo("board:late", "board", "socket://127.0.0.1:9", "NUCLEO late"))  # noqa: SLF001
    monitor = dm._make(DeviceInfo("powershield:late", "powershield", "socket://127.0.0.1:9", "LPM01A late"))  # noqa: SLF001
    assert (board.odr_hz, board.fs_g, monitor.rate_hz, monitor.voltage) == (208.0, 16, 10_000, 2.5)


def test_the_details_say_each_figure_in_words_with_its_unit(bench, qtbot):
    """Was: "ram_free: 303104", "rate_hz: 100000", "voltage: 3.3", "fs_g: 4", "reconnects: 2" after one unplug
    (the count is of tries)."""
    win, ctx, _ = bench
    for s in ctx.devices.snapshot():
        _ready(ctx, qtbot, s.info.key)
    dev = win.show_panel("devices")
    dev.refresh(force=True)
    keys = [s.info.key for s in dev._statuses]  # noqa: SLF001
    board = ctx.devices.first("board")
    dev.table.selectRow(keys.index(board.info.key))
    lines = dev.details.toPlainText().splitlines()
    d = board.details
    assert lines[4] == "  reconnect attempts: 0"
    want = [
        "  accelerometer ODR: 52 Hz",
        "  accelerometer full scale: ±4 g",
        f"  free RAM: {d['ram_free']:,} bytes ({d['ram_free'] / 1024:.0f} KiB)",
        f"  system clock: {d['sysclk_MHz']:g} MHz",
        f"  firmware: {d['firmware']}",
        "  emulated: yes",
        "  MCU: STM32L496ZG",
    ]
    assert [w for w in want if w not in lines] == []
    assert [x.split(":")[0] for x in lines[5:13]] == [  # in this order (was: sorted by the raw keys)
        "  firmware",
        "  protocol version",
        "  board",
        "  MCU",
        "  sensor",
        "  build",
        "  emulated",
        "  system clock",
    ]
    assert not [x for x in lines if x.split(":")[0].strip() in ("ram_free", "odr_hz", "fs_g", "sysclk_MHz")]
    shield = ctx.devices.first("powershield")
    dev.table.selectRow(keys.index(shield.info.key))
    lines = dev.details.toPlainText().splitlines()
    want = [
        "  sampling rate: 100,000 Hz",
        "  supply voltage: 3.3 V",
        f"  shield ID: {shield.details['board']}",
        f"  firmware: {shield.details['firmware']}",
    ]
    assert [w for w in want if w not in lines] == []
    ctx.devices.set_streaming(shield.info.key, True)
    qtbot.waitUntil(lambda: ctx.devices.power_stream is not None, timeout=10_000)
    dev.refresh(force=True)
    dev.table.selectRow(keys.index(shield.info.key))
    dev._show_details()  # noqa: SLF001
    lines = dev.details.toPlainText().splitlines()
    stream_line = next(x for x in lines if x.startswith("  stream: "))
    assert stream_line.startswith("  stream: 100,000 Hz, ")  # (was "100000 Hz" beside "100,000 Hz")


def test_the_state_column_is_seen_in_an_800x600_window(bench, qtbot):
    """Was: at 800 x 600 the State column was beyond the table's right edge (Device, Kind and Port / URL as wide
    as their contents), seen only by scrolling sideways."""
    win, ctx, _ = bench
    win.resize(800, 600)
    dev = win.show_panel("devices")
    dev.refresh(force=True)
    qtbot.wait(100)
    head = dev.table.horizontalHeader()
    assert head.sectionViewportPosition(3) + head.sectionSize(3) <= dev.table.viewport().width()
    assert [dev.table.horizontalHeaderItem(head.logicalIndex(v)).text() for v in range(6)] == [
        "Device",
        "State",
        "Kind",
        "Port / URL",
        "Firmware",
        "Message",
    ]
    assert dev.table.item(0, 3).text() == ctx.devices.snapshot()[0].state.value  # its column is still 3


def test_disconnect_during_a_training_round_asks_first(bench, qtbot, monkeypatch):
    """Was: Disconnect (button or Devices menu) during a round did it at once: the round ended (its board) or
    lost its later batches' energy (its power monitor), without a word of warning."""
    from PySide6.QtWidgets import QMessageBox

    from app.ui.panels.devices import disconnect

    win, ctx, _ = bench
    board, power = ctx.devices.first("board"), ctx.devices.first("powershield")
    _ready(ctx, qtbot, board.info.key)
    _ready(ctx, qtbot, power.info.key)
    asked: list[str] = []
    answer = [QMessageBox.No]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or answer[0])
    with _round_holds(ctx, board.info.key):
        dev = win.show_panel("devices")
        dev.table.selectRow([s.info.key for s in dev._statuses].index(board.info.key))  # noqa: SLF001
        qtbot.mouseClick(dev.btn_disconnect, Qt.LeftButton)
        assert asked == [
            f"A training round is running on {board.info.name}: disconnecting {board.info.name} ends the round. "
            "Disconnect anyway?"
        ]
        disconnect(win, ctx, power.info.key)  # (what the Devices menu's Disconnect calls)
        assert asked[-1] == (
            f"A training round is running on {board.info.name}: disconnecting {power.info.name} leaves its later "
            "batches without energy. Disconnect anyway?"
        )
        qtbot.wait(300)
        assert ctx.devices.status(board.info.key).state == DeviceState.TRAINING  # No: nothing was done
        assert ctx.devices.status(power.info.key).state == DeviceState.READY
        answer[0] = QMessageBox.Yes
        disconnect(win, ctx, power.info.key)
        qtbot.waitUntil(lambda: ctx.devices.status(power.info.key).state == DeviceState.DISCONNECTED, timeout=10_000)
    n = len(asked)
    qtbot.waitUntil(lambda: ctx.devices.status(board.info.key).state == DeviceState.READY, timeout=5_000)
    disconnect(win, ctx, board.info.key)  # no round: no question
    qtbot.waitUntil(lambda: ctx.devices.status(board.info.key).state == DeviceState.DISCONNECTED, timeout=10_000)
    assert len(asked) == n == 3


def test_time_older_than_the_history_is_shaded_and_said(qtbot):
    """Was (found here): after the live accelerometer's hour of history, the plot showed the time before it as
    empty, without a word.  Shown on a stream with a 20 s history."""
    import numpy as np

    from app.core.streams import SampleStream
    from app.ui.widgets.stream_plot import StreamPlot

    s = SampleStream("accel", 10.0, 3, recent_s=20.0, history_s=20.0, base=10)
    plot = StreamPlot(lambda: s, window_s=10.0)
    qtbot.addWidget(plot)
    s.append(np.zeros((100, 3), np.float32))  # 10 s: all kept
    plot.set_follow(False)
    plot.setXRange(0.0, 10.0, padding=0)
    plot.tick()
    assert s.first_time == 0.0 and (plot._expired is None or not plot._expired.isVisible())  # noqa: SLF001
    s.append(np.zeros((400, 3), np.float32))  # 50 s: the first 30 s have left the history
    t = s.first_time
    assert 25.0 <= t <= 30.0
    plot.setXRange(0.0, 50.0, padding=0)
    plot.tick()
    region = plot._expired  # noqa: SLF001
    assert region is not None and region.isVisible() and region.getRegion() == (0.0, t)
    assert plot._expired_label.format == "not kept: older than the last 20 s"  # noqa: SLF001
    plot.setXRange(t + 1.0, 50.0, padding=0)  # only kept time in view
    plot.tick()
    assert not region.isVisible()
    s2 = SampleStream("accel", 1.0, 3, recent_s=120.0, history_s=120.0, base=10)
    s2.append(np.zeros((400, 3), np.float32))
    plot.source = lambda: s2
    plot.setXRange(0.0, 400.0, padding=0)
    plot.tick()
    assert region.isVisible() and plot._expired_label.format == "not kept: older than the last 2 min"  # noqa: SLF001


def test_with_no_device_selected_the_details_say_so_and_auto_reconnect_is_off_limits(bench, qtbot):
    """Was (helper U): with devices listed but none selected, the details said "No device. Connect a …" and the
    Auto-reconnect box (the selected device's) could be ticked, changing nothing."""
    win, ctx, texts = bench
    dev = win.show_panel("devices")
    dev.refresh(force=True)
    assert dev._statuses  # noqa: SLF001 - the bench's two devices
    dev.table.selectRow(0)
    assert dev.auto.isEnabled() and dev.details.toPlainText().splitlines()[0] == dev._statuses[0].info.name  # noqa: SLF001
    dev.table.clearSelection()
    assert dev.details.toPlainText() == "Select a device to see its details."
    assert not dev.auto.isEnabled()
    dev._statuses = []  # noqa: SLF001 - no device at all
    dev._show_details()  # noqa: SLF001
    assert dev.details.toPlainText().startswith("No device. Connect a NUCLEO-L496ZG / X-NUCLEO-LPM01A by USB")
