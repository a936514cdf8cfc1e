"""Fault matrix, state "mid training round": faults of the board and of the LPM01A while
:class:`~app.core.rounds.RoundRunner` runs a round on the virtual bench (what the Training panel does on its
task runner), and the round aborted halfway (Cancel).

Expected: a board fault ends the round within 2 s with a plain-words reason (instead of after the round's
own 30 s+ silence limit), the round is stored as failed with that reason, no personalized weights file is
written (never half-written weights), the labels are intact, and the board is reconnected and READY again
by itself.  An LPM01A fault does not stop the round (the board trains on; the power stream reconnects and
the batches it missed are stored without energy)."""

from __future__ import annotations

import threading
import time

import pytest

from app.core.devices import DeviceState
from app.core.rounds import RoundConfig, RoundRunner, RoundState
from tests.roundkit import bench_context, labelled_dataset, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

BOARD, POWER = "board:virtual", "powershield:virtual"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    c = bench_context(tmp_path_factory.mktemp("roundfaults"), time_scale=5.0, power_rate=1000)
    labelled_dataset(c, seconds_each=20.0)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def _faults_cleared(ctx):
    """Whatever a test asserted, the next one starts with a healthy board (a failed assertion used to leave
    the fault on, and every later test of the module failed with it)."""
    yield
    _board_back(ctx)


class Round:
    """A round on a worker thread; ``wait_batches(n)`` returns once n batch reports arrived."""

    def __init__(self, ctx, epochs: int = 200):
        self.ctx = ctx
        self.state = RoundState()
        self.cancel = threading.Event()
        self.runner = RoundRunner(
            ctx.store,
            ctx.devices,
            ctx.data_dir,
            RoundConfig(input_size=20, epochs=epochs),
            ctx.dataset.id,
            self.state,
            user=ctx.user.name,
        )
        self.error: BaseException | None = None
        self.result: dict | None = None
        self.ended_at: float | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.runner.run(cancelled=self.cancel.is_set)
        except BaseException as exc:  # noqa: BLE001 - examined by the test
            self.error = exc
        self.ended_at = time.monotonic()

    def wait_batches(self, n: int, timeout: float = 90.0) -> None:
        wait_for(
            lambda: len(self.state.snapshot()["rows"] or []) >= n or not self.thread.is_alive(),
            timeout,
            lambda: f"round did not reach {n} batches: {self.state.snapshot()['text']}",
        )
        assert self.thread.is_alive(), f"round ended early: {self.error or self.result}"

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the round hangs: {self.state.snapshot()['text']}"


def _board_back(ctx) -> None:
    ctx.devices.bench.board.faults.clear()
    wait_for(
        lambda: ctx.devices.status(BOARD).state == DeviceState.READY,
        20,
        lambda: f"board not READY again: {ctx.devices.status(BOARD)}",
    )


def _labels(ctx) -> list:
    return [(l.id, l.start_s, l.end_s, l.label) for r in ctx.store.recordings("accel") for l in ctx.store.labels(r.id)]


BOARD_FAULTS = {
    "unplug": (lambda dm: dm.unplug(BOARD, 1.0), "link lost"),
    "unplug_new_port": (lambda dm: dm.unplug(BOARD, 1.0, new_port=True), "link lost"),
    "reset": (lambda dm: setattr(dm.bench.board.faults, "reset_now", True), "the board reset itself"),
    "silent": (lambda dm: setattr(dm.bench.board.faults, "silent", True), "does not answer"),
    "garbage": (lambda dm: setattr(dm.bench.board.faults, "garbage", True), "garbage"),
}


@pytest.mark.parametrize("fault", list(BOARD_FAULTS))
def test_board_fault_mid_round_fails_it_fast_and_recovers(ctx, fault):
    inject, words = BOARD_FAULTS[fault]
    labels0 = _labels(ctx)
    r = Round(ctx)
    r.wait_batches(2)
    t0, n0 = time.monotonic(), ctx.devices.fault_count
    inject(ctx.devices)  # silent/garbage only show when asked: the heartbeat asks every 0.5 s mid-round too
    r.join(30)
    # the board is not handed back READY on the link the round failed on: a round started now would fail on it
    st = ctx.devices.status(BOARD)
    assert st.state != DeviceState.READY or "reconnected" in st.message, (st.state, st.message)
    dt = r.ended_at - t0
    print(f"DETECT round {fault} {dt:.2f} s: {r.error}")
    assert r.error is not None, r.result
    assert dt <= 2.0, f"round ended {dt:.2f} s after the fault ({r.error})"

    def said() -> list[str]:
        n = ctx.devices.fault_count - n0
        return [f[2] for f in list(ctx.devices.faults)[-n:]] if n > 0 else []

    if words not in str(r.error):  # e.g. reset: the board's ROUND_DONE (ABORTED) beats its BOOT to the host
        wait_for(
            lambda: any(words in t for t in said()),
            max(0.1, t0 + 2.0 - time.monotonic()),
            lambda: f"no fault saying {words!r} within 2 s: {r.error}, {said()}",
        )
    rid = r.state.snapshot()["round_id"]
    row = {x["id"]: x for x in ctx.store.rounds()}[rid]
    # the board reset: its own ROUND_DONE (status ABORTED) reaches the round first; the device says "reset"
    assert row["status"] == "failed" and (words in row["result"]["error"] or "ABORTED" in row["result"]["error"])
    assert len(ctx.store.round_batches(rid)) >= 2  # the measured batches are kept
    assert not (ctx.data_dir / "rounds" / f"round_{rid}.npz").exists()  # no (half-)written weights
    assert _labels(ctx) == labels0
    _board_back(ctx)


def test_round_aborted_halfway(ctx):
    r = Round(ctx)
    r.wait_batches(2)
    r.cancel.set()
    r.join(15)
    assert r.error is None and r.result["status"] == "cancelled"
    rid = r.result["round_id"]
    stored = {x["id"]: x for x in ctx.store.rounds()}[rid]
    assert stored["status"] == "cancelled"
    # how far it got, for the Training panel's history: its training batches of those planned
    done = sum(1 for b in ctx.store.round_batches(rid) if b["phase"] != "val")
    total = stored["result"]["total_batches"]
    assert stored["result"]["batches_done"] == done >= 1 and total % 200 == 0 and total > done
    assert not (ctx.data_dir / "rounds" / f"round_{rid}.npz").exists()
    wait_for(lambda: ctx.devices.status(BOARD).state == DeviceState.READY, 10, lambda: ctx.devices.status(BOARD))
    # the board is usable at once: a short round completes
    ok = Round(ctx, epochs=1)
    ok.join(120)
    assert ok.error is None and ok.result["status"] == "done", ok.error


def test_a_round_whose_weights_diverged_fails_and_keeps_its_batches(ctx, monkeypatch):
    """A board that sends back NaN or Inf weights (a round that diverged): the round fails saying so, its
    measured batches are stored, and no weights file is written (every reader would refuse it)."""
    import numpy as np

    from device.nucleo.client import NucleoClient

    real = NucleoClient.download_weights
    planted: list[str] = []

    def diverged(self, arch, *a, **kw):
        w = real(self, arch, *a, **kw)
        planted.append(list(w)[-1])  # the last layer with weights
        w[planted[-1]][0][0] = np.nan
        return w

    monkeypatch.setattr(NucleoClient, "download_weights", diverged)
    r = Round(ctx, epochs=1)
    r.join(120)
    rid = r.state.snapshot()["round_id"]
    assert r.error is not None and str(r.error).startswith(f"round {rid} failed: the round diverged: ")
    row = {x["id"]: x for x in ctx.store.rounds()}[rid]
    assert row["status"] == "failed" and row["result"]["error"] == (
        f"the round diverged: the board's weights of layer(s) {planted[0]} are NaN or Inf "
        "(learning rate 0.01 too large?); its batches' time and energy are kept, its weights are not"
    )
    assert len(ctx.store.round_batches(rid)) >= 1
    assert not (ctx.data_dir / "rounds" / f"round_{rid}.npz").exists()


def test_power_unplug_mid_round_keeps_the_round(ctx):
    r = Round(ctx, epochs=8)
    r.wait_batches(2)
    n0 = ctx.devices.fault_count
    ctx.devices.unplug(POWER, 1.0)
    wait_for(lambda: ctx.devices.fault_count > n0, 2.0, "LPM01A fault not detected within 2 s")
    r.join(180)
    assert r.error is None and r.result["status"] == "done", r.error
    wait_for(
        lambda: (
            ctx.devices.status(POWER).state == DeviceState.STREAMING
            and "reconnected" in ctx.devices.status(POWER).message
        ),
        15,
        lambda: ctx.devices.status(POWER),
    )
    # (the marked gap is checked at time scale 1 in test_app_faults.py: here the simulated clock runs 5x)


def test_a_board_that_faulted_while_streaming_is_ready_for_the_next_round(ctx):
    """A board that lost its link while streaming its accelerometer (a heartbeat missed under load) is in
    ERROR when the next round starts; reconnecting resumes its stream, and the round must stop it again, or
    the board is never READY and the round fails with "did not become ready within 10 s" (a CI flake of
    test_crash_safety had exactly this)."""
    dm = ctx.devices
    dm.set_auto_reconnect(BOARD, False)  # hold it in ERROR until the round comes (the load case's timing)
    try:
        dm.set_streaming(BOARD, True)
        wait_for(lambda: dm.status(BOARD).state == DeviceState.STREAMING, 10, lambda: dm.status(BOARD))
        dm.bench.board.faults.silent = True
        wait_for(lambda: dm.status(BOARD).state == DeviceState.ERROR, 10, lambda: dm.status(BOARD))
        dm.bench.board.faults.clear()
        ok = Round(ctx, epochs=1)
        ok.join(120)
        assert ok.error is None and ok.result["status"] == "done", ok.error
    finally:
        dm.set_auto_reconnect(BOARD, True)
        dm.set_streaming(BOARD, False)
