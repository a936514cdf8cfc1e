"""Full disks for tests (issue 13): a child process whose file-size limit (``RLIMIT_FSIZE``) stands in for a
full disk — portable, no mounting, works as root in CI — and a small tmpfs where mounting is allowed.

A write past ``RLIMIT_FSIZE`` fails with EFBIG (SIGXFSZ is ignored in the child), exactly where a full
disk fails with ENOSPC: inside HDF5's, SQLite's or Python's own write call.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_limited(args: list[str], limit_bytes: int, timeout: float = 120.0, cwd: Path = ROOT, **kw):
    """Run ``args`` with every file it writes capped at ``limit_bytes``; returns the CompletedProcess."""

    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = dict(os.environ, PYTHONPATH=str(ROOT), QT_QPA_PLATFORM="offscreen")
    return subprocess.run(args, preexec_fn=pre, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, **kw)


def python_limited(code: str, limit_bytes: int, *argv: str, timeout: float = 120.0):
    """Run Python ``code`` (``sys.argv[1:]`` = ``argv``) under the file-size limit."""
    return run_limited([sys.executable, "-c", code, *argv], limit_bytes, timeout=timeout)


@contextmanager
def small_tmpfs(size: str = "5m"):
    """A fresh tmpfs of ``size`` (a real full disk: ENOSPC); skips the test where mounting is not allowed."""
    where = Path("/tmp") / f"odl-tmpfs-{uuid.uuid4().hex[:8]}"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if r.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode(errors='replace').strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        try:
            where.rmdir()
        except OSError:
            pass


def fill_disk(path: Path) -> None:
    """Write zeros to ``path`` until the disk refuses a byte more (its file system is then full)."""
    with open(path, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
