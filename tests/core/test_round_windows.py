"""What every training round trains and tests on: the chronological split per subject and activity, the windows
cut from it (training stride T/2, test stride T), the RecordingSet helpers they use, and a round's local data
from the app's store and the metrics of its confusion matrix.  Small synthetic sets whose samples are their
own index, so which sample lands in which window is checked exactly.  numpy only (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from app.core import datasets as ds
from app.core.round_config import RoundError
from app.core.round_data import LocalData, local_windows, metrics_from_confusion, model_recordings
from app.core.store import Store


def seg(subject, activity, start, n, order=0, rate=20.0, first_line=0, dataset="", dtype=np.float32) -> ds.Segment:
    """A segment whose column x holds the sample index ``start..start+n-1``, y = x + 0.5, z = -x."""
    idx = np.arange(start, start + n, dtype=np.float64)
    data = np.stack([idx, idx + 0.5, -idx], 1).astype(dtype)
    return ds.Segment(subject, activity, data, rate, "s.txt", first_line, order=order, dataset=dataset)


def rows(rs: ds.RecordingSet) -> list[tuple]:
    """(subject, activity, first x, n, first_line, order) of every segment."""
    return [(s.subject, s.activity, float(s.data[0, 0]), s.n, s.first_line, s.order) for s in rs.segments]


# ================================================================================================
# Names and order
# ================================================================================================


def test_natural_key_splits_digits_as_numbers():
    assert ds._natural_key("a10b2") == ("a", 10, "b", 2, "")
    assert ds._natural_key("10") == ("", 10, "")
    assert ds._natural_key("x") == ("x",)


def test_canonical_activity_case_spaces_dashes_and_synonyms():
    assert ds.canonical_activity("  Walking Upstairs ") == "upstairs"
    assert ds.canonical_activity("walking-downstairs") == "downstairs"
    assert ds.canonical_activity("Running") == "jogging"
    assert ds.canonical_activity("Brush Teeth") == "brush_teeth"
    assert ds.canonical_activity("SITTING") == "sitting"


def test_order_activities_known_first_in_fixed_order_then_alphabetical():
    names = ["zeta", "sitting", "alpha", "walking", "stationary", "upstairs", "sitting"]
    assert ds.order_activities(names) == ["walking", "upstairs", "sitting", "stationary", "alpha", "zeta"]
    assert ds.order_activities(iter(["teeth", "jogging"])) == ["jogging", "teeth"]


def test_activity_targets_label_set_items_and_mapping():
    assert ds.activity_targets("common4") == ("walking", "stairs", "sitting", "standing")
    assert ds.activity_targets(["Walk", "walking", "stairs=up+down", "Sit"]) == ("walking", "stairs", "sitting")
    assert ds.activity_targets("jog,walk") == ("jogging", "walking")
    assert ds.activity_targets({"Move": ["walking", "jogging"]}) == ("move",)


def test_activity_targets_errors():
    with pytest.raises(ds.DatasetError) as err:
        ds.activity_targets(["walking", "=x"])
    assert str(err.value) == "activities: '=x' names no class before '='"
    with pytest.raises(ds.DatasetError) as err:
        ds.activity_targets([])
    assert str(err.value) == "no activities selected"
    with pytest.raises(ds.DatasetError) as err:
        ds.activity_targets("")
    assert str(err.value) == "no activities selected"


def test_resolve_activities_mapping_with_merges():
    available = {"upstairs", "downstairs", "walking", "sitting"}
    got = ds.resolve_activities(["stairs", "walking"], available)
    assert got == {"upstairs": "stairs", "downstairs": "stairs", "walking": "walking"}
    # a requested upstairs is not gathered into stairs
    got = ds.resolve_activities(["stairs", "upstairs"], available)
    assert got == {"downstairs": "stairs", "upstairs": "upstairs"}
    assert ds.resolve_activities({"Move": ["walking", "jogging"]}, ["walking", "teeth"]) == {"walking": "move"}
    assert ds.resolve_activities("common4", iter(["upstairs", "standing"]), strict=False) == {
        "upstairs": "stairs",
        "standing": "standing",
    }


def test_resolve_activities_missing_raises_naming_them_unless_not_strict():
    with pytest.raises(ds.DatasetError) as err:
        ds.resolve_activities(["walking", "jogging", "laying"], {"sitting", "walking"}, "src")
    assert str(err.value) == "activities jogging, laying not found in src (available: walking, sitting)"
    with pytest.raises(ds.DatasetError) as err:
        ds.resolve_activities(["walking", "jogging"], ["walking", "sitting"])
    assert str(err.value) == "activities jogging not found (available: walking, sitting)"
    got = ds.resolve_activities(["walking", "jogging"], ["walking", "sitting"], "src", strict=False)
    assert got == {"walking": "walking"}


def test_resolve_activities_one_activity_for_two_classes_raises():
    with pytest.raises(ds.DatasetError) as err:
        ds.resolve_activities({"walking": ["sitting"], "sitting": ["sitting"]}, ["sitting"])
    assert str(err.value) == "activity 'sitting' is mapped to two classes, walking and sitting"


# ================================================================================================
# RecordingSet helpers
# ================================================================================================


def test_subjects_in_natural_order_and_activities_in_fixed_order():
    rs = ds.RecordingSet(
        [seg("10", "teeth", 0, 2), seg("2", "sitting", 0, 2), seg("u10", "walking", 0, 2), seg("1", "sitting", 0, 2)]
        + [seg("u9", "walking", 0, 2), seg("2", "walking", 0, 2)]
    )
    assert rs.subjects() == ["1", "2", "10", "u9", "u10"]
    assert rs.activities() == ["walking", "sitting", "teeth"]


def test_samples_per_subject_and_activity_adds_segments():
    rs = ds.RecordingSet(
        [seg("1", "walking", 0, 5), seg("1", "walking", 10, 2), seg("2", "walking", 0, 3), seg("1", "sitting", 0, 4)]
    )
    assert rs.samples_per() == {("1", "walking"): 7, ("2", "walking"): 3, ("1", "sitting"): 4}


def test_summary_text():
    segs = [seg("1", "walking", 0, 5), seg("2", "walking", 0, 3), seg("1", "sitting", 0, 4)]
    rs = ds.RecordingSet(segs, "src", n_skipped=1234)
    assert rs.summary() == (
        "src: 2 subjects, 3 segments, 12 samples at 20 Hz (walking 8, sitting 4); 1,234 records skipped"
    )
    mixed = ds.RecordingSet([*segs, seg("3", "teeth", 0, 2, rate=12.5)], "m", skipped=[ds.SkippedLine("m", 3, "bad")])
    assert mixed.summary() == (
        "m: 3 subjects, 4 segments, 14 samples at mixed rates (walking 8, sitting 4, teeth 2); 1 records skipped"
    )
    odd = ds.RecordingSet([seg("1", "walking", 0, 5, rate=12.5)], "o")
    assert odd.summary() == "o: 1 subjects, 1 segments, 5 samples at 12.5 Hz (walking 5); 0 records skipped"


def _three_subjects() -> ds.RecordingSet:
    return ds.RecordingSet(
        [
            seg("1", "walking", 0, 3),
            seg("10", "walking", 10, 3),
            seg("2", "sitting", 20, 3),
            seg("1", "sitting", 30, 3),
        ],
        "src",
        "g",
        [ds.SkippedLine("src", 4, "bad")],
        ["a note"],
        7,
    )


def test_derived_sets_keep_source_units_skipped_and_notes_as_copies():
    rs = _three_subjects()
    out = rs.without_subjects([])
    assert out.segments == rs.segments and out.segments is not rs.segments
    assert (out.source, out.units, out.n_skipped, out.skipped_count) == ("src", "g", 7, 7)
    assert out.skipped == [ds.SkippedLine("src", 4, "bad")] and out.skipped is not rs.skipped
    assert out.notes == ["a note"] and out.notes is not rs.notes
    out.notes.append("more")
    out.skipped.append(ds.SkippedLine("src", 9, "worse"))
    assert rs.notes == ["a note"] and len(rs.skipped) == 1


def test_for_subjects_keeps_them_in_recording_order_ints_accepted():
    rs = _three_subjects()
    assert [(s.subject, float(s.data[0, 0])) for s in rs.for_subjects([10, "1"]).segments] == [
        ("1", 0.0),
        ("10", 10.0),
        ("1", 30.0),
    ]
    assert rs.for_subjects([2]).source == "src"


def test_for_subjects_unknown_raises_naming_them():
    with pytest.raises(ds.DatasetError) as err:
        _three_subjects().for_subjects(["x", "11", "1", 3])
    assert str(err.value) == "subjects 3, 11, x are not in src (available: 1, 2, 10)"


def test_without_subjects_drops_them_ints_accepted():
    rs = _three_subjects()
    assert [s.subject for s in rs.without_subjects([2, "10"]).segments] == ["1", "1"]
    assert [s.subject for s in rs.without_subjects(["nobody"]).segments] == ["1", "10", "2", "1"]


def _stairs_set(notes=()) -> ds.RecordingSet:
    segs = [seg("1", "walking", 0, 2), seg("1", "upstairs", 10, 2), seg("1", "downstairs", 20, 2)]
    return ds.RecordingSet([*segs, seg("1", "teeth", 30, 2)], "src", notes=list(notes))


def test_select_none_or_all_keeps_everything():
    rs = _stairs_set(["n"])
    for spec in (None, "all"):
        out = rs.select(spec)
        assert out.segments == rs.segments and out.segments is not rs.segments
        assert out.notes == ["n"] and out.source == "src"


def test_select_renames_and_leaves_out_the_rest():
    rs = _stairs_set()
    out = rs.select(["walking", "stairs"])
    assert [(s.activity, float(s.data[0, 0])) for s in out.segments] == [
        ("walking", 0.0),
        ("stairs", 10.0),
        ("stairs", 20.0),
    ]
    assert out.notes == [] and out.source == "src"
    assert [s.activity for s in rs.segments] == ["walking", "upstairs", "downstairs", "teeth"]  # unchanged


def test_select_missing_activity_noted_or_raised_when_strict():
    rs = _stairs_set(["earlier"])
    msg = "activities jogging not found in src (available: walking, upstairs, downstairs, teeth)"
    out = rs.select(["walking", "jogging"])
    assert [s.activity for s in out.segments] == ["walking"]
    assert out.notes == ["earlier", msg] and rs.notes == ["earlier"]
    with pytest.raises(ds.DatasetError) as err:
        rs.select(["walking", "jogging"], strict=True)
    assert str(err.value) == msg


def test_select_missing_activity_noted_others_still_renamed():
    out = _stairs_set().select(["stairs", "jogging"])
    assert [(s.activity, float(s.data[0, 0])) for s in out.segments] == [("stairs", 10.0), ("stairs", 20.0)]
    assert out.notes == ["activities jogging not found in src (available: walking, upstairs, downstairs, teeth)"]


def test_select_nothing_present_always_raises():
    with pytest.raises(ds.DatasetError) as err:
        _stairs_set().select(["jogging"])
    assert str(err.value) == "activities jogging not found in src (available: walking, upstairs, downstairs, teeth)"


def test_resampled_changes_only_other_rates_and_drops_empty():
    same = seg("1", "walking", 0, 4, rate=20.0)
    const = ds.Segment("1", "sitting", np.full((8, 3), 2.0, np.float32), 40.0, first_line=5, order=1)
    one = ds.Segment("1", "sitting", np.full((1, 3), 3.0, np.float32), 40.0, order=2)
    empty = ds.Segment("1", "sitting", np.zeros((0, 3), np.float32), 40.0, order=3)
    rs = ds.RecordingSet([same, const, one, empty], "src", notes=["n"])
    out = rs.resampled(20)
    assert out.segments[0] is same
    assert [(s.n, s.rate, s.first_line, s.order) for s in out.segments] == [
        (4, 20.0, 0, 0),
        (4, 20.0, 5, 1),
        (1, 20.0, 0, 2),
    ]
    assert all(type(s.rate) is float for s in out.segments)
    np.testing.assert_allclose(out.segments[1].data, 2.0, atol=1e-5)
    np.testing.assert_allclose(out.segments[2].data, 3.0, atol=1e-5)
    assert out.notes == ["n"] and out.source == "src"
    assert [s.n for s in rs.segments] == [4, 8, 1, 0]  # unchanged


def test_resampled_none_keeps_everything():
    rs = ds.RecordingSet([seg("1", "walking", 0, 4, rate=20.0), seg("1", "walking", 0, 0, rate=40.0)], "src")
    out = rs.resampled(None)
    assert out.segments == rs.segments and out.segments is not rs.segments


def test_resampled_to_1_hz_or_below_is_allowed():
    rs = ds.RecordingSet([seg("1", "sitting", 0, 4, rate=1.0), seg("1", "sitting", 0, 4, rate=2.0)], "src")
    assert [(s.n, s.rate) for s in rs.resampled(1).segments] == [(4, 1.0), (2, 1.0)]
    assert [(s.n, s.rate) for s in rs.resampled(0.5).segments] == [(2, 0.5), (1, 0.5)]


@pytest.mark.parametrize("rate", [0, -5.0])
def test_resampled_refuses_a_rate_not_above_zero(rate):
    with pytest.raises(ds.DatasetError) as err:
        ds.RecordingSet([seg("1", "walking", 0, 4)], "src").resampled(rate)
    assert str(err.value) == f"rate must be > 0 Hz, got {rate}"


def test_concat_with_and_without_prefixed_subjects():
    a = seg("1", "walking", 0, 2, dataset="wisdm")
    b = seg("1", "sitting", 10, 2, dataset="hapt")
    c = seg("2", "sitting", 20, 2, dataset="hapt")
    rs1 = ds.RecordingSet([a], "w", "g", [ds.SkippedLine("w", 3, "bad")], ["n1"], n_skipped=5)
    rs2 = ds.RecordingSet([b, c], "h", skipped=[ds.SkippedLine("h", 7, "x")], notes=["n2"])
    out = ds.RecordingSet.concat([rs1, rs2], prefix_subjects=True)
    assert [(s.subject, float(s.data[0, 0])) for s in out.segments] == [
        ("wisdm/1", 0.0),
        ("hapt/1", 10.0),
        ("hapt/2", 20.0),
    ]
    assert (out.source, out.units, out.n_skipped, out.skipped_count) == ("w + h", "m/s^2", 6, 6)
    assert out.skipped == [ds.SkippedLine("w", 3, "bad"), ds.SkippedLine("h", 7, "x")]
    assert out.notes == ["n1", "n2"]
    assert [s.subject for s in rs2.segments] == ["1", "2"]  # unchanged
    plain = ds.RecordingSet.concat([rs1, rs2])
    assert plain.segments[0] is a and plain.segments[1] is b and plain.segments[2] is c
    assert rs1.notes == ["n1"] and len(rs1.skipped) == 1


# ================================================================================================
# Chronological split
# ================================================================================================


def _split_set() -> ds.RecordingSet:
    return ds.RecordingSet(
        [
            seg("1", "walking", 100, 4, order=1, first_line=101),
            seg("1", "walking", 0, 6, order=0, first_line=1),
            seg("2", "walking", 200, 5, order=0, first_line=1),
            seg("1", "sitting", 300, 5, order=0, first_line=11),
            seg("2", "walking", 210, 5, order=1, first_line=20),
        ],
        "src",
        notes=["n"],
    )


def test_split_chronological_per_subject_and_activity_cuts_straddling_segments():
    """cut = round(0.6 * samples) per (subject, activity) in recording order; a segment ending exactly at the
    cut stays whole in training, one straddling it is cut (the test part's first_line moves on)."""
    train, test = ds.split_chronological(_split_set(), 0.6)
    assert rows(train) == [
        ("1", "walking", 0.0, 6, 1, 0),  # 6 of 10: ends exactly at the cut
        ("2", "walking", 200.0, 5, 1, 0),
        ("2", "walking", 210.0, 1, 20, 1),  # 6 of 10: straddles
        ("1", "sitting", 300.0, 3, 11, 0),  # 3 of 5
    ]
    assert rows(test) == [
        ("1", "walking", 100.0, 4, 101, 1),
        ("2", "walking", 211.0, 4, 21, 1),
        ("1", "sitting", 303.0, 2, 14, 0),
    ]
    assert test.segments[2].data.tolist() == [[303.0, 303.5, -303.0], [304.0, 304.5, -304.0]]
    assert train.segments[3].data[:, 0].tolist() == [300.0, 301.0, 302.0]
    assert (train.source, test.source, train.notes, test.notes) == ("src", "src", ["n"], ["n"])


def test_split_chronological_rounds_the_cut():
    rs = ds.RecordingSet([seg("1", "walking", 0, 5)])
    train, test = ds.split_chronological(rs, 0.55)  # 2.75 -> 3
    assert [s.n for s in train.segments] == [3] and [s.n for s in test.segments] == [2]
    train, test = ds.split_chronological(rs, 0.3)  # 1.5 -> 2 (round half to even)
    assert [s.n for s in train.segments] == [2] and [s.n for s in test.segments] == [3]


def test_split_chronological_default_fraction_is_60_percent():
    train, test = ds.split_chronological(ds.RecordingSet([seg("1", "walking", 0, 10)]))
    assert [s.n for s in train.segments] == [6] and [s.n for s in test.segments] == [4]


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.5, 1.5])
def test_split_chronological_refuses_fraction_outside_0_1(frac):
    with pytest.raises(ds.DatasetError) as err:
        ds.split_chronological(ds.RecordingSet([seg("1", "walking", 0, 10)]), frac)
    assert str(err.value) == f"train_fraction must be between 0 and 1 (exclusive), got {frac}"


# ================================================================================================
# Windows
# ================================================================================================


def _window_set() -> ds.RecordingSet:
    return ds.RecordingSet(
        [
            seg("1", "sitting", 0, 7, dtype=np.float64),
            seg("1", "walking", 100, 5, dtype=np.float64),
            seg("2", "walking", 200, 2),
            seg("3", "teeth", 300, 10),
        ],
        "src",
    )


def test_make_windows_given_classes_stride_and_left_out_activities():
    ws = ds.make_windows(_window_set(), 3, 2, ("walking", "sitting", "jogging"))
    assert ws.x.shape == (5, 3, 3) and ws.x.dtype == np.float32
    assert ws.x[:, 0, 0].tolist() == [0.0, 2.0, 4.0, 100.0, 102.0]
    assert ws.x[:, -1, 0].tolist() == [2.0, 4.0, 6.0, 102.0, 104.0]
    assert ws.x[0].tolist() == [[0.0, 0.5, -0.0], [1.0, 1.5, -1.0], [2.0, 2.5, -2.0]]
    assert ws.y.tolist() == [1, 1, 1, 0, 0] and ws.y.dtype == np.int64
    assert ws.subjects.tolist() == ["1"] * 5 and ws.subjects.dtype == object
    assert (ws.classes, ws.T, ws.rate, ws.stride, len(ws)) == (("walking", "sitting", "jogging"), 3, 20.0, 2, 5)
    assert ws.counts() == {"walking": 2, "sitting": 3, "jogging": 0}


def test_make_windows_default_classes_and_stride_T():
    ws = ds.make_windows(_window_set(), 3)
    assert ws.classes == ("walking", "sitting", "teeth") and ws.stride == 3
    assert ws.x[:, 0, 0].tolist() == [0.0, 3.0, 100.0, 300.0, 303.0, 306.0]
    assert ws.y.tolist() == [1, 1, 0, 2, 2, 2]
    assert ws.subjects.tolist() == ["1", "1", "1", "3", "3", "3"]
    assert ws.counts() == {"walking": 1, "sitting": 2, "teeth": 3}


def test_make_windows_T_1_stride_1_every_sample():
    ws = ds.make_windows(ds.RecordingSet([seg("1", "walking", 5, 3)]), 1, 1)
    assert ws.x.tolist() == [[[5.0, 5.5, -5.0]], [[6.0, 6.5, -6.0]], [[7.0, 7.5, -7.0]]]


def test_make_windows_nothing_left_has_empty_arrays_of_right_shape():
    rs = ds.RecordingSet([seg("1", "walking", 0, 10, rate=20.0), seg("1", "sitting", 0, 2, rate=50.0)])
    ws = ds.make_windows(rs, 4, classes=("jogging", "sitting"))
    assert ws.x.shape == (0, 4, 3) and ws.x.dtype == np.float32
    assert ws.y.shape == (0,) and ws.y.dtype == np.int64
    assert ws.subjects.shape == (0,) and ws.subjects.dtype == object
    assert (ws.classes, ws.T, ws.rate, ws.stride, len(ws)) == (("jogging", "sitting"), 4, None, 4, 0)
    assert ws.counts() == {"jogging": 0, "sitting": 0}


@pytest.mark.parametrize(
    ("T", "stride", "shown"), [(0, None, "T=0, stride=0"), (2, 0, "T=2, stride=0"), (-1, 3, "T=-1, stride=3")]
)
def test_make_windows_refuses_T_or_stride_below_1(T, stride, shown):
    with pytest.raises(ds.DatasetError) as err:
        ds.make_windows(_window_set(), T, stride)
    assert str(err.value) == f"window size T and stride must be >= 1 (got {shown})"


def test_window_subset_keeps_classes_T_rate_stride():
    ws = ds.make_windows(_window_set(), 3, 2, ("walking", "sitting"))
    sub = ws.subset(np.array([True, False, False, True, True]))
    assert sub.x[:, 0, 0].tolist() == [0.0, 100.0, 102.0]
    assert sub.y.tolist() == [1, 0, 0] and sub.subjects.tolist() == ["1", "1", "1"]
    assert (sub.classes, sub.T, sub.rate, sub.stride, len(sub)) == (("walking", "sitting"), 3, 20.0, 2, 3)
    assert sub.counts() == {"walking": 2, "sitting": 1}


# ================================================================================================
# The personal split
# ================================================================================================


def _personal_set() -> ds.RecordingSet:
    return ds.RecordingSet(
        [seg("1", "walking", 0, 20), seg("1", "jogging", 100, 1, order=1), seg("2", "sitting", 200, 50)], "src"
    )


def test_personal_split_one_subject_strides_T_half_and_T_same_classes():
    train, test = ds.personal_split(_personal_set(), 5, subject=1)
    # walking 20 samples: train 0..11 (stride 2), test 12..19 (stride 5); jogging's 1 sample: train only
    assert train.x[:, 0, 0].tolist() == [0.0, 2.0, 4.0, 6.0]
    assert train.x[:, -1, 0].tolist() == [4.0, 6.0, 8.0, 10.0]
    assert test.x[:, 0, 0].tolist() == [12.0]
    assert train.classes == test.classes == ("walking", "jogging")
    assert (train.stride, test.stride, train.T, test.T) == (2, 5, 5, 5)
    assert train.counts() == {"walking": 4, "jogging": 0} and test.counts() == {"walking": 1, "jogging": 0}
    assert set(train.subjects.tolist()) == set(test.subjects.tolist()) == {"1"}


def test_personal_split_fraction_and_classes_given_all_subjects():
    train, test = ds.personal_split(_personal_set(), 5, 0.5, classes=("sitting", "walking"))
    # walking: train 0..9 -> starts 0, 2, 4; test 10..19 -> 10, 15.  sitting: train 200..224 -> 11, test 225..249 -> 5
    assert train.x[:, 0, 0].tolist() == [0.0, 2.0, 4.0, *[200.0 + 2 * i for i in range(11)]]
    assert test.x[:, 0, 0].tolist() == [10.0, 15.0, 225.0, 230.0, 235.0, 240.0, 245.0]
    assert train.y.tolist() == [1] * 3 + [0] * 11 and test.y.tolist() == [1, 1, 0, 0, 0, 0, 0]
    assert train.classes == test.classes == ("sitting", "walking")


def test_personal_split_T_1_trains_with_stride_1():
    train, test = ds.personal_split(ds.RecordingSet([seg("1", "walking", 0, 5)]), 1)
    assert (train.stride, test.stride) == (1, 1)
    assert train.x[:, 0, 0].tolist() == [0.0, 1.0, 2.0] and test.x[:, 0, 0].tolist() == [3.0, 4.0]


def test_personal_split_odd_T_stride_rounds_down():
    train, _ = ds.personal_split(ds.RecordingSet([seg("1", "walking", 0, 20)]), 3)
    assert train.stride == 1 and len(train) == 10


# ================================================================================================
# A round's local data from the store
# ================================================================================================


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db")
    yield s
    s.close()


def _dataset(store: Store) -> int:
    return store.create_dataset(store.ensure_user("me").id, "mine", ("Walking", "Sitting")).id


def _record(store: Store, did: int, n: int, labels, rate: float = 20.0, name: str = "rec") -> int:
    """An accel recording whose x = sample index, y = 1000 + index, z = -index, with ``labels`` (s)."""
    from app.core.recording import write_accel

    i = np.arange(n, dtype=np.float32)
    rec = write_accel(store, name, np.stack([i, 1000 + i, -i], 1), rate, did)
    for a, b, lab in labels:
        store.add_label(rec.id, a, b, lab)
    return rec.id


def test_model_recordings_no_labels_raises(store):
    did = _dataset(store)
    _record(store, did, 40, [])
    with pytest.raises(RoundError) as err:
        model_recordings(store, did, ("Walking",))
    assert str(err.value) == (
        "the current dataset has no labelled accelerometer recording: record and label some activities in the "
        "Labelling panel first"
    )


def test_model_recordings_no_label_is_a_class_raises(store):
    did = _dataset(store)
    _record(store, did, 80, [(0.0, 2.0, "Teeth"), (2.0, 4.0, "cooking")])
    with pytest.raises(RoundError) as err:
        model_recordings(store, did, ("Walking", "Sitting"))
    assert str(err.value) == (
        "none of the labelled activities (cooking, teeth) is a class of the model (Walking, Sitting)"
    )


def test_model_recordings_named_as_the_model_others_noted(store):
    did = _dataset(store)
    labels = [(0.0, 1.0, "walking"), (1.0, 2.0, "Teeth"), (2.0, 3.0, "Upstairs"), (3.0, 4.0, "cooking")]
    _record(store, did, 80, labels)
    rs, notes = model_recordings(store, did, ["Walking", "Stairs"], user="me")
    assert [(s.subject, s.activity, float(s.data[0, 0]), s.n, s.rate) for s in rs.segments] == [
        ("me", "Walking", 0.0, 20, 20.0),
        ("me", "Stairs", 40.0, 20, 20.0),
    ]
    assert notes == ["labels cooking, teeth are not classes of the model (Walking, Stairs) and were left out"]
    rs, _ = model_recordings(store, did, ["Walking", "Stairs"])
    assert {s.subject for s in rs.segments} == {"user"}


def test_model_recordings_unsplit_stairs_left_out_for_up_and_downstairs_model(store):
    did = _dataset(store)
    _record(store, did, 80, [(0.0, 2.0, "Walking"), (2.0, 4.0, "Stairs")])
    rs, notes = model_recordings(store, did, ("Walking", "Upstairs", "Downstairs"))
    assert [s.activity for s in rs.segments] == ["Walking"]
    assert notes == ["labels stairs are not classes of the model (Walking, Upstairs, Downstairs) and were left out"]


def test_model_recordings_and_local_windows_read_only_the_given_dataset(store):
    did = _dataset(store)
    other = store.create_dataset(store.ensure_user("me").id, "other", ("Walking", "Sitting")).id
    _record(store, did, 80, [(0.0, 4.0, "Walking")])
    _record(store, other, 80, [(0.0, 4.0, "Sitting")], name="elsewhere")
    rs, _ = model_recordings(store, did, ("Walking", "Sitting"))
    assert [(s.activity, s.n) for s in rs.segments] == [("Walking", 80)]
    data = local_windows(store, did, ("Walking", "Sitting"), 4, 20.0)
    assert data.counts() == {"Walking": (23, 8), "Sitting": (0, 0)}
    assert data.notes == [
        "no labelled windows for Sitting: the round cannot improve them",
        "only Walking is labelled: a round on one activity can only teach the model to answer Walking, and its "
        "macro-F1 is that one class's F1 — label at least two activities to personalize meaningfully",
    ]


def test_local_windows_names_every_class_without_windows(store):
    did = _dataset(store)
    _record(store, did, 80, [(0.0, 4.0, "Sitting")])
    data = local_windows(store, did, ("Walking", "Sitting", "Jogging"), 4, 20.0)
    assert data.notes == [
        "no labelled windows for Walking, Jogging: the round cannot improve them",
        "only Sitting is labelled: a round on one activity can only teach the model to answer Sitting, and its "
        "macro-F1 is that one class's F1 — label at least two activities to personalize meaningfully",
    ]


def test_model_recordings_resampled_to_the_model_rate(store):
    did = _dataset(store)
    _record(store, did, 80, [(0.0, 2.0, "Walking"), (2.0, 4.0, "Sitting")])
    rs, notes = model_recordings(store, did, ("Walking", "Sitting"), rate_hz=10)
    assert [(s.activity, s.n, s.rate) for s in rs.segments] == [("Walking", 20, 10.0), ("Sitting", 20, 10.0)]
    assert notes == []
    rs, _ = model_recordings(store, did, ("Walking", "Sitting"))
    assert [(s.n, s.rate) for s in rs.segments] == [(40, 20.0), (40, 20.0)]


def test_local_windows_split_strides_classes_and_missing_note(store):
    did = _dataset(store)
    _record(store, did, 80, [(0.0, 2.0, "Walking"), (2.0, 4.0, "Sitting")])
    data = local_windows(store, did, ["Walking", "Sitting", "Jogging"], 4, 20.0)
    assert data.classes == ("Walking", "Sitting", "Jogging")
    # walking 0..39: train 0..23 (stride 2: 11 windows), test 24..39 (stride 4: 4); sitting 40..79 likewise
    assert data.train_x.shape == (22, 4, 3) and data.test_x.shape == (8, 4, 3)
    assert data.train_x[:, 0, 0].tolist() == [*range(0, 21, 2), *range(40, 61, 2)]
    assert data.test_x[:, 0, 0].tolist() == [24, 28, 32, 36, 64, 68, 72, 76]
    assert data.train_x[0].tolist() == [[0, 1000, 0], [1, 1001, -1], [2, 1002, -2], [3, 1003, -3]]
    assert data.train_y.tolist() == [0] * 11 + [1] * 11 and data.test_y.tolist() == [0] * 4 + [1] * 4
    assert data.counts() == {"Walking": (11, 4), "Sitting": (11, 4), "Jogging": (0, 0)}
    assert data.notes == ["no labelled windows for Jogging: the round cannot improve them"]


def test_local_windows_fraction_user_and_rate(store):
    did = _dataset(store)
    _record(store, did, 80, [(0.0, 2.0, "Walking"), (2.0, 4.0, "Sitting")])
    half = local_windows(store, did, ("Walking", "Sitting"), 4, 20.0, train_fraction=0.5, user="me")
    assert half.counts() == {"Walking": (9, 5), "Sitting": (9, 5)} and half.notes == []
    # at 10 Hz each label has 20 samples: train 12 (5 windows), test 8 (2)
    slow = local_windows(store, did, ("Walking", "Sitting"), 4, 10.0)
    assert slow.counts() == {"Walking": (5, 2), "Sitting": (5, 2)}


def test_local_data_counts_per_class():
    d = LocalData(
        np.zeros((4, 2, 3)), np.array([0, 2, 2, 0]), np.zeros((3, 2, 3)), np.array([1, 2, 2]), ("a", "b", "c")
    )
    assert d.counts() == {"a": (2, 0), "b": (0, 1), "c": (2, 2)}
    assert d.notes == []


def test_local_windows_too_few_windows_raises(store):
    did = _dataset(store)
    _record(store, did, 30, [(0.0, 1.5, "Walking")])
    with pytest.raises(RoundError) as err:
        local_windows(store, did, ("Walking", "Sitting"), 16, 20.0)
    assert str(err.value) == (
        "1.5 s of usable labels give 1 training and 0 test windows of T=16 at 20 Hz: label more data "
        "(each activity needs at least ~2 s)"
    )
    with pytest.raises(RoundError) as err:
        local_windows(store, did, ("Walking", "Sitting"), 16, 20.0, train_fraction=0.3)
    assert str(err.value) == (
        "1.5 s of usable labels give 0 training and 1 test windows of T=16 at 20 Hz: label more data "
        "(each activity needs at least ~2 s)"
    )
    with pytest.raises(RoundError) as err:
        local_windows(store, did, ("Walking", "Sitting"), 16, 12.5)
    assert str(err.value) == (
        "1.5 s of usable labels give 0 training and 0 test windows of T=16 at 12.5 Hz: label more data "
        "(each activity needs at least ~3 s)"
    )


# ================================================================================================
# Metrics
# ================================================================================================


def test_metrics_from_confusion_exact_values_class_absent_from_test_set():
    cm = [[3, 1, 0], [0, 0, 0], [1, 0, 5]]  # rows = true class; class b never in the test set
    m = metrics_from_confusion(np.array(cm), ("a", "b", "c"), np.float32(0.25))
    assert m == {
        "n": 10,
        "accuracy": 0.8,
        "macro_f1": pytest.approx((0.75 + 10 / 11) / 2, abs=1e-12),
        "per_class_f1": {"a": 0.75, "c": pytest.approx(10 / 11, abs=1e-12)},
        "confusion": cm,
        "classes": ["a", "b", "c"],
        "loss": 0.25,
    }
    assert type(m["loss"]) is float and type(m["accuracy"]) is float and type(m["macro_f1"]) is float
    assert all(type(v) is float for v in m["per_class_f1"].values())


def test_metrics_from_confusion_asymmetric_errors_and_no_loss():
    cm = [[0, 2], [1, 1]]  # a: tp 0; b: tp 1, predicted 3 times, true 2 times
    m = metrics_from_confusion(cm, ["a", "b"])
    assert m["n"] == 4 and m["accuracy"] == 0.25
    assert m["per_class_f1"] == {"a": 0.0, "b": pytest.approx(2 / 5, abs=1e-12)}
    assert m["macro_f1"] == pytest.approx(0.2, abs=1e-12)
    assert m["loss"] is None and m["confusion"] == cm


def test_metrics_from_confusion_empty_test_set():
    m = metrics_from_confusion(np.zeros((2, 2)), ("a", "b"), 1.5)
    assert m == {
        "n": 0,
        "accuracy": None,
        "macro_f1": None,
        "per_class_f1": {},
        "confusion": [[0, 0], [0, 0]],
        "classes": ["a", "b"],
        "loss": 1.5,
    }
    assert type(m["confusion"][0][0]) is int
