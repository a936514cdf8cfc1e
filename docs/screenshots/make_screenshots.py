"""Regenerate docs/screenshots/*.png: run the app with the virtual bench streaming and grab each panel, in a
window of 1280 x 800 — the smallest laptop screen the app is made for (every panel must fit it).  The
Training and Export shots are a TL round on the bench's board (the ODL firmware under QEMU where it is
installed, as the app's default) and its export: a few minutes.

    xvfb-run -s "-screen 0 1280x800x24" .venv/bin/python docs/screenshots/make_screenshots.py [OUT_DIR]

(OUT_DIR: where to write them instead of docs/screenshots.)

(``QT_QPA_PLATFORM=offscreen`` works too, without the full-screen ``xvfb_root.png``.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from PySide6.QtWidgets import QApplication

    from app.core.context import AppContext
    from app.ui.app import build_window

    app = QApplication([])
    data = tempfile.mkdtemp(prefix="odl-shots-")
    ctx = AppContext.create(data, bench=True, bench_kwargs={"board_kind": "auto"})  # as the app: QEMU when installed
    win = build_window(ctx)
    win.resize(1280, 800)
    win.move(0, 0)
    win.show()

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    dm = ctx.devices
    for key in ("powershield:virtual", "board:virtual"):
        dm.connect(key)
        dm.set_streaming(key, True)
    pump(3.0)
    shots = {}
    win.show_panel("devices")
    pump(0.5)
    shots["devices"] = win.grab()

    win.show_panel("live_accel")
    pump(1.0)
    dm.call("board:virtual", lambda c: c.set_activity("jogging"))
    pump(3.0)
    shots["live_accel"] = win.grab()

    lab = win.show_panel("labelling")
    lab.class_combo.setCurrentIndex(0)
    dm.call("board:virtual", lambda c: c.set_activity("walking"))
    lab.start_recording(8.0)
    pump(4.0)
    dm.call("board:virtual", lambda c: c.set_activity("sitting"))
    while lab.recorder is not None:
        pump(0.2)
    lab.set_selection(4.2, 8.0)
    lab.assign(4)  # Sitting
    lab.set_selection(1.0, 2.0)
    pump(0.5)
    shots["labelling"] = win.grab()

    pw = win.show_panel("power")
    pw.window.setValue(1.0)
    pump(2.0)
    pw.follow.setChecked(False)
    x0, x1 = pw.plot.visible_range()
    pw.add_marker(x0 + 0.2 * (x1 - x0), "batch 0")
    pw.add_marker(x0 + 0.7 * (x1 - x0), "batch 1")
    pw.set_selection(x0 + 0.3 * (x1 - x0), x0 + 0.5 * (x1 - x0))
    pump(0.6)
    shots["power"] = win.grab()

    # a round on the bench's board (the ODL firmware under QEMU when installed: times from the code that ran),
    # on a labelled dataset of three activities, then its export
    from tests.roundkit import labelled_dataset

    labelled_dataset(ctx)
    tr = win.show_panel("training")
    tr.size.setCurrentIndex(tr.size.findData(20))
    tr.mode.setCurrentIndex(tr.mode.findData("tl"))
    tr.epochs.setValue(3)
    tr.warmup.setValue(1)
    tr.btn_run.click()
    pump(1.0)
    while tr.task is not None:
        pump(0.5)
    pump(0.5)
    shots["training"] = win.grab()
    ex = win.show_panel("export")
    pump(0.5)
    ex.folder.setText(str(Path(data) / "exports"))
    ex.stem.setText("alice_T20")
    ex.btn_export.click()
    pump(1.0)
    while ex.task is not None:
        pump(0.5)
    pump(0.5)
    shots["export"] = win.grab()

    # the smallest screen the window fits: 800 x 600 (toolbars wrap, the Estimator's charts stack)
    win.resize(800, 600)
    win.show_panel("labelling")
    pump(1.0)
    shots["main_800x600"] = win.grab()
    win.show_panel("estimator")
    pump(1.0)
    shots["estimator_800x600"] = win.grab()

    for name, pix in shots.items():
        pix.save(str(OUT / f"{name}.png"), "PNG")
        print("wrote", OUT / f"{name}.png")
    if os.environ.get("DISPLAY") and app.platformName() == "xcb":  # the whole X screen, as a user sees it
        pump(0.3)
        if shutil.which("import"):
            subprocess.run(["import", "-window", "root", str(OUT / "xvfb_root.png")], check=False, timeout=30)
        else:
            app.primaryScreen().grabWindow(0).save(str(OUT / "xvfb_root.png"), "PNG")
        print("wrote", OUT / "xvfb_root.png")
    win.close()
    ctx.close()
    shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
