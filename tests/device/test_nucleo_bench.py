"""Full personalization round against the virtual bench's NUCLEO endpoint over a real socket
(pyserial ``socket://``): upload model and a real user's data, train Full for 2 epochs, download the
weights (CRC-32 verified) and check that macro-F1 on the user's held data improves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.bench import VirtualBench
from device.engine.model import Model
from device.nucleo import protocol as P
from device.nucleo.client import NucleoClient
from device.nucleo.emulator import NucleoEmulator
from device.nucleo.sensor import G, load_csv, load_wisdm2019
from estimator.arch import paper_cnn
from estimator.core import estimate

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "assets" / "sample" / "wisdm2019_1600_sample.csv"
ACTIVITIES = ("walking", "jogging", "stairs", "sitting", "standing")
T = 20


def windows_of(trace, T: int = T, step: int = T) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping windows (m/s², as WISDM) per activity of a trace (in g)."""
    xs, ys = [], []
    for k, a in enumerate(ACTIVITIES):
        seg = trace.segments[a] * G
        n = (len(seg) - T) // step + 1
        xs.append(np.stack([seg[i * step : i * step + T] for i in range(n)]))
        ys.append(np.full(n, k))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def macro_f1(conf: np.ndarray) -> float:
    tp = np.diag(conf).astype(float)
    denom = conf.sum(0) + conf.sum(1)
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1[conf.sum(1) > 0].mean())


def user_split(seed: int = 0):
    assert SAMPLE.is_file(), f"{SAMPLE} not found: the repository ships it (assets/sample)"
    x, y = windows_of(load_csv(SAMPLE))
    p = np.random.default_rng(seed).permutation(len(y))
    x, y = x[p], y[p]
    return (x[:160], y[:160]), (x[160:], y[160:])


def personalize_over_bench(arch, weights, train, held, epochs: int = 2, warmup: int = 0, time_scale: float = 2000.0):
    with VirtualBench(time_scale=time_scale, seed=3) as bench:
        assert isinstance(bench.board, NucleoEmulator)
        assert bench.powershield.source is bench.board  # the LPM01A measures this board
        url = bench.urls["board"]
        assert url.startswith("socket://127.0.0.1:")
        with NucleoClient.open(url, timeout=2.0) as c:
            assert c.hello().flags & 1
            info = c.upload_model(arch, weights)
            assert info.params == arch.params
            c.clear_data()
            c.upload_dataset(*train, slot=0)
            c.upload_dataset(*held, slot=1)
            before = c.evaluate(1, timeout=30)
            plan = c.train("full", epochs=epochs, batch=32, lr=0.01, warmup_epochs=warmup)
            result = c.wait_round_done(60)
            after = c.evaluate(1, timeout=30)
            got = c.download_weights(arch)  # raises IntegrityError on a CRC-32 mismatch
            stats = c.decoder_stats
        board = bench.board
    return plan, result, before, after, got, stats, board


def test_full_round_over_bench_socket_improves_f1():
    train, held = user_split()
    arch = paper_cnn(T, len(ACTIVITIES), ACTIVITIES)
    w0 = Model(arch, seed=3).get_weights()
    plan, res, before, after, got, stats, board = personalize_over_bench(arch, w0, train, held)

    assert res.done.status == P.RoundStatus.DONE and res.done.epochs_done == 2
    assert res.done.batches_done == len(res.batches) == plan.total_batches == 2 * 5
    # the Python board takes its batch times from the estimator's odl-firmware profile (its default)
    est = estimate(arch, "full", 32, "odl-firmware", n_windows=len(train[1]), epochs=2)
    assert (res.done.end_tick - res.done.start_tick) / 1e6 == pytest.approx(est.time_per_round_s, rel=1e-6)
    assert plan.est_cycles == res.done.cycles
    # the downloaded weights are the board's: re-predicting with them gives the board's confusion matrix
    pred = Model(arch, got).predict(held[0]).argmax(1)
    conf = np.zeros((5, 5), int)
    np.add.at(conf, (held[1], pred), 1)
    np.testing.assert_array_equal(conf, after.matrix)
    assert not all(np.array_equal(got[k][0], w0[k][0]) for k in w0)
    f1_before, f1_after = macro_f1(before.matrix), macro_f1(after.matrix)
    assert f1_after > f1_before + 0.2, (f1_before, f1_after)
    assert stats["bad_crc"] == stats["bad_frame"] == 0
    # power: the board drew run-mode current during the round and had a D7 edge per batch boundary
    t0 = board._t_boot + res.done.start_tick / 1e6
    t1 = board._t_boot + res.done.end_tick / 1e6
    assert len(board.d7_edges(t0 - 1e-6, t1 + 1e-6)) == 1 + len(res.batches)  # (ticks are whole µs: ±1 µs)
    assert board.current(np.array([(t0 + t1) / 2]))[0] == pytest.approx(est.current_a)


@pytest.mark.slow
def test_personalizing_a_pretrained_general_model_improves_f1(shared_data):
    """The paper's setting: a general model pretrained on other users (WISDM-2019 subjects 1604, 1606,
    1611, with the engine), personalized on the board for user 1600 (warm-up 2 epochs + Full 2)."""
    train, held = user_split(1)
    xs, ys = [], []
    for sid in (1604, 1606, 1611):
        f = shared_data / "wisdm2019_phone_accel" / "raw" / "phone" / "accel" / f"data_{sid}_accel_phone.txt"
        x, y = windows_of(load_wisdm2019(f))
        xs.append(x), ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    arch = paper_cnn(T, len(ACTIVITIES), ACTIVITIES)
    general = Model(arch, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(8):
        p = rng.permutation(len(y))
        for b in range(0, len(y), 32):
            general.train_batch(x[p[b : b + 32]], y[p[b : b + 32]], 0.01, "full")
    plan, res, before, after, got, stats, board = personalize_over_bench(
        arch, general.get_weights(), train, held, warmup=2
    )
    assert res.done.status == P.RoundStatus.DONE and res.done.epochs_done == 4
    f1_before, f1_after = macro_f1(before.matrix), macro_f1(after.matrix)
    assert f1_after > f1_before, (f1_before, f1_after)
