"""Long work off the GUI thread, with progress and cancel.

``runner.start(title, fn, on_done=..., on_error=...)`` runs ``fn(token, progress)`` on a
``QThreadPool`` thread.  ``token`` is a :class:`~app.core.context.CancelToken` (check ``token.cancelled``
or call ``token.check()``), ``progress(fraction, text)`` reports back.  ``on_done(result)`` /
``on_error(message)`` run on the GUI thread.  The :class:`TaskBar` in the status bar shows the running
task with a progress bar and a Cancel button.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from app.core.context import Cancelled, CancelToken

__all__ = ["TaskRunner", "Task", "TaskBar", "start_export"]


class _Signals(QObject):
    progress = Signal(float, str)
    done = Signal(object)
    failed = Signal(str)


class _Runnable(QRunnable):
    def __init__(self, task: "Task"):
        super().__init__()
        self.task = task
        self.setAutoDelete(True)

    def run(self) -> None:  # worker thread
        t = self.task
        try:
            result = t.fn(t.token, lambda f, text="": t.signals.progress.emit(float(f), str(text)))
        except Cancelled:
            t.signals.failed.emit("cancelled")
        except Exception as exc:  # noqa: BLE001 - reported on the GUI thread
            t.signals.failed.emit(f"{exc}\n{traceback.format_exc(limit=4)}" if t.verbose_errors else str(exc))
        else:
            if t.token.cancelled:
                t.signals.failed.emit("cancelled")
            else:
                t.signals.done.emit(result)


@dataclass
class Task:
    title: str
    fn: Callable[[CancelToken, Callable[..., None]], Any]
    token: CancelToken = field(default_factory=CancelToken)
    signals: _Signals = field(default_factory=_Signals)
    fraction: float = 0.0
    text: str = ""
    finished: bool = False
    error: str | None = None
    result: Any = None
    verbose_errors: bool = False

    def cancel(self) -> None:
        self.token.cancel()


class TaskRunner(QObject):
    """Starts tasks on a thread pool and tracks them (GUI thread)."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None, max_threads: int = 2):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self.tasks: list[Task] = []
        self.closed = False  # after shutdown(): results still queued to the GUI thread are dropped

    def start(
        self,
        title: str,
        fn: Callable[[CancelToken, Callable[..., None]], Any],
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_progress: Callable[[float, str], None] | None = None,
    ) -> Task:
        task = Task(title, fn)

        def progress(f: float, text: str) -> None:
            task.fraction, task.text = f, text
            if on_progress and not self.closed:
                on_progress(f, text)
            self.changed.emit()

        def done(result: Any) -> None:
            task.finished, task.result = True, result
            self._forget(task)
            if on_done and not self.closed:
                on_done(result)

        def failed(msg: str) -> None:
            task.finished, task.error = True, msg
            self._forget(task)
            if on_error and not self.closed:
                on_error(msg)

        task.signals.progress.connect(progress)
        task.signals.done.connect(done)
        task.signals.failed.connect(failed)
        self.tasks.append(task)
        self.changed.emit()
        self.pool.start(_Runnable(task))
        return task

    def _forget(self, task: Task) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        self.changed.emit()

    def cancel_all(self) -> None:
        for t in list(self.tasks):
            t.cancel()

    def wait(self, timeout_ms: int = 5000) -> bool:
        return self.pool.waitForDone(timeout_ms)

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel every task, wait for the workers, and drop the callbacks still queued: the window and the
        store they would update are closing."""
        self.cancel_all()
        ok = self.wait(timeout_ms)
        self.closed = True
        return ok


def start_export(
    runner: TaskRunner,
    status: Callable[[str, int], None],
    path: str,
    work: Callable[[Callable[[], None]], int],
    unit: str,
) -> Task:
    """Write an export file on ``runner`` and say the outcome on ``status(text, ms)``.

    ``work(check)`` reads what it exports, calling ``check()`` between its slow reads (a cancel raises
    there), and writes ``path`` whole or not at all (:func:`app.core.outputs.atomic_path`); it returns how
    many ``unit`` it wrote.  The sentence said is "Exported 1,234 windows to …", or "Export failed,
    nothing was written: <reason>" (:func:`app.core.outputs.write_failure`: "cannot write /x/w.npz: No space
    left on device", the system's words without errno and temporary name, naming the file),
    or, on Cancel, either "nothing was written" or, when the file was complete before the cancel reached
    the task, that it was written anyway."""
    from app.core.outputs import write_failure

    wrote: list[int] = []

    def fn(token: CancelToken, progress: Callable[..., None]) -> int:
        try:
            n = work(token.check)
        except Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - any reason is said; atomic_path wrote nothing
            raise RuntimeError(write_failure(path, exc)) from exc
        wrote.append(n)
        return n

    def done(n: int) -> None:
        status(f"Exported {n:,} {unit} to {path}", 10000)

    def failed(msg: str) -> None:
        if msg != "cancelled":
            status(f"Export failed, nothing was written: {msg}", 15000)
        elif wrote:
            status(f"Export cancelled too late: {path} was written whole ({wrote[0]:,} {unit})", 15000)
        else:
            status(f"Export cancelled, nothing was written to {path}", 15000)

    return runner.start(f"Exporting {Path(path).name}", fn, on_done=done, on_error=failed)


class TaskBar(QWidget):
    """Status-bar widget: title, progress and Cancel of the newest running task (hidden when idle)."""

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.runner = runner
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()  # clipped by the status bar when long: the full text is its tool tip
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(160)
        self.bar.setRange(0, 1000)
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(self._cancel)
        for w in (self.label, self.bar, self.cancel):
            lay.addWidget(w)
        runner.changed.connect(self.refresh)
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        tasks = self.runner.tasks
        self.setVisible(bool(tasks))
        if tasks:
            t = tasks[-1]
            more = f" (+{len(tasks) - 1})" if len(tasks) > 1 else ""
            self.label.setText(f"{t.title}{more}: {t.text}")
            self.label.setToolTip(self.label.text())
            self.bar.setValue(int(1000 * max(0.0, min(1.0, t.fraction))))

    @Slot()
    def _cancel(self) -> None:
        if self.runner.tasks:
            self.runner.tasks[-1].cancel()
