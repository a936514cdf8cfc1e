"""Refuse zip bombs before extracting anything (issue 13 item 6; Qt-free).

``.keras`` models, ``.npz`` models and datasets are zip archives.  A small file may declare members of
gigabytes (a 1.5 MB ``.keras`` whose weights declare 1.5 GiB took 3.5 GB of RAM; a 1.1 MB one with a 1 GiB
``config.json`` loaded after 2.5 GB).  :func:`check_zip` reads only the central directory and refuses an
archive whose declared sizes exceed a limit or expand too much for the file's size.  The limits bound
memory because Python's :mod:`zipfile` never yields more than a member's declared size.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

__all__ = ["ZipLimits", "check_zip", "ZipRefused", "MODEL_LIMITS", "DATA_LIMITS"]

MiB = 1 << 20


class ZipRefused(ValueError):
    """The archive declares more than the limits allow (the message names the file and the member)."""


class ZipLimits:
    """``total``: declared bytes of all members; ``ratio``: declared total ÷ file size (beyond
    ``ratio_floor`` bytes, below which anything goes); ``members``: per-name caps; ``count``: members."""

    def __init__(self, total: int, ratio: float, ratio_floor: int, members: dict[str, int] | None = None, count=1000):
        self.total, self.ratio, self.ratio_floor = int(total), float(ratio), int(ratio_floor)
        self.members = dict(members or {})
        self.count = int(count)


#: Models (.keras, .npz): a HAR CNN is well under a megabyte; ST's model zoo too.
MODEL_LIMITS = ZipLimits(
    total=256 * MiB, ratio=100.0, ratio_floor=16 * MiB, members={"config.json": 16 * MiB, "metadata.json": MiB}
)
#: Data sets (.npz): HAPT is 31 MB in 13 MB; its label columns compress 800x, but are small.
DATA_LIMITS = ZipLimits(total=4096 * MiB, ratio=200.0, ratio_floor=64 * MiB, count=10_000)


def check_zip(path: str | Path, limits: ZipLimits, what: str = "archive") -> list[zipfile.ZipInfo]:
    """The members of the zip at ``path`` after checking their declared sizes against ``limits``; raises
    :class:`ZipRefused` (or ``zipfile.BadZipFile``/``OSError`` for a file that is not a readable zip)."""
    path = Path(path)
    size = path.stat().st_size
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    if len(infos) > limits.count:
        raise ZipRefused(f"{path}: {what} has {len(infos):,} members (at most {limits.count:,} allowed)")
    total = 0
    for info in infos:
        cap = limits.members.get(info.filename)
        if cap is not None and info.file_size > cap:
            raise ZipRefused(
                f"{path}: {what} member {info.filename!r} declares {_size(info.file_size)} "
                f"(at most {_size(cap)} allowed): refused before extracting anything"
            )
        total += info.file_size
    if total > limits.total:
        raise ZipRefused(
            f"{path}: {what} declares {_size(total)} once extracted (at most {_size(limits.total)} allowed): "
            "refused before extracting anything"
        )
    if total > limits.ratio_floor and total > limits.ratio * max(1, size):
        raise ZipRefused(
            f"{path}: {what} of {_size(size)} declares {_size(total)} once extracted ({total / max(1, size):,.0f}x; "
            f"at most {limits.ratio:g}x allowed): looks like a zip bomb, refused before extracting anything"
        )
    return infos


def _size(n: int) -> str:
    for unit, k in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1024)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} bytes"
