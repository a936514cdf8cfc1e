"""Building and finding the ODL firmware for the tests (docs/firmware.md, "What is verified where").

The native builds (``odl-host``, ``odl-kernels``, ``odl-fuzz``) need only the host C compiler; the QEMU board
needs ``arm-none-eabi-gcc`` and ``qemu-system-arm``.  Outside CI a missing toolchain skips the firmware tests
with one line naming the apt command; with ``CI=true`` it fails them (CI must run them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
BUILD = FIRMWARE / "build"
APT = "sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
_lock = threading.Lock()
_built: dict[str, str | None] = {}


def _missing(tools: tuple[str, ...]) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def require(*tools: str) -> None:
    """Skip (or, in CI, fail) when a firmware tool is not installed."""
    missing = _missing(tools)
    if not missing:
        return
    msg = f"firmware tests need {', '.join(missing)}: {APT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " (CI=true: the toolchain must be installed, see .ci/run)")
    pytest.skip(msg)


def build(*targets: str) -> None:
    """``make -C firmware TARGETS`` once per session (incremental); a build failure fails the test."""
    key = " ".join(targets)
    with _lock:
        if key not in _built:
            r = subprocess.run(
                ["make", "-s", "-C", str(FIRMWARE), *targets], capture_output=True, text=True, timeout=600
            )
            _built[key] = None if r.returncode == 0 else (r.stdout + r.stderr)[-4000:]
        err = _built[key]
    if err is not None:
        pytest.fail(f"make -C firmware {key} failed:\n{err}")


@contextlib.contextmanager
def host_board() -> Iterator[str]:
    """``odl-host`` (the portable core as a native process, serving the protocol on a loopback port) for the
    time of the block; yields its ``socket://`` URL.  A sanitizer report ends the process and fails the test."""
    exe = host_tools()["odl-host"]
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: nothing can block the board's writes
        proc = subprocess.Popen([str(exe), "--port", "0"], stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        started = len(line) == 2 and line[0] == "PORT"
        try:
            if started:
                yield f"socket://127.0.0.1:{int(line[1])}"
        finally:
            alive = proc.poll() is None
            if alive:
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            err.seek(0)
            text = err.read()
        if not started or not alive or "Sanitizer" in text:
            pytest.fail(f"odl-host {'ended during the test' if started else 'did not start'} "
                        f"(exit {proc.returncode}): {text[-3000:]}")  # fmt: skip


def host_tools() -> dict[str, Path]:
    require("gcc", "make")
    build("host")
    return {n: BUILD / "host" / n for n in ("odl-host", "odl-kernels", "odl-fuzz", "odl-l496")}


def qemu_files():
    require("arm-none-eabi-gcc", "qemu-system-arm", "gcc", "make")
    build("qemu", "plugin")
    from device.nucleo.qemu_board import find_firmware

    return find_firmware()


def arm_kernels() -> Path:
    """``odl-kernels.elf``: the host harness built for the Cortex-M4F (assembly kernels), run under QEMU."""
    require("arm-none-eabi-gcc", "qemu-system-arm", "make")
    build("qemu")
    return BUILD / "qemu-mps2-an386" / "odl-kernels.elf"


def run_arm(elf: Path, args: list[str], stdin: bytes, timeout: float = 120) -> bytes:
    """Run ``odl-kernels.elf ARGS < stdin`` under qemu-system-arm with semihosting (host/kernels_arm.c)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="odl-karm-") as d:
        wd = Path(d)
        (wd / "odl-kargs.txt").write_text("\n".join(args) + "\n")
        (wd / "odl-kin.bin").write_bytes(stdin)
        cmd = ["qemu-system-arm", "-M", "mps2-an386", "-nodefaults", "-nic", "none", "-display", "none"]
        cmd += ["-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
        r = subprocess.run(cmd, cwd=wd, capture_output=True, timeout=timeout)
        assert r.returncode == 0, f"odl-kernels.elf {args} exited {r.returncode}: {r.stderr.decode()[-2000:]}"
        return (wd / "odl-kout.bin").read_bytes()
