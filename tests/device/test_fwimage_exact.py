"""What the app takes for an ODL firmware image of the NUCLEO-L496ZG, exactly (device/nucleo/fwimage.py; the
``fwimage`` mutation target, benchmarks/mutation.py; docs/firmware-nucleo.md, "Flashing").

Every image is built in the test: a Cortex-M vector table (initial stack pointer, reset vector), then the
identification ``ODL-FW <maj>.<min>.<patch> <target> protocol <n>\\0`` the firmware carries after it.  Each
refusal is checked with its whole message: it is what the user reads before anything is written to the board."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from device.nucleo import fwimage
from device.nucleo.fwimage import FirmwareImage, FirmwareImageError
from tests.device.test_flashing import make_image

SP = 0x2004F7D8  # a stack top inside the L496's 320 KiB SRAM
RESET = 0x0800_0201  # a Thumb reset handler inside the image


def build(
    path: Path,
    tag: bytes | None = b"ODL-FW 1.1.0 nucleo-l496zg protocol 1\0",
    sp: int = SP,
    reset: int = RESET,
    tag_at: int = 428,
    size: int | None = 1024,
) -> Path:
    """An image: the vector table, zeros, ``tag`` at offset ``tag_at``, zeros up to ``size`` bytes (if longer)."""
    data = bytearray(struct.pack("<II", sp, reset))
    if tag is not None:
        data += bytes(tag_at - len(data)) + tag
    if size is not None:
        data += bytes(max(0, size - len(data)))
    path.write_bytes(bytes(data))
    return path


def refusal(path: Path, target: str = "nucleo-l496zg") -> str:
    with pytest.raises(FirmwareImageError) as e:
        fwimage.identify(path, target)
    return str(e.value)


# --------------------------------------------------------------------------------------------------
# what an image says about itself
# --------------------------------------------------------------------------------------------------
def test_identify_returns_version_target_protocol_size_and_digest(tmp_path):
    p = build(tmp_path / "odl.bin", b"ODL-FW 12.0.345 nucleo-l496zg protocol 7\0", size=1000)
    data = p.read_bytes()
    assert fwimage.identify(p) == FirmwareImage(
        p, (12, 0, 345), "nucleo-l496zg", 7, 1000, hashlib.sha256(data).hexdigest()
    )


def test_identify_accepts_a_str_path(tmp_path):
    p = build(tmp_path / "odl.bin")
    assert fwimage.identify(str(p)).path == p


def test_version_text_joins_with_dots():
    assert fwimage.version_text((10, 0, 7)) == "10.0.7"
    assert FirmwareImage(Path("a.bin"), (1, 2, 3), "t", 1, 8, "").version_text == "1.2.3"


def test_the_tests_image_builder_is_an_odl_image(tmp_path):
    """tests/device/test_flashing.py's make_image (used by the flashing tests) is accepted as it is."""
    img = fwimage.identify(make_image(tmp_path / "m.bin", version=(3, 4, 5)))
    assert (img.version, img.target, img.protocol, img.size) == ((3, 4, 5), "nucleo-l496zg", 1, 428 + 38 + 6000)


def test_identify_for_another_target_when_asked(tmp_path):
    p = build(tmp_path / "q.bin", b"ODL-FW 1.1.0 qemu-mps2-an386 protocol 2\0")
    img = fwimage.identify(p, "qemu-mps2-an386")
    assert (img.target, img.protocol) == ("qemu-mps2-an386", 2)


# --------------------------------------------------------------------------------------------------
# refusals: what the file is not
# --------------------------------------------------------------------------------------------------
def test_another_boards_image_is_refused(tmp_path):
    p = build(tmp_path / "q.bin", b"ODL-FW 1.1.0 qemu-mps2-an386 protocol 2\0")
    assert refusal(p) == f"{p} is ODL firmware for 'qemu-mps2-an386', not for 'nucleo-l496zg'"


def test_a_missing_file_cannot_be_read(tmp_path):
    p = tmp_path / "nope.bin"
    assert refusal(p) == f"cannot read the firmware file {p}: No such file or directory"


def test_an_unreadable_file_says_why(tmp_path):
    """A symlink loop: stat fails with ELOOP (a chmod 000 file would still be readable by root)."""
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.symlink_to(b)
    b.symlink_to(a)
    assert refusal(a) == f"cannot read the firmware file {a}: Too many levels of symbolic links"


def test_an_oserror_without_strerror_shows_itself(tmp_path, monkeypatch):
    p = build(tmp_path / "odl.bin")

    def broken(self):
        raise OSError("the USB stick went away")

    monkeypatch.setattr(Path, "read_bytes", broken)
    assert refusal(p) == f"cannot read the firmware file {p}: the USB stick went away"


def test_a_directory_is_not_a_file(tmp_path):
    d = tmp_path / "odl.bin"
    d.mkdir()
    assert refusal(d) == f"{d} is not a file"


def test_more_than_the_flash_is_refused_and_exactly_the_flash_is_not(tmp_path):
    big = build(tmp_path / "big.bin", size=1024 * 1024 + 1)
    assert refusal(big) == f"{big} has 1,048,577 bytes: more than the 1 MiB flash of the STM32L496"
    full = build(tmp_path / "full.bin", size=1024 * 1024)
    assert fwimage.identify(full).size == 1_048_576


@pytest.mark.parametrize("name", ["odl.elf", "odl.hex", "ODL.ELF", "odl.Hex"])
def test_elf_and_hex_files_are_refused_even_with_an_odl_inside(tmp_path, name):
    p = build(tmp_path / name)
    suffix = Path(name).suffix
    assert refusal(p) == f"{p} is an {suffix} file: flash the raw binary (.bin) built next to it"


def test_empty_and_truncated_files(tmp_path):
    empty = tmp_path / "e.bin"
    empty.write_bytes(b"")
    assert refusal(empty) == f"{empty} is empty or truncated (0 bytes)"
    seven = tmp_path / "s.bin"
    seven.write_bytes(struct.pack("<II", SP, RESET)[:7])
    assert refusal(seven) == f"{seven} is empty or truncated (7 bytes)"


def test_eight_bytes_are_a_vector_table_without_identification(tmp_path):
    p = build(tmp_path / "v.bin", tag=None, reset=0x0800_0001, size=None)
    assert refusal(p) == (
        f"{p} is not an ODL firmware image (no 'ODL-FW' identification after its vector table); "
        "use the image the app ships, or one built with `make -C firmware nucleo`"
    )


def test_a_text_file_is_not_a_vector_table(tmp_path):
    p = tmp_path / "notes.bin"
    p.write_bytes(b"hello, this is a text file")
    assert refusal(p) == (
        f"{p} does not start with an STM32 vector table for 0x0800_0000 (stack 0x6C6C6568, reset 0x74202C6F): "
        "not a firmware binary for this board"
    )


def test_an_erased_flash_dump_shows_its_words_unsigned(tmp_path):
    """A read-back of erased flash (all 0xFF): the message shows the words as the board would read them."""
    p = tmp_path / "erased.bin"
    p.write_bytes(b"\xff" * 2048)
    assert refusal(p) == (
        f"{p} does not start with an STM32 vector table for 0x0800_0000 (stack 0xFFFFFFFF, reset 0xFFFFFFFF): "
        "not a firmware binary for this board"
    )


@pytest.mark.parametrize(
    "sp, ok",
    [
        (0x2000_0000, False),  # the SRAM's first byte: a stack top must be above it
        (0x2000_0004, True),
        (0x2005_0000, True),  # the end of the 320 KiB SRAM (a full descending stack starts there)
        (0x2005_0004, False),
        (0x2004_F7D9, False),  # not word aligned
        (0x2004_F7DA, False),  # half-word aligned only
        (0x1000_0400, False),  # SRAM2's alias: not where this firmware puts its stack
    ],
)
def test_the_initial_stack_pointer_must_be_a_word_in_sram(tmp_path, sp, ok):
    p = build(tmp_path / "odl.bin", sp=sp)
    if ok:
        assert fwimage.identify(p).version == (1, 1, 0)
    else:
        assert f"(stack 0x{sp:08X}, reset 0x08000201)" in refusal(p)


@pytest.mark.parametrize(
    "reset, ok",
    [
        (0x0800_0001, True),  # the image's first half-word, Thumb bit set
        (0x07FF_FFFF, False),  # below the flash
        (0x0800_0200, False),  # Thumb bit clear
        (0x0800_03E7, True),  # the last odd address inside the 1000-byte image
        (0x0800_03E9, False),  # just past it
    ],
)
def test_the_reset_vector_must_point_into_the_image_in_thumb_mode(tmp_path, reset, ok):
    p = build(tmp_path / "odl.bin", reset=reset, size=1000)
    if ok:
        assert fwimage.identify(p).size == 1000
    else:
        assert f"(stack 0x2004F7D8, reset 0x{reset:08X})" in refusal(p)


def test_the_reset_vector_may_not_point_at_the_end_of_the_image(tmp_path):
    """An odd-sized image whose reset vector is FLASH_BASE + size: one byte past the image."""
    p = build(tmp_path / "odl.bin", reset=0x0800_03E9, size=1001)
    assert "(stack 0x2004F7D8, reset 0x080003E9)" in refusal(p)
    q = build(tmp_path / "odl2.bin", reset=0x0800_03E7, size=1001)
    assert fwimage.identify(q).size == 1001


def test_the_identification_must_be_within_the_first_64_kib(tmp_path):
    tag = b"ODL-FW 1.1.0 nucleo-l496zg protocol 1\0"
    last = build(tmp_path / "in.bin", tag=tag, tag_at=64 * 1024 - len(tag), size=80 * 1024)
    assert fwimage.identify(last).version == (1, 1, 0)
    late = build(tmp_path / "late.bin", tag=tag, tag_at=64 * 1024 - len(tag) + 1, size=80 * 1024)
    assert "is not an ODL firmware image" in refusal(late)


# --------------------------------------------------------------------------------------------------
# where the shipped image is looked for
# --------------------------------------------------------------------------------------------------
@pytest.fixture()
def nowhere(tmp_path, monkeypatch):
    """The checkout and the package folder moved into tmp_path (empty); no $ODL_FIRMWARE_DIR."""
    monkeypatch.setattr(fwimage, "_REPO", tmp_path / "repo")
    monkeypatch.setattr(fwimage, "__file__", str(tmp_path / "pkg" / "fwimage.py"))
    monkeypatch.delenv("ODL_FIRMWARE_DIR", raising=False)
    return tmp_path


def test_search_dirs_without_the_environment_variable(nowhere):
    assert fwimage.image_search_dirs() == [nowhere / "repo" / "firmware" / "build", nowhere / "pkg" / "firmware"]


def test_search_dirs_with_the_environment_variable_first(nowhere, monkeypatch):
    monkeypatch.setenv("ODL_FIRMWARE_DIR", str(nowhere / "mine"))
    assert fwimage.image_search_dirs() == [
        nowhere / "mine",
        nowhere / "repo" / "firmware" / "build",
        nowhere / "pkg" / "firmware",
    ]


def test_an_empty_environment_variable_is_ignored(nowhere, monkeypatch):
    monkeypatch.setenv("ODL_FIRMWARE_DIR", "")
    assert fwimage.image_search_dirs() == [nowhere / "repo" / "firmware" / "build", nowhere / "pkg" / "firmware"]


def test_no_shipped_image_says_where_it_looked_and_how_to_build_one(nowhere, monkeypatch):
    monkeypatch.setenv("ODL_FIRMWARE_DIR", str(nowhere / "mine"))
    (nowhere / "mine" / "nucleo-l496zg" / "odl.bin").mkdir(parents=True)  # a folder, not an image: skipped
    with pytest.raises(FirmwareImageError) as e:
        fwimage.shipped_image()
    looked = ", ".join(
        str(d / "nucleo-l496zg" / "odl.bin")
        for d in (nowhere / "mine", nowhere / "repo" / "firmware" / "build", nowhere / "pkg" / "firmware")
    )
    assert str(e.value) == (
        f"no built ODL firmware for nucleo-l496zg (looked in {looked}): the packaged app ships one; from a "
        "checkout build it with `make -C firmware nucleo` (needs gcc-arm-none-eabi), or pass --firmware FILE"
    )


def test_the_first_folder_with_an_image_wins(nowhere, monkeypatch):
    monkeypatch.setenv("ODL_FIRMWARE_DIR", str(nowhere / "mine"))
    (nowhere / "repo" / "firmware" / "build" / "nucleo-l496zg").mkdir(parents=True)
    (nowhere / "pkg" / "firmware" / "nucleo-l496zg").mkdir(parents=True)
    build_img = make_image(nowhere / "repo" / "firmware" / "build" / "nucleo-l496zg" / "odl.bin", version=(2, 0, 0))
    make_image(nowhere / "pkg" / "firmware" / "nucleo-l496zg" / "odl.bin", version=(3, 0, 0))
    img = fwimage.shipped_image()
    assert (img.path, img.version) == (build_img, (2, 0, 0))


def test_the_shipped_image_of_another_target(nowhere):
    (nowhere / "pkg" / "firmware" / "qemu-mps2-an386").mkdir(parents=True)
    p = build(
        nowhere / "pkg" / "firmware" / "qemu-mps2-an386" / "odl.bin", b"ODL-FW 1.0.0 qemu-mps2-an386 protocol 1\0"
    )
    img = fwimage.shipped_image("qemu-mps2-an386")
    assert (img.path, img.target) == (p, "qemu-mps2-an386")
    with pytest.raises(FirmwareImageError, match="no built ODL firmware for nucleo-l496zg"):
        fwimage.shipped_image()


def test_a_shipped_image_of_the_wrong_board_is_refused(nowhere):
    (nowhere / "pkg" / "firmware" / "nucleo-l496zg").mkdir(parents=True)
    p = build(nowhere / "pkg" / "firmware" / "nucleo-l496zg" / "odl.bin", b"ODL-FW 1.0.0 nucleo-f401re protocol 1\0")
    with pytest.raises(FirmwareImageError) as e:
        fwimage.shipped_image()
    assert str(e.value) == f"{p} is ODL firmware for 'nucleo-f401re', not for 'nucleo-l496zg'"


def test_runs_odl_firmware_only_for_the_firmware_targets_build_names():
    """The builds the firmware's targets report in INFO; the Python emulated board reports its cost profile."""
    assert fwimage.FIRMWARE_BUILDS == ("nucleo-l496zg", "qemu-mps2-an386")
    assert fwimage.runs_odl_firmware("nucleo-l496zg") is True
    assert fwimage.runs_odl_firmware("qemu-mps2-an386") is True
    for other in ("odl-firmware", "paper", "", "nucleo-l496z", "NUCLEO-L496ZG"):
        assert fwimage.runs_odl_firmware(other) is False, other
