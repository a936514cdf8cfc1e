"""The results store of a sweep: one append-only JSON-lines file, one row per computed cell (issue 18).

Rows are keyed by ``row["key"]``, a hash of every input of the cell, so a re-run skips what is there
and a killed sweep resumes where it stopped.  Writes are crash-safe without rewriting the file:

* every task's rows go out in **one** ``write`` on a descriptor opened with ``O_APPEND``, followed by
  ``fsync``: a crash (kill -9, power loss, full disk) can leave at most one torn line at the end;
* a torn last line (no final newline) is closed with a newline before the next append, so it never
  glues itself to the next row; on reading, lines that are not a JSON object with a string ``key``
  are skipped and counted (``damaged``);
* an exclusive lock (``<store>.lock``, ``flock``) stops two sweeps from writing one store at once.

Rows without a ``key`` (e.g. written by ``odlstudio loso`` before sweeps existed) are kept in the file
but never reused.  If the same key appears twice (two runs raced before locking existed, or a resume of
a file copied around), the first row wins: a finished cell is never replaced.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

__all__ = ["StoreError", "ResultStore", "read_store"]

#: Largest line read back (a row is ~1 KB; anything longer is not ours and is skipped unparsed).
MAX_LINE = 1 << 20


class StoreError(OSError):
    """A results store that cannot be read, locked or appended to; the message names the file."""


def read_store(path: str | Path) -> tuple[dict[str, dict], int, int]:
    """``(rows by key, damaged lines, rows without a key)`` of a store; a missing file is empty."""
    path = Path(path)
    rows: dict[str, dict] = {}
    damaged = keyless = 0
    if not path.exists():
        return rows, 0, 0
    if path.is_dir():
        raise StoreError(f"{path}: is a folder, expected a results file")
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise StoreError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    with fh:
        while True:
            raw = fh.readline(MAX_LINE + 1)
            if not raw:
                break
            if len(raw) > MAX_LINE:  # skip the rest of an over-long line
                while raw and not raw.endswith(b"\n"):
                    raw = fh.readline(MAX_LINE + 1)
                damaged += 1
                continue
            line = raw.strip()
            if not line:
                continue
            try:
                r = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                damaged += 1
                continue
            if not isinstance(r, dict):
                damaged += 1
                continue
            key = r.get("key")
            if key is None:
                keyless += 1
                continue
            if not isinstance(key, str) or not key:
                damaged += 1
                continue
            rows.setdefault(key, r)
    return rows, damaged, keyless


class ResultStore:
    """Append rows to a store (see the module doc).  Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, lock: bool = True):
        """``lock=False``: no lock file (``odlstudio loso``, whose concurrent runs into one folder append
        to one file per dataset and are told apart by their settings hash)."""
        self.path = Path(path)
        self._locking = bool(lock)
        self._fd: int | None = None
        self._lock_fd: int | None = None

    # --- opening ----------------------------------------------------------------------------------
    def open(self) -> "ResultStore":
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a folder, expected a results file")
        if self._locking:
            self._lock()
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._close_torn_line()
        except OSError as exc:
            self.close()
            raise StoreError(f"{self.path}: cannot append to it ({exc.strerror or exc})") from None
        return self

    def _lock(self) -> None:
        try:
            import fcntl  # noqa: PLC0415 - POSIX only
        except ImportError:  # Windows: no lock (one sweep per store is then the user's business)
            return
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"{lock}: cannot create the lock file ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = ""
            try:
                other = os.read(fd, 64).decode("ascii", "replace").strip()
            except OSError:
                pass
            os.close(fd)
            who = f" (process {other})" if other.isdigit() else ""
            raise StoreError(
                f"{self.path}: another sweep is writing this results file{who}; wait for it or use another --results"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass
        self._lock_fd = fd

    def _close_torn_line(self) -> None:
        """A crash mid-append leaves a last line without its newline: end it, so the next row is whole."""
        assert self._fd is not None  # called by open() right after it set it
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as fh:
            fh.seek(size - 1)
            last = fh.read(1)
        if last != b"\n":
            self._write_all(b"\n")

    # --- writing ----------------------------------------------------------------------------------
    def append(self, rows: Iterable[dict]) -> None:
        """Append ``rows`` (one write, then fsync).  Raises :class:`StoreError` (disk full, I/O error)."""
        data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode("utf-8")
        if not data:
            return
        if self._fd is None:
            raise StoreError(f"{self.path}: the store is not open")
        try:
            self._write_all(data)
            os.fsync(self._fd)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot append results ({exc.strerror or exc})") from None

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None  # callers check (append) or have just opened it (_close_torn_line)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def close(self) -> None:
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd is not None:
                try:
                    os.close(fd)  # closing releases the flock
                except OSError:
                    pass
                setattr(self, name, None)

    def __enter__(self) -> "ResultStore":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
