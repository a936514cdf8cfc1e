"""What a Training round will run, known before it runs (found while using the panels, 2026-12-07):

1. a round with nothing to train on is refused before the model is loaded (no TensorFlow start, no board);
2. what the estimate counts (training windows, batches, validation passes) is what the round then records
   (`round_data.round_counts` / `planned_counts`, `round_history.estimation_windows`, `recommend.window_counts`);
4. a round on one activity: the panel's macro-F1 is over the classes present in the test windows and says so;
   the CLI keeps `loso`'s (scikit-learn's) macro-F1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core import rounds as R
from app.core.procedure import PLAIN, ROBUST
from app.core.recording import write_accel
from app.core.rounds import (
    EstimatorInputs,
    RoundConfig,
    RoundCounts,
    RoundError,
    RoundRunner,
    estimation_windows,
    planned_counts,
    round_counts,
    round_counts_text,
    round_rows,
)
from app.core.store import Store
from tests.roundkit import bench_context, labelled_dataset


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db")
    yield s
    s.close()


def _recording(store: Store, labels, seconds: float = 20.0) -> int:
    ds = store.ensure_user("ann").dataset_id
    rng = np.random.default_rng(0)
    rec = write_accel(store, "s", rng.normal(size=(int(seconds * 20), 3)).astype(np.float32), 20.0, ds)
    for a, b, name in labels:
        store.add_label(rec.id, a, b, name)
    return ds


def _refused(store: Store, ds: int, tmp_path: Path, monkeypatch, **cfg) -> str:
    loads: list[int] = []
    monkeypatch.setattr(RoundRunner, "load_model", lambda self: loads.append(1))
    with pytest.raises(RoundError) as e:
        RoundRunner(store, None, tmp_path / "data", RoundConfig(**cfg), ds).run()
    assert loads == []  # the model (TensorFlow in a child, seconds) was never asked for
    assert store.rounds() == []
    return str(e.value)


# --- 1. nothing to train on: said at once ------------------------------------------------------------------
def test_a_round_with_nothing_labelled_is_refused_before_the_model_loads(store, tmp_path, monkeypatch):
    ds = store.ensure_user("ann").dataset_id
    assert _refused(store, ds, tmp_path, monkeypatch) == (
        "the current dataset has no labelled accelerometer recording: record and label some "
        "activities in the Labelling panel first"
    )


def test_an_imported_models_round_with_nothing_labelled_is_refused_before_it_loads(store, tmp_path, monkeypatch):
    ds = _recording(store, [])  # a recording, no label
    assert _refused(store, ds, tmp_path, monkeypatch, model_path=str(tmp_path / "mine.keras")) == (
        "the current dataset has no labelled accelerometer recording: record and label some "
        "activities in the Labelling panel first"
    )


def test_a_round_whose_labels_give_no_window_of_T_is_refused_before_the_model_loads(store, tmp_path, monkeypatch):
    ds = _recording(store, [(0.0, 1.5, "Walking")])
    assert _refused(store, ds, tmp_path, monkeypatch, input_size=20) == (
        "1.5 s of usable labels give 0 training and 0 test windows of T=20 at 20 Hz: label more data "
        "(each activity needs at least ~2 s)"
    )


def test_a_round_whose_labels_are_no_class_of_the_general_model_is_refused_before_it_loads(
    store, tmp_path, monkeypatch
):
    ds = _recording(store, [(0.0, 10.0, "Cooking")])
    assert _refused(store, ds, tmp_path, monkeypatch) == (
        "none of the labelled activities (cooking) is a class of the model (walking, jogging, stairs, sitting, standing)"
    )


def test_the_general_models_classes_and_rate_come_from_its_sidecar():
    assert R.general_model_facts(20) == (("walking", "jogging", "stairs", "sitting", "standing"), 20.0)
    assert R.general_model_facts(33) is None  # no such model: the round says so when it loads it


# --- 2. the estimate counts what the round runs ------------------------------------------------------------
def test_round_counts_of_the_robust_split_batches_and_validation_passes():
    y = np.array([0] * 25 + [1] * 12 + [2] * 3)  # tails: 2 of class 0, 1 of class 1, none of class 2 (3 < 5)
    assert round_counts(y, 7, 8, epochs=2, warmup_epochs=1) == RoundCounts(
        n_train=37, n_val=3, n_test=7, batches_per_epoch=5, batches=15, val_passes=4
    )
    assert round_counts(y, 7, 8, epochs=2, procedure=PLAIN) == RoundCounts(40, 0, 7, 5, 10, 0)
    assert round_counts(y, 7, 8, epochs=3, procedure=ROBUST) == RoundCounts(37, 3, 7, 5, 15, 4)
    assert round_counts_text(RoundCounts(37, 3, 7, 5, 15, 4)) == (
        "37 training windows per epoch, 15 batches; 3 validation windows × 4 passes"
    )
    assert round_counts_text(RoundCounts(1, 0, 1, 1, 1, 0)) == "1 training window per epoch, 1 batch"
    assert round_counts_text(RoundCounts(2, 1, 1, 1, 2, 1)) == (
        "2 training windows per epoch, 2 batches; 1 validation window × 1 pass"
    )
    assert round_counts_text(RoundCounts(2, 2, 1, 1, 2, 2)) == (
        "2 training windows per epoch, 2 batches; 2 validation windows × 2 passes"
    )
    # a batch of 1 (or a nonsense 0, taken as 1): one batch per window
    assert round_counts(y, 7, 1, epochs=1, procedure=PLAIN) == RoundCounts(40, 0, 7, 40, 40, 0)
    assert round_counts(y, 7, 0, epochs=1, procedure=PLAIN) == RoundCounts(40, 0, 7, 40, 40, 0)


def test_what_the_estimate_counts_is_the_given_datasets_with_the_given_procedure(store):
    ds = _recording(store, [(0.0, 30.0, "Walking"), (30.0, 45.0, "Jogging")], seconds=45.0)
    other = store.ensure_user("bob").dataset_id  # nothing labelled there
    assert planned_counts(store, other, ("walking", "jogging"), 20, 20.0, 8, 2) is None
    with pytest.raises(RoundError):
        R.check_labelled(store, other)
    R.check_labelled(store, ds)  # (labelled: no error)
    plain = planned_counts(store, ds, ("walking", "jogging"), 20, 20.0, 8, 2, procedure=PLAIN)
    assert plain == RoundCounts(n_train=52, n_val=0, n_test=18, batches_per_epoch=7, batches=14, val_passes=0)


def test_the_estimators_windows_are_the_given_datasets_at_the_models_rate(store):
    ds = _recording(store, [(0.0, 30.0, "Walking"), (30.0, 45.0, "Jogging")], seconds=45.0)
    other = store.ensure_user("bob").dataset_id  # nothing labelled there
    assert estimation_windows(store, other, ("walking", "jogging"), 20.0, 8)(20) is None
    windows = estimation_windows(store, ds, ("walking", "jogging"), 10.0, 8, user="ann")  # a 10 Hz model
    assert windows(20) == (23, 2)  # about half of the 48 + 4 at 20 Hz: the recording resampled to 10 Hz
    assert windows(400) is None  # 40 s windows: none fits the 30 s of walking's training share


def test_the_scope_of_a_macro_f1_that_was_not_computed_is_not_said():
    m = {"macro_f1": None, "per_class_f1": {"a": 0.5}, "classes": list("abcde")}
    assert R.macro_f1_scope(m) == ""
    assert R.macro_f1_scope(dict(m, macro_f1=0.5)) == " over 1 of 5 classes (a)"
    assert R.macro_f1_scope(dict(m, macro_f1=0.5, per_class_f1={"a": 0.5, "b": 1.0})) == " over 2 of 5 classes"
    assert R.macro_f1_scope(dict(m, macro_f1=0.5, per_class_f1=dict.fromkeys("abcde", 1.0))) == ""
    assert R.macro_f1_scope(None) == ""


def test_the_estimators_windows_are_the_rounds_split_not_a_tenth_of_the_labelled_time(store):
    ds = _recording(store, [(0.0, 30.0, "Walking"), (30.0, 45.0, "Jogging")], seconds=45.0)
    c = planned_counts(store, ds, ("walking", "jogging"), 20, 20.0, 8, 2, user="ann")
    # walking: 35 training windows (the last 3 validate), 12 test; jogging: 17 (the last 1), 6
    assert c == RoundCounts(n_train=48, n_val=4, n_test=18, batches_per_epoch=6, batches=12, val_passes=3)
    windows = estimation_windows(store, ds, ("walking", "jogging"), 20.0, 8, user="ann")
    assert windows(20) == (48, 4)
    # (counted before as the labelled time's 60 % cut at T/2: 53 windows across the activities' cut, 5 validating)
    assert planned_counts(store, ds, ("walking",), 400, 20.0, 8, 2, user="ann") is None  # 30 s: no window of 20 s
    rec = EstimatorInputs(batch_size=8, epochs=2, n_classes=2).recommend(windows, input_sizes=(20,), epochs=(2,))
    row = next(r for r in rec.table if r["mode"] == "tl")
    assert (row["n_windows"] - row["n_val"], row["n_val"]) == (48, 4)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_what_the_estimate_counts_is_what_the_round_records(tmp_path):
    """A robust round with a warm-up epoch on the bench: its batches and validation passes, as the round's rows
    record them, are the counts the Training and Estimator panels cost."""
    ctx = bench_context(tmp_path)
    try:
        labelled_dataset(ctx, seconds_each=20.0)
        cfg = RoundConfig(input_size=20, mode="tl", epochs=2, warmup_epochs=1, batch_size=8)
        classes, rate = R.general_model_facts(20)
        c = planned_counts(ctx.store, ctx.dataset.id, classes, 20, rate, 8, 2, 1, user=ctx.user.name)
        assert c is not None and c.n_val > 0
        res = RoundRunner(ctx.store, ctx.devices, ctx.data_dir, cfg, ctx.dataset.id, user=ctx.user.name).run()
        assert res["status"] == "done"
        rows = round_rows(ctx.store, res["round_id"])
        recorded = (
            res["procedure"]["n_val"],
            sum(1 for r in rows if r.phase != "val"),
            sum(1 for r in rows if r.phase == "val"),
            res["round_info"]["batches_per_epoch"],
        )
        assert recorded == (c.n_val, c.batches, c.val_passes, c.batches_per_epoch)
        assert c.n_train + c.n_val == sum(v[0] for v in res["counts"].values())
        # the Estimator panel's row for this T costs the same windows and validation tail
        windows = estimation_windows(ctx.store, ctx.dataset.id, classes, rate, 8, ctx.user.name)
        rec = EstimatorInputs(batch_size=8, epochs=2).recommend(windows, input_sizes=(20,), epochs=(2,))
        row = next(r for r in rec.table if r["mode"] == "tl")
        assert (row["n_windows"] - row["n_val"], row["n_val"]) == (c.n_train, res["procedure"]["n_val"])
    finally:
        ctx.close()


# --- 4. one activity: macro-F1 over the classes tested, the same in the CLI --------------------------------
def test_a_one_class_macro_f1_is_said_over_that_class():
    cm = np.zeros((3, 3), int)
    cm[0] = (6, 4, 0)  # walking only in the test windows: precision 1 by construction, F1 = 2 * 6 / (12 + 4)
    m = R.metrics_from_confusion(cm, ("walking", "jogging", "sitting"))
    assert (m["accuracy"], m["macro_f1"], R.macro_f1_scope(m)) == (0.6, 0.75, " over 1 of 3 classes (walking)")
    assert R.macro_f1_scope(R.metrics_from_confusion(np.diag([1, 2, 0]), ("a", "b", "c"))) == " over 2 of 3 classes"
    assert R.macro_f1_scope(R.metrics_from_confusion(np.diag([1, 2, 3]), ("a", "b", "c"))) == ""
    assert R.macro_f1_scope(R.metrics_from_confusion(np.zeros((2, 2)), ("a", "b"))) == ""
    assert R.one_class_note(["walking", "sitting"]) is None and R.one_class_note([]) is None


def test_the_clis_macro_f1_is_losos_and_the_panel_says_which_classes_its_own_is_over():
    """``odlstudio personalize`` and ``loso`` average the F1 over the classes in the test windows or the
    predictions (scikit-learn's macro-F1, the paper's); the Training panel over the classes in the test windows,
    and it says so when they are fewer than the model's.  On one activity the two differ (0.375 and 0.750 in
    the session that found it): the panel's figure names its one class, and both warn before the round."""
    from app.core.personalize import evaluate_host
    from device.engine import Model, evaluate
    from estimator.arch import paper_cnn

    arch = paper_cnn(20, 5)
    weights = Model(arch, seed=3).get_weights()
    x = np.random.default_rng(0).normal(0.0, 6.0, size=(40, 20, 3)).astype(np.float32)
    guess = evaluate(Model(arch, weights), x, np.zeros(40, np.int64)).confusion[0]
    y = np.full(40, int(np.argmax(guess)), np.int64)  # one activity: the one the model answers most
    ev = evaluate(Model(arch, weights), x, y)
    assert 0 < ev.accuracy < 1 and np.count_nonzero(ev.confusion[y[0]]) > 1  # it answers other classes too
    predicted = np.flatnonzero(ev.confusion.sum(axis=0) + ev.confusion.sum(axis=1))
    f1 = ev.per_class_f1
    assert evaluate_host(arch, weights, x, y)["macro_f1"] == round(float(np.mean(f1[predicted])), 4)
    panel = R.metrics_from_confusion(ev.confusion, tuple("abcde"))
    assert panel["macro_f1"] == float(f1[y[0]])
    assert R.macro_f1_scope(panel) == f" over 1 of 5 classes ({'abcde'[y[0]]})"


def test_the_estimators_window_counts_take_the_rounds_pair_or_split_a_count():
    from estimator.recommend import window_counts

    assert window_counts((48, 4), 8, robust=True) == (48, 4)
    assert window_counts((48, 4), 8, robust=False) == (52, 0)  # a plain round trains on every window
    assert window_counts((0, 0), 8, robust=True) == (1, 0)
    assert window_counts((1, 0), 8, robust=False) == (1, 0)  # one window: one to train on
    assert window_counts((0, 0), 8, robust=False) == (1, 0)
    assert window_counts(53, 8, robust=True) == (48, 5)
    assert window_counts(53, 8, robust=False) == (53, 0)
    assert window_counts(None, 8, robust=True) == (8, 0)
