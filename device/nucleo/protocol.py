"""NUCLEO wire protocol v1: frames, message catalogue, payload layouts and blob formats.

The normative description, with byte-exact golden vectors, is ``docs/protocol.md``; this module is its
reference implementation (host side and emulator side share it; the MCU firmware will implement the
same bytes in C).  Summary:

* A frame on the wire is ``COBS(body) 00``.  ``body`` is ``type:u8  seq:u16  len:u16  payload[len]
  crc:u16`` (all little-endian), ``crc`` = CRC-16/CCITT-FALSE over ``type..payload``.  ``len`` ≤
  :data:`MAX_PAYLOAD` (1024).  A sender may put extra ``00`` bytes before a frame; empty frames are
  ignored, so a lone ``00`` is a cheap resynchronisation point.
* Requests (host → board) use types 0x01–0x6F; the board answers each with exactly one response
  (``0x80 + request type`` for the main answer, ``ACK`` 0x80 for bare acknowledgements, or ``ERROR``
  0xFF) carrying the request's ``seq``.  The board caches its last answer: a repeated ``seq`` is answered
  from the cache without executing the request again, so a host can retry any request after a timeout.
* Events (board → host, unsolicited) use 0xF0–0xFE and carry the board's own event counter as ``seq``.
* Sequence number 0xFFFF is reserved for errors that cannot be attributed to a request (a frame that
  failed its CRC or COBS decoding).
"""

from __future__ import annotations

import dataclasses
import enum
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import numpy as np

from . import cobs
from .crc import crc16

PROTOCOL_VERSION = 2  # v2 = v1 + TRAIN_START's robust-round extension, VAL_REPORT, ROUND_DONE.best_epoch
PROTOCOL_MIN = 1  # a v1 board (no robust rounds) is still served
MAGIC = b"ODL1"
MAX_PAYLOAD = 1024
HEADER = struct.Struct("<BHH")  # type, seq, len
HEADER_LEN = HEADER.size  # 5
CRC_LEN = 2
MAX_BODY = HEADER_LEN + MAX_PAYLOAD + CRC_LEN  # 1031
MAX_WIRE = cobs.max_encoded_len(MAX_BODY) + 1  # 1037 incl. delimiter
SEQ_UNATTRIBUTED = 0xFFFF
DELIMITER = b"\x00"

#: ST-LINK/V2-1 virtual COM port of the NUCLEO-L496ZG.
USB_VID = 0x0483
USB_PID = 0x374B

#: LSM6DSO accelerometer output data rates (Hz), high-performance ladder (lsm6dso_reg.h).
LSM6DSO_ODR_HZ = (12.5, 26.0, 52.0, 104.0, 208.0, 417.0, 833.0, 1667.0, 3333.0, 6667.0)
#: LSM6DSO accelerometer full scales (±g) and their sensitivity (nano-g per LSB, datasheet typ.).
LSM6DSO_FS_G = (2, 4, 8, 16)
LSM6DSO_SENS_NG = {2: 61_000, 4: 122_000, 8: 244_000, 16: 488_000}
#: Allowed system clock (Hz): any whole MHz from MSI 4 MHz to PLL 80 MHz (Range 1).
SYSCLK_MIN_HZ = 4_000_000
SYSCLK_MAX_HZ = 80_000_000


class MsgType(enum.IntEnum):
    # requests (host -> board)
    HELLO = 0x01
    PING = 0x02
    GET_INFO = 0x03
    RESET = 0x04
    SET_CLOCK = 0x05
    GET_STATUS = 0x06
    SET_MARKER = 0x07
    SENSOR_CONFIG = 0x10
    STREAM_START = 0x11
    STREAM_STOP = 0x12
    GET_SENSOR = 0x13
    MODEL_BEGIN = 0x20
    MODEL_CHUNK = 0x21
    MODEL_END = 0x22
    DATA_CLEAR = 0x30
    DATA_BEGIN = 0x31
    DATA_CHUNK = 0x32
    DATA_END = 0x33
    TRAIN_START = 0x40
    TRAIN_ABORT = 0x41
    EVALUATE = 0x50
    WEIGHTS_INFO = 0x60
    WEIGHTS_READ = 0x61
    SIM_SET_ACTIVITY = 0x68  # emulator only; real firmware answers ERROR UNSUPPORTED
    SIM_GET_ACTIVITY = 0x69  # emulator only
    # responses (board -> host, seq = request seq)
    ACK = 0x80
    HELLO_RSP = 0x81
    PONG = 0x82
    INFO = 0x83
    CLOCK = 0x85
    STATUS = 0x86
    SENSOR_STATE = 0x90
    XFER_ACK = 0xA0
    MODEL_INFO = 0xA2
    DATA_STATE = 0xB0
    ROUND_INFO = 0xC0
    WEIGHTS_META = 0xE0
    WEIGHTS_DATA = 0xE1
    ACTIVITY = 0xE8
    # events (board -> host, seq = board event counter)
    SAMPLES = 0xF0
    BATCH_REPORT = 0xF1
    ROUND_DONE = 0xF2
    LOG = 0xF3
    BOOT = 0xF4
    EVAL_RESULT = 0xF5
    VAL_REPORT = 0xF6  # protocol v2
    ERROR = 0xFF


def is_request(t: int) -> bool:
    return 0x01 <= t <= 0x6F


def is_event(t: int) -> bool:
    return 0xF0 <= t <= 0xFE


class ErrorCode(enum.IntEnum):
    BAD_CRC = 1  # frame CRC mismatch (seq unattributable: 0xFFFF)
    BAD_FRAME = 2  # COBS invalid, frame shorter than 7 bytes, len field inconsistent
    UNKNOWN_TYPE = 3  # type byte not in the catalogue
    BAD_PAYLOAD = 4  # payload length/layout wrong for its type
    BAD_VERSION = 5  # no common protocol version (arg0 = board version)
    BUSY = 6  # a training round is running (arg0 = round id)
    OUT_OF_RAM = 7  # arg0 = bytes needed, arg1 = bytes available
    UNKNOWN_LAYER = 8  # arg0 = layer index, arg1 = kind code
    NO_MODEL = 9
    NO_DATA = 10  # arg0 = slot
    BAD_STATE = 11  # e.g. a chunk without BEGIN, training before HELLO
    BAD_OFFSET = 12  # arg0 = expected offset, arg1 = received offset
    BLOB_CRC = 13  # arg0 = expected CRC-32, arg1 = computed CRC-32
    UNSUPPORTED = 14  # valid request this firmware does not implement
    BAD_PARAM = 15  # a field out of range (message names it)
    TOO_LARGE = 16  # payload or blob exceeds a limit (arg0 = size, arg1 = limit)
    INTERNAL = 17


class ProtocolError(ValueError):
    """Bytes or values that do not follow protocol v1; ``code`` is the matching :class:`ErrorCode` and
    ``arg0``/``arg1`` the ERROR's arguments (docs/protocol.md §3.5; 0 where the table has –)."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_PAYLOAD, arg0: int = 0, arg1: int = 0):
        super().__init__(message)
        self.code = code
        self.arg0, self.arg1 = arg0, arg1


# ------------------------------------------------------------------------------------------------
# Frames
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


def frame_body(type_: int, seq: int, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """The un-stuffed frame body ``type seq len payload crc``."""
    payload = bytes(payload)
    if not 0 <= type_ <= 0xFF:
        raise ProtocolError(f"frame type {type_} is not a byte")
    if not 0 <= seq <= 0xFFFF:
        raise ProtocolError(f"sequence number {seq} is outside 0..65535")
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(
            f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte maximum", ErrorCode.TOO_LARGE
        )
    head = HEADER.pack(type_, seq, len(payload)) + payload
    return head + struct.pack("<H", crc16(head))


def encode_frame(type_: int, seq: int, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """A complete wire frame: COBS-stuffed body followed by the 0x00 delimiter."""
    return cobs.encode(frame_body(type_, seq, payload)) + DELIMITER


def parse_body(body: bytes) -> Frame:
    """Check and split a de-stuffed body; raises :class:`ProtocolError` (BAD_FRAME / BAD_CRC)."""
    if len(body) < HEADER_LEN + CRC_LEN:
        raise ProtocolError(f"frame of {len(body)} bytes is shorter than the 7-byte minimum", ErrorCode.BAD_FRAME)
    type_, seq, n = HEADER.unpack_from(body)
    if HEADER_LEN + n + CRC_LEN != len(body):
        raise ProtocolError(
            f"frame length field says {n} payload bytes but the frame holds {len(body) - HEADER_LEN - CRC_LEN}",
            ErrorCode.BAD_FRAME,
        )
    (crc,) = struct.unpack_from("<H", body, HEADER_LEN + n)
    calc = crc16(body[: HEADER_LEN + n])
    if crc != calc:
        raise ProtocolError(f"frame CRC 0x{crc:04X} does not match computed 0x{calc:04X}", ErrorCode.BAD_CRC)
    return Frame(type_, seq, bytes(body[HEADER_LEN : HEADER_LEN + n]))


class FrameDecoder:
    """Incremental wire decoder: feed it any chunking of the byte stream, get whole valid frames.

    Garbage between frames, truncated frames, bit flips and over-long runs without a delimiter are
    dropped (counted in :attr:`stats`, reported to ``on_error``); decoding resumes at the next 0x00.
    The decoder never raises on input bytes and its buffer never exceeds :data:`MAX_WIRE`.
    """

    def __init__(self, on_error: Callable[[ProtocolError], None] | None = None, max_wire: int = MAX_WIRE):
        self._buf = bytearray()
        self._discarding = False
        self._max = max_wire
        self.on_error = on_error
        self.stats = {"frames": 0, "bad_crc": 0, "bad_frame": 0, "overflow": 0, "discarded_bytes": 0}

    def reset(self) -> None:
        self._buf.clear()
        self._discarding = False

    def _error(self, exc: ProtocolError, nbytes: int) -> None:
        key = (
            "bad_crc"
            if exc.code == ErrorCode.BAD_CRC
            else ("overflow" if exc.code == ErrorCode.TOO_LARGE else "bad_frame")
        )
        self.stats[key] += 1
        self.stats["discarded_bytes"] += nbytes
        if self.on_error is not None:
            self.on_error(exc)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        out: list[Frame] = []
        data = bytes(data)
        pos = 0
        n = len(data)
        while pos < n:
            z = data.find(0, pos)
            end = n if z < 0 else z
            chunk = data[pos:end]
            if self._discarding:
                self.stats["discarded_bytes"] += len(chunk)
            else:
                self._buf += chunk
                if len(self._buf) > self._max:
                    size = len(self._buf)
                    self._buf.clear()
                    self._discarding = True
                    self._error(
                        ProtocolError(
                            f"{size} bytes without a frame delimiter (max frame {self._max})", ErrorCode.TOO_LARGE
                        ),
                        size,
                    )
            if z < 0:
                break
            pos = z + 1
            if self._discarding:
                self._discarding = False
                continue
            if not self._buf:
                continue  # empty frame: resync filler
            raw = bytes(self._buf)
            self._buf.clear()
            try:
                frame = parse_body(cobs.decode(raw))
            except cobs.CobsError as exc:
                self._error(ProtocolError(str(exc), ErrorCode.BAD_FRAME), len(raw) + 1)
                continue
            except ProtocolError as exc:
                self._error(exc, len(raw) + 1)
                continue
            self.stats["frames"] += 1
            out.append(frame)
        return out


# ------------------------------------------------------------------------------------------------
# Messages
# ------------------------------------------------------------------------------------------------
_REGISTRY: dict[int, type["Message"]] = {}


def _fixed_str(value: str, size: int, where: str) -> bytes:
    raw = value.encode("ascii", "replace")
    if len(raw) > size:
        raise ProtocolError(f"{where}: {value!r} is longer than {size} bytes")
    return raw.ljust(size, b"\x00")


def _unfixed_str(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("ascii", "replace")


@dataclass(frozen=True, eq=False)
class Message:
    """Base of every message.  Subclasses declare ``TYPE``, ``LAYOUT`` (a struct format of the fixed
    fields, in dataclass field order, without byte order) and optionally ``TAIL`` (name of the last
    field, a variable-length tail) with ``TAIL_KIND`` in {'bytes', 'text', 'i16x3', 'u16', 'names16'}."""

    TYPE: ClassVar[int] = -1
    LAYOUT: ClassVar[str] = ""
    TAIL: ClassVar[str | None] = None
    TAIL_KIND: ClassVar[str] = "bytes"
    _struct: ClassVar[struct.Struct]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._struct = struct.Struct("<" + cls.LAYOUT.replace(" ", ""))
        if cls.TYPE >= 0:
            if cls.TYPE in _REGISTRY:
                raise RuntimeError(f"duplicate message type 0x{cls.TYPE:02X}")
            _REGISTRY[cls.TYPE] = cls

    @classmethod
    def _fixed_fields(cls) -> list[dataclasses.Field]:
        fs = [f for f in dataclasses.fields(cls)]
        return fs[:-1] if cls.TAIL else fs

    def pack(self) -> bytes:
        name = type(self).__name__
        values: list[object] = []
        for f in self._fixed_fields():
            v = getattr(self, f.name)
            if isinstance(v, str):
                v = _fixed_str(v, _str_size(self._struct.format, len(values)), f"{name}.{f.name}")
            elif isinstance(v, enum.Enum):
                v = v.value
            values.append(v)
        try:
            head = self._struct.pack(*values)
        except struct.error as exc:
            raise ProtocolError(
                f"{name}: a field is out of range or of the wrong type ({exc}); values {values}"
            ) from exc
        tail = b""
        if self.TAIL:
            tail = _pack_tail(getattr(self, self.TAIL), self.TAIL_KIND, f"{name}.{self.TAIL}")
        payload = head + tail
        if len(payload) > MAX_PAYLOAD:
            raise ProtocolError(f"{name}: payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}", ErrorCode.TOO_LARGE)
        return payload

    @classmethod
    def unpack(cls, payload: bytes) -> "Message":
        size = cls._struct.size
        if len(payload) < size or (not cls.TAIL and len(payload) != size):
            want = f"at least {size}" if cls.TAIL else f"{size}"
            raise ProtocolError(f"{cls.__name__} payload is {len(payload)} bytes, expected {want}")
        values = list(cls._struct.unpack_from(payload))
        fixed = cls._fixed_fields()
        kwargs = {}
        for f, v in zip(fixed, values):
            if f.type in ("str", str):
                v = _unfixed_str(v)
            kwargs[f.name] = v
        if cls.TAIL:
            kwargs[cls.TAIL] = _unpack_tail(payload[size:], cls.TAIL_KIND, f"{cls.__name__}.{cls.TAIL}")
        msg = cls(**kwargs)
        msg.validate()
        return msg

    def validate(self) -> None:
        """Semantic checks after decoding (raise :class:`ProtocolError`)."""

    def encode(self, seq: int) -> bytes:
        return encode_frame(self.TYPE, seq, self.pack())

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.pack() == self.pack()

    def __hash__(self) -> int:
        return hash((self.TYPE, self.pack()))


def _str_size(fmt: str, index: int) -> int:
    """Size of the ``index``-th item of a struct format when it is an ``Ns`` string."""
    items = []
    num = ""
    for ch in fmt.lstrip("<>=!@"):
        if ch.isdigit():
            num += ch
            continue
        if ch == "s":
            items.append(int(num or 1))
        else:
            items.extend([0] * int(num or 1))
        num = ""
    return items[index]


def _pack_tail(v: Any, kind: str, where: str) -> bytes:
    if kind == "bytes":
        return bytes(v)
    if kind == "text":
        return str(v).encode("utf-8", "replace")
    if kind == "i16x3":
        a = np.asarray(v)
        if a.ndim != 2 or a.shape[1] != 3:
            raise ProtocolError(f"{where}: expected an (n, 3) array of int16 counts, got shape {a.shape}")
        return np.ascontiguousarray(a, dtype="<i2").tobytes()
    if kind == "u16":
        return np.ascontiguousarray(np.asarray(v).ravel(), dtype="<u2").tobytes()
    if kind == "names16":
        return b"".join(_fixed_str(s, 16, where) for s in v)
    raise AssertionError(kind)


def _unpack_tail(raw: bytes, kind: str, where: str) -> Any:
    if kind == "bytes":
        return bytes(raw)
    if kind == "text":
        return raw.decode("utf-8", "replace")
    if kind == "i16x3":
        if len(raw) % 6:
            raise ProtocolError(f"{where}: {len(raw)} bytes is not a whole number of 6-byte xyz samples")
        return np.frombuffer(raw, dtype="<i2").reshape(-1, 3).astype(np.int16)
    if kind == "u16":
        if len(raw) % 2:
            raise ProtocolError(f"{where}: odd length {len(raw)} for u16 array")
        return np.frombuffer(raw, dtype="<u2").astype(np.uint16)
    if kind == "names16":
        if len(raw) % 16:
            raise ProtocolError(f"{where}: {len(raw)} bytes is not a whole number of 16-byte names")
        return tuple(_unfixed_str(raw[i : i + 16]) for i in range(0, len(raw), 16))
    raise AssertionError(kind)


def decode_message(frame: Frame) -> Message:
    cls = _REGISTRY.get(frame.type)
    if cls is None:
        raise ProtocolError(f"unknown message type 0x{frame.type:02X}", ErrorCode.UNKNOWN_TYPE)
    return cls.unpack(frame.payload)


def message_types() -> Mapping[int, type[Message]]:
    return dict(_REGISTRY)


# --- requests ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Hello(Message):
    TYPE = MsgType.HELLO
    LAYOUT = "4s B B H"
    magic: bytes = MAGIC
    proto_min: int = PROTOCOL_MIN
    proto_max: int = PROTOCOL_VERSION
    max_payload: int = MAX_PAYLOAD


@dataclass(frozen=True, eq=False)
class Ping(Message):
    TYPE = MsgType.PING
    TAIL = "data"
    data: bytes = b""


@dataclass(frozen=True, eq=False)
class GetInfo(Message):
    TYPE = MsgType.GET_INFO


@dataclass(frozen=True, eq=False)
class Reset(Message):
    TYPE = MsgType.RESET


@dataclass(frozen=True, eq=False)
class SetClock(Message):
    TYPE = MsgType.SET_CLOCK
    LAYOUT = "I"
    sysclk_hz: int = 8_000_000


@dataclass(frozen=True, eq=False)
class GetStatus(Message):
    TYPE = MsgType.GET_STATUS


@dataclass(frozen=True, eq=False)
class SetMarker(Message):
    """Batch-boundary marker on Arduino D7 (wired to the LPM01A D7 input): ``enable`` 0/1, pulse width."""

    TYPE = MsgType.SET_MARKER
    LAYOUT = "B B H"
    enable: int = 1
    reserved: int = 0
    pulse_us: int = 100


@dataclass(frozen=True, eq=False)
class SensorConfig(Message):
    TYPE = MsgType.SENSOR_CONFIG
    LAYOUT = "I B B H"
    odr_mhz: int = 26_000  # output data rate in milli-hertz (12.5 Hz = 12500)
    fs_g: int = 2
    reserved: int = 0
    reserved2: int = 0


@dataclass(frozen=True, eq=False)
class StreamStart(Message):
    TYPE = MsgType.STREAM_START
    LAYOUT = "H"
    block_len: int = 26  # samples per SAMPLES block, 1..MAX_BLOCK_SAMPLES


@dataclass(frozen=True, eq=False)
class StreamStop(Message):
    TYPE = MsgType.STREAM_STOP


@dataclass(frozen=True, eq=False)
class GetSensor(Message):
    TYPE = MsgType.GET_SENSOR


@dataclass(frozen=True, eq=False)
class ModelBegin(Message):
    TYPE = MsgType.MODEL_BEGIN
    LAYOUT = "I I I"
    total_len: int = 0  # descriptor + weights, bytes
    desc_len: int = 0  # descriptor bytes at the start of the blob
    crc32: int = 0  # CRC-32 of the whole blob


@dataclass(frozen=True, eq=False)
class ModelChunk(Message):
    TYPE = MsgType.MODEL_CHUNK
    LAYOUT = "I"
    TAIL = "data"
    offset: int = 0
    data: bytes = b""


@dataclass(frozen=True, eq=False)
class ModelEnd(Message):
    TYPE = MsgType.MODEL_END


@dataclass(frozen=True, eq=False)
class DataClear(Message):
    TYPE = MsgType.DATA_CLEAR
    LAYOUT = "B"
    slot: int = 0  # 0 = local training set, 1 = held set (evaluation), 0xFF = both


@dataclass(frozen=True, eq=False)
class DataBegin(Message):
    """Append a dataset blob (see :func:`encode_dataset`) to a slot."""

    TYPE = MsgType.DATA_BEGIN
    LAYOUT = "B B H I I"
    slot: int = 0
    reserved: int = 0
    reserved2: int = 0
    total_len: int = 0
    crc32: int = 0


@dataclass(frozen=True, eq=False)
class DataChunk(Message):
    TYPE = MsgType.DATA_CHUNK
    LAYOUT = "I"
    TAIL = "data"
    offset: int = 0
    data: bytes = b""


@dataclass(frozen=True, eq=False)
class DataEnd(Message):
    TYPE = MsgType.DATA_END


class TrainMode(enum.IntEnum):
    FULL = 0
    TL = 1
    LAST = 2
    MASK = 3  # bit i of ``layer_mask`` = layer index i is trained


@dataclass(frozen=True, eq=False)
class TrainStart(Message):
    """28 bytes (v1) or, with any robust option on, 44 bytes (v2: the robust-round extension; a v1 board
    answers BAD_PAYLOAD to it).  The extension's defaults mean "off": a 44-byte request with them trains
    exactly like the 28-byte one."""

    TYPE = MsgType.TRAIN_START
    LAYOUT = "B B H H H f f I Q"
    EXT_LAYOUT: ClassVar[str] = "<H B B f f f"
    mode: int = TrainMode.FULL
    flags: int = 1  # bit0 shuffle each epoch
    epochs: int = 2
    batch: int = 32
    warmup_epochs: int = 0  # epochs of LAST (last Dense only) before the main phase (paper: 2)
    lr: float = 0.01
    warmup_lr: float = 0.01
    seed: int = 0
    layer_mask: int = 0
    # --- v2 extension (bytes 28..43) ---
    n_val: int = 0  # the last n_val windows of slot 0 are the validation set (never trained on)
    patience: int = 0  # early stopping: epochs without a better validation result (0: off)
    val_flags: int = 0  # bit0 restore the best epoch's weights at the end; bit1 best = macro-F1 (else loss)
    feature_lr_scale: float = 1.0  # main phase: lr multiplier of the layers outside the last two Dense
    clip_norm: float = 0.0  # main phase: clip the batch-mean gradient's global L2 norm (0: off)
    l2sp: float = 0.0  # main phase: gradient += l2sp * (w - w_round_start) (0: off)

    @property
    def extended(self) -> bool:
        return (
            self.n_val != 0
            or self.patience != 0
            or self.val_flags != 0
            or self.feature_lr_scale != 1.0
            or self.clip_norm != 0.0
            or self.l2sp != 0.0
        )

    def pack(self) -> bytes:
        head = super().pack()[: self._struct.size]
        if not self.extended:
            return head
        try:
            ext = struct.pack(
                self.EXT_LAYOUT,
                self.n_val,
                self.patience,
                self.val_flags,
                self.feature_lr_scale,
                self.clip_norm,
                self.l2sp,
            )
        except struct.error as exc:
            raise ProtocolError(f"TrainStart: an extension field is out of range or of the wrong type ({exc})") from exc
        return head + ext

    @classmethod
    def unpack(cls, payload: bytes) -> "Message":
        size = cls._struct.size
        ext = struct.calcsize(cls.EXT_LAYOUT)
        if len(payload) not in (size, size + ext):
            raise ProtocolError(f"TrainStart payload is {len(payload)} bytes, expected {size} or {size + ext}")
        base = dict(zip([f.name for f in dataclasses.fields(cls)], cls._struct.unpack_from(payload)))
        if len(payload) == size + ext:
            names = ("n_val", "patience", "val_flags", "feature_lr_scale", "clip_norm", "l2sp")
            base.update(zip(names, struct.unpack_from(cls.EXT_LAYOUT, payload, size)))
        msg = cls(**base)
        msg.validate()
        return msg

    @classmethod
    def _fixed_fields(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))[:9]


class ValFlags(enum.IntFlag):
    RESTORE_BEST = 1
    SELECT_F1 = 2


@dataclass(frozen=True, eq=False)
class TrainAbort(Message):
    TYPE = MsgType.TRAIN_ABORT


@dataclass(frozen=True, eq=False)
class Evaluate(Message):
    TYPE = MsgType.EVALUATE
    LAYOUT = "B"
    slot: int = 1


@dataclass(frozen=True, eq=False)
class WeightsInfo(Message):
    TYPE = MsgType.WEIGHTS_INFO


@dataclass(frozen=True, eq=False)
class WeightsRead(Message):
    TYPE = MsgType.WEIGHTS_READ
    LAYOUT = "I H"
    offset: int = 0
    length: int = 1016


@dataclass(frozen=True, eq=False)
class SimSetActivity(Message):
    TYPE = MsgType.SIM_SET_ACTIVITY
    LAYOUT = "16s"
    activity: str = ""


@dataclass(frozen=True, eq=False)
class SimGetActivity(Message):
    TYPE = MsgType.SIM_GET_ACTIVITY


# --- responses -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Ack(Message):
    TYPE = MsgType.ACK
    LAYOUT = "B"
    request: int = 0


@dataclass(frozen=True, eq=False)
class HelloRsp(Message):
    TYPE = MsgType.HELLO_RSP
    LAYOUT = "4s B B H B B B B I"
    magic: bytes = MAGIC
    proto: int = PROTOCOL_VERSION
    reserved: int = 0
    max_payload: int = MAX_PAYLOAD
    fw_major: int = 1
    fw_minor: int = 0
    fw_patch: int = 0
    flags: int = 0  # bit0 emulated board
    tick_hz: int = 1_000_000


@dataclass(frozen=True, eq=False)
class Pong(Message):
    TYPE = MsgType.PONG
    TAIL = "data"
    data: bytes = b""


@dataclass(frozen=True, eq=False)
class Info(Message):
    TYPE = MsgType.INFO
    LAYOUT = "B B B B H H I I I I I B B H 16s 16s 16s 16s"
    fw_major: int = 1
    fw_minor: int = 0
    fw_patch: int = 0
    proto: int = PROTOCOL_VERSION
    dev_id: int = 0x461  # STM32L496/4A6 DBGMCU_IDCODE.DEV_ID
    rev_id: int = 0
    sysclk_hz: int = 8_000_000
    tick_hz: int = 1_000_000
    ram_total: int = 327_680
    ram_free: int = 0
    flash_total: int = 1_048_576
    sensor_whoami: int = 0x6C  # LSM6DSO
    flags: int = 0  # bit0 emulated board
    reserved: int = 0
    board: str = "NUCLEO-L496ZG"
    mcu: str = "STM32L496ZG"
    sensor: str = "LSM6DSO"
    build: str = ""  # firmware build / cost profile name


@dataclass(frozen=True, eq=False)
class Clock(Message):
    TYPE = MsgType.CLOCK
    LAYOUT = "I"
    sysclk_hz: int = 8_000_000


class BoardState(enum.IntEnum):
    IDLE = 0
    STREAMING = 1
    TRAINING = 2
    TRANSFER = 3
    EVALUATING = 4


@dataclass(frozen=True, eq=False)
class Status(Message):
    TYPE = MsgType.STATUS
    LAYOUT = "B B H Q I H H I I I I"
    state: int = BoardState.IDLE
    model_loaded: int = 0
    round_id: int = 0
    uptime_ticks: int = 0
    ram_free: int = 0
    n_train: int = 0
    n_held: int = 0
    rx_frames: int = 0
    rx_errors: int = 0
    tx_dropped: int = 0  # sample blocks dropped because the TX FIFO was full
    reserved: int = 0


@dataclass(frozen=True, eq=False)
class SensorState(Message):
    TYPE = MsgType.SENSOR_STATE
    LAYOUT = "I B B H I"
    odr_mhz: int = 26_000
    fs_g: int = 2
    streaming: int = 0
    block_len: int = 26
    sens_ng: int = 61_000  # nano-g per LSB at this full scale


@dataclass(frozen=True, eq=False)
class XferAck(Message):
    TYPE = MsgType.XFER_ACK
    LAYOUT = "I"
    next_offset: int = 0


@dataclass(frozen=True, eq=False)
class ModelInfo(Message):
    TYPE = MsgType.MODEL_INFO
    LAYOUT = "B B B B H H H H I I I I I"
    n_layers: int = 0
    n_classes: int = 0
    rank: int = 0
    preprocessing: int = 0
    in0: int = 0
    in1: int = 0
    in2: int = 0
    reserved: int = 0
    params: int = 0
    weight_bytes: int = 0
    infer_mem: int = 0  # bytes the model needs resident for inference (weights + activations)
    ram_free: int = 0
    crc32: int = 0


class DType(enum.IntEnum):
    F32 = 0
    I16 = 1  # value = count * scale


@dataclass(frozen=True, eq=False)
class DataState(Message):
    TYPE = MsgType.DATA_STATE
    LAYOUT = "B B H H B B I I"
    slot: int = 0
    reserved: int = 0
    n_windows: int = 0
    t: int = 0
    c: int = 0
    dtype: int = DType.F32
    data_bytes: int = 0
    ram_free: int = 0


@dataclass(frozen=True, eq=False)
class RoundInfo(Message):
    TYPE = MsgType.ROUND_INFO
    LAYOUT = "H H I I I Q Q"
    round_id: int = 0
    batches_per_epoch: int = 0
    total_batches: int = 0  # warm-up included
    mem_bytes: int = 0  # the round's training memory: model + gradients + buffers, max over phases (§6)
    ram_total: int = 327_680
    est_cycles: int = 0  # predicted cycles of the whole round (cost model)
    est_ticks: int = 0  # predicted duration of the whole round in board ticks


@dataclass(frozen=True, eq=False)
class EvalResult(Message):
    """Event sent when an EVALUATE finishes (the request itself is answered with ACK at once)."""

    TYPE = MsgType.EVAL_RESULT
    LAYOUT = "B B H f Q"
    TAIL = "confusion"
    TAIL_KIND = "u16"
    slot: int = 1
    n_classes: int = 0
    n: int = 0
    loss: float = 0.0
    cycles: int = 0
    confusion: Any = field(default_factory=lambda: np.zeros(0, np.uint16))  # rows = true class

    def validate(self) -> None:
        if np.asarray(self.confusion).size != self.n_classes * self.n_classes:
            raise ProtocolError(f"EvalResult: {np.asarray(self.confusion).size} cells for {self.n_classes} classes")

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.confusion, dtype=np.int64).reshape(self.n_classes, self.n_classes)


@dataclass(frozen=True, eq=False)
class WeightsMeta(Message):
    TYPE = MsgType.WEIGHTS_META
    LAYOUT = "I I H H"
    total_len: int = 0
    crc32: int = 0
    n_tensors: int = 0
    reserved: int = 0


@dataclass(frozen=True, eq=False)
class WeightsData(Message):
    TYPE = MsgType.WEIGHTS_DATA
    LAYOUT = "I"
    TAIL = "data"
    offset: int = 0
    data: bytes = b""


@dataclass(frozen=True, eq=False)
class Activity(Message):
    TYPE = MsgType.ACTIVITY
    LAYOUT = "16s"
    TAIL = "available"
    TAIL_KIND = "names16"
    current: str = ""
    available: tuple = ()


# --- events ----------------------------------------------------------------------------------------
MAX_BLOCK_SAMPLES = 160  # 20-byte header + 160 x 6 bytes = 980 <= MAX_PAYLOAD


@dataclass(frozen=True, eq=False)
class Samples(Message):
    TYPE = MsgType.SAMPLES
    LAYOUT = "I Q I B B H"
    TAIL = "xyz"
    TAIL_KIND = "i16x3"
    block: int = 0  # block counter since STREAM_START
    tick: int = 0  # board tick of the first sample
    odr_mhz: int = 26_000
    fs_g: int = 2
    dropped: int = 0  # blocks dropped (TX FIFO full) since the previous block, saturating at 255
    n: int = 0
    xyz: Any = field(default_factory=lambda: np.zeros((0, 3), np.int16))

    def validate(self) -> None:
        if len(self.xyz) != self.n:
            raise ProtocolError(f"Samples: header says {self.n} samples, payload holds {len(self.xyz)}")


class Phase(enum.IntEnum):
    WARMUP = 0
    MAIN = 1
    EVAL = 2


@dataclass(frozen=True, eq=False)
class BatchReport(Message):
    TYPE = MsgType.BATCH_REPORT
    LAYOUT = "H B B H H H H f Q Q Q"
    round_id: int = 0
    phase: int = Phase.MAIN
    reserved: int = 0
    epoch: int = 0
    batch: int = 0  # index within the epoch
    batches_per_epoch: int = 0
    n_samples: int = 0
    loss: float = 0.0  # mean loss over the batch (before the update)
    start_tick: int = 0
    end_tick: int = 0
    cycles: int = 0


@dataclass(frozen=True, eq=False)
class ValReport(Message):
    """Protocol v2: one validation pass of a round with ``n_val`` > 0 (before the first epoch and after
    every epoch); the board raises D7 at its end like at a batch end."""

    TYPE = MsgType.VAL_REPORT
    LAYOUT = "H H H B B f f Q Q Q"
    round_id: int = 0
    epoch: int = 0  # epochs completed before this pass (warm-up included): 0 = the round's starting weights
    n: int = 0  # validation windows
    best: int = 0  # 1: this pass is the best so far (its weights are kept)
    reserved: int = 0
    loss: float = 0.0  # mean cross-entropy over the validation windows
    macro_f1: float = 0.0  # over the classes present in the labels or the predictions
    start_tick: int = 0
    end_tick: int = 0
    cycles: int = 0


class RoundStatus(enum.IntEnum):
    DONE = 0
    ABORTED = 1
    FAILED = 2


@dataclass(frozen=True, eq=False)
class RoundDone(Message):
    TYPE = MsgType.ROUND_DONE
    LAYOUT = "H B B H H I f f Q Q Q"
    round_id: int = 0
    status: int = RoundStatus.DONE
    error: int = 0  # ErrorCode when FAILED
    epochs_done: int = 0
    best_epoch: int = 0  # v2, rounds with validation: epoch of the best pass (restored with RESTORE_BEST); else 0
    batches_done: int = 0
    last_loss: float = 0.0  # mean batch loss of the last epoch
    train_accuracy: float = 0.0  # accuracy on the samples of the last epoch (before each update)
    start_tick: int = 0
    end_tick: int = 0
    cycles: int = 0


@dataclass(frozen=True, eq=False)
class Log(Message):
    TYPE = MsgType.LOG
    LAYOUT = "B"
    TAIL = "text"
    TAIL_KIND = "text"
    level: int = 1  # 0 debug, 1 info, 2 warning, 3 error
    text: str = ""


@dataclass(frozen=True, eq=False)
class Boot(Message):
    TYPE = MsgType.BOOT
    LAYOUT = "B B B B"
    reset_cause: int = 0  # 0 power-on, 1 RESET request, 2 watchdog
    fw_major: int = 1
    fw_minor: int = 0
    fw_patch: int = 0


@dataclass(frozen=True, eq=False)
class Error(Message):
    TYPE = MsgType.ERROR
    LAYOUT = "B B H I I"
    TAIL = "message"
    TAIL_KIND = "text"
    code: int = ErrorCode.INTERNAL
    request: int = 0  # type of the request that failed (0 if unattributable)
    reserved: int = 0
    arg0: int = 0
    arg1: int = 0
    message: str = ""

    def describe(self) -> str:
        try:
            name = ErrorCode(self.code).name
        except ValueError:
            name = f"code {self.code}"
        try:
            req = MsgType(self.request).name
        except ValueError:
            req = f"0x{self.request:02X}"
        return f"{name} on {req}: {self.message}"


#: Longest error text a board sends (keeps ERROR frames short).
MAX_ERROR_TEXT = 200


def error_message(code: ErrorCode, request: int, message: str, arg0: int = 0, arg1: int = 0) -> Error:
    text = message.encode("utf-8", "replace")[:MAX_ERROR_TEXT].decode("utf-8", "ignore")
    return Error(int(code), int(request) & 0xFF, 0, int(arg0) & 0xFFFFFFFF, int(arg1) & 0xFFFFFFFF, text)


# ------------------------------------------------------------------------------------------------
# ODR / FS helpers
# ------------------------------------------------------------------------------------------------
def odr_to_mhz(odr_hz: float) -> int:
    return int(round(odr_hz * 1000))


def check_odr_mhz(odr_mhz: int) -> float:
    """ODR in Hz for a ladder value in mHz; raises BAD_PARAM naming the allowed values."""
    for hz in LSM6DSO_ODR_HZ:
        if odr_to_mhz(hz) == odr_mhz:
            return hz
    allowed = ", ".join(f"{odr_to_mhz(h)}" for h in LSM6DSO_ODR_HZ)
    raise ProtocolError(
        f"odr_mhz {odr_mhz} is not an LSM6DSO rate (allowed mHz: {allowed})", ErrorCode.BAD_PARAM, odr_mhz
    )


def check_fs_g(fs_g: int) -> int:
    if fs_g not in LSM6DSO_FS_G:
        raise ProtocolError(
            f"fs_g {fs_g} is not an LSM6DSO full scale (allowed: 2, 4, 8, 16)", ErrorCode.BAD_PARAM, fs_g
        )
    return fs_g


# ------------------------------------------------------------------------------------------------
# Model blob: architecture descriptor + weights
# ------------------------------------------------------------------------------------------------
#: Layer kind codes of the descriptor (stable; append only).
KIND_CODES: dict[str, int] = {
    "conv1d": 1,
    "conv2d": 2,
    "dense": 3,
    "relu": 4,
    "softmax": 5,
    "avgpool1d": 6,
    "maxpool1d": 7,
    "avgpool2d": 8,
    "maxpool2d": 9,
    "gap1d": 10,
    "gmp1d": 11,
    "gap2d": 12,
    "gmp2d": 13,
    "flatten": 14,
    "batchnorm": 15,
    "dropout": 16,
}
KIND_NAMES = {v: k for k, v in KIND_CODES.items()}
PREPROCESSING_CODES = {"none": 0, "gravity_rot_sup": 1}
DESC_MAGIC = b"ODLA"
DESC_HEADER = struct.Struct("<4s B B B B H H H H")  # magic, version, n_layers, rank, prep, in0..2, reserved
LAYER_REC = struct.Struct("<B B H H H H H f 16s")  # kind, flags, filters, kernel, units, pool, stride, param, name
LAYER_NAME_LEN = 16


class UnknownLayerError(ProtocolError):
    """A descriptor layer of a kind code this side does not know: UNKNOWN_LAYER (layer index, kind code)."""

    def __init__(self, message: str, index: int, kind_code: int):
        super().__init__(message, ErrorCode.UNKNOWN_LAYER, index, kind_code)
        self.index = index
        self.kind_code = kind_code


def encode_arch(arch: Any) -> bytes:
    """Binary descriptor of an :class:`estimator.arch.Arch` (16-byte header + 32 bytes per layer).
    Layer names longer than 16 bytes are truncated (the host keeps its own names and maps by index)."""
    shape = tuple(int(x) for x in arch.input_shape)
    if not 1 <= len(shape) <= 3:
        raise ProtocolError(f"input shape {shape} must have rank 1..3")
    if len(arch.layers) > 255:
        raise ProtocolError(f"{len(arch.layers)} layers exceed the descriptor's 255")
    if arch.preprocessing not in PREPROCESSING_CODES:
        raise ProtocolError(
            f"preprocessing {arch.preprocessing!r} has no protocol code (known: {', '.join(PREPROCESSING_CODES)})"
        )
    dims = list(shape) + [0] * (3 - len(shape))
    out = bytearray(
        DESC_HEADER.pack(DESC_MAGIC, 1, len(arch.layers), len(shape), PREPROCESSING_CODES[arch.preprocessing], *dims, 0)
    )
    for layer in arch.layers:
        param = layer.rate if layer.kind == "dropout" else (layer.epsilon if layer.kind == "batchnorm" else 0.0)
        name = layer.name.encode("utf-8", "replace")[:LAYER_NAME_LEN]
        try:
            out += LAYER_REC.pack(
                KIND_CODES[layer.kind],
                1 if layer.use_bias else 0,
                layer.filters,
                layer.kernel,
                layer.units,
                layer.pool,
                layer.stride,
                param,
                name,
            )
        except struct.error as exc:
            raise ProtocolError(f"layer {layer.name!r}: a hyper-parameter does not fit the descriptor ({exc})") from exc
    return bytes(out)


def decode_arch(desc: bytes, classes: Sequence[str] = ()) -> Any:
    """Inverse of :func:`encode_arch`; raises UNKNOWN_LAYER / BAD_PAYLOAD with the layer index."""
    from estimator.arch import Arch, ArchError, Layer

    if len(desc) < DESC_HEADER.size:
        raise ProtocolError(f"descriptor of {len(desc)} bytes is shorter than its {DESC_HEADER.size}-byte header")
    magic, ver, n_layers, rank, prep, d0, d1, d2, _ = DESC_HEADER.unpack_from(desc)
    if magic != DESC_MAGIC:
        raise ProtocolError(f"descriptor magic {magic!r} is not {DESC_MAGIC!r}")
    if ver != 1:
        raise ProtocolError(f"descriptor version {ver} is not supported (1)", ErrorCode.BAD_VERSION, 1)
    want = DESC_HEADER.size + n_layers * LAYER_REC.size
    if len(desc) != want:
        raise ProtocolError(f"descriptor is {len(desc)} bytes, {n_layers} layers need {want}")
    if not 1 <= rank <= 3:
        raise ProtocolError(f"descriptor input rank {rank} is not 1..3")
    prep_name = {v: k for k, v in PREPROCESSING_CODES.items()}.get(prep)
    if prep_name is None:
        raise ProtocolError(f"descriptor preprocessing code {prep} is unknown")
    layers = []
    seen: set[str] = set()
    for i in range(n_layers):
        kind, flags, filters, kernel, units, pool, stride, param, raw = LAYER_REC.unpack_from(
            desc, DESC_HEADER.size + i * LAYER_REC.size
        )
        if kind not in KIND_NAMES:
            raise UnknownLayerError(f"layer {i}: unknown layer kind code {kind}", i, kind)
        k = KIND_NAMES[kind]
        name = raw.split(b"\x00", 1)[0].decode("utf-8", "replace") or f"layer{i}"
        if name in seen:
            name = f"{name}#{i}"
        seen.add(name)
        kw: dict[str, Any] = dict(
            filters=filters, kernel=kernel, units=units, pool=pool, stride=stride, use_bias=bool(flags & 1)
        )
        if k == "dropout":
            kw["rate"] = float(param)
        if k == "batchnorm":
            kw["epsilon"] = float(param)
        try:
            layers.append(Layer(k, name, **kw))
        except ArchError as exc:  # e.g. a NaN dropout rate or BatchNorm epsilon
            raise ProtocolError(f"descriptor describes an invalid network: {exc}", ErrorCode.BAD_PAYLOAD, i) from exc
    try:
        return Arch(tuple([d0, d1, d2][:rank]), tuple(layers), tuple(classes), preprocessing=prep_name)
    except ArchError as exc:  # arg0: the layer the message names (0 when it names none), as the firmware's
        index = named_layer_index(exc, layers, 0)
        raise ProtocolError(f"descriptor describes an invalid network: {exc}", ErrorCode.BAD_PAYLOAD, index) from exc


def named_layer_index(exc: Exception, layers: Sequence[Any], default: int) -> int:
    """Index in ``layers`` of the layer an architecture error names (``layer 'name'``), else ``default``:
    the ERROR argument the firmware sends for a descriptor it refuses."""
    m = re.search(r"layer '([^']+)'", str(exc))
    names = [la.name for la in layers]
    return names.index(m.group(1)) if m and m.group(1) in names else default


def weight_tensors(arch: Any) -> list[tuple[str, tuple[int, ...]]]:
    """(layer name, shape) of every weight tensor in blob order (layer order, Keras tensor order)."""
    return [(name, s) for name, shapes in arch.param_shapes().items() for s in shapes]


def encode_weights(arch: Any, weights: Mapping[str, Sequence[np.ndarray]]) -> bytes:
    """Weights as float32 little-endian, C order, in :func:`weight_tensors` order."""
    parts = []
    for name, shapes in arch.param_shapes().items():
        if name not in weights:
            raise ProtocolError(f"weights for layer {name!r} are missing")
        got = list(weights[name])
        if len(got) != len(shapes):
            raise ProtocolError(f"layer {name!r}: {len(got)} weight tensors, the architecture needs {len(shapes)}")
        for i, (w, s) in enumerate(zip(got, shapes)):
            a = np.asarray(w)
            if tuple(a.shape) != tuple(s):
                raise ProtocolError(f"layer {name!r} tensor {i}: shape {a.shape}, expected {s}")
            parts.append(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return b"".join(parts)


def decode_weights(arch: Any, data: bytes, names: Sequence[str] | None = None) -> dict[str, list[np.ndarray]]:
    """Inverse of :func:`encode_weights`.  ``names`` maps the blob's layers (in order) to other names
    (e.g. the host's full layer names when the board holds truncated ones)."""
    shapes = arch.param_shapes()
    total = sum(int(np.prod(s)) for ss in shapes.values() for s in ss) * 4
    if len(data) != total:
        raise ProtocolError(f"weights blob is {len(data)} bytes, the architecture needs {total}")
    if names is not None and len(names) != len(shapes):
        raise ProtocolError(f"{len(names)} layer names for {len(shapes)} layers with weights")
    out: dict[str, list[np.ndarray]] = {}
    pos = 0
    for i, (name, ss) in enumerate(shapes.items()):
        tensors = []
        for s in ss:
            n = int(np.prod(s))
            tensors.append(np.frombuffer(data, dtype="<f4", count=n, offset=pos).reshape(s).astype(np.float32))
            pos += 4 * n
        out[names[i] if names is not None else name] = tensors
    return out


def encode_model(arch: Any, weights: Mapping[str, Sequence[np.ndarray]]) -> tuple[bytes, int]:
    """Model blob (descriptor then weights) and the descriptor length."""
    desc = encode_arch(arch)
    return desc + encode_weights(arch, weights), len(desc)


def decode_model(blob: bytes, desc_len: int) -> tuple[Any, dict[str, list[np.ndarray]]]:
    arch = decode_arch(blob[:desc_len])
    return arch, decode_weights(arch, blob[desc_len:])


# ------------------------------------------------------------------------------------------------
# Dataset blob: labelled windows
# ------------------------------------------------------------------------------------------------
DATA_HEADER = struct.Struct("<H H B B H f")  # n, T, C, dtype, reserved, scale


def encode_dataset(x: np.ndarray, y: np.ndarray | Sequence[int], dtype: DType = DType.F32, scale: float = 1.0) -> bytes:
    """Labelled windows ``x`` of shape (n, T, C) (or (n, T, C, 1)) with integer labels ``y``.

    Layout: 12-byte header ``n:u16 T:u16 C:u8 dtype:u8 reserved:u16 scale:f32``, ``n`` label bytes,
    zero padding to a multiple of 4, then the values (float32, or int16 counts with value = count ·
    scale), C order (window, time, channel)."""
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise ProtocolError(f"windows must have shape (n, T, C), got {x.shape}")
    y = np.asarray(y)
    if y.shape != (x.shape[0],):
        raise ProtocolError(f"{y.shape[0] if y.ndim else 0} labels for {x.shape[0]} windows")
    n, t, c = x.shape
    if n > 0xFFFF or t > 0xFFFF or c > 0xFF or n == 0:
        raise ProtocolError(f"dataset shape {x.shape} is outside 1..65535 windows, T <= 65535, C <= 255")
    if y.size and (y.min() < 0 or y.max() > 255):
        raise ProtocolError("labels must be class indices 0..255")
    dtype = DType(dtype)
    if dtype == DType.F32:
        values = np.ascontiguousarray(x, dtype="<f4").tobytes()
    else:
        if not np.all(np.isfinite(x)):
            raise ProtocolError("windows contain non-finite values")
        counts = np.rint(np.asarray(x, np.float64) / float(scale))
        if counts.min() < -32768 or counts.max() > 32767:
            raise ProtocolError(f"values do not fit int16 at scale {scale}")
        values = counts.astype("<i2").tobytes()
    labels = y.astype(np.uint8).tobytes()
    labels += b"\x00" * (-len(labels) % 4)
    return DATA_HEADER.pack(n, t, c, int(dtype), 0, float(scale)) + labels + values


def decode_dataset(blob: bytes) -> tuple[np.ndarray, np.ndarray, DType, float]:
    """Inverse of :func:`encode_dataset`: (x float32 (n, T, C), y int64, dtype, scale)."""
    if len(blob) < DATA_HEADER.size:
        raise ProtocolError(f"dataset blob of {len(blob)} bytes is shorter than its header")
    n, t, c, dt, _, scale = DATA_HEADER.unpack_from(blob)
    if dt not in (0, 1):
        raise ProtocolError(f"dataset dtype code {dt} is unknown (0 f32, 1 i16)")
    item = 4 if dt == 0 else 2
    lab_len = n + (-n % 4)
    want = DATA_HEADER.size + lab_len + n * t * c * item
    if len(blob) != want or n == 0:
        raise ProtocolError(f"dataset blob is {len(blob)} bytes, header (n={n}, T={t}, C={c}) needs {want}")
    y = np.frombuffer(blob, np.uint8, n, DATA_HEADER.size).astype(np.int64)
    off = DATA_HEADER.size + lab_len
    if dt == 0:
        x = np.frombuffer(blob, "<f4", n * t * c, off).reshape(n, t, c).astype(np.float32)
    else:
        x = (np.frombuffer(blob, "<i2", n * t * c, off).astype(np.float32) * np.float32(scale)).reshape(n, t, c)
    return x, y, DType(dt), float(scale)


def chunks(blob: bytes, size: int = MAX_PAYLOAD - 4) -> Iterable[tuple[int, bytes]]:
    """(offset, data) pieces of a blob for *_CHUNK messages."""
    for off in range(0, len(blob), size):
        yield off, blob[off : off + size]


# ------------------------------------------------------------------------------------------------
# Golden vectors (also listed in docs/protocol.md; tests check both): (name, seq, message, wire hex)
# ------------------------------------------------------------------------------------------------
def golden_vectors() -> list[tuple[str, int, Message, str]]:
    return [
        ("hello", 1, Hello(), "0301010208074f444c3101020404758800"),
        ("hello_rsp", 1, HelloRsp(flags=1), "0381010210064f444c31020103040101050140420f03206e00"),
        ("ping_with_zeros", 2, Ping(b"\x00\x01\x00\x02"), "03020202040102010402604000"),
        ("get_info", 3, GetInfo(), "030303010103026400"),
        ("sensor_config_26hz_4g", 4, SensorConfig(26000, 4), "03100402080390650102040101035eb900"),
        (
            "samples_2",
            7,
            Samples(5, 1_000_000, 26000, 2, 0, 2, np.array([[16393, -82, 0], [-32768, 32767, 1]], np.int16)),
            "03f0070220020501010440420f010101010390650102020202050940aeff01010580ff7f010327eb00",
        ),
        (
            "train_start_full",
            9,
            TrainStart(TrainMode.FULL, 1, 2, 32, 2, 0.01, 0.01, 42, 0),
            "034009021c01030102022002020a0ad7233c0ad7233c2a0101010101010101010103b54b00",
        ),
        (
            "train_start_robust",
            10,
            TrainStart(TrainMode.FULL, 1, 20, 32, 2, 0.01, 0.01, 42, 0, 57, 5, 3, 1.0, 5.0, 0.0),
            "03400a022c01030114022002020a0ad7233c0ad7233c2a0101010101010101010102390305030103803f0103a04001010103a66c00",
        ),
        (
            "val_report",
            13,
            ValReport(3, 4, 57, 1, 0, 0.25, 0.9375, 7_900_000, 8_100_000, 1_600_000),
            "03f60d02280203020402390201010103803e0106703f608b780101010104a0987b0101010101036a180101010103fd4200",
        ),
        (
            "round_done_best_epoch",
            14,
            RoundDone(3, 0, 0, 7, 4, 63, 0.125, 0.96875, 1_000_000, 9_000_000, 64_000_000),
            "03f20e022c0203010102070204023f0101010101023e0106783f40420f010101010440548901010101010490d0030101010340f600",
        ),
        (
            "batch_report",
            12,
            BatchReport(3, Phase.MAIN, 0, 1, 4, 10, 32, 0.6931471824645996, 7_900_000, 15_800_000, 63_200_000),
            "03f10c02280203020102010204020a0220081872313f608b780101010104c016f10101010101045bc40301010103564400",
        ),
        (
            "error_out_of_ram",
            5,
            Error(ErrorCode.OUT_OF_RAM, MsgType.MODEL_BEGIN, 0, 400000, 250000, "model needs 400000 B, 250000 B free"),
            "03ff05022f0307200104801a060490d003266d6f64656c206e656564732034303030303020422c203235303030302042206672656530b200",
        ),
        ("ack_reset", 0x1234, Ack(MsgType.RESET), "05803412010404a3de00"),
        ("model_chunk", 6, ModelChunk(1016, bytes(range(8))), "032106020c03f80301010a01020304050607895600"),
        ("weights_meta", 8, WeightsMeta(40336, 0xDEADBEEF, 8, 0), "03e008020c03909d0106efbeadde08010103aaa500"),
        # header 02 0101 0101 + 249 payload bytes 01: a run of exactly 254 non-zero bytes, then the payload's
        # zero (COBS block boundary: FF block, then an empty 01 block that carries the zero)
        (
            "ping_cobs_block_boundary",
            0x0101,
            Ping(b"\x01" * 249 + b"\x00" + b"\x02" * 7),
            "ff02" + "01" * 253 + "010a" + "02" * 7 + "5c6d00",
        ),
    ]


def cobs_golden_vectors() -> list[tuple[str, bytes, bytes]]:
    """COBS alone at the 254-byte block boundary (also in docs/protocol.md §7.1): (name, data, encoded
    without the delimiter).  A block of 254 non-zero bytes is coded FF with no implied zero, so a zero
    right after it needs a block of its own."""
    r = b"\x01"
    return [
        ("run253", r * 253, b"\xfe" + r * 253),
        ("run254", r * 254, b"\xff" + r * 254),
        ("run255", r * 255, b"\xff" + r * 254 + b"\x02" + r),
        ("run253_zero", r * 253 + b"\x00", b"\xfe" + r * 253 + b"\x01"),
        ("run254_zero", r * 254 + b"\x00", b"\xff" + r * 254 + b"\x01\x01"),
        ("run255_zero", r * 255 + b"\x00", b"\xff" + r * 254 + b"\x02" + r + b"\x01"),
        ("run254_zero_02", r * 254 + b"\x00\x02", b"\xff" + r * 254 + b"\x01\x02\x02"),
        ("run254_zero_zero", r * 254 + b"\x00\x00", b"\xff" + r * 254 + b"\x01\x01\x01"),
        ("zero_run254", b"\x00" + r * 254, b"\x01\xff" + r * 254),
        ("run508", r * 508, b"\xff" + r * 254 + b"\xff" + r * 254),
        ("run508_zero", r * 508 + b"\x00", b"\xff" + r * 254 + b"\xff" + r * 254 + b"\x01\x01"),
        (
            "run253_zero_run254_zero",
            r * 253 + b"\x00" + r * 254 + b"\x00",
            b"\xfe" + r * 253 + b"\xff" + r * 254 + b"\x01\x01",
        ),
    ]
