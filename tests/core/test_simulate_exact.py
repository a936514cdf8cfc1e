"""Exact checks of personalization simulated on a user's own windows (app/core/simulate.py)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from app.core import datasets as ds
from app.core import loso
from app.core import simulate as simulate_mod
from app.core.board_round import stratified_subset
from app.core.simulate import SimulationResult, simulate
from estimator.arch import Arch, Layer
from estimator.recommend import MeasuredAccuracy, TableIIPrior, default_accuracy

CLASSES = ("sitting", "walking")


def _arch(T: int = 10) -> Arch:
    """Mean of each axis -> Dense 2 -> softmax: the class follows the sign of the mean x."""
    layers = (Layer("gap1d", "gap"), Layer("dense", "dense", units=2), Layer("softmax", "softmax"))
    return Arch((T, 3), layers, CLASSES)


# says 'walking' when the mean x is > 0 and 'sitting' when it is < 0 (right for the user's windows)
RIGHT = {"dense": [np.array([[-1.0, 1.0], [0.0, 0.0], [0.0, 0.0]], np.float32), np.zeros(2, np.float32)]}
# says 'sitting' for every window
ALWAYS_SITTING = {"dense": [np.zeros((3, 2), np.float32), np.array([1.0, 0.0], np.float32)]}


def _seg(activity: str, sign: float, n: int = 100, subject: str = "u1", marked: bool = False) -> ds.Segment:
    data = np.zeros((n, 3), np.float32)
    data[:, 0] = sign
    if marked:
        data[:, 1] = np.arange(n)  # the sample's position, so every window can be told apart
    return ds.Segment(subject, activity, data, 20.0)


def _user(n: int = 100, marked: bool = False) -> ds.RecordingSet:
    """One user: 'walking' (x = +1) and 'sitting' (x = -1), n samples each (y = sample position if marked)."""
    return ds.RecordingSet([_seg("walking", 1.0, n, marked=marked), _seg("sitting", -1.0, n, marked=marked)])


class _Loaded:
    """A loaded model with a ``prepare`` its windows go through."""

    def __init__(self, arch, weights, prepare=None):
        self.arch, self.weights = arch, weights
        if prepare is not None:
            self.prepare = prepare


@pytest.fixture()
def spy(monkeypatch):
    """Replace the host training and scoring with recorders: a model is ('model', mode, epochs done); its
    macro-F1 is 0.1 (none), 0.2 (last), 0.3 (tl), 0.4 (full) plus epochs / 100, its accuracy that plus 0.5."""
    calls: dict[str, list] = {"personalize": [], "score": []}
    base = {"none": 0.1, "last": 0.2, "tl": 0.3, "full": 0.4}

    def personalize_host(arch, weights, x, y, mode, epochs, *args, **kwargs):
        calls["personalize"].append(
            {"T": arch.input_size, "weights": weights, "x": x, "y": y, "mode": mode, "epochs": epochs}
            | {"args": args, "kwargs": {k: v for k, v in kwargs.items() if k != "on_epoch"}}
        )
        on_epoch = kwargs.get("on_epoch")
        if on_epoch is not None:
            for k in range(1, epochs + 1):
                on_epoch(k, ("model", mode, k))
        return ("model", mode, epochs)

    def score(model, x, y):
        calls["score"].append({"model": model, "x": x, "y": y})
        v = base[model[1]] + model[2] / 100
        return {"macro_f1": round(v, 4), "accuracy": round(v + 0.5, 4)}

    monkeypatch.setattr(loso, "personalize_host", personalize_host)
    monkeypatch.setattr(loso, "score", score)
    return calls


def _result() -> SimulationResult:
    return SimulationResult(
        table={(20, "tl", 2): 0.61, (20, "tl", 5): 0.72, (20, "full", 5): 0.83, (40, "tl", 2): 0.64},
        accuracy={(20, "tl", 2): 0.71, (20, "tl", 5): 0.82, (20, "full", 5): 0.93, (40, "tl", 2): 0.74},
        none={20: 0.45, 40: 0.5},
        n_train={20: 120, 40: 58},
        n_test={20: 40, 40: 20},
        seconds=1.5,
        settings={"seed": 3},
    )


# --------------------------------------------------------------------------------------------------
# SimulationResult: the callable accuracy model, the recommender's accuracy model, the saved dict
# --------------------------------------------------------------------------------------------------


def test_result_gives_the_value_of_the_nearest_simulated_epoch_count_at_or_below():
    r = _result()
    assert r(20, "tl", 2) == 0.61
    assert r(20, "tl", 4) == 0.61
    assert r(20, "tl", 5) == 0.72
    assert r(20, "tl", 50) == 0.72
    assert r("20", "full", "6") == 0.83  # T and epochs from text are taken as numbers


def test_result_gives_the_general_model_below_the_smallest_simulated_epoch_count():
    r = _result()
    assert r(20, "tl", 1) == 0.45
    assert r("40", "tl", "0") == 0.5


def test_result_refuses_a_T_or_mode_that_was_not_simulated():
    r = _result()
    with pytest.raises(KeyError, match=r"^'T=60, mode=tl was not simulated'$"):
        r(60, "tl", 2)
    with pytest.raises(KeyError, match=r"^'T=40, mode=full was not simulated'$"):
        r(40, "full", 2)


def test_accuracy_model_holds_the_table_plus_the_general_model_at_zero_epochs():
    acc = _result().accuracy_model(fallback=None)
    assert isinstance(acc, MeasuredAccuracy)
    assert dict(acc.table) == {
        (20, "tl", 2): 0.61,
        (20, "tl", 5): 0.72,
        (20, "full", 5): 0.83,
        (40, "tl", 2): 0.64,
        (20, "tl", 0): 0.45,
        (20, "full", 0): 0.45,
        (40, "tl", 0): 0.5,
    }
    assert acc.fallback is None
    assert acc.lookup(40, "tl", 0) == (0.5, "measured (host-side simulation)")


def test_accuracy_model_falls_back_to_the_default_prior_or_the_one_given():
    r = _result()
    acc = r.accuracy_model()
    assert acc.fallback == default_accuracy()
    assert acc.lookup(20, "full", 5) == (0.83, "measured (host-side simulation)")
    prior = TableIIPrior()
    acc2 = r.accuracy_model(prior)
    assert acc2.fallback is prior
    value, source = acc2.lookup(80, "full", 5)
    assert (value, source) == (prior.lookup(80, "full", 5)[0], prior.lookup(80, "full", 5)[1] + " (no measurement)")


def test_accuracy_model_leaves_the_result_table_unchanged():
    r = _result()
    r.accuracy_model(fallback=None)
    assert set(r.table) == {(20, "tl", 2), (20, "tl", 5), (20, "full", 5), (40, "tl", 2)}


def test_to_dict_lists_the_table_sorted_with_f1_and_accuracy_and_string_keys():
    assert _result().to_dict() == {
        "table": [
            {"T": 20, "mode": "full", "epochs": 5, "macro_f1": 0.83, "accuracy": 0.93},
            {"T": 20, "mode": "tl", "epochs": 2, "macro_f1": 0.61, "accuracy": 0.71},
            {"T": 20, "mode": "tl", "epochs": 5, "macro_f1": 0.72, "accuracy": 0.82},
            {"T": 40, "mode": "tl", "epochs": 2, "macro_f1": 0.64, "accuracy": 0.74},
        ],
        "none": {"20": 0.45, "40": 0.5},
        "n_train": {"20": 120, "40": 58},
        "n_test": {"20": 40, "40": 20},
        "seconds": 1.5,
        "settings": {"seed": 3},
    }


# --------------------------------------------------------------------------------------------------
# simulate(): input checks (messages the user reads)
# --------------------------------------------------------------------------------------------------


def test_simulate_needs_sizes_when_models_is_a_callable():
    with pytest.raises(ValueError, match=r"^sizes must be given when models is a callable$"):
        simulate(_user(), lambda T: (_arch(T), RIGHT))


@pytest.mark.parametrize(
    "epochs, message",
    [((0, 3), "epochs must be integers >= 1, got [0, 3]"), ((), "epochs must be integers >= 1, got []")],
)
def test_simulate_refuses_epoch_counts_below_one_or_none_at_all(epochs, message):
    with pytest.raises(ValueError) as e:
        simulate(_user(), {10: (_arch(), RIGHT)}, epochs=epochs)
    assert str(e.value) == message


def test_simulate_accepts_an_epoch_count_of_one():
    sim = simulate(_user(), {10: (_arch(), RIGHT)}, modes=("last",), epochs=(1,))
    assert sim.table == {(10, "last", 1): 1.0}


def test_simulate_names_every_mode_it_refuses():
    with pytest.raises(ValueError) as e:
        simulate(_user(), {10: (_arch(), RIGHT)}, modes=("tl", "deep", "none"))
    assert str(e.value) == "modes deep, none not allowed (tl, full, last)"


def test_simulate_takes_exactly_one_users_recordings():
    two = ds.RecordingSet([_seg("walking", 1.0, subject="u1"), _seg("walking", 1.0, subject="u2")])
    with pytest.raises(ValueError) as e:
        simulate(two, {10: (_arch(), RIGHT)})
    assert str(e.value) == "simulate() takes one user's recordings, got subjects ['u1', 'u2']"
    with pytest.raises(ValueError) as e:
        simulate(ds.RecordingSet([]), {10: (_arch(), RIGHT)})
    assert str(e.value) == "simulate() takes one user's recordings, got subjects []"


def test_simulate_names_the_sizes_it_has_models_for():
    with pytest.raises(ValueError) as e:
        simulate(_user(), {10: (_arch(10), RIGHT), 20: (_arch(20), RIGHT)}, sizes=[60])
    assert str(e.value) == "no general model for T=60 (have: 10, 20)"


def test_simulate_says_when_the_callable_has_no_model_for_a_size():
    with pytest.raises(ValueError) as e:
        simulate(_user(), lambda T: None, sizes=[60])
    assert str(e.value) == "no general model for T=60 (have: ?)"


def test_simulate_refuses_a_model_made_for_another_T():
    with pytest.raises(ValueError) as e:
        simulate(_user(), {20: (_arch(10), RIGHT)})
    assert str(e.value) == "the model given for T=20 takes T=10"


def test_simulate_refuses_a_split_without_test_windows():
    # 30 samples per activity, 90 % for training: 27 samples -> 4 windows each (stride 5), 3 samples left -> none
    with pytest.raises(ValueError) as e:
        simulate(_user(30), {10: (_arch(), RIGHT)}, train_fraction=0.9)
    assert str(e.value) == "T=10: 8 training and 0 test windows — too little data"


def test_simulate_refuses_a_split_without_training_windows():
    # 100 samples per activity, 5 % for training: 5 samples -> none; 95 test samples -> 9 windows each
    with pytest.raises(ValueError) as e:
        simulate(_user(100), {10: (_arch(), RIGHT)}, train_fraction=0.05)
    assert str(e.value) == "T=10: 0 training and 18 test windows — too little data"


# --------------------------------------------------------------------------------------------------
# simulate(): real host-engine runs on tiny models
# --------------------------------------------------------------------------------------------------


def test_simulate_scores_a_right_general_model_at_one():
    sim = simulate(_user(), {10: (_arch(), RIGHT)}, modes=("last", "full"), epochs=(1, 2))
    assert sim.none == {10: 1.0}
    assert sim.table == {(10, "last", 1): 1.0, (10, "last", 2): 1.0, (10, "full", 1): 1.0, (10, "full", 2): 1.0}
    assert sim.accuracy == sim.table


def test_simulate_personalizing_fixes_a_model_that_says_sitting_for_everything():
    """General model: every test window 'sitting' -> accuracy 0.5, macro-F1 (2/3 + 0) / 2; trained: all right."""
    sim = simulate(
        _user(), {10: (_arch(), ALWAYS_SITTING)}, modes=("tl",), epochs=(1, 2), lr=0.5, batch=4, warmup_epochs=0
    )
    assert sim.none == {10: 0.3333}
    assert sim.table == {(10, "tl", 1): 1.0, (10, "tl", 2): 1.0}
    assert sim.accuracy == {(10, "tl", 1): 1.0, (10, "tl", 2): 1.0}


def test_simulate_counts_the_chronological_split_per_activity():
    """100 samples per activity, T=10, 60 %: 60 training samples -> 11 windows (stride 5), 40 test -> 4 (stride 10)."""
    sim = simulate(_user(), {10: (_arch(), RIGHT)}, modes=("last",), epochs=(1,))
    assert sim.n_train == {10: 22}
    assert sim.n_test == {10: 8}
    # 80 % training: 80 samples -> 15 windows, 20 test samples -> 2 windows, per activity
    sim = simulate(_user(), {10: (_arch(), RIGHT)}, modes=("last",), epochs=(1,), train_fraction=0.8)
    assert (sim.n_train, sim.n_test) == ({10: 30}, {10: 4})


def test_simulate_sends_the_windows_through_the_models_prepare():
    """A prepare that flips the sign turns the right model into one wrong on every window: macro-F1 0."""
    flipped = _Loaded(_arch(), RIGHT, prepare=lambda x: -x)
    sim = simulate(_user(), {10: flipped}, modes=("last",), epochs=(1,), lr=0.0, warmup_epochs=0)
    assert sim.none == {10: 0.0}
    assert sim.table == {(10, "last", 1): 0.0}


def test_simulate_takes_a_loaded_model_without_prepare():
    sim = simulate(_user(), {10: _Loaded(_arch(), RIGHT)}, modes=("last",), epochs=(1,), lr=0.0, warmup_epochs=0)
    assert sim.none == {10: 1.0}
    assert sim.table == {(10, "last", 1): 1.0}


def test_simulate_records_its_settings():
    sim = simulate(
        _user(),
        {10: (_arch(), RIGHT)},
        modes=("full", "last"),
        epochs=(3, 1, 3),
        warmup_epochs=1,
        lr=0.02,
        batch=8,
        train_fraction=0.7,
        seed=5,
    )
    assert sim.settings == {
        "modes": ["full", "last"],
        "epochs": [1, 3],
        "warmup_epochs": 1,
        "lr": 0.02,
        "batch": 8,
        "train_fraction": 0.7,
        "seed": 5,
    }


def test_simulate_default_settings():
    sim = simulate(_user(), {10: (_arch(), RIGHT)})
    assert sim.settings == {
        "modes": ["tl", "full"],
        "epochs": [1, 2, 5, 10],
        "warmup_epochs": 2,
        "lr": 0.01,
        "batch": 32,
        "train_fraction": 0.6,
        "seed": 0,
    }
    assert set(sim.table) == {(10, m, e) for m in ("tl", "full") for e in (1, 2, 5, 10)}


def test_simulate_times_the_whole_run_in_milliseconds(monkeypatch):
    clock = iter([100.0, 101.23456])
    monkeypatch.setattr(simulate_mod, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    sim = simulate(_user(), {10: (_arch(), RIGHT)}, modes=("last",), epochs=(1,))
    assert sim.seconds == 1.235


def test_simulate_is_deterministic_for_a_seed():
    kw = {"modes": ("full",), "epochs": (1, 2), "lr": 0.05, "batch": 4, "seed": 2}
    a = simulate(_user(), {10: (_arch(), ALWAYS_SITTING)}, **kw)
    b = simulate(_user(), {10: (_arch(), ALWAYS_SITTING)}, **kw)
    assert (a.table, a.accuracy, a.none) == (b.table, b.accuracy, b.none)


# --------------------------------------------------------------------------------------------------
# simulate(): what it hands to training and scoring (recorded)
# --------------------------------------------------------------------------------------------------


def test_simulate_trains_each_mode_once_up_to_the_largest_epoch_count_with_the_users_settings(spy):
    simulate(
        _user(),
        {10: (_arch(), RIGHT)},
        modes=("tl", "full"),
        epochs=(2, 1),
        warmup_epochs=3,
        lr=0.07,
        batch=6,
        seed=9,
    )
    got = [(c["T"], c["mode"], c["epochs"], c["args"], c["kwargs"]) for c in spy["personalize"]]
    assert got == [
        (10, "none", 0, (), {}),
        (10, "tl", 2, (3, 0.07, 6, 9), {}),
        (10, "full", 2, (3, 0.07, 6, 9), {}),
    ]
    assert all(c["weights"] is RIGHT for c in spy["personalize"])


def test_simulate_measures_only_the_listed_epoch_counts(spy):
    sim = simulate(_user(), {10: (_arch(), RIGHT)}, modes=("last", "full"), epochs=(4, 2))
    assert sim.table == {(10, "last", 2): 0.22, (10, "last", 4): 0.24, (10, "full", 2): 0.42, (10, "full", 4): 0.44}
    assert sim.accuracy == {(10, "last", 2): 0.72, (10, "last", 4): 0.74, (10, "full", 2): 0.92, (10, "full", 4): 0.94}
    assert sim.none == {10: 0.1}
    assert [c["model"] for c in spy["score"]] == [
        ("model", "none", 0),
        ("model", "last", 2),
        ("model", "last", 4),
        ("model", "full", 2),
        ("model", "full", 4),
    ]


def test_simulate_trains_on_the_training_windows_and_scores_on_the_test_windows(spy):
    simulate(_user(marked=True), {10: (_arch(), RIGHT)}, modes=("tl",), epochs=(1,))
    train, test = ds.personal_split(_user(marked=True), 10, 0.6, CLASSES)
    for c in spy["personalize"]:
        np.testing.assert_array_equal(c["x"], train.x)
        np.testing.assert_array_equal(c["y"], train.y)
    for c in spy["score"]:
        np.testing.assert_array_equal(c["x"], test.x)
        np.testing.assert_array_equal(c["y"], test.y)
    # training windows start every 5 samples in the first 60, test windows every 10 from sample 60
    assert [float(w[0, 1]) for w in spy["personalize"][0]["x"][:11]] == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert [float(w[0, 1]) for w in spy["score"][0]["x"][:4]] == [60, 70, 80, 90]


def test_simulate_runs_the_sizes_in_order_and_defaults_to_the_mappings_sizes(spy):
    models = {20: (_arch(20), RIGHT), 10: (_arch(10), RIGHT)}
    sim = simulate(_user(), models, modes=("tl",), epochs=(1,))
    assert list(sim.none) == [10, 20]
    assert [c["T"] for c in spy["personalize"]] == [10, 10, 20, 20]
    assert sim.table == {(10, "tl", 1): 0.31, (20, "tl", 1): 0.31}
    # 20-sample windows: 60 samples -> 5 training windows (stride 10), 40 -> 2 test windows, per activity
    assert (sim.n_train, sim.n_test) == ({10: 22, 20: 10}, {10: 8, 20: 4})


def test_simulate_asks_a_callable_for_each_given_size(spy):
    asked = []

    def models(T):
        asked.append(T)
        return (_arch(T), RIGHT)

    sim = simulate(_user(), models, sizes=("20", 10.0), modes=("last",), epochs=(1,))
    assert asked == [20, 10]
    assert list(sim.none) == [20, 10]
    assert all(type(T) is int for T in sim.none)


def test_simulate_caps_the_training_windows_class_stratified_with_the_seed(spy):
    user = _user(marked=True)
    sim = simulate(user, {10: (_arch(), RIGHT)}, modes=("tl",), epochs=(1,), max_train_windows=6, seed=4)
    assert sim.n_train == {10: 6}
    assert sim.n_test == {10: 8}
    train, _ = ds.personal_split(user, 10, 0.6, CLASSES)
    keep = stratified_subset(train.y, 6, 4)
    for c in spy["personalize"]:
        assert c["y"].tolist() == [1, 1, 1, 0, 0, 0]  # walking was recorded first
        np.testing.assert_array_equal(c["x"], train.x[keep])
    assert keep.tolist() != stratified_subset(train.y, 6, 0).tolist()  # the seed matters here


def test_simulate_keeps_every_training_window_at_or_under_the_cap(spy):
    sim = simulate(_user(), {10: (_arch(), RIGHT)}, modes=("tl",), epochs=(1,), max_train_windows=22)
    assert sim.n_train == {10: 22}
    assert len(spy["personalize"][0]["y"]) == 22
