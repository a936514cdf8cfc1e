"""Estimator: Table III reproduction, op-count definitions, ST model-zoo figures, profiles,
calibration (incl. a held-out check) and the recommender."""

from __future__ import annotations

import json
import math

import pytest

from estimator import (
    BatchRecord,
    DeviceProfile,
    MeasuredAccuracy,
    ProfileError,
    calibrate,
    count_ops,
    estimate,
    evaluate,
    get_profile,
    inference_stats,
    inference_time_s,
    load_profile,
    recommend,
    save_profile,
    time_per_batch_s,
    time_per_sample_s,
    training_memory,
)
from estimator.arch import OP_TYPES, Arch, Layer, paper_cnn
from estimator.calibrate import CalibrationError, nnls

SIZES = (20, 40, 60, 80, 100)
# Table III of the paper: memory (KB = KiB, estimated), time per batch of 32 (s, measured), power (mW).
TABLE_III = {
    "tl": {
        "memory": (63, 79, 91, 102, 115),
        "time": (2.33, 5.31, 8.29, 11.27, 14.25),
        "power": (2.65, 2.64, 2.66, 2.68, 2.67),
    },
    "full": {
        "memory": (98, 122, 131, 165, 189),
        "time": (7.90, 17.95, 28.00, 38.05, 48.10),
        "power": (2.65, 2.67, 2.68, 2.69, 2.68),
    },
}
MISPRINT = ("full", 60)  # table3-analysis §1.2: every linear model predicts ~144 KB, not 131
CELLS = [(m, T, i) for m in ("tl", "full") for i, T in enumerate(SIZES)]


def ign(wl: int = 24) -> Arch:
    """ST model zoo IGN (st-modelzoo-har.md §1.2)."""
    return Arch(
        (wl, 3, 1),
        (
            Layer("conv2d", "conv", filters=24, kernel=16),
            Layer("relu", "act"),
            Layer("maxpool2d", "pool", pool=3),
            Layer("flatten", "flat"),
            Layer("dense", "d1", units=12),
            Layer("dropout", "drop", rate=0.5),
            Layer("dense", "d2", units=4),
            Layer("softmax", "sm"),
        ),
        name=f"ign_wl_{wl}",
    )


def gmp(wl: int = 24) -> Arch:
    """ST model zoo GMP (st-modelzoo-har.md §1.3)."""
    return Arch(
        (wl, 3, 1),
        (
            Layer("batchnorm", "bn0"),
            Layer("conv2d", "c1", filters=16, kernel=5),
            Layer("batchnorm", "bn1"),
            Layer("conv2d", "c2", filters=16, kernel=5),
            Layer("gmp2d", "gmax"),
            Layer("dropout", "drop", rate=0.5),
            Layer("dense", "d", units=4),
            Layer("softmax", "sm"),
        ),
        name=f"gmp_wl_{wl}",
    )


# --- Table III --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,T,i", CELLS)
def test_table3_memory_within_3kib_except_the_misprint(mode, T, i):
    est = estimate(paper_cnn(T), mode, 32, "paper")
    observed = TABLE_III[mode]["memory"][i]
    if (mode, T) == MISPRINT:
        # Reported, not fitted: the model says ~144 KiB, the paper prints 131 (a misprint per the analysis).
        assert 140 < est.memory_kib < 148
        assert est.memory_kib - observed > 10
    else:
        assert abs(est.memory_kib - observed) <= 3.0, f"{mode} T={T}: {est.memory_kib:.2f} KiB vs {observed}"


@pytest.mark.parametrize("mode,T,i", CELLS)
def test_table3_time_as_fitted_and_energy_is_265mw_times_time(mode, T, i):
    # The `paper` preset is fitted to these ten cells: its worst time residual is 0.0027 % (tl, T=100),
    # so 0.005 % is the bound (prediction on held-out cells is tested separately, two-cell fit below).
    # The preset's power is one constant (2.6505 mW) where the paper prints 2.64-2.69 mW per cell (worst
    # 1.47 %), so energy = 2.65 mW x time to 0.021 %.
    est = estimate(paper_cnn(T), mode, 32, "paper")
    measured = TABLE_III[mode]["time"][i]
    assert est.time_per_batch_s == pytest.approx(measured, rel=5e-5)
    # the emulated board times its batches with time_per_batch_s: the same figure as estimate()
    assert time_per_batch_s(paper_cnn(T), mode, 32, "paper") == pytest.approx(est.time_per_batch_s, rel=1e-12)
    assert est.power_w * 1e3 == pytest.approx(TABLE_III[mode]["power"][i], rel=0.016)
    assert est.energy_per_batch_j == pytest.approx(2.65e-3 * measured, rel=2.5e-4)


def test_paper_geometry_params_and_closed_form_macs():
    for T in SIZES:
        a = paper_cnn(T)
        assert a.params == 10084
        tl, full = count_ops(a, "tl"), count_ops(a, "full")
        assert sum(tl.forward[k] for k in OP_TYPES if k != "elementwise") == 3360 * T - 15508
        assert tl.macs_per_sample == 3360 * T - 11708
        assert full.macs_per_sample == 9792 * T - 33660
        est = estimate(a, "tl")
        assert est.trainable_params == 3556 and estimate(a, "full").trainable_params == 10084


def test_backward_stops_at_first_trained_layer():
    a = paper_cnn(20)
    tl = count_ops(a, "tl")
    # TL: only the Dense part runs backward; dense1 (first trained) computes no input gradient.
    assert tl.backward["conv_dw"] == tl.backward["conv_dx"] == 0
    assert tl.backward["dense_dw"] == 50 * 64 + 6 * 50
    assert tl.backward["dense_dx"] == 6 * 50
    full = count_ops(a, "full")
    # Full: conv1's input gradient is not computed, conv2's is (full correlation over L_in = P1 = 9).
    assert full.backward["conv_dx"] == 9 * 64 * 3 * 32
    assert full.backward["conv_dw"] == full.forward["conv_fwd"]
    # A frozen conv between trained layers still propagates the error but computes no weight gradient.
    mixed = count_ops(a, ["conv1", "dense2"])
    assert mixed.backward["conv_dw"] == 18 * 32 * 3 * 3
    assert mixed.backward["conv_dx"] == full.backward["conv_dx"]
    assert mixed.backward["dense_dw"] == 6 * 50
    assert mixed.update["elementwise"] == 320 + 306
    none = count_ops(a, "none")
    assert all(v == 0 for v in none.backward.values()) and none.update["elementwise"] == 0
    assert count_ops(a, "full").per_batch(32)["conv_fwd"] == 32 * full.forward["conv_fwd"]


@pytest.fixture(autouse=True)
def fresh_memory_model():
    """Each test computes its memory figures (the model's results are cached per architecture)."""
    from estimator import memory

    memory._memory_cached.cache_clear()


@pytest.mark.parametrize("mode", ["tl", "full", "none"])
def test_memory_breakdowns_add_up_and_are_reported_as_such(mode):
    from estimator.memory import training_memory

    m = training_memory(paper_cnn(20), mode)
    paper = {
        "parameters": m.params_bytes,
        "gradients": m.gradients_bytes,
        "input_window": m.input_bytes,
        "layer_outputs": m.activations_bytes,
        "errors": m.errors_bytes,
    }
    peak = {"parameters": m.params_bytes, "gradients": m.gradients_bytes, "live_buffers_peak": m.peak_buffers_bytes}
    assert sum(paper.values()) == m.paper_bytes and sum(peak.values()) == m.peak_bytes
    assert m.params_bytes == 10084 * 4 and m.input_bytes == 20 * 3 * 4
    assert m.gradients_bytes == {"tl": 3556, "full": 10084, "none": 0}[mode] * 4
    assert m.to_dict() == {
        "paper_bytes": m.paper_bytes,
        "paper_kib": m.paper_bytes / 1024,
        "peak_bytes": m.peak_bytes,
        "peak_kib": m.peak_bytes / 1024,
        "firmware_bytes": m.firmware_bytes,
        "firmware_kib": m.firmware_bytes / 1024,
        "paper_breakdown_bytes": paper,
        "peak_breakdown_bytes": peak,
    }


@pytest.mark.parametrize(
    "trainable, paper, peak",
    [
        # params 23 (4x3+3, 3x2+2); input 4; layer outputs 3+3+2+2 = 10 values (float32 = 4 bytes)
        # full: 23 gradients, errors of d1 and d2 (relu/softmax in place) = 3+2: (23+23+4+10+5) x 4 = 260.
        # peak: forward keeps x (d1 trains), the relu output (relu, d2 read it), softmax output: 4+3+2 = 9;
        # backward at d2: + its output error 2 and the input error 3 it writes = 14 - 2 (softmax's buffer
        # freed) = 12 values -> (23+23+12) x 4 = 232
        ("full", 260, 232),
        # d2 only: 8 gradients, error of d2: (23+8+4+10+2) x 4 = 188; peak: x is freed after d1 (not
        # trained): relu out 3 + softmax out 2 + the error 2 = 7 -> (23+8+7) x 4 = 152
        (["d2"], 188, 152),
        # inference only: (23+4+10) x 4 = 148; peak = x + d1's output = 7 -> (23+7) x 4 = 120
        ("none", 148, 120),
    ],
)
def test_memory_model_by_hand_on_a_small_dense_net(trainable, paper, peak):
    from estimator.memory import training_memory

    a = Arch(
        (4,), (Layer("dense", "d1", units=3), Layer("relu", "r"), Layer("dense", "d2", units=2), Layer("softmax", "s"))
    )
    m = training_memory(a, trainable)
    assert (m.paper_bytes, m.peak_bytes) == (paper, peak)


@pytest.mark.parametrize(
    "trainable, paper, peak",
    [
        # x (6, 1) -> c1 conv1d 2x3 (4, 2) -> relu -> c2 conv1d 1x2 (3, 1) -> flatten -> d dense 2 -> softmax.
        # params 8 + 5 + 8 = 21; outputs 8+8+3+3+2+2 = 26.  full: errors c1 8, c2 3 plus its zero-padded copy
        # (3 + 2x(2-1)) x 1 = 5, d 2 -> 18: (21+21+6+26+18) x 4 = 368.  Peak: x, c1 out, c2 out, d out all
        # saved (19); at c2's backward the live 14 (x, c1 out) + its output error 3 + input error 8 + padded
        # copy 5 = 30 -> (21+21+30) x 4 = 288
        ("full", 368, 288),
        # c2 and d: 13 gradients; errors c2 3 (no padded copy: the first trained layer computes no input
        # error) + d 2: (21+13+6+26+5) x 4 = 284.  Peak: x freed after c1; at d's backward 11 saved + 2 + 3
        # = 16 -> (21+13+16) x 4 = 200
        (["c2", "d"], 284, 200),
    ],
)
def test_memory_model_by_hand_on_a_small_conv_net(trainable, paper, peak):
    from estimator.memory import training_memory

    layers = (
        Layer("conv1d", "c1", filters=2, kernel=3),
        Layer("relu", "r"),
        Layer("conv1d", "c2", filters=1, kernel=2),
        Layer("flatten", "f"),
        Layer("dense", "d", units=2),
        Layer("softmax", "s"),
    )
    m = training_memory(Arch((6, 1), layers), trainable)
    assert (m.paper_bytes, m.peak_bytes) == (paper, peak)


def _conv_net_k3() -> Arch:
    """x (10, 1) -> c1 conv1d 4x3 (8, 4) -> relu -> c2 conv1d 2x3 (6, 2) -> flatten -> d dense 2 -> softmax.
    params c1 3x1x4+4 = 16, c2 3x4x2+2 = 26, d 12x2+2 = 26: 68; outputs 32+32+12+12+2+2 = 92; buffers (in-place
    layers alias the one before): x 10, c1's 32 (relu), c2's 12 (flatten), d's 2 (softmax)."""
    layers = (
        Layer("conv1d", "c1", filters=4, kernel=3),
        Layer("relu", "r"),
        Layer("conv1d", "c2", filters=2, kernel=3),
        Layer("flatten", "f"),
        Layer("dense", "d", units=2),
        Layer("softmax", "s"),
    )
    return Arch((10, 1), layers)


@pytest.mark.parametrize(
    "trainable, paper, peak",
    [
        # d only: 26 gradients, errors d 2: (68+26+10+92+2) x 4 = 792.  Forward: x + c1's 32 = 42 (x freed: c1
        # is frozen), then c1's + c2's 12 = 44 (relu aliases c1's buffer: a copy would make it 64) and c1's
        # freed (relu is below the first trained layer, so nothing saves it); backward at softmax 14 + 2 = 16.
        # Peak 44 -> (68+26+44) x 4 = 552
        (["d"], 792, 552),
        # full: errors c1 32, c2 12 plus its zero-padded copy (6 + 2x(3-1)) x 2 = 20, d 2 -> 66:
        # (68+68+10+92+66) x 4 = 1216.  Every buffer saved (56).  Backward: softmax 56+2, then d 54 + 2 + 12, then
        # at c2 42 (x, c1's) + its output error 12 + input error 32 + padded copy 20 = 106 -> (68+68+106) x 4 = 968
        ("full", 1216, 968),
        # c1 and d with c2 frozen between them: c2 still passes the error down (same errors as full),
        # 42 gradients: (68+42+10+92+66) x 4 = 1112.  c1's buffer is kept for relu's backward (its output
        # mask) although frozen c2 does not read it: the same peak 106 at c2 -> (68+42+106) x 4 = 864
        (["c1", "d"], 1112, 864),
    ],
)
def test_memory_model_by_hand_on_a_conv_net_with_kernel_3_and_two_filters(trainable, paper, peak):
    from estimator.memory import training_memory

    m = training_memory(_conv_net_k3(), trainable)
    assert (m.paper_bytes, m.peak_bytes) == (paper, peak)


def test_memory_model_by_hand_on_nets_where_the_first_or_last_backward_step_decides():
    from estimator.memory import training_memory

    # x (4,) -> d1 3 -> relu -> d2 2, no softmax: the backward starts from d2's own output error (2 values).
    # full: params 15 + 8 = 23, outputs 3+3+2, errors d1 3 + d2 2: (23+23+4+8+5) x 4 = 252.  d2's output is
    # saved by nobody: freed before the backward; at d2 x 4 + d1's 3 + error 2 + input error 3 = 12 -> 232
    a = Arch((4,), (Layer("dense", "d1", units=3), Layer("relu", "r"), Layer("dense", "d2", units=2)))
    m = training_memory(a, "full")
    assert (m.paper_bytes, m.peak_bytes) == (252, 232)
    # x (4,) -> d1 6 -> relu -> d2 5 -> softmax, d2 only: params 30 + 35 = 65, 35 gradients, outputs
    # 6+6+5+5 = 22, errors d2 5: (65+35+4+22+5) x 4 = 524.  Forward peak x + d1's = 10, then d1's + d2's = 11;
    # the softmax step just above the first trained layer: 11 + its error 5 = 16 -> (65+35+16) x 4 = 464
    b = Arch(
        (4,), (Layer("dense", "d1", units=6), Layer("relu", "r"), Layer("dense", "d2", units=5), Layer("softmax", "s"))
    )
    m = training_memory(b, ["d2"])
    assert (m.paper_bytes, m.peak_bytes) == (524, 464)


def test_memory_model_batchnorm_passes_the_error_in_place():
    """x (10, 1) -> c conv1d 4x3 (8, 4) -> bn -> relu -> flatten -> d dense 2 -> softmax, full: BatchNorm writes
    its input error over its output error (the buffers the peak counts: x 10 and c's 32, saved; d's 2 until the
    softmax step): at d 42 + 2 + its input error 32 = 76; at bn 42 + 32 (a separate input error: 106)."""
    from estimator.memory import training_memory

    layers = (
        Layer("conv1d", "c", filters=4, kernel=3),
        Layer("batchnorm", "bn"),
        Layer("relu", "r"),
        Layer("flatten", "f"),
        Layer("dense", "d", units=2),
        Layer("softmax", "s"),
    )
    m = training_memory(Arch((10, 1), layers), "full")
    # the paper's errors: c 32, bn 32 (not in place there), d 2
    assert (m.peak_buffers_bytes, m.errors_bytes) == (76 * 4, 66 * 4)


def test_memory_reports_the_firmware_arena_as_model_blob_plus_plan():
    from estimator.memory import firmware_plan_bytes, model_blob_bytes, training_memory

    a = _conv_net_k3()
    # descriptor 16 + 6 layers x 32 = 208 (8-aligned), + 68 float32 = 480
    assert model_blob_bytes(a) == 480
    for names in (["d"], ["c1", "c2", "d"], []):
        plan = firmware_plan_bytes(a, frozenset(names))
        assert plan > 0
        assert training_memory(a, names or "none").firmware_bytes == 480 + plan


def test_robust_round_buffers_by_hand():
    """What a robust round holds besides a plain one (estimator.memory.robust_round_bytes), worked by hand on
    x (6, 2) -> c conv1d 2x3 without bias -> bn -> relu -> flatten -> d dense 3 -> softmax: SGD updates c's
    kernel 3x2x2 = 12 + the bias it trains for the BatchNorm it folds 2 = 14, bn's gamma and beta 4, d's
    24 + 3 = 27.  Best weights (every value the round's phases train) and the L2-SP anchor (the main phase's)
    in float32, the validation confusion counts 3 x 3 u16 = 18 bytes; each buffer 8-byte aligned."""
    from estimator.memory import robust_round_bytes, trained_values, training_memory

    def net(*mid: Layer, bias: bool = False, head: bool = True) -> Arch:
        c = Layer("conv1d", "c", filters=2, kernel=3, use_bias=bias)
        tail = (Layer("flatten", "f"), Layer("dense", "d", units=3), Layer("softmax", "s")) if head else ()
        return Arch((6, 2), (c, *mid, *tail))

    bn, relu = Layer("batchnorm", "bn"), Layer("relu", "r")
    a = net(bn, relu)
    assert [trained_values(a, frozenset(n)) for n in (["d"], ["c"], ["bn"], ["c", "bn", "d"], [])] == [27, 14, 4, 45, 0]
    assert trained_values(net(bn, relu, bias=True), frozenset(["c"])) == 14  # its own bias: nothing folded in
    assert trained_values(net(relu, bn), frozenset(["c"])) == 12  # no BatchNorm right after it
    assert trained_values(net(bn, head=False), frozenset(["c"])) == 14  # a BatchNorm as the last layer
    assert trained_values(net(head=False), frozenset(["c"])) == 12  # the conv is the last layer
    # warm-up trains d too: best 45 x 4 = 180 -> 184, anchor (c, bn) 18 x 4 = 72, counts 18 -> 24
    assert robust_round_bytes(a, ["c", "bn"], True, l2sp=True) == 184 + 72 + 24
    assert robust_round_bytes(a, ["c", "bn"], l2sp=True) == 72 + 72 + 24  # no warm-up by default
    assert robust_round_bytes(a, ["d"]) == 112 + 24  # 27 x 4 = 108 -> 112; no anchor by default
    assert robust_round_bytes(a, "full") == 184 + 24
    assert robust_round_bytes(a, "full", restore_best=False) == 24
    assert robust_round_bytes(a, "full", validate=False) == 184
    assert robust_round_bytes(a, "full", validate=False, restore_best=False) == 0
    assert training_memory(a) == training_memory(a, "tl")  # the default is the paper's transfer learning


def test_peak_model_saves_what_each_backward_reads():
    """The liveness rules of docs/estimator.md: a trained conv/dense/batchnorm keeps its input (weight or
    gamma gradients), max pools keep theirs (argmax routing), relu and softmax keep their output."""
    from estimator.memory import _needs_saved_input, _needs_saved_output

    kinds = ("conv1d", "conv2d", "dense", "batchnorm", "maxpool1d", "maxpool2d", "gmp1d", "gmp2d", "avgpool1d")
    kinds += ("avgpool2d", "gap1d", "gap2d", "relu", "softmax", "dropout", "flatten")
    for kind in kinds:
        weighted = kind in ("conv1d", "conv2d", "dense", "batchnorm")
        argmax = kind in ("maxpool1d", "maxpool2d", "gmp1d", "gmp2d")
        assert _needs_saved_input(kind, True) == (weighted or argmax), kind
        assert _needs_saved_input(kind, False) == argmax, kind
        assert _needs_saved_output(kind) == (kind in ("relu", "softmax")), kind


def test_estimate_defaults_limits_and_echoed_inputs():
    a = paper_cnn(20)
    d = estimate(a)
    assert d.to_dict() == estimate(a, "tl", 32, "paper", epochs=1, clock_hz=None).to_dict()
    assert (d.arch_name, d.batch_size, d.epochs, d.clock_hz, d.n_windows) == (a.name, 32, 1, 8e6, None)  # paper: 8 MHz
    assert d.batches_per_epoch is None and d.time_per_epoch_s is None and d.time_per_round_s is None
    assert d.notes == ("memory is the paper's *estimated* accounting; Table III's time and power are measurements",)
    assert estimate(a, dataset_in_ram=True).notes[1] == "dataset_in_ram ignored: n_windows not given"
    # the smallest valid values are accepted (batch of 1, one window, a 1 Hz clock)
    one = estimate(a, "tl", 1, n_windows=1, clock_hz=1.0)
    assert one.batches_per_epoch == 1 and one.time_per_batch_s == pytest.approx(
        time_per_batch_s(a, "tl", 1, "paper", 1.0)
    )
    assert estimate(a, clock_hz=0.5).clock_hz == 0.5
    # the echoed figures themselves (not only equal between two calls)
    assert (d.input_size, d.profile, d.mode, d.trainable) == (20, "paper", "tl", ("dense1", "dense2"))
    assert d.trainable_params == 3556 and estimate(a, "none").trainable_params == 0
    assert estimate(a, clock_hz=80e6).power_w == get_profile("paper").power_w(80e6)  # at the clock asked for
    # the mode as asked: on an all-dense net "tl" trains every layer, yet it is still called "tl"
    b = Arch((4,), (Layer("dense", "d1", units=3), Layer("dense", "d2", units=2), Layer("softmax", "s")))
    assert (estimate(b, "tl").mode, estimate(b, "full").mode, estimate(b, ["d1", "d2"]).mode) == ("tl", "full", "full")
    assert estimate(a, n_windows=64).n_windows == 64 and estimate(a, n_windows=64).batches_per_epoch == 2
    g = gmp(24)  # batch normalisation: its moving statistics are parameters but not trained
    full = estimate(g, "full")
    assert full.trainable_params == g.param_count(set(g.param_shapes()), trainable_only=True) < full.params
    assert time_per_batch_s(a, "tl", 1, "paper") > 0
    for kw, msg in (
        (dict(batch_size=0), "batch_size must be >= 1, got 0"),
        (dict(n_windows=0), "n_windows must be >= 1, got 0"),
        (dict(clock_hz=0.0), "clock_hz must be > 0, got 0.0"),
        (dict(clock_hz=float("inf")), "clock_hz must be > 0, got inf"),
    ):
        with pytest.raises(ValueError) as exc:
            estimate(a, **kw)
        assert str(exc.value) == msg
    with pytest.raises(ValueError) as exc:
        time_per_batch_s(a, "tl", 0, "paper")
    assert str(exc.value) == "batch_size must be >= 1, got 0"


def test_peak_accounting_is_below_paper_sum_and_lists_excluded_items():
    for T in SIZES:
        for mode in ("tl", "full"):
            mem = training_memory(paper_cnn(T), mode)
            floor = mem.params_bytes + mem.gradients_bytes
            assert floor < mem.peak_bytes < mem.paper_bytes
    est = estimate(paper_cnn(100), "full", 32, "paper", n_windows=100, dataset_in_ram=True)
    ex = est.memory.excluded_bytes
    assert ex["local_dataset"] == 100 * 300 * 4  # 117 KiB, table3-analysis §1.2
    assert {"stack", "protocol_buffers", "code_flash", "firmware_static"} <= set(ex)
    assert (
        est.memory.ram_needed_bytes
        == est.memory.training.paper_bytes + est.memory.firmware_reserve_bytes + ex["local_dataset"]
    )
    assert not est.memory.fits_ram  # 189.6 + 24 + 117 KiB > 320 KiB
    assert estimate(paper_cnn(100), "full", 32, "paper", n_windows=100).memory.fits_ram


# --- ST model zoo (inference figures) ---------------------------------------------------------------


def test_st_models_params_and_published_weights():
    assert ign(24).params == 3064 and ign(48).params == 9976
    assert gmp(24).params == 1528 and gmp(24).param_count(gmp(24).trainable("full"), trainable_only=True) == 1494
    # Weights flash as ST reports them (st-modelzoo-har.md §1.2, §1.3): 11.97, 38.97, 5.70 KiB.
    assert inference_stats(ign(24)).weights_bytes / 1024 == pytest.approx(11.97, abs=0.005)
    assert inference_stats(ign(48)).weights_bytes / 1024 == pytest.approx(38.97, abs=0.005)
    g = inference_stats(gmp(24))
    assert g.weights_bytes / 1024 == pytest.approx(5.70, abs=0.005)
    assert set(g.folded_batchnorms) == {"bn0", "bn1"}


def test_st_ign_inference_macc_and_activation_peak_by_hand():
    s = inference_stats(ign(24))
    conv = 9 * 3 * 24 * 16  # L_out·W·F·K·C
    dense = 216 * 12 + 12 * 4
    elementwise = 648 + 648 + 216 * 3 + 12 + 4 + 4  # bias, relu, maxpool reads, dense biases, softmax
    assert s.macs == conv + dense
    assert s.macc == conv + dense + elementwise
    assert s.activation_peak_bytes == (648 + 216) * 4  # maxpool in + out is the widest point


def test_st_models_train_estimates_are_consistent():
    for a in (ign(24), ign(48), gmp(24), gmp(48)):
        tl, full = estimate(a, "tl"), estimate(a, "full")
        assert tl.time_per_batch_s < full.time_per_batch_s
        assert tl.memory_kib < full.memory_kib
        assert full.memory.training.gradients_bytes == 4 * a.param_count(a.trainable("full"), trainable_only=True)


# --- profiles ---------------------------------------------------------------------------------------


def test_presets_documented_and_power_model():
    for name in ("paper", "odl-firmware", "l496-80mhz", "l496-80mhz-optimized"):
        p = get_profile(name)
        assert p.source and p.description and p.ram_bytes == 320 * 1024
    paper = get_profile("paper")
    assert paper.power_w() * 1e3 == pytest.approx(2.65, rel=0.005)
    assert 24e-3 < get_profile("l496-80mhz").power_w() < 29e-3  # table3-analysis §0: 24–29 mW at 80 MHz
    assert paper.current_a(80e6) == pytest.approx(get_profile("l496-80mhz").current_a())
    # Optimized kernels at 80 MHz are 12–64x faster than the paper (table3-analysis §0).
    a = paper_cnn(100)
    ratio = time_per_batch_s(a, "full", 32, "paper") / time_per_batch_s(a, "full", 32, "l496-80mhz-optimized")
    assert 12 < ratio < 64


def test_odl_firmware_preset_is_the_fit_of_the_firmwares_measured_batches():
    """The preset is what ``calibrate`` makes of the firmware's 10 measured batches (benchmarks/firmware_cycles.py),
    to 4 decimals, and predicts each of them within 8.5 %; the firmware is 3.6-4.2x faster than the paper."""
    from estimator.calibrate import BatchRecord, calibrate, evaluate
    from estimator.profiles import ODL_FIRMWARE_CYCLES

    recs = [
        BatchRecord(paper_cnn(T), mode, 32, seconds=c / 8e6, clock_hz=8e6)
        for (T, mode), c in ODL_FIRMWARE_CYCLES.items()
    ]
    fit, _ = calibrate(recs, base="paper", groups="fwd-bwd-dense", fit_power=False)
    odl = get_profile("odl-firmware")
    assert {k: round(v, 4) for k, v in fit.cycles.items()} == odl.cycles
    assert (odl.clock_hz, odl.power_w(), odl.ram_bytes) == (8e6, get_profile("paper").power_w(), 320 * 1024)
    errors = [abs(r["predicted_s"] / r["measured_s"] - 1) for r in evaluate(odl, recs)[0]]
    assert max(errors) < 0.085 and len(errors) == 10
    for (T, mode), c in ODL_FIRMWARE_CYCLES.items():
        assert 3.6 < time_per_batch_s(paper_cnn(T), mode, 32, "paper") * 8e6 / c < 4.2


def test_profile_json_roundtrip_and_bad_files(tmp_path):
    p = get_profile("l496-80mhz")
    path = save_profile(p, tmp_path, "board-0042")
    assert path.name == "board-0042.json"
    assert load_profile(path) == p
    assert get_profile("board-0042", tmp_path) == p
    with pytest.raises(ProfileError, match="shadow a preset"):
        save_profile(p, tmp_path, "paper")
    with pytest.raises(ProfileError, match="not a safe file name"):
        save_profile(p, tmp_path, "../evil")
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "name": "x",\n', encoding="utf-8")
    with pytest.raises(ProfileError, match=r"bad\.json: not valid JSON \(line"):
        load_profile(bad)
    d = p.to_dict()
    d["cycles"]["conv_fwd"] = -1
    with pytest.raises(ProfileError, match="cycles must be finite and >= 0"):
        DeviceProfile.from_dict(d)
    d = p.to_dict()
    d["turbo"] = True
    with pytest.raises(ProfileError, match="unknown fields"):
        DeviceProfile.from_dict(d)
    with pytest.raises(ProfileError, match="unknown device profile"):
        get_profile("nope", tmp_path)


def test_bad_estimate_arguments_are_named():
    a = paper_cnn(20)
    with pytest.raises(ValueError, match="batch_size"):
        estimate(a, "tl", 0)
    with pytest.raises(ValueError, match="epochs"):
        estimate(a, "tl", epochs=0)
    with pytest.raises(ValueError, match="conv9"):
        estimate(a, ["conv9"])


def test_round_time_and_energy_with_partial_last_batch():
    a = paper_cnn(40)
    est = estimate(a, "tl", 32, "l496-80mhz", n_windows=70, epochs=3)
    assert est.batches_per_epoch == 3
    upd = est.time_per_batch_s - 32 * est.time_per_sample_s
    assert upd > 0
    assert est.time_per_epoch_s == pytest.approx(70 * est.time_per_sample_s + 3 * upd)
    assert est.time_per_round_s == pytest.approx(3 * est.time_per_epoch_s)
    assert est.energy_per_round_j == pytest.approx(est.power_w * est.time_per_round_s)
    json.dumps(est.to_dict())  # JSON-able


# --- calibration --------------------------------------------------------------------------------------


def _table3_records(clock_hz: float | None = 8e6) -> list[BatchRecord]:
    return [
        BatchRecord(
            paper_cnn(T),
            m,
            32,
            TABLE_III[m]["time"][i],
            clock_hz=clock_hz,
            avg_power_w=TABLE_III[m]["power"][i] * 1e-3,
            label=f"{m} T={T}",
        )
        for m, T, i in CELLS
    ]


def test_calibration_on_all_ten_cells_recovers_the_paper_preset():
    # Start from the generic 80 MHz library profile: nothing of Table III in it.
    prof, rep = calibrate(_table3_records(), "l496-80mhz", name="nucleo-paper")
    assert rep.grouping == "paper4"
    assert rep.time_max_abs_rel < 1e-6
    paper = get_profile("paper")
    for op in ("conv_fwd", "conv_dw", "conv_dx", "dense_fwd"):
        # same per-op costs as the preset, up to the elementwise work the base profile charges separately
        assert prof.cycles[op] == pytest.approx(paper.cycles[op], rel=0.25)
    # Power from one clock: I0 kept, k fitted; predicts the 2.64–2.69 mW cells within 1.5 %.
    assert rep.power_rms_rel < 0.015
    assert prof.power_w(8e6) * 1e3 == pytest.approx(2.67, abs=0.02)


def test_held_out_two_cells_predict_the_other_eight():
    """Calibrate from two cells only (TL T=20 and Full T=100), check the other eight."""
    recs = _table3_records()
    train = [r for r in recs if r.label in ("tl T=20", "full T=100")]
    held = [r for r in recs if r not in train]
    prof, rep = calibrate(train, "l496-80mhz")
    assert rep.grouping == "fwd-bwd"  # the only 2-cost split both cells can identify
    rows, _ = evaluate(prof, held)
    errs = [abs(r["rel_error"]) for r in rows]
    assert len(errs) == 8
    assert max(errs) < 0.08, errs  # measured: 0.3–6.5 %
    assert math.sqrt(sum(e * e for e in errs) / 8) < 0.05
    # The reverse pair (Full T=20, TL T=100) generalizes as well.
    train2 = [r for r in recs if r.label in ("full T=20", "tl T=100")]
    prof2, _ = calibrate(train2, "l496-80mhz")
    rows2, _ = evaluate(prof2, [r for r in recs if r not in train2])
    assert max(abs(r["rel_error"]) for r in rows2) < 0.08


def test_calibration_with_two_clocks_fits_i0_and_k():
    a = paper_cnn(20)
    base = get_profile("paper")
    recs = []
    for f in (8e6, 16e6, 48e6):
        t = time_per_batch_s(a, "tl", 32, base, f)
        recs.append(BatchRecord(a, "tl", 32, t, clock_hz=f, energy_j=3.3 * (50e-6 + 100e-12 * f) * t))
    prof, rep = calibrate(recs, base)
    assert prof.i0_a == pytest.approx(50e-6, rel=1e-6)
    assert prof.k_a_per_hz == pytest.approx(100e-12, rel=1e-6)
    assert rep.power_rms_rel < 1e-9 and rep.time_max_abs_rel < 1e-9


def test_calibration_rejects_bad_records():
    a = paper_cnn(20)
    with pytest.raises(CalibrationError, match="no records"):
        calibrate([])
    with pytest.raises(CalibrationError, match="seconds must be > 0"):
        calibrate([BatchRecord(a, "tl", 32, 0.0)])
    with pytest.raises(CalibrationError, match="record 3"):
        BatchRecord.from_dict({"arch": {"paper_cnn": 20}, "seconds": 1.0}, where="record 3")
    r = BatchRecord.from_dict({"arch": {"paper_cnn": 40}, "trainable": "full", "batch_size": 32, "seconds": 17.95})
    assert r.arch.input_size == 40


def test_nnls_matches_unconstrained_when_positive_and_clamps_otherwise():
    import numpy as np

    rng = np.random.default_rng(0)
    A = rng.random((12, 3))
    x = np.array([1.0, 2.0, 3.0])
    assert np.allclose(nnls(A, A @ x), x)
    x2 = nnls(A, A @ np.array([1.0, -2.0, 3.0]))
    assert (x2 >= 0).all()


# --- recommender ----------------------------------------------------------------------------------------


def test_recommender_follows_the_papers_power_source_advice():
    bat = recommend(n_windows=64, power_source="battery")
    assert bat.choice["mode"] == "tl" and bat.binding == "power_source"
    assert "power source" in bat.reason and bat.reason.count(". ") == 0
    chg = recommend(n_windows=64, power_source="charging")
    assert chg.choice["mode"] == "full" and chg.binding == "none"
    assert len(chg.table) == 5 * 2 * 5 and sum(r["chosen"] for r in chg.table) == 1


def test_recommender_energy_and_ram_budgets_bind():
    r = recommend(n_windows=64, power_source="charging", energy_mj=300)
    assert r.binding == "energy" and "300 mJ" in r.reason
    assert r.choice["energy_per_round_mj"] <= 300
    assert all(row["energy_per_round_mj"] > 300 for row in r.table if "energy" in row["violations"])
    # RAM: 150 KiB minus the 24 KiB reserve rules out Full above T=40.
    r = recommend(n_windows=64, power_source="charging", ram_kib=150)
    assert r.choice["ram_needed_kib"] <= 150 and r.choice["memory_kib"] <= 126
    assert not any(row["fits_ram"] for row in r.table if row["mode"] == "full" and row["input_size"] >= 60)
    r = recommend(n_windows=64, ram_kib=60)
    assert r.choice is None and r.binding == "ram" and "Nothing fits the RAM budget" in r.reason


def test_recommender_prefers_measured_accuracy_over_priors():
    # The user's host-side simulation says TL at T=40 is as good as anything: choose it, cheaply.
    table = {(T, m): 0.90 for T in SIZES for m in ("tl", "full")}
    table[(40, "tl")] = 0.97
    r = recommend(n_windows=64, power_source="charging", accuracy=MeasuredAccuracy(table))
    assert (r.choice["input_size"], r.choice["mode"]) == (40, "tl")
    assert r.choice["accuracy_source"].startswith("measured")
    # the cheapest number of epochs reaching it (measured value does not depend on epochs)
    assert r.choice["epochs"] == 1
    r2 = recommend(n_windows=64, accuracy=lambda T, m, e: 0.5 + T / 1000)
    assert r2.choice["input_size"] == 100


def test_recommender_rejects_bad_arguments():
    with pytest.raises(ValueError, match="power_source"):
        recommend(power_source="solar")
    with pytest.raises(ValueError, match="energy_mj"):
        recommend(energy_mj=-1)
    with pytest.raises(ValueError, match="accounting"):
        recommend(accounting="guess")


def test_io_term_clock_override_and_emulator_entry_points_agree():
    from dataclasses import replace

    from estimator import time_per_sample_s, update_time_s

    a = paper_cnn(40)
    base = get_profile("l496-80mhz")
    uart = replace(base, name="uart", io_s_per_window=1e-3, io_s_per_value=40 / 921600)  # 4 B/value, 10 bits/B
    t0 = time_per_batch_s(a, "tl", 32, base)
    t1 = time_per_batch_s(a, "tl", 32, uart)
    assert t1 - t0 == pytest.approx(32 * (1e-3 + 120 * 40 / 921600))
    est = estimate(a, "tl", 32, uart, clock_hz=16e6)
    assert est.time_per_batch_s == pytest.approx(
        32 * time_per_sample_s(a, "tl", uart, 16e6) + update_time_s(a, "tl", uart, 16e6)
    )
    assert est.current_a == pytest.approx(uart.current_a(16e6))
    # a list equal to a named mode is reported as that mode (so the power-source policy applies)
    names = [l.name for l in a.layers if l.has_params]
    assert estimate(a, names).mode == "full" and estimate(a, ["dense1", "dense2"]).mode == "tl"
    assert estimate(a, ["conv2", "dense2"]).mode == "conv2,dense2"


def test_inference_time_is_n_windows_forward_only_at_the_clock_asked_for():
    """A validation pass (the Training panel's cost box, the recommender) and an evaluation: n forward passes."""
    a, p = paper_cnn(40), get_profile("paper")
    one = p.cycles_for(count_ops(a, frozenset()).per_sample) / p.clock_hz + p.io_s(40 * 3)
    assert inference_time_s(a, 7, "paper") == 7 * one == 7 * time_per_sample_s(a, frozenset(), "paper")
    assert inference_time_s(a, 7, p, 40e6) == 7 * time_per_sample_s(a, "none", p, 40e6)
    assert inference_time_s(a, 7, p, 40e6) != inference_time_s(a, 7, p)  # (the clock is passed on)
    assert inference_time_s(a, 0, p) == 0.0
