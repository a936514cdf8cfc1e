"""TFLite conversion in a child process: a converter that crashes, hangs or fails never takes the app down.

TensorFlow's TFLite converter (MLIR, the calibrator for int8, its pybind11 bindings) is not safe to run on a
worker thread of a process where Qt, device I/O threads and other TensorFlow users are alive: it can end the
whole process with a segfault or a ``Fatal Python error`` about the GIL, losing the user's unsaved work.  It
also changes process-wide state while it runs (``sys.stdout``, the warnings filters, TensorFlow's C++
logging).  So :func:`convert` runs it in a child process started with the ``spawn`` start method (a fresh
interpreter, no inherited threads or locks; also what a frozen app supports, see
``packaging/odlstudio_main.py``): the architecture, the weights and the representative windows go to the
child, the ``.tflite`` bytes come back over a pipe.  What can go wrong in the child becomes a
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
import re
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

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


def _child(conn, arch, weights, quantize: str, rep, log_path: str) -> None:  # pragma: no cover - child process
    """Entry point of the child process: convert, send ``('ok', bytes)`` or ``('error', message)``."""
    import faulthandler  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    try:
        log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - open for the child's whole life
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        faulthandler.enable(log)  # a segfault leaves its Python stack in the log for the parent's message
    except (OSError, ValueError, AttributeError):
        pass
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.simplefilter("ignore")
    try:
        content = convert_here(arch, weights, quantize, rep)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back as a message
        text = str(exc).strip().splitlines()
        msg = text[0] if text else ""
        msg = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
        conn.send(("error", msg[:400]))
    else:
        conn.send(("ok", content))
    conn.close()


_NOISE = re.compile(r"^\s*$|^\s+File |^Current thread|^Thread 0x|^Extension modules:|^\s+<no Python frame>")


def _last_words(log_path: Path) -> str:
    """The line of the child's log that best says why it died (``Fatal Python error: ...``, a TensorFlow
    ``Check failed``), or its last meaningful line; '' when it wrote nothing useful."""
    from app.core.models import TF_NOISE  # noqa: PLC0415

    try:
        lines = log_path.read_bytes()[-20000:].decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    lines = [ln.strip() for ln in lines if not _NOISE.search(ln) and not TF_NOISE.search(ln)]
    for ln in lines:
        if ln.startswith("Fatal Python error") or "Check failed" in ln:
            return ln[:200]
    return lines[-1][:200] if lines else ""


def _died(exitcode: int | None) -> str:
    if exitcode is None:
        return "ended without answering"
    if exitcode < 0:
        try:
            return f"crashed ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"crashed (signal {-exitcode})"
    return f"exited with code {exitcode} without answering"


def convert(
    arch,
    weights,
    quantize: str,
    rep: np.ndarray | None,
    what: str,
    timeout: float | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> bytes:
    """Run :func:`convert_here` in a spawned child process and return its ``.tflite`` bytes.  ``what``
    names the conversion in error messages.  Raises :class:`~app.core.models.ModelError` when the child
    fails, crashes, exceeds ``timeout`` seconds (default :func:`default_timeout`) or ``cancelled()`` turns
    true; the child is killed in the last two cases.  Never raises anything else for a child's fault."""
    import multiprocessing  # noqa: PLC0415

    from app.core.models import ModelError  # noqa: PLC0415

    limit = default_timeout() if timeout is None else float(timeout)
    ctx = multiprocessing.get_context("spawn")
    fd, log_name = tempfile.mkstemp(prefix="odl-tflite-", suffix=".log")
    os.close(fd)
    log_path = Path(log_name)
    proc = None
    reader = writer = None
    try:
        try:
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_child, args=(writer, arch, weights, quantize, rep, log_name), name="odl-tflite", daemon=True
            )
            proc.start()
        except Exception as exc:  # noqa: BLE001 - no process/pipe left (EAGAIN, ENOMEM, EMFILE, pickling)
            raise ModelError(f"{what}: cannot start the TFLite converter process ({exc})") from exc
        writer.close()  # the child holds the only write end now: its death reads as EOF
        writer = None
        deadline = time.monotonic() + limit
        answer: Any = None
        while True:
            if reader.poll(0.1):
                try:
                    answer = reader.recv()
                except (EOFError, OSError):  # the child died (its end closed) without sending
                    answer = None
                except Exception as exc:  # noqa: BLE001 - a garbled answer
                    answer = ("error", f"unreadable answer from the converter process ({exc})")
                break
            if cancelled():
                raise ModelError(f"{what}: cancelled (the converter process was stopped)")
            if time.monotonic() > deadline:
                raise ModelError(
                    f"{what}: the TFLite converter did not finish within {limit:g} s and was stopped "
                    f"(set {TIMEOUT_ENV} to allow more)"
                )
        if isinstance(answer, tuple) and len(answer) == 2 and answer[0] == "ok" and isinstance(answer[1], bytes):
            proc.join(10)
            return answer[1]
        if isinstance(answer, tuple) and len(answer) == 2 and answer[0] == "error":
            raise ModelError(f"{what} failed: {answer[1]}")
        proc.join(10)
        why = _last_words(log_path)
        raise ModelError(f"{what}: the TFLite converter process {_died(proc.exitcode)}" + (f": {why}" if why else ""))
    finally:
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(10)
        for conn in (reader, writer):
            if conn is not None:
                conn.close()
        if proc is not None:
            try:
                proc.close()
            except ValueError:  # still running after kill + 10 s: let the OS reap it
                pass
        log_path.unlink(missing_ok=True)
