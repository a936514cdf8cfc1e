"""``odlstudio repair FILE.h5 ...``: make an HDF5 capture whose writer was killed open in any reader.

A capture or recording killed mid-write (``kill -9``, a crash, power loss) keeps every sample flushed
before the kill (the writer uses HDF5's SWMR mode), but HDF5 leaves the file marked "open for write", so
plain readers — ``h5py.File(path, "r")``, HDFView, pandas, MATLAB — refuse it ("file is already open for
write (may use <h5clear file> to clear file consistency flags)").  This command clears those flags, like
``h5clear -s``, without needing the HDF5 tools; the app does the same for its own recordings at start-up.

Do not run it on a file that a running capture is still writing: a file changed in the last
``--settle`` seconds is refused unless ``--force`` is given.

Exit status: 0 every file is readable now, 2 a file is missing, not HDF5, damaged or still being written.
"""

from __future__ import annotations

import argparse
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


def repair_file(path: Path, settle_s: float = 5.0, force: bool = False) -> str:
    """Clear the flags of one file and check a plain reader opens it; returns what was done.  Raises
    ``ValueError`` with a message naming the file."""
    import h5py

    from device.lpm01a.recorder import clear_write_flags, write_flags

    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give the .h5 files in it (e.g. {path}/*.h5)")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        flags = write_flags(path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if flags is None:
        with open(path, "rb") as fh:
            is_hdf5 = fh.read(8) == b"\x89HDF\r\n\x1a\n"
        if not is_hdf5:
            raise ValueError(f"{path}: not an HDF5 file")
        return f"{path}: nothing to repair (its HDF5 format has no write flags)"
    if flags:
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
    except OSError as exc:
        raise ValueError(f"{path}: still not readable after clearing its flags ({str(exc).splitlines()[0]})") from None
    done = "write flags cleared" if flags else "was not flagged"
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
