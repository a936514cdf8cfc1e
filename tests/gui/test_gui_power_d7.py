"""Power session panel: D7 batch-boundary edges drawn on the plot (toggle), energy between consecutive D7
edges of a round in the "D7 batches" tab, and typing an exact marker time (with validation)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import pytestqt  # noqa: E402 - required (test extra): a broken install fails, never skips
import pytestqt.exceptions
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit

from app.core.markers import MarkerTimeError, parse_marker_time
from app.core.rounds import BatchRow
from app.ui.panels.power import si

pytestmark = pytest.mark.gui


def _stream(panel, qtbot, seconds: float):
    """Click Stream, wait until the power stream exists, then until ``seconds`` of samples followed the click.
    A time-out says where it stuck (the shield's state and message, the devices' log), not only that it did."""
    ctx = panel.ctx
    t_click = ctx.devices.now()
    qtbot.mouseClick(panel.btn_stream, Qt.LeftButton)

    def where() -> str:
        st = panel.shield()
        stream = ctx.devices.power_stream
        return (
            f"shield {st.state.value if st else None} ({st.message if st else ''!r}); "
            f"stream {'none' if stream is None else f'{stream.duration:.2f} s'} at {ctx.devices.now():.2f} s, "
            f"clicked at {t_click:.2f} s; log: {ctx.devices.messages[-5:]}"
        )

    for cond, timeout in (
        (lambda: ctx.devices.power_stream is not None, 30_000),
        (lambda: ctx.devices.power_stream.duration > t_click + seconds, 30_000),
    ):
        try:
            qtbot.waitUntil(cond, timeout=timeout)
        except pytestqt.exceptions.TimeoutError:
            pytest.fail(f"the power stream did not run {seconds} s after the click: {where()}")
    return ctx.devices.power_stream


_SI = {"J": 1.0, "mJ": 1e-3, "µJ": 1e-6, "nJ": 1e-9, "s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}
# a readout of app.ui.panels.power.si, then " ≈" (approximate) and, in a D7 batch cell whose interval lost
# samples, " ≈ (17.57 ms lost)"
_READOUT = re.compile(r"(-?[0-9.]+(?:e[-+]?[0-9]+)?) (\S+)( ≈)?(?: \((-?[0-9.]+(?:e[-+]?[0-9]+)?) (\S+) lost\))?")


def _parts(text: str) -> tuple[float, float | None]:
    """(value, lost seconds or None) of a readout; anything else fails the test, naming the text."""
    m = _READOUT.fullmatch(text)
    assert m is not None and m[2] in _SI and (m[5] is None or (m[3] and m[5] in _SI)), f"not a readout: {text!r}"
    return float(m[1]) * _SI[m[2]], None if m[4] is None else float(m[4]) * _SI[m[5]]


def _si(text: str) -> float:
    return _parts(text)[0]


def _batch_cell(panel, row: int) -> float:
    """The energy in a D7 batch row; a "(… lost)" suffix must say the interval's missing time (the LPM01A stream
    of a loaded machine loses samples now and then: the energy still counts that stretch at the mean)."""
    value, lost = _parts(panel.batch_table.item(row, 3).text())
    b = panel.d7_batches[row]
    if b.missing_s:
        assert lost == pytest.approx(b.missing_s, rel=1e-3), panel.batch_table.item(row, 3).text()
    else:
        assert lost is None, panel.batch_table.item(row, 3).text()
    return value


def test_injected_d7_events_markers_toggle_and_batch_energy(power_window, qtbot):
    win, panel = power_window
    ctx = panel.ctx
    stream = _stream(panel, qtbot, 2.5)
    d = stream.duration
    edges = [d - 2.0, d - 1.6, d - 1.1, d - 0.5]
    for t in edges:
        ctx.devices.power_event(t, "event", "ris")  # what the LPM01A pump does per D7 edge
    ctx.devices.power_event(d - 1.3, "info", "pwr on")  # not a D7 edge: never drawn
    # a round of this session whose three batches lie between those edges (as the Training panel stores it)
    rid = ctx.store.add_round({"mode": "tl", "input_size": 20, "batch_size": 32}, ctx.dataset.id)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        ctx.store.put_round_batch(
            rid, i, BatchRow(i, "main", 1, i, 32, 1.0, 0, 1, 1, b - a, t0=a, t1=b, source="d7").to_dict()
        )
    ctx.store.update_round(rid, status="done")
    ctx.publish("round_finished", round_id=rid)

    panel.follow.setChecked(False)
    panel.plot.setXRange(d - 2.3, d - 0.2, padding=0)
    panel.tick()
    np.testing.assert_allclose(panel.d7_visible, edges)
    x, y = panel.d7_lines.getData()
    np.testing.assert_allclose(x, np.repeat(edges, 2))  # one vertical line per edge, across the view
    (_, _), (y0, y1) = panel.plot.getPlotItem().getViewBox().viewRange()
    assert y.min() == pytest.approx(y0) and y.max() == pytest.approx(y1)
    # the D7 lines are not the user's markers
    assert panel.markers == [] and panel.table.rowCount() == 0
    # zoomed on part of the round: only the edges inside the view
    panel.plot.setXRange(d - 1.7, d - 1.0, padding=0)
    panel.tick()
    np.testing.assert_allclose(panel.d7_visible, edges[1:3])
    # the toggle hides them, and the choice is remembered
    panel.show_d7.setChecked(False)
    panel.tick()
    assert len(panel.d7_visible) == 0 and len(panel.d7_lines.getData()[0] or []) == 0
    assert ctx.settings.get("power.show_d7") is False
    panel.show_d7.setChecked(True)
    panel.tick()
    assert len(panel.d7_visible) == 2

    # per-batch energy between consecutive D7 edges (the frame clock refreshes the tab at most once a second)
    qtbot.waitUntil(lambda: panel.batch_table.rowCount() == 3, timeout=5000)
    assert panel.batch_table.rowCount() == 3 and panel.tabs.tabText(1) == "D7 batches (3)"
    assert f"Round {rid}" in panel.batch_title.text() and "between 4 D7 edges" in panel.batch_title.text()
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        st = stream.stats(a, b)
        e = st.avg * (b - a) * ctx.devices.voltage  # V · mean(I) · Δt, as a round attributes a batch
        assert panel.d7_batches[i].energy_j == pytest.approx(e, rel=1e-12)
        assert _batch_cell(panel, i) == pytest.approx(e, rel=1e-3)
        assert _si(panel.batch_table.item(i, 2).text()) == pytest.approx(b - a, rel=1e-3)
    # picking a batch selects its interval on the plot
    panel.batch_table.selectRow(1)
    assert panel.sel_region.isVisible()
    assert panel.sel_region.getRegion() == pytest.approx((edges[1], edges[2]))


def test_exact_marker_time_entry_and_validation(power_window, qtbot):
    win, panel = power_window
    stream = _stream(panel, qtbot, 2.0)
    panel.follow.setChecked(False)
    m = panel.add_marker(0.5, "start")
    panel.add_marker(1.5, "end")

    # double-click the t cell, type the time, Enter
    item = panel.table.item(0, 1)
    rect = panel.table.visualItemRect(item)
    qtbot.mouseClick(panel.table.viewport(), Qt.LeftButton, pos=rect.center())
    qtbot.mouseDClick(panel.table.viewport(), Qt.LeftButton, pos=rect.center())
    assert panel.table.state() == panel.table.State.EditingState
    editor = next(w for w in panel.table.viewport().findChildren(QLineEdit) if w.isVisible())  # the cell editor
    editor.selectAll()
    qtbot.keyClicks(editor, "1250 ms")
    qtbot.keyClick(editor, Qt.Key_Return)  # the delegate commits on the next event loop turn
    qtbot.waitUntil(lambda: panel.table.state() != panel.table.State.EditingState, timeout=3000)
    moved = next(x for x in panel.markers if x.id == m.id)
    assert moved.t_s == pytest.approx(1.25) and not panel.marker_error.isVisible()
    assert [x.name for x in panel.markers] == ["start", "end"]  # re-sorted by time
    assert panel.table.item(0, 1).text() == "1.250000"
    assert ctx_marker_t(panel, m.id) == pytest.approx(1.25)  # persisted
    assert panel._marker_items[m.id].value() == pytest.approx(1.25)  # noqa: SLF001 - the line moved too

    # bad input: the marker stays, a clear message says why
    for text, why in (
        ("abc", "'abc' is not a time: type seconds, e.g. 12.5, 12.5 s or 12500 ms"),
        ("-1", "t = -1 s is outside the data (0 … "),
        ("1e6 s", "t = 1e+06 s is outside the data (0 … "),
    ):
        panel.table.item(0, 1).setText(text)  # what committing an edit does
        assert ctx_marker_t(panel, m.id) == pytest.approx(1.25)
        assert panel.marker_error.isVisible() and why in panel.marker_error.text(), panel.marker_error.text()
        assert panel.marker_error.text().startswith("Marker start: ")
        assert panel.table.item(0, 1).text() == "1.250000"  # the old time is back in the cell
    assert panel.set_marker_time(m.id, f"{stream.duration - 0.1:.3f}")
    assert not panel.marker_error.isVisible()
    # renaming still works on the name column
    row = next(i for i, x in enumerate(panel.markers) if x.id == m.id)
    panel.table.item(row, 0).setText("late")
    assert any(x.name == "late" for x in panel.markers)


def ctx_marker_t(panel, marker_id: int) -> float:
    return next(x.t_s for x in panel.ctx.store.markers() if x.id == marker_id)


def test_parse_marker_time():
    assert parse_marker_time("12.5", None) == 12.5
    assert parse_marker_time(" 12.5 s ", 20) == 12.5
    assert parse_marker_time("250 µs", 1) == pytest.approx(250e-6)
    assert parse_marker_time(".5", 1) == 0.5 and parse_marker_time("3e-3", 1) == 0.003
    for bad in ("", "1,5", "12 h", "nan", "inf", "1.2.3"):
        with pytest.raises(MarkerTimeError):
            parse_marker_time(bad, 100)
    with pytest.raises(MarkerTimeError, match=r"outside the data \(0 … 2.000000 s\)"):
        parse_marker_time("2.5", 2.0)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_d7_edges_of_a_real_round(qtbot, tmp_path):
    """A short TL round on the virtual bench: its D7 edges are drawn and the energy between consecutive edges
    equals the energy the round attributed to its D7-aligned batches (one implementation: app.core.energy)."""
    from app.core.rounds import RoundConfig, RoundRunner, round_rows
    from app.ui.panels.power import PowerPanel
    from tests.roundkit import bench_context, labelled_dataset

    # keep the whole round at full resolution (the default 30 s of simulated time is < 1 s of wall time
    # at 40x: older batches would get the pyramid's approximate figures)
    ctx = bench_context(tmp_path, power_recent_s=3600.0)
    try:
        labelled_dataset(ctx, seconds_each=20.0)
        res = RoundRunner(ctx.store, ctx.devices, ctx.data_dir, RoundConfig(mode="tl", epochs=1), ctx.dataset.id).run()
        assert res["status"] == "done"
        rows = [b for b in round_rows(ctx.store, res["round_id"]) if b.t0 is not None]
        assert rows
        panel = PowerPanel(ctx)
        qtbot.addWidget(panel)
        panel.resize(1300, 800)
        panel.show()
        panel.follow.setChecked(False)
        panel.plot.setXRange(rows[0].t0 - 0.05, rows[-1].t1 + 0.05, padding=0)
        panel.tick()
        assert len(panel.d7_visible) >= len(rows)  # round start + one edge per batch end (one may be lost)
        qtbot.waitUntil(lambda: len(panel.d7_batches) >= len(rows) - 1, timeout=5000)
        by_start = {round(b.t0, 6): b for b in panel.d7_batches}
        checked = 0
        for r in rows:
            b = by_start.get(round(r.t0, 6))
            if r.source == "d7" and b is not None and b.t1 == pytest.approx(r.t1):
                # one implementation (app.core.energy): the same edges give the same energy, lost samples or not
                assert b.energy_j == pytest.approx(r.energy_j, rel=1e-12)
                checked += 1
        assert checked >= len(rows) - 2, (rows, panel.d7_batches)
        shots = os.environ.get("ODL_SCREENSHOTS")
        if shots:  # the round on the plot: D7 edges, the batches tab, one batch selected
            panel.add_marker(rows[0].t0 + 0.3 * (rows[0].t1 - rows[0].t0), "my marker")
            panel.tabs.setCurrentIndex(1)
            panel.batch_table.selectRow(2)
            panel.plot.setXRange(
                rows[0].t0 - 0.1 * (rows[-1].t1 - rows[0].t0),
                rows[-1].t1 + 0.05 * (rows[-1].t1 - rows[0].t0),
                padding=0,
            )
            for _ in range(5):
                panel.tick()
                qtbot.wait(60)
            panel.grab().save(str(Path(shots) / "power_d7.png"))
    finally:
        ctx.close()


def test_reopened_recording_shows_its_d7_edges_and_batches(power_window, qtbot, tmp_path):
    """Record while D7 edges stream in, reopen the recording: its edges are drawn and the D7 batches tab
    lists the energy between them for the round it recorded; an 'odlstudio power --out' capture with edges
    (no round known) lists every interval between consecutive edges."""
    win, panel = power_window
    ctx = panel.ctx
    stream = _stream(panel, qtbot, 0.5)
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)
    recorder = panel.recorder
    qtbot.waitUntil(lambda: recorder.n_written > 0.3 * stream.rate_hz, timeout=5000)
    d = stream.duration
    edges = [d + 0.3, d + 0.7, d + 1.2, d + 1.6]  # ahead of the stream: they arrive as it streams
    for t in edges:
        ctx.devices.power_event(t, "event", "ris")  # what the LPM01A pump does per D7 edge
    rid = ctx.store.add_round({"mode": "full", "input_size": 40, "batch_size": 32}, ctx.dataset.id)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        ctx.store.put_round_batch(
            rid, i, BatchRow(i, "main", 1, i, 32, 1.0, 0, 1, 1, b - a, t0=a, t1=b, source="d7").to_dict()
        )
    ctx.store.update_round(rid, status="done")
    qtbot.waitUntil(lambda: stream.duration > edges[-1] + 0.3 and recorder.n_events == 4, timeout=10_000)
    live = [stream.stats(a, b).integral * ctx.devices.voltage for a, b in zip(edges[:-1], edges[1:])]
    qtbot.mouseClick(panel.btn_record, Qt.LeftButton)  # stop
    row = ctx.store.recordings("power")[-1]
    assert row.meta["events"] == 4 and row.status == "complete"

    panel.open_recording(row.id, wait=True)
    replay = panel.replay
    assert replay is not None and replay.n_total == row.n_samples
    shifted = np.array(edges) - row.t_offset  # on the recording's own timeline
    np.testing.assert_allclose([t for t, k, _ in replay.events if k == "event"], shifted, atol=1.0 / stream.rate_hz)
    panel.plot.setXRange(0, replay.duration, padding=0)
    panel.tick()
    np.testing.assert_allclose(panel.d7_visible, shifted, atol=1.0 / stream.rate_hz)
    assert len(panel.d7_lines.getData()[0]) == 8
    qtbot.waitUntil(lambda: panel.batch_table.rowCount() == 3 and panel.d7_round is not None, timeout=5000)
    assert f"Round {rid}" in panel.batch_title.text() and "between 4 D7 edges" in panel.batch_title.text()
    for i, b in enumerate(panel.d7_batches):
        st = replay.stats(b.t0, b.t1)
        assert b.exact and b.energy_j == pytest.approx(st.avg * (b.t1 - b.t0) * replay.voltage, rel=1e-12)
        assert b.energy_j == pytest.approx(live[i], rel=2e-3)  # the same samples as live (± one at an edge)
        assert _batch_cell(panel, i) == pytest.approx(b.energy_j, rel=1e-3)
    panel.batch_table.selectRow(2)
    assert panel.sel_region.getRegion() == pytest.approx((shifted[2], shifted[3]), abs=1.0 / stream.rate_hz)
    # back to live: the live edges and the live round again
    panel.back_to_live()
    panel.follow.setChecked(False)
    panel.plot.setXRange(edges[0] - 0.1, edges[-1] + 0.1, padding=0)
    panel.tick()
    np.testing.assert_allclose(panel.d7_visible, edges)
    qtbot.waitUntil(
        lambda: len(panel.d7_batches) == 3 and panel.d7_batches[0].t0 == pytest.approx(edges[0]), timeout=5000
    )

    # a CLI capture with D7 edges and no round of this app
    from device.lpm01a.capture import Block
    from device.lpm01a.decode import StreamEvent
    from device.lpm01a.recorder import Hdf5Writer

    path = tmp_path / "cli_capture.h5"
    x = np.concatenate([np.full(1000, 1e-3), np.full(1000, 4e-3), np.full(1000, 2e-3)])
    with Hdf5Writer(path, 1000.0, "current", voltage_v=3.3) as w:
        for k in range(0, 3000, 500):
            evs = [StreamEvent("event", i, "ris") for i in (500, 1000, 2000, 2500) if k <= i < k + 500]
            w.write(Block(k, x[k : k + 500], 1000.0, events=evs))
    panel.open_file(str(path), wait=True)
    qtbot.waitUntil(lambda: panel.replay is not None and panel.replay_rec.name == "cli_capture.h5", timeout=10_000)
    qtbot.waitUntil(lambda: "cli_capture.h5" in panel.batch_title.text(), timeout=5000)
    assert panel.batch_table.rowCount() == 3 and panel.d7_round is None
    assert "no training round" in panel.batch_title.text()
    assert "cli_capture.h5" in panel.batch_title.text() and "between 4 D7 edges" in panel.batch_title.text()
    expect = [(0.5, 1.0, 0.5 * 1e-3), (1.0, 2.0, 4e-3), (2.0, 2.5, 0.5 * 2e-3)]  # (t0, t1, charge)
    for b, (t0, t1, q) in zip(panel.d7_batches, expect):
        assert (b.t0, b.t1) == pytest.approx((t0, t1)) and b.energy_j == pytest.approx(q * 3.3, rel=1e-6)


def test_d7_tab_marks_intervals_with_lost_samples_and_totals_the_rest(power_window, monkeypatch):
    """An interval without any power sample says "no data" and the total sums the others (was: the whole total
    "—"); an interval with a stretch lost says how long, and that it counts it at the interval's mean."""
    from app.core.streams import SampleStream

    _, panel = power_window
    s = SampleStream("current", 1000.0, 1, unit="A", recent_s=60.0, history_s=60.0)
    s.append(np.full(2000, 1e-3, np.float32))
    s.append_gap(1000)  # 2..3 s lost
    s.append(np.full(2000, 2e-3, np.float32))
    monkeypatch.setattr(panel, "current_stream", lambda: s)
    panel._show_batches(None, [], np.array([0.0, 1.0, 2.0, 3.0, 3.5, 5.0]), source="gap.h5")
    cells = [panel.batch_table.item(i, 3).text() for i in range(panel.batch_table.rowCount())]
    v = panel.voltage
    assert cells[2] == "no data" and "No power samples" in panel.batch_table.item(2, 3).toolTip()
    assert _si(cells[0]) == pytest.approx(v * 1e-3) and _si(cells[3]) == pytest.approx(v * 1e-3)
    total = v * (1e-3 + 1e-3 + 0.5 * 2e-3 + 1.5 * 2e-3)
    assert f"total {si(total, 'J')} over 4 of 5 (the others have no samples)" in panel.batch_title.text()
    # 2.5..3.5 s: half lost, counted at the mean of the half that has samples
    panel._show_batches(None, [], np.array([2.5, 3.5]), source="gap.h5")
    cell = panel.batch_table.item(0, 3)
    assert cell.text() == f"{si(v * 2e-3, 'J')} ≈ (500 ms lost)" and "500 ms of this interval" in cell.toolTip()
    # the live tests read such a cell too (a loaded machine loses LPM01A samples): value and lost time parse
    assert _parts(cell.text()) == pytest.approx((v * 2e-3, 0.5), rel=1e-3)
    assert _batch_cell(panel, 0) == pytest.approx(v * 2e-3, rel=1e-3)
    assert f"total {si(v * 2e-3, 'J')} (no training round" in panel.batch_title.text()
