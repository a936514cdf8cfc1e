"""Start the desktop app: QApplication, pyqtgraph configuration, context, main window."""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

__all__ = ["configure_pyqtgraph", "build_window", "main"]


def configure_pyqtgraph() -> None:
    """Raster painting, no antialiasing, dark background (engineers' scope look); OpenGL stays off."""
    import pyqtgraph as pg

    pg.setConfigOptions(
        antialias=False, useOpenGL=False, background="#111318", foreground="#d1d5db", imageAxisOrder="row-major"
    )


def build_window(ctx, fps: int | None = None):
    """A shown-ready :class:`~app.ui.main_window.MainWindow` for ``ctx`` (QApplication must exist)."""
    configure_pyqtgraph()
    from app.ui.main_window import MainWindow

    return MainWindow(ctx, fps=fps)


def connect_virtual(ctx) -> list[str]:
    """Without hardware the app runs on the in-process virtual bench: connect to its devices at once (the
    connection runs on each device's own thread; this returns immediately).  Real devices are left for
    the user to connect.  Returns the keys asked to connect."""
    keys = [s.info.key for s in ctx.devices.snapshot() if s.info.virtual]
    for key in keys:
        ctx.devices.connect(key)
    return keys


def open_context(data_dir, **kw):
    """:meth:`AppContext.create`, or — when the database is damaged — the repair dialog first; a store that
    cannot be opened at all (read-only, locked, full disk) is said in a message box and on stderr.  Returns
    ``(ctx, what the repair did)`` or None when the app must exit."""
    from app.core.context import AppContext
    from app.core.store import StoreDamaged, StoreError, default_data_dir
    from app.ui.store_dialog import ask_and_repair, show_store_error

    folder = Path(data_dir) if data_dir else default_data_dir()
    repaired = ""
    for _attempt in range(3):
        try:
            ctx = AppContext.create(folder, **kw)
        except StoreDamaged as exc:
            print(f"odlstudio: {exc}", file=sys.stderr)
            repaired = ask_and_repair(folder, exc) or ""
            if not repaired:
                return None
            continue
        except StoreError as exc:
            print(f"odlstudio: {exc}", file=sys.stderr)
            show_store_error(exc)
            return None
        if repaired:
            logging.getLogger("odlstudio").warning(repaired)
        return ctx, repaired
    return None


def main(
    data_dir: str | Path | None = None,
    bench: bool | None = None,
    panel: str | None = None,
    quit_after_s: float | None = None,
    time_scale: float = 1.0,
    board_kind: str = "auto",
) -> int:
    """Run the app until the window closes; returns the exit code."""
    t_start = time.perf_counter()
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("ODL Studio")
    app.setOrganizationName("odlstudio")
    app.setDesktopFileName("odlstudio")  # matches assets/odlstudio.desktop (taskbar grouping, icon)
    from PySide6.QtGui import QIcon

    from app.core.paths import asset_path

    icon = asset_path("icons", "odlstudio.png")
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    opened = open_context(data_dir, bench=bench, bench_kwargs={"time_scale": time_scale, "board_kind": board_kind})
    if opened is None:
        return 2
    ctx, repaired = opened
    connect_virtual(ctx)
    win = build_window(ctx)
    if panel:
        win.show_panel(panel)
    win.show()
    if repaired:
        ctx.status(repaired, 15000)
    previous_hook = sys.excepthook
    sys.excepthook = error_reporter(ctx, Path(ctx.data_dir) / "odlstudio-errors.log")

    def first_paint() -> None:
        logging.getLogger("odlstudio").info("first window painted %.2f s after start", time.perf_counter() - t_start)

    QTimer.singleShot(0, first_paint)
    if quit_after_s:
        QTimer.singleShot(int(quit_after_s * 1000), win.close)
    previous_handlers = close_on_signals(win)
    try:
        return int(app.exec())
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        sys.excepthook = previous_hook
        ctx.close()


def close_on_signals(win) -> dict:
    """Ctrl-C in the terminal that started the app (SIGINT) and SIGTERM (a logout, ``kill``) close the window
    as its close button does, so the devices, the virtual bench's QEMU board and the store are shut down.  (Was:
    Ctrl-C printed a KeyboardInterrupt traceback from whichever slot ran and the app went on; SIGTERM ended it
    at once and left qemu-system-arm running.)  The window's frame clock runs Python often enough for the
    handler to be called promptly.  Returns the handlers replaced."""
    from PySide6.QtCore import QTimer

    def handler(signum, frame) -> None:
        QTimer.singleShot(0, win.close)

    previous = {}
    for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if sig is not None:
            previous[sig] = signal.signal(sig, handler)
    return previous


def error_reporter(ctx, log_path: Path):
    """A ``sys.excepthook`` for the GUI: an exception escaping a Qt slot (a bug) becomes one sentence in the
    status bar, and its traceback goes to ``log_path`` (not to the terminal)."""

    def hook(exc_type, exc, tb) -> None:
        import traceback

        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        try:
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(time.strftime("%Y-%m-%d %H:%M:%S ") + "".join(traceback.format_exception(exc_type, exc, tb)))
            where = f" (details in {log_path})"
        except OSError:
            where = ""
        try:
            ctx.status(f"Unexpected error: {exc_type.__name__}: {exc}{where}", 15000)
        except Exception:  # noqa: BLE001 - the window may be gone
            pass
        logging.getLogger("odlstudio").error("unexpected error: %s: %s%s", exc_type.__name__, exc, where)

    return hook
