"""Estimator panel: cost table and trade-off chart of on-device training, budgets, the recommendation with
its reason, measured rounds over the predictions, and "calibrate from my rounds".

Everything is computed by the Qt-free :mod:`estimator` (a full sweep takes a few ms) through
:class:`app.core.rounds.EstimatorInputs`; calibration runs on the task runner.  The budgets are saved as
``estimator.*`` settings, which the Training panel reads to prefill its form with the recommendation.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout,
                               QHeaderView, QLabel, QPlainTextEdit, QPushButton, QSpinBox, QSplitter, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from app.core.rounds import (EstimatorInputs, GENERAL_SIZES, calibration_records, measured_points, windows_per_epoch)
from app.ui.panels import PanelSpec
from app.ui.panels.base import Panel

MODE_COLORS = {"tl": "#2563eb", "full": "#dc2626"}
COLUMNS = ("T", "mode", "train KiB", "RAM KiB", "s/batch", "mJ/batch", "s/round", "mJ/round", "F1 prior", "fits")


def profile_dir(ctx) -> str:
    return str(ctx.data_dir / "profiles")


class EstimatorPanel(Panel):
    def __init__(self, ctx, parent=None):
        super().__init__(ctx, parent)
        self._runner = None
        self.rec = None
        self.inputs = EstimatorInputs.from_settings(ctx.settings)
        root = QHBoxLayout(self)
        # --- left: budgets and options -----------------------------------------------------------------
        left = QVBoxLayout()
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
        self.source = QComboBox()
        self.source.addItem("charging (Full allowed)", "charging")
        self.source.addItem("battery (TL only, as the paper advises)", "battery")
        self.accounting = QComboBox()
        self.accounting.addItem("paper (Table III)", "paper")
        self.accounting.addItem("peak (liveness)", "peak")
        for label, w in (("Profile", self.profile), ("Batch size", self.batch), ("Epochs", self.epochs),
                         ("RAM", self.ram), ("Firmware reserve", self.reserve), ("Time budget", self.time_s),
                         ("Energy budget", self.energy), ("Power source", self.source),
                         ("Memory accounting", self.accounting)):
            form.addRow(label, w)
        left.addWidget(box)
        self.windows_label = QLabel()
        self.windows_label.setWordWrap(True)
        left.addWidget(self.windows_label)
        rbox = QGroupBox("Recommendation")
        rl = QVBoxLayout(rbox)
        self.choice = QLabel()
        self.choice.setObjectName("estimatorChoice")
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
        left.addWidget(rbox)
        cbox = QGroupBox("Calibration")
        cl = QVBoxLayout(cbox)
        self.btn_calibrate = QPushButton("Calibrate from my rounds")
        self.btn_calibrate.setToolTip("Fit the cycle costs and power model to the measured batches of your finished "
                                      "rounds and save them as a profile for this board")
        self.calib_text = QPlainTextEdit()
        self.calib_text.setReadOnly(True)
        self.calib_text.setMinimumHeight(60)
        self.calib_text.setMaximumHeight(110)
        cl.addWidget(self.btn_calibrate)
        cl.addWidget(self.calib_text)
        left.addWidget(cbox)
        left.addStretch(1)
        lw = QWidget()
        lw.setLayout(left)
        lw.setMaximumWidth(380)
        root.addWidget(lw)
        # --- right: chart and table ----------------------------------------------------------------------
        split = QSplitter(Qt.Vertical)
        charts = pg.GraphicsLayoutWidget()
        charts.setBackground("w")
        self.mem_plot = charts.addPlot(title="Training memory vs input size")
        self.energy_plot = charts.addPlot(title="Energy per batch vs input size")
        for p, unit, corner in ((self.mem_plot, "KiB", (-10, -30)), (self.energy_plot, "mJ", (10, 10))):
            p.showGrid(x=True, y=True, alpha=0.3)
            p.setLabel("bottom", "input size T (samples)")
            p.setLabel("left", unit)
            p.addLegend(offset=corner)
        self.ram_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#111", width=2, style=Qt.DashLine),
                                        label="RAM limit", labelOpts={"position": 0.12, "color": "#111", "anchors": [(0, 1), (0, 1)]})
        self.mem_plot.addItem(self.ram_line)
        self.charts = charts
        split.addWidget(charts)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        tw = QWidget()
        tl = QVBoxLayout(tw)
        tl.setContentsMargins(0, 0, 0, 0)
        self.table_title = QLabel()
        tl.addWidget(self.table_title)
        tl.addWidget(self.table)
        split.addWidget(tw)
        split.setSizes([430, 330])
        root.addWidget(split, 1)
        # --- wiring ---------------------------------------------------------------------------------------
        self._fill_profiles()
        self._load_inputs()
        for w in (self.batch, self.epochs):
            w.valueChanged.connect(self.recompute)
        for w in (self.ram, self.reserve, self.time_s, self.energy):
            w.valueChanged.connect(self.recompute)
        for w in (self.profile, self.source, self.accounting):
            w.currentIndexChanged.connect(self.recompute)
        self.btn_apply.clicked.connect(self.apply_to_training)
        self.btn_calibrate.clicked.connect(self.calibrate)
        ctx.subscribe("round_finished", lambda round_id=None, **_: self.recompute())
        ctx.subscribe("labels_changed", lambda **_: self.recompute())
        ctx.subscribe("user_changed", lambda **_: self.recompute())
        self.recompute()

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
        for w, v in ((self.batch, d.batch_size), (self.epochs, d.epochs), (self.ram, d.ram_kib),
                     (self.reserve, d.reserve_kib), (self.time_s, d.time_s), (self.energy, d.energy_mj)):
            w.blockSignals(True)
            w.setValue(v)
            w.blockSignals(False)
        for combo, v in ((self.source, d.power_source), (self.accounting, d.accounting)):
            combo.blockSignals(True)
            combo.setCurrentIndex(max(0, combo.findData(v)))
            combo.blockSignals(False)

    def read_inputs(self) -> EstimatorInputs:
        return EstimatorInputs(profile=str(self.profile.currentData() or "paper"), batch_size=self.batch.value(),
                               epochs=self.epochs.value(), ram_kib=self.ram.value(), reserve_kib=self.reserve.value(),
                               time_s=self.time_s.value(), energy_mj=self.energy.value(),
                               power_source=str(self.source.currentData()), accounting=str(self.accounting.currentData()))

    def _n_windows(self, T: int) -> int | None:
        return windows_per_epoch(self.ctx.store, self.ctx.dataset.id, T)

    # --- compute and show ----------------------------------------------------------------------------------
    def recompute(self) -> None:
        self.inputs = d = self.read_inputs()
        d.save(self.ctx.settings)
        nw = {T: self._n_windows(T) for T in GENERAL_SIZES}
        have = all(v is not None for v in nw.values())
        self.windows_label.setText(
            f"Windows per epoch from your labelled data: {', '.join(f'T={T}: {n}' for T, n in nw.items())}" if have
            else "No labelled data yet: a round is counted as one batch per epoch.")
        try:
            self.rec = d.recommend((lambda T: nw[T]) if have else None, profile_dir(self.ctx))
        except Exception as exc:  # noqa: BLE001 - bad profile file etc.: shown, never raised into Qt
            self.choice.setText("—")
            self.reason.setPlainText(f"Cannot estimate: {exc}")
            self.rec = None
            return
        c = self.rec.choice
        self.choice.setText(f"{c['mode'].upper()} at T={c['input_size']} with {c['epochs']} epoch(s)" if c
                            else "Nothing fits")
        self.reason.setPlainText(self.rec.reason)
        self.btn_apply.setEnabled(c is not None)
        rows = [r for r in self.rec.table if r["epochs"] == d.epochs]
        self.table_title.setText(f"Predictions at {d.epochs} epoch(s), batch {d.batch_size}, profile '{d.profile}' "
                                 "(green: recommended input size and mode; grey: outside a budget)")
        self._fill_table(rows)
        self._plot(rows, d)

    def _fill_table(self, rows: list[dict]) -> None:
        self.table.setRowCount(len(rows))
        chosen = self.rec.choice if self.rec else None
        for i, r in enumerate(rows):
            vals = (r["input_size"], r["mode"].upper(), f"{r['memory_kib']:.1f}", f"{r['ram_needed_kib']:.1f}",
                    f"{r['time_per_batch_s']:.3g}", f"{r['energy_per_batch_mj']:.3g}", f"{r['time_per_round_s']:.3g}",
                    f"{r['energy_per_round_mj']:.3g}", f"{r['accuracy']:.3f}",
                    "yes" if r["feasible"] else "no: " + ", ".join(r["violations"]))
            for j, v in enumerate(vals):
                item = QTableWidgetItem(str(v))
                item.setTextAlignment(Qt.AlignCenter)
                if not r["feasible"]:
                    item.setForeground(QBrush(QColor("#9ca3af")))
                if chosen and (r["input_size"], r["mode"]) == (chosen["input_size"], chosen["mode"]):
                    item.setBackground(QBrush(QColor("#dcfce7")))
                self.table.setItem(i, j, item)

    def _plot(self, rows: list[dict], d: EstimatorInputs) -> None:
        for p in (self.mem_plot, self.energy_plot):
            for item in list(p.listDataItems()):
                p.removeItem(item)
            if p.legend is not None:
                p.legend.clear()
        key = "memory_kib" if d.accounting == "paper" else "memory_peak_kib"
        for mode in ("tl", "full"):
            rs = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["input_size"])
            if not rs:
                continue
            xs = [r["input_size"] for r in rs]
            pen = pg.mkPen(MODE_COLORS[mode], width=2)
            self.mem_plot.plot(xs, [r[key] + d.reserve_kib for r in rs], pen=pen, symbol="o",
                               symbolBrush=MODE_COLORS[mode], name=f"{mode.upper()} (+ reserve)")
            self.energy_plot.plot(xs, [r["energy_per_batch_mj"] for r in rs], pen=pen, symbol="o",
                                  symbolBrush=MODE_COLORS[mode], name=f"{mode.upper()} predicted")
        self.ram_line.setValue(d.ram_kib)
        pts = [p for p in measured_points(self.ctx.store) if p["energy_mj"] is not None and p["batch_size"] == d.batch_size]
        for mode in ("tl", "full"):
            ms = [p for p in pts if p["mode"] == mode]
            if ms:
                self.energy_plot.plot([p["input_size"] for p in ms], [p["energy_mj"] for p in ms], pen=None,
                                      symbol="star", symbolSize=16, symbolBrush="#f59e0b",
                                      symbolPen=pg.mkPen(MODE_COLORS[mode], width=2),
                                      name=f"{mode.upper()} measured (rounds)")
        self.mem_plot.setYRange(0, max(d.ram_kib * 1.08, 1.0))
        self.measured_count = len(pts)

    # --- actions -------------------------------------------------------------------------------------------
    def apply_to_training(self) -> None:
        if self.rec is None or self.rec.choice is None:
            return
        c = self.rec.choice
        self.ctx.publish("estimator_choice", input_size=int(c["input_size"]), mode=str(c["mode"]),
                         epochs=int(c["epochs"]), batch_size=int(self.batch.value()), reason=self.rec.reason)
        self.ctx.status(f"Training panel prefilled: {c['mode'].upper()} at T={c['input_size']}, {c['epochs']} epochs")

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
        board_id = "board-virtual" if board is None or board.info.virtual else \
            "board-" + "".join(ch if ch.isalnum() else "-" for ch in (board.info.serial_number or board.info.url))[-40:]

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
        self._tasks().start("Calibrating the cost model", work, on_done=lambda r: (self.btn_calibrate.setEnabled(True), done(r)),
                            on_error=lambda m: (self.btn_calibrate.setEnabled(True),
                                                self.calib_text.setPlainText(f"Calibration failed: {m}")))

    def activated(self) -> None:
        self.recompute()

    def shortcuts(self) -> list[tuple[str, str]]:
        return [("Use in Training panel", "Prefill the training form with the recommendation")]


PANEL = PanelSpec(key="estimator", title="Estimator", order=60, factory=EstimatorPanel, icon="SP_FileDialogDetailedView",
                  tooltip="Memory, time and energy of training; budgets and recommendation")
