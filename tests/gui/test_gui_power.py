"""Power session end to end against the virtual bench: stream 100 kS/s from the emulated LPM01A, place two
markers with the M key, read the energy between them and compare it with numpy on the same samples;
record, reopen, export CSV (capped) and PNG."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.core.test_power_gaps import I_A, gap_stream

pytestmark = pytest.mark.gui


def _energy_cell(panel, row: int) -> float:
    text = panel.table.item(row, 3).text()  # e.g. "1.234 mJ"
    value, unit = text.split()
    return float(value) * {"J": 1.0, "mJ": 1e-3, "µJ": 1e-6, "nJ": 1e-9}[unit]


def test_two_markers_energy_matches_numpy(power_window, qtbot, tmp_path):
    win, panel = power_window
    ctx = win.ctx
    t_click = ctx.devices.now()
    qtbot.mouseClick(panel.btn_stream, Qt.LeftButton)
    qtbot.waitUntil(
        lambda: ctx.devices.power_stream is not None and ctx.devices.power_stream.duration > t_click + 2.0,
        timeout=15_000,
    )
    stream = ctx.devices.power_stream
    assert stream.rate_hz == 100_000
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)  # record while streaming
    qtbot.wait(300)
    # freeze the view on a past second and place markers with the keyboard at the view centre
    panel.follow.setChecked(False)
    t_end = stream.duration
    panel.plot.setXRange(t_end - 1.2, t_end - 1.0, padding=0)
    panel.plot.mouse_x = None
    panel.plot.setFocus()
    qtbot.keyClick(panel.plot, Qt.Key_M)
    panel.plot.setXRange(t_end - 0.6, t_end - 0.4, padding=0)
    qtbot.keyClick(panel.plot, Qt.Key_M)
    assert [m.name for m in panel.markers] == ["M1", "M2"]
    a, b = panel.markers
    assert b.t_s - a.t_s == pytest.approx(0.6, abs=1e-6)

    t, y = stream.samples(a.t_s, b.t_s)
    i = y[:, 0].astype(np.float64)
    assert len(i) == pytest.approx(60_000, abs=2) and np.isfinite(i).all()
    ref = i.sum() / stream.rate_hz * ctx.devices.voltage  # rectangle rule = what the shield integrates
    trap = np.trapezoid(i, dx=1 / stream.rate_hz) * ctx.devices.voltage
    e, st = panel.energy_between(a, b)
    assert st.exact and e == pytest.approx(ref, rel=1e-9)
    assert e == pytest.approx(trap, rel=1e-3)
    assert _energy_cell(panel, 1) == pytest.approx(ref, rel=1e-3)  # shown with 4 significant digits
    assert "energy" in panel.between.text()
    # selection statistics over the same interval agree
    panel.set_selection(a.t_s, b.t_s)
    sel = panel.stats()["selection"]
    assert sel.avg == pytest.approx(i.mean(), rel=1e-9) and sel.max == pytest.approx(i.max())

    # CSV of the selection (size estimate and cap) and PNG of the plot
    statuses: list[str] = []
    ctx.subscribe("status", lambda text, **_: statuses.append(text))
    task = panel.export_csv(str(tmp_path / "sel.csv"), confirm=False)  # written on the task runner
    qtbot.waitUntil(lambda: task.finished, timeout=30_000)
    assert task.result == len(i) and statuses[-1] == f"Exported {len(i):,} rows to {tmp_path / 'sel.csv'}"
    data = np.loadtxt(tmp_path / "sel.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(data[:, 1], i, rtol=1e-6)
    ctx.settings["export.csv_max_rows"] = 1000
    task = panel.export_csv(str(tmp_path / "big.csv"), confirm=False)
    qtbot.waitUntil(lambda: task.finished, timeout=30_000)
    assert task.result is None  # a sentence, not an exception
    assert statuses[-1] == (
        f"Export failed, nothing was written: {len(i):,} rows exceed the CSV cap of 1,000: "
        "select a shorter range or raise the cap"
    )
    assert not (tmp_path / "big.csv").exists()
    assert panel.export_png(str(tmp_path / "plot.png")) and (tmp_path / "plot.png").stat().st_size > 1000
    assert not panel.export_png(str(tmp_path / "gone" / "plot.png"))  # a folder that is not there: said, not silent
    assert statuses[-1] == f"PNG export failed, nothing was written: Qt could not write a PNG in {tmp_path / 'gone'}"

    # stop recording, reopen the file, markers and stats work on the replay
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
    recs = ctx.store.recordings("power")
    assert len(recs) == 1 and recs[0].n_samples > 30_000 and recs[0].status == "complete"
    panel.open_recording(recs[0].id, wait=True)
    assert panel.replay is not None and panel.replay.n_total == recs[0].n_samples
    m1 = panel.add_marker(0.05)
    m2 = panel.add_marker(0.25)
    e2, st2 = panel.energy_between(m1, m2)
    _, y2 = panel.replay.samples(0.05, 0.25)
    assert st2.exact and e2 == pytest.approx(y2[:, 0].astype(np.float64).sum() / 1e5 * panel.voltage, rel=1e-9)
    x0, x1 = panel.plot.visible_range()
    assert panel.window.value() == pytest.approx(x1 - x0, abs=0.006) and panel.window.value() != 2.0
    panel.back_to_live()
    assert panel.current_stream() is stream
    # live again at the span last typed (the Window box had followed the recording's view)
    assert panel.window.value() == ctx.settings["power.window_s"] == 2.0 and panel.plot.window_s == 2.0


def test_power_panel_shows_the_missing_time_and_the_energy_of_the_samples(qtbot, tmp_path, monkeypatch):
    """Issue 12 item 11: a 2-s gap in a 10-s window is said beside Δt and left out of energy and charge."""
    from app.core.context import AppContext
    from app.ui.panels.power import PowerPanel, si

    ctx = AppContext.create(tmp_path, bench=False, discover=False)
    try:
        panel = PowerPanel(ctx)
        qtbot.addWidget(panel)
        panel.resize(1100, 700)
        panel.show()
        s = gap_stream()
        monkeypatch.setattr(panel, "current_stream", lambda: s)
        panel.plot.set_follow(False)
        panel.plot.setXRange(0.0, 10.0, padding=0)
        st = panel.stats()["window"]
        panel._show_stats("window", st)  # noqa: SLF001 - what the 5 Hz refresh does
        lab = panel.stat_labels["window"]
        v = panel.voltage
        assert lab["energy"].text() == si(I_A * 8.0 * v, "J")  # was si(I_A * 10 * v): average x 10 s
        assert lab["charge"].text() == si(I_A * 8.0, "C")
        assert "2 s no data" in lab["Δt"].text()
        assert "not counted" in lab["energy"].toolTip()
        a, b = panel.add_marker(1.0), panel.add_marker(9.0)
        e, _ = panel.energy_between(a, b)
        assert e == pytest.approx(I_A * 6.0 * v, rel=1e-6)
        assert "2 s without data not counted" in panel.between.text()
    finally:
        ctx.close()


def test_rate_choices_are_the_power_monitors_own(qtbot, offline_ctx, monkeypatch):
    """Issue 14: the rate box lists what the monitor in use offers (its ``rates_hz``), not LPM01A constants."""
    from app.ui.panels.power import PowerPanel
    from tests.boardkit import OtherMonitor, add_other_monitor

    def offered(panel):
        return tuple(panel.rate.itemData(i) for i in range(panel.rate.count()))

    panel = PowerPanel(offline_ctx)
    qtbot.addWidget(panel)
    assert offered(panel) == (1_000, 10_000, 50_000, 100_000)  # no monitor yet: the LPM01A's
    assert panel.rate.currentData() == 100_000  # the saved setting
    add_other_monitor(offline_ctx.devices, monkeypatch)
    panel._sync_rates()  # noqa: SLF001 - what Stream does before configuring
    assert offered(panel) == OtherMonitor.rates_hz
    other = PowerPanel(offline_ctx)
    qtbot.addWidget(other)
    assert offered(other) == OtherMonitor.rates_hz
