"""One round pipeline (issue 14): the Training panel's path (RoundRunner on the device manager) and the CLI's path
(``odlstudio personalize``) run a round on the virtual bench through :func:`app.core.board_round.run_board_round`,
and both report, per batch, exactly the energy the whole-round attribution of :mod:`app.core.energy` gives for
that round's batch reports and power trace — the energy the power panel's D7 view shows between the same edges.

Two separate rounds cannot be compared sample for sample (the host's timing moves the power monitor's sample grid
under the batches), so each path is compared with the one function of its own round's data; a path that placed
or integrated batches its own way (the CLI's former ``match_edges``/``batch_energy``, the D7 view's former
charge-based sum) fails here."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from app.core.board_round import RoundResult, whole_round_energy
from app.core.energy import BatchRow, d7_intervals
from app.core.personalize import batch_summary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _unmeasured(rows: list[BatchRow]) -> list[BatchRow]:
    return [
        dataclasses.replace(r, t0=None, t1=None, avg_current_a=None, avg_power_w=None, energy_j=None, source="pending")
        for r in rows
    ]


def _check_round(rows: list[BatchRow], trace, round_info: dict, per_batch: list[dict]) -> None:
    """``rows`` (a path's stored batches) and ``per_batch`` (the CLI report of the same rows) are exactly the
    whole-round attribution of the round on ``trace``; the D7 view measures the same energies."""
    assert rows and all(r.energy_j is not None for r in rows)
    assert sum(r.source == "d7" for r in rows) >= len(rows) - 1, [r.source for r in rows]
    expect = whole_round_energy(_unmeasured(rows), trace, round_info)
    assert [(r.t0, r.t1, r.source, r.energy_j) for r in rows] == [(e.t0, e.t1, e.source, e.energy_j) for e in expect]
    assert [b["energy_mj"] for b in per_batch] == [r.energy_j * 1e3 for r in rows]
    assert [b["source"] for b in per_batch] == [r.source for r in rows]
    # the power panel's D7 view: the interval between the same two edges has the same energy
    d7 = {
        round(iv.t0, 9): iv for iv in d7_intervals(trace.edges(round_info["earliest_t"]), trace.stream, trace.voltage)
    }
    checked = 0
    for r in rows:
        iv = d7.get(round(r.t0, 9))
        if r.source == "d7" and iv is not None and iv.t1 == r.t1:
            assert iv.energy_j == r.energy_j
            checked += 1
    assert checked >= len(rows) - 1


def test_gui_path_reports_the_whole_round_attribution(tmp_path):
    from app.core.rounds import RoundConfig, RoundRunner, round_rows
    from tests.roundkit import bench_context, labelled_dataset

    ctx = bench_context(tmp_path, power_recent_s=3600.0)  # the whole round at full resolution
    try:
        labelled_dataset(ctx, seconds_each=20.0)
        res = RoundRunner(ctx.store, ctx.devices, ctx.data_dir, RoundConfig(mode="tl", epochs=1), ctx.dataset.id).run()
        assert res["status"] == "done"
        rows = round_rows(ctx.store, res["round_id"])
        summary = batch_summary(RoundResult(rows, "done", res["round_info"], res["round_done"], {}, 0), 32)
        _check_round(rows, ctx.devices.power_trace(), res["round_info"], summary["per_batch"])
        assert res["energy_j"] == pytest.approx(sum(r.energy_j for r in rows), rel=1e-12)
    finally:
        ctx.close()


def test_cli_path_reports_the_whole_round_attribution(tmp_path, shared_data):
    from app.core.personalize import PersonalizeConfig, personalize
    from tests.datakit import real_lines, write

    user = write(tmp_path, "data_1600_accel_phone.txt", real_lines(shared_data, "1600", 600))
    cfg = PersonalizeConfig(
        data=str(user), input_size=20, modes=("tl",), epochs=1, warmup_epochs=0, time_scale=200.0, power_freq=1000
    )
    res = personalize(cfg)
    rr = res.rounds["tl"]
    assert rr.trace is not None and rr.alignment == "d7"
    per_batch = res.report["results"]["tl"]["per_batch"]
    _check_round(rr.rows, rr.trace, rr.round_info, per_batch)
    main = [b["energy_mj"] for b in per_batch if b["phase"] == "main" and b["n"] == 32]
    assert res.report["results"]["tl"]["energy_per_batch_mj"] == pytest.approx(float(np.mean(main)), rel=1e-12)


def test_a_round_the_board_has_no_ram_for_trains_a_stratified_subset():
    """The board refuses the round with OUT_OF_RAM (needed, available): the pipeline keeps a class-stratified
    subset of the training windows that fits, uploads it again and trains, and says so."""
    from app.core.board_round import RoundObserver, RoundSpec, run_board_round
    from device.bench import VirtualBench
    from device.engine.model import Model
    from device.nucleo.client import NucleoClient
    from estimator.arch import paper_cnn, resolve_trainable
    from estimator.memory import training_memory

    arch = paper_cnn(100, 5)
    weights = Model(arch, seed=0).get_weights()
    with VirtualBench(time_scale=500.0, board_kind="python") as bench:
        board = bench.board
        c = NucleoClient.open(bench.urls["board"])
        try:
            c.hello()
            need = training_memory(arch, resolve_trainable(arch, "full")).paper_bytes  # the round's buffers
            per = 1 + 100 * 3 * 2  # int16 values and a label byte per window
            room = board.ram_total - board.reserve_bytes  # what data and the round's buffers share
            n = (room - need) // per + 60  # the data fit the board alone, but not beside the round
            assert n * per + 64 < room - 4 * arch.params
            rng = np.random.default_rng(0)
            x = rng.normal(0, 3, (n, 100, 3)).astype(np.float32)
            y = np.arange(n) % 5
            warned: list[str] = []

            class Obs(RoundObserver):
                def warn(self, text: str) -> None:
                    warned.append(text)

            rr = run_board_round(
                c, arch, weights, (x, y), RoundSpec("full", epochs=1, batch_size=32), observer=Obs(), settle_s=0.0
            )
        finally:
            c.close()
    assert rr.status == "done" and rr.n_train_used < n
    assert len(rr.rows) == -(-rr.n_train_used // 32) and all(r.source == "none" for r in rr.rows)
    assert any(f"holds {rr.n_train_used} of {n} training windows" in w for w in warned), warned
    assert rr.n_train_used * per + need <= room  # what it kept fits beside the round
