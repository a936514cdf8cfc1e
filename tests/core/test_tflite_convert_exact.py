"""Exact behaviour of app/core/tflite_convert.py's parent side (TensorFlow-free): the conversion timeout from the
environment, and what :func:`convert` hands to the child-process runner (the conversion itself runs in the child:
tests/core/test_tflite_child.py runs it, with crashing, hanging and failing converters)."""

from __future__ import annotations

import numpy as np
import pytest

from app.core import child
from app.core import tflite_convert as TC


@pytest.mark.parametrize(
    ("env", "timeout"),
    [
        (None, 300.0),
        ("12.5", 12.5),
        ("1e-3", 0.001),
        (" 7 ", 7.0),
        ("0", 300.0),
        ("-5", 300.0),
        ("nan", 300.0),
        ("inf", 300.0),
        ("-inf", 300.0),
        ("five", 300.0),
        ("", 300.0),
    ],
)
def test_the_timeout_is_a_positive_finite_number_from_the_environment_else_300_s(monkeypatch, env, timeout):
    if env is None:
        monkeypatch.delenv(TC.TIMEOUT_ENV, raising=False)
    else:
        monkeypatch.setenv(TC.TIMEOUT_ENV, env)
    assert TC.default_timeout() == timeout and type(TC.default_timeout()) is float
    assert TC.TIMEOUT_ENV == "ODL_TFLITE_TIMEOUT_S" and TC.DEFAULT_TIMEOUT_S == 300.0


@pytest.fixture()
def handed(monkeypatch):
    """What convert() gives app.core.child.run (which returns b"TFL3")."""
    got: dict = {}

    def run(fn, args, **kw):
        got.update(fn=fn, args=args, **kw)
        return b"TFL3"

    monkeypatch.setattr(child, "run", run)
    return got


def test_convert_runs_the_conversion_in_a_child_with_its_name_and_the_timeout(handed, monkeypatch):
    monkeypatch.setenv(TC.TIMEOUT_ENV, "42")
    rep = np.zeros((2, 20, 3), np.float32)
    stop = lambda: True  # noqa: E731
    assert TC.convert("arch", {"w": 1}, "int8", rep, "alice_int8.tflite", cancelled=stop) == b"TFL3"
    assert handed["fn"] is TC.convert_here
    assert handed["args"][:3] == ("arch", {"w": 1}, "int8") and handed["args"][3] is rep and len(handed["args"]) == 4
    assert handed["what"] == "alice_int8.tflite" and handed["who"] == "the TFLite converter"
    assert handed["timeout"] == 42.0 and handed["timeout_hint"] == "set ODL_TFLITE_TIMEOUT_S to allow more"
    assert handed["cancelled"] is stop
    accept = handed["accept"]
    assert accept(b"TFL3") is True and accept(b"") is True
    assert accept("TFL3") is False and accept(bytearray(b"x")) is False and accept(None) is False
    assert set(handed) == {"fn", "args", "what", "who", "timeout", "timeout_hint", "cancelled", "accept"}


def test_convert_takes_a_timeout_given_over_the_environment_and_never_cancels_by_default(handed, monkeypatch):
    monkeypatch.setenv(TC.TIMEOUT_ENV, "42")
    TC.convert("arch", {}, "float32", None, "a.tflite", timeout=7)
    assert handed["timeout"] == 7.0 and type(handed["timeout"]) is float and handed["args"][3] is None
    assert handed["cancelled"]() is False


@pytest.mark.parametrize("fault", ["error", " ERROR ", "Error"])
def test_a_planted_error_fault_raises_the_converter_s_error(monkeypatch, fault):
    monkeypatch.setenv(TC.FAULT_ENV, fault)
    with pytest.raises(RuntimeError) as e:
        TC._planted_fault()  # noqa: SLF001
    assert str(e.value) == "converter failure simulated by ODL_TFLITE_FAULT=error"


@pytest.mark.parametrize("fault", [None, "", "none", "errors"])
def test_no_planted_fault_does_nothing(monkeypatch, fault):
    if fault is None:
        monkeypatch.delenv(TC.FAULT_ENV, raising=False)
    else:
        monkeypatch.setenv(TC.FAULT_ENV, fault)
    assert TC._planted_fault() is None  # noqa: SLF001
