"""Checksums of NUCLEO wire protocol v1.

* Frames carry **CRC-16/CCITT-FALSE** (a.k.a. CRC-16/IBM-3740): width 16, polynomial 0x1021, initial
  value 0xFFFF, no input/output reflection, final XOR 0x0000.  Check value: ``crc16(b"123456789") ==
  0x29B1``.  It is what ``HAL_CRC`` computes on an STM32 CRC unit configured for 16-bit polynomial
  0x1021, init 0xFFFF, no reversal — firmware can use the hardware unit or the 256-entry table below.
* Whole blobs (model, dataset, downloaded weights) carry **CRC-32/ISO-HDLC** (the zlib / Ethernet CRC:
  polynomial 0x04C11DB7 reflected, init 0xFFFFFFFF, final XOR 0xFFFFFFFF).  Check value:
  ``crc32(b"123456789") == 0xCBF43926``.  The STM32 CRC unit computes it with input reversal by byte,
  output reversal and a final XOR.
"""

from __future__ import annotations

import zlib

CRC16_POLY = 0x1021
CRC16_INIT = 0xFFFF


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC16_POLY) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


CRC16_TABLE = _make_table()


def crc16(data: bytes | bytearray | memoryview, crc: int = CRC16_INIT) -> int:
    """CRC-16/CCITT-FALSE of ``data``; pass a previous result as ``crc`` to continue a running CRC."""
    table = CRC16_TABLE
    for b in bytes(data):
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ b]
    return crc


def crc32(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32/ISO-HDLC (zlib) of ``data``; pass a previous result to continue a running CRC."""
    return zlib.crc32(data, crc) & 0xFFFFFFFF
