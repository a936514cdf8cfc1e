"""Current sources for the LPM01A emulator (``CurrentSource`` protocol of ``device/emulated.py``).

* :class:`ConstantCurrent` - a fixed current, optional D7 edges (tests).
* :class:`PiecewiseCurrent` - piecewise-constant current with change points and D7 edges, optionally
  periodic (tests, scripted scenarios such as "70 mA from t = 2 s").
* :class:`L496Profile` - the documented STM32L496ZG supply-current profile at 3.3 V that the virtual
  bench measures while no NUCLEO emulator is available.

STM32L496 figures used (typical, 25 degC, VDD 3.3 V, internal LDO; DS11585 order of magnitude - the
project's reference (lpm01a-protocol.md section 6.1) quotes 91 uA/MHz as the Range-2 headline and
100-120 uA/MHz for Range 1 at 80 MHz; verify against the datasheet before relying on absolute values):

======================  =========================  =============================================
mode                    model                      at 80 MHz
======================  =========================  =============================================
run (training)          100 uA/MHz x f_sysclk      8.0 mA
sleep (idle, WFI)       28 uA/MHz x f_sysclk       2.24 mA
streaming (sensor I/O)  sleep + a run burst of     ~2.5 mA average
                        ``burst_s`` per sample of
                        an ``odr_hz`` sensor
stop2                   2.6 uA                     2.6 uA
======================  =========================  =============================================

The default :class:`L496Profile` timeline repeats forever (period 4 s): 1 s idle, 1.5 s streaming the
accelerometer at 26 Hz (300 us CPU burst per sample), 1.5 s training with a D7 rising edge at the start
of every 100 ms batch (the marker the board firmware raises at batch boundaries).  The LPM01A emulator
adds measurement noise and quantisation on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "ConstantCurrent",
    "PiecewiseCurrent",
    "Phase",
    "L496Profile",
    "RUN_UA_PER_MHZ",
    "SLEEP_UA_PER_MHZ",
    "STOP2_UA",
]

RUN_UA_PER_MHZ = 100.0
SLEEP_UA_PER_MHZ = 28.0
STOP2_UA = 2.6
_EMPTY = np.zeros(0, dtype=np.float64)


def _edges_in(edges: np.ndarray, t0: float, t1: float) -> np.ndarray:
    lo = np.searchsorted(edges, t0, side="right")
    hi = np.searchsorted(edges, t1, side="right")
    return edges[lo:hi]


class ConstantCurrent:
    """A constant ``amps``; ``edges`` are absolute D7 rising-edge times (simulated seconds)."""

    def __init__(self, amps: float, edges: Sequence[float] = ()) -> None:
        if not np.isfinite(amps) or amps < 0:
            raise ValueError(f"ConstantCurrent amps must be a finite value >= 0, got {amps!r}")
        self.amps = float(amps)
        self.edges = np.sort(np.asarray(edges, dtype=np.float64))

    def current(self, t: np.ndarray) -> np.ndarray:
        return np.full(np.shape(t), self.amps, dtype=np.float64)

    def d7_edges(self, t0: float, t1: float) -> np.ndarray:
        return _edges_in(self.edges, t0, t1)


class PiecewiseCurrent:
    """Piecewise-constant current: ``amps[i]`` from ``times[i]`` until ``times[i+1]``.

    Before ``times[0]`` the current is ``amps[0]``.  With ``period`` set, the pattern (times, edges
    within ``[0, period)``) repeats forever.
    """

    def __init__(
        self,
        times: Sequence[float],
        amps: Sequence[float],
        edges: Sequence[float] = (),
        period: float | None = None,
    ) -> None:
        self.times = np.asarray(times, dtype=np.float64)
        self.amps = np.asarray(amps, dtype=np.float64)
        if self.times.ndim != 1 or self.times.shape != self.amps.shape or len(self.times) == 0:
            raise ValueError("PiecewiseCurrent needs equally long, non-empty 1-D times and amps")
        if np.any(np.diff(self.times) < 0):
            raise ValueError("PiecewiseCurrent times must be sorted ascending")
        if np.any(~np.isfinite(self.amps)) or np.any(self.amps < 0):
            raise ValueError("PiecewiseCurrent amps must be finite and >= 0")
        if period is not None and not (period > 0):
            raise ValueError(f"PiecewiseCurrent period must be > 0, got {period!r}")
        self.period = None if period is None else float(period)
        self.edges = np.sort(np.asarray(edges, dtype=np.float64))

    def current(self, t: np.ndarray) -> np.ndarray:
        tt = np.asarray(t, dtype=np.float64)
        if self.period is not None:
            tt = np.mod(tt, self.period)
        i = np.searchsorted(self.times, tt, side="right") - 1
        return self.amps[np.clip(i, 0, len(self.amps) - 1)]

    def d7_edges(self, t0: float, t1: float) -> np.ndarray:
        if self.period is None:
            return _edges_in(self.edges, t0, t1)
        if t1 <= t0 or len(self.edges) == 0:
            return _EMPTY
        k0, k1 = int(np.floor(t0 / self.period)), int(np.floor(t1 / self.period))
        allk = (np.arange(k0, k1 + 1)[:, None] * self.period + self.edges[None, :]).ravel()
        return allk[(allk > t0) & (allk <= t1)]


@dataclass(frozen=True)
class Phase:
    """One segment of an :class:`L496Profile` timeline.

    ``mode`` is ``idle`` (sleep/WFI), ``streaming`` (sleep + sensor bursts), ``training`` (run) or
    ``stop2``; ``marker_every_s`` puts D7 rising edges at the phase start and every that many seconds
    within it (batch boundaries)."""

    mode: str
    duration_s: float
    marker_every_s: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("idle", "streaming", "training", "stop2"):
            raise ValueError(f"Phase mode {self.mode!r}: must be idle, streaming, training or stop2")
        if not (self.duration_s > 0):
            raise ValueError(f"Phase duration_s must be > 0, got {self.duration_s!r}")
        if self.marker_every_s is not None and not (self.marker_every_s > 0):
            raise ValueError(f"Phase marker_every_s must be > 0, got {self.marker_every_s!r}")


DEFAULT_PHASES: tuple[Phase, ...] = (
    Phase("idle", 1.0),
    Phase("streaming", 1.5),
    Phase("training", 1.5, marker_every_s=0.1),
)


class L496Profile:
    """STM32L496 supply current at 3.3 V following a repeating :class:`Phase` timeline (see module doc)."""

    def __init__(
        self,
        clock_mhz: float = 80.0,
        phases: Sequence[Phase] = DEFAULT_PHASES,
        odr_hz: float = 26.0,
        burst_s: float = 300e-6,
        start: float = 0.0,
    ) -> None:
        if not (0 < clock_mhz <= 80):
            raise ValueError(f"clock_mhz must be in (0, 80] for an STM32L496, got {clock_mhz!r}")
        if not phases:
            raise ValueError("L496Profile needs at least one Phase")
        if not (odr_hz > 0 and 0 < burst_s < 1.0 / odr_hz):
            raise ValueError(f"need odr_hz > 0 and 0 < burst_s < 1/odr_hz, got {odr_hz!r}, {burst_s!r}")
        self.clock_mhz = float(clock_mhz)
        self.phases = tuple(phases)
        self.odr_hz = float(odr_hz)
        self.burst_s = float(burst_s)
        self.start = float(start)
        self.run_a = RUN_UA_PER_MHZ * self.clock_mhz * 1e-6
        self.sleep_a = SLEEP_UA_PER_MHZ * self.clock_mhz * 1e-6
        self.stop2_a = STOP2_UA * 1e-6
        self._levels = np.array([self.sleep_a, self.sleep_a, self.run_a, self.stop2_a])
        durations = np.array([p.duration_s for p in self.phases])
        self._starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
        self.period = float(durations.sum())
        marks: list[float] = []
        for p, s in zip(self.phases, self._starts):
            if p.marker_every_s:
                marks.extend(s + np.arange(0.0, p.duration_s - 1e-12, p.marker_every_s))
        self._marks = np.asarray(marks, dtype=np.float64)
        self._mode_code = np.array([("idle", "streaming", "training", "stop2").index(p.mode) for p in self.phases])

    def mode_at(self, t: float) -> str:
        """Name of the phase running at simulated time ``t``."""
        ph = (t - self.start) % self.period
        return self.phases[int(np.searchsorted(self._starts, ph, side="right") - 1)].mode

    def current(self, t: np.ndarray) -> np.ndarray:
        tt = np.asarray(t, dtype=np.float64) - self.start
        ph = np.mod(tt, self.period)
        code = self._mode_code[np.searchsorted(self._starts, ph, side="right") - 1]
        out = self._levels[code]  # idle, streaming (sleep level, bursts added below), training, stop2
        streaming = code == 1
        if streaming.any():
            burst = streaming & (np.mod(tt, 1.0 / self.odr_hz) < self.burst_s)
            out[burst] = self.run_a
        out[tt < 0] = self.sleep_a
        return out

    def d7_edges(self, t0: float, t1: float) -> np.ndarray:
        if t1 <= t0 or len(self._marks) == 0:
            return _EMPTY
        a, b = t0 - self.start, t1 - self.start
        k0, k1 = int(np.floor(a / self.period)), int(np.floor(b / self.period))
        k0 = max(k0, 0)
        if k1 < k0:
            return _EMPTY
        allk = (np.arange(k0, k1 + 1)[:, None] * self.period + self._marks[None, :]).ravel()
        return allk[(allk > a) & (allk <= b)] + self.start
