"""Live accelerometer panel: 3 axes from the NUCLEO board, ODR and full scale, follow-live, zoom/pan."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLabel, QPushButton, QVBoxLayout

from app.core.devices import ACCEL_FS_G, ACCEL_ODR_HZ, DeviceError, DeviceState
from app.ui.panels import PanelSpec
from app.ui.panels.base import Panel
from app.ui.panels.devices import busy_training
from app.ui.widgets.flow import FlowLayout
from app.ui.widgets.stream_plot import StreamPlot


class LiveAccelPanel(Panel):
    def __init__(self, ctx, parent=None):
        super().__init__(ctx, parent)
        lay = QVBoxLayout(self)
        bar = FlowLayout()  # in rows on a narrow window
        self.btn_stream = QPushButton("▶ Stream")
        self.btn_stream.setToolTip("Connect the board (if needed) and start/stop the accelerometer stream (Space)")
        self.odr = QComboBox()
        for hz in ACCEL_ODR_HZ:
            self.odr.addItem(f"{hz:g} Hz", hz)
        self.fs = QComboBox()
        for g in ACCEL_FS_G:
            self.fs.addItem(f"±{g} g", g)
        odr, fs = ctx.devices.accel_default  # what every board found starts with: the remembered settings, or the
        self._select(self.odr, odr)  # board's own where a saved one is broken (a hand-edited 100 Hz showed 12.5 Hz)
        self._select(self.fs, fs)
        self.follow = QCheckBox("Follow live")
        self.follow.setChecked(True)
        self.follow.setToolTip("Scroll with the newest samples (F); zooming or panning turns it off")
        self.window = QDoubleSpinBox()
        self.window.setRange(1, 600)
        self.window.setSuffix(" s")
        self.window.setValue(float(ctx.settings["accel.window_s"]))
        self.activity = QComboBox()
        self.activity.setToolTip("Virtual board only: what the emulated person is doing")
        self.activity.setEnabled(False)
        for w in (
            self.btn_stream,
            QLabel("ODR"),
            self.odr,
            QLabel("Full scale"),
            self.fs,
            self.follow,
            QLabel("Window"),
            self.window,
            QLabel("Activity (virtual)"),
            self.activity,
        ):
            bar.addWidget(w)
        self.info = QLabel()
        bar.addWidget(self.info)
        lay.addLayout(bar)
        self.plot = StreamPlot(
            lambda: self.ctx.devices.accel_stream,
            window_s=self.window.value(),
            label="acceleration",
            units="m/s²",
            names=("x", "y", "z"),
        )
        self.plot.getPlotItem().getAxis("left").enableAutoSIPrefix(False)
        lay.addWidget(self.plot, 1)
        self.btn_stream.clicked.connect(self.toggle_stream)
        self.odr.currentIndexChanged.connect(self._config)
        self.fs.currentIndexChanged.connect(self._config)
        self.follow.toggled.connect(self.plot.set_follow)
        self.plot.followChanged.connect(self._follow_changed)
        self.window.valueChanged.connect(self._window)
        self.activity.activated.connect(self._set_activity)
        self.add_shortcut("F", lambda: self.follow.setChecked(True))
        self.add_shortcut("Space", self.toggle_stream)
        self._version = -1
        self._activities_loaded = False
        # the ODR last sent to the board (its stream may not have it yet): the remembered one, which the board
        # was given when it was found (DeviceManager.accel_default)
        self._sent_odr: float | None = self.odr.currentData()

    @staticmethod
    def _select(combo: QComboBox, value) -> None:
        i = combo.findData(value)
        if i >= 0:
            combo.setCurrentIndex(i)

    def board(self):
        return self.ctx.devices.first("board")

    def toggle_stream(self) -> None:
        st = self.board()
        if st is None:
            self.ctx.status("No NUCLEO board: connect one or start the virtual bench (Devices menu)")
            return
        key = st.info.key
        if st.state == DeviceState.STREAMING:
            self.ctx.devices.set_streaming(key, False)
            return
        if st.state == DeviceState.TRAINING:  # was: nothing, without a word
            self.ctx.status(busy_training(st, "▶ Stream (Space)"), 15000)
            return
        self._config()
        if st.state in (DeviceState.DISCONNECTED, DeviceState.ERROR):
            self.ctx.devices.connect(key)
        self.ctx.devices.set_streaming(key, True)
        self.follow.setChecked(True)

    def _config(self) -> None:
        odr, fs = self.odr.currentData(), self.fs.currentData()
        st = self.board()
        s = self.ctx.devices.accel_stream
        new_rate = s is not None and odr != s.rate_hz
        if st is not None:
            try:
                self.ctx.devices.configure_accel(st.info.key, odr, fs)
            except DeviceError as exc:  # (a Labelling segment is recorded: the ODR stays; the core says why)
                self.odr.blockSignals(True)
                self._select(self.odr, s.rate_hz if s is not None else self.ctx.settings["accel.odr_hz"])
                self.odr.blockSignals(False)
                self.ctx.status(str(exc), 15000)
                return
        self.ctx.settings["accel.odr_hz"] = odr
        self.ctx.settings["accel.fs_g"] = fs
        if st is None:  # what a board found from now on starts with (was: the settings at start-up)
            self.ctx.devices.accel_default = (float(odr), int(fs))
            return
        said = odr == self._sent_odr  # (a full scale picked before the new ODR reached the stream: said once)
        self._sent_odr = odr
        connected = st.state in (DeviceState.READY, DeviceState.STREAMING, DeviceState.TRAINING)
        if new_rate and not said and s is not None and s.n_total > 0:  # was: they vanished unsaid (while
            # disconnected: at the next connection)
            when = "the live stream starts" if connected else "when the board connects, the live stream starts"
            self.ctx.status(
                f"ODR {odr:g} Hz: {when} again at this rate; the samples streamed at {s.rate_hz:g} Hz are no longer "
                "shown (record a segment in the Labelling panel to keep one)",
                15000,
            )

    def _window(self, v: float) -> None:
        self.plot.set_window(v)
        self.ctx.settings["accel.window_s"] = v

    def _follow_changed(self, on: bool) -> None:
        self.follow.blockSignals(True)
        self.follow.setChecked(on)
        self.follow.blockSignals(False)

    def _set_activity(self) -> None:
        st = self.board()
        name = self.activity.currentText()
        if st is not None and name:
            self.ctx.devices.call(st.info.key, lambda c: c.set_activity(name))

    def _load_activities(self, key: str) -> None:
        self._activities_loaded = True

        def done(result, err):
            if err is None and result is not None:
                self._pending_activities = (result.current, list(result.available))

        self.ctx.devices.call(key, lambda c: c.get_activity(), done)

    def tick(self) -> None:
        self.plot.tick()
        dm = self.ctx.devices
        pend = getattr(self, "_pending_activities", None)
        if pend is not None:
            self._pending_activities = None
            cur, names = pend
            self.activity.clear()
            self.activity.addItems(names)
            self.activity.setCurrentText(cur)
            self.activity.setEnabled(bool(names))
        if dm.version == self._version:
            return
        self._version = dm.version
        st = self.board()
        streaming = st is not None and st.state == DeviceState.STREAMING
        self.btn_stream.setText("■ Stop" if streaming else "▶ Stream")
        if st is None:
            self.info.setText("no board")
            return
        if st.info.virtual and st.state in (DeviceState.READY, DeviceState.STREAMING) and not self._activities_loaded:
            self._load_activities(st.info.key)
        s = dm.accel_stream
        extra = f" · {s.rate_hz:g} Hz · {len(s.gaps)} gap(s)" if s is not None else ""
        # the board's (long) name is in the tool tip and the status bar: at the end of the toolbar it was cut
        # off on a 1280-px screen
        self.info.setText(f"{st.state.value}{extra}")
        self.info.setToolTip(f"{st.info.name}: {st.state.value}{extra}")

    def shortcuts(self) -> list[tuple[str, str]]:
        return [
            ("Space", "Start/stop streaming"),
            ("F", "Follow live again"),
            ("Mouse wheel / drag", "Zoom / pan (turns follow-live off)"),
        ]


PANEL = PanelSpec(
    key="live_accel",
    title="Live accelerometer",
    order=20,
    factory=LiveAccelPanel,
    icon="SP_MediaPlay",
    tooltip="3-axis accelerometer stream from the board",
)
