"""Hypothesis fuzzing of every protocol parser (issue #7 "Bad input"): LPM01A ascii_dec and bin_hexa
stream decoders, the driver's reply grammar and value parser, the NUCLEO frame decoder + message
decoder and the board's blob decoders.  10,000 examples per target; each example is small, so a target
runs in seconds.  Asserted: no exception other than the module's documented error type (whose message
names what was wrong), bounded memory (tracemalloc peak per example), bounded output, no hang
(pytest-timeout + per-example deadline-free but tiny inputs)."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from device.lpm01a import spec
from device.lpm01a.decode import AsciiDecoder, BinaryDecoder, classify_text_line
from device.lpm01a.driver import PowerShield, PowerShieldError, PowerShieldTimeout, _parse_value
from device.nucleo import protocol as P
from tests.faultkit import reference_frames

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

N = int(os.environ.get("ODL_FUZZ_EXAMPLES", 10_000))  # CI: 10,000 per target
# generate + shrink only: the explain/target phases cost ~40 % per example and matter only for failures
FUZZ = settings(
    max_examples=N,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.generate, Phase.shrink],
)
PEAK_BYTES = 2 << 20  # per example; the largest legitimate output (NaN fill of one timestamp gap) is 80 kB
RATE = 1000  # decoder rate: NaN fill per implausible-gap limit is max(10 000, 5 s * rate) samples


class Peak:
    """``with Peak():`` measures the traced allocation peak of every 16th example (tracemalloc slows
    everything it watches) and asserts it stays below :data:`PEAK_BYTES`."""

    count = 0

    def __enter__(self) -> "Peak":
        Peak.count += 1
        self.on = Peak.count % 16 == 0
        if self.on:
            tracemalloc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.on:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak < PEAK_BYTES, f"parser used {peak} bytes for a tiny input"


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    pos = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *pos, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


# --- LPM01A streams -----------------------------------------------------------------------------------
ASCII_TOKENS = [
    b"\r\n",
    b"\n",
    b"\x00",
    b"1234-06",
    b"9999+02",
    b"0000-10",
    b"12a4-06",
    b"TimeStamp: 001s 000ms, buff 05%",
    b"TimeStamp: 999s 999ms, buff 99%",
    b"end",
    b"summary beg",
    b"summary end",
    b"event 07 ris",
    b"pwr on",
    b"error: Tx buffer overflow. Acquisition stopped.",
    b"error: Overcurrent detected. Acquisition stopped.",
    b"PowerShield > ack volt get 3292-03",
    b"PowerShield > error freq 3k",
    b"Error detail: bad",
    b"PowerShield > Acquisition completed",
    b"PowerShield > ",
]
BIN_TOKENS = [
    b"\xf0\xf3\x00\x00\x03\xe8\x05\xff\xff",
    b"\xf0\xf3\x7f\xff\xff\xff\x63\xff\xff",
    b"\xf0\xf4\xff\xff",
    b"\xf0\xf5\xff\xff",
    b"\xf0\xf6\xff\xff",
    b"\xf0\xf7\x0c\xe4\xff\xff",
    b"\xf0\xf8\x00\x1c\xff\xff",
    b"\xf0\xf9\x01\xff\xff",
    b"\xf0\xf2event 00 ris\r\n\xff\xff",
    b"\xf0\xf1error: Tx buffer overflow. \r\n\xff\xff",
    b"\xf0\xf2summary beg\r\n1853-09\r\n2113-09\r\nsummary end\r\n\xff\xff",
    b"\x12\x34",
    b"\xf0",
    b"\xff\xff",
    b"\r\nPowerShield > ack temp 28\r\n",
    b"\r\nPowerShield > Acquisition completed\r\n",
    b"\x00\x00",
    b"\xf0\xfa",
]


def build(seed: int, size: int, tokens: list[bytes]) -> bytes:
    """Cheap structured input: hypothesis draws (seed, size) and numpy builds up to ``size`` bytes mixing
    the protocol's own tokens with random bytes (so examples reach deep parser states yet cost microseconds)."""
    rng = np.random.default_rng(seed)
    if seed % 4 == 0:
        return rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    k = size // 4 + 1
    idx = rng.integers(len(tokens), size=k).tolist()
    rnd = (rng.random(k) < 0.3).tolist()
    raw = rng.integers(0, 256, 8 * k, dtype=np.uint8).tobytes()
    return b"".join(raw[8 * i : 8 * i + 1 + i % 7] if r else tokens[j] for i, (j, r) in enumerate(zip(idx, rnd)))[:size]


def stream(tokens: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(build, st.integers(0, 2**32 - 1), st.integers(0, 300), st.just(tokens))


def check_decoder(dec, data: bytes, cuts: list[int]) -> None:
    with Peak():
        for part in chunked(data, cuts):
            out = dec.feed(part)
            assert out.values.dtype == np.float64
            assert out.first_index >= 0 and out.lost >= 0 and out.corrupt_bytes >= 0
            finite = out.values[~np.isnan(out.values)]
            assert np.all(np.isfinite(finite))
        dec.take_trailing()
    assert dec.received <= len(data)  # never more samples than bytes
    assert dec.lost <= 10 * spec.TIMESTAMP_EVERY * (dec.timestamps + 1)


@FUZZ
@given(data=stream(ASCII_TOKENS), cuts=st.lists(st.integers(0, 400), max_size=3))
def test_fuzz_lpm01a_ascii_stream_decoder(data, cuts):
    check_decoder(AsciiDecoder(RATE), data, cuts)


@FUZZ
@given(data=stream(BIN_TOKENS), cuts=st.lists(st.integers(0, 400), max_size=3))
def test_fuzz_lpm01a_binary_stream_decoder(data, cuts):
    check_decoder(BinaryDecoder(RATE), data, cuts)


# --- LPM01A command replies ------------------------------------------------------------------------------
REPLY_TOKENS = [
    b"\r\n",
    b"\n",
    b"\x00",
    b"PowerShield > ",
    b"ack ",
    b"error ",
    b"Error detail: ",
    b"version",
    b"volt get ",
    b"3292-03",
    b"1.0.7",
    b"status ok",
    b"temp",
    b"echo",
    b"PowerShield present",
    b":",
    b" ",
    b"Acquisition completed",
    b"help",
    b"\xff",
    b"\xf0\xf3",
]
COMMANDS = ["version", "volt get", "status", "temp degc", "echo x", "powershield", "help", "freq 1k", "htc", "pwr get"]


@FUZZ
@given(
    data=st.builds(build, st.integers(0, 2**32 - 1), st.integers(0, 200), st.just(REPLY_TOKENS)),
    line=st.sampled_from(COMMANDS),
)
def test_fuzz_lpm01a_reply_grammar(data, line):
    """The driver reads whatever is buffered by grammar: a Reply for its own command, CommandRejected,
    or PowerShieldTimeout naming the command - never another exception, never a wrong command's ack."""
    drv = PowerShield("socket://127.0.0.1:9", open_now=False)
    drv._rx += data
    name = line.split()[0]
    with Peak():
        try:
            reply = drv._await_reply(name, line, 0.0)
        except PowerShieldTimeout as exc:
            assert repr(line) in str(exc)
        except PowerShieldError as exc:  # CommandRejected
            assert name in str(exc)
        else:  # only a line naming this very command answers it
            assert reply.cmd == name
            assert b"ack" in data.lower() or name in ("echo", "powershield")
        for text in data.split(b"\n"):
            ev = classify_text_line(text.decode("ascii", "replace"))
            assert ev is None or isinstance(ev.kind, str)


@FUZZ
@given(
    token=st.builds(
        lambda s, n: build(s, n, [b"1", b"32", b"9", b"-", b"+", b".", b"e", b"m", b"u", b"k", b"0"]).decode("latin-1"),
        st.integers(0, 2**32 - 1),
        st.integers(0, 12),
    )
)
def test_fuzz_lpm01a_value_parser(token):
    try:
        v = _parse_value(token, "volt get")
    except PowerShieldError as exc:
        assert "cannot read the value in the reply to 'volt get'" in str(exc)
    else:
        assert isinstance(v, float)


# --- NUCLEO frames and messages -----------------------------------------------------------------------------
TYPES = sorted(P.message_types())


@FUZZ
@given(
    seed=st.integers(0, 2**32 - 1),
    garbage=st.integers(0, 300),
    frames=st.lists(
        st.tuples(
            st.sampled_from(TYPES + [0x00, 0x6E, 0xFE]),
            st.integers(0, 0xFFFF),
            st.integers(0, 64) | st.sampled_from((247, 248, 249, 250, 253, 254, 255, 256, 258, 509, 510)),
            # None: random payload; else a payload without zeros but at this index (if inside): non-zero
            # runs of 253/254/255 bytes ending at, before or after a COBS block boundary
            st.sampled_from((None, -1, 253, 254, 255)),
        ),
        max_size=2,
    ),
    flips=st.lists(st.integers(0, 10_000), max_size=3),
)
def test_fuzz_board_frame_decoder_and_messages(seed, garbage, frames, flips):
    """Random bytes, valid frames with random payloads and bit flips: the decoder never raises, its buffer
    stays within one frame, it returns exactly the frames an independent reference decoder (bitwise CRC)
    finds in the damaged stream (so every frame it returns has a valid CRC and length, and no valid frame
    is lost), and decode_message either gives a message or a ProtocolError naming the type/field."""
    rng = np.random.default_rng(seed)
    payloads = [rng.integers(0 if z is None else 1, 256, n, dtype=np.uint8) for _, _, n, z in frames]
    for p, (_, _, n, z) in zip(payloads, frames):
        if z is not None and 0 <= z < n:
            p[z] = 0
    frames = [(t, s, p.tobytes()) for (t, s, _, _), p in zip(frames, payloads)]
    wire = bytearray(
        rng.integers(0, 256, garbage, dtype=np.uint8).tobytes()
        + b"".join(P.encode_frame(t, s, p) for t, s, p in frames)
    )
    for f in flips:
        if wire:
            wire[f % len(wire)] ^= 1 << (f % 8)
    dec = P.FrameDecoder()
    got = []
    with Peak():
        for part in chunked(bytes(wire), flips):
            for fr in dec.feed(part):
                got.append(fr)
                assert len(fr.payload) <= P.MAX_PAYLOAD
                try:
                    msg = P.decode_message(fr)
                except P.ProtocolError as exc:
                    assert str(exc) and isinstance(exc.code, P.ErrorCode)
                else:
                    assert msg.TYPE == fr.type
            assert len(dec._buf) <= P.MAX_WIRE
    # a trailing frame without its delimiter is not returned yet; everything before the last 00 is decided
    assert got == reference_frames(bytes(wire[: bytes(wire).rfind(0) + 1]))
    if not flips and not garbage:  # undamaged: every frame sent comes out, intact
        assert [(f.type, f.seq, f.payload) for f in got] == frames
    for t, s, p in frames:  # the message layer alone, on every payload generated
        try:
            P.decode_message(P.Frame(t, s, p))
        except P.ProtocolError as exc:
            assert str(exc)


@FUZZ
@given(
    seed=st.integers(0, 2**32 - 1),
    header=st.tuples(
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
        st.integers(0, 255),
        st.integers(0, 3),
        st.floats(allow_nan=True, width=32),
    ),
    desc=st.tuples(st.integers(0, 8), st.integers(0, 4), st.integers(0, 2), st.integers(0, 6)),
)
def test_fuzz_board_blob_decoders(seed, header, desc):
    """Dataset blobs with absurd headers (65535 x 65535 x 255 windows), random descriptors and weight
    blobs: ProtocolError naming the mismatch, never an allocation from the header alone."""
    rng = np.random.default_rng(seed)
    blob = rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
    n, t, c, dt, scale = header
    if seed % 3 == 0:  # a consistent size, so the value path runs too
        n, t, c = n % 5, t % 7, c % 4
        blob = blob[: (n + (-n % 4)) + n * t * c * (4 if dt == 0 else 2)].ljust(
            (n + (-n % 4)) + n * t * c * (4 if dt == 0 else 2), b"\0"
        )
    data = P.DATA_HEADER.pack(n, t, c, dt, 0, scale) + blob
    with Peak():
        try:
            x, y, _, _ = P.decode_dataset(data)
            assert x.shape == (n, t, c) and len(y) == n
        except P.ProtocolError as exc:
            assert "dataset" in str(exc)
        n_layers, rank, prep, n_recs = desc
        recs = [
            P.LAYER_REC.pack(
                int(rng.integers(0, 18)),
                int(rng.integers(0, 2)),
                *(int(v) for v in rng.integers(0, 70, 5)),
                float(rng.random()),
                b"l%d" % i,
            )
            for i in range(n_recs)
        ]
        raw = P.DESC_HEADER.pack(P.DESC_MAGIC, 1, n_layers, rank, prep, 20, 3, 0, 0) + b"".join(recs)
        for d in (raw, blob):
            try:
                arch = P.decode_arch(d)
            except P.ProtocolError as exc:
                assert str(exc)
            else:
                try:
                    P.decode_weights(arch, blob)
                except P.ProtocolError as exc:
                    assert "weights blob" in str(exc)
