"""Training-round core (app/core/rounds.py): energy attribution, data, metrics, and whole rounds on the
virtual bench (emulated NUCLEO + LPM01A on one simulated clock)."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from app.core.energy import d7_intervals, round_totals
from app.core.procedure import PLAIN, ROBUST
from app.core.round_history import ESTIMATOR_DRIVEN
from app.core.rounds import (
    BatchRow,
    RoundConfig,
    RoundError,
    RoundRunner,
    RoundState,
    align_batches,
    attribute_energy,
    calibration_records,
    export_round,
    local_windows,
    metrics_from_confusion,
    personalized_meta,
    personalized_model,
    round_report,
    round_rows,
)
from app.core.store import Store
from app.core.streams import SampleStream
from device.nucleo.fwimage import FIRMWARE_VERSION
from tests.roundkit import bench_context, labelled_dataset, wait_for

TICK = 1_000_000


def rows_for(durations, start_tick=5_000_000):
    rows, t = [], start_tick
    for i, d in enumerate(durations):
        e = t + int(round(d * TICK))
        rows.append(BatchRow(i, "main", 0, i, 32, 1.0, t, e, 0, d))
        t = e
    return rows


# --- alignment -----------------------------------------------------------------------------------------
def test_align_exact_edges_with_latency_offset():
    rows = rows_for([2.0, 2.0, 0.5])
    edges = [100.0, 102.0, 104.0, 104.5]
    # the host saw the round start 80 ms late; an unrelated edge 1.5 s earlier must not be chosen
    spans = align_batches(rows, [98.5] + edges, tick_hz=TICK, round_start_tick=5_000_000, anchor_t=100.08, rate_hz=1000)
    assert [s[2] for s in spans] == ["d7"] * 3
    assert [(s[0], s[1]) for s in spans] == [(100.0, 102.0), (102.0, 104.0), (104.0, 104.5)]


def test_align_when_the_power_stream_lags_the_host():
    # at a fast simulated clock the stream's end (the host's anchor) can trail the board by seconds
    rows = rows_for([2.0, 2.0])
    edges = [90.0, 96.0, 98.0, 100.0]
    spans = align_batches(
        rows, edges, tick_hz=TICK, round_start_tick=5_000_000, anchor_t=93.0, rate_hz=1000, earliest_t=92.9
    )
    assert spans == [(96.0, 98.0, "d7"), (98.0, 100.0, "d7")]


def test_align_missing_edge_falls_back_for_that_batch_only():
    rows = rows_for([1.0] * 5)
    edges = [50.0, 51.0, 52.0, 54.0, 55.0]  # the edge at 53.0 was lost
    spans = align_batches(rows, edges, tick_hz=TICK, round_start_tick=5_000_000, anchor_t=50.01, rate_hz=1000)
    assert [s[2] for s in spans] == ["d7", "d7", "d7-interp", "d7", "d7"]
    assert spans[2][1] == pytest.approx(53.0)
    assert spans[3] == (pytest.approx(53.0), 54.0, "d7")


def test_align_recovers_a_lost_round_start_edge():
    rows = rows_for([7.9, 7.9, 7.9, 2.2])
    edges = [12.5, 47.6, 55.5, 63.4, 65.6]  # an earlier round's edge, then the start edge (39.7) is lost
    spans = align_batches(
        rows, edges, tick_hz=TICK, round_start_tick=5_000_000, anchor_t=39.3, rate_hz=1000, earliest_t=39.0
    )
    assert [s[2] for s in spans] == ["d7"] * 4
    assert spans[0] == (pytest.approx(39.7), 47.6, "d7")


def test_align_tolerates_spurious_edges_and_clock_drift():
    rows = rows_for([2.0] * 4)
    drift = 1.0 + 300e-6  # LPM01A clock 300 ppm fast relative to the board tick
    edges = [10.0 + 2.0 * k * drift for k in range(5)] + [11.3, 13.71]
    spans = align_batches(rows, edges, tick_hz=TICK, round_start_tick=5_000_000, anchor_t=10.02, rate_hz=1000)
    assert [s[2] for s in spans] == ["d7"] * 4
    assert spans[-1][1] == pytest.approx(10.0 + 8.0 * drift)


@pytest.mark.parametrize("late, source", [(0.0120, "d7"), (0.0122, "d7-interp")])
def test_align_matching_tolerance_is_1_percent_plus_two_samples(late, source):
    # a 1 s batch at 1 kHz: its end edge may be 1 % + 2 samples + 0.1 ms (0.0121 s) away from the board's ticks
    spans = align_batches(
        rows_for([1.0]), [10.0, 11.0 + late], tick_hz=TICK, round_start_tick=5_000_000, anchor_t=10.0, rate_hz=1000
    )
    assert spans[0][2] == source and spans[0][0] == 10.0


@pytest.mark.parametrize(
    "edges, end",
    [
        ([10.0, 10.998, 11.009], 10.998),  # both within tolerance: the nearer one, before the prediction
        ([10.0, 10.995, 11.003], 11.003),  # ... or after it
        ([10.0, 11.0 - 2**-7, 11.0 + 2**-7], 11.0 - 2**-7),  # equally near: the earlier one
    ],
)
def test_align_takes_the_nearest_edge(edges, end):
    spans = align_batches(rows_for([1.0]), edges, tick_hz=TICK, round_start_tick=5_000_000, anchor_t=10.0, rate_hz=1000)
    assert spans == [(10.0, end, "d7")]


def test_align_batches_with_a_pause_between_them():
    # the board paused 0.5 s between the batches (e.g. an evaluation): the second starts 0.5 s after the
    # first one's end edge, not at it; also when that edge was lost
    rows = [BatchRow(0, "main", 0, 0, 32, 1.0, 5_000_000, 6_000_000, 0, 1.0)]
    rows.append(BatchRow(1, "main", 1, 0, 32, 1.0, 6_500_000, 7_500_000, 0, 1.0))
    kw = dict(tick_hz=TICK, round_start_tick=5_000_000, anchor_t=10.0, rate_hz=1000)
    assert align_batches(rows, [10.0, 11.0, 12.5], **kw) == [(10.0, 11.0, "d7"), (11.5, 12.5, "d7")]
    assert align_batches(rows, [10.0, 12.5], **kw) == [(10.0, 11.0, "d7-interp"), (11.5, 12.5, "d7")]


def test_align_with_a_single_edge():
    # only the round-start edge was captured: the start is known, the end comes from the board's ticks
    spans = align_batches(
        rows_for([1.0]), [10.0], tick_hz=TICK, round_start_tick=5_000_000, anchor_t=10.05, rate_hz=1000
    )
    assert spans == [(10.0, 11.0, "d7-interp")]


def test_align_first_edge_can_be_a_batch_end():
    # the capture started after the round-start edge: the first edge seen ends the first batch
    spans = align_batches(
        rows_for([1.0, 1.0]), [51.0, 52.0], tick_hz=TICK, round_start_tick=5_000_000, anchor_t=50.0, rate_hz=1000
    )
    assert spans == [(50.0, 51.0, "d7"), (51.0, 52.0, "d7")]


def test_align_ignores_another_rounds_edges_more_than_2s_before_the_round():
    # a previous round's edges 2.5, 1.5 and 0.5 s before the host saw this round start fit the batch
    # pattern better (this round's last edge is lost), but lie outside the 2 s search window
    rows = rows_for([1.0, 1.0])
    spans = align_batches(
        rows, [7.5, 8.5, 9.5, 10.0, 11.0], tick_hz=TICK, round_start_tick=5_000_000, anchor_t=10.0, rate_hz=1000
    )
    assert spans == [(10.0, 11.0, "d7"), (11.0, 12.0, "d7-interp")]


def test_align_without_edges_is_host_alignment():
    rows = rows_for([1.0, 1.0])
    spans = align_batches(rows, [], tick_hz=TICK, round_start_tick=5_000_000, anchor_t=7.0, rate_hz=1000)
    assert spans == [(7.0, 8.0, "host"), (8.0, 9.0, "host")]


def test_attribute_energy_integrates_the_current_between_edges():
    # the board's clock says 1.0 s and 2.0 s; the LPM01A's D7 edges say 1.008 s and 2.008 s (clock drift
    # and marker latency, within the matching tolerance): energy is power x the time between the edges
    rows = rows_for([1.0, 2.0])
    rate = 1000.0
    edges = [3.0, 4.008, 6.016]
    t = np.arange(0, 10, 1 / rate)
    amps = np.where((t >= 3.0) & (t < 4.008), 2e-3, np.where((t >= 4.008) & (t < 6.016), 1e-3, 1e-5))

    def mean_current(t0, t1):
        sel = (t >= t0) & (t < t1)
        return float(amps[sel].mean()) if sel.any() else None

    out, warnings = attribute_energy(
        rows, edges, mean_current, 3.3, tick_hz=TICK, round_start_tick=5_000_000, anchor_t=3.05, rate_hz=rate
    )
    assert [r.source for r in out] == ["d7", "d7"]
    assert [(r.t0, r.t1) for r in out] == [(3.0, 4.008), (4.008, 6.016)]
    assert [r.seconds for r in out] == [1.0, 2.0]  # the board's own durations are kept as they were
    assert out[0].energy_j == pytest.approx(3.3 * 2e-3 * 1.008, rel=1e-6)
    assert out[1].energy_j == pytest.approx(3.3 * 1e-3 * 2.008, rel=1e-6)
    assert out[0].avg_current_a == pytest.approx(2e-3) and out[1].avg_power_w == pytest.approx(3.3e-3)
    assert warnings == []
    out, warnings = attribute_energy(
        rows, [], lambda a, b: None, 3.3, tick_hz=TICK, round_start_tick=5_000_000, anchor_t=3.0, rate_hz=rate
    )
    assert [r.source for r in out] == ["none", "none"] and "no power samples" in warnings[0]


def test_attribute_energy_says_how_each_batch_was_placed():
    rows = rows_for([1.0] * 4)
    amps = lambda t0, t1: 1e-3 if t0 < 53.0 else None  # noqa: E731 - no samples from 53.0 s on

    # the edge at 52.0 was lost: that batch ends at the previous edge plus its ticks; the last batch has no
    # samples: placed, but no energy
    out, warnings = attribute_energy(
        rows, [50.0, 51.0, 53.0, 54.0], amps, 3.0, tick_hz=TICK, round_start_tick=5_000_000, anchor_t=50.0, rate_hz=1000
    )
    assert [(r.t0, r.t1, r.source) for r in out] == [
        (50.0, 51.0, "d7"),
        (51.0, 52.0, "d7-interp"),
        (52.0, 53.0, "d7"),
        (53.0, 54.0, "none"),
    ]
    assert out[1].energy_j == pytest.approx(3e-3) and out[3].energy_j is None and out[3].avg_power_w is None
    assert warnings == [
        "1 of 4 batches lost their D7 end edge: their interval is the neighbouring edge plus the board-measured "
        "duration",
        "1 of 4 batches have no power samples: energy not measured",
    ]
    # no edge at all: host alignment from the anchor, said plainly
    out, warnings = attribute_energy(
        rows[:2], [], amps, 3.0, tick_hz=TICK, round_start_tick=5_000_000, anchor_t=20.0, rate_hz=1000
    )
    assert [(r.t0, r.t1, r.source) for r in out] == [(20.0, 21.0, "host"), (21.0, 22.0, "host")]
    assert warnings == [
        "2 of 2 batches had no matching D7 edges: their energy uses host alignment (board ticks from the moment "
        "the host saw the round start; off by the USB latency)"
    ]


def test_align_tolerance_is_per_batch_so_drift_never_accumulates():
    # each batch end is sought from the previous matched edge within 1 % of that batch + two samples, not 1 % of
    # the time since the round start: a last edge 15 ms late is lost for a 1 s batch, even 3 s into the round
    spans = align_batches(
        rows_for([1.0] * 3),
        [10.0, 11.0, 12.0, 13.015],
        tick_hz=TICK,
        round_start_tick=5_000_000,
        anchor_t=10.0,
        rate_hz=1000,
    )
    assert spans == [(10.0, 11.0, "d7"), (11.0, 12.0, "d7"), (12.0, 13.0, "d7-interp")]


def test_align_needs_two_matching_edges_for_more_than_one_batch():
    # a lone edge near the anchor fits any round start: with two batches it is not enough (host alignment) ...
    kw = dict(tick_hz=TICK, round_start_tick=5_000_000, anchor_t=10.05, rate_hz=1000)
    assert align_batches(rows_for([1.0, 1.0]), [10.0], **kw) == [(10.05, 11.05, "host"), (11.05, 12.05, "host")]
    # ... nor are edges that fit no batch end
    spans = align_batches(rows_for([1.0, 1.0]), [10.0, 10.4, 11.5], **kw)
    assert [s[2] for s in spans] == ["host", "host"]
    # one batch: its start edge alone places it
    assert align_batches(rows_for([1.0]), [10.0], **kw) == [(10.0, 11.0, "d7-interp")]


def test_attribute_energy_searches_from_earliest_t_and_measures_only_covered_batches():
    # 9.0 is the previous round's last edge: with the 2 s window before the anchor it would explain all three
    # edges as this round's start and ends; the power stream's end when this round was requested (earliest_t)
    # rules it out.  The stream covers up to 11.0 s: the second batch has no samples yet.
    rows = rows_for([1.0, 1.0])
    kw = dict(tick_hz=TICK, round_start_tick=5_000_000, anchor_t=10.0, rate_hz=1000)
    assert align_batches(rows, [9.0, 10.0, 11.0], **kw) == [(9.0, 10.0, "d7"), (10.0, 11.0, "d7")]
    out, warnings = attribute_energy(
        rows, [9.0, 10.0, 11.0], lambda a, b: 1e-3, 3.0, earliest_t=9.5, covered=11.0, **kw
    )
    assert [(r.t0, r.t1, r.source) for r in out] == [(10.0, 11.0, "d7"), (11.0, 12.0, "none")]
    assert out[0].energy_j == pytest.approx(3e-3) and out[1].energy_j is None
    assert warnings[-1] == "1 of 2 batches have no power samples: energy not measured"


def test_alignment_warnings_leave_out_validation_passes_without_samples():
    # a validation pass can be shorter than one LPM01A sample: unmeasured, but no measurement fault
    from app.core.energy import alignment_warnings

    rows = rows_for([1.0, 0.0005, 1.0])
    rows[1].phase = "val"
    for r in rows:
        r.source = "d7"
    rows[1].source = "none"
    assert alignment_warnings(rows) == []
    rows[2].source = "none"
    assert alignment_warnings(rows) == ["1 of 3 batches have no power samples: energy not measured"]


def test_round_totals_are_what_the_round_report_shows():
    # a robust round: two training batches (the second placed but without power samples) and a validation pass
    # measured over a D7 interval longer than its board seconds
    r0 = dataclasses.replace(
        rows_for([1.0])[0], t0=10.0, t1=11.0, energy_j=3e-3, pred_seconds=0.9, pred_energy_j=2.5e-3, source="d7"
    )
    r1 = dataclasses.replace(
        r0,
        index=1,
        phase="val",
        seconds=0.25,
        t0=11.0,
        t1=11.5,
        energy_j=1e-3,
        pred_seconds=None,
        pred_energy_j=None,
        source="d7-interp",
    )
    r2 = dataclasses.replace(
        r0, index=2, seconds=2.0, t0=11.5, t1=13.5, energy_j=None, pred_seconds=2.1, pred_energy_j=4e-3, source="none"
    )
    assert round_totals([r0, r1, r2]) == {
        "n_batches": 2,  # training batches only
        "val_passes": 1,
        "seconds": pytest.approx(3.25),  # the board's seconds of every D7 interval
        "energy_j": pytest.approx(4e-3),  # what was measured
        "avg_power_w": pytest.approx(4e-3 / 1.5),  # over the measured intervals' own time, not the board's
        "pred_seconds": pytest.approx(3.0),
        "pred_energy_j": pytest.approx(6.5e-3),
        "energy_sources": ["d7", "d7-interp", "none"],
    }
    # short intervals (under 1 s in all) and one of no length: the average power of the rest, no division by 0
    short = [dataclasses.replace(r0, t1=10.4, energy_j=2e-3), dataclasses.replace(r0, t0=10.4, t1=10.4, energy_j=0.0)]
    assert round_totals(short)["avg_power_w"] == pytest.approx(5e-3)
    assert round_totals([dataclasses.replace(r0, t1=10.0, energy_j=0.0)])["avg_power_w"] is None
    # nothing measured (no power monitor): no energy and no power, rather than 0 J
    tot = round_totals([r2])
    assert tot["energy_j"] is None and tot["avg_power_w"] is None and tot["energy_sources"] == ["none"]
    assert round_totals([]) == {
        "n_batches": 0,
        "val_passes": 0,
        "seconds": 0.0,
        "energy_j": None,
        "avg_power_w": None,
        "pred_seconds": 0.0,
        "pred_energy_j": 0.0,
        "energy_sources": [],
    }


def test_d7_intervals_measure_the_energy_between_consecutive_edges():
    # the power panel's D7 view: 1 kHz, 2 mA from 1 s, a lost stretch (NaN) from 2.5 s to 3 s, 3 mA from 3 s
    rate, volt = 1000.0, 3.3
    s = SampleStream("current", rate, 1, unit="A", recent_s=2.0, history_s=60.0, base=10)
    s.append(np.full(1000, 1e-3, np.float32))
    s.append(np.full(1500, 2e-3, np.float32))
    s.append_gap(500)
    s.append(np.full(2000, 3e-3, np.float32))  # 5 s; the last 2 s are in the full-resolution ring
    edges = np.array([1.0, 2.5, 3.0, 4.0, 5.0, 5.5])  # the last edge is past the samples: no interval yet
    got = d7_intervals(edges, s, volt)
    assert [(iv.index, iv.t0, iv.t1, iv.exact) for iv in got] == [
        (1, 1.0, 2.5, False),  # left the ring: from the pyramid
        (2, 2.5, 3.0, False),
        (3, 3.0, 4.0, True),
        (4, 4.0, 5.0, True),  # ends exactly at the end of the samples: measured
    ]
    assert [iv.avg_current_a for iv in got[::2]] == [pytest.approx(2e-3), pytest.approx(3e-3)]
    assert got[0].energy_j == pytest.approx(volt * 2e-3 * 1.5) and got[3].energy_j == pytest.approx(volt * 3e-3)
    assert got[2].energy_j == pytest.approx(volt * 3e-3 * 1.0)
    assert np.isnan(got[1].avg_current_a) and np.isnan(got[1].energy_j)  # no samples: not measured, not 0 J
    assert [iv.measured for iv in got] == [True, False, True, True]
    assert [iv.missing_s for iv in got] == [0.0, pytest.approx(0.5), 0.0, 0.0]
    part = d7_intervals(np.array([3.0004, 3.7006]), s, volt)[0]  # ends between samples: rounding, not data lost
    assert part.measured and part.missing_s == 0.0
    (lossy,) = d7_intervals(np.array([2.0, 3.5]), s, volt)  # half a second lost of 1.5 s: said, counted at the mean
    assert lossy.measured and lossy.missing_s == pytest.approx(0.5, abs=0.02)
    assert lossy.energy_j == pytest.approx(volt * lossy.avg_current_a * 1.5)
    assert d7_intervals(np.array([1.0]), s, volt) == [] and d7_intervals(np.array([4.5, 6.0]), s, volt) == []
    # every edge inside the samples: every interval, the last one too
    assert [(iv.index, iv.t0, iv.t1) for iv in d7_intervals(np.array([3.0, 3.5, 5.0]), s, volt)] == [
        (1, 3.0, 3.5),
        (2, 3.5, 5.0),
    ]


# --- config, data, metrics -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, word",
    [
        ({"mode": "half"}, "mode"),
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"input_size": 30}, "input_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"mode": "custom"}, "custom"),
    ],
)
def test_config_rejects_bad_values_naming_them(kw, word):
    with pytest.raises(RoundError, match=word):
        RoundConfig(**kw).validate()
    assert RoundConfig.from_dict(RoundConfig(mode="custom", layers=("dense2",)).to_dict()).layers == ("dense2",)


def test_local_windows_maps_labels_to_model_classes(tmp_path):
    from app.core.recording import write_accel
    from tests.roundkit import sample_blocks

    store = Store(tmp_path)
    user = store.ensure_user("u")
    classes = ("walking", "jogging", "stairs", "sitting", "standing")
    with pytest.raises(RoundError, match="no labelled"):
        local_windows(store, user.dataset_id, classes, 20, 20.0)
    xyz, blocks = sample_blocks(20.0)
    rec = write_accel(store, "s", xyz, 20.0, user.dataset_id)
    names = {"walking": "Walking", "jogging": "Upstairs", "sitting": "Typing"}
    for a, b, lab in blocks:
        store.add_label(rec.id, a, b, names[lab])
    d = local_windows(store, user.dataset_id, classes, 20, 20.0)
    counts = d.counts()
    assert counts["walking"][0] > 0 and counts["stairs"][0] > 0  # Upstairs gathered into stairs
    assert counts["sitting"] == (0, 0)
    assert any("Typing".lower() in n for n in d.notes)
    assert d.train_x.shape[1:] == (20, 3) and len(d.test_y) > 0
    # longer windows for a T=40 model come from the same labels
    d40 = local_windows(store, user.dataset_id, classes, 40, 20.0)
    assert d40.train_x.shape[1:] == (40, 3)
    store.close()


def test_metrics_from_confusion():
    cm = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])
    m = metrics_from_confusion(cm, ("a", "b", "c"), 0.5)
    assert m["accuracy"] == pytest.approx(17 / 20)
    f1a, f1b = 2 * 8 / (2 * 8 + 1 + 2), 2 * 9 / (2 * 9 + 2 + 1)
    assert m["macro_f1"] == pytest.approx((f1a + f1b) / 2)  # class c is absent from the test set
    assert set(m["per_class_f1"]) == {"a", "b"} and m["loss"] == 0.5


# --- whole rounds on the virtual bench -----------------------------------------------------------------
@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    ctx = bench_context(tmp_path_factory.mktemp("rounds"))
    labelled_dataset(ctx)
    yield ctx
    ctx.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_robust_round_validates_keeps_the_best_epoch_and_places_every_pass_by_d7(bench):
    """The app's default procedure (issue 17): every 10th training window validates; the board's validation
    passes are D7 intervals of their own, aligned and measured like batches but never counted as batches."""
    ctx = bench
    state = RoundState()
    cfg = RoundConfig(input_size=20, mode="full", epochs=3, warmup_epochs=1, lr=0.01)
    assert cfg.proc == ROBUST
    res = RoundRunner(ctx.store, ctx.devices, ctx.data_dir, cfg, ctx.dataset.id, state).run()
    assert res["status"] == "done"
    rows = round_rows(ctx.store, res["round_id"])
    vals = [r for r in rows if r.phase == "val"]
    batches = [r for r in rows if r.phase != "val"]
    v = res["validation"]
    assert v["n_val"] == res["procedure"]["n_val"] > 0 and len(vals) == v["passes"] == res["val_passes"]
    assert [r.epoch for r in vals] == list(range(len(vals)))  # before training, then after every epoch
    assert res["n_batches"] == len(batches) == res["round_done"]["batches_done"]
    assert all(r.n_samples == v["n_val"] and r.macro_f1 is not None for r in vals)
    sources = [r.source for r in batches]
    assert set(sources) <= {"d7", "d7-interp"} and sources.count("d7-interp") <= 1, sources
    # a pass lasts what the cost model says n_val forward passes take and sits between the batches' D7 edges;
    # one shorter than an LPM01A sample period holds no sample: placed, but not measured (and no warning)
    for r in vals:
        assert r.t1 - r.t0 == pytest.approx(r.seconds, abs=3e-3)
        assert r.seconds == pytest.approx(r.pred_seconds, rel=0.02)
        assert r.source in ("d7", "d7-interp", "none")
    assert not any("no power samples" in w for w in res["warnings"])
    assert v["kept"]["epoch"] == v["best_epoch"] and v["kept"]["macro_f1"] >= v["start"]["macro_f1"]
    # a validation pass is inference: never a calibration record of a training batch
    recs = calibration_records(ctx.store, [ctx.store.rounds()[-1]])
    assert len(recs) == sum(1 for r in batches if r.energy_j)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_tl_round_measures_every_batch_and_personalizes(bench, tmp_path):
    ctx = bench
    state = RoundState()
    cfg = RoundConfig(input_size=20, mode="tl", epochs=2, warmup_epochs=1, lr=0.01, procedure=PLAIN.to_dict())
    res = RoundRunner(ctx.store, ctx.devices, ctx.data_dir, cfg, ctx.dataset.id, state).run()
    assert res["status"] == "done"
    rows = round_rows(ctx.store, res["round_id"])
    assert len(rows) == res["round_info"]["total_batches"] == state.snapshot()["total_batches"] == 12
    assert [r.phase for r in rows[:4]] == ["warmup"] * 4
    # every batch is placed by D7 edges; the LPM01A path occasionally loses one edge (see the report), which
    # the alignment then interpolates from its neighbour and the board's ticks
    sources = [r.source for r in rows]
    assert set(sources) <= {"d7", "d7-interp"} and sources.count("d7-interp") <= 1, sources
    # the emulator's batches last what the cost model predicts and draw the profile's current
    for r in rows:
        assert r.t1 - r.t0 == pytest.approx(r.seconds, abs=3e-3)
        assert r.energy_j == pytest.approx(r.pred_energy_j, rel=0.02)
        assert r.avg_power_w == pytest.approx(2.65e-3, rel=0.02)
    assert res["after"]["accuracy"] > res["before"]["accuracy"]
    assert np.asarray(res["after"]["confusion"]).sum() == ctx.store.rounds()[-1]["config"]["n_test"]
    assert ctx.store.rounds()[-1]["status"] == "done"
    pm = personalized_model(ctx.store, res["round_id"])
    base = RoundRunner(ctx.store, ctx.devices, ctx.data_dir, cfg, ctx.dataset.id).load_model()
    assert not np.allclose(pm.weights["dense2"][0], base.weights["dense2"][0])  # trained
    assert np.array_equal(pm.weights["conv1"][0], base.weights["conv1"][0])  # frozen in TL
    text = round_report(ctx.store, res["round_id"])
    assert "Estimator vs measured" in text and "macro-F1" in text
    # the bench's Python board takes its times from the estimator: the round says which board ran it, and the
    # report that its "measured" figures are the estimator's
    assert res["board"] == {
        "name": "NUCLEO-L496ZG (virtual: Python emulator)",
        "build": "odl-firmware",  # the cost profile it takes its batches from: the ODL firmware's
        "firmware": ".".join(map(str, FIRMWARE_VERSION)),
        "odl_firmware": False,
    }
    assert "\n* board: NUCLEO-L496ZG (virtual: Python emulator), cost profile `odl-firmware`\n" in text
    assert "\n" + ESTIMATOR_DRIVEN.format(build="odl-firmware") + "\n" in text
    # an exported model keeps the base model's origin and licence (ST's zoo), not its pretraining metadata
    st_like = dataclasses.replace(pm, meta={**pm.meta, "origin": "st_modelzoo", "license": "SLA0044", "lr": 0.001})
    meta = personalized_meta(ctx.store, res["round_id"], st_like)
    assert meta["origin"] == "st_modelzoo" and meta["license"] == "SLA0044" and "lr" not in meta
    written = export_round(ctx.store, res["round_id"], tmp_path / "out", formats=("npz", "c_header"))
    assert written["npz"].is_file() and written["c_header"].read_text().count("dense2") > 0
    assert "personalized_round" in written["report"].name or written["report"].is_file()
    with pytest.raises(RoundError, match=r"^unknown export formats onnx, pt \(known: "):
        export_round(ctx.store, res["round_id"], tmp_path / "out2", formats=("npz", "onnx", "pt"))
    assert not (tmp_path / "out2").exists()  # refused before anything is written
    recs = calibration_records(ctx.store)
    assert len(recs) >= 12 and all(r.energy_j for r in recs)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_round_without_d7_uses_host_alignment_and_cancel_aborts(bench):
    ctx = bench
    key = ctx.devices.first("board").info.key
    done = threading.Event()
    ctx.devices.call(key, lambda c: c.set_marker(False), lambda r, e: done.set())
    assert done.wait(5)
    try:
        state = RoundState()
        cfg = RoundConfig(input_size=20, mode="full", epochs=1)
        res = RoundRunner(ctx.store, ctx.devices, ctx.data_dir, cfg, ctx.dataset.id, state).run()
        rows = [r for r in round_rows(ctx.store, res["round_id"]) if r.phase != "val"]  # (passes: may be unsampled)
        assert rows and all(r.source == "host" for r in rows)
        assert any("host alignment" in w for w in res["warnings"])
        assert all(r.energy_j and r.energy_j > 0 for r in rows)
    finally:
        done.clear()
        ctx.devices.call(key, lambda c: c.set_marker(True), lambda r, e: done.set())
        assert done.wait(5)
    # cancel once the first batch was reported: the board aborts, the partial round is kept
    state = RoundState()
    runner = RoundRunner(ctx.store, ctx.devices, ctx.data_dir, RoundConfig(epochs=5), ctx.dataset.id, state)
    res = runner.run(cancelled=lambda: len(state.snapshot()["rows"]) >= 1)
    assert res["status"] == "cancelled"
    assert ctx.store.rounds()[-1]["status"] == "cancelled"
    n = len(round_rows(ctx.store, res["round_id"]))
    assert 1 <= n < 20
    wait_for(lambda: ctx.devices.first("board").state.value == "ready", 5)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_round_on_a_worker_thread_never_runs_a_garbage_collection(bench, monkeypatch):
    """The app runs a round on its task runner.  A gc.collect there may finalize Qt objects left in cycles on
    that thread; their destructors wait for the GIL while the GUI thread, holding it, waits for their Qt lock:
    the app hung at the end of a round (CI: test_gui_st_zoo).  The round only trims the heap."""
    import gc

    ctx = bench
    collected_on: list[str] = []
    real = gc.collect
    monkeypatch.setattr(gc, "collect", lambda *a: collected_on.append(threading.current_thread().name) or real(*a))
    cfg = RoundConfig(input_size=20, mode="tl", epochs=1, warmup_epochs=0, lr=0.01, procedure=PLAIN.to_dict())
    out: dict = {}
    worker = threading.Thread(
        target=lambda: out.update(RoundRunner(ctx.store, ctx.devices, ctx.data_dir, cfg, ctx.dataset.id).run()),
        name="task-runner",
    )
    worker.start()
    worker.join(120)
    assert out.get("status") == "done", out
    assert "task-runner" not in collected_on, collected_on
