"""The symbols of a 32-bit little-endian ELF file (the ODL firmware): enough to find the address range
of the simulation-only code and of the kernels, without binutils on the user's machine."""

from __future__ import annotations

import struct
from pathlib import Path

__all__ = ["ElfError", "symbols"]


class ElfError(ValueError):
    """Not a readable 32-bit little-endian ELF file; the message names the file."""


def symbols(path: str | Path) -> dict[str, tuple[int, int]]:
    """``{name: (address, size)}`` of the ELF's symbol table (Thumb bit cleared from function addresses)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ElfError(f"{p}: cannot read the firmware ELF ({exc.strerror or exc})") from None
    if data[:4] != b"\x7fELF" or len(data) < 52 or data[4] != 1 or data[5] != 1:
        raise ElfError(f"{p}: not a 32-bit little-endian ELF file")
    try:
        (e_shoff,) = struct.unpack_from("<I", data, 32)
        e_shentsize, e_shnum = struct.unpack_from("<HH", data, 46)
        sections = [struct.unpack_from("<IIIIIIIIII", data, e_shoff + i * e_shentsize) for i in range(e_shnum)]
        out: dict[str, tuple[int, int]] = {}
        for sh in sections:
            if sh[1] != 2:  # SHT_SYMTAB
                continue
            off, size, link, entsize = sh[4], sh[5], sh[6], sh[9] or 16
            stroff = sections[link][4]
            for k in range(size // entsize):
                name_i, value, sz, info, _, _ = struct.unpack_from("<IIIBBH", data, off + k * entsize)
                if not name_i:
                    continue
                end = data.index(b"\x00", stroff + name_i)
                name = data[stroff + name_i : end].decode("ascii", "replace")
                if info & 0xF == 2:  # STT_FUNC: Thumb addresses carry bit 0
                    value &= ~1
                out[name] = (value, sz)
        return out
    except (struct.error, IndexError, ValueError) as exc:
        raise ElfError(f"{p}: damaged ELF symbol table ({exc})") from None
