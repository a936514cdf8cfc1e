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
