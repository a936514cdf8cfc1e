"""Estimator panel: cost table and trade-off chart of on-device training, budgets, the recommendation with
its reason, measured rounds over the predictions, "calibrate from my rounds" and "simulate on my windows".

The model is the general model shipped in ``assets/models`` (the paper CNN, T = 20…100) or any imported
``.keras``/``.h5``/``.npz`` (e.g. ST's IGN/GMP from your own copy of the model zoo).  An imported model keeps
its own input size unless its weights do not depend on T (no Flatten → Dense), in which case other sizes can
be tried; its inference MACC, weights and activation peak (unfused, and fused as ST's code generator fuses
conv + ReLU + pooling, to compare with ST's published footprints) are shown as ``odlstudio estimate --model``
does (same :func:`estimator.inference_stats`).  Imported models are remembered (their architecture is saved in
the settings, so the panel never needs TensorFlow to show them again).

Everything is computed by the Qt-free :mod:`estimator` (a full sweep takes a few ms); calibration and the
host-side accuracy simulation (:func:`app.core.simulate.simulate` on your labelled windows) run on the
task runner with progress and Cancel.  The budgets are saved as ``estimator.*`` settings, which the
Training panel reads to prefill its form with the recommendation.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.rounds import (
    GENERAL_SIZES,
    RECOMMEND_EPOCHS,
    EstimatorInputs,
    calibration_records,
    estimation_windows,
    measured_points,
)
from app.ui.panels import PanelSpec
from app.ui.panels.base import Panel
from estimator.arch import Arch, ArchError, paper_cnn
from estimator.recommend import fmt3

MODE_COLORS = {"tl": "#2563eb", "full": "#dc2626", "last": "#7c3aed"}
COLUMNS = ("T", "mode", "train KiB", "RAM KiB", "s/batch", "mJ/batch", "s/round", "mJ/round", "F1", "fits")
#: What each column holds, in its unit (the header's tool tip); the CLI's names are `odlstudio estimate`'s.
COLUMN_TIPS = {
    "T": "Input size: samples per window",
    "mode": "TL: the last layers train; FULL: every layer trains",
    "train KiB": "Training memory as the paper's Table III counts it, in KiB (the CLI's 'mem KiB'); "
    "without the firmware reserve",
    "RAM KiB": "RAM the board needs for the round, in KiB: training memory in the chosen memory accounting, the "
    "robust round's best weights and confusion counts, and the firmware reserve; checked against RAM "
    "(the recommendation's 'training RAM' is this without the reserve)",
    "s/batch": "Seconds to train one batch on the board",
    "mJ/batch": "Energy of one batch, in millijoules",
    "s/round": "Seconds of a whole round at the table's epochs, validation passes included",
    "mJ/round": "Energy of a whole round at the table's epochs, in millijoules",
    "F1": "Predicted macro-F1 after the round (± the spread over users); ✓ measured on your windows",
    "fits": "Within every budget, or the budgets it breaks",
    "MACC": "Multiply-accumulates of one inference",
    "wts KiB": "Weights, in KiB",
    "act KiB": "Activation peak of one inference, in KiB",
    "fused": "Activation peak in KiB with conv + ReLU + pooling fused, as ST's code generator runs them",
}
#: Extra columns for an imported model (the rows of ``odlstudio estimate --model``).
INFERENCE_COLUMNS = (
    ("MACC", "inference_macc", "{:,}"),
    ("wts KiB", "weights_kib", "{:.2f}"),
    ("act KiB", "activation_peak_kib", "{:.2f}"),
    # KiB with conv + ReLU + pooling fused, as ST's code generator runs them (the CLI's column head)
    ("fused", "activation_fused_kib", "{:.2f}"),
)
MODELS_SETTING = "estimator.models"  # [{path, name, arch (Arch dict), rate_hz}] of imported models
MODEL_SETTING = "estimator.model"  # the chosen model's path, "" = the general model
OTHER_SIZES_SETTING = "estimator.other_sizes"
IMPORT_DIR_SETTING = "estimator.import_dir"  # the folder of the last model imported (Import… opens there)
GENERAL_RATE_HZ = 20.0
SIM_EPOCHS = RECOMMEND_EPOCHS  # the recommender's candidate epochs
SIM_MAX_TRAIN_WINDOWS = 256  # class-stratified cap that keeps the simulation quick
#: Fewer test windows than this at an input size: its measured macro-F1 is noise (one window moves it by
#: several points; 0 of 3 right reads "F1 0.000"), so the recommender keeps the Table II prior there.
SIM_MIN_TEST_WINDOWS = 20


def prior_name() -> str:
    """Where a predicted F1 comes from when nothing was simulated: the shipped LOSO measurements (with the
    number of users) or, without them, the paper's Table II."""
    from estimator.recommend import LosoPrior, default_accuracy

    acc = default_accuracy()
    if isinstance(acc, LosoPrior):  # named as the recommender's reason names it (was "…, 16 users, measured)")
        return acc.name()
    return "Table II prior (the paper)"


def f1_interval(f1: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Approximate 95 % interval of a macro-F1 measured on ``n`` test windows: the Wilson interval of a
    proportion ``f1`` over ``n`` trials (F1 is not a proportion, but its sampling spread on n windows is of
    that order — enough to say when a split is too small to trust)."""
    if n <= 0:
        return 0.0, 1.0
    p = min(max(float(f1), 0.0), 1.0)
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / d
    return max(0.0, c - h), min(1.0, c + h)


#: A measured F1 whose 95 % interval is wider than this (half-width) is flagged as not to be trusted.
SIM_MAX_HALF_WIDTH = 0.05


def profile_dir(ctx) -> str:
    return str(ctx.data_dir / "profiles")


def fits_input_size(arch: Arch, T: int) -> bool:
    """True when ``arch`` runs at input size ``T`` with the same weights (every layer fits and no weight
    shape depends on T — a Flatten → Dense does)."""
    try:
        other = arch.with_input_size(int(T))
        other.shapes()
        return other.param_shapes() == arch.param_shapes()
    except (ArchError, ValueError):
        return False


@dataclass
class ModelChoice:
    """The model the panel estimates: the general paper CNN (``arch`` None) or an imported one."""

    key: str  # "" = general model, else the imported file's path
    name: str
    arch: Arch | None = None
    rate_hz: float = GENERAL_RATE_HZ
    n_classes: int = 5
    missing: bool = False  # imported file no longer on disk (still estimated from the saved architecture)

    @property
    def general(self) -> bool:
        return self.arch is None

    @property
    def classes(self) -> tuple[str, ...]:
        if self.arch is not None:
            return tuple(self.arch.classes)
        return ("walking", "jogging", "stairs", "sitting", "standing")

    def flexible(self) -> bool:
        """Other input sizes are possible (always for the general model)."""
        return self.arch is None or any(
            fits_input_size(self.arch, T) for T in GENERAL_SIZES if T != self.arch.input_size
        )

    def sizes(self, other_sizes: bool) -> tuple[int, ...]:
        if self.arch is None:
            return GENERAL_SIZES
        own = int(self.arch.input_size)
        if not other_sizes:
            return (own,)
        return tuple(sorted({own} | {T for T in GENERAL_SIZES if fits_input_size(self.arch, T)}))

    def arch_for(self, T: int) -> Arch:
        if self.arch is None:
            return paper_cnn(int(T), self.n_classes)
        return self.arch if int(T) == self.arch.input_size else self.arch.with_input_size(int(T))

    def describe(self) -> str:
        if self.arch is None:
            return (
                "Paper CNN pretrained on WISDM-2019 (assets/models), 5 classes, 20 Hz, one model per "
                "T = 20, 40, 60, 80, 100."
            )
        a = self.arch
        shape = "×".join(str(x) for x in a.input_shape)
        size = (
            "other input sizes possible (weights do not depend on T)"
            if self.flexible()
            else f"fixed input size T = {a.input_size} (its weights depend on T)"
        )
        prep = "" if a.preprocessing in ("", "none") else f", preprocessing {a.preprocessing}"
        gone = " — file not found, estimated from the saved architecture" if self.missing else ""
        return (
            f"{a.name}: input {shape}, {len(a.classes)} classes ({', '.join(a.classes)}), "
            f"{self.rate_hz:g} Hz{prep}; {size}{gone}."
        )


@dataclass
class SimulationState:
    """Measured macro-F1 of one (model, dataset) pair, merged over the (T, mode) runs done so far."""

    model_key: str
    dataset_id: int
    table: dict = field(default_factory=dict)
    accuracy: dict = field(default_factory=dict)
    none: dict = field(default_factory=dict)
    n_train: dict = field(default_factory=dict)
    n_test: dict = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    complete: bool = False
    stale: bool = False
    failure: str = ""  # why the simulation stopped before the end ("" = it ended or was cancelled)

    def merge(self, res) -> None:
        for name in ("table", "accuracy", "none", "n_train", "n_test"):
            getattr(self, name).update(getattr(res, name))
        self.seconds += float(res.seconds)

    def result(self):
        from app.core.simulate import SimulationResult

        return SimulationResult(
            dict(self.table), dict(self.accuracy), dict(self.none), dict(self.n_train), dict(self.n_test), self.seconds
        )

    def too_few(self) -> list[int]:
        """Input sizes whose test split is too small for a meaningful macro-F1."""
        return sorted(T for T, n in self.n_test.items() if n < SIM_MIN_TEST_WINDOWS)

    def reliable_result(self):
        """:meth:`result` without the input sizes of :meth:`too_few` (they fall back to the prior)."""
        bad = set(self.too_few())
        r = self.result()
        r.table = {k: v for k, v in r.table.items() if k[0] not in bad}
        return r

    def wide(self) -> dict[int, tuple[int, float, float, float]]:
        """Input sizes whose best measured F1 has a 95 % interval wider than ±SIM_MAX_HALF_WIDTH:
        ``T -> (n_test, f1, lo, hi)``."""
        out = {}
        for T, n in sorted(self.n_test.items()):
            vals = [v for (t, _m, _e), v in self.table.items() if t == T]
            if not vals:
                continue
            f1 = max(vals)
            lo, hi = f1_interval(f1, n)
            if (hi - lo) / 2 > SIM_MAX_HALF_WIDTH:
                out[T] = (n, f1, lo, hi)
        return out

    def warning(self) -> str:
        bad = self.too_few()
        wide = self.wide()
        parts = []
        if bad:
            parts.append(
                f"⚠ Too few test windows at T = {', '.join(map(str, bad))} "
                f"({', '.join(str(self.n_test[T]) for T in bad)}; at least {SIM_MIN_TEST_WINDOWS} needed): their "
                f"measured F1 is not reliable, {prior_name()} is used there. Label more data."
            )
        shaky = [T for T in wide if T not in bad]
        if shaky:
            parts.append(
                "⚠ Small test split: "
                + "; ".join(
                    f"T={T}: n = {wide[T][0]} test windows, F1 {wide[T][1]:.3f}, 95 % interval "
                    f"{wide[T][2]:.2f}–{wide[T][3]:.2f}"
                    for T in shaky
                )
                + ". Differences smaller than that interval are noise: label more data to trust them."
            )
        return "\n".join(parts)

    def summary(self) -> str:
        if not self.table:
            return ""
        sizes = sorted({T for T, _m, _e in self.table})
        bad = set(self.too_few())
        best = max(((k, v) for k, v in self.table.items() if k[0] not in bad), key=lambda kv: kv[1], default=None)
        best = best or max(self.table.items(), key=lambda kv: kv[1])
        (T, m, e), f1 = best
        before = ", ".join(f"T={t}: {self.none[t]:.2f}" for t in sizes if t in self.none)
        return (
            f"Measured on your windows ({', '.join(map(str, sizes))}; {sum(self.n_train.values())} training / "
            f"{sum(self.n_test.values())} test windows, {self.seconds:.1f} s): best {m.upper()} at T={T} with "
            f"{e} epoch(s), macro-F1 {f1:.3f}; before personalization {before}."
            + (
                ""
                if self.complete
                else f" Partial ({'failed' if self.failure else 'cancelled'}): the other sizes use {prior_name()}."
            )
            + (" Labels changed since: simulate again." if self.stale else "")
            + (f"\n{self.warning()}" if self.warning() else "")
        )


class _ColumnScroll(QScrollArea):
    """A column that scrolls vertically only: at least as wide as its content's minimum (nothing is cut off on
    the right), at most 460 px; the hint follows the content (combo boxes filled, labels wrapped)."""

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        w, h = self.widget(), super().minimumSizeHint()
        if w is None:
            return h
        bar = self.verticalScrollBar().sizeHint().width() + 6
        return QSize(min(460, w.minimumSizeHint().width() + bar), h.height())

    def sizeHint(self) -> QSize:  # noqa: N802 - the minimum: the panel's 2 : 3 stretch shares the rest
        return QSize(self.minimumSizeHint().width(), super().sizeHint().height())

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - the content's hints changed: so did this one's
        if obj is self.widget() and event.type() == QEvent.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(obj, event)


class _Charts(pg.GraphicsLayoutWidget):
    """The two charts side by side, or one above the other when the panel is too narrow for two (an 800-px
    screen leaves the charts about 300 px: side by side, the second chart was beyond the right edge)."""

    #: the least width and height of one chart with its axes, title and legend readable
    CHART_WIDTH, CHART_HEIGHT = 300, 210

    def __init__(self) -> None:
        self._legend_columns: dict[pg.PlotItem, int] = {}  # as built, for side by side
        self.short_legends: set[pg.PlotItem] = set()  # narrow enough to keep their columns when stacked
        super().__init__()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming (pyqtgraph calls it with None too)
        if getattr(self, "ci", None) is not None:
            self.arrange(self.width())
        super().resizeEvent(event)

    def side_by_side(self) -> bool:
        return all(row == 0 for cells in self.ci.items.values() for row, _col in cells)

    def arrange(self, width: int) -> None:
        """Side by side from two charts' width on; stacked below it, each at least CHART_HEIGHT tall (the page
        scrolls instead).  A scroll bar's width of hysteresis: the page's vertical scroll bar, shown because
        the stacked charts are taller, must not flip them back."""
        plots = [item for item in self.ci.items if isinstance(item, pg.PlotItem)]
        wide = width >= 2 * self.CHART_WIDTH - (24 if self.side_by_side() else 0)
        places = [(0, i) if wide else (i, 0) for i in range(len(plots))]
        if [self.ci.items[p][0] for p in plots] == places:
            return
        for p in plots:
            self.ci.removeItem(p)
        for p, (row, col) in zip(plots, places, strict=True):
            self.ci.addItem(p, row, col)
        self.setMinimumHeight(self.CHART_HEIGHT * (1 if wide else len(plots)))
        for p in plots:  # a legend in two columns is wider than a stacked chart: one column there
            if p.legend is not None:
                columns = self._legend_columns.setdefault(p, p.legend.columnCount)
                p.legend.setColumnCount(columns if wide or p in self.short_legends else 1)


class _WrapLabel(QLabel):
    """A word-wrapped label as tall as its text needs at its width (in the splitter's pane a wrapped QLabel got
    one line's height less than it needed: the table title's last line was under the table at 800 px)."""

    def __init__(self) -> None:
        super().__init__()
        self.setWordWrap(True)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().resizeEvent(event)
        need = self.heightForWidth(self.width())
        if need > 0 and need != self.minimumHeight():
            self.setMinimumHeight(need)


class _FitTable(QTableWidget):
    """A table whose columns are as wide as their contents, sharing what is left of the view's width: too
    narrow for them all (an 800-px screen), it scrolls sideways instead of cutting every cell to "…"."""

    def __init__(self, rows: int, cols: int):
        super().__init__(rows, cols)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollPerPixel)

    def fit_columns(self) -> None:
        self.resizeColumnsToContents()
        n = self.columnCount()
        widths = [self.columnWidth(c) for c in range(n)]
        slack = self.viewport().width() - sum(widths)
        if n and slack > 0:
            for c, w in enumerate(widths):
                self.setColumnWidth(c, w + slack // n + (1 if c < slack % n else 0))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().resizeEvent(event)
        self.fit_columns()


class EstimatorPanel(Panel):
    def __init__(self, ctx, parent=None):
        super().__init__(ctx, parent)
        self._runner = None
        self.rec = None
        self.sim: SimulationState | None = None
        self.sim_task = None
        self.measured_count = 0
        self.inputs = EstimatorInputs.from_settings(ctx.settings)
        self.models: dict[str, ModelChoice] = {"": ModelChoice("", "General model (paper CNN, T = 20…100)")}
        self._inference_cache: dict[tuple[str, int], dict] = {}
        root = QHBoxLayout(self)
        root.addWidget(self._build_left(), 2)  # 2 : 3 below its widest, so a small screen's chart keeps room
        split = QSplitter(Qt.Vertical)  # right: chart and table
        split.addWidget(self._build_charts())
        split.addWidget(self._build_table())
        split.setChildrenCollapsible(False)
        split.setSizes([430, 330])
        root.addWidget(split, 3)
        self._connect(ctx)

    def _build_left(self) -> QScrollArea:
        """The left column (scrolls vertically): model, budgets and options, recommendation, from my data."""
        left = QVBoxLayout()
        left.addWidget(self._build_model_box())
        left.addWidget(self._build_budgets_box())
        self.windows_label = QLabel()
        self.windows_label.setWordWrap(True)
        left.addWidget(self.windows_label)
        left.addWidget(self._build_recommendation_box())
        left.addWidget(self._build_data_box())
        left.addStretch(1)
        lw = QWidget()
        lw.setLayout(left)
        scroll = _ColumnScroll()
        scroll.setWidget(lw)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        # at least as wide as the content needs (nothing clipped on the right), scrolling only vertically; its
        # combo boxes shrink (their text ends in "…") and the form's labels go above the fields on an 800-px
        # screen, so the chart beside it keeps room
        for combo in lw.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        for form in lw.findChildren(QFormLayout):
            form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        scroll.setMaximumWidth(460)
        return scroll

    def _build_model_box(self) -> QGroupBox:
        mbox = QGroupBox("Model")
        ml = QVBoxLayout(mbox)
        mrow = QHBoxLayout()
        self.model = QComboBox()
        self.model.setToolTip("The general model shipped with the app, or a model you imported")
        self.model.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)  # long file names
        self.model.setMinimumContentsLength(16)
        self.btn_import = QPushButton("Import…")
        self.btn_import.setToolTip(
            "Import a .keras / .h5 / .npz model (e.g. ST's IGN or GMP from your own copy "
            "of the model zoo); loaded on a worker thread"
        )
        mrow.addWidget(self.model, 1)
        mrow.addWidget(self.btn_import)
        ml.addLayout(mrow)
        self.model_info = QLabel()
        self.model_info.setWordWrap(True)
        self.model_info.setStyleSheet("QLabel { color: #4b5563; }")
        ml.addWidget(self.model_info)
        self.other_sizes = QCheckBox("Also try T = 20…100")
        self.other_sizes.setToolTip(
            "Estimate this model at other input sizes too (only when its weights do not "
            "depend on T, e.g. global pooling before the Dense layers)"
        )
        self.other_sizes.setChecked(bool(self.ctx.settings.get(OTHER_SIZES_SETTING, False)))
        ml.addWidget(self.other_sizes)
        return mbox

    def _build_budgets_box(self) -> QGroupBox:
        box = QGroupBox("Budgets and options")
        form = QFormLayout(box)
        self.profile = QComboBox()
        self.profile.setToolTip("Device profile: a preset or a profile calibrated from your rounds")
        self.batch = QSpinBox()
        self.batch.setRange(1, 1024)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 100)
        self.epochs.setToolTip("Epochs shown in the table (the recommendation also tries 1, 2, 3, 5, 10)")
        self.ram = self._spin(16, 4096, " KiB", "RAM of the MCU (STM32L496ZG: 320 KiB)")
        self.reserve = self._spin(0, 1024, " KiB", "RAM kept by the firmware (stack, HAL, protocol buffers)")
        self.time_s = self._spin(0, 1e6, " s", "Time budget per round (0 = none)", none=True)
        self.energy = self._spin(0, 1e6, " mJ", "Energy budget per round (0 = none)", none=True)
        for w in (self.batch, self.epochs, self.ram, self.reserve, self.time_s, self.energy):
            # a typed number is taken on Enter or when the box loses focus (arrows and the wheel: at once): typing
            # "320" recomputed the table and charts three times, 80-135 ms each on an hour of labelled data
            w.setKeyboardTracking(False)
        self.source = QComboBox()
        self.source.addItem("charging (Full allowed)", "charging")
        self.source.addItem("battery (TL only, as the paper advises)", "battery")
        self.accounting = QComboBox()
        self.accounting.addItem("paper (Table III)", "paper")
        self.accounting.addItem("peak (liveness)", "peak")
        self.accounting.addItem("firmware (ODL arena plan)", "firmware")
        for label, w in (
            ("Profile", self.profile),
            ("Batch size", self.batch),
            ("Epochs", self.epochs),
            ("RAM", self.ram),
            ("Firmware reserve", self.reserve),
            ("Time budget", self.time_s),
            ("Energy budget", self.energy),
            ("Power source", self.source),
            ("Memory accounting", self.accounting),
        ):
            form.addRow(label, w)
        return box

    def _build_recommendation_box(self) -> QGroupBox:
        rbox = QGroupBox("Recommendation")
        rl = QVBoxLayout(rbox)
        self.choice = QLabel()
        self.choice.setObjectName("estimatorChoice")
        self.choice.setWordWrap(True)
        f = self.choice.font()
        f.setBold(True)
        f.setPointSizeF(f.pointSizeF() * 1.15)
        self.choice.setFont(f)
        self.reason = QPlainTextEdit()  # a label would be clipped: word-wrapped QLabels get no height-for-width here
        self.reason.setReadOnly(True)
        self.reason.setFrameShape(QPlainTextEdit.NoFrame)
        self.reason.setFixedHeight(118)
        self.reason.setStyleSheet("QPlainTextEdit { background: transparent; }")
        self.btn_apply = QPushButton("Use in Training panel")
        self.btn_apply.setToolTip("Prefill the Training round form with this choice")
        rl.addWidget(self.choice)
        rl.addWidget(self.reason)
        rl.addWidget(self.btn_apply)
        return rbox

    def _build_data_box(self) -> QGroupBox:
        cbox = QGroupBox("From my data")
        cl = QVBoxLayout(cbox)
        brow = QHBoxLayout()
        self.btn_simulate = QPushButton("Simulate on my windows")
        self.btn_simulate.setToolTip(
            "Personalize the model on the host with your labelled windows (the paper's "
            "local split) for each input size, TL and Full, and use the measured "
            "macro-F1 as the recommender's accuracy model"
        )
        self.btn_prior = QPushButton("Use prior")
        self.btn_prior.setToolTip(f"Forget the simulation: go back to {prior_name()}")  # (said "Table II")
        self.btn_calibrate = QPushButton("Calibrate from my rounds")
        self.btn_calibrate.setToolTip(
            "Fit the cycle costs and power model to the measured batches of your finished "
            "rounds and save them as a profile for this board"
        )
        brow.addWidget(self.btn_simulate, 1)
        brow.addWidget(self.btn_prior)
        cl.addLayout(brow)
        self.accuracy_label = QLabel()
        self.accuracy_label.setObjectName("accuracySource")
        self.accuracy_label.setWordWrap(True)
        cl.addWidget(self.accuracy_label)
        self.sim_progress = QProgressBar()
        self.sim_progress.setRange(0, 1000)
        self.sim_progress.setVisible(False)
        cl.addWidget(self.sim_progress)
        cl.addWidget(self.btn_calibrate)
        self.calib_text = QPlainTextEdit()
        self.calib_text.setReadOnly(True)
        self.calib_text.setMinimumHeight(60)
        self.calib_text.setMaximumHeight(110)
        cl.addWidget(self.calib_text)
        return cbox

    def _build_charts(self) -> pg.GraphicsLayoutWidget:
        """Training memory and energy per batch against the input size."""
        charts = _Charts()
        charts.setBackground("w")
        self.mem_plot = charts.addPlot(title="Training memory")
        self.energy_plot = charts.addPlot(title="Energy per batch")
        # energy rises with T, so its top-left corner is free: the legend there in two columns and without a
        # background (a single column's box reached across the Full line and faded it)
        for p, unit, corner, cols, bg in (
            # one row ("TL", "FULL") in the bottom-right corner: two rows covered the TL line of a 210-px chart
            (self.mem_plot, "KiB, reserve included", (-10, -4), 2, (255, 255, 255, 200)),
            (self.energy_plot, "mJ", (10, 10), 2, (255, 255, 255, 0)),
        ):
            p.setTitle(p.titleLabel.text, color="#111")  # pyqtgraph's light-grey defaults are unreadable on white
            p.showGrid(x=True, y=True, alpha=0.3)
            for side in ("bottom", "left"):
                p.getAxis(side).setTextPen("#333")
                p.getAxis(side).setPen("#666")
            p.setLabel("bottom", "input size T (samples)", color="#333")
            p.setLabel("left", unit, color="#333")
            p.addLegend(offset=corner, labelTextColor="#111", brush=pg.mkBrush(*bg), colCount=cols)
        self.ram_line = pg.InfiniteLine(
            angle=0,
            pen=pg.mkPen("#111", width=2, style=Qt.DashLine),
            label="RAM limit",
            labelOpts={"position": 0.12, "color": "#111", "anchors": [(0, 1), (0, 1)]},
        )
        self.mem_plot.addItem(self.ram_line)
        charts.short_legends.add(self.mem_plot)
        self.mem_plot.legend.layout.setContentsMargins(4, 1, 4, 1)  # 24 px tall, below the lowest (TL) line
        self.charts = charts
        return charts

    def _build_table(self) -> QWidget:
        self.table = _FitTable(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setToolTip("Click a row to use that configuration instead of the recommendation")
        self.table.setMinimumHeight(120)  # the header and three rows, also below stacked charts
        self.picked: tuple[int, str] | None = None  # (T, mode) picked in the table
        self.rows: list[dict] = []
        tw = QWidget()
        tl = QVBoxLayout(tw)
        tl.setContentsMargins(0, 0, 0, 0)
        self.table_title = _WrapLabel()
        tl.addWidget(self.table_title)
        tl.addWidget(self.table)
        return tw

    def _connect(self, ctx) -> None:
        self._fill_profiles()
        self._load_inputs()
        self._restore_models()
        for w in (self.batch, self.epochs):
            w.valueChanged.connect(self.recompute)
        for w in (self.ram, self.reserve, self.time_s, self.energy):
            w.valueChanged.connect(self.recompute)
        for w in (self.profile, self.source, self.accounting):
            w.currentIndexChanged.connect(self.recompute)
        self.model.currentIndexChanged.connect(self._model_changed)
        self.other_sizes.toggled.connect(self._other_sizes_toggled)
        self.btn_import.clicked.connect(lambda: self.import_model())
        self.btn_apply.clicked.connect(self.apply_to_training)
        self.btn_calibrate.clicked.connect(self.calibrate)
        self.btn_simulate.clicked.connect(self._simulate_clicked)
        self.btn_prior.clicked.connect(self.use_prior)
        self.table.itemSelectionChanged.connect(self._row_picked)
        ctx.subscribe("round_finished", lambda round_id=None, **_: self.recompute())
        ctx.subscribe("labels_changed", lambda **_: self._labels_changed())
        ctx.subscribe("user_changed", lambda **_: self.recompute())
        self._model_changed()

    # --- helpers -----------------------------------------------------------------------------------------
    @staticmethod
    def _spin(lo: float, hi: float, suffix: str, tip: str, none: bool = False) -> QDoubleSpinBox:
        s = QDoubleSpinBox()
        s.setRange(lo, hi)
        s.setDecimals(1)
        s.setSuffix(suffix)
        s.setToolTip(tip)
        if none:
            s.setSpecialValueText("none")
        return s

    def _fill_profiles(self, select: str | None = None) -> None:
        from estimator.profiles import list_profiles

        self.profile.blockSignals(True)
        self.profile.clear()
        for name in list_profiles(profile_dir(self.ctx)):
            self.profile.addItem(name, name)
        i = self.profile.findData(select or self.inputs.profile)
        self.profile.setCurrentIndex(max(0, i))
        self.profile.blockSignals(False)

    def _load_inputs(self) -> None:
        d = self.inputs
        for w, v in (
            (self.batch, d.batch_size),
            (self.epochs, d.epochs),
            (self.ram, d.ram_kib),
            (self.reserve, d.reserve_kib),
            (self.time_s, d.time_s),
            (self.energy, d.energy_mj),
        ):
            w.blockSignals(True)
            w.setValue(v)
            w.blockSignals(False)
        for combo, v in ((self.source, d.power_source), (self.accounting, d.accounting)):
            combo.blockSignals(True)
            combo.setCurrentIndex(max(0, combo.findData(v)))
            combo.blockSignals(False)

    def read_inputs(self) -> EstimatorInputs:
        return EstimatorInputs(
            profile=str(self.profile.currentData() or "paper"),
            batch_size=self.batch.value(),
            epochs=self.epochs.value(),
            ram_kib=self.ram.value(),
            reserve_kib=self.reserve.value(),
            time_s=self.time_s.value(),
            energy_mj=self.energy.value(),
            power_source=str(self.source.currentData()),
            accounting=str(self.accounting.currentData()),
        )

    # --- models ---------------------------------------------------------------------------------------------
    def _restore_models(self) -> None:
        """The general model, then the imported models saved in the settings (architecture only: no TF)."""
        self.model.blockSignals(True)
        self.model.clear()
        self.model.addItem(self.models[""].name, "")
        for item in self.ctx.settings.get(MODELS_SETTING, []) or []:
            try:
                arch = Arch.from_dict(item["arch"])
                path = str(item["path"])
            except (ArchError, KeyError, TypeError):
                continue  # a damaged entry is dropped, never raised into Qt
            self._add_model(
                ModelChoice(
                    path,
                    str(item.get("name") or Path(path).name),
                    arch,
                    float(item.get("rate_hz") or GENERAL_RATE_HZ),
                    missing=not Path(path).is_file(),
                ),
                save=False,
            )
        i = self.model.findData(str(self.ctx.settings.get(MODEL_SETTING, "") or ""))
        self.model.setCurrentIndex(max(0, i))
        self.model.blockSignals(False)

    def _add_model(self, m: ModelChoice, save: bool = True) -> int:
        self.models[m.key] = m
        self._inference_cache = {k: v for k, v in self._inference_cache.items() if k[0] != m.key}
        i = self.model.findData(m.key)
        label = f"{m.name} (T={m.arch.input_size}, {len(m.arch.classes)} classes)" if m.arch is not None else m.name
        if i < 0:
            self.model.addItem(label, m.key)
            i = self.model.count() - 1
        else:
            self.model.setItemText(i, label)
        self.model.setItemData(i, m.describe(), Qt.ToolTipRole)
        if save:
            self.ctx.settings.set(
                MODELS_SETTING,
                [
                    {"path": k, "name": v.name, "arch": v.arch.to_dict(), "rate_hz": v.rate_hz}
                    for k, v in self.models.items()
                    if v.arch is not None
                ],
            )
        return i

    def current_model(self) -> ModelChoice:
        return self.models.get(str(self.model.currentData() or ""), self.models[""])

    def _model_changed(self, *_args) -> None:
        m = self.current_model()
        self.ctx.settings.set(MODEL_SETTING, m.key)
        self.model_info.setText(m.describe())
        flexible = m.flexible()
        self.other_sizes.setVisible(not m.general)
        self.other_sizes.setEnabled(flexible)
        self.other_sizes.setToolTip(
            "Estimate this model at other input sizes too (its weights do not depend on T)"
            if flexible
            else f"This model's weights fix its input size (T = {m.arch.input_size}): a Flatten feeds a Dense layer"
            if m.arch is not None
            else ""
        )
        self.recompute()

    def _other_sizes_toggled(self, on: bool) -> None:
        self.ctx.settings.set(OTHER_SIZES_SETTING, bool(on))
        self.recompute()

    def import_model(self, path: str | None = None, wait: bool = False) -> None:
        """Load a ``.keras``/``.h5``/``.npz`` on a worker (TensorFlow stays off the GUI thread) and select it."""
        if not path:
            start = str(self.ctx.settings.get(IMPORT_DIR_SETTING, "") or "")
            path, _ = QFileDialog.getOpenFileName(
                self,
                "Import a model",
                start if start and Path(start).is_dir() else str(Path.home()),  # (was always the home folder)
                "Models (*.keras *.h5 *.hdf5 *.npz)",
            )
        if not path:
            return
        path = str(Path(path).resolve())

        def work(token, progress):
            from app.core.models import load_model

            progress(0.2, f"loading {Path(path).name}")
            lm = load_model(path, isolate=True)
            return lm.arch, float(lm.meta.get("rate_hz") or GENERAL_RATE_HZ)

        def done(res) -> None:
            arch, rate = res
            self.ctx.settings.set(IMPORT_DIR_SETTING, str(Path(path).parent))  # the next Import… opens there
            i = self._add_model(ModelChoice(path, Path(path).name, arch, rate))
            self.model.setCurrentIndex(i)
            self._model_changed()
            self.ctx.status(f"Imported {Path(path).name}: T={arch.input_size}, {len(arch.classes)} classes")

        def failed(msg: str) -> None:  # the model still estimated stays described under the failure
            self.model_info.setText(
                f"<span style='color:#b91c1c'>Import failed: {html.escape(msg)}</span><br>"
                f"Still estimating: {html.escape(self.current_model().describe())}"
            )
            self.ctx.status(f"Import failed: {msg}")

        task = self._tasks().start(f"Importing {Path(path).name}", work, on_done=done, on_error=failed)
        if wait:
            self._wait(task)

    @staticmethod
    def _wait(task, timeout_s: float = 120.0) -> None:
        import time

        from PySide6.QtCore import QCoreApplication

        deadline = time.monotonic() + timeout_s
        while not task.finished and time.monotonic() < deadline:
            QCoreApplication.processEvents()
            time.sleep(0.005)

    def inference(self, m: ModelChoice, T: int) -> dict:
        """ST-style inference figures (MACC, weights KiB, activation peak KiB unfused and fused) —
        :func:`estimator.inference_stats`, as ``odlstudio estimate --model`` prints them."""
        key = (m.key, int(T))
        if key not in self._inference_cache:
            from estimator import inference_stats

            self._inference_cache[key] = inference_stats(m.arch_for(T)).to_dict()
        return self._inference_cache[key]

    # --- compute and show ----------------------------------------------------------------------------------
    def _accuracy(self, m: ModelChoice):
        sim = self.sim
        if sim is None or sim.model_key != m.key or sim.dataset_id != self.ctx.dataset.id or not sim.table:
            return None
        res = sim.reliable_result()
        return res.accuracy_model() if res.table else None

    def recompute(self) -> None:
        self.inputs = d = self.read_inputs()
        d.save(self.ctx.settings)
        m = self.current_model()
        sizes = m.sizes(self.other_sizes.isChecked() and self.other_sizes.isEnabled())
        # what a round would run on the labelled data: training windows per epoch and the validation tail
        windows = estimation_windows(
            self.ctx.store, self.ctx.dataset.id, m.classes, m.rate_hz, d.batch_size, self.ctx.user.name
        )
        nw = {T: windows(T) for T in sizes}
        have = any(v is not None for v in nw.values())  # (a T too long for the data: left out by recommend)
        self.windows_label.setText(
            "Windows per epoch from your labelled data (training + validation, as the round splits them): "
            + ", ".join(
                f"T={T}: " + (f"{v[0]} + {v[1]}" if v else "too few for a round, left out") for T, v in nw.items()
            )
            if have
            else "No labelled data yet: a round is counted as one batch per epoch."
        )
        accuracy = self._accuracy(m)
        try:
            self.rec = d.recommend(
                (lambda T: nw[T]) if have else None,
                profile_dir(self.ctx),
                input_sizes=sizes,
                epochs=SIM_EPOCHS,
                arch=m.arch_for,
                accuracy=accuracy,
            )
        except Exception as exc:  # noqa: BLE001 - bad profile file, a model the estimator cannot cost: shown
            self.choice.setText("—")
            self.reason.setPlainText(f"Cannot estimate {m.name}: {exc}")
            self.rec = None
            self.btn_apply.setEnabled(False)
            self.table.setRowCount(0)
            return
        rows = [r for r in self.rec.table if r["epochs"] == d.epochs]
        self.rows = rows
        f1 = "F1 measured on your windows" if accuracy is not None else f"F1 from {prior_name()}"
        self.table_title.setText(
            f"<b>{m.name}</b>: predictions at {d.epochs} epoch(s), batch {d.batch_size}, "
            f"profile '{d.profile}'; {f1} (green: recommended; grey: outside a budget; click a row to pick it)"
        )
        self._fill_table(rows, m)
        self._plot(rows, d, m)
        self._show_choice()
        self._show_sim()

    # --- the configuration used: the recommendation, or a row picked in the table ----------------------------
    def selected_config(self) -> dict | None:
        """What "Use in Training panel" sends: the row picked in the table (at the table's epochs), else the
        recommendation."""
        if self.picked is not None:
            row = next((r for r in getattr(self, "rows", []) if (r["input_size"], r["mode"]) == self.picked), None)
            if row is not None:
                return row
        return self.rec.choice if self.rec is not None else None

    def _row_picked(self) -> None:
        sel = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        rows = getattr(self, "rows", [])
        if not sel or sel[0].row() >= len(rows):
            return
        r = rows[sel[0].row()]
        c = self.rec.choice if self.rec is not None else None
        same = c is not None and (r["input_size"], r["mode"]) == (c["input_size"], c["mode"])  # the green row
        self.picked = None if same else (r["input_size"], r["mode"])
        self._show_choice()

    def _show_choice(self) -> None:
        c = self.rec.choice if self.rec is not None else None
        rec_text = f"{c['mode'].upper()} at T={c['input_size']} with {c['epochs']} epoch(s)" if c else "Nothing fits"
        row = self.selected_config() if self.picked is not None else None
        if row is None:
            self.picked = None
            self.choice.setText(rec_text)
            self.reason.setPlainText(self.rec.reason if self.rec is not None else "")
        else:
            self.choice.setText(f"Picked: {row['mode'].upper()} at T={row['input_size']} with {row['epochs']} epoch(s)")
            budget = "within every budget" if row["feasible"] else "outside a budget: " + ", ".join(row["violations"])
            self.reason.setPlainText(
                f"You picked this row: {fmt3(row['time_per_round_s'])} s and {fmt3(row['energy_per_round_mj'])} mJ per "
                f"round, {row['ram_needed_kib']:.0f} KiB of RAM, F1 {row['accuracy']:.3f}; {budget}.\n"
                f"The recommendation is {rec_text} (click its green row to go back to it)."
            )
        self.btn_apply.setEnabled(self.selected_config() is not None)
        # keep the picked row selected across recomputes (budgets changed, new rounds …)
        want = self.picked if self.picked is not None else ((c["input_size"], c["mode"]) if c else None)
        self.table.blockSignals(True)
        self.table.clearSelection()
        for i, r in enumerate(getattr(self, "rows", [])):
            if want is not None and (r["input_size"], r["mode"]) == want:
                self.table.selectRow(i)
        self.table.blockSignals(False)

    def _fill_table(self, rows: list[dict], m: ModelChoice) -> None:
        extra = () if m.general else INFERENCE_COLUMNS
        cols = list(COLUMNS) + [c[0] for c in extra]
        self.table.setColumnCount(len(cols))
        self.table.setHorizontalHeaderLabels(cols)
        for j, name in enumerate(cols):  # (the headers had no tool tip: "train KiB" vs "RAM KiB" was a guess)
            self.table.horizontalHeaderItem(j).setToolTip(COLUMN_TIPS[name])
        self.table.setRowCount(len(rows))
        chosen = self.rec.choice if self.rec else None
        sim = self.sim if self.sim is not None and self.sim.model_key == m.key else None
        few = set(sim.too_few()) if sim is not None and sim.dataset_id == self.ctx.dataset.id else set()
        for i, r in enumerate(rows):
            measured = str(r.get("accuracy_source", "")).startswith("measured")
            vals = [
                r["input_size"],
                r["mode"].upper(),
                f"{r['memory_kib']:.1f}",
                f"{r['ram_needed_kib']:.1f}",
                fmt3(r["time_per_batch_s"]),
                fmt3(r["energy_per_batch_mj"]),
                fmt3(r["time_per_round_s"]),
                fmt3(r["energy_per_round_mj"]),
                f"{r['accuracy']:.3f}"
                + (f" ±{r['accuracy_std']:.2f}" if r.get("accuracy_std") is not None else "")
                + (" ✓" if measured and not str(r.get("accuracy_source", "")).startswith("measured LOSO") else ""),
                "yes" if r["feasible"] else "no: " + ", ".join(r["violations"]),
            ]
            if extra:
                inf = self.inference(m, r["input_size"])
                vals += [fmt.format(inf[key]) for _name, key, fmt in extra]
            for j, v in enumerate(vals):
                item = QTableWidgetItem(str(v))
                item.setTextAlignment(Qt.AlignCenter)
                if j == 8:
                    item.setToolTip(str(r.get("accuracy_source", "")))
                    if r["input_size"] in few:
                        item.setText(f"{r['accuracy']:.3f} ⚠")
                        item.setToolTip(
                            f"{prior_name()}: the simulation had only {sim.n_test[r['input_size']]} test windows at "
                            f"T={r['input_size']} (at least {SIM_MIN_TEST_WINDOWS} needed for a meaningful F1)"
                        )
                        item.setForeground(QBrush(QColor("#b45309")))
                if not r["feasible"]:
                    item.setForeground(QBrush(QColor("#9ca3af")))
                if chosen and (r["input_size"], r["mode"]) == (chosen["input_size"], chosen["mode"]):
                    item.setBackground(QBrush(QColor("#dcfce7")))
                self.table.setItem(i, j, item)
        self.table.fit_columns()

    def _plot(self, rows: list[dict], d: EstimatorInputs, m: ModelChoice) -> None:
        for p in (self.mem_plot, self.energy_plot):
            for item in list(p.listDataItems()):
                p.removeItem(item)
            if p.legend is not None:
                p.legend.clear()
        key = {"paper": "memory_kib", "peak": "memory_peak_kib", "firmware": "memory_firmware_kib"}[d.accounting]
        for mode in ("tl", "full"):
            rs = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["input_size"])
            if not rs:
                continue
            xs = [r["input_size"] for r in rs]
            pen = pg.mkPen(MODE_COLORS[mode], width=2)
            _with_tips(
                self.mem_plot.plot(
                    xs,
                    [r[key] + r.get("robust_extra_kib", 0.0) + d.reserve_kib for r in rs],  # what a robust round needs
                    pen=pen,
                    symbol="o",
                    symbolBrush=MODE_COLORS[mode],
                    name=mode.upper(),  # (the axis says "reserve included")
                    data=[
                        f"T={r['input_size']} {mode.upper()}: {r[key] + r.get('robust_extra_kib', 0.0) + d.reserve_kib:.1f}"
                        f" KiB of RAM ({r[key]:.1f} training, {d.accounting} accounting + "
                        f"{r.get('robust_extra_kib', 0.0):.1f} robust round + {d.reserve_kib:.1f} reserve)"
                        for r in rs
                    ],
                )
            )
            _with_tips(
                self.energy_plot.plot(
                    xs,
                    [r["energy_per_batch_mj"] for r in rs],
                    pen=pen,
                    symbol="o",
                    symbolBrush=MODE_COLORS[mode],
                    name=f"{mode.upper()} predicted",
                    data=[
                        f"T={r['input_size']} {mode.upper()}: {fmt3(r['energy_per_batch_mj'])} mJ per batch predicted "
                        f"({fmt3(r['time_per_batch_s'])} s, batch {d.batch_size})"
                        for r in rs
                    ],
                )
            )
        self.ram_line.setValue(d.ram_kib)
        # measured rounds of this model only (a round's config names its model file, None = general)
        model_of = {r["id"]: r["config"].get("model_path") for r in self.ctx.store.rounds()}
        want = None if m.general else m.key
        pts = [
            p
            for p in measured_points(self.ctx.store)
            if p["energy_mj"] is not None
            and p["batch_size"] == d.batch_size
            and _same_model(model_of.get(p["round_id"]), want)
        ]
        for mode in ("tl", "full"):
            ms = [p for p in pts if p["mode"] == mode]
            if ms:
                star = self.energy_plot.plot(
                    [p["input_size"] for p in ms],
                    [p["energy_mj"] for p in ms],
                    pen=None,
                    symbol="star",
                    symbolSize=16,
                    symbolBrush="#f59e0b",
                    symbolPen=pg.mkPen(MODE_COLORS[mode], width=2),
                    name=f"{mode.upper()} measured",
                    data=[
                        f"round {p['round_id']}, T={p['input_size']} {mode.upper()}: {fmt3(p['energy_mj'])} mJ per "
                        f"batch measured (predicted {fmt3(p['pred_energy_mj'])} mJ)"
                        for p in ms
                    ],
                )
                _with_tips(star)
        self.mem_plot.setYRange(0, max(d.ram_kib * 1.08, 1.0))
        sizes = [r["input_size"] for r in rows] or [20]
        for p in (self.mem_plot, self.energy_plot):
            p.setXRange(min(sizes) - 5, max(sizes) + 5, padding=0)
        self.measured_count = len(pts)

    # --- simulation (measured accuracy) ---------------------------------------------------------------------
    def _show_sim(self) -> None:
        running = self.sim_task is not None
        self.btn_simulate.setText("Cancel simulation" if running else "Simulate on my windows")
        self.btn_prior.setEnabled(not running and self.sim is not None)
        if running:
            self.accuracy_label.setText("Accuracy: simulating…")
            return
        m = self.current_model()
        sim = self.sim
        if sim is not None and sim.model_key == m.key and sim.dataset_id == self.ctx.dataset.id and sim.table:
            self.sim_text = sim.summary()
            sizes = ", ".join(str(T) for T in sorted({T for T, _m, _e in sim.table}))
            self.accuracy_label.setText(
                f"Accuracy: <b>measured on your windows</b> (T = {sizes}"
                + ("" if sim.complete else ", partial")
                + (", stale" if sim.stale else "")
                + ")"
                + (
                    f"<br><span style='color:#b45309'>⚠ too few test windows at T = "
                    f"{', '.join(map(str, sim.too_few()))}: prior used there</span>"
                    if sim.too_few()
                    else ""
                )
                + "".join(
                    f"<br><span style='color:#b45309'>⚠ T={T}: only n = {n} test windows — F1 {f1:.3f}, "
                    f"95 % interval {lo:.2f}–{hi:.2f}</span>"
                    for T, (n, f1, lo, hi) in sim.wide().items()
                    if T not in sim.too_few()
                )
            )
        elif sim is not None and sim.table:
            self.sim_text = f"The simulation was for another model or dataset: {prior_name()} is used."
            self.accuracy_label.setText(f"Accuracy: {prior_name()} (simulation was for another model)")
        else:
            self.sim_text = ""
            self.accuracy_label.setText(f"Accuracy: {prior_name()}")
        self.accuracy_label.setToolTip(self.sim_text)

    def _labels_changed(self) -> None:
        if self.sim is not None and self.sim.dataset_id == self.ctx.dataset.id:
            self.sim.stale = True
        self.recompute()

    def _simulate_clicked(self) -> None:
        if self.sim_task is not None:
            self.sim_task.cancel()
            self.btn_simulate.setText("Cancelling…")
            self.btn_simulate.setEnabled(False)
            return
        self.simulate()

    def simulate(
        self, sizes: Sequence[int] | None = None, epochs: Sequence[int] | None = None, wait: bool = False
    ) -> None:
        """Measure macro-F1 per (T, mode, epochs) on the user's labelled windows with the host engine (one
        (T, mode) run after the other, cancellable between runs) and use it as the accuracy model.  The
        general model uses the shipped model of each T; an imported model runs at its own input size."""
        m = self.current_model()
        sizes = tuple(sizes) if sizes else (GENERAL_SIZES if m.general else (m.arch.input_size,))
        epochs = tuple(sorted(set(epochs or SIM_EPOCHS) | {int(self.epochs.value())}))
        if m.missing:
            self.calib_text.setPlainText(f"Cannot simulate: {m.key} is no longer on disk.")
            return
        store, did, user = self.ctx.store, self.ctx.dataset.id, self.ctx.user.name
        state = SimulationState(m.key, did)
        self.sim = state

        def work(token, progress):
            from app.core.models import load_models
            from app.core.round_data import NO_LABELS
            from app.core.rounds import RoundError, general_model_path, model_recordings
            from app.core.simulate import TooLittleData, simulate

            try:
                rs, notes = model_recordings(store, did, m.classes, user, m.rate_hz)  # what a round trains on
            except RoundError as exc:  # nothing labelled, or no label is a class of the model: said once
                raise ValueError(str(exc) if str(exc) == NO_LABELS else f"{m.name}: {exc}") from exc
            state.notes = list(rs.notes) + notes
            steps = [(T, mode) for T in sizes for mode in ("tl", "full")]
            progress(0.0, "reading the models")
            paths = [general_model_path(T) if m.general else m.key for T in sizes]
            models: dict[int, Any] = dict(zip(sizes, load_models(paths, isolate=True)))  # one child for all
            short: set[int] = set()
            for k, (T, mode) in enumerate(steps):
                token.check()
                if T in short:
                    continue
                progress(k / len(steps), f"T={T} {mode.upper()}: personalizing on the host ({k + 1}/{len(steps)})")
                try:
                    res = simulate(
                        rs, {T: models[T]}, [T], modes=(mode,), epochs=epochs, max_train_windows=SIM_MAX_TRAIN_WINDOWS
                    )
                except TooLittleData as exc:  # (was: the whole simulation stopped, shown as "Partial (cancelled)")
                    short.add(T)
                    state.notes.append(f"{exc}: {prior_name()} is used there")
                    continue
                state.merge(res)
            state.complete = True
            progress(1.0, "done")
            return state

        def finished(msg: str | None = None) -> None:
            self.sim_task = None
            self.sim_progress.setVisible(False)
            self.btn_simulate.setEnabled(True)
            failed = msg is not None and msg != "cancelled"
            state.failure = msg if failed else ""
            if failed and not state.table:
                self.calib_text.setPlainText(f"Simulation failed: {msg}")
                self.sim = None
            elif msg == "cancelled" and not state.table:
                self.sim = None
                self.calib_text.setPlainText("Simulation cancelled before any input size finished.")
            elif not state.table:  # every size had too little data: nothing measured, said so
                self.sim = None
                self.calib_text.setPlainText("Nothing measured: " + "; ".join(state.notes))
            self.recompute()
            if self.sim is state and state.table:
                self.calib_text.setPlainText(
                    self.sim_text
                    + (f"\nSimulation failed: {msg}" if failed else "")  # (was hidden under the summary)
                    + ("\n" + "\n".join(state.notes) if state.notes else "")
                )

        def on_progress(f: float, text: str) -> None:
            self.sim_progress.setValue(int(1000 * f))
            self.sim_progress.setFormat(text)

        self.sim_progress.setValue(0)
        self.sim_progress.setFormat("starting")
        self.sim_progress.setVisible(True)
        self.sim_task = self._tasks().start(
            f"Simulating personalization of {m.name}",
            work,
            on_done=lambda _r: finished(None),
            on_error=finished,
            on_progress=on_progress,
        )
        self._show_sim()
        if wait:
            self._wait(self.sim_task, 600.0)

    def use_prior(self) -> None:
        self.sim = None
        self.calib_text.setPlainText(f"Accuracy from {prior_name()}.")
        self.recompute()

    # --- actions -------------------------------------------------------------------------------------------
    def apply_to_training(self) -> None:
        """Publish the recommendation *with its model* (``estimator_choice``): the Training panel selects the
        same model (importing an imported file there the way its own Import… does), input size and mode."""
        c = self.selected_config()
        if c is None:
            return
        m = self.current_model()
        self.ctx.status(
            f"Training panel prefilled: {m.name}, {c['mode'].upper()} at T={c['input_size']}, {c['epochs']} epoch(s)"
        )  # first: a problem the Training panel reports stays visible
        self.ctx.publish(
            "estimator_choice",
            input_size=int(c["input_size"]),
            mode=str(c["mode"]),
            epochs=int(c["epochs"]),
            batch_size=int(self.batch.value()),
            reason=self.rec.reason if self.picked is None else self.reason.toPlainText(),
            model=m.key,
        )

    def _tasks(self):
        if self.tasks is None:
            from app.ui.tasks import TaskRunner

            self.tasks = TaskRunner(self)
        return self.tasks

    def calibrate(self) -> None:
        from estimator.calibrate import calibrate
        from estimator.profiles import save_profile

        store, base, pdir = self.ctx.store, self.read_inputs().profile, profile_dir(self.ctx)
        board = self.ctx.devices.first("board")
        board_id = (
            "board-virtual"
            if board is None or board.info.virtual
            else "board-"
            + "".join(ch if ch.isalnum() else "-" for ch in (board.info.serial_number or board.info.url))[-40:]
        )

        def work(token, progress):
            progress(0.1, "collecting measured batches")
            recs = calibration_records(store)
            if not recs:
                raise ValueError("no finished round with measured batches yet: run a round in the Training panel")
            token.check()
            progress(0.5, f"fitting {len(recs)} batches")
            prof, report = calibrate(recs, base=base if base != board_id else "paper", name=board_id)
            path = save_profile(prof, pdir, board_id)
            return board_id, path, report.summary(), len(recs)

        def done(res):
            name, path, summary, n = res
            self.calib_text.setPlainText(f"{n} measured batches → profile '{name}' ({path})\n{summary}")
            self._fill_profiles(select=name)
            self.recompute()

        self.btn_calibrate.setEnabled(False)
        self._tasks().start(
            "Calibrating the cost model",
            work,
            on_done=lambda r: (self.btn_calibrate.setEnabled(True), done(r)),
            on_error=lambda m: (
                self.btn_calibrate.setEnabled(True),
                self.calib_text.setPlainText(f"Calibration failed: {m}"),
            ),
        )

    def activated(self) -> None:
        self.recompute()

    def shortcuts(self) -> list[tuple[str, str]]:
        return [("Use in Training panel", "Prefill the training form with the recommendation")]


def _with_tips(item: pg.PlotDataItem) -> pg.PlotDataItem:
    """Pointing at a point of ``item`` shows its text (the ``data`` it was plotted with): the value, its unit and
    what it is made of (the charts had no tool tip)."""
    item.scatter.opts.update(hoverable=True, tip=lambda x, y, data: str(data))
    return item


def _same_model(path: str | None, want: str | None) -> bool:
    if path is None or want is None:
        return path is None and want is None
    try:
        return Path(path).resolve() == Path(want).resolve()
    except OSError:
        return path == want


PANEL = PanelSpec(
    key="estimator",
    title="Estimator",
    order=60,
    factory=EstimatorPanel,
    icon="SP_FileDialogDetailedView",
    tooltip="Memory, time and energy of training; budgets and recommendation",
)
