"""Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999) — the frame encoding of protocol v1.

COBS removes every 0x00 from a frame so 0x00 can delimit frames on the wire.  The encoded form is
``len(data) + 1 + len(data) // 254`` bytes at most.  This is plain COBS (no trailing-zero elision
tricks): ``decode(encode(x)) == x`` for every byte string, including the empty one (encoded ``01``).
"""

from __future__ import annotations


class CobsError(ValueError):
    """The bytes are not a valid COBS encoding (a zero inside, or a code running past the end)."""


def max_encoded_len(n: int) -> int:
    """Upper bound of ``len(encode(x))`` for ``len(x) == n``."""
    return n + 1 + n // 254


def encode(data: bytes | bytearray | memoryview) -> bytes:
    """COBS-encode ``data`` (without the trailing 0x00 delimiter)."""
    data = bytes(data)
    out = bytearray()
    start = 0
    n = len(data)
    while True:
        zero = data.find(0, start, start + 254)
        if zero < 0:
            end = min(start + 254, n)
            full = end - start == 254
            out.append(end - start + 1)
            out += data[start:end]
            start = end
            if full and end < n:
                continue  # a full 254-byte run without zero (code 0xFF): no implied zero follows
            break
        block = data[start:zero]
        out.append(len(block) + 1)
        out += block
        start = zero + 1
        if start == n:
            out.append(1)  # the data ends with a zero: one empty trailing block encodes it
            break
    return bytes(out)


def decode(data: bytes | bytearray | memoryview) -> bytes:
    """Decode one COBS block sequence (the bytes between two 0x00 delimiters)."""
    data = bytes(data)
    n = len(data)
    if n == 0:
        raise CobsError("empty COBS frame")
    if 0 in data:
        raise CobsError(f"zero byte inside a COBS frame at offset {data.index(0)}")
    out = bytearray()
    i = 0
    while i < n:
        code = data[i]
        end = i + code
        if end > n:
            raise CobsError(f"COBS code {code} at offset {i} runs past the end of the {n}-byte frame")
        out += data[i + 1 : end]
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)
