"""Issue #7: nothing is ever unpickled, and the virtual bench listens on loopback only.

* An AST scan of every Python file of the application (app/, device/, estimator/, benchmarks/,
  packaging/): no ``pickle``/``cPickle``/``dill``/``cloudpickle``/``joblib``/``shelve``/``marshal``
  import, no ``np.load(..., allow_pickle=<anything but False>)``, no ``pandas.read_pickle``, no
  ``torch.load``, no Keras ``load_model(..., safe_mode=False)``, no ``yaml.load`` without a safe loader.
* Every socket the code binds or serves on is 127.0.0.1 (AST scan of literal addresses), and a running
  bench's listeners are really bound to 127.0.0.1 (checked on the sockets themselves).
"""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest

from device.bench import VirtualBench

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("app", "device", "estimator", "benchmarks", "packaging")
BANNED_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def sources() -> list[Path]:
    files = [p for d in SCANNED for p in (ROOT / d).rglob("*.py")]
    assert len(files) > 50, "the scan found too few files: wrong root?"
    return files


def _call_name(node: ast.Call) -> str:
    f = node.func
    parts = []
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
    return ".".join(reversed(parts))


def _kw(node: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def unsafe_loads(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in BANNED_MODULES:
            out.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            last = name.rsplit(".", 1)[-1]
            if last == "load" and (name.startswith(("np.", "numpy.")) or name == "load"):
                ap = _kw(node, "allow_pickle")
                if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                    out.append(f"{name}(allow_pickle={ast.unparse(ap)}) at line {node.lineno}")
            if last in ("read_pickle", "loads") and name.split(".")[0] in ("pd", "pandas", "pickle", "marshal"):
                out.append(f"{name}() at line {node.lineno}")
            if name in ("torch.load",):
                out.append(f"{name}() at line {node.lineno}")
            if last == "load_model":
                sm = _kw(node, "safe_mode")
                if sm is not None and not (isinstance(sm, ast.Constant) and sm.value is True):
                    out.append(f"{name}(safe_mode={ast.unparse(sm)}) at line {node.lineno}")
            if name in ("yaml.load", "yaml.load_all"):
                loader = _kw(node, "Loader")
                if loader is None or "Safe" not in ast.unparse(loader):
                    out.append(f"{name}() without SafeLoader at line {node.lineno}")
    return out


def test_scanner_catches_what_it_must():
    bad = """
import pickle
from joblib import load
import numpy as np
np.load("x.npz", allow_pickle=True)
np.load("x.npz", allow_pickle=flag)
keras.models.load_model("m.keras", safe_mode=False)
yaml.load(text)
"""
    good = """
import numpy as np
np.load("x.npz", allow_pickle=False)
np.load("x.npz")
keras.models.load_model("m.keras", compile=False, safe_mode=True)
yaml.load(text, Loader=yaml.SafeLoader)
"""
    assert len(unsafe_loads(ast.parse(bad))) == 6
    assert unsafe_loads(ast.parse(good)) == []


def test_nothing_is_ever_unpickled():
    found = {}
    for path in sources():
        hits = unsafe_loads(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if hits:
            found[str(path.relative_to(ROOT))] = hits
    assert not found, f"unsafe deserialisation: {found}"


def bind_addresses(tree: ast.AST) -> list[tuple[str, int]]:
    """Literal host strings passed to socket bind/create_server/serve calls."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node).rsplit(".", 1)[-1] in (
            "bind",
            "create_server",
            "HTTPServer",
            "TCPServer",
            "serve",
        ):
            for arg in node.args[:1]:
                if isinstance(arg, ast.Tuple) and arg.elts and isinstance(arg.elts[0], ast.Constant):
                    out.append((str(arg.elts[0].value), node.lineno))
            host = _kw(node, "host")
            if isinstance(host, ast.Constant):
                out.append((str(host.value), node.lineno))
    return out


def test_code_binds_loopback_only():
    seen, wrong = 0, {}
    for path in sources():
        for host, line in bind_addresses(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            seen += 1
            if host != "127.0.0.1":
                wrong[f"{path.relative_to(ROOT)}:{line}"] = host
    assert seen >= 1, "no listening socket found by the scan (the bench's endpoint binds one)"
    assert not wrong, f"listening on non-loopback addresses: {wrong}"


@pytest.mark.timeout(30)
def test_running_bench_listens_on_loopback_only():
    with VirtualBench(seed=0, board=True) as bench:
        for name, ep in bench.endpoints.items():
            assert ep._listener is not None
            host, port = ep._listener.getsockname()[:2]
            assert host == "127.0.0.1", f"{name} listens on {host}"
            assert bench.urls[name] == f"socket://127.0.0.1:{port}"
            # not reachable through another local address of this machine
            others = {ai[4][0] for ai in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
            for addr in others:
                if addr.startswith("127."):
                    continue
                with pytest.raises(OSError):
                    socket.create_connection((addr, port), timeout=0.5).close()
