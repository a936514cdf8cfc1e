"""What a user reads while a round runs, and the round's board-free helpers (``app/core/rounds.py``): the progress
by batches, the time left and its wording, the thread-safe state the views snapshot, how the round's events
(:class:`_RunnerObserver`) become batch rows, warnings, progress and an estimate, the windows subsampled to fit
the board's SRAM, the refusal of diverged weights and the round's files.

Every expected value is written out by hand.  No board, no bench, no TensorFlow: the observer is driven with a
real :class:`RoundRunner` on a real app store and a stand-in round plan (``predict``); models are
:mod:`estimator.arch` layers with hand-made weights (``tests/core/test_model_formats.py``)."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from app.core import rounds as R
from app.core.models import LoadedModel, load_npz
from app.core.procedure import PLAIN, Procedure
from app.core.round_data import LocalData
from app.core.rounds import (
    BatchRow,
    RoundConfig,
    RoundError,
    RoundRunner,
    RoundState,
    _board_windows,
    _RunnerObserver,
    batch_fraction,
    eta_text,
    round_eta,
)
from app.core.store import Store
from estimator.arch import Arch, Layer
from estimator.memory import robust_round_bytes, training_memory
from tests.core.test_model_formats import TINY, tiny_weights


def test_no_tensorflow_is_imported():
    """This file's imports pull in no TensorFlow (a forked mutant of a process that imported it hangs).  Checked in
    a fresh interpreter: in a whole test run, other files have imported it long before this one runs."""
    root = Path(__file__).resolve().parents[2]
    code = "import sys, tests.core.test_round_progress_exact; print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- progress and the time left -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("done", "total", "fraction"),
    [
        (0, 10, 0.05),
        (1, 10, 0.14),
        (5, 10, 0.50),
        (10, 10, 0.95),
        (12, 10, 0.95),  # more reports than planned: never past the training share
        (-3, 10, 0.05),
        (0, 0, 0.05),  # no batch planned
        (1, 0, 0.95),
        (1, 1, 0.95),
        (2, 3, 0.65),
        (2, 1, 0.95),
        (3, 0, 0.95),
    ],
)
def test_progress_is_5_to_95_percent_linear_in_batches_done(done, total, fraction):
    assert batch_fraction(done, total) == pytest.approx(fraction, abs=1e-12)


PLAN = [1.0, 1.0, 3.0, 3.0, 3.0, 3.0]  # 2 warm-up batches then 4 main ones, predicted board seconds


@pytest.mark.parametrize(
    ("done", "elapsed", "tail", "left"),
    [
        (0, 0.0, 2.0, 16.0),  # before the first batch: the plan as is
        (0, 50.0, 2.0, 16.0),  # nothing done yet: no pace to scale by
        (1, 4.0, 2.0, 60.0),  # 4 s for a 1-s batch: 4x slower, (1 + 12 + 2) * 4
        (2, 1.0, 0.0, 6.0),  # 2x faster: 12 / 2
        (3, 5.0, 0.0, 9.0),  # 5 s for 5 predicted: as planned
        (6, 28.0, 2.0, 4.0),  # all batches done: the evaluation after, at the measured pace (28 / 14 * 2)
        (9, 14.0, 0.0, 0.0),  # more than planned: clamped to the plan
        (-2, 5.0, 0.0, 14.0),  # negative: before the first batch
        (2, 0.0, 0.0, 12.0),  # no time measured yet: the plan
        (2, -1.0, 0.0, 12.0),  # a clock that went back: the plan
        (2, 4.0, -20.0, 0.0),  # never negative
    ],
)
def test_time_left_is_the_plan_scaled_by_the_measured_pace(done, elapsed, tail, left):
    assert round_eta(PLAN, done, elapsed, tail) == pytest.approx(left, abs=1e-12)


def test_time_left_has_no_tail_by_default_and_takes_a_fractional_count():
    assert round_eta(PLAN, 2, 2.0) == 12.0
    assert round_eta(PLAN, 2.9, 2.0) == 12.0  # int(): 2 batches done


def test_batches_planned_at_zero_seconds_give_no_pace():
    """Done batches the plan predicted at 0 s: the plan as is (not a division by zero)."""
    assert round_eta([0.0, 0.0, 3.0], 2, 5.0, 1.0) == 4.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, ""),
        (math.nan, ""),
        (math.inf, ""),
        (-math.inf, ""),
        (-3.0, "a few seconds left"),
        (0, "a few seconds left"),
        (4.99, "a few seconds left"),
        (5, "about 5 s left"),
        (7.4, "about 5 s left"),
        (7.6, "about 10 s left"),
        (42, "about 40 s left"),
        (57.4, "about 55 s left"),
        (59.9, "about 60 s left"),
        (60, "about 1 min left"),
        (64, "about 1 min left"),
        (66, "about 1 min 10 s left"),
        (130, "about 2 min 10 s left"),
        (180, "about 3 min left"),
        (594, "about 9 min 50 s left"),
        (595, "about 10 min left"),
        (600, "about 10 min left"),
        (610, "about 10 min left"),  # from 10 min on: whole minutes
        (631, "about 11 min left"),
        (1500, "about 25 min left"),
        (3600, "about 60 min left"),
    ],
)
def test_time_left_reads_like_a_person(seconds, text):
    """Below 5 s 'a few seconds', below a minute by 5 s, below 10 min by 10 s, then by minutes."""
    assert eta_text(seconds) == text


# --- the state the views snapshot ----------------------------------------------------------------------------


def row(index: int, phase: str = "main", loss: float = 0.5, **kw) -> BatchRow:
    return BatchRow(index, phase, 0, index, 16, loss, 100 * index, 100 * index + 90, 9000, 0.09, **kw)


FRESH = {
    "version": 0,
    "stage": "idle",
    "fraction": 0.0,
    "text": "",
    "batches_done": 0,
    "eta_s": None,
    "eta_at": 0.0,
    "round_id": None,
    "total_batches": 0,
    "rows": [],
    "warnings": [],
    "before": None,
    "after": None,
    "classes": (),
    "status": "idle",
}


def test_a_new_state_is_idle():
    assert RoundState().snapshot() == FRESH


def test_every_update_bumps_the_version_once():
    st = RoundState()
    st.update(stage="training", fraction=0.5, text="batch 1/2")
    st.update(status="running")
    assert st.snapshot() == {
        **FRESH,
        "version": 2,
        "stage": "training",
        "fraction": 0.5,
        "text": "batch 1/2",
        "status": "running",
    }


def test_a_row_replaces_its_index_or_is_appended():
    st = RoundState()
    st.set_row(row(0, loss=1.0))
    st.set_row(row(1, loss=2.0))
    st.set_row(row(0, loss=3.0))  # batch 0 again (its energy settled): replaced, not appended
    snap = st.snapshot()
    assert [(r.index, r.loss) for r in snap["rows"]] == [(0, 3.0), (1, 2.0)]
    assert snap["version"] == 3


def test_a_warning_is_listed_once():
    st = RoundState()
    st.warn("no LPM01A")
    st.warn("slow board")
    st.warn("no LPM01A")
    snap = st.snapshot()
    assert snap["warnings"] == ["no LPM01A", "slow board"]
    assert snap["version"] == 2  # the repeated warning changed nothing


def test_a_snapshot_is_a_copy_of_the_lists():
    st = RoundState()
    st.set_row(row(0))
    st.warn("w1")
    snap = st.snapshot()
    st.set_row(row(1))
    st.warn("w2")
    assert [r.index for r in snap["rows"]] == [0] and snap["warnings"] == ["w1"]


# --- the runner and its observer (a real store, no board) --------------------------------------------------


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db")
    yield s
    s.close()


def runner(store, tmp_path, **cfg) -> RoundRunner:
    return RoundRunner(store, None, tmp_path / "data", RoundConfig(**cfg), 1)


def test_a_runner_starts_with_its_defaults(store, tmp_path):
    r = RoundRunner(store, "devices", str(tmp_path / "d"), RoundConfig(), 3)
    assert (r.store, r.devices, r.data_dir, r.dataset_id) == (store, "devices", tmp_path / "d", 3)
    assert (r.user, r.profile_dir, r.board_key, r.round_id) == ("user", None, None, None)
    assert (r.eval_timeout_s, r.wait_power_s) == (120.0, 5.0)
    assert r.state.snapshot() == FRESH
    st = RoundState()
    r2 = RoundRunner(
        store, None, tmp_path, RoundConfig(), 3, st, user="ann", profile_dir="p", board_key="b",
        eval_timeout_s=7, wait_power_s=2,
    )  # fmt: skip
    assert r2.state is st
    assert (r2.user, r2.profile_dir, r2.board_key, r2.eval_timeout_s, r2.wait_power_s) == ("ann", "p", "b", 7.0, 2.0)
    assert type(r2.eval_timeout_s) is float and type(r2.wait_power_s) is float


def test_a_runner_refuses_a_bad_config(store, tmp_path):
    with pytest.raises(RoundError) as ei:
        runner(store, tmp_path, batch_size=0)
    assert str(ei.value) == "batch_size = 0 is outside the allowed range (1..1024)"


def test_a_stage_is_shown_and_reported(store, tmp_path):
    r = runner(store, tmp_path)
    seen = []
    r.stage(0.01, "windowing the labelled data", lambda f, t: seen.append((f, t)))
    snap = r.state.snapshot()
    assert (snap["stage"], snap["fraction"], snap["text"]) == (
        "windowing the labelled data",
        0.01,
        "windowing the labelled data",
    )
    assert seen == [(0.01, "windowing the labelled data")]


class Plan:
    """The round plan's stand-in: warm-up batches 1 s, main batches 3 s; records what was asked."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def __call__(self, phase, n):
        self.calls.append((int(phase), n))
        return (1.0 if phase == 0 else 3.0), 0.5


def observer(store, tmp_path, monkeypatch, *, cancelled=lambda: False, **cfg):
    r = runner(store, tmp_path, **cfg)
    r.round_id = store.add_round({"mode": "full"})
    seen: list[tuple[float, str]] = []
    result: dict = {}
    plan = Plan()
    now = [100.0]
    monkeypatch.setattr(R, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    obs = _RunnerObserver(r, cancelled, lambda f, t="": seen.append((f, t)), plan, 2.0, result, ("sit", "walk"))
    return obs, r, seen, result, plan, now


def test_the_observer_passes_cancel_and_stages_through(store, tmp_path, monkeypatch):
    obs, r, seen, *_ = observer(store, tmp_path, monkeypatch, cancelled=lambda: True)
    assert obs.cancelled() is True
    obs2, *_ = observer(store, tmp_path, monkeypatch)
    assert obs2.cancelled() is False
    obs.stage(0.03, "uploading the model")
    assert seen == [(0.03, "uploading the model")]
    assert r.state.snapshot()["text"] == "uploading the model"
    obs.aborting()
    assert r.state.snapshot()["text"] == "aborting the round"
    obs.warn("w")
    obs.warn("w")
    assert r.state.snapshot()["warnings"] == ["w"]


def test_an_evaluation_becomes_the_before_metrics(store, tmp_path, monkeypatch):
    obs, r, _seen, result, *_ = observer(store, tmp_path, monkeypatch)
    obs.evaluated("before", types.SimpleNamespace(matrix=np.array([[2, 0], [1, 1]]), loss=0.5))
    m = r.state.snapshot()["before"]
    assert m["n"] == 4 and m["accuracy"] == 0.75 and m["loss"] == 0.5 and m["classes"] == ["sit", "walk"]
    assert m["per_class_f1"] == pytest.approx({"sit": 0.8, "walk": 2 / 3})
    assert m["confusion"] == [[2, 0], [1, 1]]
    assert result == {"before": m} and r.state.snapshot()["after"] is None


def test_the_start_plans_warmup_and_main_batches(store, tmp_path, monkeypatch):
    """1 warm-up epoch of 2 batches then 4 main ones, batch size 16: the plan asks the estimator per batch."""
    obs, r, _seen, _res, plan, _now = observer(store, tmp_path, monkeypatch, warmup_epochs=1, batch_size=16)
    obs.started(types.SimpleNamespace(total_batches=6, batches_per_epoch=2), 100.0)
    assert obs.plan == [1.0, 1.0, 3.0, 3.0, 3.0, 3.0]
    assert plan.calls == [(0, 16), (0, 16), (1, 16), (1, 16), (1, 16), (1, 16)]
    assert obs.t_train == 100.0
    snap = r.state.snapshot()
    assert (snap["total_batches"], snap["fraction"], snap["text"], snap["batches_done"]) == (6, 0.05, "batch 0/6", 0)
    assert (snap["eta_s"], snap["eta_at"]) == (16.0, 100.0)  # 14 s of batches + 2 s of evaluation


def test_the_start_of_a_round_without_batches(store, tmp_path, monkeypatch):
    """A board reporting 0 batches (0 per epoch): one planned batch, no warm-up epoch length of 0."""
    obs, r, _seen, _res, plan, _now = observer(store, tmp_path, monkeypatch, warmup_epochs=1)
    obs.started(types.SimpleNamespace(total_batches=0, batches_per_epoch=0), 5.0)
    assert plan.calls == [(0, 32)]
    snap = r.state.snapshot()
    assert (snap["total_batches"], snap["text"], snap["eta_s"]) == (0, "batch 0/1", 3.0)
    obs.started(types.SimpleNamespace(total_batches=3, batches_per_epoch=0), 5.0)  # the warm-up: 1 batch
    assert obs.plan == [1.0, 3.0, 3.0]


def test_the_start_resets_the_batch_count(store, tmp_path, monkeypatch):
    obs, r, *_ = observer(store, tmp_path, monkeypatch)
    r.state.update(batches_done=5)
    obs.started(types.SimpleNamespace(total_batches=4, batches_per_epoch=4), 1.0)
    assert r.state.snapshot()["batches_done"] == 0


def test_a_report_before_the_start_shows_the_evaluation_left(store, tmp_path, monkeypatch):
    """No plan yet (the start not heard): the batch counts, the estimate is the evaluation's 2 s."""
    obs, r, seen, *_ = observer(store, tmp_path, monkeypatch)
    obs.report(row(0), 4)
    assert seen == [(pytest.approx(0.275), "batch 1/4, loss 0.500, a few seconds left")]
    assert r.state.snapshot()["eta_s"] == 2.0


def test_batch_reports_move_progress_and_the_estimate(store, tmp_path, monkeypatch):
    obs, r, seen, _res, _plan, now = observer(store, tmp_path, monkeypatch, warmup_epochs=1, batch_size=16)
    obs.started(types.SimpleNamespace(total_batches=6, batches_per_epoch=2), 100.0)
    now[0] = 104.0  # batch 1 (1 s planned) took 4 s: 4x slower
    obs.report(row(0, "warmup", loss=1.23456), 6)
    assert seen == [(pytest.approx(0.2), "batch 1/6, loss 1.235, about 1 min left")]
    snap = r.state.snapshot()
    assert (snap["fraction"], snap["text"], snap["batches_done"]) == (pytest.approx(0.2), "batch 1/6, loss 1.235", 1)
    assert (snap["eta_s"], snap["eta_at"]) == (60.0, 104.0)
    assert store.round_batches(r.round_id) == [row(0, "warmup", loss=1.23456).to_dict()]

    now[0] = 104.5  # a validation pass: a row, not a batch
    obs.report(row(1, "val", loss=0.7, macro_f1=0.5), 6)
    assert len(seen) == 1 and r.state.snapshot()["batches_done"] == 1 and obs.vals == 1
    assert [x.phase for x in r.state.snapshot()["rows"]] == ["warmup", "val"]

    now[0] = 105.0  # 2 batches (2 s planned) in 5 s: 2.5x; 12 s + 2 s left
    obs.report(row(2, "main", loss=0.25), 6)
    assert seen[-1] == (pytest.approx(0.35), "batch 2/6, loss 0.250, about 35 s left")
    assert r.state.snapshot()["eta_s"] == 35.0

    obs.report(row(3, "val"), 6)  # a second validation pass
    now[0] = 109.0  # 3 batches (5 s planned) in 9 s: 1.8x; 9 s + 2 s left
    obs.report(row(4, "main", loss=0.125), 6)
    assert seen[-1] == (pytest.approx(0.5), "batch 3/6, loss 0.125, about 20 s left")
    assert r.state.snapshot()["eta_s"] == pytest.approx(19.8)
    assert [d["index"] for d in store.round_batches(r.round_id)] == [0, 1, 2, 3, 4]


def test_a_settled_row_replaces_the_reported_one(store, tmp_path, monkeypatch):
    obs, r, *_ = observer(store, tmp_path, monkeypatch)
    r.state.set_row(row(0))
    obs.settled(row(0, energy_j=0.125, source="d7"))
    assert [(x.energy_j, x.source) for x in r.state.snapshot()["rows"]] == [(0.125, "d7")]
    assert [(d["energy_j"], d["source"]) for d in store.round_batches(r.round_id)] == [(0.125, "d7")]


# --- windows that fit the board's SRAM ------------------------------------------------------------------------

# input (4, 2): a window takes 2 * 8 + 1 = 17 bytes on the board; 34 filters/units: 13,828 bytes (13.5 KiB) of
# training buffers when every layer trains
W34 = Arch(
    (4, 2),
    (
        Layer("conv1d", "conv1", filters=34, kernel=3),
        Layer("relu", "relu1"),
        Layer("gap1d", "gap"),
        Layer("dense", "dense1", units=34),
        Layer("relu", "relu2"),
        Layer("dense", "dense2", units=3),
        Layer("softmax", "softmax"),
    ),
    ("sit", "walk", "run"),
    name="w34",
)
ALL = frozenset({"conv1", "dense1", "dense2"})


def local(n_tr: int, n_te: int) -> LocalData:
    """Windows whose every value is their index (train) or 100 + index (test)."""
    tr = np.arange(n_tr, dtype=np.float32)[:, None, None] * np.ones((1, 4, 2), np.float32)
    te = (100 + np.arange(n_te, dtype=np.float32))[:, None, None] * np.ones((1, 4, 2), np.float32)
    return LocalData(tr, np.arange(n_tr) % 3, te, np.arange(n_te) % 3, ("sit", "walk", "run"), ["a note"])


def fit(store, tmp_path, need: int, budget: int, n_tr=10, n_te=5, trainable=ALL, reserve=1000, **cfg):
    """_fit_ram with ``budget`` bytes left for windows: RAM = need + the firmware's reserve + 2 KiB + budget."""
    r = runner(store, tmp_path, **cfg)
    data = local(n_tr, n_te)
    info = types.SimpleNamespace(ram_total=need + reserve + 2048 + budget)
    out = r._fit_ram(
        types.SimpleNamespace(arch=W34), data, trainable, info, types.SimpleNamespace(firmware_reserve_bytes=reserve)
    )  # noqa: SLF001
    return r, data, out


def kept(out: LocalData) -> tuple[list[int], list[int]]:
    return [int(v) for v in out.train_x[:, 0, 0]], [int(v) - 100 for v in out.test_x[:, 0, 0]]


def test_the_accounting_need_is_as_written_here():
    assert training_memory(W34, ALL).paper_bytes == 13828


def test_windows_that_fit_are_all_kept(store, tmp_path):
    """10 + 5 windows of 17 bytes + 64 = 319 bytes: a budget of 319 holds them all."""
    r, data, out = fit(store, tmp_path, 13828, 319, procedure=PLAIN.to_dict())
    assert out is data and r.state.snapshot()["warnings"] == []


def test_one_byte_short_keeps_windows_evenly(store, tmp_path):
    r, data, out = fit(store, tmp_path, 13828, 318, procedure=PLAIN.to_dict())
    assert kept(out) == ([0, 1, 2, 3, 4, 6, 7, 8, 9], [0, 1, 2, 3, 4])
    assert out.train_y.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 0] and out.test_y.tolist() == [0, 1, 2, 0, 1]
    assert out.classes == data.classes and out.notes == ["a note"]
    assert r.state.snapshot()["warnings"] == [
        "the board's SRAM holds 9 of 10 training and 5 of 5 test windows next to 14 KiB of training buffers: "
        "the rest was left out evenly"
    ]


def test_a_third_of_the_room_goes_to_test_windows(store, tmp_path):
    """200 bytes: 3 test windows (200 // 51), then 5 training windows in the rest ((200 - 64 - 51) // 17)."""
    r, _data, out = fit(store, tmp_path, 13828, 200, procedure=PLAIN.to_dict())
    assert kept(out) == ([0, 2, 4, 7, 9], [0, 2, 4])
    assert out.train_y.tolist() == [0, 2, 1, 1, 0] and out.test_y.tolist() == [0, 2, 1]
    assert "holds 5 of 10 training and 3 of 5 test windows" in r.state.snapshot()["warnings"][0]


def test_few_test_windows_leave_the_room_to_training(store, tmp_path):
    """2 + 20 windows, 437 bytes: 8 test windows (437 // 51), both training windows."""
    _r, _data, out = fit(store, tmp_path, 13828, 437, n_tr=2, n_te=20, procedure=PLAIN.to_dict())
    assert kept(out) == ([0, 1], [0, 3, 5, 8, 11, 14, 16, 19])


def test_room_for_two_windows_keeps_one_of_each(store, tmp_path):
    """98 bytes = 2 windows + 64: the first training and the first test window."""
    r, _data, out = fit(store, tmp_path, 13828, 98, procedure=PLAIN.to_dict())
    assert kept(out) == ([0], [0])
    assert "holds 1 of 10 training and 1 of 5 test windows" in r.state.snapshot()["warnings"][0]


def test_no_room_for_two_windows_is_an_error(store, tmp_path):
    """RAM 13,828 + 931 + 2,048 + 97 = 16,904 bytes (16.5 KiB)."""
    with pytest.raises(RoundError) as ei:
        fit(store, tmp_path, 13828, 97, reserve=931, procedure=PLAIN.to_dict())
    assert str(ei.value) == (
        "training needs 14 KiB of the board's 17 KiB SRAM: no room left for any window; "
        "choose a smaller input size or TL"
    )


LAST = frozenset({"dense2"})


@pytest.mark.parametrize(
    ("trainable", "cfg", "need"),
    [
        pytest.param(
            frozenset(),
            {"procedure": PLAIN.to_dict()},
            lambda: training_memory(W34, frozenset()).paper_bytes,
            id="plain",
        ),
        pytest.param(
            frozenset(),
            {"procedure": PLAIN.to_dict(), "warmup_epochs": 1},
            lambda: training_memory(W34, LAST).paper_bytes,  # the warm-up trains the last Dense: more than nothing
            id="plain-warmup",
        ),
        pytest.param(
            ALL,
            {"procedure": PLAIN.to_dict(), "warmup_epochs": 2},
            lambda: training_memory(W34, ALL).paper_bytes,
            id="plain-warmup-full",
        ),
        pytest.param(
            ALL,
            {},
            lambda: 13828 + robust_round_bytes(W34, ALL, False, validate=True, restore_best=True, l2sp=False),
            id="robust",
        ),
        pytest.param(
            LAST,
            {"warmup_epochs": 1},
            lambda: (
                training_memory(W34, LAST).paper_bytes
                + robust_round_bytes(W34, LAST, True, validate=True, restore_best=True, l2sp=False)
            ),
            id="robust-warmup",
        ),
        pytest.param(
            frozenset({"conv1"}),
            {"warmup_epochs": 1},
            lambda: (
                training_memory(W34, frozenset({"conv1"})).paper_bytes
                + robust_round_bytes(W34, frozenset({"conv1"}), True, validate=True, restore_best=True, l2sp=False)
            ),
            id="robust-warmup-conv",
        ),
        pytest.param(
            ALL,
            {"procedure": dataclasses.asdict(Procedure(val_every=10, restore_best=False, l2sp=0.5))},
            lambda: 13828 + robust_round_bytes(W34, ALL, False, validate=True, restore_best=False, l2sp=True),
            id="validate-l2sp",
        ),
        pytest.param(
            ALL,
            {"procedure": dataclasses.asdict(Procedure(val_every=0, restore_best=False, clip_norm=1.0))},
            lambda: 13828 + robust_round_bytes(W34, ALL, False, validate=False, restore_best=False, l2sp=False),
            id="clip-only",
        ),
    ],
)
def test_the_training_buffers_counted_are_exactly_the_rounds(store, tmp_path, trainable, cfg, need):
    """The windows fit exactly when the budget is the round's buffers (plain, warm-up, robust extras) and not
    one byte less."""
    n = need()
    _r, data, out = fit(store, tmp_path, n, 319, trainable=trainable, **cfg)
    assert out is data
    _r, data, out = fit(store, tmp_path, n, 318, trainable=trainable, **cfg)
    assert len(out.train_y) == 9


def test_the_robust_extras_are_not_nothing():
    """(the cases above would not tell the extras apart if they were 0 bytes)"""
    assert robust_round_bytes(W34, ALL, False, validate=True, restore_best=False, l2sp=True) > 0
    assert robust_round_bytes(W34, ALL, False, validate=True, restore_best=True, l2sp=False) > robust_round_bytes(
        W34, ALL, False, validate=True, restore_best=False, l2sp=False
    )
    assert training_memory(W34, LAST).paper_bytes > training_memory(W34, frozenset()).paper_bytes


# --- the round's files ----------------------------------------------------------------------------------------


def tiny_model() -> LoadedModel:
    return LoadedModel(TINY, tiny_weights(), TINY.classes, source="tiny.npz", meta={"rate_hz": 20.0})


def test_the_personalized_weights_and_windows_are_kept(store, tmp_path):
    r = runner(store, tmp_path, lr=0.05)  # data folder tmp_path/data does not exist yet
    r.round_id = 7
    model, data = tiny_model(), local(3, 2)
    w = {k: [a + np.float32(1) for a in v] for k, v in tiny_weights().items()}
    assert r._save_weights(model, w, data) == "rounds/round_7.npz"  # noqa: SLF001
    assert sorted(p.name for p in (tmp_path / "data" / "rounds").iterdir()) == ["round_7.npz", "round_7_windows.npz"]
    back = load_npz(tmp_path / "data" / "rounds" / "round_7.npz")
    assert back.meta == {"rate_hz": 20.0, "personalized_round": 7, "base_model": "tiny.npz"}
    for k in w:
        for a, b in zip(back.weights[k], w[k], strict=True):
            assert np.array_equal(a, b)
    assert model.meta == {"rate_hz": 20.0}  # the base model is left as it was
    with np.load(tmp_path / "data" / "rounds" / "round_7_windows.npz") as z:
        assert sorted(z.files) == ["x", "y"]
        assert np.array_equal(z["x"], data.train_x) and np.array_equal(z["y"], data.train_y)
    r.round_id = 8  # a second round beside the first
    assert r._save_weights(model, w, local(1, 1)) == "rounds/round_8.npz"  # noqa: SLF001
    assert len(list((tmp_path / "data" / "rounds").iterdir())) == 4


def test_diverged_weights_fail_the_round_and_write_nothing(store, tmp_path):
    r = runner(store, tmp_path, lr=0.05)
    r.round_id = 7
    w = tiny_weights()
    w["conv1"][1][0] = np.nan
    w["dense1"][0][1, 2] = np.inf
    with pytest.raises(RoundError) as ei:
        r._save_weights(tiny_model(), w, local(3, 2))  # noqa: SLF001
    assert str(ei.value) == (
        "the round diverged: the board's weights of layer(s) conv1, dense1 are NaN or Inf (learning rate 0.05 too "
        "large?); its batches' time and energy are kept, its weights are not"
    )
    assert not (tmp_path / "data").exists()


def test_the_board_gets_windows_flattened_to_time_by_channels():
    """A model whose input is (T, 3, 1): the board stores (N, T, 3)."""
    x = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    m = types.SimpleNamespace(prepare=lambda w: w.reshape(2, 4, 3, 1) * 2)
    out = _board_windows(m, x)
    assert out.shape == (2, 4, 3) and np.array_equal(out, x * 2)
