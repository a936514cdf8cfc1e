"""WISDM (both variants, every known quirk), HAPT, resampling, ST preprocessing, chronological split and
windowing.  numpy only (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core import datasets as ds
from app.core import preprocess as pp


def _lines_2019(subject: int, code: str, n: int, t0: int, dt_ns: int, rng: np.random.Generator) -> list[str]:
    xyz = rng.normal(size=(n, 3)) + [0.0, 9.8, 0.0]
    return [f"{subject},{code},{t0 + i * dt_ns},{x:.6f},{y:.6f},{z:.6f};" for i, (x, y, z) in enumerate(xyz)]


# --------------------------------------------------------------------------------------------------
# WISDM-2019 synthetic file with every quirk
# --------------------------------------------------------------------------------------------------


def test_wisdm2019_synthetic_quirks_reported_with_line_numbers(tmp_path: Path):
    rng = np.random.default_rng(0)
    lines = _lines_2019(1600, "A", 400, 900_000_000_000, 50_000_000, rng)  # lines 1..400
    lines[9] = "1600,A,900500000000,1.0,2.0;"  # line 10: 5 fields
    lines[19] = "1600,A,901000000000,abc,2.0,3.0;"  # line 20: non-numeric x
    lines += [""]  # line 401: blank (ignored silently)
    # activity B: timestamps restart (smaller than A's)
    lines += _lines_2019(1600, "B", 300, 100_000_000_000, 50_000_000, rng)  # lines 402..701
    lines += ["1600,N,100,1.0,2.0,3.0;"]  # line 702: unknown code (there is no N)
    lines += _lines_2019(1600, "D", 200, 5_000_000_000, 50_000_000, rng)  # 703..902
    text = "\n".join(lines) + "\n1600,D,6,1.0,2.0,3.0"  # line 903: truncated, no ';' at EOF
    f = tmp_path / "data_1600_accel_phone.txt"
    f.write_text(text)
    rs = ds.load_wisdm(f, activities="all", rate=None)
    reasons = {s.line: s.reason for s in rs.skipped}
    assert "found 5" in reasons[10]
    assert "not a finite number" in reasons[20]
    assert "unknown activity 'N'" in reasons[702]
    assert "truncated" in reasons[903]
    assert set(reasons) == {10, 20, 702, 903}
    assert all(str(f) in str(s) for s in rs.skipped)
    # segments by activity, in order, with the right lengths
    assert [(s.activity, s.n) for s in rs.segments] == [("walking", 398), ("jogging", 300), ("sitting", 200)]
    assert rs.segments[0].first_line == 1 and rs.segments[1].first_line == 402
    assert rs.rate == 20.0
    assert rs.segments[0].data.dtype == np.float32


def test_wisdm2019_gap_splits_segment_and_default_activities(tmp_path: Path):
    rng = np.random.default_rng(1)
    a1 = _lines_2019(1601, "A", 100, 0 + 10**9, 50_000_000, rng)
    a2 = _lines_2019(1601, "A", 100, 10**9 + 100 * 50_000_000 + 5 * 10**9, 50_000_000, rng)  # 5 s gap
    g = _lines_2019(1601, "G", 50, 10**12, 50_000_000, rng)  # teeth: not a default activity
    f = tmp_path / "data_1601_accel_phone.txt"
    f.write_text("\n".join(a1 + a2 + g) + "\n")
    rs = ds.load_wisdm(f)
    assert [s.n for s in rs.segments] == [100, 100]
    assert rs.activities() == ["walking"]
    assert any("gaps" in n for n in rs.notes)
    assert any("jogging" in n and "not found" in n for n in rs.notes)  # this user lacks them: noted
    with pytest.raises(ds.DatasetError, match="jogging"):
        ds.load_wisdm(f, activities=["jogging"])  # nothing requested is there
    with pytest.raises(ds.DatasetError, match="jogging"):
        ds.load_wisdm(f, activities="all").select(["walking", "jogging"], strict=True)


def test_wisdm2019_25hz_subject_resampled_to_20(tmp_path: Path):
    rng = np.random.default_rng(2)
    f = tmp_path / "data_1607_accel_phone.txt"
    f.write_text("\n".join(_lines_2019(1607, "A", 2500, 10**9, 39_900_000, rng)) + "\n")
    native = ds.load_wisdm(f, rate=None)
    assert native.rate == 25.0 and abs(native.segments[0].native_rate - 25.06) < 0.01
    assert any("25.06 Hz" in n for n in native.notes)
    rs = ds.load_wisdm(f, rate=20.0)
    assert rs.rate == 20.0 and rs.segments[0].n == 2000


# --------------------------------------------------------------------------------------------------
# WISDM v1.1 synthetic file
# --------------------------------------------------------------------------------------------------

V11 = """33,Jogging,49105962326000,-0.6946377,12.680544,0.50395286;
33,Jogging,49106062271000,5.012288,11.264028,0.95342433;
33,Jogging,49106112167000,4.903325,10.882658,-0.08172209;33,Jogging,49106222305000,-0.61291564,18.496431,3.0237172;
33,Jogging,49106332290000,-1.1849703,12.108489,7.205164;
20,Walking,0,0,0,0.0;
19, Upstairs, 2000000000, 1.0, 9.0, 0.5;
19,Upstairs,2050000000,1.1,9.1,0.4;
19,Downstairs,4000000000,1.2,9.2,;
19,Downstairs,4050000000,1.3,9.3,0.2;
19,Downstairs,4100000000,1.3,9.3,0.2;


"""


def test_wisdm_v11_quirks(tmp_path: Path):
    f = tmp_path / "WISDM_ar_v1.1_raw.txt"
    f.write_text(V11)
    rs = ds.load_wisdm(f, variant="auto", activities=["jogging", "stairs"], rate=None)
    reasons = {s.line: s.reason for s in rs.skipped}
    assert "timestamp 0" in reasons[5]  # placeholder record
    assert "not a finite number" in reasons[8]  # missing z
    assert len(rs.skipped) == 2
    jog = [s for s in rs.segments if s.activity == "jogging"]
    assert sum(s.n for s in jog) == 5  # two records on line 3 are both kept
    stairs = [s for s in rs.segments if s.activity == "stairs"]  # upstairs + downstairs merged
    assert sum(s.n for s in stairs) == 4 and {s.raw_activity for s in stairs} == {"Upstairs", "Downstairs"}
    assert stairs[0].data[0].tolist() == pytest.approx([1.0, 9.0, 0.5])  # spaces after commas
    with pytest.raises(ds.DatasetError, match="looks like WISDM v1.1"):
        ds.load_wisdm(f, variant="2019")
    six = ds.load_wisdm(f, activities="wisdm6", rate=None)
    assert six.activities() == ["jogging", "upstairs", "downstairs"]  # walking had only the placeholder
    assert any("walking" in n for n in six.notes)


def test_bad_arguments_and_missing_files(tmp_path: Path):
    with pytest.raises(ds.DatasetError, match="no such file"):
        ds.load_wisdm(tmp_path / "nope.txt")
    with pytest.raises(ds.DatasetError, match="no WISDM files"):
        ds.load_wisdm(tmp_path)
    with pytest.raises(ds.DatasetError, match="variant"):
        ds.load_wisdm(tmp_path, variant="v3")
    bad = tmp_path / "data_1_accel_phone.txt"
    bad.write_text("garbage\nmore garbage\n")
    with pytest.raises(ds.DatasetError, match="no valid WISDM records"):
        ds.load_wisdm(bad)


def test_wisdm_files_with_nothing_in_them_say_so(tmp_path):
    """Was: "no valid WISDM records (0 skipped)" for an empty file, which a user reads as a parser failure."""
    f = tmp_path / "data_1_accel_phone.txt"
    f.write_text("")
    with pytest.raises(ds.DatasetError) as e:
        ds.load_wisdm(f)
    assert str(e.value) == f"{f}: is empty; {ds.WISDM_EXPECTED}"
    f.write_text("\n \n\n")
    with pytest.raises(ds.DatasetError) as e:
        ds.load_wisdm(f)
    assert str(e.value) == f"{f}: holds no records, only blank lines; {ds.WISDM_EXPECTED}"
    (tmp_path / "data_2_accel_phone.txt").write_text("")
    with pytest.raises(ds.DatasetError) as e:
        ds.load_wisdm(tmp_path)
    assert str(e.value) == f"{tmp_path}: holds 2 files with no records; {ds.WISDM_EXPECTED}"
    f.write_text("")
    with pytest.raises(ds.DatasetError) as e:
        ds.load_wisdm(tmp_path)
    assert str(e.value) == f"{tmp_path}: holds 2 files, all empty; {ds.WISDM_EXPECTED}"


# --------------------------------------------------------------------------------------------------
# Real slices
# --------------------------------------------------------------------------------------------------


def _naive_parse(text: str) -> np.ndarray:
    rows = [ln.rstrip(";").split(",") for ln in text.splitlines() if ln.strip()]
    return np.array([[float(v) for v in r[3:6]] for r in rows])


def test_real_wisdm2019_slice_matches_naive_parse(shared_data: Path, tmp_path: Path):
    src = shared_data / "wisdm2019_phone_accel/raw/phone/accel/data_1600_accel_phone.txt"
    lines = src.read_text().splitlines()[3000:4500]  # crosses the A -> B boundary at line 3,573
    f = tmp_path / "data_1600_accel_phone.txt"
    f.write_text("\n".join(lines) + "\n")
    rs = ds.load_wisdm(f, activities="all", rate=None)
    assert not rs.skipped
    got = np.concatenate([s.data for s in rs.segments])
    np.testing.assert_allclose(got, _naive_parse("\n".join(lines)), rtol=1e-6)
    assert [s.activity for s in rs.segments] == ["walking", "jogging"]
    assert rs.segments[0].rate == 20.0


def test_real_wisdm2019_folder(shared_data: Path):
    rs = ds.load_wisdm(shared_data / "wisdm2019_phone_accel", subjects=["1607", "1609"])
    assert rs.subjects() == ["1607", "1609"] and rs.rate == 20.0 and not rs.skipped
    per = rs.samples_per()
    assert ("1609", "jogging") not in per  # 1609 has no jogging (README)
    assert 3400 <= per[("1607", "walking")] <= 3700  # 25 Hz subject resampled: ~4513 * 0.8


def test_hapt_loader(shared_data: Path):
    rs = ds.load_hapt(shared_data / "hapt_kcc2020")
    assert len(rs.subjects()) == 30 and rs.rate == 20.0
    assert rs.activities() == list(ds.DEFAULT_HAPT_ACTIVITIES)
    walking = sum(s.n for s in rs.segments if s.activity == "walking")
    assert abs(walking - 122_091 * 0.4) < 200  # 50 -> 20 Hz, README count
    mag = np.linalg.norm(np.concatenate([s.data for s in rs.segments if s.activity == "laying"]), axis=1)
    assert 9.0 < np.median(mag) < 10.6  # g converted to m/s²
    common = ds.load_hapt(shared_data / "hapt_kcc2020", activities="common4", subjects=[3])
    assert common.activities() == ["walking", "stairs", "sitting", "standing"] and common.subjects() == ["3"]
    five = ds.load_hapt(shared_data / "hapt_kcc2020", activities="wisdm5", subjects=[1])
    assert "jogging" not in five.activities() and any("jogging" in n for n in five.notes)


# --------------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------------


def test_resample_sine_and_constant():
    t = np.arange(1000) / 50.0
    x = np.stack([np.sin(2 * np.pi * 2 * t), np.full_like(t, 9.8)], axis=1)
    y = pp.resample_to(x, 50, 20)
    t2 = np.arange(400) / 20.0
    assert y.shape == (400, 2)
    np.testing.assert_allclose(y[10:-10, 0], np.sin(2 * np.pi * 2 * t2[10:-10]), atol=5e-3)
    np.testing.assert_allclose(y[:, 1], 9.8, atol=1e-4)  # no taper at the edges
    with pytest.raises(pp.PreprocessError):
        pp.resample_poly(x, 0, 2)


def test_st_highpass_initial_state_matches_reference():
    np.testing.assert_allclose(pp._ZI, [-0.93653, 2.80957, -2.80956, 0.93652], atol=2e-5)


def test_gravity_rot_sup_static_is_zero_and_norm_preserved():
    static = np.tile([[1.0, 2.0, 9.5]], (48, 1))
    assert np.abs(pp.gravity_rot_sup(static)).max() < 2e-3  # ST's rounded coefficients leak ~1e-4 of DC
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 24, 3)) + [0.0, 0.0, 9.8]
    out = pp.gravity_rot_sup(w)
    dyn = pp._highpass(w)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(dyn, axis=-1), rtol=1e-4, atol=1e-5)
    assert pp.gravity_rot_sup(w[..., None]).shape == (5, 24, 3, 1)
    with pytest.raises(pp.PreprocessError):
        pp.gravity_rot_sup(np.zeros((5, 24, 2)))


# --------------------------------------------------------------------------------------------------
# Split and windows
# --------------------------------------------------------------------------------------------------


def _indexed_set(lengths: list[list[int]]) -> ds.RecordingSet:
    """Segments whose x column holds a global sample index; lengths[a] = segment lengths of activity a."""
    segs, pos = [], 0
    for a, lens in enumerate(lengths):
        for k, n in enumerate(lens):
            idx = np.arange(pos, pos + n, dtype=np.float32)
            segs.append(ds.Segment("u1", f"act{a}", np.stack([idx, idx, idx], 1), 20.0, order=k))
            pos += n + 1000  # a gap between segments
    return ds.RecordingSet(segs, "synthetic")


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.lists(st.integers(0, 120), min_size=1, max_size=4), min_size=1, max_size=3),
    frac=st.floats(0.1, 0.9),
    T=st.integers(2, 30),
)
def test_split_and_windows_never_cross_split_or_gaps(lengths, frac, T):
    rs = _indexed_set(lengths)
    train, test = ds.split_chronological(rs, frac)
    assert train.n_samples + test.n_samples == rs.n_samples
    classes = [f"act{a}" for a in range(len(lengths))]
    for a, lens in enumerate(lengths):
        cut = int(round(frac * sum(lens)))
        assert sum(s.n for s in train.segments if s.activity == f"act{a}") == cut
        tr = np.concatenate([s.data[:, 0] for s in train.segments if s.activity == f"act{a}"] or [np.zeros(0)])
        te = np.concatenate([s.data[:, 0] for s in test.segments if s.activity == f"act{a}"] or [np.zeros(0)])
        if len(tr) and len(te):
            assert tr.max() < te.min()  # chronological
    for part, stride in ((train, max(1, T // 2)), (test, T)):
        ws = ds.make_windows(part, T, stride, classes)
        if len(ws):
            d = np.diff(ws.x[:, :, 0], axis=1)
            assert np.all(d == 1)  # consecutive samples: no window crosses a gap
            assert ws.x.shape[1:] == (T, 3)
    tr_ws = ds.make_windows(train, T, max(1, T // 2), classes)
    te_ws = ds.make_windows(test, T, T, classes)
    if len(tr_ws) and len(te_ws):
        train_idx = set(tr_ws.x[:, :, 0].ravel().tolist())
        assert not train_idx & set(te_ws.x[:, :, 0].ravel().tolist())  # no sample on both sides


def test_personal_split_strides_and_fraction():
    rs = _indexed_set([[1000], [500]])
    tr, te = ds.personal_split(rs, 20, 0.6)
    assert tr.stride == 10 and te.stride == 20
    assert tr.counts() == {"act0": (600 - 20) // 10 + 1, "act1": (300 - 20) // 10 + 1}
    assert te.counts() == {"act0": 400 // 20, "act1": 200 // 20}
    with pytest.raises(ds.DatasetError, match="train_fraction"):
        ds.split_chronological(rs, 1.0)


def test_directory_scan_keeps_phone_files_apart_from_watch_files(tmp_path):
    """WISDM-2019's raw/ has phone and watch files for the same subject: never merge the two devices."""
    from app.core.datasets import wisdm_files

    (tmp_path / "phone").mkdir()
    (tmp_path / "watch").mkdir()
    line = "1600,A,{t},0.1,9.8,0.2;\n"
    for sub, name in (("phone", "data_1600_accel_phone.txt"), ("watch", "data_1600_accel_watch.txt")):
        (tmp_path / sub / name).write_text("".join(line.format(t=i * 50_000_000) for i in range(100)))
    assert [p.name for p in wisdm_files(tmp_path)] == ["data_1600_accel_phone.txt"]
    assert [p.name for p in wisdm_files(tmp_path / "watch")] == ["data_1600_accel_watch.txt"]  # asked for explicitly
