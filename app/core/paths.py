"""Where the app finds the files it ships (``assets/``), from a source checkout and from a frozen bundle.

From source, ``assets/`` is the folder at the top of the repository.  In the PyInstaller one-folder
bundle (``packaging/odlstudio.spec``) the spec copies it to ``<bundle>/_internal/assets``, i.e.
``sys._MEIPASS/assets``.  ``ODL_ASSETS`` overrides both (a folder), e.g. to try regenerated assets.

    from app.core.paths import asset_path
    icon = asset_path("icons", "odlstudio.png")      # a Path; may not exist: check .is_file()

Qt-free and cheap to import.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["is_frozen", "bundle_root", "assets_dir", "asset_path", "ASSETS_ENV"]

#: Environment variable that points to another assets folder.
ASSETS_ENV = "ODL_ASSETS"


def is_frozen() -> bool:
    """True inside a PyInstaller (or similar) frozen executable."""
    return bool(getattr(sys, "frozen", False))


def bundle_root() -> Path:
    """The folder that holds the app's Python packages and data: ``sys._MEIPASS`` when frozen (the
    bundle's ``_internal`` folder), else the repository root (parent of ``app/``)."""
    if is_frozen():
        meipass = getattr(sys, "_MEIPASS", None)
        return Path(meipass) if meipass else Path(sys.executable).resolve().parent
    return Path(__file__).resolve().parents[2]


def assets_dir() -> Path:
    """The assets folder: ``$ODL_ASSETS`` if set, else ``bundle_root()/assets``."""
    env = os.environ.get(ASSETS_ENV)
    if env:
        return Path(env).expanduser()
    return bundle_root() / "assets"


def asset_path(*parts: str) -> Path:
    """``assets_dir()/parts...``; raises ValueError for absolute parts or ``..`` (a path outside assets/)."""
    for p in parts:
        pp = Path(p)
        if pp.is_absolute() or ".." in pp.parts:
            raise ValueError(f"asset_path: {p!r} must be relative to assets/ without '..'")
    return assets_dir().joinpath(*parts)
