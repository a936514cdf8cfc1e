"""Flashing the ODL firmware, exactly (app/core/flashing.py; the ``flashing`` mutation target,
benchmarks/mutation.py; docs/firmware-nucleo.md, "Flashing").

Fast and deterministic, no board, no USB, no serial port: the ST-LINK drive is a temporary folder (MBED.HTM,
DETAILS.TXT: tests/device/test_flashing.py's make_drive) that the test's clock "re-enumerates" when the code
under test sleeps; the flashing tools are fake processes (a pipe carries their output) or, once, a real shell
script; the board that answers HELLO is a fake client behind a fake port lister; the clock is fake wherever a
timeout is checked, so no test waits for one (one waits for a single 0.2 s poll of a silent tool's output).
Messages are checked whole: they are what the user reads.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.core import flashing
from app.core.context import Cancelled, CancelToken
from app.core.flashing import FlashError, FlashReport, FlashSetupError, Method
from device import discovery
from device.discovery import PortInfo
from device.nucleo import fwimage
from device.nucleo.client import NucleoClient
from device.nucleo.fwimage import FirmwareImage
from tests.device.test_flashing import make_drive, make_image

CHECKLIST = (
    "check that the NUCLEO's ST-LINK USB (CN1) is connected and its virtual COM port is the one used; "
    "that JP5 (IDD) is fitted or the LPM01A powers the MCU (the MCU is off otherwise); "
    "that CN4's two ST-LINK jumpers are on; press the black RESET button (B2) and try again"
)


class FakeTime:
    """flashing's clock: monotonic() stands still until sleep(), which moves it by ``step`` (exact in binary)
    and then calls ``on_sleep(n)`` (n = how many sleeps so far): the test's ST-LINK or board acts there."""

    def __init__(self, step: float = 0.5, on_sleep=None):
        self.now = 100.0
        self.step = step
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def monotonic(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += self.step
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


@pytest.fixture()
def clock(monkeypatch) -> FakeTime:
    t = FakeTime()
    monkeypatch.setattr(flashing, "time", t)
    return t


class Recorder:
    def __init__(self):
        self.calls: list[tuple[float, str]] = []

    def __call__(self, f: float, t: str = "") -> None:
        self.calls.append((f, t))


# --------------------------------------------------------------------------------------------------
# which boards need the firmware
# --------------------------------------------------------------------------------------------------
def test_a_board_without_hello_needs_the_firmware():
    assert flashing.needs_firmware(None) == "it does not answer HELLO (no ODL firmware, or another program)"


def test_an_older_firmware_needs_the_new_one(monkeypatch):
    monkeypatch.setattr(flashing, "FIRMWARE_VERSION", (1, 1, 0))
    assert flashing.needs_firmware((1, 0, 9)) == "it runs ODL firmware 1.0.9, older than 1.1.0"
    assert flashing.needs_firmware([0, 9, 9]) == "it runs ODL firmware 0.9.9, older than 1.1.0"  # (from JSON)


def test_the_same_or_a_newer_firmware_is_fine(monkeypatch):
    monkeypatch.setattr(flashing, "FIRMWARE_VERSION", (1, 1, 0))
    assert flashing.needs_firmware((1, 1, 0)) is None
    assert flashing.needs_firmware((1, 1, 1)) is None
    assert flashing.needs_firmware((2, 0, 0)) is None


# --------------------------------------------------------------------------------------------------
# which image
# --------------------------------------------------------------------------------------------------
def test_resolve_image_checks_a_given_file(tmp_path):
    p = make_image(tmp_path / "odl.bin", version=(1, 2, 3))
    img = flashing.resolve_image(p)
    assert (img.path, img.version, img.target) == (p, (1, 2, 3), "nucleo-l496zg")


def test_resolve_image_refuses_a_wrong_file_with_identifys_message(tmp_path):
    p = make_image(tmp_path / "q.bin", target="qemu-mps2-an386")
    with pytest.raises(FlashSetupError) as e:
        flashing.resolve_image(p)
    assert str(e.value) == f"{p} is ODL firmware for 'qemu-mps2-an386', not for 'nucleo-l496zg'"


def test_resolve_image_defaults_to_the_shipped_image(tmp_path, monkeypatch):
    (tmp_path / "fw" / "nucleo-l496zg").mkdir(parents=True)
    p = make_image(tmp_path / "fw" / "nucleo-l496zg" / "odl.bin", version=(4, 5, 6))
    monkeypatch.setenv("ODL_FIRMWARE_DIR", str(tmp_path / "fw"))
    assert flashing.resolve_image().path == p and flashing.resolve_image(force=True).version == (4, 5, 6)


def test_no_shipped_image_is_a_setup_error_even_with_force(tmp_path, monkeypatch):
    monkeypatch.setenv("ODL_FIRMWARE_DIR", str(tmp_path / "fw"))
    monkeypatch.setattr(fwimage, "_REPO", tmp_path / "repo")
    monkeypatch.setattr(fwimage, "__file__", str(tmp_path / "pkg" / "fwimage.py"))
    looked = ", ".join(
        str(d / "nucleo-l496zg" / "odl.bin")
        for d in (tmp_path / "fw", tmp_path / "repo" / "firmware" / "build", tmp_path / "pkg" / "firmware")
    )
    for force in (False, True):
        with pytest.raises(FlashSetupError) as e:
            flashing.resolve_image(None, force=force)
        assert str(e.value).startswith(f"no built ODL firmware for nucleo-l496zg (looked in {looked}): ")


def test_force_takes_any_file_that_fits_the_flash(tmp_path):
    other = tmp_path / "blinky.bin"
    data = b"\x00\x10\x00\x20\x01\x01\x00\x08" + bytes(400)
    other.write_bytes(data)
    assert flashing.resolve_image(other, force=True) == FirmwareImage(
        other, (0, 0, 0), "unknown", 0, 408, hashlib.sha256(data).hexdigest()
    )
    full = tmp_path / "full.bin"
    full.write_bytes(bytes(1024 * 1024))
    assert flashing.resolve_image(full, force=True).size == 1_048_576


def test_force_still_refuses_an_empty_or_too_large_file(tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(FlashSetupError) as e:
        flashing.resolve_image(empty, force=True)
    assert str(e.value) == f"{empty} has 0 bytes: not something the 1 MiB flash can hold"
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(1024 * 1024 + 1))
    with pytest.raises(FlashSetupError) as e:
        flashing.resolve_image(big, force=True)
    assert str(e.value) == f"{big} has 1,048,577 bytes: not something the 1 MiB flash can hold"


def test_force_cannot_flash_what_cannot_be_read(tmp_path):
    missing = tmp_path / "missing.bin"
    with pytest.raises(FlashSetupError) as e:
        flashing.resolve_image(missing, force=True)
    assert str(e.value) == f"cannot read the firmware file {missing}: No such file or directory"
    folder = tmp_path / "folder.bin"
    folder.mkdir()
    with pytest.raises(FlashSetupError) as e:
        flashing.resolve_image(folder, force=True)
    assert str(e.value) == f"cannot read the firmware file {folder}: Is a directory"


def test_force_read_error_without_strerror(tmp_path, monkeypatch):
    p = tmp_path / "x.bin"
    p.write_bytes(b"not an image, but readable")
    real = Path.read_bytes

    def flaky(self):
        if self.name == "x.bin" and flaky.calls:
            raise OSError("the card reader went away")
        flaky.calls += 1
        return real(self)

    flaky.calls = 0
    monkeypatch.setattr(Path, "read_bytes", flaky)
    with pytest.raises(FlashSetupError) as e:
        flashing.resolve_image(p, force=True)
    assert str(e.value) == f"cannot read the firmware file {p}: the card reader went away"


# --------------------------------------------------------------------------------------------------
# the ST-LINK drive
# --------------------------------------------------------------------------------------------------
def test_drive_roots_from_the_environment(monkeypatch):
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", os.pathsep.join(["/a", "", "/b/c"]))
    assert flashing._drive_roots() == [Path("/a"), Path("/b/c")]
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", "")
    assert flashing._drive_roots() == []  # set but empty: no roots at all (not the OS's)


@pytest.fixture()
def linux_mounts(monkeypatch):
    """sys.platform 'linux', no $ODL_STLINK_DRIVE_ROOTS, /proc/mounts as the test writes it."""
    monkeypatch.delenv("ODL_STLINK_DRIVE_ROOTS", raising=False)
    monkeypatch.setattr(flashing, "sys", SimpleNamespace(platform="linux"))
    mounts = {"text": ""}
    real = Path.read_text

    def read_text(self, *a, **kw):
        if str(self) == "/proc/mounts":
            if mounts["text"] is None:
                raise PermissionError(13, "Permission denied")
            return mounts["text"]
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", read_text)
    return mounts


def test_linux_drive_roots_for_the_user(linux_mounts, monkeypatch):
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("LOGNAME", "bob")
    assert flashing._drive_roots() == [Path("/media/alice"), Path("/run/media/alice"), Path("/media"), Path("/mnt")]
    monkeypatch.delenv("USER")
    assert flashing._drive_roots()[:2] == [Path("/media/bob"), Path("/run/media/bob")]
    monkeypatch.delenv("LOGNAME")
    assert flashing._drive_roots() == [Path("/media"), Path("/run/media"), Path("/media"), Path("/mnt")]


def test_linux_drive_roots_add_where_a_node_drive_is_mounted(linux_mounts, monkeypatch):
    monkeypatch.setenv("USER", "alice")
    linux_mounts["text"] = (
        "proc /proc proc rw 0 0\n"
        "/dev/sdb /srv/usb/node_l496zg1 vfat rw 0 0\n"
        "/dev/sdc /home/alice/my\\040drives/NODE_L496ZG vfat rw 0 0\n"
        "/dev/NODE_L496ZG /data ext4 rw 0 0\n"  # the device's name does not count, the mount point does
        "NODE_L496ZG\n"  # a broken line: ignored
        "/dev/sdd /run/short/NODE_L496ZG\n"  # no type and options: the mount point is still read
    )
    assert flashing._drive_roots() == [
        Path("/media/alice"),
        Path("/run/media/alice"),
        Path("/media"),
        Path("/mnt"),
        Path("/srv/usb"),
        Path("/home/alice/my drives"),
        Path("/run/short"),
    ]


def test_linux_drive_roots_without_proc_mounts(linux_mounts, monkeypatch):
    monkeypatch.setenv("USER", "alice")
    linux_mounts["text"] = None
    assert flashing._drive_roots() == [Path("/media/alice"), Path("/run/media/alice"), Path("/media"), Path("/mnt")]


def test_macos_and_windows_drive_roots(monkeypatch):
    monkeypatch.delenv("ODL_STLINK_DRIVE_ROOTS", raising=False)
    monkeypatch.setattr(flashing, "sys", SimpleNamespace(platform="darwin"))
    assert flashing._drive_roots() == [Path("/Volumes")]
    monkeypatch.setattr(flashing, "sys", SimpleNamespace(platform="win32"))
    roots = flashing._drive_roots()
    assert len(roots) == 23 and roots[0] == Path("D:\\") and roots[1] == Path("E:\\") and roots[-1] == Path("Z:\\")


def test_volume_label_is_the_folder_name_off_windows(monkeypatch):
    assert flashing._volume_label(Path("/media/alice/NODE_L496ZG1")) == "NODE_L496ZG1"
    monkeypatch.setattr(flashing, "sys", SimpleNamespace(platform="win32"))
    assert flashing._volume_label(Path("/mnt/e/NODE")) == "NODE"  # a folder, not a drive letter


def test_volume_label_of_a_windows_drive_letter(monkeypatch):
    import ctypes

    calls = []

    def get_volume_information(root, buf, size, *rest):
        calls.append((root, size, rest))
        if root == "E:\\":
            buf.value = "NODE_L496ZG"
            return 1
        buf.value = "leftover"
        return 0

    fake = SimpleNamespace(kernel32=SimpleNamespace(GetVolumeInformationW=get_volume_information))
    monkeypatch.setattr(ctypes, "windll", fake, raising=False)
    monkeypatch.setattr(flashing, "sys", SimpleNamespace(platform="win32"))
    assert flashing._volume_label(Path("E:\\")) == "NODE_L496ZG"
    assert flashing._volume_label(Path("F:\\")) == ""  # no volume information: no label
    assert flashing._volume_label(Path("/abc")) == "abc"  # longer than a drive letter's root: a folder's name
    assert calls == [("E:\\", 261, (None, None, None, None, 0)), ("F:\\", 261, (None, None, None, None, 0))]


def test_has_finds_a_file_whatever_its_case(tmp_path):
    (tmp_path / "mbed.htm").write_text("x")
    assert flashing._has(tmp_path, "MBED.HTM") == tmp_path / "mbed.htm"
    assert flashing._has(tmp_path, "FAIL.TXT") is None
    assert flashing._has(tmp_path / "gone", "MBED.HTM") is None


@pytest.mark.parametrize(
    "name, ok",
    [
        ("NODE_L496ZG", True),
        ("NODE_L496ZG1", True),  # a Linux automounter's second mount point
        ("NODE_L496ZG12", True),
        ("NODE_L496ZG123", False),
        ("node_l496zg", True),
        ("NODE_F401RE", False),  # another NUCLEO: never written
        ("XNODE_L496ZG", False),
        ("NODE_L496ZGA", False),
    ],
)
def test_only_a_node_l496zg_drive_with_mbed_htm_is_an_stlink_drive(tmp_path, name, ok):
    assert flashing.is_stlink_drive(make_drive(tmp_path, name)) is ok


def test_a_drive_without_mbed_htm_or_a_file_is_not_an_stlink_drive(tmp_path):
    (tmp_path / "NODE_L496ZG").mkdir()
    (tmp_path / "NODE_L496ZG" / "DETAILS.TXT").write_text("x")
    assert flashing.is_stlink_drive(tmp_path / "NODE_L496ZG") is False
    (tmp_path / "NODE_L496ZG1").write_text("a file")
    assert flashing.is_stlink_drive(tmp_path / "NODE_L496ZG1") is False
    assert flashing.is_stlink_drive(tmp_path / "NODE_L496ZG2") is False  # nothing there


class Unreachable:
    """A mount point that cannot even be stat'ed (a dead network share)."""

    name = "NODE_L496ZG"

    def is_dir(self):
        raise OSError(5, "Input/output error")


def test_a_drive_that_cannot_be_looked_at_is_not_an_stlink_drive():
    assert flashing.is_stlink_drive(Unreachable()) is False  # type: ignore[arg-type]


class Unlistable:
    """A folder that exists but cannot be listed."""

    name = "media"

    def is_dir(self):
        return True

    def iterdir(self):
        raise PermissionError(13, "Permission denied")


def test_find_drives_in_roots_and_as_roots(tmp_path):
    media = tmp_path / "media"
    b = make_drive(media, "NODE_L496ZG1")
    a = make_drive(media, "NODE_L496ZG")
    make_drive(media, "NODE_F401RE")
    direct = make_drive(tmp_path / "mnt", "NODE_L496ZG")
    (tmp_path / "alias").symlink_to(media)
    roots = [Unlistable(), tmp_path / "missing", media, direct, tmp_path / "alias", media]
    assert flashing.find_drives(roots) == [a, b, direct]  # type: ignore[arg-type]


def test_find_drives_uses_the_os_roots_by_default(tmp_path, monkeypatch):
    d = make_drive(tmp_path / "media")
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", str(tmp_path / "media"))
    assert flashing.find_drives() == [d]


def make_tools(bindir: Path, *names: str) -> None:
    bindir.mkdir(exist_ok=True)
    for n in names:
        (bindir / n).write_text("#!/bin/sh\nexit 0\n")
        (bindir / n).chmod(0o755)


def test_find_methods_in_the_order_they_are_tried(tmp_path, monkeypatch):
    make_tools(tmp_path / "bin", "pyocd", "STM32_Programmer_CLI", "st-flash")
    d = make_drive(tmp_path / "media")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", str(tmp_path / "media"))
    b = tmp_path / "bin"
    assert flashing.find_methods() == [
        Method("st-flash", str(b / "st-flash")),
        Method("stm32cubeprogrammer", str(b / "STM32_Programmer_CLI")),
        Method("pyocd", str(b / "pyocd")),
        Method("mass-storage", str(d)),
    ]


def test_find_methods_with_a_given_drive_does_not_search(tmp_path, monkeypatch):
    make_tools(tmp_path / "bin", "pyocd")
    make_drive(tmp_path / "media")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", str(tmp_path / "media"))
    assert flashing.find_methods(tmp_path / "elsewhere") == [
        Method("pyocd", str(tmp_path / "bin" / "pyocd")),
        Method("mass-storage", str(tmp_path / "elsewhere")),
    ]


def test_method_labels():
    assert Method("mass-storage", "/media/NODE_L496ZG").label == "the ST-LINK USB drive /media/NODE_L496ZG"
    assert Method("st-flash", "/usr/bin/st-flash").label == "st-flash (/usr/bin/st-flash)"


# --------------------------------------------------------------------------------------------------
# the tools' command lines and their runs
# --------------------------------------------------------------------------------------------------
def test_check_without_and_with_a_cancel():
    flashing._check(None)
    token = CancelToken()
    flashing._check(token)
    token.cancel()
    with pytest.raises(Cancelled):
        flashing._check(token)


@pytest.mark.parametrize(
    "kind, serial, argv",
    [
        ("st-flash", None, ["/t/st", "--reset", "write", "/i/odl.bin", "0x08000000"]),
        ("st-flash", "066D", ["/t/st", "--serial", "066D", "--reset", "write", "/i/odl.bin", "0x08000000"]),
        ("stm32cubeprogrammer", None, ["/t/st", "-c", "port=SWD", "-w", "/i/odl.bin", "0x08000000", "-v", "-rst"]),
        (
            "stm32cubeprogrammer",
            "066D",
            ["/t/st", "-c", "port=SWD", "sn=066D", "-w", "/i/odl.bin", "0x08000000", "-v", "-rst"],
        ),
        ("pyocd", None, ["/t/st", "flash", "-t", "stm32l496zgtx", "--base-address", "0x08000000", "/i/odl.bin"]),
        (
            "pyocd",
            "066D",
            ["/t/st", "flash", "-t", "stm32l496zgtx", "-u", "066D", "--base-address", "0x08000000", "/i/odl.bin"],
        ),
    ],
)
def test_tool_command_lines(kind, serial, argv):
    assert flashing._tool_command(Method(kind, "/t/st"), Path("/i/odl.bin"), serial) == argv


def test_the_drive_has_no_tool_command():
    with pytest.raises(ValueError, match="^mass-storage$"):
        flashing._tool_command(Method("mass-storage", "/m"), Path("/i/odl.bin"), None)


class FakeProc:
    """A flashing tool's process: its output comes through a real pipe; wait() returns ``rc`` (or times out)."""

    def __init__(self, output: bytes = b"", rc: int = 0, hang: bool = False, wait_times_out: bool = False):
        r, self.w = os.pipe()
        self.stdout = os.fdopen(r, "rb")
        os.write(self.w, output)
        if not hang:
            self.close_output()
        self.rc, self.wait_times_out = rc, wait_times_out
        self.returncode: int | None = None
        self.kills = 0
        self.waits: list[float | None] = []

    def close_output(self) -> None:
        if self.w is not None:
            os.close(self.w)
            self.w = None

    def kill(self) -> None:
        self.kills += 1
        self.returncode = -9
        self.close_output()

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if self.returncode is None:
            if self.wait_times_out:
                raise subprocess.TimeoutExpired("tool", timeout)
            self.returncode = self.rc
        return self.returncode

    def poll(self):
        return self.returncode


@pytest.fixture()
def popen(monkeypatch):
    """subprocess.Popen replaced: ``popen.proc`` is the next process; ``popen.calls`` the (argv, kwargs)."""
    state = SimpleNamespace(proc=FakeProc(), calls=[])

    def fake(cmd, **kw):
        state.calls.append((cmd, kw))
        if isinstance(state.proc, Exception):
            raise state.proc
        return state.proc

    monkeypatch.setattr(subprocess, "Popen", fake)
    return state


ST = Method("st-flash", "/opt/stlink/bin/st-flash")


def test_run_tool_reads_progress_from_percentages_and_counts(popen, clock):
    popen.proc = FakeProc(
        b"st-flash 1.7.0\n  12.5 %\r 25%\r150 %\r0/0 pages\r5/4 pages\r3/4 pages\r4/4 done\n\n1/1 erased\n"
        + b"\xff\xfe 30%\n"
        + b"x" * 100
        + b" 50%\n50% 1/4\n"
        + b"y" * 100
        + b" 2/4\nflash written and verified! jolly good!\n"
    )
    prog = Recorder()
    flashing._run_tool(ST, Path("/i/odl.bin"), "066D", prog, None, 180.0)
    assert popen.calls == [
        (
            ["/opt/stlink/bin/st-flash", "--serial", "066D", "--reset", "write", "/i/odl.bin", "0x08000000"],
            {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL},
        )
    ]
    assert prog.calls == [
        (0.05, "st-flash: programming"),
        (pytest.approx(0.15), "12.5 %"),
        (pytest.approx(0.25), "25%"),
        (pytest.approx(0.85), "150 %"),  # capped at 100 %
        (pytest.approx(0.65), "3/4 pages"),  # 0/0 and 5/4 are no progress
        (pytest.approx(0.85), "4/4 done"),
        (pytest.approx(0.85), "1/1 erased"),
        (pytest.approx(0.29), "\ufffd\ufffd 30%"),  # bytes that are not UTF-8 are replaced, not fatal
        (pytest.approx(0.45), "x" * 80),  # the text is cut at 80 characters
        (pytest.approx(0.45), "50% 1/4"),  # a percentage wins over a count
        (pytest.approx(0.45), "y" * 80),
    ]
    assert popen.proc.waits == [180.0] and popen.proc.kills == 0


def test_run_tool_waits_at_least_a_second_for_the_exit(popen, clock):
    popen.proc = FakeProc(b"ok\n")
    flashing._run_tool(ST, Path("/i/odl.bin"), None, Recorder(), None, 0.25)
    assert popen.proc.waits == [1.0]


def test_run_tool_at_its_deadline_is_not_yet_late(popen, clock):
    """The clock stands still: elapsed == timeout (0) is not more than the timeout."""
    popen.proc = FakeProc(b"ok\n")
    flashing._run_tool(ST, Path("/i/odl.bin"), None, Recorder(), None, 0.0)
    assert popen.proc.waits == [1.0] and popen.proc.kills == 0


def test_a_failing_tool_reports_its_exit_code_and_last_four_lines(popen, clock):
    popen.proc = FakeProc(b"a\nb\nc\nd\ne\r\rf: no ST-LINK found", rc=2)
    with pytest.raises(FlashError) as e:
        flashing._run_tool(ST, Path("/i/odl.bin"), None, Recorder(), None, 180.0)
    assert str(e.value) == "st-flash failed (exit 2): c | d | e | f: no ST-LINK found"
    assert popen.proc.kills == 0


def test_a_silent_failing_tool(popen, clock):
    popen.proc = FakeProc(b"\n  \n", rc=1)
    with pytest.raises(FlashError) as e:
        flashing._run_tool(ST, Path("/i/odl.bin"), None, Recorder(), None, 180.0)
    assert str(e.value) == "st-flash failed (exit 1): no output"


def test_a_tool_that_cannot_be_started(popen, clock):
    popen.proc = FileNotFoundError(2, "No such file or directory")
    with pytest.raises(FlashError) as e:
        flashing._run_tool(ST, Path("/i/odl.bin"), None, Recorder(), None, 180.0)
    assert str(e.value) == "cannot run /opt/stlink/bin/st-flash: No such file or directory"
    popen.proc = OSError("exec format")
    with pytest.raises(FlashError) as e:
        flashing._run_tool(ST, Path("/i/odl.bin"), None, Recorder(), None, 180.0)
    assert str(e.value) == "cannot run /opt/stlink/bin/st-flash: exec format"


def test_a_tool_past_its_deadline_is_killed(popen, monkeypatch):
    """The clock jumps past the deadline while the tool still writes nothing: it is killed at once."""
    times = iter([100.0, 102.0])
    monkeypatch.setattr(flashing, "time", SimpleNamespace(monotonic=lambda: next(times, 102.0)))
    popen.proc = FakeProc(hang=True)
    with pytest.raises(FlashError) as e:
        flashing._run_tool(ST, Path("/i/odl.bin"), None, Recorder(), None, 1.4)
    assert str(e.value) == "st-flash did not finish within 1 s (stopped)"
    assert popen.proc.kills == 1 and popen.proc.waits == []


def test_a_tool_that_does_not_exit_after_its_output_is_killed(popen, clock):
    popen.proc = FakeProc(b"done\n", wait_times_out=True)
    with pytest.raises(FlashError) as e:
        flashing._run_tool(ST, Path("/i/odl.bin"), None, Recorder(), None, 30.0)
    assert str(e.value) == "st-flash did not exit within 30 s (stopped)"
    assert popen.proc.kills == 1 and popen.proc.waits == [30.0]


def test_cancel_kills_the_tool(popen, clock):
    popen.proc = FakeProc(hang=True)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        flashing._run_tool(ST, Path("/i/odl.bin"), None, Recorder(), token, 180.0)
    assert popen.proc.kills == 1 and popen.proc.waits == []


def test_a_tool_killed_but_not_reaped_is_reaped(popen, clock):
    """Cancelled, and the kill does not take at once: the process is killed again and waited for (5 s)."""
    popen.proc = FakeProc(hang=True)
    popen.proc.kill = lambda: setattr(popen.proc, "kills", popen.proc.kills + 1)  # returncode stays None
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        flashing._run_tool(ST, Path("/i/odl.bin"), None, Recorder(), token, 180.0)
    popen.proc.close_output()
    assert popen.proc.kills == 2 and popen.proc.waits == [5]


def test_the_output_pipe_is_closed_by_its_reader_not_under_it(popen, clock):
    """Cancelled while a child of the tool still holds its output open: the reading thread keeps the pipe until
    the output ends, then closes it (closing it under the reader would let the reader read whatever file next
    gets the same descriptor number, e.g. the next tool's output)."""
    import threading

    proc = FakeProc(hang=True)
    proc.kill = lambda: setattr(proc, "returncode", -9)  # the tool dies, its child keeps the pipe open
    popen.proc = proc
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        flashing._run_tool(ST, Path("/i/odl.bin"), None, Recorder(), token, 180.0)
    assert proc.stdout.closed is False
    readers = [t for t in threading.enumerate() if t.name == "flash-tool-output"]
    proc.close_output()  # the child exits
    for t in readers:
        t.join(5)
    assert proc.stdout.closed is True


def test_output_that_comes_late_is_still_read(popen, monkeypatch):
    """The tool writes nothing for a while (one 0.2 s poll of its output comes back empty), then its progress."""
    proc = FakeProc(hang=True)
    popen.proc = proc
    calls = []

    def monotonic():
        calls.append(1)
        if len(calls) == 3:  # the loop's second turn: the first poll found nothing
            os.write(proc.w, b"7/7 pages\n")
            proc.close_output()
        return 100.0

    monkeypatch.setattr(flashing, "time", SimpleNamespace(monotonic=monotonic))
    import queue

    polls = []
    real_get = queue.Queue.get

    def get(self, block=True, timeout=None):
        polls.append(timeout)
        return real_get(self, block, timeout)

    monkeypatch.setattr(queue.Queue, "get", get)
    prog = Recorder()
    flashing._run_tool(ST, Path("/i/odl.bin"), None, prog, None, 180.0)
    assert prog.calls == [(0.05, "st-flash: programming"), (pytest.approx(0.85), "7/7 pages")]
    assert set(polls) == {0.2}  # cancel and the deadline are looked at every 0.2 s while the tool is silent


def test_a_line_split_across_two_reads_is_whole(popen, clock):
    """The output is read 4,096 bytes at a time: "50%" straddles the first read's end."""
    popen.proc = FakeProc(b"a" * 4093 + b"\n50%\n")
    prog = Recorder()
    flashing._run_tool(ST, Path("/i/odl.bin"), None, prog, None, 180.0)
    assert prog.calls == [(0.05, "st-flash: programming"), (pytest.approx(0.45), "50%")]


def test_the_output_reader_never_keeps_the_app_alive(popen, monkeypatch):
    """A tool's output is read by a daemon thread named flash-tool-output (a tool's child may hold the pipe open
    after the tool was killed: the app must still be able to exit)."""
    import threading

    seen, calls = [], []

    def monotonic():  # the deadline is set at 100, the loop's first look is at 1000: killed
        seen.extend((t.name, t.daemon) for t in threading.enumerate() if t.name == "flash-tool-output")
        calls.append(1)
        return 100.0 if len(calls) == 1 else 1000.0

    monkeypatch.setattr(flashing, "time", SimpleNamespace(monotonic=monotonic))
    popen.proc = FakeProc(hang=True)
    with pytest.raises(FlashError, match="did not finish within 5 s"):
        flashing._run_tool(ST, Path("/i/odl.bin"), None, Recorder(), None, 5.0)
    assert seen and set(seen) == {("flash-tool-output", True)}


def test_a_real_tool_process_with_its_errors_on_stderr(tmp_path):
    tool = tmp_path / "STM32_Programmer_CLI"
    tool.write_text("#!/bin/sh\necho \"args: $*\"\necho '50%'\necho 'Error: No STM32 target found!' >&2\nexit 3\n")
    tool.chmod(0o755)
    prog = Recorder()
    with pytest.raises(FlashError) as e:
        flashing._run_tool(Method("stm32cubeprogrammer", str(tool)), Path("/i/odl.bin"), "SN9", prog, None, 30.0)
    assert str(e.value) == (
        "STM32_Programmer_CLI failed (exit 3): args: -c port=SWD sn=SN9 -w /i/odl.bin 0x08000000 -v -rst | 50% | "
        "Error: No STM32 target found!"
    )
    assert prog.calls == [(0.05, "STM32_Programmer_CLI: programming"), (pytest.approx(0.45), "50%")]


# --------------------------------------------------------------------------------------------------
# the drive: copy, re-enumeration, FAIL.TXT
# --------------------------------------------------------------------------------------------------
def image_of(tmp_path: Path, size: int = 40_000) -> FirmwareImage:
    """A 40,000-byte ODL image (three 16 KiB copy steps)."""
    return fwimage.identify(make_image(tmp_path / "odl.bin", size=size - 466))


class StLink:
    """What the ST-LINK does at each of the code's sleeps: {n: action}; 'gone' removes the drive,
    'back' / 'back1' / 'fail' mounts it again (as NODE_L496ZG / NODE_L496ZG1 / with FAIL.TXT), 'consume'
    deletes the copied file, 'failtxt' writes FAIL.TXT, 'cancel' cancels the token."""

    def __init__(self, root: Path, script: dict, token: CancelToken | None = None, fail_text: str = ""):
        self.root, self.script, self.token = root, script, token
        self.fail_text = fail_text or "The interface firmware FAILED to reprogram the MCU.\n"
        self.drive = make_drive(root)
        self.programmed: bytes | None = None

    def __call__(self, n: int) -> None:
        what = self.script.get(n)
        if what == "gone":
            self.programmed = (self.drive / "ODL.BIN").read_bytes()
            shutil.rmtree(self.drive)
        elif what in ("back", "fail"):
            make_drive(self.root)
            if what == "fail":
                (self.drive / "FAIL.TXT").write_text(self.fail_text)
        elif what == "back1":
            make_drive(self.root, "NODE_L496ZG1")
        elif what == "consume":
            self.programmed = (self.drive / "ODL.BIN").read_bytes()
            (self.drive / "ODL.BIN").unlink()
        elif what == "failtxt":
            (self.drive / "FAIL.TXT").write_text(self.fail_text)
        elif what == "cancel":
            assert self.token is not None
            self.token.cancel()


def run_drive(tmp_path, monkeypatch, script, token=None, gone=20.0, back=30.0, fail_text="", image=None):
    media = tmp_path / "media"
    stlink = StLink(media, script, token, fail_text)
    clock = FakeTime(on_sleep=stlink)
    monkeypatch.setattr(flashing, "time", clock)
    prog = Recorder()
    img = image or image_of(tmp_path)
    error = None
    try:
        flashing._flash_drive(Method("mass-storage", str(stlink.drive)), img, prog, token, gone, back)
    except (FlashError, Cancelled) as exc:
        error = exc
    return SimpleNamespace(stlink=stlink, clock=clock, prog=prog, error=error, image=img, drive=stlink.drive)


def test_a_drive_copy_reenumerates_and_reports_its_progress(tmp_path, monkeypatch):
    r = run_drive(tmp_path, monkeypatch, {1: "gone", 2: "back"})
    assert r.error is None
    assert r.stlink.programmed == r.image.path.read_bytes()
    assert r.prog.calls == [
        (0.02, f"copying 40,000 bytes to {r.drive}"),
        (pytest.approx(0.26576), "copying to NODE_L496ZG"),
        (pytest.approx(0.51152), "copying to NODE_L496ZG"),
        (pytest.approx(0.62), "copying to NODE_L496ZG"),
        (0.65, "the ST-LINK is programming the board"),
        (0.8, "NODE_L496ZG is back"),
    ]
    assert r.clock.sleeps == [0.1, 0.1]


def test_a_drive_that_comes_back_under_another_name(tmp_path, monkeypatch):
    r = run_drive(tmp_path, monkeypatch, {1: "gone", 3: "back1"})
    assert r.error is None and r.prog.calls[-1] == (0.8, "NODE_L496ZG1 is back")
    assert r.clock.sleeps == [0.1, 0.1, 0.1]


def test_with_two_boards_the_drive_that_was_written_is_checked(tmp_path, monkeypatch):
    """Another NUCLEO-L496ZG's drive (NODE_L496ZG, an old FAIL.TXT on it) beside ours (NODE_L496ZG1): after
    ours comes back, ours is looked at, not the first one found."""
    media = tmp_path / "media"
    make_drive(media, "NODE_L496ZG", fail=True)
    ours = make_drive(media, "NODE_L496ZG1")

    def act(n):
        if n == 1:
            shutil.rmtree(ours)
        elif n == 2:
            make_drive(media, "NODE_L496ZG1")

    monkeypatch.setattr(flashing, "time", FakeTime(on_sleep=act))
    prog = Recorder()
    flashing._flash_drive(Method("mass-storage", str(ours)), image_of(tmp_path), prog, None, 20, 30)
    assert prog.calls[-1] == (0.8, "NODE_L496ZG1 is back")


def test_a_drive_that_consumes_the_file_without_leaving(tmp_path, monkeypatch):
    r = run_drive(tmp_path, monkeypatch, {2: "consume"})
    assert r.error is None and r.stlink.programmed == r.image.path.read_bytes()
    assert r.prog.calls[-1] == (0.8, "NODE_L496ZG is back") and r.clock.sleeps == [0.1, 0.1]


def test_fail_txt_after_reenumeration_is_reported_with_its_text(tmp_path, monkeypatch):
    r = run_drive(tmp_path, monkeypatch, {1: "gone", 2: "fail"})
    assert str(r.error) == (
        f"the ST-LINK reports the programming failed (FAIL.TXT on {r.drive}): "
        "The interface firmware FAILED to reprogram the MCU."
    )


def test_fail_txt_that_is_not_utf8_is_still_shown(tmp_path, monkeypatch):
    media = tmp_path / "media"
    drive = make_drive(media)

    def act(n):
        if n == 1:
            shutil.rmtree(drive)
        elif n == 2:
            make_drive(media)
            (drive / "FAIL.TXT").write_bytes(b"Bad \xff image\n")

    monkeypatch.setattr(flashing, "time", FakeTime(on_sleep=act))
    with pytest.raises(FlashError) as e:
        flashing._flash_drive(Method("mass-storage", str(drive)), image_of(tmp_path), Recorder(), None, 20, 30)
    assert str(e.value) == f"the ST-LINK reports the programming failed (FAIL.TXT on {drive}): Bad \ufffd image"


def test_fail_txt_text_is_cut_at_300_characters(tmp_path, monkeypatch):
    r = run_drive(tmp_path, monkeypatch, {1: "gone", 2: "fail"}, fail_text="  " + "y" * 400 + "\n")
    assert str(r.error) == f"the ST-LINK reports the programming failed (FAIL.TXT on {r.drive}): " + "y" * 300


def test_an_unreadable_fail_txt(tmp_path, monkeypatch):
    """FAIL.TXT is a folder here: it cannot be read as text."""
    media = tmp_path / "media"
    stlink = StLink(media, {})

    def act(n):
        if n == 1:
            shutil.rmtree(stlink.drive)
        elif n == 2:
            make_drive(media)
            (stlink.drive / "FAIL.TXT").mkdir()

    monkeypatch.setattr(flashing, "time", FakeTime(on_sleep=act))
    with pytest.raises(FlashError) as e:
        flashing._flash_drive(Method("mass-storage", str(stlink.drive)), image_of(tmp_path), Recorder(), None, 20, 30)
    assert str(e.value) == f"the ST-LINK reports the programming failed (FAIL.TXT on {stlink.drive}): (unreadable)"


def test_a_new_fail_txt_without_reenumeration_is_reported(tmp_path, monkeypatch):
    r = run_drive(tmp_path, monkeypatch, {1: "failtxt", 2: "consume"})
    assert str(r.error).startswith(f"the ST-LINK reports the programming failed (FAIL.TXT on {r.drive}): The ")


def test_an_old_fail_txt_on_a_drive_that_did_not_leave_is_not_this_flash(tmp_path, monkeypatch):
    media = tmp_path / "media"
    make_drive(media, fail=True)
    stlink = StLink.__new__(StLink)
    stlink.root, stlink.script, stlink.token, stlink.drive = media, {1: "consume"}, None, media / "NODE_L496ZG"
    monkeypatch.setattr(flashing, "time", FakeTime(on_sleep=stlink))
    flashing._flash_drive(Method("mass-storage", str(stlink.drive)), image_of(tmp_path), Recorder(), None, 20, 30)
    assert stlink.programmed is not None


def test_an_old_fail_txt_is_reported_when_the_drive_came_back_with_it(tmp_path, monkeypatch):
    media = tmp_path / "media"
    make_drive(media, fail=True)
    drive = media / "NODE_L496ZG"

    def act(n):
        if n == 1:
            shutil.rmtree(drive)
        elif n == 2:
            make_drive(media, fail=True)

    monkeypatch.setattr(flashing, "time", FakeTime(on_sleep=act))
    with pytest.raises(FlashError, match=r"^the ST-LINK reports the programming failed \(FAIL.TXT on "):
        flashing._flash_drive(Method("mass-storage", str(drive)), image_of(tmp_path), Recorder(), None, 20, 30)


def test_a_drive_that_keeps_the_file_times_out(tmp_path, monkeypatch):
    r = run_drive(tmp_path, monkeypatch, {}, gone=1.0, back=30.0)
    assert str(r.error) == (
        f"the ST-LINK drive {r.drive} kept the file and did not re-enumerate within 1 s: "
        "the board was probably not programmed (the OS may still be caching the copy; "
        "eject the drive, or use st-flash / STM32_Programmer_CLI)"
    )
    assert r.clock.sleeps == [0.1, 0.1, 0.1]  # checked at 0, 0.5, 1.0 (not more than 1 s), late at 1.5


def test_a_drive_that_does_not_come_back_times_out(tmp_path, monkeypatch):
    r = run_drive(tmp_path, monkeypatch, {1: "gone"}, gone=1.0, back=3.0)
    assert str(r.error) == (
        f"the ST-LINK drive {r.drive} did not come back within 3 s after programming: "
        "unplug and replug the NUCLEO's USB, then check the board answers (Devices panel)"
    )
    assert len(r.clock.sleeps) == 7  # gone after 0.5 s, given up at 3.5 s


def test_a_drive_that_is_not_an_stlink_drive_is_never_written(tmp_path, monkeypatch, clock):
    other = make_drive(tmp_path, "NODE_F401RE")
    with pytest.raises(FlashError) as e:
        flashing._flash_drive(Method("mass-storage", str(other)), image_of(tmp_path), Recorder(), None, 20, 30)
    assert str(e.value) == f"{other} is not a NUCLEO-L496ZG ST-LINK drive (NODE_L496ZG with MBED.HTM)"
    assert sorted(p.name for p in other.iterdir()) == ["DETAILS.TXT", "MBED.HTM"]


def test_a_copy_that_fails(tmp_path, monkeypatch, clock):
    drive = make_drive(tmp_path / "media")
    (drive / "ODL.BIN").mkdir()  # the name is taken by a folder
    with pytest.raises(FlashError) as e:
        flashing._flash_drive(Method("mass-storage", str(drive)), image_of(tmp_path), Recorder(), None, 20, 30)
    assert str(e.value) == f"copying the firmware to {drive} failed: Is a directory"


def test_cancel_before_the_copy_writes_nothing(tmp_path, monkeypatch, clock):
    drive = make_drive(tmp_path / "media")
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        flashing._flash_drive(Method("mass-storage", str(drive)), image_of(tmp_path), Recorder(), token, 20, 30)
    assert (drive / "ODL.BIN").read_bytes() == b""


def test_cancel_while_waiting_for_the_drive(tmp_path, monkeypatch):
    token = CancelToken()
    r = run_drive(tmp_path, monkeypatch, {1: "gone", 2: "cancel", 3: "back"}, token=token)
    assert isinstance(r.error, Cancelled) and r.clock.sleeps == [0.1, 0.1]


# --------------------------------------------------------------------------------------------------
# HELLO afterwards
# --------------------------------------------------------------------------------------------------
class Board:
    """The fake NucleoClient.open: ``answers`` maps a url to a version (or an exception to raise)."""

    def __init__(self, answers: dict):
        self.answers = answers
        self.opened: list[tuple[str, float]] = []

    def open(self, url, timeout):
        self.opened.append((url, timeout))
        a = self.answers.get(url, ConnectionError("nobody there"))
        if isinstance(a, Exception):
            raise a
        return SimpleNamespace(hello=lambda: SimpleNamespace(fw_major=a[0], fw_minor=a[1], fw_patch=a[2]))


class _Ctx:
    def __init__(self, board):
        self.board = board

    def __enter__(self):
        return self.board

    def __exit__(self, *exc):
        return False


@pytest.fixture()
def hello(monkeypatch):
    """A fake port lister (``hello.ports``, or an exception) and a fake board behind NucleoClient.open."""
    state = SimpleNamespace(ports=[], board=Board({}), listed=0)

    def find_nucleo():
        state.listed += 1
        if isinstance(state.ports, Exception):
            raise state.ports
        return list(state.ports)

    def open_(url, timeout=None):
        return _Ctx(state.board.open(url, timeout))

    monkeypatch.setattr(discovery, "find_nucleo", find_nucleo)
    monkeypatch.setattr(NucleoClient, "open", staticmethod(open_))
    return state


def port(device: str, serial: str | None = None) -> PortInfo:
    return PortInfo(device, 0x0483, 0x374B, serial)


@pytest.mark.parametrize("url", ["socket://127.0.0.1:5000", "loop://", "rfc2217://lab:4000"])
def test_a_network_port_is_asked_directly(hello, clock, url):
    hello.board = Board({url: (1, 2, 3)})
    prog = Recorder()
    assert flashing.verify_hello(url, progress=prog) == (url, (1, 2, 3))
    assert hello.listed == 0 and hello.board.opened == [(url, 1.0)]
    assert prog.calls == [(0.9, f"asking the board on {url} for HELLO")]


def test_a_serial_number_finds_the_port_again(hello, clock):
    hello.ports = [port("/dev/ttyACM0", "OTHER"), port("/dev/ttyACM3", "066D")]
    hello.board = Board({"/dev/ttyACM3": (1, 1, 0)})
    assert flashing.verify_hello("/dev/ttyACM1", "066D") == ("/dev/ttyACM3", (1, 1, 0))
    assert hello.listed == 1


def test_a_serial_number_is_looked_up_even_for_a_network_port(hello, clock):
    hello.ports = [port("/dev/ttyACM3", "066D")]
    hello.board = Board({"/dev/ttyACM3": (1, 1, 0)})
    assert flashing.verify_hello("socket://x:1", "066D") == ("/dev/ttyACM3", (1, 1, 0))


def test_the_only_nucleo_is_taken_when_the_port_moved(hello, clock):
    hello.ports = [port("/dev/ttyACM1", "NEW")]
    hello.board = Board({"/dev/ttyACM1": (1, 1, 0)})
    assert flashing.verify_hello("/dev/ttyACM0") == ("/dev/ttyACM1", (1, 1, 0))
    assert flashing.verify_hello(None) == ("/dev/ttyACM1", (1, 1, 0))


def test_with_several_nucleos_the_given_port_is_kept(hello, clock):
    hello.ports = [port("/dev/ttyACM0", "A"), port("/dev/ttyACM1", "B")]
    hello.board = Board({"/dev/ttyACM0": (1, 1, 0), "/dev/ttyACM1": (9, 9, 9)})
    assert flashing.verify_hello("/dev/ttyACM0") == ("/dev/ttyACM0", (1, 1, 0))
    assert flashing.verify_hello("/dev/ttyACM1", "nobody's serial") == ("/dev/ttyACM1", (9, 9, 9))


def test_a_port_lister_that_fails_keeps_the_given_port(hello, clock):
    hello.ports = RuntimeError("no udev")
    hello.board = Board({"/dev/ttyACM0": (1, 1, 0)})
    assert flashing.verify_hello("/dev/ttyACM0", "066D") == ("/dev/ttyACM0", (1, 1, 0))


def test_several_nucleos_and_no_port_is_an_error_with_the_checklist(hello, clock):
    hello.ports = [port("/dev/ttyACM0", "A"), port("/dev/ttyACM1", "B")]
    with pytest.raises(FlashError) as e:
        flashing.verify_hello(None, timeout=1.0)
    assert str(e.value) == (
        "after flashing, the board does not answer: 2 NUCLEO ports are enumerated (/dev/ttyACM0, /dev/ttyACM1): "
        f"pass --port. To do: {CHECKLIST}"
    )
    assert hello.board.opened == [] and clock.sleeps == [0.5, 0.5, 0.5]  # at 0, 0.5, 1.0 (not late), late at 1.5


def test_hello_is_waited_for_15_s_by_default(hello, clock):
    with pytest.raises(FlashError):
        flashing.verify_hello(None)
    assert len(clock.sleeps) == 31  # checked at 0, 0.5, ..., 15.0 (not late), late at 15.5


def test_no_nucleo_at_all(hello, clock):
    with pytest.raises(FlashError) as e:
        flashing.verify_hello(None, timeout=0.0)
    assert str(e.value) == (
        "after flashing, the board does not answer: no NUCLEO virtual COM port (USB 0483:374B) is enumerated. "
        f"To do: {CHECKLIST}"
    )
    assert clock.sleeps == [0.5]


def test_a_board_that_does_not_answer_is_asked_until_the_deadline(hello, clock):
    hello.board = Board({"socket://b:1": TimeoutError("no answer to HELLO")})
    with pytest.raises(FlashError) as e:
        flashing.verify_hello("socket://b:1", timeout=2.0)
    assert str(e.value) == (
        "after flashing, the board does not answer: no HELLO answer on socket://b:1 "
        f"(TimeoutError: no answer to HELLO). To do: {CHECKLIST}"
    )
    assert len(hello.board.opened) == 6 and clock.sleeps == [0.5] * 5


def test_a_board_that_answers_on_the_third_try(hello, monkeypatch):
    hello.board = Board({})
    clock = FakeTime(on_sleep=lambda n: hello.board.answers.update({"socket://b:1": (1, 1, 0)}) if n == 2 else None)
    monkeypatch.setattr(flashing, "time", clock)
    assert flashing.verify_hello("socket://b:1") == ("socket://b:1", (1, 1, 0))
    assert len(hello.board.opened) == 3


def test_cancel_while_waiting_for_hello(hello, monkeypatch):
    token = CancelToken()
    monkeypatch.setattr(flashing, "time", FakeTime(on_sleep=lambda n: token.cancel()))
    with pytest.raises(Cancelled):
        flashing.verify_hello("socket://b:1", cancel=token)
    assert len(hello.board.opened) == 1


def test_serial_of_a_port(hello):
    hello.ports = [port("/dev/ttyACM0", "A"), port("/dev/ttyACM1", "B")]
    assert flashing._serial_of("/dev/ttyACM1") == "B"
    assert flashing._serial_of("/dev/ttyACM7") is None
    hello.ports = RuntimeError("no lister")
    assert flashing._serial_of("/dev/ttyACM1") is None


# --------------------------------------------------------------------------------------------------
# flash(): the whole sequence, with the methods and the check faked
# --------------------------------------------------------------------------------------------------
@pytest.fixture()
def rig(tmp_path, monkeypatch, clock):
    """Tools st-flash and pyocd on PATH, no drive; _run_tool, _flash_drive, verify_hello and _serial_of faked:
    ``rig.log`` lists what was called, ``rig.fail`` names the methods that fail, ``rig.board`` is what the
    board answers."""
    make_tools(tmp_path / "bin", "st-flash", "pyocd")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", str(tmp_path / "no-media"))
    monkeypatch.setattr(flashing, "FIRMWARE_VERSION", (1, 1, 0))
    state = SimpleNamespace(log=[], fail={}, board=None, bin=tmp_path / "bin", passed=[])

    def run_tool(m, image, serial, progress, cancel, timeout):
        state.passed.append((progress, cancel))
        state.log.append(("tool", m.kind, image, serial, timeout))
        clock.now += 2.25
        if m.kind in state.fail:
            raise FlashError(state.fail[m.kind])

    def flash_drive(m, image, progress, cancel, gone, back):
        state.passed.append((progress, cancel))
        state.log.append(("drive", m.target, image.path, gone, back))
        if "mass-storage" in state.fail:
            raise FlashError(state.fail["mass-storage"])

    def verify(p, serial, timeout, progress, cancel):
        state.passed.append((progress, cancel))
        state.log.append(("hello", p, serial, timeout))
        return p or "/dev/ttyACM0", state.board

    def serial_of(p):
        state.log.append(("serial_of", p))
        return "SN-" + p[-1]

    monkeypatch.setattr(flashing, "_run_tool", run_tool)
    monkeypatch.setattr(flashing, "_flash_drive", flash_drive)
    monkeypatch.setattr(flashing, "verify_hello", verify)
    monkeypatch.setattr(flashing, "_serial_of", serial_of)
    return state


def test_flash_uses_the_first_method_and_checks_hello(tmp_path, rig):
    img = make_image(tmp_path / "odl.bin", version=(1, 1, 0))
    rig.board = (1, 1, 0)
    prog = Recorder()
    r = flashing.flash(img, port="/dev/ttyACM5", progress=prog)
    assert rig.log == [
        ("serial_of", "/dev/ttyACM5"),
        ("tool", "st-flash", img, "SN-5", 180.0),
        ("hello", "/dev/ttyACM5", "SN-5", 15.0),
    ]
    assert prog.calls == [(0.0, f"flashing odl.bin (1.1.0) with st-flash ({rig.bin / 'st-flash'})"), (1.0, "done")]
    assert (r.method, r.port, r.board_version, r.seconds, r.failed_methods, r.notes) == (
        Method("st-flash", str(rig.bin / "st-flash")),
        "/dev/ttyACM5",
        (1, 1, 0),
        2.25,
        [],
        [],
    )
    assert r.summary() == (
        f"flashed ODL firmware 1.1.0 (odl.bin) with st-flash ({rig.bin / 'st-flash'}); "
        "the board on /dev/ttyACM5 answers HELLO with firmware 1.1.0"
    )


def test_flash_passes_its_progress_and_cancel_to_every_step(tmp_path, rig, monkeypatch):
    img = make_image(tmp_path / "odl.bin", version=(1, 1, 0))
    rig.board = (1, 1, 0)
    rig.fail = {"st-flash": "e1", "pyocd": "e2"}
    d = make_drive(tmp_path / "media")
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", str(tmp_path / "media"))
    prog, token = Recorder(), CancelToken()
    flashing.flash(img, progress=prog, cancel=token)
    assert [x[0] for x in rig.log] == ["tool", "tool", "drive", "hello"]
    assert rig.log[2] == ("drive", str(d), img, 20.0, 30.0)  # the drive's default timeouts
    assert len(rig.passed) == 4 and all(p is prog and c is token for p, c in rig.passed)


def test_flash_passes_its_timeouts_and_serial_on(tmp_path, rig):
    img = make_image(tmp_path / "odl.bin", version=(1, 1, 0))
    rig.board = (1, 1, 0)
    flashing.flash(img, serial="MINE", port="/dev/ttyACM5", tool_timeout=7.0, hello_timeout=3.0)
    assert rig.log == [("tool", "st-flash", img, "MINE", 7.0), ("hello", "/dev/ttyACM5", "MINE", 3.0)]


def test_flash_without_verify_does_not_look_up_the_serial(tmp_path, rig):
    img = make_image(tmp_path / "odl.bin", version=(1, 1, 0))
    r = flashing.flash(img, port="/dev/ttyACM5", verify=False)
    assert rig.log == [("tool", "st-flash", img, None, 180.0)]
    assert (r.port, r.board_version) == (None, None)
    assert (
        r.summary()
        == f"flashed ODL firmware 1.1.0 (odl.bin) with st-flash ({rig.bin / 'st-flash'}); not checked (--no-verify)"
    )


def test_flash_without_a_port_finds_the_board(tmp_path, rig):
    img = make_image(tmp_path / "odl.bin", version=(1, 1, 0))
    rig.board = (1, 1, 0)
    r = flashing.flash(img)
    assert rig.log[-1] == ("hello", None, None, 15.0) and r.port == "/dev/ttyACM0"


def test_a_failed_method_falls_through_and_is_reported(tmp_path, rig):
    img = make_image(tmp_path / "odl.bin", version=(1, 1, 0))
    rig.fail = {"st-flash": "st-flash failed (exit 1): no ST-LINK"}
    r = flashing.flash(img, verify=False)
    assert [x[1] for x in rig.log] == ["st-flash", "pyocd"]
    assert r.method.kind == "pyocd" and r.failed_methods == [("st-flash", "st-flash failed (exit 1): no ST-LINK")]
    assert r.seconds == 4.5


def test_all_methods_failing(tmp_path, rig):
    img = make_image(tmp_path / "odl.bin", version=(1, 1, 0))
    rig.fail = {"st-flash": "e1", "pyocd": "e2"}
    with pytest.raises(FlashError) as e:
        flashing.flash(img, verify=False)
    assert type(e.value) is FlashError and str(e.value) == "flashing failed: st-flash: e1; pyocd: e2"


def test_an_asked_for_method_only(tmp_path, rig):
    img = make_image(tmp_path / "odl.bin", version=(1, 1, 0))
    r = flashing.flash(img, method="pyocd", verify=False)
    assert [x[1] for x in rig.log] == ["pyocd"] and r.method.kind == "pyocd"


def test_a_given_drive_that_is_refused(tmp_path, rig):
    img = make_image(tmp_path / "odl.bin", version=(1, 1, 0))
    rig.fail = {"mass-storage": "/x is not a NUCLEO-L496ZG ST-LINK drive (NODE_L496ZG with MBED.HTM)"}
    with pytest.raises(FlashError) as e:
        flashing.flash(img, method="mass-storage", drive="/x", verify=False, drive_gone_timeout=4, drive_back_timeout=6)
    assert str(e.value) == (
        "flashing failed: mass-storage: /x is not a NUCLEO-L496ZG ST-LINK drive (NODE_L496ZG with MBED.HTM)"
    )
    assert rig.log == [("drive", "/x", img, 4, 6)]


def test_mass_storage_asked_for_without_a_drive(tmp_path, rig):
    img = make_image(tmp_path / "odl.bin", version=(1, 1, 0))
    with pytest.raises(FlashSetupError) as e:
        flashing.flash(img, method="mass-storage", verify=False)
    assert str(e.value) == "no NODE_L496ZG drive is mounted (is the NUCLEO's ST-LINK USB connected?)"


def test_an_asked_for_tool_that_is_not_there(tmp_path, rig):
    img = make_image(tmp_path / "odl.bin", version=(1, 1, 0))
    with pytest.raises(FlashSetupError) as e:
        flashing.flash(img, method="stm32cubeprogrammer", verify=False)
    assert str(e.value) == (
        "no way to flash was found: no st-flash (sudo apt-get install stlink-tools), no STM32_Programmer_CLI, "
        "no pyocd, and no NODE_L496ZG drive mounted (connect the NUCLEO's ST-LINK USB; on Linux the "
        "desktop mounts it, or mount it by hand and pass --drive)"
    )
    assert rig.log == []


def test_an_unknown_method(tmp_path, rig):
    with pytest.raises(FlashSetupError) as e:
        flashing.flash(make_image(tmp_path / "odl.bin"), method="jtag")
    assert (
        str(e.value)
        == "unknown flashing method 'jtag' (one of auto, st-flash, stm32cubeprogrammer, pyocd, mass-storage)"
    )


def test_a_wrong_file_is_refused_before_anything_is_done(tmp_path, rig):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"this is not firmware")
    with pytest.raises(FlashSetupError, match="does not start with an STM32 vector table"):
        flashing.flash(junk, port="/dev/ttyACM0")
    assert rig.log == []


def test_an_older_image_is_flashed_with_a_note(tmp_path, rig):
    img = make_image(tmp_path / "odl.bin", version=(1, 0, 9))
    r = flashing.flash(img, verify=False)
    assert r.notes == [
        "this image (1.0.9) is older than the firmware this app expects (1.1.0): "
        "the app will say the board needs the ODL firmware"
    ]
    assert r.summary().endswith("; not checked (--no-verify); " + r.notes[0])


def test_a_forced_image_gets_no_version_note_and_no_version_check(tmp_path, rig):
    other = tmp_path / "blinky.bin"
    other.write_bytes(b"\x00\x10\x00\x20\x01\x01\x00\x08" + bytes(400))
    rig.board = (1, 1, 0)
    r = flashing.flash(other, force=True, port="/dev/ttyACM0")
    assert r.notes == [] and r.board_version == (1, 1, 0) and r.image.target == "unknown"


def test_a_board_answering_another_version(tmp_path, rig):
    img = make_image(tmp_path / "odl.bin", version=(1, 1, 0))
    rig.board = (1, 0, 0)
    with pytest.raises(FlashError) as e:
        flashing.flash(img, port="/dev/ttyACM2")
    assert str(e.value) == (
        f"st-flash ({rig.bin / 'st-flash'}) reported success, but the board on /dev/ttyACM2 answers HELLO with "
        "firmware 1.0.0, not the 1.1.0 just flashed: the programming did not take. "
        f"To do: {CHECKLIST}"
    )


def test_flash_cancelled_before_a_method(tmp_path, rig):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        flashing.flash(make_image(tmp_path / "odl.bin"), verify=False, cancel=token)
    assert rig.log == []


def test_the_report_as_a_dict(tmp_path):
    img = fwimage.identify(make_image(tmp_path / "odl.bin", version=(1, 1, 0)))
    r = FlashReport(img, Method("pyocd", "/usr/bin/pyocd"), "/dev/ttyACM0", (1, 1, 0), 3.14159, [("st-flash", "e")])
    r.notes.append("n1")
    assert r.as_dict() == {
        "ok": True,
        "firmware": str(img.path),
        "version": "1.1.0",
        "sha256": img.sha256,
        "method": "pyocd",
        "method_target": "/usr/bin/pyocd",
        "port": "/dev/ttyACM0",
        "board_version": "1.1.0",
        "seconds": 3.14,
        "failed_methods": [{"method": "st-flash", "error": "e"}],
        "notes": ["n1"],
    }
    unchecked = FlashReport(img, Method("mass-storage", "/m/NODE_L496ZG"), None, None, 0.5)
    d = unchecked.as_dict()
    assert (d["port"], d["board_version"], d["failed_methods"], d["notes"]) == (None, None, [], [])
    assert unchecked.summary() == (
        "flashed ODL firmware 1.1.0 (odl.bin) with the ST-LINK USB drive /m/NODE_L496ZG; not checked (--no-verify)"
    )


def test_a_report_with_a_port_but_no_version_adds_nothing(tmp_path):
    img = fwimage.identify(make_image(tmp_path / "odl.bin", version=(1, 1, 0)))
    r = FlashReport(img, Method("st-flash", "/b/st-flash"), "/dev/ttyACM0", None, 0.5, notes=["a", "b"])
    assert r.summary() == "flashed ODL firmware 1.1.0 (odl.bin) with st-flash (/b/st-flash); a; b"


# --------------------------------------------------------------------------------------------------
# flash_managed: the Devices panel's action
# --------------------------------------------------------------------------------------------------
class Manager:
    """A DeviceManager with one device: status() walks through ``states`` (the last one stays)."""

    def __init__(self, info, states, connect_error=None):
        self.info, self.states, self.connect_error = info, list(states), connect_error
        self.log: list[tuple[str, str]] = []

    def status(self, key):
        self.log.append(("status", key))
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return SimpleNamespace(info=self.info, state=state)

    def disconnect(self, key):
        self.log.append(("disconnect", key))

    def connect(self, key):
        self.log.append(("connect", key))
        if self.connect_error is not None:
            raise self.connect_error


def board_info(**kw):
    from app.core.devices import DeviceInfo

    base = dict(key="board:/dev/ttyACM0", kind="board", url="/dev/ttyACM0", name="NUCLEO-L496ZG", serial_number="066D")
    return DeviceInfo(**{**base, **kw})


@pytest.fixture()
def fake_flash(monkeypatch, clock):
    calls = []

    def flash(firmware, **kw):
        calls.append((firmware, kw))
        if firmware == "bad.bin":
            raise FlashError("boom")
        return "the report"

    monkeypatch.setattr(flashing, "flash", flash)
    return calls


def test_flash_managed_frees_the_port_flashes_and_reconnects(fake_flash, clock):
    from app.core.devices import DeviceState as S

    m = Manager(board_info(), [S.READY, S.READY, S.CONNECTING, S.DISCONNECTED])
    assert flashing.flash_managed(m, "k", "odl.bin", verify=False) == "the report"
    assert fake_flash == [("odl.bin", {"port": "/dev/ttyACM0", "serial": "066D", "verify": False})]
    assert m.log == [
        ("status", "k"),
        ("disconnect", "k"),
        ("status", "k"),
        ("status", "k"),
        ("status", "k"),
        ("connect", "k"),
    ]
    assert clock.sleeps == [0.05, 0.05]


def test_flash_managed_waits_at_most_5_s_for_the_port(fake_flash, clock):
    from app.core.devices import DeviceState as S

    m = Manager(board_info(), [S.READY])
    flashing.flash_managed(m, "k")
    assert len(clock.sleeps) == 10 and fake_flash == [(None, {"port": "/dev/ttyACM0", "serial": "066D"})]


def test_flash_managed_reconnects_after_a_failure_and_ignores_a_failed_connect(fake_flash, clock):
    from app.core.devices import DeviceError
    from app.core.devices import DeviceState as S

    m = Manager(board_info(), [S.READY, S.DISCONNECTED], connect_error=DeviceError("still broken"))
    with pytest.raises(FlashError, match="^boom$"):
        flashing.flash_managed(m, "k", "bad.bin")
    assert m.log[-1] == ("connect", "k")
    assert flashing.flash_managed(m, "k", "odl.bin") == "the report"


@pytest.mark.parametrize(
    "info",
    [
        dict(kind="powershield", name="LPM01A"),
        dict(virtual=True, name="virtual board"),
    ],
)
def test_only_real_boards_are_flashed(fake_flash, clock, info):
    from app.core.devices import DeviceState as S

    i = board_info(**info)
    m = Manager(i, [S.READY])
    with pytest.raises(FlashSetupError) as e:
        flashing.flash_managed(m, "k", "odl.bin")
    assert str(e.value) == f"{i.name} is not a real NUCLEO board: only those can be flashed"
    assert fake_flash == [] and m.log == [("status", "k")]


def test_a_training_board_is_not_flashed(fake_flash, clock):
    from app.core.devices import DeviceState as S

    m = Manager(board_info(), [S.TRAINING])
    with pytest.raises(FlashSetupError) as e:
        flashing.flash_managed(m, "k", "odl.bin")
    assert str(e.value) == "NUCLEO-L496ZG is running a training round: abort it or wait for it to end"
    assert fake_flash == [] and m.log == [("status", "k")]
