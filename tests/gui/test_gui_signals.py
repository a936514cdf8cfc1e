"""The desktop app and signals: Ctrl-C in the terminal that started it, and SIGTERM
(a logout, ``kill``), close it as its close button does — no traceback, and the virtual bench's QEMU board is
stopped with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.gui


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parent.items() if pp == p}
        out |= kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_the_app_closes_cleanly_on_ctrl_c_and_sigterm(tmp_path, sig):
    """Was: Ctrl-C printed "KeyboardInterrupt" with a traceback from a Qt slot and the app went on running
    (a second Ctrl-C did the same); SIGTERM ended it at once, leaving qemu-system-arm running, orphaned."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), QT_QPA_PLATFORM="offscreen")
    env.pop("ODL_DEBUG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "gui", "--data-dir", str(tmp_path / "data"), "--bench"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # (a background job ignores it)
    )
    kids: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        seen = ""
        while "first window painted" not in seen and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
        assert "first window painted" in seen, seen[-2000:]
        time.sleep(1.0)
        kids = _children(proc.pid)
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for k in kids:  # whatever the app left behind must not outlive the test
            if _alive(k):
                os.kill(k, signal.SIGKILL)
    err = seen + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert proc.returncode == 0, (proc.returncode, err[-2000:])
    time.sleep(0.5)
    left = sorted(k for k in kids if _alive(k))
    assert not left, f"left running after {sig}: {left}"
