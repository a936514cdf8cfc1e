"""NUCLEO wire protocol v1: CRC, COBS, frames, golden vectors, message round-trips, blobs, decoder
robustness (garbage, truncation, bit flips, fuzz)."""

from __future__ import annotations

import random
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.nucleo import cobs
from device.nucleo import protocol as P
from device.nucleo.crc import crc16, crc32
from estimator.arch import Arch, Layer, paper_cnn

ROOT = Path(__file__).resolve().parents[2]


def crc16_bitwise(data: bytes) -> int:
    """Independent bit-by-bit CRC-16/CCITT-FALSE (no table) to check the table implementation."""
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


# --- CRC -------------------------------------------------------------------------------------------
def test_crc16_check_value_and_edge_cases():
    assert crc16(b"123456789") == 0x29B1  # catalogue check value of CRC-16/CCITT-FALSE
    assert crc16(b"") == 0xFFFF
    assert crc16(b"\x00") == crc16_bitwise(b"\x00")
    rng = random.Random(1)
    for n in (1, 2, 7, 255, 1031):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert crc16(data) == crc16_bitwise(data)
        assert crc16(data[n // 2 :], crc16(data[: n // 2])) == crc16(data)  # running CRC


def test_crc16_table_for_firmware_is_the_bitwise_crc_of_each_byte():
    """The 256-entry table (documented for firmware use) rebuilt from scratch: entry b is the CRC register
    after shifting byte b through it from 0, bit by bit; known entries of the CCITT table checked too."""
    from device.nucleo.crc import CRC16_TABLE, _make_table

    def entry(b: int) -> int:
        crc = b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        return crc

    table = _make_table()
    assert table == CRC16_TABLE == tuple(entry(b) for b in range(256))
    assert (table[0], table[1], table[2], table[0x80], table[0xFF]) == (0x0000, 0x1021, 0x2042, 0x9188, 0x1EF0)


def test_crc32_check_value():
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32(b"456789", crc32(b"123")) == 0xCBF43926


# --- COBS ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, enc",
    [
        (b"", b"\x01"),
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),  # 254 non-zero bytes: one full block
        (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255))),
        (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    ],
)
def test_cobs_reference_vectors(raw, enc):
    # vectors from the COBS paper / Wikipedia examples
    assert cobs.encode(raw) == enc
    assert cobs.decode(enc) == raw


def cobs_reference_encode(data: bytes) -> bytes:
    """Independent COBS encoder written from the definition: the data is cut at its zeros; each piece is
    sent as FF blocks of 254 bytes (no implied zero) and a last block ``len+1`` whose end implies the
    zero that followed the piece.  The final piece has no zero after it, so a non-empty final piece that
    is a whole number of FF blocks needs no last block."""
    out = bytearray()
    pieces = data.split(b"\x00")
    for i, piece in enumerate(pieces):
        full = 0
        while len(piece) >= 254:
            out += b"\xff" + piece[:254]
            piece = piece[254:]
            full += 1
        if i == len(pieces) - 1 and full and not piece:
            break
        out += bytes([len(piece) + 1]) + piece
    return bytes(out)


def expand(notation: str) -> bytes:
    """Bytes of the docs' notation: hex, spaces for reading, ``hh×N`` = byte hh repeated N times."""
    out = bytearray()
    for tok in notation.split():
        if "×" in tok:
            byte, count = tok.split("×")
            out += bytes.fromhex(byte) * int(count)
        else:
            out += bytes.fromhex(tok)
    return bytes(out)


BOUNDARY_RUNS = (0, 1, 2, 252, 253, 254, 255, 256, 507, 508, 509, 762)


@st.composite
def cobs_data(draw, max_size: int = 1100) -> bytes:
    """Byte strings made of non-zero runs and zeros, the runs often exactly 253/254/255/508 bytes long so
    that blocks end exactly at the 254-byte boundary, with or without a zero right after."""
    out = bytearray()
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.sampled_from(BOUNDARY_RUNS) | st.integers(0, 300))
        if draw(st.booleans()):
            out += bytes([draw(st.integers(1, 255))]) * n
        else:
            out += bytes(draw(st.lists(st.integers(1, 255), min_size=n, max_size=n)))
        out += b"\x00" * draw(st.sampled_from((0, 1, 1, 2)))
    return bytes(out[:max_size])


COBS_GOLDEN = P.cobs_golden_vectors()


@pytest.mark.parametrize("name, raw, enc", COBS_GOLDEN, ids=[g[0] for g in COBS_GOLDEN])
def test_cobs_block_boundary_vectors(name, raw, enc):
    assert cobs_reference_encode(raw) == enc  # the table itself agrees with the definition
    assert cobs.encode(raw) == enc
    assert cobs.decode(enc) == raw


def test_cobs_boundary_vectors_are_in_docs():
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = doc.split("### 7.1", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\w+) \| `([^`]*)` \| `([^`]*)` \|$", section, re.M)
    assert {name: (expand(d), expand(c)) for name, d, c in rows} == {n: (r, e) for n, r, e in COBS_GOLDEN}


@settings(max_examples=400, deadline=None)
@given(cobs_data())
def test_cobs_roundtrip_of_block_boundary_runs(data):
    enc = cobs.encode(data)
    assert enc == cobs_reference_encode(data)
    assert 0 not in enc and len(enc) <= cobs.max_encoded_len(len(data))
    assert cobs.decode(enc) == data


def test_cobs_max_encoded_len_is_the_worst_case():
    for n in (0, 1, 253, 254, 255, 508, 509, 1031):
        patterns = (b"\x01" * n, b"\x00" * n, ((b"\x01" * 253 + b"\x00") * (n // 254 + 1))[:n])
        worst = max(len(cobs.encode(d)) for d in patterns)
        assert worst <= cobs.max_encoded_len(n)
    assert [cobs.max_encoded_len(n) for n in (0, 253, 254, 255, 1031)] == [1, 254, 256, 257, 1036]
    assert len(cobs.encode(b"\x01" * 255)) == cobs.max_encoded_len(255)  # the bound is reached
    assert P.MAX_WIRE == 1037


def test_cobs_errors_name_what_is_wrong():
    with pytest.raises(cobs.CobsError, match="^empty COBS frame$"):
        cobs.decode(b"")
    with pytest.raises(cobs.CobsError, match="^zero byte inside a COBS frame at offset 1$"):
        cobs.decode(b"\x02\x00\x01\x00\x01")
    with pytest.raises(cobs.CobsError, match="^COBS code 5 at offset 2 runs past the end of the 4-byte frame$"):
        cobs.decode(b"\x02\x11\x05\x22")


def test_cobs_long_runs_roundtrip_and_bound():
    rng = random.Random(2)
    for n in list(range(0, 520)) + [1031]:
        for data in (
            bytes(rng.randrange(1, 256) for _ in range(n)),
            bytes(rng.choice((0, 7)) for _ in range(n)),
            b"\x00" * n,
        ):
            enc = cobs.encode(data)
            assert 0 not in enc
            assert len(enc) <= cobs.max_encoded_len(n)
            assert cobs.decode(enc) == data


@pytest.mark.parametrize("bad", [b"", b"\x05\x11\x22", b"\x02\x00\x01", b"\xff\x01"])
def test_cobs_decode_rejects_invalid(bad):
    with pytest.raises(cobs.CobsError):
        cobs.decode(bad)


# --- golden vectors ----------------------------------------------------------------------------------
GOLDEN = P.golden_vectors()


@pytest.mark.parametrize("name, seq, msg, wire_hex", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_vector_encode_decode(name, seq, msg, wire_hex):
    wire = bytes.fromhex(wire_hex)
    assert msg.encode(seq) == wire
    frames = P.FrameDecoder().feed(wire)
    assert len(frames) == 1
    assert frames[0].seq == seq and frames[0].type == msg.TYPE
    assert P.decode_message(frames[0]) == msg
    # independent check of the body layout and CRC
    body = cobs.decode(wire[:-1])
    t, s, n = struct.unpack_from("<BHH", body)
    assert (t, s, n) == (msg.TYPE, seq, len(msg.pack()))
    assert body[5 : 5 + n] == msg.pack()
    assert struct.unpack_from("<H", body, 5 + n)[0] == crc16_bitwise(body[: 5 + n])


def test_golden_vectors_are_in_docs():
    """§7's table lists exactly the code's vectors, byte for byte (the firmware is tested against it)."""
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = doc.split("## 7. Golden vectors", 1)[1].split("### 7.1", 1)[0]
    rows = re.findall(r"^\| (\w+) \| (\d+) \| `(\w+)`[^|]* \| `([^`]*)` \|$", section, re.M)
    table = {name: (int(seq), kind, expand(wire)) for name, seq, kind, wire in rows}
    assert table == {name: (seq, type(msg).__name__, bytes.fromhex(h)) for name, seq, msg, h in GOLDEN}


def test_hello_body_by_hand():
    # 01 | 0100 | 0800 | 'ODL1' 01 02 0004 | crc  -> COBS   (the host offers v1..v2)
    body = bytes.fromhex("01010008004f444c3101020004")
    body += struct.pack("<H", crc16_bitwise(body))
    assert P.Hello().encode(1) == cobs.encode(body) + b"\x00"


# --- every message round-trips ------------------------------------------------------------------------
def _sample_value(msg_cls: type[P.Message]) -> P.Message:
    rng = np.random.default_rng(msg_cls.TYPE)
    if msg_cls is P.Samples:
        xyz = rng.integers(-32768, 32768, (P.MAX_BLOCK_SAMPLES, 3)).astype(np.int16)
        return P.Samples(1, 2**40 + 3, 104000, 8, 3, len(xyz), xyz)
    if msg_cls is P.EvalResult:
        conf = rng.integers(0, 500, 36).astype(np.uint16)
        return P.EvalResult(1, 6, int(conf.sum()), 0.25, 123456789, conf)
    if msg_cls is P.Activity:
        return P.Activity("walking", ("walking", "jogging", "stairs"))
    if msg_cls in (P.ModelChunk, P.DataChunk, P.WeightsData):
        return msg_cls(1016, bytes(rng.integers(0, 256, P.MAX_PAYLOAD - 4, dtype=np.uint8)))
    if msg_cls in (P.Ping, P.Pong):
        return msg_cls(b"\x00\xff\x00")
    if msg_cls is P.Error:
        return P.error_message(P.ErrorCode.BUSY, P.MsgType.TRAIN_START, "round 3 is running", 3)
    if msg_cls is P.Log:
        return P.Log(2, "warmup done ✓")
    if msg_cls is P.SimSetActivity:
        return P.SimSetActivity("standing")
    # fixed-layout messages: fill each numeric field with a distinct in-range value
    fields = msg_cls._fixed_fields()
    fmt = msg_cls._struct.format.lstrip("<")
    codes = re.findall(r"\d*[a-zA-Z?]", fmt)
    kw = {}
    for i, (f, code) in enumerate(zip(fields, codes)):
        c = code[-1]
        if c == "s":
            kw[f.name] = P.MAGIC if f.type == "bytes" else "x" * (i % 16)
        elif c == "f":
            kw[f.name] = float(np.float32(0.5 + i))
        else:
            bits = {"B": 8, "H": 16, "I": 32, "Q": 64}[c]
            kw[f.name] = (i * 37 + 1) % (1 << bits)
    return msg_cls(**kw)


@pytest.mark.parametrize("msg_cls", list(P.message_types().values()), ids=lambda c: c.__name__)
def test_every_message_roundtrips(msg_cls):
    msg = _sample_value(msg_cls)
    for seq in (0, 1, 0xFFFE, 0xFFFF):
        wire = msg.encode(seq)
        assert len(wire) <= P.MAX_WIRE
        (frame,) = P.FrameDecoder().feed(wire)
        assert frame.seq == seq
        out = P.decode_message(frame)
        assert out == msg and type(out) is msg_cls


def test_message_type_ranges():
    for t in P.message_types():
        kind = "request" if P.is_request(t) else "event" if P.is_event(t) or t == P.MsgType.ERROR else "response"
        if kind == "response":
            assert 0x80 <= t <= 0xEF
    assert all(P.is_request(t) for t in (P.MsgType.HELLO, P.MsgType.TRAIN_START, P.MsgType.SIM_SET_ACTIVITY))


def test_wrong_payload_lengths_are_clear_errors():
    with pytest.raises(P.ProtocolError, match="SensorConfig payload is 3 bytes, expected 8"):
        P.SensorConfig.unpack(b"\x00\x01\x02")
    with pytest.raises(P.ProtocolError, match="6-byte xyz"):
        P.Samples.unpack(P.Samples().pack() + b"\x01")
    with pytest.raises(P.ProtocolError, match="header says 3 samples"):
        P.Samples.unpack(P.Samples(n=3).pack())
    with pytest.raises(P.ProtocolError) as exc:
        P.decode_message(P.Frame(0x7E, 1, b""))
    assert exc.value.code == P.ErrorCode.UNKNOWN_TYPE


def test_out_of_range_fields_and_oversize_payloads_refused():
    with pytest.raises(P.ProtocolError, match="SetClock"):
        P.SetClock(2**32).pack()
    with pytest.raises(P.ProtocolError, match="exceeds"):
        P.Ping(b"x" * (P.MAX_PAYLOAD + 1)).pack()
    with pytest.raises(P.ProtocolError, match="longer than 16"):
        P.SimSetActivity("a" * 17).pack()


# --- decoder robustness -----------------------------------------------------------------------------
def _frames(n: int, rng: random.Random) -> list[tuple[int, P.Message]]:
    out = []
    for i in range(n):
        msg = rng.choice(
            [
                P.Ping(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))),
                P.Ack(i % 256),
                P.SensorState(),
                P.XferAck(i),
            ]
        )
        out.append((i, msg))
    return out


def test_resync_after_random_garbage_between_frames():
    rng = random.Random(3)
    msgs = _frames(200, rng)
    stream = bytearray()
    for seq, msg in msgs:
        stream += bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))  # garbage (may hold zeros)
        stream += b"\x00" + msg.encode(seq)  # senders put a delimiter before every frame
    dec = P.FrameDecoder()
    got = []
    pos = 0
    while pos < len(stream):  # random chunking
        k = rng.randrange(1, 64)
        got += dec.feed(stream[pos : pos + k])
        pos += k
    assert [(f.seq, P.decode_message(f)) for f in got] == msgs


def test_truncated_frames_and_bit_flips_are_dropped_and_counted():
    rng = random.Random(4)
    good = [P.Ping(bytes(range(50))).encode(i) for i in range(100)]
    stream = bytearray()
    expected = []
    n_trunc = n_flip = 0
    for i, wire in enumerate(good):
        r = i % 3
        if r == 0:
            stream += wire
            expected.append(i)
        elif r == 1:  # truncated: the frame is cut and the next one follows directly
            stream += wire[: rng.randrange(1, len(wire) - 1)] + b"\x00"
            n_trunc += 1
        else:  # one bit flipped inside the frame (not making a zero: that would split the frame)
            b = bytearray(wire)
            j = rng.randrange(0, len(b) - 1)
            bit = 1 << rng.randrange(8)
            if b[j] ^ bit == 0:
                bit = 1 << ((bit.bit_length()) % 8)
            b[j] ^= bit
            stream += b
            n_flip += 1
    dec = P.FrameDecoder()
    got = dec.feed(bytes(stream))
    assert [f.seq for f in got] == expected
    assert dec.stats["bad_crc"] + dec.stats["bad_frame"] == n_trunc + n_flip


def test_every_single_bit_error_in_a_body_is_rejected():
    """CRC-16 detects every 1-bit error: a flip anywhere, the CRC's own two bytes included, is refused."""
    body = P.frame_body(P.MsgType.PING, 0x1234, bytes(range(1, 40)))
    assert P.parse_body(body) == P.Frame(P.MsgType.PING, 0x1234, bytes(range(1, 40)))
    for i in range(len(body)):
        for bit in range(8):
            bad = bytearray(body)
            bad[i] ^= 1 << bit
            with pytest.raises(P.ProtocolError) as exc:
                P.parse_body(bytes(bad))
            assert exc.value.code in (P.ErrorCode.BAD_CRC, P.ErrorCode.BAD_FRAME), (i, bit)
            if i not in (3, 4):  # (the len field makes it a length mismatch instead)
                assert exc.value.code == P.ErrorCode.BAD_CRC, (i, bit)


@pytest.mark.parametrize("pos", [-2, -1])  # low byte, high byte of the little-endian CRC
def test_decoder_drops_a_frame_whose_crc_byte_is_wrong_and_says_so(pos):
    body = bytearray(P.frame_body(P.MsgType.ACK, 7, b"\x05"))
    good = crc16_bitwise(bytes(body[:-2]))
    body[pos] ^= 0x01
    errors = []
    dec = P.FrameDecoder(on_error=errors.append)
    assert dec.feed(cobs.encode(bytes(body)) + b"\x00" + P.Ack(5).encode(8)) == [P.Frame(P.MsgType.ACK, 8, b"\x05")]
    wire_len = len(cobs.encode(bytes(body))) + 1
    assert dec.stats == {"frames": 1, "bad_crc": 1, "bad_frame": 0, "overflow": 0, "discarded_bytes": wire_len}
    (err,) = errors
    sent = body[-2] | body[-1] << 8
    assert err.code == P.ErrorCode.BAD_CRC
    assert str(err) == f"frame CRC 0x{sent:04X} does not match computed 0x{good:04X}"


def test_frame_fields_out_of_range_are_refused_naming_them():
    assert P.frame_body(0xFF, 0xFFFF) == P.frame_body(0xFF, 0xFFFF, b"")  # the limits themselves are valid
    assert P.encode_frame(1, 2) == cobs.encode(P.frame_body(1, 2, b"")) + b"\x00"
    assert P.frame_body(0, 0, b"\x07")[:5] == b"\x00\x00\x00\x01\x00"
    for args, msg in (
        ((0x100, 1), "frame type 256 is not a byte"),
        ((-1, 1), "frame type -1 is not a byte"),
        ((1, 0x10000), "sequence number 65536 is outside 0..65535"),
        ((1, -1), "sequence number -1 is outside 0..65535"),
    ):
        with pytest.raises(P.ProtocolError) as exc:
            P.frame_body(*args)
        assert str(exc.value) == msg
    P.frame_body(1, 1, bytes(P.MAX_PAYLOAD))
    with pytest.raises(P.ProtocolError) as exc:
        P.frame_body(1, 1, bytes(P.MAX_PAYLOAD + 1))
    assert exc.value.code == P.ErrorCode.TOO_LARGE
    assert str(exc.value) == "payload of 1025 bytes exceeds the 1024-byte maximum"


@pytest.mark.parametrize("n", range(0, 7))
def test_short_bodies_are_bad_frames_naming_the_size(n):
    with pytest.raises(P.ProtocolError) as exc:
        P.parse_body(P.frame_body(1, 2, b"")[:n])
    assert exc.value.code == P.ErrorCode.BAD_FRAME
    assert str(exc.value) == f"frame of {n} bytes is shorter than the 7-byte minimum"


def test_length_mismatch_message_names_both_lengths():
    body = bytearray(P.frame_body(P.MsgType.ACK, 1, b"\x07"))
    body[3] = 2
    with pytest.raises(P.ProtocolError) as exc:
        P.parse_body(bytes(body))
    assert exc.value.code == P.ErrorCode.BAD_FRAME
    assert str(exc.value) == "frame length field says 2 payload bytes but the frame holds 1"


def test_decoder_reset_drops_a_partial_frame_and_ends_a_discard():
    dec = P.FrameDecoder()
    assert dec.feed(P.Ack(1).encode(1)[:-3]) == []  # a partial frame ...
    dec.reset()  # ... forgotten (e.g. after a reconnect)
    assert dec.feed(P.Ack(2).encode(2)) == [P.Frame(P.MsgType.ACK, 2, b"\x02")]
    assert dec.feed(b"\x01" * (P.MAX_WIRE + 1)) == [] and dec.stats["overflow"] == 1  # discarding now ...
    dec.reset()  # ... until reset: the next frame is taken whole
    assert dec.feed(P.Ack(3).encode(3)) == [P.Frame(P.MsgType.ACK, 3, b"\x03")]
    assert dec.stats["frames"] == 2 and dec.stats["bad_frame"] == dec.stats["bad_crc"] == 0


def test_decoder_counts_every_discarded_byte_and_says_why():
    errors = []
    dec = P.FrameDecoder(on_error=errors.append)
    bad1, bad2 = b"\x05\x01\x02\x00", b"\x03\x01\x02\x00"  # invalid COBS, then a 2-byte body
    assert dec.feed(bad1 + bad2) == []
    assert dec.stats == {"frames": 0, "bad_crc": 0, "bad_frame": 2, "overflow": 0, "discarded_bytes": 8}
    assert dec.feed(b"\x01" * (P.MAX_WIRE + 5)) == [] and dec.stats["discarded_bytes"] == 8 + P.MAX_WIRE + 5
    assert dec.feed(b"\x01" * 4 + b"\x00") == []  # still discarding up to the delimiter: counted too
    assert dec.stats["discarded_bytes"] == 8 + P.MAX_WIRE + 9 and dec.stats["overflow"] == 1
    assert dec.stats["bad_frame"] == 2 and len(dec._buf) == 0
    assert [(e.code, str(e)) for e in errors] == [
        (P.ErrorCode.BAD_FRAME, "COBS code 5 at offset 0 runs past the end of the 3-byte frame"),
        (P.ErrorCode.BAD_FRAME, "frame of 2 bytes is shorter than the 7-byte minimum"),
        (P.ErrorCode.TOO_LARGE, f"{P.MAX_WIRE + 5} bytes without a frame delimiter (max frame {P.MAX_WIRE})"),
    ]


def test_decoder_buffer_bound_is_max_wire():
    """A run of MAX_WIRE bytes between delimiters is still decoded (here: a bad frame); one more is an
    overflow, discarded without being buffered further."""
    dec = P.FrameDecoder()
    assert dec.feed(b"\x01" * P.MAX_WIRE + b"\x00") == []
    assert (dec.stats["bad_frame"], dec.stats["overflow"]) == (1, 0)
    assert dec.feed(b"\x01" * (P.MAX_WIRE + 1) + b"\x00") == []
    assert (dec.stats["bad_frame"], dec.stats["overflow"]) == (1, 1)
    assert dec.feed(P.Ack(3).encode(3)) == [P.Frame(P.MsgType.ACK, 3, b"\x03")]


def test_overlong_run_without_delimiter_is_discarded_then_resyncs():
    dec = P.FrameDecoder()
    assert dec.feed(b"\x01" * (P.MAX_WIRE * 3)) == []
    assert dec.stats["overflow"] == 1
    assert len(dec._buf) == 0  # bounded memory
    (f,) = dec.feed(b"\x00" + P.Ack(7).encode(9))
    assert f.seq == 9


def test_length_field_mismatch_is_bad_frame():
    body = bytearray(P.frame_body(P.MsgType.ACK, 1, b"\x07"))
    body[3] = 2  # claims 2 payload bytes
    body[-2:] = struct.pack("<H", crc16(bytes(body[:-2])))
    dec = P.FrameDecoder()
    assert dec.feed(cobs.encode(bytes(body)) + b"\x00") == []
    assert dec.stats["bad_frame"] == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=1200), max_size=8))
def test_fuzz_decoder_never_crashes(chunks):
    dec = P.FrameDecoder()
    for c in chunks:
        for f in dec.feed(c):
            assert len(f.payload) <= P.MAX_PAYLOAD
            try:
                P.decode_message(f)
            except P.ProtocolError:
                pass
    assert len(dec._buf) <= P.MAX_WIRE


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=P.MAX_PAYLOAD) | cobs_data(P.MAX_PAYLOAD),
    st.integers(0, 0xFFFF),
    st.integers(0, 255),
    st.binary(max_size=64),
)
def test_fuzz_any_frame_survives_garbage_prefix(payload, seq, type_, garbage):
    dec = P.FrameDecoder()
    dec.feed(garbage)
    frames = dec.feed(b"\x00" + P.encode_frame(type_, seq, payload))
    assert frames[-1] == P.Frame(type_, seq, payload)


# --- blobs ---------------------------------------------------------------------------------------------
def _weights(arch: Arch, seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {n: [rng.standard_normal(s).astype(np.float32) for s in ss] for n, ss in arch.param_shapes().items()}


def test_model_blob_roundtrip_paper_cnn():
    arch = paper_cnn(20, 6)
    w = _weights(arch)
    blob, desc_len = P.encode_model(arch, w)
    assert desc_len == 16 + 32 * len(arch.layers)
    assert len(blob) == desc_len + 4 * arch.params
    arch2, w2 = P.decode_model(blob, desc_len)
    assert arch2.layers == arch.layers and arch2.input_shape == arch.input_shape
    for k in w:
        for a, b in zip(w[k], w2[k]):
            np.testing.assert_array_equal(a, b)


def test_model_blob_conv2d_batchnorm_long_names():
    layers = (
        Layer("conv2d", "a_very_long_conv_layer_name_0", filters=4, kernel=5),
        Layer("batchnorm", "batch_normalization_with_long_name", epsilon=1e-3),
        Layer("relu", "relu"),
        Layer("maxpool2d", "pool", pool=2),
        Layer("flatten", "flat"),
        Layer("dropout", "drop", rate=0.25),
        Layer("dense", "dense_out", units=4, use_bias=False),
        Layer("softmax", "sm"),
    )
    arch = Arch((24, 3, 1), layers, preprocessing="gravity_rot_sup")
    w = _weights(arch, 1)
    blob, dl = P.encode_model(arch, w)
    arch2, w2 = P.decode_model(blob, dl)
    assert [l.kind for l in arch2.layers] == [l.kind for l in arch.layers]
    assert arch2.layers[0].name == "a_very_long_conv"  # truncated to 16 bytes
    assert arch2.layers[5].rate == pytest.approx(0.25) and arch2.layers[1].epsilon == pytest.approx(1e-3)
    assert arch2.preprocessing == "gravity_rot_sup" and arch2.layers[6].use_bias is False
    w3 = P.decode_weights(arch2, blob[dl:], names=list(arch.param_shapes()))  # map back to host names
    assert set(w3) == set(w)


def test_descriptor_unknown_layer_code_names_the_layer():
    arch = paper_cnn(20, 6)
    desc = bytearray(P.encode_arch(arch))
    desc[16 + 32 * 3] = 99  # layer 3's kind
    with pytest.raises(P.UnknownLayerError, match="layer 3: unknown layer kind code 99") as exc:
        P.decode_arch(bytes(desc))
    assert exc.value.index == 3 and exc.value.code == P.ErrorCode.UNKNOWN_LAYER


def test_weights_shape_errors_are_clear():
    arch = paper_cnn(20, 6)
    w = _weights(arch)
    w["conv1"][0] = w["conv1"][0][:2]
    with pytest.raises(P.ProtocolError, match="layer 'conv1' tensor 0: shape"):
        P.encode_weights(arch, w)
    with pytest.raises(P.ProtocolError, match="weights blob is 3 bytes"):
        P.decode_weights(arch, b"abc")


@pytest.mark.parametrize("dtype", [P.DType.F32, P.DType.I16])
def test_dataset_blob_roundtrip(dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 20, 3)).astype(np.float32)
    y = rng.integers(0, 6, 7)
    scale = 0.061e-3 * 9.80665
    blob = P.encode_dataset(x, y, dtype, scale)
    x2, y2, dt, sc = P.decode_dataset(blob)
    np.testing.assert_array_equal(y2, y)
    assert dt == dtype
    if dtype == P.DType.F32:
        np.testing.assert_array_equal(x2, x)
    else:
        assert np.max(np.abs(x2 - x)) <= scale / 2 + 1e-6


def test_dataset_blob_errors():
    with pytest.raises(P.ProtocolError, match="labels for"):
        P.encode_dataset(np.zeros((3, 4, 3)), [0, 1])
    with pytest.raises(P.ProtocolError, match="needs"):
        P.decode_dataset(P.encode_dataset(np.zeros((3, 4, 3)), [0, 1, 2])[:-1])


def test_odr_and_fs_validation():
    assert P.check_odr_mhz(12500) == 12.5
    assert P.check_odr_mhz(6667000) == 6667.0
    with pytest.raises(P.ProtocolError, match="allowed mHz: 12500, 26000"):
        P.check_odr_mhz(20000)
    with pytest.raises(P.ProtocolError, match="allowed: 2, 4, 8, 16"):
        P.check_fs_g(3)


def test_descriptor_with_a_nan_layer_parameter_is_a_bad_payload_naming_the_layer():
    """A NaN dropout rate (the layer record's float32 at +12) is refused as the firmware refuses it: BAD_PAYLOAD, with
    the layer's index, never an architecture error escaping the decoder."""
    arch = Arch(
        (20, 3),
        (
            Layer("conv1d", "c", filters=2, kernel=3),
            Layer("dropout", "dr", rate=0.25),
            Layer("flatten", "f"),
            Layer("dense", "d", units=2),
            Layer("softmax", "sm"),
        ),
    )
    desc = bytearray(P.encode_arch(arch))
    at = P.DESC_HEADER.size + P.LAYER_REC.size * 1 + 12
    assert struct.unpack_from("<f", desc, at)[0] == pytest.approx(0.25)
    struct.pack_into("<f", desc, at, float("nan"))
    with pytest.raises(P.ProtocolError) as exc:
        P.decode_arch(bytes(desc))
    assert (
        str(exc.value) == "descriptor describes an invalid network: layer 'dr': rate must be a finite number, got nan"
    )
    assert exc.value.arg0 == 1 and exc.value.code == P.ErrorCode.BAD_PAYLOAD
