"""Exact checks of the estimator's refit from measured batches (estimator/calibrate.py)."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest

from estimator.arch import Arch, Layer, paper_cnn
from estimator.calibrate import (
    MIN_SHARE_SPREAD,
    BatchRecord,
    CalibrationError,
    CalibrationReport,
    _full_rank,
    _identifiable,
    calibrate,
    evaluate,
    nnls,
)
from estimator.core import time_per_batch_s
from estimator.profiles import DeviceProfile

MACS = ("conv_fwd", "conv_dw", "conv_dx", "dense_fwd", "dense_dw", "dense_dx")

# The board's "true" costs: a distinct cost per MAC type, non-zero elementwise / update work and I/O.
TRUTH = DeviceProfile(
    "truth",
    clock_hz=16e6,
    cycles={
        "conv_fwd": 11.0,
        "conv_dw": 18.0,
        "conv_dx": 9.0,
        "dense_fwd": 7.0,
        "dense_dw": 5.0,
        "dense_dx": 6.0,
        "elementwise": 3.0,
        "update": 4.0,
    },
    voltage_v=3.0,
    i0_a=60e-6,
    k_a_per_hz=100e-12,
    io_s_per_window=1e-4,
    io_s_per_value=2e-6,
)
# What the user starts from: the truth's elementwise/update/I/O costs and power model, but 1 cycle per MAC.
BASE = replace(TRUTH, name="base", cycles={**TRUTH.cycles, **{k: 1.0 for k in MACS}})

# A 3-layer MLP (Dense only) and a small CNN (2 convs + Dense head).
MLP = Arch(
    (8,),
    (
        Layer("dense", "fc1", units=16),
        Layer("relu", "r1"),
        Layer("dense", "fc2", units=8),
        Layer("relu", "r2"),
        Layer("dense", "fc3", units=4),
        Layer("softmax", "sm"),
    ),
    name="mlp",
)
CNN = Arch(
    (16, 2),
    (
        Layer("conv1d", "c1", filters=4, kernel=3),
        Layer("relu", "r1"),
        Layer("conv1d", "c2", filters=4, kernel=3),
        Layer("relu", "r2"),
        Layer("flatten", "f"),
        Layer("dense", "fc", units=3),
        Layer("softmax", "sm"),
    ),
    name="cnn",
)
# Dense 4 -> 2 without softmax; per sample with every layer trained: dense_fwd 8, dense_dw 8, elementwise 6
# (bias 2, loss gradient 2, bias gradient 2); the SGD update is 10 elementwise ops (8 weights + 2 biases).
TINY = Arch((4,), (Layer("dense", "d", units=2),), name="tiny")


def _measured(arch, trainable, batch, clock_hz=None, truth=TRUTH, **kw) -> BatchRecord:
    """A record whose time (and, with ``power=True``, energy) is exactly what ``truth`` predicts."""
    f = clock_hz or truth.clock_hz
    t = time_per_batch_s(arch, trainable, batch, truth, f)
    if kw.pop("power", False):
        kw["energy_j"] = truth.voltage_v * truth.current_a(f) * t
    return BatchRecord(arch, trainable, batch, t, clock_hz=clock_hz, **kw)


def _six_records(**kw) -> list[BatchRecord]:
    return [
        _measured(MLP, "last", 4, **kw),
        _measured(MLP, "tl", 8, **kw),
        _measured(MLP, "full", 2, **kw),
        _measured(CNN, "last", 4, **kw),
        _measured(CNN, ["c2", "fc"], 1, **kw),
        _measured(CNN, "full", 3, **kw),
    ]


# --- BatchRecord ------------------------------------------------------------------------------------


def test_power_from_average_power_or_energy_over_seconds():
    assert BatchRecord(TINY, "full", 2, 0.5, avg_power_w=0.003, energy_j=1.0).power_w() == 0.003
    assert BatchRecord(TINY, "full", 2, 0.5, energy_j=1.0).power_w() == 2.0
    assert BatchRecord(TINY, "full", 2, 4.0, energy_j=1.0).power_w() == 0.25


def test_power_is_none_without_a_measurement_or_without_time():
    assert BatchRecord(TINY, "full", 2, 1.0).power_w() is None
    assert BatchRecord(TINY, "full", 2, 0.0, energy_j=1.0).power_w() is None


def test_record_name_is_the_label_or_arch_mode_and_batch():
    a = paper_cnn(20)
    assert BatchRecord(a, "tl", 32, 1.0, label="cell 3").name() == "cell 3"
    assert BatchRecord(a, "tl", 32, 1.0).name() == "paper_cnn_T20 tl B=32"
    assert BatchRecord(a, ["dense1", "dense2"], 8, 1.0).name() == "paper_cnn_T20 tl B=8"
    assert BatchRecord(a, ["conv2", "dense2"], 1, 1.0).name() == "paper_cnn_T20 conv2,dense2 B=1"


def test_record_from_dict_reads_every_field():
    r = BatchRecord.from_dict(
        {
            "arch": {"paper_cnn": 40, "n_classes": 4},
            "trainable": "full",
            "batch_size": "16",
            "seconds": "17.5",
            "clock_hz": 8000000,
            "energy_j": "0.05",
            "avg_power_w": 0.0027,
            "voltage_v": 3,
            "label": 7,
        }
    )
    assert r == BatchRecord(paper_cnn(40, 4), "full", 16, 17.5, 8e6, 0.05, 0.0027, 3.0, "7")
    assert r.arch.n_classes == 4 and r.arch.input_size == 40


def test_record_from_dict_defaults():
    r = BatchRecord.from_dict({"arch": {"paper_cnn": 20}, "batch_size": 32, "seconds": 2.33})
    assert r == BatchRecord(paper_cnn(20, 6), "tl", 32, 2.33, None, None, None, None, "")
    assert r.arch.n_classes == 6
    assert r.label == "" and r.trainable == "tl"


def test_record_from_dict_takes_an_arch_object_or_an_arch_dict():
    r = BatchRecord.from_dict({"arch": TINY, "batch_size": 2, "seconds": 1.0, "trainable": "full"})
    assert r.arch is TINY
    r = BatchRecord.from_dict({"arch": TINY.to_dict(), "batch_size": 2, "seconds": 1.0, "trainable": "full"})
    assert r.arch == TINY and r.arch.name == "tiny"


def test_record_from_dict_refuses_with_where_and_the_error():
    with pytest.raises(CalibrationError) as e:
        BatchRecord.from_dict({"arch": {"paper_cnn": 20}, "seconds": 1.0})
    assert str(e.value) == "record: KeyError: 'batch_size'"
    with pytest.raises(CalibrationError) as e:
        BatchRecord.from_dict({"arch": {"paper_cnn": 20}, "batch_size": 8, "seconds": "fast"}, where="record 2")
    assert str(e.value) == "record 2: ValueError: could not convert string to float: 'fast'"
    with pytest.raises(CalibrationError) as e:
        BatchRecord.from_dict({"arch": {"name": "x"}, "batch_size": 8, "seconds": 1.0}, where="r")
    assert str(e.value) == "r: ArchError: malformed architecture description: no 'input_shape' and no 'layers'"
    with pytest.raises(CalibrationError) as e:
        BatchRecord.from_dict({"batch_size": 8, "seconds": 1.0}, where="r")
    assert str(e.value) == "r: KeyError: 'arch'"


# --- CalibrationReport ---------------------------------------------------------------------------------


def _report() -> CalibrationReport:
    return CalibrationReport(
        grouping="paper4",
        groups={"conv_fwd": ("conv_fwd",), "dense": ("dense_fwd", "dense_dw", "dense_dx")},
        costs={"conv_fwd": 11.0864, "dense": 6.6},
        time_rows=[
            {"label": "tl T=20", "measured_s": 1.234567, "predicted_s": 1.29629535, "error_s": 0.06, "rel_error": 0.05},
            {"label": "full T=40", "measured_s": 10.0, "predicted_s": 9.8, "error_s": -0.2, "rel_error": -0.02},
        ],
        power_rows=[{"label": "tl T=20", "measured_w": 0.00265, "predicted_w": 0.00265, "rel_error": 0.0}],
        i0_a=75.24997e-6,
        k_a_per_hz=91e-12,
        notes=("one clock only: I0 kept from the base profile, k fitted",),
    )


def test_report_summary_text():
    # RMS of (+5 %, -2 %) = sqrt((25 + 4) / 2) % = 3.808 %
    assert _report().summary() == (
        "grouping paper4: conv_fwd 11.1 cyc/op, dense 6.6 cyc/op\n"
        "  tl T=20: measured 1.235 s, model 1.296 s (+5.00 %)\n"
        "  full T=40: measured 10 s, model 9.8 s (-2.00 %)\n"
        "time residuals: RMS 3.81 %, max 5.00 %\n"
        "power: I0 = 75.2 µA, k = 91.0 µA/MHz, RMS 0.00 %"
    )


def test_report_summary_units_and_empty_rows():
    rep = CalibrationReport(
        grouping="single",
        groups={"mac": MACS},
        costs={"mac": 9.0},
        time_rows=[],
        power_rows=[{"label": "x", "measured_w": 1.0, "predicted_w": 1.1, "rel_error": 0.1}],
        i0_a=0.5,  # 500000 µA
        k_a_per_hz=0.125,  # 0.125 A/Hz = 125e9 µA/MHz
    )
    assert rep.summary() == (
        "grouping single: mac 9 cyc/op\n"
        "time residuals: RMS 0.00 %, max 0.00 %\n"
        "power: I0 = 500000.0 µA, k = 125000000000.0 µA/MHz, RMS 10.00 %"
    )
    assert rep.time_rms_rel == 0.0 and rep.time_max_abs_rel == 0.0
    assert (
        replace(rep, power_rows=[]).summary() == "grouping single: mac 9 cyc/op\ntime residuals: RMS 0.00 %, max 0.00 %"
    )


def test_report_to_dict():
    rep = _report()
    assert rep.to_dict() == {
        "grouping": "paper4",
        "groups": {"conv_fwd": ["conv_fwd"], "dense": ["dense_fwd", "dense_dw", "dense_dx"]},
        "costs_cycles_per_op": {"conv_fwd": 11.0864, "dense": 6.6},
        "time_rows": [
            {"label": "tl T=20", "measured_s": 1.234567, "predicted_s": 1.29629535, "error_s": 0.06, "rel_error": 0.05},
            {"label": "full T=40", "measured_s": 10.0, "predicted_s": 9.8, "error_s": -0.2, "rel_error": -0.02},
        ],
        "time_rms_rel": pytest.approx(0.0380788655, rel=1e-9, abs=0),
        "time_max_abs_rel": 0.05,
        "power_rows": [{"label": "tl T=20", "measured_w": 0.00265, "predicted_w": 0.00265, "rel_error": 0.0}],
        "power_rms_rel": 0.0,
        "i0_a": 75.24997e-6,
        "k_a_per_hz": 91e-12,
        "notes": ["one clock only: I0 kept from the base profile, k fitted"],
    }


def test_report_to_dict_without_rows():
    rep = CalibrationReport("custom", {}, {}, [], [], 1e-5, 2e-11)
    assert rep.to_dict() == {
        "grouping": "custom",
        "groups": {},
        "costs_cycles_per_op": {},
        "time_rows": [],
        "time_rms_rel": 0.0,
        "time_max_abs_rel": 0.0,
        "power_rows": [],
        "power_rms_rel": None,
        "i0_a": 1e-5,
        "k_a_per_hz": 2e-11,
        "notes": [],
    }


# --- nnls ------------------------------------------------------------------------------------------


def _nnls(A, b) -> np.ndarray:
    """nnls with every numpy warning (0/0, invalid casts, deprecations) turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            return nnls(np.asarray(A, float), np.asarray(b, float))


def test_nnls_interior_solution_is_the_least_squares_solution():
    assert _nnls([[2.0, 0.0], [0.0, 4.0]], [2.0, 8.0]).tolist() == [1.0, 2.0]
    assert _nnls([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], [1.0, 3.0, 2.0]) == pytest.approx([1.0, 2.0], rel=1e-12, abs=0)


def test_nnls_drops_a_variable_that_turns_negative():
    # a0 = (0, 1), a1 = (1, 2), b = (-0.1, 0.2).  A^T b = (0.2, 0.3): a1 enters first (x1 = 0.3/5 = 0.06),
    # then a0 (gradient 0.08); the unconstrained solution (0.4, -0.1) has x1 < 0, so the step stops at
    # x1 = 0 and a0 alone gives x0 = 0.2, where a1's gradient a1·(b - 0.2 a0) = -0.1 < 0: optimal.
    assert _nnls([[0.0, 1.0], [1.0, 2.0]], [-0.1, 0.2]) == pytest.approx([0.2, 0.0], abs=1e-15)
    assert _nnls([[0.0, 1.0], [1.0, 2.0]], [-1.0, 2.0]) == pytest.approx([2.0, 0.0], abs=1e-14)
    # a0 = (1, 2), a1 = (0, 1), b = (-1, 1): a0 enters (x0 = 0.2), then a1; unconstrained (-1, 3): a0 leaves,
    # a1 alone gives x1 = 1.
    assert _nnls([[1.0, 0.0], [2.0, 1.0]], [-1.0, 1.0]) == pytest.approx([0.0, 1.0], abs=1e-14)


def test_nnls_three_columns_one_stays_out():
    # a0 = (3, 2, 0), a1 = (0, 1, 1), a2 = (2, 0, 0), b = (2, 3, -1).  x = (10/11, 1/11, 0): residual
    # (-8/11, 12/11, -12/11), gradients a0·r = 0, a1·r = 0, a2·r = -16/11 < 0: optimal.
    x = _nnls([[3.0, 0.0, 2.0], [2.0, 1.0, 0.0], [0.0, 1.0, 0.0]], [2.0, 3.0, -1.0])
    assert x == pytest.approx([10 / 11, 1 / 11, 0.0], rel=1e-12, abs=1e-15)
    # as in the 2x2 case above, with a third column that never enters (its gradient is -1 throughout)
    x = _nnls([[0.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]], [-0.1, 0.2, -1.0])
    assert x == pytest.approx([0.2, 0.0, 0.0], abs=1e-15)


def test_nnls_two_variables_leave():
    # x = (0, 1, 0): residual (2, 0, 1, -3), gradients a0·r = -1, a1·r = 0, a2·r = -1: optimal (unique, full rank)
    x = _nnls([[3.0, 1.0, 0.0], [0.0, 2.0, 3.0], [2.0, 1.0, 2.0], [3.0, 1.0, 1.0]], [3.0, 2.0, 2.0, -2.0])
    assert x == pytest.approx([0.0, 1.0, 0.0], abs=1e-14)


def test_nnls_exact_fit_on_the_boundary():
    # a1 = (3, 1) enters first (gradient 9 > 3), then a0 = (1, 0); the joint solution (3, 0) puts a1 at exactly
    # zero: it leaves, and a0 alone fits b exactly
    assert _nnls([[1.0, 3.0], [0.0, 1.0]], [3.0, 0.0]) == pytest.approx([3.0, 0.0], abs=1e-15)
    # square, invertible, b = A·(1, 0, 2, 1): the exact fit, with its zero coefficient
    A = [[2.0, 2.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0], [1.0, 2.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]]
    assert _nnls(A, [5.0, 2.0, 4.0, 1.0]) == pytest.approx([1.0, 0.0, 2.0, 1.0], abs=1e-14)


def test_nnls_keeps_a_variable_with_a_negative_gradient_at_zero():
    assert _nnls([[1.0, 0.0], [0.0, 1.0]], [3.0, -2.0]).tolist() == [3.0, 0.0]
    assert _nnls([[1.0, 0.0], [0.0, 1.0]], [1.0, 0.0]).tolist() == [1.0, 0.0]
    assert _nnls([[1.0, 0.0], [0.0, 1.0]], [-1.0, -2.0]).tolist() == [0.0, 0.0]


def test_nnls_gradient_tolerance_is_10_eps_times_the_1_norm_times_max_dimension():
    eps = np.finfo(float).eps
    # A: columns (4, 0, 4) and (0, 4, 0): ||A||_1 = 8, max(m, n) = 3, so the tolerance is 240 eps.  With
    # b = (4, beta, 4), x0 = 1 and the second column's gradient is exactly 4·beta.
    A = [[4.0, 0.0], [0.0, 4.0], [4.0, 0.0]]
    below = _nnls(A, [4.0, 225 * eps / 4, 4.0])  # gradient 225 eps <= 240 eps: converged
    assert below[1] == 0.0 and below[0] == pytest.approx(1.0, rel=1e-15, abs=0)
    above = _nnls(A, [4.0, 252 * eps / 4, 4.0])  # gradient 252 eps > 240 eps: the variable enters
    assert above[1] == pytest.approx(252 * eps / 16, rel=1e-9, abs=0) and above[0] == pytest.approx(
        1.0, rel=1e-15, abs=0
    )
    # identity 2x2: tolerance 20 eps; a gradient of exactly 20 eps counts as converged
    at = _nnls([[1.0, 0.0], [0.0, 1.0]], [1.0, 20 * eps])
    assert at.tolist() == [1.0, 0.0]


# --- _full_rank / _identifiable --------------------------------------------------------------------------


def test_full_rank_needs_as_many_records_as_groups_and_no_empty_group():
    assert _full_rank(np.array([[1.0, 2.0]])) is False
    assert _full_rank(np.array([[1.0, 0.0], [2.0, 0.0]])) is False
    assert _full_rank(np.array([[1.0, 0.0], [0.0, 1.0]])) is True
    assert _full_rank(np.array([[3.0], [4.0]])) is True


def test_full_rank_is_independent_of_each_columns_scale():
    # op counts of different groups differ by orders of magnitude: columns are normalised first
    assert _full_rank(np.array([[1e6, 0.0], [0.0, 1e-4]])) is True
    assert _full_rank(np.array([[1e3, 1e3], [0.0, 1e-3]])) is True


def test_full_rank_threshold_is_a_1e_9_singular_value_ratio():
    # columns (1, 0) and (1, e) normalised: singular values ~ sqrt(2) and e / sqrt(2): ratio e / 2
    assert _full_rank(np.array([[1.0, 1.0], [0.0, 2.2e-9]])) is True  # ratio 1.1e-9
    assert _full_rank(np.array([[1.0, 1.0], [0.0, 1.8e-9]])) is False  # ratio 0.9e-9
    assert _full_rank(np.array([[1.0, 1.0], [1.0, 1.0]])) is False


def test_identifiable_needs_min_group_share_in_some_record():
    # second group: at most 5 % of any record's MACs, although the matrix has full rank and spread
    assert _full_rank(np.array([[95.0, 5.0], [100.0, 0.0]])) is True
    assert _identifiable(np.array([[95.0, 5.0], [100.0, 0.0]])) is False
    # exactly 10 % (1 of 10 MACs) is enough
    assert _identifiable(np.array([[9.0, 1.0], [19.0, 1.0]])) is True


def test_identifiable_needs_spread_in_the_mix():
    # shares (1/3, 2/3) and (0.323, 0.677): smallest singular value ~0.010 < MIN_SHARE_SPREAD 0.025
    X = np.array([[1.0, 2.0], [1.0, 2.1]])
    assert _full_rank(X) is True
    assert _identifiable(X) is False
    # shares (0.5, 0.5) and (0.3, 0.7): smallest singular value ~0.14
    assert _identifiable(np.array([[5.0, 5.0], [3.0, 7.0]])) is True


def test_identifiable_spread_exactly_at_min_share_spread_is_enough():
    # shares (0.5, 0.5) and (0.475, 0.525): this LAPACK computes the smallest singular value as exactly 0.025
    X = np.array([[1.0, 1.0], [1.0, 1.1052978224188283]])
    if np.linalg.svd(X / X.sum(axis=1, keepdims=True), compute_uv=False)[-1] != MIN_SHARE_SPREAD:
        pytest.skip("this LAPACK does not land exactly on MIN_SHARE_SPREAD for this matrix")
    assert _identifiable(X) is True


def test_identifiable_spread_is_the_smallest_of_three_singular_values():
    # three groups: the third varies a lot, the first two always come 1:1 (barely apart)
    X = np.array([[10.0, 10.0, 80.0], [40.0, 40.0, 20.0], [30.0, 31.0, 39.0], [45.0, 45.0, 10.0]])
    s = np.linalg.svd(X / X.sum(axis=1, keepdims=True), compute_uv=False)
    assert s[1] > 0.025 > s[2]
    assert _full_rank(X) is True
    assert _identifiable(X) is False


def test_identifiable_depends_on_the_mix_not_the_magnitude():
    X = np.array([[5.0, 1.0], [1.0, 5.0]])
    assert _identifiable(X) is True
    assert _identifiable(X * 1e-2) is True  # rows summing to 0.06
    assert _identifiable(np.array([[7.0]])) is True


def test_identifiable_rejects_a_rank_deficient_design():
    assert _identifiable(np.array([[1.0, 1.0], [2.0, 2.0]])) is False


# --- calibrate ---------------------------------------------------------------------------------------------


def test_auto_grouping_recovers_every_per_op_cost():
    # per-op is the finest grouping and these six records identify it: every MAC type is >= 10 % of some
    # record's MACs (dense_dx 22 % in the MLP's Full, conv_dx 23 % and conv_dw 31 % in the CNN's Full, dense_dw
    # 33 % in the MLP's TL) and the mixes differ (smallest singular value of the share matrix 0.065 >= 0.025).
    prof, rep = calibrate(_six_records(), BASE)
    assert rep.grouping == "per-op"
    assert rep.groups == {k: (k,) for k in MACS}
    for k in MACS:
        assert prof.cycles[k] == pytest.approx(TRUTH.cycles[k], rel=1e-9, abs=0)
        assert rep.costs[k] == pytest.approx(TRUTH.cycles[k], rel=1e-9, abs=0)
    assert prof.cycles["elementwise"] == 3.0 and prof.cycles["update"] == 4.0
    assert rep.notes == ()
    assert rep.time_max_abs_rel < 1e-9
    assert [r["label"] for r in rep.time_rows] == [
        "mlp last B=4",
        "mlp tl B=8",
        "mlp full B=2",
        "cnn last B=4",
        "cnn c2,fc B=1",
        "cnn full B=3",
    ]
    # no power measured: the base power model is kept
    assert rep.power_rows == [] and prof.i0_a == 60e-6 and prof.k_a_per_hz == 100e-12
    assert rep.i0_a == 60e-6 and rep.k_a_per_hz == 100e-12
    assert prof.name == "base-calibrated"
    assert prof.source == "calibrated from 6 measured batches (grouping per-op) on top of 'base'"
    assert prof.meta == {"calibration": {"grouping": "per-op", "n_records": 6}}
    # everything else is the base profile's
    assert replace(prof, name="base", cycles=BASE.cycles, source="", meta={}) == BASE


def test_auto_grouping_falls_back_to_paper4_on_the_papers_model():
    # paper_cnn records (TL and Full): dense_dx is < 10 % of every record's MACs (<= 3,500 of >= 50,000 per
    # sample), so per-op is not identifiable; paper4's single Dense group (fwd + dw + dx) is 13 % of TL at T=20
    # and the conv groups vary between TL and Full.  A truth with one Dense cost is recovered exactly.
    truth = replace(TRUTH, cycles={**TRUTH.cycles, "dense_fwd": 6.5, "dense_dw": 6.5, "dense_dx": 6.5})
    recs = [_measured(paper_cnn(T), m, 16, truth=truth) for T in (20, 60, 100) for m in ("tl", "full")]
    prof, rep = calibrate(recs, BASE, name="nucleo-1")
    assert rep.grouping == "paper4"
    assert rep.groups == {
        "conv_fwd": ("conv_fwd",),
        "conv_dw": ("conv_dw",),
        "conv_dx": ("conv_dx",),
        "dense": ("dense_fwd", "dense_dw", "dense_dx"),
    }
    assert rep.costs == pytest.approx(
        {"conv_fwd": 11.0, "conv_dw": 18.0, "conv_dx": 9.0, "dense": 6.5}, rel=1e-9, abs=0
    )
    assert [prof.cycles[k] for k in MACS] == pytest.approx([11.0, 18.0, 9.0, 6.5, 6.5, 6.5], rel=1e-9, abs=0)
    assert prof.name == "nucleo-1"
    assert rep.notes == ()


def test_named_grouping_drops_groups_absent_from_the_records():
    # MLP records only: no conv work, so paper4's conv groups are dropped and keep the base cost
    recs = [_measured(MLP, "tl", 8), _measured(MLP, "full", 2)]
    prof, rep = calibrate(recs, BASE, groups="paper4")
    assert rep.grouping == "paper4"
    assert rep.groups == {"dense": ("dense_fwd", "dense_dw", "dense_dx")}
    assert list(rep.costs) == ["dense"]
    assert [prof.cycles[k] for k in ("conv_fwd", "conv_dw", "conv_dx")] == [1.0, 1.0, 1.0]
    assert rep.notes == ("not in the records, kept from base: conv_fwd, conv_dw, conv_dx",)
    assert prof.meta == {"calibration": {"grouping": "paper4", "n_records": 2}}


def test_named_grouping_keeps_a_group_of_a_single_op():
    # Dense 1 -> 1, batch 1: one dense_fwd and one dense_dw MAC per batch; they always come together, so the
    # per-op costs are not unique (the fit splits them), and no other MAC type occurs.
    one = Arch((1,), (Layer("dense", "d", units=1),), name="one")
    prof, rep = calibrate([_measured(one, "full", 1)], BASE, groups="per-op")
    assert rep.groups == {"dense_fwd": ("dense_fwd",), "dense_dw": ("dense_dw",)}
    assert rep.notes == (
        "grouping per-op is rank-deficient for these records: the costs are not unique",
        "not in the records, kept from base: conv_fwd, conv_dw, conv_dx, dense_dx",
    )
    assert rep.costs["dense_fwd"] + rep.costs["dense_dw"] == pytest.approx(12.0, rel=1e-9, abs=0)
    assert rep.time_max_abs_rel < 1e-9


def test_custom_groups():
    # one cost for the convs' forward and backward, one per Dense op type, and dense_dx (in no group) kept at the
    # base cost: its cycles are part of the fixed work of each record, so the fitted groups recover the truth
    groups = {"conv": ("conv_fwd", "conv_dw", "conv_dx"), "dense_fwd": ["dense_fwd"], "dense_dw": ["dense_dw"]}
    truth = replace(TRUTH, cycles={**TRUTH.cycles, "conv_fwd": 12.0, "conv_dw": 12.0, "conv_dx": 12.0, "dense_dx": 1.0})
    prof, rep = calibrate(_six_records(truth=truth), BASE, groups=groups)
    assert rep.grouping == "custom"
    assert rep.groups == {
        "conv": ("conv_fwd", "conv_dw", "conv_dx"),
        "dense_fwd": ("dense_fwd",),
        "dense_dw": ("dense_dw",),
    }
    assert rep.costs == pytest.approx({"conv": 12.0, "dense_fwd": 7.0, "dense_dw": 5.0}, rel=1e-9, abs=0)
    assert prof.cycles["dense_dx"] == 1.0
    assert rep.notes == ("not in the records, kept from base: dense_dx",)
    assert prof.source == "calibrated from 6 measured batches (grouping custom) on top of 'base'"
    assert prof.meta == {"calibration": {"grouping": "custom", "n_records": 6}}


def test_calibrate_refusals():
    with pytest.raises(CalibrationError) as e:
        calibrate([])
    assert str(e.value) == "no records to calibrate from"
    with pytest.raises(CalibrationError) as e:
        calibrate(_six_records(), BASE, groups="per-layer")
    assert str(e.value) == (
        "unknown grouping 'per-layer' (known: auto, per-op, paper4, fwd-bwd-dense, fwd-bwd, conv-dense, single)"
    )
    with pytest.raises(CalibrationError) as e:
        calibrate(_six_records(), BASE, groups={"conv": ("conv_fwd",), "fwd": ("dense_fwd", "dense_fwd2", "mac")})
    assert str(e.value) == (
        "group 'fwd': op types ['dense_fwd2', 'mac'] cannot be fitted "
        "(MAC op types: conv_fwd, conv_dw, conv_dx, dense_fwd, dense_dw, dense_dx)"
    )
    # elementwise and update work is never fitted (it is the fixed part of every record)
    with pytest.raises(CalibrationError) as e:
        calibrate(_six_records(), BASE, groups={"mac": MACS, "other": ("elementwise", "update")})
    assert str(e.value) == (
        "group 'other': op types ['elementwise', 'update'] cannot be fitted "
        "(MAC op types: conv_fwd, conv_dw, conv_dx, dense_fwd, dense_dw, dense_dx)"
    )
    with pytest.raises(CalibrationError) as e:
        calibrate([BatchRecord(paper_cnn(20), "tl", 0, 1.0)], BASE)
    assert str(e.value) == "paper_cnn_T20 tl B=0: batch_size must be >= 1"
    with pytest.raises(CalibrationError) as e:
        calibrate([BatchRecord(paper_cnn(20), "tl", 32, float("nan"))], BASE)
    assert str(e.value) == "paper_cnn_T20 tl B=32: measured seconds must be > 0, got nan"


def test_calibrate_refuses_records_without_mac_work():
    # global average pooling and softmax only, nothing trained: elementwise work only
    nomac = Arch((4, 3), (Layer("gap1d", "g"), Layer("softmax", "s")), name="nomac")
    recs = [BatchRecord(nomac, "none", 4, 0.01), BatchRecord(nomac, "none", 8, 0.02)]
    with pytest.raises(CalibrationError) as e:
        calibrate(recs, BASE)
    assert str(e.value) == "records contain no MAC work to fit (all op counts are zero)"


def test_batch_of_one_is_accepted():
    # one record: per-op (3 Dense columns) has not enough records; paper4 without its conv groups is one column
    prof, rep = calibrate([_measured(MLP, "full", 1)], BASE)
    assert rep.grouping == "paper4" and list(rep.groups) == ["dense"]
    assert rep.time_rows[0]["label"] == "mlp full B=1"
    assert rep.time_max_abs_rel < 1e-9


def test_power_fit_with_several_clocks_recovers_i0_and_k():
    recs = [_measured(MLP, "tl", 8, clock_hz=f, power=True) for f in (8e6, 16e6, 32e6)]
    recs.append(_measured(MLP, "full", 2, clock_hz=8e6))  # no power: ignored by the power fit
    prof, rep = calibrate(recs, BASE, groups="single")
    assert prof.i0_a == pytest.approx(60e-6, rel=1e-9, abs=0) and rep.i0_a == prof.i0_a
    assert prof.k_a_per_hz == pytest.approx(100e-12, rel=1e-9, abs=0) and rep.k_a_per_hz == prof.k_a_per_hz
    assert [r["label"] for r in rep.power_rows] == ["mlp tl B=8"] * 3
    assert rep.power_rms_rel < 1e-9


def test_power_fit_with_exactly_two_clocks_fits_both():
    base = replace(BASE, i0_a=1e-3, k_a_per_hz=1e-9)
    recs = [_measured(MLP, "tl", 8, clock_hz=f, power=True) for f in (8e6, 24e6)]
    prof, rep = calibrate(recs, base, groups="single")
    assert prof.i0_a == pytest.approx(60e-6, rel=1e-9, abs=0)
    assert prof.k_a_per_hz == pytest.approx(100e-12, rel=1e-9, abs=0)
    assert rep.notes == ()


def test_power_fit_with_one_clock_keeps_i0_and_fits_k():
    # one record at 10 MHz drawing 0.6 mW / 3 V = 200 µA; I0 60 µA kept: k = 140 µA / 10 MHz = 14 pA/Hz
    rec = BatchRecord(MLP, "tl", 8, 0.5, clock_hz=10e6, avg_power_w=0.6e-3)
    prof, rep = calibrate([rec], BASE)
    assert prof.i0_a == 60e-6 and rep.i0_a == 60e-6
    assert prof.k_a_per_hz == pytest.approx(14e-12, rel=1e-12, abs=0) and rep.k_a_per_hz == prof.k_a_per_hz
    assert rep.notes == (
        "not in the records, kept from base: conv_fwd, conv_dw, conv_dx",
        "one clock only: I0 kept from the base profile, k fitted",
    )
    assert rep.power_rows[0]["rel_error"] == pytest.approx(0.0, abs=1e-12)


def test_power_fit_with_one_clock_and_current_equal_to_i0_gives_zero_k():
    base = replace(BASE, voltage_v=2.0, i0_a=1e-4)
    rec = BatchRecord(MLP, "tl", 8, 0.5, clock_hz=10e6, avg_power_w=2e-4)  # 2e-4 W / 2 V = I0 exactly
    prof, rep = calibrate([rec], base)
    assert prof.i0_a == 1e-4 and prof.k_a_per_hz == 0.0


def test_power_fit_with_one_clock_below_i0_sets_i0_to_zero():
    # 0.15 mW / 3 V = 50 µA < I0 60 µA: I0 = 0 and k = 50 µA / 8 MHz = 6.25 pA/Hz
    rec = BatchRecord(MLP, "tl", 8, 0.5, clock_hz=8e6, energy_j=0.075e-3)
    prof, rep = calibrate([rec], BASE)
    assert prof.i0_a == 0.0 and rep.i0_a == 0.0
    assert prof.k_a_per_hz == pytest.approx(6.25e-12, rel=1e-12, abs=0)
    assert rep.notes == (
        "not in the records, kept from base: conv_fwd, conv_dw, conv_dx",
        "one clock only: measured current below the base profile's I0, I0 set to 0, k fitted",
    )


def test_power_fit_can_be_switched_off():
    recs = [_measured(MLP, "tl", 8, clock_hz=f, power=True) for f in (8e6, 16e6)]
    prof, rep = calibrate(recs, replace(BASE, i0_a=1e-3, k_a_per_hz=1e-9), groups="single", fit_power=False)
    assert prof.i0_a == 1e-3 and prof.k_a_per_hz == 1e-9
    assert rep.i0_a == 1e-3 and rep.k_a_per_hz == 1e-9
    assert len(rep.power_rows) == 2  # still evaluated against the base power model


# --- evaluate --------------------------------------------------------------------------------------------


def test_evaluate_rows():
    # per sample: (3·8 dense_fwd + 5·8 dense_dw + 1·6 elementwise) = 70 cycles = 70 µs at 1 MHz, I/O 1 ms + 4·0.1 ms
    # -> 1.47 ms; batch of 2: 2.94 ms + update 2·10 cycles = 20 µs -> 2.96 ms.  At 2 MHz: 2·1.435 + 0.01 = 2.88 ms.
    # Current 1 mA + 1 nA/Hz·f: 2 mA at 1 MHz, 3 mA at 2 MHz.
    p = DeviceProfile(
        "p",
        clock_hz=1e6,
        cycles={"dense_fwd": 3.0, "dense_dw": 5.0, "elementwise": 1.0, "update": 2.0},
        voltage_v=2.0,
        i0_a=1e-3,
        k_a_per_hz=1e-9,
        io_s_per_window=1e-3,
        io_s_per_value=1e-4,
    )
    recs = [
        BatchRecord(TINY, "full", 2, 3.2e-3, avg_power_w=5e-3, label="a"),
        BatchRecord(TINY, "full", 2, 2.4e-3, clock_hz=2e6, energy_j=2.4e-5, voltage_v=3.0),
        BatchRecord(TINY, ["d"], 2, 2.96e-3),
    ]
    time_rows, power_rows = evaluate(p, recs)
    assert time_rows == [
        {
            "label": "a",
            "measured_s": 3.2e-3,
            "predicted_s": pytest.approx(2.96e-3, rel=1e-12, abs=0),
            "error_s": pytest.approx(-0.24e-3, rel=1e-9, abs=0),
            "rel_error": pytest.approx(-0.075, rel=1e-9, abs=0),
        },
        {
            "label": "tiny full B=2",
            "measured_s": 2.4e-3,
            "predicted_s": pytest.approx(2.88e-3, rel=1e-12, abs=0),
            "error_s": pytest.approx(0.48e-3, rel=1e-9, abs=0),
            "rel_error": pytest.approx(0.2, rel=1e-9, abs=0),
        },
        {
            "label": "tiny full B=2",
            "measured_s": 2.96e-3,
            "predicted_s": pytest.approx(2.96e-3, rel=1e-12, abs=0),
            "error_s": pytest.approx(0.0, abs=1e-15),
            "rel_error": pytest.approx(0.0, abs=1e-12),
        },
    ]
    # record a: 2 mA · 2 V = 4 mW vs 5 mW measured; record 2: 3 mA · 3 V = 9 mW vs 2.4e-5 J / 2.4 ms = 10 mW
    assert power_rows == [
        {
            "label": "a",
            "measured_w": 5e-3,
            "predicted_w": pytest.approx(4e-3, rel=1e-12, abs=0),
            "rel_error": pytest.approx(-0.2, rel=1e-9, abs=0),
        },
        {
            "label": "tiny full B=2",
            "measured_w": pytest.approx(10e-3, rel=1e-12, abs=0),
            "predicted_w": pytest.approx(9e-3, rel=1e-12, abs=0),
            "rel_error": pytest.approx(-0.1, rel=1e-9, abs=0),
        },
    ]
    assert math.isclose(time_rows[0]["error_s"], -0.24e-3, rel_tol=1e-9)
