"""Round progress by batches with a time estimate, and stopping quickly (issue 12 item 10): the progress bar
said 45 % after batch 1 of 10 of a 3-minute Full round and had no estimate; quitting during the board's
evaluation waited for it (3.6 s).  Qt-free."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from app.core.rounds import RoundConfig, RoundRunner, batch_fraction, eta_text, round_eta
from device.nucleo.client import WaitCancelled
from tests.roundkit import bench_context, labelled_dataset


def test_progress_is_linear_in_batches_done():
    assert batch_fraction(0, 10) == pytest.approx(0.05)
    assert batch_fraction(1, 10) == pytest.approx(0.14)  # was 0.45
    assert batch_fraction(5, 10) == pytest.approx(0.50)
    assert batch_fraction(10, 10) == pytest.approx(0.95)
    steps = [batch_fraction(k, 7) for k in range(8)]
    assert np.allclose(np.diff(steps), steps[1] - steps[0])


def test_eta_from_the_plan_then_from_the_measured_batches():
    plan = [1.0] * 4 + [3.0] * 10  # 4 warm-up batches (last Dense only) then 10 Full batches, board seconds
    assert round_eta(plan, 0, 0.0, tail_s=2.0) == pytest.approx(4 + 30 + 2)  # before any batch: the plan
    # the board (or the bench's fast clock) runs 4x faster than planned: the estimate follows the measurement
    assert round_eta(plan, 4, 1.0, tail_s=2.0) == pytest.approx((30 + 2) / 4)
    assert round_eta(plan, 9, (4 + 15) / 4, tail_s=2.0) == pytest.approx((15 + 2) / 4)
    assert round_eta(plan, 14, 10.0) == 0.0
    # warm-up batches are cheaper: after the warm-up, the batches left weigh more than their count says
    assert round_eta(plan, 4, 4.0) == pytest.approx(30.0)


def test_eta_text_reads_like_a_person():
    assert eta_text(None) == ""
    assert eta_text(2) == "a few seconds left"
    assert eta_text(42) == "about 40 s left"
    assert eta_text(130) == "about 2 min 10 s left"
    assert eta_text(180) == "about 3 min left"
    assert eta_text(1500) == "about 25 min left"


@pytest.mark.timeout(240)
def test_a_round_reports_progress_by_batches_and_a_shrinking_estimate(tmp_path):
    ctx = bench_context(tmp_path, time_scale=40.0)
    try:
        labelled_dataset(ctx)
        seen: list[tuple[float, str]] = []
        snaps: list[dict] = []
        runner = RoundRunner(
            ctx.store, ctx.devices, ctx.data_dir, RoundConfig(mode="full", epochs=3, warmup_epochs=1), ctx.dataset.id
        )
        orig = runner.state.update

        def update(**kw):
            orig(**kw)
            if "eta_s" in kw:
                snaps.append(runner.state.snapshot())

        runner.state.update = update
        t0 = time.monotonic()
        res = runner.run(progress=lambda f, text="": seen.append((time.monotonic() - t0, f, text)))
        assert res["status"] == "done"
        total = res["round_info"]["total_batches"]
        fr = [f for _t, f, _x in seen]
        assert fr == sorted(fr) and fr[-1] == 1.0  # never goes back
        batches = [(t, f, x) for t, f, x in seen if x.startswith("batch ")]
        assert len(batches) == total
        for k, (_t, f, x) in enumerate(batches, 1):
            assert f == pytest.approx(batch_fraction(k, total))  # by batches done
            assert x.startswith(f"batch {k}/{total}") and "left" in x
        assert batches[0][1] < 0.05 + 1.5 * 0.9 / total  # after batch 1 of N: ~1/N of the training share
        # the estimate: from the plan before the first batch (board seconds), then from the measured pace -
        # the bench runs 40x faster than the board it emulates, so it drops by far more than the batch done
        etas = {s["batches_done"]: s["eta_s"] for s in snaps if s["eta_s"] is not None}
        assert sorted(etas) == list(range(0, total + 1)) and all(e >= 0 for e in etas.values())
        assert etas[0] == pytest.approx(etas_start(res, runner), rel=1e-6)
        assert etas[1] < etas[0] / 5
        assert etas[total] < etas[1]
    finally:
        ctx.close()


def etas_start(res: dict, runner: RoundRunner) -> float:
    """The estimate before the first batch: the plan (the estimator's time of every batch, warm-up ones
    training the last Dense only) plus the final evaluation, in board seconds."""
    from app.core.models import load_model
    from app.core.rounds import general_model_path, trainable_names
    from estimator.arch import resolve_trainable
    from estimator.core import time_per_batch_s, time_per_sample_s
    from estimator.profiles import get_profile

    cfg = runner.config
    model = load_model(general_model_path(cfg.input_size))
    info = res["round_info"]
    prof, clock = get_profile(res["profile"]), info["sysclk_hz"]
    warm = cfg.warmup_epochs * info["batches_per_epoch"]
    last = frozenset(resolve_trainable(model.arch, "last"))
    full = trainable_names(model.arch, cfg)
    plan = [
        time_per_batch_s(model.arch, last if i < warm else full, cfg.batch_size, prof, clock)
        for i in range(info["total_batches"])
    ]
    n_test = sum(t for _tr, t in res["counts"].values())
    return float(sum(plan)) + n_test * time_per_sample_s(model.arch, frozenset(), prof, clock)


def test_evaluation_wait_stops_when_cancelled():
    """Quitting while the board evaluates (20 s of simulated inference here) must not wait for it."""
    from device.engine.model import Model
    from device.nucleo.client import DeviceTransport, NucleoClient
    from device.nucleo.emulator import NucleoEmulator
    from device.simclock import SimClock
    from estimator.arch import paper_cnn

    clock = SimClock(1.0)  # real time: 200 windows take ~14 s of inference on the emulated 8-MHz board
    emu = NucleoEmulator(clock)
    c = NucleoClient(DeviceTransport(emu, clock), timeout=1.0)
    try:
        arch = paper_cnn(20, 5)
        c.upload_model(arch, Model(arch, seed=1).get_weights())
        rng = np.random.default_rng(0)
        c.upload_dataset(rng.standard_normal((200, 20, 3)).astype(np.float32), rng.integers(0, 5, 200), slot=1)
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        t0 = time.monotonic()
        with pytest.raises(WaitCancelled):
            c.evaluate(1, timeout=600.0, cancelled=stop.is_set)
        assert time.monotonic() - t0 < 5.0  # not the evaluation's own duration
    finally:
        c.close()
        clock.time_scale = 1000.0  # let the emulated board finish its evaluation quickly
        emu.wait_idle(30)


def test_device_shutdown_asks_every_session_before_waiting_for_any(tmp_path, monkeypatch):
    """Each device's disconnect takes ~0.3 s (driver threads): one after the other they doubled the quit time."""
    from app.core import devices as D
    from app.core.context import AppContext

    ctx = AppContext.create(tmp_path, bench=True)
    calls: list[tuple[str, str]] = []
    orig_req, orig_join = D._Session.request_shutdown, D._Session.join_shutdown  # noqa: SLF001
    monkeypatch.setattr(
        D._Session,  # noqa: SLF001
        "request_shutdown",
        lambda self: (calls.append(("ask", self.info.key)), orig_req(self))[1],
    )
    monkeypatch.setattr(
        D._Session,  # noqa: SLF001
        "join_shutdown",
        lambda self, deadline: (calls.append(("wait", self.info.key)), orig_join(self, deadline))[1],
    )
    ctx.close()
    kinds = [k for k, _ in calls]
    assert len(kinds) == 4 and kinds[:2] == ["ask", "ask"] and kinds[2:] == ["wait", "wait"]
