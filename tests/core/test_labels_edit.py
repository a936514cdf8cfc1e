"""The label store's edits, exactly: overlap trimming at every edge, the undo texts a user reads in the tooltip,
the undo stack's limits, failures that change nothing, and what the labels become (windows, class balance,
the labelled recordings as a RecordingSet)."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.labels import Label, LabelError, LabelModel, class_balance, labelled_recording_set, windows
from app.core.recording import write_accel
from app.core.store import Store

CLASSES = ("Walking", "Jogging", "Sitting")


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path)
    yield s
    s.close()


@pytest.fixture()
def model(store):
    rec = store.add_recording("accel", "seg", "r.f32", 20.0, 3)
    return LabelModel(store, rec.id, CLASSES, duration=100.0)


def _mem(m: LabelModel):
    return [(l.start, l.end, l.label) for l in m.labels]


def _persisted(m: LabelModel):
    return [(l.start_s, l.end_s, l.label) for l in m.store.labels(m.recording_id)]


# --- overlaps ------------------------------------------------------------------------------------------
def test_add_trims_only_the_labels_it_overlaps(model):
    """Labels before the new one (with a gap) stay as they are; a later one it overlaps is trimmed."""
    model.add(0, 5, "Walking")
    model.add(10, 20, "Jogging")
    model.add(15, 25, "Sitting")
    assert _mem(model) == [(0, 5, "Walking"), (10, 15, "Jogging"), (15, 25, "Sitting")] == _persisted(model)


def test_add_over_the_start_of_a_label_keeps_its_end(model):
    model.add(10, 20, "Walking")
    model.add(5, 15, "Sitting")
    assert _mem(model) == [(5, 15, "Sitting"), (15, 20, "Walking")] == _persisted(model)


def test_add_from_the_same_start_keeps_the_rest_of_the_label(model):
    model.add(10, 20, "Walking")
    model.add(10, 15, "Sitting")
    assert _mem(model) == [(10, 15, "Sitting"), (15, 20, "Walking")] == _persisted(model)


def test_add_up_to_the_same_end_keeps_the_start_of_the_label(model):
    model.add(10, 20, "Walking")
    model.add(15, 20, "Sitting")
    assert _mem(model) == [(10, 15, "Walking"), (15, 20, "Sitting")] == _persisted(model)


def test_add_over_a_whole_label_removes_it_and_undo_restores_it(model):
    w = model.add(10, 20, "Walking")
    model.add(5, 25, "Sitting")
    assert _mem(model) == [(5, 25, "Sitting")] == _persisted(model)
    assert model.undo()
    assert _mem(model) == [(10, 20, "Walking")] == _persisted(model)
    assert [l.id for l in model.labels] == [w.id]


def test_trimming_drops_slivers_of_at_most_one_microsecond(model):
    """A piece of 1 µs or less left before or after an added label (float noise of a dragged edge) is dropped,
    not kept as a label of its own."""
    model.add(0, 10, "Walking")
    model.add(1e-6, 5, "Sitting")  # leaves [0, 1e-6) of the walking label: dropped
    assert _mem(model) == [(1e-6, 5, "Sitting"), (5, 10, "Walking")] == _persisted(model)
    model.add(20, 25 + 1e-6, "Walking")
    model.add(21, 25, "Jogging")  # leaves [25, 25.000001) of the walking label: dropped
    assert _mem(model)[2:] == [(20, 21, "Walking"), (21, 25, "Jogging")]
    assert len(_persisted(model)) == 4


# --- undo texts (the tooltip) --------------------------------------------------------------------------
def test_undo_texts_of_add_relabel_and_delete(model):
    a = model.add(10, 20, "Walking")
    assert model.undo_text == "Label Walking 10.00-20.00 s"
    model.set_class(a.id, "Sitting")
    assert model.undo_text == "Relabel Walking as Sitting"
    model.delete(a.id)
    assert model.undo_text == "Delete Sitting 10.00-20.00 s"
    assert model.undo()
    assert model.redo_text == "Delete Sitting 10.00-20.00 s"
    assert model.undo_text == "Relabel Walking as Sitting"


def test_move_that_keeps_the_length_says_nothing_of_shortening(model):
    """The same length, or shorter by float noise of at most 1 µs, is not reported as shortened."""
    a = model.add(10, 20, "Walking")
    model.set_bounds(a.id, 12, 22)
    assert model.undo_text == "Move Walking to 12.00-22.00 s"
    b = model.add(0, 1, "Sitting")
    model.set_bounds(b.id, 0, 1 - 1e-6)  # exactly 1 µs shorter
    assert model.undo_text == "Move Sitting to 0.00-1.00 s"


def test_move_that_shortens_a_label_says_by_how_much(model):
    a = model.add(10, 20, "Walking")
    model.set_bounds(a.id, 10, 19.5)
    assert model.undo_text == "Move Walking to 10.00-19.50 s (shortened by 0.50 s)"
    assert _mem(model) == [(10, 19.5, "Walking")] == _persisted(model)


def test_move_that_trims_others_says_how_many(model):
    model.add(0, 10, "Walking")
    j = model.add(10, 20, "Jogging")
    model.set_bounds(j.id, 5, 20)
    assert model.undo_text == "Move Jogging to 5.00-20.00 s, trimming 1 other label(s)"
    model.set_bounds(j.id, 3, 4)
    assert model.undo_text == "Move Jogging to 3.00-4.00 s (shortened by 14.00 s), trimming 1 other label(s)"
    assert _mem(model) == [(0, 3, "Walking"), (3, 4, "Jogging"), (4, 5, "Walking")] == _persisted(model)


def test_move_between_touching_labels_trims_nothing(model):
    """Labels that only touch the moved label's new edges are not trimmed (and the undo text says none is)."""
    model.add(0, 10, "Walking")
    model.add(20, 30, "Sitting")
    j = model.add(40, 50, "Jogging")
    model.set_bounds(j.id, 10, 20)
    assert model.undo_text == "Move Jogging to 10.00-20.00 s"
    assert _mem(model) == [(0, 10, "Walking"), (10, 20, "Jogging"), (20, 30, "Sitting")] == _persisted(model)


# --- undo / redo ---------------------------------------------------------------------------------------
def test_undo_and_redo_with_nothing_to_do_return_false(model):
    calls = []
    model.add_listener(lambda: calls.append(1))
    assert model.undo() is False and model.redo() is False
    assert (model.undo_text, model.redo_text) == ("", "")
    assert calls == []
    model.add(1, 2, "Walking")
    assert model.redo() is False
    assert model.undo() is True and model.undo() is False
    assert _mem(model) == [] == _persisted(model)


def test_a_redone_edit_can_be_undone_again(model):
    model.add(10, 20, "Walking")
    model.undo()
    assert model.redo()
    assert model.undo_text == "Label Walking 10.00-20.00 s" and model.redo_text == ""
    assert model.undo()
    assert _mem(model) == [] == _persisted(model)


def test_the_undo_stack_keeps_the_last_500_edits(model):
    for k in range(501):
        model.add(k * 0.1, k * 0.1 + 0.05, "Walking")
    n = 0
    while model.undo():
        n += 1
    assert n == 500
    assert len(model.labels) == 1 and model.labels[0].start == 0.0


# --- checks and failures -------------------------------------------------------------------------------
def test_unknown_class_message_lists_the_classes(model):
    with pytest.raises(LabelError) as e:
        model.add(0, 1, "Dancing")
    assert str(e.value) == "class 'Dancing' is not one of this dataset's classes (Walking, Jogging, Sitting)"


def test_shortest_label_is_one_microsecond(model):
    a = model.add(0, 1e-6, "Walking")
    assert (a.start, a.end) == (0.0, 1e-6) and _persisted(model) == [(0.0, 1e-6, "Walking")]
    with pytest.raises(LabelError) as e:
        model.add(3, 3 + 1e-7, "Walking")
    assert str(e.value) == "label interval [3.000, 3.000] s is empty"
    assert len(model.labels) == 1


def test_a_failed_edit_changes_nothing(store, model):
    """The recording was deleted elsewhere: the edit's first op (removing a covered label) went through in
    memory, the next one failed in the database; the labels and the undo stack stay as they were."""
    w = model.add(10, 20, "Walking")
    j = model.add(30, 40, "Jogging")
    store.delete_recording(model.recording_id)
    with pytest.raises(LabelError) as e:
        model.add(5, 35, "Sitting")
    assert str(e.value) == f"the label change was not saved: no label with id {j.id}"
    assert [(l.id, l.start, l.end, l.label) for l in model.labels] == [
        (w.id, 10, 20, "Walking"),
        (j.id, 30, 40, "Jogging"),
    ]
    assert model.undo_text == "Label Jogging 30.00-40.00 s"


def test_an_edit_after_the_store_closed_says_why(tmp_path, store, model):
    model.add(10, 20, "Walking")
    store.close()
    with pytest.raises(LabelError) as e:
        model.add(30, 40, "Sitting")
    assert str(e.value) == (
        f"the label change was not saved: the database {tmp_path / 'odlstudio.sqlite'} is closed "
        "(the app is shutting down)"
    )
    assert _mem(model) == [(10, 20, "Walking")]


def test_a_failed_undo_or_redo_keeps_its_step(store, model, monkeypatch):
    """Was: the step was taken off the undo (redo) stack before it was written, so an undo the store refused (a
    full disk) lost it: the label stayed and could no longer be undone."""
    from app.core.store import StoreError

    model.add(10, 20, "Walking")
    real_delete, real_add = store.delete_label, store.add_label

    def full(*_a, **_k):
        raise StoreError("database or disk is full")

    monkeypatch.setattr(store, "delete_label", full)
    with pytest.raises(LabelError) as e:
        model.undo()
    assert str(e.value) == "the label change was not saved: database or disk is full"
    assert (model.undo_text, model.redo_text) == ("Label Walking 10.00-20.00 s", "")
    assert _mem(model) == [(10, 20, "Walking")] == _persisted(model)
    monkeypatch.setattr(store, "delete_label", real_delete)
    assert model.undo() is True
    assert (model.undo_text, model.redo_text) == ("", "Label Walking 10.00-20.00 s")
    monkeypatch.setattr(store, "add_label", full)
    with pytest.raises(LabelError) as e:
        model.redo()
    assert str(e.value) == "the label change was not saved: database or disk is full"
    assert (model.undo_text, model.redo_text) == ("", "Label Walking 10.00-20.00 s")
    assert _mem(model) == [] == _persisted(model)
    monkeypatch.setattr(store, "add_label", real_add)
    assert model.redo() is True
    assert (model.undo_text, model.redo_text) == ("Label Walking 10.00-20.00 s", "")
    assert _mem(model) == [(10, 20, "Walking")] == _persisted(model)


# --- a kept model re-read from the store -----------------------------------------------------------------
def test_reload_keeps_the_history_when_the_store_holds_the_same_labels(model):
    a = model.add(10, 20, "Walking")
    model.add(30, 40, "Jogging")
    model.undo()
    calls = []
    model.add_listener(lambda: calls.append(1))
    assert model.reload() is False
    assert calls == []
    assert (model.undo_text, model.redo_text) == ("Label Walking 10.00-20.00 s", "Label Jogging 30.00-40.00 s")
    assert [(l.id, l.start, l.end, l.label) for l in model.labels] == [(a.id, 10, 20, "Walking")]


def test_reload_takes_labels_changed_by_another_path_and_drops_the_history(store, model):
    """Another connection moved a label, added one and deleted one: the model takes the store's labels, both
    stacks are emptied (their steps refer to labels no longer there) and the listeners are told once."""
    a = model.add(10, 20, "Walking")
    b = model.add(30, 40, "Jogging")
    model.add(50, 60, "Sitting")
    model.undo()
    store.update_label(a.id, 11, 21, "Walking")
    store.delete_label(b.id)
    c = store.add_label(model.recording_id, 70, 80, "Sitting")
    calls = []
    model.add_listener(lambda: calls.append(1))
    assert model.reload() is True
    assert calls == [1]
    assert [(l.id, l.start, l.end, l.label) for l in model.labels] == [
        (a.id, 11, 21, "Walking"),
        (c, 70, 80, "Sitting"),
    ]
    assert (model.can_undo, model.can_redo, model.undo_text, model.redo_text) == (False, False, "", "")
    assert model.undo() is False and model.redo() is False
    assert _persisted(model) == [(11, 21, "Walking"), (70, 80, "Sitting")]
    assert model.reload() is False and calls == [1]


def test_reload_sees_a_label_changed_in_class_only(store, model):
    a = model.add(10, 20, "Walking")
    store.update_label(a.id, 10, 20, "Sitting")
    assert model.reload() is True
    assert _mem(model) == [(10, 20, "Sitting")] and not model.can_undo


# --- loading and queries -------------------------------------------------------------------------------
def test_labels_loaded_from_the_store_keep_their_ids_and_can_be_edited(model):
    a = model.add(1, 2, "Jogging")
    again = LabelModel(model.store, model.recording_id, CLASSES)
    assert [(l.id, l.start, l.end, l.label) for l in again.labels] == [(a.id, 1, 2, "Jogging")]
    again.set_bounds(a.id, 1, 3)
    third = LabelModel(model.store, model.recording_id, CLASSES)
    assert [(l.id, l.start, l.end) for l in third.labels] == [(a.id, 1, 3)]


def test_label_at_includes_the_start_and_excludes_the_end(model):
    a = model.add(10, 20, "Walking")
    b = model.add(20, 30, "Sitting")
    assert model.label_at(10) == a
    assert model.label_at(19.99) == a
    assert model.label_at(20) == b
    assert model.label_at(30) is None and model.label_at(9.99) is None


# --- windows and class balance -------------------------------------------------------------------------
def test_windows_of_one_sample_and_stride_one():
    assert windows([Label(1, 0, 0.3, "Walking")], 10.0, 1) == [(0, "Walking"), (1, "Walking"), (2, "Walking")]
    assert windows([Label(1, 0, 0.4, "Walking")], 10.0, 2, stride=1) == [(0, "Walking"), (1, "Walking"), (2, "Walking")]


def test_windows_never_reach_past_the_label_end():
    assert windows([Label(1, 0, 1, "Walking")], 20.0, 20, stride=1) == [(0, "Walking")]


def test_window_size_and_stride_below_one_are_refused():
    with pytest.raises(LabelError) as e:
        windows([], 20.0, 0)
    assert str(e.value) == "window size must be >= 1 sample, got 0"
    with pytest.raises(LabelError) as e:
        windows([], 20.0, 20, stride=0)
    assert str(e.value) == "window stride must be >= 1 sample, got 0"


def test_class_balance_per_class_including_labels_of_removed_classes():
    """Seconds and labels add up per class; a class without labels shows zeros; a label of a class no longer in
    the dataset gets a row of its own, after the dataset's classes."""
    labels = [
        Label(1, 0, 10, "Walking"),
        Label(2, 20, 25, "Walking"),
        Label(3, 30, 31, "Sitting"),
        Label(4, 40, 42, "Running"),
    ]
    bal = class_balance(labels, CLASSES, 10.0, 10)
    assert bal == {
        "Walking": {"seconds": 15.0, "labels": 2, "windows": 15},
        "Jogging": {"seconds": 0.0, "labels": 0, "windows": 0},
        "Sitting": {"seconds": 1.0, "labels": 1, "windows": 1},
        "Running": {"seconds": 2.0, "labels": 1, "windows": 2},
    }
    assert list(bal) == ["Walking", "Jogging", "Sitting", "Running"]


def test_class_balance_counts_windows_only_with_rate_and_size():
    labels = [Label(1, 0, 10, "Walking")]
    assert class_balance(labels, ("Walking",), rate_hz=10.0) == {
        "Walking": {"seconds": 10.0, "labels": 1, "windows": 0}
    }
    assert class_balance(labels, ("Walking",), size=10) == {"Walking": {"seconds": 10.0, "labels": 1, "windows": 0}}


# --- the labelled recordings as a RecordingSet -------------------------------------------------------------
def _dataset(store: Store) -> int:
    return store.create_dataset(store.ensure_user("me").id, "labelled", CLASSES).id


def test_labelled_segments_say_where_they_come_from(store):
    ds_id = _dataset(store)
    rec = write_accel(store, "walk", np.zeros((80, 3), np.float32), 20.0, ds_id)
    store.add_label(rec.id, 0.0, 2.0, "Walking")
    store.add_label(rec.id, 2.0, 3.0, "Sitting")
    rs = labelled_recording_set(store, ds_id)
    assert rs.source == "labelled recordings" and rs.notes == []
    assert [
        (s.subject, s.activity, s.n, s.rate, s.source, s.first_line, s.raw_activity, s.native_rate, s.order, s.dataset)
        for s in rs.segments
    ] == [
        ("user", "walking", 40, 20.0, "walk", 0, "Walking", 20.0, 0, "app"),
        ("user", "sitting", 20, 20.0, "walk", 40, "Sitting", 20.0, 1, "app"),
    ]


def test_labelled_set_reads_only_labelled_accel_recordings(store):
    """An unlabelled accel recording is passed over (the next ones are still read) and a labelled recording
    of another kind (power) in the dataset is not read as accel data."""
    ds_id = _dataset(store)
    write_accel(store, "unlabelled", np.zeros((40, 3), np.float32), 20.0, ds_id)
    power = store.add_recording("power", "current", "recordings/power/1.h5", 100_000.0, 1, dataset_id=ds_id)
    store.add_label(power.id, 0.0, 1.0, "Walking")
    rec = write_accel(store, "labelled", np.ones((40, 3), np.float32), 20.0, ds_id)
    store.add_label(rec.id, 0.0, 2.0, "Jogging")
    rs = labelled_recording_set(store, ds_id, "me")
    assert [(s.source, s.activity, s.n) for s in rs.segments] == [("labelled", "jogging", 40)]


def test_labelled_pieces_of_two_samples_are_kept_shorter_ones_left_out(store):
    """A label or a run between lost (NaN) samples of two samples is a segment; one of a single sample is left
    out, and the labels and runs after it are still read."""
    ds_id = _dataset(store)
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    x[7] = np.nan
    x[9] = np.nan
    rec = write_accel(store, "short", x, 10.0, ds_id)
    store.add_label(rec.id, 0.0, 0.2, "Walking")  # samples 0-1
    store.add_label(rec.id, 0.2, 0.3, "Jogging")  # sample 2 only
    store.add_label(rec.id, 0.5, 1.5, "Sitting")  # samples 5-14: runs 5-6, 8, 10-14
    rs = labelled_recording_set(store, ds_id, "me")
    assert [(s.activity, s.first_line, s.n) for s in rs.segments] == [
        ("walking", 0, 2),
        ("sitting", 5, 2),
        ("sitting", 10, 5),
    ]
    np.testing.assert_array_equal(rs.segments[1].data, x[5:7])


def test_labels_no_model_class_takes_are_named_in_the_notes(store):
    ds_id = _dataset(store)
    rec = write_accel(store, "mixed", np.zeros((60, 3), np.float32), 20.0, ds_id)
    store.add_label(rec.id, 0.0, 1.0, "Walking")
    store.add_label(rec.id, 1.0, 2.0, "Sitting")
    store.add_label(rec.id, 2.0, 3.0, "Jogging")
    rs = labelled_recording_set(store, ds_id, "me", classes=("Walking",))
    assert rs.notes == ["labels Jogging, Sitting are not classes of the model (Walking) and were left out"]
    assert [(s.activity, s.n) for s in rs.segments] == [("Walking", 20)]


def test_labelled_set_without_a_rate_keeps_the_recordings_rate(store):
    """No rate (None, or 0 for a model whose rate is not known) means no resampling."""
    ds_id = _dataset(store)
    rec = write_accel(store, "walk", np.zeros((40, 3), np.float32), 20.0, ds_id)
    store.add_label(rec.id, 0.0, 2.0, "Walking")
    for rate in (None, 0.0):
        rs = labelled_recording_set(store, ds_id, "me", rate_hz=rate)
        assert [(s.rate, s.n) for s in rs.segments] == [(20.0, 40)]
