"""packaging/check_qt_libs.py: ``make run`` stops with one apt-get line when Qt's xcb plugin lacks system
libraries (issue 12 item 2).  The logic is tested on fake ``ldd``/``ldconfig -p`` outputs; the real plugin's
dependency tree is checked against the package table so that a PySide6 upgrade adding a library is noticed."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_qt_libs", ROOT / "packaging" / "check_qt_libs.py")
cq = importlib.util.module_from_spec(spec)
sys.modules.setdefault("check_qt_libs", cq)
spec.loader.exec_module(cq)

PLUGIN = Path("/venv/PySide6/Qt/plugins/platforms/libqxcb.so")

LDD_MINIMAL_DEBIAN = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f01)
\tlibGL.so.1 => /lib/x86_64-linux-gnu/libGL.so.1 (0x00007f02)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f03)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f04)
"""
LDD_ALL_THERE = "\n".join(line for line in LDD_MINIMAL_DEBIAN.splitlines() if "not found" not in line) + "\n"


def runner(ldd: str | None = None, ldconfig: str | None = None, calls: list | None = None):
    def run(argv):
        if calls is not None:
            calls.append(argv[0])
        return {"ldd": ldd, "ldconfig": ldconfig}[argv[0]]

    return run


def test_missing_libraries_give_the_one_apt_line_and_exit_1():
    code, text = cq.check("linux", {}, PLUGIN, runner(ldd=LDD_MINIMAL_DEBIAN))
    assert code == 1
    assert "libxcb-cursor.so.0, libxcb-icccm.so.4, libxcb-keysyms.so.1" in text  # each once, all of them
    assert "(packages: libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1)" in text
    assert text.count("apt-get install") == 1 and cq.APT_LINE in text.splitlines()[-1]
    for pkg in ("libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"):
        assert pkg in cq.APT_PACKAGES


def test_nothing_missing_is_silent():
    assert cq.check("linux", {}, PLUGIN, runner(ldd=LDD_ALL_THERE)) == (0, "")


def test_not_checked_on_other_systems_or_other_qt_platforms():
    calls: list = []
    run = runner(ldd=LDD_MINIMAL_DEBIAN, calls=calls)
    assert cq.check("darwin", {}, PLUGIN, run) == (0, "")
    assert cq.check("win32", {}, PLUGIN, run) == (0, "")
    for qpa in ("offscreen", "wayland", "vnc:size=800x600", "minimal"):
        assert cq.check("linux", {"QT_QPA_PLATFORM": qpa}, PLUGIN, run) == (0, ""), qpa
    assert calls == []
    assert cq.check("linux", {"QT_QPA_PLATFORM": "xcb"}, PLUGIN, run)[0] == 1
    assert cq.check("linux", {"QT_QPA_PLATFORM": "wayland;xcb"}, PLUGIN, run)[0] == 0  # wayland first
    assert cq.check("linux", {}, None, run) == (0, "")  # PySide6 not installed: nothing to check


def test_without_ldd_the_ldconfig_cache_is_used():
    cache = (
        "1234 libs found in cache `/etc/ld.so.cache'\n"
        + "".join(
            f"\t{so} (libc6,x86-64) => /lib/x86_64-linux-gnu/{so}\n"
            for so in cq.SONAME_PACKAGES
            if so not in ("libxcb-icccm.so.4", "libxcb-keysyms.so.1")
        )
        + "\tlibxcb-icccm.so.4 (libc6) => /lib/i386-linux-gnu/libxcb-icccm.so.4\n"  # 32-bit only: no help
    )
    code, text = cq.check("linux", {}, PLUGIN, runner(ldd=None, ldconfig=cache))
    assert code == 1 and "libxcb-icccm.so.4, libxcb-keysyms.so.1  (packages" in text
    assert cq.missing_from_ldconfig(cache, ["libxcb-icccm.so.4"], is_64bit=False) == []


def test_no_tool_at_all_does_not_block_the_start():
    assert cq.check("linux", {}, PLUGIN, runner(ldd=None, ldconfig=None)) == (0, "")
    assert cq.check("linux", {}, PLUGIN, runner(ldd="ldd: error", ldconfig="")) == (0, "")


def test_a_library_outside_the_table_is_named_with_how_to_find_it():
    ldd = LDD_ALL_THERE + "\tlibxcb-frobnicate.so.9 => not found\n"
    code, text = cq.check("linux", {}, PLUGIN, runner(ldd=ldd))
    assert code == 1 and "libxcb-frobnicate.so.9" in text.splitlines()[-1] and "apt-file search" in text
    assert cq.APT_LINE in text


def test_readme_gives_the_same_line():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert cq.APT_LINE in readme.splitlines()
    assert set(cq.APT_PACKAGES) >= {"libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"}


def test_make_run_checks_before_starting():
    out = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    check = next(i for i, l in enumerate(lines) if "packaging/check_qt_libs.py" in l)
    start = next(i for i, l in enumerate(lines) if l.rstrip().endswith("bin/odlstudio"))
    assert check < start


BASE = re.compile(
    r"^(linux-vdso|ld-linux[\w-]*|libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|libz|libzstd|liblzma|liblz4|"
    r"libgcrypt|libgpg-error|libsystemd|libcap|libpcre2-8|libQt6\w+|libicu\w+)\.so"
)


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None, reason="needs Linux ldd")
def test_every_library_of_the_real_plugin_is_in_the_table():
    """Each library the installed xcb plugin loads (whole tree) is either part of a minimal system, shipped
    with PySide6, or in :data:`SONAME_PACKAGES` — so the apt line stays complete when PySide6 changes."""
    plugin = cq.xcb_plugin()
    if plugin is None:
        pytest.skip("PySide6 without the xcb plugin")
    text = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=30).stdout
    names = {line.split()[0] for line in text.splitlines() if line.strip()}
    unknown = sorted(n for n in names if not BASE.match(Path(n).name) and n not in cq.SONAME_PACKAGES)
    assert not unknown, f"add these to SONAME_PACKAGES / APT_PACKAGES: {unknown}"
    # everything the table maps to is installed by the line, directly or as a dependency apt pulls in
    pulled = {
        "libglx0",
        "libglvnd0",
        "libpng16-16",
        "libexpat1",
        "libbrotli1",
        "libxau6",
        "libxdmcp6",
        "libbsd0",
        "libmd0",
    }
    assert set(cq.SONAME_PACKAGES.values()) <= set(cq.APT_PACKAGES) | pulled
