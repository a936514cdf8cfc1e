"""Where the app finds what it ships (app/core/paths.py; mutation target ``paths``): from a checkout, from a frozen
bundle (with and without ``sys._MEIPASS``) and from ``$ODL_ASSETS``; asset names that would leave assets/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from app.core import paths

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkout(monkeypatch):
    monkeypatch.delenv(paths.ASSETS_ENV, raising=False)
    monkeypatch.delattr(sys, "frozen", raising=False)
    monkeypatch.delattr(sys, "_MEIPASS", raising=False)
    return monkeypatch


def test_from_a_checkout_the_assets_are_beside_app(checkout):
    assert paths.ASSETS_ENV == "ODL_ASSETS"
    assert paths.is_frozen() is False
    assert paths.bundle_root() == ROOT
    assert paths.assets_dir() == ROOT / "assets"
    assert paths.asset_path("models", "x.keras") == ROOT / "assets" / "models" / "x.keras"
    assert paths.asset_path() == ROOT / "assets"


@pytest.mark.parametrize("frozen", [True, 1, "yes"])
def test_a_frozen_bundle_finds_them_under_meipass(checkout, tmp_path, frozen):
    checkout.setattr(sys, "frozen", frozen, raising=False)
    checkout.setattr(sys, "_MEIPASS", str(tmp_path / "_internal"), raising=False)
    assert paths.is_frozen() is True
    assert paths.bundle_root() == tmp_path / "_internal"
    assert paths.assets_dir() == tmp_path / "_internal" / "assets"


@pytest.mark.parametrize("meipass", ["absent", None, ""])
def test_a_frozen_executable_without_meipass_looks_beside_itself(checkout, tmp_path, meipass):
    exe = tmp_path / "dist" / "odlstudio"
    checkout.setattr(sys, "frozen", True, raising=False)
    if meipass != "absent":  # (another freezer than PyInstaller sets no _MEIPASS)
        checkout.setattr(sys, "_MEIPASS", meipass, raising=False)
    checkout.setattr(sys, "executable", str(exe))
    assert paths.bundle_root() == tmp_path / "dist"


@pytest.mark.parametrize("frozen", [False, 0, "", None])
def test_not_frozen_whatever_the_attribute_says(checkout, frozen):
    checkout.setattr(sys, "frozen", frozen, raising=False)
    checkout.setattr(sys, "_MEIPASS", "/nowhere", raising=False)
    assert paths.is_frozen() is False
    assert paths.bundle_root() == ROOT


def test_odl_assets_overrides_both(checkout, tmp_path):
    checkout.setenv("ODL_ASSETS", str(tmp_path / "mine"))
    assert paths.assets_dir() == tmp_path / "mine"
    assert paths.asset_path("sample", "a.csv") == tmp_path / "mine" / "sample" / "a.csv"
    checkout.setenv("HOME", str(tmp_path))
    checkout.setenv("ODL_ASSETS", "~/regenerated")
    assert paths.assets_dir() == tmp_path / "regenerated"  # ~ is the user's home
    checkout.setenv("ODL_ASSETS", "")  # set but empty: not a folder, the default
    assert paths.assets_dir() == ROOT / "assets"


@pytest.mark.parametrize("parts", [("/etc", "passwd"), ("models", "../../x"), ("..",), ("a", "/b")])
def test_an_asset_name_outside_assets_is_refused(checkout, parts):
    bad = next(p for p in parts if Path(p).is_absolute() or ".." in Path(p).parts)
    with pytest.raises(ValueError) as e:
        paths.asset_path(*parts)
    assert str(e.value) == f"asset_path: {bad!r} must be relative to assets/ without '..'"


def test_dots_inside_a_name_are_not_a_parent(checkout):
    assert paths.asset_path("models", "a..b.keras") == ROOT / "assets" / "models" / "a..b.keras"
