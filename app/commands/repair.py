"""``odlstudio repair FILE.h5 ...``: make an HDF5 capture whose writer was killed open in any reader.

A capture or recording killed mid-write (``kill -9``, a crash, power loss) keeps every sample flushed
before the kill (the writer uses HDF5's SWMR mode), but HDF5 leaves the file marked "open for write", so
plain readers — ``h5py.File(path, "r")``, HDFView, pandas, MATLAB — refuse it ("file is already open for
write (may use <h5clear file> to clear file consistency flags)").  This command clears those flags, like
``h5clear -s``, without needing the HDF5 tools; the app does the same for its own recordings at start-up.

Do not run it on a file that a running capture is still writing: a file changed in the last
``--settle`` seconds is refused unless ``--force`` is given.

Exit status: 0 every file is readable now, 2 a file is missing, not HDF5, truncated, damaged or still being written.
A truncated file (its superblock records an end past the file's end and something it refers to lies there) is
named and left as it is: no repair can bring back the missing bytes.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from app.commands._argtypes import nonneg


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "repair",
        help="clear the 'open for write' flags a killed capture leaves, so any HDF5 reader opens it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="HDF5 capture or recording (.h5)")
    p.add_argument(
        "--settle", type=nonneg, default=5.0, help="refuse files changed less than this many seconds ago (default 5)"
    )
    p.add_argument("--force", action="store_true", help="repair even a file that changed just now")
    p.set_defaults(func=run)


_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _reason(exc: BaseException) -> str:
    """The first line of an HDF5 error without h5py's 'Unable to ... (…)' wrapper."""
    line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    inner = re.match(r"Unable to [^(]*\((.*)\)$", line)
    return inner.group(1) if inner else line


def repair_file(path: Path, settle_s: float = 5.0, force: bool = False) -> str:
    """Clear the flags of one file and check a plain reader opens it; returns what was done.  Raises
    ``ValueError`` with a message naming the file (and saying what is wrong: truncated, not HDF5, flags
    cleared but still unreadable)."""
    import h5py

    from device.lpm01a.recorder import Truncated, check_not_cut_short, clear_write_flags, recorded_end, write_flags

    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give the .h5 files in it (e.g. {path}/*.h5)")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(12)
        flags = write_flags(path)
        found = recorded_end(path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if size == 0:
        raise ValueError(f"{path}: is empty (0 bytes), not an HDF5 file")
    if len(head) < len(_SIGNATURE) and _SIGNATURE.startswith(head):
        raise Truncated(path, size, f"shorter than the {len(_SIGNATURE)}-byte HDF5 signature")
    if head[:8] == _SIGNATURE and (len(head) < 12 or (found is not None and found[1] < 0)):
        raise Truncated(path, size, "it ends inside its HDF5 superblock")
    short = found is not None and found[1] > size
    if flags is None:
        if head[:8] != _SIGNATURE:
            raise ValueError(f"{path}: not an HDF5 file")
        try:
            h5py.File(path, "r").close()
        except Exception as exc:  # noqa: BLE001 - any HDF5 error: the file is damaged
            raise ValueError(f"{path}: not readable as HDF5 ({_reason(exc)})") from None
        return f"{path}: nothing to repair (its HDF5 format has no write flags)"
    if short:
        try:
            check_not_cut_short(path)
        except (OSError, ValueError) as exc:  # Truncated names the sizes; a damaged superblock says so
            raise ValueError(str(exc)) from None
    if flags or short:
        age = time.time() - path.stat().st_mtime
        if age < settle_s and not force:
            raise ValueError(
                f"{path}: changed {age:.1f} s ago, a capture may still be writing it; "
                "wait until it has ended (or pass --force)"
            )
        try:
            clear_write_flags(path)
        except (OSError, ValueError) as exc:
            raise ValueError(str(exc)) from None
    try:
        with h5py.File(path, "r") as f:
            names = ", ".join(sorted(f.keys()))
            info = ""
            if "status" in f and f["status"].shape == (4,):
                st = f["status"][()]
                state = {0: "was interrupted", 1: "finished", 2: "stopped early (disk full)"}.get(int(st[3]), "?")
                info = f"; /status: {int(st[2]):,} positions, {int(st[1]):,} lost, capture {state}"
    except Exception as exc:  # noqa: BLE001 - any HDF5 error: the file is damaged
        if flags:
            raise ValueError(f"{path}: still not readable after clearing its flags ({_reason(exc)})") from None
        raise ValueError(f"{path}: not readable as HDF5 ({_reason(exc)})") from None
    done = "write flags cleared" if flags else "was not flagged"
    if short:
        done += "; its end of file fixed (its last write had failed; nothing it refers to was missing)"
    return f"{path}: {done}; opens in any HDF5 reader ({names}){info}"


def run(args: argparse.Namespace) -> int:
    code = 0
    for name in args.files:
        try:
            print(repair_file(Path(name), args.settle, args.force))
        except ValueError as exc:
            print(f"odlstudio repair: {exc}", file=sys.stderr)
            code = 2
    return code
