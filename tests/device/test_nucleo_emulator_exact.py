"""Exact replies of the emulated NUCLEO board's request handlers (device/nucleo/emulator.py), the reference the
firmware must agree with byte for byte: every request is sent as a real frame, and the reply is decoded and
compared whole (type, every field; an ERROR's code, request, both arguments and text), with the board's state
after it.  The board runs on a hand-stepped clock (nothing moves unless a test moves it), so a round or an
evaluation stays running for as long as a test needs it busy.  Mutation target ``nucleo_emulator``
(benchmarks/mutation.py)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from device.engine.model import Model
from device.nucleo import protocol as P
from device.nucleo.crc import crc32
from device.nucleo.emulator import NucleoEmulator
from estimator.arch import Arch, Layer, paper_cnn
from estimator.memory import training_memory

E = P.ErrorCode
T = P.MsgType
RAM = 327_680
RESERVE = 24_576
FREE0 = RAM - RESERVE  # 303 104 B free on an empty board
ARCH = paper_cnn(20, 5)
PARAMS = 10_033  # ARCH.params
INFER = training_memory(ARCH, frozenset()).paper_bytes
R3_LAYERS = (
    Layer("conv2d", "c", filters=2, kernel=3),
    Layer("gap2d", "g"),
    Layer("dense", "d", units=4),
    Layer("softmax", "s"),
)


class Clock:
    """The bench's clock, stepped by hand."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t
        self.time_scale = 1000.0

    def now(self) -> float:
        return self.t


class Board:
    """An emulated board spoken to in frames: ``ask`` sends one request and returns its one reply."""

    def __init__(self, **kw: Any) -> None:
        self.clock = Clock()
        self.emu = NucleoEmulator(self.clock, seed=3, **kw)
        self.seq = 0
        self.dec = P.FrameDecoder()
        self.events: list[P.Message] = []
        self._read()

    def _read(self) -> list[P.Frame]:
        frames = []
        while data := bytes(self.emu.pending()):
            self.emu.consume(len(data))
            frames += self.dec.feed(data)
        replies = []
        for f in frames:
            if P.is_event(f.type):
                self.events.append(P.decode_message(f))
            else:
                replies.append(f)
        return replies

    def send(self, type_: int, payload: bytes = b"", seq: int | None = None) -> list[P.Frame]:
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.emu.receive(P.encode_frame(type_, seq, payload))
        return self._read()

    def ask_raw(self, type_: int, payload: bytes = b"") -> P.Message:
        replies = self.send(type_, payload)
        assert [f.seq for f in replies] == [self.seq]
        return P.decode_message(replies[0])

    def ask(self, msg: P.Message) -> P.Message:
        return self.ask_raw(msg.TYPE, msg.pack())

    # --- set-ups --------------------------------------------------------------------------------------
    def upload_model(self, arch: Arch = ARCH, seed: int = 1) -> P.Message:
        blob, desc_len = P.encode_model(arch, Model(arch, seed=seed).get_weights())
        assert self.ask(P.ModelBegin(len(blob), desc_len, crc32(blob))) == P.XferAck(0)
        for off, part in P.chunks(blob):
            assert self.ask(P.ModelChunk(off, part)) == P.XferAck(off + len(part))
        return self.ask(P.ModelEnd())

    def upload_data(self, slot: int, x: np.ndarray, y: Any, dtype: P.DType = P.DType.F32) -> P.Message:
        blob = P.encode_dataset(x, y, dtype)
        assert self.ask(P.DataBegin(slot, 0, 0, len(blob), crc32(blob))) == P.XferAck(0)
        for off, part in P.chunks(blob):
            assert self.ask(P.DataChunk(off, part)) == P.XferAck(off + len(part))
        return self.ask(P.DataEnd())

    def close(self) -> None:
        job = self.emu._job
        if job is not None:
            self.ask(P.TrainAbort())
            job.abort.set()
            self.clock.t += 1e6
            assert self.emu.wait_idle(10)
        self._read()


def err(code: E, request: int, text: str, arg0: int = 0, arg1: int = 0) -> P.Error:
    return P.Error(int(code), int(request), 0, arg0, arg1, text)


def windows(n: int, T_: int = 20, C: int = 3, classes: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return rng.standard_normal((n, T_, C)).astype(np.float32), y


@pytest.fixture
def board():
    b = Board()
    yield b
    b.close()


@pytest.fixture
def loaded():
    """A board with the paper's CNN (T 20, 5 classes), 10 training windows in slot 0 and 5 held in slot 1."""
    b = Board()
    b.upload_model()
    b.upload_data(0, *windows(10))
    b.upload_data(1, *windows(5, seed=1))
    yield b
    b.close()


def test_boot_event_and_an_empty_board(board):
    assert board.events == [P.Boot(0, *P_FW())]
    assert board.ask(P.GetStatus()) == P.Status(0, 0, 0, 0, FREE0, 0, 0, 1, 0, 0, 0)


def P_FW() -> tuple[int, int, int]:
    from device.nucleo.fwimage import FIRMWARE_VERSION

    return tuple(FIRMWARE_VERSION)  # type: ignore[return-value]


# --- HELLO, PING, INFO, STATUS ------------------------------------------------------------------------
HELLO_BAD = "board speaks ODL1 v1..2; host offered magic {} v{}..{}"


@pytest.mark.parametrize(
    "hello, proto",
    [
        (P.Hello(P.MAGIC, 1, 2), 2),
        (P.Hello(P.MAGIC, 1, 1), 1),
        (P.Hello(P.MAGIC, 0, 1), 1),
        (P.Hello(P.MAGIC, 2, 2), 2),
        (P.Hello(P.MAGIC, 2, 9), 2),
        (P.Hello(P.MAGIC, 0, 255), 2),
    ],
)
def test_hello_agrees_on_the_highest_common_version(board, hello, proto):
    assert board.ask(hello) == P.HelloRsp(P.MAGIC, proto, 0, 1024, *P_FW(), 1, 1_000_000)


@pytest.mark.parametrize(
    "hello",
    [
        P.Hello(b"ODL2", 1, 2),
        P.Hello(b"odl1", 1, 2),
        P.Hello(P.MAGIC, 3, 3),
        P.Hello(P.MAGIC, 3, 9),
        P.Hello(P.MAGIC, 0, 0),
        P.Hello(P.MAGIC, 2, 1),
    ],
)
def test_hello_without_a_common_version_is_refused(board, hello):
    text = HELLO_BAD.format(hello.magic.hex().upper(), hello.proto_min, hello.proto_max)
    assert board.ask(hello) == err(E.BAD_VERSION, T.HELLO, text, 2)


@pytest.mark.parametrize("data", [b"", b"\x00", bytes(range(256)) * 3 + bytes(252)])
def test_ping_echoes_its_data(board, data):
    assert board.ask(P.Ping(data)) == P.Pong(data)


def test_info_names_the_board_and_its_memory(board):
    info = P.Info(
        *P_FW(),
        2,
        0x461,
        0x1000,
        8_000_000,
        1_000_000,
        RAM,
        FREE0,
        1_048_576,
        0x6C,
        1,
        0,
        "NUCLEO-L496ZG",
        "STM32L496ZG",
        "LSM6DSO",
        "odl-firmware",  # its cost profile: the ODL firmware's, by default
    )
    assert board.ask(P.GetInfo()) == info
    board.upload_model()
    board.upload_data(0, *windows(4))
    free = FREE0 - 4 * PARAMS - (4 + 4 * 20 * 3 * 4)
    assert board.ask(P.GetInfo()).ram_free == free
    assert board.ask(P.SetClock(80_000_000)) == P.Clock(80_000_000)
    got = board.ask(P.GetInfo())
    assert (got.sysclk_hz, got.ram_free) == (80_000_000, free)


def test_status_counts_frames_errors_windows_and_ticks(loaded):
    b = loaded
    b.clock.t += 1.5
    b.emu.tx_dropped = 0x1_0000_0007  # counters are u32 on the wire
    n = b.emu.rx_frames + 1
    st = b.ask(P.GetStatus())
    free = FREE0 - 4 * PARAMS - (10 + 4 * 10 * 60) - (5 + 4 * 5 * 60)
    assert st == P.Status(0, 1, 0, 1_500_000, free, 10, 5, n, 0, 7, 0)
    b.emu.receive(b"\x05\x01\x02\x03\x04\x00")  # a frame with a bad CRC
    b._read()
    st = b.ask(P.GetStatus())
    assert (st.rx_frames, st.rx_errors) == (n + 1, 1)


# --- the frame layer of requests ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "type_, payload, reply",
    [
        (0x80, b"\x01", err(E.UNKNOWN_TYPE, 0x80, "type 0x80 is not a request")),
        (0xFF, b"", err(E.UNKNOWN_TYPE, 0xFF, "type 0xFF is not a request")),
        (0x00, b"", err(E.UNKNOWN_TYPE, 0x00, "type 0x00 is not a request")),
        (0x70, b"", err(E.UNKNOWN_TYPE, 0x70, "type 0x70 is not a request")),
        (0x6F, b"", err(E.UNKNOWN_TYPE, 0x6F, "unknown message type 0x6F")),
        (0x08, b"", err(E.UNKNOWN_TYPE, 0x08, "unknown message type 0x08")),
        (T.SET_CLOCK, b"\x01\x02", err(E.BAD_PAYLOAD, T.SET_CLOCK, "SetClock payload is 2 bytes, expected 4")),
        (T.GET_INFO, b"\x00", err(E.BAD_PAYLOAD, T.GET_INFO, "GetInfo payload is 1 bytes, expected 0")),
        (
            T.SENSOR_CONFIG,
            struct.pack("<IBBH", 1000, 2, 0, 0),
            err(
                E.BAD_PARAM,
                T.SENSOR_CONFIG,
                "odr_mhz 1000 is not an LSM6DSO rate (allowed mHz: 12500, 26000, 52000, 104000, 208000, 417000, "
                "833000, 1667000, 3333000, 6667000)",
                1000,
            ),
        ),
    ],
)
def test_frames_that_are_no_valid_request(board, type_, payload, reply):
    assert board.ask_raw(type_, payload) == reply


def test_a_repeated_frame_gets_the_same_answer_without_running_twice(board):
    first = board.send(T.DATA_CLEAR, b"\x00", seq=7)
    assert board.send(T.DATA_CLEAR, b"\x00", seq=7) == first
    blob = P.encode_dataset(*windows(2))
    begin = P.DataBegin(0, 0, 0, len(blob), crc32(blob)).pack()
    assert [P.decode_message(f) for f in board.send(T.DATA_BEGIN, begin, seq=8)] == [P.XferAck(0)]
    chunk = P.DataChunk(0, blob[:100]).pack()
    once = board.send(T.DATA_CHUNK, chunk, seq=9)
    assert [P.decode_message(f) for f in once] == [P.XferAck(100)]
    assert board.send(T.DATA_CHUNK, chunk, seq=9) == once  # the cache, not a duplicate chunk
    assert len(board.emu._xfer.buf) == 100
    # the same request under a new seq runs again (here: acknowledged as a duplicate chunk)
    assert [P.decode_message(f) for f in board.send(T.DATA_CHUNK, chunk, seq=10)] == [P.XferAck(100)]
    assert [f.seq for f in board.send(T.DATA_CHUNK, chunk, seq=10)] == [10]


def test_garbage_fault_answers_random_bytes_and_runs_nothing(board):
    board.emu.faults.garbage = True
    board.emu.receive(P.SetClock(80_000_000).encode(1))
    data = bytes(board.emu.pending())
    assert 1 <= len(data) < 64
    assert board.emu.sysclk_hz == 8_000_000
    board.emu.consume(len(data))
    board.emu.faults.garbage = False
    board.dec.reset()
    assert board.ask(P.SetClock(80_000_000)) == P.Clock(80_000_000)


# --- SET_CLOCK, SET_MARKER ----------------------------------------------------------------------------
@pytest.mark.parametrize("hz", [4_000_000, 5_000_000, 79_000_000, 80_000_000])
def test_set_clock_takes_whole_mhz_in_range(board, hz):
    assert board.ask(P.SetClock(hz)) == P.Clock(hz)
    assert board.emu.sysclk_hz == hz
    i = board.emu.current(np.array([board.clock.t]))[0]
    assert i == pytest.approx(board.emu.profile.i0_a + 28e-12 * hz)


@pytest.mark.parametrize("hz", [0, 3_000_000, 3_999_999, 4_000_001, 4_500_000, 79_999_999, 80_000_001, 81_000_000])
def test_set_clock_out_of_range_is_refused(board, hz):
    text = f"sysclk_hz {hz} must be a whole number of MHz in 4..80 MHz"
    assert board.ask(P.SetClock(hz)) == err(E.BAD_PARAM, T.SET_CLOCK, text, hz)
    assert board.emu.sysclk_hz == 8_000_000


def test_a_board_made_with_a_bad_clock_refuses_to_start():
    with pytest.raises(ValueError) as e:
        NucleoEmulator(Clock(), sysclk_hz=81e6)
    assert str(e.value) == "sysclk_hz 81000000 must be a whole number of MHz in 4..80 MHz"


@pytest.mark.parametrize("enable, pulse", [(1, 1), (0, 10_000), (1, 250), (2, 7)])
def test_set_marker(board, enable, pulse):
    assert board.ask(P.SetMarker(enable, 0, pulse)) == P.Ack(T.SET_MARKER)
    assert (board.emu.marker_enabled, board.emu.marker_pulse_s) == (bool(enable), pulse * 1e-6)


@pytest.mark.parametrize("pulse", [0, 10_001, 65_535])
def test_set_marker_out_of_range(board, pulse):
    want = err(E.BAD_PARAM, T.SET_MARKER, f"pulse_us {pulse} outside 1..10000", pulse)
    assert board.ask(P.SetMarker(0, 0, pulse)) == want
    assert (board.emu.marker_enabled, board.emu.marker_pulse_s) == (True, 100e-6)


# --- the sensor ---------------------------------------------------------------------------------------
def test_sensor_state_config_and_stream(board):
    assert board.ask(P.GetSensor()) == P.SensorState(26_000, 2, 0, 26, 61_000)
    assert board.ask(P.SensorConfig(104_000, 8)) == P.SensorState(104_000, 8, 0, 26, 244_000)
    assert board.ask(P.StreamStart(1)) == P.SensorState(104_000, 8, 1, 1, 244_000)
    assert board.emu.state == P.BoardState.STREAMING
    assert board.emu.streaming and board.emu._stream_t0 == board.clock.t
    board.clock.t += 0.5
    assert board.ask(P.SensorConfig(12_500, 16)) == P.SensorState(12_500, 16, 1, 1, 488_000)
    assert board.emu._stream_t0 == board.clock.t  # the sample clock restarts at the new rate
    board.clock.t += 1.0
    board.events.clear()
    assert board.ask(P.StreamStop()) == P.SensorState(12_500, 16, 0, 1, 488_000)
    assert [type(e) for e in board.events] == [P.Samples] * 13  # the blocks due before the stop are sent
    assert board.ask(P.StreamStop()) == P.SensorState(12_500, 16, 0, 1, 488_000)
    assert board.ask(P.StreamStart(160)) == P.SensorState(12_500, 16, 1, 160, 488_000)
    assert board.ask(P.GetSensor()) == P.SensorState(12_500, 16, 1, 160, 488_000)


def test_stream_stop_returns_to_the_sleep_current(board):
    idle = board.emu.current(np.array([board.clock.t]))[0]
    board.ask(P.StreamStart(26))
    board.clock.t += 0.1
    assert board.emu.current(np.array([board.clock.t]))[0] > idle
    board.ask(P.StreamStop())
    assert board.emu.current(np.array([board.clock.t]))[0] == idle


@pytest.mark.parametrize("fs", [0, 3, 32])
def test_sensor_config_refuses_a_full_scale(board, fs):
    want = err(E.BAD_PARAM, T.SENSOR_CONFIG, f"fs_g {fs} is not an LSM6DSO full scale (allowed: 2, 4, 8, 16)", fs)
    assert board.ask(P.SensorConfig(26_000, fs)) == want
    assert board.ask(P.GetSensor()) == P.SensorState(26_000, 2, 0, 26, 61_000)


@pytest.mark.parametrize("n", [0, 161, 1000])
def test_stream_start_block_len_out_of_range(board, n):
    assert board.ask(P.StreamStart(n)) == err(E.BAD_PARAM, T.STREAM_START, f"block_len {n} outside 1..160", n)
    assert not board.emu.streaming and board.emu.block_len == 26


def test_stream_start_without_a_trace(board):
    board.emu.trace = None
    text = "the emulated sensor has no recorded trace to play (pass trace=...)"
    assert board.ask(P.StreamStart(5)) == err(E.NO_DATA, T.STREAM_START, text)
    assert not board.emu.streaming and board.emu.block_len == 26


def test_activities(board):
    acts = ("walking", "jogging", "stairs", "sitting", "standing")
    assert board.ask(P.SimGetActivity()) == P.Activity("walking", acts)
    assert board.ask(P.SimSetActivity("sitting")) == P.Activity("sitting", acts)
    assert board.ask(P.SimGetActivity()) == P.Activity("sitting", acts)
    text = "activity 'flying' is not in the trace (available: walking, jogging, stairs, sitting, standing)"
    assert board.ask(P.SimSetActivity("flying")) == err(E.BAD_PARAM, T.SIM_SET_ACTIVITY, text)
    assert board.emu.sensor.activity == "sitting"


# --- RESET --------------------------------------------------------------------------------------------
def test_reset_acks_then_boots_with_cause_1(loaded):
    b = loaded
    b.ask(P.SetClock(20_000_000))
    b.events.clear()
    b.clock.t += 2.0
    assert b.ask(P.Reset()) == P.Ack(T.RESET)
    assert b.events == [P.Boot(1, *P_FW())]
    assert b.emu._t_boot == b.clock.t
    assert b.ask(P.GetStatus()) == P.Status(0, 0, 0, 0, FREE0, 0, 0, 1, 0, 0, 0)
    assert b.emu.sysclk_hz == 8_000_000


# --- model transfer -----------------------------------------------------------------------------------
def model_blob(arch: Arch = ARCH) -> tuple[bytes, int]:
    return P.encode_model(arch, Model(arch, seed=1).get_weights())


def test_model_upload_answers_model_info(board):
    blob, desc_len = model_blob()
    info = board.upload_model()
    assert desc_len == 16 + 32 * 11
    assert info == P.ModelInfo(11, 5, 2, 0, 20, 3, 0, 0, PARAMS, 4 * PARAMS, INFER, FREE0 - 4 * PARAMS, crc32(blob))
    assert board.emu.arch.params == PARAMS and board.emu.model is not None and board.emu._xfer is None
    assert board.emu._model_blob_crc == crc32(blob)
    assert board.ask(P.GetStatus()).model_loaded == 1


def test_model_info_of_a_rank_3_model_with_preprocessing(board):
    arch = Arch((10, 3, 1), R3_LAYERS, name="r3", preprocessing="gravity_rot_sup")
    blob, _ = model_blob(arch)
    info = board.upload_model(arch)
    mem = training_memory(arch, frozenset()).paper_bytes
    assert info == P.ModelInfo(
        4, 4, 3, 1, 10, 3, 1, 0, arch.params, 4 * arch.params, mem, FREE0 - 4 * arch.params, crc32(blob)
    )


@pytest.mark.parametrize(
    "total, desc",
    [(100, 15), (100, 0), (15, 16), (20, 21)],
)
def test_model_begin_with_inconsistent_lengths(loaded, total, desc):
    text = f"desc_len {desc} / total_len {total} inconsistent (descriptor >= 16 bytes, total >= descriptor)"
    assert loaded.ask(P.ModelBegin(total, desc, 0)) == err(E.BAD_PARAM, T.MODEL_BEGIN, text)
    assert loaded.emu.model is None and loaded.emu.arch is None and loaded.emu._xfer is None  # the old one is freed


@pytest.mark.parametrize("total, desc", [(16, 16), (16 + FREE0, 16), (400 + FREE0, 400)])
def test_model_begin_that_fits_exactly(board, total, desc):
    assert board.ask(P.ModelBegin(total, desc, 0x1234)) == P.XferAck(0)
    x = board.emu._xfer
    assert (x.kind, x.total, x.crc, x.desc_len, x.buf) == ("model", total, 0x1234, desc, bytearray())


def test_model_begin_beyond_the_free_ram(board):
    board.upload_data(0, *windows(4))
    free = FREE0 - (4 + 4 * 240)
    text = (
        f"model weights need {free + 1} B of RAM, {free} B free ({RAM} B SRAM - {RESERVE} B firmware - 964 B datasets)"
    )
    assert board.ask(P.ModelBegin(free + 1 + 16, 16, 0)) == err(E.OUT_OF_RAM, T.MODEL_BEGIN, text, free + 1, free)
    assert board.emu._xfer is None


def test_model_begin_replaces_the_model_and_the_weights_snapshot(loaded):
    b = loaded
    assert isinstance(b.ask(P.WeightsInfo()), P.WeightsMeta)
    assert b.ask(P.ModelBegin(100, 16, 0)) == P.XferAck(0)
    assert (b.emu.model, b.emu.arch, b.emu._weights_snapshot) == (None, None, None)
    assert b.ask(P.GetStatus()).model_loaded == 0


CHUNK_CASES = [
    # (what was sent before, offset, size) -> reply, bytes stored after
    (0, 0, 0, P.XferAck(0), 0),
    (0, 0, 1, P.XferAck(1), 1),
    (100, 100, 1020, P.XferAck(1120), 1120),
    (100, 0, 100, P.XferAck(100), 100),  # a duplicate of what is stored
    (100, 99, 1, P.XferAck(100), 100),
    (100, 50, 50, P.XferAck(100), 100),
    (100, 100, 0, P.XferAck(100), 100),
    (100, 99, 2, err(E.BAD_OFFSET, 0, "chunk at offset 99, expected 100", 100, 99), 100),
    (100, 101, 10, err(E.BAD_OFFSET, 0, "chunk at offset 101, expected 100", 100, 101), 100),
    (0, 1, 10, err(E.BAD_OFFSET, 0, "chunk at offset 1, expected 0", 0, 1), 0),
    (100, 0, 101, err(E.BAD_OFFSET, 0, "chunk at offset 0, expected 100", 100, 0), 100),
]


@pytest.mark.parametrize("kind", ["data", "model"])
@pytest.mark.parametrize("before, offset, size, reply, after", CHUNK_CASES)
def test_chunks_in_and_out_of_order(board, kind, before, offset, size, reply, after):
    total = 3000
    if kind == "model":
        begin, chunk, req = P.ModelBegin(total, 2000, 0), P.ModelChunk, T.MODEL_CHUNK
    else:
        begin, chunk, req = P.DataBegin(0, 0, 0, total, 0), P.DataChunk, T.DATA_CHUNK
    board.ask(begin)
    data = bytes(range(256)) * 12
    if before:
        assert board.ask(chunk(0, data[:before])) == P.XferAck(before)
    got = board.ask(chunk(offset, data[offset : offset + size]))
    if isinstance(reply, P.Error):
        reply = P.Error(reply.code, req, 0, reply.arg0, reply.arg1, reply.message)
    assert got == reply
    assert bytes(board.emu._xfer.buf) == data[:after]


@pytest.mark.parametrize("kind", ["data", "model"])
def test_a_chunk_beyond_the_total_ends_the_transfer(board, kind):
    if kind == "model":
        begin, chunk, req = P.ModelBegin(1100, 1090, 0), P.ModelChunk, T.MODEL_CHUNK
    else:
        begin, chunk, req = P.DataBegin(0, 0, 0, 1100, 0), P.DataChunk, T.DATA_CHUNK
    board.ask(begin)
    board.ask(chunk(0, bytes(1000)))
    assert board.ask(chunk(1000, bytes(100))) == P.XferAck(1100) if kind == "data" else True
    if kind == "model":
        board.ask(P.ModelBegin(1100, 1090, 0))
        board.ask(chunk(0, bytes(1000)))
    else:
        board.ask(begin)
        board.ask(chunk(0, bytes(1000)))
    text = "chunk ends at 1101, beyond the announced 1100 bytes"
    assert board.ask(chunk(1000, bytes(101))) == err(E.TOO_LARGE, req, text, 1101, 1100)
    assert board.emu._xfer is None
    name = kind.upper()
    want = err(E.BAD_STATE, req, f"{kind} chunk without a {name}_BEGIN")
    assert board.ask(chunk(1000, bytes(1))) == want


@pytest.mark.parametrize(
    "begin, chunk, req, text",
    [
        (None, P.ModelChunk(0, b"x"), T.MODEL_CHUNK, "model chunk without a MODEL_BEGIN"),
        (None, P.DataChunk(0, b"x"), T.DATA_CHUNK, "data chunk without a DATA_BEGIN"),
        (P.DataBegin(0, 0, 0, 10, 0), P.ModelChunk(0, b"x"), T.MODEL_CHUNK, "model chunk without a MODEL_BEGIN"),
        (P.ModelBegin(100, 16, 0), P.DataChunk(0, b"x"), T.DATA_CHUNK, "data chunk without a DATA_BEGIN"),
        (None, P.ModelEnd(), T.MODEL_END, "MODEL_END without a MODEL_BEGIN"),
        (None, P.DataEnd(), T.DATA_END, "DATA_END without a DATA_BEGIN"),
        (P.DataBegin(0, 0, 0, 10, 0), P.ModelEnd(), T.MODEL_END, "MODEL_END without a MODEL_BEGIN"),
        (P.ModelBegin(100, 16, 0), P.DataEnd(), T.DATA_END, "DATA_END without a DATA_BEGIN"),
    ],
)
def test_chunk_or_end_without_its_begin(board, begin, chunk, req, text):
    if begin is not None:
        assert board.ask(begin) == P.XferAck(0)
    assert board.ask(chunk) == err(E.BAD_STATE, req, text)


def test_the_descriptor_is_parsed_when_its_last_byte_arrives(board):
    blob, desc_len = model_blob()
    board.ask(P.ModelBegin(len(blob), desc_len, crc32(blob)))
    assert board.ask(P.ModelChunk(0, blob[: desc_len - 1])) == P.XferAck(desc_len - 1)
    assert board.emu._xfer.arch is None
    assert board.ask(P.ModelChunk(desc_len - 1, blob[desc_len - 1 : desc_len])) == P.XferAck(desc_len)
    assert P.encode_arch(board.emu._xfer.arch) == P.encode_arch(ARCH)


def bad_blob(desc: bytes, weight_bytes: int) -> bytes:
    return desc + bytes(weight_bytes)


def desc_of(arch: Arch) -> bytes:
    return P.encode_arch(arch)


def test_descriptor_errors_end_the_transfer(board):
    desc = bytearray(desc_of(ARCH))
    desc[16 + 32 * 3] = 99  # layer 3: an unknown kind
    blob = bytes(desc) + bytes(4 * PARAMS)
    board.ask(P.ModelBegin(len(blob), len(desc), 0))
    got = board.ask(P.ModelChunk(0, blob[:1000]))
    assert got == err(E.UNKNOWN_LAYER, T.MODEL_CHUNK, "layer 3: unknown layer kind code 99", 3, 99)
    assert board.emu._xfer is None


def test_descriptor_header_error_names_the_descriptor(board):
    desc = bytearray(desc_of(ARCH))
    desc[:4] = b"XXXX"
    board.ask(P.ModelBegin(len(desc) + 4 * PARAMS, len(desc), 0))
    got = board.ask(P.ModelChunk(0, bytes(desc)))
    assert got.code == E.BAD_PAYLOAD and got.request == T.MODEL_CHUNK
    assert got.message.startswith("architecture descriptor: ")
    assert board.emu._xfer is None


def _stride(desc: bytearray) -> None:
    struct.pack_into("<H", desc, 16 + 32 * 3 + 10, 2)  # layer 3 (conv2): stride 2


def _no_layers(desc: bytearray) -> None:
    desc[5] = 0
    del desc[16:]


def _softmax_first(desc: bytearray) -> None:
    desc[16 + 32 * 1] = 5  # layer 1 (relu1) becomes a softmax


@pytest.mark.parametrize(
    "change, text, arg0, arg1",
    [
        (_stride, "unsupported network: layer 'conv2' (conv1d): only stride 1 is supported, got stride 2", 3, 1),
        (_no_layers, "unsupported network: 'model' has no layers", 0xFFFFFFFF, 0),
        (
            _softmax_first,
            "unsupported network: layer 'relu1': softmax is only supported as the last layer (it is fused with the "
            "cross-entropy loss)",
            1,
            5,
        ),
    ],
)
def test_a_network_the_engine_cannot_run_names_its_layer(board, change, text, arg0, arg1):
    desc = bytearray(desc_of(ARCH))
    change(desc)
    board.ask(P.ModelBegin(len(desc) + 4 * PARAMS, len(desc), 0))
    assert board.ask(P.ModelChunk(0, bytes(desc))) == err(E.UNKNOWN_LAYER, T.MODEL_CHUNK, text, arg0, arg1)
    assert board.emu._xfer is None


@pytest.mark.parametrize("delta", [-4, 4, -1])
def test_weight_bytes_that_do_not_match_the_parameters(board, delta):
    desc = desc_of(ARCH)
    w = 4 * PARAMS + delta
    board.ask(P.ModelBegin(len(desc) + w, len(desc), 0))
    text = f"blob carries {w} weight bytes, the architecture has {PARAMS} float32 parameters ({4 * PARAMS} B)"
    assert board.ask(P.ModelChunk(0, desc)) == err(E.BAD_PARAM, T.MODEL_CHUNK, text, w, 4 * PARAMS)
    assert board.emu._xfer is None


def test_inference_memory_counts_the_stored_datasets(board):
    # a dataset that leaves the weights room but not the activations
    board.upload_data(0, *windows(1))
    data = 1 + 3 + 240  # label + pad + 60 floats
    board.emu.slots[0].nbytes = RAM - RESERVE - INFER + 1  # as if the slot held that much
    data = board.emu.slots[0].nbytes
    desc = desc_of(ARCH)
    board.emu.slots[0].nbytes = 0
    board.ask(P.ModelBegin(len(desc) + 4 * PARAMS, len(desc), 0))
    board.emu.slots[0].nbytes = data
    need = INFER + RESERVE + data
    text = (
        f"model needs {need} B for inference (weights + activations + {RESERVE} B firmware + {data} B datasets), "
        f"SRAM is {RAM} B"
    )
    assert board.ask(P.ModelChunk(0, desc)) == err(E.OUT_OF_RAM, T.MODEL_CHUNK, text, need, RAM)
    board.emu.slots[0].nbytes = data - 1
    board.ask(P.ModelBegin(len(desc) + 4 * PARAMS, len(desc), 0))
    assert board.ask(P.ModelChunk(0, desc)) == P.XferAck(len(desc))


def test_model_end_incomplete_or_with_a_bad_crc(board):
    blob, desc_len = model_blob()
    board.ask(P.ModelBegin(len(blob), desc_len, crc32(blob) ^ 1))
    for off, part in P.chunks(blob[:-1]):
        board.ask(P.ModelChunk(off, part))
    n = len(blob) - 1
    text = f"model transfer incomplete: {n} of {len(blob)} bytes"
    assert board.ask(P.ModelEnd()) == err(E.BAD_OFFSET, T.MODEL_END, text, n, len(blob))
    assert board.emu._xfer is None
    board.ask(P.ModelBegin(len(blob), desc_len, crc32(blob) ^ 1))
    for off, part in P.chunks(blob):
        board.ask(P.ModelChunk(off, part))
    c = crc32(blob)
    text = f"model blob CRC-32 0x{c:08X} does not match announced 0x{c ^ 1:08X}"
    assert board.ask(P.ModelEnd()) == err(E.BLOB_CRC, T.MODEL_END, text, c ^ 1, c)
    assert board.emu._xfer is None and board.emu.model is None


def test_model_end_before_the_descriptor_is_complete(board):
    board.ask(P.ModelBegin(16, 16, 0))
    assert board.ask(P.ModelEnd()) == err(E.BAD_OFFSET, T.MODEL_END, "model transfer incomplete: 0 of 16 bytes", 0, 16)


# --- datasets -----------------------------------------------------------------------------------------
def test_data_upload_appends_and_answers_data_state(board):
    x, y = windows(6)
    assert board.upload_data(1, x, y) == P.DataState(1, 0, 6, 20, 3, 0, 6 + 6 * 240, FREE0 - 6 - 6 * 240)
    x2, y2 = windows(3, seed=5)
    got = board.upload_data(1, x2, y2, P.DType.I16)
    held = 6 + 6 * 240 + 3 + 3 * 120
    assert got == P.DataState(1, 0, 9, 20, 3, 1, held, FREE0 - held)
    s = board.emu.slots[1]
    assert s.x.shape == (9, 20, 3) and list(s.y) == list(y) + list(y2)
    assert 0 not in board.emu.slots
    assert board.ask(P.GetStatus()).n_held == 9


@pytest.mark.parametrize("slot", [2, 254, 255])
def test_data_begin_refuses_a_slot(board, slot):
    text = f"slot {slot} is not 0 (training) or 1 (held)"
    assert board.ask(P.DataBegin(slot, 0, 0, 10, 0)) == err(E.BAD_PARAM, T.DATA_BEGIN, text, slot)
    assert board.emu._xfer is None


def test_data_begin_beyond_the_free_ram(loaded):
    free = loaded.emu.ram_free
    assert loaded.ask(P.DataBegin(1, 0, 0, free, 7)) == P.XferAck(0)
    x = loaded.emu._xfer
    assert (x.kind, x.total, x.crc, x.slot) == ("data", free, 7, 1)
    text = f"dataset of {free + 1} B does not fit: {free} B free"
    assert loaded.ask(P.DataBegin(0, 0, 0, free + 1, 0)) == err(E.OUT_OF_RAM, T.DATA_BEGIN, text, free + 1, free)


def test_data_end_incomplete_bad_crc_and_wrong_shape(board):
    board.upload_data(0, *windows(2))
    blob = P.encode_dataset(*windows(2, T_=10))
    board.ask(P.DataBegin(0, 0, 0, len(blob), crc32(blob) ^ 2))
    board.ask(P.DataChunk(0, blob[:-1]))
    n = len(blob) - 1
    text = f"dataset transfer incomplete: {n} of {len(blob)} bytes"
    assert board.ask(P.DataEnd()) == err(E.BAD_OFFSET, T.DATA_END, text, n, len(blob))
    assert board.emu._xfer is None
    board.ask(P.DataBegin(0, 0, 0, len(blob), crc32(blob) ^ 2))
    board.ask(P.DataChunk(0, blob))
    c = crc32(blob)
    text = f"dataset blob CRC-32 0x{c:08X} does not match announced 0x{c ^ 2:08X}"
    assert board.ask(P.DataEnd()) == err(E.BLOB_CRC, T.DATA_END, text, c ^ 2, c)
    board.ask(P.DataBegin(0, 0, 0, len(blob), crc32(blob)))
    board.ask(P.DataChunk(0, blob))
    text = "windows of shape (10, 3) cannot join slot 0 holding (20, 3)"
    assert board.ask(P.DataEnd()) == err(E.BAD_PARAM, T.DATA_END, text)
    assert board.emu._xfer is None and len(board.emu.slots[0].y) == 2
    assert board.upload_data(1, *windows(2, T_=10)).n_windows == 2  # the other slot takes them


def test_a_slot_holds_at_most_65535_windows(board):
    x = np.zeros((65_000, 1, 1), np.float32)
    assert board.upload_data(0, x, np.zeros(65_000, int), P.DType.I16).n_windows == 65_000
    x2 = np.zeros((535, 1, 1), np.float32)
    got = board.upload_data(0, x2, np.zeros(535, int), P.DType.I16)
    assert got == P.DataState(0, 0, 65_535, 1, 1, 1, 3 * 65_535, FREE0 - 3 * 65_535)
    text = "slot 0 would hold 65536 windows (max 65535)"
    assert board.upload_data(0, x2[:1], [0], P.DType.I16) == err(E.TOO_LARGE, T.DATA_END, text, 65_536, 65_535)
    assert len(board.emu.slots[0].y) == 65_535


@pytest.mark.parametrize(
    "slot, left",
    [(0, (1,)), (1, (0,)), (255, ())],
)
def test_data_clear(loaded, slot, left):
    got = loaded.ask(P.DataClear(slot))
    free = loaded.emu.ram_free
    shown = 0 if slot == 255 else slot
    assert got == P.DataState(shown, 0, 0, 0, 0, 0, 0, free)
    assert tuple(loaded.emu.slots) == left
    assert free == FREE0 - 4 * PARAMS - sum(s.nbytes for s in loaded.emu.slots.values())


def test_data_clear_of_an_empty_slot_and_a_bad_one(board):
    assert board.ask(P.DataClear(1)) == P.DataState(1, 0, 0, 0, 0, 0, 0, FREE0)
    for slot in (2, 254):
        text = f"slot {slot} is not 0 (training), 1 (held) or 255 (both)"
        assert board.ask(P.DataClear(slot)) == err(E.BAD_PARAM, T.DATA_CLEAR, text, slot)


# --- weights ------------------------------------------------------------------------------------------
def test_weights_info_and_read(loaded):
    b = loaded
    blob = P.encode_weights(ARCH, b.emu.model.get_weights())
    assert len(blob) == 4 * PARAMS
    assert b.ask(P.WeightsInfo()) == P.WeightsMeta(4 * PARAMS, crc32(blob), 8, 0)
    assert b.ask(P.WeightsRead(0, 1)) == P.WeightsData(0, blob[:1])
    assert b.ask(P.WeightsRead(5, 1020)) == P.WeightsData(5, blob[5:1025])
    assert b.ask(P.WeightsRead(len(blob) - 3, 1020)) == P.WeightsData(len(blob) - 3, blob[-3:])
    assert b.ask(P.WeightsRead(len(blob), 1)) == P.WeightsData(len(blob), b"")


@pytest.mark.parametrize("offset, length", [(40_133, 1), (0, 0), (0, 1021), (100, 65_535), (0xFFFFFFFF, 10)])
def test_weights_read_out_of_range(loaded, offset, length):
    loaded.ask(P.WeightsInfo())
    text = f"read of {length} B at {offset} outside the 40132-byte blob (length 1..1020)"
    want = err(E.BAD_PARAM, T.WEIGHTS_READ, text, offset, length)
    assert loaded.ask(P.WeightsRead(offset, length)) == want


def test_weights_without_a_model_or_before_info(board):
    assert board.ask(P.WeightsInfo()) == err(E.NO_MODEL, T.WEIGHTS_INFO, "no model loaded")
    want = err(E.BAD_STATE, T.WEIGHTS_READ, "WEIGHTS_READ before WEIGHTS_INFO")
    assert board.ask(P.WeightsRead(0, 4)) == want
    board.upload_model()
    assert board.ask(P.WeightsRead(0, 4)) == want


# --- rounds and evaluation: refusals ------------------------------------------------------------------
def start(b: Board, **kw: Any) -> P.Message:
    args = dict(mode=P.TrainMode.FULL, flags=0, epochs=1, batch=4, lr=0.01)
    args.update(kw)
    return b.ask(P.TrainStart(**args))


def test_train_start_answers_round_info_and_is_busy(loaded):
    b = loaded
    info = start(b, epochs=2, batch=4)
    mem = training_memory(
        ARCH, frozenset(l.name for l in ARCH.layers if l.name in ("conv1", "conv2", "dense1", "dense2"))
    ).paper_bytes
    assert isinstance(info, P.RoundInfo)
    assert (info.round_id, info.batches_per_epoch, info.total_batches, info.mem_bytes, info.ram_total) == (
        1,
        3,
        6,
        mem,
        RAM,
    )
    assert b.emu.state == P.BoardState.TRAINING
    assert b.ask(P.GetStatus()).round_id == 1
    busy = "round 1 is running"
    for req, what in [
        (P.SetClock(80_000_000), "change the clock"),
        (P.StreamStart(26), "start the sensor stream"),
        (P.ModelBegin(100, 16, 0), "replace the model"),
        (P.DataClear(0), "clear the datasets"),
        (P.DataBegin(0, 0, 0, 10, 0), "upload data"),
        (P.WeightsInfo(), "read the weights"),
        (P.TrainStart(), "start a round"),
        (P.Evaluate(1), "evaluate"),
    ]:
        assert b.ask(req) == err(E.BUSY, req.TYPE, f"cannot {what}: {busy}", 1)
    assert b.emu.sysclk_hz == 8_000_000 and b.emu.model is not None and set(b.emu.slots) == {0, 1}
    assert b.ask(P.TrainAbort()) == P.Ack(T.TRAIN_ABORT)
    assert b.emu._job.abort.is_set() and b.emu._job.abort_t == b.clock.t
    b.close()
    assert b.events[-1].status == P.RoundStatus.ABORTED
    assert b.ask(P.TrainAbort()) == P.Ack(T.TRAIN_ABORT)  # nothing running: acknowledged all the same


def test_evaluate_acks_and_is_busy(loaded):
    b = loaded
    assert b.ask(P.Evaluate(1)) == P.Ack(T.EVALUATE)
    assert b.emu.state == P.BoardState.EVALUATING
    want = err(E.BUSY, T.SET_CLOCK, "cannot change the clock: evaluation 1 is running", 1)
    assert b.ask(P.SetClock(80_000_000)) == want
    assert b.ask(P.TrainAbort()) == P.Ack(T.TRAIN_ABORT)  # aborts rounds, not evaluations
    assert not b.emu._job.abort.is_set()
    b.clock.t += 10.0
    assert b.emu.wait_idle(10)
    b._read()
    res = b.events[-1]
    assert isinstance(res, P.EvalResult) and (res.slot, res.n_classes, res.n) == (1, 5, 5)
    assert b.ask(P.Evaluate(0)) == P.Ack(T.EVALUATE)
    assert b.ask(P.GetStatus()).round_id == 2
    b.clock.t += 10.0
    assert b.emu.wait_idle(10)
    b._read()
    assert (b.events[-1].slot, b.events[-1].n) == (0, 10)


def test_round_and_evaluation_without_a_model(board):
    board.upload_data(0, *windows(4))
    assert start(board) == err(E.NO_MODEL, T.TRAIN_START, "no model loaded: upload one first")
    assert board.ask(P.Evaluate(0)) == err(E.NO_MODEL, T.EVALUATE, "no model loaded")


def test_train_while_streaming(loaded):
    loaded.ask(P.StreamStart(26))
    text = "cannot train while the sensor streams: send STREAM_STOP first"
    assert start(loaded) == err(E.BUSY, T.TRAIN_START, text)
    assert loaded.emu._job is None


@pytest.mark.parametrize("slot", [2, 255])
def test_evaluate_refuses_a_slot(loaded, slot):
    assert loaded.ask(P.Evaluate(slot)) == err(E.BAD_PARAM, T.EVALUATE, f"slot {slot} is not 0 or 1", slot)


def test_evaluate_refuses_more_than_22_classes(board):
    arch = Arch((4, 3), (Layer("flatten", "f"), Layer("dense", "d", units=23), Layer("softmax", "s")))
    board.upload_model(arch)
    board.upload_data(1, *windows(2, T_=4, classes=23))
    text = "23 classes: the confusion matrix would not fit one frame (max 22)"
    assert board.ask(P.Evaluate(1)) == err(E.TOO_LARGE, T.EVALUATE, text)
    arch = Arch((4, 3), (Layer("flatten", "f"), Layer("dense", "d", units=22), Layer("softmax", "s")))
    board.upload_model(arch)
    board.upload_data(1, *windows(2, T_=4, classes=22))
    assert board.ask(P.Evaluate(1)) == P.Ack(T.EVALUATE)


@pytest.mark.parametrize("slot, name", [(0, "training"), (1, "held")])
def test_a_slot_for_the_model_must_hold_windows_of_its_shape_and_classes(board, slot, name):
    board.upload_model()
    run = (lambda: start(board)) if slot == 0 else (lambda: board.ask(P.Evaluate(1)))
    req = T.TRAIN_START if slot == 0 else T.EVALUATE
    assert run() == err(E.NO_DATA, req, f"slot {slot} ({name} set) is empty", slot)
    board.upload_data(slot, *windows(2, T_=21))
    text = f"slot {slot} windows are (21, 3), the model takes (20, 3)"
    assert run() == err(E.BAD_PARAM, req, text)
    board.ask(P.DataClear(slot))
    x, _ = windows(3)
    board.upload_data(slot, x, [0, 5, 4])
    text = f"slot {slot} has label 5, the model has 5 classes"
    assert run() == err(E.BAD_PARAM, req, text, 5, 5)
    board.ask(P.DataClear(slot))
    board.upload_data(slot, x, [0, 4, 4])
    assert isinstance(run(), P.RoundInfo if slot == 0 else P.Ack)


def test_a_rank_3_model_takes_windows_of_t_by_c(board):
    arch = Arch((10, 3, 1), R3_LAYERS, name="r3")
    board.upload_model(arch)
    board.upload_data(1, *windows(2, T_=10, classes=4))
    assert board.ask(P.Evaluate(1)) == P.Ack(T.EVALUATE)
    board.close()
    board.ask(P.DataClear(1))
    board.upload_data(1, np.zeros((2, 10, 1), np.float32), [0, 1])
    text = "slot 1 windows are (10, 1), the model takes (10, 3, 1)"
    assert board.ask(P.Evaluate(1)) == err(E.BAD_PARAM, T.EVALUATE, text)


@pytest.mark.parametrize(
    "kw, text",
    [
        (dict(epochs=0, warmup_epochs=0), "epochs 0 + warmup 0 must be >= 1 and batch 4 >= 1"),
        (dict(batch=0), "epochs 1 + warmup 0 must be >= 1 and batch 0 >= 1"),
        (dict(lr=-0.001), "lr -0.0010000000474974513 outside 0..10"),
        (dict(lr=10.5), "lr 10.5 outside 0..10"),
        (dict(lr=float("nan")), "lr nan outside 0..10"),
        (dict(lr=float("inf")), "lr inf outside 0..10"),
        (dict(warmup_lr=11.0), "warmup_lr 11.0 outside 0..10"),
        (dict(warmup_lr=-1.0), "warmup_lr -1.0 outside 0..10"),
    ],
)
def test_train_start_parameters_out_of_range(loaded, kw, text):
    assert start(loaded, **kw) == err(E.BAD_PARAM, T.TRAIN_START, text)
    assert loaded.emu._job is None


@pytest.mark.parametrize(
    "kw",
    [
        dict(epochs=1, warmup_epochs=0),
        dict(epochs=0, warmup_epochs=1),
        dict(lr=0.0),
        dict(lr=10.0),
        dict(warmup_lr=10.0),
        dict(batch=1),
    ],
)
def test_train_start_parameters_at_their_limits(loaded, kw):
    assert isinstance(start(loaded, **kw), P.RoundInfo)


@pytest.mark.parametrize(
    "mode, mask, text, arg0",
    [
        (4, 0, "training mode 4 is not 0 full, 1 tl, 2 last or 3 mask", 4),
        (255, 0, "training mode 255 is not 0 full, 1 tl, 2 last or 3 mask", 255),
        (3, 0, "layer_mask 0x0 selects no layer or layers beyond 11", 3),
        (3, 1 << 11, "layer_mask 0x800 selects no layer or layers beyond 11", 3),
        (3, 1 | 1 << 11, "layer_mask 0x801 selects no layer or layers beyond 11", 3),
        (3, 1 << 1, "layer 'relu1' (relu) has no parameters to train", 3),
    ],
)
def test_train_start_refuses_a_trainable_set(loaded, mode, mask, text, arg0):
    assert start(loaded, mode=mode, layer_mask=mask) == err(E.BAD_PARAM, T.TRAIN_START, text, arg0)


@pytest.mark.parametrize(
    "mode, mask, trained",
    [
        (P.TrainMode.FULL, 0, {"conv1", "conv2", "dense1", "dense2"}),
        (P.TrainMode.TL, 0, {"dense1", "dense2"}),
        (P.TrainMode.LAST, 0, {"dense2"}),
        (P.TrainMode.MASK, 1 << 9, {"dense2"}),
        (P.TrainMode.MASK, 1 | 1 << 10, {"conv1"}),
        (P.TrainMode.MASK, 1 << 3 | 1 << 7, {"conv2", "dense1"}),
    ],
)
def test_train_start_trains_the_layers_its_mode_names(loaded, mode, mask, trained):
    if mode == P.TrainMode.MASK and mask >> 10:
        text = "layer 'softmax' (softmax) has no parameters to train"
        assert start(loaded, mode=mode, layer_mask=mask) == err(E.BAD_PARAM, T.TRAIN_START, text, 3)
        return
    info = start(loaded, mode=mode, layer_mask=mask)
    assert info.mem_bytes == training_memory(ARCH, frozenset(trained)).paper_bytes
    assert loaded.emu._job is not None


# --- a round's plan: ROUND_INFO, the batches it runs, D7 and the current ---------------------------------
FULL = frozenset({"conv1", "conv2", "dense1", "dense2"})
LAST = frozenset({"dense2"})


def _plan(n: int, batch: int, warmup: int, epochs: int, shuffle: bool, seed: int) -> list[tuple]:
    """(phase, epoch, index, per_epoch, window indices, trained layers, lr) of every batch, as §5.4 says."""
    from device.nucleo.shuffle import epoch_order

    per_epoch = -(-n // batch)
    phases = [(0, e, LAST, 0.05) for e in range(warmup)] + [(1, e, FULL, 0.01) for e in range(epochs)]
    out = []
    for g, (phase, e, names, lr) in enumerate(phases):
        order = epoch_order(seed, g, n) if shuffle else np.arange(n)
        for i in range(per_epoch):
            out.append((phase, e, i, per_epoch, order[i * batch : (i + 1) * batch], names, lr))
    return out


@pytest.mark.parametrize("shuffle, sysclk", [(True, 8_000_000), (False, 26_000_000)])
def test_a_round_runs_the_plan_it_announces(loaded, shuffle, sysclk):
    from estimator.core import time_per_batch_s
    from estimator.profiles import get_profile

    b = loaded
    b.ask(P.SetClock(sysclk))
    b.events.clear()
    b.clock.t += 1.0
    t0 = b.clock.t
    boot = b.emu._t_boot
    info = start(b, flags=int(shuffle), epochs=2, warmup_epochs=1, batch=4, lr=0.01, warmup_lr=0.05, seed=11)
    prof = get_profile("odl-firmware")  # the emulated board's default
    plan = _plan(10, 4, 1, 2, shuffle, 11)
    durations = [time_per_batch_s(ARCH, names, len(idx), prof, float(sysclk)) for *_, idx, names, _ in plan]
    ends = t0 + np.cumsum(durations)
    starts = np.concatenate([[t0], ends[:-1]])
    cycles = [int(round(d * sysclk)) for d in durations]
    mem = max(training_memory(ARCH, FULL).paper_bytes, training_memory(ARCH, LAST).paper_bytes)
    tick = lambda t: int(round((t - boot) * 1e6))  # noqa: E731
    assert info == P.RoundInfo(1, 3, 9, mem, RAM, sum(cycles), tick(ends[-1]) - tick(t0))
    np.testing.assert_array_equal(b.emu.d7_edges(t0 - 1, ends[-1] + 1), [t0, *ends])
    run = prof.current_a(float(sysclk))
    idle = prof.i0_a + 28e-12 * sysclk
    got = b.emu.current(np.array([t0 - 1e-3, t0, (t0 + ends[-1]) / 2, ends[-1] - 1e-6, ends[-1] + 1e-6]))
    np.testing.assert_allclose(got, [idle, run, run, run, idle])
    # the reference engine, trained on the same windows in the same order, gives every batch's loss
    model = Model(ARCH, Model(ARCH, seed=1).get_weights(), seed=3)
    x, y = b.emu.slots[0].x.reshape(10, 20, 3), b.emu.slots[0].y
    losses = [float(np.float32(model.train_batch(x[idx], y[idx], lr, names).loss)) for *_, idx, names, lr in plan]
    b.clock.t = ends[-1] + 1
    assert b.emu.wait_idle(10)
    b._read()
    want = [
        P.BatchReport(1, ph, 0, e, i, pe, len(idx), loss, tick(s), tick(t), c)
        for (ph, e, i, pe, idx, _, _), loss, s, t, c in zip(plan, losses, starts, ends, cycles)
    ]
    assert b.events[:-1] == want
    assert b.events[-1].batches_done == 9 and b.events[-1].cycles == sum(cycles)


def test_a_round_without_the_marker_raises_no_d7_edge(loaded):
    b = loaded
    assert b.ask(P.SetMarker(0, 0, 100)) == P.Ack(T.SET_MARKER)
    t0 = b.clock.t
    start(b)
    assert len(b.emu.d7_edges(t0 - 1, t0 + 1e6)) == 0


def test_a_round_with_validation_plans_its_passes(loaded):
    from estimator.core import time_per_batch_s, time_per_sample_s
    from estimator.profiles import get_profile

    b = loaded
    b.events.clear()
    t0 = b.clock.t
    boot = b.emu._t_boot
    info = start(b, flags=0, epochs=2, warmup_epochs=0, batch=4, n_val=3)
    prof = get_profile("odl-firmware")  # the emulated board's default
    d_val = 3 * time_per_sample_s(ARCH, frozenset(), prof, 8e6)
    d = [time_per_batch_s(ARCH, FULL, k, prof, 8e6) for k in (4, 3)]
    durations = [d_val, *d, d_val, *d, d_val]
    ends = t0 + np.cumsum(durations)
    cycles = [int(round(x * 8e6)) for x in durations]
    tick = lambda t: int(round((t - boot) * 1e6))  # noqa: E731
    mem = b.emu.round_memory_bytes(FULL, False, P.TrainStart(n_val=3, epochs=2))
    assert info == P.RoundInfo(1, 2, 4, mem, RAM, sum(cycles), tick(ends[-1]) - tick(t0))
    np.testing.assert_array_equal(b.emu.d7_edges(t0 - 1, ends[-1] + 1), [t0, *ends])
    b.clock.t = ends[-1] + 1
    assert b.emu.wait_idle(10)
    b._read()
    kinds = [(type(e).__name__, e.epoch, getattr(e, "n", getattr(e, "n_samples", None))) for e in b.events[:-1]]
    assert kinds == [
        ("ValReport", 0, 3),
        ("BatchReport", 0, 4),
        ("BatchReport", 0, 3),
        ("ValReport", 1, 3),
        ("BatchReport", 1, 4),
        ("BatchReport", 1, 3),
        ("ValReport", 2, 3),
    ]
    assert [e.cycles for e in b.events[:-1]] == cycles


def test_round_ids_count_up_and_wrap(loaded):
    b = loaded
    b.emu._round_id = 0xFFFE
    assert start(b).round_id == 0xFFFF
    b.close()
    assert start(b).round_id == 0
    b.close()
    assert b.ask(P.Evaluate(1)) == P.Ack(T.EVALUATE)
    assert b.emu._job.round_id == 1


def test_an_evaluation_takes_the_estimated_time_at_run_current(loaded):
    from estimator.core import time_per_sample_s
    from estimator.profiles import get_profile

    b = loaded
    b.ask(P.SetClock(16_000_000))
    prof = get_profile("odl-firmware")  # the emulated board's default
    t0 = b.clock.t
    d = 5 * time_per_sample_s(ARCH, frozenset(), prof, 16e6)
    assert b.ask(P.Evaluate(1)) == P.Ack(T.EVALUATE)
    run, idle = prof.current_a(16e6), prof.i0_a + 28e-12 * 16e6
    np.testing.assert_allclose(b.emu.current(np.array([t0, t0 + d - 1e-6, t0 + d])), [run, run, idle])
    b.clock.t = t0 + d - 1e-6
    import time

    time.sleep(0.05)
    assert b.emu._job is not None  # still evaluating until its end
    b.clock.t = t0 + d
    assert b.emu.wait_idle(10)
    b._read()
    res = b.events[-1]
    assert (res.slot, res.n_classes, res.n, res.cycles) == (1, 5, 5, int(round(d * 16e6)))
    model = Model(ARCH, Model(ARCH, seed=1).get_weights(), seed=3)
    probs = model.predict(b.emu.slots[1].x.reshape(5, 20, 3))
    conf = np.zeros((5, 5), int)
    np.add.at(conf, (b.emu.slots[1].y, probs.argmax(axis=1)), 1)
    np.testing.assert_array_equal(res.matrix, conf)


# --- memory boundaries, long names, a one-window slot ---------------------------------------------------
SMALL = Arch(
    (20, 3),
    (
        Layer("conv1d", "c", filters=2, kernel=3),
        Layer("relu", "r"),
        Layer("flatten", "f"),
        Layer("dense", "d", units=30),
        Layer("softmax", "s"),
    ),
)


@pytest.mark.parametrize(
    "arch, kw",
    [
        # training the conv alone needs less than the warm-up's last Dense: the warm-up phase decides
        (SMALL, dict(mode=P.TrainMode.MASK, layer_mask=1, warmup_epochs=1)),
        # validation windows: the robust round's buffers count
        (ARCH, dict(n_val=3, val_flags=1)),
    ],
)
def test_a_round_fits_sram_to_the_byte(board, arch, kw):
    board.upload_model(arch)
    board.upload_data(0, *windows(10, classes=5))
    mem = start(board, **kw).mem_bytes
    board.close()
    assert mem == board.emu.round_memory_bytes(
        board.emu._trainable(P.TrainStart(**kw)), "warmup_epochs" in kw, P.TrainStart(**kw)
    )
    data = RAM - RESERVE - mem
    board.emu.slots[0].nbytes = data
    assert isinstance(start(board, **kw), P.RoundInfo)
    board.close()
    board.emu.slots[0].nbytes = data + 1
    need = RAM + 1
    text = f"round needs {need} B (training buffers + {RESERVE} B firmware + {data + 1} B datasets), SRAM is {RAM} B"
    assert start(board, **kw) == err(E.OUT_OF_RAM, T.TRAIN_START, text, need, RAM)
    assert board.emu._job is None


def test_info_cuts_a_long_profile_name_to_16_bytes():
    import dataclasses

    from estimator.profiles import get_profile

    prof = dataclasses.replace(get_profile("paper"), name="a-profile-name-of-32-characters!")
    b = Board(profile=prof)
    assert b.ask(P.GetInfo()).build == "a-profile-name-o"


def test_activity_names_are_cut_to_16_bytes(board):
    from types import SimpleNamespace

    board.emu.trace = SimpleNamespace(activities=("walking", "an-activity-with-a-long-name"))
    assert board.ask(P.SimGetActivity()) == P.Activity("walking", ("walking", "an-activity-with"))


@pytest.mark.parametrize("slot", [0, 1])
def test_a_slot_of_one_window_is_used(board, slot):
    board.upload_model()
    board.upload_data(slot, *windows(1))
    got = start(board, batch=1) if slot == 0 else board.ask(P.Evaluate(1))
    assert isinstance(got, P.RoundInfo if slot == 0 else P.Ack)


# --- what the first run's survivors asked for ------------------------------------------------------------------
def test_a_descriptor_of_another_version_names_the_supported_one(board):
    """BAD_VERSION's arg0 is the version the board takes (1), as for HELLO (protocol.md §3.5)."""
    desc = bytearray(desc_of(ARCH))
    desc[4] = 2  # the version byte after the magic
    board.ask(P.ModelBegin(len(desc) + 4 * PARAMS, len(desc), 0))
    got = board.ask(P.ModelChunk(0, bytes(desc)))
    text = "architecture descriptor: descriptor version 2 is not supported (1)"
    assert got == err(E.BAD_VERSION, T.MODEL_CHUNK, text, 1)
    assert board.emu._xfer is None


def test_model_info_of_a_rank_1_model_has_zero_for_the_missing_dimensions(board):
    arch = Arch((20,), (Layer("dense", "d", units=4), Layer("softmax", "s")), name="r1")
    blob, _ = model_blob(arch)
    info = board.upload_model(arch)
    mem = training_memory(arch, frozenset()).paper_bytes
    assert info == P.ModelInfo(
        2, 4, 1, 0, 20, 0, 0, 0, arch.params, 4 * arch.params, mem, FREE0 - 4 * arch.params, crc32(blob)
    )


def test_a_request_with_a_seq_already_answered_but_another_payload_is_executed(board):
    """The retry cache is keyed on the whole frame: the same seq with another payload is a new request (a host
    whose seq wrapped), not a retry of the old one."""
    assert [P.decode_message(f) for f in board.send(T.SET_CLOCK, P.SetClock(80_000_000).pack(), seq=5)] == [
        P.Clock(80_000_000)
    ]
    assert [P.decode_message(f) for f in board.send(T.SET_CLOCK, P.SetClock(4_000_000).pack(), seq=5)] == [
        P.Clock(4_000_000)
    ]
    assert board.emu.sysclk_hz == 4_000_000


def test_the_garbage_fault_is_reproducible_from_the_boards_seed(board):
    """The fault's bytes come from the board's fault generator (seeded [seed, 7]): a faulty session replays
    byte for byte with the same seed; each answer is 1..63 bytes, each byte any of 0..255."""
    rng = np.random.default_rng([3, 7])
    board.emu.faults.garbage = True
    seen = b""
    for seq in range(1, 41):
        board.emu.receive(P.Ping(b"x").encode(seq))
        data = bytes(board.emu.pending())
        board.emu.consume(len(data))
        n = int(rng.integers(1, 64))
        assert data == rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        seen += data
    assert len(set(seen)) > 200  # the whole byte range, not a narrower one


@pytest.mark.parametrize("what", ["round", "eval"])
def test_the_round_and_evaluation_threads_are_daemons(loaded, what):
    """(In process, for the mutation run, whose test map cannot see into the child process of the next test.)"""
    import threading

    loaded.ask(P.TrainStart(epochs=50) if what == "round" else P.Evaluate(1))
    name = f"nucleo-round-{loaded.emu._job.round_id}" if what == "round" else "nucleo-eval"
    (thread,) = [t for t in threading.enumerate() if t.name == name]
    assert thread.daemon


def test_the_boards_round_and_evaluation_threads_never_keep_the_host_process_alive(tmp_path):
    """A round or an evaluation still running when the host program ends (the app quits mid-round) must not keep
    the process alive: their threads are daemons."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import tests.device.test_nucleo_emulator_exact as t\n"
        "b = t.Board(); b.upload_model(); b.upload_data(0, *t.windows(10)); b.upload_data(1, *t.windows(5, seed=1))\n"
        "what = sys.argv[2]\n"
        "reply = b.ask(t.P.TrainStart(epochs=50) if what == 'round' else t.P.Evaluate(1))\n"
        "assert b.emu._job is not None, reply\n"
        "print('started', flush=True)\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items() if k != "MUTANT_UNDER_TEST"}  # (a mutation run: the code as it is)
    for what in ("round", "eval"):
        out = subprocess.run(
            [sys.executable, "-c", code, root, what], capture_output=True, text=True, timeout=30, cwd=tmp_path, env=env
        )
        assert (out.returncode, out.stdout) == (0, "started\n"), out.stderr
