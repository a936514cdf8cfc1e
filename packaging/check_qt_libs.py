"""Check, before the desktop app starts, that the system libraries Qt's X11 (xcb) platform plugin needs are
installed, and if not, print the one ``apt-get`` line that installs all of them.

Without them Qt aborts at start-up with "could not load the Qt platform plugin 'xcb'" and names only the
first missing library (a minimal Debian/Ubuntu lacks ``libxcb-cursor0``, ``libxcb-icccm4`` and
``libxcb-keysyms1``, and a server install lacks all of X11).  ``make run`` runs this first:

    .venv/bin/python packaging/check_qt_libs.py     # exit 0: fine (or nothing to check); 1: libraries missing

How: ``ldd`` of the plugin in the installed PySide6 (``Qt/plugins/platforms/libqxcb.so``) lists every shared
library of its whole dependency tree, missing ones as ``not found``; without ``ldd``, the ``ldconfig -p``
cache is searched for the libraries listed in :data:`SONAME_PACKAGES`.  Nothing is checked (exit 0) on
other systems than Linux, when another Qt platform is chosen (``QT_QPA_PLATFORM=offscreen``, ``wayland``…),
when PySide6 is not installed or when neither tool is available.  Takes ~20 ms.

The package list was found for the pinned PySide6-Essentials 6.11.3 on Debian 12 with ``ldd`` of
``libqxcb.so`` and ``libQt6XcbQpa.so.6`` and ``dpkg -S`` of each library; the same names exist on
Ubuntu 22.04/24.04 (there ``libglib2.0-0`` selects ``libglib2.0-0t64``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

#: Every library of the xcb plugin's dependency tree that a minimal Debian/Ubuntu may lack -> its package.
SONAME_PACKAGES = {
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libpng16.so.16": "libpng16-16",
    "libexpat.so.1": "libexpat1",
    "libbrotlidec.so.1": "libbrotli1",
    "libbrotlicommon.so.1": "libbrotli1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libbsd.so.0": "libbsd0",
    "libmd.so.0": "libmd0",
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
}

#: What to install (apt pulls the rest of the tree: libglx0, libxau6, libpng16-16 …).  README.md gives the
#: same line.
APT_PACKAGES = (
    "libgl1",
    "libegl1",
    "libfontconfig1",
    "libfreetype6",
    "libglib2.0-0",
    "libdbus-1-3",
    "libxkbcommon0",
    "libxkbcommon-x11-0",
    "libx11-6",
    "libx11-xcb1",
    "libxcb1",
    "libxcb-cursor0",
    "libxcb-icccm4",
    "libxcb-image0",
    "libxcb-keysyms1",
    "libxcb-randr0",
    "libxcb-render0",
    "libxcb-render-util0",
    "libxcb-shape0",
    "libxcb-shm0",
    "libxcb-sync1",
    "libxcb-util1",
    "libxcb-xfixes0",
    "libxcb-xkb1",
)
APT_LINE = "sudo apt-get install " + " ".join(APT_PACKAGES)

Runner = Callable[[Sequence[str]], "str | None"]  # argv -> stdout, None when the tool is missing or failed

_NOT_FOUND = re.compile(r"^\s*(\S+)\s*=>\s*not found", re.MULTILINE)


def missing_from_ldd(text: str) -> list[str]:
    """Libraries ``ldd`` reported as ``not found`` (each once, in order)."""
    return list(dict.fromkeys(_NOT_FOUND.findall(text)))


def missing_from_ldconfig(text: str, needed: Sequence[str], is_64bit: bool = sys.maxsize > 2**32) -> list[str]:
    """Those of ``needed`` that the ``ldconfig -p`` cache listing does not contain.  On a 64-bit Python only
    64-bit entries count (``(libc6,x86-64)``, ``(libc6,AArch64)``): a 32-bit ``(libc6)`` library does not help."""
    have = set()
    for line in text.splitlines():
        m = re.match(r"^\s*(\S+)\s+\(([^)]*)\)\s*=>", line)
        if m and (not is_64bit or (m.group(2).strip() != "libc6" and "x32" not in m.group(2))):
            have.add(m.group(1))
    return [so for so in needed if so not in have]


def xcb_plugin() -> Path | None:
    """``libqxcb.so`` of the PySide6 this Python would import (without importing it), None if absent."""
    try:
        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if p.is_file():
            return p
    return None


def _run(argv: Sequence[str]) -> str | None:
    exe = shutil.which(argv[0]) or (argv[0] if os.path.isabs(argv[0]) and os.path.exists(argv[0]) else None)
    if exe is None and argv[0] == "ldconfig" and os.path.exists("/sbin/ldconfig"):
        exe = "/sbin/ldconfig"  # not on a normal user's PATH on Debian
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.stdout else None


def find_missing(plugin: Path, run: Runner = _run) -> list[str] | None:
    """Missing libraries of ``plugin`` (``[]``: all there), None when neither ldd nor ldconfig could tell."""
    text = run(["ldd", str(plugin)])
    if text is not None and "=>" in text:
        return missing_from_ldd(text)
    cache = run(["ldconfig", "-p"])
    if cache is not None and "=>" in cache:
        return missing_from_ldconfig(cache, list(SONAME_PACKAGES))
    return None


def message(missing: Sequence[str]) -> str:
    """What to tell the user: the missing libraries, their packages, and the one line that installs all."""
    pk = list(dict.fromkeys(SONAME_PACKAGES.get(so, "") for so in missing if SONAME_PACKAGES.get(so)))
    unknown = [so for so in missing if so not in SONAME_PACKAGES]
    lines = [
        "ODL Studio cannot start its window: Qt's X11 (xcb) platform plugin needs system libraries that are missing:",
        "  " + ", ".join(missing) + (f"  (packages: {', '.join(pk)})" if pk else ""),
        "Install everything the plugin needs with this one command, then run 'make run' again:",
        "  " + APT_LINE,
    ]
    if unknown:
        lines.append(
            "Not covered by that line (another distribution or a newer PySide6?): "
            + ", ".join(unknown)
            + " — find the package with 'apt-file search <name>' or your distribution's package search."
        )
    return "\n".join(lines)


def check(
    platform: str = sys.platform,
    env: "os._Environ[str] | dict[str, str]" = os.environ,
    plugin: Path | None | str = "auto",
    run: Runner = _run,
) -> tuple[int, str]:
    """``(exit code, text)``: 0 and "" when nothing is missing or nothing can be checked, 1 and the message
    when libraries are missing."""
    if not platform.startswith("linux"):
        return 0, ""
    qpa = env.get("QT_QPA_PLATFORM", "").strip()
    if qpa and not qpa.split(":")[0].split(";")[0].startswith("xcb"):
        return 0, ""  # offscreen, wayland, vnc …: the xcb plugin is not loaded
    p = xcb_plugin() if plugin == "auto" else plugin
    if p is None:
        return 0, ""
    missing = find_missing(Path(p), run)
    if not missing:
        return 0, ""
    return 1, message(missing)


def main(argv: Sequence[str] | None = None) -> int:
    code, text = check()
    if text:
        print(text, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
