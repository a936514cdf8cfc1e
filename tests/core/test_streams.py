"""Stream buffers: the min/max pyramid, gaps, views and statistics agree with brute force on the raw data."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.streams import Ring, SampleStream, StreamError


def _feed(stream: SampleStream, rng: np.random.Generator, ops: list[tuple[str, int]]) -> np.ndarray:
    """Apply appends/gaps; return the full raw timeline (NaN in gaps) for brute-force checks."""
    parts = []
    for op, n in ops:
        if op == "gap":
            stream.append_gap(n)
            parts.append(np.full((n, stream.channels), np.nan, np.float32))
        else:
            x = rng.normal(1.0, 0.3, (n, stream.channels)).astype(np.float32)
            stream.append(x)
            parts.append(x)
    return np.concatenate(parts)


def test_ring_wraps_and_clamps():
    r = Ring(5, (), np.int64, 0)
    r.append(np.arange(3))
    r.append(np.arange(3, 9))
    assert r.start == 4 and r.end == 9
    assert r.get(0, 100).tolist() == [4, 5, 6, 7, 8]
    r.append_fill(12)
    assert r.end == 21 and r.get(16, 21).tolist() == [0] * 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pyramid_levels_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    s = SampleStream("p", 1000.0, 2, recent_s=0.5, history_s=100.0, base=10, factor=4, levels=3)
    ops = [
        ("data", int(rng.integers(1, 700))) if rng.random() < 0.8 else ("gap", int(rng.integers(1, 3000)))
        for _ in range(60)
    ]
    raw = _feed(s, rng, ops)
    assert s.n_total == len(raw)
    for lvl in s._levels:  # noqa: SLF001 - white-box check of every bucket
        k = lvl.end
        g = raw[: k * lvl.size].reshape(k, lvl.size, 2)
        j0, b = lvl.get(0, k)
        g = g[j0:]
        np.testing.assert_array_equal(np.isnan(b.mn[:, 0]), np.all(np.isnan(g[:, :, 0]), axis=1))
        ok = ~np.isnan(b.mn[:, 0])
        gg = g[ok]
        np.testing.assert_array_equal(b.mn[ok], np.nanmin(gg, axis=1))
        np.testing.assert_array_equal(b.mx[ok], np.nanmax(gg, axis=1))
        np.testing.assert_allclose(b.s[ok], np.nansum(gg.astype(np.float64), axis=1), rtol=1e-9)
        np.testing.assert_array_equal(b.n, (~np.isnan(g[:, :, 0])).sum(axis=1))


def test_gap_is_recorded_and_merged():
    s = SampleStream("p", 100.0, 1, recent_s=10, history_s=100, base=10)
    s.append(np.ones(50))
    s.append_gap(30)
    s.append_gap(20)
    s.append(np.ones(10))
    assert s.gaps == [(0.5, 1.0)]
    s.extend_to(2.0)
    assert s.gaps[-1] == (pytest.approx(1.1), pytest.approx(2.0)) and s.n_total == 200


def test_huge_gap_is_cheap():
    s = SampleStream("p", 100_000.0, 1, recent_s=1.0, history_s=3600.0)
    s.append(np.ones(12345))
    s.append_gap(100_000 * 3000)  # 50 minutes unplugged
    s.append(np.full(5000, 2.0))
    assert s.duration == pytest.approx((12345 + 5000) / 1e5 + 3000)
    v = s.view(0, s.duration, 800)
    assert v.decimated and np.nanmax(v.y) == 2.0 and np.nanmin(v.y) == 1.0


def test_view_is_bounded_and_keeps_peaks():
    s = SampleStream("p", 100_000.0, 1, recent_s=2.0, history_s=600.0)
    x = np.zeros(100_000 * 20, np.float32)
    x[1_234_567] = 5.0  # a single-sample spike must survive any decimation
    for k in range(0, len(x), 1000):
        s.append(x[k : k + 1000])
    for t0, t1 in [(0, 20), (10, 15), (12.3, 12.4), (19, 20), (19.9, 19.901)]:
        v = s.view(t0, t1, 1000)
        assert len(v.x) <= 2 * 1000 + 4
        if t0 <= 12.34567 < t1:
            assert np.nanmax(v.y) == 5.0, (t0, t1)
    raw = s.view(19.9, 19.901, 1000)
    assert not raw.decimated


def test_stats_exact_and_from_buckets():
    rng = np.random.default_rng(3)
    s = SampleStream("p", 1000.0, 1, recent_s=5, history_s=100, base=10)
    x = rng.normal(2e-3, 1e-4, 30_000).astype(np.float32)
    s.append(x)
    st = s.stats(27.0, 29.5)  # in the recent ring: exact
    ref = x[27_000:29_500].astype(np.float64)
    assert st.exact and st.n == len(ref)
    assert st.avg == pytest.approx(ref.mean(), rel=1e-9)
    assert st.std == pytest.approx(ref.std(), rel=1e-6)
    assert st.integral == pytest.approx(np.sum(ref) / 1000.0, rel=1e-9)
    old = s.stats(3.0, 9.0)  # left the ring: bucket-aligned
    ref = x[3000:9000].astype(np.float64)
    assert not old.exact and old.avg == pytest.approx(ref.mean(), rel=1e-6)
    assert old.min == pytest.approx(ref.min()) and old.max == pytest.approx(ref.max())
    odd = s.stats(0.0123, 24.4567)  # not bucket-aligned, spans several pyramid levels
    ref = x[12:24457].astype(np.float64)
    assert odd.avg == pytest.approx(ref.mean(), rel=1e-3) and abs(odd.n - len(ref)) <= 10


def test_stats_of_a_range_without_samples():
    """Beyond the data, or only a gap: n = 0, every figure NaN, the range, exactness and rate kept."""
    s = SampleStream("p", 1000.0, 1, recent_s=5, history_s=100, base=10)
    s.append(np.ones(2000, np.float32))
    s.append_gap(1000)  # 2..3 s: left the recent ring, answered from the buckets
    s.append(np.ones(25_000, np.float32))
    s.append_gap(2000)  # 28..30 s: in the recent ring
    cases = {(40.0, 45.0): True, (29.5, 29.5): True, (5.0, 5.0): True, (28.5, 29.5): True, (2.0, 3.0): False}
    for (t0, t1), exact in cases.items():
        st = s.stats(t0, t1)
        assert st.n == 0 and st.exact is exact and st.rate_hz == 1000.0, (t0, t1)
        assert all(np.isnan(v) for v in (st.avg, st.std, st.min, st.max)), (t0, t1)
        assert (st.t0, st.t1) == pytest.approx((t0, t1)) and st.missing_s == pytest.approx(t1 - t0)


def test_stats_figures_match_brute_force_in_the_ring_and_from_the_pyramid():
    """Every figure of a marker readout — range, n, mean, std, min, max, exactness — on channel 1 of a
    two-channel stream with a gap: exact in the full-resolution ring (ends given in either order), and from the
    pyramid once the range has left it, where its ends (the range shown too) are rounded to whole level-1 buckets
    (10 samples)."""
    rng = np.random.default_rng(7)
    s = SampleStream("p", 1000.0, 2, recent_s=5, history_s=100, base=10, factor=4, levels=3)
    raw = _feed(s, rng, [("data", 12_345), ("gap", 1_234), ("data", 16_421)])  # 30 s; the gap in 12.345..13.579

    def check(st, i0, i1, exact):
        y = raw[i0:i1, 1].astype(np.float64)
        y = y[~np.isnan(y)]
        assert st.exact is exact and st.rate_hz == 1000.0
        assert (st.t0, st.t1) == pytest.approx((i0 / 1000.0, i1 / 1000.0), abs=1e-12)
        assert st.n == len(y) and st.avg == pytest.approx(y.mean(), rel=1e-9)
        assert st.std == pytest.approx(y.std(), rel=1e-6) and (st.min, st.max) == (y.min(), y.max())

    check(s.stats(29.1234, 26.5, channel=1), 26_500, 29_124, True)  # in the ring (the last 5 s)
    # samples 3001..20006 asked for: the figures and the range shown are those of 3000..20009 (rounded to
    # buckets), so that the time without data is counted against the span the samples come from
    check(s.stats(3.0014, 20.0066, channel=1), 3000, 20_010, False)
    check(s.stats(0.0, 12.9, channel=1), 0, 12_900, False)  # from the first sample, into the gap
    # one sample, in the ring: its value, no spread
    one = s.stats(29.9995, 30.0, channel=1)
    assert one.exact and one.n == 1 and one.avg == one.min == one.max == raw[-1, 1] and one.std == 0.0


def test_stats_from_a_bucket_holding_one_sample():
    """A reconnect gap right after a bucket's first sample: that bucket holds one sample, which still counts
    once the range has left the ring."""
    s = SampleStream("p", 1000.0, 1, recent_s=1, history_s=100, base=10)
    s.append(np.array([5.0], np.float32))
    s.append_gap(9)
    s.append(np.full(3000, 1.0, np.float32))
    st = s.stats(0.0, 0.01)
    assert not st.exact and st.n == 1 and (st.avg, st.std, st.min, st.max) == (5.0, 0.0, 5.0, 5.0)
    both = s.stats(0.0, 0.02)
    assert both.n == 11 and both.max == 5.0 and both.min == 1.0 and both.avg == pytest.approx(15.0 / 11)


def test_range_query_touches_few_buckets():
    s = SampleStream("p", 100_000.0, 1, recent_s=1.0, history_s=4000.0)
    s.append(np.ones(100_000 * 100, np.float32))  # 100 s
    st = s.stats(1.2345, 99.0)
    assert not st.exact and st.avg == pytest.approx(1.0) and st.n == pytest.approx(97.7655e5, rel=1e-4)


def test_bad_input_names_the_problem():
    with pytest.raises(StreamError, match="rate_hz"):
        SampleStream("x", 0.0)
    s = SampleStream("acc", 52.0, 3)
    with pytest.raises(StreamError, match=r"expected \(n, 3\)"):
        s.append(np.zeros((4, 2)))


def test_sinks_receive_data_and_gaps():
    s = SampleStream("p", 10.0, 1)
    got = []
    s.add_sink(lambda i, b: got.append((i, len(b), bool(np.isnan(b).all()))))
    s.append(np.ones(3))
    s.append_gap(2)
    assert got == [(0, 3, False), (3, 2, True)]


def test_samples_up_to_duration_survive_float_round_trip():
    """255866 / 100 kHz * 100 kHz is 255866.00000000003: the whole stream must still be returned."""
    import numpy as np

    from app.core.streams import SampleStream

    s = SampleStream("current", 100_000.0, 1, recent_s=10.0)
    s.append(np.ones(255_866, np.float32))
    got = s.samples(0.0, s.duration)
    assert got is not None and len(got[1]) == 255_866
    t, y = s.samples(1.0 / 100_000.0 * 3, s.duration)
    assert len(y) == 255_866 - 3


def test_moments_merged_over_chunks_match_one_two_pass_computation():
    """The statistics of a range read from a file in chunks (ReplayStream) and of the ring use the same
    accumulator; merged chunks give the two-pass figures of the whole, even where a sum of squares cannot
    (a nearly constant current: spread 1e-5 of the mean), and NaN (no data) is skipped."""
    from app.core.streams import Moments

    rng = np.random.default_rng(3)
    y = (1.0 + 1e-5 * rng.standard_normal(100_000)).astype(np.float32).astype(np.float64)
    y[5_000:6_000] = np.nan
    ref = y[~np.isnan(y)]
    m = Moments()
    for a in range(0, len(y), 7_777):
        m.add(y[a : a + 7_777])
    st = m.stats(0.0, 100.0, True, 1000.0)
    assert st.n == len(ref) and st.avg == pytest.approx(ref.mean(), rel=1e-14)
    assert st.std == pytest.approx(ref.std(), rel=1e-9) and (st.min, st.max) == (ref.min(), ref.max())
    one_pass = np.sqrt(max(0.0, (ref * ref).mean() - ref.mean() ** 2))
    assert abs(one_pass / ref.std() - 1) > 1e-9  # what the old sum of squares got: the test can tell
    empty = Moments().stats(0.0, 1.0, False, 1000.0)
    assert empty.n == 0 and np.isnan(empty.avg)
