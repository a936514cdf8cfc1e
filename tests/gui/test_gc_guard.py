"""Cyclic garbage collection runs only on the GUI thread while the main window is open (app/ui/gc_guard.py):
a collection on a device or round thread can finalize Qt objects there and deadlock the app."""

from __future__ import annotations

import gc
import threading

from app.ui.gc_guard import GuiThreadGc


class _Cycle:
    """A reference cycle that says on which thread it was collected."""

    def __init__(self, where: list[str]) -> None:
        self.me = self
        self.where = where

    def __del__(self) -> None:
        self.where.append(threading.current_thread().name)


def _drop_cycle_and_allocate(where: list[str], keep: list) -> None:
    _Cycle(where)
    keep.append([[i] for i in range(200_000)])  # tracked containers kept: far past every generation's threshold


def test_with_the_window_open_cycles_dropped_on_a_worker_thread_are_collected_on_the_gui_thread(power_window, qtbot):
    win, _ = power_window
    assert not gc.isenabled()
    where: list[str] = []
    keep: list = []
    t = threading.Thread(target=_drop_cycle_and_allocate, args=(where, keep), name="round-worker")
    t.start()
    t.join()
    assert where == []  # the worker allocated plenty, and collected nothing
    qtbot.waitUntil(lambda: bool(where), timeout=5000)
    assert where == [threading.main_thread().name]
    assert sum(win.gc_guard.collections) >= 1
    del keep
    win.close()
    assert gc.isenabled()  # back as it was once the window is gone


def test_the_guard_follows_the_interpreters_thresholds_and_nests(qtbot):
    assert gc.isenabled()
    old = gc.get_threshold()
    gc.set_threshold(100, 2, 2)
    try:
        a, b = GuiThreadGc(interval_ms=60_000, ratio_check_s=0.0), GuiThreadGc(interval_ms=60_000)
        assert not gc.isenabled()
        gc.collect()
        a.check()  # nothing allocated since the collection: no collection
        assert a.collections == [0, 0, 0]
        junk = [[i] for i in range(150)]
        a.check()
        assert a.collections == [1, 0, 0]
        for _ in range(20):  # more young collections: generation 1 is due, several times, and 2 by its count
            junk += [[i] for i in range(150)]
            a.check()
        # generation 2's count passed its threshold too, but the generation has not grown much: no full one
        assert a.collections[1] >= 3 and a.collections[2] == 0
        # a quarter more long-lived objects than after the last full collection: now a full one is due
        junk += [[i] for i in range(len(gc.get_objects(2)) // 2 + 1000)]
        for _ in range(12):
            junk += [[i] for i in range(150)]
            a.check()
        assert a.collections[2] == 1
        del junk
        a.release()
        a.release()  # twice is once
        assert not gc.isenabled()  # b still holds it
        b.release()
        assert gc.isenabled()
    finally:
        gc.set_threshold(*old)
        gc.enable()
