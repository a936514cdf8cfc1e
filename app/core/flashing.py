"""Flashing the ODL firmware onto a NUCLEO-L496ZG, then checking it answers (Qt-free; ``odlstudio flash`` and
the Devices panel's "Flash ODL firmware…" both call :func:`flash`).  docs/firmware-nucleo.md, "Flashing".

Methods, tried in this order unless one is asked for (``--method``); a failed method falls through to the
next one found, and the report says which one did the job:

* ``st-flash`` (stlink-tools): ``st-flash [--serial SN] --reset write FILE 0x08000000``;
* ``stm32cubeprogrammer``: ``STM32_Programmer_CLI -c port=SWD [sn=SN] -w FILE 0x08000000 -v -rst``;
* ``pyocd``: ``pyocd flash -t stm32l496zgtx [-u SN] --base-address 0x08000000 FILE`` (needs the STM32L4
  CMSIS pack: ``pyocd pack install stm32l496zg``);
* ``mass-storage``: the ST-LINK/V2-1's USB drive ``NODE_L496ZG``: the ``.bin`` is copied onto it, the
  ST-LINK programs it and re-enumerates (the drive goes away and comes back; a ``FAIL.TXT`` on it afterwards
  means it did not take).  Needs nothing installed.

Then the board is asked ``HELLO`` on its virtual COM port until it answers (the port may come back under
another name after a mass-storage flash; it is found again by its USB serial number) and the firmware
version it reports must be the one flashed.  Any failure ends in :class:`FlashError` whose message says
what to check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from device.nucleo.fwimage import (
    FIRMWARE_VERSION,
    FirmwareImage,
    FirmwareImageError,
    identify,
    shipped_image,
    version_text,
)

__all__ = [
    "FlashError",
    "FlashSetupError",
    "Method",
    "FlashReport",
    "METHOD_KINDS",
    "DRIVE_LABEL",
    "find_drives",
    "find_methods",
    "resolve_image",
    "flash",
    "verify_hello",
    "needs_firmware",
]

DRIVE_LABEL = "NODE_L496ZG"
FLASH_ADDRESS = "0x08000000"
PYOCD_TARGET = "stm32l496zgtx"
#: (kind, executable) in the order they are tried; mass storage comes last
TOOLS = (("st-flash", "st-flash"), ("stm32cubeprogrammer", "STM32_Programmer_CLI"), ("pyocd", "pyocd"))
METHOD_KINDS = ("auto", "st-flash", "stm32cubeprogrammer", "pyocd", "mass-storage")
#: what to check when the board does not answer after flashing (shown to the user)
CHECKLIST = (
    "check that the NUCLEO's ST-LINK USB (CN1) is connected and its virtual COM port is the one used; "
    "that JP5 (IDD) is fitted or the LPM01A powers the MCU (the MCU is off otherwise); "
    "that CN4's two ST-LINK jumpers are on; press the black RESET button (B2) and try again"
)

ProgressFn = Callable[[float, str], None]


class FlashError(RuntimeError):
    """Flashing or the check afterwards failed; the message says what happened and what to check."""


class FlashSetupError(FlashError):
    """Nothing was tried: no usable image, no way to flash, or a bad option (``odlstudio flash`` exits 2)."""


@dataclass(frozen=True)
class Method:
    kind: str  # 'st-flash' | 'stm32cubeprogrammer' | 'pyocd' | 'mass-storage'
    target: str  # executable path, or the drive's mount point

    @property
    def label(self) -> str:
        if self.kind == "mass-storage":
            return f"the ST-LINK USB drive {self.target}"
        return f"{self.kind} ({self.target})"


@dataclass
class FlashReport:
    image: FirmwareImage
    method: Method
    port: str | None
    board_version: tuple[int, int, int] | None
    seconds: float
    failed_methods: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"flashed ODL firmware {self.image.version_text} ({self.image.path.name}) with {self.method.label}"
        if self.board_version is not None:
            text += f"; the board on {self.port} answers HELLO with firmware {version_text(self.board_version)}"
        elif self.port is None:
            text += "; not checked (--no-verify)"
        return text + "".join(f"; {n}" for n in self.notes)

    def as_dict(self) -> dict:
        return {
            "ok": True,
            "firmware": str(self.image.path),
            "version": self.image.version_text,
            "sha256": self.image.sha256,
            "method": self.method.kind,
            "method_target": self.method.target,
            "port": self.port,
            "board_version": version_text(self.board_version) if self.board_version else None,
            "seconds": round(self.seconds, 2),
            "failed_methods": [{"method": k, "error": e} for k, e in self.failed_methods],
            "notes": self.notes,
        }


def needs_firmware(version: tuple[int, int, int] | None) -> str | None:
    """Why a board with this HELLO firmware version needs the ODL firmware flashed, or None if it is fine.
    ``None`` means the board did not answer HELLO at all."""
    if version is None:
        return "it does not answer HELLO (no ODL firmware, or another program)"
    if tuple(version) < FIRMWARE_VERSION:
        return f"it runs ODL firmware {version_text(version)}, older than {version_text(FIRMWARE_VERSION)}"
    return None


# ------------------------------------------------------------------------------------------------
# finding the image, the drives, the tools
# ------------------------------------------------------------------------------------------------
def resolve_image(path: str | os.PathLike | None = None, force: bool = False) -> FirmwareImage:
    """The image to flash: ``path`` if given (checked with :func:`identify`), else the shipped one."""
    try:
        return identify(path) if path is not None else shipped_image()
    except FirmwareImageError as exc:
        if path is None or not force:
            raise FlashSetupError(str(exc)) from None
    p = Path(path)  # --force: any readable file that fits the flash
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise FlashSetupError(f"cannot read the firmware file {p}: {exc.strerror or exc}") from None
    if not data or len(data) > 1024 * 1024:
        raise FlashSetupError(f"{p} has {len(data):,} bytes: not something the 1 MiB flash can hold")
    import hashlib

    return FirmwareImage(p, (0, 0, 0), "unknown", 0, len(data), hashlib.sha256(data).hexdigest())


def _drive_roots() -> list[Path]:
    """Where removable drives are mounted on this OS ($ODL_STLINK_DRIVE_ROOTS, os.pathsep-separated,
    replaces them: for tests and unusual set-ups)."""
    env = os.environ.get("ODL_STLINK_DRIVE_ROOTS")
    if env is not None:
        return [Path(p) for p in env.split(os.pathsep) if p]
    if sys.platform == "win32":
        return [Path(f"{c}:\\") for c in "DEFGHIJKLMNOPQRSTUVWXYZ"]
    if sys.platform == "darwin":
        return [Path("/Volumes")]
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    roots = [Path("/media") / user, Path("/run/media") / user, Path("/media"), Path("/mnt")]
    try:  # whatever else is mounted (e.g. by hand, or another automounter)
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 1 and DRIVE_LABEL.lower() in parts[1].lower():
                roots.append(Path(parts[1].replace("\\040", " ")).parent)
    except OSError:
        pass
    return roots


def _volume_label(path: Path) -> str:
    if sys.platform != "win32" or len(str(path)) > 3:
        return path.name
    import ctypes  # Windows: a drive letter has no name, its volume label does

    buf = ctypes.create_unicode_buffer(261)  # (ctypes.windll exists on Windows only)
    ok = ctypes.windll.kernel32.GetVolumeInformationW(str(path), buf, 261, None, None, None, None, 0)  # type: ignore[attr-defined,unused-ignore]
    return buf.value if ok else ""


def _has(path: Path, name: str) -> Path | None:
    try:
        for child in path.iterdir():
            if child.name.lower() == name.lower():
                return child
    except OSError:
        return None
    return None


def is_stlink_drive(path: Path) -> bool:
    """An ST-LINK/V2-1 mass-storage drive of a NUCLEO-L496ZG: labelled NODE_L496ZG (NODE_L496ZG1 ... as a mount
    point), with MBED.HTM on it."""
    try:
        if not path.is_dir():
            return False
    except OSError:
        return False
    label = _volume_label(path).upper()  # Linux automounters add a digit when the old mount point lingers
    return re.fullmatch(DRIVE_LABEL + r"\d{0,2}", label) is not None and _has(path, "MBED.HTM") is not None


def find_drives(roots: Iterable[Path] | None = None) -> list[Path]:
    """Mounted NUCLEO-L496ZG ST-LINK drives (a drive of another NUCLEO is never offered)."""
    found: list[Path] = []
    for root in roots if roots is not None else _drive_roots():
        candidates = [root]
        try:
            if root.is_dir() and not is_stlink_drive(root):
                candidates = sorted(root.iterdir())
        except OSError:
            continue
        for c in candidates:
            if is_stlink_drive(c) and c.resolve() not in [f.resolve() for f in found]:
                found.append(c)
    return found


def find_methods(drive: str | os.PathLike | None = None) -> list[Method]:
    """Every way to flash available here, in the order :func:`flash` tries them."""
    methods = []
    for kind, exe in TOOLS:
        path = shutil.which(exe)
        if path:
            methods.append(Method(kind, path))
    drives = [Path(drive)] if drive is not None else find_drives()
    methods += [Method("mass-storage", str(d)) for d in drives]
    return methods


# ------------------------------------------------------------------------------------------------
# the methods
# ------------------------------------------------------------------------------------------------
def _check(cancel) -> None:
    if cancel is not None:
        cancel.check()


def _tool_command(method: Method, image: Path, serial: str | None) -> list[str]:
    if method.kind == "st-flash":
        return [method.target, *(["--serial", serial] if serial else []), "--reset", "write", str(image), FLASH_ADDRESS]
    if method.kind == "stm32cubeprogrammer":
        port = "port=SWD" + (f" sn={serial}" if serial else "")
        return [method.target, "-c", *port.split(), "-w", str(image), FLASH_ADDRESS, "-v", "-rst"]
    if method.kind == "pyocd":
        uid = ["-u", serial] if serial else []
        return [method.target, "flash", "-t", PYOCD_TARGET, *uid, "--base-address", FLASH_ADDRESS, str(image)]
    raise ValueError(method.kind)


_PCT = re.compile(rb"(\d{1,3}(?:\.\d+)?)\s*%")
_OF = re.compile(rb"(\d+)\s*/\s*(\d+)")


def _run_tool(method: Method, image: Path, serial: str | None, progress: ProgressFn, cancel, timeout: float) -> None:
    """Run a flashing tool, turning its "n %" / "n/m" output into progress; kill it on cancel or timeout."""
    import queue
    import threading

    cmd = _tool_command(method, image, serial)
    name = Path(method.target).name
    progress(0.05, f"{name}: programming")
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise FlashError(f"cannot run {method.target}: {exc.strerror or exc}") from None
    out = proc.stdout
    assert out is not None  # stdout=PIPE
    lines: queue.Queue[bytes | None] = queue.Queue()

    def reader() -> None:  # tools rewrite their progress line with \r: split on both
        buf = b""
        with out:  # closed by its reader, never under it (a closed fd's number is reused by the next open)
            while True:
                chunk = os.read(out.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                *done, buf = re.split(rb"[\r\n]", buf)
                for d in done:
                    lines.put(d)
        lines.put(buf)
        lines.put(None)

    threading.Thread(target=reader, name="flash-tool-output", daemon=True).start()
    tail: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                proc.kill()
                _check(cancel)
            if time.monotonic() > deadline:
                proc.kill()
                raise FlashError(f"{name} did not finish within {timeout:.0f} s (stopped)")
            try:
                raw = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if raw is None:
                break
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            tail = (tail + [line])[-12:]
            pct, of = _PCT.search(raw), _OF.search(raw)
            if pct:
                progress(0.05 + 0.8 * min(100.0, float(pct.group(1))) / 100, line[:80])
            elif of and 0 < int(of.group(2)) and int(of.group(1)) <= int(of.group(2)):
                progress(0.05 + 0.8 * int(of.group(1)) / int(of.group(2)), line[:80])
        rc = proc.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        raise FlashError(f"{name} did not exit within {timeout:.0f} s (stopped)") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    if rc != 0:
        raise FlashError(f"{name} failed (exit {rc}): {' | '.join(tail[-4:]) or 'no output'}")


def _flash_drive(
    method: Method, image: FirmwareImage, progress: ProgressFn, cancel, gone_timeout: float, back_timeout: float
) -> None:
    drive = Path(method.target)
    if not is_stlink_drive(drive):
        raise FlashError(f"{drive} is not a NUCLEO-L496ZG ST-LINK drive ({DRIVE_LABEL} with MBED.HTM)")
    old_fail = _has(drive, "FAIL.TXT")
    dest = drive / image.path.name.upper()
    data = image.path.read_bytes()
    progress(0.02, f"copying {len(data):,} bytes to {drive}")
    try:
        with open(dest, "wb") as f:
            step = 16 * 1024
            for off in range(0, len(data), step):
                _check(cancel)
                f.write(data[off : off + step])
                progress(0.02 + 0.6 * min(1.0, (off + step) / len(data)), f"copying to {drive.name}")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise FlashError(f"copying the firmware to {drive} failed: {exc.strerror or exc}") from None
    # the ST-LINK programs the flash, then drops off the USB bus and comes back (re-enumeration)
    progress(0.65, "the ST-LINK is programming the board")
    t0 = time.monotonic()
    gone = False
    roots = [drive.parent]
    while True:
        _check(cancel)
        present = drive.is_dir()
        if gone:
            again = [drive] if is_stlink_drive(drive) else find_drives(roots)  # an automounter may pick a new name
            if again:
                drive = again[0]
                break
        elif not present:
            gone = True
        elif _has(drive, dest.name) is None and drive.is_dir():
            # the ST-LINK consumed the file without unmounting (a drive that vanished during the listing is not
            # that: it is re-enumerating, and the next look sees it gone)
            break
        if time.monotonic() - t0 > (back_timeout if gone else gone_timeout):
            if gone:
                raise FlashError(
                    f"the ST-LINK drive {drive} did not come back within {back_timeout:.0f} s after programming: "
                    "unplug and replug the NUCLEO's USB, then check the board answers (Devices panel)"
                )
            raise FlashError(
                f"the ST-LINK drive {drive} kept the file and did not re-enumerate within {gone_timeout:.0f} s: "
                "the board was probably not programmed (the OS may still be caching the copy; "
                "eject the drive, or use st-flash / STM32_Programmer_CLI)"
            )
        time.sleep(0.1)
    progress(0.8, f"{drive.name} is back")
    fail = _has(drive, "FAIL.TXT")
    if fail is not None and (old_fail is None or gone):
        try:
            why = fail.read_text(errors="replace").strip()[:300]
        except OSError:
            why = "(unreadable)"
        raise FlashError(f"the ST-LINK reports the programming failed (FAIL.TXT on {drive}): {why}")


# ------------------------------------------------------------------------------------------------
# the check afterwards
# ------------------------------------------------------------------------------------------------
def verify_hello(
    port: str | None,
    serial: str | None = None,
    timeout: float = 15.0,
    progress: ProgressFn | None = None,
    cancel=None,
) -> tuple[str, tuple[int, int, int]]:
    """Wait until a NUCLEO answers HELLO on ``port`` (found again by USB ``serial`` if it moved; found by
    VID:PID if None) and return (port, firmware version).  :class:`FlashError` with the checklist otherwise."""
    from device import discovery
    from device.nucleo.client import NucleoClient

    deadline = time.monotonic() + timeout
    last = "no NUCLEO virtual COM port (USB 0483:374B) is enumerated"
    while True:
        _check(cancel)
        url = port
        if serial or port is None or not port.startswith(("socket://", "loop://", "rfc2217://")):
            try:
                found = discovery.find_nucleo()
            except Exception:  # noqa: BLE001 - a broken port lister: keep the given port
                found = []
            match = [p for p in found if serial and p.serial_number == serial]
            if match:
                url = match[0].device
            elif len(found) == 1 and (port is None or all(p.device != port for p in found)):
                url = found[0].device  # the only NUCLEO (its port may have a new name after re-enumeration)
            elif port is None and len(found) > 1:
                last = f"{len(found)} NUCLEO ports are enumerated ({', '.join(p.device for p in found)}): pass --port"
                url = None
        if url is not None:
            if progress:
                progress(0.9, f"asking the board on {url} for HELLO")
            try:
                with NucleoClient.open(url, timeout=1.0) as c:
                    rsp = c.hello()
                    return url, (rsp.fw_major, rsp.fw_minor, rsp.fw_patch)
            except Exception as exc:  # noqa: BLE001 - retried until the deadline; the last reason is reported
                last = f"no HELLO answer on {url} ({type(exc).__name__}: {exc})"
        if time.monotonic() > deadline:
            raise FlashError(f"after flashing, the board does not answer: {last}. To do: {CHECKLIST}")
        time.sleep(0.5)


# ------------------------------------------------------------------------------------------------
def flash(
    firmware: str | os.PathLike | None = None,
    *,
    method: str = "auto",
    port: str | None = None,
    serial: str | None = None,
    drive: str | os.PathLike | None = None,
    verify: bool = True,
    force: bool = False,
    progress: ProgressFn | None = None,
    cancel=None,
    tool_timeout: float = 180.0,
    drive_gone_timeout: float = 20.0,
    drive_back_timeout: float = 30.0,
    hello_timeout: float = 15.0,
) -> FlashReport:
    """Flash ``firmware`` (default: the shipped image) onto the board and check it answers HELLO with that
    version.  ``port``/``serial`` name the board's virtual COM port (found by VID:PID when only one is
    enumerated).  Returns a :class:`FlashReport`; raises :class:`FlashError` (or ``Cancelled``)."""
    prog: ProgressFn = progress or (lambda f, t: None)
    t0 = time.monotonic()
    if method not in METHOD_KINDS:
        raise FlashSetupError(f"unknown flashing method {method!r} (one of {', '.join(METHOD_KINDS)})")
    image = resolve_image(firmware, force=force)
    if serial is None and port is not None and verify:
        serial = _serial_of(port)
    methods = find_methods(drive)
    if method != "auto":
        methods = [m for m in methods if m.kind == method]
        if method == "mass-storage" and drive is None and not methods:
            raise FlashSetupError(f"no {DRIVE_LABEL} drive is mounted (is the NUCLEO's ST-LINK USB connected?)")
    if not methods:
        raise FlashSetupError(
            "no way to flash was found: no st-flash (sudo apt-get install stlink-tools), no STM32_Programmer_CLI, "
            f"no pyocd, and no {DRIVE_LABEL} drive mounted (connect the NUCLEO's ST-LINK USB; on Linux the "
            "desktop mounts it, or mount it by hand and pass --drive)"
        )
    failed: list[tuple[str, str]] = []
    used = None
    for m in methods:
        _check(cancel)
        prog(0.0, f"flashing {image.path.name} ({image.version_text}) with {m.label}")
        try:
            if m.kind == "mass-storage":
                _flash_drive(m, image, prog, cancel, drive_gone_timeout, drive_back_timeout)
            else:
                _run_tool(m, image.path, serial, prog, cancel, tool_timeout)
        except FlashError as exc:
            failed.append((m.kind, str(exc)))
            continue
        used = m
        break
    if used is None:
        raise FlashError("flashing failed: " + "; ".join(f"{k}: {e}" for k, e in failed))
    report = FlashReport(image, used, None, None, 0.0, failed)
    if image.version < FIRMWARE_VERSION and image.target != "unknown":
        report.notes.append(
            f"this image ({image.version_text}) is older than the firmware this app expects "
            f"({version_text(FIRMWARE_VERSION)}): the app will say the board needs the ODL firmware"
        )
    if verify:
        url, got = verify_hello(port, serial, hello_timeout, prog, cancel)
        report.port, report.board_version = url, got
        if image.target != "unknown" and got != image.version:
            raise FlashError(
                f"{used.label} reported success, but the board on {url} answers HELLO with firmware "
                f"{version_text(got)}, not the {image.version_text} just flashed: the programming did not take. "
                f"To do: {CHECKLIST}"
            )
    report.seconds = time.monotonic() - t0
    prog(1.0, "done")
    return report


def _serial_of(port: str) -> str | None:
    """The USB serial number of a NUCLEO port (to find it again after re-enumeration, and to tell the SWD tools
    which ST-LINK to use when several are plugged in)."""
    try:
        from device import discovery

        return next((p.serial_number for p in discovery.find_nucleo() if p.device == port), None)
    except Exception:  # noqa: BLE001 - no port lister: the port name alone will do
        return None


def flash_managed(manager, key: str, firmware: str | os.PathLike | None = None, **kw) -> FlashReport:
    """:func:`flash` for a board the app's :class:`~app.core.devices.DeviceManager` knows (the Devices
    panel's action): its session lets go of the port first and connects again afterwards, following the
    port if it came back under a new name.  Call it from a worker thread."""
    from app.core.devices import DeviceError, DeviceState

    st = manager.status(key)
    if st.info.kind != "board" or st.info.virtual:
        raise FlashSetupError(f"{st.info.name} is not a real NUCLEO board: only those can be flashed")
    if st.state == DeviceState.TRAINING:
        raise FlashSetupError(f"{st.info.name} is running a training round: abort it or wait for it to end")
    manager.disconnect(key)
    deadline = time.monotonic() + 5.0
    while manager.status(key).state != DeviceState.DISCONNECTED and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        return flash(firmware, port=st.info.url, serial=st.info.serial_number, **kw)
    finally:
        try:
            manager.connect(key)  # shows the result: ready, or why not
        except DeviceError:
            pass
