"""Power session panel: live current/power up to 100 kS/s, statistics, named markers with energy between
them, record to disk while streaming, reopen/replay, CSV export (estimated, capped) and PNG export.

The board's D7 batch-boundary edges (``ctx.devices.power_events``, kind ``event``; in a reopened recording
the edges saved in its file) are drawn as thin dashed teal lines (toggle "D7"), distinct from the user's named
red markers; after a training round of this session the "D7 batches" tab lists the energy between
consecutive D7 edges of the round (for a reopened recording: of the newest round it recorded, else every
pair of consecutive edges in the file).  A marker's time can be
typed in exactly (double-click its t cell; "12.5", "12.5 s" or "12500 ms").

Usable on its own: connect only the power shield.  The plot pulls the stream's min/max pyramid at the
frame rate; statistics are recomputed at 5 Hz from full-resolution samples (exact while the range is in
the live ring or in a reopened file).  Energy between markers = mean current × Δt × supply voltage (set in the
toolbar, the monitor's range; one per stream: a new voltage, like a new rate, starts the live stream again).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMenu,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.devices import POWER_MONITOR, DeviceError, DeviceState
from app.core.energy import D7Interval, d7_edges, d7_intervals
from app.core.markers import MarkerTimeError, parse_marker_time
from app.core.outputs import atomic_path, failure_reason
from app.core.recording import (
    RecordingError,
    StreamRecorder,
    csv_estimate,
    csv_export,
    open_power,
    space_warning,
)
from app.core.store import Marker
from app.core.streams import SampleStream, Stats
from app.ui.panels import PanelSpec
from app.ui.panels.base import Column, Panel
from app.ui.panels.base import tool_button as _tool
from app.ui.tasks import Task, start_export
from app.ui.widgets.flow import FlowLayout
from app.ui.widgets.stream_plot import StreamPlot

STAT_ROWS = ("avg", "min", "max", "std", "p2p", "Δt", "charge", "energy")
D7_COLOR = "#2dd4bf"  # teal: board batch boundaries; user markers are red
D7_SETTING = "power.show_d7"
MARKER_LABEL_POS = (0.93, 0.86, 0.79)  # heights of the markers' labels (fraction of the view), in turn


def si(value: float, unit: str) -> str:
    """Engineering format: 0.00123 A -> '1.23 mA'."""
    if value != value or value in (float("inf"), float("-inf")):
        return "—"
    a = abs(value)
    for factor, prefix in ((1.0, ""), (1e-3, "m"), (1e-6, "µ")):
        if a >= factor:
            return f"{value / factor:.4g} {prefix}{unit}"
    return f"{value / 1e-9:.4g} n{unit}"


class _PowerPlot(StreamPlot):
    def __init__(self, panel: "PowerPanel"):
        super().__init__(
            panel.current_stream,
            window_s=float(panel.ctx.settings["power.window_s"]),
            scale=1.0,
            label="current",
            units="A",
            colors=("#f59e0b",),
        )
        self.panel = panel
        self.setFocusPolicy(Qt.StrongFocus)
        self.mouse_x: float | None = None
        self.scene().sigMouseMoved.connect(self._moved)

    def _moved(self, pos) -> None:
        vb = self.getPlotItem().getViewBox()
        self.mouse_x = vb.mapSceneToView(pos).x() if vb.sceneBoundingRect().contains(pos) else None

    def leaveEvent(self, ev):  # noqa: N802 - M with the mouse elsewhere: the middle of the view, not a stale x
        self.mouse_x = None
        super().leaveEvent(ev)

    def keyPressEvent(self, ev):  # noqa: N802
        if not self.panel.handle_key(ev.key(), ev.modifiers()):
            super().keyPressEvent(ev)


class _Tabs(QTabWidget):
    """The Markers and D7 batches tabs: their table shrinks to its minimum before the side column scrolls.  (A
    word-wrapped label in a tab made the tab widget height-for-width, and a layout takes such an item's
    *preferred* height as its least: the side column scrolled at 1280 x 800, where it fits.)"""

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt naming
        return False


class PowerPanel(Panel):
    def __init__(self, ctx, parent=None):
        super().__init__(ctx, parent)
        self.replay: SampleStream | None = None
        self.replay_rec = None
        self.recorder: StreamRecorder | None = None
        self.markers: list[Marker] = []
        self._marker_items: dict[int, pg.InfiniteLine] = {}
        self._last_stats = 0.0
        self.last_saved = None  # path of the newest recording made here
        self._build()  # (a monitor found was given the remembered voltage: DeviceManager.power_voltage_default)

    # --- layout ----------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.addLayout(self._build_toolbar())
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self._build_plot())
        side = QScrollArea()  # the statistics and tabs scroll on a low screen (800 x 600), not the plot
        side.setFrameShape(QScrollArea.NoFrame)
        side.setWidgetResizable(True)
        side.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        side.setWidget(self._build_side())
        side.setMinimumWidth(side.widget().minimumWidth() + side.verticalScrollBar().sizeHint().width())
        split.addWidget(side)
        split.setSizes([1000, 340])
        lay.addWidget(split, 1)
        self._connect()
        self._units()
        self._reload_markers()

    def _build_toolbar(self) -> FlowLayout:
        bar = FlowLayout()  # in rows on a narrow window
        self.btn_stream = _tool("▶ Stream", "Start/stop the power shield's stream")
        self.rate = QComboBox()
        self.volt = QDoubleSpinBox()  # the monitor's supply to the board (LPM01A: "volt", 1.8..3.3 V)
        self.volt.setDecimals(2)
        self.volt.setSingleStep(0.05)
        self.volt.setSuffix(" V")
        self.volt.setKeyboardTracking(False)  # applied on Enter or a step, not at every typed digit
        self.volt.setToolTip(
            "Supply voltage of the board, from the power monitor: the board's current, and so the energy "
            "(charge × this voltage), depend on it. Changing it starts the live stream again"
        )
        self._sync_rates()
        self.show_what = QComboBox()
        self.show_what.addItems(["Current", "Power"])
        self.show_what.setCurrentIndex(1 if self.ctx.settings["power.show"] == "power" else 0)
        self.follow = QCheckBox("Follow live")
        self.follow.setChecked(True)
        self.window = QDoubleSpinBox()
        self.window.setRange(0.001, 3600)
        self.window.setDecimals(3)
        self.window.setSuffix(" s")
        self.window.setValue(float(self.ctx.settings["power.window_s"]))
        self.btn_record = _tool("● Record", "Record the live stream to an HDF5 file beside the database", True)
        self.btn_open = _tool("Open…", "Reopen a recording or an HDF5 capture")
        self.btn_live = _tool("Back to live", "Leave the reopened recording")
        self.btn_live.setEnabled(False)
        self.btn_select = _tool("Selection (S)", "Show/hide the selection (statistics, CSV export)", True)
        self.btn_marker = _tool("Marker (M)", "A named marker at the mouse, or the middle of the view")
        self.show_d7 = QCheckBox("D7")
        self.show_d7.setToolTip("Show the board's D7 batch-boundary edges (dashed teal lines) on the plot")
        self.show_d7.setChecked(bool(self.ctx.settings.get(D7_SETTING, True)))
        self.btn_export = _tool("Export", "CSV of the selection (or the view), PNG of the plot")
        self.btn_export.setPopupMode(QToolButton.InstantPopup)
        menu = QMenu(self.btn_export)
        self.act_csv = menu.addAction("CSV of the selection (or the view)…")
        self.act_png = menu.addAction("PNG of the plot…")
        self.btn_export.setMenu(menu)
        for w in (
            self.btn_stream,
            self.rate,
            self.volt,
            self.show_what,
            self.follow,
            QLabel("Window"),
            self.window,
            self.btn_record,
            self.btn_open,
            self.btn_live,
            self.btn_select,
            self.btn_marker,
            self.show_d7,
            self.btn_export,
        ):
            bar.addWidget(w)
        return bar

    def _build_plot(self) -> _PowerPlot:
        self.plot = _PowerPlot(self)
        self.sel_region = pg.LinearRegionItem(brush=pg.mkBrush(120, 170, 255, 45))
        self.sel_region.setZValue(5)
        self.sel_region.hide()
        self.plot.addItem(self.sel_region)
        self.d7_lines = pg.PlotDataItem(pen=pg.mkPen(D7_COLOR, width=1, style=Qt.DashLine), connect="pairs")
        self.d7_lines.setZValue(3)
        self.plot.addItem(self.d7_lines)
        self.d7_ticks = pg.ScatterPlotItem(symbol="t", size=7, pen=pg.mkPen(None), brush=pg.mkBrush(D7_COLOR))
        self.d7_ticks.setZValue(3)
        self.plot.addItem(self.d7_ticks)
        self._d7_key: tuple | None = None
        self._d7_all_key: tuple | None = None
        self._d7_all = np.empty(0)  # every D7 edge time, sorted
        self.d7_visible = np.empty(0)  # edge times drawn now (for tests and the status line)
        return self.plot

    def _build_side(self) -> QWidget:
        """Source line, window/selection statistics, and the Markers and D7 batches tabs."""
        side = Column()  # in a scroll area: it scrolls only when the window is lower than the column's least height
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        # the source and the recording (its file) here, word-wrapped, not at the end of the toolbar where
        # "● REC …" widened the window to 1647 px
        self.source_label = QLabel()
        self.source_label.setObjectName("powerSource")
        self.source_label.setWordWrap(True)
        self.source_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        sl.addWidget(self.source_label)
        self._build_stats(sl)
        self.tabs = _Tabs()
        self.tabs.addTab(self._build_markers_tab(), "Markers")
        self.tabs.addTab(self._build_batches_tab(), "D7 batches")
        self.d7_batches: list[D7Interval] = []
        self.d7_round: dict | None = None
        self._batches_key: tuple | None = None
        self._last_batches = 0.0
        sl.addWidget(self.tabs, 1)
        side.setMinimumWidth(330)
        return side

    def _build_stats(self, sl: QVBoxLayout) -> None:
        self.stat_labels: dict[str, dict[str, QLabel]] = {}
        for title, key in (("Visible window", "window"), ("Selection", "selection")):
            box = QGroupBox(title)
            grid = QGridLayout(box)
            self.stat_labels[key] = {}
            for r, name in enumerate(STAT_ROWS):
                grid.addWidget(QLabel(name), r, 0)
                val = QLabel("—")
                val.setTextInteractionFlags(Qt.TextSelectableByMouse)
                val.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
                grid.addWidget(val, r, 1)
                self.stat_labels[key][name] = val
            sl.addWidget(box)

    def _build_markers_tab(self) -> QWidget:
        mw = QWidget()
        ml = QVBoxLayout(mw)
        ml.setContentsMargins(4, 4, 4, 4)
        hint = QLabel("Double-click a name or a time to edit it.\nSelect two rows: energy between them.")
        hint.setStyleSheet("QLabel { color: #6b7280; }")
        ml.addWidget(hint)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Name", "t (s)", "Δt prev", "Energy prev"])
        self.table.setToolTip(
            "Double-click a name to rename the marker, or its time to type an exact time "
            "(12.5, 12.5 s, 12500 ms); select two rows for the energy between them"
        )
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        ml.addWidget(self.table, 1)
        self.marker_error = QLabel()
        self.marker_error.setObjectName("markerError")
        self.marker_error.setWordWrap(True)
        self.marker_error.setStyleSheet("QLabel { color: #b91c1c; }")
        self.marker_error.hide()
        ml.addWidget(self.marker_error)
        self.between = QLabel("—")
        self.between.setWordWrap(True)
        self.between.setTextInteractionFlags(Qt.TextSelectableByMouse)
        ml.addWidget(self.between)
        return mw

    def _build_batches_tab(self) -> QWidget:
        bw = QWidget()
        bl = QVBoxLayout(bw)
        bl.setContentsMargins(4, 4, 4, 4)
        self.batch_title = QLabel("Run a training round to see the energy between the board's D7 edges.")
        self.batch_title.setWordWrap(True)
        bl.addWidget(self.batch_title)
        self.batch_table = QTableWidget(0, 4)
        self.batch_table.setHorizontalHeaderLabels(["Batch", "Start (s)", "Δt", "Energy"])
        self.batch_table.setToolTip(
            "Each row spans two consecutive D7 edges of the round (the board raises D7 at "
            "the round start and at every batch end); energy = mean current × Δt × V"
        )
        self.batch_table.verticalHeader().setVisible(False)
        self.batch_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.batch_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.batch_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        bl.addWidget(self.batch_table, 1)
        return bw

    def _connect(self) -> None:
        self.btn_stream.clicked.connect(self.toggle_stream)
        self.rate.currentIndexChanged.connect(self._config)
        self.volt.valueChanged.connect(self._config)
        self.show_what.currentIndexChanged.connect(self._units)
        self.follow.toggled.connect(self.plot.set_follow)
        self.plot.followChanged.connect(
            lambda on: (self.follow.blockSignals(True), self.follow.setChecked(on), self.follow.blockSignals(False))
        )
        self.window.valueChanged.connect(self._window)
        self.plot.getPlotItem().getViewBox().sigXRangeChanged.connect(self._view_changed)
        self.btn_record.toggled.connect(self._record_toggled)
        self.btn_open.clicked.connect(lambda: self.open_recording())
        self.btn_live.clicked.connect(self.back_to_live)
        self.btn_select.toggled.connect(self.toggle_selection)
        self.btn_marker.clicked.connect(lambda: self.add_marker())
        self.act_csv.triggered.connect(lambda: self.export_csv())
        self.act_png.triggered.connect(lambda: self.export_png())
        self.table.itemChanged.connect(self._cell_edited)
        self.table.itemSelectionChanged.connect(self._update_between)
        self.show_d7.toggled.connect(self._d7_toggled)
        self.batch_table.itemSelectionChanged.connect(self._batch_selected)
        self.ctx.subscribe("round_finished", lambda round_id=None, **_: self._invalidate_batches())
        # M, S, F, Delete work whenever the panel is shown, not only after clicking the plot
        for keys, key in (("M", Qt.Key_M), ("S", Qt.Key_S), ("F", Qt.Key_F), ("Delete", Qt.Key_Delete)):
            self.add_shortcut(keys, lambda key=key: self.handle_key(key, Qt.NoModifier))

    # --- sources ---------------------------------------------------------------------------------
    def current_stream(self) -> SampleStream | None:
        return self.replay if self.replay is not None else self.ctx.devices.power_stream

    @property
    def voltage(self) -> float:
        if self.replay is not None:
            return float(getattr(self.replay, "voltage", 3.3))
        return float(self.ctx.devices.voltage)

    def shield(self):
        return self.ctx.devices.first(POWER_MONITOR)

    def current_events(self) -> list:
        """``(t, kind, text)`` stream events on the shown stream's timeline: the live shield's, or those saved
        in the reopened recording."""
        if self.replay is not None:
            return getattr(self.replay, "events", [])
        return self.ctx.devices.power_events

    def toggle_stream(self) -> None:
        st = self.shield()
        if st is None:
            self.ctx.status("No power shield: connect an X-NUCLEO-LPM01A or start the virtual bench")
            return
        if st.state == DeviceState.STREAMING:
            self.ctx.devices.set_streaming(st.info.key, False)
            return
        self._sync_rates(st.info.key)
        self._config()
        if st.state in (DeviceState.DISCONNECTED, DeviceState.ERROR):
            self.ctx.devices.connect(st.info.key)
        self.ctx.devices.set_streaming(st.info.key, True)
        self.back_to_live()

    def _sync_rates(self, key: str | None = None) -> None:
        """The rate choices and the supply-voltage range are the power monitor's own
        (``DeviceManager.power_rates_hz``, ``power_voltage_range``); the chosen rate is kept when the monitor
        offers it, the voltage brought into the range."""
        lo, hi = self.ctx.devices.power_voltage_range(key)
        if (self.volt.minimum(), self.volt.maximum()) != (lo, hi):
            self.volt.blockSignals(True)
            self.volt.setRange(lo, hi)
            self.volt.setValue(self._applied_voltage())
            self.volt.blockSignals(False)
        rates = self.ctx.devices.power_rates_hz(key)
        if [self.rate.itemData(i) for i in range(self.rate.count())] == list(rates):
            return
        want = int(self.rate.currentData() or self.ctx.settings["power.rate_hz"])
        self.rate.blockSignals(True)
        self.rate.clear()
        for hz in rates:
            self.rate.addItem(f"{hz / 1000:g} kS/s", hz)
        self.rate.setCurrentIndex(max(0, self.rate.findData(want)))
        self.rate.blockSignals(False)

    def _applied_voltage(self) -> float:
        """The remembered supply voltage ("power.voltage"; the default where it is not a number)."""
        try:
            return float(self.ctx.settings["power.voltage"])
        except (TypeError, ValueError):
            return 3.3

    def _config(self) -> None:
        """Apply the rate and the supply voltage shown (through ``DeviceManager.configure_power``, on the monitor's
        session thread) and remember them.  A refusal (e.g. while recording: a new rate or voltage is a new
        stream, and the recording got no sample more, its "● REC" time stood still and Stop saved what came
        before without a word) puts the applied values back and says why."""
        hz, volt = int(self.rate.currentData()), round(self.volt.value(), 2)
        st = self.shield()
        if st is not None:
            live, was = self.ctx.devices.power_stream, self.ctx.devices.voltage
            try:
                self.ctx.devices.configure_power(st.info.key, hz, volt)
            except DeviceError as exc:
                for w in (self.rate, self.volt):
                    w.blockSignals(True)
                self.rate.setCurrentIndex(max(0, self.rate.findData(int(self.ctx.settings["power.rate_hz"]))))
                self.volt.setValue(self._applied_voltage())
                for w in (self.rate, self.volt):
                    w.blockSignals(False)
                self.ctx.status(str(exc), 15000)
                return
            # was silent: the markers' energies turned "—" and the window said "4.4 s no data"
            if live is not None and live.n_total and live.rate_hz != hz:
                what, now, before = "rate", f"Sampling rate {hz / 1000:g} kS/s", f"{live.rate_hz / 1000:g} kS/s"
            elif live is not None and live.n_total and was != volt:
                what, now, before = "voltage", f"Supply voltage {volt:g} V", f"{was:g} V"
            else:
                what = ""
            if what:
                self.ctx.status(
                    f"{now}: the live stream starts again at this {what}; the samples streamed at {before} are no "
                    "longer shown (● Record keeps a session in a file)",
                    15000,
                )
        else:  # what a monitor found from now on starts with (was: the settings at start-up)
            self.ctx.devices.power_rate_default, self.ctx.devices.power_voltage_default = hz, volt
        self.ctx.settings["power.rate_hz"] = hz
        self.ctx.settings["power.voltage"] = volt

    def _units(self) -> None:
        power = self.show_what.currentIndex() == 1
        self.ctx.settings["power.show"] = "power" if power else "current"
        self.plot.set_scale(self.voltage if power else 1.0, "power" if power else "current", "W" if power else "A")

    def _window(self, v: float) -> None:
        """The Window box: the span shown from now on (following live: the newest ``v`` s; else around the
        middle of the view)."""
        self.plot.set_window(v)
        self.ctx.settings["power.window_s"] = v
        x0, x1 = self.plot.visible_range()
        mid = x1 - v / 2 if self.plot.follow else (x0 + x1) / 2
        self.plot.setXRange(mid - v / 2, mid + v / 2, padding=0)

    def _view_changed(self, _vb=None, rng=None) -> None:
        """The view's span changed by other means than the Window box (wheel zoom, a reopened recording, a D7
        batch picked): the box shows the span (its signal blocked: no second range change), and following live
        goes on with it."""
        x0, x1 = rng if rng is not None else self.plot.visible_range()
        span = min(max(float(x1) - float(x0), self.window.minimum()), self.window.maximum())
        if round(span, 3) != round(self.window.value(), 3):
            self.window.blockSignals(True)
            self.window.setValue(span)
            self.window.blockSignals(False)
            self.plot.set_window(span)

    # --- recording and replay ----------------------------------------------------------------------
    def _record_toggled(self, on: bool) -> None:
        if on:
            stream = self.ctx.devices.power_stream
            if stream is None or self.replay is not None:
                self.ctx.status(
                    "Start the live power stream first"
                    if self.replay_rec is None
                    # was "Start the live power stream first" beside a streaming shield
                    else f"'{self.replay_rec.name}' is shown: press Back to live first (a recording is made of the "
                    "live stream)"
                )
                self.btn_record.blockSignals(True)
                self.btn_record.setChecked(False)
                self.btn_record.blockSignals(False)
                return
            name = time.strftime("power %Y-%m-%d %H:%M:%S")
            warning = space_warning(self.ctx.store, "power", stream.rate_hz)
            try:
                self.recorder = StreamRecorder(
                    self.ctx.store,
                    stream,
                    "power",
                    name,
                    voltage=self.ctx.devices.voltage,
                    events=self.ctx.devices.power_events,
                )  # D7 edges kept in the file
            except RecordingError as exc:  # full or read-only disk: say so, stay usable
                self.ctx.status(str(exc), 15000)
                self.btn_record.blockSignals(True)
                self.btn_record.setChecked(False)
                self.btn_record.blockSignals(False)
                return
            self.btn_record.setText("■ Stop")
            self.btn_record.setToolTip(f"Stop recording to {self.recorder.path}")
            self.ctx.status(warning or f"Recording to {self.recorder.path}", 15000 if warning else 10000)
        elif self.recorder is not None:
            rec, self.recorder = self.recorder, None
            try:
                row = rec.stop()
            except RecordingError as exc:
                self.btn_record.setText("● Record")
                self.ctx.status(f"Recording failed: {exc}", 15000)
                return
            self.btn_record.setText("● Record")
            self.btn_record.setToolTip("Record the live stream to an HDF5 file beside the database")
            self.ctx.publish("recording_added", recording=row)
            self.last_saved = rec.path
            self.ctx.status(
                (f"Recording stopped: {rec.stop_reason}. " if rec.stop_reason else "")
                + f"Saved {row.name}: {row.duration:.1f} s, {row.n_samples - rec.gap_positions:,} samples"
                + (  # was: the outage's NaN positions counted as samples
                    f" and {si(rec.gap_positions / row.rate_hz, 's')} without data (gaps)" if rec.gap_positions else ""
                )
                + (f", {rec.dropped:,} dropped" if rec.dropped else "")
                + f" → {rec.path}",
                15000,
            )

    OTHER_FILE = "Other HDF5 file (e.g. from 'odlstudio power --out')…"

    def open_file(self, path: str | None = None, wait: bool = False) -> None:
        """Open an HDF5 power file recorded elsewhere (``odlstudio power --out x.h5`` or another data
        directory): it is listed among the recordings from then on (nothing is copied)."""
        from app.core.recording import register_power_file

        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Open power capture", "", "HDF5 (*.h5 *.hdf5)")
            if not path:
                return
        try:
            rec = register_power_file(self.ctx.store, path)
        except RecordingError as exc:
            self.ctx.status(f"Open failed: {exc}")
            QMessageBox.warning(self, "Open power capture", str(exc))
            return
        self.open_recording(rec.id, wait=wait)

    def open_recording(self, rec_id: int | None = None, wait: bool = False) -> None:
        recs = [r for r in self.ctx.store.recordings("power") if r.n_samples > 0]
        if rec_id is None:
            names = [f"{r.id}: {r.name} ({r.duration:.1f} s)" for r in reversed(recs)] + [self.OTHER_FILE]
            choice, ok = QInputDialog.getItem(self, "Open power recording", "Recording:", names, 0, False)
            if not ok:
                return
            if choice == self.OTHER_FILE:
                self.open_file()
                return
            rec_id = int(choice.split(":")[0])
        rec = self.ctx.store.recording(rec_id)

        def work(token, progress):
            return open_power(
                self.ctx.store, rec, progress=lambda f: progress(f, f"{f:.0%}"), cancelled=lambda: token.cancelled
            )

        def done(stream):
            self.replay, self.replay_rec = stream, rec
            self._invalidate_batches()
            if getattr(stream, "events_error", ""):
                self.ctx.status(f"{rec.name}: D7 events not shown — {stream.events_error}")
            self.btn_live.setEnabled(True)
            self.plot.set_follow(False)
            self.plot.setXRange(0, max(stream.duration, 1e-3), padding=0.01)
            self.plot.auto_y = True
            self._reload_markers()
            self._units()

        task = self.tasks.start(
            f"Opening {rec.name}", work, on_done=done, on_error=lambda msg: self.ctx.status(f"Open failed: {msg}")
        )
        if wait:
            from PySide6.QtCore import QCoreApplication

            deadline = time.monotonic() + 60
            while not task.finished and time.monotonic() < deadline:
                QCoreApplication.processEvents()
                time.sleep(0.005)

    def back_to_live(self) -> None:
        if self.replay is not None:
            self.replay, self.replay_rec = None, None
            self._invalidate_batches()
            self._reload_markers()
            # live again at the span last typed, not the reopened recording's (the box followed its view)
            v = float(self.ctx.settings["power.window_s"])
            self.window.blockSignals(True)
            self.window.setValue(v)
            self.window.blockSignals(False)
            self.plot.set_window(self.window.value())
        self.btn_live.setEnabled(False)
        self.plot.set_follow(True)
        self._units()

    # --- selection, markers, statistics ------------------------------------------------------------
    def toggle_selection(self, on: bool | None = None) -> None:
        on = not self.sel_region.isVisible() if on is None else on
        if on:
            x0, x1 = self.plot.visible_range()
            self.sel_region.setRegion((x0 + 0.4 * (x1 - x0), x1 - 0.4 * (x1 - x0)))
        self.sel_region.setVisible(on)
        self.btn_select.blockSignals(True)
        self.btn_select.setChecked(on)
        self.btn_select.blockSignals(False)
        self._last_stats = 0.0

    def set_selection(self, t0: float, t1: float) -> None:
        self.sel_region.setRegion((t0, t1))
        self.toggle_selection(True)
        self.sel_region.setRegion((t0, t1))

    def add_marker(self, t: float | None = None, name: str | None = None) -> Marker:
        """Place a marker at ``t`` (default: under the mouse, else the middle of the view)."""
        if t is None:
            x0, x1 = self.plot.visible_range()
            t = self.plot.mouse_x if self.plot.mouse_x is not None else (x0 + x1) / 2
        name = name or f"M{len(self.markers) + 1}"
        rid = self.replay_rec.id if self.replay_rec is not None else None
        m = self.ctx.store.add_marker(name, float(t), recording_id=rid)
        if self.recorder is not None and rid is None:  # also on the recording being made
            self.ctx.store.add_marker(name, float(t) - self.recorder.rec.t_offset, recording_id=self.recorder.rec.id)
        self._reload_markers()
        return m

    def delete_marker(self, marker_id: int) -> None:
        self.ctx.store.delete_marker(marker_id)
        self._reload_markers()

    def _reload_markers(self) -> None:
        rid = self.replay_rec.id if self.replay_rec is not None else None
        self.markers = self.ctx.store.markers(recording_id=rid) if rid is not None else self.ctx.store.markers()
        for item in self._marker_items.values():
            self.plot.removeItem(item)
        self._marker_items.clear()
        for i, m in enumerate(self.markers):  # (sorted by time)
            line = pg.InfiniteLine(
                m.t_s,
                movable=True,
                pen=pg.mkPen("#e11d48", width=1),
                label=m.name,
                # neighbours' labels at three heights: at one height "start of inference" and "end" a second
                # later ran into each other ("start of infereneed") on a zoomed-out or narrow plot
                labelOpts={"position": MARKER_LABEL_POS[i % len(MARKER_LABEL_POS)], "color": "#e11d48"},
            )
            line.sigPositionChangeFinished.connect(lambda ln, mid=m.id: self._marker_moved(mid, ln.value()))
            self.plot.addItem(line)
            self._marker_items[m.id] = line
        self._fill_table()

    def _marker_moved(self, marker_id: int, t: float) -> None:
        self.ctx.store.update_marker(marker_id, t_s=float(t))
        self.markers = [
            Marker(m.id, m.recording_id, m.name, float(t)) if m.id == marker_id else m for m in self.markers
        ]
        self.markers.sort(key=lambda m: m.t_s)
        self._fill_table()

    def _cell_edited(self, item: QTableWidgetItem) -> None:
        """A name (column 0) or a typed time (column 1) was edited in the markers table."""
        if item.row() >= len(self.markers):
            return
        m = self.markers[item.row()]
        if item.column() == 0:
            if item.text().strip() and item.text() != m.name:
                self.ctx.store.update_marker(m.id, name=item.text().strip())
            self._reload_markers()
        elif item.column() == 1:
            self.set_marker_time(m.id, item.text())

    def set_marker_time(self, marker_id: int, text: str) -> bool:
        """Move a marker to a typed time; a bad time leaves it where it was and says why (red, under the
        table, and in the status bar).  Returns True when the marker moved."""
        m = next((m for m in self.markers if m.id == marker_id), None)
        if m is None:
            return False
        s = self.current_stream()
        try:
            t = parse_marker_time(text, s.duration if s is not None else None)
        except MarkerTimeError as exc:
            msg = f"Marker {m.name}: {exc}"
            self.marker_error.setText(msg)
            self.marker_error.show()
            self.ctx.status(msg)
            self._fill_table()  # put the old time back in the cell
            return False
        self.marker_error.hide()
        self.ctx.store.update_marker(m.id, t_s=t)
        self._reload_markers()
        return True

    def energy_between(self, a: Marker, b: Marker) -> tuple[float, Stats]:
        """Energy (J) between two markers and the current statistics of that interval."""
        s = self.current_stream()
        if s is None:
            raise RecordingError("no power stream")
        st = s.stats(min(a.t_s, b.t_s), max(a.t_s, b.t_s))
        return st.integral * self.voltage, st

    def _fill_table(self) -> None:
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.markers))
        prev = None
        for r, m in enumerate(self.markers):
            cells = [m.name, f"{m.t_s:.6f}", "", ""]
            if prev is not None and self.current_stream() is not None:
                e, st = self.energy_between(prev, m)
                cells[2], cells[3] = si(m.t_s - prev.t_s, "s"), si(e, "J")
            for c, text in enumerate(cells):
                it = QTableWidgetItem(text)
                if c >= 2:  # name and time are editable
                    it.setFlags(it.flags() & ~Qt.ItemIsEditable)
                self.table.setItem(r, c, it)
            prev = m
        self.table.blockSignals(False)
        self._update_between()

    def _update_between(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        pair = [self.markers[r] for r in rows if r < len(self.markers)]
        if len(pair) < 2 and len(self.markers) >= 2:
            pair = self.markers[-2:]
        if len(pair) < 2 or self.current_stream() is None:
            self.between.setText("Place two markers (M) to read the energy between them.")
            return
        a, b = pair[0], pair[-1]
        e, st = self.energy_between(a, b)
        self.between.setText(
            f"<b>{a.name} → {b.name}</b>: Δt {si(st.dt, 's')}, avg {si(st.avg, 'A')}, "
            f"charge {si(st.integral, 'C')}, <b>energy {si(e, 'J')}</b>"
            + (f" ({si(st.missing_s, 's')} without data not counted)" if st.lost_s else "")
            + ("" if st.exact else " (approx.: older than the live ring)")
        )

    def _show_stats(self, key: str, st: Stats | None) -> None:
        labels = self.stat_labels[key]
        if st is None or st.n == 0:
            for v in labels.values():
                v.setText("—")
            return
        power = self.show_what.currentIndex() == 1
        k, unit = (self.voltage, "W") if power else (1.0, "A")
        vals = {
            "avg": si(st.avg * k, unit),
            "min": si(st.min * k, unit),
            "max": si(st.max * k, unit),
            "std": si(st.std * k, unit),
            "p2p": si(st.p2p * k, unit),
            "Δt": si(st.dt, "s") + (f" · {si(st.missing_s, 's')} no data" if st.lost_s else ""),
            "charge": si(st.integral, "C"),
            "energy": si(st.integral * self.voltage, "J"),
        }
        for name, text in vals.items():
            labels[name].setText(text + ("" if st.exact else " ≈"))  # approximate: Δt is the buckets' span too
        gap = bool(st.lost_s)
        tip = (
            f"Sums the {si(st.covered_s, 's')} that have samples; {si(st.missing_s, 's')} without data (gaps, lost "
            "samples) are not counted"
            if gap
            else ""
        )
        for name in ("charge", "energy"):
            labels[name].setToolTip(tip)
        labels["Δt"].setStyleSheet("QLabel { color: #b45309; }" if gap else "")

    def stats(self) -> dict[str, Stats | None]:
        s = self.current_stream()
        if s is None:
            return {"window": None, "selection": None}
        x0, x1 = self.plot.visible_range()
        out = {"window": s.stats(max(0.0, x0), min(s.duration, x1)), "selection": None}
        if self.sel_region.isVisible():
            a, b = self.sel_region.getRegion()
            out["selection"] = s.stats(max(0.0, a), min(s.duration, b))
        return out

    # --- export ----------------------------------------------------------------------------------
    def export_range(self) -> tuple[float, float]:
        if self.sel_region.isVisible():
            return tuple(sorted(self.sel_region.getRegion()))  # type: ignore[return-value]
        return self.plot.visible_range()

    def export_csv(self, path: str | None = None, confirm: bool = True) -> Task | None:
        """The selection (or the visible range) as ``time_s,current_A`` rows, written on the task runner (a
        million rows take seconds); the status bar says the outcome (:func:`app.ui.tasks.start_export`).
        Returns the task, or None when nothing was started (no stream, declined, over the cap, no file)."""
        s = self.current_stream()
        if s is None:  # was: the menu item did nothing at all
            self.ctx.status("CSV export: nothing to export yet; start the power stream or open a recording first")
            return None
        t0, t1 = self.export_range()
        t0, t1 = max(0.0, t0), min(s.duration, t1)
        rows = int((t1 - t0) * s.rate_hz)
        cap = int(self.ctx.settings["export.csv_max_rows"])
        if confirm:
            msg = (
                f"Export {t1 - t0:.4f} s = {rows:,} rows (~{csv_estimate(rows) / 1e6:.1f} MB).\n"
                f"The cap is {cap:,} rows (Excel's limit)."
            )
            if rows > cap:
                QMessageBox.warning(self, "CSV export", msg + "\nSelect a shorter range (S) first.")
                return None
            if QMessageBox.question(self, "CSV export", msg + "\nContinue?") != QMessageBox.Yes:
                return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export CSV", "power.csv", "CSV (*.csv)")
            if not path:
                return None
        got = s.samples(t0, t1)  # a copy: the live buffer moves on while the task writes
        if got is None:
            self.ctx.status(
                "CSV export: the range is no longer in the live buffer; record it, then export from the recording",
                15000,
            )
            return None
        # two fields, as every row: was "time_s,current_A  # 100000 Hz, supply 3.3 V", whose comma made a third
        # column " supply 3.3 V" over no data in a spreadsheet (and in pandas, a column of NaN)
        header = f"time_s,current_A (at {s.rate_hz:g} Hz; supply {self.voltage:g} V)"
        return start_export(
            self.tasks,
            self.ctx.status,
            path,
            lambda check: csv_export(path, got[0], got[1][:, 0], header=header, max_rows=cap),
            "rows",
        )

    def export_png(self, path: str | None = None) -> bool:
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export PNG", "power.png", "PNG (*.png)")
            if not path:
                return False
        try:
            with atomic_path(path) as tmp:
                if not self.plot.grab().save(str(tmp), "PNG"):  # Qt says no more than that
                    raise OSError(f"Qt could not write a PNG in {Path(path).parent}")
        except OSError as exc:
            self.ctx.status(f"PNG export failed, nothing was written: {failure_reason(exc)}", 15000)
            return False
        self.ctx.status(f"Exported the plot to {path}")
        return True

    # --- keys and frame clock ----------------------------------------------------------------------
    def handle_key(self, key: int, mods) -> bool:
        if key == Qt.Key_M:
            self.add_marker()
        elif key == Qt.Key_S:
            self.toggle_selection()
        elif key == Qt.Key_F:
            self.follow.setChecked(True)
        elif key == Qt.Key_Delete:
            rows = sorted({i.row() for i in self.table.selectedIndexes()})
            for r in reversed(rows):
                if r < len(self.markers):
                    self.delete_marker(self.markers[r].id)
        else:
            return False
        return True

    # --- D7 events (board batch boundaries) ------------------------------------------------------
    def _d7_toggled(self, on: bool) -> None:
        self.ctx.settings.set(D7_SETTING, bool(on))
        self._d7_key = None
        self._update_d7()

    def _update_d7(self) -> None:
        """Draw the D7 edges inside the view as thin dashed lines with a small tick at the top (the live
        shield's edges, or those saved in the reopened recording)."""
        vb = self.plot.getPlotItem().getViewBox()
        (x0, x1), (y0, y1) = vb.viewRange()
        events = self.current_events()
        key = (
            id(events),
            self.show_d7.isChecked(),
            len(events),
            events[-1][0] if events else None,
            round(x0, 9),
            round(x1, 9),
            round(y0, 12),
            round(y1, 12),
        )
        if key == self._d7_key:
            return
        self._d7_key = key
        if self.show_d7.isChecked():
            if self._d7_all_key != (key[0],) + key[2:4]:  # new events: re-sort once, then a binary search per frame
                self._d7_all_key, self._d7_all = (key[0],) + key[2:4], d7_edges(events)
            ts = self._d7_all[np.searchsorted(self._d7_all, x0) : np.searchsorted(self._d7_all, x1, side="right")]
        else:
            ts = np.empty(0)
        self.d7_visible = ts
        if len(ts):
            self.d7_lines.setData(np.repeat(ts, 2), np.tile([y0, y1], len(ts)), connect="pairs")
            self.d7_ticks.setData(ts, np.full(len(ts), y1 - 0.03 * (y1 - y0)))
        else:
            self.d7_lines.setData([], [])
            self.d7_ticks.setData([], [])

    def _invalidate_batches(self) -> None:
        self._batches_key = None
        self._last_batches = 0.0

    def _latest_round(
        self, session_id: int | None = None, t_offset: float = 0.0, span: tuple[float, float] | None = None
    ) -> tuple[dict, list] | None:
        """The newest round of session ``session_id`` (default: this one; its batch times are on that session's
        power timeline) that has batches placed on the power timeline — with ``span``, only a round whose
        batches lie inside that interval of the timeline.  Batch times are returned shifted by
        ``-t_offset`` (onto a recording's own timeline)."""
        import dataclasses

        from app.core.rounds import round_rows

        store = self.ctx.store
        sid = store.session_id if session_id is None else session_id
        for r in reversed(store.rounds()):
            if r.get("session_id") != sid:
                continue
            rows = [b for b in round_rows(store, r["id"]) if b.t0 is not None and b.t1 is not None]
            if span is not None:
                rows = [b for b in rows if span[0] <= b.t0 and b.t1 <= span[1]]
            if rows:
                if t_offset:
                    rows = [dataclasses.replace(b, t0=b.t0 - t_offset, t1=b.t1 - t_offset) for b in rows]
                return r, rows
        return None

    def update_batches(self) -> None:
        """Refill the D7 batches table: the energy between consecutive D7 edges of the newest round (live), or
        of a reopened recording (the newest round it recorded, else every pair of consecutive edges)."""
        if self.replay is not None:
            self._replay_batches()
            return
        s = self.ctx.devices.power_stream
        found = self._latest_round()
        if found is None or s is None:
            self._show_batches(
                None,
                [],
                [],
                "Run a training round (with the power shield streaming) to see the "
                "energy between the board's D7 edges here.",
            )
            return
        r, rows = found
        pad = 2.0 / s.rate_hz
        edges = d7_edges(self.ctx.devices.power_events, min(b.t0 for b in rows) - pad, max(b.t1 for b in rows) + pad)
        self._show_batches(r, rows, edges)

    def _replay_batches(self) -> None:
        s, rec = self.replay, self.replay_rec
        found = None
        sid = (rec.meta or {}).get("session_id") if rec is not None else None
        if sid is not None:  # a recording of this app: the rounds of its session that it covers
            pad = 2.0 / s.rate_hz
            found = self._latest_round(int(sid), rec.t_offset, (rec.t_offset - pad, rec.t_offset + s.duration + pad))
        if found is not None:
            r, rows = found
            pad = 2.0 / s.rate_hz
            self._show_batches(
                r, rows, d7_edges(s.events, min(b.t0 for b in rows) - pad, max(b.t1 for b in rows) + pad)
            )
            return
        edges = d7_edges(getattr(s, "events", []))
        name = rec.name if rec is not None else "this recording"
        if len(edges) < 2:
            self._show_batches(None, [], [], f"{name} has {len(edges)} D7 edge(s): no interval to measure.")
            return
        self._show_batches(None, [], edges, source=name)

    def _show_batches(self, r: dict | None, rows: list, edges: np.ndarray, empty: str = "", source: str = "") -> None:
        """Fill the tab with the intervals between consecutive ``edges`` on the shown stream.  The title names
        round ``r`` (and compares the edges with its ``rows``), or recording ``source`` (no round known), or
        says ``empty``."""
        s = self.current_stream()
        self.d7_batches = (
            d7_intervals(np.asarray(edges, np.float64), s, self.voltage) if s is not None and len(edges) else []
        )
        self.d7_round = r
        measured = [b for b in self.d7_batches if b.measured]
        total = si(sum(b.energy_j for b in measured), "J") if measured else "—"
        if len(measured) < len(self.d7_batches):  # a lost interval leaves the others' total, and says so
            total += f" over {len(measured)} of {len(self.d7_batches)} (the others have no samples)"
        if r is not None:
            c = r["config"]
            lost = (
                ""
                if len(edges) == len(rows) + 1
                else f" The board reported {len(rows)} batches: {abs(len(rows) + 1 - len(edges))} edge(s) lost or extra."
            )
            title = (
                f"<b>Round {r['id']}</b> ({str(c.get('mode', '?')).upper()}, T={c.get('input_size', '?')}, "
                f"{r['status']}): {len(self.d7_batches)} intervals between {len(edges)} D7 edges, "
                f"total {total}.{lost}"
            )
        elif source:
            title = (
                f"<b>{source}</b>: {len(self.d7_batches)} intervals between {len(edges)} D7 edges, total {total} "
                "(no training round of this recording is known: every pair of consecutive edges is listed)."
            )
        else:
            title = empty
        self.batch_title.setText(title)
        self.batch_table.setRowCount(len(self.d7_batches))
        for i, b in enumerate(self.d7_batches):
            if not b.measured:
                energy, tip = "no data", "No power samples in this interval (lost blocks or a reconnect gap)."
            elif b.missing_s:
                energy = si(b.energy_j, "J") + f" ≈ ({si(b.missing_s, 's')} lost)"
                tip = (
                    f"{si(b.missing_s, 's')} of this interval has no power samples: its energy counts that stretch "
                    "at the interval's mean current (as a training round's batch energy does)."
                )
            else:
                energy = si(b.energy_j, "J") + ("" if b.exact else " ≈")
                tip = (
                    ""
                    if b.exact
                    else "Read from the history buffer (older than the full-resolution ring): its ends are rounded "
                    "to whole buckets."
                )
            for j, text in enumerate((str(b.index), f"{b.t0:.4f}", si(b.t1 - b.t0, "s"), energy)):
                it = QTableWidgetItem(text)
                it.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                if j == 3 and tip:
                    it.setToolTip(tip)
                self.batch_table.setItem(i, j, it)
        self.tabs.setTabText(1, f"D7 batches ({len(self.d7_batches)})" if self.d7_batches else "D7 batches")

    def _batch_selected(self) -> None:
        rows = sorted({i.row() for i in self.batch_table.selectedIndexes()})
        if not rows or rows[-1] >= len(self.d7_batches):
            return
        a, b = self.d7_batches[rows[0]].t0, self.d7_batches[rows[-1]].t1
        self.follow.setChecked(False)
        self.plot.set_follow(False)
        pad = 0.1 * (b - a)
        self.plot.setXRange(a - pad, b + pad, padding=0)
        self.set_selection(a, b)

    def tick(self) -> None:
        if self.recorder is not None and self.recorder.finished:  # stopped by itself (full disk)
            self.btn_record.setChecked(False)
        self.plot.tick()
        self._update_d7()
        now = time.monotonic()
        if now - self._last_stats >= 0.2:
            self._last_stats = now
            st = self.stats()
            self._show_stats("window", st["window"])
            self._show_stats("selection", st["selection"])
            shield = self.shield()
            streaming = shield is not None and shield.state == DeviceState.STREAMING
            self.btn_stream.setText("■ Stop" if streaming else "▶ Stream")
            if self.replay_rec is not None:
                src = f"Replay: {self.replay_rec.name}"
            elif shield is not None:
                src = f"{shield.info.name}: {shield.state.value}"
            else:
                src = "no power shield"
            if self.recorder is not None:
                src += f"  ● REC {self.recorder.duration:.1f} s → {self.recorder.rel_path}" + (
                    f" ({self.recorder.dropped:,} dropped)" if self.recorder.dropped else ""
                )
                self.source_label.setToolTip(str(self.recorder.path))
            elif self.last_saved is not None:
                src += f"  (last recording: {self.last_saved.name})"
                self.source_label.setToolTip(str(self.last_saved))
            self.source_label.setText(src)
            if self.show_what.currentIndex() == 1 and self.plot.scale != self.voltage:
                self._units()  # a new supply voltage (a new stream): power = current × it
            if self.markers and self.plot.follow and self.table.state() != QAbstractItemView.EditingState:
                self._fill_table()
            events = self.current_events()
            rounds_key = (id(events), len(events), id(self.current_stream()), self._rounds_version())
            if rounds_key != self._batches_key and now - self._last_batches >= 1.0:
                self._last_batches = now
                self._batches_key = rounds_key
                self.update_batches()

    def _rounds_version(self) -> tuple:
        """Change key of this session's rounds: id and status of the newest (new batches of a running round
        come with new D7 edges, which the caller's key counts)."""
        sid = self.ctx.store.session_id
        mine = [(r["id"], r["status"]) for r in self.ctx.store.rounds() if r.get("session_id") == sid]
        return mine[-1] if mine else ()

    def shortcuts(self) -> list[tuple[str, str]]:
        return [
            ("M", "Marker at the mouse (or the middle of the view)"),
            ("S", "Show/hide the selection"),
            ("F", "Follow live again"),
            ("Delete", "Delete the selected markers"),
            ("Wheel / drag", "Zoom / pan while streaming"),
        ]

    def shutdown(self) -> None:
        if self.recorder is not None:
            self.btn_record.setChecked(False)


PANEL = PanelSpec(
    key="power",
    title="Power session",
    order=50,
    factory=PowerPanel,
    icon="SP_DriveHDIcon",
    tooltip="Current/power up to 100 kS/s, markers, energy, record and replay",
)
