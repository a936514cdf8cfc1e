"""Shared fixtures.  ``shared_dir`` is ../shared beside the checkout; tests that need it skip cleanly
where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ODL_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared not found at {SHARED} (set ODL_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path) -> Path:
    p = shared_dir / "data"
    if not p.is_dir():
        pytest.skip(f"{p} not found")
    return p


@pytest.fixture(scope="session")
def st_models(shared_dir: Path) -> Path:
    p = shared_dir / "models" / "st_modelzoo_har"
    if not p.is_dir():
        pytest.skip(f"{p} not found")
    return p


@pytest.fixture()
def power_window(qtbot, tmp_path):
    """The main window on the in-process bench, showing the Power session panel: ``(window, panel)``."""
    from app.core.context import AppContext
    from app.ui.app import build_window

    ctx = AppContext.create(tmp_path, bench=True, power_recent_s=10.0)
    win = build_window(ctx)
    qtbot.addWidget(win)
    win.resize(1300, 800)
    win.show()
    panel = win.show_panel("power")
    yield win, panel
    win.close()
    ctx.close()


#: WISDM-2019 phone users of the tiny LOSO/sweep data set (``tiny_wisdm``)
TINY_WISDM_SUBJECTS = ("1600", "1604", "1606")


@pytest.fixture(scope="module")
def tiny_wisdm(tmp_path_factory, shared_data) -> Path:
    """500 real lines of each of ``TINY_WISDM_SUBJECTS`` as a WISDM-2019 folder (LOSO and sweep tests)."""
    from tests.test_personalize_data import real_lines, write

    d = tmp_path_factory.mktemp("wisdm3")
    for s in TINY_WISDM_SUBJECTS:
        write(d, f"data_{s}_accel_phone.txt", real_lines(shared_data, s, 500))
    return d


@pytest.fixture()
def offline_ctx(tmp_path):
    """An app context without the bench and without device discovery."""
    from app.core.context import AppContext

    ctx = AppContext.create(tmp_path / "data", bench=False, discover=False)
    yield ctx
    ctx.close()
