"""Issue 17: the robust round — the engine's options, the emulated board's protocol-v2 round (replayed on the
engine), the wire, the validation split and the mode choice, the memory it adds."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.procedure import PLAIN, ROBUST, Procedure, ProcedureError, choose_mode, validation_split
from device.engine import Model, StepOptions, TrainConfig, train
from device.engine.model import macro_f1_f32
from device.nucleo import protocol as P
from device.nucleo.client import NucleoClient
from device.nucleo.emulator import NucleoEmulator
from device.nucleo.shuffle import epoch_order
from device.simclock import SimClock
from estimator.arch import paper_cnn
from estimator.memory import robust_round_bytes, trained_values, training_memory
from tests.device.test_nucleo_emulator import DeviceTransport


def data(n=96, T=20, classes=5, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = (noise * rng.standard_normal((n, T, 3)) + y[:, None, None]).astype(np.float32)
    return x, y


def model(T=20, classes=5, seed=1):
    arch = paper_cnn(T, classes)
    return arch, Model(arch, seed=seed).get_weights()


# --- engine: the robust step ------------------------------------------------------------------------------
def test_robust_step_arithmetic_per_sample_equals_vectorised_and_matches_the_formula():
    arch, w = model()
    x, y = data(32)
    m0 = Model(arch, w)
    _, g = m0.gradients(x, y, "full")  # batch-mean gradients (Keras layout = runtime layout here)
    names = [l.name for l in arch.layers if l.has_params]
    flat = np.concatenate([a.ravel() for n in names for a in g[n]]).astype(np.float32)
    norm = float(np.sqrt(np.sum(flat.astype(np.float64) ** 2)))
    clip, lr, fls = norm / 4, 0.05, 0.25  # clipping is active
    want = {}
    for n in names:
        lr_n = lr * fls if n.startswith("conv") else lr
        want[n] = [a - lr_n * (clip / norm) * ga for a, ga in zip(w[n], g[n])]
    for mode in ("vectorised", "per_sample"):
        m = Model(arch, w)
        m.train_batch(x, y, lr, "full", mode, StepOptions(feature_lr_scale=fls, clip_norm=clip))
        got = m.get_weights()
        for n in names:
            for a, b in zip(got[n], want[n]):
                np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=f"{mode} {n}")
    # the feature layers are those TL leaves frozen
    assert Model(arch, w).feature_mask("full") == [True, True, True, True, False, False, False, False]


def test_options_off_are_the_plain_step_bit_for_bit():
    arch, w = model()
    x, y = data(40)
    for mode in ("vectorised", "per_sample"):
        a, b = Model(arch, w), Model(arch, w)
        a.train_batch(x, y, 0.01, "full", mode)
        b.train_batch(x, y, 0.01, "full", mode, StepOptions())  # all off: the same code path
        for n, arrs in a.get_weights().items():
            for u, v in zip(arrs, b.get_weights()[n]):
                assert np.array_equal(u, v)


def test_l2sp_pulls_toward_the_anchor():
    """w <- w - lr * (g + l2sp * (w - anchor)): the L2-SP step differs from the plain one by exactly the pull."""
    arch, w = model()
    x, y = data(32)
    anchor = Model(arch, w).anchor("full")
    far = {k: [a + np.float32(0.01) for a in v] for k, v in w.items()}
    plain, pulled = Model(arch, far), Model(arch, far)
    plain.train_batch(x, y, 0.1, "full", "per_sample")
    pulled.train_batch(x, y, 0.1, "full", "per_sample", StepOptions(l2sp=2.0, anchor=anchor))
    for k in w:
        for a, b in zip(pulled.get_weights()[k], plain.get_weights()[k]):
            np.testing.assert_allclose(a - b, -0.1 * 2.0 * 0.01, rtol=0, atol=2e-6, err_msg=k)
    with pytest.raises(ValueError, match="anchor"):
        pulled.train_batch(x, y, 0.1, "full", "per_sample", StepOptions(l2sp=1.0))


def test_restore_best_keeps_the_starting_weights_when_training_only_hurts():
    """A learning rate that wrecks the model: the validation pass before the round stays the best, and the
    round ends with the weights it started from (what makes a personalization never worse on validation)."""
    arch, w = model()
    x, y = data(96)
    xv, yv = data(30, seed=5)
    m = Model(arch, w)
    pre = Model(arch, w)
    hist = train(
        m, x, y, TrainConfig(epochs=3, lr=5.0, restore_best=True, val_metric="loss", stop_on_nan=False),
        x_val=xv, y_val=yv,
    )  # fmt: skip
    assert hist.best_epoch == 0 and hist.restored
    for k, arrs in m.get_weights().items():
        for a, b in zip(arrs, pre.get_weights()[k]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert len(hist.val_loss) == 4 and hist.val_loss[0] == min(hist.val_loss)


def test_early_stopping_and_best_by_f1_then_loss():
    arch, w = model()
    x, y = data(96)
    xv, yv = data(30, seed=5)
    m = Model(arch, w)
    hist = train(
        m, x, y, TrainConfig(epochs=30, lr=0.05, restore_best=True, patience=2, val_metric="f1"), x_val=xv, y_val=yv
    )
    assert hist.early_stopped and len(hist.val_loss) < 31
    k = hist.best_epoch
    f1, lo = np.array(hist.val_f1), np.array(hist.val_loss)
    assert f1[k] == f1.max() and lo[k] == lo[f1 == f1.max()].min()
    # the model holds the best pass's weights
    loss_now, f1_now = m.val_scores(xv, m.targets(yv, len(yv)))
    assert loss_now == pytest.approx(lo[k], rel=1e-6) and f1_now == f1[k]
    assert loss_now == pytest.approx(m.loss(xv, yv), rel=1e-5)  # the mean cross-entropy, as evaluate's


def test_macro_f1_f32_is_sklearns_over_present_classes():
    yt = np.array([0, 0, 1, 1, 2, 2, 2])
    yp = np.array([0, 1, 1, 1, 2, 0, 4])
    from device.engine.metrics import macro_f1

    assert macro_f1_f32(yt, yp, 6) == pytest.approx(macro_f1(yt, yp, n_classes=6), abs=1e-7)
    # no window: no class is present, and the score is NaN (which ranks last), not an error
    assert np.isnan(macro_f1_f32(np.zeros(0, np.int64), np.zeros(0, np.int64), 3))


# --- the validation split and the mode choice ----------------------------------------------------------
def test_validation_split_every_kth_window_per_class_in_stored_order():
    y = np.array([0] * 25 + [1] * 9 + [2] * 10)
    tr, va = validation_split(y, 10, "interleaved")
    assert list(va) == [9, 19, 43]  # class 0: its 10th, 20th window; class 1 has < 10; class 2: its 10th
    assert sorted(np.concatenate([tr, va])) == list(range(len(y))) and not set(tr) & set(va)
    assert list(tr) == sorted(tr)
    tr, va = validation_split(y, 0)
    assert len(va) == 0 and len(tr) == len(y)


def test_validation_split_tail_is_the_last_windows_of_each_class():
    # classes interleaved in time, as a user's recordings are: the tail is per class, not the last rows
    y = np.array([0] * 12 + [1] * 4 + [0] * 13 + [1] * 5 + [2] * 10 + [3] * 3)
    tr, va = validation_split(y, 10)  # the robust round's default split
    assert list(va) == [27, 28, 33, 43]  # class 0 (25): its last 2; class 1 (9): its last; class 2 (10): its last
    assert 44 not in va and 45 not in va and 46 not in va  # class 3 (3 < 10 // 2 windows) trains only
    assert sorted(np.concatenate([tr, va])) == list(range(len(y))) and list(tr) == sorted(tr)
    assert list(ROBUST.split(y)[1]) == list(va) and ROBUST.val_split == "tail"
    # every other validation window is after every training window of its class (the board validates on what
    # comes next, not on the neighbours of what it trained on)
    for c in np.unique(y):
        if len(va[y[va] == c]):
            assert va[y[va] == c].min() > tr[y[tr] == c].max()
    tr, va = validation_split(np.array([0] * 4 + [1] * 30), 10)
    assert list(va) == [31, 32, 33]  # class 0: 4 < 5 windows, none; class 1: its last 3
    tr, va = validation_split(np.array([0] * 5 + [1] * 30), 10)
    assert list(va) == [4, 32, 33, 34]  # class 0: 5 = 10 // 2 windows, its last one
    with pytest.raises(ProcedureError) as e:
        validation_split(y, 10, "random")
    assert str(e.value) == "validation split must be one of tail, interleaved, got 'random'"
    # a small `every`: a class validates one window from every // 2 windows on, but never its only one ...
    assert list(validation_split(np.array([0, 0, 1, 1, 1, 1, 1]), 5)[1]) == [1, 6]  # 2 = 5 // 2 windows: 1
    assert list(validation_split(np.array([0, 1, 1, 1, 1]), 2)[1]) == [3, 4]  # class 0 has 1 window: it trains
    assert list(validation_split(np.array([0, 0, 1, 1, 1]), 4)[1]) == [1, 4]
    # ... and nothing validates: every window trains, and the empty index still indexes an array
    tr, va = validation_split(y, 0)
    assert va.dtype.kind == "i" and np.arange(len(y))[va].size == 0 and list(tr) == list(range(len(y)))


def test_a_procedure_splits_and_asks_the_board_as_its_fields_say():
    y = np.array([0] * 25 + [1] * 12)
    inter = Procedure(val_split="interleaved")
    assert list(inter.split(y)[1]) == list(validation_split(y, 10, "interleaved")[1])
    assert list(inter.split(y)[1]) != list(ROBUST.split(y)[1])
    tr, va = PLAIN.split(y)  # nothing validates: every window trains
    assert list(tr) == list(range(len(y))) and len(va) == 0
    # the board is asked for validation, restore and F1 selection only when the procedure validates and there
    # are validation windows; step options always
    assert ROBUST.wire(12) == {
        "n_val": 12, "patience": 0, "restore_best": True, "select_f1": True,
        "feature_lr_scale": 1.0, "clip_norm": 5.0, "l2sp": 0.0,
    }  # fmt: skip
    assert Procedure(patience=3).wire(12)["patience"] == 3
    for p in (Procedure(patience=3), ROBUST):  # no validation windows: nothing that needs them
        assert {k: p.wire(0)[k] for k in ("n_val", "patience", "restore_best", "select_f1")} == {
            "n_val": 0, "patience": 0, "restore_best": False, "select_f1": False,
        }  # fmt: skip
    off = Procedure(val_every=0, patience=3, restore_best=True, select_f1=True, clip_norm=2.0)
    assert off.wire(12) == {
        "n_val": 0, "patience": 0, "restore_best": False, "select_f1": False,
        "feature_lr_scale": 1.0, "clip_norm": 2.0, "l2sp": 0.0,
    }  # fmt: skip
    w = Procedure(restore_best=False, select_f1=False).wire(12)
    assert (w["restore_best"], w["select_f1"]) == (False, False)


def test_choose_mode_strict_keeps_a_personalized_mode_only_on_higher_f1_than_the_general_model():
    # (loss, macro-F1) per mode.  Equal F1 with a lower loss is not enough: the general model is kept
    assert choose_mode({"none": (0.5, 1.0), "tl": (0.05, 1.0), "full": (0.01, 1.0)}) == "none"
    assert choose_mode({"none": (0.5, 0.8), "tl": (0.3, 0.8), "full": (0.2, 0.8)}) == "none"
    # strictly higher F1: the better personalized mode (F1, then loss; exact tie: TL, the cheaper)
    assert choose_mode({"none": (0.5, 0.8), "tl": (0.3, 0.9), "full": (0.2, 0.9)}) == "full"
    assert choose_mode({"none": (0.5, 0.8), "tl": (0.3, 0.95), "full": (0.2, 0.9)}) == "tl"
    assert choose_mode({"none": (0.5, 0.8), "tl": (0.2, 0.9), "full": (0.2, 0.9)}) == "tl"
    assert choose_mode({"none": (0.5, 0.8), "tl": (0.3, 0.8), "full": (0.4, 0.81)}) == "full"
    assert choose_mode({"none": (0.5, 0.95), "tl": (0.3, 0.9), "full": (0.2, 0.9)}) == "none"
    # NaN ranks last; without the general model's score the best personalized mode; nothing: None
    assert choose_mode({"none": (0.5, float("nan")), "tl": (0.3, 0.5)}) == "tl"
    assert choose_mode({"none": (0.5, 0.5), "tl": (float("nan"), float("nan"))}) == "none"
    assert choose_mode({"tl": (0.3, 0.5), "full": (0.2, 0.5)}) == "full"
    assert choose_mode({}) is None
    assert ROBUST.choose == "agree" and ROBUST.choose_mode({"none": (0.5, 1.0), "tl": (0.05, 1.0)}) == "none"
    # the default is 'agree': Full beats the general model on validation, TL does not -> the general model
    assert ROBUST.choose_mode({"none": (0.5, 0.8), "tl": (0.3, 0.8), "full": (0.4, 0.81)}) == "none"
    with pytest.raises(ProcedureError) as e:
        choose_mode({"none": (0.5, 0.8)}, "best")
    assert str(e.value) == "mode choice rule must be one of strict, agree, score, got 'best'"
    # a NaN loss ranks below any loss at equal F1
    assert choose_mode({"none": (0.5, 0.8), "tl": (float("nan"), 0.9), "full": (0.3, 0.9)}, "score") == "full"


def test_choose_mode_agree_keeps_full_only_when_tl_beats_the_general_model_too():
    # Full beats the general model on validation, TL does not: 'strict' keeps Full, 'agree' the general model
    s = {"none": (0.9, 0.78), "tl": (0.3, 0.78), "full": (0.2, 1.0)}
    assert choose_mode(s, "strict") == "full" and choose_mode(s, "agree") == "none"
    # both beat it: the better of the two, as 'strict'
    s = {"none": (0.9, 0.78), "tl": (0.3, 0.8), "full": (0.2, 1.0)}
    assert choose_mode(s, "agree") == "full"
    s = {"none": (0.9, 0.78), "tl": (0.3, 0.9), "full": (0.2, 0.85)}
    assert choose_mode(s, "agree") == "tl"
    # only TL beats it: TL; Full alone (TL not run): Full judged by itself
    assert choose_mode({"none": (0.9, 0.78), "tl": (0.3, 0.9), "full": (0.2, 0.7)}, "agree") == "tl"
    assert choose_mode({"none": (0.9, 0.78), "full": (0.2, 0.9)}, "agree") == "full"
    assert choose_mode({"none": (0.9, 0.78), "full": (0.2, 0.78)}, "agree") == "none"


def test_choice_reason_names_what_decided():
    """``personalize`` logs why Auto kept a mode; under 'agree' the general model can be kept although Full beat
    it, and the reason must say so (it used to say "best")."""
    from app.core.procedure import choice_reason

    s = {"none": (0.9, 0.78), "tl": (0.3, 0.78), "full": (0.2, 1.0)}
    assert choice_reason(s, "agree", choose_mode(s, "agree")) == (
        "Full's validation macro-F1 1.000 beat the general model's 0.780 but TL's 0.780 did not, and Full is "
        "kept only when TL agrees (--choose agree)"
    )
    assert choice_reason(s, "strict", choose_mode(s, "strict")) == (
        "validation macro-F1 1.000 above the general model's 0.780"
    )
    s = {"none": (0.9, 0.9), "tl": (0.3, 0.85), "full": (0.2, 0.9)}
    for rule in ("agree", "strict"):
        assert choice_reason(s, rule, choose_mode(s, rule)) == (
            "no personalized mode beat the general model's validation macro-F1 0.900"
        )
    assert choice_reason(s, "score", choose_mode(s, "score")) == "best validation macro-F1, then loss"
    s = {"none": (0.9, 0.78), "tl": (0.3, 0.9), "full": (0.2, 0.85)}
    assert choice_reason(s, "agree", "tl") == "validation macro-F1 0.900 above the general model's 0.780"


def test_choose_mode_score_is_issue_17s_first_rule_f1_then_loss_then_the_cheaper_mode():
    assert choose_mode({"none": (0.5, 1.0), "tl": (0.05, 1.0), "full": (0.01, 1.0)}, "score") == "full"
    assert choose_mode({"none": (0.5, 0.8), "tl": (0.3, 0.9), "full": (0.2, 0.9)}, "score") == "full"
    assert choose_mode({"none": (0.5, 0.95), "tl": (0.3, 0.9), "full": (0.2, 0.9)}, "score") == "none"
    assert choose_mode({"none": (0.2, 0.9), "tl": (0.2, 0.9), "full": (0.2, 0.9)}, "score") == "none"
    assert choose_mode({"none": (0.5, float("nan")), "tl": (0.3, 0.5)}, "score") == "tl"
    assert Procedure(choose="score").choose_mode({"none": (0.5, 1.0), "tl": (0.05, 1.0)}) == "tl"


def test_procedure_validation_names_the_option():
    ROBUST.validate()
    PLAIN.validate()
    with pytest.raises(ProcedureError, match="--val-every"):
        Procedure(val_every=1).validate()
    with pytest.raises(ProcedureError, match="need validation"):
        Procedure(val_every=0, patience=3, restore_best=False).validate()
    with pytest.raises(ProcedureError, match="--clip-norm"):
        Procedure(clip_norm=float("nan")).validate()
    with pytest.raises(ProcedureError, match="--val-split"):
        Procedure(val_split="random").validate()
    with pytest.raises(ProcedureError, match="--choose"):
        Procedure(choose="loss").validate()
    # the host-side fields change nothing on the board: a plain procedure stays plain (a v1 request)
    assert Procedure(**{**PLAIN.to_dict(), "val_split": "interleaved", "choose": "score"}).is_plain
    assert "last 1/10 of each class" in ROBUST.label()
    # stored procedures: today's round reads back as itself; one stored before the host-side fields existed
    # (issue 17's first robust round) reads back as what it ran
    assert Procedure.from_dict(ROBUST.to_dict()) == ROBUST and Procedure.from_dict({}) == ROBUST
    old = {k: v for k, v in ROBUST.to_dict().items() if k not in ("val_split", "choose")}
    assert Procedure.from_dict(old) == Procedure(val_split="interleaved", choose="score")
    assert PLAIN.wire(0) == {
        "n_val": 0, "patience": 0, "restore_best": False, "select_f1": False,
        "feature_lr_scale": 1.0, "clip_norm": 0.0, "l2sp": 0.0,
    }  # fmt: skip
    assert not P.TrainStart(**_ts(PLAIN.wire(0))).extended


def _ts(wire: dict) -> dict:
    flags = (P.ValFlags.RESTORE_BEST if wire["restore_best"] else 0) | (
        P.ValFlags.SELECT_F1 if wire["select_f1"] else 0
    )
    return dict(
        n_val=wire["n_val"], patience=wire["patience"], val_flags=int(flags), feature_lr_scale=wire["feature_lr_scale"],
        clip_norm=wire["clip_norm"], l2sp=wire["l2sp"],
    )  # fmt: skip


# --- the wire --------------------------------------------------------------------------------------------
def test_train_start_is_28_bytes_unless_an_extension_field_is_set():
    v1 = P.TrainStart(P.TrainMode.FULL, 1, 2, 32, 2, 0.01, 0.01, 42, 0)
    assert len(v1.pack()) == 28
    v2 = P.TrainStart(P.TrainMode.FULL, 1, 2, 32, 2, 0.01, 0.01, 42, 0, **_ts(ROBUST.wire(12)))
    raw = v2.pack()
    assert len(raw) == 44 and raw[:28] == v1.pack()
    back = P.TrainStart.unpack(raw)
    assert (back.n_val, back.patience, back.val_flags, back.clip_norm) == (12, 0, 3, 5.0)
    with pytest.raises(P.ProtocolError, match="expected 28 or 44"):
        P.TrainStart.unpack(raw[:30])
    with pytest.raises(P.ProtocolError, match="extension field is out of range"):
        P.TrainStart(n_val=70000).pack()


# --- the emulated board: a protocol-v2 round, replayed on the engine ----------------------------------------
@pytest.fixture
def board():
    clock = SimClock(5000.0)
    emu = NucleoEmulator(clock)
    c = NucleoClient(DeviceTransport(emu, clock), timeout=2.0)
    c.hello()
    yield emu, c
    c.close()
    emu.wait_idle(5)


def test_emulator_robust_round_equals_the_engine_and_reports_every_pass(board):
    emu, c = board
    arch, w = model()
    x, y = data(90, noise=2.0)
    tr, va = validation_split(y, 10)
    order = np.concatenate([tr, va])
    c.upload_model(arch, w)
    c.upload_dataset(x[order], y[order])
    proc = Procedure(patience=2, clip_norm=0.5, feature_lr_scale=0.5)
    wire = proc.wire(len(va))
    info = c.train("full", epochs=6, batch=16, lr=0.05, warmup_epochs=1, seed=3, **wire)
    assert info.total_batches == 7 * -(-len(tr) // 16)
    res = c.wait_round_done(60)
    assert res.done.status == P.RoundStatus.DONE
    got = c.download_weights(arch)
    # the same round on the host engine (the board visits its epoch_order over the training windows)
    m = Model(arch, w)
    cfg = proc.train_config("full", 6, 1, 0.05, 16, 0)
    hist = train(m, x[tr], y[tr], cfg, x_val=x[va], y_val=y[va], order=lambda e, n: epoch_order(3, e, n))
    want = m.get_weights()
    for k in want:
        for a, b in zip(got[k], want[k]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=k)
    # one VAL_REPORT per pass, in order, the same losses; best_epoch as the engine's
    assert [v.epoch for v in res.vals] == list(range(len(hist.val_loss)))
    np.testing.assert_allclose([v.loss for v in res.vals], hist.val_loss, rtol=1e-6)
    assert res.done.best_epoch == hist.best_epoch
    assert sum(v.best for v in res.vals) >= 1 and res.vals[0].best == 1
    assert all(v.n == len(va) for v in res.vals)
    if hist.early_stopped:  # fewer batches than planned, and the board says how many epochs ran
        assert res.done.batches_done < info.total_batches
    assert res.done.epochs_done == len(hist.val_loss) - 1
    # the passes take board time of their own: between the batches, in order
    spans = sorted([(b.start_tick, b.end_tick) for b in res.batches] + [(v.start_tick, v.end_tick) for v in res.vals])
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_emulator_refuses_bad_extension_fields_and_accounts_the_extra_memory(board):
    emu, c = board
    arch, w = model()
    x, y = data(40)
    c.upload_model(arch, w)
    c.upload_dataset(x, y)
    from device.nucleo.client import NucleoError

    with pytest.raises(NucleoError, match="n_val 40 leaves no training window"):
        c.train("full", epochs=1, n_val=40)
    with pytest.raises(NucleoError, match="need validation windows"):
        c.train("full", epochs=1, patience=2)
    with pytest.raises(NucleoError, match="clip_norm"):
        c.train("full", epochs=1, clip_norm=-1.0)
    plain = c.train("full", epochs=1, warmup_epochs=1)
    c.wait_round_done(30)
    robust = c.train("full", epochs=1, warmup_epochs=1, n_val=5, restore_best=True, select_f1=True)
    c.wait_round_done(30)
    extra = robust_round_bytes(arch, "full", True, validate=True, restore_best=True)
    # a copy of every parameter (Full trains them all) + 5 x 5 u16 confusion counts, each 8-byte aligned
    assert robust.mem_bytes - plain.mem_bytes == extra == (4 * arch.params + 7) // 8 * 8 + 56
    assert trained_values(arch, frozenset(l.name for l in arch.layers if l.has_params)) == arch.params
    assert training_memory(arch, "full").paper_bytes + extra == robust.mem_bytes


def test_a_v1_board_gets_no_extension_request(board):
    """The client never sends the 44-byte request to a board that agreed on v1 (ODL firmware before 1.1.0): it
    says why instead, before anything reaches the wire."""

    emu, c = board
    c.hello_info = c.request(P.Hello(P.MAGIC, 1, 1), P.HelloRsp)  # the board now speaks v1 with us
    assert c.proto == 1 and not c.supports_robust
    with pytest.raises(ValueError, match="protocol v1: robust rounds"):
        c.train("full", epochs=1, n_val=4)


def test_the_recommender_costs_the_robust_round():
    """The app recommends robust rounds: every 10th window validates instead of training, a forward pass over
    them before the round and after every epoch, and the board's extra RAM."""
    from estimator.core import estimate, time_per_sample_s

    kw = dict(n_windows=300, input_sizes=(20,), modes=("full",), epochs=(5,), power_source="charging")
    plain, rob = recommend_rows(**kw), recommend_rows(robust=True, **kw)
    a = paper_cnn(20)
    t_fwd = time_per_sample_s(a, frozenset(), "paper")
    est = estimate(a, "full", 32, "paper", n_windows=270)
    assert rob["n_val"] == 30 and plain["n_val"] == 0
    assert rob["time_per_round_s"] == pytest.approx(5 * est.time_per_epoch_s + 6 * 30 * t_fwd, rel=1e-9)
    assert rob["energy_per_round_mj"] == pytest.approx(rob["time_per_round_s"] * est.power_w * 1e3, rel=1e-9)
    extra = robust_round_bytes(a, "full", validate=True, restore_best=True) / 1024
    assert rob["ram_needed_kib"] - plain["ram_needed_kib"] == pytest.approx(extra)
    assert rob["robust_extra_kib"] == pytest.approx(extra) and plain["robust_extra_kib"] == 0
    assert rob["memory_firmware_kib"] == plain["memory_firmware_kib"]  # the Table III figure stays the paper's


def recommend_rows(**kw) -> dict:
    from estimator.recommend import recommend

    return recommend(**kw).table[0]
