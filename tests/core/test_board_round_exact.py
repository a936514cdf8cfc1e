"""One training round on a board (app/core/board_round.py), exactly: what run_board_round sends, what it tells
its observer, what it returns, its refusals and cancellations, and the energy it attributes.

Fast and deterministic (the ``board_round`` mutation target, benchmarks/mutation.py): a scripted board at the
wire level (tests/device/test_nucleo_client_exact.py's ``Board``: it answers every request synchronously with the
frames this file's :class:`Scripted` chooses; a real NucleoClient talks to it) for exact requests, refusals and
reports with hand-chosen ticks, and the emulated board (device/nucleo/emulator.py) behind DeviceTransport for one
whole round.  Power traces are built by hand (piecewise constant currents, D7 edges placed by the test) so every
attributed energy is ``V · I · Δt`` of round numbers.  Where a test must see the idle limit, it replaces the
module's clock (``board_round.time``) by a list of instants.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable, Iterable

import numpy as np
import pytest

from app.core import board_round as br
from app.core.board_round import (
    RoundCancelled,
    RoundFailed,
    RoundObserver,
    RoundResult,
    RoundSpec,
    int16_scale,
    run_board_round,
    stratified_subset,
    whole_round_energy,
)
from app.core.energy import BatchRow, PowerTrace
from app.core.procedure import ROBUST
from app.core.streams import SampleStream
from device.monitor import MARKER
from device.nucleo import protocol as P
from device.nucleo.client import DeviceTransport, NucleoClient, NucleoTimeout
from device.nucleo.crc import crc32
from estimator.arch import Arch, Layer
from tests.clockkit import SleepClock
from tests.device.test_nucleo_client_exact import Board, wire

pytestmark = pytest.mark.timeout(30)


# --- a tiny model -----------------------------------------------------------------------------------------
def arch() -> Arch:
    """Flatten (4 x 3) -> Dense 2 -> softmax: 26 parameters, one chunk."""
    return Arch((4, 3), (Layer("flatten", "f"), Layer("dense", "d", units=2), Layer("softmax", "sm")))


def weights(k: float = 1.0) -> dict[str, list[np.ndarray]]:
    return {"d": [np.arange(24, dtype=np.float32).reshape(12, 2) * np.float32(k), np.zeros(2, np.float32)]}


def windows(n: int, seed: int = 0, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1.0, (n, 4, 3)).astype(np.float32), np.arange(n) % classes


INFO = P.Info(sysclk_hz=80_000_000, tick_hz=1000, board="NUCLEO-L496ZG", build="paper-v1")
PLAN = P.RoundInfo(
    round_id=7, batches_per_epoch=2, total_batches=4, mem_bytes=1234, ram_total=327_680, est_cycles=9, est_ticks=4000
)


def batch(i: int, t0: int, t1: int, *, epoch: int = 0, phase: int = P.Phase.MAIN, n: int = 4, loss: float = 1.5):
    return P.BatchReport(
        round_id=7, phase=phase, epoch=epoch, batch=i, batches_per_epoch=2, n_samples=n, loss=loss,
        start_tick=t0, end_tick=t1, cycles=100 + i,
    )  # fmt: skip


def done(status: int = P.RoundStatus.DONE, *, error: int = 0, batches: int = 4, t0: int = 1000, t1: int = 3000):
    return P.RoundDone(
        round_id=7, status=status, error=error, epochs_done=2, best_epoch=1, batches_done=batches, last_loss=0.5,
        train_accuracy=0.75, start_tick=t0, end_tick=t1, cycles=4242,
    )  # fmt: skip


FOUR = [
    batch(0, 1000, 1500),
    batch(1, 1500, 2000, loss=1.25),
    batch(0, 2000, 2500, epoch=1),
    batch(1, 2500, 3000, epoch=1),
]


class Scripted(Board):
    """A board that keeps what it is sent: models, data slots (decoded), TRAIN_START requests.

    ``trains``: one entry per TRAIN_START, either a P.Error (the refusal; or a tuple of it and events queued
    behind it) or the events that follow the plan (``PLAN``); ``evals``: the EVAL_RESULT of each EVALUATE (none left: the evaluation never ends);
    ``on_abort``: frames after the ACK of TRAIN_ABORT (an ``P.Error`` instead refuses the abort);
    ``during_train``: called when TRAIN_START arrives (a test extends its power trace there)."""

    def __init__(
        self,
        trains: list[Any] | None = None,
        *,
        info: P.Info = INFO,
        plan: P.RoundInfo = PLAN,
        evals: Iterable[P.EvalResult] = (),
        on_abort: Iterable[P.Message] = (),
        trained: dict[str, list[np.ndarray]] | None = None,
        during_train: Callable[[], None] | None = None,
    ):
        self.info, self.plan = info, plan
        self.trains = list(trains if trains is not None else [FOUR + [done()]])
        self.evals = list(evals)
        self.on_abort = list(on_abort)
        self.during_train = during_train
        self.models: list[bytes] = []
        self.data: list[tuple[int, np.ndarray, np.ndarray, P.DType, float]] = []
        self.cleared: list[int] = []
        self.starts: list[P.TrainStart] = []
        self.blob = P.encode_weights(arch(), trained if trained is not None else weights(2.0))
        self._xfer = bytearray()
        self._slot = 0
        super().__init__(self._board)

    def _board(self, m: P.Message, s: int) -> list[bytes]:
        if isinstance(m, P.Hello):
            return [wire(P.HelloRsp(proto=2), s)]
        if isinstance(m, P.GetInfo):
            return [wire(self.info, s)]
        if isinstance(m, (P.ModelBegin, P.DataBegin)):
            self._xfer = bytearray()
            self._slot = getattr(m, "slot", 0)
            return [wire(P.XferAck(0), s)]
        if isinstance(m, (P.ModelChunk, P.DataChunk)):
            self._xfer += m.data
            return [wire(P.XferAck(len(self._xfer)), s)]
        if isinstance(m, P.ModelEnd):
            self.models.append(bytes(self._xfer))
            return [wire(P.ModelInfo(params=26, crc32=crc32(bytes(self._xfer))), s)]
        if isinstance(m, P.DataEnd):
            x, y, dtype, scale = P.decode_dataset(bytes(self._xfer))
            self.data.append((self._slot, x, y, dtype, scale))
            return [wire(P.DataState(slot=self._slot, n_windows=len(y)), s)]
        if isinstance(m, P.DataClear):
            self.cleared.append(m.slot)
            return [wire(P.DataState(slot=m.slot), s)]
        if isinstance(m, P.TrainStart):
            self.starts.append(m)
            if self.during_train is not None:
                self.during_train()
            what = self.trains.pop(0)
            if isinstance(what, tuple):  # (refusal, events queued behind it)
                return [wire(what[0], s)] + [wire(e, 0) for e in what[1]]
            if isinstance(what, P.Error):
                return [wire(what, s)]
            return [wire(self.plan, s)] + [wire(e, 0) for e in what]
        if isinstance(m, P.Evaluate):
            out = [wire(P.Ack(int(P.MsgType.EVALUATE)), s)]
            return out + ([wire(self.evals.pop(0), 0)] if self.evals else [])
        if isinstance(m, P.TrainAbort):
            if self.on_abort and isinstance(self.on_abort[0], P.Error):
                return [wire(self.on_abort[0], s)] + [wire(e, 0) for e in self.on_abort[1:]]
            return [wire(P.Ack(int(P.MsgType.TRAIN_ABORT)), s)] + [wire(e, 0) for e in self.on_abort]
        if isinstance(m, P.WeightsInfo):
            return [wire(P.WeightsMeta(len(self.blob), crc32(self.blob), 2), s)]
        if isinstance(m, P.WeightsRead):
            return [wire(P.WeightsData(m.offset, self.blob[m.offset : m.offset + m.length]), s)]
        raise AssertionError(f"unexpected request {m!r}")

    def kinds(self) -> list[str]:
        """Request names, runs of chunks and reads collapsed."""
        out: list[str] = []
        for n in self.names():
            if not (out and out[-1] == n and n in ("ModelChunk", "DataChunk", "WeightsRead")):
                out.append(n)
        return out


class Rec(RoundObserver):
    """Records every call; ``cancel(log)`` says when to cancel."""

    def __init__(self, cancel: Callable[[list[tuple]], bool] | None = None):
        self.log: list[tuple] = []
        self.rows: list[BatchRow] = []  # as settled
        self.cancel = cancel
        self.polls = 0

    def cancelled(self) -> bool:
        self.polls += 1
        return bool(self.cancel is not None and self.cancel(self.log))

    def stage(self, fraction: float, text: str) -> None:
        self.log.append(("stage", fraction, text))

    def evaluated(self, when: str, result: Any) -> None:
        self.log.append(("evaluated", when, int(result.n)))

    def started(self, info: Any, t_train: float) -> None:
        self.log.append(("started", int(info.round_id)))

    def report(self, row: BatchRow, total: int) -> None:
        self.log.append(("report", row.index, total))

    def settled(self, row: BatchRow) -> None:
        self.log.append(("settled", row.index, row.source, row.energy_j))
        self.rows.append(row)

    def aborting(self) -> None:
        self.log.append(("aborting",))

    def warn(self, text: str) -> None:
        self.log.append(("warn", text))

    def kind(self, *kinds: str) -> list[tuple]:
        return [e for e in self.log if e[0] in kinds]


@pytest.fixture
def connect():
    made: list[NucleoClient] = []

    def make(board: Any) -> NucleoClient:
        c = NucleoClient(board, timeout=1.0, retries=0)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def run(board: Scripted, connect, spec: RoundSpec | None = None, **kw: Any) -> RoundResult:
    kw.setdefault("settle_s", 0.0)
    train = kw.pop("train", windows(8))
    return run_board_round(connect(board), arch(), weights(), train, spec or RoundSpec("tl", batch_size=4), **kw)


def ev(n: int, slot: int = 1) -> P.EvalResult:
    return P.EvalResult(slot=slot, n_classes=2, n=n, loss=0.5, confusion=np.array([n - 1, 1, 0, 0], np.uint16))


# --- stratified_subset, int16_scale ---------------------------------------------------------------------------
def test_stratified_subset_keeps_each_class_share_by_largest_remainders():
    """10 windows (6 of class 0, 3 of class 1, 1 of class 2) to 7: shares 4.2, 2.1, 0.7 -> 4, 2, 1."""
    y = np.array([0, 1, 0, 2, 0, 1, 0, 0, 1, 0])
    idx = stratified_subset(y, 7, seed=3)
    assert len(idx) == 7 and list(idx) == sorted(set(idx.tolist()))
    assert [int(np.sum(y[idx] == c)) for c in (0, 1, 2)] == [4, 2, 1]
    assert 3 in idx  # the only window of class 2


def test_stratified_subset_gives_the_left_over_windows_to_the_largest_remainders_not_the_smallest_classes():
    """17, 2 and 1 windows to 9: shares 7.65, 0.9, 0.45 -> 7, 0, 0 and two left: to classes 1 (0.9) and 0 (0.65)."""
    y = np.array([0] * 17 + [1] * 2 + [2])
    idx = stratified_subset(y, 9)
    assert [int(np.sum(y[idx] == c)) for c in (0, 1, 2)] == [8, 1, 0]


def test_stratified_subset_draws_with_seed_0_by_default():
    y = np.arange(40) % 2
    assert list(stratified_subset(y, 10)) == list(stratified_subset(y, 10, seed=0))
    assert list(stratified_subset(y, 10)) != list(stratified_subset(y, 10, seed=1))


def test_stratified_subset_of_no_windows_is_no_windows_whatever_is_asked():
    for keep in (0, -1):
        got = stratified_subset(np.array([], int), keep)
        assert got.dtype == np.int64 and got.shape == (0,)


def test_stratified_subset_draws_by_the_seed():
    y = np.arange(40) % 2
    a, b = stratified_subset(y, 10, seed=1), stratified_subset(y, 10, seed=1)
    assert list(a) == list(b)
    assert any(list(stratified_subset(y, 10, seed=s)) != list(a) for s in (2, 3, 4))


def test_stratified_subset_keeps_everything_when_asked_for_as_many_or_more():
    y = np.array([1, 0, 1])
    assert list(stratified_subset(y, 3)) == [0, 1, 2]
    assert list(stratified_subset(y, 5)) == [0, 1, 2]
    assert list(stratified_subset(np.array([], int), 0)) == []


def test_int16_scale_maps_the_largest_magnitude_of_all_arrays_to_32000_counts():
    assert int16_scale(np.array([[1.0, -3.2]]), np.array([2.0])) == 3.2 / 32000.0
    assert int16_scale(np.array([0.5]), np.zeros((0, 3)), np.array([-64.0])) == 64.0 / 32000.0


def test_int16_scale_of_empty_or_zero_windows_is_a_tiny_positive_scale():
    assert int16_scale(np.zeros((0, 4, 3))) == 1e-6 / 32000.0
    assert int16_scale(np.zeros((2, 4, 3)), np.zeros(0)) == 1e-6 / 32000.0


# --- a plain round, exactly -----------------------------------------------------------------------------------
def test_a_plain_round_sends_info_model_data_start_and_reads_the_weights(connect):
    board = Scripted()
    rr = run(board, connect)
    assert board.kinds() == [
        "GetInfo", "ModelBegin", "ModelChunk", "ModelEnd", "DataClear", "DataBegin", "DataChunk", "DataEnd",
        "TrainStart", "WeightsInfo", "WeightsRead",
    ]  # fmt: skip
    assert board.cleared == [0xFF]
    assert board.models == [P.encode_model(arch(), weights())[0]]
    assert rr.status == "done" and rr.n_train_used == 8
    assert list(rr.weights) == ["d"]
    assert np.array_equal(rr.weights["d"][0], np.arange(24, dtype=np.float32).reshape(12, 2) * 2)
    assert rr.before is None and rr.after is None and rr.trace is None and rr.voltage_v is None
    assert (rr.n_val, rr.restore_best) == (0, False)


def test_the_training_windows_go_to_slot_0_as_int16_at_the_shared_scale(connect):
    """Scale = largest magnitude of training and test windows (8.0) / 32000; the board decodes the windows within
    half a count."""
    x, y = windows(8)
    x[2, 1, 0] = 4.0
    xt, yt = windows(3, seed=5)
    xt[0, 0, 0] = -8.0
    board = Scripted(evals=[ev(3), ev(3)])
    run(board, connect, train=(x, y), test=(xt, yt))
    assert [(s, len(yy), d, sc) for s, _, yy, d, sc in board.data] == [
        (0, 8, P.DType.I16, np.float32(8.0 / 32000)),
        (1, 3, P.DType.I16, np.float32(8.0 / 32000)),
    ]
    assert list(board.data[0][2]) == [0, 1, 0, 1, 0, 1, 0, 1] and list(board.data[1][2]) == [0, 1, 0]
    assert np.max(np.abs(board.data[0][1] - x)) <= 0.5 * 8.0 / 32000
    assert np.max(np.abs(board.data[1][1] - xt)) <= 0.5 * 8.0 / 32000


def test_train_start_carries_every_setting_of_the_spec(connect):
    board = Scripted()
    spec = RoundSpec(
        "mask", epochs=3, batch_size=4, lr=0.05, warmup_epochs=1, warmup_lr=0.125, seed=9, shuffle=False,
        layer_indices=(0, 2),
    )  # fmt: skip
    run(board, connect, spec)
    (m,) = board.starts
    assert (m.mode, m.flags, m.epochs, m.batch, m.warmup_epochs) == (P.TrainMode.MASK, 0, 3, 4, 1)
    assert (m.lr, m.warmup_lr, m.seed, m.layer_mask) == (np.float32(0.05), 0.125, 9, 0b101)
    assert (m.n_val, m.patience, m.val_flags, m.clip_norm) == (0, 0, 0, 0.0) and not m.extended


def test_the_observer_hears_the_stages_of_a_round_with_test_windows_in_order(connect):
    board = Scripted(evals=[ev(3), ev(3)])
    obs = Rec()
    rr = run(board, connect, test=windows(3, seed=5), observer=obs)
    assert obs.kind("stage", "evaluated", "started") == [
        ("stage", 0.01, "uploading the model"),
        ("stage", 0.025, "uploading the model"),
        ("stage", 0.04, "uploading the training windows"),
        ("stage", 0.045, "uploading the test windows"),
        ("stage", 0.045, "evaluating before personalization"),
        ("evaluated", "before", 3),
        ("started", 7),
        ("stage", 0.95, "evaluating after personalization"),
        ("evaluated", "after", 3),
        ("stage", 0.97, "downloading the personalized weights"),
    ]
    assert board.kinds()[8:] == ["DataBegin", "DataChunk", "DataEnd", "Evaluate", "TrainStart", "Evaluate",
                                 "WeightsInfo", "WeightsRead"]  # fmt: skip
    assert [m.slot for _, m in board.requests if isinstance(m, P.Evaluate)] == [1, 1]
    assert (rr.before.n, rr.after.n) == (3, 3) and rr.before is not rr.after


def test_upload_progress_moves_within_each_uploads_share_of_the_round(connect):
    """60 training windows are 1512 bytes: two chunks (1020, then 492 bytes)."""
    obs = Rec()
    run(Scripted(), connect, train=windows(60), observer=obs)
    got = [(f, t) for _, f, t in obs.kind("stage") if t == "uploading the training windows"]
    assert got == [(0.025 + (0.04 - 0.025) * 1020 / 1512, "uploading the training windows"),
                   (0.04, "uploading the training windows")]  # fmt: skip


def test_the_rows_of_a_round_without_power_are_the_reports_with_no_energy(connect):
    obs = Rec()
    rr = run(Scripted(), connect, observer=obs)
    assert [(r.index, r.phase, r.epoch, r.batch, r.n_samples, r.loss) for r in rr.rows] == [
        (0, "main", 0, 0, 4, 1.5), (1, "main", 0, 1, 4, 1.25), (2, "main", 1, 0, 4, 1.5), (3, "main", 1, 1, 4, 1.5)
    ]  # fmt: skip
    assert [(r.start_tick, r.end_tick, r.cycles, r.seconds) for r in rr.rows] == [
        (1000, 1500, 100, 0.5),
        (1500, 2000, 101, 0.5),
        (2000, 2500, 100, 0.5),
        (2500, 3000, 101, 0.5),
    ]
    assert all(r.source == "none" and r.energy_j is None and r.t0 is None for r in rr.rows)
    assert all(r.pred_seconds is None and r.pred_energy_j is None for r in rr.rows)
    assert obs.kind("report", "settled", "warn") == [
        ("report", 0, 4), ("settled", 0, "none", None), ("report", 1, 4), ("settled", 1, "none", None),
        ("report", 2, 4), ("settled", 2, "none", None), ("report", 3, 4), ("settled", 3, "none", None),
        ("warn", "4 of 4 batches have no power samples: energy not measured"),
    ]  # fmt: skip
    assert rr.warnings == ["4 of 4 batches have no power samples: energy not measured"]
    assert rr.alignment == "none"


def test_warmup_batches_are_rows_of_phase_warmup_with_the_estimators_prediction(connect):
    board = Scripted([[batch(0, 0, 250, phase=P.Phase.WARMUP, n=3), batch(0, 250, 1000), done(batches=2, t0=0)]])
    calls: list[tuple[int, int]] = []

    def predict(phase: int, n: int) -> tuple[float, float]:
        calls.append((int(phase), n))
        return 0.25 * n + phase, 0.5 * n

    rr = run(board, connect, predict=predict)
    assert [(r.phase, r.n_samples, r.seconds, r.pred_seconds, r.pred_energy_j) for r in rr.rows] == [
        ("warmup", 3, 0.25, 0.75, 1.5),
        ("main", 4, 0.75, 2.0, 2.0),
    ]
    assert calls == [(1, 1), (0, 3), (1, 4)]  # the idle limit's per-batch estimate first


def test_round_info_and_round_done_say_what_the_board_planned_and_did(connect):
    rr = run(Scripted(), connect)
    assert rr.round_info == {
        "board_round_id": 7, "batches_per_epoch": 2, "total_batches": 4, "mem_bytes": 1234, "ram_total": 327_680,
        "est_ticks": 4000, "sysclk_hz": 80e6, "tick_hz": 1000.0, "board": "NUCLEO-L496ZG", "build": "paper-v1",
        "anchor_t": 0.0, "earliest_t": -0.01,
    }  # fmt: skip
    assert rr.round_done == {
        "status": "done", "epochs_done": 2, "batches_done": 4, "last_loss": 0.5, "train_accuracy": 0.75,
        "seconds": 2.0, "cycles": 4242, "best_epoch": 1,
    }  # fmt: skip


def test_a_board_that_reports_no_tick_rate_counts_microsecond_ticks(connect):
    board = Scripted([[batch(0, 0, 250_000), done(batches=1, t0=0, t1=250_000)]], info=P.Info(tick_hz=0))
    rr = run(board, connect)
    assert rr.round_info["tick_hz"] == 1_000_000.0
    assert (rr.rows[0].seconds, rr.round_done["seconds"]) == (0.25, 0.25)


def test_reports_queued_before_the_round_are_not_counted(connect):
    board = Scripted([[batch(0, 1000, 1500), done(batches=1, t1=1500)]])
    board.emit(wire(batch(5, 0, 9), 0), wire(done(batches=9), 0))  # an earlier round's
    rr = run(board, connect)
    assert [(r.batch, r.start_tick) for r in rr.rows] == [(0, 1000)]


# --- a robust round (validation) -------------------------------------------------------------------------------
def val(epoch: int, t0: int, t1: int, *, best: int = 0, loss: float = 0.75, f1: float = 0.5) -> P.ValReport:
    return P.ValReport(
        round_id=7, epoch=epoch, n=2, best=best, loss=loss, macro_f1=f1, start_tick=t0, end_tick=t1, cycles=77
    )


def test_a_robust_round_uploads_the_validation_windows_after_the_training_windows_and_sends_n_val(connect):
    x, y = windows(8)
    xv, yv = windows(2, seed=9)
    yv = np.array([1, 1])
    reports = [val(0, 1000, 1100, best=1), batch(0, 1100, 1500), val(1, 1500, 1600, loss=0.25, f1=0.75)]
    board = Scripted([reports + [done(batches=1, t1=1600)]])
    calls: list[int] = []

    def val_pass(n: int) -> tuple[float, float]:
        calls.append(n)
        return 0.125, 0.0625

    rr = run(board, connect, RoundSpec("tl", batch_size=4, procedure=ROBUST), train=(x, y), val=(xv, yv),
             val_pass=val_pass)  # fmt: skip
    (slot, xs, ys, _, _) = board.data[0]
    assert slot == 0 and list(ys) == [0, 1, 0, 1, 0, 1, 0, 1, 1, 1] and xs.shape == (10, 4, 3)
    (m,) = board.starts
    assert (m.n_val, m.patience, m.val_flags, m.clip_norm) == (2, 0, 3, 5.0)
    assert (rr.n_val, rr.restore_best, rr.n_train_used) == (2, True, 8)
    assert [(r.index, r.phase, r.epoch, r.batch, r.n_samples, r.loss) for r in rr.rows] == [
        (0, "val", 0, 0, 2, 0.75), (1, "main", 0, 0, 4, 1.5), (2, "val", 1, 0, 2, 0.25)
    ]  # fmt: skip
    assert [(r.macro_f1, r.best, r.seconds, r.cycles, r.start_tick) for r in rr.rows] == [
        (0.5, True, 0.1, 77, 1000), (None, False, 0.4, 100, 1100), (0.75, False, 0.1, 77, 1500)
    ]  # fmt: skip
    assert [(r.pred_seconds, r.pred_energy_j) for r in rr.rows] == [(0.125, 0.0625), (None, None), (0.125, 0.0625)]
    assert calls == [2, 2]
    assert rr.validation == {
        "n_val": 2, "passes": 2, "start": {"loss": 0.75, "macro_f1": 0.5},
        "kept": {"loss": 0.75, "macro_f1": 0.5, "epoch": 0}, "best_epoch": 1, "epochs_done": 2,
    }  # fmt: skip


def test_validation_windows_without_a_procedure_are_uploaded_but_not_announced(connect):
    board = Scripted()
    rr = run(board, connect, val=(windows(2, seed=9)[0], np.array([1, 0])))
    assert len(board.data[0][2]) == 10 and board.starts[0].n_val == 0 and not board.starts[0].extended
    assert (rr.n_val, rr.restore_best) == (2, False)


def test_an_empty_validation_set_is_no_validation(connect):
    board = Scripted()
    rr = run(board, connect, RoundSpec("tl", batch_size=4, procedure=ROBUST), val=(np.zeros((0, 4, 3)), []))
    assert len(board.data[0][2]) == 8
    m = board.starts[0]
    assert (m.n_val, m.val_flags, m.clip_norm) == (0, 0, 5.0)
    assert (rr.n_val, rr.restore_best, rr.validation) == (0, False, None)


def vrow(i: int, epoch: int, loss: float, f1: float | None, best: bool) -> BatchRow:
    return BatchRow(i, "val", epoch, 0, 2, loss, 0, 1, 1, 0.1, macro_f1=f1, best=best)


def mrow(i: int, **kw: Any) -> BatchRow:
    return BatchRow(i, "main", 0, i, 4, 1.0, 0, 1, 1, 0.5, **kw)


def result(rows: list[BatchRow], *, restore_best: bool = False, round_done: dict | None = None) -> RoundResult:
    return RoundResult(rows, "done", {}, round_done or {}, {}, 8, n_val=3, restore_best=restore_best)


def test_validation_keeps_the_last_best_pass_when_the_best_weights_are_restored():
    rows = [vrow(0, 0, 0.9, 0.2, True), mrow(1), vrow(2, 1, 0.5, 0.6, True), vrow(3, 2, 0.4, None, False)]
    v = result(rows, restore_best=True, round_done={"best_epoch": 1, "epochs_done": 2}).validation
    assert v == {
        "n_val": 3, "passes": 3, "start": {"loss": 0.9, "macro_f1": 0.2},
        "kept": {"loss": 0.5, "macro_f1": 0.6, "epoch": 1}, "best_epoch": 1, "epochs_done": 2,
    }  # fmt: skip


def test_validation_keeps_the_starting_weights_when_no_pass_was_best():
    rows = [vrow(0, 0, 0.9, None, False), vrow(1, 1, 0.5, 0.6, False)]
    v = result(rows, restore_best=True).validation
    assert v is not None
    assert v["start"] == {"loss": 0.9, "macro_f1": 0.0}
    assert v["kept"] == {"loss": 0.9, "macro_f1": 0.0, "epoch": 0}
    assert (v["best_epoch"], v["epochs_done"]) == (0, 0)


def test_validation_without_restore_keeps_the_last_pass():
    rows = [vrow(0, 0, 0.9, 0.1, True), vrow(1, 1, 0.5, 0.6, True), vrow(2, 2, 0.7, 0.3, False)]
    v = result(rows).validation
    assert v is not None and v["kept"] == {"loss": 0.7, "macro_f1": 0.3, "epoch": 2} and v["passes"] == 3


def test_totals_and_alignment_of_a_result():
    rows = [
        mrow(0, t0=1.0, t1=1.5, energy_j=0.25, source="d7", pred_seconds=0.5, pred_energy_j=0.125),
        mrow(1, t0=1.5, t1=2.0, energy_j=0.5, source="host"),
    ]
    rr = result(rows)
    assert rr.totals == {
        "n_batches": 2, "val_passes": 0, "seconds": 1.0, "energy_j": 0.75, "avg_power_w": 0.75,
        "pred_seconds": 0.5, "pred_energy_j": 0.125, "energy_sources": ["d7", "host"],
    }  # fmt: skip
    assert rr.alignment == "d7"
    assert result([mrow(0, source="d7-interp")]).alignment == "d7"
    assert result([mrow(0, source="host"), mrow(1, source="none")]).alignment == "host"
    assert result([mrow(0, source="none")]).alignment == "none"
    assert result([]).alignment == "none" and result([]).validation is None


# --- refusals ----------------------------------------------------------------------------------------------
def oor(need: int, have: int) -> P.Error:
    return P.error_message(P.ErrorCode.OUT_OF_RAM, P.MsgType.TRAIN_START, "no room", need, have)


def test_out_of_ram_trains_a_class_stratified_subset_that_fits_and_says_so(connect):
    """20 windows of 4 x 3 int16 (25 bytes each with the label); 101 bytes short: 5 windows + 2 spare."""
    x, y = windows(20)
    stale = P.BatchReport(round_id=6, batch=3, start_tick=5, end_tick=6)  # drained before the next start
    board = Scripted([(oor(5101, 5000), [stale]), FOUR + [done()]])
    obs = Rec()
    rr = run(board, connect, RoundSpec("tl", batch_size=4, seed=3), train=(x, y), observer=obs)
    text = (
        "tl: the board's SRAM holds 13 of 20 training windows (round needs 5101 B, 5000 B available): "
        "a class-stratified subset was used"
    )
    assert obs.kind("warn")[0] == ("warn", text) and rr.warnings[0] == text
    assert rr.n_train_used == 13 and len(board.starts) == 2
    assert board.kinds()[4:] == ["DataClear", "DataBegin", "DataChunk", "DataEnd", "TrainStart", "DataClear",
                                 "DataBegin", "DataChunk", "DataEnd", "TrainStart", "WeightsInfo", "WeightsRead"]  # fmt: skip
    assert board.cleared == [0xFF, 0]
    slot, xs, ys, dtype, scale = board.data[1]
    idx = stratified_subset(y, 13, 3)
    assert (slot, dtype, scale) == (0, P.DType.I16, board.data[0][4])
    assert list(ys) == list(y[idx]) and [int(np.sum(ys == c)) for c in (0, 1)] == [7, 6]
    assert np.array_equal(xs, board.data[0][1][idx])
    assert [r.batch for r in rr.rows] == [0, 1, 0, 1]


def test_out_of_ram_twice_retries_a_second_time_from_the_whole_set(connect):
    x, y = windows(20)
    board = Scripted([oor(5100, 5000), oor(5150, 5000), FOUR + [done()]])
    rr = run(board, connect, RoundSpec("full", batch_size=4), train=(x, y))
    assert rr.warnings[:2] == [
        "full: the board's SRAM holds 14 of 20 training windows (round needs 5100 B, 5000 B available): "
        "a class-stratified subset was used",
        "full: the board's SRAM holds 6 of 20 training windows (round needs 5150 B, 5000 B available): "
        "a class-stratified subset was used",
    ]
    assert rr.n_train_used == 6 and [len(d[2]) for d in board.data] == [20, 14, 6] and len(board.starts) == 3


def test_out_of_ram_three_times_is_a_refusal(connect):
    board = Scripted([oor(5100, 5000), oor(5100, 5000), oor(5100, 5000)])
    with pytest.raises(RoundFailed) as exc:
        run(board, connect, train=windows(20))
    assert str(exc.value) == "the board refused the tl round: OUT_OF_RAM on TRAIN_START: no room"
    assert len(board.starts) == 3


def test_out_of_ram_with_fewer_windows_left_than_a_batch_is_a_refusal_saying_how_many_would_fit(connect):
    """20 windows, batch 14: 125 bytes short keeps 20 - (5 + 2) = 13 < 14."""
    board = Scripted([oor(5125, 5000)])
    with pytest.raises(RoundFailed) as exc:
        run(board, connect, RoundSpec("last", batch_size=14), train=windows(20))
    assert str(exc.value) == (
        "the board refused the last round: OUT_OF_RAM on TRAIN_START: no room — even 13 windows would not fit"
    )
    assert len(board.starts) == 1 and board.cleared == [0xFF]


def test_out_of_ram_keeping_exactly_a_batch_trains_it(connect):
    board = Scripted([oor(5125, 5000), FOUR + [done()]])
    rr = run(board, connect, RoundSpec("tl", batch_size=13), train=windows(20))
    assert rr.n_train_used == 13


def test_out_of_ram_with_a_batch_larger_than_the_data_needs_as_many_windows_as_there_are(connect):
    """8 windows, batch 32: the limit is the 8 windows; 1 byte short keeps 8 - 3 = 5 < 8."""
    board = Scripted([oor(1, 0)])
    with pytest.raises(RoundFailed, match=" — even 5 windows would not fit$"):
        run(board, connect, RoundSpec("tl", batch_size=32))


def test_out_of_ram_far_beyond_the_data_says_no_window_would_fit(connect):
    board = Scripted([oor(100_000, 0)])
    with pytest.raises(RoundFailed) as exc:
        run(board, connect)
    assert str(exc.value).endswith("OUT_OF_RAM on TRAIN_START: no room — even 0 windows would not fit")


def test_out_of_ram_for_a_single_window_is_a_refusal(connect):
    board = Scripted([oor(1, 0)])
    with pytest.raises(RoundFailed, match=" — even 0 windows would not fit$"):
        run(board, connect, RoundSpec("tl", batch_size=1), train=windows(1))


def test_another_refusal_is_not_retried(connect):
    board = Scripted([P.error_message(P.ErrorCode.BUSY, P.MsgType.TRAIN_START, "a round is running", 3)])
    with pytest.raises(RoundFailed) as exc:
        run(board, connect, RoundSpec("full"))
    assert str(exc.value) == "the board refused the full round: BUSY on TRAIN_START: a round is running"
    assert isinstance(exc.value.__cause__, Exception) and len(board.starts) == 1


@pytest.mark.parametrize(
    "status, error, text",
    [
        (P.RoundStatus.FAILED, 7, "the board ended the round with status FAILED (error 7) after 3 batches"),
        (P.RoundStatus.ABORTED, 0, "the board ended the round with status ABORTED after 3 batches"),
    ],
)
def test_a_round_the_board_ends_with_an_error_fails_naming_its_status(connect, status, error, text):
    board = Scripted([FOUR[:3] + [done(status, error=error, batches=3)]])
    obs = Rec()
    with pytest.raises(RoundFailed) as exc:
        run(board, connect, observer=obs)
    assert str(exc.value) == text
    assert "WeightsInfo" not in board.names() and len(obs.kind("settled")) == 3


# --- cancellation -----------------------------------------------------------------------------------------
def staged(text: str) -> Callable[[list[tuple]], bool]:
    return lambda log: any(e[0] == "stage" and e[2] == text for e in log)


@pytest.mark.parametrize(
    "polls, test, last, data_begins",
    [
        (1, True, "ModelChunk", 0),  # the model's upload progress
        (2, True, "DataChunk", 1),  # the training windows'
        (3, True, "DataChunk", 2),  # the test windows'
        (4, True, "DataEnd", 2),  # after the uploads
        (5, True, "Evaluate", 2),  # after the evaluation before
        (3, False, "DataEnd", 1),  # after the uploads (no test windows)
    ],
)
def test_cancelling_before_the_round_stops_at_the_next_poll(connect, polls, test, last, data_begins):
    board = Scripted(evals=[ev(3)])
    obs = Rec()
    obs.cancel = lambda log: obs.polls >= polls
    with pytest.raises(RoundCancelled) as exc:
        run(board, connect, test=windows(3, seed=5) if test else None, observer=obs)
    assert exc.value.rows == [] and str(exc.value) == "cancelled"
    assert board.names()[-1] == last and board.names().count("DataBegin") == data_begins
    assert "TrainStart" not in board.names() and obs.polls == polls


def test_cancelling_during_the_evaluation_before_stops_before_the_round(connect):
    board = Scripted()  # the evaluation never ends
    with pytest.raises(RoundCancelled):
        run(board, connect, test=windows(3), observer=Rec(staged("evaluating before personalization")))
    assert board.names()[-1] == "Evaluate"


def test_cancelling_right_after_the_evaluation_before_stops_before_the_round(connect):
    board = Scripted(evals=[ev(3)])
    obs = Rec(lambda log: any(e[0] == "evaluated" for e in log))
    with pytest.raises(RoundCancelled):
        run(board, connect, test=windows(3), observer=obs)
    assert board.names()[-1] == "Evaluate" and obs.kind("evaluated") == [("evaluated", "before", 3)]


def test_an_evaluation_that_never_ends_times_out_after_eval_timeout_s(connect):
    board = Scripted()
    with pytest.raises(NucleoTimeout, match=r"^evaluation of slot 1 not finished after 0.3 s$"):
        run(board, connect, test=windows(3), eval_timeout_s=0.3)


def test_cancelling_during_the_round_aborts_it_and_keeps_the_reports(connect):
    """Cancelled at the second report: the board is told to abort once, confirms with ROUND_DONE aborted."""
    board = Scripted([FOUR[:2]], on_abort=[done(P.RoundStatus.ABORTED, batches=2)])
    obs = Rec(lambda log: len([e for e in log if e[0] == "report"]) >= 2)
    with pytest.raises(RoundCancelled) as exc:
        run(board, connect, observer=obs)
    assert [r.index for r in exc.value.rows] == [0, 1] and all(r.source == "none" for r in exc.value.rows)
    assert board.names().count("TrainAbort") == 1
    assert obs.kind("report", "aborting", "settled") == [
        ("report", 0, 4), ("settled", 0, "none", None), ("report", 1, 4), ("aborting",),
        ("settled", 1, "none", None),
    ]  # fmt: skip
    assert "WeightsInfo" not in board.names()


def test_a_refused_abort_still_ends_the_round_when_the_board_stops(connect):
    refuse = P.error_message(P.ErrorCode.BAD_STATE, P.MsgType.TRAIN_ABORT, "no round")
    board = Scripted([FOUR[:1]], on_abort=[refuse, done(P.RoundStatus.ABORTED, batches=1)])
    with pytest.raises(RoundCancelled) as exc:
        run(board, connect, observer=Rec(lambda log: True if any(e[0] == "report" for e in log) else False))
    assert len(exc.value.rows) == 1


def test_cancelling_during_the_evaluation_after_is_a_cancellation(connect):
    board = Scripted(evals=[ev(3)])
    with pytest.raises(RoundCancelled):
        run(board, connect, test=windows(3), observer=Rec(staged("evaluating after personalization")))
    assert "WeightsInfo" not in board.names()


# --- the idle limit (the module's clock replaced) -----------------------------------------------------------
class Clock:
    """``monotonic()`` returns the given instants in turn, then one second more each call; ``sleep`` is free."""

    def __init__(self, *ts: float):
        self.ts = list(ts)
        self.t = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        self.t = self.ts.pop(0) if self.ts else self.t + 1.0
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)


def test_a_board_silent_for_longer_than_the_idle_limit_fails_the_round(connect, monkeypatch):
    """est_ticks 4000 at 1 kHz over 4 batches: 1 s per batch, limit 30 + 3 x 1 = 33 s of silence."""
    clock = Clock(0.0, 0.0, 33.0, 33.5)  # started, last_seen, then two polls
    monkeypatch.setattr(br, "time", clock)
    with pytest.raises(RoundFailed) as exc:
        run(Scripted([[]]), connect)
    assert str(exc.value) == "no report from the board for 34 s (0/4 batches done)"
    assert clock.t == 33.5


def test_the_idle_limit_grows_with_the_boards_estimate_of_a_batch(connect, monkeypatch):
    """PLAN: est_ticks 4000 over 4 batches at a 100 Hz tick: 10 s per batch, limit 60 s."""
    clock = Clock(0.0, 0.0, 60.0, 60.25)
    monkeypatch.setattr(br, "time", clock)
    with pytest.raises(RoundFailed) as exc:
        run(Scripted([[]], info=P.Info(tick_hz=100)), connect)
    assert str(exc.value) == "no report from the board for 60 s (0/4 batches done)"
    assert clock.t == 60.25


def test_the_idle_limit_uses_the_estimators_batch_of_32_when_given(connect, monkeypatch):
    """predict: 0.25 s per window, 8 s per batch of 32: limit 54 s, counted from the last report."""
    clock = Clock(0.0, 0.0, 10.0, 64.0, 64.5)
    monkeypatch.setattr(br, "time", clock)
    with pytest.raises(RoundFailed) as exc:
        run(Scripted([[batch(0, 1000, 1500)]]), connect, predict=lambda phase, n: (0.25 * n, 0.0))
    assert str(exc.value) == "no report from the board for 54 s (1/4 batches done)"
    assert clock.t == 64.5


def test_after_an_abort_the_board_has_10_s_to_confirm(connect, monkeypatch):
    clock = Clock(0.0, 0.0, 1.0, 11.0, 11.5)
    monkeypatch.setattr(br, "time", clock)
    obs = Rec(lambda log: any(e[0] == "report" for e in log))
    with pytest.raises(RoundFailed) as exc:
        run(Scripted([[batch(0, 1000, 1500)]]), connect, observer=obs)
    assert str(exc.value) == "no report from the board for 10 s (1/4 batches done)"
    assert clock.t == 11.5 and obs.kind("aborting") == [("aborting",)]


# --- energy -------------------------------------------------------------------------------------------------
class Trace:
    """A power trace at 1 kHz and 2 V built by hand: ``add(seconds, amps)`` appends samples, ``edge(t)`` a D7
    edge."""

    def __init__(self) -> None:
        self.stream = SampleStream("i", 1000.0, recent_s=60.0)
        self.events: list[tuple[float, str, str]] = []
        self.power = PowerTrace(self.stream, lambda: list(self.events), 2.0)

    def add(self, seconds: float, amps: float) -> None:
        self.stream.append(np.full(int(round(seconds * 1000)), amps))

    def edge(self, *ts: float) -> None:
        self.events += [(t, MARKER, "") for t in ts]


def two_batches() -> list[P.Message]:
    return [batch(0, 1000, 1500), batch(1, 1500, 2000), done(batches=2, t1=2000)]


def test_energy_of_each_batch_is_v_times_the_mean_current_between_its_d7_edges(connect):
    """Round start edge at 1.0 s, batch ends at 1.5 and 2.0 s; 0.25 A then 0.5 A at 2 V: 0.25 J and 0.5 J (the
    whole-round attribution; a batch it moves is settled again)."""
    tr = Trace()
    tr.add(1.0, 0.1)  # before the round is requested

    def running() -> None:
        tr.add(0.5, 0.25)
        tr.add(0.5, 0.5)
        tr.add(0.5, 0.1)
        tr.edge(1.0, 1.5, 2.0)

    board = Scripted([two_batches()], during_train=running)
    obs = Rec()
    rr = run(board, connect, power=tr.power, observer=obs)
    assert [(r.t0, r.t1, r.source, r.avg_current_a, r.avg_power_w, r.energy_j) for r in rr.rows] == [
        (1.0, 1.5, "d7", 0.25, 0.5, 0.25),
        (1.5, 2.0, "d7", 0.5, 1.0, 0.5),
    ]
    assert (rr.round_info["anchor_t"], rr.round_info["earliest_t"]) == (1.75, 0.99)
    # with one report, a start at 1.5 s explains as many edges as 1.0 s and is nearer the host's anchor (1.75 s):
    # the first batch is measured at 1.5-2.0 s while the round runs, then again once the whole round is known
    assert obs.kind("report", "settled") == [
        ("report", 0, 4), ("settled", 0, "d7", 0.5), ("report", 1, 4), ("settled", 1, "d7", 0.5),
        ("settled", 0, "d7", 0.25),
    ]  # fmt: skip
    assert rr.warnings == [] and rr.alignment == "d7"
    assert rr.voltage_v == 2.0 and rr.trace is tr.power


def test_without_edges_batches_are_placed_from_the_hosts_view_of_the_round_start(connect):
    """No edge: host alignment from the anchor (midpoint of the trace's end before and after TRAIN_START)."""
    tr = Trace()
    tr.add(1.0, 0.1)
    board = Scripted([two_batches()], during_train=lambda: tr.add(2.0, 0.25))
    obs = Rec()
    rr = run(board, connect, power=tr.power, observer=obs)
    assert rr.round_info["anchor_t"] == 2.0
    assert [(r.t0, r.t1, r.source, r.energy_j) for r in rr.rows] == [
        (2.0, 2.5, "host", 0.25), (2.5, 3.0, "host", 0.25)
    ]  # fmt: skip
    assert rr.warnings == [
        "2 of 2 batches had no matching D7 edges: their energy uses host alignment (board ticks from the moment "
        "the host saw the round start; off by the USB latency)"
    ]
    assert rr.alignment == "host"


def test_edges_before_the_round_was_requested_are_not_its_start(connect):
    """An edge at 0.5 s (before TRAIN_START) with the spacing of a batch is not taken for the round start."""
    tr = Trace()
    tr.add(1.0, 0.1)
    tr.edge(0.5)

    def running() -> None:
        tr.add(0.5, 0.25)
        tr.add(0.5, 0.5)
        tr.add(0.5, 0.1)
        tr.edge(1.0, 1.5, 2.0)

    rr = run(Scripted([two_batches()], during_train=running), connect, power=tr.power)
    assert [(r.t0, r.t1, r.source) for r in rr.rows] == [(1.0, 1.5, "d7"), (1.5, 2.0, "d7")]


def test_a_batch_is_measured_once_the_samples_reach_its_end_edge_while_the_round_runs(connect):
    """The trace grows as the reports arrive: each batch is settled when the samples cover it and its end edge
    is in, the first before the second report is taken in."""
    tr = Trace()
    tr.add(1.0, 0.1)
    tr.edge(1.0)
    grow = {1: lambda: (tr.add(0.5, 0.25), tr.edge(1.5)), 2: lambda: (tr.add(0.5, 0.5), tr.edge(2.0))}

    class Growing(Rec):
        def report(self, row: BatchRow, total: int) -> None:
            super().report(row, total)
            grow[row.index + 1]()

    obs = Growing()
    board = Scripted([two_batches()], during_train=lambda: None)
    rr = run(board, connect, power=tr.power, observer=obs, settle_s=1.0)
    assert obs.kind("report", "settled") == [
        ("report", 0, 4), ("settled", 0, "d7", 0.25), ("report", 1, 4), ("settled", 1, "d7", 0.5)
    ]  # fmt: skip
    assert [r.energy_j for r in rr.rows] == [0.25, 0.5]


def test_whole_round_energy_of_no_rows_is_no_rows():
    assert whole_round_energy([], Trace().power, {"earliest_t": 0.0, "tick_hz": 1000.0, "anchor_t": 0.0}) == []


def test_whole_round_energy_places_rows_on_the_edges_and_measures_them():
    tr = Trace()
    tr.add(1.0, 0.1)
    tr.add(0.5, 0.25)
    tr.add(0.25, 0.5)
    tr.edge(1.0, 1.5, 1.75)
    rows = [
        BatchRow(i, "main", 0, i, 4, 1.0, a, b, 1, (b - a) / 1000) for i, (a, b) in enumerate([(0, 500), (500, 750)])
    ]
    info = {"earliest_t": 0.9, "tick_hz": 1000.0, "anchor_t": 1.2}
    out = whole_round_energy(rows, tr.power, info)
    assert [(r.t0, r.t1, r.source, r.energy_j) for r in out] == [(1.0, 1.5, "d7", 0.25), (1.5, 1.75, "d7", 0.25)]
    # the start edge before earliest_t: host alignment from the anchor, and no energy for what ends after the samples
    late = whole_round_energy(rows, tr.power, {"earliest_t": 1.2, "tick_hz": 1000.0, "anchor_t": 1.5})
    assert [(r.t0, r.t1, r.source, r.energy_j) for r in late] == [(1.5, 2.0, "none", None), (2.0, 2.25, "none", None)]


def measured_round(tr: Trace) -> Callable[[], None]:
    """What the trace gets while the round of ``two_batches`` runs: 0.25 A, then 0.5 A, then 0.1 A, 0.5 s each."""

    def running() -> None:
        tr.add(0.5, 0.25)
        tr.add(0.5, 0.5)
        tr.add(0.5, 0.1)

    return running


def test_a_round_whose_edges_are_all_in_does_not_wait_to_settle(connect, monkeypatch):
    clock = SleepClock()
    monkeypatch.setattr(br, "time", clock)
    tr = Trace()
    tr.add(1.0, 0.1)
    tr.edge(1.0, 1.5, 2.0)  # the round start edge is at a0 - 0.01 <= 1.0: in
    rr = run(Scripted([two_batches()], during_train=measured_round(tr)), connect, power=tr.power, settle_s=0.5)
    assert clock.sleeps == [] and [r.energy_j for r in rr.rows] == [0.25, 0.5]


def test_a_round_missing_its_last_edge_waits_settle_s_then_places_the_batch_by_the_boards_ticks(connect, monkeypatch):
    clock = SleepClock()
    monkeypatch.setattr(br, "time", clock)
    tr = Trace()
    tr.add(1.0, 0.1)
    tr.edge(1.0, 1.5)  # the end edge of the second batch is lost
    obs = Rec()
    rr = run(
        Scripted([two_batches()], during_train=measured_round(tr)), connect, power=tr.power, settle_s=0.5,
        observer=obs,
    )  # fmt: skip
    assert len(clock.sleeps) == 10 and set(clock.sleeps) == {0.05}
    assert [(r.t0, r.t1, r.source, r.energy_j) for r in rr.rows] == [
        (1.0, 1.5, "d7", 0.25), (1.5, 2.0, "d7-interp", 0.5)
    ]  # fmt: skip
    assert obs.kind("report", "settled") == [
        ("report", 0, 4), ("settled", 0, "d7", 0.25), ("report", 1, 4), ("settled", 1, "d7-interp", 0.5)
    ]  # fmt: skip
    assert rr.warnings == [
        "1 of 2 batches lost their D7 end edge: their interval is the neighbouring edge plus the board-measured "
        "duration"
    ]


def test_a_cancelled_round_waits_only_0_2_s_for_the_samples_of_its_batches(connect, monkeypatch):
    clock = SleepClock()
    monkeypatch.setattr(br, "time", clock)
    tr = Trace()
    tr.add(1.0, 0.1)
    tr.edge(1.0)
    board = Scripted([two_batches()[:2]], on_abort=[done(P.RoundStatus.ABORTED, batches=2, t1=2000)])
    obs = Rec(lambda log: len([e for e in log if e[0] == "report"]) >= 2)
    with pytest.raises(RoundCancelled) as exc:
        run(board, connect, power=tr.power, settle_s=5.0, observer=obs)
    assert len(clock.sleeps) == 4 and set(clock.sleeps) == {0.05}
    assert [(r.t0, r.t1, r.source) for r in exc.value.rows] == [(1.0, 1.5, "none"), (1.5, 2.0, "none")]


def test_a_round_the_board_failed_waits_only_0_2_s_for_the_samples_of_its_batches(connect, monkeypatch):
    clock = SleepClock()
    monkeypatch.setattr(br, "time", clock)
    tr = Trace()
    tr.add(1.0, 0.1)
    tr.edge(1.0)
    board = Scripted([two_batches()[:2] + [done(P.RoundStatus.FAILED, error=17, batches=2, t1=2000)]])
    with pytest.raises(RoundFailed, match=r"^the board ended the round with status FAILED \(error 17\) after 2"):
        run(board, connect, power=tr.power, settle_s=5.0)
    assert len(clock.sleeps) == 4


def test_a_round_planned_with_no_batches_counts_one(connect):
    obs = Rec()
    plan = P.RoundInfo(round_id=7, total_batches=0, est_ticks=4000)
    run(Scripted([[batch(0, 1000, 1500), done(batches=1, t1=1500)]], plan=plan), connect, observer=obs)
    assert obs.kind("report") == [("report", 0, 1)]


def test_reports_that_come_later_are_waited_for_and_measured(connect):
    """The board answers TRAIN_START, then its reports arrive 0.15 s later (the loop has polled in between)."""
    tr = Trace()
    tr.add(1.0, 0.1)

    def running() -> None:
        measured_round(tr)()
        tr.edge(1.0, 1.5, 2.0)
        t = threading.Timer(0.15, lambda: board.emit(*(wire(e, 0) for e in two_batches())))
        t.start()

    board = Scripted([[]], during_train=running)
    rr = run(board, connect, power=tr.power)
    assert [(r.t0, r.t1, r.source, r.energy_j) for r in rr.rows] == [(1.0, 1.5, "d7", 0.25), (1.5, 2.0, "d7", 0.5)]


def test_host_aligned_batches_are_measured_while_running_once_a_later_batch_and_a_second_of_samples_follow(connect):
    """No edge: a batch placed by the host's clock is settled while the round runs only when it is not the last
    one and the samples reach one second past its end (the trace ends at 4.0 s after TRAIN_START, the anchor is
    2.5 s: the first batch ends at 3.0 s, the second at 3.5 s); the rest when the round is over (the fourth ends
    after the samples: not measured)."""
    tr = Trace()
    tr.add(1.0, 0.1)
    board = Scripted(during_train=lambda: tr.add(3.0, 0.25))
    obs = Rec()
    rr = run(board, connect, power=tr.power, observer=obs)
    assert obs.kind("report", "settled") == [
        ("report", 0, 4), ("report", 1, 4), ("settled", 0, "host", 0.25), ("report", 2, 4), ("report", 3, 4),
        ("settled", 1, "host", 0.25), ("settled", 2, "host", 0.25), ("settled", 3, "none", None),
    ]  # fmt: skip
    assert [(r.t0, r.t1) for r in rr.rows] == [(2.5, 3.0), (3.0, 3.5), (3.5, 4.0), (4.0, 4.5)]


class OnStart(Rec):
    """A recorder that runs ``hook`` when the round has started (the trace grows after the anchor is taken)."""

    def __init__(self, hook: Callable[[], None], **kw: Any):
        super().__init__(**kw)
        self.hook = hook

    def started(self, info: Any, t_train: float) -> None:
        super().started(info, t_train)
        self.hook()


def test_a_batch_after_one_that_lost_its_end_edge_is_measured_while_the_round_runs(connect):
    """The first batch's end edge (1.5 s) is lost: it waits for the end of the round (its end by the board's
    ticks, one second of samples after it is not there), the second one, ending on its edge, does not."""
    tr = Trace()
    tr.add(1.0, 0.1)

    def running() -> None:
        tr.add(0.5, 0.25)
        tr.add(0.5, 0.5)
        tr.add(0.25, 0.1)
        tr.edge(1.0, 2.0)

    obs = OnStart(running)
    rr = run(Scripted([two_batches()]), connect, power=tr.power, observer=obs)
    assert obs.kind("report", "settled") == [
        ("report", 0, 4), ("report", 1, 4), ("settled", 1, "d7", 0.5), ("settled", 0, "d7-interp", 0.25)
    ]  # fmt: skip
    assert [(r.t0, r.t1) for r in rr.rows] == [(1.0, 1.5), (1.5, 2.0)]


def test_a_round_start_before_the_round_was_requested_is_never_assumed_while_it_runs(connect):
    """Start edge lost, batch ends seen at 1.4 and 1.9 s, the round requested at 1.0 s: a start at 0.9 s would
    explain both edges and be nearer the host's anchor (1.0 s), but it is before the request."""
    tr = Trace()
    tr.add(1.0, 0.1)
    obs = OnStart(lambda: (tr.add(2.0, 0.25), tr.edge(1.4, 1.9)))
    run(Scripted([two_batches()]), connect, power=tr.power, observer=obs)
    assert [(r.index, r.t0, r.t1, r.source) for r in obs.rows] == [(0, 1.4, 1.9, "d7"), (1, 1.9, 2.4, "d7-interp")]


def test_a_round_whose_start_edge_is_lost_waits_settle_s_for_it_then_takes_the_batch_ends(connect, monkeypatch):
    clock = SleepClock()
    monkeypatch.setattr(br, "time", clock)
    tr = Trace()
    tr.add(1.0, 0.1)

    def running() -> None:
        measured_round(tr)()
        tr.edge(1.5, 2.0)

    obs = OnStart(running)
    rr = run(Scripted([two_batches()]), connect, power=tr.power, observer=obs, settle_s=0.5)
    assert len(clock.sleeps) == 10
    # alone, the first batch fits both edges best; with the second, the start 1.0 s (the anchor) wins
    assert [(r.index, r.t0, r.t1) for r in obs.rows] == [(0, 1.5, 2.0), (1, 1.5, 2.0), (0, 1.0, 1.5)]
    assert [(r.t0, r.t1, r.source, r.energy_j) for r in rr.rows] == [(1.0, 1.5, "d7", 0.25), (1.5, 2.0, "d7", 0.5)]


def test_a_round_cancelled_as_it_ended_waits_only_0_2_s_for_the_samples(connect, monkeypatch):
    """Cancelled at the last report: the board had already sent ROUND_DONE (done)."""
    clock = SleepClock()
    monkeypatch.setattr(br, "time", clock)
    tr = Trace()
    tr.add(1.0, 0.1)
    tr.edge(1.0)
    obs = Rec(lambda log: len([e for e in log if e[0] == "report"]) >= 2)
    with pytest.raises(RoundCancelled) as exc:
        run(Scripted([two_batches()]), connect, power=tr.power, settle_s=5.0, observer=obs)
    assert len(clock.sleeps) == 4 and len(exc.value.rows) == 2


def test_the_default_settling_wait_is_3_s(connect, monkeypatch):
    clock = SleepClock()
    monkeypatch.setattr(br, "time", clock)
    tr = Trace()
    tr.add(1.0, 0.1)
    tr.edge(1.0, 1.5)  # the last end edge never comes
    board = Scripted([two_batches()], during_train=measured_round(tr))
    run_board_round(connect(board), arch(), weights(), windows(8), RoundSpec("tl", batch_size=4), power=tr.power)
    assert len(clock.sleeps) == 60


def test_the_evaluations_are_waited_for_120_s_by_default(connect):
    c = connect(Scripted(evals=[ev(3), ev(3)]))
    seen: list[tuple[int, float]] = []
    orig = c.evaluate

    def evaluate(slot: int = 1, timeout: float = 0.0, cancelled: Any = None) -> P.EvalResult:
        seen.append((slot, timeout))
        return orig(slot, timeout=timeout, cancelled=cancelled)

    c.evaluate = evaluate  # type: ignore[method-assign]
    run_board_round(c, arch(), weights(), windows(8), RoundSpec("tl", batch_size=4), test=windows(3), settle_s=0)
    assert seen == [(1, 120.0), (1, 120.0)]


def test_other_events_are_left_to_others_and_do_not_count_as_reports(connect, monkeypatch):
    """A board that only logs during the round is silent for the idle limit; its LOG stays queued."""
    clock = Clock(0.0, 0.0, 33.0, 33.5)
    monkeypatch.setattr(br, "time", clock)
    c = connect(Scripted([[P.Log(1, "hello")]]))
    with pytest.raises(RoundFailed) as exc:
        run_board_round(c, arch(), weights(), windows(8), RoundSpec("tl", batch_size=4), settle_s=0)
    assert str(exc.value) == "no report from the board for 34 s (0/4 batches done)"
    assert [(type(e).__name__, e.text) for e in c.drain_events()] == [("Log", "hello")]


def test_a_robust_round_measures_its_validation_passes_as_d7_intervals(connect):
    """Validation (0.125 s at 0.5 A), a batch (0.5 s at 0.25 A), validation again: 0.125, 0.25, 0.125 J at 2 V."""
    tr = Trace()
    tr.add(1.0, 0.125)

    def running() -> None:
        tr.add(0.125, 0.5)
        tr.add(0.5, 0.25)
        tr.add(0.125, 0.5)
        tr.add(0.25, 0.125)
        tr.edge(1.0, 1.125, 1.625, 1.75)

    reports = [val(0, 1000, 1125, best=1), batch(0, 1125, 1625), val(1, 1625, 1750), done(batches=1, t1=1750)]
    obs = Rec()
    rr = run(Scripted([reports], during_train=running), connect, RoundSpec("tl", batch_size=4, procedure=ROBUST),
             val=windows(2, seed=9), power=tr.power, observer=obs)  # fmt: skip
    assert [(r.phase, r.t0, r.t1, r.source, r.energy_j, r.pred_seconds) for r in rr.rows] == [
        ("val", 1.0, 1.125, "d7", 0.125, None),
        ("main", 1.125, 1.625, "d7", 0.25, None),
        ("val", 1.625, 1.75, "d7", 0.125, None),
    ]
    assert obs.kind("report") == [("report", 0, 4), ("report", 1, 4), ("report", 2, 4)]
    # the first pass alone fits the last two edges as well and is nearer the anchor (1.5 s): placed there while
    # the round runs, it is settled again where the whole round puts it
    assert [(r.index, r.t0, r.t1) for r in obs.rows] == [
        (0, 1.625, 1.75), (1, 1.125, 1.625), (2, 1.625, 1.75), (0, 1.0, 1.125)
    ]  # fmt: skip


def test_an_abort_restarts_the_10_s_the_board_has_to_confirm(connect, monkeypatch):
    """A report at 1 s, the cancel at 20 s (no report then): the board has until 30 s."""
    clock = Clock(0.0, 0.0, 1.0, 20.0, 30.0, 30.5)
    monkeypatch.setattr(br, "time", clock)
    obs = Rec()
    obs.cancel = lambda log: obs.polls >= 5  # model, data, before the round; then the first two reports' polls
    with pytest.raises(RoundFailed) as exc:
        run(Scripted([[batch(0, 1000, 1500)]]), connect, observer=obs)
    assert str(exc.value) == "no report from the board for 10 s (1/4 batches done)"
    assert clock.t == 30.5


# --- the emulated board ------------------------------------------------------------------------------------
def test_a_whole_round_on_the_emulated_board():
    from device.nucleo.emulator import NucleoEmulator
    from device.simclock import SimClock

    clock = SimClock(5000.0)
    emu = NucleoEmulator(clock)
    c = NucleoClient(DeviceTransport(emu, clock), timeout=2.0)
    try:
        x, y = windows(12)
        x += y[:, None, None].astype(np.float32)
        obs = Rec()
        rr = run_board_round(
            c, arch(), weights(0.01), (x, y), RoundSpec("full", epochs=2, batch_size=4),
            test=windows(6, seed=4), observer=obs, settle_s=0.0,
        )  # fmt: skip
    finally:
        c.close()
        emu.wait_idle(5)
    assert rr.status == "done" and rr.n_train_used == 12
    assert [(r.epoch, r.batch, r.n_samples, r.phase) for r in rr.rows] == [
        (e, b, 4, "main") for e in (0, 1) for b in (0, 1, 2)
    ]
    assert (rr.round_info["total_batches"], rr.round_done["batches_done"], rr.round_done["epochs_done"]) == (6, 6, 2)
    assert (rr.before.n, rr.after.n) == (6, 6)
    assert not np.array_equal(rr.weights["d"][0], weights(0.01)["d"][0])
    assert all(r.seconds > 0 and math.isfinite(r.loss) for r in rr.rows)
