"""Test support for training rounds: an app context on the virtual bench (fast simulated clock, LPM01A at
1 kHz) and a dataset labelled from the real sample recording shipped in ``assets/sample``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from app.core.context import AppContext
from app.core.devices import DeviceState
from app.core.recording import write_accel

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "sample" / "wisdm2019_1600_sample.csv"


def sample_blocks(seconds_each: float = 30.0, activities=("walking", "jogging", "sitting")) -> tuple[np.ndarray, list]:
    """``(xyz, [(start_s, end_s, label)])`` at 20 Hz: the first ``seconds_each`` s of each activity of the
    real WISDM-2019 sample, concatenated."""
    raw = np.genfromtxt(SAMPLE, delimiter=",", skip_header=1, usecols=(1, 2, 3), dtype=np.float32)
    acts = np.genfromtxt(SAMPLE, delimiter=",", skip_header=1, usecols=(4,), dtype=str)
    parts, labels, t = [], [], 0.0
    n = int(seconds_each * 20)
    for a in activities:
        idx = np.flatnonzero(acts == a)[:n]
        parts.append(raw[idx])
        labels.append((t, t + len(idx) / 20.0, a))
        t += len(idx) / 20.0
    return np.concatenate(parts), labels


def labelled_dataset(ctx: AppContext, seconds_each: float = 30.0, label_case=str.capitalize) -> int:
    """Add a labelled accel recording to the context's dataset; returns the recording id."""
    xyz, labels = sample_blocks(seconds_each)
    rec = write_accel(ctx.store, "sample", xyz, 20.0, ctx.dataset.id)
    for a, b, lab in labels:
        ctx.store.add_label(rec.id, a, b, label_case(lab))
    return rec.id


def bench_context(tmp_path: Path, time_scale: float = 40.0, power_rate: int = 1000, **ctx_kw) -> AppContext:
    """An AppContext with the virtual bench, both devices connected, LPM01A configured for ``power_rate``
    (``ctx_kw`` go to :meth:`AppContext.create`, e.g. ``power_recent_s``)."""
    ctx = AppContext.create(tmp_path / "data", bench=True, bench_kwargs={"time_scale": time_scale}, **ctx_kw)
    dm = ctx.devices
    for st in dm.snapshot():
        if st.info.kind == "powershield":
            dm.configure_power(st.info.key, power_rate, 3.3)
        dm.connect(st.info.key)
    wait_for(
        lambda: all(s.state == DeviceState.READY for s in dm.snapshot()) and len(dm.snapshot()) == 2,
        20.0,
        lambda: f"devices not ready: {[(s.info.name, s.state.value, s.message) for s in dm.snapshot()]}",
    )
    return ctx


def wait_for(cond, timeout: float, what=lambda: "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s: {what()}")
