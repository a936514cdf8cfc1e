"""Energy and charge integrate only the samples that exist (issue 12 item 11): a 2-s no-data gap in a 10-s window
was counted as 2 s at the average current (the panel showed average x 10 s).  The statistics say how much time
is missing; the Power panel shows it beside Δt and between markers (tests/gui/test_gui_power.py)."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.streams import SampleStream

RATE = 1000.0
I_A = 1e-3  # 1 mA while there are samples


def gap_stream(recent_s: float = 60.0) -> SampleStream:
    """10 s of 1 mA with a 2-s gap (a reconnect) from 4 to 6 s."""
    s = SampleStream("current", RATE, 1, unit="A", recent_s=recent_s, history_s=600)
    s.append(np.full(int(4 * RATE), I_A, np.float32))
    s.append_gap(int(2 * RATE))
    s.append(np.full(int(4 * RATE), I_A, np.float32))
    return s


def test_integral_counts_only_the_samples_that_exist():
    st = gap_stream().stats(0.0, 10.0)
    assert st.exact and st.n == 8000 and st.dt == pytest.approx(10.0)
    assert st.integral == pytest.approx(I_A * 8.0, rel=1e-6)  # 8 mC, not 10 (float32 samples)
    assert st.covered_s == pytest.approx(8.0) and st.missing_s == pytest.approx(2.0)
    full = gap_stream().stats(0.0, 4.0)
    assert full.missing_s == 0.0 and full.integral == pytest.approx(I_A * 4.0, rel=1e-6)


def test_integral_from_the_pyramid_counts_only_samples_too():
    s = gap_stream(recent_s=1.0)  # the 10 s left the full-resolution ring: pyramid buckets
    st = s.stats(0.0, 10.0)
    assert not st.exact
    assert st.integral == pytest.approx(I_A * 8.0, rel=0.01)
    assert st.missing_s == pytest.approx(2.0, abs=0.02)


def test_reopened_recording_integrates_only_samples_when_read_from_the_file(tmp_path):
    """A reopened recording reads ranges older than its ring from the HDF5 file: same rule there."""
    from app.core.recording import StreamRecorder, open_power
    from app.core.store import Store

    store = Store(tmp_path)
    try:
        live = SampleStream("current", RATE, 1, unit="A", recent_s=60.0)
        rec = StreamRecorder(store, live, "power", "gap", voltage=3.3, events=[])
        src = gap_stream()
        _, y = src.samples(0.0, 10.0)
        for k in range(0, len(y), 500):  # as the shield's blocks arrive, the gap's NaN included
            live.append(y[k : k + 500])
        row = rec.stop()
        replay = open_power(store, row, recent_s=1.0)  # the 10 s are older than the 1-s ring: file reads
        st = replay.stats(0.0, 10.0)
        assert st.exact and st.n == 8000
        assert st.integral == pytest.approx(I_A * 8.0, rel=1e-6) and st.missing_s == pytest.approx(2.0)
    finally:
        store.close()


def test_without_a_rate_the_integral_is_as_before():
    from app.core.streams import Stats

    legacy = Stats(0.0, 10.0, 8000, I_A, 0.0, I_A, I_A, True)  # rate unknown: avg x dt, nothing missing
    assert legacy.integral == pytest.approx(I_A * 10.0) and legacy.missing_s == 0.0


def test_the_pyramid_reports_missing_time_against_the_span_of_its_buckets():
    """From the pyramid the edges of a range are rounded to whole buckets (here 100 samples): the samples
    counted are those of the buckets, so the time they are compared with is the buckets' span too — compared
    with the range asked for, a range without a gap showed up to a bucket "lost" (or hid as much of a gap)."""
    s = SampleStream("current", RATE, 1, unit="A", recent_s=1.0, history_s=600, base=100)
    s.append(np.full(int(4 * RATE), I_A, np.float32))
    s.append_gap(int(2 * RATE))
    s.append(np.full(int(4 * RATE), I_A, np.float32))
    for a, b in ((0.0371, 3.9412), (0.0629, 3.8875), (6.0151, 9.9049), (0.0371, 9.9412), (1.0629, 8.9551)):
        st = s.stats(a, b)
        assert not st.exact
        assert abs(st.t0 - a) <= 0.05 and abs(st.t1 - b) <= 0.05  # the span: the range, rounded to buckets
        gap = 2.0 if a < 4.0 < 6.0 < b else 0.0
        assert st.missing_s == pytest.approx(gap, abs=1e-9), (a, b)
        assert st.lost_s == pytest.approx(gap, abs=1e-9)
        assert st.integral == pytest.approx(I_A * (st.dt - gap), rel=1e-6)
