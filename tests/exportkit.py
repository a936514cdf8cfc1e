"""The GUI path of a TFLite export after a training round, as a user drives it: a round run from the Training
panel on the virtual bench (Python board), then every format exported from the Export panel, while Qt, the
device I/O threads and the task runners' threads are alive.

``python -m tests.exportkit OUT_DIR [ROUNDS]`` runs it in a process of its own and prints one JSON object per
export (what the panel shows and what is on disk): tests run it there when the converter is made to crash
(``ODL_TFLITE_FAULT``), because a converter that crashes inside the app process ends that process.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def strings_in(obj):
    """Every string inside a JSON-like object (dicts' values, lists' items), depth first."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings_in(v)


def spin(app, cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        app.processEvents()
        time.sleep(0.005)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what}")


def round_then_export(app, ctx, training, export, out: Path, epochs: int = 1) -> dict:
    """Run a round from ``training`` (TrainingPanel), then export it from ``export`` (ExportPanel) into
    ``out``; returns what the panels show and the files written."""
    training.epochs.setValue(epochs)
    training.run_round()
    spin(app, lambda: training.task is None, 300, "the round")
    export.load_rounds()
    rid = export.round.currentData()
    export.folder.setText(str(out))
    for cb in export.formats.values():
        cb.setChecked(True)
    export.export()
    spin(app, lambda: export.task is None, 900, "the export")
    return {
        "round": rid,
        "round_stage": training.stage.text(),
        "stage": export.stage.text(),
        "listed": [export.files.item(i).text() for i in range(export.files.count())],
        "written": {k: str(p) for k, p in export.written.items()},
        "failed": dict(export.failed),
        "on_disk": sorted(p.name for p in out.iterdir()) if out.is_dir() else [],
    }


def main(argv: list[str]) -> int:
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.ui.panels.export import ExportPanel
    from app.ui.panels.training import TrainingPanel
    from tests.roundkit import bench_context, labelled_dataset

    out = Path(argv[0])
    n = int(argv[1]) if len(argv) > 1 else 1
    app = QApplication.instance() or QApplication([])
    ctx = bench_context(out / "store")
    try:
        labelled_dataset(ctx)
        training, export = TrainingPanel(ctx), ExportPanel(ctx)
        for i in range(n):
            res = round_then_export(app, ctx, training, export, out / f"export{i}")
            print(json.dumps(res), flush=True)
        training.shutdown()
        export.shutdown()
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
