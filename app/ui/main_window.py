"""Main window shell: sidebar of panels, Devices menu, status bar, and the frame clock.

* Panels come from :func:`app.ui.panels.panel_specs` (one page each, ``Ctrl+1``… to switch).
* One frame clock (``QTimer``, default 60 Hz) calls ``tick()`` of the *visible* panel only, and skips a
  frame when the previous one overran half the period (Joulescope's rule), so a slow machine degrades to
  a lower frame rate instead of queueing paints.
* The status bar says **"Virtual bench"** when the in-process bench is used, summarises the devices, shows
  running tasks (progress + Cancel) and, with View › Show frame time, the measured frame time.
* Every panel fits a 1280 × 800 screen (``tests/gui/test_gui_fit.py``); the window opens at most as large as the
  screen's available area.  Down to 800 × 600 the panels reflow (toolbars wrap, columns shrink); each page is a
  scroll area, so whatever still does not fit a smaller window scrolls instead of being cut off
  (``tests/gui/test_gui_user_mistakes_3.py``).
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence, QPainter
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QStackedWidget,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.context import AppContext
from app.core.devices import DeviceState
from app.ui.gc_guard import GuiThreadGc
from app.ui.panels import PanelSpec, panel_specs
from app.ui.panels.base import Panel
from app.ui.panels.devices import disconnect
from app.ui.tasks import TaskBar, TaskRunner

__all__ = ["MainWindow"]

FRAME_TIME_SETTING = "ui.show_frame_time"
QWIDGETSIZE_MAX = (1 << 24) - 1
SIDEBAR_W = 170


class ElidedLabel(QLabel):
    """A one-line status-bar label that may be narrower than its text: it then ends in "…" (``text()`` and
    the tool tip keep the whole text)."""

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        h = super().minimumSizeHint()
        return QSize(min(h.width(), self.fontMetrics().horizontalAdvance("M" * 8)), h.height())

    def paintEvent(self, event) -> None:  # noqa: N802
        r = self.contentsRect()
        p = QPainter(self)
        p.drawText(r, int(self.alignment()), self.fontMetrics().elidedText(self.text(), Qt.ElideRight, r.width()))
        p.end()


def _docs_dir() -> Path | None:
    """The docs/ folder beside the app's sources (a checkout) or inside a frozen bundle, if there is one."""
    from app.core import paths

    for base in ((paths.bundle_root(),) if paths.is_frozen() else ()) + (Path(__file__).resolve().parents[2],):
        d = Path(base) / "docs"
        if (d / "app.md").is_file():
            return d
    return None


#: The status bar's tool tip (after the message shown, whole: the bar cuts what is wider than the window).
MESSAGES_TIP = "View › Messages (Ctrl+Shift+M) lists every message of this session."

GLOBAL_SHORTCUTS = [
    ("Ctrl+1 … Ctrl+9", "Switch to panel 1 … 9"),
    ("F1", "Keyboard shortcuts"),
    ("Ctrl+Shift+M", "Messages: every status-bar message of this session"),
    ("Ctrl+Q", "Quit"),
]


class MainWindow(QMainWindow):
    def __init__(self, ctx: AppContext, fps: int | None = None):
        super().__init__()
        self.ctx = ctx
        self.setWindowTitle(f"ODL Studio — {ctx.user.name}")
        screen = QGuiApplication.primaryScreen()
        avail = screen.availableGeometry() if screen is not None else None
        # 1360 x 820 where there is room; never larger than the screen (a 1280 x 800 laptop)
        self.resize(min(1360, avail.width()) if avail else 1360, min(820, avail.height()) if avail else 820)
        self.tasks = TaskRunner(self)
        self.specs: list[PanelSpec] = panel_specs()
        self.panels: dict[str, Panel] = {}
        self._fault_shown: tuple[str, str, bool] | None = None  # (device key, status text, went down) of a fault
        self._fault_reconnects = 0
        self._build()
        self._device_version = -1
        self.frame_ms: list[float] = []
        self._last_frame_ms = 0.0
        self.fps = int(fps or ctx.settings["ui.fps"])
        # cyclic garbage collection only here, on the GUI thread (app/ui/gc_guard.py says why)
        self.gc_guard = GuiThreadGc(self)
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.timeout.connect(self.frame)
        self.timer.start(max(16, int(1000 / max(1, min(60, self.fps)))))
        ctx.subscribe("status", lambda text, timeout_ms=5000: self.statusBar().showMessage(text, timeout_ms))

    # --- construction ----------------------------------------------------------------------------
    def _build(self) -> None:
        central = QWidget()
        lay = QHBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFixedWidth(SIDEBAR_W)
        self.sidebar.setIconSize(QSize(20, 20))
        self.stack = QStackedWidget()
        lay.addWidget(self.sidebar)
        lay.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        for i, spec in enumerate(self.specs):
            panel = spec.factory(self.ctx, self.stack)
            panel.tasks = self.tasks
            self.panels[spec.key] = panel
            self.stack.addWidget(self._page(panel))
            icon = self.style().standardIcon(getattr(QStyle.StandardPixmap, spec.icon, QStyle.SP_FileIcon))
            item = QListWidgetItem(icon, spec.title)
            item.setToolTip(spec.tooltip + (f"  (Ctrl+{i + 1})" if i < 9 else ""))
            self.sidebar.addItem(item)
        self.sidebar.currentRowChanged.connect(self._page_changed)
        self._current: Panel | None = None
        self._build_menus()
        self._build_status()
        if self.specs:
            self.sidebar.setCurrentRow(0)

    @staticmethod
    def _page(panel: Panel) -> QScrollArea:
        """The panel in a scroll area of its own: the window's minimum size no longer is the largest panel's
        (it was 1209 × 677), and a panel larger than the window scrolls instead of being cut off."""
        page = QScrollArea()
        page.setObjectName(f"page_{type(panel).__name__}")
        page.setFrameShape(QScrollArea.NoFrame)
        page.setWidgetResizable(True)
        page.setFocusPolicy(Qt.NoFocus)  # Tab goes from the sidebar to the panel's widgets
        page.setWidget(panel)
        return page

    def current_panel(self) -> Panel | None:
        """The panel of the page shown."""
        page = self.stack.currentWidget()
        return page.widget() if isinstance(page, QScrollArea) else None  # type: ignore[return-value]

    def _build_menus(self) -> None:
        mb = self.menuBar()
        filem = mb.addMenu("&File")
        quit_ = QAction("&Quit", self, shortcut=QKeySequence("Ctrl+Q"))
        quit_.triggered.connect(self.close)
        filem.addAction(quit_)
        self.device_menu = mb.addMenu("&Devices")
        self.device_menu.aboutToShow.connect(self._fill_device_menu)
        view = mb.addMenu("&View")
        for i, spec in enumerate(self.specs):
            act = QAction(spec.title, self)
            if i < 9:
                act.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            act.triggered.connect(lambda _=False, row=i: self.sidebar.setCurrentRow(row))
            view.addAction(act)
            self.addAction(act)
        view.addSeparator()
        self.act_frame_time = QAction("Show &frame time", self, checkable=True)
        self.act_frame_time.setToolTip("Median time of the last 30 frames in the status bar (a debugging aid)")
        self.act_frame_time.setChecked(bool(self.ctx.settings.get(FRAME_TIME_SETTING, False)))
        self.act_frame_time.toggled.connect(self._show_frame_time)
        view.addAction(self.act_frame_time)
        msgs = QAction("&Messages…", self, shortcut=QKeySequence("Ctrl+Shift+M"))
        msgs.setToolTip("Every status-bar message of this session, whole, with its time")
        msgs.triggered.connect(self.show_messages)
        view.addAction(msgs)
        self.addAction(msgs)
        helpm = mb.addMenu("&Help")
        keys = QAction("&Keyboard shortcuts", self, shortcut=QKeySequence("F1"))
        keys.triggered.connect(self.show_shortcuts)
        helpm.addAction(keys)
        about = QAction("&About", self)
        about.triggered.connect(self.show_about)
        helpm.addAction(about)

    def about_text(self) -> str:
        """Help › About: version, the versions it runs on, where the data are, and links to the docs."""
        from PySide6 import __version__ as pyside_version
        from PySide6.QtCore import qVersion

        from app import __version__

        docs = _docs_dir()
        if docs is not None:
            links = " · ".join(
                f"<a href='{(docs / f).as_uri()}'>{title}</a>"
                for f, title in (("app.md", "the desktop app, panels and shortcuts"), ("personalize.md", "personalize"))
                if (docs / f).is_file()
            )
            readme = docs.parent / "README.md"
            if readme.is_file():
                links = f"<a href='{readme.as_uri()}'>README</a> · " + links
            doc_line = f"Documentation: {links} (folder {docs})"
        else:
            doc_line = "Documentation: the docs/ folder and README.md of the ODL Studio source tree"
        return (
            f"<h3>ODL Studio {__version__}</h3>"
            "<p>Personalize human-activity-recognition models on STM32 and measure what it costs in time, power "
            "and energy.</p>"
            f"<p>{doc_line}<br>Keyboard shortcuts: Help › Keyboard shortcuts (F1)</p>"
            f"<p>Data: {self.ctx.data_dir}<br>Python {platform.python_version()}, Qt {qVersion()}, "
            f"PySide6 {pyside_version}, {platform.system()} {platform.machine()}</p>"
        )

    def show_about(self) -> QMessageBox:
        box = QMessageBox(self)
        box.setWindowTitle("About ODL Studio")
        box.setTextFormat(Qt.RichText)
        box.setText(self.about_text())
        box.setTextInteractionFlags(Qt.TextBrowserInteraction)  # the links open in the browser / editor
        box.setStandardButtons(QMessageBox.Ok)
        box.open()
        return box

    def show_messages(self) -> QDialog:
        """View › Messages: the status bar's messages of this session (one dialog; asked again, it comes to the
        front)."""
        from app.ui.widgets.messages import MessagesDialog

        dlg = self.findChild(MessagesDialog)
        if dlg is None:
            dlg = MessagesDialog(self.ctx, self)
        dlg.show()
        dlg.raise_()
        dlg.activateWindow()
        return dlg

    def _show_frame_time(self, on: bool) -> None:
        self.ctx.settings.set(FRAME_TIME_SETTING, bool(on))
        self.fps_label.setVisible(bool(on))

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.bench_label = QLabel()
        self.bench_label.setObjectName("benchLabel")
        self.devices_label = ElidedLabel()  # shrinks for a status message (see _fit_status); tool tip: all of it
        self.fps_label = QLabel()
        self.fps_label.setMinimumWidth(110)
        self.fps_label.setVisible(self.act_frame_time.isChecked())
        self.task_bar = TaskBar(self.tasks)
        sb.addPermanentWidget(self.task_bar)
        sb.addPermanentWidget(self.devices_label)
        sb.addPermanentWidget(self.bench_label)
        sb.addPermanentWidget(self.fps_label)
        sb.messageChanged.connect(self._message_changed)
        sb.setToolTip(MESSAGES_TIP)
        self.tasks.changed.connect(lambda *_: self._fit_status())  # after the task bar's own refresh
        self._update_status()

    def _message_changed(self, text: str) -> None:
        self.statusBar().setToolTip(f"{text}\n\n{MESSAGES_TIP}" if text else MESSAGES_TIP)
        self._fit_status()

    def _fit_status(self) -> None:
        """A status message gets the room it needs: the devices summary beside it shrinks to what is left
        (ending in "…") while the message is shown.  Qt draws a message only left of the first permanent
        widget, so on a 1280-px screen the end of "Saved … → <file>" — where the recording went — was cut off."""
        sb = self.statusBar()
        msg = sb.currentMessage()
        if not msg:
            self.devices_label.setMaximumWidth(QWIDGETSIZE_MAX)
            return
        spacing = max(6, sb.style().pixelMetric(QStyle.PM_LayoutHorizontalSpacing)) + 4
        others = sum(
            w.sizeHint().width() + spacing for w in (self.task_bar, self.bench_label, self.fps_label) if w.isVisible()
        )
        room = sb.width() - others - sb.fontMetrics().horizontalAdvance(msg) - 32  # message margins, size grip
        self.devices_label.setMaximumWidth(max(self.devices_label.minimumSizeHint().width(), room))

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if hasattr(self, "task_bar"):  # a resize before the status bar is built
            self._fit_status()

    def _fill_device_menu(self) -> None:
        m = self.device_menu
        m.clear()
        for st in self.ctx.devices.snapshot():
            sub = m.addMenu(f"{st.info.name} — {st.state.value}")
            con = sub.addAction("Connect")
            con.setEnabled(st.state in (DeviceState.DISCONNECTED, DeviceState.ERROR))
            con.triggered.connect(lambda _=False, k=st.info.key: self.ctx.devices.connect(k))
            dis = sub.addAction("Disconnect")
            dis.setEnabled(st.state not in (DeviceState.DISCONNECTED,))
            dis.triggered.connect(lambda _=False, k=st.info.key: disconnect(self, self.ctx, k))
        if not self.ctx.devices.snapshot():
            m.addAction("(no devices)").setEnabled(False)
        m.addSeparator()
        rescan = m.addAction("Rescan USB ports")
        rescan.triggered.connect(self._rescan)
        bench = m.addAction("Start virtual bench")
        bench.setEnabled(self.ctx.devices.bench is None)
        bench.triggered.connect(lambda: self.ctx.devices.start_bench())

    def _rescan(self) -> None:
        self.tasks.start("Scanning ports", lambda tok, prog: self.ctx.devices.discover())

    # --- pages -----------------------------------------------------------------------------------
    @Slot(int)
    def _page_changed(self, row: int) -> None:
        if self._current is not None:
            self._current.deactivated()
        self.stack.setCurrentIndex(row)
        self._current = self.current_panel()
        if self._current is not None:
            self._current.activated()

    def show_panel(self, key: str) -> Panel:
        keys = [s.key for s in self.specs]
        self.sidebar.setCurrentRow(keys.index(key))
        return self.panels[key]

    def show_shortcuts(self) -> None:
        rows = list(GLOBAL_SHORTCUTS)
        for spec in self.specs:
            rows += [(k, f"{spec.title}: {w}") for k, w in self.panels[spec.key].shortcuts()]
        dlg = QDialog(self)
        dlg.setWindowTitle("Keyboard shortcuts")
        table = QTableWidget(len(rows), 2)
        table.setHorizontalHeaderLabels(["Keys", "Action"])
        for r, (k, w) in enumerate(rows):
            table.setItem(r, 0, QTableWidgetItem(k))
            table.setItem(r, 1, QTableWidgetItem(w))
        table.resizeColumnsToContents()
        QVBoxLayout(dlg).addWidget(table)
        dlg.resize(560, 480)
        dlg.show()

    # --- frame clock -----------------------------------------------------------------------------
    @Slot()
    def frame(self) -> None:
        period = self.timer.interval()
        if self._last_frame_ms > period * 0.5 and getattr(self, "_skipped", 0) < 1:
            self._skipped = 1  # skip one frame after an overrun
            return
        self._skipped = 0
        t = time.perf_counter()
        panel = self.current_panel()
        if panel is not None:
            panel.tick()
        if self.ctx.devices.version != self._device_version:
            self._update_status()
        self._last_frame_ms = (time.perf_counter() - t) * 1e3
        self.frame_ms.append(self._last_frame_ms)
        if len(self.frame_ms) >= 30:
            ms = sorted(self.frame_ms)
            self.fps_label.setText(f"frame {ms[len(ms) // 2]:.1f} ms")
            self.frame_ms.clear()

    def _update_status(self) -> None:
        dm = self.ctx.devices
        self._device_version = dm.version
        if dm.bench is not None:
            self.bench_label.setText("Virtual bench")
            self.bench_label.setStyleSheet(
                "QLabel { background:#fde68a; color:#111; padding:1px 6px; border-radius:3px; font-weight:bold; }"
            )
            self.bench_label.setToolTip("No hardware: the emulated NUCLEO and LPM01A run in this process")
        else:
            self.bench_label.setText("Hardware" if dm.snapshot() else "No device")
            self.bench_label.setStyleSheet("")
        count = dm.fault_count
        if count > getattr(self, "_faults_seen", 0) and dm.faults:  # a device fault: say it in plain words
            _t, key, text = dm.faults[-1]
            name = next((s.info.name for s in dm.snapshot() if s.info.key == key), key)
            self.ctx.status(f"{name}: {text}", 15000)
            self._fault_shown = (key, f"{name}: {text}", False)  # an overcurrent leaves it READY: stays shown
            self._fault_reconnects = next((s.reconnects for s in dm.snapshot() if s.info.key == key), 0)
        self._faults_seen = count
        fault = self._fault_shown
        if fault is not None:  # the device of a "link lost" message is back: say so at once
            key, text, lost = fault
            st = next((s for s in dm.snapshot() if s.info.key == key), None)
            good = st is not None and st.state in (DeviceState.READY, DeviceState.STREAMING, DeviceState.TRAINING)
            lost = lost or (st is not None and st.reconnects > self._fault_reconnects)  # down and up between frames
            if st is None or (good and lost):
                self._fault_shown = None
                if self.statusBar().currentMessage() == text and st is not None:
                    self.ctx.status(f"{st.info.name}: {st.state.value} again", 5000)
            elif not good:  # it went down (error, reconnecting): replace the message when it is back
                self._fault_shown = (key, text, True)
        parts = [f"{s.info.name}: {s.state.value}" for s in dm.snapshot()]
        text = "  |  ".join(parts) if parts else (dm.bench_error or "no devices found")
        self.devices_label.setText(text)
        self.devices_label.setToolTip(text)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.timer.stop()
        self.tasks.cancel_all()
        for p in self.panels.values():
            try:
                p.shutdown()
            except Exception:  # noqa: BLE001 - keep closing
                pass
        self.tasks.shutdown(5000)  # a task's result arriving after this must not touch the closing store
        self.gc_guard.release()
        super().closeEvent(event)
