"""ST's model zoo HAR models of ../shared (tests/core/test_st_zoo.py through the CLI, tests/gui/test_gui_st_zoo.py
through the GUI, tests/estimator's firmware memory figures): which files, what each should serve, and the
user whose WISDM-2019 lines personalize them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.models import ST_MOBILITY_CLASSES, ST_WISDM_CLASSES
from tests.datakit import real_lines, write

USER = "1600"
CODES = "ABCDEF"  # walking, jogging, stairs, sitting, standing, typing (not a class of any ST model)


def _rel(version: str, family: str, dataset: str, wl: int) -> str:
    base = "pretrained_models" if version == "v2.0.1" else "models"
    kind = "public_dataset/WISDM" if dataset == "WISDM" else "custom_dataset/mobility_v1"
    return (
        f"{version}/human_activity_recognition/{base}/{family}/ST_pretrainedmodel_{kind}/"
        f"{family}_wl_{wl}/{family}_wl_{wl}.h5"
    )


MODELS = [
    (v, f, d, wl)
    for v in ("v2.0.1", "v1.4.0")
    for f in ("ign", "gmp")
    for d in ("WISDM", "mobility_v1")
    for wl in (24, 48)
]
IDS = [f"{v}-{f}-{d}-{wl}" for v, f, d, wl in MODELS]


def expected_classes(dataset: str) -> tuple[tuple[str, ...], dict, list[str]]:
    """(classes, default class map, classes WISDM-2019 cannot serve)."""
    if dataset == "WISDM":
        cmap = {
            "Jogging": ["jogging"],
            "Stationary": ["stationary", "sitting", "standing"],
            "Stairs": ["stairs", "upstairs", "downstairs"],
            "Walking": ["walking"],
        }
        return ST_WISDM_CLASSES, cmap, []
    cmap = {
        "Stationary": ["stationary", "sitting", "standing"],
        "Walking": ["walking"],
        "Jogging": ["jogging"],
        "Biking": ["biking"],
    }
    return ST_MOBILITY_CLASSES, cmap, ["Biking"]


def model_path(st_models: Path, spec) -> Path:
    path = st_models / _rel(*spec)
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def write_user_file(directory: Path, shared_data: Path) -> Path:
    """30 s of each of the ``CODES`` activities of WISDM-2019 subject 1600 (real lines) as a 2019 text file."""
    return write(directory, f"data_{USER}_accel_phone.txt", real_lines(shared_data, USER, 600, CODES))


def changed_layers(before: dict, after: dict) -> set[str]:
    return {n for n in before if any(not np.array_equal(a, b) for a, b in zip(before[n], after[n]))}


def assert_board_holds_preprocessed(board, lm, train_x: np.ndarray, test_x: np.ndarray | None = None) -> None:
    """The emulated board's datasets are the windows after the model's preprocessing (ST's gravity rotation +
    suppression), not the raw m/s²: every window of its training slot (the last round's training and
    validation windows) is one of ``lm.prepare(train_x)``, and, with ``test_x`` (rounds that evaluate on the
    board), every window of its test slot one of ``lm.prepare(test_x)``, up to the int16 transfer (one count
    of a scale of max|x|/32000).  The round's F1 alone cannot tell: a board trained on raw windows still
    ends with weights, and the robust round may keep the general ones."""

    def prepared(x: np.ndarray) -> np.ndarray:
        p = lm.prepare(x)
        return p.reshape(len(p), p.shape[1], -1)

    refs = [(0, prepared(train_x))] + ([] if test_x is None else [(1, prepared(test_x))])
    tol = 2.0 * max(float(np.abs(ref).max()) for _, ref in refs) / 32000.0
    for slot, ref in refs:
        held = board.slots[slot].x
        assert held.shape[1:] == ref.shape[1:] and len(held) > 0, (slot, held.shape, ref.shape)
        dist = np.abs(held[:, None] - ref[None]).max(axis=(2, 3)).min(axis=1)
        assert dist.max() <= tol, (slot, float(dist.max()), tol)
