"""Output paths checked before the work starts, and a place to rescue results when writing fails at the end
(issue 13 item 3; Qt-free).

``personalize --out`` and ``pretrain --out`` used to train for minutes and only then find a read-only
folder, a full disk, an existing file where a folder was wanted (or the reverse): the results were lost.
:func:`check_output_file` / :func:`check_output_dir` say so before anything runs (naming the option);
:func:`rescue_dir` gives a fresh folder in the system's temporary directory for results that could not be
written where asked, so the command can say where they are.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

from device.lpm01a.recorder import room_left

__all__ = ["OutputError", "atomic_path", "failure_reason", "check_output_file", "check_output_dir", "rescue_dir"]

#: Room an output needs at least (models and reports are small; this catches a full disk up front).
MIN_ROOM = 16 * 1024 * 1024


class OutputError(ValueError):
    """An output path that cannot be written; the message names the option and the path."""


def _probe(folder: Path, option: str, path: Path) -> None:
    """Create and remove a file in ``folder`` (the only reliable test of writability), check the room."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".odl-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{option} {path}: cannot write in {folder} ({exc.strerror or exc})") from None
    room = room_left(folder / "x")
    if room < MIN_ROOM:
        raise OutputError(f"{option} {path}: the disk is full (only {room / 1e6:.1f} MB free in {folder})")


def check_output_file(path: str | Path, option: str = "--out", suffixes: tuple[str, ...] = ()) -> Path:
    """A file to be written: its folder must exist and be writable with room left, the path must not be
    a folder.  An existing file is replaced (atomically, by the writers)."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputError(f"{option} must end with {' or '.join(suffixes)}, got {str(path)!r}")
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a folder, expected a file name")
    folder = path.parent  # (Path("m.npz").parent is Path("."))
    if not folder.is_dir():
        raise OutputError(f"{option} {path}: the folder {folder} does not exist")
    _probe(folder, option, path)
    return path


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """A folder to write into: created if missing (its parent must exist), never an existing file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path}: is an existing file, expected a folder")
    if not path.exists():
        if not path.parent.is_dir():
            raise OutputError(f"{option} {path}: the folder {path.parent} does not exist")
        try:
            path.mkdir()
        except OSError as exc:
            raise OutputError(f"{option} {path}: cannot create it ({exc.strerror or exc})") from None
    _probe(path, option, path)
    return path


def rescue_dir(what: str) -> Path:
    """A new folder for results that could not be written where asked (system temp dir, or home)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for base in (Path(tempfile.gettempdir()), Path.home()):
        try:
            return Path(tempfile.mkdtemp(prefix=f"odlstudio-{what}-{stamp}-", dir=base))
        except OSError:
            continue
    raise OutputError("no folder could be created to keep the results (temporary folder and home both failed)")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix: Keras and numpy choose the format by it) that
    replaces ``path`` with ``os.replace`` only when the ``with`` body finished: an export interrupted by
    an error, a full disk or a crash never leaves a half-written file, and the old file, if any, stays.
    Every export the user names a file for writes through it (models, labelled data, CSV)."""
    p = Path(path)
    tmp = p.with_name(f".{p.stem}.tmp{os.getpid()}-{threading.get_ident()}{p.suffix}")
    try:
        yield tmp
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)


def failure_reason(exc: BaseException) -> str:
    """Why a write failed, for a status line: an ``OSError`` in the system's words ("No space left on
    device"), without the errno and the temporary file's name it carries; any other error's own message."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def write_failure(path: str | Path, exc: BaseException) -> str:
    """Why writing ``path`` (whole, through a temporary file beside it: :func:`atomic_path`) failed, naming the
    file: "cannot write /x/w.npz: Read-only file system", "… the folder /x does not exist", "… it is a folder".
    An ``OSError`` about another file (an input read on the way) names that file; any other error is its own
    message (:func:`failure_reason`)."""
    import errno

    if not isinstance(exc, OSError):
        return failure_reason(exc)
    target = Path(path)
    other = Path(os.fsdecode(exc.filename)) if exc.filename is not None else None
    if other is not None and other != target and other.parent != target.parent:
        return f"cannot read {other}: {failure_reason(exc)}"
    if exc.errno == errno.ENOENT and not target.parent.is_dir():
        return f"cannot write {target}: the folder {target.parent} does not exist"
    if exc.errno == errno.EISDIR or target.is_dir():
        return f"cannot write {target}: it is a folder"
    return f"cannot write {target}: {failure_reason(exc)}"
