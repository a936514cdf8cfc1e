"""setuptools hook (the metadata is in pyproject.toml): a wheel carries the built NUCLEO-L496ZG firmware.

``build_py`` runs ``make -C firmware nucleo`` and copies ``firmware/build/nucleo-l496zg/odl.bin`` into the
wheel as ``device/nucleo/firmware/nucleo-l496zg/odl.bin``, where ``device.nucleo.fwimage.shipped_image``
finds it, so a user without an ARM toolchain can flash it (``odlstudio flash``).  The image is built, never
committed.  Building a wheel therefore needs gcc-arm-none-eabi and libnewlib-arm-none-eabi;
``ODL_WHEEL_WITHOUT_FIRMWARE=1`` builds one without it (the app then says the firmware is not shipped).
Editable installs (``pip install -e .``) skip this: from a checkout the image is found in firmware/build.
packaging/build.py uses :func:`build_firmware` for the frozen app.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
TARGET = "nucleo-l496zg"
APT = "sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"


def build_firmware(root: Path = ROOT) -> Path:
    """``make -C firmware nucleo`` (incremental); the image's path.  RuntimeError saying what to install
    or what failed."""
    missing = [t for t in ("make", "arm-none-eabi-gcc") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"building the NUCLEO-L496ZG firmware needs {', '.join(missing)}: {APT}")
    r = subprocess.run(["make", "-s", "-C", str(root / "firmware"), "nucleo"], capture_output=True, text=True)
    image = root / "firmware" / "build" / TARGET / "odl.bin"
    if r.returncode != 0 or not image.is_file():
        raise RuntimeError(f"make -C firmware nucleo failed:\n{(r.stdout + r.stderr)[-3000:]}")
    return image


class BuildPyWithFirmware(build_py):
    """build_py, plus the firmware image in device/nucleo/firmware/<target>/ of the build tree."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        if os.environ.get("ODL_WHEEL_WITHOUT_FIRMWARE") == "1":
            print("warning: ODL_WHEEL_WITHOUT_FIRMWARE=1: this wheel ships no NUCLEO firmware", file=sys.stderr)
            return
        image = build_firmware()
        dest = Path(self.build_lib) / "device" / "nucleo" / "firmware" / TARGET
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(image, dest / "odl.bin")


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPyWithFirmware})
