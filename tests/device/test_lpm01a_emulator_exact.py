"""The emulated X-NUCLEO-LPM01A, byte for byte against ../shared/reference/lpm01a-protocol.md.

Each test drives :class:`LPM01AEmulator` directly (``receive`` / ``advance`` / ``pending`` / ``consume``) on a
hand-stepped clock with its noise removed, and compares the exact bytes it emits with bytes written here from
the spec: reply grammar (§2.1), number syntax and ranges (§2.2, §2.4), states (§2.3), the ascii_dec and
bin_hexa streams (§3.1, §3.2), the end sequence (§3.3) and the fault switches.  Where the spec leaves the
text to the emulator ([I]: ``Error detail:`` wording), the emulator's documented message is asserted, since
the driver and the user read it.  No threads, sockets or TensorFlow: every test is fast and deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest

from device.lpm01a.emulator import (
    HELP_LINES,
    OVERCURRENT_ERROR,
    OVERFLOW_ERROR,
    STATIC_ERROR_HIGH,
    STATIC_ERROR_LOW,
    LPM01AEmulator,
    State,
    TxModel,
    _bin_timestamp,
    bin_frame_text,
    encode_ascii_samples,
    encode_bin_words,
)
from device.power_profiles import ConstantCurrent, PiecewiseCurrent
from tests.device.test_lpm01a_driver_exact import NoNoise, StepClock

BANNER = b"\r\nPowerShield > Acquisition completed\r\n"
S1MA = b"1000-06\r\n"  # 1 mA as an ascii_dec sample line (§3.1: 4 digits, sign, 2 digits)
W1MA = b"\x54\x19"  # 1 mA as a bin_hexa word: E=5, M=round(1e-3 * 16**5)=1049=0x419 (§3.2)


def ack(line: str) -> bytes:
    return f"\r\nPowerShield > ack {line}\r\n\r\n".encode()


def err(line: str, detail: str) -> bytes:
    return f"\r\nPowerShield > error {line}\r\nError detail: {detail}\r\n\r\n".encode()


def ts(s: int, ms: int, buff: int = 0) -> bytes:
    return f"\r\nTimeStamp: {s:03d}s {ms:03d}ms, buff {buff:02d}%\r\n".encode()


def summary(lo: bytes, hi: bytes) -> bytes:
    return b"\r\nsummary beg\r\n" + lo + b"\r\n" + hi + b"\r\nsummary end\r\n"


def bin_summary(lo: str, hi: str) -> bytes:
    return b"\xf0\xf2summary beg\r\n" + f"{lo}\r\n{hi}".encode() + b"\r\nsummary end\r\n\xff\xff"


def make(source=None, host: bool = True, model: TxModel | None = None) -> tuple[LPM01AEmulator, StepClock]:
    clock = StepClock()
    emu = LPM01AEmulator(clock, source or ConstantCurrent(1e-3), seed=0, model=model)  # type: ignore[arg-type]
    emu._rng = NoNoise()  # type: ignore[assignment]
    emu.connect()
    if host:
        assert say(emu, "htc") == ack("htc")
    return emu, clock


def read(emu: LPM01AEmulator) -> bytes:
    out = bytearray()
    while True:
        chunk = bytes(emu.pending())
        if not chunk:
            return bytes(out)
        out += chunk
        emu.consume(len(chunk))


def say(emu: LPM01AEmulator, line: str, eol: str = "\n") -> bytes:
    emu.receive((line + eol).encode())
    return read(emu)


def setup(emu: LPM01AEmulator, *lines: str) -> None:
    for line in lines:
        assert say(emu, line) == ack(line), line


def run(emu: LPM01AEmulator, clock: StepClock, times: list[float]) -> bytes:
    out = bytearray()
    for t in times:
        clock.t = t
        emu.advance(t)
        out += read(emu)
    return bytes(out)


def two_binary_batches(source: PiecewiseCurrent) -> tuple[LPM01AEmulator, bytes]:
    """A bin_hexa acquisition at 100 kHz of ``source``, endless and without trigger delay, read after its first two
    5 ms batches (500 samples each): the emulator and every byte it sent after the start's ack."""
    emu, clock = make(source)
    setup(emu, "freq 100k", "acqtime 0", "trigdelay 0", "format bin_hexa")
    say(emu, "start")
    return emu, run(emu, clock, [0.005, 0.010])


# --- reply grammar and states (§2.1, §2.3) --------------------------------------------------------------
def test_power_up_is_standalone_and_htc_takes_host_control():
    emu, _ = make(host=False)
    assert emu.state is State.STANDALONE
    assert say(emu, "htc", "\r\n") == b"\r\nPowerShield > ack htc\r\n\r\n"
    assert emu.state is State.IDLE


def test_hrc_releases_host_control():
    emu, _ = make()
    assert say(emu, "hrc") == ack("hrc")
    assert emu.state is State.STANDALONE
    assert say(emu, "freq 1k") == err("freq 1k", "command requires host control: send htc first")


@pytest.mark.parametrize("line", ["htc x", "hrc x", "status x", "version x", "powershield x", "calib x", "start x"])
def test_commands_without_arguments_refuse_one(line):
    emu, _ = make()
    assert say(emu, line) == err(line, "unexpected argument 'x'")


def test_standalone_answers_the_standalone_commands():
    emu, _ = make(host=False)
    assert say(emu, "powershield") == ack("powershield 540554545-1430736921-1900587")
    assert say(emu, "version") == b"\r\nPowerShield > ack version: 1.0.7\r\n\r\n"
    assert say(emu, "status") == ack("status ok")
    assert say(emu, "echo hi there") == b"\r\nPowerShield > echo hi there\r\n"
    assert say(emu, "help").startswith(ack("help"))
    for line in ("start", "volt get", "temp", "stop"):
        assert say(emu, line) == err(line, "command requires host control: send htc first")
    assert emu.state is State.STANDALONE


def test_unknown_command_is_refused_in_every_state():
    emu, _ = make(host=False)
    assert say(emu, "eeprom") == err("eeprom", "unknown command 'eeprom' (see help)")
    say(emu, "htc")
    assert say(emu, "target reset") == err("target reset", "unknown command 'target' (see help)")


def test_help_acks_then_lists_every_command():
    emu, _ = make()
    out = say(emu, "help")
    assert out == ack("help") + "\r\n".join(HELP_LINES).encode() + b"\r\n"
    assert len(HELP_LINES) == 27
    assert HELP_LINES[0].startswith("help ") and HELP_LINES[-1].startswith("calib ")


def test_range_reports_the_dynamic_current_range():
    emu, _ = make()
    assert say(emu, "range") == ack("range 1000-10 5000-05")  # 100 nA .. 50 mA


def test_custom_uid_and_version():
    clock = StepClock()
    emu = LPM01AEmulator(clock, ConstantCurrent(0.0), uid="1-2-3", version="9.8.7")  # type: ignore[arg-type]
    emu.connect()
    assert say(emu, "powershield") == ack("powershield 1-2-3")
    assert say(emu, "version") == b"\r\nPowerShield > ack version: 9.8.7\r\n\r\n"


# --- line assembly --------------------------------------------------------------------------------------
def test_lines_are_assembled_across_receives_without_nul_or_cr():
    emu, _ = make()
    emu.receive(b"fr\0eq")
    assert read(emu) == b""
    emu.receive(b" 1k\r")
    assert read(emu) == b""
    emu.receive(b"\n")
    assert read(emu) == ack("freq 1k")
    assert emu.settings.freq == 1000


def test_blank_lines_get_no_reply_and_two_lines_in_one_receive_get_two():
    emu, _ = make()
    emu.receive(b"\r\n  \n\nfreq 2k\nfreq 5k\n")
    assert read(emu) == ack("freq 2k") + ack("freq 5k")
    assert emu.host_lines[-2:] == ["freq 2k", "freq 5k"]


def test_host_lines_keep_the_last_commands_only():
    emu, _ = make()
    for i in range(999):
        emu.receive(b"echo %d\n" % i)
    assert len(emu.host_lines) == 1000  # htc + 999 echoes: not trimmed yet
    emu.receive(b"echo 999\n")
    assert len(emu.host_lines) == 501  # the 1001st line drops the oldest 500
    emu.receive(b"echo 1000\n")
    assert len(emu.host_lines) == 502
    assert emu.host_lines[-1] == "echo 1000" and emu.host_lines[0] == "echo 499"


def test_garbage_without_newline_keeps_only_its_tail():
    emu, _ = make()
    emu.receive(b"x" * 5000 + b"\n" + b"y" * 5000)
    read(emu)
    assert len(emu._rx) == 4096 and bytes(emu._rx) == b"y" * 4096
    emu.receive(b"a" * 10 + b"\nversion\n")
    assert read(emu).endswith(b"\r\nPowerShield > ack version: 1.0.7\r\n\r\n")


def test_connect_drops_stale_replies_when_idle_and_disconnect_drops_partial_input():
    emu, _ = make()
    emu.receive(b"version\n")
    emu.receive(b"freq")
    emu.disconnect()
    assert emu.connected is False and bytes(emu._rx) == b""
    emu.connect()
    assert emu.connected is True and read(emu) == b""
    emu.receive(b" 1k\n")  # the partial line did not survive the disconnect
    assert read(emu) == err(" 1k", "unknown command '1k' (see help)")


def test_connect_keeps_a_running_stream():
    emu, clock = make()
    setup(emu, "trigdelay 0", "freq 1k")
    emu.receive(b"start\n")
    emu.connect()
    assert read(emu) == ack("start") + ts(0, 0)


# --- settings and their argument checks (§2.2, §2.4) ---------------------------------------------------------
def test_defaults_are_the_manuals():
    emu, _ = make()
    s = emu.settings
    assert (s.volt, s.freq, s.acqtime, s.acqmode, s.funcmode, s.output, s.format) == (
        3.3,
        100,
        10.0,
        "dyn",
        "optim",
        "current",
        "ascii_dec",
    )
    assert (s.trigsrc, s.trigdelay, s.currthre, s.pwr, s.pwr_status, s.pwrend, s.lcd) == (
        "sw",
        1e-3,
        1e-3,
        "auto",
        False,
        "on",
        ["", ""],
    )


@pytest.mark.parametrize(
    "line, attr, value",
    [
        ("volt 1800m", "volt", 1.8),
        ("volt 3300 m", "volt", 3.3),
        ("volt 25-1", "volt", 2.5),
        ("freq 100000", "freq", 100_000),
        ("freq 1", "freq", 1),
        ("acqtime 100u", "acqtime", 1e-4),
        ("acqtime inf", "acqtime", 0.0),
        ("acqtime 0", "acqtime", 0.0),
        ("acqtime 100", "acqtime", 100.0),
        ("acqtime 2-3", "acqtime", 2e-3),
        ("trigdelay 600", "trigdelay", 600.0),
        ("trigdelay 0", "trigdelay", 0.0),
        ("currthre 50m", "currthre", 50e-3),
        ("currthres 1-7", "currthre", 1e-7),
        ("acqmode stat", "acqmode", "stat"),
        ("funcmode high", "funcmode", "high"),
        ("output energy", "output", "energy"),
        ("format bin_hexa", "format", "bin_hexa"),
        ("trigsrc d7", "trigsrc", "d7"),
        ("pwrend off", "pwrend", "off"),
    ],
)
def test_a_valid_setting_is_acked_verbatim_and_applied(line, attr, value):
    emu, _ = make()
    assert say(emu, line) == ack(line)
    assert getattr(emu.settings, attr) == pytest.approx(value)


@pytest.mark.parametrize(
    "line, detail",
    [
        ("volt 1799m", "volt 1.799 V is out of range: allowed 1.8 .. 3.3 V"),
        ("volt 0", "volt 0 V is out of range: allowed 1.8 .. 3.3 V"),
        ("volt", "volt needs a value (1800m..3300m) or get"),
        ("freq 3k", "freq '3k': must be one of 100k, 50k, 20k, 10k, 5k, 2k, 1k, 500, 200, 100, 50, 20, 10, 5, 2, 1 Hz"),
        ("acqtime 1s", "'1s' is not a number in LPM01A syntax (digits, optional u/m/k or -xx/+xx)"),
        ("acqtime 101", "acqtime 101 s is out of range: allowed 0.0001 .. 100 s (or 0)"),
        ("trigdelay 601", "trigdelay 601 s is out of range: allowed 0 .. 600 s (or 0)"),
        ("currthre 51m", "currthre 0.051 A is out of range: allowed 1e-07 .. 0.05 A (or 0)"),
        ("format hex", "format 'hex': must be one of ascii_dec | bin_hexa"),
        ("acqmode", "acqmode '': must be one of dyn | stat"),
        ("trigsrc d3", "trigsrc 'd3': must be one of sw | d7"),
        ("pwrend maybe", "pwrend 'maybe': must be one of on | off"),
        ("funcmode low", "funcmode 'low': must be one of optim | high"),
        ("output power", "output 'power': must be one of current | energy"),
    ],
)
def test_an_invalid_setting_is_refused_with_its_detail_and_changes_nothing(line, detail):
    emu, _ = make()
    before = vars(emu.settings).copy()
    assert say(emu, line) == err(line, detail)
    assert vars(emu.settings) == before


@pytest.mark.parametrize(
    "line, detail, lcd",
    [
        ('lcd 1 "MLPerf Tiny"', None, ["MLPerf Tiny", ""]),
        ('lcd 2 "     monitor    "', None, ["", "     monitor    "]),
        ('lcd 2 ""', None, ["", ""]),
        ('lcd 1 "1234567890123456"', None, ["1234567890123456", ""]),
        ('lcd 1 "12345678901234567"', "lcd text has 17 characters: at most 16", ["", ""]),
        ('lcd 3 "x"', "lcd line '3': must be 1 or 2", ["", ""]),
        ('lcd 0 "x"', "lcd line '0': must be 1 or 2", ["", ""]),
        ("lcd 1 hello", 'lcd text must be double-quoted, e.g. lcd 1 "hello"', ["", ""]),
        ('lcd 1 "', 'lcd text must be double-quoted, e.g. lcd 1 "hello"', ["", ""]),
        ('lcd 1 "open', 'lcd text must be double-quoted, e.g. lcd 1 "hello"', ["", ""]),
        ('lcd 1 close"', 'lcd text must be double-quoted, e.g. lcd 1 "hello"', ["", ""]),
    ],
)
def test_lcd_takes_a_line_number_and_a_quoted_text_of_16_chars(line, detail, lcd):
    emu, _ = make()
    assert say(emu, line) == (ack(line) if detail is None else err(line, detail))
    assert emu.settings.lcd == lcd


@pytest.mark.parametrize(
    "line, on, detail",
    [
        ("eventsrc off", False, None),
        ("eventsrc d7", True, None),
        ("eventsrc d7 ris", True, None),
        ("eventsrc d7 fal", True, None),
        ("eventsrc d7 both", False, "eventsrc 'd7 both': must be d7 [ris|fal] or off"),
        ("eventsrc d7 ris x", False, "eventsrc 'd7 ris x': must be d7 [ris|fal] or off"),
        ("eventsrc d3", False, "eventsrc 'd3': must be d7 [ris|fal] or off"),
        ("eventsrc", False, "eventsrc '': must be d7 [ris|fal] or off"),
    ],
)
def test_eventsrc(line, on, detail):
    emu, _ = make()
    emu.settings.eventsrc = False
    assert say(emu, line) == (ack(line) if detail is None else err(line, detail))
    assert emu.settings.eventsrc is on


# --- pwr, targrst, temp, volt get, autotest (§2.4) ------------------------------------------------------------
def test_pwr_switches_the_target_and_pwr_get_reports_it():
    emu, clock = make()
    assert emu.target_powered is True
    clock.t = 1.0
    assert say(emu, "pwr off") == ack("pwr off")
    assert emu.target_powered is False and emu.settings.pwr == "off"
    assert say(emu, "pwr get") == ack("pwr get off")
    assert emu.settings.pwr == "off"  # get changes nothing
    assert say(emu, "pwr on nostatus") == ack("pwr on nostatus")
    assert emu.target_powered is True and emu.settings.pwr_status is False
    assert say(emu, "pwr get") == ack("pwr get on")
    assert say(emu, "pwr auto status") == ack("pwr auto status")
    assert emu.settings.pwr == "auto" and emu.settings.pwr_status is True
    assert emu.target_powered is True  # auto outside an acquisition leaves the supply as it was


def test_pwr_auto_when_idle_does_not_switch_an_unpowered_target_on():
    emu, clock = make()
    setup(emu, "pwr off")
    clock.t = 1.0
    setup(emu, "pwr auto")
    assert emu.target_powered is False


@pytest.mark.parametrize(
    "line, detail",
    [
        ("pwr", "pwr '': must be auto | on | off | get [nostatus | status]"),
        ("pwr maybe", "pwr 'maybe': must be auto | on | off | get [nostatus | status]"),
        ("pwr on status x", "pwr 'on status x': must be auto | on | off | get [nostatus | status]"),
        ("pwr get status", "pwr 'get status': second argument must be nostatus or status"),
        ("pwr on loud", "pwr 'on loud': second argument must be nostatus or status"),
    ],
)
def test_pwr_refusals(line, detail):
    emu, _ = make()
    assert say(emu, line) == err(line, detail)
    assert emu.settings.pwr == "auto" and emu.settings.pwr_status is False and emu.target_powered


def test_targrst_powers_the_target_down_for_its_duration():
    emu, clock = make()
    clock.t = 1.0
    assert say(emu, "targrst 100m") == ack("targrst 100m")
    t = np.array([0.999, 1.0, 1.0999, 1.1, 2.0])
    assert emu._power_mask(t).tolist() == [True, False, False, True, True]


def test_targrst_0_leaves_the_target_down_and_out_of_range_is_refused():
    emu, clock = make()
    clock.t = 1.0
    assert say(emu, "targrst 2") == err("targrst 2", "targrst 2 s is out of range: allowed 0.001 .. 1 s (or 0)")
    assert emu.target_powered
    assert say(emu, "targrst 0") == ack("targrst 0")
    assert emu._power_mask(np.array([0.5, 1.0, 100.0])).tolist() == [True, False, False]


def test_target_power_hook_of_the_source_is_called_and_its_failure_is_contained():
    calls = []

    class Src(ConstantCurrent):
        def set_target_power(self, on, t):
            calls.append((on, t))
            raise RuntimeError("boom")

    emu, clock = make(Src(1e-3))
    clock.t = 2.0
    assert say(emu, "pwr off") == ack("pwr off")
    assert calls == [(False, 2.0)] and emu.target_powered is False


def test_temp_in_degc_and_degf():
    emu, _ = make()
    assert say(emu, "temp") == ack("temp 28.0")
    assert say(emu, "temp degc") == ack("temp degc 28.0")
    assert say(emu, "temp degf") == ack("temp degf 82.4")
    assert say(emu, "temp kelvin") == err("temp kelvin", "temp 'kelvin': must be degc or degf")


def test_volt_get_is_the_measured_output_in_sample_syntax():
    emu, _ = make()
    assert say(emu, "volt get") == ack("volt get 3292-03")  # 3.3 V set, 0.24 % low (§2.1's example)
    setup(emu, "volt 1800m")
    assert say(emu, "volt get") == ack("volt get 1796-03")


@pytest.mark.parametrize(
    "line, reply",
    [
        ("autotest", "autotest"),
        ("autotest start", "autotest start"),
        ("autotest status", "autotest status ok"),
        ("autotest start stat_all", "autotest start stat_all"),
        ("autotest status stat_min", "autotest status stat_min ok"),
        ("calib", "calib"),
    ],
)
def test_autotest_and_calib(line, reply):
    emu, _ = make()
    assert say(emu, line) == ack(reply)


@pytest.mark.parametrize("line", ["autotest go", "autotest start stat_x", "autotest start stat_all x"])
def test_autotest_refusals(line):
    emu, _ = make()
    assert say(emu, line) == err(line, f"autotest {line[9:]!r}: must be [start|status] [stat_all|stat_min]")


# --- psrst and reset faults -----------------------------------------------------------------------------
def test_psrst_resets_to_defaults_without_reply_and_unplugs_the_port():
    emu, _ = make()
    setup(emu, "freq 1k", "format bin_hexa")
    emu.receive(b"version\n")  # an unread reply is lost in the reset
    assert emu.take_unplug_request() is None
    emu.receive(b"psrst\n")
    assert read(emu) == b""
    assert emu.state is State.STANDALONE and emu.settings.freq == 100 and emu.settings.format == "ascii_dec"
    assert emu.take_unplug_request() == 3.0
    assert emu.take_unplug_request() is None


def test_psrst_during_an_acquisition_ends_it_silently():
    emu, clock = make()
    setup(emu, "trigdelay 0", "freq 1k")
    say(emu, "start")
    run(emu, clock, [0.1])
    emu.receive(b"psrst\n")
    assert run(emu, clock, [0.2]) == b""
    assert emu.state is State.STANDALONE and emu.busy is False


def test_reset_now_fault_is_a_psrst_and_disconnect_fault_asks_to_unplug():
    emu, clock = make(model=TxModel(psrst_seconds=7.0))
    setup(emu, "freq 1k")
    emu.faults.disconnect_s = 2.5
    emu.advance(0.0)
    assert emu.faults.disconnect_s is None and emu.take_unplug_request() == 2.5
    assert emu.state is State.IDLE
    emu.faults.reset_now = True
    emu.advance(0.1)
    assert emu.faults.reset_now is False
    assert emu.state is State.STANDALONE and emu.settings.freq == 100
    assert emu.take_unplug_request() == 7.0


def test_disconnect_fault_must_be_a_non_negative_duration():
    emu, _ = make()
    emu.faults.disconnect_s = 0.0
    with pytest.raises(ValueError, match=r"faults.disconnect_s must be None or >= 0 seconds, got -1"):
        emu.faults.disconnect_s = -1
    with pytest.raises(ValueError):
        emu.faults.disconnect_s = float("nan")


def test_host_not_reading_hides_the_output_until_cleared():
    emu, _ = make()
    emu.faults.host_not_reading = True
    assert say(emu, "version") == b""
    emu.faults.host_not_reading = False
    assert read(emu) == b"\r\nPowerShield > ack version: 1.0.7\r\n\r\n"


def test_busy_while_output_is_queued_or_a_stream_runs():
    emu, clock = make()
    assert emu.busy is False
    emu.receive(b"version\n")
    assert emu.busy is True
    read(emu)
    assert emu.busy is False
    setup(emu, "trigsrc d7")
    say(emu, "start")
    assert emu.state is State.ARMED and emu.busy is True


# --- start / stop and commands while acquiring (§2.3) -----------------------------------------------------------
def test_start_refuses_ascii_above_20k_and_energy_above_10k():
    emu, _ = make()
    setup(emu, "freq 50k")
    assert say(emu, "start") == err("start", "ascii_dec supports at most 20k (freq is 50k): use format bin_hexa")
    setup(emu, "format bin_hexa", "output energy")
    assert say(emu, "start") == err("start", "output energy supports at most 10k (freq is 50k)")
    setup(emu, "freq 10k")
    assert say(emu, "start") == ack("start") + b"\xf0\xf3\x00\x00\x00\x00\x00\xff\xff"


def test_start_allows_ascii_at_20k_and_static_ascii_at_100k():
    emu, _ = make()
    setup(emu, "freq 20k")
    assert say(emu, "start").startswith(ack("start"))
    say(emu, "stop")
    emu2, _ = make()
    setup(emu2, "freq 100k", "acqmode stat")
    assert say(emu2, "start") == ack("start") + ts(0, 0)


def test_stop_when_idle_is_acked_and_stop_takes_no_argument():
    emu, _ = make()
    assert say(emu, "stop") == ack("stop")
    assert say(emu, "stop now") == err("stop now", "unexpected argument 'now'")


def test_config_commands_are_refused_while_acquiring_but_stream_commands_answer():
    emu, clock = make()
    setup(emu, "trigdelay 0", "freq 1k", "acqtime 0")
    say(emu, "start")
    assert say(emu, "start") == err("start", "acquisition already running (send stop first)")
    msg = "not allowed during acquisition (allowed: stop, pwr, targrst, volt get, temp, status)"
    assert say(emu, "freq 2k") == err("freq 2k", "freq " + msg)
    assert say(emu, "htc") == err("htc", "htc " + msg)
    assert say(emu, "volt 2") == err("volt 2", "volt can only be read (volt get) during acquisition")
    assert say(emu, "volt get") == ack("volt get 3292-03")  # ASCII: an ack line inside the stream (Table 49)
    assert say(emu, "temp") == ack("temp 28.0")
    assert say(emu, "status") == ack("status ok")
    assert say(emu, "pwr get") == ack("pwr get on")
    assert say(emu, "bogus") == err("bogus", "unknown command 'bogus' (see help)")
    assert emu.state is State.ACQUIRING and emu.settings.freq == 1000


def test_pwr_auto_during_an_acquisition_powers_the_target_again():
    emu, clock = make()
    setup(emu, "trigdelay 0", "freq 1k", "acqtime 0", "pwr on")
    say(emu, "start")
    clock.t = 0.1
    setup(emu, "pwr off")
    assert emu.target_powered is False
    clock.t = 0.2
    setup(emu, "pwr auto")
    assert emu.target_powered is True


def test_binary_stream_answers_in_frames():
    emu, clock = make()
    setup(emu, "trigdelay 0", "freq 1k", "acqtime 0", "format bin_hexa")
    say(emu, "start")
    clock.t = 0.5
    assert say(emu, "volt get") == b"\xf0\xf7\x0c\xdc\xff\xff"  # 3292 mV
    assert say(emu, "temp") == b"\xf0\xf8\x00\x1c\xff\xff"  # 28 degC
    assert say(emu, "temp degf") == b"\xf0\xf8\x00\x52\xff\xff"  # 82.4 -> 82 degF
    assert say(emu, "pwr get") == b"\xf0\xf9\x01\xff\xff"
    assert say(emu, "pwr off") == b"\xf0\xf9\x00\xff\xff"
    assert say(emu, "targrst 10m") == b"\xf0\xf6\xff\xff"
    assert say(emu, "status") == bin_frame_text(0xF2, "ack status ok")
    assert say(emu, "freq 2k") == bin_frame_text(
        0xF1,
        "error freq 2k\r\nError detail: freq not allowed during acquisition "
        "(allowed: stop, pwr, targrst, volt get, temp, status)",
    )


def test_binary_temperature_frame_is_signed():
    emu, clock = make(model=TxModel(temperature_c=-3.0))
    setup(emu, "trigdelay 0", "format bin_hexa", "acqtime 0")
    say(emu, "start")
    assert say(emu, "temp") == b"\xf0\xf8\xff\xfd\xff\xff"  # Table 45: FF FD = -3


def test_text_frames_are_padded_to_even_length():
    assert bin_frame_text(0xF2, "abc") == b"\xf0\xf2abc \r\n\xff\xff"
    assert bin_frame_text(0xF1, "ab") == b"\xf0\xf1ab\r\n\xff\xff"


def test_binary_timestamp_frame_layout():
    assert _bin_timestamp(1000, 3) == bytes.fromhex("F0F3000003E803FFFF")  # §3.2 worked frame
    assert _bin_timestamp(0x7FFFFFFF, 99) == bytes.fromhex("F0F37FFFFFFF63FFFF")
    assert _bin_timestamp(2**31 + 5, 0) == bytes.fromhex("F0F38000000500FFFF")  # counter overflow flag


# --- the ascii_dec stream (§3.1) ---------------------------------------------------------------------------
def test_ascii_session_of_2_seconds_at_1k():
    """§3.1's worked ASCII session: t=0 timestamp, 1000 samples, timestamp, 1000 samples, end, summary, banner."""
    emu, clock = make()
    setup(emu, "format ascii_dec", "freq 1k", "acqtime 2", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [i / 10 for i in range(1, 21)])
    assert out == (
        ack("start") + ts(0, 0) + S1MA * 1000 + ts(1, 0) + S1MA * 1000 + b"\r\nend\r\n"
        + summary(b"1000-06", b"1000-06") + BANNER
    )  # fmt: skip
    assert emu.state is State.IDLE and emu.busy is False
    assert say(emu, "hrc") == ack("hrc")


def test_ascii_timestamps_carry_milliseconds_and_3_digit_seconds():
    emu, clock = make()
    setup(emu, "freq 2k", "acqtime 1", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.25, 0.5, 0.75, 1.0])
    assert out.count(b"TimeStamp") == 2
    assert ts(0, 500) in out and out.index(ts(0, 500)) == len(ack("start") + ts(0, 0)) + 9 * 1000
    emu, clock = make()
    setup(emu, "freq 5", "acqtime 0", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [50.0 * k for k in range(1, 5)] + [400.0])
    assert ts(200, 0) in out and ts(400, 0) not in out  # sample 1000 at 5 Hz: 200 s
    assert out.count(S1MA) == 2000


def test_samples_start_after_trigdelay_and_exist_only_up_to_now():
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 10m")
    say(emu, "start")
    assert run(emu, clock, [0.010]) == b""
    assert run(emu, clock, [0.015]) == S1MA * 5
    assert run(emu, clock, [0.0169]) == b""  # one sample waiting: less than a 5 ms batch
    assert run(emu, clock, [0.020]) == S1MA * 5


def test_sample_n_is_the_current_at_n_over_f():
    src = PiecewiseCurrent([0.0, 0.0035], [1e-3, 2e-3])
    emu, clock = make(src)
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.005])
    assert out == (
        ack("start") + ts(0, 0) + S1MA * 3 + b"2000-06\r\n" * 2 + b"\r\nend\r\n"
        + summary(b"1000-06", b"2000-06") + BANNER
    )  # fmt: skip


def test_energy_output_is_joules_per_sample_period():
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0", "output energy")
    out = say(emu, "start") + run(emu, clock, [0.005])
    e = b"3300-09"  # 1 mA * 3.3 V / 1 kHz = 3.3 uJ
    assert out == ack("start") + ts(0, 0) + (e + b"\r\n") * 5 + b"\r\nend\r\n" + summary(e, e) + BANNER


def test_small_currents_print_with_exponent_minus_10_and_unpowered_target_reads_the_floor():
    emu, clock = make(ConstantCurrent(2.3e-9))
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.005])
    assert out.count(b"0023-10\r\n") == 7  # 5 samples + summary min and max (Table 49: 2.3 nA)
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0", "pwr off")
    out = say(emu, "start") + run(emu, clock, [0.005])
    assert out.count(b"0001-10\r\n") == 7  # 0.1 nA floor


def test_stop_ends_the_stream_without_ack_and_queued_commands_answer_after_the_banner():
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0")
    say(emu, "start")
    run(emu, clock, [0.01])
    clock.t = 0.0125
    emu.receive(b"stop\nversion\n")
    assert emu.state is State.DRAINING
    out = read(emu) + run(emu, clock, [0.02])
    assert out == (
        S1MA * 2 + b"\r\nend\r\n" + summary(b"1000-06", b"1000-06") + BANNER
        + b"\r\nPowerShield > ack version: 1.0.7\r\n\r\n"
    )  # fmt: skip
    assert emu.state is State.IDLE


def test_commands_after_acqtime_elapsed_wait_for_the_end_sequence():
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 10m", "trigdelay 0")
    say(emu, "start")
    clock.t = 0.02
    emu.receive(b"freq 2k\n")
    assert read(emu) == b"" and emu.state is State.DRAINING
    out = run(emu, clock, [0.02])
    assert out == S1MA * 10 + b"\r\nend\r\n" + summary(b"1000-06", b"1000-06") + BANNER + ack("freq 2k")
    assert emu.settings.freq == 2000


def test_pwr_status_reports_target_power_at_start_and_end():
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0", "pwr auto status", "pwrend off")
    out = say(emu, "start") + run(emu, clock, [0.005])
    assert out == (
        ack("start") + ts(0, 0) + b"\r\npwr on\r\n" + S1MA * 5 + b"\r\npwr on\r\n" + b"\r\nend\r\n"
        + summary(b"1000-06", b"1000-06") + BANNER
    )  # fmt: skip
    assert say(emu, "pwr get") == ack("pwr get off")  # pwrend off: unpowered after the acquisition


def test_pwr_status_with_an_unpowered_target():
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0", "pwr off status")
    out = say(emu, "start") + run(emu, clock, [0.005])
    assert out.startswith(ack("start") + ts(0, 0) + b"\r\npwr off\r\n")
    assert b"\r\npwr off\r\n\r\nend\r\n" in out


def test_pwrend_off_with_pwr_on_keeps_the_target_powered():
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0", "pwr on", "pwrend off")
    say(emu, "start")
    run(emu, clock, [0.005])
    assert say(emu, "pwr get") == ack("pwr get on")


def test_pwr_auto_powers_the_target_at_start():
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0", "pwr off", "pwr auto")
    assert emu.target_powered is False
    say(emu, "start")
    assert emu.target_powered is True


def test_d7_edges_become_numbered_event_lines_at_their_sample():
    emu, clock = make(ConstantCurrent(1e-3, edges=[0.002, 0.0105, 0.0125, 0.0201]))
    setup(emu, "freq 1k", "acqtime 20m", "trigdelay 5m")
    out = say(emu, "start") + run(emu, clock, [0.015, 0.025, 0.03])
    # t0 = 5 ms, sample n at 5 + n ms: the edge at 2 ms is before the acquisition; 10.5 ms lies between samples
    # 5 and 6 (10 and 11 ms); 12.5 ms between samples 7 and 8; 20.1 ms between samples 15 and 16
    assert out == (
        ack("start") + ts(0, 0) + S1MA * 5 + b"\r\nevent 00 ris\r\n" + S1MA * 2 + b"\r\nevent 01 ris\r\n"
        + S1MA * 8 + b"\r\nevent 02 ris\r\n" + S1MA * 5 + b"\r\nend\r\n" + summary(b"1000-06", b"1000-06")
        + BANNER
    )  # fmt: skip


def test_an_edge_exactly_at_a_sample_time_comes_before_that_sample():
    emu, clock = make(ConstantCurrent(1e-3, edges=[0.003]))
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.005])
    assert out.startswith(ack("start") + ts(0, 0) + S1MA * 2 + b"\r\nevent 00 ris\r\n" + S1MA * 3 + b"\r\nend")


def test_binary_events_are_info_frames():
    emu, clock = make(ConstantCurrent(1e-3, edges=[0.0025]))
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0", "format bin_hexa")
    out = say(emu, "start") + run(emu, clock, [0.005])
    assert out == (
        ack("start") + bytes.fromhex("F0F30000000000FFFF") + W1MA * 2 + b"\xf0\xf2event 00 ris\r\n\xff\xff"
        + W1MA * 3 + b"\xf0\xf4\xff\xff" + bin_summary("1000-06", "1000-06") + BANNER
    )  # fmt: skip


def test_no_events_with_eventsrc_off():
    emu, clock = make(ConstantCurrent(1e-3, edges=[0.0025]))
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0", "eventsrc off")
    out = say(emu, "start") + run(emu, clock, [0.005])
    assert b"event" not in out and out.count(S1MA) == 7


def test_an_edge_after_the_last_sample_of_a_stopped_acquisition_is_still_reported():
    emu, clock = make(ConstantCurrent(1e-3, edges=[0.0101, 0.0103]))
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0")
    say(emu, "start")
    run(emu, clock, [0.01])
    clock.t = 0.0102
    emu.receive(b"stop\n")
    out = run(emu, clock, [0.0104])
    assert out == b"\r\nevent 00 ris\r\n\r\nend\r\n" + summary(b"1000-06", b"1000-06") + BANNER  # not 0.0103


# --- the bin_hexa stream (§3.2) ------------------------------------------------------------------------------
def test_binary_session_of_2_seconds_at_1k():
    emu, clock = make()
    setup(emu, "format bin_hexa", "freq 1k", "acqtime 2", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [i / 10 for i in range(1, 21)])
    assert out == (
        ack("start") + bytes.fromhex("F0F30000000000FFFF") + W1MA * 1000 + bytes.fromhex("F0F3000003E800FFFF")
        + W1MA * 1000 + b"\xf0\xf4\xff\xff" + bin_summary("1000-06", "1000-06") + BANNER
    )  # fmt: skip


def test_binary_pwr_status_frames():
    emu, clock = make()
    setup(emu, "format bin_hexa", "freq 1k", "acqtime 5m", "trigdelay 0", "pwr on status")
    out = say(emu, "start") + run(emu, clock, [0.005])
    on = b"\xf0\xf9\x01\xff\xff"
    assert out == (
        ack("start") + bytes.fromhex("F0F30000000000FFFF") + on + W1MA * 5 + on + b"\xf0\xf4\xff\xff"
        + bin_summary("1000-06", "1000-06") + BANNER
    )  # fmt: skip


def test_binary_stream_keeps_up_with_100k_in_5ms_batches():
    emu, clock = make()
    setup(emu, "format bin_hexa", "freq 100k", "acqtime 0", "trigdelay 0")
    say(emu, "start")
    out = run(emu, clock, [0.005, 0.010, 0.015])
    assert out == W1MA * 1000 + bytes.fromhex("F0F30000000A00FFFF") + W1MA * 500


# --- buffer load, overflow and overcurrent --------------------------------------------------------------------
def test_buffer_load_reports_the_backlog_of_a_slow_formatter():
    # 1 kHz acquired, 512 samples/s formatted (64 per 1/8 s step): the step to t=2 s formats samples 961..1024,
    # with the timestamp before sample 1001; 2000 - 1024 = 976 samples still wait -> 12.2 % of 8000 -> buff 12
    emu, clock = make(model=TxModel(ascii_rate=512.0))
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0")
    say(emu, "start")
    out = run(emu, clock, [k / 8 for k in range(1, 16)])
    assert out.count(S1MA) == 960 and b"TimeStamp" not in out
    out = run(emu, clock, [2.0])
    assert out == S1MA * 40 + ts(1, 0, 12) + S1MA * 24


def test_tx_fifo_fill_counts_in_the_buffer_load():
    emu, clock = make(model=TxModel(tx_capacity=11300))
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0")
    say(emu, "start")
    run(emu, clock, [0.875])
    emu.faults.host_not_reading = True
    run(emu, clock, [1.0])  # 125 samples = 1125 B stay queued
    run(emu, clock, [1.125])  # the batch with the timestamp: TX FIFO 1125 / 11300 = 9.96 % -> buff 09
    emu.faults.host_not_reading = False
    assert read(emu) == S1MA * 125 + ts(1, 0, 9) + S1MA * 125


def test_force_overflow_aborts_with_the_overflow_error_and_status_reports_it_once():
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0")
    say(emu, "start")
    run(emu, clock, [0.005])
    emu.faults.force_overflow = True
    out = run(emu, clock, [0.01])
    assert out == (
        b"\r\nerror: Tx buffer overflow. Acquisition stopped.\r\n\r\nend\r\n" + summary(b"1000-06", b"1000-06")
        + BANNER
    )  # fmt: skip
    assert emu.faults.force_overflow is False and emu.state is State.IDLE
    assert say(emu, "status") == ack("status " + OVERFLOW_ERROR)
    assert say(emu, "status") == ack("status ok")


def test_a_host_that_stops_reading_overflows_the_acquisition_buffer():
    emu, clock = make(model=TxModel(acq_capacity=100, tx_capacity=900))
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0")
    say(emu, "start")
    emu.faults.host_not_reading = True
    run(emu, clock, [0.125])  # 100 samples fill the 900 B FIFO, 25 wait in the 100-sample buffer
    assert emu.state is State.ACQUIRING
    run(emu, clock, [0.25])  # 150 waiting > 100: overflow
    assert emu.state is State.IDLE and emu.error == OVERFLOW_ERROR
    emu.faults.host_not_reading = False
    assert read(emu) == (
        S1MA * 100 + b"\r\n" + OVERFLOW_ERROR.encode() + b"\r\n\r\nend\r\n" + summary(b"1000-06", b"1000-06")
        + BANNER
    )  # fmt: skip


def test_binary_overflow_is_an_error_frame():
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0", "format bin_hexa")
    say(emu, "start")
    emu.faults.force_overflow = True
    out = run(emu, clock, [0.01])
    assert out == (
        b"\xf0\xf1" + OVERFLOW_ERROR.encode() + b" \r\n\xff\xff" + b"\xf0\xf4\xff\xff"
        + bin_summary("0000-10", "0000-10") + BANNER
    )  # fmt: skip


def test_overcurrent_above_59ma_for_2ms_stops_the_acquisition():
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0")
    say(emu, "start")
    run(emu, clock, [0.005])
    emu.faults.overcurrent = True  # + 65 mA = 66 mA
    out = run(emu, clock, [0.010])
    assert out == (
        b"6600-05\r\n" * 2 + b"\r\n" + OVERCURRENT_ERROR.encode() + b"\r\n\r\nend\r\n"
        + summary(b"1000-06", b"6600-05") + BANNER
    )  # fmt: skip
    assert emu.error == OVERCURRENT_ERROR


def test_a_spike_above_75ma_trips_at_once_in_binary_with_the_overcurrent_tag():
    emu, clock = make(PiecewiseCurrent([0.0, 0.0025, 0.0035], [1e-3, 80e-3, 1e-3]))
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0", "format bin_hexa")
    out = say(emu, "start") + run(emu, clock, [0.005])
    w80 = b"\x31\x48"  # 80 mA: 0.08 * 16**4 = 5243 > 4095, so E=3, M=round(327.68)=328=0x148
    assert out == (
        ack("start") + bytes.fromhex("F0F30000000000FFFF") + W1MA * 2 + w80 + b"\xf0\xf5\xff\xff"
        + bin_frame_text(0xF1, OVERCURRENT_ERROR) + b"\xf0\xf4\xff\xff" + bin_summary("1000-06", "8000-05") + BANNER
    )  # fmt: skip


def test_a_short_excursion_above_59ma_is_tolerated():
    emu, clock = make(PiecewiseCurrent([0.0, 0.0015, 0.0025], [1e-3, 66e-3, 1e-3]))
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.005])
    assert out == (
        ack("start") + ts(0, 0) + S1MA + b"6600-05\r\n" + S1MA * 3 + b"\r\nend\r\n" + summary(b"1000-06", b"6600-05")
        + BANNER
    )  # fmt: skip


def test_the_overcurrent_hold_time_counts_across_batches():
    # 100 kHz: 200 samples (2 ms) above 59 mA trip; they span two 5 ms batches of 500
    _, out = two_binary_batches(PiecewiseCurrent([0.0, 0.004005], [1e-3, 66e-3]))
    w66 = b"\x31\x0e"
    assert out.startswith(W1MA * 400 + w66 * 200 + b"\xf0\xf5\xff\xff")


def test_an_overcurrent_run_restarts_after_a_normal_sample_between_batches():
    # 150 samples over at the end of batch 1, one normal sample, 199 over: no trip
    emu, out = two_binary_batches(
        PiecewiseCurrent([0.0, 0.003505, 0.005005, 0.005015, 0.007005], [1e-3, 66e-3, 1e-3, 66e-3, 1e-3])
    )
    assert b"\xf0\xf5" not in out and emu.state is State.ACQUIRING


# --- static mode (§3.3) ---------------------------------------------------------------------------------------
def test_static_mode_gives_one_sample_after_its_window():
    emu, clock = make()
    setup(emu, "acqmode stat", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.05])
    assert out == ack("start") + ts(0, 0)
    out = run(emu, clock, [0.1])
    assert out == S1MA + b"\r\nend\r\n" + summary(b"1000-06", b"1000-06") + BANNER
    assert emu.state is State.IDLE


def test_static_energy_is_the_window_energy():
    emu, clock = make()
    setup(emu, "acqmode stat", "trigdelay 0", "output energy", "format bin_hexa")
    out = say(emu, "start") + run(emu, clock, [0.1])
    # 1 mA * 3.3 V * 0.1 s = 330 uJ: E=6? 3.3e-4*16**6 = 5536 > 4095 -> E=5, M=round(346.03)=346=0x15A
    assert out == (
        ack("start") + bytes.fromhex("F0F30000000000FFFF") + b"\x51\x5a" + b"\xf0\xf4\xff\xff"
        + bin_summary("3300-07", "3300-07") + BANNER
    )  # fmt: skip


def test_static_unstable_fault_fails_the_10_percent_rule_high():
    emu, clock = make()
    setup(emu, "acqmode stat", "trigdelay 0")
    emu.faults.static_unstable = True
    out = say(emu, "start") + run(emu, clock, [0.1])
    assert out == (
        ack("start") + ts(0, 0) + b"\r\n" + STATIC_ERROR_HIGH.encode() + b"\r\n\r\nend\r\n"
        + summary(b"0000-10", b"0000-10") + BANNER
    )  # fmt: skip
    assert emu.faults.static_unstable is False and emu.error == STATIC_ERROR_HIGH


def test_static_current_dipping_more_than_10_percent_fails_low():
    # 0.1 s window sampled every 0.1 ms: 10 of 1000 points at 0.5 mA, the mean 0.995 mA: min < 0.9 * mean
    emu, clock = make(PiecewiseCurrent([0.0, 0.05, 0.051], [1e-3, 0.5e-3, 1e-3]))
    setup(emu, "acqmode stat", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.1])
    assert b"\r\n" + STATIC_ERROR_LOW.encode() + b"\r\n\r\nend\r\n" in out


def test_static_current_within_10_percent_is_accepted():
    # 9 % above for half the window: max 1.09 mA <= 1.1 * mean (1.045 mA), min 1 mA >= 0.9 * mean
    emu, clock = make(PiecewiseCurrent([0.0, 0.05], [1e-3, 1.09e-3]))
    setup(emu, "acqmode stat", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.1])
    assert out.startswith(ack("start") + ts(0, 0) + b"1045-06\r\n\r\nend\r\n")


def test_static_above_200ma_is_an_overcurrent():
    emu, clock = make(ConstantCurrent(0.25))
    setup(emu, "acqmode stat", "trigdelay 0", "format bin_hexa")
    out = say(emu, "start") + run(emu, clock, [0.1])
    assert out == (
        ack("start") + bytes.fromhex("F0F30000000000FFFF") + b"\xf0\xf5\xff\xff"
        + bin_frame_text(0xF1, OVERCURRENT_ERROR) + b"\xf0\xf4\xff\xff" + bin_summary("0000-10", "0000-10") + BANNER
    )  # fmt: skip


def test_static_measurement_stopped_early_has_no_sample():
    emu, clock = make()
    setup(emu, "acqmode stat", "trigdelay 0")
    say(emu, "start")
    clock.t = 0.05  # past 1/freq (the default 100 Hz), within the 100 ms window
    emu.receive(b"stop\n")
    assert read(emu) == b"" and emu.state is State.DRAINING
    out = run(emu, clock, [0.06])
    assert out == b"\r\nend\r\n" + summary(b"0000-10", b"0000-10") + BANNER


def test_static_mode_waits_for_the_trigger_delay():
    emu, clock = make()
    setup(emu, "acqmode stat", "trigdelay 50m")
    say(emu, "start")
    assert run(emu, clock, [0.1, 0.1499]) == b""
    assert run(emu, clock, [0.151]).startswith(S1MA + b"\r\nend")


# --- trigsrc d7 (§2.3) ------------------------------------------------------------------------------------------
def test_d7_trigger_arms_starts_on_an_edge_after_trigdelay_and_rearms():
    emu, clock = make(ConstantCurrent(1e-3, edges=[0.05, 0.2]))
    setup(emu, "trigsrc d7", "freq 1k", "acqtime 5m", "trigdelay 2m")
    assert say(emu, "start") == ack("start")
    assert emu.state is State.ARMED
    assert run(emu, clock, [0.04]) == b""
    out = run(emu, clock, [0.055, 0.06])
    assert out == ts(0, 0) + S1MA * 5 + b"\r\nend\r\n" + summary(b"1000-06", b"1000-06") + BANNER
    assert emu.state is State.ARMED  # re-armed after acqtime; the D7 edge is no event line
    assert run(emu, clock, [0.21]) == ts(0, 0)  # t0 = 0.202; the formatter starts at the next tick
    assert run(emu, clock, [0.215]).startswith(S1MA * 5)
    assert say(emu, "stop") == ack("stop")
    assert emu.state is State.IDLE


def test_d7_trigger_with_no_edge_stays_armed_and_stop_disarms():
    emu, clock = make()
    setup(emu, "trigsrc d7")
    say(emu, "start")
    assert run(emu, clock, [1.0, 2.0]) == b""
    assert emu.state is State.ARMED
    assert say(emu, "freq 1k") == err(
        "freq 1k", "freq not allowed during acquisition (allowed: stop, pwr, targrst, volt get, temp, status)"
    )
    assert say(emu, "stop") == ack("stop")
    assert emu.state is State.IDLE
    assert run(emu, clock, [3.0]) == b""


def test_a_stopped_or_failed_d7_acquisition_does_not_rearm():
    emu, clock = make(ConstantCurrent(1e-3, edges=[0.05]))
    setup(emu, "trigsrc d7", "freq 1k", "acqtime 0", "trigdelay 0")
    say(emu, "start")
    run(emu, clock, [0.06])
    emu.receive(b"stop\n")
    run(emu, clock, [0.07])
    assert emu.state is State.IDLE


# --- byte faults ----------------------------------------------------------------------------------------------
def test_nul_rate_one_puts_a_nul_after_every_byte():
    emu, _ = make()
    emu.faults.nul_rate = 1.0
    out = say(emu, "calib")
    assert out == b"".join(bytes((b, 0)) for b in ack("calib"))


def test_stop_during_the_trigger_delay_ends_the_acquisition_at_once():
    """ref. section 8.7: stop is handled at once; trigdelay can be 600 s."""
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 1")
    say(emu, "start")
    clock.t = 0.5
    emu.receive(b"stop\n")
    out = run(emu, clock, [0.6])
    assert out == b"\r\nend\r\n" + summary(b"0000-10", b"0000-10") + BANNER
    assert emu.state is State.IDLE


# --- encoders at their edges ------------------------------------------------------------------------------------
def test_bin_words_are_uint16():
    words = encode_bin_words(np.array([1e-3, 0.0]))
    assert words.dtype == np.uint16 and words.tolist() == [0x5419, 0]


def test_ascii_samples_above_1e4_use_plus_exponents_and_clamp_at_99():
    lines = encode_ascii_samples(np.array([12340.0, 2e102, 5e103, 1e300]))
    assert [r.tobytes() for r in lines] == [b"1234+01\r\n", b"2000+99\r\n", b"9999+99\r\n", b"9999+99\r\n"]


def test_ascii_samples_below_100na_round_to_a_tenth_of_a_na():
    lines = encode_ascii_samples(np.array([2.24999999999e-9, 2.2500001e-9, 9.9e-12]))
    assert [r.tobytes() for r in lines] == [b"0022-10\r\n", b"0023-10\r\n", b"0000-10\r\n"]


def test_counter_overflow_flag_of_a_timestamp_is_bit_31_only():
    assert _bin_timestamp(2**31, 0) == bytes.fromhex("F0F38000000000FFFF")
    assert _bin_timestamp(2**31 + 4, 7) == bytes.fromhex("F0F38000000407FFFF")


# --- non-ASCII input -------------------------------------------------------------------------------------------
def test_non_ascii_bytes_are_echoed_as_question_marks():
    emu, _ = make()
    emu.receive("echo café\n".encode())
    assert read(emu) == b"\r\nPowerShield > echo caf??\r\n"


def test_non_ascii_bytes_in_a_refused_line_are_question_marks():
    emu, _ = make()
    emu.receive(b"bogus\xff\n")
    assert read(emu) == b"\r\nPowerShield > error bogus?\r\nError detail: unknown command 'bogus?' (see help)\r\n\r\n"


def test_non_ascii_bytes_in_a_binary_error_frame_are_question_marks():
    emu, _ = make()
    setup(emu, "format bin_hexa", "acqtime 0")
    say(emu, "start")
    emu.receive(b"x\xff\n")
    assert read(emu) == bin_frame_text(0xF1, "error x?\r\nError detail: unknown command 'x?' (see help)")
    assert bin_frame_text(0xF1, "é") == b"\xf0\xf1? \r\n\xff\xff"


# --- noise -----------------------------------------------------------------------------------------------------
class OneSigma:
    """A noise source that always draws +1 sigma."""

    def normal(self, loc=0.0, scale=1.0, size=None):
        return loc + scale if size is None else np.full(size, loc + scale)

    def standard_normal(self, size=None):
        return 1.0 if size is None else np.ones(size)


def test_noise_adds_to_the_readings():
    emu, clock = make()
    emu._rng = OneSigma()  # type: ignore[assignment]
    assert say(emu, "volt get") == ack("volt get 3293-03")  # 3.29208 V + 0.5 mV
    assert say(emu, "temp") == ack("temp 28.1")  # + 0.1 degC
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.005])
    assert out.count(b"1005-06\r\n") == 7  # 1 mA * (1 + 0.5 %) + 2 nA = 1.005002 mA


# --- boundaries of the protections ---------------------------------------------------------------------------------
def test_exactly_59ma_is_not_an_overcurrent():
    emu, clock = make(ConstantCurrent(0.059))
    setup(emu, "freq 1k", "acqtime 10m", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.005, 0.01])
    assert out.count(b"5900-05\r\n") == 12 and b"error" not in out


def test_one_sample_of_exactly_75ma_is_tolerated():
    emu, clock = make(PiecewiseCurrent([0.0, 0.0015, 0.0025], [1e-3, 0.075, 1e-3]))
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.005])
    assert out == (
        ack("start") + ts(0, 0) + S1MA + b"7500-05\r\n" + S1MA * 3 + b"\r\nend\r\n" + summary(b"1000-06", b"7500-05")
        + BANNER
    )  # fmt: skip


def test_static_exactly_200ma_is_measured():
    emu, clock = make(ConstantCurrent(0.2))
    setup(emu, "acqmode stat", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.1])
    assert out == ack("start") + ts(0, 0) + b"2000-04\r\n\r\nend\r\n" + summary(b"2000-04", b"2000-04") + BANNER


def test_a_stop_at_the_end_of_the_static_window_keeps_the_measurement():
    emu, clock = make()
    setup(emu, "acqmode stat", "trigdelay 0")
    say(emu, "start")
    clock.t = 0.1
    emu.receive(b"stop\n")
    assert run(emu, clock, [0.1]) == S1MA + b"\r\nend\r\n" + summary(b"1000-06", b"1000-06") + BANNER


@pytest.mark.parametrize(
    "times, amps, error",
    [
        ([0.0, 0.00015], [0.0, 1e-3], STATIC_ERROR_LOW),  # the window's first point is at t0 + 0.1 ms
        ([0.0, 0.09995], [1e-3, 0.0], STATIC_ERROR_LOW),  # its last point is at t0 + 100 ms
        ([0.0, 0.10005], [1e-3, 0.0], None),  # nothing after the window
    ],
)
def test_static_window_is_1000_points_from_t0_plus_100us_to_t0_plus_100ms(times, amps, error):
    emu, clock = make(PiecewiseCurrent(times, amps))
    setup(emu, "acqmode stat", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.1])
    if error is None:
        assert out.startswith(ack("start") + ts(0, 0) + S1MA + b"\r\nend")
    else:
        assert out.startswith(ack("start") + ts(0, 0) + b"\r\n" + error.encode() + b"\r\n\r\nend")


def test_static_unstable_scales_every_other_point_by_1_25():
    # 110 mA: the scaled points read 137.5 mA (not above 200 mA): the +-10 % rule fails, no overcurrent
    emu, clock = make(ConstantCurrent(0.11))
    setup(emu, "acqmode stat", "trigdelay 0")
    emu.faults.static_unstable = True
    out = say(emu, "start") + run(emu, clock, [0.1])
    assert b"\r\n" + STATIC_ERROR_HIGH.encode() + b"\r\n" in out
    # 170 mA at the third point only (an even index): scaled to 212.5 mA -> overcurrent
    emu, clock = make(PiecewiseCurrent([0.0, 0.00025, 0.00035], [0.1, 0.17, 0.1]))
    setup(emu, "acqmode stat", "trigdelay 0")
    emu.faults.static_unstable = True
    out = say(emu, "start") + run(emu, clock, [0.1])
    assert b"\r\n" + OVERCURRENT_ERROR.encode() + b"\r\n" in out


def test_d7_trigger_time_plus_trigdelay_is_t0():
    emu, clock = make(PiecewiseCurrent([0.0, 0.0505], [1e-3, 2e-3], edges=[0.05]))
    setup(emu, "trigsrc d7", "freq 1k", "acqtime 5m", "trigdelay 2m")
    say(emu, "start")
    out = run(emu, clock, [0.055, 0.06])
    assert out == ts(0, 0) + b"2000-06\r\n" * 5 + b"\r\nend\r\n" + summary(b"2000-06", b"2000-06") + BANNER


def test_buffer_load_is_capped_at_99_percent():
    # as the slow-formatter test, with a 976-sample buffer: 976 waiting = 100 % -> reported 99
    emu, clock = make(model=TxModel(ascii_rate=512.0, acq_capacity=976))
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0")
    say(emu, "start")
    run(emu, clock, [k / 8 for k in range(1, 16)])
    assert run(emu, clock, [2.0]) == S1MA * 40 + ts(1, 0, 99) + S1MA * 24


def test_garbage_tail_bound_is_4096_bytes():
    emu, _ = make()
    emu.receive(b"version\n" + b"y" * 4097)
    assert bytes(emu._rx) == b"y" * 4096


def test_non_ascii_bytes_in_an_ack_are_question_marks():
    emu, _ = make()
    emu.receive('lcd 1 "é"\n'.encode())
    assert read(emu) == b'\r\nPowerShield > ack lcd 1 "??"\r\n\r\n'


def test_range_takes_no_argument():
    emu, _ = make()
    assert say(emu, "range x") == err("range x", "unexpected argument 'x'")


def test_a_command_exactly_at_the_end_of_acqtime_waits_for_the_end_sequence():
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 10m", "trigdelay 0")
    say(emu, "start")
    run(emu, clock, [0.005])
    clock.t = 0.01  # the last sample's time
    emu.receive(b"temp\n")
    assert read(emu) == b"" and emu.state is State.DRAINING
    assert run(emu, clock, [0.01]) == S1MA * 5 + b"\r\nend\r\n" + summary(b"1000-06", b"1000-06") + BANNER + ack(
        "temp 28.0"
    )


def test_default_seed_is_0_and_the_noise_is_seeded():
    def temp(**kw):
        emu = LPM01AEmulator(StepClock(), ConstantCurrent(1e-3), **kw)  # type: ignore[arg-type]
        emu.connect()
        say(emu, "htc")
        return [say(emu, "temp") for _ in range(5)]

    assert temp() == temp(seed=0)
    assert temp(seed=0) != temp(seed=1)


def test_default_source_is_the_l496_profile():
    from device.power_profiles import L496Profile

    emu = LPM01AEmulator(StepClock())  # type: ignore[arg-type]
    assert isinstance(emu.source, L496Profile)
    assert emu.connected is False


def test_byte_faults_draw_from_a_generator_seeded_with_seed_and_1():
    from device.emulated import apply_byte_faults

    emu, _ = make()
    emu.faults.nul_rate = 0.5
    out = say(emu, "calib")
    emu.faults.nul_rate = 0.0
    ref = apply_byte_faults(ack("calib"), emu.faults.__class__(nul_rate=0.5), np.random.default_rng([0, 1]))
    assert out == ref and out != ack("calib")


def test_the_floor_noise_is_drawn_per_sample():
    clock = StepClock()
    emu = LPM01AEmulator(clock, ConstantCurrent(0.0), seed=0)  # type: ignore[arg-type]
    emu.connect()
    setup(emu, "htc", "freq 1k", "acqtime 5m", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.005])
    body = out[len(ack("start") + ts(0, 0)) :].split(b"\r\n")[:5]
    assert len(set(body)) > 1 and all(len(x) == 7 and x.endswith(b"-10") for x in body)


def test_noise_floor_adds_at_zero_current():
    emu, clock = make(ConstantCurrent(0.0))
    emu._rng = OneSigma()  # type: ignore[assignment]
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.005])
    assert out.count(b"0020-10\r\n") == 7  # + 2 nA rms


def test_power_history_keeps_the_last_32_transitions():
    emu, clock = make()
    for k in range(1, 41):
        clock.t = float(k)
        setup(emu, "pwr off" if k % 2 else "pwr on")  # off at odd, on at even seconds
    # kept: the transitions at 9 .. 40 s; before them, the oldest kept state (off, from 9 s) applies
    assert emu._power_mask(np.array([0.5, 8.5, 9.5, 10.5, 40.5])).tolist() == [False, False, False, True, True]


def test_switching_the_target_drops_transitions_planned_after_now():
    emu, clock = make()
    clock.t = 1.0
    setup(emu, "targrst 100m")  # on again at 1.1 s
    clock.t = 1.05
    setup(emu, "pwr off")
    assert emu._power_mask(np.array([1.02, 1.2, 5.0])).tolist() == [False, False, False]


def test_the_source_hook_is_told_each_target_switch():
    calls = []

    class Src(ConstantCurrent):
        def set_target_power(self, on, t):
            calls.append((on, t))

    emu, clock = make(Src(1e-3))
    setup(emu, "freq 1k", "acqtime 5m", "trigdelay 0", "pwrend off")
    say(emu, "start")
    run(emu, clock, [0.005])
    assert calls == [(True, 0.0), (False, 0.005)]
    assert all(type(on) is bool for on, _ in calls)


def test_a_failing_source_hook_is_logged(caplog):
    class Src(ConstantCurrent):
        def set_target_power(self, on, t):
            raise RuntimeError("boom")

    emu, _ = make(Src(1e-3))
    with caplog.at_level("ERROR", logger="device.lpm01a.emulator"):
        setup(emu, "pwr off")
    assert [r.getMessage() for r in caplog.records] == ["current source set_target_power hook failed"]


def test_acqtime_shorter_than_one_period_gives_one_sample():
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 100u", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.005])
    assert out == ack("start") + ts(0, 0) + S1MA + b"\r\nend\r\n" + summary(b"1000-06", b"1000-06") + BANNER


def test_static_d7_acquisitions_rearm_with_an_infinite_acqtime():
    emu, clock = make(ConstantCurrent(1e-3, edges=[0.05, 0.5]))
    setup(emu, "trigsrc d7", "acqmode stat", "acqtime 0", "trigdelay 0")
    say(emu, "start")
    out = run(emu, clock, [0.1, 0.2, 0.6, 0.7])
    assert out.count(S1MA + b"\r\nend\r\n") == 2


def test_stream_ends_when_advanced_exactly_to_the_stop_time():
    emu, clock = make()
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0")
    say(emu, "start")
    run(emu, clock, [0.01])
    clock.t = 0.0125
    emu.receive(b"stop\n")
    assert run(emu, clock, [0.0125]) == S1MA * 2 + b"\r\nend\r\n" + summary(b"1000-06", b"1000-06") + BANNER


def test_state_is_draining_while_samples_of_a_finished_acquisition_go_out():
    emu, clock = make(model=TxModel(ascii_rate=512.0))
    setup(emu, "freq 1k", "acqtime 1", "trigdelay 0")
    say(emu, "start")
    run(emu, clock, [k / 8 for k in range(1, 9)])
    assert emu.state is State.DRAINING  # 1000 acquired, 512 sent


def test_at_100hz_each_sample_goes_out_at_once():
    emu, clock = make()
    setup(emu, "freq 100", "acqtime 0", "trigdelay 0")
    say(emu, "start")
    assert run(emu, clock, [0.01]) == S1MA
    assert run(emu, clock, [0.02]) == S1MA


def test_binary_samples_stop_when_the_tx_fifo_is_full():
    emu, clock = make(model=TxModel(tx_capacity=100))
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0", "format bin_hexa")
    say(emu, "start")
    emu.faults.host_not_reading = True
    run(emu, clock, [0.1])
    emu.faults.host_not_reading = False
    assert read(emu) == W1MA * 50  # 100 B / 2 B per sample


def test_the_formatter_banks_no_time_while_idle():
    # 1 s of trigger delay: the formatter (512 samples/s) keeps at most 512 * 5 ms + 1 = 3.56 samples of budget;
    # the first 1/8 s then formats 3.56 + 64 -> 67 samples
    emu, clock = make(model=TxModel(ascii_rate=512.0))
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 1")
    say(emu, "start")
    run(emu, clock, [k / 8 for k in range(1, 9)])
    assert run(emu, clock, [1.125]) == S1MA * 67


@pytest.mark.parametrize("spike_sample, ts_before", [(1000, False), (1001, True)])
def test_a_trip_at_the_timestamp_boundary(spike_sample, ts_before):
    t = spike_sample / 1000
    emu, clock = make(PiecewiseCurrent([0.0, t - 0.0005, t + 0.0005], [1e-3, 80e-3, 1e-3]))
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.5, 1.1])
    head = ack("start") + ts(0, 0) + S1MA * (spike_sample - 1)
    # (1100 acquired, 1001 sent: 99 waiting = 1 % of 8000)
    assert out.startswith(head + (ts(1, 0, 1) if ts_before else b"") + b"8000-05\r\n\r\nerror: Overcurrent")


def test_an_overcurrent_run_carried_from_one_sample_at_the_end_of_a_batch():
    # samples 500 (last of batch 1) .. 699 above 59 mA: 200 samples = 2 ms -> trip at sample 699
    assert two_binary_batches(PiecewiseCurrent([0.0, 0.004995, 0.006995], [1e-3, 66e-3, 1e-3]))[1].startswith(
        W1MA * 499 + b"\x31\x0e" * 200 + b"\xf0\xf5\xff\xff"
    )


def test_an_overcurrent_run_starting_a_batch_counts_from_one():
    # samples 100 .. 109 and 501 .. 699 above 59 mA (10 and 199 samples) after a normal sample 500: no trip
    emu, out = two_binary_batches(
        PiecewiseCurrent([0.0, 0.000995, 0.001095, 0.005005, 0.006995], [1e-3, 66e-3, 1e-3, 66e-3, 1e-3])
    )
    assert b"\xf0\xf5" not in out and emu.state is State.ACQUIRING


def test_timestamps_with_one_sample_batches():
    emu, clock = make()
    setup(emu, "freq 100", "acqtime 0", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [k / 100 for k in range(1, 1006)])
    assert out == ack("start") + ts(0, 0) + S1MA * 1000 + ts(10, 0) + S1MA * 5


@pytest.mark.parametrize("fmt", ["ascii_dec", "bin_hexa"])
def test_an_edge_at_a_batch_end_and_a_timestamp_at_the_same_sample(fmt):
    # the edge at 1.0005 s is reported before sample 1001, after that sample's timestamp
    emu, clock = make(ConstantCurrent(1e-3, edges=[1.0005]))
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0", "format " + fmt)
    say(emu, "start")
    run(emu, clock, [0.5])
    if fmt == "ascii_dec":
        assert run(emu, clock, [1.0008]) == S1MA * 500  # samples 501 .. 1000; the edge waits for sample 1001
        assert run(emu, clock, [1.1]) == ts(1, 0) + b"\r\nevent 00 ris\r\n" + S1MA * 100
    else:
        assert run(emu, clock, [1.0008]) == W1MA * 500
        assert run(emu, clock, [1.1]) == (
            bytes.fromhex("F0F3000003E800FFFF") + b"\xf0\xf2event 00 ris\r\n\xff\xff" + W1MA * 100
        )


def test_an_edge_and_a_later_timestamp_in_one_batch():
    emu, clock = make(ConstantCurrent(1e-3, edges=[0.2505]))
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [1.5])
    assert out == ack("start") + ts(0, 0) + S1MA * 250 + b"\r\nevent 00 ris\r\n" + S1MA * 750 + ts(1, 0) + S1MA * 500


def test_an_acquisition_ended_by_an_error_drops_its_pending_edges():
    emu, clock = make(ConstantCurrent(1e-3, edges=[0.0055]))
    setup(emu, "freq 1k", "acqtime 0", "trigdelay 0")
    say(emu, "start")
    run(emu, clock, [0.005])
    emu.faults.force_overflow = True
    out = run(emu, clock, [0.0058])
    assert out == b"\r\n" + OVERFLOW_ERROR.encode() + b"\r\n\r\nend\r\n" + summary(b"1000-06", b"1000-06") + BANNER


def test_static_max_exactly_110_percent_of_the_mean_passes_the_high_check():
    # 100 points at 1 mA, 900 at 11 mA: mean 10 mA, max == 1.1 * mean exactly; the min (1 mA) fails low
    emu, clock = make(PiecewiseCurrent([0.0, 0.01005], [1e-3, 0.010999999999999982]))
    setup(emu, "acqmode stat", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.1])
    assert b"\r\n" + STATIC_ERROR_LOW.encode() + b"\r\n" in out


def test_static_min_exactly_90_percent_of_the_mean_is_accepted():
    # one point at 0.9 * mean exactly (0.89991 mA), 999 at 1 mA: no error, the mean is measured
    emu, clock = make(PiecewiseCurrent([0.0, 0.00015], [0.0008999099189270347, 1e-3]))
    setup(emu, "acqmode stat", "trigdelay 0")
    out = say(emu, "start") + run(emu, clock, [0.1])
    assert out == ack("start") + ts(0, 0) + b"9999-07\r\n\r\nend\r\n" + summary(b"9999-07", b"9999-07") + BANNER
