"""Fixtures of the app/core tests (the root tests/conftest.py gives ``shared_data`` and the other ../shared
paths)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.datakit import TINY_WISDM_SUBJECTS, real_lines, write


@pytest.fixture(scope="module")
def tiny_wisdm(tmp_path_factory, shared_data) -> Path:
    """500 real lines of each of ``TINY_WISDM_SUBJECTS`` as a WISDM-2019 folder (LOSO and sweep tests)."""
    d = tmp_path_factory.mktemp("wisdm3")
    for s in TINY_WISDM_SUBJECTS:
        write(d, f"data_{s}_accel_phone.txt", real_lines(shared_data, s, 500))
    return d


@pytest.fixture
def utc(monkeypatch):
    """Dates are formatted in local time: the test runs in UTC (restored afterwards)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
