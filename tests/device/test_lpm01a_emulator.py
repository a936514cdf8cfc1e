"""LPM01A emulator: shell grammar, state machine, stream layout, TX model, faults (no sockets here:
the emulator is driven directly with a manual clock, so every byte and every sample time is exact)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from device.lpm01a import spec
from device.lpm01a.emulator import (
    OVERCURRENT_ERROR,
    OVERFLOW_ERROR,
    LPM01AEmulator,
    State,
    bin_frame_text,
    encode_ascii_samples,
    encode_bin_words,
)
from device.power_profiles import ConstantCurrent, L496Profile, PiecewiseCurrent


class ManualClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


def make(source=None, host=True, **kw) -> tuple[LPM01AEmulator, ManualClock]:
    clk = ManualClock()
    dev = LPM01AEmulator(clk, source or ConstantCurrent(1e-3), seed=3, **kw)  # type: ignore[arg-type]
    dev.connect()
    if host:
        assert cmd(dev, "htc") == b"\r\nPowerShield > ack htc\r\n\r\n"
    return dev, clk


def drain(dev: LPM01AEmulator) -> bytes:
    out = dev.tx.peek_all()
    dev.tx.consume(len(out))
    return out


def cmd(dev: LPM01AEmulator, line: str, eol: str = "\n") -> bytes:
    dev.receive((line + eol).encode())
    return drain(dev)


def run_until(dev: LPM01AEmulator, clk: ManualClock, t_end: float, step: float = 0.004, read: bool = True) -> bytes:
    out = bytearray()
    while clk.t < t_end - 1e-12:
        clk.t = min(t_end, clk.t + step)
        dev.advance(clk.t)
        if read:
            out += drain(dev)
    return bytes(out)


def configure(dev: LPM01AEmulator, *lines: str) -> None:
    for line in lines:
        reply = cmd(dev, line)
        assert reply == f"\r\nPowerShield > ack {line}\r\n\r\n".encode(), reply


# --- a small independent bin_hexa parser for the tests --------------------------------------------
FIXED = {0xF3: 9, 0xF4: 4, 0xF5: 4, 0xF6: 4, 0xF7: 6, 0xF8: 6, 0xF9: 5}


def parse_bin(stream: bytes) -> tuple[list[int], list[tuple[int, str, bytes]], bytes]:
    """(sample words, [(samples_before, kind, payload)], trailing ascii) of a bin_hexa stream body."""
    i, words, meta = 0, [], []
    while i < len(stream):
        b0 = stream[i]
        if b0 == 0x0D:  # the ASCII banner after the summary
            return words, meta, stream[i:]
        if b0 == 0xF0:
            tag = stream[i + 1]
            if tag in FIXED:
                n = FIXED[tag]
                meta.append((len(words), f"{tag:02X}", stream[i + 2 : i + n - 2]))
                assert stream[i + n - 2 : i + n] == b"\xff\xff"
                i += n
            else:
                end = stream.index(b"\xff\xff", i + 2)
                body = stream[i + 2 : end]
                assert body.endswith(b"\r\n") and (end + 2 - i) % 2 == 0
                meta.append((len(words), f"{tag:02X}", body[:-2]))
                i = end + 2
            continue
        assert b0 < 0xF0, f"byte {b0:#x} at {i} is neither a sample nor a frame"
        words.append(int.from_bytes(stream[i : i + 2], "big"))
        i += 2
    return words, meta, b""


ACK_START = b"\r\nPowerShield > ack start\r\n\r\n"
TS_RE = re.compile(rb"\r\nTimeStamp: (\d{3})s (\d{3})ms, buff (\d{2})%\r\n")


# --- codecs ---------------------------------------------------------------------------------------
def test_vectorised_encoders_match_spec_scalar_ones() -> None:
    rng = np.random.default_rng(0)
    v = np.concatenate(
        [10 ** rng.uniform(-12, 3, 20000), [0.0, -1.0, np.nan, np.inf, 1e-300, 4095.5, 2.3e-9, 6.409e-4]]
    )
    for k in range(15):
        v = np.append(v, [4095.5 / 16.0**k, np.nextafter(4095.5 / 16.0**k, 0), 4095.0 / 16.0**k])
    for k in range(-12, 4):
        v = np.append(v, [10.0**k, np.nextafter(10.0**k, 0), 0.99995 * 10.0**k])
    words = encode_bin_words(v)
    lines = encode_ascii_samples(v)
    for x, w, line in zip(v, words, lines):
        assert int(w) == spec.bin_word(float(x)), x
        assert line.tobytes() == (spec.ascii_sample(float(x)) + "\r\n").encode(), x
    assert encode_bin_words(np.array([6.409e-4])).astype(">u2").tobytes() == b"\x52\xa0"


def test_text_frames_have_even_length() -> None:
    for text in ("event 00 ris", "ack status ok", OVERFLOW_ERROR):
        frame = bin_frame_text(0xF2, text)
        assert len(frame) % 2 == 0 and frame.startswith(b"\xf0\xf2") and frame.endswith(b"\r\n\xff\xff")
        assert frame[2:-4].rstrip(b" ") == text.encode()


# --- shell ----------------------------------------------------------------------------------------
def test_exact_reply_bytes_and_verbatim_echo() -> None:
    dev, _ = make()
    assert cmd(dev, "version") == b"\r\nPowerShield > ack version: 1.0.7\r\n\r\n"
    assert cmd(dev, "powershield") == b"\r\nPowerShield > ack powershield 540554545-1430736921-1900587\r\n\r\n"
    assert cmd(dev, "status") == b"\r\nPowerShield > ack status ok\r\n\r\n"
    for line in (
        "freq 1000",
        "freq 1k",
        "acqtime 500m",
        "acqtime inf",
        "acqtime 0",
        "acqtime 2-3",
        "acqtime 5-4",
        "trigdelay 0",
        "trigdelay 1m",
        "volt 3300m",
        "volt 3300 m",
        'lcd 1 "MLPerf Tiny"',
        "pwr on nostatus",
        "eventsrc d7 fal",
        "currthres 0",
        "output energy",
        "format bin_hexa",
        "funcmode high",
    ):
        assert cmd(dev, line, eol="\r\n") == f"\r\nPowerShield > ack {line}\r\n\r\n".encode()
    assert dev.settings.freq == 1000 and dev.settings.acqtime == pytest.approx(5e-4)
    assert cmd(dev, "acqtime 1s") == (
        b"\r\nPowerShield > error acqtime 1s\r\nError detail: '1s' is not a number in LPM01A syntax "
        b"(digits, optional u/m/k or -xx/+xx)\r\n\r\n"
    )
    assert cmd(dev, "echo ABC") == b"\r\nPowerShield > echo ABC\r\n"
    assert cmd(dev, "temp degc").startswith(b"\r\nPowerShield > ack temp degc 2")
    assert re.fullmatch(rb"\r\nPowerShield > ack volt get 3\d{3}-03\r\n\r\n", cmd(dev, "volt get"))
    # NULs and CRs are ignored; commands split across receive() calls
    dev.receive(b"ht\0")
    dev.receive(b"c\r")
    dev.receive(b"\n")
    assert drain(dev) == b"\r\nPowerShield > ack htc\r\n\r\n"


@pytest.mark.parametrize(
    "line, detail",
    [
        ("freq 7", "must be one of"),
        ("freq 0.5", "not a number"),
        ("volt 1799m", "out of range"),
        ("volt 3301m", "out of range"),
        ("acqtime 101", "out of range"),
        ("acqtime 50u", "out of range"),
        ("acqtime 5-6", "out of range"),
        ("trigdelay 601", "out of range"),
        ("targrst 2", "out of range"),
        ("currthre 51m", "out of range"),
        ("format hex", "must be one of"),
        ('lcd 1 "12345678901234567"', "at most 16"),
        ('lcd 3 "x"', "must be 1 or 2"),
        ("lcd 1 unquoted", "double-quoted"),
        ("bogus", "unknown command"),
        ("pwr maybe", "pwr"),
        ("eventsrc d3", "eventsrc"),
    ],
)
def test_every_error_has_error_detail(line: str, detail: str) -> None:
    dev, _ = make()
    reply = cmd(dev, line)
    assert reply.startswith(f"\r\nPowerShield > error {line}\r\nError detail: ".encode()), reply
    assert reply.endswith(b"\r\n\r\n") and detail.encode() in reply


def test_standalone_mode_refuses_host_commands_and_settings_persist() -> None:
    dev, _ = make(host=False)
    assert cmd(dev, "version") == b"\r\nPowerShield > ack version: 1.0.7\r\n\r\n"
    assert cmd(dev, "freq 1k").startswith(
        b"\r\nPowerShield > error freq 1k\r\nError detail: command requires host control"
    )
    configure_reply = cmd(dev, "htc")
    assert configure_reply == b"\r\nPowerShield > ack htc\r\n\r\n"
    configure(dev, "freq 20k", "format bin_hexa", "hrc")
    assert dev.state == State.STANDALONE
    dev.disconnect()
    dev.connect()  # a new host connection: settings persist until psrst
    assert dev.settings.freq == 20_000 and dev.settings.format == "bin_hexa"
    dev.receive(b"psrst\n")
    assert drain(dev) == b""  # no reply: the board resets
    assert dev.take_unplug_request() == dev.model.psrst_seconds
    assert dev.take_unplug_request() is None
    assert dev.settings.freq == 100 and dev.settings.format == "ascii_dec" and dev.state == State.STANDALONE


# --- streams --------------------------------------------------------------------------------------
def test_ascii_stream_layout_timestamps_end_summary_banner() -> None:
    dev, clk = make(ConstantCurrent(6.409e-4))
    configure(dev, "freq 1k", "acqtime 2500m", "trigdelay 0", "eventsrc off")
    assert cmd(dev, "start") == ACK_START + b"\r\nTimeStamp: 000s 000ms, buff 00%\r\n"
    out = run_until(dev, clk, 3.0)
    body, _, tail = out.partition(b"\r\nend\r\n")
    assert tail.startswith(b"\r\nsummary beg\r\n") and tail.endswith(
        b"summary end\r\n\r\nPowerShield > Acquisition completed\r\n"
    )
    summary = tail.split(b"\r\n")[2:4]
    assert all(re.fullmatch(rb"\d{4}-\d{2}", s) for s in summary)
    stamps = [(int(s), int(ms)) for s, ms, _ in TS_RE.findall(body)]
    assert stamps == [(1, 0), (2, 0)]
    chunks = TS_RE.split(body)[::4]
    counts = [len(re.findall(rb"^\d{4}[-+]\d{2}\r$", c, re.M)) for c in chunks]
    assert counts == [1000, 1000, 500]  # 2.5 s at 1 kHz: 2500 samples, timestamps every 1000
    values = [spec.ascii_value(v.decode()) for v in re.findall(rb"\d{4}[-+]\d{2}", body)]
    assert np.mean(values) == pytest.approx(6.409e-4, rel=2e-3) and 0.005 < np.std(values) / np.mean(values) < 0.01
    assert dev.state == State.IDLE


def test_binary_stream_layout_and_exact_sample_times() -> None:
    dev, clk = make(ConstantCurrent(2e-3))
    configure(dev, "format bin_hexa", "freq 100k", "acqtime 0", "trigdelay 0", "eventsrc off")
    start = cmd(dev, "start")
    assert start == ACK_START + bytes.fromhex("F0F3000000000 0FFFF".replace(" ", ""))
    t0 = clk.t
    out = bytearray()
    for now in (0.0123, 0.0301, 0.05, 0.0777):  # irregular advances
        clk.t = now
        dev.advance(now)
        out += drain(dev)
        words, meta, _ = parse_bin(bytes(out))
        assert len(words) <= int((now - t0) * 100_000 + 1e-6)  # only samples whose time has come
        assert len(words) >= int((now - t0) * 100_000) - 100_000 * dev.model.min_chunk_s
    assert cmd(dev, "stop") == b""  # no ack while streaming
    clk.t = 0.08
    dev.advance(clk.t)
    out += drain(dev)
    words, meta, tail = parse_bin(bytes(out))
    assert len(words) == 7770  # stop at 77.7 ms: samples 1..7770 (sample n at n/f)
    stamps = [(pos, int.from_bytes(p[:4], "big"), p[4]) for pos, kind, p in meta if kind == "F3"]
    assert stamps == [(1000 * k, 10 * k, stamps[k - 1][2]) for k in range(1, 8)]
    kinds = [kind for _, kind, _ in meta]
    assert (
        kinds[-2:] == ["F4", "F2"]
        and meta[-1][2].startswith(b"summary beg\r\n")
        and meta[-1][2].endswith(b"summary end")
    )
    assert tail == b"\r\nPowerShield > Acquisition completed\r\n"
    vals = np.array([spec.bin_value(w) for w in words])
    assert vals.mean() == pytest.approx(2e-3, rel=2e-3)


def test_stop_queues_following_commands_and_start_during_acquisition_is_refused() -> None:
    dev, clk = make()
    configure(dev, "format ascii_dec", "freq 1k", "acqtime 0")
    cmd(dev, "start")
    run_until(dev, clk, 0.5)
    reply = cmd(dev, "start")
    assert reply.startswith(b"\r\nPowerShield > error start\r\nError detail: acquisition already running")
    assert cmd(dev, "freq 2k").startswith(b"\r\nPowerShield > error freq 2k\r\nError detail:")
    inline = cmd(dev, "volt get")
    assert re.fullmatch(rb"\r\nPowerShield > ack volt get \d{4}-03\r\n\r\n", inline)
    dev.receive(b"stop\nhrc\n")  # hrc arrives while the tail is still going out
    out = drain(dev) + run_until(dev, clk, 0.6)
    assert out.index(b"\r\nend\r\n") < out.index(b"Acquisition completed") < out.index(b"ack hrc")
    assert out.endswith(b"\r\nPowerShield > Acquisition completed\r\n\r\nPowerShield > ack hrc\r\n\r\n")
    assert dev.state == State.STANDALONE
    assert cmd(dev, "htc") and cmd(dev, "stop") == b"\r\nPowerShield > ack stop\r\n\r\n"  # idle stop is acked


def test_commands_after_acqtime_elapsed_wait_for_completion() -> None:
    dev, clk = make()
    configure(dev, "freq 1k", "acqtime 100m")
    cmd(dev, "start")
    clk.t = 0.5  # acquisition over in simulated time, end sequence not produced yet
    assert cmd(dev, "version") == b""
    dev.advance(clk.t)
    out = drain(dev)
    assert out.endswith(b"Acquisition completed\r\n\r\nPowerShield > ack version: 1.0.7\r\n\r\n")


def test_binary_inline_replies_are_frames() -> None:
    dev, clk = make()
    configure(dev, "format bin_hexa", "freq 1k", "acqtime 0", "trigdelay 0", "eventsrc off")
    cmd(dev, "start")
    clk.t = 0.01
    dev.advance(clk.t)
    drain(dev)
    volt = cmd(dev, "volt get")
    assert volt[:2] == b"\xf0\xf7" and volt[4:] == b"\xff\xff" and 3200 < int.from_bytes(volt[2:4], "big") <= 3300
    temp = cmd(dev, "temp")
    assert temp[:2] == b"\xf0\xf8" and int.from_bytes(temp[2:4], "big", signed=True) == 28
    assert cmd(dev, "pwr get") == b"\xf0\xf9\x01\xff\xff"
    assert cmd(dev, "targrst 10m") == b"\xf0\xf6\xff\xff"
    assert cmd(dev, "status") == bin_frame_text(0xF2, "ack status ok")
    assert cmd(dev, "freq 2k") == bin_frame_text(
        0xF1,
        "error freq 2k\r\nError detail: freq not allowed during acquisition (allowed: stop, pwr, targrst, volt get, temp, status)",
    )


def test_ascii_limits_refused_or_aborted() -> None:
    dev, clk = make()
    configure(dev, "freq 100k", "acqtime 1")
    assert cmd(dev, "start").startswith(
        b"\r\nPowerShield > error start\r\nError detail: ascii_dec supports at most 20k"
    )
    configure(dev, "freq 10k", "acqtime 1")  # Table 2: 10 kHz for 1 s is fine
    cmd(dev, "start")
    out = run_until(dev, clk, 3.0)
    assert b"error:" not in out and out.endswith(b"Acquisition completed\r\n")
    assert len(re.findall(rb"^\d{4}[-+]\d{2}\r$", out, re.M)) == 10_000 + 2  # + summary min/max
    t_start = clk.t
    configure(dev, "acqtime 5")  # beyond Table 2: the formatter cannot keep up and the buffer overflows
    cmd(dev, "start")
    out = run_until(dev, clk, t_start + 5.0)
    assert f"\r\n{OVERFLOW_ERROR}\r\n\r\nend\r\n".encode() in out
    n = len(re.findall(rb"^\d{4}[-+]\d{2}\r$", out, re.M)) - 2
    assert 5500 * 1.7 < n < 5500 * 1.9  # aborted after ~1.8 s of formatting
    buffs = [int(b) for *_, b in TS_RE.findall(out)]
    assert buffs == sorted(buffs) and buffs[0] < 20 and buffs[-1] > 80  # buff % climbs towards the overflow
    assert cmd(dev, "status") == f"\r\nPowerShield > ack status {OVERFLOW_ERROR}\r\n\r\n".encode()
    assert cmd(dev, "status") == b"\r\nPowerShield > ack status ok\r\n\r\n"  # cleared by reading it


def test_overflow_when_host_stops_reading_binary() -> None:
    dev, clk = make()
    configure(dev, "format bin_hexa", "freq 100k", "acqtime 0")
    cmd(dev, "start")
    run_until(dev, clk, 0.2)  # the host reads
    out = run_until(dev, clk, 1.0, read=False)  # the host stops reading: TX FIFO then buffer fill
    assert out == b"" and dev.state == State.IDLE
    tail = drain(dev)
    assert len(tail) > dev.model.tx_capacity - 100
    words, meta, banner = parse_bin(tail)
    kinds = [k for _, k, _ in meta]
    assert kinds[-3:] == ["F1", "F4", "F2"] and meta[-3][2].rstrip() == OVERFLOW_ERROR.encode()
    assert banner == b"\r\nPowerShield > Acquisition completed\r\n"
    assert dev.error == OVERFLOW_ERROR


def test_overcurrent_trips_after_2ms_above_59ma() -> None:
    src = PiecewiseCurrent([0.0, 0.2], [5e-3, 70e-3])
    dev, clk = make(src)
    configure(dev, "format bin_hexa", "freq 10k", "acqtime 0", "trigdelay 0", "eventsrc off")
    cmd(dev, "start")
    t0 = clk.t
    out = run_until(dev, clk, 0.5)
    words, meta, banner = parse_bin(out)
    assert [k for _, k, _ in meta][-4:] == ["F5", "F1", "F4", "F2"]
    assert meta[-3][2].rstrip() == OVERCURRENT_ERROR.encode()
    n_over = int((0.2 - t0) * 10_000)
    assert n_over + 19 <= len(words) <= n_over + 21  # 2 ms at 10 kHz above the threshold, then trip
    assert banner.endswith(b"Acquisition completed\r\n") and dev.error == OVERCURRENT_ERROR
    # forced overcurrent, ASCII
    dev.faults.overcurrent = True
    configure(dev, "format ascii_dec", "freq 1k")
    dev.source = ConstantCurrent(1e-3)
    cmd(dev, "start")
    out = run_until(dev, clk, 1.0)
    assert f"\r\n{OVERCURRENT_ERROR}\r\n\r\nend\r\n".encode() in out


def test_static_mode_plus_minus_10_percent() -> None:
    dev, clk = make(ConstantCurrent(30e-3))
    configure(dev, "acqmode stat", "format ascii_dec", "trigdelay 0")
    cmd(dev, "start")
    out = run_until(dev, clk, 0.3)
    body = out.split(b"\r\nend\r\n")[0]
    samples = re.findall(rb"^(\d{4}[-+]\d{2})\r$", body, re.M)
    assert len(samples) == 1 and spec.ascii_value(samples[0].decode()) == pytest.approx(30e-3, rel=1e-3)
    # +-20 % square wave: not constant
    dev.source = PiecewiseCurrent([0.0, 0.01], [30e-3, 36e-3], period=0.02)
    clk.t += 0.1
    cmd(dev, "start")
    out = run_until(dev, clk, clk.t + 0.3)
    assert b"error: Static acquisition: current not constant (current peak high). Acquisition stopped." in out
    assert out.endswith(b"Acquisition completed\r\n") and dev.error is not None
    dev.source = ConstantCurrent(30e-3)
    dev.faults.static_unstable = True
    cmd(dev, "start")
    out = run_until(dev, clk, clk.t + 0.3)
    assert b"current not constant" in out


@pytest.mark.parametrize("fmt", ["ascii_dec", "bin_hexa"])
def test_d7_events_at_exact_sample_positions(fmt: str) -> None:
    edges = [0.10005, 0.2, 0.35, 0.9999]
    dev, clk = make(ConstantCurrent(1e-3, edges=edges))
    configure(dev, f"format {fmt}", "freq 1k", "acqtime 1", "trigdelay 0", "eventsrc d7 ris")
    cmd(dev, "start")
    t0 = clk.t
    out = run_until(dev, clk, 1.2)
    if fmt == "bin_hexa":
        _, meta, _ = parse_bin(out)
        events = [(pos, p.decode().rstrip()) for pos, k, p in meta if k == "F2" and p.startswith(b"event")]
    else:
        events, pos = [], 0
        for line in out.split(b"\r\n"):
            if re.fullmatch(rb"\d{4}[-+]\d{2}", line):
                pos += 1
            elif line.startswith(b"event"):
                events.append((pos, line.decode()))
            elif line == b"end":
                break
    assert [e[1] for e in events] == ["event 00 ris", "event 01 ris", "event 02 ris", "event 03 ris"]
    for (m, _), te in zip(events, edges):  # t0 + m/f < te <= t0 + (m+1)/f
        assert t0 + m / 1000 < te <= t0 + (m + 1) / 1000 + 1e-12


def test_trigsrc_d7_arms_triggers_and_rearms() -> None:
    dev, clk = make(ConstantCurrent(1e-3, edges=[0.5, 2.0]))
    configure(dev, "trigsrc d7", "freq 1k", "acqtime 100m", "trigdelay 0")
    assert cmd(dev, "start") == ACK_START
    assert run_until(dev, clk, 0.45) == b"" and dev.state == State.ARMED
    out = run_until(dev, clk, 1.0)
    assert out.startswith(b"\r\nTimeStamp: 000s 000ms, buff 00%\r\n") and out.endswith(b"Acquisition completed\r\n")
    assert out.count(b"\r\n") and dev.state == State.ARMED
    assert len(re.findall(rb"^\d{4}-\d{2}\r$", out, re.M)) == 100 + 2
    assert run_until(dev, clk, 2.5).count(b"Acquisition completed") == 1
    assert cmd(dev, "stop") == b"\r\nPowerShield > ack stop\r\n\r\n" and dev.state == State.IDLE


def test_byte_faults_and_pwr_status() -> None:
    dev, clk = make()
    dev.faults.nul_rate = 0.05
    reply = cmd(dev, "version")
    assert reply.count(b"\0") > 0 and reply.replace(b"\0", b"") == b"\r\nPowerShield > ack version: 1.0.7\r\n\r\n"
    dev.faults.nul_rate = 0.0
    dev.faults.drop_rate = 0.2
    assert len(cmd(dev, "version")) < len(b"\r\nPowerShield > ack version: 1.0.7\r\n\r\n")
    dev.faults.drop_rate = 0.0
    dev.faults.corrupt_rate = 1.0
    assert cmd(dev, "version") != b"\r\nPowerShield > ack version: 1.0.7\r\n\r\n"
    dev.faults.clear()
    with pytest.raises(ValueError, match="probability"):
        dev.faults.drop_rate = 1.5
    dev.faults.nul_burst_rate, dev.faults.nul_burst_len = 1.0, 4
    assert cmd(dev, "htc").count(b"\0\0\0\0") > 0
    dev.faults.clear()
    configure(dev, "pwr on status", "freq 1k", "acqtime 10m", "trigdelay 0")
    assert cmd(dev, "start") == ACK_START + b"\r\nTimeStamp: 000s 000ms, buff 00%\r\n\r\npwr on\r\n"
    out = run_until(dev, clk, 0.1)
    assert b"\r\npwr on\r\n\r\nend\r\n" in out


def test_force_overflow_and_disconnect_fault() -> None:
    dev, clk = make()
    configure(dev, "format bin_hexa", "freq 1k", "acqtime 0")
    cmd(dev, "start")
    run_until(dev, clk, 0.05)
    dev.faults.force_overflow = True
    out = run_until(dev, clk, 0.06)
    assert bin_frame_text(0xF1, OVERFLOW_ERROR) + b"\xf0\xf4\xff\xff" in out
    dev.faults.disconnect_s = 1.5
    dev.advance(clk.t)
    assert dev.take_unplug_request() == 1.5 and dev.faults.disconnect_s is None


def test_target_power_and_default_l496_profile() -> None:
    dev, clk = make(L496Profile())
    configure(dev, "format bin_hexa", "freq 1k", "acqtime 4", "trigdelay 0", "pwr on")
    cmd(dev, "start")
    out = run_until(dev, clk, 4.5)
    words, meta, _ = parse_bin(out)
    vals = np.array([spec.bin_value(w) for w in words])
    assert len(vals) == 4000
    assert np.median(vals[100:900]) == pytest.approx(2.24e-3, rel=0.02)  # idle (sleep) at 80 MHz
    assert np.median(vals[2600:3900]) == pytest.approx(8.0e-3, rel=0.02)  # training (run)
    events = [pos for pos, k, p in meta if k == "F2" and p.startswith(b"event")]
    assert len(events) == 15  # one marker per 100 ms training batch
    configure(dev, "pwr off", "acqtime 100m")
    cmd(dev, "start")
    words, _, _ = parse_bin(run_until(dev, clk, clk.t + 0.3))
    assert max(spec.bin_value(w) for w in words) < 1e-7  # unpowered target: noise floor only
