"""Label model: overlaps, undo/redo persisted in SQLite, windowing, WISDM/npz I/O."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.labels import (LabelError, LabelModel, class_balance, export_wisdm_csv, export_windows_npz,
                             import_wisdm_csv, windows)
from app.core.store import Store

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
    np.testing.assert_allclose(segs[0].xyz, xyz[:100], rtol=1e-5)
    n = export_windows_npz(tmp_path / "w.npz", [(xyz, 20.0, model.labels)], CLASSES, 20)
    d = np.load(tmp_path / "w.npz")
    assert n == 8 and d["X"].shape == (8, 20, 3) and d["y"].tolist() == [0] * 5 + [1] * 3


def test_wisdm_import_reports_bad_lines(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("1,Walking,1,0.1,0.2,0.3;\n" + "garbage\n" * 30)
    with pytest.raises(LabelError, match=r"bad.txt:2"):
        import_wisdm_csv(p)


def test_real_wisdm2019_subject(shared_data):
    f = shared_data / "wisdm2019_phone_accel" / "raw" / "phone" / "accel" / "data_1600_accel_phone.txt"
    segs = import_wisdm_csv(f)
    assert segs[0].activity == "A" and 3000 < len(segs[0].xyz) < 4000
    assert {s.user for s in segs} == {"1600"}
