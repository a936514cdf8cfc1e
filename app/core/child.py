"""Run one TensorFlow job in a spawned child process, so the app's process neither crashes nor stalls with it.

Two reasons a TensorFlow job does not run in the app's own process:

* **crashes**: TensorFlow's TFLite converter can end the whole process (segfault, ``Fatal Python error`` about
  the GIL) when Qt and device I/O threads are alive beside it (:mod:`app.core.tflite_convert`);
* **stalls**: the first ``import tensorflow`` holds the interpreter lock for about a second in one call (the
  shared library's loading; 0.85 s measured on the 2-core development VM, more on a loaded machine).  For
  that long no other thread of the process runs: the device readers stop reading, a streaming LPM01A's
  transmit buffer overflows at 100 kS/s, the board's heartbeat goes unanswered and the session reconnects,
  losing accelerometer samples.  So the app reads a Keras model (:func:`app.core.models.load_model` with
  ``isolate=True``) and writes ``.keras``/``.h5`` files (``export_all(..., isolate=True)``) in a child, and
  its own process never imports TensorFlow.

:func:`run` starts ``target(*args)`` in a child made with the ``spawn`` start method (a fresh interpreter, no
inherited threads or locks; what a frozen app supports, see ``packaging/odlstudio_main.py``) and returns what
it returned, over a pipe.  Whatever goes wrong in the child becomes a :class:`~app.core.models.ModelError`
naming the job (``what``) and the process (``who``):

* the target raised: "``what`` failed: ``Type: message``";
* the child died (signal, abort, ``os._exit``): "``who`` process crashed (SIGSEGV)" plus the last line it
  wrote (``Fatal Python error: ...``, a TensorFlow ``Check failed``);
* it did not answer within ``timeout`` seconds, or ``cancelled()`` turned true: it is killed.

The child's stdout/stderr go to a temporary log (TensorFlow's start-up lines never reach the app's terminal);
it is deleted afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["run"]


def _child(conn, target: Callable[..., Any], args: tuple, log_path: str) -> None:  # pragma: no cover - child
    """Entry point of the child process: run ``target(*args)``, send ``('ok', value)``, ``('error', text)`` or
    ``('model_error', text)`` (a :class:`~app.core.models.ModelError`'s own words)."""
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
        value = target(*args)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back as a message
        from app.core.models import ModelError  # noqa: PLC0415

        text = str(exc).strip().splitlines()
        msg = text[0] if text else ""
        msg = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
        conn.send(("model_error", str(exc)[:2000]) if isinstance(exc, ModelError) else ("error", msg[:400]))
    else:
        conn.send(("ok", value))
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


def run(
    target: Callable[..., Any],
    args: tuple,
    *,
    what: str,
    who: str,
    timeout: float,
    timeout_hint: str = "",
    cancelled: Callable[[], bool] = lambda: False,
    accept: Callable[[Any], bool] = lambda value: True,
    passthrough: bool = False,
) -> Any:
    """``target(*args)`` run in a spawned child; returns its value.  ``target`` must be a module-level
    function (the child imports it by name).  ``what`` names the job and ``who`` the process's program
    ("the TFLite converter") in error messages; ``timeout_hint`` is appended to the timeout's message.
    A value for which ``accept(value)`` is false counts as garbled.  With ``passthrough``, a
    :class:`~app.core.models.ModelError` the target raised is raised again with its own words.  Raises
    :class:`~app.core.models.ModelError` when the child fails, crashes, exceeds ``timeout`` seconds or
    ``cancelled()`` turns true (the child is killed in the last two cases); never anything else for a
    child's fault."""
    import multiprocessing  # noqa: PLC0415

    from app.core.models import ModelError  # noqa: PLC0415

    ctx = multiprocessing.get_context("spawn")
    fd, log_name = tempfile.mkstemp(prefix="odl-child-", suffix=".log")
    os.close(fd)
    log_path = Path(log_name)
    proc = None
    reader = writer = None
    try:
        try:
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(writer, target, args, log_name), name="odl-child", daemon=True)
            proc.start()
        except Exception as exc:  # noqa: BLE001 - no process/pipe left (EAGAIN, ENOMEM, EMFILE, pickling)
            raise ModelError(f"{what}: cannot start {who} process ({exc})") from exc
        writer.close()  # the child holds the only write end now: its death reads as EOF
        writer = None
        deadline = time.monotonic() + timeout
        answer: Any = None
        while True:
            if reader.poll(0.1):
                try:
                    answer = reader.recv()
                except (EOFError, OSError):  # the child died (its end closed) without sending
                    answer = None
                except Exception as exc:  # noqa: BLE001 - a garbled answer
                    answer = ("error", f"unreadable answer from {who} process ({exc})")
                break
            if cancelled():
                raise ModelError(f"{what}: cancelled ({who} process was stopped)")
            if time.monotonic() > deadline:
                raise ModelError(
                    f"{what}: {who} did not finish within {timeout:g} s and was stopped"
                    + (f" ({timeout_hint})" if timeout_hint else "")
                )
        if isinstance(answer, tuple) and len(answer) == 2 and answer[0] == "ok" and accept(answer[1]):
            proc.join(10)
            return answer[1]
        if isinstance(answer, tuple) and len(answer) == 2 and answer[0] == "model_error" and passthrough:
            raise ModelError(str(answer[1]))
        if isinstance(answer, tuple) and len(answer) == 2 and answer[0] in ("error", "model_error"):
            raise ModelError(f"{what} failed: {answer[1]}")
        proc.join(10)
        why = _last_words(log_path)
        raise ModelError(f"{what}: {who} process {_died(proc.exitcode)}" + (f": {why}" if why else ""))
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
