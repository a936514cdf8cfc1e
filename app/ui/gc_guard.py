"""Python's cyclic garbage collection only on the GUI thread, while a window is open.

CPython runs an automatic collection on whichever thread happens to allocate when a generation's count passes
its threshold: a device, capture or training-round thread as often as the GUI thread.  Such a collection can
finalize Qt objects left in reference cycles (a closed dialog, a menu, a panel's widgets), and their C++
destructors then run on that thread: one waited for the GIL while the GUI thread, holding it, waited for the
object's Qt lock, and the app hung (a CI run of ``test_gui_st_zoo``; docs/reliability.md).  pyqtgraph's
``GarbageCollector`` answers the same problem the same way: automatic collection off, and the same
generational rule applied from a timer on the GUI thread.  Reference counting, which frees almost everything,
is unaffected; only cycles wait for the next tick.

A full collection walks every tracked object (~140 ms with TensorFlow imported, ~300,000 objects), so like
the interpreter the guard runs one only when the oldest generation has grown by a quarter since the last one
(CPython's long-lived ratio), checked at most every ``ratio_check_s``; otherwise generation 1 is collected.
"""

from __future__ import annotations

import gc
import time

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 500
RATIO_CHECK_S = 10.0


class GuiThreadGc(QObject):
    """While at least one instance is active, automatic collection is off and this object's timer (GUI thread)
    collects with the thresholds the interpreter had.  :meth:`release` (the window closes) undoes it once the
    last instance goes; collection comes back on only if it was on before."""

    _active = 0
    _was_enabled = True
    _threshold: tuple[int, int, int] = (700, 10, 10)
    _long_lived = 0  # objects in the oldest generation after the last full collection (or at install)

    def __init__(
        self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS, ratio_check_s: float = RATIO_CHECK_S
    ) -> None:
        super().__init__(parent)
        cls = GuiThreadGc
        if cls._active == 0:
            cls._was_enabled = gc.isenabled()
            cls._threshold = gc.get_threshold()  # type: ignore[assignment]
            cls._long_lived = len(gc.get_objects(2))
            gc.disable()
        cls._active += 1
        self._released = False
        self.ratio_check_s = float(ratio_check_s)
        self._ratio_checked = -float("inf")
        self.collections = [0, 0, 0]  # per generation, for tests and diagnosis
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.check)
        self.timer.start(int(interval_ms))

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds, as the interpreter would have."""
        t0, t1, t2 = GuiThreadGc._threshold
        c0, c1, c2 = gc.get_count()
        if t0 <= 0 or c0 <= t0:
            return
        gen = 0
        if c1 > t1:
            gen = 1
            if c2 > t2 and self._full_due():
                gen = 2
        gc.collect(gen)
        if gen == 2:
            GuiThreadGc._long_lived = len(gc.get_objects(2))
        self.collections[gen] += 1

    def _full_due(self) -> bool:
        """Has the oldest generation grown by more than a quarter since the last full collection?"""
        now = time.monotonic()
        if now - self._ratio_checked < self.ratio_check_s:
            return False
        self._ratio_checked = now
        return len(gc.get_objects(2)) - GuiThreadGc._long_lived > GuiThreadGc._long_lived / 4

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.timer.stop()
        cls = GuiThreadGc
        cls._active -= 1
        if cls._active == 0 and cls._was_enabled:
            gc.enable()
