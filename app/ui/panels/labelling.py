"""Labelling panel: record your own activities, label them with the keyboard, build per-user datasets.

Workflow: pick your profile and dataset, choose a class, press **Record** (start/stop) or **Record
fixed** (N seconds) while the board streams; the segment is saved beside the database and labelled with
the class.  On any recording: drag with the left mouse button to select a region (inside a label too),
press a number key (1 = first class…) to label it, drag a label's edges to adjust it or Shift+drag its body
to move it (a move keeps its length), Delete removes the selected label, Ctrl+Z / Ctrl+Shift+Z undo and
redo (each recording keeps its own history for the session, the automatic label of a new segment its first
step).  Every change is committed to SQLite at once.  The keys work whenever the panel is shown (panel
shortcuts), except while you type in a text field you clicked into.

The right column previews the windows the model will see — at the model's rate (the general model's 20 Hz,
or that of the model chosen in the Training panel, which training resamples the recording to) — what a round
with that model would train and test on, and the class balance of the whole dataset; import WISDM text files,
export WISDM CSV or an ``.npz`` of windows.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.core.devices import DeviceState
from app.core.labels import (
    LabelError,
    LabelModel,
    class_balance,
    export_labelled_csv,
    export_windows_npz,
    import_wisdm,
    labelled_parts,
    windows,
)
from app.core.outputs import failure_reason
from app.core.recording import RecordingError, StreamRecorder, accel_partial_bytes, load_accel, space_warning
from app.core.store import Recording, StoreError
from app.core.streams import SampleStream
from app.ui.panels import PanelSpec
from app.ui.panels.base import Panel, tool_button
from app.ui.widgets.flow import FlowLayout
from app.ui.widgets.stream_plot import StreamPlot

if TYPE_CHECKING:
    from app.ui.tasks import Task

CLASS_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


class _SelectViewBox(pg.ViewBox):
    """Left-drag selects a time range (instead of panning); middle-drag pans, wheel zooms."""

    sigSelect = Signal(float, float, bool)  # start, end, finished
    sigClick = Signal(float)

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 - Qt naming
        if ev.button() == Qt.LeftButton and not ev.modifiers() & Qt.ControlModifier:
            ev.accept()
            a = self.mapSceneToView(ev.buttonDownScenePos()).x()
            b = self.mapSceneToView(ev.scenePos()).x()
            self.sigSelect.emit(min(a, b), max(a, b), ev.isFinish())
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev):  # noqa: N802
        if ev.button() == Qt.LeftButton:
            ev.accept()
            self.sigClick.emit(self.mapSceneToView(ev.scenePos()).x())
            return
        super().mouseClickEvent(ev)


class _LabelRegion(pg.LinearRegionItem):
    """A label on the plot.  Its edges adjust it; its body moves only while Shift is held: a plain drag
    inside a label selects, like everywhere else on the plot (the hint says "Drag to select")."""

    def mouseDragEvent(self, ev):  # noqa: N802 - Qt naming
        if ev.isStart() and not ev.modifiers() & Qt.ShiftModifier:
            ev.ignore()  # the view box gets the drag: a selection
            return
        if not ev.isStart() and not self.moving:
            ev.ignore()
            return
        super().mouseDragEvent(ev)

    def hoverEvent(self, ev):  # noqa: N802
        # only claim the drag (and highlight) when Shift is held, else the scene would hand it to us
        if not ev.isExit() and ev.modifiers() & Qt.ShiftModifier and ev.acceptDrags(Qt.LeftButton):
            self.setMouseHover(True)
        else:
            self.setMouseHover(False)


#: The rate training resamples to (the general model's); the windowing preview counts at this rate unless the
#: Training panel has another model chosen (its ``round_model`` message).
MODEL_RATE_HZ = 20.0
MODEL_CLASSES = ("walking", "jogging", "stairs", "sitting", "standing")  # the general model's classes


class LabelPlot(StreamPlot):
    """The stream plot with selection, label regions and keyboard handling delegated to the panel."""

    def __init__(self, panel: "LabellingPanel"):
        self.vb_select = _SelectViewBox()
        super().__init__(
            panel.current_stream,
            window_s=30.0,
            label="acceleration",
            units="m/s²",
            names=("x", "y", "z"),
            view_box=self.vb_select,
        )
        self.panel = panel
        self.getPlotItem().getAxis("left").enableAutoSIPrefix(False)
        self.setFocusPolicy(Qt.StrongFocus)

    def keyPressEvent(self, ev):  # noqa: N802 - keys the panel shortcuts did not take (inactive window)
        if not self.panel.handle_key(ev.key(), ev.modifiers()):
            super().keyPressEvent(ev)


#: Panel shortcuts: key sequence -> (key, modifiers) handled by :meth:`LabellingPanel.handle_key`.
SHORTCUT_KEYS = [
    *[(str(n), Qt.Key_0 + n, Qt.NoModifier) for n in range(1, 10)],
    ("Delete", Qt.Key_Delete, Qt.NoModifier),
    ("Backspace", Qt.Key_Backspace, Qt.NoModifier),
    ("Ctrl+Z", Qt.Key_Z, Qt.ControlModifier),
    ("Ctrl+Shift+Z", Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier),
    ("Ctrl+Y", Qt.Key_Y, Qt.ControlModifier),
    ("Esc", Qt.Key_Escape, Qt.NoModifier),
    ("R", Qt.Key_R, Qt.NoModifier),
    ("Left", Qt.Key_Left, Qt.NoModifier),
    ("Right", Qt.Key_Right, Qt.NoModifier),
    ("Shift+Left", Qt.Key_Left, Qt.ShiftModifier),
    ("Shift+Right", Qt.Key_Right, Qt.ShiftModifier),
    ("Home", Qt.Key_Home, Qt.NoModifier),
]


#: Recordings whose undo history the panel keeps while others are shown (the most recently shown with something
#: to undo or redo; a recording with an empty history is not kept).  Each kept history is its recording's labels
#: and at most ``LabelModel``'s 500 steps (a few hundred kB at worst), so 32 bound the memory to a few MB, and
#: 32 recordings edited in one sitting is more than a labelling session touches (a user's own dataset has tens
#: of segments; a WISDM import's 36 or 51 users are browsed, which keeps nothing).
KEPT_HISTORIES = 32

NO_NAME = "No name given: type a name for the dataset"
#: Classes a dataset can have: the number keys 1–9 label with them.
MAX_CLASSES = 9


def _changed_outside(name: str) -> str:
    """What a kept undo history dropped because the recording's labels changed by another path says."""
    return (
        f"the labels of {name!r} were changed outside the Labelling panel: they are shown as they are now, and "
        "the edits made on them before can no longer be undone"
    )


def _classes_problem(classes: tuple[str, ...]) -> str:
    """Why these classes cannot make a dataset ("" when they can)."""
    if len(classes) > MAX_CLASSES:
        return (
            f"{len(classes)} classes given, at most {MAX_CLASSES}: the number keys 1–{MAX_CLASSES} label with them "
            f"(a {MAX_CLASSES + 1}th class could not be labelled)"
        )
    seen: dict[str, str] = {}
    for c in classes:
        if c.casefold() in seen:
            same = "given twice" if seen[c.casefold()] == c else f"the same as {seen[c.casefold()]!r}"
            return f"The class {c!r} is {same}: give each class once"
        seen[c.casefold()] = c
    return ""


class LabellingPanel(Panel):
    def __init__(self, ctx, parent=None):
        super().__init__(ctx, parent)
        self.model: LabelModel | None = None
        self.recording: Recording | None = None
        # recording id -> (its ``started``, its LabelModel): each recording's undo history for the session, kept
        # while other recordings are shown (see :meth:`_model_for`); dropped when the recording is deleted and
        # when the user or dataset changes
        self._models: OrderedDict[int, tuple[float, LabelModel]] = OrderedDict()
        self.rec_stream: SampleStream | None = None
        self.recorder: StreamRecorder | None = None
        self._rec_dataset = ""  # the dataset the running recording goes to
        self.selection: tuple[float, float] | None = None
        self.selected_label: int | None = None
        self.unreadable = ""  # why the shown recording's file cannot be read ("" when it can)
        self._regions: dict[int, pg.LinearRegionItem] = {}
        self._dirty = True
        self.training_windows: tuple[int, int] | None = None  # (train, test) a round would get
        self._tw_gen, self._tw_task = 0, None
        self._tw_timer = QTimer(self)
        self._tw_timer.setSingleShot(True)
        self._tw_timer.setInterval(300)
        self._tw_timer.timeout.connect(self._count_training_windows)
        # the model a round would use (the Training panel's choice): None = the general model
        self.round_model: str | None = None
        self.round_classes: tuple[str, ...] = MODEL_CLASSES
        self.round_rate_hz = MODEL_RATE_HZ
        self.round_input_size: int | None = None  # an imported model's fixed T (None: the input size box)
        self._build()
        self.reload_profile()
        ctx.subscribe("user_changed", lambda **_: self._user_changed())
        ctx.subscribe(
            "recording_added",
            lambda recording: self.reload_recordings(select=recording.id) if recording.kind == "accel" else None,
        )
        ctx.subscribe("round_model", self._round_model_changed)

    def _user_changed(self) -> None:
        """Another user or dataset: the undo histories of the recordings left behind are dropped."""
        self._models.clear()
        self.reload_profile()

    def _round_model_changed(self, name, classes, rate_hz, input_size) -> None:
        """The Training panel chose another model: preview and count at its rate, classes and input size."""
        self.round_model = name
        self.round_classes = tuple(classes) if classes else MODEL_CLASSES
        self.round_rate_hz = float(rate_hz) if rate_hz else MODEL_RATE_HZ
        self.round_input_size = int(input_size) if input_size else None
        self._set_size_tooltip()
        self._dirty = True
        self._update_balance()

    def _set_size_tooltip(self) -> None:
        self.win_size.setToolTip(
            f"Input size T in samples at the model's rate ({self.round_rate_hz:g} Hz): training resamples every "
            "recording to that rate, whatever rate it was recorded at"
        )

    # --- layout ----------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.addLayout(self._build_toolbar())
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self._build_recordings())
        split.addWidget(self._build_plot())
        split.addWidget(self._build_windowing())
        split.setSizes([220, 820, 280])
        lay.addWidget(split, 1)
        self._connect()

    def _build_toolbar(self) -> FlowLayout:
        """User, dataset, class, Record / Record fixed, Undo / Redo (in rows on a narrow window)."""
        top = FlowLayout()
        self.user_combo = QComboBox()
        self.user_combo.setEditable(True)
        self.user_combo.setToolTip("Your profile: type a new name and press Enter to create it")
        self.dataset_combo = QComboBox()
        self.btn_new_ds = tool_button("New dataset…", "Create a dataset (name and classes) for this profile")
        self.class_combo = QComboBox()
        # a long user, dataset or class name is cut in its box (whole in the list and the tooltip) instead of
        # widening the box past the window (a 300-character dataset name pushed the toolbar onto two rows)
        for combo in (self.user_combo, self.dataset_combo, self.class_combo):
            combo.setMaximumWidth(200)  # as wide as its longest name up to this
        for combo in (self.dataset_combo, self.class_combo):
            combo.currentTextChanged.connect(combo.setToolTip)
        self.btn_record = tool_button(
            "● Record", "Start/stop recording a segment from the live board stream (R)", checkable=True
        )
        self.fixed_len = QDoubleSpinBox()
        self.fixed_len.setRange(1, 600)
        self.fixed_len.setSuffix(" s")
        self.fixed_len.setValue(float(self.ctx.settings["labelling.segment_s"]))
        self.btn_fixed = tool_button("Record fixed", "Record a segment of the length on the left")
        self.auto_label = QCheckBox("Label segment")
        self.auto_label.setChecked(True)
        self.btn_undo = tool_button("Undo", "Undo (Ctrl+Z)")
        self.btn_redo = tool_button("Redo", "Redo (Ctrl+Shift+Z)")
        for w in (
            QLabel("User"),
            self.user_combo,
            QLabel("Dataset"),
            self.dataset_combo,
            self.btn_new_ds,
            QLabel("  Class"),
            self.class_combo,
            self.btn_record,
            self.fixed_len,
            self.btn_fixed,
            self.auto_label,
            self.btn_undo,
            self.btn_redo,
        ):
            top.addWidget(w)
        return top

    def _build_recordings(self) -> QWidget:
        """The recordings list with its import / export / delete buttons and the import report."""
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(QLabel("Recordings"))
        self.rec_list = QListWidget()
        self.rec_list.setWordWrap(True)  # "name · 8.0 s · 2 label(s)" in a narrow column: wrapped, not cut
        ll.addWidget(self.rec_list, 1)
        self.btn_import = QPushButton("Import WISDM…")
        self.btn_export_csv = QPushButton("Export WISDM CSV…")
        self.btn_export_npz = QPushButton("Export windows .npz…")
        self.btn_delete_rec = QPushButton("Delete recording")
        for b in (self.btn_import, self.btn_export_csv, self.btn_export_npz, self.btn_delete_rec):
            ll.addWidget(b)
        self.import_report = QPlainTextEdit()  # a word-wrapped QLabel gets no height-for-width in the splitter
        self.import_report.setObjectName("importReport")
        self.import_report.setReadOnly(True)
        self.import_report.setMaximumHeight(150)
        self.import_report.setVisible(False)
        self.import_result = None
        ll.addWidget(self.import_report)
        return left

    def _build_plot(self) -> QWidget:
        """The labelled recording: plot, selection, window ticks, hint."""
        center = QWidget()
        cl = QVBoxLayout(center)
        cl.setContentsMargins(0, 0, 0, 0)
        self.plot = LabelPlot(self)
        self.plot.set_follow(False)
        self.sel_region = pg.LinearRegionItem(brush=pg.mkBrush(255, 255, 255, 40), pen=pg.mkPen("#ffffff", width=1))
        self.sel_region.setZValue(5)
        self.sel_region.hide()
        self.plot.addItem(self.sel_region)
        self.win_ticks = pg.PlotDataItem(pen=pg.mkPen("#aaaaaa", width=1), connect="pairs")
        self.plot.addItem(self.win_ticks)
        cl.addWidget(self.plot, 1)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        cl.addWidget(self.hint)
        return center

    def _build_windowing(self) -> QWidget:
        """Windowing preview (input size, stride) and the class balance."""
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        box = QGroupBox("Windowing preview")
        form = QFormLayout(box)
        self.win_size = QSpinBox()
        self.win_size.setRange(4, 1000)
        self.win_size.setValue(int(self.ctx.settings["labelling.input_size"]))
        self.win_size.setSuffix(" samples")
        self.win_stride = QSpinBox()
        self.win_stride.setRange(1, 1000)
        self.win_stride.setValue(self.win_size.value())
        self.win_stride.setSuffix(" samples")
        self._set_size_tooltip()
        self.win_info = QLabel()
        self.win_info.setWordWrap(True)
        self.train_info = QLabel()
        self.train_info.setObjectName("trainInfo")
        self.train_info.setWordWrap(True)
        form.addRow("Input size", self.win_size)
        form.addRow("Stride", self.win_stride)
        form.addRow(self.win_info)
        form.addRow(self.train_info)
        rl.addWidget(box)
        rl.addWidget(QLabel("Class balance (windows, whole dataset)"))
        self.balance = pg.PlotWidget()
        self.balance.setMenuEnabled(False)
        self.balance.setMouseEnabled(False, False)
        self.balance.hideButtons()
        self.balance.getViewBox().invertY(True)  # first class on top, as in the class list
        self.balance.getAxis("bottom").setLabel("windows")
        self.balance.setToolTip("Windows of the chosen input size per class, over the whole dataset")
        self.balance.setMinimumHeight(180)
        rl.addWidget(self.balance, 1)
        self.balance_text = QLabel()
        self.balance_text.setWordWrap(True)
        rl.addWidget(self.balance_text)
        return right

    def _connect(self) -> None:
        self.user_combo.activated.connect(lambda _i: self._user_entered())
        self.user_combo.lineEdit().returnPressed.connect(self._user_entered)
        self.dataset_combo.activated.connect(self._dataset_chosen)
        self.btn_new_ds.clicked.connect(lambda: self.new_dataset())  # clicked(bool) would arrive as name=False
        self.btn_record.toggled.connect(self._record_toggled)
        self.btn_fixed.clicked.connect(lambda: self.start_recording(self.fixed_len.value()))
        self.btn_undo.clicked.connect(self.undo)
        self.btn_redo.clicked.connect(self.redo)
        self.rec_list.currentItemChanged.connect(self._rec_selected)
        self.btn_import.clicked.connect(lambda: self.import_wisdm())
        self.btn_export_csv.clicked.connect(lambda: self.export_csv())
        self.btn_export_npz.clicked.connect(lambda: self.export_npz())
        self.btn_delete_rec.clicked.connect(self.delete_recording)
        self.plot.vb_select.sigSelect.connect(self._drag_select)
        self.plot.vb_select.sigClick.connect(self._click)
        self.win_size.valueChanged.connect(self._windowing_changed)
        self.win_stride.valueChanged.connect(self._windowing_changed)
        # Panel shortcuts, live whenever the panel is shown (a focused combo box, list or the sidebar does
        # not swallow them); a text field being typed in (the User box, a spin box) takes its keys first
        # (Qt's ShortcutOverride), so typing a name never records or labels.
        self._shortcuts = [
            self.add_shortcut(seq, lambda key=key, mods=mods: self.handle_key(key, mods))
            for seq, key, mods in SHORTCUT_KEYS
        ]

    # --- profile and dataset ---------------------------------------------------------------------
    @property
    def classes(self) -> tuple[str, ...]:
        return self.ctx.dataset.classes

    def reload_profile(self) -> None:
        self.user_combo.blockSignals(True)
        self.user_combo.clear()
        for u in self.ctx.store.users():
            self.user_combo.addItem(u.name, u.id)
        self.user_combo.setCurrentText(self.ctx.user.name)
        self.user_combo.blockSignals(False)
        self.dataset_combo.clear()
        for d in self.ctx.store.datasets(self.ctx.user.id):
            self.dataset_combo.addItem(d.name, d.id)
        self.dataset_combo.setCurrentIndex(max(0, self.dataset_combo.findData(self.ctx.dataset.id)))
        self.class_combo.clear()
        for i, c in enumerate(self.classes):
            self.class_combo.addItem(f"{i + 1}  {c}", c)
        self.reload_recordings()

    def _recording_keeps(self, then: str) -> bool:
        """A segment is being recorded into the current dataset: a switch of dataset (or of user, which switches
        it) is refused, naming the dataset the segment goes to.  Was: the switch went through while the
        segment was still saved into the old dataset, out of sight, and its label was checked against the new
        dataset's classes."""
        if self.recorder is None:
            return False
        self.ctx.status(
            f"{self.recorder.rec.name!r} is being recorded into dataset {self._rec_dataset!r}: "
            f"stop it first (■ Stop), then {then}",
            15000,
        )
        return True

    def _user_entered(self) -> None:
        name = self.user_combo.currentText().strip()
        if name and name != self.ctx.user.name and self._recording_keeps("change the user"):
            self.user_combo.setCurrentText(self.ctx.user.name)
        elif name and name != self.ctx.user.name:
            self.ctx.set_user(name)
        self.plot.setFocus()  # done typing: the keys label and record again

    def activated(self) -> None:
        # The first focusable widget is the editable User box: with the focus there, R and the number keys
        # would type into the name.  The plot takes the focus; click a text field to type in it.
        self.plot.setFocus(Qt.OtherFocusReason)

    def _dataset_chosen(self, _i: int) -> None:
        did = self.dataset_combo.currentData()
        if did is not None and did != self.ctx.dataset.id and self._recording_keeps("switch datasets"):
            self.dataset_combo.setCurrentIndex(max(0, self.dataset_combo.findData(self.ctx.dataset.id)))
        elif did is not None and did != self.ctx.dataset.id:
            self.ctx.set_dataset(did)

    def new_dataset(self, name: str | None = None, classes: tuple[str, ...] | None = None) -> None:
        if self._recording_keeps("create the new dataset"):
            return
        if name is None:
            name, ok = QInputDialog.getText(self, "New dataset", "Name:")
            if not ok:
                return
            if not name.strip():  # said before the classes are asked for
                QMessageBox.warning(self, "New dataset", NO_NAME)
                return
            text, ok = QInputDialog.getText(
                self, "New dataset", "Classes (comma-separated):", text=", ".join(self.classes)
            )
            if not ok:
                return
            classes = tuple(c.strip() for c in text.split(",") if c.strip())
            if not classes:  # was: the current dataset's classes, silently
                QMessageBox.warning(self, "New dataset", "No classes given: type at least one, separated by commas")
                return
        name = name.strip()
        if not name:  # was: OK on an empty name did nothing, without a word
            QMessageBox.warning(self, "New dataset", NO_NAME)
            return
        why = _classes_problem(tuple(classes or self.classes))
        if why:  # was the store's "dataset 'x': classes must be non-empty and unique, got ['a', 'a']", or
            # (more than 9 classes) a dataset whose 10th class no key could label
            QMessageBox.warning(self, "New dataset", why)
            return
        if name in {d.name for d in self.ctx.store.datasets(self.ctx.user.id)}:
            # was the store's "user 1 already has a dataset called 'x'"
            QMessageBox.warning(
                self, "New dataset", f"{self.ctx.user.name} already has a dataset called {name!r}: choose another name"
            )
            return
        try:
            ds = self.ctx.store.create_dataset(self.ctx.user.id, name, tuple(classes or self.classes))
        except StoreError as exc:
            QMessageBox.warning(self, "New dataset", str(exc))
            return
        self.ctx.set_dataset(ds.id)

    # --- recordings ------------------------------------------------------------------------------
    def reload_recordings(self, select: int | None = None) -> None:
        keep = select if select is not None else (self.recording.id if self.recording else None)
        self.rec_list.blockSignals(True)
        self.rec_list.clear()
        for r in self.ctx.store.recordings("accel", self.ctx.dataset.id):
            n = len(self.ctx.store.labels(r.id))
            item = QListWidgetItem(self._rec_text(r, n))
            item.setToolTip(self._rec_text(r, n))
            item.setData(Qt.UserRole, r.id)
            self.rec_list.addItem(item)
        self.rec_list.blockSignals(False)
        if self.recorder is not None:  # the plot shows the live stream: no recording is selected until it stops
            self._update_balance()
            return
        row = next((i for i in range(self.rec_list.count()) if self.rec_list.item(i).data(Qt.UserRole) == keep), None)
        if row is None and self.rec_list.count():
            row = self.rec_list.count() - 1
        if row is not None:
            self.rec_list.setCurrentRow(row)
            self._rec_selected(self.rec_list.currentItem(), None)
        else:
            self.open_recording(None)
        self._update_balance()

    def _rec_selected(self, item, _prev) -> None:
        if item is None:
            return
        if self._recording_busy("open another recording"):  # the plot shows the live stream, not the one clicked
            self._select_no_recording()
            return
        rid = item.data(Qt.UserRole)
        if self.recording is None or self.recording.id != rid:
            self.open_recording(self.ctx.store.recording(rid))

    def open_recording(self, rec: Recording | None) -> None:
        """Show a recording (None: nothing) and load its labels.  A recording whose file cannot be read (deleted
        or moved outside the app, unreadable) is said in the status bar and shown empty: no labelling key can
        then reach the recording shown before it, and Delete recording still removes its entry."""
        self.recording = rec
        self.selection = None
        self.selected_label = None
        self.sel_region.hide()
        for item in self._regions.values():
            self.plot.removeItem(item)
        self._regions.clear()
        self.model, self.rec_stream, self.unreadable = None, None, ""
        if rec is None:
            self._dirty = True
            return
        try:
            xyz = np.asarray(load_accel(self.ctx.store, rec))
        except (RecordingError, OSError, ValueError) as exc:
            self.unreadable = (
                f"cannot read {self.ctx.store.resolve(rec.path)}: {exc.strerror}"
                if isinstance(exc, OSError) and exc.strerror
                else str(exc)
            )
            self.ctx.status(f"Cannot show the recording {rec.name!r}: {self.unreadable}", 15000)
            self._dirty = True
            return
        s = SampleStream(
            rec.name,
            rec.rate_hz,
            3,
            unit="m/s²",
            channel_names=("x", "y", "z"),
            recent_s=len(xyz) / rec.rate_hz + 1,
            history_s=len(xyz) / rec.rate_hz + 1,
            base=16,
            factor=8,
        )
        s.append(xyz)
        self.rec_stream = s
        partial = accel_partial_bytes(self.ctx.store, rec)
        if partial and not (self.recorder is not None and self.recorder.rec.id == rec.id):
            # was: the whole samples shown as if the file were whole
            self.ctx.status(
                f"The file {self.ctx.store.resolve(rec.path)} of {rec.name!r} ends in a partial sample: "
                f"its last {partial} {'byte was' if partial == 1 else 'bytes were'} ignored ({len(xyz):,} whole samples "
                "shown)",
                15000,
            )
        self.model = self._model_for(rec, len(xyz) / rec.rate_hz)
        span = max(1.0, s.duration)
        self.plot.set_follow(False)
        self.plot.setXRange(0, span, padding=0.01)
        self.plot.auto_y = True
        self._labels_changed()

    def _model_for(self, rec: Recording, duration: float) -> LabelModel:
        """The label model of ``rec`` with its undo history: the one kept since it was last shown (or labelled
        at a record's stop), else a new one.  A kept model is re-read from the store first: if the labels were
        changed by another path, it takes them and drops its history (no undo is applied to labels that are no
        longer there).  A kept model of another recording that had the same id (deleted, the id given again)
        or of other classes is not used.  Besides the one shown, the panel keeps the models of the
        :data:`KEPT_HISTORIES` most recently shown recordings with something to undo or redo."""
        kept = self._models.pop(rec.id, None)
        if kept is not None and kept[0] == rec.started and kept[1].classes == tuple(self.classes):
            model = kept[1]
            model.duration = duration
            if model.reload():  # (a kept model has a history: it is gone now, say so)
                msg = _changed_outside(rec.name)
                self.ctx.status(msg[0].upper() + msg[1:], 15000)
        else:
            model = LabelModel(self.ctx.store, rec.id, self.classes, duration=duration)
            model.add_listener(lambda m=model: self._labels_changed() if m is self.model else None)
        self._models[rec.id] = (rec.started, model)
        for rid in [r for r, (_, m) in self._models.items() if r != rec.id and not (m.can_undo or m.can_redo)]:
            del self._models[rid]  # nothing to undo there: nothing to keep
        for rid in list(self._models)[: max(0, len(self._models) - 1 - KEPT_HISTORIES)]:
            del self._models[rid]  # the least recently shown (the one shown is the last)
        return model

    def _select_no_recording(self) -> None:
        self.rec_list.blockSignals(True)
        self.rec_list.setCurrentRow(-1)
        self.rec_list.clearSelection()
        self.rec_list.blockSignals(False)

    def _recording_busy(self, then: str) -> bool:
        """A segment is being recorded: the plot shows the live stream, so a label key, Delete, undo or redo is
        refused with the reason (was: they silently edited the recording shown before, whose labels were drawn
        over the live stream)."""
        if self.recorder is None:
            return False
        self.ctx.status(
            f"{self.recorder.rec.name!r} is being recorded: stop it first (R or ■ Stop), then {then}", 15000
        )
        return True

    def current_stream(self) -> SampleStream | None:
        if self.recorder is not None:
            return self.ctx.devices.accel_stream
        return self.rec_stream

    def delete_recording(self) -> None:
        if self.recording is None:
            self._recording_busy("delete a recording")  # while recording, none is shown: say why nothing happens
            return
        if self.recorder is not None and self.recorder.rec.id == self.recording.id:
            # (deleting the row and file the recorder is writing lost the segment and failed at its stop)
            self.ctx.status(f"{self.recording.name!r} is being recorded: stop it first (■ Stop), then delete it")
            return
        if (
            QMessageBox.question(self, "Delete recording", f"Delete {self.recording.name} and its labels?")
            != QMessageBox.Yes
        ):
            return
        name, path = self.recording.name, self.ctx.store.resolve(self.recording.path)
        try:
            self.ctx.store.delete_recording(self.recording.id)
        except StoreError as exc:  # a read-only or full database: nothing was deleted
            self.ctx.status(f"Cannot delete {name!r}: {exc}", 15000)
            return
        self._models.pop(self.recording.id, None)  # its undo history goes with it (its id may be given again)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # the entry and its labels are gone; the file stays where it is
            self.ctx.status(f"Deleted {name!r}; its file {path} could not be removed: {failure_reason(exc)}", 15000)
        self.recording = None
        self.reload_recordings()

    # --- recording segments from the live stream ----------------------------------------------------
    def _record_toggled(self, on: bool) -> None:
        if on and self.recorder is None:
            if not self.start_recording(None):
                self.btn_record.blockSignals(True)
                self.btn_record.setChecked(False)
                self.btn_record.blockSignals(False)
        elif not on and self.recorder is not None:
            self.stop_recording()

    def start_recording(self, seconds: float | None) -> bool:
        """Record the live accel stream (``seconds``: fixed length, else until stopped)."""
        stream = self.ctx.devices.accel_stream
        board = self.ctx.devices.first("board")
        if stream is None or (board is not None and board.state != DeviceState.STREAMING and stream.n_total == 0):
            self.ctx.status("Start the accelerometer stream first (Live accelerometer panel)")
            return False
        if self.recorder is not None:
            return False
        cls = self.class_combo.currentData() or self.classes[0]
        # the next free number: after a delete, the count + 1 named a second "Walking #2"
        taken = {r.name for r in self.ctx.store.recordings("accel", self.ctx.dataset.id)}
        n = len(taken) + 1
        while f"{cls} #{n}" in taken:
            n += 1
        self._rec_class = cls
        self._rec_dataset = self.ctx.dataset.name
        warning = space_warning(self.ctx.store, "accel", stream.rate_hz)
        try:
            self.recorder = StreamRecorder(
                self.ctx.store, stream, "accel", f"{cls} #{n}", dataset_id=self.ctx.dataset.id, limit_s=seconds
            )
        except RecordingError as exc:  # full or read-only disk: say so, stay usable
            self.ctx.status(str(exc), 15000)
            return False
        if warning:
            self.ctx.status(warning, 15000)
        if seconds:
            self.ctx.settings["labelling.segment_s"] = seconds
        # the plot shows the live stream alone: the recording shown before (its labels, window ticks and list
        # entry) is put away, so no key or drag edits a recording the user no longer sees
        self.open_recording(None)
        self._select_no_recording()
        self.btn_record.blockSignals(True)
        self.btn_record.setChecked(True)
        self.btn_record.setText("■ Stop")
        self.btn_record.blockSignals(False)
        self.plot.set_window(max(10.0, seconds or 10.0))
        self.plot.set_follow(True)
        return True

    def stop_recording(self) -> Recording | None:
        rec = self.recorder
        if rec is None:
            return None
        self.recorder = None
        try:
            row = rec.stop()
        except RecordingError as exc:
            row = None
            self.ctx.status(f"Recording failed: {exc}", 15000)
        self.btn_record.blockSignals(True)
        self.btn_record.setChecked(False)
        self.btn_record.setText("● Record")
        self.btn_record.blockSignals(False)
        self.plot.set_follow(False)
        if row is None:
            self.reload_recordings()  # back to a recording of the list (the live stream is no longer shown)
            return None
        if row.n_samples == 0:
            # was: an empty "Walking #4 · 0.0 s" entry left in the list, the hint still saying "Recording …",
            # the plot left on the live stream's time range
            kept = f"the empty {row.name!r} was not kept"
            try:
                self.ctx.store.delete_recording(row.id)
                self.ctx.store.resolve(row.path).unlink(missing_ok=True)
            except (StoreError, OSError) as exc:  # an empty entry stays: nothing is lost either way
                kept = f"the empty {row.name!r} could not be removed: {failure_reason(exc)}"
            self.ctx.status(f"Nothing recorded: no samples arrived from the board; {kept}", 15000)
            self.reload_recordings()
            return row
        stopped = f"Recording stopped: {rec.stop_reason}. " if rec.stop_reason else ""
        if self.auto_label.isChecked():
            try:  # the first step of the new recording's undo history: Ctrl+Z right after the stop removes it
                self._model_for(row, row.duration).add(0.0, row.duration, self._rec_class)
            except LabelError as exc:  # the database is full too: the recording is kept, the label is not
                stopped += f"{exc}. "
        self.ctx.publish("recording_added", recording=row)
        path = self.ctx.store.resolve(row.path)
        self.ctx.status(
            stopped
            + f"Recorded {row.name}: {row.duration:.1f} s"
            + (f", {rec.dropped} samples dropped" if rec.dropped else "")
            + f" → {path}",
            15000,
        )
        return row

    # --- selection and labels ----------------------------------------------------------------------
    def _drag_select(self, a: float, b: float, finished: bool) -> None:
        if self.rec_stream is None or self.recorder is not None:
            return
        self.set_selection(a, b)

    def set_selection(self, a: float, b: float) -> None:
        """Select ``[a, b]`` seconds of the shown recording (what a left-drag does)."""
        if self.model is not None and self.model.duration is not None:
            a, b = max(0.0, a), min(self.model.duration, b)
        if b - a <= 0:  # a drag of no width (or beyond the recording's end) selects nothing: not even the label
            self.clear_selection()  # clicked before it, which a number key would then have relabelled
            self.selected_label = None
            self._highlight()
            return
        self.selection = (a, b)
        self.selected_label = None
        self.sel_region.setRegion((a, b))
        self.sel_region.show()
        self._highlight()

    def clear_selection(self) -> None:
        self.selection = None
        self.sel_region.hide()

    def _click(self, x: float) -> None:
        self.plot.setFocus()
        if self.model is None:
            return
        lab = self.model.label_at(x)
        self.clear_selection()
        self.selected_label = lab.id if lab else None
        self._highlight()

    def assign(self, class_index: int) -> None:
        """Number key: label the selection (or relabel the selected label) with class ``class_index``."""
        if self._recording_busy("label it"):
            return
        if self.model is None:
            self.ctx.status(
                f"Cannot label {self.recording.name!r}: its file cannot be read"
                if self.recording is not None
                else "Nothing to label: record a segment or pick a recording in the list first"
            )
            return
        if not 0 <= class_index < len(self.classes):
            return
        cls = self.classes[class_index]
        try:
            if self.selection is not None:
                lab = self.model.add(self.selection[0], self.selection[1], cls)
                self.clear_selection()
                self.selected_label = lab.id
            elif self.selected_label is not None:
                self.model.set_class(self.selected_label, cls)
            else:
                self.ctx.status("Drag on the plot to select a region first")
        except LabelError as exc:
            self.ctx.status(str(exc))
        self._highlight()

    def delete_selected(self) -> None:
        if self._recording_busy("delete a label"):
            return
        if self.model is not None and self.selected_label is not None:
            self.model.delete(self.selected_label)
            self.selected_label = None

    def undo(self) -> None:
        self._undo_redo("undo")

    def redo(self) -> None:
        self._undo_redo("redo")

    def _undo_redo(self, what: str) -> None:
        """Ctrl+Z / Ctrl+Shift+Z on the shown recording's history.  Its labels are re-read first: when they were
        changed outside the panel, nothing is undone (the step refers to labels no longer there), the labels
        are shown as they are and the history is dropped, said in the status bar; an undo the store cannot
        take (a full disk) is said and stays on the stack."""
        if self._recording_busy(what):
            return
        model = self.model
        if model is None or not (model.can_undo if what == "undo" else model.can_redo):
            return
        nothing = "Nothing was undone" if what == "undo" else "Nothing was redone"
        if model.reload():
            name = self.recording.name if self.recording is not None else ""
            self.ctx.status(f"{nothing}: {_changed_outside(name)}", 15000)
            return
        try:
            done = model.undo() if what == "undo" else model.redo()
        except LabelError as exc:  # e.g. a full disk: the step stays on the stack
            self.ctx.status(f"{nothing}: {exc}", 15000)
            return
        if done:
            self.ctx.status("Undone" if what == "undo" else "Redone")

    def handle_key(self, key: int, mods) -> bool:
        ctrl = bool(mods & Qt.ControlModifier)
        shift = bool(mods & Qt.ShiftModifier)
        if ctrl and key == Qt.Key_Z:
            self.redo() if shift else self.undo()
        elif ctrl and key == Qt.Key_Y:
            self.redo()
        elif Qt.Key_1 <= key <= Qt.Key_9 and not ctrl:
            self.assign(key - Qt.Key_1)
        elif key in (Qt.Key_Delete, Qt.Key_Backspace):
            self.delete_selected()
        elif key == Qt.Key_Escape:
            self.clear_selection()
            self.selected_label = None
            self._highlight()
        elif key == Qt.Key_R and not ctrl:
            self.btn_record.toggle()
        elif key in (Qt.Key_Left, Qt.Key_Right):
            x0, x1 = self.plot.visible_range()
            step = (x1 - x0) * (1.0 if shift else 0.25) * (-1 if key == Qt.Key_Left else 1)
            self.plot.setXRange(x0 + step, x1 + step, padding=0)
        elif key == Qt.Key_Home and self.rec_stream is not None:
            self.plot.setXRange(0, self.rec_stream.duration, padding=0.01)
        else:
            return False
        return True

    def _labels_changed(self) -> None:
        self._dirty = True
        if self.recording is not None:
            self._refresh_rec_item()
            self.ctx.publish("labels_changed", recording_id=self.recording.id)

    @staticmethod
    def _rec_text(r: Recording, n_labels: int) -> str:
        return f"{r.name}  ·  {r.duration:.1f} s  ·  {n_labels} label(s)"

    def _refresh_rec_item(self) -> None:
        """The list entry of the shown recording counts its labels as they are now (add, delete, undo)."""
        if self.recording is None or self.model is None:
            return
        for i in range(self.rec_list.count()):
            item = self.rec_list.item(i)
            if item.data(Qt.UserRole) == self.recording.id:
                item.setText(self._rec_text(self.recording, len(self.model.labels)))
                item.setToolTip(item.text())

    def _sync_regions(self) -> None:
        labels = {l.id: l for l in self.model.labels} if self.model else {}
        for lid in list(self._regions):
            if lid not in labels:
                self.plot.removeItem(self._regions.pop(lid))
        for lid, l in labels.items():
            item = self._regions.get(lid)
            color = pg.mkColor(
                CLASS_COLORS[self.classes.index(l.label) % len(CLASS_COLORS)] if l.label in self.classes else "#888888"
            )
            if item is None:
                item = _LabelRegion((l.start, l.end), movable=True)
                item.setZValue(-5)
                item.sigRegionChangeFinished.connect(lambda it, lid=lid: self._region_moved(lid, it))
                self.plot.addItem(item)
                self._regions[lid] = item
                label = pg.InfLineLabel(item.lines[0], l.label, position=0.95, anchors=[(0, 0), (0, 0)])
                item._label = label  # noqa: SLF001
            item.blockSignals(True)
            item.setRegion((l.start, l.end))
            item.blockSignals(False)
            color.setAlpha(70 if lid == self.selected_label else 35)
            item.setBrush(pg.mkBrush(color))
            item._label.setFormat(l.label)  # noqa: SLF001
            for line in item.lines:
                line.setPen(pg.mkPen(color.name(), width=3 if lid == self.selected_label else 1))

    def _region_moved(self, lid: int, item: pg.LinearRegionItem) -> None:
        """A label's edge was dragged (resize) or its body Shift-dragged (move).  A move keeps the label's
        length: it stops at the ends of the recording instead of cutting the label there.  Whatever the edit
        does to this label or its neighbours is one undo step, and a shortened label is said in the status
        bar with the undo text."""
        if self.model is None or lid not in {l.id for l in self.model.labels}:
            return
        old = self.model.get(lid)
        a, b = sorted(item.getRegion())
        dur = self.model.duration
        if abs((b - a) - old.duration) <= 1e-6 * max(1.0, old.duration) and dur is not None:  # a move
            a = min(max(0.0, a), max(0.0, dur - old.duration))
            b = a + old.duration
        try:
            self.model.set_bounds(lid, a, b)
            self.selected_label = lid
        except LabelError as exc:
            self.ctx.status(str(exc))
        else:
            if self.model.can_undo and "shortened" in self.model.undo_text:
                self.ctx.status(f"{self.model.undo_text} — Ctrl+Z undoes it", 10000)
        self._dirty = True

    def _highlight(self) -> None:
        self._dirty = True

    # --- windowing and balance -------------------------------------------------------------------
    def _windowing_changed(self) -> None:
        self.ctx.settings["labelling.input_size"] = self.win_size.value()
        self._dirty = True
        self._update_balance()

    def _update_windows(self) -> None:
        if self.model is None or self.recording is None:
            self.win_ticks.setData([], [])
            self.win_info.setText(
                f"The file of {self.recording.name!r} cannot be read: {self.unreadable}."
                if self.recording is not None
                else "Recording: its windows are shown when it stops."
                if self.recorder is not None
                else "No recording selected."
            )
            return
        # counted at the model's rate, as training resamples (a 52 Hz recording has 2.6x more samples)
        size, stride, rate = self.win_size.value(), self.win_stride.value(), self.round_rate_hz
        n = int(np.floor(self.recording.n_samples * rate / self.recording.rate_hz + 1e-9))
        w = windows(self.model.labels, rate, size, stride, n)
        starts = np.array([s for s, _ in w], float) / rate
        _, (y0, y1) = self.plot.getPlotItem().getViewBox().viewRange()
        if len(starts):
            x = np.repeat(starts, 2)
            y = np.tile([y0, y0 + 0.06 * (y1 - y0)], len(starts))
            self.win_ticks.setData(x, y)
        else:
            self.win_ticks.setData([], [])
        resampled = (
            ""
            if abs(self.recording.rate_hz - rate) < 1e-9
            else f"; recorded at {self.recording.rate_hz:g} Hz, resampled for training"
        )
        self.win_info.setText(
            f"{len(w)} window(s) of {size} samples ({size / rate:.2f} s at the model's {rate:g} Hz{resampled}) "
            f"in this recording; window starts are the ticks at the bottom."
        )

    def _update_balance(self) -> None:
        size = self.win_size.value()
        totals = {c: 0 for c in self.classes}
        seconds = {c: 0.0 for c in self.classes}
        for r in self.ctx.store.recordings("accel", self.ctx.dataset.id):
            from app.core.labels import Label

            labs = [Label(l.id, l.start_s, l.end_s, l.label) for l in self.ctx.store.labels(r.id)]
            bal = class_balance(labs, self.classes, self.round_rate_hz, size)  # at the model's rate
            for c in self.classes:
                totals[c] += int(bal[c]["windows"])
                seconds[c] += bal[c]["seconds"]
        # horizontal bars: full class names fit on the left axis (vertical bars truncated them)
        self.balance.clear()
        n = len(self.classes)
        counts = [totals[c] for c in self.classes]
        brushes = [pg.mkBrush(CLASS_COLORS[i % len(CLASS_COLORS)]) for i in range(n)]
        self.balance.addItem(pg.BarGraphItem(x0=0, y=np.arange(n), height=0.7, width=counts, brushes=brushes))
        for i, v in enumerate(counts):
            txt = pg.TextItem(str(v), anchor=(0, 0.5), color="#d4d4d4")
            txt.setPos(v, i)
            self.balance.addItem(txt)
        self.balance.getAxis("left").setTicks([[(i, c) for i, c in enumerate(self.classes)]])
        self.balance.setYRange(-0.6, n - 0.4, padding=0)
        self.balance.setXRange(0, max(counts + [1]) * 1.25, padding=0)
        self.balance_text.setText(", ".join(f"{c}: {totals[c]} ({seconds[c]:.0f} s)" for c in self.classes))
        self.balance_totals = totals
        self._update_training_windows()

    def _update_training_windows(self) -> None:
        """What a round at this input size would get from the dataset: the windows of the round's model's classes
        at its rate (the general model's, or the Training panel's choice; an imported model's own input size),
        split as training splits them (the same :func:`app.core.rounds.local_windows`).
        It reads every labelled recording (0.4 s for 30 min of data), so it runs on the task runner, 0.3 s
        after the last change."""
        if self._tw_gen >= 0:
            self._tw_gen += 1
            self._tw_timer.start()

    def _count_training_windows(self) -> None:
        if self._tw_task is not None or self._tw_gen < 0:  # one at a time (the newest runs next); not after shutdown
            return
        from app.core.rounds import RoundError, local_windows

        gen, size = self._tw_gen, self.round_input_size or self.win_size.value()
        classes, rate = self.round_classes, self.round_rate_hz
        model = f"{self.round_model}, {rate:g} Hz" if self.round_model else f"general model, {rate:g} Hz"
        try:
            store, did, user = self.ctx.store, self.ctx.dataset.id, self.ctx.user.name
        except StoreError:  # the app is closing
            return

        def work(token, progress):
            try:
                data = local_windows(store, did, classes, size, rate, user=user)
            except RoundError as exc:
                return size, None, str(exc)
            return size, (len(data.train_y), len(data.test_y)), ""

        def done(res) -> None:
            self._tw_task = None
            T, counts, why = res
            self.training_windows = counts
            if counts is None:
                self.train_info.setText(f"A round at T={T}: {why}")
            else:
                self.train_info.setText(
                    f"A round at T={T} ({model}) trains on <b>{counts[0]}</b> and "
                    f"tests on <b>{counts[1]}</b> windows of this dataset (60/40 per activity, strides T/2 and T)."
                )
            if gen != self._tw_gen:
                self._count_training_windows()

        def failed(msg: str) -> None:  # a damaged recording file: said, never raised into Qt
            self._tw_task = None
            self.training_windows = None
            self.train_info.setText(f"Cannot count the training windows: {msg}")
            if gen != self._tw_gen:
                self._count_training_windows()

        self._tw_task = self._tasks().start("Counting training windows", work, on_done=done, on_error=failed)

    def _tasks(self):
        if self.tasks is None:
            from app.ui.tasks import TaskRunner

            self.tasks = TaskRunner(self)
        return self.tasks

    # --- import / export -------------------------------------------------------------------------
    def import_wisdm(self, path: str | None = None) -> None:
        """Import a WISDM text file (v1.1 or 2019) on the task runner; the outcome, including every line the
        parser skipped, is shown under the recordings list."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Import WISDM text file", "", "WISDM (*.txt *.csv);;All (*)")
            if not path:
                return
        classes = self.classes
        store, did = self.ctx.store, self.ctx.dataset.id
        name = Path(path).name
        self._show_import(f"Importing {name}…", "")
        returned: list = []  # what the import did, also when a Cancel reached it (the task then "fails")

        def work(token, progress):
            result = import_wisdm(store, path, did, classes, progress=progress, cancelled=lambda: token.cancelled)
            returned.append(result)
            return result

        def done(result) -> None:
            for rec in result.recordings:
                self.ctx.publish("recording_added", recording=rec)
            self.import_result = result
            self._show_import(result.report(), "", warn=result.warn)
            self.ctx.status(
                f"Imported {len(result.recordings)} recording(s) from {name}"
                + (" before the cancel" if result.cancelled else "")
                + (f"; {result.skipped_count:,} line(s) skipped" if result.skipped else "")
            )

        def failed(msg: str) -> None:
            if msg == "cancelled" and returned and returned[0].recordings:
                # a Cancel between users keeps the users imported before it: listed, not hidden until restart
                returned[0].cancelled = True
                done(returned[0])
                return
            text = (
                f"Import of {name} cancelled, nothing was imported."
                if msg == "cancelled"
                else f"Import of {name} failed: {msg}"
            )
            self._show_import(text, "", warn=True)
            self.ctx.status(text if msg == "cancelled" else f"Import of {name} failed (see below the recordings list)")

        self._tasks().start(f"Importing {name}", work, on_done=done, on_error=failed)

    def _show_import(self, text: str, details: str, warn: bool = False) -> None:
        """The import outcome below the recordings list: the summary, then every skipped line (first 50)."""
        self.import_report.setPlainText(text + (f"\n\n{details}" if details and details != text else ""))
        self.import_report.setStyleSheet("QPlainTextEdit { color: #92400e; }" if warn else "")
        self.import_report.setVisible(bool(text))

    def export_csv(self, path: str | None = None) -> Task | None:
        """Every labelled recording of the dataset as one WISDM text file (see :meth:`_export`)."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export WISDM CSV", f"{self.ctx.user.name}.txt", "WISDM (*.txt)"
            )
            if not path:
                return None
        user = self.ctx.user.name
        return self._export(path, lambda parts: export_labelled_csv(path, user, parts), "labelled samples")

    def export_npz(self, path: str | None = None) -> Task | None:
        """The windows of every labelled recording as an ``.npz`` at the panel's size and stride (see
        :meth:`_export`)."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export windows", f"{self.ctx.user.name}_windows.npz", "npz (*.npz)"
            )
            if not path:
                return None
        classes, size, stride = self.classes, self.win_size.value(), self.win_stride.value()
        meta = {"user": self.ctx.user.name, "dataset": self.ctx.dataset.name}
        return self._export(
            path, lambda parts: export_windows_npz(path, parts, classes, size, stride, meta=meta), "windows"
        )

    def _export(self, path: str, write: Callable[[list], int], unit: str) -> Task:
        """Read every labelled recording and ``write`` them to ``path`` on the task runner (a dataset's
        recordings can take seconds to read; the window stays live and the task can be cancelled).  The file
        is written whole or not at all; the status bar says how many ``unit`` were written, or why nothing
        was (no labels, a class WISDM cannot carry, a recording gone, a full or read-only disk)."""
        from app.ui.tasks import start_export

        store, did, name = self.ctx.store, self.ctx.dataset.id, self.ctx.dataset.name
        return start_export(
            self._tasks(), self.ctx.status, path, lambda check: write(labelled_parts(store, did, name, check)), unit
        )

    # --- frame clock -----------------------------------------------------------------------------
    def tick(self) -> None:
        if self.recorder is not None and self.recorder.finished:
            self.stop_recording()
        elif self.recorder is not None:
            self.hint.setText(
                f"Recording {self._rec_class} into dataset {self._rec_dataset!r}: {self.recorder.duration:.1f} s"
                + (f" of {self.recorder.limit / self.recorder.stream.rate_hz:.0f} s" if self.recorder.limit else "")
                + f" → {self.recorder.path} — press R or Stop to end"
            )
        self.plot.tick()
        if self._dirty:
            self._dirty = False
            self._sync_regions()
            self._update_windows()
            self._update_balance()
            self.btn_undo.setEnabled(bool(self.model and self.model.can_undo))
            self.btn_redo.setEnabled(bool(self.model and self.model.can_redo))
            undo, redo = (self.model.undo_text, self.model.redo_text) if self.model else ("", "")
            self.btn_undo.setToolTip(f"Undo: {undo} (Ctrl+Z)" if undo else "Undo (Ctrl+Z): nothing to undo")
            self.btn_redo.setToolTip(f"Redo: {redo} (Ctrl+Shift+Z)" if redo else "Redo (Ctrl+Shift+Z): nothing to redo")
            if self.recorder is None:
                n = len(self.model.labels) if self.model else 0
                self.hint.setText(
                    "Drag to select · 1–9 label · drag edges to adjust, Shift+drag to move · Del delete · "
                    f"Ctrl+Z / Ctrl+Shift+Z undo/redo · R record  —  {n} label(s)"
                )

    def shortcuts(self) -> list[tuple[str, str]]:
        return [
            ("Left-drag", "Select a region (inside a label too)"),
            ("Drag a label's edge / Shift+drag it", "Resize / move the label (a move keeps its length)"),
            ("1 … 9", "Label the selection / relabel the selected label"),
            ("Click", "Select the label under the cursor"),
            ("Delete / Backspace", "Delete the selected label"),
            ("Ctrl+Z", "Undo the shown recording's last edit (each recording keeps its own history)"),
            ("Ctrl+Shift+Z / Ctrl+Y", "Redo"),
            ("Esc", "Clear the selection"),
            ("R", "Start/stop recording a segment"),
            ("← / →  (Shift: page)", "Scroll"),
            ("Home", "Show the whole recording"),
            ("Wheel / middle-drag", "Zoom / pan"),
        ]

    def shutdown(self) -> None:
        self._tw_timer.stop()  # no window count against the closing store
        self._tw_gen = -1
        if self.recorder is not None:
            self.stop_recording()


PANEL = PanelSpec(
    key="labelling",
    title="Labelling",
    order=30,
    factory=LabellingPanel,
    icon="SP_FileDialogDetailedView",
    tooltip="Record and label your own activities; per-user datasets",
)
