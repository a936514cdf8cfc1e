"""Exact behaviour of the X-NUCLEO-LPM01A protocol facts (device/lpm01a/spec.py) and of serial-port discovery
(device/discovery.py).

Expected values come from ../shared/reference/lpm01a-protocol.md (UM2269): the number syntax (§2.2), the rates
(§4), the setting ranges (§2.4), the ascii_dec sample text (§3.1) and the bin_hexa word ``EEEE MMMM MMMM MMMM``
= M / 16**E (§3.2), worked by hand.  Discovery runs over fake port listers and a fake clock.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from device import discovery
from device.discovery import PortInfo, find_nucleo, find_ports, find_powershield, wait_for_port
from device.lpm01a import spec
from device.lpm01a.spec import (
    RANGES,
    ArgumentError,
    ascii_duration_limit,
    ascii_sample,
    ascii_value,
    bin_value,
    bin_word,
    format_freq,
    format_number,
    parse_freq,
    parse_freq_user,
    parse_number,
)
from tests.clockkit import SleepClock

ALL_RATES = "100k, 50k, 20k, 10k, 5k, 2k, 1k, 500, 200, 100, 50, 20, 10, 5, 2, 1"


def _approx(x: float) -> object:
    return pytest.approx(x, rel=1e-12, abs=0.0)


# --- number syntax (§2.2) -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3.0),
        ("1000", 1000.0),
        ("0", 0.0),
        ("3300m", 3.3),
        ("3300 m", 3.3),
        ("100u", 100e-6),
        ("1k", 1000.0),
        ("2-3", 2e-3),
        ("2-03", 2e-3),
        ("3300-3", 3.3),
        ("1+3", 1000.0),
        ("25-08", 25e-8),
        ("  5  ", 5.0),
    ],
)
def test_parse_number_reads_every_documented_spelling(text: str, value: float) -> None:
    """Plain digits, u/m/k suffixes (with or without a space), -xx/+xx powers of ten."""
    assert parse_number(text) == _approx(value)


@pytest.mark.parametrize("text", ["1s", "0.5", "-1", "2-123", "2+", "m", "", "1 k m", "1e3", "1K"])
def test_parse_number_rejects_anything_else_with_its_message(text: str) -> None:
    """No `s` suffix, no decimals, no sign, at most two exponent digits; the message names the text."""
    with pytest.raises(ArgumentError) as ei:
        parse_number(text)
    assert str(ei.value) == f"{text!r} is not a number in LPM01A syntax (digits, optional u/m/k or -xx/+xx)"


def test_argument_error_is_a_value_error() -> None:
    """Callers that catch ValueError also catch the protocol's argument errors."""
    assert issubclass(ArgumentError, ValueError)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (3.0, "3"),
        (1500.0, "1500"),
        (3.3, "3300m"),
        (0.5, "500m"),
        (1e-3, "1m"),
        (1000.0, "1000"),
        (2e6, "2000000"),
        (1e9, "1000000k"),
        (100e-6, "100u"),
        (1e-6, "1u"),
        (2.5e-7, "25-08"),
        (1.5e12, "1500000000000"),
    ],
)
def test_format_number_spells_values_the_shortest_exact_way(value: float, text: str) -> None:
    """Plain digits first (below 1e9), then k, m, u, then mantissa-power-of-ten; the spelling parses back."""
    assert format_number(value) == text
    assert parse_number(text) == _approx(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1.0, "-1.0 cannot be sent: the LPM01A takes non-negative finite numbers only"),
        (-1e-9, "-1e-09 cannot be sent: the LPM01A takes non-negative finite numbers only"),
        (math.inf, "inf cannot be sent: the LPM01A takes non-negative finite numbers only"),
        (math.nan, "nan cannot be sent: the LPM01A takes non-negative finite numbers only"),
        (1e-200, "1e-200 has no exact LPM01A spelling"),
    ],
)
def test_format_number_refuses_unsendable_values(value: float, message: str) -> None:
    """Negative, infinite, NaN and unspellably small values raise with a message naming the value."""
    with pytest.raises(ArgumentError) as ei:
        format_number(value)
    assert str(ei.value) == message


@pytest.mark.parametrize(
    ("value", "text"),
    [(1000.0000015, "1000"), (0.0010000000015, "1-03"), (1.0000000015, "1")],
)
def test_format_number_spells_a_near_integer_as_that_integer(value: float, text: str) -> None:
    """A value within 1e-9 (relative) of a whole count of a unit uses that unit; else the 1e-6 fallback rounds it."""
    assert format_number(value) == text


def test_format_number_never_sends_a_three_digit_exponent() -> None:
    """1e-100 would need ``1-100``; the syntax allows at most two exponent digits, so it is refused."""
    with pytest.raises(ArgumentError) as ei:
        format_number(1e-100)
    assert str(ei.value) == "1e-100 has no exact LPM01A spelling"


# --- rates (§2.4, §4) -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "hz"),
    [("100k", 100_000), ("100000", 100_000), ("1k", 1000), ("1000", 1000), ("500", 500), ("1", 1), ("1000m", 1)],
)
def test_parse_freq_accepts_the_sixteen_rates(text: str, hz: int) -> None:
    """Any spelling of an allowed rate gives the rate in Hz."""
    assert parse_freq(text) == hz


@pytest.mark.parametrize("text", ["3", "200k", "1500m", "100u", "0", "999"])
def test_parse_freq_refuses_other_rates_listing_the_allowed_ones(text: str) -> None:
    """A rate outside the set (or not whole) is refused; the message lists the 16 rates, fastest first."""
    with pytest.raises(ArgumentError) as ei:
        parse_freq(text)
    assert str(ei.value) == f"freq {text!r}: must be one of {ALL_RATES} Hz"


def test_parse_freq_passes_syntax_errors_through() -> None:
    """A rate that is not an LPM01A number at all gets the syntax message."""
    with pytest.raises(ArgumentError) as ei:
        parse_freq("fast")
    assert str(ei.value) == "'fast' is not a number in LPM01A syntax (digits, optional u/m/k or -xx/+xx)"


@pytest.mark.parametrize(
    ("hz", "text"),
    [(100_000, "100k"), (50_000, "50k"), (20_000, "20k"), (10_000, "10k"), (5_000, "5k"), (2_000, "2k")]
    + [(1_000, "1k"), (500, "500"), (200, "200"), (100, "100"), (50, "50"), (20, "20"), (10, "10"), (5, "5")]
    + [(2, "2"), (1, "1")],
)
def test_format_freq_uses_the_boards_spelling(hz: int, text: str) -> None:
    """Each of the 16 rates is sent as the board's help text spells it."""
    assert format_freq(hz) == text


def test_format_freq_refuses_other_rates() -> None:
    """A rate outside the set is refused with the list of allowed rates."""
    with pytest.raises(ArgumentError) as ei:
        format_freq(3)
    assert str(ei.value) == f"freq 3 Hz: must be one of {ALL_RATES}"


@pytest.mark.parametrize(
    ("text", "hz"),
    [
        ("100 kHz", 100_000),
        (" 1KHZ ", 1000),
        ("1 000 Hz", 1000),
        ("20k", 20_000),
        ("100000", 100_000),
        (100_000, 100_000),
        (50, 50),
    ],
)
def test_parse_freq_user_accepts_what_people_type(text: str | int, hz: int) -> None:
    """Case, a `Hz` unit and spaces (also inside the digits) do not matter; ints are rates in Hz."""
    assert parse_freq_user(text) == hz


def test_parse_freq_user_refuses_a_rate_outside_the_set() -> None:
    """The user-facing parser refuses like parse_freq, quoting the cleaned-up text."""
    with pytest.raises(ArgumentError) as ei:
        parse_freq_user("3 kHz")
    assert str(ei.value) == f"freq '3k': must be one of {ALL_RATES} Hz"


# --- setting ranges (§2.4) ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("volt", 1.8),
        ("volt", 3.3),
        ("volt", 3.3 + 5e-13),
        ("volt", 1.8 - 5e-13),
        ("volt", 1.8 - 1e-12),
        ("volt", 3.3 + 1e-12),
        ("acqtime", 0.0),
        ("acqtime", 100e-6),
        ("acqtime", 100.0),
        ("trigdelay", 0.0),
        ("trigdelay", 600.0),
        ("currthre", 0.0),
        ("currthre", 100e-9),
        ("currthre", 50e-3),
        ("targrst", 0.0),
        ("targrst", 1e-3),
        ("targrst", 1.0),
    ],
)
def test_range_check_accepts_the_limits_and_returns_the_value(name: str, value: float) -> None:
    """Both ends of each range (within 1e-12) and 0 where it means infinite/off are accepted unchanged."""
    assert RANGES[name].check(value) == value


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("volt", 0.0, "volt 0 V is out of range: allowed 1.8 .. 3.3 V"),
        ("volt", 1.7, "volt 1.7 V is out of range: allowed 1.8 .. 3.3 V"),
        ("volt", 3.4, "volt 3.4 V is out of range: allowed 1.8 .. 3.3 V"),
        ("volt", 3.3 + 1e-11, "volt 3.3 V is out of range: allowed 1.8 .. 3.3 V"),
        ("volt", 1.8 - 1e-11, "volt 1.8 V is out of range: allowed 1.8 .. 3.3 V"),
        ("acqtime", 50e-6, "acqtime 5e-05 s is out of range: allowed 0.0001 .. 100 s (or 0)"),
        ("acqtime", 200.0, "acqtime 200 s is out of range: allowed 0.0001 .. 100 s (or 0)"),
        ("trigdelay", 601.0, "trigdelay 601 s is out of range: allowed 0 .. 600 s (or 0)"),
        ("currthre", 0.06, "currthre 0.06 A is out of range: allowed 1e-07 .. 0.05 A (or 0)"),
        ("targrst", 2.0, "targrst 2 s is out of range: allowed 0.001 .. 1 s (or 0)"),
    ],
)
def test_range_check_refuses_out_of_range_values_with_the_limits(name: str, value: float, message: str) -> None:
    """The message names the setting, the value, the allowed range with its unit and whether 0 is allowed."""
    with pytest.raises(ArgumentError) as ei:
        RANGES[name].check(value)
    assert str(ei.value) == message


def test_range_spec_without_zero_ok_refuses_zero() -> None:
    """A RangeSpec defaults to not admitting 0."""
    r = spec.RangeSpec("x", 1.0, 2.0, "V")
    assert r.zero_ok is False
    with pytest.raises(ArgumentError) as ei:
        r.check(0.0)
    assert str(ei.value) == "x 0 V is out of range: allowed 1 .. 2 V"


# --- ascii_dec duration limits (UM2269 Table 2) ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hz", "limit"),
    [
        (100_000, 0.0),
        (50_000, 0.0),
        (20_001, 0.0),
        (20_000, 0.5),
        (10_000, 1.0),
        (5_000, None),
        (1_000, None),
        (1, None),
    ],
)
def test_ascii_duration_limit_follows_table_2(hz: int, limit: float | None) -> None:
    """<= 5 kHz unlimited, 10 kHz 1 s, 20 kHz 500 ms, above 20 kHz refused (0.0)."""
    assert ascii_duration_limit(hz) == limit


# --- bin_hexa words (§3.2) ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("word", "value"),
    [
        (0x52A0, 672 / 1048576),  # UM2269 example: 640.9 uA
        (0x3145, 325 / 4096),  # UM2269 example: 79.35 mA
        (0x0FFF, 4095.0),
        (0x0001, 1.0),
        (0x0000, 0.0),
        (0x1010, 16 / 16),
        (0xE048, 72 / 16**14),
        (0xEFFF, 4095 / 16**14),
    ],
)
def test_bin_value_is_mantissa_over_sixteen_to_the_exponent(word: int, value: float) -> None:
    """value = M / 16**E with E the high nibble and M the low 12 bits."""
    assert bin_value(word) == value


@pytest.mark.parametrize(
    ("word", "message"),
    [
        (0xF000, "0xF000 is a metadata marker, not a sample"),
        (0xF0F3, "0xF0F3 is a metadata marker, not a sample"),
        (0xFFFF, "0xFFFF is a metadata marker, not a sample"),
    ],
)
def test_bin_value_refuses_metadata_markers(word: int, message: str) -> None:
    """A word whose high nibble is 0xF is a metadata marker; the message shows it in 4-digit hex."""
    with pytest.raises(ArgumentError) as ei:
        bin_value(word)
    assert str(ei.value) == message


@pytest.mark.parametrize(
    ("value", "word"),
    [
        (640.9e-6, 0x52A0),  # UM2269 example
        (0.07935, 0x3145),  # UM2269 example
        (4095 / 16**3, 0x3FFF),  # E=3 exactly fits M=4095
        (4095.4 / 16**3, 0x3FFF),  # rounds to 4095 at E=3
        (4095.5 / 16**3, 0x2100),  # rounds to 4096 at E=3 -> E=2, M=256
        (4095.5 / 16, 0x0100),  # rounds to 4096 at E=1 -> E=0, M=256
        (1.0, 0x2100),  # 1 A: E=2, M=256
        (300.0, 0x012C),  # E=0, M=300
        (5000.0, 0x0FFF),  # above range: clamps to E=0, M=4095
        (1e-15, 0xE048),  # below range: E=14, M=round(72.06)=72
    ],
)
def test_bin_word_picks_the_largest_exponent_that_fits(value: float, word: int) -> None:
    """The encoder uses the largest E <= 14 with round(value * 16**E) <= 4095 (UM2269 ±0.2 %)."""
    assert bin_word(value) == word


@pytest.mark.parametrize("value", [0.0, -1e-3, math.inf, math.nan])
def test_bin_word_of_nothing_is_zero(value: float) -> None:
    """Zero, negative and non-finite values encode as the zero word."""
    assert bin_word(value) == 0x0000


# --- ascii_dec samples (§3.1) ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (640.9e-6, "6409-07"),  # UM2269 example
        (1.958e-6, "1958-09"),  # UM2269 example
        (80e-6, "8000-08"),  # UM2269 example (energy)
        (2.3e-9, "0023-10"),  # UM2269 Table 49: leading zeros with exponent -10
        (0.8e-9, "0008-10"),  # UM2269 Table 49
        (5e-8, "0500-10"),
        (1e-10, "0001-10"),
        (1e-11, "0000-10"),
        (2.4999999999e-10, "0002-10"),  # 0.24999999999 nA: rounds down to 0002
        (9999.6e-6, "1000-05"),  # rounds up to 10000 -> one more digit of exponent
        (12.34, "1234-02"),
        (1234.0, "1234-00"),
        (12340.0, "1234+01"),
        (1e102, "1000+99"),
        (1e103, "9999+99"),
    ],
)
def test_ascii_sample_is_four_digits_and_a_signed_exponent(value: float, text: str) -> None:
    """DDDD-EE with 4 significant digits; tiny values keep exponent -10, huge ones saturate at 9999+99."""
    assert ascii_sample(value) == text


@pytest.mark.parametrize("value", [0.0, -1.0, math.inf, math.nan])
def test_ascii_sample_of_nothing_is_zero(value: float) -> None:
    """Zero, negative and non-finite values are sent as 0000-10."""
    assert ascii_sample(value) == "0000-10"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("6409-07", 640.9e-6),
        ("1958-09", 1.958e-6),
        ("0023-10", 2.3e-9),
        ("1234+01", 12340.0),
        ("1234-00", 1234.0),
        ("1234+00", 1234.0),
        ("9999+99", 9999e99),
        ("6409-071958-09", 640.9e-6),  # merged lines: the first sample's 7 characters
        ("6409-07\r\n", 640.9e-6),
    ],
)
def test_ascii_value_reads_minus_and_plus_exponents(text: str, value: float) -> None:
    """mantissa x 10**(-EE) for `-`, x 10**(+EE) for `+` (a parser splitting on `-` only is wrong)."""
    assert ascii_value(text) == _approx(value)


# --- discovery -------------------------------------------------------------------------------------------------------
def _port(device: str, vid: int | None, pid: int | None, serial: str | None = None, desc: str | None = "") -> object:
    return SimpleNamespace(device=device, vid=vid, pid=pid, serial_number=serial, description=desc)


SHIELD = (0x0483, 0x5740)
STLINK = (0x0483, 0x374B)


def _bench() -> list[object]:
    return [
        _port("/dev/ttyACM2", *SHIELD, "SH2", "STM32 Virtual ComPort"),
        _port("/dev/ttyS0", None, None, None, "n/a"),
        _port("/dev/ttyACM1", *STLINK, "066DFF", "STM32 STLink"),
        SimpleNamespace(device="/dev/ttyAMA0"),  # a port object without USB attributes
        _port("/dev/ttyACM0", *SHIELD, "SH1", None),
        _port("/dev/ttyUSB0", 0x0403, 0x6001, "FT1", "FT232R"),
        _port("/dev/ttyACM9", 0x0483, None, None, ""),
    ]


def test_port_info_vid_pid_is_four_hex_digits_each() -> None:
    """vid_pid is upper-case, zero-padded VID:PID."""
    assert PortInfo("COM5", 0x483, 0x5740).vid_pid == "0483:5740"
    assert PortInfo("COM7", 0x0483, 0x374B).vid_pid == "0483:374B"
    assert PortInfo("COM7", 0x1, 0xABC).vid_pid == "0001:0ABC"


def test_find_powershield_lists_only_shields_sorted_by_device() -> None:
    """Only 0483:5740 ports, sorted by path, with serial number and description (None description -> '')."""
    assert find_powershield(_bench) == [
        PortInfo("/dev/ttyACM0", 0x0483, 0x5740, "SH1", ""),
        PortInfo("/dev/ttyACM2", 0x0483, 0x5740, "SH2", "STM32 Virtual ComPort"),
    ]


def test_find_nucleo_lists_only_the_stlink_port() -> None:
    """Only 0483:374B ports."""
    assert find_nucleo(_bench) == [PortInfo("/dev/ttyACM1", 0x0483, 0x374B, "066DFF", "STM32 STLink")]


def test_find_ports_takes_several_ids_and_ports_without_serial_attributes() -> None:
    """Any of the given VID:PIDs; a port object without serial_number/description gives None and ''."""
    bare = SimpleNamespace(device="COM3", vid=0x0403, pid=0x6001)
    ports = find_ports([SHIELD, (0x0403, 0x6001)], lambda: [*_bench(), bare])
    assert ports == [
        PortInfo("/dev/ttyACM0", 0x0483, 0x5740, "SH1", ""),
        PortInfo("/dev/ttyACM2", 0x0483, 0x5740, "SH2", "STM32 Virtual ComPort"),
        PortInfo("/dev/ttyUSB0", 0x0403, 0x6001, "FT1", "FT232R"),
        PortInfo("COM3", 0x0403, 0x6001, None, ""),
    ]
    assert find_ports([], _bench) == []


def test_find_functions_default_to_pyserial_comports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a lister, find_powershield / find_nucleo / find_ports enumerate via serial.tools.list_ports."""
    monkeypatch.setattr(discovery, "list_ports", SimpleNamespace(comports=_bench))
    assert [p.device for p in find_powershield()] == ["/dev/ttyACM0", "/dev/ttyACM2"]
    assert [p.device for p in find_nucleo()] == ["/dev/ttyACM1"]
    assert [p.device for p in find_ports([(0x0403, 0x6001)])] == ["/dev/ttyUSB0"]


class Lister:
    """Returns one port list per call (the last one repeats) and counts calls."""

    def __init__(self, *snapshots: list[object]) -> None:
        self.snapshots = list(snapshots)
        self.calls = 0

    def __call__(self) -> list[object]:
        self.calls += 1
        return self.snapshots[min(self.calls, len(self.snapshots)) - 1]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SleepClock:
    c = SleepClock()
    monkeypatch.setattr(discovery, "time", c)
    return c


def test_wait_for_port_returns_a_present_port_at_once(clock: SleepClock) -> None:
    """A matching port already enumerated is returned after one poll, without sleeping."""
    lister = Lister(_bench())
    got = wait_for_port([SHIELD], 5.0, lister=lister)
    assert got == PortInfo("/dev/ttyACM0", 0x0483, 0x5740, "SH1", "")
    assert (lister.calls, clock.sleeps) == (1, [])


def test_wait_for_port_gives_up_after_the_timeout_polling_every_quarter_second(clock: SleepClock) -> None:
    """With nothing enumerated it polls at t=0, .25, .5, .75, 1.0 s and returns None at the 1 s deadline."""
    lister = Lister([])
    assert wait_for_port([SHIELD], 1.0, lister=lister) is None
    assert lister.calls == 5
    assert clock.sleeps == [0.25, 0.25, 0.25, 0.25]


def test_wait_for_port_with_negative_timeout_polls_once(clock: SleepClock) -> None:
    """A negative timeout counts as 0: one poll, no sleep."""
    lister = Lister([])
    assert wait_for_port([SHIELD], -5.0, poll_s=0.1, lister=lister) is None
    assert (lister.calls, clock.sleeps) == (1, [])


def test_wait_for_port_waits_for_the_port_to_appear(clock: SleepClock) -> None:
    """A port enumerated on the second poll is returned; the poll interval is honoured."""
    lister = Lister([], [_bench()[2]], _bench())
    got = wait_for_port(iter([STLINK]), 10.0, poll_s=0.5, lister=lister)
    assert got == PortInfo("/dev/ttyACM1", 0x0483, 0x374B, "066DFF", "STM32 STLink")
    assert (lister.calls, clock.sleeps) == (2, [0.5])


def test_wait_for_port_matches_the_serial_number(clock: SleepClock) -> None:
    """With a serial number only that board counts, even when another shield sorts first."""
    lister = Lister(_bench())
    got = wait_for_port([SHIELD], 1.0, serial_number="SH2", lister=lister)
    assert got == PortInfo("/dev/ttyACM2", 0x0483, 0x5740, "SH2", "STM32 Virtual ComPort")
    assert lister.calls == 1


def test_wait_for_port_times_out_when_the_serial_number_never_shows(clock: SleepClock) -> None:
    """Other shields do not count when a serial number is asked for."""
    lister = Lister(_bench())
    assert wait_for_port([SHIELD], 0.5, serial_number="SH3", poll_s=0.25, lister=lister) is None
    assert lister.calls == 3


def test_wait_for_port_after_reset_waits_for_the_old_path_to_go(clock: SleepClock) -> None:
    """With gone_first the old enumeration is not returned: the port counts only once that path vanished."""
    old = _port("/dev/ttyACM0", *SHIELD, "SH1")
    new = _port("/dev/ttyACM1", *SHIELD, "SH1")
    lister = Lister([old], [old, new], [], [old])
    got = wait_for_port([SHIELD], 10.0, serial_number="SH1", gone_first="/dev/ttyACM0", poll_s=0.1, lister=lister)
    assert got == PortInfo("/dev/ttyACM0", 0x0483, 0x5740, "SH1", "")
    assert lister.calls == 4


def test_wait_for_port_returns_the_new_path_once_the_old_one_is_gone(clock: SleepClock) -> None:
    """The re-enumerated port under a new path is returned in the same poll that shows the old path gone."""
    old = _port("/dev/ttyACM0", *SHIELD, "SH1")
    new = _port("/dev/ttyACM1", *SHIELD, "SH1")
    lister = Lister([old], [new])
    got = wait_for_port([SHIELD], 10.0, gone_first="/dev/ttyACM0", poll_s=0.1, lister=lister)
    assert got == PortInfo("/dev/ttyACM1", 0x0483, 0x5740, "SH1", "")
    assert lister.calls == 2


def test_wait_for_port_gone_first_times_out_if_the_old_path_stays(clock: SleepClock) -> None:
    """If the old path never disappears nothing is returned, even though a matching port is listed."""
    old = _port("/dev/ttyACM0", *SHIELD, "SH1")
    lister = Lister([old])
    assert wait_for_port([SHIELD], 0.3, gone_first="/dev/ttyACM0", poll_s=0.1, lister=lister) is None


def test_wait_for_port_defaults_to_pyserial_comports(clock: SleepClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a lister wait_for_port enumerates via serial.tools.list_ports."""
    monkeypatch.setattr(discovery, "list_ports", SimpleNamespace(comports=_bench))
    assert wait_for_port([STLINK], 0.0) == PortInfo("/dev/ttyACM1", 0x0483, 0x374B, "066DFF", "STM32 STLink")
