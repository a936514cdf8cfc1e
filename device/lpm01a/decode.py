"""Incremental, vectorised decoders for the two LPM01A stream formats (protocol reference §3).

Feed raw bytes as they arrive (any chunking: frames and lines may be split anywhere); each
:meth:`StreamDecoder.feed` returns a :class:`Decoded` with

* ``values`` — float64 samples (A for ``output current``, J per period for ``output energy``),
  with **NaN for samples known to be lost** (detected from the timestamps every 1000 samples), so
  that position in the array is always the device's sample number;
* ``first_index`` — the device sample number (0-based) of ``values[0]``;
* ``events`` — metadata in stream order (:class:`StreamEvent`), each tagged with the sample index at
  which it occurred: timestamps with buffer load, D7 events, end tag, summary, device errors
  (overflow/overcurrent/…), in-stream command acks (ASCII lines or F6–F9 frames) and corruption.

``ascii_dec`` (§3.1): lines are split and classified with numpy (a sample line is ``DDDD±EE``);
metadata lines (≈1 in 1000) go through a small Python classifier.  NULs are dropped; merged or
partial lines are regex-extracted and counted as corruption.

``bin_hexa`` (§3.2): parsed in 2-byte alignment relative to the last frame boundary (the 9-byte
timestamp frame flips the parity), so a sample whose low byte is ``0xF0`` is never mistaken for a
frame.  Samples are decoded for both parities at once and sliced, so the per-frame Python work is a
few slices.  Text inserted in the stream (``\\r\\nPowerShield > ack …``, ``Acquisition completed``)
is recognised by its prompt.  A malformed frame (corruption, dropped or inserted bytes) triggers a
resync on the next valid frame; the samples in between are accounted as lost at the next timestamp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from device.lpm01a.spec import PROMPT_B, TIMESTAMP_EVERY

__all__ = [
    "StreamEvent",
    "Decoded",
    "StreamDecoder",
    "AsciiDecoder",
    "BinaryDecoder",
    "make_decoder",
    "classify_text_line",
]

# Event kinds (StreamEvent.kind)
TIMESTAMP = "timestamp"  # value = seconds since start, buffer_pct set
END = "end"  # end-of-acquisition tag
SUMMARY = "summary"  # text = summary lines joined by "\n"
COMPLETED = "completed"  # "Acquisition completed" banner
EVENT = "event"  # eventsrc D7 edge: value = counter, text = edge ("ris"/"fal")
ERROR = "error"  # device error (code: overflow / overcurrent / voltage / other); acquisition stops
ACK = "ack"  # in-stream command ack: cmd, text = rest of line
REPLY_ERROR = "reply_error"  # in-stream "PowerShield > error <cmd>": cmd
ERROR_DETAIL = "error_detail"  # "Error detail: …" line following a reply_error
PWR = "pwr"  # target power state: value 1 on / 0 off (ASCII "pwr on" line or F9 frame)
VOLT = "volt"  # F7 frame: value = volts
TEMP = "temp"  # F8 frame: value = °C
TARGRST = "targrst"  # F6 frame (targrst ack)
INFO = "info"  # any other text / F2 info frame
CORRUPT = "corrupt"  # malformed bytes skipped (value = byte count) or implausible metadata
EXCESS = "excess"  # more samples than the timestamps account for (value = count)

_SAMPLE_RE = re.compile(rb"\d{4}[-+]\d{2}")
_TS_RE = re.compile(r"timestamp:\s*[ ><]?\s*(\d+)\s*s\s*(\d+)\s*ms\s*,\s*buff\s*(\d+)\s*%", re.I)
_EVENT_RE = re.compile(r"^event\s+(\d+)\s*(\w*)", re.I)
_POW10 = 10.0 ** np.arange(-99, 100, dtype=np.float64)  # index = exponent + 99
_POW16 = 16.0 ** -np.arange(16, dtype=np.float64)  # index = E
_MAX_TEXT = 2048  # longest text line / message frame accepted before declaring garbage
#: Largest sample value a shield can send: currents stay below 0.2 A (dynamic overcurrent trips at
#: ~59 mA, static mode ends at 200 mA) and energy per period below 0.2 A x 3.3 V x 1 s.  A bin_hexa word
#: above it (E <= 2 with a large mantissa) is a sign that the 2-byte alignment was lost (a dropped or
#: inserted byte): decoding such words would yield amperes of garbage.
_MAX_PLAUSIBLE = 1.0


@dataclass
class StreamEvent:
    """One metadata item of the stream, at absolute sample ``index`` (the next sample's number)."""

    kind: str
    index: int
    text: str = ""
    value: float | None = None
    cmd: str = ""  # for ack / reply_error: the command name
    code: str = ""  # for error: overflow / overcurrent / voltage / other
    buffer_pct: int | None = None  # for timestamps

    def as_dict(self) -> dict:
        d = {"kind": self.kind, "index": self.index}
        for k in ("text", "value", "cmd", "code", "buffer_pct"):
            v = getattr(self, k)
            if v not in ("", None):
                d[k] = v
        return d


@dataclass
class Decoded:
    """What one :meth:`StreamDecoder.feed` produced."""

    first_index: int
    values: np.ndarray
    events: list[StreamEvent] = field(default_factory=list)
    lost: int = 0  # samples NaN-filled in this chunk
    corrupt_bytes: int = 0

    @property
    def next_index(self) -> int:
        return self.first_index + len(self.values)


def _error_code(text: str) -> str:
    t = text.lower()
    if "overflow" in t:
        return "overflow"
    if "overcurrent" in t or "over current" in t or "over-current" in t:
        return "overcurrent"
    if "voltage" in t:
        return "voltage"
    return "other"


def classify_text_line(line: str, index: int = 0) -> StreamEvent | None:
    """Classify one text line of the device (prompt optional, CR/LF/NUL already stripped or not).

    Used by both stream decoders and by the driver's reply reader; returns None for blank lines."""
    s = line.replace("\x00", "").strip()
    if not s:
        return None
    prompted = s.startswith("PowerShield >")
    if prompted:
        s = s[len("PowerShield >") :].strip()
    low = s.lower()
    if low.startswith("acquisition completed"):
        return StreamEvent(COMPLETED, index, s)
    if low.startswith("ack"):
        rest = s[3:].strip()
        cmd = rest.split(None, 1)[0].rstrip(":") if rest else ""
        return StreamEvent(ACK, index, rest, cmd=cmd.lower())
    if low.startswith("error detail"):
        return StreamEvent(ERROR_DETAIL, index, s.split(":", 1)[1].strip() if ":" in s else s)
    if low.startswith("error") or low.startswith("err "):
        rest = s.split(None, 1)[1] if " " in s else ""
        if low.startswith("error:") or low.startswith("error :") or not prompted and _error_code(s) != "other":
            return StreamEvent(ERROR, index, s, code=_error_code(s))
        cmd = rest.split(None, 1)[0].lower() if rest else ""
        return StreamEvent(REPLY_ERROR, index, rest, cmd=cmd)
    m = _TS_RE.search(s)
    if m:
        secs = int(m.group(1)) + int(m.group(2)) / 1000.0
        return StreamEvent(TIMESTAMP, index, s, value=secs, buffer_pct=int(m.group(3)))
    if low == "end":
        return StreamEvent(END, index, s)
    m = _EVENT_RE.match(s)
    if m:
        return StreamEvent(EVENT, index, m.group(2).lower(), value=int(m.group(1)))
    if low in ("pwr on", "pwr off"):
        return StreamEvent(PWR, index, s, value=1.0 if low.endswith("on") else 0.0)
    if "overcurrent" in low or "over current" in low:
        return StreamEvent(ERROR, index, s, code="overcurrent")
    return StreamEvent(INFO, index, s)


class StreamDecoder:
    """Common state: sample numbering, timestamp-based loss accounting, summary, end/completed.

    ``rate_hz`` enables loss accounting (a timestamp at t ms means t·rate/1000 samples so far)."""

    #: wrap period of the timestamp clock, seconds (ASCII: 3-digit seconds; binary: 31-bit ms)
    _TS_WRAP_S = 1000.0

    def __init__(self, rate_hz: float | None = None, start_index: int = 0) -> None:
        self.rate_hz = float(rate_hz) if rate_hz else None
        self.next_index = int(start_index)
        self.received = 0  # decoded samples (not NaN-filled)
        self.lost = 0
        self.excess = 0
        self.corrupt_bytes = 0
        self.buffer_pct: int | None = None
        self.buffer_pct_max = 0
        self.timestamps = 0
        self.ended = False  # end tag seen: no more samples
        self.done = False  # "Acquisition completed" seen: the stream is over
        self.summary: list[str] = []
        self._in_summary = False
        self._offset = 0  # sample-count correction after excess samples
        self._ts_wraps = 0
        self._ts_last = -1.0
        self._trailing = bytearray()
        # per-feed accumulation
        self._parts: list[np.ndarray] = []
        self._events: list[StreamEvent] = []
        self._feed_lost = 0
        self._feed_corrupt = 0

    # --- helpers for subclasses ----------------------------------------------------------------
    def _begin(self) -> int:
        self._parts, self._events, self._feed_lost, self._feed_corrupt = [], [], 0, 0
        return self.next_index

    def _finish(self, first: int) -> Decoded:
        if not self._parts:
            values = np.empty(0, np.float64)
        elif len(self._parts) == 1:
            values = self._parts[0]
        else:
            values = np.concatenate(self._parts)
        out = Decoded(first, values, self._events, self._feed_lost, self._feed_corrupt)
        self._parts, self._events = [], []
        return out

    def _samples(self, values: np.ndarray) -> None:
        if len(values):
            if self.ended:  # after the end tag: not the acquisition's (a summary's value lines are its text)
                return
            self._parts.append(values)
            self.next_index += len(values)
            self.received += len(values)

    def _event(self, ev: StreamEvent) -> None:
        ev.index = self.next_index
        self._events.append(ev)

    def _corrupt(self, nbytes: int, why: str) -> None:
        if nbytes <= 0:
            return
        self.corrupt_bytes += nbytes
        self._feed_corrupt += nbytes
        self._event(StreamEvent(CORRUPT, 0, why, value=float(nbytes)))

    def _timestamp(self, seconds: float, buffer_pct: int | None, text: str = "") -> None:
        # unwrap a clock that went backwards (3-digit seconds in ASCII, 31-bit ms in binary)
        t = seconds + self._ts_wraps * self._TS_WRAP_S
        wrapped = self._ts_last >= 0 and t + 1.0 < self._ts_last
        if wrapped:
            t += self._TS_WRAP_S
        self.timestamps += 1
        if buffer_pct is not None:
            self.buffer_pct = buffer_pct
            self.buffer_pct_max = max(self.buffer_pct_max, buffer_pct)
        accept = True
        if self.rate_hz and not self.ended:
            expected = int(round(t * self.rate_hz)) + self._offset
            gap = expected - self.next_index
            why = self._implausible(t, gap)
            if why:  # a corrupted timestamp: no gap, no excess, and the clock stays as it was (a later true
                # timestamp earlier than a corrupted one is not a wrap of the device's clock)
                accept = False
                self._event(StreamEvent(CORRUPT, 0, why, value=0.0))
            elif gap > 0:
                self._parts.append(np.full(gap, np.nan))
                self.next_index += gap
                self.lost += gap
                self._feed_lost += gap
            elif gap < 0:
                self.excess += -gap
                self._offset += -gap
                self._event(StreamEvent(EXCESS, 0, "samples beyond what the timestamps account for", value=float(-gap)))
        if accept:
            self._ts_wraps += wrapped
            self._ts_last = t
        self._event(StreamEvent(TIMESTAMP, 0, text, value=t, buffer_pct=buffer_pct))

    def _implausible(self, t: float, gap: int) -> str:
        """Why (the corrupt event's text) a timestamp at ``t`` s that implies ``gap`` lost (> 0) or excess
        (< 0) samples cannot be true, or "" (docs/lpm01a.md "Loss accounting").  Within one timestamp period (1000 samples) any
        gap is believed: bytes dropped or inserted in transit.  A larger one means whole periods went
        missing, and then the timestamp lies on the device's 1000-sample grid (within the 1 ms resolution
        of its clock); one bit flipped in the time field almost never lands there."""
        rate = float(self.rate_hz or 0.0)
        if gap > max(10 * TIMESTAMP_EVERY, int(5 * rate)):
            return f"implausible timestamp {t:.3f} s ignored"
        if abs(gap) <= TIMESTAMP_EVERY:
            return ""
        pos = t * rate
        off = abs(pos - TIMESTAMP_EVERY * round(pos / TIMESTAMP_EVERY))
        if off > max(1.0, rate / 1000.0):
            return f"implausible timestamp {t:.3f} s ignored ({off:.0f} samples off the {TIMESTAMP_EVERY}-sample grid)"
        return ""

    def _text(self, line: str) -> None:
        """Handle one text line from the stream (ASCII metadata, in-stream replies, binary tail)."""
        ev = classify_text_line(line)
        if ev is None:
            return
        if self._in_summary:
            if ev.kind == INFO and ev.text.lower().startswith("summary end"):
                self._in_summary = False
                self._event(StreamEvent(SUMMARY, 0, "\n".join(self.summary)))
            elif ev.kind in (INFO, PWR, EVENT):
                self.summary.append(ev.text if ev.kind == INFO else line.strip())
            else:  # a summary that never ended: flush it and handle the line normally
                self._in_summary = False
                self._event(StreamEvent(SUMMARY, 0, "\n".join(self.summary)))
                self._text(line)
            return
        if ev.kind == TIMESTAMP:
            self._timestamp(float(ev.value or 0.0), ev.buffer_pct, ev.text)
            return
        if ev.kind == INFO and ev.text.lower().startswith("summary"):
            rest = ev.text[len("summary") :].strip()
            self.ended = True  # the summary only follows the end of the samples
            if rest.lower().startswith("beg"):
                self._in_summary = True
                tail = rest[3:].strip()
                if tail:
                    self.summary.append(tail)
            else:
                self.summary.append(rest)
                self._event(StreamEvent(SUMMARY, 0, rest))
            return
        if ev.kind == END:
            self.ended = True
        elif ev.kind == COMPLETED:
            self.ended = True
            self.done = True
        self._event(ev)

    # --- public -------------------------------------------------------------------------------
    def feed(self, data: bytes) -> Decoded:  # pragma: no cover - abstract
        raise NotImplementedError

    def take_trailing(self) -> bytes:
        """Bytes received after ``Acquisition completed`` (replies to queued commands)."""
        out = bytes(self._trailing)
        self._trailing.clear()
        return out


class AsciiDecoder(StreamDecoder):
    """``ascii_dec``: 9-byte sample lines ``DDDD±EE\\r\\n`` and text metadata lines."""

    _TS_WRAP_S = 1000.0

    def __init__(self, rate_hz: float | None = None, start_index: int = 0) -> None:
        super().__init__(rate_hz, start_index)
        self._left = b""

    def feed(self, data: bytes) -> Decoded:
        first = self._begin()
        if self.done:
            self._trailing += data
            return self._finish(first)
        data = (self._left + bytes(data)).replace(b"\x00", b"")
        last_nl = data.rfind(b"\n")
        if last_nl < 0:
            if len(data) > _MAX_TEXT:
                self._corrupt(len(data), "no line end in a long run of bytes")
                data = b""
            self._left = data
            return self._finish(first)
        self._left = data[last_nl + 1 :]
        self._lines(data[: last_nl + 1])
        return self._finish(first)

    def _lines(self, body: bytes) -> None:
        """Decode whole lines (``body`` ends with a line end): sample lines vectorised, the others one by one.
        Inside a summary sample-shaped lines are the summary's text, kept as the device sent them."""
        arr = np.frombuffer(body, np.uint8)
        ends = np.flatnonzero(arr == 10)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        length = ends - starts
        has_cr = np.zeros(len(ends), bool)
        nz = length > 0
        has_cr[nz] = arr[ends[nz] - 1] == 13
        length = length - has_cr
        cand = np.flatnonzero(length == 7)
        cols = arr[starts[cand, None] + np.arange(7)].astype(np.int16) - 48  # '0' == 48
        digit = (cols >= 0) & (cols <= 9)
        sign = cols[:, 4]
        ok = digit[:, [0, 1, 2, 3, 5, 6]].all(axis=1) & ((sign == -3) | (sign == -5))  # '-'=45, '+'=43
        sample_lines = cand[ok]
        c = cols[ok]
        mant = c[:, 0] * 1000 + c[:, 1] * 100 + c[:, 2] * 10 + c[:, 3]
        expo = (c[:, 5] * 10 + c[:, 6]) * np.where(c[:, 4] == -3, -1, 1)
        values = mant * _POW10[expo + 99]
        is_sample = np.zeros(len(ends), bool)
        is_sample[sample_lines] = True
        special = np.flatnonzero(~is_sample & (length > 0))

        def run(a: int, b: int) -> None:  # the sample-shaped lines a..b-1 (between two other lines)
            if not self._in_summary:
                self._samples(values[a:b])
                return
            for i in sample_lines[a:b].tolist():  # a summary's values: its text
                self._text(body[starts[i] : starts[i] + 7].decode("ascii"))

        if len(special) == 0:
            run(0, len(values))
            return
        prev = 0
        cut = np.searchsorted(sample_lines, special)
        for j, k in zip(special.tolist(), cut.tolist()):
            run(prev, k)
            prev = k
            line = body[starts[j] : starts[j] + length[j]]
            if line[:1].isdigit() and not (self.ended or self._in_summary):
                found = _SAMPLE_RE.findall(line)
                extra = len(line) - 7 * len(found)
                if found:
                    self._samples(np.array([int(f[:4]) * 10.0 ** int(f[4:7]) for f in found]))
                self._corrupt(extra, f"malformed sample line {line[:40]!r}")
                continue
            self._text(line.decode("ascii", "replace"))
            if self.done:
                self._trailing += body[ends[j] + 1 :] + self._left
                self._left = b""
                return
        run(prev, len(values))


# bin_hexa frame lengths by tag (None: variable length, terminated by FF FF)
_FRAME_LEN = {0xF1: None, 0xF2: None, 0xF3: 9, 0xF4: 4, 0xF5: 4, 0xF6: 4, 0xF7: 6, 0xF8: 6, 0xF9: 5}
_PRE, _STREAM, _TAIL, _DONE = range(4)
_PROMPTS = (b"\r\n" + PROMPT_B, PROMPT_B)


class BinaryDecoder(StreamDecoder):
    """``bin_hexa``: 16-bit big-endian samples ``EEEE MMMM MMMM MMMM`` and ``F0 Fx … FF FF`` frames."""

    _TS_WRAP_S = 2.0**31 / 1000.0

    def __init__(self, rate_hz: float | None = None, start_index: int = 0) -> None:
        super().__init__(rate_hz, start_index)
        self._left = b""
        self._mode = _PRE
        self._resync = False
        self._skip_crlf = False

    # -- vectorised sample decode of one parity --
    @staticmethod
    def _decode_words(data: bytes, offset: int) -> np.ndarray:
        n = (len(data) - offset) // 2
        if n <= 0:
            return np.empty(0, np.float64)
        w = np.frombuffer(data, ">u2", count=n, offset=offset).astype(np.uint16)
        return (w & 0x0FFF) * _POW16[w >> 12]

    def feed(self, data: bytes) -> Decoded:
        first = self._begin()
        if self._mode == _DONE:
            self._trailing += data
            return self._finish(first)
        data = self._left + bytes(data)
        self._left = b""
        n = len(data)
        pos = 0
        arr = np.frombuffer(data, np.uint8)
        cand = np.flatnonzero(arr >= 0xF0)
        cands = (cand[(cand & 1) == 0], cand[(cand & 1) == 1])
        decoded: list[np.ndarray | None] = [None, None]
        # hold back a possibly split prompt at the very end
        hold = 0
        for k in range(min(len(_PROMPTS[0]) - 1, n), 0, -1):
            if data.endswith(_PROMPTS[0][:k]) or data.endswith(_PROMPTS[1][:k]):
                hold = k
                break
        text_at = self._find_text(data, 0)
        while pos < n and self._mode != _DONE:
            if self._resync:
                nxt = self._find_sync(data, pos)
                if nxt < 0:
                    keep = min(n - pos, 16)
                    self._corrupt(n - pos - keep, "skipping bytes while resynchronising")
                    pos = n - keep
                    break
                self._corrupt(nxt - pos, "skipping bytes while resynchronising")
                pos = nxt
                self._resync = False
                text_at = self._find_text(data, pos)
                continue
            if self._mode == _PRE:
                b = data[pos]
                if b in (0x0D, 0x0A, 0x00, 0x20):
                    pos += 1
                    continue
                if data.startswith(PROMPT_B, pos) or data.startswith(b"ack ", pos):
                    nl = data.find(b"\n", pos)
                    if nl < 0:
                        break
                    self._text(data[pos:nl].decode("ascii", "replace"))
                    pos = nl + 1
                    if self.done:
                        self._mode = _DONE
                    continue
                if pos + len(PROMPT_B) > n and PROMPT_B.startswith(data[pos:]):
                    break  # a prompt split across reads
                self._mode = _STREAM
                text_at = self._find_text(data, pos)
                continue
            if self._mode == _TAIL:
                pos = self._tail(data, pos)
                if pos < 0:
                    pos = n - len(self._left)
                    break
                continue
            # _STREAM: samples up to the next frame marker, inserted text, or the held-back tail
            if self._skip_crlf:  # blank line(s) after inserted text, possibly split across reads
                if data.startswith(b"\r\n", pos):
                    pos += 2
                    continue
                if pos == n - 1 and data[pos] == 0x0D:
                    break
                self._skip_crlf = False
            if 0 <= text_at < pos:
                text_at = self._find_text(data, pos)
            par = pos & 1
            cp = cands[par]
            k = int(np.searchsorted(cp, pos))
            marker = int(cp[k]) if k < len(cp) else n
            stop = min(marker, text_at if text_at >= 0 else n, n - hold)
            nwords = (stop - pos) // 2
            if nwords > 0:
                words = decoded[par]
                if words is None:
                    words = decoded[par] = self._decode_words(data, par)
                wi = pos // 2
                run = words[wi : wi + nwords]
                bad = np.flatnonzero(run > _MAX_PLAUSIBLE)
                if len(bad):  # misaligned: keep what precedes, resync (the gap is NaN-filled at the next timestamp)
                    j = int(bad[0])
                    self._samples(run[:j])
                    pos += 2 * j
                    self._corrupt(1, f"implausible sample word 0x{data[pos]:02X}{data[pos + 1]:02X} (alignment lost)")
                    self._resync = True
                    pos += 1
                    continue
                self._samples(run)
                pos += 2 * nwords
            if text_at >= 0 and 0 <= text_at - pos <= 1:
                if pos < text_at:  # one orphan byte before the inserted text
                    self._corrupt(1, "odd byte before inserted text")
                    pos = text_at
                newpos = self._inline_text(data, pos)
                if newpos < 0:
                    break
                pos = newpos
                text_at = self._find_text(data, pos)
                continue
            if pos == marker:
                newpos = self._frame(data, pos)
                if newpos < 0:
                    break  # incomplete frame: wait for more bytes
                if newpos == pos:  # malformed frame: resynchronise
                    self._corrupt(1, f"malformed frame starting 0x{data[pos]:02X}")
                    self._resync = True
                    pos = pos - 1 if pos > 0 and data[pos - 1] == 0xF0 else pos + 1
                    continue
                pos = newpos
                continue
            break  # stopped at the held-back tail or an odd last byte: wait for more bytes
        if self._mode == _DONE:
            self._trailing += data[pos:]
        elif pos < n:
            self._left = data[pos:]
            if len(self._left) > 4 * _MAX_TEXT and self._mode != _STREAM:
                self._corrupt(len(self._left), "unterminated text")
                self._left = b""
        return self._finish(first)

    @staticmethod
    def _find_text(data: bytes, pos: int) -> int:
        q = data.find(PROMPT_B, pos)
        if q < 0:
            return -1
        if q - 2 >= pos and data[q - 2 : q] == b"\r\n":
            return q - 2
        return q

    @staticmethod
    def _find_sync(data: bytes, pos: int) -> int:
        """Next position >= pos where a well-formed frame or prompt starts, or -1."""
        best = -1
        q = pos
        while True:
            q = data.find(b"\xf0", q)
            if q < 0 or q + 1 >= len(data):
                break
            tag = data[q + 1]
            ln = _FRAME_LEN.get(tag, 0)
            if ln and q + ln <= len(data) and data[q + ln - 2 : q + ln] == b"\xff\xff":
                best = q
                break
            q += 1
        t = BinaryDecoder._find_text(data, pos)
        if t >= 0 and (best < 0 or t < best):
            best = t
        return best

    def _inline_text(self, data: bytes, pos: int) -> int:
        """Parse a text reply inserted in the binary stream at ``pos``; returns the new position or
        -1 if incomplete."""
        nl = data.find(b"\n", pos + 2)
        if nl < 0:
            if len(data) - pos > _MAX_TEXT:
                self._corrupt(_MAX_TEXT, "unterminated text in binary stream")
                # what follows may still be that text, never samples: skip to the next frame, in this read or
                # the next (in small reads the rest of the text came out as current samples, 'xx' = 8.08 uA;
                # in one read a frame after it was swallowed with the text)
                self._resync = True
                return pos + _MAX_TEXT
            self._left = data[pos:]
            return -1
        line = data[pos:nl].replace(b"\x00", b"").decode("ascii", "replace")
        p = nl + 1
        while data.startswith(b"\r\n", p):  # trailing blank line(s): a 0x0D0A sample is impossible
            p += 2
        ev_kind = classify_text_line(line)
        if ev_kind is not None and ev_kind.kind == REPLY_ERROR:
            det = b"Error detail"
            if len(data) - p < len(det) and det.startswith(data[p:]):
                self._left = data[pos:]
                return -1
            if data.startswith(det, p):
                nl2 = data.find(b"\n", p)
                if nl2 < 0:
                    self._left = data[pos:]
                    return -1
                self._text(line)
                self._text(data[p:nl2].decode("ascii", "replace"))
                p = nl2 + 1
                while data.startswith(b"\r\n", p):
                    p += 2
                self._skip_crlf = True
                return p
        self._text(line)
        self._skip_crlf = True
        if self.done:
            self._mode = _DONE
        elif self.ended:
            self._mode = _TAIL
        return p

    def _frame(self, data: bytes, pos: int) -> int:
        """Parse the frame at ``pos``; returns the position after it, -1 if incomplete, ``pos`` if
        malformed."""
        n = len(data)
        if pos + 2 > n:
            return -1
        if data[pos] != 0xF0:
            return pos
        tag = data[pos + 1]
        if tag not in _FRAME_LEN and not 0xFA <= tag <= 0xFE:
            return pos
        ln = _FRAME_LEN.get(tag)
        if ln is None:  # variable length: F1/F2/reserved, terminated by FF FF
            end = data.find(b"\xff\xff", pos + 2)
            if end < 0:
                return -1 if n - pos <= _MAX_TEXT else pos
            payload = data[pos + 2 : end]
            self._message(tag, payload)
            return end + 2
        if pos + ln > n:
            return -1
        if data[pos + ln - 2 : pos + ln] != b"\xff\xff":
            return pos
        body = data[pos + 2 : pos + ln - 2]
        if tag == 0xF3:
            raw = int.from_bytes(body[:4], "big")
            ms = raw & 0x7FFFFFFF
            self._timestamp(ms / 1000.0, body[4], f"F3 {raw:08X} {body[4]}%")
        elif tag == 0xF4:
            self.ended = True
            self._event(StreamEvent(END, 0, "F4"))
            self._mode = _TAIL
        elif tag == 0xF5:
            self._event(StreamEvent(ERROR, 0, "overcurrent (F5)", code="overcurrent"))
        elif tag == 0xF6:
            self._event(StreamEvent(TARGRST, 0, "targrst ack (F6)", cmd="targrst"))
        elif tag == 0xF7:
            self._event(StreamEvent(VOLT, 0, "volt (F7)", value=int.from_bytes(body, "big") / 1000.0, cmd="volt"))
        elif tag == 0xF8:
            self._event(
                StreamEvent(TEMP, 0, "temp (F8)", value=float(int.from_bytes(body, "big", signed=True)), cmd="temp")
            )
        elif tag == 0xF9:
            self._event(StreamEvent(PWR, 0, "pwr (F9)", value=float(body[0]), cmd="pwr"))
        return pos + ln

    def _message(self, tag: int, payload: bytes) -> None:
        text = payload.replace(b"\x00", b"").decode("ascii", "replace")
        lines = [ln for ln in text.replace("\r", "").split("\n") if ln.strip()]
        if tag == 0xF1:
            # an F1 frame is either a device error ("error: Tx buffer overflow…", "Voltage drop") or the
            # rejection of a command sent during the acquisition ("error <cmd>" + "Error detail: …")
            for line in lines or ["error"]:
                ev = classify_text_line(line)
                if ev is None:
                    continue
                if ev.kind not in (ERROR, REPLY_ERROR, ERROR_DETAIL):
                    ev = StreamEvent(ERROR, 0, ev.text or line.strip(), code=_error_code(line))
                self._event(ev)
            return
        for line in lines or [""]:
            self._text(line)
        if self.done:
            self._mode = _DONE

    def _tail(self, data: bytes, pos: int) -> int:
        """After the end tag: frames and text lines, no samples.  Returns new pos or -1 (incomplete)."""
        n = len(data)
        while pos < n and data[pos] in (0x0D, 0x0A, 0x00):
            pos += 1
        if pos >= n:
            return pos
        if data[pos] == 0xF0:
            newpos = self._frame(data, pos)
            if newpos < 0:
                self._left = data[pos:]
                return -1
            if newpos == pos:
                self._corrupt(1, "malformed frame after end tag")
                return pos + 1
            return newpos
        nl = data.find(b"\n", pos)
        f0 = data.find(b"\xf0", pos)
        if f0 >= 0 and (nl < 0 or f0 < nl):
            self._text(data[pos:f0].decode("ascii", "replace"))
            return f0
        if nl < 0:
            if n - pos > _MAX_TEXT:
                self._corrupt(n - pos, "unterminated text after end tag")
                return n
            self._left = data[pos:]
            return -1
        self._text(data[pos:nl].decode("ascii", "replace"))
        if self.done:
            self._mode = _DONE
        return nl + 1


def make_decoder(fmt: str, rate_hz: float | None = None, start_index: int = 0) -> StreamDecoder:
    """Decoder for ``fmt`` in ``("ascii_dec", "bin_hexa")``."""
    if fmt == "ascii_dec":
        return AsciiDecoder(rate_hz, start_index)
    if fmt == "bin_hexa":
        return BinaryDecoder(rate_hz, start_index)
    raise ValueError(f"format {fmt!r}: must be 'ascii_dec' or 'bin_hexa'")
