"""App shell: starts with the in-process virtual bench and says so; devices panel lists the bench devices;
panels come from the registry; start-up does not import TensorFlow; no button hands its checked bool to an
optional parameter (issue 12)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import PySide6  # noqa: E402, F401 - a required dependency: a broken install fails, never skips
import pytest

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def window(qtbot, tmp_path):
    from app.core.context import AppContext
    from app.ui.app import build_window

    ctx = AppContext.create(tmp_path, bench=True)
    win = build_window(ctx)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()
    ctx.close()


def test_starts_with_virtual_bench_and_status_bar_says_so(window, qtbot):
    assert window.ctx.devices.bench is not None
    qtbot.waitUntil(lambda: window.bench_label.text() == "Virtual bench", timeout=3000)
    assert window.bench_label.isVisible()
    keys = [s.key for s in window.specs]
    mine = [k for k in keys if k in ("devices", "live_accel", "labelling", "power")]
    assert mine == ["devices", "live_accel", "labelling", "power"]


def test_devices_panel_shows_bench_devices_and_connects(window, qtbot):
    from PySide6.QtCore import Qt

    from app.core.devices import DeviceState

    panel = window.show_panel("devices")
    qtbot.waitUntil(lambda: panel.table.rowCount() >= 1, timeout=3000)
    names = [panel.table.item(r, 0).text() for r in range(panel.table.rowCount())]
    assert any("LPM01A" in n and "virtual" in n for n in names)
    if window.ctx.devices.bench.board is not None:
        assert any("NUCLEO" in n for n in names)
    row = next(r for r, n in enumerate(names) if "LPM01A" in n)
    panel.table.selectRow(row)
    qtbot.mouseClick(panel.btn_connect, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.ctx.devices.status("powershield:virtual").state == DeviceState.READY, timeout=8000)
    qtbot.waitUntil(lambda: panel.table.item(row, 3).text() == "ready", timeout=3000)
    assert "firmware" in panel.details.toPlainText()
    qtbot.mouseClick(panel.btn_disconnect, Qt.LeftButton)
    qtbot.waitUntil(
        lambda: window.ctx.devices.status("powershield:virtual").state == DeviceState.DISCONNECTED, timeout=8000
    )


def test_panel_registry_accepts_new_panels(qtbot, tmp_path):
    from app.core.context import AppContext
    from app.ui.app import build_window
    from app.ui.panels import PanelSpec, _registry, register_panel
    from app.ui.panels.base import Panel

    ticks = []

    class Probe(Panel):
        def tick(self):
            ticks.append(1)

    register_panel(PanelSpec("probe", "Probe", 45, Probe))
    try:
        ctx = AppContext.create(tmp_path, bench=False, discover=False)
        win = build_window(ctx)
        qtbot.addWidget(win)
        win.show()
        keys = [s.key for s in win.specs]
        assert keys.index("labelling") < keys.index("probe") < keys.index("power")  # order 45: 30 < 45 < 50
        win.show_panel("probe")
        qtbot.waitUntil(lambda: len(ticks) > 3, timeout=2000)
        win.show_panel("devices")
        n = len(ticks)
        qtbot.wait(100)
        assert len(ticks) == n  # hidden panels are not ticked
        assert win.bench_label.text() == "No device"
        win.close()
        ctx.close()
    finally:
        _registry.pop("probe", None)


def test_cold_start_does_not_import_tensorflow(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        t = time.perf_counter()
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from app.core.context import AppContext
        from app.ui.app import build_window
        ctx = AppContext.create({str(tmp_path)!r}, bench=False, discover=False)
        win = build_window(ctx)
        win.show()
        app.processEvents()
        win.grab()
        bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))
        print('BAD', bad)
        win.close(); ctx.close()
    """)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert out.returncode == 0, out.stderr
    assert "BAD []" in out.stdout, out.stdout


def test_gui_command_parses_options():
    import argparse

    from app.commands import gui

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    gui.register(sub)
    a = p.parse_args(["gui", "--no-bench", "--data-dir", "/tmp/x"])
    assert a.bench is False and a.data_dir == "/tmp/x" and a.func is gui.run
    assert p.parse_args(["gui", "--bench"]).bench is True
    assert p.parse_args(["gui"]).bench is None


def test_without_hardware_the_app_connects_to_the_virtual_bench(qtbot, tmp_path):
    """`make run` on a machine with no hardware: the bench starts and the app connects to it by itself."""
    from app.core.context import AppContext
    from app.core.devices import DeviceState
    from app.ui.app import build_window, connect_virtual

    ctx = AppContext.create(tmp_path, bench=None)  # None = bench only if no real device is found
    try:
        if any(not s.info.virtual for s in ctx.devices.snapshot()):
            pytest.skip("real hardware attached: the bench is not the default here")
        keys = connect_virtual(ctx)
        assert "powershield:virtual" in keys
        win = build_window(ctx)
        qtbot.addWidget(win)
        for key in keys:
            qtbot.waitUntil(lambda k=key: ctx.devices.status(k).state == DeviceState.READY, timeout=10000)
        win.close()
    finally:
        ctx.close()


def _connected_methods():
    """``(file, line, signal, class, method)`` for every ``x.<signal>.connect(self.method)`` in app/ui."""
    for path in sorted((ROOT / "app" / "ui").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
            methods = {f.name: f for f in cls.body if isinstance(f, ast.FunctionDef)}
            for node in ast.walk(cls):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "connect"
                    and isinstance(node.func.value, ast.Attribute)
                    and node.func.value.attr in ("clicked", "triggered", "toggled")
                    and node.args
                    and isinstance(node.args[0], ast.Attribute)
                    and isinstance(node.args[0].value, ast.Name)
                    and node.args[0].value.id == "self"
                    and node.args[0].attr in methods
                ):
                    yield path.name, node.lineno, node.func.value.attr, cls.name, methods[node.args[0].attr]


def test_no_button_hands_its_checked_bool_to_an_optional_parameter():
    """``clicked(bool)``/``triggered(bool)``/``toggled(bool)`` connected straight to ``f(self, name=None)``
    calls ``f(False)``: only methods whose first parameter *is* the checked state may be connected so."""
    seen, bad = 0, []
    for fname, line, signal, cls, fn in _connected_methods():
        seen += 1
        params = [a.arg for a in fn.args.args[1:]]
        if params and params[0] not in ("on", "checked", "_checked", "_on"):
            bad.append(f"{fname}:{line} {cls}.{fn.name}({', '.join(params)}) <- {signal}(bool)")
    assert seen > 10
    assert not bad, bad
