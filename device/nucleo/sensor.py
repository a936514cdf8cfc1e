"""Emulated LSM6DSO accelerometer of the X-NUCLEO-IKS01A3, playing back a recorded real trace.

* **Trace**: a real tri-axial accelerometer recording in g with per-sample activity labels
  (:class:`Trace`).  Loaders: WISDM-2019 phone files (``data_<id>_accel_phone.txt``, m/s² → g), UCI HAPT
  npz (``hapt_raw_50hz.npz``, already in g, one user), or a generic npz with ``acc_g`` (n, 3),
  ``rate_hz`` and ``labels`` (n,) strings or ``label`` ints + ``label_names``.
* **Activity switching** ("the person doing the activity"): :meth:`LSM6DSO.set_activity` makes the
  playback continue inside that activity's recording (looping over it), so labels set in the app are
  real labels.
* **Sensor model**: output data rate from the LSM6DSO ladder (12.5 … 6667 Hz), full scale ±2/4/8/16 g,
  trace linearly interpolated at the sample times, plus white noise of density 80 µg/√Hz (datasheet
  order of magnitude, HP mode [I]) and int16 quantisation at the FS sensitivity (61/122/244/488 µg per
  LSB), saturating at the int16 range as the part does.  Output is int16 counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .protocol import LSM6DSO_FS_G, LSM6DSO_ODR_HZ, LSM6DSO_SENS_NG, ProtocolError, check_fs_g

G = 9.80665
NOISE_DENSITY_G = 80e-6  # g/sqrt(Hz)
WISDM_ACTIVITIES = {"A": "walking", "B": "jogging", "C": "stairs", "D": "sitting", "E": "standing"}
HAPT_ACTIVITIES = {1: "walking", 2: "upstairs", 3: "downstairs", 4: "sitting", 5: "standing", 6: "laying"}


class TraceError(ValueError):
    """A trace file that cannot be used; the message names the file and the problem."""


@dataclass
class Trace:
    """A recording: per activity, one contiguous array of samples in g at ``rate_hz``."""

    rate_hz: float
    segments: dict[str, np.ndarray]  # activity -> (n, 3) float32 g
    source: str = ""

    def __post_init__(self) -> None:
        if not self.segments:
            raise TraceError(f"{self.source or 'trace'}: no activity segments")
        for name, seg in self.segments.items():
            if seg.ndim != 2 or seg.shape[1] != 3 or len(seg) < 2:
                raise TraceError(f"{self.source}: activity {name!r} has shape {seg.shape}, need (n >= 2, 3)")
        if not 0 < self.rate_hz < math.inf:
            raise TraceError(f"{self.source}: rate_hz must be a finite number > 0, got {self.rate_hz}")

    @property
    def activities(self) -> tuple[str, ...]:
        return tuple(self.segments)

    @classmethod
    def from_arrays(
        cls, acc_g: np.ndarray, labels: np.ndarray | Sequence[str], rate_hz: float, source: str = ""
    ) -> "Trace":
        """Group contiguous labelled runs by activity (runs of one activity are concatenated)."""
        try:
            acc = np.asarray(acc_g, np.float32)
        except (ValueError, TypeError) as exc:
            raise TraceError(f"{source}: non-numeric acceleration ({exc})") from None
        labels = np.asarray(labels).ravel()
        if acc.ndim != 2 or acc.shape[1] != 3 or len(labels) != len(acc):
            raise TraceError(
                f"{source}: acc shape {acc.shape} and {len(labels)} labels do not match (need (n, 3) and n)"
            )
        if not np.isfinite(acc).all():
            raise TraceError(f"{source}: acceleration values must be finite (NaN or infinity found)")
        segs: dict[str, list[np.ndarray]] = {}
        change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(labels)]])
        for s, e in zip(starts, ends):
            name = str(labels[s])
            if not name or name in ("-1", "None", "unlabelled"):
                continue
            segs.setdefault(name, []).append(acc[s:e])
        return cls(float(rate_hz), {k: np.concatenate(v) for k, v in segs.items() if sum(map(len, v)) >= 2}, source)


def load_wisdm2019(path: str | Path, activities: dict[str, str] = WISDM_ACTIVITIES) -> Trace:
    """A WISDM-2019 phone accelerometer file (``subject,code,timestamp,x,y,z;`` in m/s², 20 Hz)."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"cannot read {p}: {exc}") from exc
    codes, rows = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip().rstrip(";")
        if not line:
            continue
        parts = line.split(",")
        if len(parts) != 6:
            raise TraceError(f"{p}:{lineno}: expected 6 comma-separated fields, got {len(parts)}")
        if parts[1] not in activities:
            continue
        codes.append(parts[1])
        rows.append(parts[3:6])
    if not rows:
        raise TraceError(f"{p}: no rows with activity codes {sorted(activities)}")
    try:
        acc = np.asarray(rows, dtype=np.float64) / G
    except ValueError as exc:
        raise TraceError(f"{p}: non-numeric x/y/z value ({exc})") from exc
    # 20 Hz nominal (one subject, 1607, runs at 25 Hz: pass a HAPT/npz trace for exact rates)
    return Trace.from_arrays(acc.astype(np.float32), [activities[c] for c in codes], 20.0, str(p))


def load_hapt(path: str | Path, user: int = 1) -> Trace:
    """One user of the UCI HAPT npz (``acc`` in g at 50 Hz, ``label`` 1..6)."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            sel = z["user"] == user
            acc, lab = z["acc"][sel], z["label"][sel]
        names = np.array([HAPT_ACTIVITIES.get(int(v), "") for v in lab])
    except (OSError, KeyError, ValueError, IndexError, TypeError, OverflowError) as exc:
        raise TraceError(f"cannot read HAPT npz {p}: {exc}") from exc
    if not sel.any():
        raise TraceError(f"{p}: no samples for user {user}")
    return Trace.from_arrays(acc, names, 50.0, f"{p} user {user}")


def load_npz(path: str | Path) -> Trace:
    """Generic trace npz: ``acc_g`` (n, 3), ``rate_hz`` scalar, ``labels`` (n,) strings — or ``label``
    (n,) ints with ``label_names``."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            acc = z["acc_g"]
            rate = float(z["rate_hz"])
            if "labels" in z:
                labels = z["labels"].astype(str)
            else:
                names = z["label_names"].astype(str)
                idx = z["label"].astype(int)
                bad = idx[(idx < 0) | (idx >= len(names))]  # (a negative one would silently count from the end)
                if bad.size:
                    raise IndexError(f"label {bad.flat[0]} is not an index into the {len(names)} label_names")
                labels = names[idx]
    except (OSError, KeyError, ValueError, IndexError, TypeError) as exc:
        raise TraceError(
            f"cannot read trace npz {p}: {exc} (need acc_g, rate_hz and labels or label + label_names)"
        ) from exc
    return Trace.from_arrays(acc, labels, rate, str(p))


def load_csv(path: str | Path) -> Trace:
    """The assets sample format: CSV ``t_s,x,y,z,activity`` with a JSON sidecar (same stem) giving
    ``rate_hz`` and ``units`` ('m/s^2…' or 'g…')."""
    import csv
    import json

    p = Path(path)
    meta_path = p.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
        rate = float(meta["rate_hz"])
        units = str(meta.get("units", "m/s^2"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TraceError(f"{meta_path}: cannot read rate_hz/units of trace {p.name} ({exc})") from exc
    rows, labels = [], []
    try:
        with p.open(newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            if [h.strip() for h in header[:5]] != ["t_s", "x", "y", "z", "activity"]:
                raise TraceError(f"{p}:1: header {header} is not t_s,x,y,z,activity")
            for lineno, row in enumerate(reader, 2):
                if len(row) < 5:
                    raise TraceError(f"{p}:{lineno}: expected 5 fields, got {len(row)}")
                rows.append(row[1:4])
                labels.append(row[4].strip())
        acc = np.asarray(rows, dtype=np.float64)
    except TraceError:
        raise
    except OSError as exc:
        raise TraceError(f"cannot read {p}: {exc}") from exc
    except ValueError as exc:
        raise TraceError(f"{p}: non-numeric x/y/z value ({exc})") from exc
    if units.lower().startswith("m/s"):
        acc = acc / G
    return Trace.from_arrays(acc.astype(np.float32), labels, rate, str(p))


def load_trace(path: str | Path) -> Trace:
    """Dispatch on the file name: ``*.csv`` (assets sample), WISDM-2019 ``*.txt``, HAPT ``hapt*.npz``,
    otherwise generic npz."""
    p = Path(path)
    if p.suffix == ".csv":
        return load_csv(p)
    if p.suffix == ".txt":
        return load_wisdm2019(p)
    if p.name.startswith("hapt"):
        return load_hapt(p)
    return load_npz(p)


def default_trace_path() -> Path | None:
    """A real trace to play when none is given: the assets sample (WISDM-2019 subject 1600, 90 s per
    activity) if present, else that subject's full file in ../shared/data (ODL_SHARED overrides)."""
    import os

    root = Path(__file__).resolve().parents[2]
    cand = [root / "assets" / "sample" / "wisdm2019_1600_sample.csv"]
    shared = Path(os.environ.get("ODL_SHARED", root.parent / "shared"))
    cand.append(shared / "data" / "wisdm2019_phone_accel" / "raw" / "phone" / "accel" / "data_1600_accel_phone.txt")
    for c in cand:
        if c.is_file():
            return c
    return None


def sensitivity_g(fs_g: int) -> float:
    return LSM6DSO_SENS_NG[check_fs_g(fs_g)] * 1e-9


def quantise(acc_g: np.ndarray, fs_g: int) -> np.ndarray:
    """Acceleration in g -> int16 counts at full scale ``fs_g`` (round to nearest, saturate)."""
    counts = np.rint(np.asarray(acc_g, np.float64) / sensitivity_g(fs_g))
    return np.clip(counts, -32768, 32767).astype(np.int16)


class LSM6DSO:
    """Accelerometer playback: ``samples(t)`` returns int16 counts at simulated times ``t``."""

    def __init__(self, trace: Trace | None, seed: int = 0, odr_hz: float = 26.0, fs_g: int = 2):
        self.trace = trace
        self._rng = np.random.default_rng(seed)
        self.odr_hz = float(odr_hz)
        self.fs_g = int(fs_g)
        self.activity = trace.activities[0] if trace is not None else ""
        self._phase_s = 0.0  # playback position (s inside the activity recording) at _t_switch
        self._t_switch = 0.0

    def configure(self, odr_hz: float, fs_g: int) -> None:
        if odr_hz not in LSM6DSO_ODR_HZ:
            raise ProtocolError(f"ODR {odr_hz} Hz is not an LSM6DSO rate")
        self.fs_g = check_fs_g(fs_g)
        self.odr_hz = float(odr_hz)

    def set_activity(self, activity: str, t_now: float) -> None:
        """Switch what the person does from simulated time ``t_now`` on."""
        if self.trace is None:
            raise ProtocolError("no sensor trace loaded")
        if activity not in self.trace.segments:
            raise ProtocolError(
                f"activity {activity!r} is not in the trace (available: {', '.join(self.trace.activities)})"
            )
        if activity != self.activity:
            # start at a pseudo-random point of the new recording, as a person would not restart it
            seg = self.trace.segments[activity]
            self._phase_s = float(self._rng.uniform(0, len(seg) / self.trace.rate_hz))
            self._t_switch = float(t_now)
            self.activity = activity

    def acceleration_g(self, t: np.ndarray) -> np.ndarray:
        """Noise-free acceleration (g) of the current activity at simulated times ``t`` (n,) -> (n, 3)."""
        if self.trace is None:
            raise ProtocolError("no sensor trace loaded")
        seg = self.trace.segments[self.activity]
        n = len(seg)
        pos = (self._phase_s + (np.asarray(t, np.float64) - self._t_switch)) * self.trace.rate_hz
        pos = np.mod(pos, n)
        i0 = np.floor(pos).astype(np.int64)
        frac = (pos - i0)[:, None]
        i1 = (i0 + 1) % n
        return seg[i0] * (1.0 - frac) + seg[i1] * frac

    def samples(self, t: np.ndarray) -> np.ndarray:
        """int16 counts (n, 3) at simulated sample times ``t``, with sensor noise."""
        a = self.acceleration_g(t)
        sigma = NOISE_DENSITY_G * math.sqrt(self.odr_hz / 2.0)
        a = a + self._rng.normal(0.0, sigma, a.shape)
        return quantise(a, self.fs_g)


__all__ = [
    "LSM6DSO",
    "Trace",
    "TraceError",
    "load_trace",
    "load_wisdm2019",
    "load_hapt",
    "load_npz",
    "load_csv",
    "default_trace_path",
    "quantise",
    "sensitivity_g",
    "LSM6DSO_ODR_HZ",
    "LSM6DSO_FS_G",
]
