#!/usr/bin/env python3
"""Flash and RAM use of firmware ELF files, from the linker map (`make size` prints it after every build).

    python3 tools/size_report.py build/*/odl.elf

Flash = code + read-only data + the initial values of .data; RAM = .data + .bss + .noinit + stack, with the
training arena (odl_arena) shown apart: it is one static block sized at build time, and what it holds
(model, datasets, the round's buffers) is planned at run time (docs/firmware.md, "Memory plan").

Then, per target, what every Table III configuration (paper CNN, T = 20..100, TL and Full) needs in that
arena -- the model blob plus the round's plan, `estimator.memory.firmware_round_bytes`, which is the
firmware's own ROUND_INFO mem_bytes (tests/estimator/test_estimator_firmware_memory.py) -- and what is left for the
user's stored windows.  The exit status is 1 if one of them does not fit.
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


def table_iii(arena_bytes: int) -> tuple[list[str], bool]:
    """Lines of the Table III fit report for one arena size, and whether everything fits."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: estimator/
    try:
        from estimator.arch import paper_cnn
        from estimator.memory import firmware_round_bytes
    except ImportError as e:  # numpy missing: the build itself does not need it
        return [f"  (Table III fit not reported: {e})"], True
    lines, ok = [f"  {'T':>4} {'mode':<5} {'round needs':>12} {'left for windows':>17} {'windows of T':>13}"], True
    for mode in ("tl", "full"):
        for T in (20, 40, 60, 80, 100):
            need = firmware_round_bytes(paper_cnn(T), mode)
            left = arena_bytes - need
            ok &= left >= 0
            # a stored window: T x 3 int16 + its label byte (docs/protocol.md 5.3)
            lines.append(f"  {T:>4} {mode:<5} {need:>12,} {left:>17,} {max(left, 0) // (T * 6 + 1):>13,}")
    return lines, ok


def main(argv: list[str]) -> int:
    if not argv:
        print("size_report.py: no ELF files (build a target first)", file=sys.stderr)
        return 0
    print(f"{'target':<22} {'flash':>10} {'RAM':>10} {'of which arena':>15} {'static+stack':>13}")
    reports: list[tuple[str, int]] = []
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
        reports.append((p.parent.name, a))
    status = 0
    for name, a in reports:
        if not a:
            continue
        lines, ok = table_iii(a)
        print(f"{name}: Table III rounds in the {a:,}-byte arena ({'all fit' if ok else 'NOT ALL FIT'})")
        print("\n".join(lines))
        status |= 0 if ok else 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
