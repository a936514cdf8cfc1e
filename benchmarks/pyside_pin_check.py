"""Why PySide6 is pinned to 6.11.3: the minimal pyqtgraph redraw loop that kills PySide6 6.12.0.

Run it with the interpreter of a venv holding the PySide6 under test:
    QT_QPA_PLATFORM=offscreen python benchmarks/pyside_pin_check.py
It prints the change in ``sys.getrefcount(None)`` every 250 frames (falling = the refcount bug) and
"survived 5000" at the end; PySide6 6.12.0 aborts with "Fatal Python error: none_dealloc".
The test suite keeps the same loop (plus the app's own live plot) in tests/gui/test_redraw_soak.py.
"""

import sys

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QApplication

app = QApplication([])
w = pg.PlotWidget()
w.resize(320, 180)
w.show()
item = w.plot(pen="y")
x = np.arange(1000, dtype=np.float64)
rng = np.random.default_rng(0)
n0 = sys.getrefcount(None)
for k in range(5000):
    item.setData(x, rng.normal(size=1000).astype(np.float32))
    w.grab()
    if k % 250 == 0:
        print(k, sys.getrefcount(None) - n0, flush=True)
print("survived 5000")
