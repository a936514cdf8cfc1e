"""What the user reads when a capture file cannot be written (``odlstudio power --out`` on a read-only disk,
a folder without permission, a quota that refuses the first write) or cannot be repaired (``odlstudio
repair`` of a truncated, cut or empty capture): one line naming the file and the cause, never HDF5's own
text, no half-made file left behind, and a damaged file left exactly as it was."""

from __future__ import annotations

import builtins
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from device.lpm01a.capture import Block
from device.lpm01a.recorder import Hdf5Writer, _lookup3
from tests.diskkit import python_limited, small_tmpfs

ROOT = Path(__file__).resolve().parents[2]
DEAD_PORT = "socket://127.0.0.1:1"  # never reached: the file is opened before the port
pytestmark = pytest.mark.timeout(120)


def _power_args(out: Path) -> list[str]:
    return ["power", "--port", DEAD_PORT, "--duration", "0.3", "--quiet", "--out", str(out)]


# --- power --out: the disk refuses the file ---------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".h5", ".csv"])
def test_power_out_on_a_read_only_disk_says_so_in_one_line(suffix):
    """Was: "[Errno 30] Unable to synchronously create file (unable to open file: name = …, errno = 30, error
    message = 'Read-only file system', flags = 13, o_flags = 242)"."""
    with small_tmpfs("5m") as disk:
        r = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True)
        if r.returncode:
            pytest.skip("cannot remount read-only")
        out = disk / f"cap{suffix}"
        r = subprocess.run(
            [sys.executable, "-m", "app.cli", *_power_args(out)], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert r.stderr == f"odlstudio power: --out {out}: cannot write it: read-only file system\n"
        assert r.returncode == 2 and r.stdout == ""
        assert not out.exists()


@pytest.mark.parametrize("suffix", [".h5", ".csv"])
def test_power_out_in_a_folder_without_write_permission_says_so(tmp_path, capsys, monkeypatch, suffix):
    """A folder the user may not write in (chmod 555).  Root ignores permissions: there the refusal the OS
    would give is injected where the file is created (Python's ``open`` and ``os.open``)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    out = folder / f"cap{suffix}"
    if os.geteuid() == 0:

        def refusing(opener):
            def open_(file, *args, **kwargs):
                if isinstance(file, (str, bytes, os.PathLike)) and Path(os.fsdecode(file)).parent == folder:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(file))
                return opener(file, *args, **kwargs)

            return open_

        monkeypatch.setattr(os, "open", refusing(os.open))
        monkeypatch.setattr(builtins, "open", refusing(builtins.open))
    folder.chmod(0o555)
    try:
        code = main(_power_args(out))
    finally:
        folder.chmod(0o755)
    assert capsys.readouterr().err == f"odlstudio power: --out {out}: cannot write it: permission denied\n"
    assert code == 2
    assert not out.exists()


# A quota (or a disk that refuses writes) the free-space check cannot see: the file-size limit stands in for
# it (tests/diskkit.py), with room_left reporting plenty of room.
_REFUSED = r"""
import sys
import device.lpm01a.recorder as recorder
recorder.room_left = lambda path: 1 << 40
from app.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("suffix, limit", [(".h5", 0), (".h5", 100), (".h5", 5000), (".csv", 0), (".csv", 50)])
def test_power_out_whose_first_write_is_refused_leaves_no_file(tmp_path, suffix, limit):
    """Was (.h5): "unexpected error: RuntimeError: Unable to start swmr writing (file write failed: …)", HDF5
    tracebacks, then a segmentation fault (exit 139), and a half-made file of 48 or 5000 bytes left behind;
    (.csv) "[Errno 27] File too large" and a file of the header's first bytes."""
    out = tmp_path / f"cap{suffix}"
    r = python_limited(_REFUSED, limit, *_power_args(out))
    assert r.stderr == f"odlstudio power: --out {out}: cannot write it: file too large\n"
    assert r.returncode == 2 and r.stdout == ""
    assert not out.exists()


@pytest.mark.parametrize("suffix", [".h5", ".csv"])
def test_power_out_in_a_missing_folder_or_onto_a_folder(tmp_path, capsys, suffix):
    out = tmp_path / "nowhere" / f"cap{suffix}"
    assert main(_power_args(out)) == 2
    assert capsys.readouterr().err == (
        f"odlstudio power: --out {out}: cannot write it: the folder {out.parent} does not exist\n"
    )
    folder = tmp_path / f"cap{suffix}"
    folder.mkdir()
    assert main(_power_args(folder)) == 2
    assert capsys.readouterr().err == f"odlstudio power: --out {folder}: cannot write it: it is a folder\n"
    assert list(folder.iterdir()) == []


# --- repair: truncated, cut or empty captures ----------------------------------------------------------------
def _capture(tmp_path: Path, name: str, flagged: bool) -> Path:
    """A capture of 20,000 samples; ``flagged``: as ``kill -9`` leaves it (write flags set)."""
    path = tmp_path / name
    live = tmp_path / f"live-{name}" if flagged else path
    w = Hdf5Writer(live, 1000.0, chunk=1024)
    w.write(Block(0, np.full(20_000, 1e-3), 1000.0))
    w.flush()
    if flagged:
        shutil.copyfile(live, path)
    w.close()
    if flagged:
        live.unlink()
    return path


def _repair(path: Path, capsys) -> tuple[int, str, str]:
    code = main(["repair", "--settle", "0", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("flagged", [False, True], ids=["finished", "killed"])
def test_repair_of_a_capture_cut_in_half_says_it_is_truncated(tmp_path, capsys, flagged):
    """Was: "still not readable after clearing its flags (Unable to synchronously open file (truncated file:
    eof = …, stored_eof = …))" with no flags to clear; a killed capture cut in half was even "repaired": grown
    back with zeros, its lost half then read as 0.0 samples."""
    path = _capture(tmp_path, "cap.h5", flagged)
    end = path.stat().st_size
    os.truncate(path, end // 2)
    before = path.read_bytes()
    code, out, err = _repair(path, capsys)
    assert err == (
        f"odlstudio repair: {path}: truncated: {end // 2:,} bytes, its HDF5 header says it ends at {end:,} bytes; "
        "repair cannot restore the missing data\n"
    )
    assert code == 2 and out == ""
    assert path.read_bytes() == before  # left exactly as it was


@pytest.mark.parametrize(
    "size, what",
    [
        (30, "{p}: truncated: 30 bytes, it ends inside its HDF5 superblock; repair cannot restore the missing data"),
        (10, "{p}: truncated: 10 bytes, it ends inside its HDF5 superblock; repair cannot restore the missing data"),
        (
            5,
            "{p}: truncated: 5 bytes, shorter than the 8-byte HDF5 signature; repair cannot restore the missing data",
        ),
        (0, "{p}: is empty (0 bytes), not an HDF5 file"),
    ],
    ids=["in_superblock", "after_signature", "in_signature", "empty"],
)
@pytest.mark.parametrize("flagged", [False, True], ids=["finished", "killed"])
def test_repair_of_a_capture_cut_short_names_what_is_missing(tmp_path, capsys, flagged, size, what):
    path = _capture(tmp_path, "cap.h5", flagged)
    os.truncate(path, size)
    code, out, err = _repair(path, capsys)
    assert err == f"odlstudio repair: {what.format(p=path)}\n"
    assert code == 2 and out == ""
    assert path.stat().st_size == size


def test_repair_of_a_short_file_of_random_bytes_is_not_hdf5(tmp_path, capsys):
    path = tmp_path / "x.h5"
    path.write_bytes(b"\x89HDX")
    assert _repair(path, capsys) == (2, "", f"odlstudio repair: {path}: not an HDF5 file\n")


def _garble_root_header(path: Path) -> None:
    """Damage the root group's object header (its address is in the version 3 superblock)."""
    data = bytearray(path.read_bytes())
    root = int.from_bytes(data[36:44], "little")
    data[root + 8 : root + 24] = b"\xff" * 16
    path.write_bytes(bytes(data))


def test_repair_says_after_clearing_its_flags_only_when_it_cleared_them(tmp_path, capsys):
    """A whole file damaged inside: "not readable as HDF5 (…)"; "after clearing its flags" only for a file
    whose flags the repair did clear."""
    plain = _capture(tmp_path, "plain.h5", flagged=False)
    _garble_root_header(plain)
    assert _repair(plain, capsys) == (
        2,
        "",
        f"odlstudio repair: {plain}: not readable as HDF5 (incorrect metadata checksum after all read attempts)\n",
    )
    killed = _capture(tmp_path, "killed.h5", flagged=True)
    _garble_root_header(killed)
    assert _repair(killed, capsys) == (
        2,
        "",
        f"odlstudio repair: {killed}: still not readable after clearing its flags "
        "(incorrect metadata checksum after all read attempts)\n",
    )


def test_repair_still_fixes_an_end_past_a_failed_last_write(tmp_path, capsys):
    """A file whose superblock records an end past the file, but whose datasets all lie before it (what a
    write that failed on a full disk leaves: the writer shrank its datasets back): still repaired."""
    path = _capture(tmp_path, "cap.h5", flagged=True)
    data = bytearray(path.read_bytes())
    size = len(data)
    data[28:36] = (size + 4096).to_bytes(8, "little")  # the end-of-file address of a version 3 superblock
    data[44:48] = _lookup3(bytes(data[:44])).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    code, out, err = _repair(path, capsys)
    assert (code, err) == (0, "")
    assert out == (
        f"{path}: write flags cleared; its end of file fixed (its last write had failed; nothing it refers to was "
        "missing); opens in any HDF5 reader (events, samples, status); /status: 20,000 positions, 0 lost, "
        "capture was interrupted\n"
    )
    from device.lpm01a.recorder import read_capture

    assert np.array_equal(read_capture(path)["samples"], np.full(20_000, 1e-3))
