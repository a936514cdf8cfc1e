"""The virtual board's LSM6DSO (device/nucleo/sensor.py) and the virtual bench's clock (device/simclock.py),
with exact expected values written by hand.

* Traces: tiny hand-written files in every format the bench accepts (assets CSV + JSON sidecar, WISDM-2019
  phone ``.txt``, UCI HAPT ``hapt*.npz``, generic npz); every bad file is refused with a ``TraceError`` whose
  whole message is asserted (a user points the bench at their own file and reads it).
* Counts: the LSM6DSO datasheet sensitivities (0.061 / 0.122 / 0.244 / 0.488 mg/LSB at ±2/4/8/16 g,
  ../shared/reference/firmware-targets.md §4), counts computed by hand, saturation at the int16 range.
* Playback: a linear ramp recording so that the interpolated value at any playback position is known.
* SimClock: a fake ``time.monotonic`` stepped by hand, no real sleeping.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from device import simclock
from device.nucleo import sensor
from device.nucleo.protocol import ProtocolError
from device.nucleo.sensor import (
    LSM6DSO,
    Trace,
    TraceError,
    default_trace_path,
    load_csv,
    load_hapt,
    load_npz,
    load_trace,
    load_wisdm2019,
    quantise,
    sensitivity_g,
)
from device.simclock import SimClock

REPO = Path(__file__).resolve().parents[2]
NPZ_NEED = "(need acc_g, rate_hz and labels or label + label_names)"

# a ramp: row k = (k, 10 k, 100 k) g, so the value at playback position p (samples) is known by hand
RAMP = np.array([[0, 0, 0], [1, 10, 100], [2, 20, 200], [3, 30, 300]], np.float32)


def seg(n: int = 2) -> np.ndarray:
    return np.zeros((n, 3), np.float32)


def ramp_trace() -> Trace:
    """walk = the ramp, sit = the ramp + 1000 g, at 2 Hz (4 samples = 2 s per recording)."""
    return Trace(2.0, {"walk": RAMP.copy(), "sit": RAMP + 1000.0}, "ramp")


# ---------------------------------------------------------------------------------------------- Trace


def test_a_trace_without_segments_is_refused_naming_its_source():
    with pytest.raises(TraceError) as e:
        Trace(20.0, {}, "mine.csv")
    assert str(e.value) == "mine.csv: no activity segments"


def test_a_trace_without_segments_or_source_is_called_trace():
    with pytest.raises(TraceError) as e:
        Trace(20.0, {})
    assert str(e.value) == "trace: no activity segments"


@pytest.mark.parametrize(
    "array, shape",
    [
        (np.zeros(6, np.float32), "(6,)"),
        (np.zeros((3, 2), np.float32), "(3, 2)"),
        (np.zeros((3, 4), np.float32), "(3, 4)"),
        (np.zeros((1, 3), np.float32), "(1, 3)"),
        (np.zeros((0, 3), np.float32), "(0, 3)"),
        (np.zeros((2, 3, 1), np.float32), "(2, 3, 1)"),
    ],
)
def test_a_segment_that_is_not_n_by_3_with_two_samples_is_refused(array, shape):
    with pytest.raises(TraceError) as e:
        Trace(20.0, {"walk": seg(), "sit": array}, "t.npz")
    assert str(e.value) == f"t.npz: activity 'sit' has shape {shape}, need (n >= 2, 3)"


def test_a_two_sample_segment_is_enough():
    t = Trace(20.0, {"walk": seg(2)}, "t")
    assert t.activities == ("walk",)


@pytest.mark.parametrize("rate, shown", [(0.0, "0.0"), (-20.0, "-20.0"), (math.nan, "nan"), (math.inf, "inf")])
def test_a_rate_that_is_not_a_finite_positive_number_is_refused(rate, shown):
    with pytest.raises(TraceError) as e:
        Trace(rate, {"walk": seg()}, "t.npz")
    assert str(e.value) == f"t.npz: rate_hz must be a finite number > 0, got {shown}"


def test_a_tiny_positive_rate_is_accepted():
    assert Trace(1e-6, {"walk": seg()}).rate_hz == 1e-6


def test_activities_are_in_recording_order():
    assert Trace(20.0, {"sit": seg(), "walk": seg(), "jog": seg()}).activities == ("sit", "walk", "jog")


def test_from_arrays_groups_runs_by_activity_and_drops_activities_with_one_sample():
    acc = np.arange(21, dtype=np.float64).reshape(7, 3)  # row k = (3k, 3k+1, 3k+2)
    t = Trace.from_arrays(acc, ["walk", "walk", "sit", "sit", "sit", "walk", "jog"], 25, "rec")
    assert t.activities == ("walk", "sit")
    assert t.segments["walk"].tolist() == [[0, 1, 2], [3, 4, 5], [15, 16, 17]]
    assert t.segments["sit"].tolist() == [[6, 7, 8], [9, 10, 11], [12, 13, 14]]
    assert t.segments["walk"].dtype == np.float32
    assert t.rate_hz == 25.0 and type(t.rate_hz) is float
    assert t.source == "rec"


def test_from_arrays_keeps_an_activity_whose_single_sample_runs_add_up_to_two():
    acc = np.arange(12, dtype=np.float64).reshape(4, 3)
    t = Trace.from_arrays(acc, np.array(["a", "b", "a", "b"]), 20.0)
    assert t.activities == ("a", "b")
    assert t.segments["a"].tolist() == [[0, 1, 2], [6, 7, 8]]
    assert t.segments["b"].tolist() == [[3, 4, 5], [9, 10, 11]]


def test_from_arrays_without_source_has_an_empty_source():
    assert Trace.from_arrays(seg(2), ["a", "a"], 20.0).source == ""


@pytest.mark.parametrize("unlabelled", ["", "-1", "None", "unlabelled"])
def test_from_arrays_skips_unlabelled_samples(unlabelled):
    acc = np.arange(12, dtype=np.float64).reshape(4, 3)
    t = Trace.from_arrays(acc, [unlabelled, unlabelled, "walk", "walk"], 20.0)
    assert t.activities == ("walk",)
    assert t.segments["walk"].tolist() == [[6, 7, 8], [9, 10, 11]]


def test_from_arrays_with_only_single_samples_has_no_segments():
    with pytest.raises(TraceError) as e:
        Trace.from_arrays(seg(3), ["a", "b", "c"], 20.0, "rec")
    assert str(e.value) == "rec: no activity segments"


@pytest.mark.parametrize(
    "acc, labels, message",
    [
        (np.zeros((4, 3)), ["w"] * 3, "rec: acc shape (4, 3) and 3 labels do not match (need (n, 3) and n)"),
        (np.zeros((4, 2)), ["w"] * 4, "rec: acc shape (4, 2) and 4 labels do not match (need (n, 3) and n)"),
        (np.zeros(4), ["w"] * 4, "rec: acc shape (4,) and 4 labels do not match (need (n, 3) and n)"),
        (np.zeros((4, 3)), "walk", "rec: acc shape (4, 3) and 1 labels do not match (need (n, 3) and n)"),
    ],
)
def test_from_arrays_refuses_acc_and_labels_that_do_not_match(acc, labels, message):
    with pytest.raises(TraceError) as e:
        Trace.from_arrays(acc, labels, 20.0, "rec")
    assert str(e.value) == message


def test_from_arrays_refuses_non_numeric_acceleration():
    with pytest.raises(TraceError) as e:
        Trace.from_arrays([["a", "b", "c"]] * 2, ["w", "w"], 20.0, "rec")
    assert str(e.value) == "rec: non-numeric acceleration (could not convert string to float: 'a')"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_from_arrays_refuses_non_finite_acceleration(bad):
    """Bug fixed 2026-12-06: NaN/infinite values were accepted and played back as garbage counts."""
    acc = np.zeros((2, 3))
    acc[1, 2] = bad
    with pytest.raises(TraceError) as e:
        Trace.from_arrays(acc, ["w", "w"], 20.0, "rec")
    assert str(e.value) == "rec: acceleration values must be finite (NaN or infinity found)"


# ---------------------------------------------------------------------------------------------- WISDM 2019

WISDM_TEXT = (
    "1600,A,100,9.80665,0,-9.80665;\n"
    "  1600,A,150,0,19.6133,0;  \n"
    "\n"
    "1600,D,200,0,0,9.80665;\n"
    "1600,D,250,0,0,4.903325\n"
    "1600,X,300,1,1,1;\n"
    "1600,A,350,0,0,0;\n"
)


def test_wisdm_file_is_read_in_g_at_20_hz_with_the_activity_names(tmp_path):
    p = tmp_path / "data_1600_accel_phone.txt"
    p.write_text(WISDM_TEXT)
    t = load_wisdm2019(p)
    assert t.activities == ("walking", "sitting")
    np.testing.assert_allclose(t.segments["walking"], [[1, 0, -1], [0, 2, 0], [0, 0, 0]], atol=1e-7)
    np.testing.assert_allclose(t.segments["sitting"], [[0, 0, 1], [0, 0, 0.5]], atol=1e-7)
    assert t.rate_hz == 20.0
    assert t.source == str(p)


def test_wisdm_activity_codes_can_be_chosen(tmp_path):
    p = tmp_path / "w.txt"
    p.write_text(WISDM_TEXT)
    t = load_wisdm2019(p, {"D": "rest"})
    assert t.activities == ("rest",)
    np.testing.assert_allclose(t.segments["rest"], [[0, 0, 1], [0, 0, 0.5]], atol=1e-7)


def test_wisdm_line_with_a_wrong_field_count_is_refused_with_its_line_number(tmp_path):
    p = tmp_path / "w.txt"
    p.write_text("1600,A,1,2,3,4;\n\n1600,A,1,2,3;\n")
    with pytest.raises(TraceError) as e:
        load_wisdm2019(p)
    assert str(e.value) == f"{p}:3: expected 6 comma-separated fields, got 5"


def test_wisdm_file_without_known_activities_is_refused(tmp_path):
    p = tmp_path / "w.txt"
    p.write_text("1600,X,1,2,3,4;\n1600,Y,1,2,3,4;\n")
    with pytest.raises(TraceError) as e:
        load_wisdm2019(p)
    assert str(e.value) == f"{p}: no rows with activity codes ['A', 'B', 'C', 'D', 'E']"


def test_wisdm_no_rows_message_names_the_chosen_codes(tmp_path):
    p = tmp_path / "w.txt"
    p.write_text(WISDM_TEXT)
    with pytest.raises(TraceError) as e:
        load_wisdm2019(p, {"Q": "run", "P": "hop"})
    assert str(e.value) == f"{p}: no rows with activity codes ['P', 'Q']"


def test_wisdm_non_numeric_value_is_refused(tmp_path):
    p = tmp_path / "w.txt"
    p.write_text("1600,A,1,2,3,4;\n1600,A,1,abc,3,4;\n")
    with pytest.raises(TraceError) as e:
        load_wisdm2019(p)
    assert str(e.value) == f"{p}: non-numeric x/y/z value (could not convert string to float: 'abc')"


def test_wisdm_value_with_trailing_garbage_before_the_semicolon_is_refused(tmp_path):
    p = tmp_path / "w.txt"
    p.write_text("1600,A,1,2,3,4;\n1600,A,1,2,3,4X;\n")
    with pytest.raises(TraceError) as e:
        load_wisdm2019(p)
    assert str(e.value) == f"{p}: non-numeric x/y/z value (could not convert string to float: '4X')"


def test_wisdm_missing_file_is_refused(tmp_path):
    p = tmp_path / "none.txt"
    with pytest.raises(TraceError) as e:
        load_wisdm2019(p)
    assert str(e.value) == f"cannot read {p}: [Errno 2] No such file or directory: '{p}'"


def test_wisdm_file_that_is_not_text_is_refused(tmp_path):
    """Bug fixed 2026-12-06: a binary file raised UnicodeDecodeError instead of a TraceError."""
    p = tmp_path / "w.txt"
    p.write_bytes(b"\xff\xfe1600,A")
    with pytest.raises(TraceError) as e:
        load_wisdm2019(p)
    assert str(e.value) == f"cannot read {p}: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"


# ---------------------------------------------------------------------------------------------- HAPT npz


def write_hapt(path: Path, **over: np.ndarray) -> Path:
    arrays = {
        "acc": np.arange(24, dtype=np.float32).reshape(8, 3),  # row k = (3k, 3k+1, 3k+2)
        "label": np.array([1, 1, 4, 4, 1, 1, -1, 7], np.int8),
        "user": np.array([1, 1, 1, 1, 2, 2, 1, 1], np.int8),
    }
    arrays.update(over)
    np.savez(path, **arrays)
    return path


def test_hapt_user_one_is_read_at_50_hz_with_the_activity_names(tmp_path):
    p = write_hapt(tmp_path / "hapt_small.npz")
    t = load_hapt(p)
    assert t.activities == ("walking", "sitting")  # -1 (unlabelled) and 7 (a transition) are left out
    assert t.segments["walking"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert t.segments["sitting"].tolist() == [[6, 7, 8], [9, 10, 11]]
    assert t.rate_hz == 50.0
    assert t.source == f"{p} user 1"


def test_hapt_another_user(tmp_path):
    p = write_hapt(tmp_path / "hapt_small.npz")
    t = load_hapt(p, user=2)
    assert t.activities == ("walking",)
    assert t.segments["walking"].tolist() == [[12, 13, 14], [15, 16, 17]]
    assert t.source == f"{p} user 2"


def test_hapt_user_without_samples_is_refused(tmp_path):
    p = write_hapt(tmp_path / "hapt_small.npz")
    with pytest.raises(TraceError) as e:
        load_hapt(p, user=3)
    assert str(e.value) == f"{p}: no samples for user 3"


@pytest.mark.parametrize("missing", ["acc", "label", "user"])
def test_hapt_file_without_an_array_is_refused(tmp_path, missing):
    p = tmp_path / "hapt_small.npz"
    arrays = {"acc": seg(2), "label": np.array([1, 1]), "user": np.array([1, 1])}
    del arrays[missing]
    np.savez(p, **arrays)
    with pytest.raises(TraceError) as e:
        load_hapt(p)
    assert str(e.value) == f"cannot read HAPT npz {p}: '{missing} is not a file in the archive'"


def test_hapt_arrays_of_different_lengths_are_refused(tmp_path):
    """Bug fixed 2026-12-06: a ``user`` array shorter than ``acc`` raised IndexError."""
    p = write_hapt(tmp_path / "hapt_small.npz", user=np.ones(7, np.int8))
    with pytest.raises(TraceError) as e:
        load_hapt(p)
    assert str(e.value) == (
        f"cannot read HAPT npz {p}: boolean index did not match indexed array along axis 0; "
        "size of axis is 8 but size of corresponding boolean axis is 7"
    )


def test_hapt_nan_label_is_refused(tmp_path):
    """Bug fixed 2026-12-06: a NaN label raised ValueError outside the loader's error handling."""
    p = write_hapt(tmp_path / "hapt_small.npz", label=np.array([1, 1, np.nan, 4, 1, 1, 1, 1]))
    with pytest.raises(TraceError) as e:
        load_hapt(p)
    assert str(e.value) == f"cannot read HAPT npz {p}: cannot convert float NaN to integer"


def test_hapt_file_with_pickled_objects_is_refused_unread(tmp_path):
    p = write_hapt(tmp_path / "hapt_small.npz", user=np.array([1] * 8, dtype=object))
    with pytest.raises(TraceError) as e:
        load_hapt(p)
    assert str(e.value) == f"cannot read HAPT npz {p}: Object arrays cannot be loaded when allow_pickle=False"


def test_hapt_missing_file_is_refused(tmp_path):
    p = tmp_path / "hapt_none.npz"
    with pytest.raises(TraceError) as e:
        load_hapt(p)
    assert str(e.value) == f"cannot read HAPT npz {p}: [Errno 2] No such file or directory: '{p}'"


# ---------------------------------------------------------------------------------------------- generic npz


def test_npz_with_string_labels(tmp_path):
    p = tmp_path / "mine.npz"
    np.savez(p, acc_g=np.arange(12.0).reshape(4, 3), rate_hz=25.0, labels=np.array(["a", "a", "b", "b"]))
    t = load_npz(p)
    assert t.activities == ("a", "b")
    assert t.segments["a"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert t.segments["b"].tolist() == [[6, 7, 8], [9, 10, 11]]
    assert t.rate_hz == 25.0
    assert t.source == str(p)


def test_npz_with_integer_labels_and_their_names(tmp_path):
    p = tmp_path / "mine.npz"
    np.savez(
        p, acc_g=np.arange(12.0).reshape(4, 3), rate_hz=12.5, label=np.array([1, 1, 0, 0]), label_names=["sit", "walk"]
    )
    t = load_npz(p)
    assert t.activities == ("walk", "sit")
    assert t.segments["walk"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert t.segments["sit"].tolist() == [[6, 7, 8], [9, 10, 11]]
    assert t.rate_hz == 12.5


@pytest.mark.parametrize(
    "arrays, problem",
    [
        ({"rate_hz": 20.0, "labels": ["a", "a"]}, "'acc_g is not a file in the archive'"),
        ({"acc_g": seg(2), "labels": ["a", "a"]}, "'rate_hz is not a file in the archive'"),
        ({"acc_g": seg(2), "rate_hz": 20.0}, "'label_names is not a file in the archive'"),
        ({"acc_g": seg(2), "rate_hz": 20.0, "label_names": ["a"]}, "'label is not a file in the archive'"),
        (
            {"acc_g": seg(2), "rate_hz": "fast", "labels": ["a", "a"]},
            "could not convert string to float: 'fast'",
        ),
        (
            {"acc_g": seg(2), "rate_hz": 20.0, "label": [0, 2], "label_names": ["a", "b"]},
            "label 2 is not an index into the 2 label_names",
        ),
        (  # not the last name by Python's negative indexing
            {"acc_g": seg(2), "rate_hz": 20.0, "label": [-1, 0], "label_names": ["a", "b"]},
            "label -1 is not an index into the 2 label_names",
        ),
        (
            {"acc_g": seg(2), "rate_hz": 20.0, "label": ["x", "y"], "label_names": ["a", "b"]},
            "invalid literal for int() with base 10: np.str_('x')",
        ),
        # bug fixed 2026-12-06: a rate_hz array raised TypeError
        (
            {"acc_g": seg(2), "rate_hz": [20.0, 25.0], "labels": ["a", "a"]},
            "only 0-dimensional arrays can be converted to Python scalars",
        ),
    ],
)
def test_npz_that_cannot_be_read_is_refused_naming_the_arrays_it_needs(tmp_path, arrays, problem):
    p = tmp_path / "mine.npz"
    np.savez(p, **arrays)
    with pytest.raises(TraceError) as e:
        load_npz(p)
    assert str(e.value) == f"cannot read trace npz {p}: {problem} {NPZ_NEED}"


def test_npz_with_pickled_objects_is_refused_unread(tmp_path):
    p = tmp_path / "mine.npz"
    np.savez(p, acc_g=seg(2), rate_hz=20.0, labels=np.array(["w", "w"], dtype=object))
    with pytest.raises(TraceError) as e:
        load_npz(p)
    assert (
        str(e.value) == f"cannot read trace npz {p}: Object arrays cannot be loaded when allow_pickle=False {NPZ_NEED}"
    )


def test_npz_with_a_single_label_is_refused(tmp_path):
    """Bug fixed 2026-12-06: a 0-d ``labels`` array raised TypeError (len() of unsized object)."""
    p = tmp_path / "mine.npz"
    np.savez(p, acc_g=seg(4), rate_hz=20.0, labels="walk")
    with pytest.raises(TraceError) as e:
        load_npz(p)
    assert str(e.value) == f"{p}: acc shape (4, 3) and 1 labels do not match (need (n, 3) and n)"


def test_npz_with_text_acceleration_is_refused(tmp_path):
    """Bug fixed 2026-12-06: a string ``acc_g`` array raised ValueError instead of a TraceError."""
    p = tmp_path / "mine.npz"
    np.savez(p, acc_g=np.array([["a", "b", "c"]] * 2), rate_hz=20.0, labels=["w", "w"])
    with pytest.raises(TraceError) as e:
        load_npz(p)
    assert str(e.value) == f"{p}: non-numeric acceleration (could not convert string to float: np.str_('a'))"


def test_npz_with_an_infinite_rate_is_refused(tmp_path):
    """Bug fixed 2026-12-06: rate_hz = inf was accepted and the playback then failed (NaN positions)."""
    p = tmp_path / "mine.npz"
    np.savez(p, acc_g=seg(2), rate_hz=np.inf, labels=["w", "w"])
    with pytest.raises(TraceError) as e:
        load_npz(p)
    assert str(e.value) == f"{p}: rate_hz must be a finite number > 0, got inf"


# ---------------------------------------------------------------------------------------------- assets CSV


def write_csv(tmp_path: Path, rows: str, meta: object, name: str = "rec") -> Path:
    p = tmp_path / f"{name}.csv"
    p.write_text(rows)
    if meta is not None:
        p.with_suffix(".json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return p


CSV_ROWS = (
    " t_s, x ,y,z,activity,extra\n"
    "0.0,9.80665,0,-9.80665, walk \n"
    "0.1,0,19.6133,0,walk\n"
    "0.2,0,0,4.903325,sit\n"
    "0.3,0,0,9.80665,sit\n"
)


def test_csv_in_metres_per_second_squared_is_converted_to_g(tmp_path):
    p = write_csv(tmp_path, CSV_ROWS, {"rate_hz": 10, "units": "m/s^2 (gravity included)"})
    t = load_csv(p)
    assert t.activities == ("walk", "sit")
    np.testing.assert_allclose(t.segments["walk"], [[1, 0, -1], [0, 2, 0]], atol=1e-7)
    np.testing.assert_allclose(t.segments["sit"], [[0, 0, 0.5], [0, 0, 1]], atol=1e-7)
    assert t.rate_hz == 10.0
    assert t.source == str(p)


def test_csv_activity_quoted_across_a_line_break_is_kept_as_written(tmp_path):
    p = write_csv(tmp_path, "", {"rate_hz": 10})
    p.write_bytes(b't_s,x,y,z,activity\r\n0,1,2,3,"sit\r\nting"\r\n0,1,2,3,"sit\r\nting"\r\n')
    assert load_csv(p).activities == ("sit\r\nting",)


def test_csv_units_are_case_insensitive(tmp_path):
    p = write_csv(tmp_path, CSV_ROWS, {"rate_hz": 10, "units": "M/S^2"})
    np.testing.assert_allclose(load_csv(p).segments["walk"], [[1, 0, -1], [0, 2, 0]], atol=1e-7)


def test_csv_without_units_is_in_metres_per_second_squared(tmp_path):
    p = write_csv(tmp_path, CSV_ROWS, {"rate_hz": 10})
    np.testing.assert_allclose(load_csv(p).segments["walk"], [[1, 0, -1], [0, 2, 0]], atol=1e-7)


def test_csv_in_g_is_kept_as_is(tmp_path):
    p = write_csv(tmp_path, CSV_ROWS, {"rate_hz": 10, "units": "g"})
    np.testing.assert_allclose(load_csv(p).segments["walk"], [[9.80665, 0, -9.80665], [0, 19.6133, 0]], rtol=1e-7)


@pytest.mark.parametrize(
    "meta, problem",
    [
        ({"units": "g"}, "'rate_hz'"),
        ([10], "list indices must be integers or slices, not str"),
        ("{not json", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ({"rate_hz": "fast"}, "could not convert string to float: 'fast'"),
    ],
)
def test_csv_with_an_unreadable_sidecar_is_refused(tmp_path, meta, problem):
    p = write_csv(tmp_path, CSV_ROWS, meta)
    with pytest.raises(TraceError) as e:
        load_csv(p)
    assert str(e.value) == f"{tmp_path / 'rec.json'}: cannot read rate_hz/units of trace rec.csv ({problem})"


def test_csv_without_sidecar_is_refused(tmp_path):
    p = write_csv(tmp_path, CSV_ROWS, None)
    j = tmp_path / "rec.json"
    with pytest.raises(TraceError) as e:
        load_csv(p)
    assert (
        str(e.value) == f"{j}: cannot read rate_hz/units of trace rec.csv ([Errno 2] No such file or directory: '{j}')"
    )


def test_csv_missing_with_its_sidecar_present_is_refused(tmp_path):
    p = tmp_path / "rec.csv"
    (tmp_path / "rec.json").write_text('{"rate_hz": 20}')
    with pytest.raises(TraceError) as e:
        load_csv(p)
    assert str(e.value) == f"cannot read {p}: [Errno 2] No such file or directory: '{p}'"


def test_csv_with_a_wrong_header_is_refused(tmp_path):
    """Bug fixed 2026-12-06: the header (and field count) error was wrapped as "non-numeric x/y/z value (...)"."""
    p = write_csv(tmp_path, "t,x,y,z,activity\n0,1,2,3,a\n", {"rate_hz": 20})
    with pytest.raises(TraceError) as e:
        load_csv(p)
    assert str(e.value) == f"{p}:1: header ['t', 'x', 'y', 'z', 'activity'] is not t_s,x,y,z,activity"


def test_empty_csv_is_refused(tmp_path):
    """Bug fixed 2026-12-06: an empty CSV raised StopIteration instead of a TraceError."""
    p = write_csv(tmp_path, "", {"rate_hz": 20})
    with pytest.raises(TraceError) as e:
        load_csv(p)
    assert str(e.value) == f"{p}:1: header [] is not t_s,x,y,z,activity"


def test_csv_row_with_too_few_fields_is_refused_with_its_line_number(tmp_path):
    p = write_csv(tmp_path, "t_s,x,y,z,activity\n0,1,2,3,a\n0,1,2,3\n", {"rate_hz": 20})
    with pytest.raises(TraceError) as e:
        load_csv(p)
    assert str(e.value) == f"{p}:3: expected 5 fields, got 4"


def test_csv_non_numeric_value_is_refused(tmp_path):
    p = write_csv(tmp_path, "t_s,x,y,z,activity\n0,1,2,3,a\n0,abc,2,3,a\n", {"rate_hz": 20})
    with pytest.raises(TraceError) as e:
        load_csv(p)
    assert str(e.value) == f"{p}: non-numeric x/y/z value (could not convert string to float: 'abc')"


# ---------------------------------------------------------------------------------------------- load_trace


def test_load_trace_reads_a_csv_as_the_assets_sample(tmp_path):
    p = write_csv(tmp_path, CSV_ROWS, {"rate_hz": 10})
    t = load_trace(str(p))
    assert (t.activities, t.rate_hz, t.source) == (("walk", "sit"), 10.0, str(p))


def test_load_trace_reads_a_txt_as_wisdm_2019(tmp_path):
    p = tmp_path / "data_1600_accel_phone.txt"
    p.write_text(WISDM_TEXT)
    t = load_trace(str(p))
    assert (t.activities, t.rate_hz, t.source) == (("walking", "sitting"), 20.0, str(p))


def test_load_trace_reads_hapt_npz_as_hapt_user_one(tmp_path):
    p = write_hapt(tmp_path / "hapt_raw_50hz.npz")
    t = load_trace(str(p))
    assert (t.activities, t.rate_hz, t.source) == (("walking", "sitting"), 50.0, f"{p} user 1")


def test_load_trace_reads_other_npz_as_generic(tmp_path):
    p = tmp_path / "mine.npz"
    np.savez(p, acc_g=seg(2), rate_hz=104.0, labels=["w", "w"])
    t = load_trace(str(p))
    assert (t.activities, t.rate_hz, t.source) == (("w",), 104.0, str(p))


# ---------------------------------------------------------------------------------------------- default trace


def fake_install(monkeypatch, tmp_path: Path) -> Path:
    """Pretend sensor.py lives in tmp_path/app/device/nucleo, so the repository root is tmp_path/app and
    the default shared folder tmp_path/shared."""
    root = tmp_path / "app"
    (root / "device" / "nucleo").mkdir(parents=True)
    monkeypatch.setattr(sensor, "__file__", str(root / "device" / "nucleo" / "sensor.py"))
    monkeypatch.delenv("ODL_SHARED", raising=False)
    return root


WISDM_1600 = Path("data") / "wisdm2019_phone_accel" / "raw" / "phone" / "accel" / "data_1600_accel_phone.txt"


def touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("x")
    return p


def test_default_trace_is_the_assets_sample_of_this_repository():
    assert default_trace_path() == REPO / "assets" / "sample" / "wisdm2019_1600_sample.csv"


def test_default_trace_is_none_without_sample_or_shared_data(monkeypatch, tmp_path):
    fake_install(monkeypatch, tmp_path)
    assert default_trace_path() is None


def test_default_trace_falls_back_to_the_shared_wisdm_file(monkeypatch, tmp_path):
    fake_install(monkeypatch, tmp_path)
    f = touch(tmp_path / "shared" / WISDM_1600)
    assert default_trace_path() == f


def test_default_trace_shared_folder_can_be_set_with_odl_shared(monkeypatch, tmp_path):
    fake_install(monkeypatch, tmp_path)
    touch(tmp_path / "shared" / WISDM_1600)
    f = touch(tmp_path / "elsewhere" / WISDM_1600)
    monkeypatch.setenv("ODL_SHARED", str(tmp_path / "elsewhere"))
    assert default_trace_path() == f


def test_default_trace_prefers_the_assets_sample(monkeypatch, tmp_path):
    root = fake_install(monkeypatch, tmp_path)
    touch(tmp_path / "shared" / WISDM_1600)
    f = touch(root / "assets" / "sample" / "wisdm2019_1600_sample.csv")
    assert default_trace_path() == f


def test_default_trace_ignores_a_folder_named_like_the_file(monkeypatch, tmp_path):
    fake_install(monkeypatch, tmp_path)
    (tmp_path / "shared" / WISDM_1600).mkdir(parents=True)
    assert default_trace_path() is None


# ---------------------------------------------------------------------------------------------- counts


@pytest.mark.parametrize("fs, lsb_g", [(2, 0.061e-3), (4, 0.122e-3), (8, 0.244e-3), (16, 0.488e-3)])
def test_sensitivity_is_the_datasheet_figure(fs, lsb_g):
    assert sensitivity_g(fs) == pytest.approx(lsb_g, rel=1e-12)


def test_sensitivity_of_an_unknown_full_scale_is_refused():
    with pytest.raises(ProtocolError) as e:
        sensitivity_g(3)
    assert str(e.value) == "fs_g 3 is not an LSM6DSO full scale (allowed: 2, 4, 8, 16)"


@pytest.mark.parametrize(
    "fs, counts",
    [
        # 1 g / 0.061 mg = 16393.4, -1 g, 0.0001 g / 0.061 mg = 1.64, -0.0001 g, 2.5 g saturates, -3 g saturates
        (2, [16393, -16393, 2, -2, 32767, -32768]),
        (4, [8197, -8197, 1, -1, 20492, -24590]),  # 1 / 0.122 mg = 8196.7; 2.5 g = 20491.8; -3 g = -24590.2
        (8, [4098, -4098, 0, 0, 10246, -12295]),  # 4098.4; 10245.9; -12295.1
        (16, [2049, -2049, 0, 0, 5123, -6148]),  # 2049.2; 5122.95; -6147.5 -> -6148 (ties to even)
    ],
)
def test_quantise_rounds_to_the_nearest_count_and_saturates(fs, counts):
    out = quantise(np.array([1.0, -1.0, 0.0001, -0.0001, 2.5, -3.0]), fs)
    assert out.dtype == np.int16
    assert out.tolist() == counts


def test_quantise_of_float32_input_rounds_like_the_exact_value():
    # float32 0.97847050 g / 0.061 mg = 16040.50007 -> 16041 (a float32 division would give 16040.5 -> 16040)
    assert quantise(np.array([0.978470504283905], np.float32), 2).tolist() == [16041]


def test_quantise_keeps_the_shape():
    out = quantise(np.array([[1.0, 0.0, -1.0], [0.5, 0.25, 0.0]]), 2)
    assert out.tolist() == [[16393, 0, -16393], [8197, 4098, 0]]


# ---------------------------------------------------------------------------------------------- LSM6DSO


def test_a_new_sensor_plays_the_first_activity_at_26_hz_and_2_g():
    s = LSM6DSO(ramp_trace())
    assert (s.activity, s.odr_hz, s.fs_g) == ("walk", 26.0, 2)
    assert type(s.odr_hz) is float


def test_a_sensor_without_trace_has_no_activity_and_refuses_playback():
    s = LSM6DSO(None)
    assert s.activity == ""
    with pytest.raises(ProtocolError) as e:
        s.acceleration_g(np.array([0.0]))
    assert str(e.value) == "no sensor trace loaded"
    with pytest.raises(ProtocolError) as e:
        s.samples(np.array([0.0]))
    assert str(e.value) == "no sensor trace loaded"
    with pytest.raises(ProtocolError) as e:
        s.set_activity("walk", 0.0)
    assert str(e.value) == "no sensor trace loaded"


def test_configure_sets_rate_and_full_scale():
    s = LSM6DSO(ramp_trace())
    s.configure(52, 8)
    assert (s.odr_hz, s.fs_g) == (52.0, 8)
    assert type(s.odr_hz) is float


def test_configure_refuses_a_rate_that_is_not_on_the_ladder():
    s = LSM6DSO(ramp_trace())
    with pytest.raises(ProtocolError) as e:
        s.configure(50.0, 4)
    assert str(e.value) == "ODR 50.0 Hz is not an LSM6DSO rate"
    assert (s.odr_hz, s.fs_g) == (26.0, 2)


def test_configure_refuses_a_full_scale_and_keeps_the_rate():
    s = LSM6DSO(ramp_trace())
    with pytest.raises(ProtocolError) as e:
        s.configure(104.0, 3)
    assert str(e.value) == "fs_g 3 is not an LSM6DSO full scale (allowed: 2, 4, 8, 16)"
    assert (s.odr_hz, s.fs_g) == (26.0, 2)


def test_playback_interpolates_the_recording_and_loops_over_it():
    s = LSM6DSO(ramp_trace())
    t = np.array([0.0, 0.25, 0.5, 1.5, 1.75, 2.0, 2.25, -0.25])
    # at 2 Hz: positions 0, 0.5, 1, 3, 3.5 (half-way from the last sample back to the first), 4 = 0, 4.5, -0.5 = 3.5
    x = [0.0, 0.5, 1.0, 3.0, 1.5, 0.0, 0.5, 1.5]
    np.testing.assert_allclose(s.acceleration_g(t), [[v, 10 * v, 100 * v] for v in x], atol=1e-9)


def test_switching_activity_continues_at_a_random_point_of_its_recording():
    s = LSM6DSO(ramp_trace(), seed=3)
    s.set_activity("sit", 10.25)
    assert s.activity == "sit"
    # the start point is the seed's first draw from uniform(0, 2 s) (4 samples at 2 Hz), that is 0.1712983 s
    phase = np.random.default_rng(3).uniform(0.0, 2.0)
    assert phase == pytest.approx(0.1712983, abs=1e-7)
    pos = 2.0 * phase  # 0.3425967 samples: 0.3426 of the way from sample 0 to sample 1
    out = s.acceleration_g(np.array([10.25, 10.75]))
    np.testing.assert_allclose(out[0], [1000 + pos, 1000 + 10 * pos, 1000 + 100 * pos], rtol=1e-6)
    np.testing.assert_allclose(out[1], [1001 + pos, 1000 + 10 * (1 + pos), 1000 + 100 * (1 + pos)], rtol=1e-6)


def test_playback_position_is_exact_for_float32_times_late_in_a_session():
    s = LSM6DSO(ramp_trace(), seed=3)
    s.set_activity("sit", 10.25)  # start point 0.1712983 s (as above)
    out = s.acceleration_g(np.array([100000.0], np.float32))
    # position (0.1712983 + 99989.75) * 2 = 199979.8426 samples = 3.8425967 in the 4-sample loop: 84.26 % of the
    # way from the last sample (1003, 1030, 1300) back to the first (1000, 1000, 1000)
    np.testing.assert_allclose(out, [[1000.4722100, 1004.7221000, 1047.2210000]], rtol=1e-9)


def test_setting_the_current_activity_again_does_not_restart_its_playback():
    s = LSM6DSO(ramp_trace(), seed=3)
    s.set_activity("walk", 10.0)
    assert s.activity == "walk"
    np.testing.assert_allclose(s.acceleration_g(np.array([0.25])), [[0.5, 5.0, 50.0]], atol=1e-9)


def test_setting_an_unknown_activity_is_refused_naming_the_available_ones():
    s = LSM6DSO(ramp_trace())
    with pytest.raises(ProtocolError) as e:
        s.set_activity("run", 1.0)
    assert str(e.value) == "activity 'run' is not in the trace (available: walk, sit)"
    assert s.activity == "walk"


def constant_trace(g: tuple[float, float, float]) -> Trace:
    return Trace(26.0, {"still": np.tile(np.array(g, np.float32), (4, 1))}, "still")


def test_samples_are_int16_counts_of_the_trace_at_the_full_scale():
    s = LSM6DSO(constant_trace((0.5, -0.25, 1.0)), seed=1)
    s.configure(12.5, 16)  # noise 80 ug/sqrt(Hz) * sqrt(6.25 Hz) = 0.2 mg = 0.41 LSB at 0.488 mg/LSB
    out = s.samples(np.linspace(0.0, 10.0, 2000))
    assert out.dtype == np.int16 and out.shape == (2000, 3)
    # 0.5 g / 0.488 mg = 1024.6, -0.25 g = -512.3, 1 g = 2049.2: the noise moves a count by at most 2 here
    assert abs(out - np.array([1024.59, -512.30, 2049.18])).max() < 3
    np.testing.assert_allclose(out.mean(axis=0), [1024.59, -512.30, 2049.18], atol=0.1)


def test_sample_noise_has_the_datasheet_density_at_the_output_rate():
    s = LSM6DSO(constant_trace((0.5, 0.0, 0.0)), seed=2)
    s.configure(6667.0, 2)
    out = s.samples(np.linspace(0.0, 3.0, 20000)).astype(np.float64)
    # 80 ug/sqrt(Hz) * sqrt(6667 / 2 Hz) = 4.619 mg = 75.7 LSB at 0.061 mg/LSB; mean 0.5 g = 8196.7 LSB
    assert np.std(out[:, 0]) == pytest.approx(75.7, rel=0.03)
    assert np.std(out[:, 1]) == pytest.approx(75.7, rel=0.03)
    assert abs(out[:, 0].mean() - 8196.7) < 3.0
    assert abs(out[:, 1].mean()) < 3.0


def test_sample_noise_is_the_seeds_normal_draws_added_to_the_trace():
    """The noise stream of a seed is pinned (recordings of the virtual bench are reproducible across versions):
    numpy's default_rng(seed).normal(0, 80 ug/sqrt(Hz) * sqrt(ODR / 2)), added, then counted at 0.061 mg/LSB."""
    s = LSM6DSO(constant_trace((0.5, -0.25, 1.0)), seed=4)
    s.configure(104.0, 2)
    noise = np.random.default_rng(4).normal(0.0, 80e-6 * math.sqrt(52.0), (5, 3))
    expected = np.rint((np.array([0.5, -0.25, 1.0]) + noise) / 0.061e-3)
    assert s.samples(np.linspace(0.0, 0.04, 5)).tolist() == expected.astype(int).tolist()


def test_the_default_seed_is_zero():
    t = np.linspace(0.0, 1.0, 20)
    a = LSM6DSO(constant_trace((0.1, 0.2, 0.3))).samples(t)
    b = LSM6DSO(constant_trace((0.1, 0.2, 0.3)), seed=0).samples(t)
    assert a.tolist() == b.tolist()


def test_samples_are_reproducible_for_a_seed():
    t = np.linspace(0.0, 1.0, 50)
    a = LSM6DSO(constant_trace((0.1, 0.2, 0.3)), seed=7).samples(t)
    b = LSM6DSO(constant_trace((0.1, 0.2, 0.3)), seed=7).samples(t)
    c = LSM6DSO(constant_trace((0.1, 0.2, 0.3)), seed=8).samples(t)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


# ---------------------------------------------------------------------------------------------- SimClock


class FakeTime:
    """Stands in for the ``time`` module inside device.simclock: ``monotonic()`` returns ``t``."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def monotonic(self) -> float:
        return self.t


@pytest.fixture
def wall(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(simclock, "time", fake)
    return fake


def test_clock_starts_at_zero_and_runs_at_its_time_scale(wall):
    c = SimClock(3)
    assert c.time_scale == 3.0 and type(c.time_scale) is float
    assert c.now() == 0.0
    wall.t = 102.0
    assert c.now() == 6.0


def test_clock_runs_in_real_time_by_default(wall):
    c = SimClock()
    wall.t = 101.5
    assert c.now() == 1.5


def test_clock_accepts_a_number_given_as_text(wall):
    assert SimClock("2.5").time_scale == 2.5


@pytest.mark.parametrize(
    "scale, message",
    [
        ("fast", "time_scale must be a number > 0, got 'fast'"),
        (None, "time_scale must be a number > 0, got None"),
        (0, "time_scale must be a finite number > 0 (sim s per wall s), got 0"),
        (-1.0, "time_scale must be a finite number > 0 (sim s per wall s), got -1.0"),
        (math.nan, "time_scale must be a finite number > 0 (sim s per wall s), got nan"),
        (math.inf, "time_scale must be a finite number > 0 (sim s per wall s), got inf"),
    ],
)
def test_clock_refuses_a_bad_time_scale(wall, scale, message):
    with pytest.raises(ValueError) as e:
        SimClock(scale)
    assert str(e.value) == message


def test_changing_the_time_scale_does_not_make_time_jump(wall):
    c = SimClock(1.0)
    wall.t = 102.0
    c.time_scale = 10
    assert c.time_scale == 10.0
    assert c.now() == 2.0
    wall.t = 103.0
    assert c.now() == 12.0


def test_a_refused_time_scale_change_keeps_the_clock(wall):
    c = SimClock(2.0)
    wall.t = 101.0
    with pytest.raises(ValueError) as e:
        c.time_scale = 0
    assert str(e.value) == "time_scale must be a finite number > 0 (sim s per wall s), got 0"
    assert c.time_scale == 2.0
    wall.t = 102.0
    assert c.now() == 4.0


def test_clock_waits_at_its_limit_and_resumes_from_there_without_a_jump(wall):
    c = SimClock(1.0)
    cap = [5.0]
    c.limit = lambda: cap[0]
    wall.t = 103.0
    assert c.now() == 3.0
    wall.t = 110.0
    assert c.now() == 5.0  # capped
    wall.t = 111.0
    assert c.now() == 5.0  # still waiting
    cap[0] = 20.0
    wall.t = 112.0
    assert c.now() == 6.0  # resumes from 5 s, one wall second after the last wait


def test_clock_never_goes_back_when_its_limit_does(wall):
    c = SimClock(1.0)
    cap = [100.0]
    c.limit = lambda: cap[0]
    wall.t = 107.0
    assert c.now() == 7.0
    cap[0] = 3.0
    wall.t = 108.0
    assert c.now() == 7.0
    cap[0] = 100.0
    wall.t = 109.0
    assert c.now() == 8.0  # resumes from 7 s (re-based at 108 s)


def test_clock_never_decreases_even_if_the_wall_clock_does(wall):
    c = SimClock(2.0)
    wall.t = 105.0
    assert c.now() == 10.0
    wall.t = 104.0
    assert c.now() == 10.0
    wall.t = 106.0
    assert c.now() == 12.0


def test_wall_seconds_of_simulated_time(wall):
    c = SimClock(4.0)
    assert c.wall_seconds(6) == 1.5
    assert type(c.wall_seconds(8)) is float
    c.time_scale = 0.5
    assert c.wall_seconds(3) == 6.0


def test_real_clock_moves_forward():
    c = SimClock(1000.0)
    a = c.now()
    time.sleep(0.002)
    assert c.now() > a
