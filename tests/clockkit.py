"""Stand-ins for the ``time`` module of the code under test (patched over its module's ``time``).

Patching a module's ``time`` replaces it for every thread of the process: a device session, an endpoint or a round
another test left running would then use up a scripted clock, advance a stepped one by its sleeps, or spin without
sleeping.  A subclass of :class:`OwnThreadTime` is the fake for the thread that made it; any other thread gets the
real :mod:`time`."""

from __future__ import annotations

import threading
import time


class SleepClock:
    """``monotonic()`` stands still until ``sleep(s)`` moves it on by ``s`` (rounded to the nanosecond, so ten
    sleeps of 0.05 s are 0.5 s); every sleep is recorded in ``sleeps``."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now = round(self.now + s, 9)


class OwnThreadTime:
    """Subclass and define ``monotonic``, ``sleep``, ... (the names in :attr:`FAKED`)."""

    FAKED = frozenset({"monotonic", "sleep", "thread_time", "time", "perf_counter"})

    def __init__(self) -> None:
        self._owner = threading.current_thread()

    def __getattribute__(self, name: str):
        if name in OwnThreadTime.FAKED and threading.current_thread() is not object.__getattribute__(self, "_owner"):
            return getattr(time, name)
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str):  # whatever else the module uses: the real one
        return getattr(time, name)
