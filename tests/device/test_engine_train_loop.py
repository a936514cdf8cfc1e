"""The engine's round (device/engine/train.py: ``train``): the order of the batches, what ``on_batch`` is told,
how a round ends — on request, on a NaN loss, early, or complete — and which weights it ends with.  LOSO and
"simulate on my windows" run rounds through it, and the boards are checked against its results."""

from __future__ import annotations

import math

import numpy as np
import pytest

from device.engine import Model, StepOptions, TrainConfig, train
from device.engine.train import _better
from estimator.arch import paper_cnn

NAN = float("nan")


def setup(n=40, T=20, classes=4, seed=0):
    arch = paper_cnn(T, classes)
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = (rng.standard_normal((n, T, 3)) + y[:, None, None]).astype(np.float32)
    return arch, Model(arch, seed=1).get_weights(), x, y


def same(a: dict, b: dict) -> bool:
    return all(np.array_equal(u, v) for k in a for u, v in zip(a[k], b[k]))


def test_better_is_strict_and_nan_never_wins():
    # (loss, macro-F1)
    assert _better((0.4, 0.8), (0.5, 0.8), "loss") and not _better((0.5, 0.9), (0.5, 0.8), "loss")
    assert not _better((0.6, 1.0), (0.5, 0.8), "loss")
    assert _better((0.9, 0.9), (0.5, 0.8), "f1")  # higher F1 wins whatever the loss
    assert _better((0.4, 0.8), (0.5, 0.8), "f1")  # equal F1: the lower loss
    assert not _better((0.6, 0.8), (0.5, 0.8), "f1") and not _better((0.5, 0.8), (0.5, 0.8), "f1")
    assert not _better((0.1, 0.7), (0.5, 0.8), "f1")
    assert not _better((NAN, NAN), (0.5, 0.8), "f1") and not _better((NAN, 0.8), (0.5, 0.8), "loss")


def test_without_shuffle_the_batches_are_consecutive_slices_and_a_seed_repeats_a_round():
    arch, w, x, y = setup(n=40)
    m = Model(arch, w)
    train(m, x, y, TrainConfig(epochs=2, batch_size=16, shuffle=False))
    ref = Model(arch, w)
    for _ in range(2):
        for s in range(0, 40, 16):
            ref.train_batch(x[s : s + 16], y[s : s + 16], 0.01, "full")
    assert same(m.get_weights(), ref.get_weights())
    # shuffled: the seed decides the order, so the same seed gives the same weights and another seed others
    runs = []
    for seed in (7, 7, 8):
        mm = Model(arch, w)
        train(mm, x, y, TrainConfig(epochs=2, batch_size=16, seed=seed))
        runs.append(mm.get_weights())
    assert same(runs[0], runs[1]) and not same(runs[0], runs[2]) and not same(runs[0], m.get_weights())


def test_on_batch_is_told_where_the_round_is():
    arch, w, x, y = setup(n=40)
    infos = []
    train(Model(arch, w), x, y, TrainConfig(epochs=2, warmup_epochs=1, batch_size=16, seed=3), on_batch=infos.append)
    assert [(i.phase, i.epoch, i.batch, i.n_batches, i.n) for i in infos] == [
        (ph, e, b, 3, (16, 16, 8)[b]) for e, ph in enumerate(("warmup", "train", "train")) for b in range(3)
    ]
    assert [i.seen for i in infos] == list(np.cumsum([i.n for i in infos]))
    # each batch's loss and correct count are its own: the same batch trained by hand gives them
    m = Model(arch, w)
    first = []
    train(m, x, y, TrainConfig(epochs=1, batch_size=16, shuffle=False), on_batch=first.append)
    ref = Model(arch, w).train_batch(x[:16], y[:16], 0.01, "full")
    assert (first[0].loss, first[0].correct) == (ref.loss, ref.correct)
    assert all(0 <= i.correct <= i.n and math.isfinite(i.loss) for i in infos)


def test_a_round_stopped_on_request_closes_its_epoch_and_restores_the_best_weights():
    arch, w, x, y = setup(n=40)
    xv, yv = x[:8], y[:8]
    calls = {"n": 0}

    def stop() -> bool:  # asked before every batch; yes before the 5th: epoch 1 has run one of its 3 batches
        calls["n"] += 1
        return calls["n"] == 5

    m = Model(arch, w)
    cfg = TrainConfig(epochs=5, batch_size=16, lr=0.5, restore_best=True, val_metric="f1", seed=2)
    h = train(m, x, y, cfg, should_stop=stop, x_val=xv, y_val=yv)
    assert h.stopped and h.reason == "stopped on request" and h.batches == 4
    # epoch 0 complete (40 windows), epoch 1 closed with the one batch it ran
    assert [(e.phase, e.epoch, e.n) for e in h.epochs] == [("train", 0, 40), ("train", 1, 16)]
    assert len(h.val_loss) == 2 and h.best_epoch == 1  # passes before the round and after epoch 0, the better
    best = Model(arch, w)
    train(best, x, y, TrainConfig(epochs=1, batch_size=16, lr=0.5, seed=2))  # epoch 0 alone
    assert h.restored and same(m.get_weights(), best.get_weights())
    # stopped right after the pass that became the best: the model holds the best weights, nothing to put back
    calls["n"] = 1
    m1 = Model(arch, w)
    h1 = train(m1, x, y, cfg, should_stop=stop, x_val=xv, y_val=yv)  # yes before the 4th batch, epoch 1's first
    assert h1.stopped and h1.batches == 3 and h1.best_epoch == 1 and not h1.restored
    assert same(m1.get_weights(), best.get_weights())
    # without restore_best the stopped round keeps its last update
    m2 = Model(arch, w)
    calls["n"] = 0
    h2 = train(m2, x, y, TrainConfig(epochs=5, batch_size=16, lr=0.5, seed=2), should_stop=stop, x_val=xv, y_val=yv)
    assert h2.stopped and not h2.restored and not same(m2.get_weights(), best.get_weights())


def test_a_nan_loss_stops_the_round_naming_the_lr_and_restores_the_best_weights():
    arch, w, x, y = setup(n=40)
    x = x * np.float32(1e4)  # huge inputs and lr: the loss overflows within a few batches
    m = Model(arch, w)
    cfg = TrainConfig(epochs=10, batch_size=16, lr=1e3, restore_best=True, seed=0)
    with np.errstate(all="ignore"):
        h = train(m, x, y, cfg, x_val=x[:8], y_val=y[:8])
    assert h.stopped and h.reason.startswith("loss became nan") and "(lr 1000.0 too large?)" in h.reason
    last = h.epochs[-1]
    assert math.isnan(last.loss) and 0 < last.n and last.epoch == len(h.epochs) - 1 and last.phase == "train"
    assert h.batches < 30 and h.restored and h.best_epoch == 0 and same(m.get_weights(), w)
    # stop_on_nan off: the round runs to its end
    with np.errstate(all="ignore"):
        h2 = train(Model(arch, w), x, y, TrainConfig(epochs=2, batch_size=16, lr=1e3, stop_on_nan=False))
    assert not h2.stopped and h2.batches == 6


def test_early_stopping_counts_passes_without_a_better_one_and_not_at_the_last_epoch():
    arch, w, x, y = setup(n=40)
    xv, yv = x[:8], y[:8]

    def run(epochs: int, patience: int, metric: str = "loss"):
        # lr 0: the weights never change, so no pass is ever better than the first
        cfg = TrainConfig(epochs=epochs, batch_size=16, lr=0.0, patience=patience, val_metric=metric)
        return train(Model(arch, w), x, y, cfg, x_val=xv, y_val=yv)

    h = run(5, 2)
    assert h.early_stopped and len(h.epochs) == 2 and h.reason == "no better validation loss for 2 epochs"
    assert run(5, 2, "f1").reason == "no better validation macro-F1 for 2 epochs"
    assert run(5, 1).early_stopped and len(run(5, 1).epochs) == 1
    # patience reached exactly at the last epoch: the round is complete, not stopped early
    for epochs, patience in ((3, 3), (2, 2)):
        h = run(epochs, patience)
        assert not h.early_stopped and len(h.epochs) == epochs and h.reason == ""
    h = run(3, 2)  # reached before the last epoch
    assert h.early_stopped and len(h.epochs) == 2


def test_the_weights_a_round_ends_with():
    arch, w, x, y = setup(n=40)
    xv, yv = x[:8], y[:8]
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05, seed=4, val_metric="f1")
    plain = Model(arch, w)
    h0 = train(plain, x, y, cfg)
    assert h0.val_loss == [] and h0.best_epoch == -1
    # validation without restore_best changes nothing about the weights
    m = Model(arch, w)
    h = train(m, x, y, cfg, x_val=xv, y_val=yv)
    assert not h.restored and same(m.get_weights(), plain.get_weights()) and len(h.val_loss) == 4
    # lr 0: no pass beats the first, and the starting weights are put back (equal, since nothing changed)
    m = Model(arch, w)
    h = train(m, x, y, TrainConfig(epochs=3, batch_size=16, lr=0.0, seed=4, restore_best=True), x_val=xv, y_val=yv)
    assert h.best_epoch == 0 and h.restored and same(m.get_weights(), w)
    last = Model(arch, w)
    hl = train(last, x, y, TrainConfig(epochs=1, batch_size=40, lr=0.05, restore_best=True), x_val=x, y_val=y)
    assert hl.best_epoch == 1 and not hl.restored  # the last pass is the best: nothing to put back
    # no epoch at all: the starting weights, nothing restored
    m = Model(arch, w)
    h = train(m, x, y, TrainConfig(epochs=0, restore_best=True), x_val=xv, y_val=yv)
    assert h.batches == 0 and not h.restored and h.best_epoch == 0 and same(m.get_weights(), w)


def test_validation_windows_one_or_none_and_the_options_that_need_them():
    arch, w, x, y = setup(n=40)
    h = train(Model(arch, w), x, y, TrainConfig(epochs=1), x_val=x[:1], y_val=y[:1])
    assert len(h.val_loss) == 2  # one window validates
    h = train(Model(arch, w), x, y, TrainConfig(epochs=1), x_val=x[:0], y_val=y[:0])
    assert h.val_loss == []  # none: no validation
    for kw in ({"restore_best": True}, {"patience": 2}):
        with pytest.raises(ValueError) as e:
            train(Model(arch, w), x, y, TrainConfig(epochs=1, **kw), x_val=x[:0], y_val=y[:0])
        assert str(e.value) == "restore_best and patience need validation windows (x_val, y_val)"
    with pytest.raises(ValueError) as e:
        train(Model(arch, w), x, y, TrainConfig(epochs=1), x_val=x[:4])
    assert str(e.value) == "x_val and y_val go together: give both or neither"


def test_l2sp_in_a_round_pulls_toward_the_weights_the_round_started_from():
    arch, w, x, y = setup(n=32)
    for trainable in ("full", "tl"):
        m = Model(arch, w)
        train(m, x, y, TrainConfig(epochs=1, batch_size=32, lr=0.1, l2sp=2.0, trainable=trainable, shuffle=False))
        ref = Model(arch, w)
        ref.train_batch(x, y, 0.1, trainable, "vectorised", StepOptions(l2sp=2.0, anchor=ref.anchor(trainable)))
        assert same(m.get_weights(), ref.get_weights())
