"""Redraw soak: >= 5,000 ``setData`` + paint cycles, the pattern that crashes PySide6 6.12.0 with pyqtgraph
0.14.0 ("Fatal Python error: none_dealloc ... refcount error in a C extension" after ~800 frames; None's
refcount falls by ~20 per frame before the crash).

Runs in a subprocess so that an interpreter crash is reported as a test failure instead of killing the
test session.  Two loops: a bare ``PlotDataItem`` (the minimal reproducer) and our real live plot widget
(:class:`app.ui.widgets.stream_plot.StreamPlot`) following a stream that grows every frame.  Besides
surviving, the child checks that ``sys.getrefcount(None)`` did not fall at all: on good versions it grows
(+30,095 and +29,796 over the two 5,000-frame loops on PySide6 6.11.3, about +6 per frame), so any fall
is the refcount bug (the old bound, a fall of up to 5,000, let a slow leak through)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]

FRAMES = 5000

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication
    from app.core.streams import SampleStream
    from app.ui.widgets.stream_plot import StreamPlot

    FRAMES = int(sys.argv[1])
    app = QApplication([])
    pg.setConfigOptions(antialias=False)
    rng = np.random.default_rng(0)

    # 1. bare PlotDataItem: setData + full paint every frame
    w = pg.PlotWidget()
    w.resize(320, 180)
    w.show()
    item = w.plot(pen="y")
    x = np.arange(1000, dtype=np.float64)
    none0 = sys.getrefcount(None)
    for k in range(FRAMES):
        item.setData(x, rng.normal(size=1000).astype(np.float32))
        w.grab()
        if k % 500 == 0:
            app.processEvents()
    none1 = sys.getrefcount(None)
    print("bare", FRAMES, "frames; None refcount delta", none1 - none0, flush=True)
    assert none1 - none0 >= 0, f"None refcount fell by {none0 - none1}: refcount bug in setData"

    # 2. the app's live plot following a 100 kS/s stream with a 1 s window
    s = SampleStream("current", 100_000.0, 1, recent_s=2.0, history_s=60.0)
    plot = StreamPlot(lambda: s, window_s=1.0, label="current", units="A")
    plot.resize(320, 180)
    plot.show()
    block = np.full(1667, 1e-3, np.float32)
    none0 = sys.getrefcount(None)
    for k in range(FRAMES):
        block[k % 1667] = 5e-3  # a spike somewhere
        s.append(block)
        assert plot.tick(), "stream changed but the plot did not redraw"
        plot.grab()
        if k % 500 == 0:
            app.processEvents()
    none1 = sys.getrefcount(None)
    print("streamplot", plot.frames, "frames; None refcount delta", none1 - none0, flush=True)
    assert plot.frames == FRAMES
    assert none1 - none0 >= 0, f"None refcount fell by {none0 - none1}"
    print("OK", flush=True)
""")


def test_redraw_soak_5000_frames():
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(FRAMES)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),  # the checkout
    )
    msg = f"exit {out.returncode}\nstdout:\n{out.stdout[-2000:]}\nstderr:\n{out.stderr[-3000:]}"
    assert out.returncode == 0, msg
    assert out.stdout.strip().endswith("OK"), msg
