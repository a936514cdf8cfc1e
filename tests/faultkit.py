"""Byte-noise faults shared by the device fault matrices (tests/device/test_faults_*.py): name -> switch settings
of a :class:`device.emulated.ByteFaults`; and an independent NUCLEO frame decoder to check what the
host's decoder accepted (tests/device/test_faults_nucleo.py, tests/device/test_fuzz_parsers.py)."""

from __future__ import annotations

from device.nucleo import protocol as P

BYTE_FAULTS: dict[str, dict[str, float | int]] = {
    "corrupt_1e-4": {"corrupt_rate": 1e-4},
    "corrupt_1e-2": {"corrupt_rate": 1e-2},
    "drop_1e-3": {"drop_rate": 1e-3},
    "nul_bursts": {"nul_burst_rate": 1e-3, "nul_burst_len": 16},
}


def apply_byte_fault(faults, name: str) -> bool:
    """Set the switches of byte fault ``name`` on ``faults``; False if ``name`` is not a byte fault."""
    settings = BYTE_FAULTS.get(name)
    for key, value in (settings or {}).items():
        setattr(faults, key, value)
    return settings is not None


def crc16_bitwise(data: bytes) -> int:
    """CRC-16/CCITT-FALSE bit by bit, independent of device.nucleo.crc's table."""
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def reference_frames(wire: bytes) -> list[P.Frame]:
    """The frames a receiver must return for ``wire`` (docs/protocol.md §1), decoded independently of
    FrameDecoder/cobs/crc: split at 00, drop runs longer than MAX_WIRE, COBS-decode by the definition,
    keep bodies of >= 7 bytes whose len field fits and whose CRC-16 (bit by bit) matches."""
    out = []
    for seg in wire.split(b"\x00"):
        if not seg or len(seg) > P.MAX_WIRE:
            continue
        body, i, ok = bytearray(), 0, True
        while i < len(seg):
            code = seg[i]
            if i + code > len(seg):
                ok = False
                break
            body += seg[i + 1 : i + code]
            i += code
            if code != 0xFF and i < len(seg):
                body.append(0)
        if not ok or len(body) < 7:
            continue
        n = body[3] | body[4] << 8
        if n + 7 != len(body) or body[-2] | body[-1] << 8 != crc16_bitwise(bytes(body[:-2])):
            continue
        out.append(P.Frame(body[0], body[1] | body[2] << 8, bytes(body[5:-2])))
    return out
