"""Recordings beside the database: accel raw files, power HDF5, reopen with exact statistics, recovery."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.recording import (RecordingError, StreamRecorder, csv_export, load_accel, open_power, recover,
                                write_accel)
from app.core.store import Store
from app.core.streams import SampleStream


def test_accel_fixed_length_segment(tmp_path):
    store = Store(tmp_path)
    s = SampleStream("accel", 52.0, 3, recent_s=600, history_s=600, base=16, factor=8)
    s.append(np.zeros((100, 3)))  # before the recording: not recorded
    done = []
    rec = StreamRecorder(store, s, "accel", "walk", limit_s=2.0, on_finished=done.append)
    x = np.arange(300 * 3, dtype=np.float32).reshape(300, 3)
    for k in range(0, 300, 26):
        s.append(x[k:k + 26])
    assert rec.wait(5.0)
    row = rec.stop()
    assert row.status == "complete" and row.n_samples == 104 and row.t_offset == pytest.approx(100 / 52)
    np.testing.assert_array_equal(load_accel(store, row), x[:104])
    assert done and done[0].id == row.id
    store.close()


def test_power_record_reopen_exact_stats(tmp_path):
    store = Store(tmp_path)
    s = SampleStream("current", 10_000.0, 1, recent_s=1.0, history_s=100)
    rec = StreamRecorder(store, s, "power", "run", voltage=3.3)
    rng = np.random.default_rng(0)
    x = rng.normal(1e-3, 1e-4, 50_000).astype(np.float32)
    for k in range(0, len(x), 1000):
        s.append(x[k:k + 1000])
    s.append_gap(5000)
    s.append(x[:1000])
    row = rec.stop()
    assert row.n_samples == 56_000 and rec.dropped == 0
    replay = open_power(store, row, recent_s=0.5)
    assert replay.duration == pytest.approx(5.6) and replay.gaps == [(5.0, 5.5)]
    st = replay.stats(0.25, 3.75)  # long outside the 0.5 s ring: read from the file, exact
    ref = x[2500:37500].astype(np.float64)
    assert st.exact and st.n == len(ref) and st.avg == pytest.approx(ref.mean(), rel=1e-9)
    assert st.integral * replay.voltage == pytest.approx(ref.sum() / 1e4 * 3.3, rel=1e-9)
    t, y = replay.samples(1.0, 1.001)
    np.testing.assert_array_equal(y[:, 0], x[10_000:10_010])
    store.close()


def test_recover_after_crash(tmp_path):
    store = Store(tmp_path)
    s = SampleStream("accel", 20.0, 3)
    rec = StreamRecorder(store, s, "accel", "crashy")
    s.append(np.ones((40, 3)))
    for _ in range(50):
        if rec.n_written == 40:
            break
        import time

        time.sleep(0.05)
    # simulate a crash: the writer thread dies with the process; the row still says 'recording'
    rec._stopping = True  # noqa: SLF001
    store.close()
    store2 = Store(tmp_path)
    fixed = recover(store2)
    assert [(r.id, r.n_samples, r.status) for r in fixed] == [(rec.rec.id, 40, "recovered")]
    store2.close()


def test_write_accel_and_csv_cap(tmp_path):
    store = Store(tmp_path)
    row = write_accel(store, "imp", np.ones((10, 3)), 20.0, None)
    assert load_accel(store, row).shape == (10, 3)
    with pytest.raises(RecordingError, match="exceed the CSV cap"):
        csv_export(tmp_path / "x.csv", np.arange(11.0), np.arange(11.0), "t,y", max_rows=10)
    assert csv_export(tmp_path / "x.csv", np.arange(3.0), np.arange(3.0), "t,y") == 3
    assert (tmp_path / "x.csv").read_text().splitlines()[0] == "t,y"
    store.close()
