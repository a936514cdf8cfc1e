"""Training round panel: choose the model and the round, run it on the board, watch per-batch loss and a
per-batch bar chart of time, average power and energy, browse the history of rounds with before/after
accuracy, macro-F1 and confusion matrices.

The round runs on the task runner (:class:`app.core.rounds.RoundRunner`, Qt-free); this view only pulls
:class:`~app.core.rounds.RoundState` snapshots on a 10 Hz ``QTimer`` (and the frame clock) and repaints
when the state's version changed.  The form is prefilled from the estimator's recommendation (budgets of
the Estimator panel) and follows "Use in Training panel" there.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.round_config import WARMUP_EPOCHS
from app.core.rounds import (
    GENERAL_SIZES,
    BatchRow,
    EstimatorInputs,
    RoundConfig,
    RoundRunner,
    RoundState,
    estimation_windows,
    eta_text,
    general_model_facts,
    macro_f1_scope,
    planned_counts,
    round_counts_text,
    round_rows,
    round_summary,
)
from app.ui.panels import PanelSpec
from app.ui.panels.base import Panel
from app.ui.widgets.combo import tip_current_item

SOURCE_COLORS = {"d7": "#16a34a", "d7-interp": "#0d9488", "host": "#f59e0b", "none": "#9ca3af", "pending": "#cbd5e1"}
WARMUP_ALPHA = 150
VAL_COLOR = "#7c3aed"  # a validation pass of the robust round (a D7 interval, no update)
PLOT_TEXT = "#111827"  # titles and axis text on the white plot background
MODE_ITEMS = (
    ("TL (last two Dense)", "tl"),
    ("Full (all layers)", "full"),
    ("Last Dense only", "last"),
    ("Custom layers…", "custom"),
)
PAPER_LAYERS = ("conv1", "conv2", "dense1", "dense2")


def _general_facts(input_size: int) -> tuple[tuple[str, ...], float]:
    """The shipped general model's classes and rate from its sidecar (what a round with it windows with), or
    the paper CNN's WISDM-2019 five at 20 Hz when the sidecar is missing (the round then says so itself)."""
    return general_model_facts(input_size) or (("walking", "jogging", "stairs", "sitting", "standing"), 20.0)


class TrainingPanel(Panel):
    def __init__(self, ctx, parent=None):
        super().__init__(ctx, parent)
        self.state = RoundState()
        self.task = None
        # path -> (input size, trainable layers, classes, rate in Hz)
        self.imported: dict[str, tuple[int, tuple[str, ...], tuple[str, ...], float]] = {}
        self._importing: set[str] = set()  # paths being loaded on the task runner
        self._pending_choice: dict | None = None  # an Estimator choice made while a round ran
        self._shown_version = -1
        self._shown_round: int | None = None
        self._view_rows: list[BatchRow] = []
        root = QHBoxLayout(self)
        root.addWidget(self._build_left(), 2)  # 2 : 3 below 400 px, so a small screen's plots keep room
        split = QSplitter(Qt.Vertical)  # right: plots and metrics
        split.addWidget(self._build_plots())
        split.addWidget(self._build_metrics())
        split.setSizes([560, 260])
        root.addWidget(split, 3)
        self._connect(ctx)
        self._fill_layers(PAPER_LAYERS)
        self.prefill_from_estimator()
        self.load_history()

    def _build_left(self) -> QWidget:
        """The left column: the round's form, the recommendation, Run/Cancel, progress, warnings, history."""
        left = QVBoxLayout()
        left.addWidget(self._build_form())
        self.rec_label = QLabel()
        self.rec_label.setWordWrap(True)
        self.rec_label.setObjectName("recommendation")
        self.rec_label.setStyleSheet(
            "QLabel#recommendation { background:#eff6ff; border:1px solid #bfdbfe; border-radius:4px; padding:4px; }"
        )
        left.addWidget(self.rec_label)
        run = QHBoxLayout()
        self.btn_run = QPushButton("▶ Run round on the board")
        self.btn_run.setToolTip("Upload the model and your labelled windows, train, measure (Ctrl+R)")
        self.btn_cancel = QPushButton("Cancel")
        self.btn_cancel.setEnabled(False)
        run.addWidget(self.btn_run, 1)
        run.addWidget(self.btn_cancel)
        left.addLayout(run)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.stage = QLabel("Idle")
        left.addWidget(self.progress)
        left.addWidget(self.stage)
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("QLabel { background:#fef3c7; color:#78350f; padding:4px; border-radius:4px; }")
        self.warnings.setVisible(False)
        left.addWidget(self.warnings)
        left.addWidget(QLabel("History of rounds"))
        self.history = QListWidget()
        left.addWidget(self.history, 1)
        lw = QWidget()
        lw.setLayout(left)
        lw.setMaximumWidth(400)
        return lw

    def _build_form(self) -> QGroupBox:
        box = QGroupBox("Round")
        self.form_box = box  # locked while a round runs (:meth:`_lock_form`)
        form = QFormLayout(box)
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)  # labels above the fields where the column is narrow
        mrow = QHBoxLayout()
        self.model = QComboBox()
        self.model.addItem("General (paper CNN, WISDM)", None)
        tip_current_item(self.model, "The pretrained general model shipped with the app, or a model you imported")
        self.btn_import = QPushButton("Import…")
        self.btn_import.setToolTip("Import a .keras / .h5 / .npz model (loaded on a worker thread)")
        mrow.addWidget(self.model, 1)
        mrow.addWidget(self.btn_import)
        form.addRow("Model", mrow)
        self.size = QComboBox()
        for T in GENERAL_SIZES:
            self.size.addItem(f"T = {T}  ({T / 20:g} s at 20 Hz)", T)
        form.addRow("Input size", self.size)
        self.mode = QComboBox()
        for text, key in MODE_ITEMS:
            self.mode.addItem(text, key)
        form.addRow("Trainable", self.mode)
        self.layers = QListWidget()
        self.layers.setMaximumHeight(90)
        self.layers.setVisible(False)
        form.addRow("", self.layers)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(4)
        self.lr.setRange(0.0001, 10.0)
        self.lr.setSingleStep(0.005)
        self.lr.setValue(0.01)
        self.batch = QSpinBox()
        self.batch.setRange(1, 1024)
        self.batch.setValue(32)
        self.warmup = QSpinBox()
        self.warmup.setRange(0, 100)
        self.warmup.setValue(WARMUP_EPOCHS)  # (as odlstudio personalize; it started at 0)
        self.warmup.setToolTip("Epochs training only the last Dense layer first (the paper uses 2)")
        self.measure = QCheckBox("Measure energy with the LPM01A")
        self.measure.setChecked(True)
        for combo in (self.model, self.size, self.mode):  # narrower than their longest item on a small screen
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        form.addRow("Epochs", self.epochs)
        form.addRow("Learning rate", self.lr)
        form.addRow("Batch size", self.batch)
        form.addRow("Warm-up epochs", self.warmup)
        form.addRow("", self.measure)
        return box

    def _build_plots(self) -> pg.GraphicsLayoutWidget:
        """Loss, time, power and energy per batch (bars: measured; dashes: the estimator)."""
        plots = pg.GraphicsLayoutWidget()
        plots.setBackground("w")

        def add(row: int, title: str) -> pg.PlotItem:
            return plots.addPlot(row=row, col=0, title=title, axisItems={"bottom": _BatchAxis("bottom")})

        self.loss_plot = add(0, "Loss per batch")
        self.time_plot = add(1, "Time per batch (s)")
        self.power_plot = add(2, "Average power per batch (mW)")
        self.energy_plot = add(3, "Energy per batch (mJ)")
        for p in (self.loss_plot, self.time_plot, self.power_plot, self.energy_plot):
            p.showGrid(x=True, y=True, alpha=0.3)
            p.setMouseEnabled(x=True, y=False)
            # pyqtgraph's foreground is the dark theme's light grey: on this white background titles and
            # axes were nearly invisible
            p.setTitle(p.titleLabel.text, color=PLOT_TEXT, size="10pt", bold=True)
            for side in ("bottom", "left"):
                p.getAxis(side).setTextPen(PLOT_TEXT)
                p.getAxis(side).setPen("#4b5563")
        for p in (self.time_plot, self.power_plot, self.energy_plot):
            p.setXLink(self.loss_plot)
        for p in (self.loss_plot, self.time_plot, self.power_plot, self.energy_plot):
            # one width for every y axis ("0.15" is wider than "2"): batch n sits at the same x in all four plots
            p.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
            p.getAxis("left").setStyle(showValues=False)  # values once there is a batch (:meth:`_show`)
        self.energy_plot.setLabel("bottom", "batch", color=PLOT_TEXT)
        # batch numbers are counts: with no batches yet (x from -0.6 to 0.6) pyqtgraph's SI prefix made the
        # axis "batch (x0.001)" from -400 to 400
        self.energy_plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.loss_curve = self.loss_plot.plot(
            [], [], pen=pg.mkPen("#7c3aed", width=2), symbol="o", symbolSize=5, symbolBrush="#7c3aed"
        )
        self.bars: dict[str, pg.BarGraphItem] = {}
        self.pred: dict[str, pg.PlotDataItem] = {}
        for key, p in (("time", self.time_plot), ("power", self.power_plot), ("energy", self.energy_plot)):
            b = pg.BarGraphItem(x=[], height=[], width=0.8, pen=pg.mkPen("#334155"), brush="#cbd5e1")
            p.addItem(b)
            self.bars[key] = b
            self.pred[key] = p.plot(
                [],
                [],
                pen=pg.mkPen("#111", width=1, style=Qt.DashLine),
                symbol="_",
                symbolSize=14,
                symbolPen=pg.mkPen("#111", width=2),
                name="estimator",
            )
        plots.setMinimumHeight(PLOTS_MIN_HEIGHT)  # (the page scrolls on a small screen; the plots stay readable)
        plots.setToolTip(PLOTS_TIP)
        plots.scene().sigMouseMoved.connect(self._hover)  # a batch's figures under the pointer
        self.plots = plots
        return plots

    def _build_metrics(self) -> QWidget:
        """The round's summary and the confusion matrices before and after (side by side, or stacked where the
        column is too narrow for two: :class:`_MetricsBox`)."""
        self.summary = QLabel("Run a round to see its metrics.")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.RichText)
        self.cm_before = self._matrix()
        self.cm_after = self._matrix()
        titles = [QLabel(t) for t in ("Confusion matrix before (rows = true class)", "Confusion matrix after")]
        for t in titles:
            t.setWordWrap(True)
        self.metrics_box = _MetricsBox(self.summary, titles, [self.cm_before, self.cm_after])
        return self.metrics_box

    def _connect(self, ctx) -> None:
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self.refresh)
        self.btn_run.clicked.connect(self.run_round)
        self.btn_cancel.clicked.connect(self.cancel_round)
        self.btn_import.clicked.connect(lambda: self.import_model())  # clicked(bool) is not a path
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.model.currentIndexChanged.connect(self._model_changed)
        self.size.currentIndexChanged.connect(self._update_recommendation_text)
        for sig in (
            self.mode.currentIndexChanged,
            self.epochs.valueChanged,
            self.batch.valueChanged,
            self.warmup.valueChanged,
            self.layers.itemChanged,
        ):  # the box follows the form (TL/Full, epochs …), not only the recommendation
            sig.connect(lambda *_: self._update_recommendation_text())
        self.history.currentRowChanged.connect(self._history_selected)
        self.add_shortcut("Ctrl+R", self.run_round)
        ctx.subscribe("estimator_choice", self.apply_choice)
        ctx.subscribe("user_changed", lambda **_: self.load_history())

    # --- construction helpers -----------------------------------------------------------------------------
    @staticmethod
    def _matrix() -> QTableWidget:
        """A compact confusion matrix: small cells, as tall as its rows (never a scroll bar: at 1280 x 800 the
        two matrices of five classes were cut and scrolled), predicted classes abbreviated above the columns."""
        t = QTableWidget(0, 0)
        t.setEditTriggers(QAbstractItemView.NoEditTriggers)
        f = t.font()
        f.setPointSizeF(max(7.0, f.pointSizeF() - 1.0))
        t.setFont(f)
        for h in (t.horizontalHeader(), t.verticalHeader()):
            h.setFont(f)
            h.setMinimumSectionSize(1)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        t.verticalHeader().setSectionResizeMode(QHeaderView.Fixed)
        t.verticalHeader().setDefaultSectionSize(MATRIX_ROW_PAD + t.fontMetrics().height())
        t.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        t.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        t.setSizePolicy(t.sizePolicy().horizontalPolicy(), QSizePolicy.Fixed)
        _fit_matrix_height(t, 5)
        return t

    def _fill_layers(self, names) -> None:
        self.layers.clear()
        for n in names:
            it = QListWidgetItem(n)
            it.setFlags(it.flags() | Qt.ItemIsUserCheckable)
            it.setCheckState(Qt.Checked if n.startswith("dense") else Qt.Unchecked)
            self.layers.addItem(it)

    def _mode_changed(self) -> None:
        self.layers.setVisible(self.mode.currentData() == "custom")

    def _model_changed(self) -> None:
        path = self.model.currentData()
        if path is None:
            self.size.setEnabled(True)
            self._fill_layers(PAPER_LAYERS)
        else:
            T, layers, classes, rate = self.imported[path]
            self.size.setEnabled(False)
            i = self.size.findData(T)
            if i < 0:
                self.size.addItem(f"T = {T} (imported model)", T)
                i = self.size.count() - 1
            self.size.setCurrentIndex(i)
            self._fill_layers(layers)
        self._update_recommendation_text()  # the advice may be for another model
        # the Labelling panel counts what a round would train on: with this model's classes, rate and T
        if path is None:
            self.ctx.publish("round_model", name=None, classes=None, rate_hz=None, input_size=None)
        else:
            self.ctx.publish("round_model", name=Path(path).name, classes=classes, rate_hz=rate, input_size=T)

    # --- estimator prefill --------------------------------------------------------------------------------
    def prefill_from_estimator(self) -> None:
        """Set input size, mode, epochs and batch to the estimator's recommendation under the saved budgets."""
        inputs = EstimatorInputs.from_settings(self.ctx.settings)
        # the windows a round would train on and validate with (the robust round's split), as the Estimator counts
        classes, rate = _general_facts(GENERAL_SIZES[0])
        windows = estimation_windows(
            self.ctx.store, self.ctx.dataset.id, classes, rate, inputs.batch_size, self.ctx.user.name
        )
        counts = {T: windows(T) for T in GENERAL_SIZES}  # (each cut once: the recommender reads them again)
        nw = counts.get if counts[GENERAL_SIZES[0]] is not None else None
        try:
            rec = inputs.recommend(nw, str(self.ctx.data_dir / "profiles"))
        except Exception as exc:  # noqa: BLE001 - shown, the form keeps its values
            self.rec_label.setText(f"Estimator unavailable: {exc}")
            return
        if rec.choice is None:
            self.rec_label.setText(f"Estimator: {rec.reason}")
            return
        c = rec.choice
        self.apply_choice(int(c["input_size"]), str(c["mode"]), int(c["epochs"]), int(inputs.batch_size), rec.reason)

    def apply_choice(
        self,
        input_size: int,
        mode: str,
        epochs: int,
        batch_size: int = 32,
        reason: str = "",
        model: str | None = None,
        **_extra,
    ) -> None:
        """Follow a recommendation (the Estimator's ``estimator_choice`` topic, or the prefill).

        ``model``: ``""`` = the general model, a file path = that imported model (imported here first, on the
        task runner like Import…, when it is not in the list yet), None = keep the current model.  An
        imported model runs at its own input size: if the estimator chose another T, the box says so."""
        if self.task is not None:  # the form is the running round's: the choice waits for its end
            self._pending_choice = dict(
                input_size=input_size, mode=mode, epochs=epochs, batch_size=batch_size, reason=reason, model=model
            )
            self.ctx.status(CHOICE_WAITS)
            return
        if model is not None:
            self._choice = (_model_key(model) if model else "", int(input_size))
            if not model:
                self.model.setCurrentIndex(0)
            else:
                i = self.model.findData(_model_key(model))
                if i >= 0:
                    self.model.setCurrentIndex(i)
                else:
                    self.import_model(model)  # selected when loaded (_model_changed then sets its input size)
        else:
            self._choice = (self.model.currentData(), int(input_size))
        if self.model.currentData() is None:
            i = self.size.findData(int(input_size))
            if i >= 0:
                self.size.setCurrentIndex(i)
        j = self.mode.findData(mode)
        if j >= 0:
            self.mode.setCurrentIndex(j)
        self.epochs.setValue(int(epochs))
        self.batch.setValue(int(batch_size))
        self._reason = reason
        self._update_recommendation_text()

    def _form_estimate(self) -> str:
        """The estimator's cost of the round as the form is set now (mode, T, epochs, batch, warm-up), so the
        box follows TL/Full and the other fields instead of only restating the recommendation."""
        from estimator import estimate
        from estimator.arch import paper_cnn
        from estimator.core import inference_time_s
        from estimator.profiles import get_profile
        from estimator.recommend import fmt3

        if self.model.currentData() is not None:
            return "<b>This round:</b> see the Estimator panel for the imported model's costs."
        try:
            T = int(self.size.currentData())
            mode = str(self.mode.currentData())
            tr = (
                [self.layers.item(i).text() for i in range(self.layers.count()) if self.layers.item(i).checkState()]
                if mode == "custom"
                else mode
            )
            if not tr:
                return "<b>This round:</b> tick at least one layer to train."
            prof = get_profile(EstimatorInputs.from_settings(self.ctx.settings).profile, self.ctx.data_dir / "profiles")
            warm = self.warmup.value()
            # what the round will run: its training and validation windows, batches and validation passes
            classes, rate = _general_facts(T)
            counts = planned_counts(
                self.ctx.store,
                self.ctx.dataset.id,
                classes,
                T,
                rate,
                self.batch.value(),
                self.epochs.value(),
                warm,
                user=self.ctx.user.name,
            )
            arch = paper_cnn(T)
            kw = dict(n_windows=counts.n_train) if counts else {}
            est = estimate(arch, tr, self.batch.value(), prof, epochs=self.epochs.value(), **kw)
            wst = estimate(arch, "last", self.batch.value(), prof, epochs=warm, **kw) if warm else None
            t_val = counts.val_passes * inference_time_s(arch, counts.n_val, prof) if counts else 0.0
        except Exception as exc:  # noqa: BLE001 - a bad profile file or form state: said, never raised
            return f"<b>This round:</b> no estimate ({exc})"
        what = f"{'custom layers' if mode == 'custom' else mode.upper()}, T={T}, {self.epochs.value()} epoch(s)"
        what += f" + {warm} warm-up" if warm else ""
        if counts is not None and est.time_per_round_s is not None:
            secs = est.time_per_round_s + ((wst.time_per_round_s or 0.0) if wst else 0.0) + t_val
            mj = 1e3 * ((est.energy_per_round_j or 0.0) + ((wst.energy_per_round_j or 0.0) if wst else 0.0))
            mj += 1e3 * t_val * est.power_w
            cost = f"≈ {fmt3(secs)} s and {fmt3(mj)} mJ on the board ({round_counts_text(counts)})"
        else:
            cost = f"≈ {fmt3(est.time_per_batch_s)} s and {fmt3(1e3 * est.energy_per_batch_j)} mJ per batch"
        return f"<b>This round</b> ({what}, batch {self.batch.value()}): {cost}, {est.memory_kib:.0f} KiB to train."

    def _update_recommendation_text(self) -> None:
        reason = getattr(self, "_reason", "")
        if not reason:
            self.rec_label.setText(self._form_estimate())
            return
        text = f"<b>Estimator:</b> {reason}"
        key, T = getattr(self, "_choice", (None, None))
        path = self.model.currentData()
        if path is not None and path == key and path in self.imported and self.imported[path][0] != T:
            text += (
                f"<br><span style='color:#b45309'>The estimator chose T = {T}, but {Path(path).name} takes "
                f"T = {self.imported[path][0]}: the round runs at T = {self.imported[path][0]}.</span>"
            )
        elif key and key != path:
            text += (
                f"<br><span style='color:#b45309'>(for {Path(key).name}"
                f"{', being imported' if key in self._importing else ''})</span>"
            )
        self.rec_label.setText(text + "<br>" + self._form_estimate())

    # --- config -------------------------------------------------------------------------------------------
    def config(self) -> RoundConfig:
        layers = tuple(
            self.layers.item(i).text()
            for i in range(self.layers.count())
            if self.layers.item(i).checkState() == Qt.Checked
        )
        return RoundConfig(
            model_path=self.model.currentData(),
            input_size=int(self.size.currentData()),
            mode=str(self.mode.currentData()),
            layers=layers if self.mode.currentData() == "custom" else (),
            epochs=self.epochs.value(),
            lr=self.lr.value(),
            batch_size=self.batch.value(),
            warmup_epochs=self.warmup.value(),
            measure_power=self.measure.isChecked(),
            profile=EstimatorInputs.from_settings(self.ctx.settings).profile,
        )

    def _tasks(self):
        if self.tasks is None:
            from app.ui.tasks import TaskRunner

            self.tasks = TaskRunner(self)
        return self.tasks

    # --- actions ------------------------------------------------------------------------------------------
    def import_model(self, path: str | None = None) -> None:
        """Load a ``.keras``/``.h5``/``.npz`` on a worker (TensorFlow stays off the GUI thread), add it to the
        model list (once per file) and select it."""
        if not path:
            path, _ = QFileDialog.getOpenFileName(
                self, "Import a model", str(Path.home()), "Models (*.keras *.h5 *.hdf5 *.npz)"
            )
        if not path:
            return
        path = _model_key(path)
        if path in self._importing:
            return
        self._importing.add(path)

        def work(token, progress):
            from app.core.models import load_model

            progress(0.2, "loading")
            m = load_model(path, isolate=True)  # the app: TensorFlow is imported in a child, not here
            layers = tuple(l.name for l in m.arch.layers if m.arch.param_shapes().get(l.name))
            return m.input_size, layers, m.classes, float(m.meta.get("rate_hz", 20.0))  # the rate rounds use

        def done(res):
            self._importing.discard(path)
            T, layers, classes, rate = res
            self.imported[path] = (T, layers, tuple(classes), rate)
            i = self.model.findData(path)
            if i < 0:
                self.model.addItem(f"{Path(path).name} (T={T}, {len(classes)} classes)", path)
                i = self.model.count() - 1
            if i == self.model.currentIndex():
                self._model_changed()  # re-imported: its input size and layers may have changed
            else:
                self.model.setCurrentIndex(i)
            self._update_recommendation_text()

        def failed(msg: str) -> None:
            self._importing.discard(path)
            self._show_error(f"Import failed: {msg}")

        self._tasks().start(f"Importing {Path(path).name}", work, on_done=done, on_error=failed)

    def run_round(self) -> None:
        if self.task is not None:  # Ctrl+R while a round runs (the button is disabled then)
            self.ctx.status(ALREADY_RUNNING)
            return
        try:
            cfg = self.config().validate()
        except Exception as exc:  # noqa: BLE001
            self._show_error(str(exc))
            return
        self.state = RoundState()
        runner = RoundRunner(
            self.ctx.store,
            self.ctx.devices,
            self.ctx.data_dir,
            cfg,
            self.ctx.dataset.id,
            self.state,
            user=self.ctx.user.name,
            profile_dir=self.ctx.data_dir / "profiles",
        )
        self._shown_version = -1
        self._shown_round = None
        self.btn_run.setEnabled(False)
        self.btn_cancel.setEnabled(True)
        self.warnings.setVisible(False)
        self._lock_form(True)
        self.history.blockSignals(True)  # the plots show the running round, not the past one selected
        self.history.setCurrentRow(-1)
        self.history.blockSignals(False)
        self.task = self._tasks().start(
            "Training round",
            lambda tok, prog: runner.run(lambda: tok.cancelled, prog),
            on_done=self._finished,
            on_error=self._failed,
        )
        self.timer.start()

    def cancel_round(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.stage.setText("Cancelling: aborting the round on the board…")

    def _lock_form(self, locked: bool) -> None:
        """While a round runs its form shows the round's settings and cannot change: a model, T or mode picked
        then changed nothing of the round, yet the cost box described it as "This round" (and Import… loaded a
        model into a form that could not be used).  Qt keeps the input size's own disabled state (an imported
        model's T) when the box is enabled again."""
        self.form_box.setEnabled(not locked)
        self.form_box.setToolTip(FORM_LOCKED if locked else "")

    def _end(self) -> None:
        self.task = None
        self.timer.stop()
        self.btn_run.setEnabled(True)
        self.btn_cancel.setEnabled(False)
        self._lock_form(False)
        self.refresh()
        self.load_history()
        pending, self._pending_choice = self._pending_choice, None
        if pending is not None:  # "Use in Training panel" pressed during the round
            self.apply_choice(**pending)

    def _finished(self, result: dict) -> None:
        self._end()
        self.ctx.publish("round_finished", round_id=result.get("round_id"))
        self.ctx.status(f"Round {result.get('round_id')} {result.get('status')}")

    def _failed(self, message: str) -> None:
        self._end()
        if message == "cancelled":
            snap = self.state.snapshot()
            rid = snap["round_id"]
            if snap["status"] == "done":  # the Cancel came after the board's last batch: the round is whole
                self.stage.setText(
                    f"Round {rid}: done — Cancel came after the board had finished training: "
                    "the round and its personalized weights were kept"
                )
                self.ctx.status(f"Round {rid} done (Cancel came too late to stop it)")
            else:
                self.stage.setText("Cancelled (the partial round is in the history)")
            if rid is not None:
                self.ctx.publish("round_finished", round_id=rid)
        else:
            snap = self.state.snapshot()
            self._show_error(message[:1].upper() + message[1:])
            if snap["round_id"] is not None and snap["status"] == "failed":  # stored: "Error" said nothing of it
                done = snap["batches_done"]
                self.stage.setText(
                    f"Round {snap['round_id']} failed "
                    + (f"at batch {done}/{snap['total_batches']}" if snap["total_batches"] else "before training")
                    + (f": its {done} batch{'' if done == 1 else 'es'} are in the history" if done else "")
                )

    def _show_error(self, message: str) -> None:
        self.stage.setText("Error")
        self.warnings.setText(message)
        self.warnings.setVisible(True)
        self.ctx.status(message.splitlines()[0] if message else "error")

    # --- history ------------------------------------------------------------------------------------------
    def load_history(self) -> None:
        rounds = [r for r in self.ctx.store.rounds(self.ctx.dataset.id)]
        self._rounds = rounds[::-1]
        self.history.blockSignals(True)
        self.history.clear()
        for r in self._rounds:
            it = QListWidgetItem(round_summary(r))
            color = {"done": "#166534", "failed": "#991b1b", "cancelled": "#92400e"}.get(r["status"])
            if color:
                it.setForeground(QBrush(QColor(color)))
            self.history.addItem(it)
        self.history.blockSignals(False)
        if self._rounds and self.task is None:
            self.history.setCurrentRow(0)
            self._history_selected(0)

    def _history_selected(self, row: int) -> None:
        if self.task is not None:  # a click on a past round while one runs: the plots stay the running round's
            if row >= 0:
                self.ctx.status(HISTORY_WAITS)
                self.history.blockSignals(True)
                self.history.setCurrentRow(-1)
                self.history.blockSignals(False)
            return
        if not (0 <= row < len(getattr(self, "_rounds", []))):
            return
        r = self._rounds[row]
        self._shown_round = r["id"]
        rows = round_rows(self.ctx.store, r["id"])
        res = r["result"]
        self._show(
            rows,
            res.get("before"),
            res.get("after"),
            res.get("warnings", []),
            tuple(res.get("classes") or r["config"].get("model_classes", ())),
            r["config"],
            res,
        )
        self._show_how_far(r["status"], res, sum(1 for x in rows if x.phase != "val"))
        self.stage.setText(f"Round {r['id']}: {r['status']}" + (f" — {res['error']}" if res.get("error") else ""))

    def _show_how_far(self, status: str, res: dict, stored: int) -> None:
        """The progress bar of a past round: full when done, else the batches it got through (a cancelled
        round of 9 batches out of 15 showed an empty "0 %" bar beside its nine bars).  ``stored``: its
        training batches in the store (the count of a round whose result does not say, one the app's
        closing aborted)."""
        if status == "done":
            self.progress.setValue(1000)
            self.progress.setFormat("%p %")
            return
        done = int(res.get("batches_done") or stored)
        total = int(res.get("total_batches") or 0)
        self.progress.setValue(int(1000 * min(done, total) / total) if total else 0)
        if total:
            self.progress.setFormat(f"{status} at batch {done}/{total}")
        elif done:
            self.progress.setFormat(f"{status} after {done} batch{'' if done == 1 else 'es'}")
        else:
            self.progress.setFormat(f"{status} before the board started training")

    # --- pulling the live state ---------------------------------------------------------------------------
    def tick(self) -> None:
        if self.task is not None:
            self.refresh()

    def refresh(self) -> None:
        snap = self.state.snapshot()
        self._show_progress(snap)  # the time left counts down between batch reports
        if snap["version"] == self._shown_version:
            return
        self._shown_version = snap["version"]
        self._show(
            snap["rows"],
            snap["before"],
            snap["after"],
            snap["warnings"],
            snap["classes"],
            None,
            None,
            total=snap["total_batches"],
        )

    def _show_progress(self, snap: dict) -> None:
        """Progress by batches done (the bar) and the time left (the round plan scaled by the batches done)."""
        self.progress.setValue(int(1000 * snap["fraction"]))
        total, done = snap["total_batches"], snap["batches_done"]
        self.progress.setFormat(f"%p %  ·  batch {done}/{total}" if total else "%p %")
        text = snap["text"]
        if snap["status"] == "running" and snap["eta_s"] is not None:
            left = eta_text(max(0.0, snap["eta_s"] - (time.monotonic() - snap["eta_at"])))
            text = f"{text} — {left}" if text else left
        if text:
            self.stage.setText(text)

    def _show(self, rows: list[BatchRow], before, after, warnings, classes, config, result, total: int = 0) -> None:
        self._view_rows = list(rows)
        n = len(rows)
        x = np.arange(n, dtype=float)
        tr = [i for i, r in enumerate(rows) if r.phase != "val"]  # the training loss, not the validation one
        self.loss_curve.setData(x[tr], [rows[i].loss for i in tr])
        vals = {
            "time": ([r.seconds for r in rows], [r.pred_seconds for r in rows]),
            "power": (
                [np.nan if r.avg_power_w is None else r.avg_power_w * 1e3 for r in rows],
                [None if not r.pred_seconds else (r.pred_energy_j or 0) / r.pred_seconds * 1e3 for r in rows],
            ),
            "energy": (
                [np.nan if r.energy_j is None else r.energy_j * 1e3 for r in rows],
                [None if r.pred_energy_j is None else r.pred_energy_j * 1e3 for r in rows],
            ),
        }
        brushes = []
        for r in rows:
            c = QColor(VAL_COLOR if r.phase == "val" else SOURCE_COLORS.get(r.source, "#cbd5e1"))
            if r.phase == "warmup":
                c.setAlpha(WARMUP_ALPHA)
            brushes.append(QBrush(c))
        for key, (h, pred) in vals.items():
            hh = np.nan_to_num(np.asarray(h, float), nan=0.0)
            self.bars[key].setOpts(x=x, height=hh, width=0.8, brushes=brushes if n else None)
            px = [i for i, p in enumerate(pred) if p is not None]
            self.pred[key].setData(np.asarray(px, float), np.asarray([pred[i] for i in px], float))
        span = max(n, total, 1)
        for p in (self.loss_plot, self.time_plot, self.power_plot, self.energy_plot):
            # no batch: no values (pyqtgraph's 0 … 1 default wrote 0.2 … 0.8 on top of each other in a short plot);
            # set only when it changes (setStyle redraws the axis, and this runs at every batch of a round)
            axis = p.getAxis("left")
            if axis.style["showValues"] != bool(n):
                axis.setStyle(showValues=bool(n))
        self.loss_plot.setXRange(-0.6, span - 0.4, padding=0)
        self.warnings.setText("\n".join(f"⚠ {w}" for w in warnings))
        self.warnings.setVisible(bool(warnings))
        self._fill_matrix(self.cm_before, before, classes)
        self._fill_matrix(self.cm_after, after, classes)
        parts = []
        for name, m in (("Before", before), ("After", after)):  # (macro-F1 over the classes tested: said)
            if m and m.get("accuracy") is not None:
                parts.append(
                    f"<b>{name}</b>: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}{macro_f1_scope(m)}"
                )
        v = (result or {}).get("validation") if isinstance(result, dict) else None
        if v:
            kept = v["kept"]
            parts.append(
                f"<b>Validation</b> ({v['n_val']} held-out windows): kept epoch {kept['epoch']} "
                f"(macro-F1 {kept['macro_f1']:.3f}; the general model {v['start']['macro_f1']:.3f})"
                + (
                    " — personalization did not beat the general model: its weights were kept"
                    if kept["epoch"] == 0
                    else ""
                )
            )
        if rows:
            e = [r.energy_j for r in rows if r.energy_j is not None]
            nv = n - len(tr)
            txt = f"{len(tr)} batches" + (f" + {nv} validation passes" if nv else "")
            board = ((result or {}).get("board") if isinstance(result, dict) else None) or {}
            txt += f", {sum(r.seconds for r in rows):.2f} s on {board.get('name') or 'the board'}"
            measured = not board or bool(board.get("odl_firmware"))
            pred = sum(r.pred_energy_j or 0 for r in rows) * 1e3
            if e and len(e) < n:  # (the power monitor lost: the estimator's figure for the same batches)
                seen = sum(r.pred_energy_j or 0 for r in rows if r.energy_j is not None) * 1e3
                txt += (
                    f", {sum(e) * 1e3:.2f} mJ{' measured' if measured else ''} over the {len(e)} of {n} "
                    f"{'batches and validation passes' if nv else 'batches'} with power samples "
                    f"(estimator {seen:.2f} mJ for those, {pred:.2f} mJ for the round)"
                )
            elif e:
                txt += f", {sum(e) * 1e3:.2f} mJ{' measured' if measured else ''} (estimator {pred:.2f} mJ)"
            if not measured:
                txt += " — <b>not measured</b>: this board takes its batch times and current from the estimator"
            parts.append(txt)
            legend = ", ".join(
                f"<span style='color:{SOURCE_COLORS[k]}'>■</span> {t}"
                for k, t in (
                    ("d7", "D7-aligned"),
                    ("d7-interp", "edge lost, interpolated"),
                    ("host", "host-aligned"),
                    ("none", "not measured"),
                )
            )
            parts.append(
                f"bars: {legend}; lighter = warm-up; dashes = estimator"
                + (f"; <span style='color:{VAL_COLOR}'>■</span> validation pass" if nv else "")
            )
        self.summary.setText("<br>".join(parts) if parts else "Run a round to see its metrics.")
        self.metrics_box.fit()  # (the summary's wrapped lines, whole)

    def _hover(self, pos) -> None:
        """The plots' tool tip: the figures of the batch under the pointer (the bars had no values to read)."""
        for p in (self.loss_plot, self.time_plot, self.power_plot, self.energy_plot):
            if p.vb.sceneBoundingRect().contains(pos):
                i = int(round(p.vb.mapSceneToView(pos).x()))
                tip = self.batch_tip(i) if 0 <= i < len(self._view_rows) else PLOTS_TIP
                self.plots.setToolTip(tip)
                return
        self.plots.setToolTip(PLOTS_TIP)

    def batch_tip(self, i: int) -> str:
        """What the four plots show of bar ``i``, with the estimator's figures beside the measured ones."""
        r = self._view_rows[i]
        n = f"{r.n_samples} window{'' if r.n_samples == 1 else 's'}"
        if r.phase == "val":
            head = f"Bar {i}: validation pass ({n} held out, no update)"
        else:
            what = "warm-up epoch" if r.phase == "warmup" else "epoch"
            head = f"Bar {i}: {what} {r.epoch + 1}, batch {r.batch + 1} ({n})"
        est_t = f" (estimator {r.pred_seconds:.3f} s)" if r.pred_seconds else ""
        lines = [head, f"time {r.seconds:.3f} s{est_t}"]
        pred_p = (r.pred_energy_j or 0) / r.pred_seconds * 1e3 if r.pred_seconds else None
        if r.energy_j is None or r.avg_power_w is None:
            lines.append("power and energy: not measured (no power samples in this batch)")
        else:
            est_p = f" (estimator {pred_p:.2f} mW)" if pred_p is not None else ""
            est_e = f" (estimator {r.pred_energy_j * 1e3:.3f} mJ)" if r.pred_energy_j is not None else ""
            lines.append(f"average power {r.avg_power_w * 1e3:.2f} mW{est_p}")
            lines.append(f"energy {r.energy_j * 1e3:.3f} mJ{est_e}, {SOURCE_WORDS.get(r.source, r.source)}")
        f1 = r.macro_f1
        lines.append(f"loss {r.loss:.3f}" + (f", macro-F1 {f1:.3f}" if r.phase == "val" and f1 is not None else ""))
        return "\n".join(lines)

    def _fill_matrix(self, table: QTableWidget, m, classes) -> None:
        if not m:
            table.setRowCount(0)
            table.setColumnCount(0)
            return
        cm = np.asarray(m["confusion"], int)
        names = list(m.get("classes") or classes)
        k = cm.shape[0]
        table.setRowCount(k)
        table.setColumnCount(k)
        for j, (name, short) in enumerate(zip(names, _short_names(names))):
            head = QTableWidgetItem(short)
            head.setToolTip(f"predicted {name}")
            table.setHorizontalHeaderItem(j, head)
        table.setVerticalHeaderLabels(names)
        _fit_matrix_height(table, k)
        rowsum = np.maximum(cm.sum(axis=1, keepdims=True), 1)
        for i in range(k):
            for j in range(k):
                it = QTableWidgetItem(str(cm[i, j]))
                it.setTextAlignment(Qt.AlignCenter)
                frac = cm[i, j] / rowsum[i, 0]
                base = (34, 197, 94) if i == j else (239, 68, 68)
                it.setBackground(QBrush(QColor(*base, int(30 + 200 * frac) if cm[i, j] else 0)))
                table.setItem(i, j, it)

    def shortcuts(self) -> list[tuple[str, str]]:
        return [("Ctrl+R", "Run a round on the board")]

    def shutdown(self) -> None:
        self.cancel_round()


class _BatchAxis(pg.AxisItem):
    """The batch axis: ticks at whole batches only (a round with few batches, or none yet, had ticks at
    -0.5, -0.4 … 0.5, batch numbers that do not exist)."""

    def tickSpacing(self, minVal, maxVal, size):  # noqa: N802, N803 - pyqtgraph's names
        levels = [(sp, off) for sp, off in super().tickSpacing(minVal, maxVal, size) if sp >= 1.0]
        return levels or [(1.0, 0.0)]


class _MetricsBox(QWidget):
    """The summary above the two confusion matrices: side by side where each gets :data:`MATRIX_MIN_WIDTH`,
    stacked below that (an 800 x 600 screen: columns of two-digit counts were elided to "…").  The summary's
    least height follows its wrapped text (the splitter gave it less and cut its last lines)."""

    def __init__(self, summary: QLabel, titles: list[QLabel], tables: list[QTableWidget]) -> None:
        super().__init__()
        self.summary, self.titles, self.tables = summary, titles, tables
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.stacked: bool | None = None
        self._place(False)

    def _place(self, stacked: bool) -> None:
        if stacked == self.stacked:
            return
        self.stacked = stacked
        for w in (self.summary, *self.titles, *self.tables):
            self.grid.removeWidget(w)
        self.grid.addWidget(self.summary, 0, 0, 1, 1 if stacked else 2)
        for i, (title, table) in enumerate(zip(self.titles, self.tables)):
            row, col = (1 + 2 * i, 0) if stacked else (1, i)
            self.grid.addWidget(title, row, col, Qt.AlignBottom)
            self.grid.addWidget(table, row + 1, col)

    def fit(self, width: int | None = None) -> None:
        """Side by side or stacked for ``width`` (default: the box's), and the summary's height for its text."""
        w = self.width() if width is None else width
        self._place(w < 2 * MATRIX_MIN_WIDTH + self.grid.horizontalSpacing())
        self.summary.setMinimumHeight(self.summary.heightForWidth(w))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        self.fit(event.size().width())
        super().resizeEvent(event)


PLOTS_TIP = "Point at a bar to read its batch's time, power and energy beside the estimator's"
SOURCE_WORDS = {
    "d7": "between the batch's D7 edges",
    "d7-interp": "its D7 end edge lost: interval from the board's ticks",
    "host": "host-aligned (no D7 edges)",
}
FORM_LOCKED = "The settings of the running round: they can be changed when it ends (Cancel stops it)"
ALREADY_RUNNING = "A round is already running: wait for it to end, or press Cancel to stop it"
CHOICE_WAITS = "The Estimator's choice is put in the Training panel's form when the running round ends"
HISTORY_WAITS = "The plots show the running round: past rounds can be looked at when it ends"

#: The y axes' width in pixels (room for labels like "0.015" at 9 pt).
LEFT_AXIS_WIDTH = 46
PLOTS_MIN_HEIGHT = 400  # the four per-batch plots, each a readable strip
MATRIX_MIN_WIDTH = 270  # a confusion matrix of five classes with two-digit counts, class names beside its rows
MATRIX_ROW_PAD = 4  # pixels above the text of a confusion matrix's row


def _fit_matrix_height(table: QTableWidget, rows: int) -> None:
    """Make a confusion matrix exactly as tall as its header and ``rows`` rows (no scroll bar, no blank)."""
    row = table.verticalHeader().defaultSectionSize()
    head = MATRIX_ROW_PAD + table.horizontalHeader().fontMetrics().height()
    table.horizontalHeader().setFixedHeight(head)
    table.setFixedHeight(head + max(1, rows) * row + 2 * table.frameWidth())


def _short_names(names: list[str]) -> list[str]:
    """Column labels of a confusion matrix: each class's first four letters when they tell the classes apart
    (``walk jogg stai sitt stan``; the full name is the tooltip), else the names as they are."""
    short = [n if len(n) <= 5 else n[:4] for n in names]
    return short if len(set(short)) == len(short) else list(names)


def _model_key(path: str) -> str:
    """How a model file is named in the list (and by the Estimator panel): its absolute resolved path."""
    try:
        return str(Path(path).expanduser().resolve())
    except OSError:
        return str(path)


PANEL = PanelSpec(
    key="training",
    title="Training round",
    order=40,
    factory=TrainingPanel,
    icon="SP_MediaPlay",
    tooltip="Run a personalization round on the board and measure each batch",
)
