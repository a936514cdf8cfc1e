"""Exact behaviour of the current sources the virtual bench's emulated LPM01A measures (device/power_profiles.py):
ConstantCurrent, PiecewiseCurrent (change points, periodic patterns), Phase and the STM32L496 profile (run / sleep /
stop2 current per clock, sensor bursts while streaming, D7 rising edges at batch boundaries), with the refusals'
messages.  Expected currents are written by hand (e.g. 100 uA/MHz x 80 MHz = 8 mA); D7 edges are reported in the
half-open interval (t0, t1].
"""

from __future__ import annotations

import numpy as np
import pytest

from device.power_profiles import ConstantCurrent, L496Profile, Phase, PiecewiseCurrent


def refused(make) -> str:
    with pytest.raises(ValueError) as ei:
        make()
    return str(ei.value)


def approx(values):
    return pytest.approx(values, rel=1e-12, abs=0.0)


# --- ConstantCurrent ----------------------------------------------------------------------------------------------


def test_constant_current_is_the_same_at_every_time_in_the_shape_asked():
    src = ConstantCurrent(0.0025)
    out = src.current(np.array([[0.0, 1.0, 2.0], [-5.0, 1e6, 3.5]]))
    assert out.dtype == np.float64
    assert out.tolist() == [[0.0025, 0.0025, 0.0025], [0.0025, 0.0025, 0.0025]]


def test_constant_current_of_zero_is_allowed_and_stored_as_a_float():
    src = ConstantCurrent(0)
    assert src.amps == 0.0 and type(src.amps) is float
    assert src.current(np.zeros(2)).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(("amps", "shown"), [(-1e-3, "-0.001"), (float("nan"), "nan"), (float("inf"), "inf")])
def test_constant_current_refuses_negative_or_non_finite(amps, shown):
    assert refused(lambda: ConstantCurrent(amps)) == f"ConstantCurrent amps must be a finite value >= 0, got {shown}"


def test_constant_current_edges_are_sorted_and_reported_in_the_half_open_interval():
    src = ConstantCurrent(1e-3, edges=[0.5, 0.125, 0.25, 1.0])
    assert src.d7_edges(0.0, 2.0).tolist() == [0.125, 0.25, 0.5, 1.0]
    assert src.d7_edges(0.125, 0.5).tolist() == [0.25, 0.5]  # t0 excluded, t1 included
    assert src.d7_edges(0.5, 0.75).tolist() == []
    assert src.d7_edges(0.75, 1.0).tolist() == [1.0]


def test_constant_current_without_edges_reports_none():
    assert ConstantCurrent(1e-3).d7_edges(0.0, 100.0).tolist() == []


# --- PiecewiseCurrent ---------------------------------------------------------------------------------------------


def test_piecewise_current_holds_each_level_from_its_change_point_until_the_next():
    src = PiecewiseCurrent([1.0, 2.0, 3.0], [0.010, 0.020, 0.030])
    t = np.array([-1.0, 0.0, 1.0, 1.5, 2.0, 2.75, 3.0, 100.0])
    assert src.current(t).tolist() == [0.010, 0.010, 0.010, 0.010, 0.020, 0.020, 0.030, 0.030]


def test_piecewise_current_from_t_2_s_like_a_scripted_load_step():
    """'70 mA from t = 2 s' on a 5 mA base."""
    src = PiecewiseCurrent([0.0, 2.0], [0.005, 0.070])
    assert src.current(np.array([1.999, 2.0, 9.0])).tolist() == [0.005, 0.070, 0.070]


def test_a_periodic_piecewise_current_repeats_its_pattern_forever_both_ways():
    src = PiecewiseCurrent([0.0, 0.25], [0.001, 0.005], period=1.0)
    t = np.array([0.0, 0.25, 1.125, 1.5, 2.0, -0.5, -0.875])
    assert src.current(t).tolist() == [0.001, 0.005, 0.001, 0.005, 0.001, 0.005, 0.001]


def test_piecewise_period_is_stored_as_a_float():
    src = PiecewiseCurrent([0.0], [0.001], period=2)
    assert src.period == 2.0 and type(src.period) is float
    assert PiecewiseCurrent([0.0], [0.001]).period is None


def test_piecewise_current_accepts_equal_change_points_and_zero_amps():
    src = PiecewiseCurrent([0.0, 1.0, 1.0], [0.0, 0.002, 0.003])
    assert src.current(np.array([0.5, 1.0])).tolist() == [0.0, 0.003]


@pytest.mark.parametrize(
    ("times", "amps"),
    [
        ([[0.0, 1.0]], [[0.001, 0.002]]),  # 2-D
        ([0.0, 1.0], [0.001]),  # not equally long
        ([], []),  # empty
    ],
)
def test_piecewise_current_refuses_bad_shapes(times, amps):
    assert refused(lambda: PiecewiseCurrent(times, amps)) == (
        "PiecewiseCurrent needs equally long, non-empty 1-D times and amps"
    )


def test_piecewise_current_refuses_unsorted_times():
    assert refused(lambda: PiecewiseCurrent([0.0, 2.0, 1.0], [0.001, 0.002, 0.003])) == (
        "PiecewiseCurrent times must be sorted ascending"
    )


@pytest.mark.parametrize("bad", [-0.001, float("nan"), float("inf")])
def test_piecewise_current_refuses_negative_or_non_finite_amps(bad):
    assert refused(lambda: PiecewiseCurrent([0.0, 1.0], [0.001, bad])) == (
        "PiecewiseCurrent amps must be finite and >= 0"
    )


@pytest.mark.parametrize(("period", "shown"), [(0.0, "0.0"), (-1.0, "-1.0"), (float("nan"), "nan")])
def test_piecewise_current_refuses_a_period_that_is_not_positive(period, shown):
    assert refused(lambda: PiecewiseCurrent([0.0], [0.001], period=period)) == (
        f"PiecewiseCurrent period must be > 0, got {shown}"
    )


def test_piecewise_current_reads_float32_times_at_float64_precision():
    """float32(1000.3) = 1000.29998779296875 s is 0.09998779296875 s into a 0.1 s period: past the change point at
    0.09998 s (float32 arithmetic would put it 15 us earlier, before the change)."""
    src = PiecewiseCurrent([0.0, 0.09998], [0.001, 0.005], period=0.1)
    t = np.array([1000.3], dtype=np.float32)
    assert float(t[0]) == 1000.29998779296875
    assert src.current(t).tolist() == [0.005]


def test_stored_times_amps_and_edges_are_float64_arrays():
    """Whole numbers given for times, amps and edges are stored (and returned) as float64."""
    src = PiecewiseCurrent([0, 2], [0, 1], edges=[3, 1])
    assert (src.times.dtype, src.amps.dtype, src.edges.dtype) == (np.float64, np.float64, np.float64)
    assert src.current(np.array([1.0, 2.0])).dtype == np.float64
    assert src.d7_edges(0.0, 4.0).dtype == np.float64
    const = ConstantCurrent(1, edges=[2, 1])
    assert const.edges.dtype == np.float64
    assert const.d7_edges(0.0, 4.0).dtype == np.float64


def test_piecewise_edges_without_period_are_sorted_and_in_the_half_open_interval():
    src = PiecewiseCurrent([0.0], [0.001], edges=[3.0, 1.0, 2.0])
    assert src.d7_edges(0.0, 5.0).tolist() == [1.0, 2.0, 3.0]
    assert src.d7_edges(1.0, 3.0).tolist() == [2.0, 3.0]


def test_periodic_piecewise_edges_repeat_every_period():
    src = PiecewiseCurrent([0.0], [0.001], edges=[0.75, 0.25], period=1.0)
    assert src.d7_edges(0.25, 2.25).tolist() == [0.75, 1.25, 1.75, 2.25]
    assert src.d7_edges(1.5, 1.625).tolist() == []


def test_periodic_piecewise_edges_before_time_zero():
    src = PiecewiseCurrent([0.0], [0.001], edges=[0.25, 0.75], period=1.0)
    assert src.d7_edges(-0.5, 0.5).tolist() == [-0.25, 0.25]
    assert src.d7_edges(-2.0, -1.0).tolist() == [-1.75, -1.25]


def test_periodic_piecewise_edges_with_a_period_of_2_s():
    src = PiecewiseCurrent([0.0], [0.001], edges=[1.5, 0.5], period=2.0)
    assert src.d7_edges(2.5, 6.0).tolist() == [3.5, 4.5, 5.5]
    assert src.d7_edges(-4.0, -1.0).tolist() == [-3.5, -2.5, -1.5]


def test_a_single_periodic_edge_repeats_every_half_second():
    src = PiecewiseCurrent([0.0], [0.001], edges=[0.125], period=0.5)
    assert src.d7_edges(0.0, 2.0).tolist() == [0.125, 0.625, 1.125, 1.625]


def test_periodic_piecewise_edges_of_an_empty_or_reversed_interval_are_none():
    src = PiecewiseCurrent([0.0], [0.001], edges=[0.25], period=1.0)
    assert src.d7_edges(1.25, 1.25).tolist() == []
    assert src.d7_edges(3.0, 1.0).tolist() == []
    assert PiecewiseCurrent([0.0], [0.001], period=1.0).d7_edges(0.0, 10.0).tolist() == []


# --- Phase --------------------------------------------------------------------------------------------------------


def test_phase_refuses_an_unknown_mode():
    assert refused(lambda: Phase("run", 1.0)) == "Phase mode 'run': must be idle, streaming, training or stop2"


@pytest.mark.parametrize(("duration", "shown"), [(0.0, "0.0"), (-1.0, "-1.0"), (float("nan"), "nan")])
def test_phase_refuses_a_duration_that_is_not_positive(duration, shown):
    assert refused(lambda: Phase("idle", duration)) == f"Phase duration_s must be > 0, got {shown}"


@pytest.mark.parametrize(("every", "shown"), [(0.0, "0.0"), (-0.1, "-0.1")])
def test_phase_refuses_a_marker_step_that_is_not_positive(every, shown):
    assert refused(lambda: Phase("training", 1.0, marker_every_s=every)) == (
        f"Phase marker_every_s must be > 0, got {shown}"
    )


def test_phase_accepts_every_mode():
    assert [Phase(m, 0.5).mode for m in ("idle", "streaming", "training", "stop2")] == [
        "idle",
        "streaming",
        "training",
        "stop2",
    ]


# --- L496Profile: settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("clock", "shown"), [(0.0, "0.0"), (-8.0, "-8.0"), (80.5, "80.5"), (120, "120")])
def test_l496_refuses_a_clock_outside_0_to_80_mhz(clock, shown):
    assert refused(lambda: L496Profile(clock_mhz=clock)) == (
        f"clock_mhz must be in (0, 80] for an STM32L496, got {shown}"
    )


def test_l496_refuses_an_empty_timeline():
    assert refused(lambda: L496Profile(phases=())) == "L496Profile needs at least one Phase"


@pytest.mark.parametrize(
    ("odr", "burst", "shown"),
    [
        (0.0, 300e-6, "0.0, 0.0003"),
        (-26.0, 300e-6, "-26.0, 0.0003"),
        (26.0, 0.0, "26.0, 0.0"),
        (26.0, -1e-4, "26.0, -0.0001"),
        (4.0, 0.25, "4.0, 0.25"),  # a burst as long as the sample period
    ],
)
def test_l496_refuses_bursts_that_do_not_fit_a_sample_period(odr, burst, shown):
    assert refused(lambda: L496Profile(odr_hz=odr, burst_s=burst)) == (
        f"need odr_hz > 0 and 0 < burst_s < 1/odr_hz, got {shown}"
    )


def test_l496_settings_at_the_edges_are_accepted():
    p = L496Profile(clock_mhz=80, odr_hz=4, burst_s=0.2499, start=2)
    assert (p.clock_mhz, p.odr_hz, p.burst_s, p.start) == (80.0, 4.0, 0.2499, 2.0)
    assert all(type(v) is float for v in (p.clock_mhz, p.odr_hz, p.burst_s, p.start))


def test_l496_accepts_slow_clocks_and_slow_sensors():
    """0.5 MHz (run 50 uA, sleep 14 uA) and a 0.5 Hz sensor with 1 s bursts are valid settings."""
    p = L496Profile(clock_mhz=0.5, odr_hz=0.5, burst_s=1.0)
    assert (p.run_a, p.sleep_a) == approx((50e-6, 14e-6))
    assert (p.odr_hz, p.burst_s) == (0.5, 1.0)


def test_l496_levels_at_80_mhz():
    """100 uA/MHz run = 8.0 mA, 28 uA/MHz sleep = 2.24 mA, stop2 2.6 uA."""
    p = L496Profile()
    assert (p.run_a, p.sleep_a, p.stop2_a) == approx((8.0e-3, 2.24e-3, 2.6e-6))


def test_l496_levels_scale_with_the_clock():
    p = L496Profile(clock_mhz=16)
    assert (p.run_a, p.sleep_a, p.stop2_a) == approx((1.6e-3, 0.448e-3, 2.6e-6))


def test_default_timeline_is_1s_idle_1_5s_streaming_1_5s_training_repeating_every_4s():
    p = L496Profile()
    assert p.period == 4.0
    assert p.phases == (Phase("idle", 1.0), Phase("streaming", 1.5), Phase("training", 1.5, marker_every_s=0.1))
    times = [0.0, 0.999, 1.0, 2.499, 2.5, 3.999, 4.0, 5.25, -0.5]
    assert [p.mode_at(t) for t in times] == [
        "idle",
        "idle",
        "streaming",
        "streaming",
        "training",
        "training",
        "idle",
        "streaming",
        "training",
    ]


def test_mode_at_counts_from_the_start_time():
    p = L496Profile(start=0.5)
    assert [p.mode_at(t) for t in (0.5, 1.0, 1.5, 3.0, 4.5, 0.25)] == [
        "idle",
        "idle",
        "streaming",
        "training",
        "idle",
        "training",
    ]


# --- L496Profile: current -----------------------------------------------------------------------------------------


def test_l496_current_per_phase_at_80_mhz_outside_sensor_bursts():
    p = L496Profile(odr_hz=32.0, burst_s=0.001)
    # idle 0.5 s; streaming 1.0 + 0.0100 (between bursts of 1 ms every 31.25 ms); training 3.0 s
    out = p.current(np.array([0.5, 1.0 + 0.0100, 3.0]))
    assert out.tolist() == approx([2.24e-3, 2.24e-3, 8.0e-3])


def test_streaming_adds_a_run_burst_at_every_sensor_sample():
    p = L496Profile(odr_hz=32.0, burst_s=0.001)  # samples every 31.25 ms
    t = np.array([1.0, 1.0005, 1.002, 1.03125, 1.0315, 1.0325, 2.46875, 2.4695])
    assert p.current(t).tolist() == approx([8e-3, 8e-3, 2.24e-3, 8e-3, 8e-3, 2.24e-3, 8e-3, 8e-3])


def test_default_profile_streams_a_26_hz_sensor_with_300_us_bursts():
    """Sample 27 is at 27/26 s, sample 28 at 28/26 s: 8 mA for 300 us after each, then the 2.24 mA sleep level."""
    p = L496Profile()
    t = np.array([27 / 26 + 0.00015, 27 / 26 + 0.00035, 28 / 26 + 0.00029, 28 / 26 + 0.0005])
    assert p.current(t).tolist() == approx([8e-3, 2.24e-3, 8e-3, 2.24e-3])


def test_a_burst_ends_exactly_burst_s_after_the_sample():
    p = L496Profile(phases=(Phase("streaming", 1.0),), odr_hz=32.0, burst_s=2**-10)  # 0.9765625 ms
    t = np.array([0.5 + 2**-11, 0.5 + 2**-10, 0.5 + 2**-9])
    assert p.current(t).tolist() == approx([8e-3, 2.24e-3, 2.24e-3])


def test_l496_reads_float32_times_at_float64_precision():
    """float32(1001.0003) = 1001.00030517578125 s is 305 us after the sensor sample at 1001 s (26026 samples at
    26 Hz), outside the 300 us burst (float32 arithmetic would put it 37 us earlier, inside)."""
    p = L496Profile()
    t = np.array([1001.0003], dtype=np.float32)
    assert float(t[0]) == 1001.00030517578125
    assert p.mode_at(float(t[0])) == "streaming"
    assert p.current(t).tolist() == approx([2.24e-3])


def test_no_sensor_bursts_outside_streaming():
    """Times that would be inside a burst are at the idle or stop2 level when the phase is not streaming."""
    p = L496Profile(
        phases=(Phase("idle", 1.0), Phase("stop2", 1.0), Phase("streaming", 1.0)), odr_hz=32.0, burst_s=0.001
    )
    assert p.current(np.array([0.0, 0.03125, 1.0, 1.03125, 2.0])).tolist() == approx(
        [2.24e-3, 2.24e-3, 2.6e-6, 2.6e-6, 8e-3]
    )


def test_phase_changes_exactly_at_the_phase_start():
    p = L496Profile(phases=(Phase("training", 1.0), Phase("stop2", 0.5), Phase("idle", 0.5)))
    t = np.array([0.0, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 3.0])
    assert p.current(t).tolist() == approx([8e-3, 8e-3, 2.6e-6, 2.6e-6, 2.24e-3, 2.24e-3, 8e-3, 2.6e-6])


def test_before_the_start_the_board_sleeps():
    """Before ``start`` the current is the sleep level, whatever phase the timeline would be in."""
    p = L496Profile(phases=(Phase("training", 1.0), Phase("stop2", 1.0)), start=10.0)
    out = p.current(np.array([8.5, 9.5, 9.999, 10.0, 10.5, 11.5, 12.0]))
    assert out.tolist() == approx([2.24e-3, 2.24e-3, 2.24e-3, 8e-3, 8e-3, 2.6e-6, 8e-3])


def test_sensor_bursts_are_timed_from_the_start():
    p = L496Profile(phases=(Phase("streaming", 1.0),), odr_hz=32.0, burst_s=0.001, start=0.5)
    assert p.current(np.array([0.5, 0.5005, 0.515625, 0.53125])).tolist() == approx([8e-3, 8e-3, 2.24e-3, 8e-3])


def test_current_does_not_change_the_levels_it_reads():
    p = L496Profile(phases=(Phase("streaming", 1.0),), odr_hz=32.0, burst_s=0.001)
    p.current(np.array([0.0, 0.5]))
    assert p.current(np.array([0.0105])).tolist() == approx([2.24e-3])


# --- L496Profile: D7 edges ----------------------------------------------------------------------------------------


def test_default_profile_marks_every_100ms_batch_of_training():
    edges = L496Profile().d7_edges(0.0, 4.0)
    assert edges.tolist() == approx([2.5 + 0.1 * k for k in range(15)])
    assert len(edges) == 15  # 2.5, 2.6, ..., 3.9 (not 4.0: the next period's idle start)


def test_markers_start_at_the_phase_start_and_repeat_every_period():
    p = L496Profile(phases=(Phase("idle", 1.0), Phase("training", 1.0, marker_every_s=0.25)))
    assert p.d7_edges(0.0, 4.0).tolist() == [1.0, 1.25, 1.5, 1.75, 3.0, 3.25, 3.5, 3.75]
    assert p.d7_edges(1.0, 1.5).tolist() == [1.25, 1.5]  # (t0, t1]
    assert p.d7_edges(1.75, 3.0).tolist() == [3.0]


def test_markers_of_several_training_phases():
    p = L496Profile(
        phases=(
            Phase("training", 0.5, marker_every_s=0.25),
            Phase("idle", 0.5),
            Phase("training", 1.0, marker_every_s=0.5),
        )
    )
    assert p.d7_edges(-1.0, 2.0).tolist() == [0.0, 0.25, 1.0, 1.5, 2.0]  # 2.0: the next period


def test_markers_are_shifted_by_the_start_and_none_before_it():
    p = L496Profile(phases=(Phase("idle", 1.0), Phase("training", 1.0, marker_every_s=0.25)), start=10.0)
    assert p.d7_edges(10.0, 12.0).tolist() == [11.0, 11.25, 11.5, 11.75]
    assert p.d7_edges(5.0, 11.3).tolist() == [11.0, 11.25]
    assert p.d7_edges(0.0, 9.0).tolist() == []


def test_a_marker_step_longer_than_the_phase_marks_only_its_start():
    p = L496Profile(phases=(Phase("training", 0.5, marker_every_s=1.0), Phase("idle", 0.5)))
    assert p.d7_edges(-0.5, 2.5).tolist() == [0.0, 1.0, 2.0]


def test_markers_of_a_sub_second_period():
    p = L496Profile(phases=(Phase("idle", 0.25), Phase("training", 0.25, marker_every_s=0.125)))
    assert p.d7_edges(0.0, 1.0).tolist() == [0.25, 0.375, 0.75, 0.875]


def test_a_timeline_without_markers_or_an_empty_interval_has_no_edges():
    assert L496Profile(phases=(Phase("training", 1.0),)).d7_edges(0.0, 10.0).tolist() == []
    p = L496Profile(phases=(Phase("training", 1.0, marker_every_s=0.25),))
    assert p.d7_edges(0.5, 0.5).tolist() == []
    assert p.d7_edges(2.0, 1.0).tolist() == []


def test_open_ended_or_empty_intervals_with_infinite_bounds_have_no_edges():
    """An interval that is empty (t1 <= t0) or a source without edges answers 'no edges' without computing periods,
    even for infinite bounds (e.g. 'every edge from now on' of a source that has none)."""
    inf = float("inf")
    periodic = PiecewiseCurrent([0.0], [0.001], edges=[0.25], period=1.0)
    assert periodic.d7_edges(inf, inf).tolist() == []
    assert periodic.d7_edges(5.0, -inf).tolist() == []
    assert PiecewiseCurrent([0.0], [0.001], period=1.0).d7_edges(0.0, inf).tolist() == []
    marked = L496Profile(phases=(Phase("training", 1.0, marker_every_s=0.25),))
    assert marked.d7_edges(inf, inf).tolist() == []
    assert marked.d7_edges(5.0, -inf).tolist() == []
    assert L496Profile(phases=(Phase("training", 1.0),)).d7_edges(0.0, inf).tolist() == []
