#!/usr/bin/env python3
"""Flash and RAM use of firmware ELF files, from the linker map (`make size` prints it after every build).

    python3 tools/size_report.py build/*/odl.elf

Flash = code + read-only data + the initial values of .data; RAM = .data + .bss + .noinit + stack, with the
training arena (odl_arena) shown apart: it is one static block sized at build time, and what it holds
(model, datasets, the round's buffers) is planned at run time (docs/firmware.md, "Memory plan").
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

FLASH = (".text", ".ARM.exidx", ".rodata")
RAM = (".data", ".bss", ".noinit", ".stack")


def sections(map_text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in re.finditer(r"^(\.[\w.]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)", map_text, re.M):
        name, size = m.group(1), int(m.group(3), 16)
        if name in FLASH + RAM:
            out[name] = out.get(name, 0) + size
    return out


def arena(map_text: str) -> int:
    m = re.search(r"^\s*\.bss\.odl_arena\s*\n?\s*0x[0-9a-f]+\s+0x([0-9a-f]+)", map_text, re.M)
    return int(m.group(1), 16) if m else 0


def main(argv: list[str]) -> int:
    if not argv:
        print("size_report.py: no ELF files (build a target first)", file=sys.stderr)
        return 0
    print(f"{'target':<22} {'flash':>10} {'RAM':>10} {'of which arena':>15} {'static+stack':>13}")
    for elf in argv:
        p = Path(elf)
        mp = p.with_suffix(".map")
        if not mp.is_file():
            print(f"{p.parent.name:<22} (no map file {mp})")
            continue
        text = mp.read_text(errors="replace")
        s = sections(text)
        flash = sum(s.get(k, 0) for k in FLASH) + s.get(".data", 0)
        ram = sum(s.get(k, 0) for k in RAM)
        a = arena(text)
        print(f"{p.parent.name:<22} {flash:>10,} {ram:>10,} {a:>15,} {ram - a:>13,}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
