"""Build the frozen one-folder app for this OS with PyInstaller and print the bundle's size.

    .venv/bin/python packaging/build.py [--archive] [--keep-build]

``make package`` installs PyInstaller (the ``package`` extra) and runs this.  Output:

* ``dist/odlstudio/`` — the bundle (``odlstudio`` executable + ``_internal/``); on Linux also the
  desktop entry, the icon and ``install.sh`` beside the executable; ``BUILD-INFO.json`` records the
  versions, the build time and the size;
* inside it, the NUCLEO-L496ZG firmware image ``_internal/device/nucleo/firmware/nucleo-l496zg/odl.bin``,
  built first with ``make -C firmware nucleo`` (needs gcc-arm-none-eabi; setup.py's ``build_firmware``),
  so users without an ARM toolchain can flash it;
* ``dist/ODL Studio.app`` on macOS;
* with ``--archive``: ``dist/odlstudio-<version>-<os>-<arch>.tar.gz`` (``.zip`` on Windows).

The PyInstaller log goes to ``build/pyinstaller.log`` (the tail is shown if the build fails).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "odlstudio.spec"
NAME = "odlstudio"


def tree_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path`` without following symlinks (what the bundle occupies on disk)."""
    total = files = 0
    if path.is_file():
        return path.stat().st_size, 1
    for dirpath, _dirs, names in os.walk(path):
        for n in names:
            p = Path(dirpath) / n
            if not p.is_symlink():
                total += p.stat().st_size
                files += 1
    return total, files


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def os_tag() -> str:
    return {"linux": "linux", "win32": "windows", "darwin": "macos"}.get(sys.platform, sys.platform)


def add_linux_desktop_files(bundle: Path) -> None:
    """Desktop entry, icon and the per-user installer beside the executable."""
    shutil.copy2(ROOT / "assets" / "odlstudio.desktop", bundle / "odlstudio.desktop")
    shutil.copy2(ROOT / "assets" / "icons" / "odlstudio.png", bundle / "odlstudio.png")
    shutil.copy2(ROOT / "packaging" / "install-linux.sh", bundle / "install.sh")
    (bundle / "install.sh").chmod(0o755)


def archive(bundle: Path, version: str) -> Path:
    base = bundle.parent / f"{NAME}-{version}-{os_tag()}-{platform.machine().lower()}"
    fmt = "zip" if sys.platform == "win32" else "gztar"
    return Path(shutil.make_archive(str(base), fmt, root_dir=bundle.parent, base_dir=bundle.name))


def build_firmware() -> Path:
    """The NUCLEO image the bundle ships (setup.py's build_firmware: one way to build it for wheel and bundle)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("odl_setup", ROOT / "setup.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # __name__ is not "__main__": setup() does not run
    return mod.build_firmware(ROOT)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build the frozen ODL Studio app with PyInstaller.")
    ap.add_argument("--dist", default=str(ROOT / "dist"), help="output folder (default dist/)")
    ap.add_argument("--work", default=str(ROOT / "build"), help="PyInstaller work folder (default build/)")
    ap.add_argument("--archive", action="store_true", help="also pack the bundle as .tar.gz (.zip on Windows)")
    args = ap.parse_args(argv)

    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        print(
            "packaging/build.py: PyInstaller is not installed in this Python "
            f"({sys.executable}); run `make package` or `pip install -e '.[package]'`.",
            file=sys.stderr,
        )
        return 2
    try:
        firmware = build_firmware()
    except RuntimeError as exc:
        print(
            f"packaging/build.py: the bundle ships the NUCLEO firmware, which cannot be built: {exc}", file=sys.stderr
        )
        return 2
    sys.path.insert(0, str(ROOT))
    from device.nucleo.fwimage import identify

    fw = identify(firmware)
    print(f"firmware: {firmware} ({fw.version_text}, {fw.size:,} bytes)", flush=True)
    dist, work = Path(args.dist), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "pyinstaller.log"
    cmd = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--clean",
        "--log-level",
        "WARN",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
        str(SPEC),
    ]
    print(f"building with PyInstaller {_version('pyinstaller')} (log: {log_path}) …", flush=True)
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    build_s = time.perf_counter() - t0
    if rc != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
        print("\n".join(tail), file=sys.stderr)
        print(
            f"packaging/build.py: PyInstaller failed (exit {rc}) after {build_s:.0f} s; full log: {log_path}",
            file=sys.stderr,
        )
        return 1

    bundle = dist / NAME
    exe = bundle / (f"{NAME}.exe" if sys.platform == "win32" else NAME)
    if not exe.is_file():
        print(f"packaging/build.py: PyInstaller succeeded but {exe} is missing", file=sys.stderr)
        return 1
    if sys.platform.startswith("linux"):
        add_linux_desktop_files(bundle)
    from app import __version__

    size, files = tree_size(bundle)
    info = {
        "name": NAME,
        "version": __version__,
        "os": os_tag(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "pyinstaller": _version("pyinstaller"),
        "tensorflow": _version("tensorflow-cpu") or _version("tensorflow"),
        "keras": _version("keras"),
        "pyside6": _version("PySide6-Essentials") or _version("PySide6"),
        "firmware": {"target": fw.target, "version": fw.version_text, "sha256": fw.sha256, "bytes": fw.size},
        "build_seconds": round(build_s, 1),
        "size_bytes": size,
        "files": files,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (bundle / "BUILD-INFO.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print(f"bundle: {bundle}  ({human(size)}, {files} files; built in {build_s / 60:.1f} min)")
    print(f"executable: {exe}")
    app_bundle = dist / "ODL Studio.app"
    if app_bundle.exists():
        print(f"macOS app: {app_bundle} ({human(tree_size(app_bundle)[0])})")
    if args.archive:
        arc = archive(bundle, __version__)
        print(f"archive: {arc} ({human(arc.stat().st_size)})")
    print(f"bundle size: {size} bytes ({human(size)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
