"""Host client of NUCLEO wire protocol v1 (works with a real board or the emulated one).

* One request at a time, each with a timeout and automatic retries (the board answers a repeated
  ``seq`` from its reply cache, so retrying is always safe).  Every request is preceded by a 0x00 so
  the board's decoder resynchronises even if garbage reached it before.
* A reader thread decodes the byte stream; garbage, truncated frames and bit flips are dropped by
  :class:`~device.nucleo.protocol.FrameDecoder` (counted in :attr:`NucleoClient.stats`) and decoding
  resumes at the next delimiter.
* Events (sample blocks, batch reports, round done, log, boot) go to a bounded queue readable with
  :meth:`NucleoClient.next_event` / :meth:`wait_round_done` / :meth:`read_samples` and, optionally, to
  an ``on_event`` callback (called on the reader thread: keep it short; never touch Qt from it).

Open a board with ``NucleoClient.open(url)`` where ``url`` is a serial port (``/dev/ttyACM0``,
``COM5``), a pty path or a pyserial URL (``socket://127.0.0.1:PORT`` for the virtual bench).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import protocol as P
from .crc import crc32

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_RETRIES = 2
EVENT_QUEUE_MAX = 100_000


class NucleoError(RuntimeError):
    """The board answered a request with ERROR.  ``code`` is an :class:`ErrorCode`, ``error`` the frame."""

    def __init__(self, error: P.Error):
        super().__init__(error.describe())
        self.error = error
        try:
            self.code: P.ErrorCode | int = P.ErrorCode(error.code)
        except ValueError:
            self.code = error.code


class NucleoTimeout(TimeoutError):
    """No valid answer within the timeout (after all retries); the message names the request."""


class IntegrityError(RuntimeError):
    """A downloaded blob failed its CRC-32 or size check."""


class WaitCancelled(RuntimeError):
    """A wait for the board was given up because the caller's ``cancelled()`` became true (e.g. the app quits)."""


class DeviceTransport:
    """Serial-like adapter (``read``/``write``/``close``) around an in-process emulated device, for tests
    and tools that do not need a socket.  Thread-safe; ``read`` waits at most ``timeout`` seconds."""

    def __init__(self, device: Any, clock: Any, timeout: float = 0.05):
        self.device = device
        self.clock = clock
        self.timeout = timeout
        self._lock = threading.Lock()
        self._open = True
        device.connect()

    def write(self, data: bytes) -> int:
        if not self._open:
            raise OSError("transport closed")
        with self._lock:
            self.device.receive(bytes(data))
        return len(data)

    def read(self, n: int = 1) -> bytes:
        deadline = time.monotonic() + self.timeout
        while self._open:
            with self._lock:
                self.device.advance(self.clock.now())
                pend = self.device.pending()
                k = min(n, len(pend))
                if k:
                    data = bytes(pend[:k])
                    self.device.consume(k)
                    return data
            if time.monotonic() >= deadline:
                return b""
            time.sleep(0.001)
        return b""

    def close(self) -> None:
        if self._open:
            self._open = False
            with self._lock:
                self.device.disconnect()


@dataclass
class RoundResult:
    done: P.RoundDone
    batches: list[P.BatchReport]
    vals: list[P.ValReport] = field(default_factory=list)  # protocol v2 validation passes, in order


class NucleoClient:
    def __init__(
        self,
        transport: Any,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        on_event: Callable[[P.Message], None] | None = None,
        read_size: int = 4096,
    ):
        self.transport = transport
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.on_event = on_event
        self._read_size = read_size
        self._decoder = P.FrameDecoder()
        self._cond = threading.Condition()
        self._req_lock = threading.Lock()
        self._seq = 0
        self._waiting_seq: int | None = None
        self._reply: P.Message | None = None
        self._nak = False
        self._events: collections.deque[P.Message] = collections.deque()
        self._closed = False
        self._reader_error: BaseException | None = None
        self.stats = {"events_dropped": 0, "stale_replies": 0, "undecodable": 0, "retries": 0, "unattributed_errors": 0}
        self.hello_info: P.HelloRsp | None = None
        self.url: str | None = None  # the port :meth:`open` opened, what :meth:`reconnect` reopens
        self.baudrate = 921_600
        self._thread = threading.Thread(target=self._reader, name="nucleo-reader", daemon=True)
        self._thread.start()

    # --- construction ------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, baudrate: int = 921_600, timeout: float = DEFAULT_TIMEOUT_S, **kw: Any) -> "NucleoClient":
        client = cls(_open_port(url, baudrate, timeout), timeout=timeout, **kw)
        client.url, client.baudrate = url, baudrate
        return client

    @property
    def link_error(self) -> BaseException | None:
        """Why the link was lost (USB unplug, port closed), or None while it is up."""
        return self._reader_error

    def reconnect(self, url: str | None = None, wait_s: float = 10.0) -> None:
        """Reopen the link after it was lost (USB unplug/replug; ``url`` if the port came back under a
        new name), waiting up to ``wait_s`` seconds for the port to reappear.  The board keeps running
        while its USB link is gone (a round continues); events sent meanwhile are lost, so read
        :meth:`status` afterwards.  Raises :class:`OSError` if the port does not come back in time."""
        url = url or self.url
        if url is None:
            raise OSError("this NUCLEO client was not opened from a port name or URL: cannot reconnect")
        self._closed = True
        self._thread.join(timeout=2.0)
        try:
            self.transport.close()
        except Exception:  # noqa: BLE001 - the old link is dead anyway
            pass
        deadline = time.monotonic() + wait_s
        while True:
            try:
                port = _open_port(url, self.baudrate, self.timeout)
                break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise OSError(f"NUCLEO port {url!r} did not come back within {wait_s:g} s ({exc})") from None
                time.sleep(0.1)
        with self._cond:
            self.transport, self.url = port, url
            self._decoder.reset()
            self._reader_error = None
            self._closed = False
        self._thread = threading.Thread(target=self._reader, name="nucleo-reader", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=2.0)
        try:
            self.transport.close()
        except Exception:  # noqa: BLE001 - closing a dead link must not raise
            pass

    def __enter__(self) -> "NucleoClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- reader thread -----------------------------------------------------------------------------
    @property
    def decoder_stats(self) -> dict[str, int]:
        return dict(self._decoder.stats)

    def _reader(self) -> None:
        while not self._closed:
            try:
                if hasattr(self.transport, "in_waiting"):
                    # pyserial: read(n) waits for n bytes or the timeout; take one byte (blocking up
                    # to the port timeout) then whatever else has already arrived
                    data = self.transport.read(1)
                    waiting = self.transport.in_waiting if data else 0
                    if waiting:
                        data += self.transport.read(min(waiting, self._read_size))
                else:
                    data = self.transport.read(self._read_size)
            except Exception as exc:  # noqa: BLE001 - link lost: remember it, wake waiters
                with self._cond:
                    self._reader_error = exc
                    self._cond.notify_all()
                return
            if not data:
                # pyserial returns b"" on timeout; read at least one byte next time to block
                continue
            for frame in self._decoder.feed(data):
                self._dispatch(frame)

    def _dispatch(self, frame: P.Frame) -> None:
        try:
            msg = P.decode_message(frame)
        except P.ProtocolError:
            self.stats["undecodable"] += 1
            return
        if P.is_event(frame.type):
            self._push_event(msg)
            return
        with self._cond:
            if frame.seq == P.SEQ_UNATTRIBUTED:
                self.stats["unattributed_errors"] += 1
                if self._waiting_seq is not None:
                    self._nak = True
                    self._cond.notify_all()
                return
            if self._waiting_seq is not None and frame.seq == self._waiting_seq and self._reply is None:
                self._reply = msg
                self._cond.notify_all()
            else:
                self.stats["stale_replies"] += 1

    def _push_event(self, msg: P.Message) -> None:
        with self._cond:
            if len(self._events) >= EVENT_QUEUE_MAX:
                self._events.popleft()
                self.stats["events_dropped"] += 1
            self._events.append(msg)
            self._cond.notify_all()
        if self.on_event is not None:
            try:
                self.on_event(msg)
            except Exception:  # noqa: BLE001 - a faulty callback must not kill the reader
                pass

    # --- requests ----------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq = self._seq % 0xFFFE + 1  # 1 .. 0xFFFE, wrapping (0xFFFF is reserved, docs/protocol.md §2)
        return self._seq

    def request(
        self,
        msg: P.Message,
        expect: type[P.Message] | tuple[type[P.Message], ...],
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Any:
        """Send ``msg`` and wait for its answer; raise :class:`NucleoError` on ERROR,
        :class:`NucleoTimeout` when nothing valid came back after ``retries`` resends."""
        timeout = self.timeout if timeout is None else float(timeout)
        retries = self.retries if retries is None else int(retries)
        name = type(msg).__name__
        with self._req_lock:
            seq = self._next_seq()
            wire = P.DELIMITER + msg.encode(seq)
            with self._cond:
                self._waiting_seq, self._reply, self._nak = seq, None, False
            try:
                for attempt in range(retries + 1):
                    if attempt:
                        self.stats["retries"] += 1
                    self._write(wire, name)
                    deadline = time.monotonic() + timeout
                    with self._cond:
                        while self._reply is None and not self._nak and self._reader_error is None:
                            left = deadline - time.monotonic()
                            if left <= 0:
                                break
                            self._cond.wait(left)
                        reply, self._nak = self._reply, False
                        if self._reader_error is not None and reply is None:
                            raise OSError(f"NUCLEO link lost while waiting for {name}: {self._reader_error}")
                    if reply is None:
                        continue
                    if isinstance(reply, P.Error):
                        raise NucleoError(reply)
                    if not isinstance(reply, expect):
                        raise P.ProtocolError(
                            f"{name} was answered by {type(reply).__name__}, expected {_names(expect)}"
                        )
                    return reply
                raise NucleoTimeout(
                    f"no answer to {name} (seq {seq}) after {retries + 1} attempt(s) of {timeout:.2f} s"
                )
            finally:
                with self._cond:
                    self._waiting_seq = None

    def _write(self, data: bytes, name: str) -> None:
        try:
            self.transport.write(data)
        except Exception as exc:  # noqa: BLE001 - pyserial raises several types
            raise OSError(f"cannot send {name} to the NUCLEO: {exc}") from exc

    # --- events ------------------------------------------------------------------------------------
    def fail_waiters(self, exc: BaseException) -> None:
        """Wake whoever waits for a reply or an event now with ``exc`` as the link's error (the owner knows the
        link is gone before this client's reader does)."""
        with self._cond:
            if self._reader_error is None:
                self._reader_error = exc
            self._cond.notify_all()

    def next_event(self, types: type | tuple[type, ...] | None = None, timeout: float = 1.0) -> P.Message | None:
        """Remove and return the oldest queued event of the given class(es) (any if None), waiting up to
        ``timeout`` seconds; None on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, ev in enumerate(self._events):
                    if types is None or isinstance(ev, types):
                        del self._events[i]
                        return ev
                if self._reader_error is not None:  # link lost: say so now, not after the timeout
                    raise OSError(f"NUCLEO link lost: {self._reader_error}")
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return None
                self._cond.wait(left)

    def drain_events(self, types: type | tuple[type, ...] | None = None) -> list[P.Message]:
        with self._cond:
            keep: collections.deque[P.Message] = collections.deque()
            out: list[P.Message] = []
            for ev in self._events:
                (out if types is None or isinstance(ev, types) else keep).append(ev)
            self._events = keep
            return out

    # --- high-level API ----------------------------------------------------------------------------
    def hello(self) -> P.HelloRsp:
        rsp = self.request(P.Hello(), P.HelloRsp)
        if rsp.magic != P.MAGIC or not P.PROTOCOL_MIN <= rsp.proto <= P.PROTOCOL_VERSION:
            raise P.ProtocolError(
                f"board speaks {rsp.magic!r} v{rsp.proto}, this host speaks {P.MAGIC!r} "
                f"v{P.PROTOCOL_MIN}..{P.PROTOCOL_VERSION}",
                P.ErrorCode.BAD_VERSION,
            )
        self.hello_info = rsp
        return rsp

    @property
    def proto(self) -> int:
        """Protocol version agreed in HELLO (1 if HELLO was not exchanged on this connection)."""
        return int(self.hello_info.proto) if self.hello_info is not None else P.PROTOCOL_MIN

    @property
    def supports_robust(self) -> bool:
        """Does the board run robust rounds (protocol v2: validation, best-epoch restore, clipping...)?"""
        if self.hello_info is None:
            self.hello()
        return self.proto >= 2

    def ping(self, data: bytes = b"") -> bytes:
        return self.request(P.Ping(data), P.Pong).data

    def info(self) -> P.Info:
        return self.request(P.GetInfo(), P.Info)

    def status(self) -> P.Status:
        return self.request(P.GetStatus(), P.Status)

    def reset(self) -> None:
        self.request(P.Reset(), P.Ack)

    def set_clock(self, sysclk_hz: int) -> int:
        return self.request(P.SetClock(int(sysclk_hz)), P.Clock).sysclk_hz

    def set_marker(self, enable: bool = True, pulse_us: int = 100) -> None:
        self.request(P.SetMarker(int(enable), 0, int(pulse_us)), P.Ack)

    def sensor_config(self, odr_hz: float, fs_g: int) -> P.SensorState:
        return self.request(P.SensorConfig(P.odr_to_mhz(odr_hz), int(fs_g)), P.SensorState)

    def sensor_state(self) -> P.SensorState:
        return self.request(P.GetSensor(), P.SensorState)

    def stream_start(self, block_len: int = 26) -> P.SensorState:
        return self.request(P.StreamStart(int(block_len)), P.SensorState)

    def stream_stop(self) -> P.SensorState:
        return self.request(P.StreamStop(), P.SensorState)

    def read_samples(self, timeout: float = 1.0) -> P.Samples | None:
        return self.next_event(P.Samples, timeout)  # type: ignore[return-value]

    def set_activity(self, activity: str) -> P.Activity:
        """Emulated board only: choose what the emulated person is doing (see ``get_activity``)."""
        return self.request(P.SimSetActivity(activity), P.Activity)

    def get_activity(self) -> P.Activity:
        return self.request(P.SimGetActivity(), P.Activity)

    def _transfer(
        self,
        begin: P.Message,
        chunk_cls: type,
        end: P.Message,
        end_rsp: type,
        blob: bytes,
        progress: Callable[[int, int], None] | None,
    ) -> Any:
        ack = self.request(begin, P.XferAck)
        off = ack.next_offset
        size = P.MAX_PAYLOAD - 4
        while off < len(blob):
            ack = self.request(chunk_cls(off, blob[off : off + size]), P.XferAck)
            if not off < ack.next_offset <= len(blob):
                raise P.ProtocolError(
                    f"board acknowledged offset {ack.next_offset} after a chunk at {off} of {len(blob)}"
                )
            off = ack.next_offset
            if progress is not None:
                progress(off, len(blob))
        return self.request(end, end_rsp)

    def upload_model(
        self, arch: Any, weights: Mapping[str, Sequence[np.ndarray]], progress: Callable[[int, int], None] | None = None
    ) -> P.ModelInfo:
        blob, desc_len = P.encode_model(arch, weights)
        info = self._transfer(
            P.ModelBegin(len(blob), desc_len, crc32(blob)), P.ModelChunk, P.ModelEnd(), P.ModelInfo, blob, progress
        )
        if info.crc32 != crc32(blob):
            raise IntegrityError(f"board stored model CRC 0x{info.crc32:08X}, uploaded 0x{crc32(blob):08X}")
        return info

    def clear_data(self, slot: int = 0xFF) -> P.DataState:
        return self.request(P.DataClear(slot), P.DataState)

    def upload_dataset(
        self,
        x: np.ndarray,
        y: Sequence[int],
        slot: int = 0,
        dtype: P.DType = P.DType.F32,
        scale: float = 1.0,
        progress: Callable[[int, int], None] | None = None,
    ) -> P.DataState:
        """Append labelled windows to a slot (0 = local training set, 1 = held set)."""
        blob = P.encode_dataset(x, y, dtype, scale)
        return self._transfer(
            P.DataBegin(slot, 0, 0, len(blob), crc32(blob)), P.DataChunk, P.DataEnd(), P.DataState, blob, progress
        )

    def train(
        self,
        mode: str | int = "full",
        epochs: int = 2,
        batch: int = 32,
        lr: float = 0.01,
        warmup_epochs: int = 0,
        warmup_lr: float | None = None,
        shuffle: bool = True,
        seed: int = 0,
        layer_indices: Iterable[int] = (),
        n_val: int = 0,
        patience: int = 0,
        restore_best: bool = False,
        select_f1: bool = False,
        feature_lr_scale: float = 1.0,
        clip_norm: float = 0.0,
        l2sp: float = 0.0,
    ) -> P.RoundInfo:
        """Start a training round; returns at once with its plan (reports then arrive as events).

        The robust options (protocol v2, docs/protocol.md §3.4): the last ``n_val`` windows of slot 0 are
        validation windows, measured before the round and after every epoch (VAL_REPORT events);
        ``restore_best`` ends with the best pass's weights (best = lower loss, or with ``select_f1``
        higher macro-F1 then lower loss); ``patience`` stops early; ``feature_lr_scale``, ``clip_norm``,
        ``l2sp`` change the main phase's SGD step.  Left at their defaults the request is the v1 one; any
        of them on a v1 board raises :class:`ValueError` before anything is sent."""
        if isinstance(mode, str):
            try:
                m = P.TrainMode[mode.strip().upper()]
            except KeyError:
                raise ValueError(f"training mode {mode!r} is not one of full, tl, last, mask") from None
        else:
            m = P.TrainMode(mode)
        mask = 0
        for i in layer_indices:
            if not 0 <= i < 64:
                raise ValueError(f"layer index {i} outside 0..63 for the training mask")
            mask |= 1 << i
        val_flags = (P.ValFlags.RESTORE_BEST if restore_best else 0) | (P.ValFlags.SELECT_F1 if select_f1 else 0)
        msg = P.TrainStart(
            int(m),
            int(shuffle),
            int(epochs),
            int(batch),
            int(warmup_epochs),
            float(lr),
            float(lr if warmup_lr is None else warmup_lr),
            int(seed) & 0xFFFFFFFF,
            mask,
            int(n_val),
            int(patience),
            int(val_flags),
            float(feature_lr_scale),
            float(clip_norm),
            float(l2sp),
        )
        if msg.extended and not self.supports_robust:
            raise ValueError(
                f"the board speaks protocol v{self.proto}: robust rounds (validation, restore, clipping, "
                "per-layer lr, L2-SP) need v2 — update its firmware or train with the plain procedure"
            )
        return self.request(msg, P.RoundInfo)

    def abort(self) -> None:
        self.request(P.TrainAbort(), P.Ack)

    def wait_round_done(
        self,
        timeout: float,
        on_batch: Callable[[P.BatchReport], None] | None = None,
        check_every: float = 0.5,
        on_val: Callable[[P.ValReport], None] | None = None,
    ) -> RoundResult:
        """Collect batch reports until ROUND_DONE; raises :class:`NucleoTimeout` after ``timeout`` s.

        When no report arrived for ``check_every`` seconds the board's STATUS is read, so a board that
        stopped answering (:class:`NucleoTimeout`), was reset (:class:`~device.nucleo.protocol.ProtocolError`
        naming the BOOT) or finished while its ROUND_DONE report was lost (:class:`ProtocolError`) is
        reported at once instead of after ``timeout``.  A lost link raises :class:`OSError`."""
        deadline = time.monotonic() + timeout
        batches: list[P.BatchReport] = []
        vals: list[P.ValReport] = []
        quiet_since = time.monotonic()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NucleoTimeout(
                    f"training round not done after {timeout:.1f} s ({len(batches)} batch reports seen)"
                )
            ev = self.next_event((P.BatchReport, P.ValReport, P.RoundDone), min(left, 0.1))
            if isinstance(ev, P.BatchReport):
                batches.append(ev)
                quiet_since = time.monotonic()
                if on_batch is not None:
                    on_batch(ev)
            elif isinstance(ev, P.ValReport):
                vals.append(ev)
                quiet_since = time.monotonic()
                if on_val is not None:
                    on_val(ev)
            elif isinstance(ev, P.RoundDone):
                return RoundResult(ev, batches, vals)
            elif check_every and time.monotonic() - quiet_since >= check_every:
                self._check_round_alive(batches)
                quiet_since = time.monotonic()

    def _check_round_alive(self, batches: list[P.BatchReport]) -> None:
        """No report for a while: is the round still running on the board?"""
        try:
            st = self.status()
        except NucleoTimeout as exc:
            raise NucleoTimeout(
                f"the board stopped answering during the training round ({len(batches)} batch reports seen): {exc}"
            ) from None
        if st.state == P.BoardState.TRAINING:
            return
        # The ROUND_DONE report (and the last BATCH_REPORTs) may be just behind the status answer: wait for it
        # without taking it out of the queue, so the caller still reads the reports in the order they came.
        deadline = time.monotonic() + 0.3
        with self._cond:
            while not any(isinstance(e, P.RoundDone) for e in self._events):
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._cond.wait(left)
            if any(isinstance(e, P.RoundDone) for e in self._events):
                return
        boot = next((e for e in list(self._events) if isinstance(e, P.Boot)), None)
        if boot is not None or not st.model_loaded:
            raise P.ProtocolError(
                f"the board was reset during the training round (BOOT, reset cause {boot.reset_cause if boot else '?'}); "
                f"its model and data are gone: upload them again ({len(batches)} batch reports seen)"
            )
        raise P.ProtocolError(
            f"the training round ended on the board but its ROUND_DONE report was lost ({len(batches)} batch "
            f"reports seen); read the weights with download_weights() to continue"
        )

    def evaluate(
        self, slot: int = 1, timeout: float = 120.0, cancelled: Callable[[], bool] | None = None
    ) -> P.EvalResult:
        """Run inference on a stored slot on the board; returns its confusion matrix (rows = true class).
        ``timeout`` bounds the (simulated or real) inference time.  ``cancelled()`` is polled every 0.1 s:
        when true the wait ends with :class:`WaitCancelled` (the board finishes its evaluation on its own;
        the next call drains the stale result)."""
        self.drain_events(P.EvalResult)
        self.request(P.Evaluate(slot), P.Ack)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            ev = self.next_event(P.EvalResult, max(0.0, min(left, 0.1)) if cancelled else max(0.0, left))
            if ev is not None:
                return ev  # type: ignore[return-value]
            if cancelled is not None and cancelled():
                raise WaitCancelled(f"evaluation of slot {slot}: no longer waited for")
            if time.monotonic() >= deadline:
                raise NucleoTimeout(f"evaluation of slot {slot} not finished after {timeout:.1f} s")

    def download_weights(
        self, arch: Any, names: Sequence[str] | None = None, progress: Callable[[int, int], None] | None = None
    ) -> dict[str, list[np.ndarray]]:
        """Read the board's current weights; CRC-32 verified.  Keys are ``arch``'s layer names (or
        ``names``, mapped by layer order)."""
        meta = self.request(P.WeightsInfo(), P.WeightsMeta)
        tensors = sum(len(ss) for ss in arch.param_shapes().values())
        if meta.n_tensors != tensors:  # caught before the bytes: same size, other layout is still another model
            raise P.ProtocolError(
                f"the board's weights are {meta.n_tensors} tensors, the model read back has {tensors}: "
                "the board holds another model"
            )
        buf = bytearray()
        size = P.MAX_PAYLOAD - 4
        while len(buf) < meta.total_len:
            want = min(size, meta.total_len - len(buf))
            rsp = self.request(P.WeightsRead(len(buf), want), P.WeightsData)
            if rsp.offset != len(buf) or not rsp.data:
                raise P.ProtocolError(
                    f"weights read at {len(buf)} answered with offset {rsp.offset}, {len(rsp.data)} bytes"
                )
            buf += rsp.data
            if progress is not None:
                progress(len(buf), meta.total_len)
        if len(buf) != meta.total_len or crc32(buf) != meta.crc32:
            raise IntegrityError(
                f"weights download: {len(buf)} bytes with CRC-32 0x{crc32(buf):08X}, board announced {meta.total_len} bytes with 0x{meta.crc32:08X}"
            )
        return P.decode_weights(arch, bytes(buf), names)


def _open_port(url: str, baudrate: int, timeout: float) -> Any:
    import serial  # pyserial

    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=0.05, write_timeout=timeout)
    except (serial.SerialException, ValueError, OSError) as exc:
        raise OSError(f"cannot open NUCLEO port {url!r}: {exc}") from exc


def _names(expect: type | tuple[type, ...]) -> str:
    if isinstance(expect, tuple):
        return " or ".join(t.__name__ for t in expect)
    return expect.__name__
