"""The design card's rule: device/, estimator/ and app/core never import Qt (app/core is the app's Qt-free
core: the GUI and the CLI call the same code there), device/ and estimator/ never import the app, and
nothing imports TensorFlow at import time of device/, estimator/ or app/core."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QT = ("PySide6", "PyQt5", "PyQt6", "PySide2", "pyqtgraph", "shiboken6")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_device_and_estimator_never_import_qt_or_app():
    offenders = []
    for pkg in ("device", "estimator"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            bad = _imports(path) & set(QT + ("app",))
            if bad:
                offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_app_core_never_imports_qt_or_the_gui():
    offenders = []
    for path in sorted((ROOT / "app" / "core").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
        bad = {m for m in mods if m.split(".")[0] in QT or m == "app.ui" or m.startswith(("app.ui.", "app.commands"))}
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_estimator_never_imports_device():
    offenders = [str(p) for p in (ROOT / "estimator").rglob("*.py") if "device" in _imports(p)]
    assert not offenders


def test_importing_every_device_estimator_and_core_module_loads_no_qt_and_no_tensorflow():
    mods = []
    for pkg in ("device", "estimator", "app/core"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods.append(".".join(parts))
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        f"bad = sorted(k for k in sys.modules if k.split('.')[0] in {QT + ('tensorflow', 'keras')!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported at module load: {out.stdout.strip()}"
