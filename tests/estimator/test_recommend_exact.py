"""The recommender (estimator/recommend.py) and estimate() (estimator/core.py) with exact values worked by hand.

Most checks run on a small dense net ``x (T,) -> d1 dense 3 -> relu -> d2 dense 2 -> softmax`` and two device
profiles whose figures are easy to follow:

* ``HAND`` (recommender): every op costs 0 cycles except the SGD update (1 cycle per trained parameter) at 1 Hz,
  1 s of I/O per window, 1 mW.  So a window takes 1 s, a batch's update takes (trained parameters) s, and an
  energy in mJ equals the time in s.  64 KiB of RAM, 8 KiB firmware reserve.
* ``OPS`` (estimate): dense MACs 1/2/3 cycles (forward / weight gradient / input gradient), 0.5 per elementwise
  op, 10 per parameter update, 1 kHz, I/O 0.01 s + 0.001 s per value, 2 V x (1 mA + 1 µA/Hz · f).

The net's figures (estimator/ops.py and estimator/memory.py rules; tests/estimator/test_estimator.py checks the
same memory at T = 4 by hand): parameters d1 3T+3, d2 8.  Paper memory (bytes): full/TL (both dense layers
train) 4·(2·(3T+11) + T + 10 + 5) = 28T + 148; last 4·((3T+11) + 8 + T + 10 + 2) = 16T + 124.  Peak: full
4·(2·(3T+11) + T + 8) = 28T + 120; last 4·((3T+11) + 8 + T + 3) = 16T + 88 (x and d1's output while d1 runs
forward).  At T = 1024: full 28.14453125 KiB (peak 28.1171875), last 16.12109375 KiB (peak 16.0859375); at T = 2048: full 56.14453125, last 32.12109375.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from estimator.arch import Arch, Layer, paper_cnn
from estimator.core import MemoryEstimate, estimate, mode_label, time_per_batch_s, time_per_sample_s, update_time_s
from estimator.memory import training_memory
from estimator.profiles import DeviceProfile
from estimator.recommend import (
    LosoPrior,
    MeasuredAccuracy,
    Recommendation,
    TableIIPrior,
    _label,
    _src,
    accuracy_prior_path,
    default_accuracy,
    load_accuracy_prior,
    n_windows_from_recording,
    recommend,
    summarize,
)

KIB = 1024


def net(T: int) -> Arch:
    return Arch(
        (T,),
        (Layer("dense", "d1", units=3), Layer("relu", "r"), Layer("dense", "d2", units=2), Layer("softmax", "s")),
        name=f"net{T}",
    )


def net3(T: int) -> Arch:
    """Three dense layers: training d1 and d2 is neither full, TL (d2, d3) nor last (d3)."""
    return Arch(
        (T,),
        (
            Layer("dense", "d1", units=3),
            Layer("relu", "r"),
            Layer("dense", "d2", units=2),
            Layer("relu", "r2"),
            Layer("dense", "d3", units=2),
            Layer("softmax", "s"),
        ),
        name=f"net3_{T}",
    )


HAND = DeviceProfile(
    name="hand",
    clock_hz=1.0,
    cycles={"update": 1.0},
    voltage_v=1.0,
    i0_a=1e-3,
    k_a_per_hz=0.0,
    io_s_per_window=1.0,
    ram_bytes=64 * KIB,
    stack_bytes=8 * KIB,
    static_bytes=0,
    protocol_buffer_bytes=0,
    code_flash_bytes=0,
)

OPS = DeviceProfile(
    name="ops",
    clock_hz=1000.0,
    cycles={"dense_fwd": 1.0, "dense_dw": 2.0, "dense_dx": 3.0, "elementwise": 0.5, "update": 10.0},
    voltage_v=2.0,
    i0_a=1e-3,
    k_a_per_hz=1e-6,
    io_s_per_window=0.01,
    io_s_per_value=0.001,
    ram_bytes=1024,
    stack_bytes=256,
    static_bytes=128,
    protocol_buffer_bytes=64,
    code_flash_bytes=4096,
)


def measured(values: dict, default: float = 0.5):
    """An accuracy model: ``values[(T, mode, epochs)]`` or ``values[(T, mode)]``, else ``default``."""

    def acc(T, m, e):
        return values.get((T, m, e), values.get((T, m), default))

    return acc


def rec(**kw):
    """recommend() on the hand net and profile: 4 windows in batches of 2 (2 batches per epoch)."""
    args = dict(
        arch=net,
        input_sizes=(1024,),
        modes=("last", "tl", "full"),
        epochs=(1, 2),
        batch_size=2,
        profile=HAND,
        n_windows=4,
    )
    args.update(kw)
    return recommend(**args)


def row_of(r, T, mode, e):
    (row,) = [x for x in r.table if (x["input_size"], x["mode"], x["epochs"]) == (T, mode, e)]
    return row


# --- the paper's Table II prior --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset, mode, T, want",
    [
        ("wisdm", "tl", 100, 0.955),
        ("wisdm", "tl", 80, 0.963),
        ("wisdm", "full", 60, 0.978),
        ("wisdm", "full", 20, 0.967),
        ("st", "tl", 40, 0.929),
        ("st", "full", 80, 0.962),
        ("st", "last", 20, 0.911),  # every mode but Full reads the TL column
    ],
)
def test_table_ii_prior_after_many_epochs_is_the_papers_figure(dataset, mode, T, want):
    f1, src = TableIIPrior(dataset).lookup(T, mode, 1000)
    assert f1 == pytest.approx(want, abs=1e-12)
    col = "FULL" if mode == "full" else "TL"
    assert src == f"Table II prior ({dataset}, {col}, τ=2 epochs)"


def test_table_ii_prior_follows_the_saturating_epoch_curve_from_the_no_pers_column():
    # ST Full at T=60: 0.966; WISDM No Pers. at 60: 0.819; 2 epochs = tau: 1 - 1/e = 0.6321205588 of the way
    f1, src = TableIIPrior().lookup(60, "full", 2)
    assert f1 == pytest.approx(0.819 + 0.147 * 0.6321205588, abs=1e-9)  # 0.9119217
    assert src == "Table II prior (st, FULL, τ=2 epochs)"
    # 0 epochs: the pretrained model (WISDM No Pers. at T=100)
    assert TableIIPrior().lookup(100, "full", 0)[0] == pytest.approx(0.813, abs=1e-12)
    # T=50 halfway between 40 and 60: ST TL 0.930, No Pers. 0.8135; 4 epochs: 1 - e^-2 = 0.8646647168
    assert TableIIPrior()(50, "tl", 4) == pytest.approx(0.8135 + 0.1165 * 0.8646647168, abs=1e-9)
    # tau = 0.5: 1 epoch is two time constants; WISDM TL at T=20 0.948, No Pers. 0.804
    f1, src = TableIIPrior("wisdm", 0.5).lookup(20, "tl", 1)
    assert f1 == pytest.approx(0.804 + 0.144 * 0.8646647168, abs=1e-9)
    assert src == "Table II prior (wisdm, TL, τ=0.5 epochs)"


def test_table_ii_prior_clamps_the_input_size_to_20_100():
    assert TableIIPrior("wisdm")(10, "full", 1000) == pytest.approx(0.967, abs=1e-12)
    assert TableIIPrior("wisdm")(150, "full", 1000) == pytest.approx(0.969, abs=1e-12)
    assert TableIIPrior("st")(1024, "tl", 1000) == pytest.approx(0.938, abs=1e-12)


def test_table_ii_prior_refuses_an_unknown_dataset_and_a_time_constant_not_above_zero():
    with pytest.raises(ValueError) as e:
        TableIIPrior("hapt")
    assert str(e.value) == "unknown Table II dataset 'hapt' (known: wisdm, st)"
    for tau, shown in ((0.0, "0.0"), (-1.0, "-1.0"), (float("nan"), "nan")):
        with pytest.raises(ValueError) as e:
            TableIIPrior(tau_epochs=tau)
        assert str(e.value) == f"tau_epochs must be > 0, got {shown}"
    assert TableIIPrior(tau_epochs=1e-9).tau_epochs == 1e-9


# --- measured accuracy ----------------------------------------------------------------------------------------


def test_measured_accuracy_prefers_the_epoch_key_then_the_mode_key_then_the_prior():
    m = MeasuredAccuracy({(40, "tl", 3): 0.91, (40, "tl"): 0.88, (60, "full"): 1})
    assert m.lookup(40, "tl", 3) == (0.91, "measured (host-side simulation)")
    assert m.lookup(40.0, "tl", 3.0) == (0.91, "measured (host-side simulation)")  # sizes as floats
    assert m.lookup(40, "tl", 2) == (0.88, "measured (host-side simulation)")
    v, _ = m.lookup(60, "full", 7)
    assert v == 1.0 and type(v) is float
    assert m(40, "tl", 2) == 0.88
    # nothing measured: ST TL at T=20 (0.911) from No Pers. 0.804, 1 epoch: 1 - e^-0.5 = 0.3934693403
    v, src = m.lookup(20, "tl", 1)
    assert v == pytest.approx(0.804 + 0.107 * 0.3934693403, abs=1e-9)
    assert src == "Table II prior (st, TL, τ=2 epochs) (no measurement)"


def test_measured_accuracy_without_a_fallback_names_the_missing_cell():
    m = MeasuredAccuracy({(40, "tl"): 0.9}, fallback=None)
    with pytest.raises(KeyError) as e:
        m.lookup(20, "full", 3)
    assert e.value.args == ("no measured accuracy for T=20, mode=full, epochs=3",)


# --- LOSO prior -------------------------------------------------------------------------------------------------

LOSO = {
    "procedure_label": "robust round",
    "datasets": {
        "wisdm2019": {
            "subjects": 16,
            "modes": {
                "none": {"1024": {"mean": 0.5, "std": 0.2, "min": 0.1, "n": 16}, "2048": {"mean": 0.6, "std": 0.2, "min": 0.2, "n": 16}},
                "tl": {"1024": {"mean": 0.8, "std": 0.1, "min": 0.5, "n": 16}, "2048": {"mean": 0.9, "std": 0.05, "min": 0.7, "n": 14}},
                "full": {"1024": {"mean": 0.85, "std": 0.125, "min": 0.4, "n": 16}, "2048": {"mean": 0.95, "std": 0.04, "min": 0.8, "n": 16}},
            },
        },
        "hapt": {"modes": {"tl": {"20": {"mean": 0.7, "std": 0.1, "min": 0.6, "n": 3}},
                           "none": {"20": {"mean": 0.5, "std": 0.0, "min": 0.5, "n": 3}}}},
        "only_tl": {"subjects": 4, "modes": {"tl": {"20": {"mean": 0.7, "std": 0.1, "min": 0.6, "n": 4}}}},
    },
}  # fmt: skip


def test_loso_prior_names_the_dataset_users_procedure_spread_and_worst_user():
    p = LosoPrior(LOSO)
    # T = 1536 halfway between the measured sizes: TL mean 0.85, None 0.55, std 0.075, worst 0.6, n the fewest (14)
    f1, src = p.lookup(1536, "tl", 2)
    assert f1 == pytest.approx(0.55 + 0.3 * 0.6321205588, abs=1e-9)
    assert src == "LOSO prior (WISDM-2019, 16 users, robust round): ± 0.075 over users, worst 0.600"
    assert p.spread(1536, "last") == {"std": pytest.approx(0.075), "min": pytest.approx(0.6), "n": 14}
    # no subject count, no procedure label: the cells' n; the display name of a known dataset
    table = {"datasets": {"hapt": LOSO["datasets"]["hapt"]}}
    assert LosoPrior(table, "hapt", tau_epochs=1.0).lookup(20, "tl", 1) == (
        pytest.approx(0.5 + 0.2 * (1 - math.exp(-1)), abs=1e-12),
        "LOSO prior (UCI HAPT, 3 users): ± 0.100 over users, worst 0.600",
    )


def test_loso_prior_without_the_general_models_column_falls_back_to_table_ii():
    want, src = TableIIPrior().lookup(20, "tl", 3)
    assert LosoPrior(LOSO, "only_tl").lookup(20, "tl", 3) == (want, src + " (no LOSO measurement)")
    assert LosoPrior({"datasets": {"x": {}}}, "x").spread(20, "tl") is None
    with pytest.raises(KeyError) as e:
        LosoPrior(LOSO, "only_tl", fallback=None).lookup(20, "last", 3)
    assert e.value.args == ("no LOSO measurement of tl on only_tl",)


# --- the shipped table: where it is, and what is refused -------------------------------------------------------


def test_the_prior_table_is_read_from_odl_assets_else_beside_the_package(tmp_path, monkeypatch):
    import estimator

    monkeypatch.delenv("ODL_ASSETS", raising=False)
    assert accuracy_prior_path() == Path(estimator.__file__).resolve().parent.parent / "assets" / "accuracy_prior.json"
    monkeypatch.setenv("ODL_ASSETS", "")  # empty: as if unset
    assert accuracy_prior_path() == Path(estimator.__file__).resolve().parent.parent / "assets" / "accuracy_prior.json"
    monkeypatch.setenv("ODL_ASSETS", str(tmp_path))
    assert accuracy_prior_path() == tmp_path / "accuracy_prior.json"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ODL_ASSETS", "~/mine")
    assert accuracy_prior_path() == tmp_path / "mine" / "accuracy_prior.json"


def test_load_accuracy_prior_reads_the_default_path_and_refuses_what_is_not_a_table(tmp_path, monkeypatch):
    monkeypatch.setenv("ODL_ASSETS", str(tmp_path))
    assert load_accuracy_prior() is None  # missing
    good = {"datasets": {"wisdm2019": {"modes": {}}}, "note": "é"}
    (tmp_path / "accuracy_prior.json").write_text(json.dumps(good, ensure_ascii=False), encoding="utf-8")
    assert load_accuracy_prior() == good
    other = tmp_path / "other.json"
    for text in ("[1, 2]", '{"datasets": [1]}', '{"schema": 1}', "{"):
        other.write_text(text, encoding="utf-8")
        assert load_accuracy_prior(other) is None, text
    other.write_bytes(b'{"datasets": {}, "x": "\xff"}')  # not UTF-8
    assert load_accuracy_prior(other) is None
    assert load_accuracy_prior(tmp_path) is None  # a folder
    other.write_text('{"datasets": {}}', encoding="utf-8")
    assert load_accuracy_prior(str(other)) == {"datasets": {}}


def test_default_accuracy_is_the_loso_table_of_the_dataset_when_shipped(tmp_path, monkeypatch):
    monkeypatch.setenv("ODL_ASSETS", str(tmp_path))
    assert default_accuracy() == TableIIPrior()
    (tmp_path / "accuracy_prior.json").write_text(json.dumps(LOSO), encoding="utf-8")
    d = default_accuracy()
    assert type(d) is LosoPrior and d.dataset == "wisdm2019" and d.table == LOSO
    assert default_accuracy("hapt").dataset == "hapt"
    assert default_accuracy("st") == TableIIPrior()


# --- recommend(): the table -------------------------------------------------------------------------------------


def test_each_row_gives_the_costs_of_one_option_worked_by_hand():
    r = rec(power_source="charging", accuracy=measured({(1024, "last", 2): 0.75}))
    assert [(x["input_size"], x["mode"], x["epochs"]) for x in r.table] == [
        (1024, "last", 1),
        (1024, "last", 2),
        (1024, "tl", 1),
        (1024, "tl", 2),
        (1024, "full", 1),
        (1024, "full", 2),
    ]
    # last-layer: 8 trained parameters; a batch = 2 windows (2 s) + an 8 s update; an epoch 4 s + 2 x 8 s = 20 s
    assert row_of(r, 1024, "last", 2) == {
        "input_size": 1024,
        "mode": "last",
        "epochs": 2,
        "n_windows": 4,
        "params": 3083,
        "trainable_params": 8,
        "memory_kib": 16.12109375,
        "memory_peak_kib": 16.0859375,
        "memory_firmware_kib": training_memory(net(1024), "last").firmware_kib,
        "robust_extra_kib": 0.0,
        "ram_needed_kib": 24.12109375,
        "time_per_batch_s": 10.0,
        "time_per_round_s": 40.0,
        "power_mw": 1.0,
        "energy_per_batch_mj": 10.0,
        "energy_per_round_mj": 40.0,
        "procedure": "plain",
        "n_val": 0,
        "accuracy": 0.75,
        "accuracy_source": "user accuracy model",
        "fits_ram": True,
        "violations": [],
        "feasible": True,
        "chosen": True,
    }
    # TL (both dense layers here): 3083 trained parameters; an epoch 4 + 2 x 3083 = 6170 s
    tl = row_of(r, 1024, "tl", 1)
    assert (tl["trainable_params"], tl["memory_kib"], tl["ram_needed_kib"]) == (3083, 28.14453125, 36.14453125)
    assert (tl["time_per_batch_s"], tl["time_per_round_s"], tl["energy_per_round_mj"]) == (3085.0, 6170.0, 6170.0)
    assert row_of(r, 1024, "full", 2)["time_per_round_s"] == 12340.0
    assert sum(x["chosen"] for x in r.table) == 1 and r.choice is row_of(r, 1024, "last", 2)
    assert json.loads(json.dumps(r.to_dict()))["table"][1]["input_size"] == 1024


def test_the_budgets_default_to_the_profile_and_are_echoed():
    r = rec(input_sizes=(1024.0,), accuracy=measured({}))
    assert r.budgets == {
        "ram_kib": 64.0,
        "reserve_kib": 8.0,
        "ram_available_kib": 56.0,
        "time_s": None,
        "energy_mj": None,
        "power_source": "battery",
        "accounting": "paper",
        "profile": "hand",
        "batch_size": 2,
    }
    assert type(r.table[0]["input_size"]) is int and type(r.table[0]["epochs"]) is int
    r = rec(ram_kib=40, reserve_kib=2.5, time_s=100, energy_mj=50, power_source="charging", accounting="peak")
    assert r.budgets == {
        "ram_kib": 40.0,
        "reserve_kib": 2.5,
        "ram_available_kib": 37.5,
        "time_s": 100,
        "energy_mj": 50,
        "power_source": "charging",
        "accounting": "peak",
        "profile": "hand",
        "batch_size": 2,
    }
    # the paper's board: 320 KiB of RAM, 24 KiB for the firmware
    r = recommend(input_sizes=(20,), modes=("tl",), epochs=(1,), accuracy="st")
    assert (r.budgets["ram_kib"], r.budgets["reserve_kib"], r.budgets["ram_available_kib"]) == (320.0, 24.0, 296.0)
    assert (r.budgets["profile"], r.budgets["batch_size"]) == ("paper", 32)


def test_the_default_options_are_five_sizes_two_modes_five_epoch_counts():
    r = recommend(accuracy="wisdm")
    assert [(x["input_size"], x["mode"], x["epochs"]) for x in r.table] == [
        (T, m, e) for T in (20, 40, 60, 80, 100) for m in ("tl", "full") for e in (1, 2, 3, 5, 10)
    ]
    # no windows given: one batch of 32 per epoch; TL at T=20 takes 2.33 s per batch (Table III)
    first = r.table[0]
    assert first["n_windows"] == 32 and first["time_per_round_s"] == pytest.approx(2.33, rel=5e-5)
    assert r.budgets["power_source"] == "battery" and r.binding == "power_source"


def test_the_ram_needed_follows_the_accounting_the_dataset_and_the_reserve():
    acc = measured({})
    assert row_of(rec(accuracy=acc, accounting="peak"), 1024, "last", 1)["ram_needed_kib"] == 16.0859375 + 8
    fw = row_of(rec(accuracy=acc, accounting="firmware"), 1024, "last", 1)
    assert fw["ram_needed_kib"] == training_memory(net(1024), "last").firmware_kib + 8
    # the stored windows in RAM: 4 windows x 1024 values x 4 bytes = 16 KiB
    assert row_of(rec(accuracy=acc, dataset_in_ram=True), 1024, "last", 1)["ram_needed_kib"] == 16.12109375 + 16 + 8
    assert row_of(rec(accuracy=acc, reserve_kib=0.5), 1024, "last", 1)["ram_needed_kib"] == 16.12109375 + 0.5


def test_a_robust_round_validates_a_tenth_of_the_windows_and_holds_the_best_weights():
    # 20 windows: 2 validate, 18 train in 9 batches: an epoch 18 s + 9 x 8 s = 90 s; one validation pass (2 windows
    # forward only, 1 s each) before the round and after each epoch; extra RAM: best weights 8 x 4 B = 32 B and the
    # 2 x 2 confusion counts (u16, 8 B) = 40 B
    r = rec(modes=("last",), n_windows=20, robust=True, accuracy=measured({}))
    one, two = row_of(r, 1024, "last", 1), row_of(r, 1024, "last", 2)
    assert (one["n_windows"], one["n_val"], one["procedure"]) == (20, 2, "robust")
    assert (one["time_per_round_s"], two["time_per_round_s"]) == (94.0, 186.0)
    assert (one["energy_per_round_mj"], two["energy_per_round_mj"]) == pytest.approx((94.0, 186.0), rel=1e-12)
    assert one["robust_extra_kib"] == 40 / 1024
    assert one["ram_needed_kib"] == 16.12109375 + 40 / 1024 + 8
    assert one["memory_kib"] == 16.12109375  # the Table III figure leaves the extra out
    assert one["time_per_batch_s"] == 10.0
    # 9 windows: none validate; no window count (one batch per epoch): none either, the extra RAM still held
    r9 = row_of(rec(modes=("last",), n_windows=9, robust=True, accuracy=measured({})), 1024, "last", 1)
    assert (r9["n_val"], r9["time_per_round_s"]) == (0, 9 + 5 * 8)
    rn = row_of(rec(modes=("last",), n_windows=None, robust=True, accuracy=measured({})), 1024, "last", 1)
    assert (rn["n_windows"], rn["n_val"], rn["time_per_round_s"], rn["robust_extra_kib"]) == (2, 0, 10.0, 40 / 1024)
    plain = row_of(rec(modes=("last",), n_windows=20, accuracy=measured({})), 1024, "last", 1)
    assert (plain["n_val"], plain["time_per_round_s"], plain["procedure"]) == (0, 20 + 10 * 8, "plain")


def test_windows_per_epoch_may_depend_on_the_input_size():
    r = rec(input_sizes=(1024, 2048), modes=("last",), epochs=(1,), n_windows={1024: 10, 2048: None}.get)
    assert [(x["n_windows"], x["time_per_round_s"]) for x in r.table] == [(10, 10 + 5 * 8), (2, 2 + 8)]


def test_an_arch_instance_is_resized_and_a_mode_given_as_names_is_labelled():
    r = rec(arch=net(16), modes=(["d2"], ["d1", "d2"]), epochs=(1,), accuracy=measured({}))
    assert [(x["input_size"], x["mode"], x["params"]) for x in r.table] == [(1024, "last", 3083), (1024, "full", 3083)]
    assert r.table[1]["violations"] == ["power_source"]  # the names of every layer: Full, kept for charging
    r = rec(arch=net3, input_sizes=(16,), modes=(["d1", "d2"],), epochs=(1,), accuracy=measured({}))
    assert r.table[0]["mode"] == "d1,d2" and r.choice is r.table[0]


def test_each_budget_marks_its_violations():
    r = rec(
        input_sizes=(1024, 2048),
        ram_kib=60,
        time_s=6170,
        energy_mj=40,
        accuracy=measured({}),
    )
    got = {(x["input_size"], x["mode"], x["epochs"]): x["violations"] for x in r.table}
    assert got == {
        (1024, "last", 1): [],
        (1024, "last", 2): [],  # 40 mJ: on the budget, not above
        (1024, "tl", 1): ["energy"],  # 6170 s: on the time budget
        (1024, "tl", 2): ["time", "energy"],
        (1024, "full", 1): ["power_source", "energy"],
        (1024, "full", 2): ["power_source", "time", "energy"],
        (2048, "last", 1): [],
        (2048, "last", 2): [],
        (2048, "tl", 1): ["ram", "time", "energy"],  # 64.14 KiB > 60
        (2048, "tl", 2): ["ram", "time", "energy"],
        (2048, "full", 1): ["power_source", "ram", "time", "energy"],
        (2048, "full", 2): ["power_source", "ram", "time", "energy"],
    }
    assert [x["fits_ram"] for x in r.table] == [True] * 6 + [True, True, False, False, False, False]
    assert [x["feasible"] for x in r.table] == [True, True] + [False] * 4 + [True, True] + [False] * 4
    # on battery with Full allowed, and exactly at the RAM limit (64.14453125 KiB)
    r = rec(input_sizes=(2048,), modes=("full",), epochs=(1,), ram_kib=64.14453125, allow_full_on_battery=True)
    assert r.table[0]["violations"] == [] and r.choice is r.table[0]


def test_recommend_refuses_bad_arguments_by_name():
    cases = [
        (dict(power_source="solar"), "power_source must be one of ('battery', 'charging'), got 'solar'"),
        (dict(accounting="guess"), "accounting must be one of paper, peak, firmware, got 'guess'"),
        (dict(input_sizes=()), "input_sizes, modes and epochs must each list at least one value"),
        (dict(modes=()), "input_sizes, modes and epochs must each list at least one value"),
        (dict(epochs=()), "input_sizes, modes and epochs must each list at least one value"),
        (dict(epochs=(2, 0)), "epochs must be >= 1, got [2, 0]"),
        (dict(ram_kib=-1), "ram_kib must be a finite number >= 0, got -1"),
        (dict(reserve_kib=float("nan")), "reserve_kib must be a finite number >= 0, got nan"),
        (dict(time_s=float("inf")), "time_s must be a finite number >= 0, got inf"),
        (dict(energy_mj=-0.5), "energy_mj must be a finite number >= 0, got -0.5"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError) as e:
            rec(accuracy=measured({}), **kw)
        assert str(e.value) == msg, kw
    with pytest.raises(TypeError) as e:
        rec(accuracy=5)
    assert str(e.value) == "accuracy model must be a dataset name, a table or a callable, got int"
    with pytest.raises(TypeError) as e:
        rec(arch="paper_cnn", accuracy=measured({}))  # neither an Arch nor a factory T -> Arch
    assert str(e.value) == "arch must be an Arch or a function of the input size, got str"
    # 0 is a budget (nothing fits), not a refusal; epochs of 1 are accepted
    assert rec(epochs=(1,), time_s=0, accuracy=measured({})).binding == "time"
    assert rec(epochs=(1,), ram_kib=0, reserve_kib=0, accuracy=measured({})).binding == "ram"
    assert rec(epochs=(1,), energy_mj=0, accuracy=measured({})).binding == "energy"


# --- the accuracy model ------------------------------------------------------------------------------------------


def test_the_accuracy_model_may_be_a_dataset_name_a_table_a_callable_or_the_default(tmp_path, monkeypatch):
    row = row_of(rec(accuracy="wisdm"), 1024, "tl", 2)
    # WISDM TL at T=100 (clamped): 0.955 from No Pers. 0.813; 2 epochs
    assert row["accuracy"] == pytest.approx(0.813 + 0.142 * 0.6321205588, abs=1e-9)
    assert row["accuracy_source"] == "Table II prior (wisdm, TL, τ=2 epochs)"
    row = row_of(rec(accuracy={(1024, "tl"): 0.9}), 1024, "tl", 2)
    assert (row["accuracy"], row["accuracy_source"]) == (0.9, "measured (host-side simulation)")
    import numpy as np

    row = row_of(rec(accuracy=lambda T, m, e: np.float32(0.5)), 1024, "tl", 2)
    assert (row["accuracy"], type(row["accuracy"]), row["accuracy_source"]) == (0.5, float, "user accuracy model")
    monkeypatch.setenv("ODL_ASSETS", str(tmp_path))  # no shipped table: the paper's Table II (ST)
    row = row_of(rec(), 1024, "tl", 2)
    assert row["accuracy_source"] == "Table II prior (st, TL, τ=2 epochs)" and "accuracy_std" not in row
    (tmp_path / "accuracy_prior.json").write_text(json.dumps(LOSO), encoding="utf-8")
    row = row_of(rec(), 1024, "tl", 2)
    assert row["accuracy_source"] == "LOSO prior (WISDM-2019, 16 users, robust round): ± 0.100 over users, worst 0.500"
    # n: the fewest users of TL's cells (14 at T=2048)
    assert (row["accuracy_std"], row["accuracy_min"], row["accuracy_n"]) == (0.1, 0.5, 14)


def test_rows_carry_the_loso_spread_also_behind_measurements_but_not_for_table_ii():
    r = rec(input_sizes=(2048,), accuracy=LosoPrior(LOSO))
    tl = row_of(r, 2048, "tl", 1)
    assert (tl["accuracy_std"], tl["accuracy_min"], tl["accuracy_n"]) == (0.05, 0.7, 14)
    full = row_of(r, 2048, "full", 1)
    assert (full["accuracy_std"], full["accuracy_min"], full["accuracy_n"]) == (0.04, 0.8, 16)
    m = MeasuredAccuracy({(2048, "tl"): 0.9}, fallback=LosoPrior(LOSO))
    r = rec(input_sizes=(2048,), accuracy=m)
    assert "accuracy_std" not in row_of(r, 2048, "tl", 1)  # measured: no spread over users
    last = row_of(r, 2048, "last", 1)
    assert last["accuracy_source"].endswith(" (no measurement)") and last["accuracy_std"] == 0.05
    # a LOSO table without the general model's column: Table II's figure, no spread
    r = rec(input_sizes=(20,), accuracy=LosoPrior(LOSO, "only_tl"))
    assert "accuracy_std" not in row_of(r, 20, "tl", 1)


# --- the choice and its reason -----------------------------------------------------------------------------------


def test_no_constraint_binds_the_most_accurate_option_is_chosen_with_its_cost():
    acc = measured({(1024, "full", 2): 0.95, (1024, "tl", 2): 0.9})
    r = rec(power_source="charging", accuracy=acc)
    assert r.binding == "none" and r.choice is row_of(r, 1024, "full", 2)
    assert r.reason == (
        "No constraint binds: Full at T=1024 with 2 epochs reaches the best predicted F1 (0.950, user accuracy model) "
        "at the lowest cost, 28 KiB of training RAM, 12,300 s and 12,300 mJ per round."
    )


def test_the_power_source_binds_on_battery():
    acc = {(1024, "full", 2): 0.95, (1024, "tl", 2): 0.9}
    r = rec(accuracy=acc)
    assert r.binding == "power_source" and r.choice is row_of(r, 1024, "tl", 2)
    assert r.reason == (
        "The power source binds: Full at T=1024 with 2 epochs would reach F1 0.950 but Full personalization is kept "
        "for when the device is charging and it runs on battery, so TL at T=1024 with 2 epochs (F1 0.900, measured on "
        "your windows, 28 KiB of training RAM, 12,300 s and 12,300 mJ per round) is the best option within budget."
    )


def test_the_ram_budget_binds_and_names_the_most_accurate_option_it_rules_out():
    acc = {(2048, "full"): 0.97, (2048, "tl"): 0.96, (1024, "full"): 0.93, (1024, "tl"): 0.92}
    r = rec(input_sizes=(1024, 2048), power_source="charging", ram_kib=60, accuracy=measured(acc))
    assert r.binding == "ram" and r.choice is row_of(r, 1024, "full", 1)  # the same F1 in 1 epoch as in 2
    assert r.reason == (
        "The RAM budget binds: Full at T=2048 with 1 epoch would reach F1 0.970 but needs 56 KiB of RAM for training "
        "against 52 KiB left after the firmware reserve, so Full at T=1024 with 1 epoch (F1 0.930, user accuracy "
        "model, 28 KiB of training RAM, 6,170 s and 6,170 mJ per round) is the best option within budget."
    )


def test_the_time_and_energy_budgets_bind():
    acc = measured({(1024, "full", 2): 0.96, (1024, "full", 1): 0.93, (1024, "tl", 2): 0.95, (1024, "tl", 1): 0.92})
    r = rec(power_source="charging", time_s=10000, accuracy=acc)
    assert r.binding == "time" and r.choice is row_of(r, 1024, "full", 1)
    assert r.reason == (
        "The time budget binds: Full at T=1024 with 2 epochs would reach F1 0.960 but takes 12,300 s per round "
        "against a 10000 s budget, so Full at T=1024 with 1 epoch (F1 0.930, user accuracy model, 28 KiB of training "
        "RAM, 6,170 s and 6,170 mJ per round) is the best option within budget."
    )
    r = rec(power_source="charging", energy_mj=10000.5, accuracy=acc)
    assert r.binding == "energy" and r.choice is row_of(r, 1024, "full", 1)
    assert r.reason == (
        "The energy budget binds: Full at T=1024 with 2 epochs would reach F1 0.960 but uses 12,300 mJ per round "
        "against a 10000.5 mJ budget, so Full at T=1024 with 1 epoch (F1 0.930, user accuracy model, 28 KiB of training "
        "RAM, 6,170 s and 6,170 mJ per round) is the best option within budget."
    )
    # both at once rule out the same options: the first in the order power source, RAM, time, energy
    assert rec(power_source="charging", time_s=10000, energy_mj=10000, accuracy=acc).binding == "time"


def test_the_binding_constraint_is_the_one_that_rules_out_most_better_options():
    # better options: Full 2048 (RAM and time), Full 1024 x 2 epochs and TL 1024 x 2 epochs (time): time 3, RAM 1
    acc = {(2048, "full", 1): 0.99, (1024, "full", 2): 0.97, (1024, "tl", 2): 0.96, (1024, "full", 1): 0.93}
    r = rec(input_sizes=(1024, 2048), power_source="charging", time_s=10000, accuracy=measured(acc))
    assert r.binding == "time" and r.choice is row_of(r, 1024, "full", 1)
    assert r.reason.startswith(
        "The time budget binds: Full at T=2048 with 1 epoch would reach F1 0.990 but takes 12,300 s per round "
        "against a 10000 s budget, so Full at T=1024 with 1 epoch (F1 0.930,"
    )


def test_among_equally_accurate_ruled_out_options_the_cheapest_is_named():
    # Full 2048 in 1 or 2 epochs: the same F1; the reason names the 1-epoch one (less energy)
    acc = {(2048, "full"): 0.97, (1024, "tl"): 0.9}
    r = rec(input_sizes=(1024, 2048), modes=("tl", "full"), power_source="charging", ram_kib=60, accuracy=acc)
    assert r.reason.startswith(
        "The RAM budget binds: Full at T=2048 with 1 epoch would reach F1 0.970 but needs 56 KiB"
    )


def test_an_option_within_the_tolerance_of_the_best_wins_when_cheaper():
    acc = measured({(1024, "tl", 2): 0.9, (1024, "last", 2): 0.8985, (1024, "last", 1): 0.8975})
    r = rec(power_source="charging", accuracy=acc)
    assert r.binding == "none" and r.choice is row_of(r, 1024, "last", 2)
    assert r.reason == (
        "No constraint binds: last-layer at T=1024 with 2 epochs reaches the best predicted F1 (0.898, user accuracy "
        "model) at the lowest cost, 16 KiB of training RAM, 40 s and 40 mJ per round."
    )
    # exactly on the tolerance counts as "as good" (0.75 - 0.25 = 0.5, exact in binary)
    acc = measured({(1024, "tl", 2): 0.75, (1024, "last", 1): 0.5}, default=0.25)
    r = rec(power_source="charging", accuracy=acc, accuracy_tolerance=0.25)
    assert r.choice is row_of(r, 1024, "last", 1)
    r = rec(power_source="charging", accuracy=acc, accuracy_tolerance=0.0)
    assert r.choice is row_of(r, 1024, "tl", 2)


def test_a_ruled_out_option_only_as_good_within_the_tolerance_binds_nothing():
    # Full (ruled out on battery) at 0.75, TL at 0.5: with a tolerance of 0.25 Full is not better
    acc = measured({(1024, "full"): 0.75, (1024, "tl"): 0.5, (1024, "last"): 0.125})
    r = rec(accuracy=acc, accuracy_tolerance=0.25)
    assert r.binding == "none" and r.choice is row_of(r, 1024, "tl", 1)
    assert rec(accuracy=acc, accuracy_tolerance=0.125).binding == "power_source"


def test_ties_in_energy_and_time_go_to_the_option_with_less_ram():
    # last-layer at T=2048 and at T=1024: 20 s and 20 mJ each; T=1024 needs less RAM although listed second
    r = rec(input_sizes=(2048, 1024), modes=("last",), epochs=(1,), accuracy=measured({}))
    assert r.choice is row_of(r, 1024, "last", 1)
    # and the fewest epochs (cheaper) among equally accurate ones
    r = rec(modes=("last",), epochs=(2, 1), accuracy=measured({}))
    assert r.choice is row_of(r, 1024, "last", 1)


def test_when_nothing_fits_the_reason_names_the_budget_and_the_cheapest_option():
    acc = measured({})
    r = rec(modes=("full",), accuracy=acc)
    assert (r.choice, r.binding) == (None, "power_source")
    assert r.reason == (
        "Nothing fits: every option is Full personalization, which is kept for when the device is charging."
    )
    assert not any(x["chosen"] for x in r.table)
    r = rec(input_sizes=(2048, 1024), ram_kib=20, accuracy=acc)
    assert (r.choice, r.binding) == (None, "ram")
    assert r.reason == (
        "Nothing fits the RAM budget: even the cheapest option, last-layer at T=1024 with 1 epoch, needs 16 KiB of "
        "RAM for training against 12 KiB left after the firmware reserve."
    )
    r = rec(input_sizes=(2048, 1024), ram_kib=16, reserve_kib=1024, accuracy=acc)  # the Estimator panel allows it
    assert (r.choice, r.binding) == (None, "ram")
    assert r.reason == (  # was: "… against -1008 KiB left after the firmware reserve."
        "Nothing fits the RAM budget: even the cheapest option, last-layer at T=1024 with 1 epoch, needs 16 KiB of "
        "RAM for training, but the firmware reserve (1024 KiB) takes all of the 16 KiB of RAM: give the device's "
        "RAM and a smaller reserve."
    )
    r = rec(input_sizes=(2048, 1024), ram_kib=16, reserve_kib=16, accuracy=acc)  # exactly all of it: 0 KiB left
    assert r.reason.endswith(
        "the firmware reserve (16 KiB) takes all of the 16 KiB of RAM: give the device's RAM and a smaller reserve."
    )
    r = rec(input_sizes=(2048, 1024), ram_kib=16, reserve_kib=15, accuracy=acc)  # 1 KiB left: compared with it
    assert r.reason.endswith("needs 16 KiB of RAM for training against 1 KiB left after the firmware reserve.")
    r = rec(input_sizes=(2048, 1024), time_s=10, accuracy=acc)
    assert (r.choice, r.binding) == (None, "time")
    assert r.reason == (
        "Nothing fits the time budget: even the cheapest option, last-layer at T=2048 with 1 epoch, takes 20 s per "
        "round against a 10 s budget."
    )
    r = rec(epochs=(2, 1), energy_mj=10.5, accuracy=acc)
    assert (r.choice, r.binding) == (None, "energy")
    assert r.reason == (
        "Nothing fits the energy budget: even the cheapest option, last-layer at T=1024 with 1 epoch, uses 20 mJ per "
        "round against a 10.5 mJ budget."
    )
    # RAM and time both rule out everything: RAM is named (power source, RAM, time, energy)
    assert rec(ram_kib=20, time_s=10, accuracy=acc).binding == "ram"
    # Full only, on battery and too big: the power source is named
    assert rec(modes=("full",), ram_kib=20, accuracy=acc).binding == "power_source"


def test_when_no_budget_rules_out_everything_alone_the_closest_option_is_named():
    # last-layer at T=1024 is too slow (200 windows: 1000 s), at T=2048 too big (40.12 KiB > 38): each option breaks
    # something, no budget breaks them all; the closest breaks one budget and costs least
    r = rec(
        input_sizes=(1024, 2048),
        modes=("last", "full"),
        epochs=(1,),
        power_source="charging",
        ram_kib=38,
        time_s=100,
        n_windows={1024: 200, 2048: 4}.get,
        accuracy=measured({}),
    )
    assert (r.choice, r.binding) == (None, "infeasible")
    assert [x["violations"] for x in r.table] == [["time"], ["time"], ["ram"], ["ram", "time"]]
    assert r.reason == (
        "Nothing fits all budgets together: the closest option, last-layer at T=2048 with 1 epoch, still breaks the "
        "RAM budget."
    )
    # two budgets named: Full at T=2048 (battery, 64.14 KiB) and d1+d2 of a three-layer net at T=16 (slow)
    r = recommend(
        lambda T: net(T) if T == 2048 else net3(T),
        input_sizes=(16, 2048),
        modes=(["d1", "d2"],),
        epochs=(1,),
        batch_size=2,
        profile=HAND,
        n_windows={16: 10000, 2048: 4}.get,
        time_s=20000,
        energy_mj=20000,
        accuracy=measured({}),
    )
    assert [x["violations"] for x in r.table] == [["time", "energy"], ["power_source", "ram"]]
    assert r.reason == (
        "Nothing fits all budgets together: the closest option, Full at T=2048 with 1 epoch, still breaks the power "
        "source and RAM budget."
    )


def test_the_reason_names_where_the_predicted_f1_comes_from():
    r = rec(input_sizes=(2048,), modes=("tl",), epochs=(1000,), ram_kib=100, accuracy=LosoPrior(LOSO))
    assert r.reason == (
        "No constraint binds: TL at T=2048 with 1000 epochs reaches the best predicted F1 (0.900 ± 0.050, LOSO prior "
        "(WISDM-2019, 16 users, robust round)) at the lowest cost, 56 KiB of training RAM, 12,300,000 s and 12,300,000 mJ "
        "per round."
    )
    r = rec(modes=("tl",), epochs=(1,), accuracy="st")
    # ST TL at T=100 (clamped) 0.938 from No Pers. 0.813 after 1 epoch: 0.813 + 0.125 x 0.3934693 = 0.862
    assert r.reason == (
        "No constraint binds: TL at T=1024 with 1 epoch reaches the best predicted F1 (0.862, the paper's Table II) at "
        "the lowest cost, 28 KiB of training RAM, 6,170 s and 6,170 mJ per round."
    )
    assert _src({"accuracy_source": "LOSO prior (x, 3 users): ± 0.1 over users"}) == " ± nan, LOSO prior (x, 3 users)"
    assert _src({"accuracy_source": "measured (host-side simulation)"}) == ", measured on your windows"
    assert _src({"accuracy_source": "Table II prior (st, TL, τ=2 epochs) (no measurement)"}) == ", the paper's Table II"
    assert _src({"accuracy_source": "my model"}) == ", my model"
    assert _src({"accuracy_source": ""}) == "" and _src({}) == ""


def test_options_are_labelled_as_a_user_reads_them():
    assert _label({"mode": "tl", "input_size": 20, "epochs": 1}) == "TL at T=20 with 1 epoch"
    assert _label({"mode": "full", "input_size": 100, "epochs": 2}) == "Full at T=100 with 2 epochs"
    assert _label({"mode": "last", "input_size": 40, "epochs": 10}) == "last-layer at T=40 with 10 epochs"
    assert _label({"mode": "conv2,dense2", "input_size": 60, "epochs": 0}) == "conv2,dense2 at T=60 with 0 epochs"


def test_summarize_gives_one_line_per_row():
    r = rec(modes=("last", "tl"), accuracy=measured({(1024, "tl", 2): 0.9}, default=0.8))
    assert summarize(r.table) == [
        "last-layer at T=1024 with 1 epoch: F1 0.800, 20 mJ, 20 s",
        "last-layer at T=1024 with 2 epochs: F1 0.800, 40 mJ, 40 s",
        "TL at T=1024 with 1 epoch: F1 0.800, 6,170 mJ, 6,170 s",
        "TL at T=1024 with 2 epochs: F1 0.900, 12,300 mJ, 12,300 s",
    ]
    assert summarize([]) == []


def test_recommendation_to_dict_is_a_copy_of_its_parts():
    r = rec(modes=("last",), epochs=(1,), accuracy=measured({}))
    d = r.to_dict()
    assert d == {"choice": r.choice, "reason": r.reason, "binding": "none", "budgets": r.budgets, "table": r.table}
    d["budgets"]["time_s"] = 5
    d["table"].append({})
    assert r.budgets["time_s"] is None and len(r.table) == 1
    empty = Recommendation(None, "why", "infeasible", [], {})
    assert empty.to_dict() == {"choice": None, "reason": "why", "binding": "infeasible", "budgets": {}, "table": []}


def test_windows_from_a_recording_are_non_overlapping():
    f = n_windows_from_recording(60)  # 60 s at 20 Hz: 1200 samples
    assert (f(100), f(40), f(1200), f(1201), f(5000)) == (12, 30, 1, 1, 1)
    assert n_windows_from_recording(10.5, 20)(40) == 5  # 210 samples
    assert n_windows_from_recording(10, 50)(100.0) == 5
    assert n_windows_from_recording(1, 0.5)(1) == 1  # half a sample: at least one window
    for s, hz, shown in (
        (0, 20.0, "0, 20.0"),
        (10, 0, "10, 0"),
        (-1, 20.0, "-1, 20.0"),
        (float("nan"), 20.0, "nan, 20.0"),
    ):
        with pytest.raises(ValueError) as e:
            n_windows_from_recording(s, hz)
        assert str(e.value) == f"recording seconds and rate must be > 0, got {shown}"


# --- estimate() (estimator/core.py) ----------------------------------------------------------------------------
#
# net(4) with OPS, Full (= TL here, both dense layers): per sample forward dense 4x3 + 3x2 = 18 MACs and 10
# elementwise (biases 3 + 2, relu 3, softmax 2); backward weight gradients 18, d2's input gradient 6, elementwise
# 10 (biases 5, relu 3, softmax 2): 18 + 2x18 + 3x6 + 0.5x20 = 82 cycles = 0.082 s at 1 kHz, plus I/O 0.01 +
# 4 x 0.001 = 0.014 s -> 0.096 s.  Update 10 x 23 / 1000 = 0.23 s.  Last (d2): 18 + 2x6 + 0.5x(10 + 4) = 37
# cycles -> 0.051 s; update 10 x 8 / 1000 = 0.08 s.  Power 2 V x (1 mA + 1 µA/Hz x 1000 Hz) = 4 mW.


def test_time_per_sample_update_and_batch_by_hand():
    a = net(4)
    assert time_per_sample_s(a, "full", OPS) == pytest.approx(0.096, abs=1e-15)
    assert time_per_sample_s(a, "last", OPS) == pytest.approx(0.051, abs=1e-15)
    assert time_per_sample_s(a, frozenset(), OPS) == pytest.approx(
        0.023 + 0.014, abs=1e-15
    )  # forward only: 18 + 0.5 x 10
    assert time_per_sample_s(a, "full", OPS, 2000) == pytest.approx(0.041 + 0.014, abs=1e-15)
    assert update_time_s(a, "full", OPS) == pytest.approx(0.23, abs=1e-15)
    assert update_time_s(a, frozenset({"d2"}), OPS) == pytest.approx(0.08, abs=1e-15)
    assert update_time_s(a, "full", OPS, 2000) == pytest.approx(0.115, abs=1e-15)
    assert time_per_batch_s(a, "full", 4, OPS) == pytest.approx(4 * 0.096 + 0.23, abs=1e-15)
    assert time_per_batch_s(a, "full", 1, OPS) == pytest.approx(0.326, abs=1e-15)
    assert time_per_batch_s(a, "full", 2.0, OPS, 2000) == pytest.approx(2 * 0.055 + 0.115, abs=1e-15)
    with pytest.raises(ValueError) as e:
        time_per_batch_s(a, "full", 0, OPS)
    assert str(e.value) == "batch_size must be >= 1, got 0"


def test_estimate_row_by_hand():
    est = estimate(net(4), "full", 4, OPS, n_windows=10, epochs=3)
    # 10 windows: 3 batches per epoch (the last one partial): 10 x 0.096 + 3 x 0.23 = 1.65 s
    assert est.row() == {
        "arch": "net4",
        "input_size": 4,
        "mode": "full",
        "trainable": ["d1", "d2"],
        "batch_size": 4,
        "profile": "ops",
        "clock_hz": 1000.0,
        "params": 23,
        "trainable_params": 23,
        "memory_kib": 260 / 1024,
        "memory_peak_kib": 232 / 1024,
        "memory_firmware_kib": training_memory(net(4), "full").firmware_kib,
        "ram_needed_kib": (260 + 448) / 1024,  # reserve 256 + 128 + 64
        "ram_kib": 1.0,
        "fits_ram": True,
        "macs_per_sample": {
            "conv_fwd": 0,
            "conv_dw": 0,
            "conv_dx": 0,
            "dense_fwd": 18,
            "dense_dw": 18,
            "dense_dx": 6,
            "elementwise": 20,
        },
        "macs_per_sample_total": 42,
        "ops_per_batch": {
            "conv_fwd": 0,
            "conv_dw": 0,
            "conv_dx": 0,
            "dense_fwd": 72,
            "dense_dw": 72,
            "dense_dx": 24,
            "elementwise": 80 + 23,
        },
        "time_per_sample_s": pytest.approx(0.096, abs=1e-15),
        "time_per_batch_s": pytest.approx(0.614, abs=1e-15),
        "n_windows": 10,
        "epochs": 3,
        "time_per_epoch_s": pytest.approx(1.65, abs=1e-14),
        "time_per_round_s": pytest.approx(4.95, abs=1e-14),
        "current_ma": pytest.approx(2.0, abs=1e-15),
        "power_mw": pytest.approx(4.0, abs=1e-15),
        "energy_per_batch_mj": pytest.approx(2.456, abs=1e-14),
        "energy_per_epoch_mj": pytest.approx(6.6, abs=1e-14),
        "energy_per_round_mj": pytest.approx(19.8, abs=1e-13),
    }
    assert est.batches_per_epoch == 3 and est.current_a == pytest.approx(2e-3, abs=1e-18)
    assert est.memory_for("paper") == 260 / 1024 and est.memory_for("peak") == 232 / 1024
    assert est.memory_for("firmware") == training_memory(net(4), "full").firmware_kib
    # without windows: no epoch or round figures
    row = estimate(net(4), "last", 2, OPS).row()
    assert (row["n_windows"], row["time_per_epoch_s"], row["time_per_round_s"]) == (None, None, None)
    assert (row["energy_per_epoch_mj"], row["energy_per_round_mj"]) == (None, None)
    assert row["time_per_batch_s"] == pytest.approx(2 * 0.051 + 0.08, abs=1e-15)
    assert row["energy_per_batch_mj"] == pytest.approx(4 * 0.182, abs=1e-14)
    assert (row["trainable"], row["trainable_params"], row["mode"]) == (["d2"], 8, "last")


def test_estimate_at_another_clock():
    est = estimate(net(4), "full", 2, OPS, n_windows=3, clock_hz=2000)
    # 2 batches: 3 x 0.055 + 2 x 0.115 = 0.395 s; 2 V x 3 mA = 6 mW
    assert (est.clock_hz, est.time_per_epoch_s) == (2000.0, pytest.approx(0.395, abs=1e-15))
    assert est.power_w == pytest.approx(6e-3, abs=1e-18) and est.batches_per_epoch == 2
    assert est.time_per_round_s == pytest.approx(0.395, abs=1e-15)


def test_estimate_memory_the_reserve_and_the_stored_windows():
    est = estimate(net(4), "full", 4, OPS, n_windows=10, dataset_in_ram=True)
    m = est.memory
    assert m.excluded_bytes == {
        "stack": 256,
        "firmware_static": 128,
        "protocol_buffers": 64,
        "code_flash": 4096,
        "local_dataset": 160,  # 10 windows x 4 values x 4 bytes
    }
    assert (m.ram_bytes, m.firmware_reserve_bytes, m.dataset_in_ram) == (1024, 448, True)
    assert (m.ram_needed_bytes, m.ram_needed_peak_bytes, m.fits_ram) == (260 + 448 + 160, 232 + 448 + 160, True)
    d = m.to_dict()
    assert {k: d[k] for k in list(d)[-7:]} == {
        "excluded_bytes": m.excluded_bytes,
        "ram_bytes": 1024,
        "firmware_reserve_bytes": 448,
        "dataset_in_ram": True,
        "ram_needed_bytes": 868,
        "ram_needed_peak_bytes": 840,
        "fits_ram": True,
    }
    assert d["paper_bytes"] == 260 and d["peak_bytes"] == 232
    d["excluded_bytes"]["stack"] = 0
    assert m.excluded_bytes["stack"] == 256
    # not kept in RAM: counted nowhere; no windows: nothing to keep, and said so
    plain = estimate(net(4), "full", 4, OPS, n_windows=10).memory
    assert (plain.dataset_in_ram, plain.ram_needed_bytes, plain.ram_needed_peak_bytes) == (False, 708, 680)
    assert plain.excluded_bytes["local_dataset"] == 160
    none = estimate(net(4), "full", 4, OPS, dataset_in_ram=True)
    assert none.memory.dataset_in_ram is False and "local_dataset" not in none.memory.excluded_bytes
    assert none.notes == (
        "memory is the paper's *estimated* accounting; Table III's time and power are measurements",
        "dataset_in_ram ignored: n_windows not given",
    )
    assert estimate(net(4), "full", 4, OPS, n_windows=10).notes == (
        "memory is the paper's *estimated* accounting; Table III's time and power are measurements",
    )


def test_fits_ram_up_to_the_last_byte():
    from dataclasses import replace

    assert estimate(net(4), "full", 4, replace(OPS, ram_bytes=708)).memory.fits_ram is True
    assert estimate(net(4), "full", 4, replace(OPS, ram_bytes=707)).memory.fits_ram is False
    assert estimate(net(4), "full", 4, replace(OPS, ram_bytes=707)).row()["fits_ram"] is False
    tm = training_memory(net(4), "full")
    big = MemoryEstimate(tm, {"local_dataset": 100}, 900, 448, True)
    assert (big.ram_needed_bytes, big.ram_needed_peak_bytes, big.fits_ram) == (808, 780, True)
    small = MemoryEstimate(tm, {}, 900, 448, True)  # no stored windows listed: nothing added
    assert (small.ram_needed_bytes, small.ram_needed_peak_bytes) == (708, 680)


def test_estimate_to_dict_adds_memory_ops_inference_and_notes():
    est = estimate(net(4), "last", 4, OPS, n_windows=4)
    d = est.to_dict()
    assert list(d)[-4:] == ["memory", "ops", "inference", "notes"]
    assert d["memory"]["ram_needed_bytes"] == 188 + 448 and d["ops"]["macs_per_sample"] == 18 + 6
    assert d["inference"]["inference_macs"] == 18 and d["notes"] == [
        "memory is the paper's *estimated* accounting; Table III's time and power are measurements"
    ]
    assert {k: d[k] for k in est.row()} == est.row()
    json.dumps(d)


def test_estimate_refuses_bad_arguments_by_name():
    a = net(4)
    for kw, msg in (
        (dict(batch_size=0), "batch_size must be >= 1, got 0"),
        (dict(epochs=0), "epochs must be >= 1, got 0"),
        (dict(n_windows=0), "n_windows must be >= 1, got 0"),
        (dict(clock_hz=-1.0), "clock_hz must be > 0, got -1.0"),
        (dict(clock_hz=float("nan")), "clock_hz must be > 0, got nan"),
    ):
        with pytest.raises(ValueError) as e:
            estimate(a, "full", profile=OPS, **kw)
        assert str(e.value) == msg
    # the smallest accepted values
    one = estimate(a, "full", 1, OPS, n_windows=1, epochs=1)
    assert (one.batches_per_epoch, one.time_per_round_s) == (1, pytest.approx(0.326, abs=1e-15))


def test_estimate_echoes_the_trainable_set_in_layer_order():
    a = net3(4)
    est = estimate(a, ["d2", "d1"], 1, OPS)
    assert (est.mode, est.trainable) == ("d1,d2", ("d1", "d2"))
    assert est.trainable_params == 15 + 8  # d1 4x3+3, d2 3x2+2
    assert estimate(a, "none", 1, OPS).trainable_params == 0 and estimate(a, "none", 1, OPS).trainable == ()
    assert estimate(a, "TL", 1, OPS).mode == "tl" and estimate(a, frozenset({"d3"}), 1, OPS).mode == "last"
    assert estimate(net(4), "tl", 1, OPS, epochs=2).epochs == 2


def test_mode_label_names_a_set_by_its_mode_when_it_is_one():
    a = net3(4)
    assert [mode_label(a, m) for m in (" TL ", "Full", "NONE", "last", "d3")] == ["tl", "full", "none", "last", "last"]
    assert mode_label(a, ["d2", "d3"]) == "tl" and mode_label(a, ["d1", "d2", "d3"]) == "full"
    assert mode_label(a, frozenset({"d3"})) == "last" and mode_label(a, frozenset()) == "none"
    assert mode_label(a, ["d3", "d1"]) == "d1,d3" and mode_label(a, "d2,d1") == "d1,d2"
    assert mode_label(net(4), ["d1", "d2"]) == "full"  # also TL's set: Full comes first
    # no Dense layer: 'tl' and 'last' do not exist, the names are kept
    convs = Arch((6, 1), (Layer("conv1d", "c1", filters=2, kernel=3), Layer("conv1d", "c2", filters=1, kernel=2)))
    assert mode_label(convs, ["c2"]) == "c2" and mode_label(convs, ["c1", "c2"]) == "full"
    assert mode_label(convs, frozenset()) == "none"


def test_paper_estimate_matches_table_iii_tl_at_t20():
    # the paper's Table III: TL at T=20, 2.33 s per batch of 32 at 2.65 mW
    est = estimate(paper_cnn(20))
    assert est.time_per_batch_s == pytest.approx(2.33, rel=5e-5)
    assert est.power_w * 1e3 == pytest.approx(3.3 * (0.0752 + 0.091 * 8), rel=1e-12)


# --- more of the recommender's corners ---------------------------------------------------------------------------


def test_measured_accuracy_falls_back_to_the_priors_column_of_the_mode():
    # ST Full at T=20: 0.959 from No Pers. 0.804, 1 epoch: 0.804 + 0.155 x 0.3934693403
    v, src = MeasuredAccuracy({(40, "tl"): 0.9}).lookup(20, "full", 1)
    assert v == pytest.approx(0.804 + 0.155 * 0.3934693403, abs=1e-9)
    assert src == "Table II prior (st, FULL, τ=2 epochs) (no measurement)"


def test_a_robust_round_of_a_layer_that_is_not_the_last_keeps_only_its_own_weights():
    # training d1 only: the best weights are d1's 3 x 1024 + 3 = 3075 values (12300 B, 12304 aligned) + 8 B counts
    r = rec(modes=(["d1"],), epochs=(1,), n_windows=20, robust=True, accuracy=measured({}))
    row = r.table[0]
    assert (row["mode"], row["robust_extra_kib"]) == ("d1", (12304 + 8) / 1024)


def test_a_robust_rounds_validation_pass_costs_its_windows_forward_time():
    # 2 s per window: 18 training windows 36 s + 9 updates of 8 s = 108 s per epoch; validation 2 windows x 2 s = 4 s
    # before the round and after each epoch
    from dataclasses import replace

    r = rec(profile=replace(HAND, io_s_per_window=2.0), modes=("last",), n_windows=20, robust=True, accuracy={})
    assert [x["time_per_round_s"] for x in r.table] == [108 + 2 * 4, 2 * 108 + 3 * 4]
    assert [x["energy_per_round_mj"] for x in r.table] == pytest.approx([116.0, 228.0], rel=1e-12)


def test_a_profile_that_costs_nothing_gives_rounds_of_zero_seconds_and_millijoules():
    from dataclasses import replace

    r = rec(profile=replace(HAND, cycles={}, io_s_per_window=0.0), modes=("tl",), accuracy=measured({}))
    assert [(x["time_per_round_s"], x["energy_per_round_mj"]) for x in r.table] == [(0.0, 0.0), (0.0, 0.0)]


def test_measured_options_do_not_read_the_priors_spread():
    # a prior table whose cells carry only the mean (no spread): every option measured, so it is never read
    prior = LosoPrior(
        {"datasets": {"wisdm2019": {"modes": {"tl": {"20": {"mean": 0.5}}, "none": {"20": {"mean": 0.4}}}}}}
    )
    table = {(1024, m): 0.9 for m in ("last", "tl", "full")}
    r = rec(accuracy=MeasuredAccuracy(table, fallback=prior))
    assert [x["accuracy_source"] for x in r.table] == ["measured (host-side simulation)"] * 6
    assert not any("accuracy_std" in x for x in r.table)


def test_a_set_of_layer_names_is_checked_like_a_list():
    # (a frozenset used to be taken unchecked: unknown names gave mode "" and nothing trained, a relu a KeyError)
    from estimator.arch import ArchError

    a = net(4)
    for names, msg in (
        (frozenset({"zz"}), "trainable layer 'zz' is not in 'net4' (layers: d1, r, d2, s)"),
        (frozenset({"r", "d2"}), "layer 'r' (relu) has no parameters to train"),
    ):
        for call in (
            lambda: estimate(a, names, 4, OPS),
            lambda: time_per_sample_s(a, names, OPS),
            lambda: update_time_s(a, names, OPS),
            lambda: mode_label(a, names),
        ):
            with pytest.raises(ArchError) as e:
                call()
            assert str(e.value) == msg
    assert estimate(a, frozenset({"d2", "d1"}), 4, OPS).trainable == ("d1", "d2")


def test_mode_label_returns_a_named_mode_as_given():
    convs = Arch((6, 1), (Layer("conv1d", "c1", filters=2, kernel=3), Layer("conv1d", "c2", filters=1, kernel=2)))
    assert (mode_label(convs, "last"), mode_label(convs, " TL")) == ("last", "tl")  # not resolved: no Dense layer
    bare = Arch((4,), (Layer("relu", "r"),))  # no parameters at all: "none" stays "none"
    assert mode_label(bare, "none") == "none" and mode_label(bare, "Full") == "full"


@pytest.mark.parametrize(
    "x, text",
    [
        (0.0, "0"),
        (0.000123, "0.000123"),
        (0.697, "0.697"),
        (44.34, "44.3"),
        (999.4, "999"),
        (999.6, "1,000"),  # rounds up to four digits: no "1e+03"
        (14_237.0, "14,200"),  # was "1.42e+04" (the Estimator's s/round at batch 1024 × 100 epochs)
        (12_345_678.0, "12,300,000"),
        (-5432.0, "-5,430"),
    ],
)
def test_three_significant_digits_never_in_exponent_notation(x, text):
    from estimator.recommend import fmt3

    assert fmt3(x) == text
