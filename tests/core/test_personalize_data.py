"""The user-data side of ``odlstudio personalize``: both WISDM text variants and every quirk the issue
names (trailing ';', malformed and truncated lines reported with their line number, timestamps
restarting per activity, a 25 Hz subject resampled to 20 Hz, two records on one line), the app's own
exports, activity mapping and the chronological split (no window crosses it)."""

from __future__ import annotations

import numpy as np
import pytest

from app.core import datasets as ds
from app.core.board_round import stratified_subset
from app.core.personalize import PersonalizeError, load_user_data
from tests.datakit import real_lines, write

CLASSES = ("walking", "jogging", "stairs", "sitting", "standing")
V11_NAMES = {"A": "Walking", "B": "Jogging", "C": "Upstairs", "D": "Sitting", "E": "Standing"}


def test_wisdm2019_real_slice_split_is_chronological_and_never_crosses(tmp_path, shared_data):
    lines = real_lines(shared_data, "1600", 400)
    p = write(tmp_path, "data_1600_accel_phone.txt", lines)
    u = load_user_data(p, CLASSES, 20)
    assert u.user == "1600" and not u.skipped
    # 400 samples per activity: 240 train (stride 10 -> 23 windows), 160 test (stride 20 -> 8 windows)
    assert u.train.counts() == {c: 23 for c in CLASSES}
    assert u.test.counts() == {c: 8 for c in CLASSES}
    # windows are real data: the first training window of walking equals the first 20 records
    xyz = np.array([[float(v) for v in l.rstrip(";").split(",")[3:]] for l in lines[:20]], np.float32)
    np.testing.assert_allclose(u.train.x[0], xyz, rtol=1e-6)
    # the first test window of walking starts at record 240 (the cut), not before
    xyz_t = np.array([[float(v) for v in l.rstrip(";").split(",")[3:]] for l in lines[240:260]], np.float32)
    np.testing.assert_allclose(u.test.x[0], xyz_t, rtol=1e-6)


def test_wisdm_v11_names_two_records_per_line_and_missing_final_semicolon(tmp_path, shared_data):
    lines = real_lines(shared_data, "1600", 300)
    v11 = []
    for l in lines:
        sid, code, rest = l.split(",", 2)
        v11.append(f"33,{V11_NAMES[code]},{rest}")
    # two records glued on one line (v1.1 quirk) and the last record without ';' (truncated file)
    glued = v11[:10] + [v11[10] + v11[11]] + v11[12:]
    glued[-1] = glued[-1].rstrip(";")
    p = write(tmp_path, "WISDM_ar_v1.1_raw.txt", glued, end="")  # file cut after the last number
    rs = ds.load_wisdm(p, activities="all")
    assert rs.segments[0].dataset == "wisdm_v1.1"
    assert sorted(rs.activities()) == sorted(["walking", "jogging", "upstairs", "sitting", "standing"])
    assert sum(s.n for s in rs.segments) == len(v11) - 1  # only the truncated last record is lost
    assert len(rs.skipped) == 1 and "truncated" in rs.skipped[0].reason and rs.skipped[0].line == len(glued)
    # upstairs maps to the model's 'stairs'
    u = load_user_data(p, CLASSES, 20)
    assert u.train.counts()["stairs"] > 0 and len(u.skipped) == 1


def test_malformed_lines_are_reported_with_line_numbers_and_skipped(tmp_path, shared_data):
    lines = real_lines(shared_data, "1600", 200)
    bad = list(lines)
    bad[5] = "1600,A,252207716810782,-0.36,8.79;"  # 5 fields
    bad[50] = "1600,A,252207716810782,abc,8.79,1.05;"  # not a number
    bad[120] = "1600,A,,,,;"  # empty fields
    p = write(tmp_path, "data_1600_accel_phone.txt", bad)
    rs = ds.load_wisdm(p, activities="all")
    lines_reported = sorted(s.line for s in rs.skipped)
    assert lines_reported == [6, 51, 121]
    reasons = " ".join(s.reason for s in rs.skipped)
    assert "expected 6 comma-separated fields" in reasons and "not" in reasons
    u = load_user_data(p, CLASSES, 20)
    assert len(u.skipped) == 3 and u.info()["skipped_records"] == 3


def test_timestamps_restarting_per_activity_split_segments(tmp_path, shared_data):
    # the real file restarts the clock at each activity: every activity is its own segment
    lines = real_lines(shared_data, "1600", 200)
    ts = [int(l.split(",")[2]) for l in lines]
    assert any(b < a for a, b in zip(ts, ts[1:])), "this slice should contain a backward timestamp jump"
    p = write(tmp_path, "data_1600_accel_phone.txt", lines)
    rs = ds.load_wisdm(p, activities="all")
    assert len(rs.segments) == 5 and all(s.n == 200 for s in rs.segments)


def test_25hz_subject_is_resampled_to_the_model_rate(tmp_path, shared_data):
    lines = real_lines(shared_data, "1607", 500)  # subject 1607 records at ~25 Hz
    p = write(tmp_path, "data_1607_accel_phone.txt", lines)
    rs = ds.load_wisdm(p, activities="all", rate=None)
    assert 24.0 < rs.segments[0].native_rate < 26.0
    u = load_user_data(p, CLASSES, 20, rate=20.0)
    # 500 samples at 25 Hz = 20 s = 400 samples at 20 Hz: 240 train -> 23 windows of 20 with stride 10
    assert u.train.counts()["walking"] == 23
    assert u.rate == 20.0


def test_activity_mapping_and_errors(tmp_path, shared_data):
    p = write(tmp_path, "data_1600_accel_phone.txt", real_lines(shared_data, "1600", 200))
    u = load_user_data(p, CLASSES, 20, activities="walking,sitting")
    assert set(k for k, v in u.train.counts().items() if v) == {"walking", "sitting"}
    u2 = load_user_data(p, CLASSES, 20, activities="standing=sitting+standing")
    assert set(k for k, v in u2.train.counts().items() if v) == {"standing"}
    with pytest.raises(PersonalizeError, match="not classes of the model"):
        load_user_data(p, CLASSES, 20, activities="laying")
    with pytest.raises(PersonalizeError, match="too little data"):
        load_user_data(p, CLASSES, 400)
    with pytest.raises(PersonalizeError, match="no such file"):
        load_user_data(tmp_path / "missing.txt", CLASSES, 20)


def test_several_subjects_need_user(tmp_path, shared_data):
    d = tmp_path / "two"
    d.mkdir()
    write(d, "data_1600_accel_phone.txt", real_lines(shared_data, "1600", 200))
    write(d, "data_1604_accel_phone.txt", real_lines(shared_data, "1604", 200))
    with pytest.raises(PersonalizeError, match="choose one with --user"):
        load_user_data(d, CLASSES, 20)
    assert load_user_data(d, CLASSES, 20, user="1604").user == "1604"
    with pytest.raises(PersonalizeError, match="--user 9999 is not in"):
        load_user_data(d, CLASSES, 20, user="9999")


def test_app_wisdm_text_export_with_its_own_class_names(tmp_path, shared_data):
    from app.core.labels import Label, export_wisdm_csv

    rs = ds.load_wisdm(write(tmp_path, "data_1600_accel_phone.txt", real_lines(shared_data, "1600", 300)))
    xyz = np.concatenate([s.data for s in rs.segments])
    labels = [Label(i + 1, 15.0 * i, 15.0 * (i + 1), c) for i, c in enumerate(CLASSES)]  # 300 samples each at 20 Hz
    out = tmp_path / "export.txt"
    assert export_wisdm_csv(out, "me", xyz, 20.0, labels) == 1500
    u = load_user_data(out, CLASSES, 20)
    assert u.user == "me" and not u.skipped
    assert all(v > 0 for v in u.train.counts().values())  # 'stairs' is accepted as the app wrote it


def test_app_windows_npz_export(tmp_path, shared_data):
    from app.core.labels import Label, export_windows_npz

    rs = ds.load_wisdm(write(tmp_path, "data_1600_accel_phone.txt", real_lines(shared_data, "1600", 300)))
    xyz = np.concatenate([s.data for s in rs.segments])
    labels = [Label(i + 1, 15.0 * i, 15.0 * (i + 1), c) for i, c in enumerate(CLASSES)]
    p = tmp_path / "windows.npz"
    n = export_windows_npz(p, [(xyz, 20.0, labels)], CLASSES, 20, 10)
    u = load_user_data(p, CLASSES, 20)
    assert len(u.train) + len(u.test) < n  # the windows overlapping the cut are dropped
    assert len(u.train) > len(u.test) > 0
    with pytest.raises(PersonalizeError, match="T=20 but the model takes T=40"):
        load_user_data(p, CLASSES, 40)


def test_stratified_subset_keeps_proportions():
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    idx = stratified_subset(y, 50, seed=1)
    assert len(idx) == 50 and np.all(np.diff(idx) > 0)
    assert np.bincount(y[idx]).tolist() == [30, 15, 5]
    assert np.array_equal(stratified_subset(y, 500), np.arange(100))
