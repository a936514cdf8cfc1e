"""TFLite conversion in a child process: a converter that crashes, hangs or fails never takes the app down.

TensorFlow's TFLite converter (MLIR, the calibrator for int8, its pybind11 bindings) is not safe to run on a
worker thread of a process where Qt, device I/O threads and other TensorFlow users are alive: it can end the
whole process with a segfault or a ``Fatal Python error`` about the GIL, losing the user's unsaved work.  It
also changes process-wide state while it runs (``sys.stdout``, the warnings filters, TensorFlow's C++
logging).  So :func:`convert` runs it in a child process (:mod:`app.core.child`: the ``spawn`` start method, a
fresh interpreter with no inherited threads or locks): the architecture, the weights and the representative
windows go to the child, the ``.tflite`` bytes come back over a pipe.  What can go wrong in the child becomes a
:class:`~app.core.models.ModelError` in the parent naming the conversion and what happened:

* the converter raised: its error message;
* the child died (signal, abort, ``os._exit``): "the converter process crashed (SIGSEGV)" plus the last
  line it wrote (``Fatal Python error: ...``, a TensorFlow ``Check failed``);
* it did not answer within the timeout (``ODL_TFLITE_TIMEOUT_S``, default 300 s): it is killed;
* the export was cancelled: it is killed.

The parent never imports TensorFlow for this.  The child's stdout/stderr go to a temporary log (TensorFlow's
start-up lines and the converter's chatter never reach the app's terminal); it is deleted afterwards.

``ODL_TFLITE_FAULT`` (``abort``, ``segv``, ``exit``, ``hang``, ``error``) makes the conversion itself
misbehave wherever it runs, so tests can check that a crashing, hanging or failing converter costs one
export format and nothing else (docs/reliability.md).
"""

from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

TIMEOUT_ENV = "ODL_TFLITE_TIMEOUT_S"
FAULT_ENV = "ODL_TFLITE_FAULT"
DEFAULT_TIMEOUT_S = 300.0
FAULTS = ("abort", "segv", "exit", "hang", "error")


def default_timeout() -> float:
    """The conversion timeout in seconds: ``ODL_TFLITE_TIMEOUT_S`` if it is a positive number, else 300."""
    try:
        t = float(os.environ.get(TIMEOUT_ENV, ""))
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return t if np.isfinite(t) and t > 0 else DEFAULT_TIMEOUT_S


def _planted_fault() -> None:
    """Simulate a misbehaving converter when ``ODL_TFLITE_FAULT`` asks for it (tests only)."""
    fault = os.environ.get(FAULT_ENV, "").strip().lower()
    if fault == "abort":
        os.abort()
    elif fault == "segv":
        import ctypes  # noqa: PLC0415

        ctypes.string_at(0)  # reads address 0: SIGSEGV
    elif fault == "exit":
        os._exit(3)
    elif fault == "hang":
        while True:
            time.sleep(3600)
    elif fault == "error":
        raise RuntimeError(f"converter failure simulated by {FAULT_ENV}=error")


def convert_here(arch, weights, quantize: str, rep: np.ndarray | None) -> bytes:
    """The conversion itself, in the calling process: build the Keras model, run TensorFlow's converter.
    Only the child process calls this (see the module docstring for why)."""
    from app.core.models import _tf, arch_to_keras  # noqa: PLC0415

    _planted_fault()
    tf = _tf()
    km = arch_to_keras(arch, weights)
    conv = tf.lite.TFLiteConverter.from_keras_model(km)
    if quantize == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

        def gen():
            for i in range(len(rep)):
                yield [rep[i : i + 1]]

        conv.representative_dataset = gen
    return bytes(conv.convert())


def convert(
    arch,
    weights,
    quantize: str,
    rep: np.ndarray | None,
    what: str,
    timeout: float | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> bytes:
    """Run :func:`convert_here` in a spawned child process (:func:`app.core.child.run`) and return its
    ``.tflite`` bytes.  ``what`` names the conversion in error messages.  Raises
    :class:`~app.core.models.ModelError` when the child fails, crashes, exceeds ``timeout`` seconds (default
    :func:`default_timeout`) or ``cancelled()`` turns true; the child is killed in the last two cases.  Never
    raises anything else for a child's fault."""
    from app.core import child  # noqa: PLC0415

    return child.run(
        convert_here,
        (arch, weights, quantize, rep),
        what=what,
        who="the TFLite converter",
        timeout=default_timeout() if timeout is None else float(timeout),
        timeout_hint=f"set {TIMEOUT_ENV} to allow more",
        cancelled=cancelled,
        accept=lambda value: isinstance(value, bytes),
    )
