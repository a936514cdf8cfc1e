"""app.core.memory: the glibc allocator settings that keep the long-running app's RSS flat
(docs/reliability.md, "Soak").  Each check runs in a fresh interpreter: the settings are process-global."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="the allocator settings are glibc-only",
)

# Is a 300 KiB block served by its own mmap after a 4 MiB mmap'ed block was freed?  glibc's dynamic
# threshold says no (the threshold rose to 4 MiB, the block comes from the heap and stays there after
# free); with the threshold fixed by tune_allocator it says yes.
PROBE = r"""
import ctypes, json, sys
sys.path.insert(0, sys.argv[1])
from app.core.memory import heap_stats, tune_allocator  # importing it changes nothing; tuning does
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
tuned = {}
if sys.argv[2] == "tune":
    tuned = tune_allocator()
    assert tune_allocator() == tuned  # idempotent
libc.free(libc.malloc(4 << 20))
before = heap_stats()["hblks"]
p = libc.malloc(300 << 10)
mmapped = heap_stats()["hblks"] > before
libc.free(p)
print(json.dumps({"tuned": tuned, "mmapped": mmapped}))
"""


def probe(mode: str, **env: str) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    e.update(env)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT), mode], capture_output=True, text=True, env=e, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_untuned_glibc_raises_its_mmap_threshold():
    # the behaviour tune_allocator exists for: without it, mid-size blocks stay in the heap arenas
    assert probe("plain")["mmapped"] is False


@glibc
def test_tuned_threshold_keeps_large_blocks_out_of_the_heap():
    got = probe("tune")
    assert got["mmapped"] is True
    assert got["tuned"] == {
        "malloc_mmap_threshold": 256 * 1024,
        "malloc_trim_threshold": 4 << 20,
        "malloc_arena_max": 2,
    }


@glibc
def test_user_environment_settings_win():
    got = probe("tune", MALLOC_ARENA_MAX="4", MALLOC_MMAP_THRESHOLD_="8388608")
    assert got["tuned"] == {"malloc_trim_threshold": 4 << 20}
    assert got["mmapped"] is False  # the user's 8 MiB threshold: a 300 KiB block comes from the heap


@glibc
def test_release_memory_returns_freed_heap_pages_to_the_os():
    # 20 MB of 1 KiB blocks come from the heap (far below any mmap threshold); once freed, their pages
    # sit at the top of the heap until malloc_trim gives them back: release_memory says it released some
    code = (
        "import ctypes, sys; sys.path.insert(0, sys.argv[1]); from app.core.memory import release_memory;"
        "libc = ctypes.CDLL('libc.so.6'); libc.malloc.restype = ctypes.c_void_p;"
        "libc.malloc.argtypes = [ctypes.c_size_t]; libc.free.argtypes = [ctypes.c_void_p];"
        "ps = [libc.malloc(1024) for _ in range(20000)]; [libc.free(p) for p in reversed(ps)];"
        "print(release_memory())"
    )
    e = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, env=e, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True"]


@pytest.mark.skipif(sys.platform.startswith("linux"), reason="the no-glibc path (other systems)")
def test_release_memory_without_glibc_says_nothing_was_released():
    from app.core.memory import release_memory

    assert release_memory() is False


def test_app_context_tunes_the_allocator(tmp_path):
    # the app (GUI and CLI) and the soak benchmark all go through AppContext.create
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1]);"
        "from app.core.context import AppContext; from app.core import memory;"
        "ctx = AppContext.create(sys.argv[2], bench=False, discover=False); ctx.close();"
        "print(json.dumps(memory._tuned))"
    )
    e = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), str(tmp_path)], capture_output=True, text=True, env=e, timeout=120
    )
    assert out.returncode == 0, out.stderr
    tuned = json.loads(out.stdout.strip().splitlines()[-1])
    if sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION"):
        assert tuned and tuned["malloc_arena_max"] == 2
    else:
        assert tuned == {}
