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
def offline_ctx(tmp_path):
    """An app context without the bench and without device discovery."""
    from app.core.context import AppContext

    ctx = AppContext.create(tmp_path / "data", bench=False, discover=False)
    yield ctx
    ctx.close()
