"""Simulated time shared by every emulated device of one virtual bench.

``SimClock.now()`` is monotonic simulated seconds since the clock was created.  ``time_scale`` is the
number of simulated seconds per wall-clock second (``> 1`` runs the bench faster than real time) and can
be changed at run time without making simulated time jump: the clock is re-based at the moment of the
change.

``limit`` (optional, a callable returning simulated seconds) caps the clock: it never runs past that
value and resumes from there, without a jump, when the limit moves on.  The QEMU board sets it to how far
its firmware has computed, so simulated time waits for a firmware that is slower than the time scale.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

__all__ = ["SimClock"]


class SimClock:
    """Monotonic simulated clock: ``now() = base_sim + (monotonic() - base_wall) * time_scale``."""

    def __init__(self, time_scale: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._scale = self._check(time_scale)
        self._base_wall = time.monotonic()
        self._base_sim = 0.0
        self._last = 0.0
        self.limit: Callable[[], float] | None = None

    @staticmethod
    def _check(time_scale: float) -> float:
        try:
            value = float(time_scale)
        except (TypeError, ValueError):
            raise ValueError(f"time_scale must be a number > 0, got {time_scale!r}") from None
        if not (value > 0.0) or value == float("inf"):
            raise ValueError(f"time_scale must be a finite number > 0 (sim s per wall s), got {time_scale!r}")
        return value

    @property
    def time_scale(self) -> float:
        return self._scale

    @time_scale.setter
    def time_scale(self, value: float) -> None:
        scale = self._check(value)
        with self._lock:
            wall = time.monotonic()
            self._base_sim = self._now_locked(wall)
            self._base_wall = wall
            self._scale = scale

    def now(self) -> float:
        """Simulated seconds since the clock was created (never decreases)."""
        with self._lock:
            return self._now_locked(time.monotonic())

    def _now_locked(self, wall: float) -> float:
        t = self._base_sim + (wall - self._base_wall) * self._scale
        limit = self.limit
        if limit is not None:
            cap = limit()
            if t > cap:  # wait at the cap: re-base so time resumes from here, not with a jump
                t = max(cap, self._last)
                self._base_sim, self._base_wall = t, wall
        if t < self._last:  # guard against float re-basing artefacts
            t = self._last
        self._last = t
        return t

    def wall_seconds(self, sim_seconds: float) -> float:
        """Wall-clock seconds that ``sim_seconds`` of simulated time take at the current scale."""
        return float(sim_seconds) / self._scale
