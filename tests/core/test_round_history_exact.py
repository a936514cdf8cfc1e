"""Exact checks of rounds after they ran (app/core/round_history.py): their stored batch rows, the history line
and the report, the personalized model and its metadata, its export (the ``.npz`` and C header written for
real; the TensorFlow formats through a stand-in ``export_all``), the calibration records, the Estimator's
inputs, the labelled time and windows per epoch, and the measured points of the Estimator's overlay.

Every expected value is written out by hand.  No board, no bench, no TensorFlow: rounds and their batch rows
are written into a real app :class:`Store`; the model is ``tests/core/test_model_formats.py``'s tiny one."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.core import models
from app.core.energy import BatchRow
from app.core.models import ExportError, ModelError, export_npz, load_npz
from app.core.round_config import ExportIncomplete, RoundError
from app.core.round_history import (
    EstimatorInputs,
    calibration_records,
    export_files,
    export_round,
    inherited_meta,
    measured_points,
    personalized_meta,
    personalized_model,
    round_report,
    round_rows,
    round_summary,
    sidecar_entries,
)
from app.core.store import Store, StoreError
from estimator.calibrate import BatchRecord
from estimator.profiles import PRESETS
from tests.core.test_model_formats import TINY, tiny

CREATED = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def test_no_tensorflow_is_imported():
    """This file's imports pull in no TensorFlow (a forked mutant of a process that imported it hangs)."""
    root = Path(__file__).resolve().parents[2]
    code = "import sys, tests.core.test_round_history_exact; print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


pytestmark = pytest.mark.usefixtures("utc")  # dates are formatted in local time (tests/core/conftest.py)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "data")
    yield s
    s.close()


def add_round(
    store: Store,
    config: dict,
    result: dict | None = None,
    status: str | None = "done",
    batches: list[dict] | None = None,
    dataset_id: int | None = None,
    created: float = CREATED,
) -> int:
    rid = store.add_round(config, dataset_id)
    store.update_round(rid, status=status, result=result)
    store._exec("UPDATE rounds SET created=? WHERE id=?", (created, rid))
    for i, b in enumerate(batches or []):
        store.put_round_batch(rid, i, b)
    return rid


def batch(index, phase, n, seconds, loss=1.0, **kw) -> dict:
    d = dict(
        index=index,
        phase=phase,
        epoch=0,
        batch=index,
        n_samples=n,
        loss=loss,
        start_tick=0,
        end_tick=0,
        cycles=0,
        seconds=seconds,
    )
    d.update(kw)
    return d


def save_weights(store: Store, round_id: int, meta: dict | None = None) -> str:
    rel = f"rounds/round_{round_id}_weights.npz"
    store.resolve("rounds").mkdir(exist_ok=True)
    export_npz(tiny(meta=meta), store.resolve(rel))
    return rel


# --- batch rows ---------------------------------------------------------------------------------------------


def test_round_rows_are_the_stored_batches_in_order_without_unknown_keys(store):
    rid = add_round(
        store,
        {},
        batches=[
            batch(0, "warmup", 4, 0.5, pred_seconds=0.4, source="d7", energy_j=0.001, future_field=3),
            batch(1, "main", 2, 0.25, loss=0.5),
        ],
    )
    add_round(store, {}, batches=[batch(0, "main", 9, 9.0)])  # another round's batch
    assert round_rows(store, rid) == [
        BatchRow(0, "warmup", 0, 0, 4, 1.0, 0, 0, 0, 0.5, pred_seconds=0.4, source="d7", energy_j=0.001),
        BatchRow(1, "main", 0, 1, 2, 0.5, 0, 0, 0, 0.25),
    ]
    assert round_rows(store, 99) == []


# --- the history line ---------------------------------------------------------------------------------------


def test_history_line_names_id_size_mode_epochs_status_f1_and_energy():
    r = {
        "id": 3,
        "status": "done",
        "config": {"input_size": 40, "mode": "tl", "epochs": 5},
        "result": {"before": {"macro_f1": 0.5}, "after": {"macro_f1": 0.75}, "energy_j": 0.01234},
    }
    assert round_summary(r) == "#3  T=40 TL 5 ep  [done]  F1 0.500 → 0.750  12.3 mJ"


def test_history_line_of_a_round_without_config_or_result_shows_question_marks():
    assert round_summary({"id": 1}) == "#1  T=? ? ? ep  [None]"


@pytest.mark.parametrize(
    "result",
    [
        {"before": {"macro_f1": 0.5}},
        {"after": {"macro_f1": 0.75}},
        {"before": {}, "after": {"macro_f1": 0.75}},
        {"before": {"macro_f1": 0.5}, "after": {}},
        {"energy_j": 0.0},
        {"energy_j": None},
    ],
)
def test_history_line_has_f1_only_with_both_metrics_and_energy_only_when_measured(result):
    r = {"id": 2, "status": "failed", "config": {"input_size": 20, "mode": "full", "epochs": 1}, "result": result}
    assert round_summary(r) == "#2  T=20 FULL 1 ep  [failed]"


# --- the report ---------------------------------------------------------------------------------------------

FULL_CONFIG = {
    "model_source": "/home/dev/models/paper_T40.keras",
    "input_size": 40,
    "rate_hz": 25.0,
    "model_classes": ["sit", "walk", "run"],
    "mode": "tl",
    "trainable": ["dense1", "dense2"],
    "epochs": 3,
    "warmup_epochs": 1,
    "lr": 0.005,
    "batch_size": 4,
    "seed": 7,
    "n_train": 30,
    "n_test": 12,
    "train_fraction": 0.75,
    "profile": "config-profile",
}

FULL_RESULT = {
    "counts": {"sit": [10, 4], "walk": [12, 5], "run": [8, 3]},
    "before": {"accuracy": 0.5, "macro_f1": 0.4, "loss": 1.25},
    "after": {"accuracy": 0.875, "macro_f1": 0.75, "loss": 0.5},
    "energy_j": 0.0123,
    "avg_power_w": 0.00265,
    "energy_sources": ["d7", "d7-interp"],
    "pred_seconds": 5.5,
    "seconds": 5.0,
    "pred_energy_j": 0.011,
    "profile": "nucleo_h7",
    "warnings": ["batch 2: edge lost", "host clock drift"],
}

FULL_BATCHES = [
    batch(0, "warmup", 4, 0.5, loss=1.5, pred_seconds=0.4),
    batch(1, "main", 4, 1.0, loss=1.0, pred_seconds=0.9),
    batch(2, "main", 2, 0.5, loss=0.8, pred_seconds=0.45),  # the epoch's last, partial batch
    batch(3, "val", 4, 0.25, loss=0.0, pred_seconds=0.2),
    batch(4, "main", 4, 1.5, loss=0.625, pred_seconds=1.2),
]

FULL_REPORT = """\
# ODL Studio — personalization round 1

* date: 2023-11-14 22:13; status: **done**

## Model

* base model: `paper_T40.keras` (input T=40, 25.0 Hz), classes sit, walk, run
* trained: tl → layers dense1, dense2
* epochs 3 (+1 warm-up), lr 0.005, batch 4, seed 7

## Data

* 30 training windows, 12 test windows (chronological 75/25 split per activity)
  * sit: 10 train / 4 test
  * walk: 12 train / 5 test
  * run: 8 train / 3 test

## Round

| | accuracy | macro-F1 | loss |
|---|---|---|---|
| before | 0.500 | 0.400 | 1.250 |
| after | 0.875 | 0.750 | 0.500 |

* 4 batches + 1 validation pass, board time 3.75 s, final batch loss 0.625
* measured energy 12.30 mJ, average power 2.650 mW (LPM01A, d7, d7-interp)

## Estimator vs measured

| | predicted | measured | error |
|---|---|---|---|
| round time | 5.500 s | 5.000 s | +10.0 % |
| round energy | 11.000 mJ | 12.300 mJ | -10.6 % |
| time per batch of 4 | 1.050 s | 1.250 s | -16.0 % |

profile: `nucleo_h7`

## Warnings

* batch 2: edge lost
* host clock drift
"""


def test_report_of_a_measured_round_lists_model_data_metrics_estimates_and_warnings(store):
    """The time per batch is the mean of the full-size main batches only (not warm-up, validation or partial)."""
    rid = add_round(store, FULL_CONFIG, FULL_RESULT, batches=FULL_BATCHES)
    assert round_report(store, rid) == FULL_REPORT


MINIMAL_REPORT = """\
# ODL Studio — personalization round 1

* date: 2023-11-14 22:13; status: **created**

## Model

* base model: `?` (input T=None, ? Hz), classes ·
* trained: None → layers ·
* epochs None (+0 warm-up), lr None, batch None, seed None

## Data

* None training windows, None test windows (chronological 60/40 split per activity)

## Round


## Estimator vs measured

| | predicted | measured | error |
|---|---|---|---|
| round time | — | — | — |
| round energy | — | — | — |

profile: `None`
""".replace("·", "")  # (· marks a line's trailing space)


def test_report_of_a_round_that_never_ran_shows_what_is_unknown(store):
    rid = add_round(store, {}, status=None)
    assert round_report(store, rid) == MINIMAL_REPORT


def test_report_marks_a_missing_prediction_or_measurement_and_an_unmeasured_loss(store):
    """A missing loss reads —, a loss of 0 is shown; an estimate without a measurement (or the reverse) has no
    error, nor has a measured 0; the profile falls back on the config's; energy 0 was still measured."""
    config = {"batch_size": 8, "profile": "cfg"}
    result = {
        "before": {"accuracy": 0.25, "macro_f1": 0.125},
        "after": {"accuracy": 0.5, "macro_f1": 0.375, "loss": 0.0},
        "pred_seconds": 2.0,
        "seconds": None,
        "energy_j": 0.0,
        "avg_power_w": 0.0,
        "pred_energy_j": 0.001,
        "warnings": [],
    }
    rid = add_round(store, config, result, batches=[batch(0, "main", 4, 1.0, loss=0.25, pred_seconds=1.0)])
    text = round_report(store, rid)
    tail = text[text.index("## Round") :]
    assert tail == (
        "## Round\n"
        "\n"
        "| | accuracy | macro-F1 | loss |\n"
        "|---|---|---|---|\n"
        "| before | 0.250 | 0.125 | — |\n"
        "| after | 0.500 | 0.375 | 0.000 |\n"
        "\n"
        "* 1 batches, board time 1.00 s, final batch loss 0.250\n"
        "* measured energy 0.00 mJ, average power 0.000 mW (LPM01A)\n"
        "\n"
        "## Estimator vs measured\n"
        "\n"
        "| | predicted | measured | error |\n"
        "|---|---|---|---|\n"
        "| round time | 2.000 s | — | — |\n"
        "| round energy | 1.000 mJ | 0.000 mJ | — |\n"
        "\n"
        "profile: `cfg`\n"
    )


def test_report_of_a_measured_round_without_an_estimate(store):
    rid = add_round(store, {}, {"seconds": 3.0})
    text = round_report(store, rid)
    assert "| round time | — | 3.000 s | — |\n" in text


def test_report_has_no_metrics_table_without_both_evaluations(store):
    rid = add_round(store, {}, {"before": {"accuracy": 0.5, "macro_f1": 0.4, "loss": 1.0}})
    text = round_report(store, rid)
    assert "\n## Round\n\n\n## Estimator vs measured\n" in text
    assert "| before |" not in text


@pytest.mark.parametrize(
    ("result", "line"),
    [
        ({"pred_energy_j": 0.002}, "| round energy | 2.000 mJ | — | — |\n"),
        ({"energy_j": 0.003, "avg_power_w": 0.001}, "| round energy | — | 3.000 mJ | — |\n"),
    ],
)
def test_report_shows_energy_in_millijoules_with_one_side_missing(store, result, line):
    assert line in round_report(store, add_round(store, {}, result))


def test_report_and_metadata_give_the_split_in_whole_percent_truncated(store):
    """A training fraction of 0.655 is a 65/35 split (the percentage is truncated, not rounded)."""
    rid = add_round(store, {"train_fraction": 0.655}, {})
    assert "* None training windows, None test windows (chronological 65/35 split per activity)\n" in round_report(
        store, rid
    )
    meta = personalized_meta(store, rid, tiny())
    assert meta["personalized"]["windows"]["split"] == "chronological 65 % train per activity"


def test_report_of_an_unknown_round_is_refused(store):
    add_round(store, {})
    with pytest.raises(StoreError) as exc:
        round_report(store, 7)
    assert str(exc.value) == "no training round with id 7"


# --- the personalized model ---------------------------------------------------------------------------------


def test_personalized_model_is_the_downloaded_weights(store):
    rid = add_round(store, {})
    rel = save_weights(store, rid, {"origin": "zoo"})
    store.update_round(rid, result={"weights_path": rel})
    m = personalized_model(store, rid)
    assert m.classes == ("sit", "walk", "run")
    assert m.meta == {"origin": "zoo"}
    assert [n for n in m.weights] == ["conv1", "dense1"]
    assert m.weights["dense1"][1].tolist() == [1.0, 2.0, -3.0]


def test_a_round_without_weights_has_no_personalized_model(store):
    rid = add_round(store, {}, {"weights_path": ""}, status="failed")
    with pytest.raises(RoundError) as exc:
        personalized_model(store, rid)
    assert str(exc.value) == "round 1 has no personalized weights (status failed)"


def test_a_round_whose_weights_file_is_gone_says_which_file(store):
    rid = add_round(store, {}, {"weights_path": "rounds/round_1_weights.npz"})
    with pytest.raises(RoundError) as exc:
        personalized_model(store, rid)
    assert str(exc.value) == f"round 1: weights file {store.data_dir}/rounds/round_1_weights.npz is missing"


# --- its metadata -------------------------------------------------------------------------------------------

BASE_META = {
    "origin": "st_modelzoo",
    "license": "SLA0044",
    "lr": 0.001,
    "format": "keras",
    "rate_hz": 26.0,
    "base_model": "/zoo/ign_wl_24.h5",
}


def test_inherited_meta_keeps_origin_and_licence_only():
    assert inherited_meta(BASE_META) == {"origin": "st_modelzoo", "license": "SLA0044"}
    assert inherited_meta({"license": "MIT", "epochs": 9}) == {"license": "MIT"}
    assert inherited_meta({}) == {}


def test_personalized_meta_describes_the_round_the_user_and_the_board(store):
    user = store.ensure_user("Alice")
    config = dict(FULL_CONFIG)
    result = dict(
        FULL_RESULT,
        before={"accuracy": 0.5, "macro_f1": 0.4, "loss": 1.25, "confusion": [[1]]},
        round_info={"board": "NUCLEO-U575ZI-Q", "build": "abc123", "sysclk_hz": 160_000_000, "uid": "x"},
        n_batches=5,
    )
    rid = add_round(store, config, result, dataset_id=user.dataset_id)
    meta = personalized_meta(store, rid, tiny(meta=BASE_META))
    assert meta == {
        "origin": "st_modelzoo",
        "license": "SLA0044",
        "generated_by": "ODL Studio 0.1.0",
        "description": "personalized on the board in round 1 (TL, T=40) with Alice's labelled data",
        "base_model": "ign_wl_24.h5",
        "rate_hz": 25.0,
        "personalized": {
            "round_id": 1,
            "status": "done",
            "date": "2023-11-14T22:13:20",
            "mode": "tl",
            "trainable": ["dense1", "dense2"],
            "input_size": 40,
            "epochs": 3,
            "warmup_epochs": 1,
            "learning_rate": 0.005,
            "batch_size": 4,
            "seed": 7,
            "user": "Alice",
            "dataset": "default",
            "windows": {
                "train": 30,
                "test": 12,
                "per_class": {
                    "sit": {"train": 10, "test": 4},
                    "walk": {"train": 12, "test": 5},
                    "run": {"train": 8, "test": 3},
                },
                "split": "chronological 75 % train per activity",
            },
            "metrics": {
                "before": {"accuracy": 0.5, "macro_f1": 0.4, "loss": 1.25},
                "after": {"accuracy": 0.875, "macro_f1": 0.75, "loss": 0.5},
            },
            "board": {"board": "NUCLEO-U575ZI-Q", "build": "abc123", "sysclk_hz": 160_000_000},
            "batches": 5,
            "board_seconds": 5.0,
            "energy_j": 0.0123,
            "profile": "nucleo_h7",
        },
    }


def test_personalized_meta_of_a_bare_round_without_dataset(store):
    rid = add_round(store, {}, {}, status="cancelled")
    meta = personalized_meta(store, rid, tiny(meta={"lr": 0.01}))
    assert meta == {
        "generated_by": "ODL Studio 0.1.0",
        "description": "personalized on the board in round 1 (?, T=None) with the user's labelled data",
        "base_model": None,
        "rate_hz": 20.0,
        "personalized": {
            "round_id": 1,
            "status": "cancelled",
            "date": "2023-11-14T22:13:20",
            "mode": None,
            "trainable": [],
            "input_size": None,
            "epochs": None,
            "warmup_epochs": None,
            "learning_rate": None,
            "batch_size": None,
            "seed": None,
            "user": None,
            "dataset": None,
            "windows": {
                "train": None,
                "test": None,
                "per_class": {},
                "split": "chronological 60 % train per activity",
            },
            "metrics": {"before": None, "after": None},
            "board": None,
            "batches": None,
            "board_seconds": None,
            "energy_j": None,
            "profile": None,
        },
    }


def test_personalized_meta_falls_back_on_the_base_models_rate_and_the_config_source(store):
    """Rate: the round's, else the base model's, else 20 Hz; base model: the model's own, else the round's
    source file; metrics keep only accuracy, macro-F1 and loss; a board without its keys is None."""
    rid = add_round(
        store,
        {"model_source": "/models/base_T20.npz", "mode": "full", "input_size": 20, "profile": "cfg-prof"},
        {
            "before": {"macro_f1": 0.25},
            "after": {},
            "round_info": {"board": None, "total_batches": 3},
            "counts": None,
        },
    )
    meta = personalized_meta(store, rid, tiny(meta={"rate_hz": 26.0}))
    assert meta["base_model"] == "base_T20.npz"
    assert meta["rate_hz"] == 26.0
    assert meta["description"] == "personalized on the board in round 1 (FULL, T=20) with the user's labelled data"
    p = meta["personalized"]
    assert p["metrics"] == {"before": {"macro_f1": 0.25}, "after": None}
    assert p["board"] is None
    assert p["profile"] == "cfg-prof"
    assert p["windows"]["per_class"] == {}


def test_personalized_meta_board_keeps_the_keys_that_are_known(store):
    rid = add_round(store, {}, {"round_info": {"board": "NUCLEO", "build": None, "sysclk_hz": 0}})
    assert personalized_meta(store, rid, tiny())["personalized"]["board"] == {"board": "NUCLEO", "sysclk_hz": 0}


def test_personalized_meta_of_a_round_created_at_time_zero_has_no_date(store):
    rid = add_round(store, {}, {}, created=0.0)
    assert personalized_meta(store, rid, tiny())["personalized"]["date"] is None


def test_personalized_meta_of_a_round_whose_dataset_is_gone_names_nobody(store):
    user = store.ensure_user("Bob")
    store._exec("PRAGMA foreign_keys=OFF")
    rid = add_round(store, {}, {}, dataset_id=user.dataset_id + 40)
    meta = personalized_meta(store, rid, tiny())
    assert meta["personalized"]["user"] is None and meta["personalized"]["dataset"] is None
    assert meta["description"] == "personalized on the board in round 1 (?, T=None) with the user's labelled data"


def test_personalized_meta_of_a_dataset_whose_user_is_gone_names_the_dataset_only(store):
    user = store.ensure_user("Carol")
    ds = store.create_dataset(user.id, "walks", ("sit", "walk"))
    rid = add_round(store, {}, {}, dataset_id=ds.id)
    store._exec("PRAGMA foreign_keys=OFF")
    store._exec("DELETE FROM users WHERE id=?", (user.id,))
    p = personalized_meta(store, rid, tiny())["personalized"]
    assert (p["user"], p["dataset"]) == (None, "walks")


# --- sidecars -----------------------------------------------------------------------------------------------


def test_sidecars_are_named_by_the_formats_that_share_them(tmp_path):
    """.keras and .h5 share ``<stem>.json``; the TFLite files have their own; the C header and the .npz have
    none (even if a ``.json`` of that stem exists); a sidecar that was not written is not listed."""
    for name in ("p.json", "p_float32.json", "q.json"):
        (tmp_path / name).write_text("{}")
    written = {
        "keras": tmp_path / "p.keras",
        "h5": tmp_path / "p.h5",
        "tflite_float32": tmp_path / "p_float32.tflite",
        "tflite_int8": tmp_path / "p_int8.tflite",
        "c_header": tmp_path / "q.h",
        "npz": tmp_path / "q.npz",
    }
    assert sidecar_entries(written) == {
        "metadata (keras, h5)": tmp_path / "p.json",
        "metadata (tflite_float32)": tmp_path / "p_float32.json",
    }
    assert sidecar_entries({}) == {}


# --- export -------------------------------------------------------------------------------------------------


@pytest.fixture
def done_round(store):
    """A finished round with its weights saved (the base model came from ST's zoo)."""
    user = store.ensure_user("Alice")
    rid = add_round(store, {"mode": "tl", "input_size": 4, "batch_size": 4}, {}, dataset_id=user.dataset_id)
    rel = save_weights(store, rid, {"origin": "st_modelzoo", "license": "SLA0044", "lr": 0.001})
    store.update_round(rid, result={"weights_path": rel, "seconds": 2.0})
    return rid


EXPORT_REPORT_HEAD = """\
# ODL Studio — personalization round 1

* date: 2023-11-14 22:13; status: **done**

## Model

* base model: `?` (input T=4, ? Hz), classes ·
* trained: tl → layers ·
* epochs None (+0 warm-up), lr None, batch 4, seed None

## Data

* None training windows, None test windows (chronological 60/40 split per activity)

## Round


## Estimator vs measured

| | predicted | measured | error |
|---|---|---|---|
| round time | — | 2.000 s | — |
| round energy | — | — | — |

profile: `None`
""".replace("·", "")  # (· marks a line's trailing space)


def test_export_writes_the_npz_and_c_header_with_the_personalized_metadata_and_a_report(store, done_round, tmp_path):
    out = tmp_path / "out"
    seen = []
    written = export_round(store, done_round, out, ("npz", "c_header"), progress=lambda f, t: seen.append((f, t)))
    assert written == {
        "npz": out / "personalized_round1.npz",
        "c_header": out / "personalized_round1.h",
        "report": out / "personalized_round1_report.md",
    }
    assert seen == [(0.0, "writing npz"), (pytest.approx(1 / 3), "writing c_header"), (1.0, "done")]
    assert (out / "personalized_round1_report.md").read_text(encoding="utf-8") == EXPORT_REPORT_HEAD + (
        "\n## Files\n\n* `personalized_round1.npz` (npz)\n* `personalized_round1.h` (c_header)\n"
    )
    m = load_npz(out / "personalized_round1.npz")
    assert m.weights["conv1"][1].tolist() == [0.5, -0.5]
    assert m.meta["origin"] == "st_modelzoo" and m.meta["license"] == "SLA0044" and "lr" not in m.meta
    assert m.meta["description"] == "personalized on the board in round 1 (TL, T=4) with Alice's labelled data"
    assert m.meta["personalized"]["round_id"] == 1 and m.meta["personalized"]["user"] == "Alice"
    assert "personalized_round1" in (out / "personalized_round1.h").read_text()


def test_export_report_is_utf8_whatever_the_locale(store, done_round, tmp_path):
    """The report (with its dashes and arrows) is UTF-8 even where the locale's encoding is ASCII (a C locale
    without UTF-8 mode) -- or cp1252 on Windows."""
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; from app.core.store import Store; from app.core.round_history import export_round; "
        "s = Store(sys.argv[1]); print(sorted(export_round(s, 1, sys.argv[2], ('npz',)))); s.close()"
    )
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0", PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, "-c", code, str(store.data_dir), str(tmp_path / "out")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "['npz', 'report']\n"
    data = (tmp_path / "out" / "personalized_round1_report.md").read_bytes()
    text = data.decode("utf-8")
    assert text.startswith("# ODL Studio — personalization round 1\n")
    assert "* trained: tl → layers \n" in text
    # the same bytes as here (and this test calls the export in this process too, so that the mutation runs,
    # which learn which tests call which function from this process, run it for the export's mutants)
    export_round(store, done_round, tmp_path / "here", ("npz",))
    assert (tmp_path / "here" / "personalized_round1_report.md").read_bytes() == data


def test_export_refuses_unknown_formats_before_writing_anything(store, done_round, tmp_path):
    with pytest.raises(RoundError) as exc:
        export_round(store, done_round, tmp_path / "out", formats=("npz", "onnx", 3))
    assert str(exc.value) == (
        "unknown export formats onnx, 3 (known: keras, h5, tflite_float32, tflite_int8, c_header, npz)"
    )
    assert not (tmp_path / "out").exists()


def test_export_refuses_an_empty_choice(store, done_round, tmp_path):
    with pytest.raises(RoundError) as exc:
        export_round(store, done_round, tmp_path / "out", formats=())
    assert str(exc.value) == "choose at least one export format"
    assert not (tmp_path / "out").exists()


def test_export_of_a_round_without_weights_is_refused(store, tmp_path):
    rid = add_round(store, {}, {}, status="failed")
    with pytest.raises(RoundError) as exc:
        export_round(store, rid, tmp_path / "out", formats=("npz",))
    assert str(exc.value) == "round 1 has no personalized weights (status failed)"


class FakeExport:
    """Stands in for ``models.export_all`` (whose Keras and TFLite formats need TensorFlow): records each call,
    writes ``<stem>.<format>`` and, for the Keras formats, the shared sidecar; raises what ``fail`` says."""

    def __init__(self, fail: dict | None = None, on_call=None):
        self.calls: list[dict] = []
        self.fail = fail or {}
        self.on_call = on_call

    def __call__(self, model, out, stem, rep, formats, cancelled, isolate):
        (f,) = formats
        self.calls.append(
            dict(model=model, out=out, stem=stem, rep=rep, format=f, cancelled=cancelled, isolate=isolate)
        )
        if self.on_call:
            self.on_call(f)
        if f in self.fail:
            raise self.fail[f]
        out.mkdir(parents=True, exist_ok=True)
        p = out / f"{stem}.{f}"
        p.write_text(f)
        if f in ("keras", "h5"):
            (out / f"{stem}.json").write_text(json.dumps(model.meta))
        return {f: p}


def test_export_passes_each_format_the_personalized_model_and_lists_the_sidecars(
    store, done_round, tmp_path, monkeypatch
):
    fake = FakeExport()
    monkeypatch.setattr(models, "export_all", fake)
    out = tmp_path / "out"
    written = export_round(store, done_round, str(out), ("keras", "h5", "npz"), stem="mine", isolate=True)
    assert written == {
        "keras": out / "mine.keras",
        "h5": out / "mine.h5",
        "npz": out / "mine.npz",
        "metadata (keras, h5)": out / "mine.json",
        "report": out / "mine_report.md",
    }
    assert [(c["format"], c["out"], c["stem"], c["rep"], c["isolate"]) for c in fake.calls] == [
        ("keras", out, "mine", None, True),
        ("h5", out, "mine", None, True),
        ("npz", out, "mine", None, True),
    ]
    meta = fake.calls[0]["model"].meta
    assert meta["personalized"]["round_id"] == 1 and meta["origin"] == "st_modelzoo" and "lr" not in meta
    assert (
        (out / "mine_report.md")
        .read_text(encoding="utf-8")
        .endswith(
            "\n## Files\n\n* `mine.keras` (keras)\n* `mine.h5` (h5)\n* `mine.npz` (npz)\n"
            "* `mine.json` (metadata (keras, h5))\n"
        )
    )


def test_export_is_not_isolated_unless_asked(store, done_round, tmp_path, monkeypatch):
    fake = FakeExport()
    monkeypatch.setattr(models, "export_all", fake)
    export_round(store, done_round, tmp_path, ("npz",))
    assert [c["isolate"] for c in fake.calls] == [False]


def test_int8_export_is_calibrated_on_the_rounds_training_windows(store, done_round, tmp_path, monkeypatch):
    x = np.arange(24, dtype=np.float32).reshape(3, 4, 2)
    np.savez(store.resolve("rounds/round_1_windows.npz"), x=x, y=np.array([0, 1, 2]))
    fake = FakeExport()
    monkeypatch.setattr(models, "export_all", fake)
    export_round(store, done_round, tmp_path, ("npz", "tflite_int8"))
    assert [c["format"] for c in fake.calls] == ["npz", "tflite_int8"]
    for c in fake.calls:
        assert c["rep"].dtype == np.float32 and c["rep"].tolist() == x.tolist()


def test_int8_export_without_the_training_windows_is_refused(store, done_round, tmp_path):
    with pytest.raises(RoundError) as exc:
        export_round(store, done_round, tmp_path / "out", ("npz", "tflite_int8"))
    assert str(exc.value) == (
        f"int8 export needs the round's training windows ({store.data_dir}/rounds/round_1_windows.npz is missing)"
    )
    assert not (tmp_path / "out").exists()


def test_a_failed_format_does_not_stop_the_others_and_the_report_says_what_is_missing(
    store, done_round, tmp_path, monkeypatch
):
    """The message of the child's failure for that format is used; else the whole error's message."""
    fake = FakeExport(
        fail={
            "h5": ExportError("h5 not written: whole message", {}, {"h5": "the converter crashed"}),
            "tflite_float32": ExportError("whole message of the export", {}, {"other": "x"}),
            "c_header": ModelError("disk full"),
        }
    )
    monkeypatch.setattr(models, "export_all", fake)
    out = tmp_path / "out"
    with pytest.raises(ExportIncomplete) as exc:
        export_round(store, done_round, out, ("h5", "tflite_float32", "npz", "c_header"))
    assert str(exc.value) == (
        "export h5 failed: the converter crashed; export tflite_float32 failed: whole message of the export; "
        f"export c_header failed: disk full (the other 2 files were written to {out})"
    )
    assert exc.value.written == {
        "npz": out / "personalized_round1.npz",
        "report": out / "personalized_round1_report.md",
    }
    assert exc.value.failed == {
        "h5": "the converter crashed",
        "tflite_float32": "whole message of the export",
        "c_header": "disk full",
    }
    assert (out / "personalized_round1_report.md").read_text(encoding="utf-8") == EXPORT_REPORT_HEAD + (
        "\n## Files\n\n* `personalized_round1.npz` (npz)\n"
        "\n## Not written\n\n"
        "* h5: the converter crashed\n"
        "* tflite_float32: whole message of the export\n"
        "* c_header: disk full\n"
    )


def test_a_report_that_cannot_be_written_keeps_the_models_and_names_them(store, done_round, tmp_path, monkeypatch):
    """Was: the report's OSError left export_round with the files written before it in no list (the app said
    only "Is a directory").  Now the report is one more failure: the models stay and are carried."""
    monkeypatch.setattr(models, "export_all", FakeExport())
    out = tmp_path / "out"
    (out / "r_report.md").mkdir(parents=True)  # a folder in the way of the report
    with pytest.raises(ExportIncomplete) as exc:
        export_round(store, done_round, out, ("npz", "c_header"), stem="r")
    assert str(exc.value) == (
        f"the report r_report.md was not written: Is a directory (the other 2 files were written to {out})"
    )
    assert exc.value.written == {"npz": out / "r.npz", "c_header": out / "r.c_header"}  # (the fake's names)
    assert exc.value.failed == {"report": "Is a directory"}


def test_a_failed_format_and_a_failed_report_are_both_named(store, done_round, tmp_path, monkeypatch):
    monkeypatch.setattr(models, "export_all", FakeExport(fail={"c_header": ModelError("disk full")}))
    out = tmp_path / "out"
    (out / "r_report.md").mkdir(parents=True)
    with pytest.raises(ExportIncomplete) as exc:
        export_round(store, done_round, out, ("c_header", "npz"), stem="r")
    assert str(exc.value) == (
        "export c_header failed: disk full; the report r_report.md was not written: Is a directory "
        f"(the other 1 file was written to {out})"
    )
    assert exc.value.failed == {"c_header": "disk full", "report": "Is a directory"}


def test_export_files_names_what_an_export_would_write_before_it_starts(store, done_round, tmp_path, monkeypatch):
    """The app asks before replacing these files: they must be exactly the files export_round writes."""
    formats = ("keras", "h5", "tflite_float32", "c_header", "npz")
    listed = export_files(tmp_path, done_round, formats)
    assert [(p.name, what) for p, what in listed.items()] == [
        ("personalized_round1.keras", "keras"),
        ("personalized_round1.h5", "h5"),
        ("personalized_round1_float32.tflite", "tflite_float32"),
        ("personalized_round1.h", "c_header"),
        ("personalized_round1.npz", "npz"),
        ("personalized_round1.json", "metadata (keras, h5)"),
        ("personalized_round1_float32.json", "metadata (tflite_float32)"),
        ("personalized_round1_report.md", "report"),
    ]
    # the real export_all for the two formats that need no TensorFlow: the same names
    written = export_round(store, done_round, tmp_path / "real", ("c_header", "npz"))
    assert {p: k for k, p in written.items()} == export_files(tmp_path / "real", done_round, ("c_header", "npz"))
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == [
        "personalized_round1.h",
        "personalized_round1.npz",
        "personalized_round1_report.md",
    ]


def test_a_cancelled_export_keeps_what_was_written_and_writes_no_report(store, done_round, tmp_path, monkeypatch):
    flag = []
    fake = FakeExport(on_call=lambda f: flag.append(f))
    monkeypatch.setattr(models, "export_all", fake)
    seen = []
    out = tmp_path / "out"
    written = export_round(
        store,
        done_round,
        out,
        ("npz", "c_header", "keras"),
        cancelled=lambda: len(flag) >= 1,
        progress=lambda f, t: seen.append((f, t)),
    )
    assert written == {"npz": out / "personalized_round1.npz"}
    assert [c["format"] for c in fake.calls] == ["npz"]
    assert seen == [(0.0, "writing npz")]
    assert not (out / "personalized_round1_report.md").exists()


def test_the_cancel_check_is_handed_to_each_format(store, done_round, tmp_path, monkeypatch):
    fake = FakeExport()
    monkeypatch.setattr(models, "export_all", fake)

    def cancelled():
        return False

    export_round(store, done_round, tmp_path, ("npz",), cancelled=cancelled)
    assert fake.calls[0]["cancelled"] is cancelled


def test_a_format_that_fails_because_it_was_cancelled_is_not_a_failure(store, done_round, tmp_path, monkeypatch):
    flag = []

    def on_call(f):
        flag.append(f)

    fake = FakeExport(fail={"tflite_float32": ModelError("conversion stopped")}, on_call=on_call)
    monkeypatch.setattr(models, "export_all", fake)
    written = export_round(
        store, done_round, tmp_path, ("tflite_float32", "npz"), cancelled=lambda: "tflite_float32" in flag
    )
    assert written == {}
    assert [c["format"] for c in fake.calls] == ["tflite_float32"]
    assert not (tmp_path / "personalized_round1_report.md").exists()


def test_an_export_cancelled_before_it_starts_writes_nothing(store, done_round, tmp_path, monkeypatch):
    fake = FakeExport()
    monkeypatch.setattr(models, "export_all", fake)
    assert export_round(store, done_round, tmp_path / "out", ("npz",), cancelled=lambda: True) == {}
    assert fake.calls == [] and not (tmp_path / "out").exists()


# --- calibration records ------------------------------------------------------------------------------------


def test_calibration_records_are_the_finished_rounds_training_batches(store):
    """Validation passes are inference (left out); warm-up batches train the last layer; energy only where the
    batch's D7 edge was seen; rounds not done, without board info or without weights are skipped (and the
    rounds after them still count)."""
    skipped = [
        ("failed", {"round_info": {"sysclk_hz": 1}}, True),
        ("done", {"round_info": {}}, True),
        ("done", {"round_info": {"sysclk_hz": 1}}, False),  # weights file gone
    ]
    for status, result, weights in skipped:
        sid = add_round(store, {}, result, status=status, batches=[batch(0, "main", 4, 1.0, source="d7")])
        result["weights_path"] = save_weights(store, sid) if weights else f"rounds/round_{sid}_weights.npz"
        store.update_round(sid, result=result)
    rid = add_round(
        store,
        {"trainable": ["dense1"]},
        {},
        batches=[
            batch(0, "warmup", 4.0, 1, energy_j=0.001, source="d7"),
            batch(1, "main", 4, 2.5, energy_j=0.002, source="d7"),
            batch(2, "val", 12, 0.5, energy_j=0.003, source="d7"),
            batch(3, "main", 2, 1.25, energy_j=0.004, source="d7-interp"),
        ],
    )
    store.update_round(
        rid,
        result={
            "round_info": {"sysclk_hz": 160_000_000},
            "voltage_v": 3.3,
            "weights_path": save_weights(store, rid),
        },
    )
    recs = calibration_records(store)
    assert recs == [
        BatchRecord(TINY, "last", 4, 1.0, clock_hz=160_000_000, energy_j=0.001, voltage_v=3.3, label="round 4 batch 0"),
        BatchRecord(
            TINY, ["dense1"], 4, 2.5, clock_hz=160_000_000, energy_j=0.002, voltage_v=3.3, label="round 4 batch 1"
        ),
        BatchRecord(
            TINY, ["dense1"], 2, 1.25, clock_hz=160_000_000, energy_j=None, voltage_v=3.3, label="round 4 batch 3"
        ),
    ]
    assert [type(r.batch_size) for r in recs] == [int, int, int]
    assert [type(r.seconds) for r in recs] == [float, float, float]


def test_calibration_records_of_the_rounds_given_only(store):
    """A round without a trainable list or clock or voltage: no layers, the profile's clock and voltage."""
    ids = []
    for _ in range(2):
        rid = add_round(store, {}, {}, batches=[batch(0, "main", 8, 0.75, source="host", energy_j=0.01)])
        store.update_round(rid, result={"round_info": {"board": "b"}, "weights_path": save_weights(store, rid)})
        ids.append(rid)
    second = [r for r in store.rounds() if r["id"] == ids[1]]
    assert calibration_records(store, second) == [
        BatchRecord(TINY, [], 8, 0.75, clock_hz=None, energy_j=None, voltage_v=None, label="round 2 batch 0")
    ]
    assert calibration_records(store, []) == []
    assert len(calibration_records(store)) == 2


# --- the Estimator's inputs ---------------------------------------------------------------------------------


class FakeSettings(dict):
    def get(self, key, default=None):
        return super().get(key, default)

    def set(self, key, value):
        self[key] = value


def test_estimator_inputs_default_to_the_odl_firmware_profile_and_no_budgets():
    """The app's boards run the ODL firmware: its cost profile and its memory accounting are the defaults."""
    assert EstimatorInputs.from_settings(FakeSettings()) == EstimatorInputs(
        "odl-firmware", 32, 2, 320.0, 24.0, 0.0, 0.0, "charging", "firmware", 5
    )


def test_estimator_inputs_read_saved_settings_in_their_own_types():
    s = FakeSettings(
        {
            "estimator.profile": "nucleo",
            "estimator.batch_size": "16",
            "estimator.epochs": 3.0,
            "estimator.ram_kib": 256,
            "estimator.reserve_kib": "12.5",
            "estimator.time_s": 60,
            "estimator.energy_mj": "7.5",
            "estimator.power_source": "battery",
            "estimator.accounting": "peak",
            "estimator.n_classes": 9,  # not a setting: the model says how many classes
        }
    )
    d = EstimatorInputs.from_settings(s)
    assert d == EstimatorInputs("nucleo", 16, 3, 256.0, 12.5, 60.0, 7.5, "battery", "peak", 5)
    assert [type(v) for v in dataclasses.astuple(d)] == [str, int, int, float, float, float, float, str, str, int]


def test_estimator_inputs_save_every_budget_and_option_but_the_class_count():
    s = FakeSettings()
    EstimatorInputs("nucleo", 16, 3, 256.0, 12.5, 60.0, 7.5, "battery", "peak", 4).save(s)
    assert list(s.items()) == [
        ("estimator.profile", "nucleo"),
        ("estimator.batch_size", 16),
        ("estimator.epochs", 3),
        ("estimator.ram_kib", 256.0),
        ("estimator.reserve_kib", 12.5),
        ("estimator.time_s", 60.0),
        ("estimator.energy_mj", 7.5),
        ("estimator.power_source", "battery"),
        ("estimator.accounting", "peak"),
    ]


@pytest.fixture
def fake_recommend(monkeypatch):
    calls = []

    def recommend(*args, **kw):
        calls.append((args, kw))
        return "the recommendation"

    monkeypatch.setattr(importlib.import_module("estimator.recommend"), "recommend", recommend)
    return calls


def test_recommend_leaves_out_the_sizes_the_labelled_data_cannot_fill(fake_recommend):
    """Was: a T with too few windows for a round was costed as one batch per epoch, and could be recommended."""
    d = EstimatorInputs()
    counts = {20: (63, 6), 40: (30, 3), 60: None, 80: None}
    windows = counts.get
    d.recommend(n_windows=windows, input_sizes=(20, 40, 60, 80))
    d.recommend(n_windows=lambda T: None, input_sizes=(20.0, 40))  # no data at all: every size, one batch per epoch
    d.recommend(n_windows=120, input_sizes=(20, 40))  # a count for every size: all of them
    d.recommend(n_windows=None, input_sizes=(60, 20))
    sizes = [args[1] for args, _ in fake_recommend]
    assert sizes == [(20, 40), (20, 40), (20, 40), (60, 20)]
    assert fake_recommend[0][1]["n_windows"] is windows  # (handed on as it is)


def test_recommend_asks_for_tl_and_full_under_these_budgets_on_the_paper_cnn(fake_recommend):
    d = EstimatorInputs("paper", 16.0, 4, 256.0, 12.5, 0.0, 0.0, "battery", "peak", 3.0)
    assert d.recommend(n_windows=120, input_sizes=(40.0, 20), epochs=(3, 1.0, 3)) == "the recommendation"
    ((args, kw),) = fake_recommend
    model, sizes, modes, epochs = args
    assert (sizes, modes, epochs) == ((40, 20), ("tl", "full"), (1, 3, 4))
    assert [type(T) for T in sizes] == [int, int] and [type(e) for e in epochs] == [int, int, int]
    assert kw == dict(
        batch_size=16,
        profile=PRESETS["paper"],
        n_windows=120,
        ram_kib=256.0,
        reserve_kib=12.5,
        time_s=None,
        energy_mj=None,
        power_source="battery",
        accounting="peak",
        accuracy=None,
        robust=True,
    )
    assert type(kw["batch_size"]) is int
    a = model(60.0)
    assert a.input_shape == (60, 3) and a.name == "paper_cnn_T60"
    assert [(layer.name, layer.units) for layer in a.layers if layer.kind == "dense"] == [("dense1", 50), ("dense2", 3)]
    assert type(a.layers[-2].units) is int


def test_recommend_defaults_to_the_general_sizes_and_epochs_and_passes_budgets_and_models(fake_recommend, tmp_path):
    arch, acc = TINY, object()
    d = EstimatorInputs(time_s=90.0, energy_mj=12.0, epochs=7)
    prof = PRESETS["paper"]
    d.profile = prof  # type: ignore[assignment]  (get_profile takes a profile as is)
    d.recommend(arch=arch, accuracy=acc, profile_dir=tmp_path)
    ((args, kw),) = fake_recommend
    assert args == (TINY, (20, 40, 60, 80, 100), ("tl", "full"), (1, 2, 3, 5, 7, 10))
    assert kw["time_s"] == 90.0 and kw["energy_mj"] == 12.0 and kw["accuracy"] is acc
    assert kw["n_windows"] is None and kw["profile"] is prof
    assert (kw["power_source"], kw["accounting"], kw["batch_size"]) == ("charging", "firmware", 32)


def test_recommend_finds_a_saved_profile_in_the_profile_folder(fake_recommend, tmp_path):
    from estimator.profiles import save_profile

    save_profile(dataclasses.replace(PRESETS["paper"], name="myboard"), tmp_path)
    EstimatorInputs(profile="myboard").recommend(profile_dir=tmp_path)
    ((_, kw),) = fake_recommend
    assert kw["profile"].name == "myboard"


def test_recommend_runs_the_real_recommender_on_a_robust_round_of_the_5_class_paper_cnn():
    """The table's own epochs (2) are tried too; 10,033 parameters = the paper CNN with 5 classes."""
    rec = EstimatorInputs().recommend(n_windows=64, input_sizes=(20,), epochs=(1,))
    c = rec.choice
    assert (c["input_size"], c["mode"], c["epochs"], c["params"], c["procedure"]) == (20, "full", 2, 10033, "robust")
    assert rec.binding == "none"


# --- measured points ----------------------------------------------------------------------------------------


def test_measured_points_average_the_full_size_main_batches_of_finished_rounds(store):
    add_round(
        store,
        {"input_size": 40, "mode": "tl", "batch_size": 4},
        {},
        batches=[
            batch(0, "main", 4, 1.0, energy_j=0.002, pred_seconds=0.9, pred_energy_j=0.0018),
            batch(1, "main", 4, 2.0, energy_j=None, pred_seconds=None, pred_energy_j=0.0022),
            batch(2, "main", 2, 9.0, energy_j=0.5, pred_seconds=9.0, pred_energy_j=0.5),
            batch(3, "warmup", 4, 9.0, energy_j=0.5, pred_seconds=9.0, pred_energy_j=0.5),
            batch(4, "val", 4, 9.0, energy_j=0.5, pred_seconds=9.0, pred_energy_j=0.5),
        ],
    )
    add_round(store, {"batch_size": 4}, {}, status="failed", batches=[batch(0, "main", 4, 1.0)])
    add_round(store, {"batch_size": 4}, {}, batches=[batch(0, "main", 3, 1.0)])
    add_round(
        store,
        {"input_size": 20, "mode": "full", "batch_size": 8},
        {},
        batches=[batch(0, "main", 8, 0.5, pred_energy_j=None), batch(1, "main", 8, 1.5, pred_seconds=2.0)],
    )
    pts = measured_points(store)
    assert pts == [
        {
            "round_id": 1,
            "input_size": 40,
            "mode": "tl",
            "batch_size": 4,
            "seconds": 1.5,
            "energy_mj": pytest.approx(2.0, abs=1e-12),
            "pred_seconds": pytest.approx(0.45, abs=1e-12),
            "pred_energy_mj": pytest.approx(2.0, abs=1e-12),
        },
        {
            "round_id": 4,
            "input_size": 20,
            "mode": "full",
            "batch_size": 8,
            "seconds": 1.0,
            "energy_mj": None,
            "pred_seconds": 1.0,
            "pred_energy_mj": 0.0,
        },
    ]
    assert all(type(p[k]) is float for p in pts for k in ("seconds", "pred_seconds", "pred_energy_mj"))


def test_no_finished_round_no_points(store):
    add_round(store, {"batch_size": 4}, {}, status="running", batches=[batch(0, "main", 4, 1.0)])
    assert measured_points(store) == []


QEMU_BOARD = {
    "name": "NUCLEO-L496ZG (virtual: ODL firmware under QEMU)",
    "build": "qemu-mps2-an386",
    "firmware": "1.1.0",
    "odl_firmware": True,
}
PYTHON_BOARD = {
    "name": "NUCLEO-L496ZG (virtual: Python emulator)",
    "build": "paper",
    "firmware": "1.1.0",
    "odl_firmware": False,
}


def test_report_names_the_board_that_ran_the_round_and_its_firmware(store):
    rid = add_round(store, FULL_CONFIG, {**FULL_RESULT, "board": QEMU_BOARD}, batches=FULL_BATCHES)
    assert round_report(store, rid) == FULL_REPORT.replace(
        "* 4 batches + 1 validation pass,",
        "* board: NUCLEO-L496ZG (virtual: ODL firmware under QEMU), ODL firmware 1.1.0 (build `qemu-mps2-an386`)\n"
        "* 4 batches + 1 validation pass,",
    )


def test_report_of_a_round_on_a_board_without_the_firmware_says_nothing_was_measured(store):
    """The Python emulated board takes its batch times and current from the estimator: the report says the
    comparison is the estimator's with itself, and names the cost profile the board used."""
    rid = add_round(store, FULL_CONFIG, {**FULL_RESULT, "board": PYTHON_BOARD}, batches=FULL_BATCHES)
    assert round_report(store, rid) == FULL_REPORT.replace(
        "* 4 batches + 1 validation pass,",
        "* board: NUCLEO-L496ZG (virtual: Python emulator), cost profile `paper`\n* 4 batches + 1 validation pass,",
    ).replace(
        "profile: `nucleo_h7`\n",
        "profile: `nucleo_h7`\n\nThis board does not run the ODL firmware: it takes each batch's time and current "
        "from the estimator (cost profile `paper`), so the table above compares the estimator with itself. Run the "
        "round on the ODL firmware (the virtual bench's QEMU board, or a NUCLEO-L496ZG) to measure them.\n",
    )


def test_report_counts_validation_passes_apart_from_batches_and_takes_the_last_batchs_loss(store):
    """A round's last row is often its last validation pass: its loss is the validation loss, not a batch's."""
    rows = [*FULL_BATCHES, batch(5, "val", 4, 0.25, loss=0.125, pred_seconds=0.2)]
    rid = add_round(store, FULL_CONFIG, FULL_RESULT, batches=rows)
    assert "\n* 4 batches + 2 validation passes, board time 4.00 s, final batch loss 0.625\n" in round_report(
        store, rid
    )
    rid = add_round(store, FULL_CONFIG, FULL_RESULT, batches=[batch(0, "val", 4, 0.25, loss=0.5, pred_seconds=0.2)])
    assert "\n* 0 batches + 1 validation pass, board time 0.25 s\n" in round_report(store, rid)


@pytest.mark.parametrize(
    ("ran", "want"),
    [
        (
            {
                "name": "NUCLEO-L496ZG (virtual: Python emulator)",
                "build": "odl-firmware",
                "firmware": "1.1.0",
                "odl_firmware": False,
            },
            {
                "board": "NUCLEO-L496ZG",
                "build": "odl-firmware",
                "sysclk_hz": 80_000_000,
                "name": "NUCLEO-L496ZG (virtual: Python emulator)",
                "firmware": "1.1.0",
                "odl_firmware": False,
                "times": "the estimator's (cost profile 'odl-firmware'): this board does not run the ODL firmware",
            },
        ),
        (
            {
                "name": "NUCLEO-L496ZG (virtual: ODL firmware under QEMU)",
                "build": "qemu-mps2-an386",
                "firmware": "1.1.0",
                "odl_firmware": True,
            },
            {
                "board": "NUCLEO-L496ZG",
                "build": "odl-firmware",
                "sysclk_hz": 80_000_000,
                "name": "NUCLEO-L496ZG (virtual: ODL firmware under QEMU)",
                "firmware": "1.1.0",
                "odl_firmware": True,
                "times": "measured by the board (ODL firmware)",
            },
        ),
    ],
    ids=["python-emulator", "qemu"],
)
def test_personalized_meta_says_which_board_ran_the_round_and_whether_it_measured(store, ran, want):
    """The sidecar of a round on the Python emulated board said only "NUCLEO-L496ZG" beside its board_seconds
    and energy_j, as if a real board had measured them; the panel and the report say "(virtual: Python
    emulator)" and "not measured"."""
    info = {"board": "NUCLEO-L496ZG", "build": "odl-firmware", "sysclk_hz": 80_000_000}
    rid = add_round(store, {}, {"round_info": info, "board": ran})
    assert personalized_meta(store, rid, tiny())["personalized"]["board"] == want


def test_the_report_and_sidecar_say_which_windows_the_boards_sram_held(store):
    """Was: "234 training windows, 84 test windows", per class, in the report and every sidecar, when the
    board's SRAM held 74 and 37 of them (the warning said so, the Data section did not)."""
    counts = {"walking": [78, 28], "jogging": [78, 28], "stairs": [0, 0]}
    held = {"walking": [37, 19], "jogging": [37, 18], "stairs": [0, 0]}
    rid = add_round(
        store,
        {"n_train": 156, "n_test": 56, "train_fraction": 0.6},
        {"counts": counts, "counts_on_board": held},
    )
    text = round_report(store, rid)
    assert (
        "* 156 training windows, 56 test windows (chronological 60/40 split per activity)\n"
        "* the board's SRAM held 74 of the training and 37 of the test windows: the round trained and was "
        "evaluated on those\n"
        "  * walking: 78 train / 28 test (on the board: 37 / 19)\n"
        "  * jogging: 78 train / 28 test (on the board: 37 / 18)\n"
        "  * stairs: 0 train / 0 test (on the board: 0 / 0)\n"
    ) in text
    windows = personalized_meta(store, rid, tiny())["personalized"]["windows"]
    assert windows["on_board"] == {
        "train": 74,
        "test": 37,
        "per_class": {
            "walking": {"train": 37, "test": 19},
            "jogging": {"train": 37, "test": 18},
            "stairs": {"train": 0, "test": 0},
        },
        "why": "the board's SRAM could not hold every window: the rest was left out evenly",
    }
    assert windows["train"] == 156 and windows["per_class"]["walking"] == {"train": 78, "test": 28}


def _h5_full_disk():
    try:
        raise RuntimeError(
            "Unable to synchronously flush file (file write failed: time = Mon Dec  7 13:37:38 2026\n, filename = "
            "'/x/.a.tmp1-2.h5', file descriptor = 3, errno = 28, error message = 'No space left on device', "
            "buf = 0x55f77aa748b0, total write size = 6144, bytes this sub-write = 6144, offset = 4096)"
        )
    except RuntimeError:
        raise RuntimeError("Can't destroy cache (slist already enabled?)")  # noqa: B904 - as h5py raises it


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize(
    ("fail", "why"),
    [
        (
            lambda tmp: (_ for _ in ()).throw(OSError(28, "No space left on device", str(tmp))),
            "No space left on device",
        ),
        (lambda tmp: (_ for _ in ()).throw(OSError(30, "Read-only file system", str(tmp))), "Read-only file system"),
        (lambda tmp: _h5_full_disk(), "No space left on device"),
    ],
    ids=["oserror-full", "oserror-read-only", "h5py-runtime-error"],
)
def test_a_keras_or_h5_export_the_disk_refuses_says_so_in_words(tmp_path, monkeypatch, fmt, fail, why):
    """Was (the Export panel on a full or read-only disk): "writing the model failed: OSError: [Errno 30]
    Read-only file system: '/x/.a.tmp9382-139746766572416.keras'", and for the .h5 on a full disk h5py's
    "RuntimeError: Can't destroy cache (slist already enabled?)"."""
    import types

    monkeypatch.setattr(models, "arch_to_keras", lambda arch, w: types.SimpleNamespace(save=fail))
    path = tmp_path / f"a.{fmt}"
    with pytest.raises(models.ModelError) as err:
        models._export_here(tiny(), fmt, str(path))  # noqa: SLF001 - what the Keras writer child runs
    assert str(err.value) == f"cannot write {path}: {why}"
    assert list(tmp_path.iterdir()) == []  # no temporary file left


def test_a_keras_export_error_that_is_not_the_disks_is_left_as_it_is(tmp_path, monkeypatch):
    def fail(tmp):
        raise ValueError("a layer Keras cannot save")

    import types

    monkeypatch.setattr(models, "arch_to_keras", lambda arch, w: types.SimpleNamespace(save=fail))
    with pytest.raises(ValueError, match="^a layer Keras cannot save$"):
        models._export_here(tiny(), "keras", str(tmp_path / "a.keras"))  # noqa: SLF001


# --- the export folder and a disk that refuses a format (2026-12-07) ----------------------------------------------
def test_export_makes_the_folder_with_its_parents(store, done_round, tmp_path, monkeypatch):
    """The folder is made (parents too) before the first format, by export_round itself."""
    made = []
    fake = FakeExport(on_call=lambda f: made.append((f, (tmp_path / "a" / "b").is_dir())))
    monkeypatch.setattr(models, "export_all", fake)
    export_round(store, done_round, tmp_path / "a" / "b", ("c_header",), stem="r")
    assert made == [("c_header", True)]


def test_an_export_folder_that_cannot_be_made_is_said_once(store, done_round, tmp_path, monkeypatch):
    monkeypatch.setattr(models, "export_all", FakeExport())
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "sub"
    with pytest.raises(RoundError) as exc:
        export_round(store, done_round, out, ("c_header", "npz"), stem="r")
    assert str(exc.value) == f"{out}: cannot create the export folder (Not a directory); nothing was written"
    assert isinstance(exc.value.__cause__, OSError)


def test_a_format_the_disk_refuses_is_named_with_its_file_and_the_others_are_kept(
    store, done_round, tmp_path, monkeypatch
):
    """An OSError from a format (a disk that filled up) fails that format only, naming the file it would have
    written ("cannot write …/r.npz: No space left on device"); the formats written before it are listed."""
    out = tmp_path / "out"
    full = OSError(28, "No space left on device", str(out / ".r.tmp1.npz"))
    monkeypatch.setattr(models, "export_all", FakeExport(fail={"npz": full}))
    with pytest.raises(ExportIncomplete) as exc:
        export_round(store, done_round, out, ("c_header", "npz"), stem="r")
    assert exc.value.failed == {"npz": f"cannot write {out / 'r.npz'}: No space left on device"}
    assert exc.value.written == {"c_header": out / "r.c_header", "report": out / "r_report.md"}
