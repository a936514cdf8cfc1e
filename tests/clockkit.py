"""A stand-in for the ``time`` module of the code under test (patched over its module's ``time``)."""

from __future__ import annotations


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
