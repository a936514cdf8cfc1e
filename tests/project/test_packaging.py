"""Packaging pieces that can be checked without PyInstaller (the frozen build itself runs only under
``PACKAGING=1 bash .ci/run``): asset paths frozen and from source, the hidden ``smoke`` self-test and its
failure exits, the smoke-test script against the source tree, the spec's excludes against what the app
imports, the desktop entry and the icons."""

from __future__ import annotations

import argparse
import ast
import configparser
import json
import os
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import tomllib

from app.core import paths

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


# ------------------------------------------------------------------------------------------------
# asset paths
# ------------------------------------------------------------------------------------------------


def test_asset_path_from_source_is_the_repository_assets(monkeypatch):
    monkeypatch.delenv(paths.ASSETS_ENV, raising=False)
    assert not paths.is_frozen()
    assert paths.assets_dir() == ROOT / "assets"
    assert paths.asset_path("models", "paper_cnn_wisdm5_T20.keras").is_file()
    assert paths.asset_path("icons", "odlstudio.png").is_file()


def test_asset_path_when_frozen_uses_meipass(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.ASSETS_ENV, raising=False)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert paths.is_frozen()
    assert paths.bundle_root() == tmp_path
    assert paths.asset_path("sample", "x.csv") == tmp_path / "assets" / "sample" / "x.csv"


def test_asset_env_override_and_rejected_parts(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.ASSETS_ENV, str(tmp_path))
    assert paths.asset_path("a.txt") == tmp_path / "a.txt"
    for bad in (("..", "x"), ("models/../../etc",), (str(tmp_path / "abs"),)):
        with pytest.raises(ValueError, match="relative to assets"):
            paths.asset_path(*bad)


def test_device_sample_lookup_matches_the_bundle_layout():
    """device/ cannot import app/ (layering), so device.nucleo.sensor finds the sample as
    ``<parent of device>/assets``; the spec puts assets/ beside the packages (sys._MEIPASS/assets), so
    both resolve to the same folder."""
    from device.nucleo.sensor import default_trace_path

    p = default_trace_path()
    assert p is not None and p.parent.parent == paths.assets_dir()


# ------------------------------------------------------------------------------------------------
# odlstudio smoke (in-process, without Qt, with faults injected into the real pipeline)
# ------------------------------------------------------------------------------------------------


def _smoke(*argv: str) -> int:
    from app.commands import smoke

    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command")
    smoke.register(sub)
    args = ap.parse_args(["smoke", *argv])
    return args.func(args)


def test_smoke_streams_real_samples_from_the_virtual_bench():
    # In a fresh interpreter: earlier tests in this pytest process import TensorFlow, and the smoke
    # run checks that start-up did not.
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "smoke", "--seconds", "1.5", "--no-window", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["ok"] and not report["errors"] and report["frozen"] is False
    # 52 Hz accelerometer and 100 kHz LPM01A by default: most of the nominal samples must be there.
    assert report["accel_samples"] >= 0.5 * 52 * 1.5
    assert report["power_samples"] >= 0.5 * 100_000 * 1.5
    assert report["tensorflow_at_startup"] is False


def test_smoke_fails_with_a_message_when_no_samples_arrive(monkeypatch, capsys):
    from app.core.streams import SampleStream

    monkeypatch.setattr(SampleStream, "append", lambda self, block: None)  # drivers' data is lost
    assert _smoke("--seconds", "1", "--no-window") == 1
    err = capsys.readouterr().err
    assert "accel: 0 samples" in err and "power: 0 samples" in err


def test_smoke_fails_when_devices_never_stream(monkeypatch, capsys):
    from app.core.devices import DeviceManager

    monkeypatch.setattr(DeviceManager, "set_streaming", lambda self, key, on: None)
    assert _smoke("--seconds", "0.5", "--no-window", "--connect-timeout", "1") == 1
    assert "not streaming after 1 s" in capsys.readouterr().err


def test_smoke_reports_missing_assets(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(paths.ASSETS_ENV, str(tmp_path))
    assert _smoke("--seconds", "0.5", "--no-window") == 1
    assert "shipped assets missing" in capsys.readouterr().err


def test_valid_samples_ignores_gaps():
    from app.commands.smoke import _valid_samples
    from app.core.streams import SampleStream

    s = SampleStream("t", 100.0, 1, recent_s=10)
    s.append_gap(250)
    assert _valid_samples(s, 2.0) == 0
    s.append(np.ones(150, np.float32))
    assert _valid_samples(s, 2.0) == 150  # last 200 rows: 50 NaN + 150 real
    assert _valid_samples(None, 2.0) == 0


def test_smoke_is_hidden_from_help_but_callable():
    from app.cli import build_parser

    text = build_parser().format_help()
    assert "smoke" not in text
    assert build_parser().parse_args(["smoke", "--seconds", "2"]).seconds == 2.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["smoke", "--seconds", "-1"])


# ------------------------------------------------------------------------------------------------
# packaging/smoke_test.py against the source tree (the same checks it applies to the bundle)
# ------------------------------------------------------------------------------------------------


@pytest.mark.gui
def test_smoke_test_script_passes_from_source():
    out = subprocess.run(
        [PY, "packaging/smoke_test.py", "--cmd", f"{PY} -m app.cli", "--seconds", "1", "--no-export"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[2/4] smoke:" in out.stdout and "[3/4] estimate --json:" in out.stdout
    assert "[4/4] flash --list:" in out.stdout
    assert "smoke test passed" in out.stdout


def test_smoke_test_script_fails_clearly_without_a_bundle(tmp_path):
    out = subprocess.run(
        [PY, "packaging/smoke_test.py", "--bundle", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "does not exist" in out.stderr and "make package" in out.stderr


def _load(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_smoke_test_checks_the_shipped_firmware(tmp_path):
    smoke = _load(ROOT / "packaging" / "smoke_test.py", "odl_smoke_test")
    bundle = tmp_path / "odlstudio"
    img = bundle / "_internal" / "device" / "nucleo" / "firmware" / "nucleo-l496zg" / "odl.bin"
    img.parent.mkdir(parents=True)
    img.write_bytes(b"x")
    good = {
        "expected_version": "1.0.0",
        "firmware": {"path": str(img), "version": "1.0.0", "target": "nucleo-l496zg", "bytes": 1},
    }
    assert smoke.check_firmware(good, True, bundle) == []
    older = json.loads(json.dumps(good))
    older["firmware"]["version"] = "0.9.0"
    assert "is 0.9.0, the app expects 1.0.0" in smoke.check_firmware(older, True, bundle)[0]
    elsewhere = json.loads(json.dumps(good))
    elsewhere["firmware"]["path"] = str(tmp_path / "odl.bin")
    assert "not the bundle's own copy" in smoke.check_firmware(elsewhere, True, bundle)[0]
    missing = {"expected_version": "1.0.0", "firmware": None, "firmware_error": "no built ODL firmware"}
    assert "ships no NUCLEO firmware" in smoke.check_firmware(missing, True, bundle)[0]
    assert smoke.check_firmware(missing, False, None) == []  # from source a missing image is only reported


def test_wheel_bundle_and_app_agree_on_where_the_firmware_goes():
    """setup.py (wheel), the spec (frozen app) and device.nucleo.fwimage (the app) use one location."""
    from device.nucleo import fwimage

    packaged = Path(fwimage.__file__).resolve().parent / "firmware" / fwimage.BOARD_TARGET
    rel = packaged.relative_to(ROOT).as_posix()
    assert rel == "device/nucleo/firmware/nucleo-l496zg"
    spec = (ROOT / "packaging" / "odlstudio.spec").read_text(encoding="utf-8")
    assert f'"{rel}"' in spec and 'FIRMWARE = ROOT / "firmware" / "build" / "nucleo-l496zg" / "odl.bin"' in spec
    setup_py = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert 'Path(self.build_lib) / "device" / "nucleo" / "firmware" / TARGET' in setup_py
    assert "device/nucleo/firmware/" in (ROOT / ".gitignore").read_text()  # built, never committed


def test_wheel_build_step_ships_the_built_firmware(tmp_path, monkeypatch):
    """setup.py's build_py runs make -C firmware nucleo and puts the image in the wheel's tree; editable
    installs skip it; without the toolchain it says what to install."""
    from tests import firmwarekit

    firmwarekit.require("arm-none-eabi-gcc", "make")
    from setuptools import Distribution

    from device.nucleo import fwimage

    setup_mod = _load(ROOT / "setup.py", "odl_setup")
    dist = Distribution({"name": "odl-studio", "packages": []})
    cmd = setup_mod.BuildPyWithFirmware(dist)
    cmd.build_lib = str(tmp_path / "lib")
    cmd.ensure_finalized()
    cmd.run()
    shipped = tmp_path / "lib" / "device" / "nucleo" / "firmware" / "nucleo-l496zg" / "odl.bin"
    assert fwimage.identify(shipped).version == fwimage.FIRMWARE_VERSION
    cmd2 = setup_mod.BuildPyWithFirmware(dist)
    cmd2.build_lib = str(tmp_path / "lib2")
    cmd2.editable_mode = True
    cmd2.ensure_finalized()
    cmd2.run()
    assert not (tmp_path / "lib2" / "device").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(RuntimeError, match="gcc-arm-none-eabi"):
        setup_mod.build_firmware(ROOT)


# ------------------------------------------------------------------------------------------------
# the spec, the Makefile target, CI
# ------------------------------------------------------------------------------------------------


def _spec_list(name: str) -> list[str]:
    tree = ast.parse((ROOT / "packaging" / "odlstudio.spec").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"{name} not found in the spec")


def _imported_modules() -> set[str]:
    names: set[str] = set()
    for pkg in ("app", "device", "estimator"):
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module)
                    names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_spec_excludes_nothing_the_app_imports():
    excludes = _spec_list("excludes")
    used = _imported_modules()
    clash = sorted(m for m in used for e in excludes if m == e or m.startswith(e + "."))
    assert not clash, f"the spec excludes modules the app imports: {clash}"
    assert "PySide6.QtWidgets" not in excludes and "tkinter" in excludes


@pytest.mark.gui
def test_spec_excludes_nothing_the_ui_loads_at_run_time():
    """Dependencies import modules by computed names too (pyqtgraph: ``import_module(f"{QT_LIB}.QtOpenGL")``),
    which the AST check above cannot see: import the whole UI - every command, every panel, pyqtgraph -
    in a fresh interpreter and look at what got loaded."""
    code = (
        "import importlib, sys\n"
        "from app.commands import COMMANDS\n"
        "for c in COMMANDS:\n"
        "    try: importlib.import_module('app.commands.' + c)\n"
        "    except ModuleNotFoundError as e:\n"
        "        if e.name != 'app.commands.' + c: raise\n"
        "import app.ui.app, app.ui.main_window, pyqtgraph\n"
        "from app.ui.panels import panel_specs\n"
        "panel_specs()\n"
        "print('\\n'.join(sys.modules))\n"
    )
    out = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    excludes = _spec_list("excludes")
    clash = sorted(m for m in loaded for e in excludes if m == e or m.startswith(e + "."))
    assert not clash, f"the spec excludes modules the app loads: {clash}"
    assert "PySide6.QtWidgets" in loaded


def test_spec_collects_packages_imported_by_computed_names():
    """Sub-commands, panels, the board emulator and pyserial's URL handlers are imported by name at run time;
    the spec must collect them (a frozen build without serial.urlhandler cannot open socket:// URLs, so the
    virtual bench is unreachable)."""
    tree = ast.parse((ROOT / "packaging" / "odlstudio.spec").read_text(encoding="utf-8"))
    collected: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and isinstance(node.iter, ast.Tuple):
            body = ast.unparse(node)
            if "collect_submodules" in body:
                collected.update(ast.literal_eval(node.iter))
    assert {"app", "device", "estimator", "serial.urlhandler"} <= collected
    import serial

    assert serial.protocol_handler_packages == ["serial.urlhandler"]  # where pyserial looks them up


def test_make_package_installs_the_extra_and_builds():
    out = subprocess.run(["make", "-n", "package"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "pip install -q -e '.[package]'" in out.stdout
    assert "packaging/build.py" in out.stdout
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.lower().startswith("pyinstaller") for r in extras["package"])


def test_ci_runs_packaging_only_on_request():
    text = (ROOT / ".ci" / "run").read_text()
    assert text.index("make test") < text.index("make package")
    assert 'if [ "${PACKAGING:-0}" = "1" ]' in text and "packaging/smoke_test.py" in text
    tests = sorted((ROOT / "tests").rglob("test_*.py"))  # every layer's folder
    assert len(tests) > 50, "the test files were not found"
    for test in tests:  # the fast suite never builds the bundle
        if test.name != "test_packaging.py":
            src = test.read_text(encoding="utf-8")
            assert "packaging/build.py" not in src and "make package" not in src, test


# ------------------------------------------------------------------------------------------------
# desktop entry and icons
# ------------------------------------------------------------------------------------------------


def test_desktop_entry():
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str
    cp.read(ROOT / "assets" / "odlstudio.desktop", encoding="utf-8")
    e = cp["Desktop Entry"]
    assert e["Type"] == "Application" and e["Name"] == "ODL Studio" and e["Terminal"] == "false"
    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert e["Exec"].split()[0] in script and e["TryExec"] == e["Exec"].split()[0]
    assert (ROOT / "assets" / "icons" / f"{e['Icon']}.png").is_file()
    assert e["Categories"].endswith(";")


def test_icons_are_valid_and_reproducible(tmp_path):
    icons = ROOT / "assets" / "icons"
    png = (icons / "odlstudio.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (256, 256)
    root = ET.fromstring((icons / "odlstudio.svg").read_text(encoding="utf-8"))
    assert root.tag.endswith("svg") and root.get("viewBox") == "0 0 256 256"
    ico = (icons / "odlstudio.ico").read_bytes()
    assert struct.unpack("<HHH", ico[:6]) == (0, 1, 4)
    icns = (icons / "odlstudio.icns").read_bytes()
    assert icns[:4] == b"icns" and struct.unpack(">I", icns[4:8])[0] == len(icns)
    out = subprocess.run(
        [PY, "packaging/make_icon.py", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "odlstudio.svg").read_text() == (icons / "odlstudio.svg").read_text(), (
        "odlstudio.svg is out of date: run packaging/make_icon.py"
    )
    # Bitmaps: the same drawing, within what Qt's CPU-specific raster paths change (PNG bytes may differ
    # with the zlib build too).
    problem = icon_difference(_pixels(tmp_path / "odlstudio.png"), _pixels(icons / "odlstudio.png"))
    assert problem is None, f"odlstudio.png is out of date ({problem}): run packaging/make_icon.py"


#: Qt's raster engine blends and rasterizes through CPU-specific code (SSE2/AVX2/AVX-512, FMA): the same
#: drawing comes out up to a few levels apart on a few edge pixels (8 pixels by 1 level on an AVX-512
#: machine against the committed AVX2 rendering).  A changed drawing moves an edge (tens of levels on the
#: edge pixels) or a colour (most pixels change).
ICON_MAX_LEVELS = 8  # largest allowed difference of any channel (premultiplied, 0-255)
ICON_MAX_CHANGED = 0.01  # largest allowed fraction of pixels that differ at all


def _pixels(path_or_bytes) -> np.ndarray:
    """Premultiplied RGBA pixels (un-premultiplying would blow a 1-level difference of a nearly transparent
    edge pixel up to tens of levels)."""
    from PySide6.QtGui import QImage

    img = QImage()
    ok = img.loadFromData(path_or_bytes) if isinstance(path_or_bytes, bytes) else img.load(str(path_or_bytes))
    assert ok and not img.isNull(), "not a readable image"
    img = img.convertToFormat(QImage.Format_RGBA8888_Premultiplied)
    return np.frombuffer(bytes(img.constBits()), np.uint8).reshape(img.height(), img.width(), 4).copy()


def icon_difference(a: np.ndarray, b: np.ndarray) -> str | None:
    """None when ``a`` and ``b`` are the same drawing rendered on possibly different CPUs, else what differs."""
    if a.shape != b.shape:
        return f"size {a.shape[1]}x{a.shape[0]} != {b.shape[1]}x{b.shape[0]}"
    d = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)
    changed = float(np.count_nonzero(d)) / d.size
    if d.max() > ICON_MAX_LEVELS:
        return f"{np.count_nonzero(d > ICON_MAX_LEVELS)} pixels differ by up to {d.max()} levels"
    if changed > ICON_MAX_CHANGED:
        return f"{changed:.1%} of the pixels differ"
    return None


def _make_icon_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_icon", ROOT / "packaging" / "make_icon.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_icon", mod)  # dataclasses look their module up while the class is built
    spec.loader.exec_module(sys.modules["make_icon"])
    return sys.modules["make_icon"]


def test_icon_comparison_tolerates_cpu_rounding_and_catches_a_changed_drawing(qapp, monkeypatch):
    """The tolerance of :func:`icon_difference` is wide enough for another CPU's raster paths and narrow
    enough that any real change of the drawing fails."""
    import dataclasses

    mi = _make_icon_module()
    ref = _pixels(ROOT / "assets" / "icons" / "odlstudio.png")
    assert icon_difference(_pixels(mi.png_bytes(256)), ref) is None
    # another CPU: one or two levels on the anti-aliased edge pixels (what AVX-512 vs AVX2 gives, and more)
    rng = np.random.default_rng(0)
    noisy = ref.astype(np.int16)
    edge = np.argwhere((ref[..., 3] > 0) & (ref[..., 3] < 255))
    for y, x in edge[rng.choice(len(edge), min(len(edge), 200), replace=False)]:
        noisy[y, x] += rng.integers(-2, 3, size=4)
    noisy = np.clip(noisy, 0, 255)
    noisy[..., :3] = np.minimum(noisy[..., :3], noisy[..., 3:])  # stays premultiplied
    assert icon_difference(noisy.astype(np.uint8), ref) is None
    # deliberately changed drawings
    base = mi.shapes()
    dot = next(i for i, s in enumerate(base) if isinstance(s, mi.Dot))
    line = next(i for i, s in enumerate(base) if isinstance(s, mi.Line))
    changes = {
        "dot moved by 1 px": (dot, dataclasses.replace(base[dot], cx=base[dot].cx + 1)),
        "dot radius +0.5 px": (dot, dataclasses.replace(base[dot], r=base[dot].r + 0.5)),
        "trace 1 px thinner": (line, dataclasses.replace(base[line], width=base[line].width - 1)),
        "background 3 levels lighter": (0, dataclasses.replace(base[0], fill="#191e29")),
    }
    for what, (i, shape) in changes.items():
        monkeypatch.setattr(mi, "shapes", lambda i=i, shape=shape: base[:i] + [shape] + base[i + 1 :])
        assert icon_difference(_pixels(mi.png_bytes(256)), ref) is not None, what


def test_install_script_is_valid_sh():
    out = subprocess.run(["sh", "-n", str(ROOT / "packaging" / "install-linux.sh")], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
