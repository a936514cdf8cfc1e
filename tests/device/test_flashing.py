"""Flashing the ODL firmware (app/core/flashing.py, ``odlstudio flash``, the Devices panel's action) without a
board: the ST-LINK drive is a temporary folder with MBED.HTM/DETAILS.TXT that a thread "re-enumerates"
(removes and recreates) after a .bin lands on it; st-flash / STM32_Programmer_CLI / pyocd are small scripts
on PATH that log their arguments; the HELLO check talks to the virtual bench's board (or to a port that
never answers).  Images are built in the test (a vector table plus the ODL-FW identification), so none of
this needs the ARM toolchain; the real built image is checked when the toolchain is there."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.core import flashing
from device.nucleo import fwimage
from tests import firmwarekit
from tests.boardkit import add_real_board, silent_server

ROOT = Path(__file__).resolve().parents[2]


def make_image(path: Path, version=fwimage.FIRMWARE_VERSION, target="nucleo-l496zg", size=6000) -> Path:
    vectors = struct.pack("<II", 0x2004F7D8, 0x0800_0201) + bytes(107 * 4 - 8)
    tag = f"ODL-FW {'.'.join(map(str, version))} {target} protocol 1".encode() + b"\0"
    body = bytes((i * 37) & 0xFF for i in range(size))
    path.write_bytes(vectors + tag + body)
    return path


@pytest.fixture()
def image(tmp_path) -> Path:
    return make_image(tmp_path / "odl.bin")


# --------------------------------------------------------------------------------------------------
# the version, the images
# --------------------------------------------------------------------------------------------------
def test_python_firmware_version_is_odl_h():
    text = (ROOT / "firmware" / "core" / "odl.h").read_text()
    got = tuple(int(re.search(rf"#define ODL_FW_{k}\s+(\d+)", text).group(1)) for k in ("MAJOR", "MINOR", "PATCH"))
    assert got == fwimage.FIRMWARE_VERSION
    from device.nucleo import emulator

    assert emulator.FW_VERSION == fwimage.FIRMWARE_VERSION  # the emulated board reports the same


def test_firmware_builds_are_the_firmware_targets_info_build_names():
    """Each firmware target's board_info_t names its build (INFO.build); FIRMWARE_BUILDS lists exactly those, so
    a round's report can tell the ODL firmware from the Python emulated board (which reports its cost profile)."""
    builds = set()
    for target in sorted(p for p in (ROOT / "firmware" / "targets").iterdir() if p.name != "common"):
        text = "".join(f.read_text() for f in sorted(target.glob("*.c")))
        found = re.findall(r'board_info_t \w+ = \{"[^"]*", "[^"]*", "([^"]*)"', text)
        assert found == [target.name], (target, found)
        builds.add(found[0])
    assert set(fwimage.FIRMWARE_BUILDS) == builds == {"nucleo-l496zg", "qemu-mps2-an386"}
    assert [fwimage.runs_odl_firmware(b) for b in ("nucleo-l496zg", "qemu-mps2-an386", "paper", "")] == [
        True,
        True,
        False,
        False,
    ]


def test_identify_reads_version_and_target(image):
    img = fwimage.identify(image)
    assert (img.version, img.target, img.protocol, img.size) == (
        fwimage.FIRMWARE_VERSION,
        "nucleo-l496zg",
        1,
        428 + 38 + 6000,
    )
    assert len(img.sha256) == 64


@pytest.mark.parametrize(
    "content, suffix, words",
    [
        (b"", ".bin", "empty"),
        (b"hello, this is a text file that is long enough", ".bin", "vector table"),
        (struct.pack("<II", 0x2004F7D8, 0x0800_0201) + bytes(600), ".bin", "not an ODL firmware"),
        (b"\x7fELF" + bytes(100), ".elf", ".elf file"),
        (bytes(1024 * 1024 + 1), ".bin", "1 MiB"),
    ],
)
def test_identify_rejects_what_is_not_an_odl_image(tmp_path, content, suffix, words):
    p = tmp_path / f"x{suffix}"
    p.write_bytes(content)
    with pytest.raises(fwimage.FirmwareImageError, match=words):
        fwimage.identify(p)


def test_identify_rejects_another_board_and_missing_files(tmp_path):
    with pytest.raises(fwimage.FirmwareImageError, match="for 'qemu-mps2-an386'"):
        fwimage.identify(make_image(tmp_path / "q.bin", target="qemu-mps2-an386"))
    with pytest.raises(fwimage.FirmwareImageError, match="cannot read"):
        fwimage.identify(tmp_path / "nope.bin")
    with pytest.raises(fwimage.FirmwareImageError, match="not a file"):
        fwimage.identify(tmp_path)


def test_shipped_image_search_order(tmp_path, monkeypatch):
    (tmp_path / "nucleo-l496zg").mkdir()
    mine = make_image(tmp_path / "nucleo-l496zg" / "odl.bin", version=(7, 8, 9))
    monkeypatch.setenv("ODL_FIRMWARE_DIR", str(tmp_path))
    assert fwimage.shipped_image().version == (7, 8, 9) and fwimage.shipped_image().path == mine
    monkeypatch.setattr(fwimage, "_REPO", tmp_path / "no-repo")
    monkeypatch.setenv("ODL_FIRMWARE_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(fwimage, "__file__", str(tmp_path / "pkg" / "fwimage.py"))
    with pytest.raises(fwimage.FirmwareImageError, match="make -C firmware nucleo"):
        fwimage.shipped_image()


def test_the_built_nucleo_image_identifies_itself():
    firmwarekit.require("arm-none-eabi-gcc", "make")
    firmwarekit.build("nucleo")
    img = fwimage.identify(firmwarekit.BUILD / "nucleo-l496zg" / "odl.bin")
    assert img.version == fwimage.FIRMWARE_VERSION and img.target == "nucleo-l496zg"


# --------------------------------------------------------------------------------------------------
# the ST-LINK drive
# --------------------------------------------------------------------------------------------------
def make_drive(root: Path, name: str = "NODE_L496ZG", fail: bool = False) -> Path:
    """Mount a drive: like a USB drive it appears with all its files at once (built aside, then renamed)."""
    d, staging = root / name, root / f".staging-{name}"
    staging.mkdir(parents=True)
    (staging / "MBED.HTM").write_text('<meta http-equiv="refresh" content="0; URL=http://mbed.org/device/?code=0721"/>')
    (staging / "DETAILS.TXT").write_text("Version: 0221\nBuild:   Jan 25 2016 16:04:22\n")
    if fail:
        (staging / "FAIL.TXT").write_text("The interface firmware FAILED to reprogram the MCU.\n")
    staging.rename(d)
    return d


class FakeStlink(threading.Thread):
    """The ST-LINK/V2-1 behind the drive: when a .bin has been written it 'programs' it (keeps its bytes),
    then the drive disappears and comes back ('ok'), comes back with FAIL.TXT ('fail'), never moves
    ('stuck'), or comes back under another mount point ('renamed')."""

    def __init__(self, root: Path, behaviour: str = "ok"):
        super().__init__(daemon=True)
        self.root, self.behaviour = root, behaviour
        self.drive = make_drive(root)
        self.programmed: bytes | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            bins = [p for p in self.drive.glob("*") if p.suffix.lower() == ".bin"] if self.drive.is_dir() else []
            if not bins:
                continue
            size = -1
            while size != bins[0].stat().st_size:  # the copy finished
                size = bins[0].stat().st_size
                time.sleep(0.05)
            self.programmed = bins[0].read_bytes()
            if self.behaviour == "stuck":
                return
            gone = self.root / ".unmounted"  # a USB drive vanishes at once, not file by file
            self.drive.rename(gone)
            shutil.rmtree(gone)
            time.sleep(0.3)
            make_drive(
                self.root, "NODE_L496ZG1" if self.behaviour == "renamed" else "NODE_L496ZG", self.behaviour == "fail"
            )
            return


@pytest.fixture()
def no_tools(tmp_path, monkeypatch):
    """Nothing on PATH: only the drive is a way to flash."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return empty


def test_find_drives_only_offers_the_l496_board(tmp_path, monkeypatch, no_tools):
    make_drive(tmp_path / "media", "NODE_F401RE")  # another NUCLEO: never flashed with this image
    (tmp_path / "media" / "NODE_L496ZG").mkdir()  # right name, but no MBED.HTM: not an ST-LINK drive
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", str(tmp_path / "media"))
    assert flashing.find_drives() == [] and flashing.find_methods() == []
    with pytest.raises(flashing.FlashSetupError, match="no way to flash"):
        flashing.flash(make_image(tmp_path / "a.bin"), verify=False)
    shutil.rmtree(tmp_path / "media" / "NODE_L496ZG")
    d = make_drive(tmp_path / "media")
    assert flashing.find_drives() == [d]
    assert [m.kind for m in flashing.find_methods()] == ["mass-storage"]


def test_mass_storage_copy_and_reenumeration(tmp_path, monkeypatch, image, no_tools):
    media = tmp_path / "media"
    stlink = FakeStlink(media)
    stlink.start()
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", str(media))
    seen = []
    report = flashing.flash(image, verify=False, progress=lambda f, t="": seen.append(f))
    stlink.join(5)
    assert report.method.kind == "mass-storage" and Path(report.method.target) == media / "NODE_L496ZG"
    assert stlink.programmed == image.read_bytes()
    assert seen[-1] == 1.0 and max(seen[:-1]) < 1.0 and len(seen) > 3
    assert "ST-LINK USB drive" in report.summary() and "not checked" in report.summary()


def test_mass_storage_follows_a_renamed_mount_point(tmp_path, monkeypatch, image, no_tools):
    media = tmp_path / "media"
    stlink = FakeStlink(media, "renamed")
    stlink.start()
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", str(media))
    report = flashing.flash(image, method="mass-storage", verify=False, drive_back_timeout=5)
    assert stlink.programmed == image.read_bytes() and report.method.kind == "mass-storage"


def test_mass_storage_fail_txt_is_reported(tmp_path, monkeypatch, image, no_tools):
    media = tmp_path / "media"
    FakeStlink(media, "fail").start()
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", str(media))
    with pytest.raises(flashing.FlashError, match="FAIL.TXT.*FAILED to reprogram"):
        flashing.flash(image, verify=False)


def test_a_drive_that_vanishes_while_it_is_listed_is_re_enumerating(tmp_path, monkeypatch, image, no_tools):
    """The drive unmounted between the look that saw it and the listing of its files: the missing .bin was taken
    for "consumed without unmounting", and the flash passed as done without waiting for the drive to come back
    (with FAIL.TXT: a failed programming reported as a success; seen on a loaded CI machine)."""
    media = tmp_path / "media"
    drive = make_drive(media)
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", str(media))
    real_has = flashing._has

    def vanishing(path, name):
        if name.lower().endswith(".bin") and (path / name.upper()).exists() and drive.is_dir():
            drive.rename(media / ".unmounted")  # unmounted right after the look that saw it
            threading.Timer(0.3, make_drive, (media, "NODE_L496ZG", True)).start()
        return real_has(path, name)

    monkeypatch.setattr(flashing, "_has", vanishing)
    with pytest.raises(flashing.FlashError, match="FAIL.TXT.*FAILED to reprogram"):
        flashing.flash(image, method="mass-storage", verify=False)


def test_mass_storage_that_never_reenumerates_is_an_error(tmp_path, monkeypatch, image, no_tools):
    media = tmp_path / "media"
    FakeStlink(media, "stuck").start()
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", str(media))
    t0 = time.monotonic()
    with pytest.raises(flashing.FlashError, match="did not re-enumerate within 1 s.*probably not programmed"):
        flashing.flash(image, method="mass-storage", verify=False, drive_gone_timeout=1)
    assert time.monotonic() - t0 < 10


def test_no_drive_for_an_explicit_mass_storage_request(tmp_path, monkeypatch, image, no_tools):
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", str(tmp_path / "nothing"))
    with pytest.raises(flashing.FlashSetupError, match="no NODE_L496ZG drive is mounted"):
        flashing.flash(image, method="mass-storage", verify=False)


# --------------------------------------------------------------------------------------------------
# the tools
# --------------------------------------------------------------------------------------------------
def fake_tool(bindir: Path, name: str, exit_code: int = 0, hang: bool = False, message: str = "") -> Path:
    """A stand-in for a flashing tool: logs its argv (JSON lines) to $FAKE_TOOL_LOG, keeps a copy of the
    .bin it was given, prints progress the way these tools do (with carriage returns)."""
    p = bindir / name
    p.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, time\n"
        "log = os.environ['FAKE_TOOL_LOG']\n"
        "with open(log, 'a') as f: f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + '\\n')\n"
        "for a in sys.argv[1:]:\n"
        "    if a.endswith('.bin'):\n"
        "        open(log + '.bin', 'wb').write(open(a, 'rb').read())\n"
        "for i in range(1, 5):\n"
        "    sys.stdout.write(f'{i}/4 pages written\\r'); sys.stdout.flush()\n"
        f"{'time.sleep(60)' if hang else ''}\n"
        f"print({message!r})\n"
        f"sys.exit({exit_code})\n"
    )
    p.chmod(0o755)
    return p


@pytest.fixture()
def tools(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "tool.log"
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setenv("FAKE_TOOL_LOG", str(log))
    monkeypatch.setenv("ODL_STLINK_DRIVE_ROOTS", str(tmp_path / "no-media"))

    def calls() -> list[list[str]]:
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

    return bindir, calls, log


def test_st_flash_command_line_and_progress(tools, image):
    bindir, calls, log = tools
    fake_tool(bindir, "st-flash")
    seen = []
    report = flashing.flash(image, verify=False, serial="066DFF555", progress=lambda f, t="": seen.append((f, t)))
    assert report.method.kind == "st-flash" and report.method.target == str(bindir / "st-flash")
    assert calls() == [["st-flash", "--serial", "066DFF555", "--reset", "write", str(image), "0x08000000"]]
    assert Path(str(log) + ".bin").read_bytes() == image.read_bytes()
    steps = [t for f, t in seen if "pages written" in t]
    assert steps == ["1/4 pages written", "2/4 pages written", "3/4 pages written", "4/4 pages written"]
    assert "st-flash" in report.summary()


def test_stm32cubeprogrammer_and_pyocd_command_lines(tools, image):
    bindir, calls, _ = tools
    fake_tool(bindir, "STM32_Programmer_CLI")
    fake_tool(bindir, "pyocd")
    flashing.flash(image, method="stm32cubeprogrammer", verify=False)
    flashing.flash(image, method="pyocd", verify=False, serial="SN1")
    assert calls() == [
        ["STM32_Programmer_CLI", "-c", "port=SWD", "-w", str(image), "0x08000000", "-v", "-rst"],
        ["pyocd", "flash", "-t", "stm32l496zgtx", "-u", "SN1", "--base-address", "0x08000000", str(image)],
    ]


def test_a_failing_tool_falls_through_to_the_next(tools, image):
    bindir, calls, _ = tools
    fake_tool(bindir, "st-flash", exit_code=1, message="ERROR: couldn't find any ST-Link devices")
    fake_tool(bindir, "STM32_Programmer_CLI")
    report = flashing.flash(image, verify=False)
    assert report.method.kind == "stm32cubeprogrammer"
    assert [c[0] for c in calls()] == ["st-flash", "STM32_Programmer_CLI"]
    assert report.failed_methods[0][0] == "st-flash" and "couldn't find any ST-Link" in report.failed_methods[0][1]
    fake_tool(bindir, "STM32_Programmer_CLI", exit_code=3, message="Error: No STM32 target found!")
    with pytest.raises(
        flashing.FlashError, match=r"st-flash failed \(exit 1\).*STM32_Programmer_CLI failed \(exit 3\)"
    ):
        flashing.flash(image, verify=False)


def test_an_asked_for_tool_that_is_not_installed(tools, image):
    with pytest.raises(flashing.FlashSetupError, match="no way to flash"):
        flashing.flash(image, method="pyocd", verify=False)
    with pytest.raises(flashing.FlashSetupError, match="unknown flashing method"):
        flashing.flash(image, method="jtag", verify=False)


def test_a_hanging_tool_is_stopped(tools, image):
    bindir, _, _ = tools
    fake_tool(bindir, "st-flash", hang=True)
    t0 = time.monotonic()
    with pytest.raises(flashing.FlashError, match="did not finish within 1 s"):
        flashing.flash(image, verify=False, tool_timeout=1)
    assert time.monotonic() - t0 < 10
    from app.core.context import Cancelled, CancelToken

    token = CancelToken()
    threading.Timer(0.5, token.cancel).start()
    with pytest.raises(Cancelled):
        flashing.flash(image, verify=False, cancel=token)


def test_force_flashes_a_file_that_is_not_an_odl_image(tools, tmp_path):
    bindir, calls, _ = tools
    fake_tool(bindir, "st-flash")
    other = tmp_path / "blinky.bin"
    other.write_bytes(struct.pack("<II", 0x20001000, 0x08000101) + bytes(400))
    with pytest.raises(flashing.FlashSetupError, match="not an ODL firmware image"):
        flashing.flash(other, verify=False)
    report = flashing.flash(other, verify=False, force=True)
    assert report.image.target == "unknown" and calls()[-1][-2] == str(other)


# --------------------------------------------------------------------------------------------------
# HELLO afterwards
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bench_board():
    from device.bench import VirtualBench

    bench = VirtualBench(board_kind="python")
    urls = bench.start()
    yield urls["board"]
    bench.stop()


@pytest.fixture()
def silent_port():
    with silent_server() as url:
        yield url


def test_hello_answers_with_the_flashed_version(tools, image, bench_board):
    bindir, _, _ = tools
    fake_tool(bindir, "st-flash")
    report = flashing.flash(image, port=bench_board)
    assert report.board_version == fwimage.FIRMWARE_VERSION and report.port == bench_board
    assert f"answers HELLO with firmware {fwimage.version_text(fwimage.FIRMWARE_VERSION)}" in report.summary()


def test_a_board_answering_another_version_did_not_take_the_image(tools, tmp_path, bench_board):
    bindir, _, _ = tools
    fake_tool(bindir, "st-flash")
    ma, mi, pa = fwimage.FIRMWARE_VERSION
    newer = make_image(tmp_path / "new.bin", version=(ma, mi, pa + 1))
    running, flashed = fwimage.version_text(fwimage.FIRMWARE_VERSION), fwimage.version_text((ma, mi, pa + 1))
    with pytest.raises(
        flashing.FlashError, match=rf"answers HELLO with firmware {running}, not the {flashed} just flashed"
    ):
        flashing.flash(newer, port=bench_board)


def test_no_hello_after_flashing_says_what_to_check(tools, image, silent_port):
    bindir, _, _ = tools
    fake_tool(bindir, "st-flash")
    with pytest.raises(flashing.FlashError) as e:
        flashing.flash(image, port=silent_port, hello_timeout=2)
    msg = str(e.value)
    assert "does not answer" in msg and silent_port in msg and "RESET" in msg and "JP5" in msg


def test_needs_firmware_rule():
    v = fwimage.FIRMWARE_VERSION
    assert "does not answer HELLO" in flashing.needs_firmware(None)
    assert "older" in flashing.needs_firmware((v[0], v[1], v[2] - 1) if v[2] else (v[0] - 1, 9, 9))
    assert flashing.needs_firmware(v) is None and flashing.needs_firmware((v[0] + 1, 0, 0)) is None


# --------------------------------------------------------------------------------------------------
# the device manager: "needs the ODL firmware", flashing a managed board
# --------------------------------------------------------------------------------------------------
def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_board_without_hello_is_shown_as_needing_the_firmware(silent_port):
    from app.core.devices import DeviceManager, DeviceState

    dm = DeviceManager(bench=False)
    try:
        key = add_real_board(dm, silent_port)
        dm.connect(key)
        wait_for(lambda: dm.status(key).state == DeviceState.ERROR, 15)
        st = dm.status(key)
        assert "needs the ODL firmware" in st.message and "HELLO" in st.message
        assert st.details["firmware"] == "needs the ODL firmware" and st.details["needs_firmware"]
    finally:
        dm.shutdown()


def test_needing_the_firmware_is_still_shown_while_reconnecting(silent_port):
    """Auto-reconnect tries the board again and again; during each try (connecting, HELLO being asked for
    seconds) the board is still the one that needed the firmware: the reason stays in its details (the Devices
    panel's bold Flash button and details follow them) until a HELLO proves otherwise."""
    from app.core.devices import DeviceManager, DeviceState

    dm = DeviceManager(bench=False)
    try:
        key = add_real_board(dm, silent_port)
        dm.connect(key)
        wait_for(lambda: dm.status(key).state == DeviceState.ERROR, 15)
        wait_for(lambda: dm.status(key).state == DeviceState.CONNECTING, 15)  # the next try
        time.sleep(0.3)  # inside it: HELLO is being asked for (1 s per attempt, resent)
        st = dm.status(key)
        assert st.state == DeviceState.CONNECTING
        assert "does not answer HELLO" in st.details.get("needs_firmware", ""), st.details
        assert st.details["firmware"] == "needs the ODL firmware"
    finally:
        dm.shutdown()


def test_an_older_firmware_is_shown_as_needing_the_firmware(bench_board, monkeypatch):
    from app.core.devices import DeviceManager, DeviceState

    monkeypatch.setattr(flashing, "FIRMWARE_VERSION", (9, 0, 0))  # this app would expect a newer one
    dm = DeviceManager(bench=False)
    try:
        key = add_real_board(dm, bench_board)
        dm.connect(key)
        wait_for(lambda: dm.status(key).state == DeviceState.ERROR, 15)
        assert "older than 9.0.0" in dm.status(key).message
    finally:
        dm.shutdown()


def test_flash_managed_lets_go_of_the_port_and_reconnects(tools, image, bench_board):
    from app.core.devices import DeviceManager, DeviceState

    bindir, calls, _ = tools
    fake_tool(bindir, "st-flash")
    dm = DeviceManager(bench=False)
    try:
        key = add_real_board(dm, bench_board)
        dm.connect(key)
        wait_for(lambda: dm.status(key).state == DeviceState.READY)
        states = []
        report = flashing.flash_managed(dm, key, image, progress=lambda f, t="": states.append(dm.status(key).state))
        assert report.board_version == fwimage.FIRMWARE_VERSION and calls()
        assert states and all(s == DeviceState.DISCONNECTED for s in states)  # the port was free while flashing
        wait_for(lambda: dm.status(key).state == DeviceState.READY)
        with pytest.raises(flashing.FlashSetupError, match="not a real NUCLEO"):
            from app.core.devices import DeviceInfo

            info = DeviceInfo("board:virtual", "board", bench_board, "virtual", True)
            dm._sessions[info.key] = dm._make(info)  # noqa: SLF001
            flashing.flash_managed(dm, info.key, image)
    finally:
        dm.shutdown()


# --------------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------------
def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "flash", *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env=e
    )


def test_cli_list_and_bad_input(tmp_path, image):
    r = cli("--list", "--json", "--firmware", str(image), env={"ODL_STLINK_DRIVE_ROOTS": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["expected_version"] == fwimage.version_text(fwimage.FIRMWARE_VERSION)
    assert info["firmware"]["version"] == fwimage.version_text(fwimage.FIRMWARE_VERSION)
    junk = tmp_path / "junk.bin"
    junk.write_text("not firmware at all, just text")
    r = cli("--firmware", str(junk))
    assert r.returncode == 2 and "vector table" in r.stderr and "Traceback" not in r.stderr
    r = cli("--firmware", str(tmp_path / "missing.bin"), "--json")
    assert r.returncode == 2 and json.loads(r.stdout)["ok"] is False and "cannot read" in r.stderr


def test_cli_flashes_with_a_tool_and_checks_hello(tmp_path, image, bench_board):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_tool(bindir, "st-flash")
    env = {"PATH": str(bindir), "FAKE_TOOL_LOG": str(tmp_path / "log"), "ODL_STLINK_DRIVE_ROOTS": str(tmp_path)}
    r = cli("--firmware", str(image), "--port", bench_board, "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] and out["method"] == "st-flash" and out["board_version"] == out["version"]
    assert "%" in r.stderr  # progress on stderr
    fake_tool(bindir, "st-flash", exit_code=1, message="ERROR: no ST-Link")
    r = cli("--firmware", str(image), "--port", bench_board, env=env)
    assert r.returncode == 1 and "st-flash failed (exit 1)" in r.stderr and "Traceback" not in r.stderr
