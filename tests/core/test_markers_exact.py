"""The marker times a user types in the Power panel (``app/core/markers.py``): what is accepted, in which
unit, and the exact plain-words message of every refusal.  Expected values are written by hand."""

from __future__ import annotations

import pytest

from app.core.markers import MarkerTimeError, parse_marker_time


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("12.5", 12.5),
        ("12.5 s", 12.5),
        ("12.5s", 12.5),
        ("  7  ", 7.0),
        ("12500 ms", 12.5),
        ("250 us", 0.00025),
        ("250 µs", 0.00025),
        ("3e-3", 0.003),
        ("1E1 ms", 0.01),
        (".5", 0.5),
        ("5.", 5.0),
        ("+2", 2.0),
    ],
)
def test_typed_times_are_read_in_seconds(text, seconds):
    """Plain seconds, an `s`/`ms`/`us`/`µs` suffix, exponents, a leading dot or sign, spaces around."""
    assert parse_marker_time(text, 100.0) == pytest.approx(seconds, rel=1e-12)


def test_the_bounds_themselves_are_inside_the_data():
    """0 and t_max are both allowed (a marker at the very start or end of the recording)."""
    assert parse_marker_time("0", 30.0) == 0.0
    assert parse_marker_time("30", 30.0) == 30.0
    assert parse_marker_time("30000 ms", 30.0) == 30.0


def test_no_upper_bound_when_t_max_is_none():
    assert parse_marker_time("1e6", None) == 1e6


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "'' is not a time: type seconds, e.g. 12.5, 12.5 s or 12500 ms"),
        (None, "'' is not a time: type seconds, e.g. 12.5, 12.5 s or 12500 ms"),
        ("  abc ", "'abc' is not a time: type seconds, e.g. 12.5, 12.5 s or 12500 ms"),
        ("12 min", "'12 min' is not a time: type seconds, e.g. 12.5, 12.5 s or 12500 ms"),
        ("1.2.3", "'1.2.3' is not a time: type seconds, e.g. 12.5, 12.5 s or 12500 ms"),
        ("e5", "'e5' is not a time: type seconds, e.g. 12.5, 12.5 s or 12500 ms"),
        ("nan", "'nan' is not a time: type seconds, e.g. 12.5, 12.5 s or 12500 ms"),
    ],
)
def test_text_that_is_not_a_time_is_refused_with_an_example(text, message):
    with pytest.raises(MarkerTimeError) as ei:
        parse_marker_time(text, 10.0)
    assert str(ei.value) == message


def test_an_overflowing_time_is_not_finite():
    with pytest.raises(MarkerTimeError) as ei:
        parse_marker_time(" 1e999 s ", None)
    assert str(ei.value) == "'1e999 s' is not a finite time"


def test_a_time_after_the_data_names_the_range():
    with pytest.raises(MarkerTimeError) as ei:
        parse_marker_time("30.5", 30.25)
    assert str(ei.value) == "t = 30.5 s is outside the data (0 … 30.250000 s)"
    with pytest.raises(MarkerTimeError) as ei:
        parse_marker_time("30001 ms", 30.0)
    assert str(ei.value) == "t = 30.001 s is outside the data (0 … 30.000000 s)"


def test_a_negative_time_is_outside_the_data():
    with pytest.raises(MarkerTimeError) as ei:
        parse_marker_time("-1.5", 10.0)
    assert str(ei.value) == "t = -1.5 s is outside the data (0 … 10.000000 s)"
    with pytest.raises(MarkerTimeError) as ei:
        parse_marker_time("-0.001234567", None)
    assert str(ei.value) == "t = -0.00123457 s is outside the data (0 … ∞)"


def test_the_error_is_a_value_error():
    """Callers that catch ValueError (the panel's entry validation) catch it too."""
    assert issubclass(MarkerTimeError, ValueError)
