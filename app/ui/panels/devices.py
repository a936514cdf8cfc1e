"""Devices panel: discovered boards and power shields (real and virtual) with their state."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app.core.devices import DeviceState, DeviceStatus
from app.ui.panels import PanelSpec
from app.ui.panels.base import Panel
from app.ui.widgets.flow import FlowLayout
from device.monitor import is_monitor

STATE_COLORS = {
    DeviceState.DISCONNECTED: "#9ca3af",
    DeviceState.CONNECTING: "#f59e0b",
    DeviceState.READY: "#3b82f6",
    DeviceState.STREAMING: "#10b981",
    DeviceState.TRAINING: "#8b5cf6",
    DeviceState.ERROR: "#ef4444",
}
COLUMNS = ("Device", "Kind", "Port / URL", "State", "Firmware", "Message")


def _bytes(n) -> str:
    return f"{int(n):,} bytes ({int(n) / 1024:.0f} KiB)"


#: The details pane's lines for the devices' detail keys: (label, how the value is written).  Before, the raw
#: keys and values: "ram_free: 303104", "rate_hz: 100000", "voltage: 3.3", "fs_g: 4" (numbers without units).
DETAIL_LINES: dict[str, tuple[str, object]] = {
    "firmware": ("firmware", str),
    "needs_firmware": ("needs the ODL firmware", str),
    "protocol": ("protocol version", str),
    "board": ("board", str),
    "mcu": ("MCU", str),
    "sensor": ("sensor", str),
    "build": ("build", str),
    "emulated": ("emulated", lambda v: "yes" if v else "no"),
    "sysclk_MHz": ("system clock", lambda v: f"{float(v):g} MHz"),
    "ram_free": ("free RAM", _bytes),
    "odr_hz": ("accelerometer ODR", lambda v: f"{float(v):g} Hz"),
    "fs_g": ("accelerometer full scale", lambda v: f"±{v} g"),
    "tx_dropped": ("frames the board could not send (its transmit buffer full)", lambda v: f"{int(v):,}"),
    "rx_errors": ("frames the board received damaged", lambda v: f"{int(v):,}"),
    "rate_hz": ("sampling rate", lambda v: f"{float(v):,.0f} Hz"),
    "voltage": ("supply voltage", lambda v: f"{float(v):g} V"),
    "lost": ("samples lost", lambda v: f"{int(v):,}"),
    "buffer_pct": ("capture buffer", lambda v: f"{float(v):.0f} % full"),
}


def detail_line(key: str, value, kind: str = "board") -> str:
    """One line of the details pane: the key in words, the value with its unit."""
    label, fmt = DETAIL_LINES.get(key, (key, str))
    if key == "board" and is_monitor(kind):
        label = "shield ID"
    try:
        text = fmt(value)  # type: ignore[operator]
    except (TypeError, ValueError):
        text = str(value)
    return f"{label}: {text}"


class DevicesPanel(Panel):
    def __init__(self, ctx, parent=None):
        super().__init__(ctx, parent)
        self._version = -1
        self._details_t = 0.0
        self._statuses: list[DeviceStatus] = []
        lay = QVBoxLayout(self)
        bar = FlowLayout()  # in rows on a narrow window
        self.btn_connect = QPushButton("Connect")
        self.btn_disconnect = QPushButton("Disconnect")
        self.btn_stream = QPushButton("Start streaming")
        self.btn_rescan = QPushButton("Rescan")
        self.btn_unplug = QPushButton("Simulate unplug (1 s)")
        self.btn_unplug.setToolTip("Virtual devices: drop the link for 1 s to see auto-reconnect and the marked gap")
        self.btn_flash = QPushButton("Flash ODL firmware…")
        self.btn_flash.setToolTip("Put the ODL firmware this app ships on the selected NUCLEO-L496ZG (real boards)")
        self.auto = QCheckBox("Auto-reconnect")
        self.auto.setChecked(True)
        for w in (
            self.btn_connect,
            self.btn_disconnect,
            self.btn_stream,
            self.btn_rescan,
            self.btn_unplug,
            self.btn_flash,
        ):
            bar.addWidget(w)
        bar.addWidget(self.auto)
        self.summary = QLabel()
        bar.addWidget(self.summary)
        lay.addLayout(bar)
        split = QSplitter(Qt.Vertical)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        # State shown second (its column stays 3): at 800 x 600 it was beyond the right edge, behind a scroll bar
        self.table.horizontalHeader().moveSection(COLUMNS.index("State"), 1)
        split.addWidget(self.table)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        split.addWidget(self.details)
        split.setSizes([300, 200])
        lay.addWidget(split, 1)
        self.btn_connect.clicked.connect(lambda: self._each(self.ctx.devices.connect))
        self.btn_disconnect.clicked.connect(lambda: self._each(lambda key: disconnect(self, self.ctx, key)))
        self.btn_stream.clicked.connect(self._toggle_stream)
        self.btn_rescan.clicked.connect(self._rescan)
        self.btn_unplug.clicked.connect(lambda: self._each(lambda k: self.ctx.devices.unplug(k, 1.0)))
        self.btn_flash.clicked.connect(self._flash)
        self.auto.toggled.connect(lambda on: self._each(lambda k: self.ctx.devices.set_auto_reconnect(k, on)))
        self.table.itemSelectionChanged.connect(self._show_details)
        self.refresh(force=True)

    # --- helpers ---------------------------------------------------------------------------------
    def selected(self) -> DeviceStatus | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if rows and rows[0].row() < len(self._statuses):
            return self._statuses[rows[0].row()]
        return None

    def _each(self, fn) -> None:
        st = self.selected()
        if st is None:
            self.ctx.status("Select a device first")
            return
        try:
            fn(st.info.key)
        except Exception as exc:  # noqa: BLE001 - shown, never raised into Qt
            self.ctx.status(str(exc))

    def _toggle_stream(self) -> None:
        st = self.selected()
        if st is None:
            self.ctx.status("Select a device first")  # was: nothing, without a word
            return
        st = self.ctx.devices.status(st.info.key)  # its state now, not at the last refresh
        if st.state == DeviceState.TRAINING:  # was: nothing, and the wish kept for later
            self.ctx.status(busy_training(st), 15000)
            return
        on = st.state != DeviceState.STREAMING
        if st.state in (DeviceState.DISCONNECTED, DeviceState.ERROR):
            self.ctx.devices.connect(st.info.key)
        self.ctx.devices.set_streaming(st.info.key, on)

    # --- flashing (app/core/flashing.py; the work runs on a task thread) ----------------------------------
    def _flash(self) -> None:
        from app.core import flashing

        st = self.selected()
        if st is None or st.info.kind != "board" or st.info.virtual:
            self.ctx.status("Select a real NUCLEO board to flash (the virtual bench's board needs no firmware)")
            return
        ok, path = self._ask_flash(st)
        if not ok or self.tasks is None:
            return
        key, name = st.info.key, st.info.name
        self.btn_flash.setEnabled(False)

        def work(token, progress):
            return flashing.flash_managed(self.ctx.devices, key, path, progress=progress, cancel=token)

        def done(report) -> None:
            self.ctx.status(report.summary())
            self.ctx.devices.log(f"{name}: {report.summary()}")
            self.refresh(force=True)

        def failed(msg: str) -> None:
            self.refresh(force=True)
            if msg != "cancelled":
                QMessageBox.warning(self, "Flash ODL firmware", msg)

        self.tasks.start(f"Flashing {name}", work, on_done=done, on_error=failed)

    def _ask_flash(self, st: DeviceStatus) -> tuple[bool, str | None]:
        """Confirm, offering another .bin file: (go ahead, the file or None for the shipped image)."""
        from app.core import flashing

        try:
            image = flashing.resolve_image(None)
            what = f"the ODL firmware {image.version_text} this app ships"
        except flashing.FlashError as exc:
            image, what = None, f"an ODL firmware image (none is shipped here: {exc})"
        box = QMessageBox(QMessageBox.Question, "Flash ODL firmware", f"Flash {what} onto {st.info.name}?")
        box.setParent(self, box.windowFlags())
        box.setInformativeText(
            "The board's current program is replaced (its model and data too). The app uses st-flash, "
            "STM32_Programmer_CLI or pyOCD if installed, else the ST-LINK's NODE_L496ZG drive, then checks "
            "that the board answers."
        )
        go = box.addButton("Flash", QMessageBox.AcceptRole) if image is not None else None
        pick = box.addButton("Choose a .bin file…", QMessageBox.ActionRole)
        box.addButton(QMessageBox.Cancel)
        box.exec()
        if box.clickedButton() is pick:
            path, _ = QFileDialog.getOpenFileName(
                self, "ODL firmware image", "", "Firmware image (*.bin);;All files (*)"
            )
            if not path:
                return False, None
            try:
                flashing.resolve_image(path)
            except flashing.FlashError as exc:
                QMessageBox.warning(self, "Flash ODL firmware", str(exc))
                return False, None
            return True, path
        return go is not None and box.clickedButton() is go, None

    def _rescan(self) -> None:
        if self.tasks is not None:
            self.tasks.start("Scanning USB ports", lambda tok, prog: self.ctx.devices.discover())

    # --- frame clock -----------------------------------------------------------------------------
    def tick(self) -> None:
        self.refresh()
        now = time.monotonic()
        if now - self._details_t > 0.5:  # stream figures move without state changes
            self._details_t = now
            self._show_details()

    def refresh(self, force: bool = False) -> None:
        dm = self.ctx.devices
        if not force and dm.version == self._version:
            return
        self._version = dm.version
        sel = self.selected()
        self._statuses = dm.snapshot()
        self.table.setRowCount(len(self._statuses))
        for r, st in enumerate(self._statuses):
            name = st.info.name + ("  (virtual)" if st.info.virtual and "virtual" not in st.info.name else "")
            fw = st.details.get("firmware", "")  # "needs the ODL firmware" when HELLO failed or is too old
            vals = (
                name,
                "NUCLEO board" if st.info.kind == "board" else "LPM01A power shield",
                st.info.url + (f"  [{st.info.vid_pid}]" if st.info.vid_pid else ""),
                st.state.value,
                fw,
                st.message,
            )
            for c, v in enumerate(vals):
                item = QTableWidgetItem(str(v))
                if c == 3:
                    item.setForeground(QColor(STATE_COLORS[st.state]))
                    f = item.font()
                    f.setBold(True)
                    item.setFont(f)
                self.table.setItem(r, c, item)
        if self._statuses:
            keys = [s.info.key for s in self._statuses]
            row = keys.index(sel.info.key) if sel and sel.info.key in keys else 0
            self.table.selectRow(row)
        n_virtual = sum(s.info.virtual for s in self._statuses)
        self.summary.setText(f"{len(self._statuses)} device(s)" + (f", {n_virtual} virtual" if n_virtual else ""))
        self._show_details()

    def _show_details(self) -> None:
        st = self.selected()
        self.auto.setEnabled(st is not None)  # (it is the selected device's: with none it changed nothing)
        if st is None:
            self.details.setPlainText(
                "Select a device to see its details."
                if self._statuses
                else "No device. Connect a NUCLEO-L496ZG / X-NUCLEO-LPM01A by USB, or start the "
                "virtual bench from the Devices menu."
            )
            self.btn_flash.setEnabled(False)
            return
        self.btn_stream.setText("Stop streaming" if st.state == DeviceState.STREAMING else "Start streaming")
        self.btn_unplug.setEnabled(st.info.virtual)
        real_board = st.info.kind == "board" and not st.info.virtual
        flashing_now = self.tasks is not None and any(t.title.startswith("Flashing") for t in self.tasks.tasks)
        self.btn_flash.setEnabled(real_board and st.state != DeviceState.TRAINING and not flashing_now)
        needs = bool(st.details.get("needs_firmware"))
        self.btn_flash.setStyleSheet(
            "QPushButton { font-weight: bold; color: #b45309; }" if needs and real_board else ""
        )
        self.auto.blockSignals(True)
        self.auto.setChecked(st.auto_reconnect)
        self.auto.blockSignals(False)
        lines = [
            f"{st.info.name}",
            f"  key: {st.info.key}",
            f"  url: {st.info.url}",
            f"  state: {st.state.value}  {st.message}",
            # the count is of tries (a 1 s unplug took two: "reconnects: 2")
            f"  reconnect attempts: {st.reconnects}",
        ]
        order = list(DETAIL_LINES)  # the known figures in a fixed order (was: sorted by their raw keys), then others
        keys = sorted(st.details, key=lambda k: (order.index(k) if k in order else len(order), k))
        lines += [f"  {detail_line(k, st.details[k], st.info.kind)}" for k in keys]
        stream = self.ctx.devices.power_stream if is_monitor(st.info.kind) else self.ctx.devices.accel_stream
        if stream is not None:
            gaps = sum(b - a for a, b in stream.gaps)
            lines.append(
                f"  stream: {stream.rate_hz:,.6g} Hz, {stream.duration:.1f} s on the timeline, "
                f"{len(stream.gaps)} gap(s) totalling {gaps:.2f} s"
            )
        msgs = self.ctx.devices.messages[-8:]
        if msgs:
            lines += ["", "Messages:"] + [f"  {m}" for m in msgs]
        self.details.setPlainText("\n".join(lines))

    def shortcuts(self) -> list[tuple[str, str]]:
        return [("Devices menu", "Connect/disconnect any discovered device, rescan, start the virtual bench")]


def disconnect(parent, ctx, key: str) -> None:
    """Disconnect device ``key`` (the Devices panel's button and the Devices menu): while a training round runs,
    only once the user said yes — disconnecting its board ends the round, its power monitor leaves the round's
    later batches without energy (was: done at once, the round ended without a word of warning)."""
    st = ctx.devices.status(key)
    board = next((b for b in ctx.devices.snapshot() if b.state == DeviceState.TRAINING), None)
    if st is not None and board is not None and (st.info.key == board.info.key or is_monitor(st.info.kind)):
        what = "ends the round" if st.info.key == board.info.key else "leaves its later batches without energy"
        answer = QMessageBox.question(
            parent,
            "Disconnect during a training round",
            f"A training round is running on {board.info.name}: disconnecting {st.info.name} {what}. "
            "Disconnect anyway?",
            QMessageBox.Yes | QMessageBox.No,
            QMessageBox.No,
        )
        if answer != QMessageBox.Yes:
            return
    ctx.devices.disconnect(key)


def busy_training(st: DeviceStatus, again: str = "Start streaming") -> str:
    """What a stream button says while a training round holds the board (the board does not stream during a
    round: the round stopped its stream, and does not start it again)."""
    return (
        f"{st.info.name} is busy with a training round (Training panel): it does not stream during the round; "
        f"press {again} again when the round has ended"
    )


PANEL = PanelSpec(
    key="devices",
    title="Devices",
    order=10,
    factory=DevicesPanel,
    icon="SP_ComputerIcon",
    tooltip="Boards and power shields, real and virtual",
)
