"""Export panel: write a round's personalized weights as .keras / .h5 / .tflite (float32, int8) / C header /
.npz with a short Markdown report (model, data, round metrics, estimator vs measured).

The export runs on the task runner with progress and cancel (:func:`app.core.rounds.export_round`; the TFLite
conversions run in a child process, :mod:`app.core.tflite_convert`); a format that fails is listed as not
written beside the files that were.  The report preview is built from the store.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QTextCharFormat, QTextCursor, QTextDocument
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.core.datasets import _names
from app.core.outputs import failure_reason
from app.core.rounds import (
    EXPORT_FORMATS,
    ExportIncomplete,
    export_files,
    export_round,
    round_report,
    round_summary,
)
from app.ui.panels import PanelSpec
from app.ui.panels.base import Panel
from app.ui.widgets.combo import tip_current_item

FORMAT_LABELS = {
    "keras": "Keras 3 (.keras)",
    "h5": "Keras HDF5 (.h5) — ST Edge AI / X-CUBE-AI",
    "tflite_float32": "TFLite float32 (.tflite)",
    "tflite_int8": "TFLite int8 (.tflite, calibrated on the round's windows)",
    "c_header": "C header for the firmware (.h)",
    "npz": "NumPy weights (.npz)",
}


class ReportView(QTextBrowser):
    """The round's Markdown report, rendered (headings, tables) and read-only; ``markdown`` is its source, as
    written to ``<name>_report.md``.  The report quotes names a user chose (labels, files, warnings): none of
    them is ever fetched as an image (``![x](/dev/zero)`` is shown as its text) or followed as a link, and raw
    HTML is shown as text."""

    def __init__(self) -> None:
        super().__init__()
        self.markdown = ""
        self.setOpenLinks(False)

    def show_markdown(self, text: str) -> None:
        self.markdown = text
        doc = self.document()
        doc.setMarkdown(
            text, QTextDocument.MarkdownFeature.MarkdownDialectGitHub | QTextDocument.MarkdownFeature.MarkdownNoHTML
        )
        images = []  # (Qt's image handler reads a named file itself, whatever the document's loadResource says)
        block = doc.begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                f = it.fragment()
                if f.charFormat().isImageFormat():
                    images.append((f.position(), f.length(), f.charFormat().toImageFormat().name()))
                it += 1
            block = block.next()
        cur = QTextCursor(doc)
        for pos, n, name in reversed(images):
            cur.setPosition(pos)
            cur.setPosition(pos + n, QTextCursor.MoveMode.KeepAnchor)
            cur.insertText(f"[image {name}]", QTextCharFormat())


NO_ROUND = "No finished round yet: run one in the Training round panel."

#: What an export writes (``<name><suffix>``): a name typed with one of these endings loses it (``alice.npz``
#: is written as ``alice.npz``, ``alice.h`` …, not ``alice.npz.npz``).
EXPORT_SUFFIXES = (".keras", ".h5", ".tflite", ".h", ".npz", ".md")
#: The longest name: a file name is at most 255 bytes, and the files written add up to 15 (``_float32.tflite``)
#: plus the temporary name they are written under first (``.<name>.tmp<pid>-<thread>``, about 40).
MAX_NAME_BYTES = 180


def check_target(folder: str, name: str) -> tuple[Path, str | None] | str:
    """The export folder (``~`` expanded) and file name the user typed, checked before anything is written:
    ``(folder, name or None for the default)``, or the sentence saying what is wrong with them.  The name is
    a file name without a folder part (it was joined to the folder: ``../x`` wrote beside it, ``a/b`` failed
    with Python's "[Errno 2]"); the folder is a full path (a relative one was written under whatever folder
    the app was started from) and not a file."""
    name = name.strip()
    for suffix in EXPORT_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    if any(c in name for c in "/\\") or name in (".", ".."):
        return (
            f"File name {name!r}: a name without a folder part is expected (no '/', '\\' or '..'); "
            "the folder is chosen above"
        )
    if name and not name.strip("."):  # "...": the files would be "....npz", "..._report.md": hidden, unseen
        return f"File name {name!r}: dots only would make hidden files ({name}.npz); give a name with a letter or digit"
    if any(ord(c) < 32 for c in name):
        return f"File name {name!r}: contains a control character"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"File name {name[:24]!r}…: too long ({len(name.encode('utf-8'))} bytes; at most {MAX_NAME_BYTES})"
    if "\0" in folder:
        return f"Folder {folder!r}: not a valid path"
    out = Path(folder).expanduser()
    if not out.is_absolute():
        return f"Folder {folder!r}: give a full path (e.g. {Path.home() / 'odlstudio-exports'})"
    if out.exists() and not out.is_dir():
        return f"Folder {out} is a file, not a folder"
    return out, name or None


def name_list(paths, most: int = 4) -> str:
    """``a.h5, a.npz`` or ``a.h5, a.json, a.keras, a.npz and 3 more`` (the files' names)."""
    return _names([Path(p).name for p in paths], most)


class ExportPanel(Panel):
    def __init__(self, ctx, parent=None):
        super().__init__(ctx, parent)
        self.task = None
        self.export_folder = ""  # the folder of the running or last export (``~`` expanded)
        self.written: dict[str, Path] = {}
        self.failed: dict[str, str] = {}  # format -> why it was not written (last export)
        self.report_name = ""  # the report file of the running or last export
        self._ready_hint = ""  # "N finished rounds: pick one …" while it is what the stage says
        root = QHBoxLayout(self)
        left = QVBoxLayout()
        box = QGroupBox("Personalized weights")
        form = QFormLayout(box)
        self.round = QComboBox()
        self._tip_round = tip_current_item(self.round, "Finished rounds with weights downloaded from the board")
        self.round.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)  # a round's long summary
        self.round.setMinimumContentsLength(16)
        form.addRow("Round", self.round)
        drow = QHBoxLayout()
        self.folder = QLineEdit(str(ctx.settings.get("export.folder", str(Path.home() / "odlstudio-exports"))))
        self.btn_browse = QPushButton("Browse…")
        drow.addWidget(self.folder, 1)
        drow.addWidget(self.btn_browse)
        form.addRow("Folder", drow)
        self.stem = QLineEdit()
        self.stem.setPlaceholderText("personalized_round<N>")
        form.addRow("File name", self.stem)
        left.addWidget(box)
        fbox = QGroupBox("Formats")
        fl = QVBoxLayout(fbox)
        self.formats: dict[str, QCheckBox] = {}
        for f in EXPORT_FORMATS:
            cb = QCheckBox(FORMAT_LABELS[f])
            cb.setChecked(True)
            self.formats[f] = cb
            fl.addWidget(cb)
        left.addWidget(fbox)
        row = QHBoxLayout()
        self.btn_export = QPushButton("Export")
        self.btn_cancel = QPushButton("Cancel")
        self.btn_cancel.setEnabled(False)
        row.addWidget(self.btn_export, 1)
        row.addWidget(self.btn_cancel)
        left.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.stage = QLabel("")
        self.stage.setWordWrap(True)
        left.addWidget(self.progress)
        left.addWidget(self.stage)
        left.addWidget(QLabel("Written files"))
        self.files = QListWidget()
        left.addWidget(self.files, 1)
        lw = QWidget()
        lw.setLayout(left)
        lw.setMaximumWidth(480)
        root.addWidget(lw)
        right = QVBoxLayout()
        title = QLabel("Report (written beside the files as <name>_report.md)")
        title.setWordWrap(True)  # beside the form on an 800-px screen
        right.addWidget(title)
        self.report = ReportView()
        right.addWidget(self.report, 1)
        root.addLayout(right, 1)
        self.btn_browse.clicked.connect(self._browse)
        self.btn_export.clicked.connect(self.export)
        self.btn_cancel.clicked.connect(self.cancel)
        self.round.currentIndexChanged.connect(self._show_report)
        ctx.subscribe("round_finished", lambda round_id=None, **_: self.load_rounds(select=round_id))
        ctx.subscribe("user_changed", lambda **_: self.load_rounds())
        self.load_rounds()

    # --- rounds --------------------------------------------------------------------------------------------
    def load_rounds(self, select: int | None = None) -> None:
        keep = select if select is not None else self.round.currentData()
        self.round.blockSignals(True)
        self.round.clear()
        for r in reversed(self.ctx.store.rounds(self.ctx.dataset.id)):
            if r["status"] == "done" and r["result"].get("weights_path"):
                self.round.addItem(round_summary(r), r["id"])
        i = self.round.findData(keep) if keep is not None else 0
        self.round.setCurrentIndex(max(0, i))
        self.round.blockSignals(False)
        self._tip_round()
        has = self.round.count() > 0
        self.btn_export.setEnabled(has and self.task is None)
        if not has:
            self.stage.setText(NO_ROUND)
        elif self.stage.text() in (NO_ROUND, self._ready_hint):  # rounds finished since: the hint follows them
            n = self.round.count()  # ("1 finished round(s)" stayed when a second one finished)
            self._ready_hint = f"{n} finished round{'s' if n != 1 else ''}: pick one, a folder and the formats."
            self.stage.setText(self._ready_hint)
        self._show_report()

    def activated(self) -> None:
        self.load_rounds()  # rounds may have finished while another panel was shown

    def _show_report(self) -> None:
        rid = self.round.currentData()
        if rid is None:
            self.report.show_markdown("")
            return
        try:
            self.report.show_markdown(round_report(self.ctx.store, int(rid)))
        except Exception as exc:  # noqa: BLE001 - shown, never raised into Qt
            self.report.show_markdown(f"Cannot build the report: {exc}")

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Export folder", self.folder.text())
        if d:
            self.folder.setText(d)

    # --- export --------------------------------------------------------------------------------------------
    def selected_formats(self) -> tuple[str, ...]:
        return tuple(f for f, cb in self.formats.items() if cb.isChecked())

    def _tasks(self):
        if self.tasks is None:
            from app.ui.tasks import TaskRunner

            self.tasks = TaskRunner(self)
        return self.tasks

    def export(self) -> None:
        rid = self.round.currentData()
        formats = self.selected_formats()
        folder = self.folder.text().strip()
        if rid is None:
            self.stage.setText("Choose a round first")
            return
        if not formats:
            self.stage.setText("Choose at least one format")
            return
        if not folder:
            self.stage.setText("Choose an export folder")
            return
        checked = check_target(folder, self.stem.text())
        if isinstance(checked, str):
            self.stage.setText(checked)
            return
        out, stem = checked
        targets = export_files(out, int(rid), formats, stem)
        there = [p for p in targets if p.is_file()]
        if there and not self._may_replace(out, there):
            self.stage.setText(f"Export not started: the existing files in {out} were kept")
            return
        self.report_name = next(p.name for p, what in targets.items() if what == "report")
        folder = self.export_folder = str(out)
        self.ctx.settings.set("export.folder", folder)
        store = self.ctx.store
        self.files.clear()
        self.progress.setValue(0)
        self.btn_export.setEnabled(False)
        self.btn_cancel.setEnabled(True)

        def work(tok, prog):
            try:
                written = export_round(
                    store, int(rid), folder, formats, stem, lambda: tok.cancelled, prog, isolate=True
                )
                return written, {}
            except ExportIncomplete as exc:  # the other formats were written: list them and say what failed
                return exc.written, exc.failed
            except OSError as exc:  # the folder could not be made or written (a full or read-only disk)
                raise RuntimeError(f"{folder}: {failure_reason(exc)}") from exc

        self.task = self._tasks().start(
            f"Exporting round {rid}",
            work,
            on_done=self._done,
            on_error=self._failed,
            on_progress=lambda f, t: (self.progress.setValue(int(1000 * f)), self.stage.setText(t)),
        )

    def _may_replace(self, out: Path, there: list[Path]) -> bool:
        """Ask before replacing files of the same name (default No)."""
        n = len(there)
        answer = QMessageBox.question(
            self,
            "Replace files?",
            f"Replace {n} existing file{'s' if n > 1 else ''} in {out}: {name_list(there)}?",
            QMessageBox.Yes | QMessageBox.No,
            QMessageBox.No,
        )
        return answer == QMessageBox.Yes

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.stage.setText("Cancelling after the current format…")

    def _end(self) -> None:
        self.task = None
        self.btn_cancel.setEnabled(False)
        self.btn_export.setEnabled(self.round.count() > 0)

    def _done(self, result: tuple[dict, dict]) -> None:
        written, failed = result
        self._end()
        self.written = dict(written)
        self.failed = dict(failed)
        for k, p in written.items():  # every file: models, their JSON metadata, the report
            self.files.addItem(f"{Path(p).name}   ({k}, {Path(p).stat().st_size / 1024:.1f} KiB)")
        for k, msg in failed.items():
            self.files.addItem(f"NOT WRITTEN: {FORMAT_LABELS.get(k, k)}: {msg}")
        self.progress.setValue(1000)
        text = f"Wrote {len(written)} files to {self.export_folder}"
        others = dict(failed)
        if "report" in failed and "report" not in written:  # the models are there, their report is not
            n = len(written)
            text = (
                f"Wrote {n} file{'s' if n != 1 else ''} to {self.export_folder}: {name_list(written.values(), 8)}; "
                if n
                else f"Nothing was written to {self.export_folder}: "
            ) + f"the report {self.report_name} was not written: {others.pop('report')}"
        if others:
            text += "; not written: " + "; ".join(f"{k} ({msg})" for k, msg in others.items())
        self.stage.setText(text)
        self.ctx.status(
            f"Exported round {self.round.currentData()} to {self.export_folder}"
            + (f" except {', '.join(failed)}" if failed else "")
        )

    def _failed(self, message: str) -> None:
        self._end()
        self.stage.setText(
            "Export cancelled (files already written are kept)"
            if message == "cancelled"
            else f"Export failed: {message}"
        )

    def shutdown(self) -> None:
        self.cancel()


PANEL = PanelSpec(
    key="export",
    title="Export",
    order=70,
    factory=ExportPanel,
    icon="SP_DialogSaveButton",
    tooltip="Personalized weights as .keras/.h5/.tflite/C header/.npz with a report",
)
