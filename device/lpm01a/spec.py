"""X-NUCLEO-LPM01A shell protocol facts shared by the host driver and the emulator.

Source: ../shared/reference/lpm01a-protocol.md (section numbers below refer to it).  Everything here is
pure data and pure functions: the numeric argument syntax (§2.2), the command table with ranges
(§2.4), the sampling rates and throughput limits (§4) and the sample value codecs (§3.1, §3.2).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

USB_VID = 0x0483
USB_PID = 0x5740
BAUDRATE = 3_686_400
PROMPT = "PowerShield > "
PROMPT_B = PROMPT.encode()

#: All sampling rates in Hz, with the spelling the board's help text uses (§2.4, §4).
FREQ_CHOICES: dict[int, str] = {
    100_000: "100k",
    50_000: "50k",
    20_000: "20k",
    10_000: "10k",
    5_000: "5k",
    2_000: "2k",
    1_000: "1k",
    500: "500",
    200: "200",
    100: "100",
    50: "50",
    20: "20",
    10: "10",
    5: "5",
    2: "2",
    1: "1",
}
FREQS_HZ = tuple(sorted(FREQ_CHOICES))

VOLT_MIN, VOLT_MAX = 1.8, 3.3
ACQTIME_MIN, ACQTIME_MAX = 100e-6, 100.0  # FW-help range (union with UM2269's 10 s); 0 = infinite
TRIGDELAY_MAX = 600.0  # union of 30 s (summary table) and 600 s (Table 20, MRK)
CURRTHRE_MAX = 50e-3  # union: 10 mA (UM2269) and 50 mA (FW-help, 'currthres')
TARGRST_MIN, TARGRST_MAX = 1e-3, 1.0  # union: 1 ms (UM2269) and 10 ms (FW-help)
LCD_MAX_CHARS = 16
OVERCURRENT_A = 59e-3  # dynamic-mode protection trips from ~59 mA (UM2243 §10)
DYN_CURRENT_MIN, DYN_CURRENT_MAX = 100e-9, 50e-3
ENERGY_MAX_HZ = 10_000  # 'output energy' up to 10 kHz (FW-help; works at 1 kHz on FW 1.0.7)
TIMESTAMP_EVERY = 1000  # samples between timestamps

#: ascii_dec duration limits from UM2269 Table 2: rate -> max acquisition seconds (None = unlimited).
ASCII_MAX_DURATION_S: dict[int, float | None] = {
    **{f: None for f in FREQS_HZ if f <= 5_000},
    10_000: 1.0,
    20_000: 0.5,
}

#: Commands accepted while an acquisition runs (§2.3); everything else gets `error`.
ALLOWED_WHILE_ACQUIRING = frozenset({"stop", "pwr", "targrst", "volt", "temp", "status", "psrst"})
#: Commands accepted in standalone mode (before `htc`).
ALLOWED_STANDALONE = frozenset({"help", "powershield", "version", "status", "psrst", "htc", "echo"})


class ArgumentError(ValueError):
    """A command argument outside the protocol's syntax or range; the message names it."""


# --- numeric argument syntax (§2.2) ---------------------------------------------------------------
_SI = {"u": 1e-6, "m": 1e-3, "k": 1e3, "": 1.0}
_NUM_RE = re.compile(r"^\s*(\d+)\s*(?:([umk])|([-+])(\d{1,2}))?\s*$")


def parse_number(text: str) -> float:
    """Parse the LPM01A number syntax: ``3``, ``3300m``, ``3300 m``, ``100u``, ``1k``, ``2-3``, ``1+3``.

    Plain digits are only legal for values >= 1 (``0`` is accepted: it means "infinite"/"off" where the
    command allows it).  Raises :class:`ArgumentError` on anything else (e.g. ``1s``, ``0.5``, ``-1``).
    """
    m = _NUM_RE.match(text)
    if not m:
        raise ArgumentError(f"{text!r} is not a number in LPM01A syntax (digits, optional u/m/k or -xx/+xx)")
    digits, si, sign, exp = m.groups()
    value = int(digits)
    if si:
        return value * _SI[si]
    if sign:
        return value * 10.0 ** (int(exp) if sign == "+" else -int(exp))
    return float(value)


def format_number(value: float) -> str:
    """Format a non-negative number in the shortest exact LPM01A spelling (``3300m``, ``1k``, ``100u``, ``25-4``)."""
    if value < 0 or not math.isfinite(value):
        raise ArgumentError(f"{value!r} cannot be sent: the LPM01A takes non-negative finite numbers only")
    if value == 0:
        return "0"
    for suffix, scale in (("", 1.0), ("k", 1e3), ("m", 1e-3), ("u", 1e-6)):
        n = value / scale
        if abs(n - round(n)) < 1e-9 * max(1.0, abs(n)) and round(n) >= 1 and round(n) < 10**9:
            return f"{int(round(n))}{suffix}"
    # fall back to mantissa + power of ten, e.g. 2.5e-7 -> 25-8
    for exp in range(0, 100):
        n = value * 10**exp
        if abs(n - round(n)) < 1e-6 * n:
            return f"{int(round(n))}-{exp:02d}" if exp else f"{int(round(n))}"
    raise ArgumentError(f"{value!r} has no exact LPM01A spelling")


def parse_freq(text: str) -> int:
    value = parse_number(text)
    hz = int(round(value))
    if abs(value - hz) > 1e-9 or hz not in FREQ_CHOICES:
        raise ArgumentError(
            f"freq {text!r}: must be one of {', '.join(FREQ_CHOICES[f] for f in sorted(FREQ_CHOICES, reverse=True))} Hz"
        )
    return hz


def format_freq(hz: int) -> str:
    if hz not in FREQ_CHOICES:
        raise ArgumentError(
            f"freq {hz!r} Hz: must be one of {', '.join(FREQ_CHOICES[f] for f in sorted(FREQ_CHOICES, reverse=True))}"
        )
    return FREQ_CHOICES[hz]


def parse_freq_user(text: str | int | float) -> int:
    """User-facing rate parser for CLIs and GUIs: ``100k``, ``100000``, ``1k``, ``100 kHz``."""
    s = str(text).strip().lower().replace("hz", "").replace(" ", "")
    return parse_freq(s)


@dataclass(frozen=True)
class RangeSpec:
    """A numeric argument's allowed range; ``zero_ok`` admits 0 (infinite / disable)."""

    name: str
    lo: float
    hi: float
    unit: str
    zero_ok: bool = False

    def check(self, value: float) -> float:
        if self.zero_ok and value == 0:
            return value
        if not (self.lo - 1e-12 <= value <= self.hi + 1e-12):
            extra = " (or 0)" if self.zero_ok else ""
            raise ArgumentError(
                f"{self.name} {value:g} {self.unit} is out of range: allowed {self.lo:g} .. {self.hi:g} {self.unit}{extra}"
            )
        return value


RANGES: dict[str, RangeSpec] = {
    "volt": RangeSpec("volt", VOLT_MIN, VOLT_MAX, "V"),
    "acqtime": RangeSpec("acqtime", ACQTIME_MIN, ACQTIME_MAX, "s", zero_ok=True),
    "trigdelay": RangeSpec("trigdelay", 0.0, TRIGDELAY_MAX, "s", zero_ok=True),
    "currthre": RangeSpec("currthre", 100e-9, CURRTHRE_MAX, "A", zero_ok=True),
    "targrst": RangeSpec("targrst", TARGRST_MIN, TARGRST_MAX, "s", zero_ok=True),
}

#: Keyword arguments per command (§2.4).
CHOICES: dict[str, tuple[str, ...]] = {
    "acqmode": ("dyn", "stat"),
    "funcmode": ("optim", "high"),
    "output": ("current", "energy"),
    "format": ("ascii_dec", "bin_hexa"),
    "trigsrc": ("sw", "d7"),
    "pwrend": ("on", "off"),
    "pwr": ("auto", "on", "off", "get"),
    "temp": ("degc", "degf"),
    "autotest": ("start", "status"),
}


def ascii_duration_limit(freq_hz: int) -> float | None:
    """Longest acquisition (s) the ``ascii_dec`` format sustains at ``freq_hz``; None = unlimited.

    Rates above 20 kHz are not specified for ASCII: the board refuses them (returns 0.0 here)."""
    if freq_hz > 20_000:
        return 0.0
    return ASCII_MAX_DURATION_S.get(freq_hz)


# --- sample codecs (§3.1, §3.2) -------------------------------------------------------------------
def bin_value(word: int) -> float:
    """Decode one bin_hexa sample word (16-bit big-endian ``EEEE MMMM MMMM MMMM``): M / 16**E."""
    e = (word >> 12) & 0xF
    if e == 0xF:
        raise ArgumentError(f"0x{word:04X} is a metadata marker, not a sample")
    return (word & 0x0FFF) / 16.0**e


def bin_word(value: float) -> int:
    """Encode a non-negative current/energy as a bin_hexa word: the largest E <= 14 with round(v*16^E) <= 4095."""
    if value <= 0 or not math.isfinite(value):
        return 0
    # largest E with value*16^E <= 4095.5
    e = int(math.floor(math.log(4095.5 / value, 16)))
    e = max(0, min(14, e))
    m = int(round(value * 16.0**e))
    while m > 4095 and e > 0:
        e -= 1
        m = int(round(value * 16.0**e))
    return (e << 12) | min(m, 4095)


def ascii_sample(value: float) -> str:
    """Encode a value as the 7-character ASCII sample ``DDDD-EE`` (4 significant digits)."""
    if value <= 0 or not math.isfinite(value):
        return "0000-10"
    exp = 3 - int(math.floor(math.log10(value)))
    mant = int(round(value * 10.0**exp))
    if mant >= 10000:
        exp -= 1
        mant = int(round(value * 10.0**exp))
    if exp > 10:  # very small currents: leading zeros with exponent -10 (UM2269 Table 49)
        exp = 10
        mant = int(round(value * 1e10))
    if exp < -99:
        exp, mant = -99, 9999
    sign = "-" if exp >= 0 else "+"
    return f"{mant:04d}{sign}{abs(exp):02d}"


def ascii_value(text: str) -> float:
    """Decode ``DDDD-EE`` / ``DDDD+EE``."""
    mant = int(text[:4])
    exp = int(text[5:7])
    return mant * 10.0 ** (-exp if text[4] == "-" else exp)
