"""TFLite conversion in a child process (app/core/tflite_convert.py): the converter crashing, hanging or
failing costs the .tflite files and nothing else; the .tflite files still predict what Keras predicts; the
app process never imports TensorFlow to convert.

The faults are the converter's own (``ODL_TFLITE_FAULT`` makes the conversion abort, segfault, exit, hang or
raise wherever it runs): run in the app's process, ``abort``/``segv``/``exit`` end the test process itself.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.core import models as M
from app.core.tflite_convert import FAULT_ENV, TIMEOUT_ENV

ROOT = Path(__file__).resolve().parents[2]
OTHER_FORMATS = {"keras", "h5", "c_header", "npz"}


@pytest.fixture(scope="module")
def model() -> M.LoadedModel:
    km = M.build_paper_keras(20, 4, seed=5)
    return M.from_keras(km, ["walking", "jogging", "sitting", "standing"], source="tflite-child test")


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.normal(size=(80, 20, 3)) * 3 + [0.0, 9.8, 0.0]).astype(np.float32)


def _no_children_left() -> None:
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not multiprocessing.active_children(), multiprocessing.active_children()


def test_tflite_from_the_child_predicts_what_keras_predicts(model, windows, tmp_path):
    x = M.prepare_input(model, windows)
    ref = M.keras_predict(model, x)
    f32 = M.export_tflite(model, tmp_path / "m_float32.tflite", "float32")
    np.testing.assert_allclose(M.run_tflite(f32, x), ref, atol=1e-5)
    i8 = M.export_tflite(model, tmp_path / "m_int8.tflite", "int8", windows)
    y8 = M.run_tflite(i8, x)
    assert np.max(np.abs(y8 - ref)) < 0.1  # docs/models.md int8 tolerance
    assert np.mean(np.argmax(y8, 1) == np.argmax(ref, 1)) >= 0.9
    _no_children_left()


def test_converting_does_not_import_tensorflow_in_the_app_process(tmp_path):
    code = (
        "import sys; import numpy as np; from app.core import models as M; from estimator.arch import paper_cnn\n"
        "a = paper_cnn(20, 3, ('a', 'b', 'c'))\n"
        "w = {k: [np.full(s, 0.01, np.float32) for s in v] for k, v in a.param_shapes().items()}\n"
        "b = M.tflite_bytes((a, w), 'float32')\n"
        "print(len(b) > 1000, sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True []", out.stdout


@pytest.mark.parametrize(
    "fault, said",
    [
        ("abort", "converter process crashed (SIGABRT): Fatal Python error: Aborted"),
        ("segv", "converter process crashed (SIGSEGV): Fatal Python error: Segmentation fault"),
        ("exit", "converter process exited with code 3 without answering"),
        ("error", "failed: RuntimeError: converter failure simulated"),
    ],
)
def test_a_converter_that_dies_costs_the_tflite_files_only(model, windows, tmp_path, monkeypatch, fault, said):
    monkeypatch.setenv(FAULT_ENV, fault)
    with pytest.raises(M.ExportError) as err:
        M.export_all(model, tmp_path, "p", representative=windows)
    exc = err.value
    assert set(exc.failed) == {"tflite_float32", "tflite_int8"}, exc.failed
    for fmt, q in (("tflite_float32", "float32"), ("tflite_int8", "int8")):
        assert exc.failed[fmt].startswith(f"TFLite conversion ({q}) of tflite-child test"), exc.failed[fmt]
        assert said in exc.failed[fmt], exc.failed[fmt]
    assert set(exc.written) == OTHER_FORMATS and all(p.is_file() for p in exc.written.values())
    assert "tflite_int8 not written" in str(exc) and "written: keras, h5, c_header, npz" in str(exc)
    # nothing half-written: no .tflite, no temporary files, no sidecar of a missing file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.h", "p.h5", "p.json", "p.keras", "p.npz"]
    np.testing.assert_allclose(M.load_npz(exc.written["npz"]).weights["dense2"][0], model.weights["dense2"][0])
    _no_children_left()


def test_a_hanging_converter_is_stopped_at_the_timeout(model, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "hang")
    monkeypatch.setenv(TIMEOUT_ENV, "4")
    t0 = time.monotonic()
    with pytest.raises(M.ModelError, match=r"did not finish within 4 s and was stopped \(set ODL_TFLITE_TIMEOUT_S"):
        M.export_tflite(model, tmp_path / "h.tflite")
    assert time.monotonic() - t0 < 30
    assert not list(tmp_path.iterdir())
    _no_children_left()


def test_cancelling_stops_a_running_conversion(model, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "hang")
    t0 = time.monotonic()
    written = M.export_all(
        model, tmp_path, "c", formats=("tflite_float32", "npz"), cancelled=lambda: time.monotonic() - t0 > 1.0
    )
    assert written == {} and time.monotonic() - t0 < 20  # the default timeout is 300 s
    _no_children_left()


def test_bad_timeout_setting_falls_back_to_the_default(monkeypatch):
    from app.core.tflite_convert import DEFAULT_TIMEOUT_S, default_timeout

    for bad in ("", "abc", "-1", "0", "nan", "inf"):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        assert default_timeout() == DEFAULT_TIMEOUT_S, bad
    monkeypatch.setenv(TIMEOUT_ENV, "12.5")
    assert default_timeout() == 12.5
