"""ODL firmware images: which version this app expects, where the shipped NUCLEO-L496ZG image is, and what
a ``.bin`` file is (docs/firmware-nucleo.md, "Flashing").

:data:`FIRMWARE_VERSION` is the one Python copy of ``ODL_FW_MAJOR/MINOR/PATCH`` (firmware/core/odl.h);
tests/device/test_flashing.py fails when the two differ.  The emulated board reports it too.

Every ODL image for the board carries an identification string right after its vector table,
``ODL-FW <major>.<minor>.<patch> <target> protocol <n>`` (firmware/targets/nucleo-l496zg/board_l496.c), so
:func:`identify` can tell an ODL image, its version and its board from any other file without running it.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FIRMWARE_VERSION",
    "BOARD_TARGET",
    "FirmwareImage",
    "FirmwareImageError",
    "identify",
    "shipped_image",
    "image_search_dirs",
    "version_text",
    "FIRMWARE_BUILDS",
    "runs_odl_firmware",
]

#: firmware/core/odl.h ODL_FW_MAJOR / ODL_FW_MINOR / ODL_FW_PATCH (checked by tests/device/test_flashing.py)
FIRMWARE_VERSION: tuple[int, int, int] = (1, 1, 0)
#: the firmware target the app ships and flashes (firmware/targets/<target>)
BOARD_TARGET = "nucleo-l496zg"
#: the build names the ODL firmware's targets report in INFO (firmware/targets/<target>: board_info_t.build).
#: Any other board (the Python emulated board reports its cost profile's name) does not run the firmware.
FIRMWARE_BUILDS: tuple[str, ...] = ("nucleo-l496zg", "qemu-mps2-an386")
FLASH_BASE = 0x0800_0000
FLASH_BYTES = 1024 * 1024
SRAM_END = 0x2000_0000 + 320 * 1024

_ID = re.compile(rb"ODL-FW (\d{1,3})\.(\d{1,3})\.(\d{1,3}) ([A-Za-z0-9_.-]{1,32}) protocol (\d{1,3})\x00")
_REPO = Path(__file__).resolve().parents[2]


def runs_odl_firmware(build: str) -> bool:
    """Whether a board whose INFO reports ``build`` runs the ODL firmware, so that its batch times come
    from code that ran (cycles on the chip, or QEMU's cycle model) and not from the estimator."""
    return build in FIRMWARE_BUILDS


class FirmwareImageError(ValueError):
    """A file that is not a flashable ODL image for the board; the message says why."""


@dataclass(frozen=True)
class FirmwareImage:
    path: Path
    version: tuple[int, int, int]
    target: str
    protocol: int
    size: int
    sha256: str

    @property
    def version_text(self) -> str:
        return version_text(self.version)


def version_text(v: tuple[int, int, int]) -> str:
    return ".".join(str(x) for x in v)


def identify(path: str | os.PathLike, target: str = BOARD_TARGET) -> FirmwareImage:
    """Read and check a firmware ``.bin``: an ODL image for ``target`` that fits the flash, starting with
    a plausible Cortex-M vector table.  :class:`FirmwareImageError` says what is wrong otherwise."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise FirmwareImageError(f"{p} is not a file")
        if size > FLASH_BYTES:
            raise FirmwareImageError(f"{p} has {size:,} bytes: more than the 1 MiB flash of the STM32L496")
        data = p.read_bytes()
    except FirmwareImageError:
        raise
    except OSError as exc:
        raise FirmwareImageError(f"cannot read the firmware file {p}: {exc.strerror or exc}") from None
    if p.suffix.lower() in (".elf", ".hex"):
        raise FirmwareImageError(f"{p} is an {p.suffix} file: flash the raw binary (.bin) built next to it")
    if len(data) < 8:
        raise FirmwareImageError(f"{p} is empty or truncated ({len(data)} bytes)")
    sp, reset = struct.unpack_from("<II", data, 0)
    if not (0x2000_0000 < sp <= SRAM_END and sp % 4 == 0) or not (
        FLASH_BASE <= reset < FLASH_BASE + len(data) and reset & 1
    ):
        raise FirmwareImageError(
            f"{p} does not start with an STM32 vector table for 0x0800_0000 (stack 0x{sp:08X}, reset 0x{reset:08X}): "
            "not a firmware binary for this board"
        )
    m = _ID.search(data, 0, 64 * 1024)
    if m is None:
        raise FirmwareImageError(
            f"{p} is not an ODL firmware image (no 'ODL-FW' identification after its vector table); "
            "use the image the app ships, or one built with `make -C firmware nucleo`"
        )
    version = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    found_target = m.group(4).decode("ascii")
    if found_target != target:
        raise FirmwareImageError(f"{p} is ODL firmware for {found_target!r}, not for {target!r}")
    return FirmwareImage(p, version, found_target, int(m.group(5)), len(data), hashlib.sha256(data).hexdigest())


def image_search_dirs() -> list[Path]:
    """Where built firmware is looked for, in order: $ODL_FIRMWARE_DIR, the checkout's firmware/build,
    and the copy a wheel / frozen app carries (device/nucleo/firmware, written by the package build)."""
    dirs = []
    if os.environ.get("ODL_FIRMWARE_DIR"):
        dirs.append(Path(os.environ["ODL_FIRMWARE_DIR"]))
    dirs.append(_REPO / "firmware" / "build")
    dirs.append(Path(__file__).resolve().parent / "firmware")
    return dirs


def shipped_image(target: str = BOARD_TARGET) -> FirmwareImage:
    """The built image for ``target`` (``<dir>/<target>/odl.bin`` in :func:`image_search_dirs`), or
    :class:`FirmwareImageError` saying where it was looked for and how to get it."""
    looked = []
    for d in image_search_dirs():
        p = d / target / "odl.bin"
        looked.append(str(p))
        if p.is_file():
            return identify(p, target)
    raise FirmwareImageError(
        f"no built ODL firmware for {target} (looked in {', '.join(looked)}): the packaged app ships one; from a "
        f"checkout build it with `make -C firmware nucleo` (needs gcc-arm-none-eabi), or pass --firmware FILE"
    )
