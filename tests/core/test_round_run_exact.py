"""The round's orchestration (``RoundRunner.run`` in ``app/core/rounds.py``): what it stores, tells the user and
hands the one round pipeline (:func:`app.core.board_round.run_board_round`), and how it gets the board and the
power monitor ready.  The pipeline, the devices and the model loading have their own tests and targets; here
they are stand-ins that record what they were given, so that every branch of the orchestration runs in
milliseconds (the whole round on the virtual bench: tests/core/test_rounds.py, test_app_faults_round.py).

Every expected value is written out by hand or computed from the estimator functions the round must use."""

from __future__ import annotations

import dataclasses
import json
import threading
import types
from contextlib import contextmanager

import numpy as np
import pytest

from app.core import rounds as R
from app.core.board_round import RoundCancelled, RoundResult
from app.core.devices import POWER_MONITOR, DeviceInfo, DeviceState, DeviceStatus
from app.core.energy import BatchRow
from app.core.models import LoadedModel
from app.core.procedure import PLAIN, ROBUST
from app.core.round_data import LocalData
from app.core.rounds import RoundConfig, RoundError, RoundRunner, RoundState
from app.core.store import Store
from estimator.arch import Arch
from estimator.core import time_per_batch_s, time_per_sample_s
from estimator.profiles import get_profile
from tests.clockkit import OwnThreadTime
from tests.core.test_round_progress_exact import W34 as _W34

W34 = Arch((4, 3), _W34.layers, _W34.classes, _W34.name)  # raw accelerometer windows: x, y, z

BOARD = DeviceInfo("board:x", "board", "socket://x", "NUCLEO-X")
POWER = DeviceInfo("power:y", "powershield", "socket://y", "LPM01A-Y")
CLOCK = 80_000_000


class Clock(OwnThreadTime):
    """time.monotonic / time.sleep for the runner's waits: sleeping advances the clock, nothing waits (for the
    test's own thread only: tests/clockkit.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.t = self.t0 = 1000.0
        self.jumps: list[float] = []  # where the next sleeps land, from t0 (then: + what was slept)

    def monotonic(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t = self.t0 + self.jumps.pop(0) if self.jumps else self.t + s


class Growing:
    """A power stream whose sample count grows by ``step`` each time it is read."""

    def __init__(self, step: int = 1, start: int = 0) -> None:
        self.step, self.n = step, start

    @property
    def n_total(self) -> int:
        self.n += self.step
        return self.n - self.step


class Client:
    def __init__(self, proto: int = 2) -> None:
        self.proto = proto
        self.supports_robust = proto >= 2
        self.drained = 0
        self.build = "qemu-mps2-an386"

    def drain_events(self) -> None:
        self.drained += 1

    def info(self):
        return types.SimpleNamespace(
            sysclk_hz=CLOCK, ram_total=10_000_000, build=self.build, fw_major=1, fw_minor=2, fw_patch=3
        )


class Devices:
    """The DeviceManager's surface the runner uses.  ``board``/``power``: the states status() returns in turn
    (the last one repeats; None: no such device)."""

    def __init__(self, board=(DeviceState.READY,), power=None, stream=None, message="") -> None:
        self.board, self.power = list(board) if board else None, list(power) if power else None
        self.power_stream, self.message, self.calls = stream, message, []
        self.client = Client()
        self.trace = object()

    def _next(self, states: list) -> DeviceState:
        return states.pop(0) if len(states) > 1 else states[0]

    def first(self, kind: str):
        if kind == "board" and self.board:
            return DeviceStatus(BOARD, self.board[0], self.message)
        if kind == POWER_MONITOR and self.power:
            return DeviceStatus(POWER, self.power[0], self.message)
        return None

    def status(self, key: str):
        if key == BOARD.key and self.board:
            return DeviceStatus(BOARD, self._next(self.board), self.message)
        if key == POWER.key and self.power:
            return DeviceStatus(POWER, self._next(self.power), self.message)
        return None

    def connect(self, key: str) -> None:
        self.calls.append(("connect", key))

    def set_streaming(self, key: str, on: bool) -> None:
        self.calls.append(("stream", key, on))

    def power_trace(self):
        self.calls.append(("trace",))
        return self.trace

    @contextmanager
    def board_session(self, key: str):
        self.calls.append(("session", key))
        yield self.client


def model(arch=W34, source="w34.npz", meta=None) -> LoadedModel:
    from device.engine.model import Model

    w = {k: [np.asarray(a, np.float32) for a in v] for k, v in Model(arch, seed=0).get_weights().items()}
    return LoadedModel(arch, w, arch.classes, source=source, meta={"rate_hz": 25.0} if meta is None else meta)


def data(n_tr: int = 30, n_te: int = 9, notes=("a note",)) -> LocalData:
    """Training window i is all i, test window j is all 100 + j; labels cycle through the 3 classes."""
    tr = np.arange(n_tr, dtype=np.float32)[:, None, None] * np.ones((1, 4, 3), np.float32)
    te = (100 + np.arange(n_te, dtype=np.float32))[:, None, None] * np.ones((1, 4, 3), np.float32)
    return LocalData(tr, np.arange(n_tr) % 3, te, np.arange(n_te) % 3, ("sit", "walk", "run"), list(notes))


class Pipeline:
    """run_board_round: records its arguments, then returns ``result`` or raises ``exc``."""

    def __init__(self, exc: BaseException | None = None, rows=(), round_done=None) -> None:
        self.exc, self.rows, self.calls = exc, list(rows), []
        self.round_done = {"batches_done": 3} if round_done is None else round_done

    def __call__(self, client, arch, weights, train, spec, **kw):
        obs = kw["observer"]
        during = types.SimpleNamespace(
            state=obs.r.state.snapshot(), status=obs.r.store.rounds()[-1]["status"], cancelled=obs.cancelled()
        )
        obs.stage(0.03, "uploading")  # the pipeline's stages reach the caller's progress
        self.calls.append(
            types.SimpleNamespace(
                client=client, arch=arch, weights=weights, train=train, spec=spec, during=during, **kw
            )
        )
        if self.exc is not None:
            kw["observer"].warn("the board said something")
            raise self.exc
        return RoundResult(
            rows=self.rows,
            status="done",
            round_info={"total_batches": 3},
            round_done=self.round_done,
            weights={k: [a + np.float32(0.5) for a in v] for k, v in weights.items()},
            n_train_used=len(train[1]),
            voltage_v=3.3,
            n_val=2,
            restore_best=True,
        )


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """(store, devices, pipeline, clock, make_runner); the model and the windows are stand-ins."""
    store = Store(tmp_path / "db")
    dataset_id = store.ensure_user("ann").dataset_id
    devices, pipeline, clock = Devices(), Pipeline(), Clock()
    loaded, local = [model()], [data()]
    monkeypatch.setattr(R, "run_board_round", lambda *a, **k: pipeline(*a, **k))
    monkeypatch.setattr(R, "time", clock)
    at_load, windows_asked = [], []

    def load_model(self) -> LoadedModel:
        at_load.append(self.state.snapshot())
        return loaded[0]

    def local_windows(*args) -> LocalData:
        windows_asked.append(args)
        return local[0]

    monkeypatch.setattr(R.RoundRunner, "load_model", load_model)
    monkeypatch.setattr(R, "local_windows", local_windows)
    monkeypatch.setattr(
        R, "check_labelled", lambda *a: None
    )  # (the store has no recordings: the windows are stand-ins)
    released, freed = [], threading.Event()

    def release_memory() -> None:
        me = threading.current_thread()
        released.append(me.name if me is threading.main_thread() else (me.name, me.daemon))
        freed.set()

    monkeypatch.setattr(R, "release_memory", release_memory)

    def make(**cfg) -> RoundRunner:
        cfg.setdefault("model_path", "w34.npz")
        cfg.setdefault("measure_power", False)
        return RoundRunner(
            store, devices, tmp_path / "data", RoundConfig(**cfg), dataset_id, RoundState(), wait_power_s=2.0
        )

    ns = types.SimpleNamespace(
        store=store,
        devices=devices,
        pipeline=pipeline,
        clock=clock,
        make=make,
        released=released,
        freed=freed,
        at_load=at_load,
        windows_asked=windows_asked,
        dataset_id=dataset_id,
        loaded=loaded,
        local=local,
        tmp_path=tmp_path,
    )
    yield ns
    store.close()


FRESH = {
    "status": "running",
    "rows": [],
    "warnings": [],
    "before": None,
    "after": None,
    "round_id": None,
    "total_batches": 0,
    "batches_done": 0,
    "eta_s": None,
}


def stored(x):
    """``x`` as the store gives it back (JSON: tuples become lists)."""
    return json.loads(json.dumps(x))


def progress_log():
    calls = []
    return calls, lambda f, text="": calls.append((round(f, 4), text))


# --- a round that runs ------------------------------------------------------------------------------------------


def test_a_round_is_stored_as_it_runs_and_done(bench):
    r = bench.make(mode="full", epochs=4, warmup_epochs=1, lr=0.02, batch_size=8, seed=3, procedure=PLAIN.to_dict())
    r.state.update(
        status="failed",
        rows=["old"],
        warnings=["old"],
        before={"x": 1},
        after={"x": 2},
        eta_s=9.0,
        round_id=99,
        total_batches=5,
        batches_done=4,
    )
    calls, progress = progress_log()
    res = r.run(progress=progress)
    (rnd,) = bench.store.rounds(bench.dataset_id)  # the round of the runner's dataset
    (at_load,) = bench.at_load  # the state of an earlier round is gone before anything else happens
    assert {k: at_load[k] for k in FRESH} == FRESH
    assert bench.windows_asked == [
        (bench.store, bench.dataset_id, ("sit", "walk", "run"), 4, 25.0, 0.6, "user")  # the model's T, rate
    ]
    (call,) = bench.pipeline.calls
    assert (call.during.state["status"], call.during.status, call.during.cancelled) == ("running", "running", False)
    assert (call.during.state["round_id"], call.during.state["classes"]) == (rnd["id"], ("sit", "walk", "run"))
    assert res["round_id"] == rnd["id"] == r.round_id
    assert res["status"] == rnd["status"] == "done"
    assert rnd["config"] == {
        **RoundConfig(
            model_path="w34.npz",
            mode="full",
            epochs=4,
            warmup_epochs=1,
            lr=0.02,
            batch_size=8,
            seed=3,
            measure_power=False,
            procedure=PLAIN.to_dict(),
        ).to_dict(),
        "model_source": "w34.npz",
        "model_classes": ["sit", "walk", "run"],
        "input_size": 4,
        "rate_hz": 25.0,
        "trainable": ["conv1", "dense1", "dense2"],
        "n_train": 30,
        "n_test": 9,
    }
    warnings = ["a note", "power measurement switched off for this round"]
    assert stored({k: v for k, v in res.items() if k not in ("status", "round_id")}) == rnd["result"]
    assert rnd["result"] == {
        "warnings": warnings,
        "classes": ["sit", "walk", "run"],
        "counts": stored(data().counts()),
        "procedure": {**PLAIN.to_dict(), "label": "plain SGD (the paper's recipe)", "n_val": 0},
        "round_info": {"total_batches": 3},
        "round_done": {"batches_done": 3},
        "board": {"name": "NUCLEO-X", "build": "qemu-mps2-an386", "firmware": "1.2.3", "odl_firmware": True},
        **RoundResult([], "done", {}, {}, {}, 0).totals,
        "weights_path": f"rounds/round_{rnd['id']}.npz",
        "voltage_v": 3.3,
        "profile": "odl-firmware",
    }
    assert (bench.tmp_path / "data" / f"rounds/round_{rnd['id']}.npz").is_file()
    snap = r.state.snapshot()
    assert (snap["status"], snap["fraction"], snap["text"], snap["stage"]) == (
        "done",
        1.0,
        "done",
        "uploading",
    )
    assert (snap["rows"], snap["warnings"], snap["before"], snap["after"], snap["eta_s"]) == (
        [],
        warnings,
        None,
        None,
        None,
    )
    assert (snap["round_id"], snap["classes"], snap["total_batches"], snap["batches_done"]) == (
        rnd["id"],
        ("sit", "walk", "run"),
        0,
        0,
    )
    assert calls == [
        (0.005, "loading the model"),
        (0.01, "windowing the labelled data"),
        (0.03, "uploading"),
        (1.0, "done"),
    ]
    assert bench.released == ["MainThread"]  # the round's pages handed back, on the caller's thread
    assert bench.devices.calls == [("stream", "board:x", False), ("session", "board:x")]
    assert bench.devices.client.drained == 1


def test_the_pipeline_gets_the_rounds_settings_windows_and_estimates(bench):
    r = bench.make(mode="full", epochs=4, warmup_epochs=1, warmup_lr=0.05, lr=0.02, batch_size=8, seed=3)
    r.eval_timeout_s = 77.0
    r.run()
    (call,) = bench.pipeline.calls
    m, d, proc = bench.loaded[0], data(), ROBUST
    assert call.client is bench.devices.client and call.arch is m.arch and call.weights is m.weights
    assert call.spec == R.RoundSpec(
        "full",
        epochs=4,
        batch_size=8,
        lr=0.02,
        warmup_epochs=1,
        warmup_lr=0.05,
        seed=3,
        layer_indices=(),
        procedure=proc,
    )
    tr, va = proc.split(d.train_y)
    assert len(va) == 3 and len(tr) == 27  # the last tenth of each class validates
    np.testing.assert_array_equal(call.train[0], R._board_windows(m, d.train_x[tr]))  # noqa: SLF001
    np.testing.assert_array_equal(call.train[1], d.train_y[tr])
    np.testing.assert_array_equal(call.val[0], R._board_windows(m, d.train_x[va]))  # noqa: SLF001
    np.testing.assert_array_equal(call.val[1], d.train_y[va])
    np.testing.assert_array_equal(call.test[0], R._board_windows(m, d.test_x))  # noqa: SLF001
    np.testing.assert_array_equal(call.test[1], d.test_y)
    assert call.power is None and call.eval_timeout_s == 77.0
    prof = get_profile("odl-firmware")  # RoundConfig's default
    watts = float(prof.power_w(CLOCK))
    fwd = float(time_per_sample_s(m.arch, frozenset(), prof, CLOCK))
    from device.nucleo import protocol as P

    for phase, names in ((P.Phase.WARMUP, {"dense2"}), (P.Phase.MAIN, {"conv1", "dense1", "dense2"})):
        t = float(time_per_batch_s(m.arch, frozenset(names), 8, prof, CLOCK))
        assert call.predict(phase, 8) == pytest.approx((t, t * watts), rel=1e-12)
    t5 = float(time_per_batch_s(m.arch, frozenset({"conv1", "dense1", "dense2"}), 5, prof, CLOCK))
    assert call.predict(P.Phase.MAIN, 5) == pytest.approx((t5, t5 * watts), rel=1e-12)
    assert call.val_pass(3) == pytest.approx((3 * fwd, 3 * fwd * watts), rel=1e-12)
    obs = call.observer
    assert (obs.r, obs.classes, obs.predict) == (r, ("sit", "walk", "run"), call.predict)
    assert obs.tail_s == pytest.approx(9 * fwd, rel=1e-12)  # the evaluation after training
    assert obs.result["procedure"] == {
        **ROBUST.to_dict(),
        "label": ROBUST.label(),
        "n_val": 3,
    }


def test_a_custom_round_trains_the_chosen_layers_by_index(bench):
    r = bench.make(mode="custom", layers=("dense1", "conv1"), procedure=PLAIN.to_dict())
    r.run()
    (call,) = bench.pipeline.calls
    assert (call.spec.mode, call.spec.layer_indices, call.spec.procedure) == ("mask", (0, 3), None)
    assert call.val is None  # the plain round validates nothing
    assert bench.store.rounds()[0]["config"]["trainable"] == ["conv1", "dense1"]


def test_a_validating_round_keeps_the_boards_validation(bench):
    vals = [
        BatchRow(0, "val", 0, 0, 2, 1.5, 0, 1, 1, 0.1, macro_f1=0.5),
        BatchRow(1, "val", 1, 0, 2, 0.75, 2, 3, 1, 0.1, macro_f1=1.0, best=True),
    ]
    bench.pipeline.rows = vals
    bench.pipeline.round_done = {"batches_done": 3, "best_epoch": 1, "epochs_done": 2}
    res = bench.make().run()
    assert res["validation"] == {
        "n_val": 2,
        "passes": 2,
        "start": {"loss": 1.5, "macro_f1": 0.5},
        "kept": {"loss": 0.75, "macro_f1": 1.0, "epoch": 1},
        "best_epoch": 1,
        "epochs_done": 2,
    }
    bench.pipeline.rows = []
    assert "validation" not in bench.make(procedure=PLAIN.to_dict()).run()  # (no pass: no validation)


# --- what the user is told ----------------------------------------------------------------------------------------


def test_a_board_of_protocol_v1_runs_the_plain_round_and_says_so(bench):
    bench.devices.client = Client(proto=1)
    res = bench.make().run()
    (call,) = bench.pipeline.calls
    assert call.spec.procedure is None and call.val is None
    assert res["procedure"] == {**PLAIN.to_dict(), "label": "plain SGD (the paper's recipe)", "n_val": 0}
    assert res["warnings"] == [
        "a note",
        "power measurement switched off for this round",
        "the board speaks protocol v1: no robust round (validation, best-epoch restore, gradient clipping) — the "
        "paper's plain round runs; update the board's firmware",
    ]


@pytest.mark.parametrize(("n_tr", "n_val"), [(3, 0), (12, 0), (15, 3)])
def test_too_few_windows_to_validate_is_said(bench, n_tr, n_val):
    bench.local[0] = data(n_tr=n_tr, notes=())
    res = bench.make().run()
    told = "too few training windows to hold out 1/10 of a class for validation: no validation, no best-epoch restore"
    assert res["procedure"]["n_val"] == n_val
    assert (told in res["warnings"]) == (n_val == 0)
    (call,) = bench.pipeline.calls
    assert (call.val is None) == (n_val == 0)


def test_an_unknown_estimator_profile_falls_back_to_the_firmwares(bench):
    res = bench.make(profile="no-such-board").run()
    assert res["profile"] == "odl-firmware"
    assert res["warnings"][-1] == "estimator profile 'no-such-board' not found; predictions use 'odl-firmware'"


def test_a_general_model_of_another_input_size_is_refused_before_anything_is_stored(bench):
    r = bench.make(model_path=None, input_size=20)
    with pytest.raises(RoundError) as e:
        r.run()
    assert str(e.value) == "w34.npz takes T=4, not 20"
    assert bench.store.rounds() == [] and bench.pipeline.calls == []
    assert bench.released == ["MainThread"]  # freed all the same
    assert bench.make(model_path=None, input_size=20).config.model_path is None


def test_a_failed_board_round_is_stored_failed_with_its_reason_and_warnings(bench):
    bench.pipeline.exc = RuntimeError("the link broke")
    r = bench.make()
    with pytest.raises(RoundError) as e:
        r.run()
    (rnd,) = bench.store.rounds()
    assert str(e.value) == f"round {rnd['id']} failed: the link broke"
    assert isinstance(e.value.__cause__, RuntimeError)
    assert rnd["status"] == "failed"
    warnings = ["a note", "power measurement switched off for this round", "the board said something"]
    assert rnd["result"] == {
        "warnings": warnings,
        "classes": ["sit", "walk", "run"],
        "counts": stored(data().counts()),
        "error": "the link broke",
        "board": {"name": "NUCLEO-X", "build": "qemu-mps2-an386", "firmware": "1.2.3", "odl_firmware": True},
        "procedure": {**ROBUST.to_dict(), "label": ROBUST.label(), "n_val": 3},
        "batches_done": 0,  # how far it got (the Training panel's history): it failed before training
        "total_batches": 0,
    }
    snap = r.state.snapshot()
    assert (snap["status"], snap["text"], snap["warnings"]) == ("failed", "the link broke", warnings)


def test_a_cancelled_board_round_is_kept_as_cancelled(bench):
    bench.pipeline.exc = RoundCancelled()
    r = bench.make()
    res = r.run(cancelled=lambda: False)
    (rnd,) = bench.store.rounds()
    warnings = ["a note", "power measurement switched off for this round", "the board said something"]
    assert stored(res) == {**rnd["result"], "status": "cancelled", "round_id": rnd["id"]}
    assert rnd["status"] == "cancelled"
    assert rnd["result"]["warnings"] == warnings and "error" not in rnd["result"]
    snap = r.state.snapshot()
    assert (snap["status"], snap["text"]) == ("cancelled", "cancelled")


def test_cancel_while_the_board_gets_ready_runs_nothing_on_it(bench):
    res = bench.make().run(cancelled=lambda: bool(bench.devices.calls))  # cancelled once the board is asked
    assert bench.freed.wait(5)
    assert res["status"] == "cancelled" and bench.pipeline.calls == []
    assert bench.devices.calls == [("stream", "board:x", False)]  # no session was opened
    assert bench.store.rounds()[0]["status"] == "cancelled"
    assert bench.released == [("release-memory", True)]  # in the background (never keeping the app alive)


# --- the board -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "calls"),
    [
        ([DeviceState.READY], [("stream", "board:x", False)]),
        ([DeviceState.STREAMING, DeviceState.STREAMING, DeviceState.READY], [("stream", "board:x", False)]),
        (
            [DeviceState.DISCONNECTED, DeviceState.CONNECTING, DeviceState.READY],
            [("connect", "board:x"), ("stream", "board:x", False)],
        ),
        ([DeviceState.ERROR, DeviceState.READY], [("connect", "board:x"), ("stream", "board:x", False)]),
    ],
)
def test_the_board_is_connected_and_its_stream_stopped_before_the_round(bench, states, calls):
    bench.devices.board = list(states)
    r = bench.make()
    assert r._board_ready() == "board:x"  # noqa: SLF001
    assert bench.devices.calls == calls


def test_no_board_is_said(bench):
    bench.devices.board = None
    with pytest.raises(RoundError) as e:
        bench.make()._board_ready()  # noqa: SLF001
    assert str(e.value) == "no NUCLEO board found: connect one (Devices panel) or start the virtual bench"


def test_a_board_already_training_is_refused(bench):
    bench.devices.board = [DeviceState.TRAINING]
    with pytest.raises(RoundError) as e:
        bench.make()._board_ready()  # noqa: SLF001
    assert str(e.value) == "the board is already running a round"


@pytest.mark.parametrize("ready_after", [None, 9.9])
def test_a_board_that_does_not_become_ready_within_10_s_is_said(bench, ready_after):
    bench.devices.board = [DeviceState.CONNECTING] * (1 + int((ready_after or 20) / 0.05)) + [DeviceState.READY]
    bench.devices.message = "waiting for HELLO"
    r = bench.make()
    t0 = bench.clock.t
    if ready_after is not None:  # ready just before the deadline: used
        assert r._board_ready() == "board:x"  # noqa: SLF001
        return
    with pytest.raises(RoundError) as e:
        r._board_ready()  # noqa: SLF001
    assert str(e.value) == "NUCLEO-X did not become ready within 10 s (waiting for HELLO)"
    assert bench.clock.t - t0 == pytest.approx(10.0, abs=0.051)


def test_a_named_board_is_the_one_used(bench):
    r = bench.make()
    r.board_key = "board:x"
    bench.devices.first = lambda kind: None  # never asked for the first board
    assert r._board_ready() == "board:x"  # noqa: SLF001
    r.board_key = "board:other"
    with pytest.raises(RoundError, match="^no NUCLEO board found"):
        r._board_ready()  # noqa: SLF001


# --- the power monitor ---------------------------------------------------------------------------------------------


def test_no_power_monitor_means_time_only_and_is_said(bench):
    r = bench.make(measure_power=True)
    res = r.run()
    assert res["warnings"] == [
        "a note",
        "no LPM01A power shield: time is measured by the board, energy is not measured",
    ]
    assert bench.pipeline.calls[0].power is None


@pytest.mark.parametrize(
    ("states", "calls"),
    [
        ([DeviceState.STREAMING], [("trace",)]),
        ([DeviceState.READY, DeviceState.STREAMING], [("stream", "power:y", True), ("trace",)]),
        (
            [DeviceState.DISCONNECTED, DeviceState.STREAMING],
            [("connect", "power:y"), ("stream", "power:y", True), ("trace",)],
        ),
        ([DeviceState.ERROR, DeviceState.STREAMING], [("connect", "power:y"), ("stream", "power:y", True), ("trace",)]),
    ],
)
def test_the_power_monitor_is_connected_and_streaming_before_its_trace_is_used(bench, states, calls):
    bench.devices.power, bench.devices.power_stream = list(states), Growing()
    r = bench.make(measure_power=True)
    assert r._power() is bench.devices.trace  # noqa: SLF001
    assert bench.devices.calls == calls
    assert r.state.snapshot()["warnings"] == []


@pytest.mark.parametrize(
    ("stream", "message", "said"),
    [
        (None, "", "LPM01A-Y is not streaming (no samples): energy not measured"),  # no stream at all
        (Growing(step=0), "", "LPM01A-Y is not streaming (no samples): energy not measured"),  # no samples
        (Growing(step=0, start=5), "", "LPM01A-Y is not streaming (no samples): energy not measured"),  # stalled
        (Growing(step=0), "overcurrent", "LPM01A-Y is not streaming (overcurrent): energy not measured"),
    ],
)
def test_a_power_monitor_without_samples_is_said_after_its_wait(bench, stream, message, said):
    bench.devices.power, bench.devices.power_stream, bench.devices.message = [DeviceState.STREAMING], stream, message
    r = bench.make(measure_power=True)
    t0 = bench.clock.t
    assert r._power() is None  # noqa: SLF001
    assert r.state.snapshot()["warnings"] == [said]
    assert bench.clock.t - t0 == pytest.approx(2.0, abs=0.11)  # wait_power_s
    assert ("trace",) not in bench.devices.calls


def test_a_power_monitor_not_yet_streaming_is_waited_for(bench):
    bench.devices.power = [DeviceState.READY] + [DeviceState.CONNECTING] * 10 + [DeviceState.STREAMING]
    bench.devices.power_stream = Growing()
    r = bench.make(measure_power=True)
    assert r._power() is bench.devices.trace  # noqa: SLF001
    res = bench.make(measure_power=True)
    bench.devices.power = [DeviceState.STREAMING]
    assert res.run()["warnings"] == ["a note"]  # measured: nothing to say
    assert bench.pipeline.calls[-1].power is bench.devices.trace


def test_a_model_without_its_rate_is_taken_at_20_hz_and_a_saved_profile_is_found(bench):
    from estimator.profiles import save_profile

    bench.loaded[0] = model(meta={})
    profiles = bench.tmp_path / "profiles"
    save_profile(dataclasses.replace(get_profile("paper"), name="my-board"), profiles)
    r = bench.make(profile="my-board")
    r.profile_dir = profiles
    res = r.run()
    assert bench.windows_asked[0][4] == 20.0
    assert bench.store.rounds()[0]["config"]["rate_hz"] == 20.0
    assert res["profile"] == "my-board" and not any("not found" in w for w in res["warnings"])


def test_the_board_ready_at_its_deadline_is_too_late(bench):
    bench.devices.board = [DeviceState.CONNECTING, DeviceState.READY]
    bench.clock.jumps = [10.0]  # the first wait ends exactly at the 10 s deadline
    with pytest.raises(RoundError, match="^NUCLEO-X did not become ready within 10 s"):
        bench.make()._board_ready()  # noqa: SLF001


def test_power_samples_at_the_deadline_are_too_late(bench):
    bench.devices.power = [DeviceState.READY, DeviceState.STREAMING]
    bench.devices.power_stream = Growing(start=1)
    bench.clock.jumps = [2.0]  # wait_power_s: streaming, with samples, from exactly then
    r = bench.make(measure_power=True)
    assert r._power() is None  # noqa: SLF001
    assert r.state.snapshot()["warnings"] == ["LPM01A-Y is not streaming (no samples): energy not measured"]


@pytest.mark.parametrize(("start", "looks"), [(1, 1), (0, 2)])
def test_samples_that_keep_coming_are_a_stream(bench, start, looks):
    """A stream with samples that grow is taken after one look; one still at 0 samples takes another."""
    bench.devices.power, bench.devices.power_stream = [DeviceState.STREAMING], Growing(step=1, start=start)
    r = bench.make(measure_power=True)
    t0 = bench.clock.t
    assert r._power() is bench.devices.trace  # noqa: SLF001
    assert bench.clock.t - t0 == pytest.approx(0.05 * looks)


def test_a_round_records_that_its_board_does_not_run_the_odl_firmware(bench):
    """The Python emulated board reports its cost profile as its build: its times are the estimator's."""
    bench.devices.client.build = "paper"
    res = bench.make(procedure=PLAIN.to_dict()).run()
    want = {"name": "NUCLEO-X", "build": "paper", "firmware": "1.2.3", "odl_firmware": False}
    assert res["board"] == want == bench.store.rounds(bench.dataset_id)[0]["result"]["board"]


def test_a_round_records_the_windows_the_boards_sram_held(bench, monkeypatch):
    """The report and the sidecars said "234 training windows, 84 test windows" when the board's SRAM held 74
    and 37 of them: the round records what it trained and was evaluated on."""
    import dataclasses

    def fit_ram(self, model, data, trainable, info, prof):
        return dataclasses.replace(
            data, train_x=data.train_x[:12], train_y=data.train_y[:12], test_x=data.test_x[:3], test_y=data.test_y[:3]
        )

    monkeypatch.setattr(R.RoundRunner, "_fit_ram", fit_ram)
    res = bench.make(procedure=PLAIN.to_dict()).run()
    assert stored(res["counts"]) == {"sit": [10, 3], "walk": [10, 3], "run": [10, 3]}  # what was labelled
    assert stored(res["counts_on_board"]) == {"sit": [4, 1], "walk": [4, 1], "run": [4, 1]}
    assert bench.store.rounds(bench.dataset_id)[0]["result"]["counts_on_board"] == stored(res["counts_on_board"])


def test_a_round_whose_windows_all_fit_records_no_counts_on_board(bench):
    res = bench.make(procedure=PLAIN.to_dict()).run()
    assert "counts_on_board" not in res


@pytest.mark.parametrize(
    "rate, asked",
    [(20.0, [20.0]), (25.0, [20.0, 25.0])],
    ids=["sidecar-as-model", "model-says-another-rate"],
)
def test_the_general_models_windows_are_cut_before_it_loads_and_once_when_it_agrees(bench, monkeypatch, rate, asked):
    """A round of the general model cuts its windows with the classes and rate of the model's sidecar before
    the model loads (nothing to train on is said at once); the loaded model agreeing, they are the round's."""
    from estimator.arch import paper_cnn

    classes = ("walking", "jogging", "stairs", "sitting", "standing")
    bench.loaded[0] = model(paper_cnn(20, classes=classes), source="general.keras", meta={"rate_hz": rate})
    x = np.ones((30, 20, 3), np.float32)
    bench.local[0] = LocalData(x, np.arange(30) % 5, x[:10], np.arange(10) % 5, classes, [])
    order: list[str] = []
    monkeypatch.setattr(R, "check_labelled", lambda *a: order.append(f"check {a[1:]}"))
    load = R.RoundRunner.load_model
    monkeypatch.setattr(R.RoundRunner, "load_model", lambda self: (order.append("load"), load(self))[1])
    res = bench.make(model_path=None, input_size=20).run()
    assert res["status"] == "done"
    assert order == [f"check {(bench.dataset_id, 'user')}", "load"]
    assert bench.windows_asked == [(bench.store, bench.dataset_id, classes, 20, r, 0.6, "user") for r in asked]
    assert bench.at_load[0]["status"] == "running" and len(bench.at_load) == 1
