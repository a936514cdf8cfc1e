"""Label model: overlaps, undo/redo persisted in SQLite, windowing, WISDM/npz I/O."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.datasets import WISDM_EXPECTED, DatasetError
from app.core.labels import (
    Label,
    LabelError,
    LabelModel,
    class_balance,
    class_for_activity,
    export_labelled_csv,
    export_windows_npz,
    export_wisdm_csv,
    import_wisdm,
    import_wisdm_csv,
    labelled_recording_set,
    read_wisdm,
    windows,
)
from app.core.recording import load_accel
from app.core.store import Store
from tests.datakit import V11_QUIRKS

CLASSES = ("Walking", "Jogging", "Sitting")


@pytest.fixture()
def model(tmp_path):
    store = Store(tmp_path)
    rec = store.add_recording("accel", "seg", "r.f32", 20.0, 3)
    m = LabelModel(store, rec.id, CLASSES, duration=100.0)
    yield m
    store.close()


def _persisted(m: LabelModel):
    return [(l.start_s, l.end_s, l.label) for l in m.store.labels(m.recording_id)]


def _mem(m: LabelModel):
    return [(l.start, l.end, l.label) for l in m.labels]


def test_add_split_undo_redo_persist(model):
    calls = []
    model.add_listener(lambda: calls.append(1))
    model.add(10, 30, "Walking")
    model.add(15, 20, "Sitting")  # splits the walking label
    assert _mem(model) == [(10, 15, "Walking"), (15, 20, "Sitting"), (20, 30, "Walking")]
    assert _persisted(model) == _mem(model)
    assert model.undo()
    assert _mem(model) == [(10, 30, "Walking")] == _persisted(model)
    assert model.redo()
    assert _mem(model) == [(10, 15, "Walking"), (15, 20, "Sitting"), (20, 30, "Walking")] == _persisted(model)
    assert len(calls) == 4


def test_move_trim_delete_relabel(model):
    a = model.add(0, 10, "Walking")
    b = model.add(10, 20, "Jogging")
    model.set_bounds(b.id, 5, 25)  # trims a
    assert _mem(model) == [(0, 5, "Walking"), (5, 25, "Jogging")]
    model.set_class(b.id, "Sitting")
    model.delete(a.id)
    assert _mem(model) == [(5, 25, "Sitting")] == _persisted(model)
    for _ in range(3):
        model.undo()
    assert _mem(model) == [(0, 10, "Walking"), (10, 20, "Jogging")] == _persisted(model)
    assert model.can_undo and model.undo_text.startswith("Label Jogging")  # two adds left
    model.add(50, 60, "Walking")
    assert not model.can_redo  # a new edit clears redo


def test_reload_from_store(model):
    model.add(1, 2, "Jogging")
    again = LabelModel(model.store, model.recording_id, CLASSES)
    assert _mem(again) == [(1, 2, "Jogging")]


def test_bad_edits(model):
    with pytest.raises(LabelError, match="not one of"):
        model.add(0, 1, "Dancing")
    with pytest.raises(LabelError, match="empty"):
        model.add(3, 3, "Walking")
    with pytest.raises(LabelError, match="no label"):
        model.delete(12345)
    a = model.add(-5, 500, "Walking")  # clamped to the recording
    assert (a.start, a.end) == (0.0, 100.0)


def test_windows_and_balance(model):
    model.add(0, 10, "Walking")  # 200 samples at 20 Hz -> 10 windows of 20
    model.add(10, 13.4, "Sitting")  # 68 samples -> 3 windows
    w = windows(model.labels, 20.0, 20)
    assert [c for _, c in w].count("Walking") == 10 and [c for _, c in w].count("Sitting") == 3
    assert all(s + 20 <= 268 for s, _ in w)
    bal = class_balance(model.labels, CLASSES, 20.0, 20)
    assert bal["Walking"]["windows"] == 10 and bal["Jogging"]["seconds"] == 0
    assert windows(model.labels, 20.0, 20, stride=10)[:3] == [(0, "Walking"), (10, "Walking"), (20, "Walking")]


def test_wisdm_roundtrip_and_npz(model, tmp_path):
    model.add(0, 5, "Walking")
    model.add(5, 8, "Jogging")
    xyz = np.random.default_rng(0).normal(0, 5, (2000, 3)).astype(np.float32)
    p = tmp_path / "out.txt"
    assert export_wisdm_csv(p, "u7", xyz, 20.0, model.labels) == 160
    segs = import_wisdm_csv(p)
    assert [(s.user, s.activity, len(s.xyz)) for s in segs] == [("u7", "Walking", 100), ("u7", "Jogging", 60)]
    assert not read_wisdm(p).skipped  # the export is valid WISDM (no timestamp-0 placeholder record)
    np.testing.assert_allclose(segs[0].xyz, xyz[:100], rtol=1e-5)
    n = export_windows_npz(tmp_path / "w.npz", [(xyz, 20.0, model.labels)], CLASSES, 20)
    d = np.load(tmp_path / "w.npz")
    assert n == 8 and d["X"].shape == (8, 20, 3) and d["y"].tolist() == [0] * 5 + [1] * 3


def test_labelled_csv_gathers_recordings_and_replaces_the_file(tmp_path):
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 5, (400, 3)), rng.normal(0, 5, (400, 3))
    p = tmp_path / "me.txt"
    p.write_text("an older export\n")
    parts = [
        (a, 20.0, [Label(1, 0, 5, "Walking")]),
        (b, 10.0, [Label(2, 1, 3, "Sitting"), Label(3, 30, 50, "Jogging")]),
    ]
    assert export_labelled_csv(p, "me", parts) == 100 + 20 + 100  # b ends at 40 s: its Jogging is cut there
    segs = import_wisdm_csv(p)
    assert [(s.activity, len(s.xyz)) for s in segs] == [("Walking", 100), ("Sitting", 20), ("Jogging", 100)]
    np.testing.assert_allclose(segs[1].xyz, b[10:30], rtol=1e-5)
    assert "older" not in p.read_text()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["me.txt"]


def test_labelled_exports_are_whole_or_nothing(tmp_path):
    """A class WISDM cannot carry in a later recording, or a full disk half way: the file from before stays as
    it was and no partial or temporary file is left (the labelling panel's exports go through these)."""
    from tests.diskkit import python_limited

    xyz = np.ones((400, 3))
    p = tmp_path / "me.txt"
    p.write_text("an older export\n")
    parts = [(xyz, 20.0, [Label(1, 0, 5, "Walking")]), (xyz, 20.0, [Label(2, 0, 5, "walk, fast")])]
    with pytest.raises(LabelError, match="cannot be written as WISDM"):
        export_labelled_csv(p, "me", parts)
    assert p.read_text() == "an older export\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["me.txt"]

    w = tmp_path / "w.npz"
    w.write_bytes(b"older windows")
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from app.core.labels import Label, export_labelled_csv, export_windows_npz\n"
        "x = np.random.default_rng(0).normal(0, 5, (20000, 3))\n"
        "labs = [Label(1, 0.0, 1000.0, 'Walking')]\n"
        "for f in (lambda: export_labelled_csv(sys.argv[1], 'me', [(x, 20.0, labs)]),\n"
        "          lambda: export_windows_npz(sys.argv[2], [(x, 20.0, labs)], ['Walking'], 20)):\n"
        "    try:\n"
        "        f()\n"
        "        print('written')\n"
        "    except OSError as e:\n"
        "        print('refused', e.errno)\n"
    )
    r = python_limited(code, 20_000, str(p), str(w))
    assert r.stdout.split("\n")[:2] == ["refused 27", "refused 27"], r.stdout + r.stderr  # EFBIG: the limit
    assert p.read_text() == "an older export\n" and w.read_bytes() == b"older windows"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["me.txt", "w.npz"]


def test_windows_npz_is_written_at_the_name_given(tmp_path):
    """numpy appends ".npz" to a file name given as text; the export writes exactly the file the user named."""
    xyz = np.arange(300, dtype=np.float32).reshape(100, 3)
    out = tmp_path / "windows.data"
    assert export_windows_npz(out, [(xyz, 20.0, [Label(1, 0, 5, "Sitting")])], CLASSES, 20, 10) == 9
    assert sorted(x.name for x in tmp_path.iterdir()) == ["windows.data"]
    d = np.load(out)
    assert d["y"].tolist() == [2] * 9 and d["X"][1, 0].tolist() == xyz[10].tolist()


def test_wisdm_import_reports_bad_lines(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("1,Walking,1,0.1,0.2,0.3;\n" + "garbage\n" * 30)
    rs = read_wisdm(p)  # parsed by app.core.datasets: the good record is kept, every bad line reported
    assert rs.n_samples == 1 and len(rs.skipped) == 30
    assert str(rs.skipped[0]).startswith(f"{p}:2: expected 6 comma-separated fields, found 1")
    (tmp_path / "none.txt").write_text("garbage\n" * 3)
    with pytest.raises(DatasetError) as e:
        read_wisdm(tmp_path / "none.txt")
    assert str(e.value) == (
        f"{tmp_path / 'none.txt'}: no valid WISDM records (3 skipped; the first: {tmp_path / 'none.txt'}:1: "
        f"expected 6 comma-separated fields, found 1: 'garbage'); {WISDM_EXPECTED}"
    )


def test_wisdm_import_with_quirks_through_the_labelling_path(tmp_path):
    p = tmp_path / "WISDM_ar_v1.1_raw.txt"
    p.write_text(V11_QUIRKS)
    store = Store(tmp_path / "db")
    try:
        classes = ("Walking", "Jogging", "Sitting")
        ds_id = store.create_dataset(store.ensure_user("me").id, "imp", classes).id
        steps = []
        res = import_wisdm(store, p, ds_id, classes, progress=lambda f, t="": steps.append(f))
        assert steps and steps[-1] == 1.0
        assert [r.name for r in res.recordings] == ["WISDM 33"]
        rec = res.recordings[0]
        labels = store.labels(rec.id)
        assert [l.label for l in labels] == ["Jogging", "Walking"]
        # 62 jogging records (60 + the two on one line) and 51 walking ones, already at 20 Hz
        assert labels[0].end_s == pytest.approx(62 / 20.0) and labels[1].end_s == pytest.approx(113 / 20.0)
        xyz = load_accel(store, rec)
        assert len(xyz) == 113 and xyz[61, 0] == pytest.approx(1.1) and xyz[62, 0] == pytest.approx(0.2)
        lines = [k.line for k in res.skipped]
        assert lines == [64, 65, 66, 67, 119], res.skipped
        text = res.skipped_text(limit=4)
        assert (
            text.startswith("5 lines skipped: line 64: ")
            and "line 65: expected 6 comma-separated fields, found 5" in text
        )
        assert "line 66: timestamp 0 (placeholder record)" in text and text.endswith("… and 1 more")
        assert res.left_out == {"dancing": 1}  # a plain activity name that is not a class of the dataset
        msg = res.message()
        assert "Imported 1 recording(s) with 2 label(s)" in msg and "dancing (1 sample)" in msg
        assert "line 119: truncated: last record has no terminating ';'" in msg
        # a 2019 file (letter codes): stairs ('C') is not split, so it becomes the dataset's Upstairs
        p19 = tmp_path / "data_1650_accel_phone.txt"
        p19.write_text(
            "".join(f"1650,{c},{(k + 1) * 50_000_000},0.1,9.8,{k % 7};\n" for c in "ACF" for k in range(40))
            + "1650,A,12,bad\n"
        )
        res19 = import_wisdm(store, p19, ds_id, ("Walking", "Upstairs", "Downstairs"))
        assert [l.label for l in store.labels(res19.recordings[0].id)] == ["Walking", "Upstairs"]
        assert res19.left_out == {"typing": 40} and "labelled 'Upstairs'" in res19.message()
        assert (
            res19.skipped_text()
            == "1 line skipped: line 121: expected 6 comma-separated fields, found 4 ('1650,A,12,bad')"
        )
    finally:
        store.close()


def test_wisdm_import_reads_named_users_and_roundtrips(model, tmp_path):
    """The app's own export (user names instead of WISDM's integer ids) imports through the same parser."""
    model.add(0, 5, "Walking")
    model.add(5, 8, "Sitting")
    xyz = np.random.default_rng(1).normal(0, 5, (2000, 3)).astype(np.float32)
    p = tmp_path / "mine.txt"
    export_wisdm_csv(p, "alice", xyz, 20.0, model.labels)
    with p.open("a") as fh:
        fh.write("bob,Walking,5000000000,1,2,3;\n7,Walking,5000000000,1,2,3;\n")
    rs = read_wisdm(p)
    assert rs.subjects() == ["7", "alice", "bob"] and not rs.skipped
    store = model.store
    ds_id = store.create_dataset(store.ensure_user("me").id, "rt", CLASSES).id
    res = import_wisdm(store, p, ds_id, CLASSES)
    assert sorted(r.name for r in res.recordings) == ["WISDM 7", "WISDM alice", "WISDM bob"]
    alice = next(r for r in res.recordings if r.name == "WISDM alice")
    np.testing.assert_allclose(load_accel(store, alice), xyz[:160], rtol=1e-5, atol=1e-5)
    assert [(l.label, l.end_s) for l in store.labels(alice.id)] == [("Walking", 5.0), ("Sitting", 8.0)]
    # the dataset as one user's RecordingSet (for the simulation)
    rs2 = labelled_recording_set(store, ds_id, "me")
    assert rs2.subjects() == ["me"] and rs2.activities() == ["walking", "sitting"]
    assert rs2.n_samples == 160  # the one-sample users are too short to be a segment
    rs3 = labelled_recording_set(store, ds_id, "me", classes=("Walking", "Stationary"), rate_hz=10.0)
    assert rs3.activities() == ["Stationary", "Walking"] and rs3.rate == 10.0 and rs3.n_samples == 80
    rs4 = labelled_recording_set(store, ds_id, "me", classes=("walking", "jogging"))
    assert (
        rs4.activities() == ["walking"]
        and "labels Sitting are not classes of the model (walking, jogging)" in rs4.notes[0]
    )


def test_class_for_activity():
    assert class_for_activity("walking", ("Walking", "Stairs")) == "Walking"
    assert class_for_activity("upstairs", ("Walking", "Stairs")) == "Stairs"
    assert class_for_activity("stairs", ("Upstairs", "Downstairs")) == "Upstairs"
    assert class_for_activity("sitting", ("Stationary",)) == "Stationary"
    assert class_for_activity("typing", ("Walking",)) is None


def test_real_wisdm2019_subject(shared_data):
    f = shared_data / "wisdm2019_phone_accel" / "raw" / "phone" / "accel" / "data_1600_accel_phone.txt"
    segs = import_wisdm_csv(f)
    assert segs[0].activity == "A" and 3000 < len(segs[0].xyz) < 4000
    assert {s.user for s in segs} == {"1600"}


def test_lost_samples_split_labelled_segments(tmp_path):
    """NaN rows in an accel recording (a stream gap, or a block the recorder dropped) split the label: no
    segment — hence no training window of a round or of the simulation — contains them."""
    from app.core.recording import write_accel
    from app.core.rounds import local_windows

    store = Store(tmp_path)
    ds_id = store.create_dataset(store.ensure_user("me").id, "gaps", CLASSES).id
    x = np.random.default_rng(3).normal(0, 3, (1200, 3)).astype(np.float32)
    x[500:520] = np.nan  # 1 s lost inside the walking label
    x[1000] = np.nan  # one row lost inside the sitting label
    rec = write_accel(store, "lossy", x, 20.0, ds_id)
    store.add_label(rec.id, 0.0, 40.0, "Walking")
    store.add_label(rec.id, 40.0, 60.0, "Sitting")
    rs = labelled_recording_set(store, ds_id, "me")
    assert [(s.activity, s.first_line, s.n) for s in rs.segments] == [
        ("walking", 0, 500),
        ("walking", 520, 280),
        ("sitting", 800, 200),
        ("sitting", 1001, 199),
    ]
    assert all(np.isfinite(s.data).all() for s in rs.segments)
    np.testing.assert_array_equal(rs.segments[1].data, x[520:800])
    d = local_windows(store, ds_id, ("walking", "sitting"), 20, 20.0)
    assert len(d.train_y) and len(d.test_y) and np.isfinite(d.train_x).all() and np.isfinite(d.test_x).all()
    store.close()
