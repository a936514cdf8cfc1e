"""The robust round (protocol v2, issue 17) on the ODL firmware under QEMU, against the reference engine.

The firmware runs validation passes (before the round and after every epoch) on the last ``n_val`` windows
of slot 0, keeps the best pass's weights and restores them, stops early after ``patience`` passes without
a better one, and clips the batch-mean gradient's norm and scales the feature layers' learning rate in the
main phase (docs/protocol.md §3.4, docs/firmware.md).  ``device.engine.train`` with the same windows, the
board's window order and per-sample accumulation is the reference: validation losses, macro-F1s, the best
pass, where the round stops and the final weights must agree."""

from __future__ import annotations

import numpy as np
import pytest

from device.bench import VirtualBench
from device.engine.model import Model
from device.engine.train import TrainConfig, train
from device.nucleo import protocol as P
from device.nucleo.client import NucleoClient, NucleoError
from device.nucleo.shuffle import epoch_order
from estimator.arch import paper_cnn
from estimator.memory import firmware_round_bytes
from tests import firmwarekit

T, N_CLASSES, N_TRAIN, N_VAL, BATCH, SEED = 20, 5, 96, 24, 32, 3


@pytest.fixture(scope="module", params=["qemu", "host"])
def board(request):
    """The firmware under QEMU (the ARM build, as the bench runs it) and natively (``odl-host``: the same
    portable core with AddressSanitizer and UBSan, seconds instead of minutes; what
    benchmarks/firmware_mutation.py runs)."""
    if request.param == "host":
        with firmwarekit.host_board() as url, NucleoClient.open(url, timeout=10.0) as c:
            assert c.hello().proto == 2
            yield c
        return
    firmwarekit.qemu_files()
    with VirtualBench(board_kind="qemu", time_scale=200.0, seed=5) as b:
        with NucleoClient.open(b.urls["board"], timeout=10.0) as c:
            assert c.hello().proto == 2
            yield c


def windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    x = rng.standard_normal((n, T, 3)).astype(np.float32) * 0.5 + y[:, None, None].astype(np.float32) * 0.4
    return x, y


def board_round(c: NucleoClient, w, x, y, **kw):
    arch = paper_cnn(T, N_CLASSES)
    c.upload_model(arch, w)
    c.clear_data(0)
    c.upload_dataset(x, y, 0)  # float32: no quantisation between the board and the reference
    c.drain_events()
    info = c.train(**kw)
    res = c.wait_round_done(300)
    return info, res, c.download_weights(arch)


def reference(w, x, y, n_val, mode, lr, epochs, warmup, **cfg):
    m = Model(paper_cnn(T, N_CLASSES), w)
    xt, yt, xv, yv = x[: len(y) - n_val], y[: len(y) - n_val], x[len(y) - n_val :], y[len(y) - n_val :]
    conf = TrainConfig(
        epochs=epochs, lr=lr, batch_size=BATCH, trainable=mode, warmup_epochs=warmup, mode="per_sample", **cfg
    )
    hist = train(m, xt, yt, conf, x_val=xv, y_val=yv, order=lambda e, n: epoch_order(SEED, e, n))
    return m.get_weights(), hist


def trained_then_mislabelled(data_seed: int, model_seed: int, label_seed: int):
    """A model trained on windows of ``data_seed``, and the same windows with the training part's labels
    drawn at random: a round on them only makes the validation loss worse.  Returns ``(w, x, y)``."""
    x, y = windows(N_TRAIN + N_VAL, data_seed)
    m = Model(paper_cnn(T, N_CLASSES), seed=model_seed)
    train(m, x, y, TrainConfig(epochs=8, lr=0.1, batch_size=16))
    y = y.copy()
    y[:N_TRAIN] = np.random.default_rng(label_seed).integers(0, N_CLASSES, N_TRAIN)
    return m.get_weights(), x, y


def engine_epochs(ref: Model, x, y, lr: float, epochs: int) -> list[float]:
    """``epochs`` Full epochs of the engine in the board's window order and batches (per-sample accumulation,
    the last batch short); returns each batch's loss."""
    losses = []
    for e in range(epochs):
        order = epoch_order(SEED, e, len(y))
        for b in range(0, len(y), BATCH):
            idx = order[b : b + BATCH]
            losses.append(ref.train_batch(x[idx], y[idx], lr, "full", mode="per_sample").loss)
    return losses


def assert_same_bits(got, want):
    for name, arrs in want.items():
        for a, b in zip(got[name], arrs):
            assert np.array_equal(a, b), name


def assert_weights_close(got, want, what):
    for name, arrs in want.items():
        for a, b in zip(got[name], arrs):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max()), err_msg=f"{what} {name}")


def test_a_damaging_round_is_undone_bit_for_bit(board):
    """A trained model, then a round on mislabelled training windows: every epoch makes the validation loss
    worse, the starting weights (VAL(0)) stay the best, so the board ends exactly on them."""
    w, x, y = trained_then_mislabelled(1, 11, 9)
    info, res, got = board_round(
        board, w, x, y, mode="full", epochs=3, batch=BATCH, lr=0.3, warmup_epochs=1, warmup_lr=0.3, seed=SEED,
        n_val=N_VAL, restore_best=True,
    )  # fmt: skip
    want, hist = reference(w, x, y, N_VAL, "full", 0.3, 3, 1, restore_best=True)
    assert [v.epoch for v in res.vals] == [0, 1, 2, 3, 4] and all(v.n == N_VAL for v in res.vals)
    np.testing.assert_allclose([v.loss for v in res.vals], hist.val_loss, rtol=1e-4)
    np.testing.assert_allclose([v.macro_f1 for v in res.vals], hist.val_f1, rtol=1e-4)
    assert hist.best_epoch == 0 and res.done.best_epoch == 0 and [v.best for v in res.vals] == [1, 0, 0, 0, 0]
    assert res.done.status == P.RoundStatus.DONE and res.done.epochs_done == 4 and len(res.batches) == 4 * 3
    assert_same_bits(got, w)  # restored from the board's copy: the very bits uploaded
    # ROUND_INFO: training batches only; the best-weights buffer counts (Full: every parameter, 8-aligned)
    arch = paper_cnn(T, N_CLASSES)
    assert info.total_batches == 4 * 3
    round8 = lambda n: (n + 7) // 8 * 8  # noqa: E731 - the buffer follows the plan, 8-aligned
    assert info.mem_bytes == round8(firmware_round_bytes(arch, "full", warmup=True)) + round8(4 * arch.params)
    robust = dict(validate=True, restore_best=True)
    assert info.mem_bytes == firmware_round_bytes(arch, "full", warmup=True, robust=robust)  # the estimator's
    # D7: the round's edges are its start, then the end of every batch and every validation pass
    items = sorted([*res.batches, *res.vals], key=lambda r: r.start_tick)
    assert all(a.end_tick == b.start_tick for a, b in zip(items, items[1:]))
    assert isinstance(items[0], P.ValReport) and res.done.end_tick == items[-1].end_tick


def test_clipped_scaled_round_with_early_stop_matches_the_engine(board):
    w = Model(paper_cnn(T, N_CLASSES), seed=12).get_weights()
    x, y = windows(N_TRAIN + N_VAL, 2)
    kw = dict(mode="full", epochs=6, batch=BATCH, lr=0.3, warmup_epochs=1, warmup_lr=0.3, seed=SEED, n_val=N_VAL)
    info, res, got = board_round(
        board, w, x, y, **kw, patience=1, restore_best=True, select_f1=True, clip_norm=0.5, feature_lr_scale=0.3
    )
    want, hist = reference(
        w, x, y, N_VAL, "full", 0.3, 6, 1, restore_best=True, patience=1, val_metric="f1", clip_norm=0.5,
        feature_lr_scale=0.3,
    )  # fmt: skip
    assert hist.early_stopped and len(res.vals) == len(hist.val_loss) < 1 + 7  # the round stopped early
    assert res.done.best_epoch == hist.best_epoch
    np.testing.assert_allclose([v.loss for v in res.vals], hist.val_loss, rtol=1e-4)
    np.testing.assert_allclose([v.macro_f1 for v in res.vals], hist.val_f1, rtol=1e-4)
    assert res.done.epochs_done == len(hist.val_loss) - 1 and len(res.batches) == hist.batches
    assert_weights_close(got, want, "clipped")
    # the training figures the board reports: every batch's mean loss, the last epoch's loss and accuracy
    np.testing.assert_allclose([b.loss for b in res.batches], hist.batch_losses, rtol=1e-4)
    last = hist.epochs[-1]
    assert res.done.last_loss == pytest.approx(last.loss, rel=1e-4) and res.done.train_accuracy == pytest.approx(
        last.accuracy, abs=1e-6
    )
    # the options changed the round: the plain round from the same start ends elsewhere
    plain, _ = reference(w, x, y, N_VAL, "full", 0.3, len(hist.val_loss) - 1 - 1, 1)
    assert any(not np.allclose(a, b, rtol=1e-3) for n in plain for a, b in zip(plain[n], got[n]))


def test_tl_round_with_validation_and_no_restore(board):
    """Validation without restore: the passes are reported, the weights are the last epoch's."""
    w = Model(paper_cnn(T, N_CLASSES), seed=13).get_weights()
    x, y = windows(N_TRAIN + N_VAL, 3)
    info, res, got = board_round(
        board, w, x, y, mode="tl", epochs=2, batch=BATCH, lr=0.05, warmup_epochs=0, seed=SEED, n_val=N_VAL
    )
    want, hist = reference(w, x, y, N_VAL, "tl", 0.05, 2, 0)
    np.testing.assert_allclose([v.loss for v in res.vals], hist.val_loss, rtol=1e-4)
    assert_weights_close(got, want, "tl")
    assert info.mem_bytes == firmware_round_bytes(paper_cnn(T, N_CLASSES), "tl")  # no best buffer without restore


def test_tl_round_with_restore_and_no_warmup(board):
    """Restore without a warm-up phase: the best-weights buffer holds the head's two Dense layers only (the
    estimator's figure), the result is the engine's, and the windows the round trained on are left intact
    (the same round again, without uploading them, gives the same bits)."""
    arch = paper_cnn(T, N_CLASSES)
    w = Model(arch, seed=14).get_weights()
    x, y = windows(N_TRAIN + N_VAL, 5)
    kw = dict(mode="tl", epochs=3, batch=BATCH, lr=0.3, warmup_epochs=0, seed=SEED, n_val=N_VAL, restore_best=True)
    info, res, got = board_round(board, w, x, y, **kw)
    want, hist = reference(w, x, y, N_VAL, "tl", 0.3, 3, 0, restore_best=True)
    np.testing.assert_allclose([v.loss for v in res.vals], hist.val_loss, rtol=1e-4)
    assert res.done.best_epoch == hist.best_epoch
    assert_weights_close(got, want, "tl restored")
    robust = dict(validate=True, restore_best=True)
    assert info.mem_bytes == firmware_round_bytes(arch, "tl", robust=robust)
    board.upload_model(arch, w)
    board.drain_events()
    board.train(**kw)
    board.wait_round_done(300)
    again = board.download_weights(arch)
    assert all(np.array_equal(a, b) for n in got for a, b in zip(got[n], again[n]))


def test_v2_requests_are_checked(board):
    arch = paper_cnn(T, N_CLASSES)
    board.upload_model(arch, Model(arch, seed=1).get_weights())
    x, y = windows(40, 4)
    board.clear_data(0)
    board.upload_dataset(x, y, 0)
    for kw, code, text in (
        (dict(n_val=40), "BAD_PARAM", "n_val 40 leaves no training window"),
        (dict(n_val=0, patience=2, restore_best=True), "BAD_PARAM", "need validation windows"),
        (dict(n_val=0, restore_best=True), "BAD_PARAM", "need validation windows"),  # either one alone
        (dict(n_val=0, patience=2), "BAD_PARAM", "need validation windows"),
        (dict(lr=float("nan"), warmup_epochs=1, warmup_lr=0.01), "BAD_PARAM", "TRAIN_START: lr outside 0..10"),
        (dict(lr=0.01, warmup_epochs=1, warmup_lr=11.0), "BAD_PARAM", "TRAIN_START: warmup_lr outside 0..10"),
        (dict(clip_norm=-1.0), "BAD_PARAM", "clip_norm outside"),
        (dict(feature_lr_scale=11.0), "BAD_PARAM", "feature_lr_scale outside"),
        (dict(l2sp=0.1), "UNSUPPORTED", "L2-SP unsupported"),
    ):
        with pytest.raises(NucleoError, match=f"{code}.*{text}"):
            board.train("full", epochs=1, **kw)
    assert board.status().state == P.BoardState.IDLE
    # a v1 host is still served as v1
    rsp = board.request(P.Hello(P.MAGIC, 1, 1), P.HelloRsp)
    assert rsp.proto == 1
    assert board.request(P.Hello(P.MAGIC, 1, 9), P.HelloRsp).proto == 2


def _stored(n: int) -> int:
    """Arena bytes of a dataset segment of n 1x1 float32 windows (header, labels to 4, values; blob to 8)."""
    return (12 + (n + 3) // 4 * 4 + 4 * n + 7) // 8 * 8


def _segments_of(total: int) -> list[int]:
    """Window counts of two such segments whose stored bytes add up to exactly ``total``."""
    for n2 in range(1, 64):
        rest = total - _stored(n2)
        start = max(1, (rest - 12) // 5 - 4)
        for n1 in range(start, start + 16):
            if _stored(n1) == rest:
                return [n1, n2]
    raise AssertionError(f"no two segments store exactly {total} B")


def test_a_round_that_exactly_fills_the_arena_runs_and_one_segment_more_does_not(board):
    """docs/protocol.md §6 at its edge: a robust round whose buffers (plan + best-weights copy) take exactly
    the free arena is started; with one more 24-byte segment stored it is refused with OUT_OF_RAM; dataset
    segments that take the arena to its last byte are stored, and one more is refused."""
    arch = paper_cnn(T, N_CLASSES)
    board.upload_model(arch, Model(arch, seed=1).get_weights())
    for slot in (0, 1):
        board.clear_data(slot)
    model_bytes = 303_104 - board.info().ram_free
    x, y = windows(N_TRAIN + N_VAL, 4)
    board.upload_dataset(x, y, 0)
    kw = dict(mode="full", epochs=1, batch=BATCH, n_val=N_VAL, restore_best=True, seed=SEED)
    region = board.train(**kw).mem_bytes - model_bytes
    board.abort()
    board.wait_round_done(60)
    filler = board.info().ram_free - region
    assert region % 8 == 0 and filler > 0
    for n in _segments_of(filler):
        board.upload_dataset(np.zeros((n, 1, 1), np.float32), [0] * n, 1)
    assert board.info().ram_free == region
    info = board.train(**kw)  # exactly fits
    assert info.mem_bytes == model_bytes + region
    board.abort()
    assert board.wait_round_done(60).done.status == P.RoundStatus.ABORTED
    board.upload_dataset(np.zeros((1, 1, 1), np.float32), [0], 1)  # 24 B more
    with pytest.raises(NucleoError, match="OUT_OF_RAM on TRAIN_START") as exc:
        board.train(**kw)
    assert exc.value.error.arg0 == 327_680 + 24  # the round's need: 24 B over the SRAM
    for n in _segments_of(board.info().ram_free):  # the datasets themselves fill the arena to its last byte
        board.upload_dataset(np.zeros((n, 1, 1), np.float32), [0] * n, 1)
    assert board.info().ram_free == 0
    with pytest.raises(NucleoError, match="OUT_OF_RAM on DATA_BEGIN: dataset of 20 B does not fit: 0 B free"):
        board.upload_dataset(np.zeros((1, 1, 1), np.float32), [0], 1)
    for slot in (0, 1):
        board.clear_data(slot)


def test_the_blob_table_limit_is_named_and_clearing_a_full_table_works(board):
    """The firmware keeps at most 48 blobs (docs/protocol.md §6): the model and 47 one-window segments fill
    the table; one more segment is refused with TOO_LARGE naming the limit (not an OUT_OF_RAM claiming the
    bytes do not fit: they do); clearing the slot frees all 47 (the table full while it is compacted) and the
    board takes uploads again.  Each segment's DATA_STATE counts its bytes exactly (protocol.md §5.3)."""
    arch = paper_cnn(T, N_CLASSES)
    board.upload_model(arch, Model(arch, seed=1).get_weights())
    for slot in (0, 1):
        board.clear_data(slot)
    one = np.ones((1, T, 3), np.float32)
    for k in range(1, 48):
        st = board.upload_dataset(one, [k % N_CLASSES], 1)
        assert st.n_windows == k and st.data_bytes == k * (12 + 4 + T * 3 * 4)
    with pytest.raises(NucleoError, match="TOO_LARGE on DATA_BEGIN: the board keeps at most 48 blobs") as exc:
        board.upload_dataset(one, [0], 0)
    assert (exc.value.error.arg0, exc.value.error.arg1) == (48, 48) and board.info().ram_free > 100_000
    board.clear_data(1)
    assert board.status().state == P.BoardState.IDLE
    st = board.upload_dataset(*windows(N_TRAIN, 1), 0)
    assert st.n_windows == N_TRAIN and st.data_bytes == 12 + N_TRAIN + N_TRAIN * T * 3 * 4
    board.clear_data(0)


def bn_round(board, gamma0: float | None = None):
    """A Full round on a conv + BatchNorm model (``gamma0``: channel 0's gamma); returns the uploaded,
    downloaded and engine weights (device.engine, bn='fold', the same batches)."""
    from estimator.arch import Arch, Layer

    arch = Arch(
        (T, 3),
        (Layer("conv1d", "c1", filters=6, kernel=3), Layer("batchnorm", "bn1"), Layer("relu", "r1"),
         Layer("gap1d", "g"), Layer("dense", "d1", units=8), Layer("relu", "r2"),
         Layer("dense", "d2", units=N_CLASSES), Layer("softmax", "sm")),
    )  # fmt: skip
    rng = np.random.default_rng(9)
    w = Model(arch, seed=2).get_weights()
    c = w["bn1"][0].shape[0]
    w["bn1"] = [rng.uniform(0.5, 1.5, c), rng.normal(0, 0.3, c), rng.normal(0, 0.3, c), rng.uniform(0.5, 2, c)]
    if gamma0 is not None:
        w["bn1"][0][0] = gamma0
    w["bn1"] = [a.astype(np.float32) for a in w["bn1"]]
    x, y = windows(64, 6)
    board.upload_model(arch, w)
    board.clear_data(0)
    board.upload_dataset(x, y, 0)
    board.drain_events()
    board.train("full", epochs=2, batch=BATCH, lr=0.02, seed=SEED)
    assert board.wait_round_done(120).done.status == P.RoundStatus.DONE
    got = board.download_weights(arch)
    ref = Model(arch, w)
    engine_epochs(ref, x, y, 0.02, 2)
    return w, got, ref.get_weights()


def test_a_round_on_a_model_with_batchnorm_exports_the_engines_weights(board):
    """A Full round on a conv + BatchNorm model: the board trains the folded conv and writes it back as the
    Keras conv + BatchNorm (statistics kept, the kernel and bias unfolded: model.c plan_export); every
    downloaded tensor agrees with the engine's run of the same batches (device.engine, bn='fold')."""
    w, got, want = bn_round(board)
    np.testing.assert_array_equal(got["bn1"][2], w["bn1"][2])  # the statistics are not trained
    np.testing.assert_array_equal(got["bn1"][3], w["bn1"][3])
    assert_weights_close(got, want, "BatchNorm model")
    assert not np.allclose(got["c1"][0], w["c1"][0])  # the conv did train


def test_a_batchnorm_channel_with_gamma_zero_is_written_back_with_identity_statistics(board):
    """gamma = 0 folds channel 0 to a constant, which cannot be divided back: like the engine
    (weights.unfold_conv_bn), the board writes that channel with gamma 1, mean 0, var 1 - eps (a scale of
    exactly 1) and the trained folded kernel as the kernel."""
    w, got, want = bn_round(board, gamma0=0.0)
    eps = np.float32(1e-3)  # Keras' BatchNormalization default
    assert (got["bn1"][0][0], got["bn1"][2][0], got["bn1"][3][0]) == (1.0, 0.0, np.float32(1.0 - eps))
    np.testing.assert_array_equal(got["bn1"][3][1:], w["bn1"][3][1:])  # the other channels keep theirs
    assert_weights_close(got, want, "gamma 0")


def test_a_restore_brings_back_the_warm_up_layer_outside_the_main_layers(board):
    """Layers mode training only the first conv, after a warm-up of the last Dense layer, on mislabelled
    windows: the starting weights stay the best pass, so the restore must bring back the warm-up's layer too
    (the best-weights copy covers both phases' layers), bit for bit."""
    w, x, y = trained_then_mislabelled(7, 15, 10)
    info, res, got = board_round(
        board, w, x, y, mode="mask", layer_indices=[0], epochs=2, batch=BATCH, lr=0.3, warmup_epochs=1,
        warmup_lr=0.3, seed=SEED, n_val=N_VAL, restore_best=True,
    )  # fmt: skip
    assert res.done.status == P.RoundStatus.DONE and res.done.best_epoch == 0
    assert [v.best for v in res.vals] == [1, 0, 0, 0]
    assert_same_bits(got, w)


def test_a_partial_last_batch_an_evaluation_and_the_rounds_cycles(board):
    """100 windows in batches of 32: every epoch ends with a batch of 4 (its reports, losses and the weights
    are the engine's run of the same batches); EVALUATE on the test slot gives the engine's predictions and
    mean loss; ROUND_DONE's cycles are the round's, from its start: the reports' cycles plus the end."""
    arch = paper_cnn(T, N_CLASSES)
    w = Model(arch, seed=16).get_weights()
    x, y = windows(100, 8)
    xt, yt = windows(40, 9)
    board.upload_model(arch, w)
    board.clear_data()
    board.upload_dataset(x, y, 0)
    board.upload_dataset(xt, yt, 1)
    board.drain_events()
    info = board.train("full", epochs=2, batch=BATCH, lr=0.05, seed=SEED)
    res = board.wait_round_done(300)
    assert info.batches_per_epoch == 4 and info.total_batches == 8
    assert [(b.epoch, b.batch, b.n_samples) for b in res.batches] == [
        (e, b, n) for e in (0, 1) for b, n in enumerate((32, 32, 32, 4))
    ]
    ref = Model(arch, w)
    losses = engine_epochs(ref, x, y, 0.05, 2)
    np.testing.assert_allclose([b.loss for b in res.batches], losses, rtol=1e-4)
    assert_weights_close(board.download_weights(arch), ref.get_weights(), "partial batches")
    reported = sum(b.cycles for b in res.batches)
    # the end (export, ROUND_DONE) costs a few thousand cycles; allow far more (odl-host counts wall time, which a
    # loaded machine stretches), but less than the cycles since boot that a count from 0 instead of the round's
    # start would add (at least twice those)
    inf = board.info()
    since_boot = res.done.start_tick * inf.sysclk_hz / inf.tick_hz
    assert reported <= res.done.cycles <= reported + max(0.02 * reported, 1e6, since_boot / 2)
    ev = board.evaluate(1, timeout=120)
    p = ref.predict(xt)
    assert (ev.slot, ev.n_classes, ev.n) == (1, N_CLASSES, 40)
    assert ev.matrix.sum(axis=1).tolist() == np.bincount(yt, minlength=N_CLASSES).tolist()  # every window counted
    want = np.zeros((N_CLASSES, N_CLASSES), np.int64)
    np.add.at(want, (yt, p.argmax(axis=1)), 1)
    assert np.abs(ev.matrix - want).sum() <= 2  # at most one near-tie decided the other way
    assert ev.loss == pytest.approx(float(np.mean(-np.log(np.maximum(p[np.arange(40), yt], 1e-7)))), rel=1e-4)


def test_tied_scores_are_predicted_as_the_first_class_like_the_engine(board):
    """A head whose weights and bias are all 0 gives every class exactly the same probability: the board must
    then predict class 0, as numpy's argmax (the engine, the app's metrics) does, not the last tied class."""
    arch = paper_cnn(T, N_CLASSES)
    w = Model(arch, seed=17).get_weights()
    w["dense2"] = [np.zeros_like(a) for a in w["dense2"]]
    xt, yt = windows(30, 10)
    board.upload_model(arch, w)
    board.clear_data()
    board.upload_dataset(xt, yt, 1)
    ev = board.evaluate(1, timeout=120)
    assert ev.matrix[:, 0].tolist() == np.bincount(yt, minlength=N_CLASSES).tolist()  # every window -> class 0
    assert ev.loss == pytest.approx(np.log(N_CLASSES), rel=1e-6)
    assert Model(arch, w).predict(xt).argmax(axis=1).tolist() == [0] * 30


def test_the_layer_limit_is_24_and_a_model_at_it_trains(board):
    """docs/firmware.md: up to 24 layers.  A 24-layer model (flatten, dropout, ten Dense + ReLU, Dense,
    softmax) loads and trains; one more layer is TOO_LARGE naming the count and the limit."""
    from estimator.arch import Arch, Layer

    def deep(n_hidden: int) -> Arch:
        hidden = [x for i in range(n_hidden) for x in (Layer("dense", f"h{i}", units=6), Layer("relu", f"r{i}"))]
        return Arch(
            (T, 3),
            (Layer("flatten", "f"), Layer("dropout", "do", rate=0.1), *hidden,
             Layer("dense", "out", units=N_CLASSES), Layer("softmax", "sm")),
        )  # fmt: skip

    arch = deep(10)
    assert len(arch.layers) == 24
    w = Model(arch, seed=3).get_weights()
    x, y = windows(32, 10)
    board.upload_model(arch, w)
    board.clear_data(0)
    board.upload_dataset(x, y, 0)
    board.drain_events()
    board.train("full", epochs=1, batch=BATCH, lr=0.01, seed=SEED)
    assert board.wait_round_done(120).done.status == P.RoundStatus.DONE
    too_deep = Arch(arch.input_shape, (Layer("dropout", "do0", rate=0.1), *arch.layers))
    with pytest.raises(
        NucleoError, match="TOO_LARGE on MODEL_CHUNK: model has 25 layers, this firmware runs at most 24"
    ) as exc:
        board.upload_model(too_deep, Model(too_deep, seed=3).get_weights())
    assert (exc.value.error.arg0, exc.value.error.arg1) == (25, 24)
