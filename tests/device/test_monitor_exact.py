"""Exact checks of the power-monitor interface and registry (device/monitor.py) and the LPM01A monitor (device/lpm01a/monitor.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import device.lpm01a.monitor as lpm_mod
from device import discovery
from device import monitor as M
from device.discovery import PortInfo
from device.lpm01a.driver import (
    AcquisitionError,
    ArgumentError,
    BufferOverflow,
    CommandRejected,
    Disconnected,
    Overcurrent,
    PowerShieldTimeout,
)
from device.lpm01a.monitor import LPM01AMonitor


# --- helpers --------------------------------------------------------------------------------------------
class MiniMonitor(M.PowerMonitor):
    """The smallest PowerMonitor: only the abstract methods, so the base class's defaults are what runs."""

    kind = "mini"
    name = "Mini Meter"
    short_name = "MINI"
    usb_ids = ((0x1234, 0x0001), (0x1234, 0x0002))
    rates_hz = (10, 500)
    default_rate_hz = 500
    voltage_range = (1.0, 5.0)
    opened: list[tuple[str, float]] = []

    def __init__(self, url: str = "mini://0") -> None:
        self.url = url
        self.closed = 0

    @classmethod
    def open(cls, url: str, timeout: float = 2.0) -> MiniMonitor:
        cls.opened.append((url, timeout))
        return cls(url)

    def prepare(self) -> dict[str, Any]:
        return {}

    def ping(self) -> None:
        pass

    def configure(
        self, rate_hz: int, voltage: float = 3.3, *, events: bool = True, max_seconds: float = 0.0, **options: Any
    ) -> None:
        pass

    def supply_voltage(self) -> float:
        return 3.3

    def start(self, *, max_samples: int | None = None, stall_timeout: float | None = None) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        self.closed += 1


class WrongKind(MiniMonitor):
    kind = "other"


NOT_A_MONITOR = 42  # a registry entry naming something that is not a class


class NotAMonitor:
    kind = "mini"


HERE = __name__


def port(device: str, vid: int | None, pid: int | None, serial: str | None = None, desc: str = "") -> Any:
    return SimpleNamespace(device=device, vid=vid, pid=pid, serial_number=serial, description=desc)


PORTS = [
    port("/dev/ttyACM2", 0x1234, 0x0002, "M2", "mini two"),
    port("/dev/ttyACM1", 0x0483, 0x5740, "PS1", "STLink Virtual COM Port"),
    port("/dev/ttyACM0", 0x1234, 0x0001, "M1", "mini one"),
    port("/dev/ttyACM3", 0x0483, 0x374B, "NU1", "ST-Link"),
    port("/dev/ttyS0", None, None),
]


class FakeShield:
    """Records every driver call the LPM01A monitor makes; ``fail`` maps a method name to the exceptions its
    next calls raise (one per call, in order), ``drains`` what drain_stale_stream returns, call by call."""

    def __init__(self, url: str = "", timeout: float = 0.0, **kw: Any) -> None:
        self.url, self.timeout, self.kw = url, timeout, kw
        self.calls: list[tuple[Any, ...]] = []
        self.fail: dict[str, list[BaseException]] = {}
        self.drains: list[bool] = []
        self.volts: Any = 3.25

    def _call(self, name: str, *args: Any, **kw: Any) -> None:
        self.calls.append((name, *args, kw) if kw else (name, *args))
        if self.fail.get(name):
            raise self.fail[name].pop(0)

    def drain_stale_stream(self) -> bool:
        self._call("drain_stale_stream")
        return self.drains.pop(0) if self.drains else False

    def htc(self) -> None:
        self._call("htc")

    def hrc(self) -> None:
        self._call("hrc")

    def version(self) -> str:
        self._call("version")
        return "1.0.7"

    def powershield(self) -> str:
        self._call("powershield")
        return "PowerShield 540554545"

    def status(self) -> str:
        self._call("status")
        return "ok"

    def configure(self, **kw: Any) -> None:
        self._call("configure", **kw)

    def volt_get(self) -> float:
        self._call("volt_get")
        return self.volts

    def close(self) -> None:
        self._call("close")


class FakeCapture:
    """Stands in for device.lpm01a.capture.Capture: records its arguments, start/stop calls."""

    made: list[FakeCapture] = []

    def __init__(self, driver: Any, rate_hz: float, fmt: str, **kw: Any) -> None:
        self.driver, self.rate_hz, self.fmt, self.kw = driver, rate_hz, fmt, kw
        self.started = 0
        self.stops: list[Any] = []
        self.finished = False
        self.stop_error: BaseException | None = None
        FakeCapture.made.append(self)

    def start(self) -> FakeCapture:
        self.started += 1
        return self

    def stop(self, timeout: float | None = None) -> None:
        self.stops.append(timeout)
        if self.stop_error is not None:
            raise self.stop_error


@pytest.fixture
def shield() -> FakeShield:
    return FakeShield("emu://x")


@pytest.fixture
def mon(shield: FakeShield) -> LPM01AMonitor:
    return LPM01AMonitor(shield, "emu://x")  # type: ignore[arg-type]


@pytest.fixture
def fake_capture(monkeypatch: pytest.MonkeyPatch) -> type[FakeCapture]:
    FakeCapture.made = []
    monkeypatch.setattr(lpm_mod, "Capture", FakeCapture)
    return FakeCapture


# --- errors ---------------------------------------------------------------------------------------------
def test_error_hierarchy_lets_consumers_catch_the_generic_kinds() -> None:
    assert issubclass(M.MonitorSettingError, M.MonitorError) and issubclass(M.MonitorSettingError, ValueError)
    assert issubclass(M.MonitorTimeout, M.MonitorError) and issubclass(M.MonitorTimeout, TimeoutError)
    assert issubclass(M.MonitorLinkError, M.MonitorError)
    assert issubclass(M.ProtectiveStop, M.MonitorAcquisitionError)
    assert issubclass(M.MonitorAcquisitionError, M.MonitorError)


# --- Block ----------------------------------------------------------------------------------------------
def test_block_next_index_is_one_past_its_last_sample() -> None:
    b = M.Block(first_index=7, values=np.array([1.0, 2.0, 3.0]), rate_hz=4.0)
    assert b.next_index == 10


def test_block_times_put_sample_k_at_k_over_rate() -> None:
    b = M.Block(first_index=2, values=np.array([1.0, 2.0, 3.0]), rate_hz=4.0)
    assert b.t0 == 0.75
    assert b.times.tolist() == [0.75, 1.0, 1.25]
    assert b.times.dtype == np.float64


def test_block_defaults_no_events_no_loss_not_final() -> None:
    b = M.Block(0, np.zeros(0), 1.0)
    assert (b.events, b.lost, b.lost_total, b.overrun, b.buffer_pct, b.final) == ([], 0, 0, 0, None, False)
    assert b.next_index == 0 and b.times.tolist() == []


# --- RunningStats ---------------------------------------------------------------------------------------
def test_running_stats_start_empty() -> None:
    s = M.RunningStats()
    assert (s.samples, s.lost, s.total, s.min, s.max, s.first_index, s.next_index) == (
        0,
        0,
        0.0,
        math.inf,
        -math.inf,
        None,
        0,
    )
    assert math.isnan(s.mean)


def test_running_stats_count_sum_min_max_mean_over_blocks() -> None:
    s = M.RunningStats()
    s.update(M.Block(5, np.array([2.0, 4.0]), 1000.0))
    s.update(M.Block(7, np.array([-1.0, 8.0, 3.0]), 1000.0))
    assert (s.samples, s.lost, s.total, s.min, s.max) == (5, 0, 16.0, -1.0, 8.0)
    assert s.mean == 3.2
    assert (s.first_index, s.next_index) == (5, 10)


def test_running_stats_skip_lost_nan_samples_and_count_them() -> None:
    s = M.RunningStats()
    s.update(M.Block(0, np.array([1.0, np.nan, 5.0, np.nan]), 1000.0, lost=2))
    assert (s.samples, s.lost, s.total, s.min, s.max, s.mean) == (2, 2, 6.0, 1.0, 5.0, 3.0)


def test_running_stats_add_up_the_loss_of_every_block() -> None:
    s = M.RunningStats()
    s.update(M.Block(0, np.array([np.nan, 2.0]), 1000.0, lost=1))
    s.update(M.Block(2, np.array([np.nan, np.nan, 4.0]), 1000.0, lost=2))
    assert (s.samples, s.lost, s.total) == (2, 3, 6.0)


def test_running_stats_all_lost_block_counts_only_the_loss() -> None:
    s = M.RunningStats()
    s.update(M.Block(3, np.array([np.nan, np.nan]), 1000.0, lost=2))
    assert (s.samples, s.lost, s.total, s.min, s.max) == (0, 2, 0.0, math.inf, -math.inf)
    assert (s.first_index, s.next_index) == (3, 5)
    assert math.isnan(s.mean)


def test_running_stats_ignore_an_empty_block() -> None:
    s = M.RunningStats()
    s.update(M.Block(9, np.zeros(0), 1000.0))
    assert (s.first_index, s.next_index, s.samples) == (None, 0, 0)
    s.update(M.Block(4, np.array([1.5]), 1000.0))
    s.update(M.Block(5, np.zeros(0), 1000.0))
    assert (s.first_index, s.next_index, s.samples, s.min, s.max) == (4, 5, 1, 1.5, 1.5)


# --- PowerMonitor defaults -----------------------------------------------------------------------------
def test_default_parse_rate_accepts_an_offered_rate() -> None:
    assert MiniMonitor.parse_rate(" 500 ") == 500
    assert MiniMonitor.parse_rate(10.0) == 10
    assert MiniMonitor.parse_rate("1e1") == 10


def test_default_parse_rate_refuses_a_non_number() -> None:
    with pytest.raises(M.MonitorSettingError) as e:
        MiniMonitor.parse_rate("fast")
    assert str(e.value) == "sampling rate 'fast' is not a number"
    assert e.value.__suppress_context__


def test_default_parse_rate_refuses_a_rate_not_offered() -> None:
    with pytest.raises(M.MonitorSettingError) as e:
        MiniMonitor.parse_rate("100")
    assert str(e.value) == "sampling rate '100': allowed 10, 500 Hz"


def test_default_check_refuses_a_rate_not_offered_and_accepts_the_others() -> None:
    MiniMonitor.check(10, max_seconds=3.0, colour="red")
    MiniMonitor.check(500)
    with pytest.raises(M.MonitorSettingError) as e:
        MiniMonitor.check(20)
    assert str(e.value) == "sampling rate 20 Hz: allowed 10, 500 Hz"


def test_default_describe_names_each_kind_of_fault() -> None:
    d = MiniMonitor.describe

    class SerialException(Exception):  # pyserial's, recognised by name (no import of serial needed)
        pass

    assert d(M.ProtectiveStop("overcurrent")) == "MINI stopped measuring to protect the target: overcurrent"
    assert d(M.MonitorLinkError("port gone")) == "USB link to the MINI lost (unplugged, or it reset itself)"
    assert d(OSError(5, "I/O error")) == "USB link to the MINI lost (unplugged, or it reset itself)"
    assert d(SerialException("read failed")) == "USB link to the MINI lost (unplugged, or it reset itself)"
    assert d(M.MonitorAcquisitionError("F3")) == "the MINI stopped the acquisition: F3"
    assert d(M.MonitorError("odd reply")) == "MINI error: odd reply"
    assert d(ValueError("x")) == "MINI error: x"


def test_default_describe_a_timeout_is_not_a_lost_link() -> None:
    """A MonitorTimeout is a TimeoutError, hence an OSError: it must still read as a timeout, not an unplug."""
    assert MiniMonitor.describe(M.MonitorTimeout("no data")) == "the MINI stopped answering or sending data"


def test_default_release_does_nothing_and_the_context_manager_closes() -> None:
    m = MiniMonitor()
    assert m.release() is None
    with m as entered:
        assert entered is m
        assert m.closed == 0
    assert m.closed == 1


def test_monitor_without_usb_ids_finds_nothing() -> None:
    class NoUsb(MiniMonitor):
        usb_ids = M.PowerMonitor.usb_ids

    assert NoUsb.usb_ids == ()
    assert NoUsb.find(lambda: PORTS) == []


def test_find_with_a_lister_returns_this_monitors_ports_by_device_name() -> None:
    assert MiniMonitor.find(lambda: PORTS) == [
        PortInfo("/dev/ttyACM0", 0x1234, 0x0001, "M1", "mini one"),
        PortInfo("/dev/ttyACM2", 0x1234, 0x0002, "M2", "mini two"),
    ]


def test_find_without_a_lister_asks_pyserial(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery.list_ports, "comports", lambda: PORTS)
    assert MiniMonitor.find() == [
        PortInfo("/dev/ttyACM0", 0x1234, 0x0001, "M1", "mini one"),
        PortInfo("/dev/ttyACM2", 0x1234, 0x0002, "M2", "mini two"),
    ]


# --- registry -------------------------------------------------------------------------------------------
@pytest.fixture
def mini_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    reg = {"powershield": "device.lpm01a.monitor:LPM01AMonitor", "mini": f"{HERE}:MiniMonitor"}
    monkeypatch.setattr(M, "REGISTRY", reg)
    return reg


def test_registry_lists_the_lpm01a_first() -> None:
    assert M.REGISTRY == {"powershield": "device.lpm01a.monitor:LPM01AMonitor"}
    assert M.monitor_kinds() == ("powershield",)


def test_monitor_kinds_keep_registry_order(mini_registry: dict[str, str]) -> None:
    assert M.monitor_kinds() == ("powershield", "mini")


def test_is_monitor_only_for_registered_kinds(mini_registry: dict[str, str]) -> None:
    assert M.is_monitor("powershield") is True
    assert M.is_monitor("mini") is True
    assert M.is_monitor("board") is False
    assert M.is_monitor("") is False


def test_monitor_class_imports_the_registered_class(mini_registry: dict[str, str]) -> None:
    assert M.monitor_class("powershield") is LPM01AMonitor
    assert M.monitor_class("mini") is MiniMonitor


def test_unknown_kind_is_a_key_error_naming_the_known_kinds(mini_registry: dict[str, str]) -> None:
    with pytest.raises(KeyError) as e:
        M.monitor_class("otii")
    assert e.value.args == ("no power monitor of kind 'otii' (known: powershield, mini)",)
    assert e.value.__suppress_context__


def test_unknown_kind_with_an_empty_registry_says_none_is_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(M, "REGISTRY", {})
    with pytest.raises(KeyError) as e:
        M.monitor_class("powershield")
    assert e.value.args == ("no power monitor of kind 'powershield' (known: none)",)


@pytest.mark.parametrize("entry", ["WrongKind", "NotAMonitor", "NOT_A_MONITOR"])
def test_registry_entry_that_is_not_a_monitor_of_its_kind_is_refused(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    monkeypatch.setattr(M, "REGISTRY", {"mini": f"{HERE}:{entry}"})
    with pytest.raises(TypeError) as e:
        M.monitor_class("mini")
    assert str(e.value) == f"REGISTRY['mini'] = '{HERE}:{entry}' is not a PowerMonitor of kind 'mini'"


def test_open_monitor_opens_the_kinds_class_with_url_and_timeout(mini_registry: dict[str, str]) -> None:
    MiniMonitor.opened = []
    m = M.open_monitor("mini", "mini://7", timeout=0.25)
    assert isinstance(m, MiniMonitor) and m.url == "mini://7"
    assert M.open_monitor("mini", "mini://8").url == "mini://8"
    assert MiniMonitor.opened == [("mini://7", 0.25), ("mini://8", 2.0)]


def test_open_monitor_of_the_lpm01a_opens_a_powershield(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lpm_mod, "PowerShield", FakeShield)
    m = M.open_monitor("powershield", "socket://h:1", timeout=0.5)
    assert isinstance(m, LPM01AMonitor) and m.url == "socket://h:1"
    assert (m.ps.url, m.ps.timeout, m.ps.kw) == ("socket://h:1", 0.5, {})  # type: ignore[attr-defined]


def test_find_monitors_lists_every_kind_in_registry_order(mini_registry: dict[str, str]) -> None:
    found = M.find_monitors(lambda: PORTS)
    assert [(k, p.device, p.serial_number) for k, p in found] == [
        ("powershield", "/dev/ttyACM1", "PS1"),
        ("mini", "/dev/ttyACM0", "M1"),
        ("mini", "/dev/ttyACM2", "M2"),
    ]


def test_find_monitors_without_a_lister_asks_pyserial(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery.list_ports, "comports", lambda: PORTS)
    assert M.find_monitors() == [
        ("powershield", PortInfo("/dev/ttyACM1", 0x0483, 0x5740, "PS1", "STLink Virtual COM Port"))
    ]


def test_find_monitors_with_nothing_plugged_in() -> None:
    assert M.find_monitors(lambda: []) == []


# --- LPM01AMonitor: class-level facts -------------------------------------------------------------------
def test_lpm01a_class_facts() -> None:
    c = LPM01AMonitor
    assert (c.kind, c.name, c.short_name) == ("powershield", "X-NUCLEO-LPM01A", "LPM01A")
    assert c.usb_ids == ((0x0483, 0x5740),)
    assert c.rates_hz == (1_000, 10_000, 50_000, 100_000) and c.default_rate_hz == 100_000
    assert c.voltage_range == (1.8, 3.3)


def test_lpm01a_fresh_monitor_state(shield: FakeShield) -> None:
    m = LPM01AMonitor(shield, "emu://x")  # type: ignore[arg-type]
    assert (m.ps, m.url, m.rate_hz, m.fmt, m.voltage, m.acquisition) == (shield, "emu://x", 0, "bin_hexa", 3.3, None)
    assert shield.calls == []


def test_lpm01a_open_uses_a_2_s_reply_timeout_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lpm_mod, "PowerShield", FakeShield)
    m = LPM01AMonitor.open("emu://y")
    assert (m.url, m.ps.url, m.ps.timeout) == ("emu://y", "emu://y", 2.0)  # type: ignore[attr-defined]


def test_lpm01a_parse_rate_reads_user_rates() -> None:
    assert LPM01AMonitor.parse_rate("100k") == 100_000
    assert LPM01AMonitor.parse_rate(" 50 kHz") == 50_000
    assert LPM01AMonitor.parse_rate(1000) == 1000


def test_lpm01a_parse_rate_refuses_with_the_shields_choices() -> None:
    with pytest.raises(M.MonitorSettingError) as e:
        LPM01AMonitor.parse_rate("123")
    assert (
        str(e.value)
        == "freq '123': must be one of 100k, 50k, 20k, 10k, 5k, 2k, 1k, 500, 200, 100, 50, 20, 10, 5, 2, 1 Hz"
    )
    assert e.value.__suppress_context__


def test_lpm01a_check_names_every_unknown_option_sorted() -> None:
    with pytest.raises(M.MonitorSettingError) as e:
        LPM01AMonitor.check(1000, zoom=2, colour="red", fmt="bin_hexa")
    assert str(e.value) == "the LPM01A has no option colour, zoom"


def test_lpm01a_check_accepts_every_driver_option() -> None:
    LPM01AMonitor.check(
        1000,
        max_seconds=2.0,
        fmt="ascii_dec",
        output="current",
        acqmode="dyn",
        funcmode="high",
        trigsrc="sw",
        trigdelay=0.0,
        pwrend=True,
    )


def test_lpm01a_check_high_funcmode_is_fine_with_the_default_current_output() -> None:
    LPM01AMonitor.check(100_000, funcmode="high")


def test_lpm01a_check_refuses_high_funcmode_with_energy_output() -> None:
    with pytest.raises(M.MonitorSettingError) as e:
        LPM01AMonitor.check(1000, output="energy", funcmode="high")
    assert str(e.value) == "funcmode high requires output current"
    assert e.value.__suppress_context__


def test_lpm01a_check_refuses_energy_output_above_10_khz_naming_the_rate_in_hz() -> None:
    with pytest.raises(M.MonitorSettingError) as e:
        LPM01AMonitor.check(100_000.0, output="energy")  # type: ignore[arg-type]
    assert str(e.value) == "freq 100000 Hz with output energy: energy output allows at most 10000 Hz"


def test_lpm01a_check_refuses_ascii_beyond_its_throughput_using_max_seconds() -> None:
    with pytest.raises(M.MonitorSettingError) as e:
        LPM01AMonitor.check(100_000, fmt="ascii_dec", max_seconds=5.0)
    assert str(e.value) == (
        "format ascii_dec at freq 100000 Hz: acqtime 5 s is beyond the ASCII throughput limit "
        "(not supported at all, UM2269 Table 2); use format bin_hexa"
    )


def test_lpm01a_check_default_duration_is_until_stopped() -> None:
    """Without max_seconds the acquisition is endless: ASCII at 10 kHz (1 s at most) is refused."""
    with pytest.raises(M.MonitorSettingError) as e:
        LPM01AMonitor.check(10_000, fmt="ascii_dec")
    assert str(e.value) == (
        "format ascii_dec at freq 10000 Hz: acqtime infinite is beyond the ASCII throughput limit "
        "(at most 1 s, UM2269 Table 2); use format bin_hexa"
    )
    LPM01AMonitor.check(10_000, fmt="ascii_dec", max_seconds=1.0)


def test_lpm01a_check_default_format_is_binary_any_duration() -> None:
    LPM01AMonitor.check(100_000)
    LPM01AMonitor.check(100_000, max_seconds=0.0)


# --- LPM01AMonitor: describe ----------------------------------------------------------------------------
def test_lpm01a_describes_overcurrent_with_what_to_do() -> None:
    assert LPM01AMonitor.describe(Overcurrent("F5")) == (
        "overcurrent: the target drew more than the LPM01A allows (59 mA for 2 ms or a 75 mA peak), "
        "so it stopped measuring to protect it; check the target, then press Stream again"
    )


def test_lpm01a_describes_a_buffer_overflow() -> None:
    assert LPM01AMonitor.describe(BufferOverflow("F4")) == (
        "the LPM01A's transmit buffer overflowed (its data were not read fast enough); "
        "restarting the stream, the lost time is marked"
    )


def test_lpm01a_describes_a_timeout_link_loss_and_other_faults() -> None:
    d = LPM01AMonitor.describe
    assert d(PowerShieldTimeout("no reply to 'status'")) == "the LPM01A stopped answering or sending data"
    assert d(Disconnected("gone")) == "USB link to the LPM01A lost (unplugged, or it reset itself)"
    assert d(AcquisitionError("F2")) == "the LPM01A stopped the acquisition: F2"
    assert d(CommandRejected("volt", "bad", "volt 9")) == "LPM01A error: PowerShield rejected 'volt 9': bad"


# --- LPM01AMonitor: one link ----------------------------------------------------------------------------
def test_lpm01a_prepare_drains_takes_control_and_reports_firmware_and_board(
    mon: LPM01AMonitor, shield: FakeShield
) -> None:
    assert mon.prepare() == {"firmware": "1.0.7", "board": "PowerShield 540554545"}
    assert shield.calls == [("drain_stale_stream",), ("htc",), ("version",), ("powershield",)]


def test_lpm01a_prepare_retries_htc_once_after_draining_a_late_stream(mon: LPM01AMonitor, shield: FakeShield) -> None:
    shield.drains = [False, True]
    shield.fail["htc"] = [PowerShieldTimeout("no reply to 'htc'")]
    assert mon.prepare() == {"firmware": "1.0.7", "board": "PowerShield 540554545"}
    assert shield.calls == [
        ("drain_stale_stream",),
        ("htc",),
        ("drain_stale_stream",),
        ("htc",),
        ("version",),
        ("powershield",),
    ]


def test_lpm01a_prepare_timeout_without_a_stream_is_raised(mon: LPM01AMonitor, shield: FakeShield) -> None:
    err = PowerShieldTimeout("no reply to 'htc'")
    shield.fail["htc"] = [err]
    with pytest.raises(PowerShieldTimeout) as e:
        mon.prepare()
    assert e.value is err
    assert shield.calls == [("drain_stale_stream",), ("htc",), ("drain_stale_stream",)]


def test_lpm01a_ping_asks_the_status(mon: LPM01AMonitor, shield: FakeShield) -> None:
    assert mon.ping() is None
    assert shield.calls == [("status",)]


def test_lpm01a_configure_sends_every_setting_with_d7_events(mon: LPM01AMonitor, shield: FakeShield) -> None:
    mon.configure(50_000.0, 1.8, max_seconds=2.5, trigsrc="d7")  # type: ignore[arg-type]
    assert shield.calls == [
        (
            "configure",
            {
                "freq": 50_000,
                "acqtime": 2.5,
                "volt": 1.8,
                "trigsrc": "d7",
                "fmt": "bin_hexa",
                "eventsrc": ("d7", "ris"),
            },
        )
    ]
    assert (mon.rate_hz, mon.fmt, mon.voltage) == (50_000, "bin_hexa", 1.8)
    assert type(mon.rate_hz) is int


def test_lpm01a_configure_defaults_3_3_v_until_stopped(mon: LPM01AMonitor, shield: FakeShield) -> None:
    mon.configure(1000)
    assert shield.calls == [
        ("configure", {"freq": 1000, "acqtime": 0.0, "volt": 3.3, "fmt": "bin_hexa", "eventsrc": ("d7", "ris")})
    ]
    assert (mon.rate_hz, mon.fmt, mon.voltage) == (1000, "bin_hexa", 3.3)


def test_lpm01a_configure_keeps_the_chosen_format_and_float_voltage(mon: LPM01AMonitor, shield: FakeShield) -> None:
    mon.configure(1000, 3, fmt="ascii_dec", max_seconds=1.0)  # type: ignore[arg-type]
    assert shield.calls == [
        ("configure", {"freq": 1000, "acqtime": 1.0, "volt": 3, "fmt": "ascii_dec", "eventsrc": ("d7", "ris")})
    ]
    assert (mon.fmt, mon.voltage) == ("ascii_dec", 3.0)
    assert type(mon.voltage) is float


def test_lpm01a_configure_without_events_sends_no_event_source(mon: LPM01AMonitor, shield: FakeShield) -> None:
    mon.configure(10_000, events=False)
    assert shield.calls == [
        ("configure", {"freq": 10_000, "acqtime": 0.0, "volt": 3.3, "fmt": "bin_hexa", "eventsrc": None})
    ]


def test_lpm01a_configure_falls_back_without_events_on_older_firmware(mon: LPM01AMonitor, shield: FakeShield) -> None:
    shield.fail["configure"] = [CommandRejected("eventsrc", "unknown command", "eventsrc d7 ris")]
    mon.configure(10_000)
    assert shield.calls == [
        ("configure", {"freq": 10_000, "acqtime": 0.0, "volt": 3.3, "fmt": "bin_hexa", "eventsrc": ("d7", "ris")}),
        ("configure", {"freq": 10_000, "acqtime": 0.0, "volt": 3.3, "fmt": "bin_hexa"}),
    ]
    assert mon.rate_hz == 10_000


def test_lpm01a_configure_error_without_events_is_raised(mon: LPM01AMonitor, shield: FakeShield) -> None:
    err = CommandRejected("freq", "bad", "freq 10k")
    shield.fail["configure"] = [err]
    with pytest.raises(CommandRejected) as e:
        mon.configure(10_000, events=False)
    assert e.value is err
    assert len(shield.calls) == 1 and mon.rate_hz == 0


def test_lpm01a_configure_setting_error_is_raised_not_retried(mon: LPM01AMonitor, shield: FakeShield) -> None:
    err = ArgumentError("volt 9 V is out of range: allowed 1.8 .. 3.3 V")
    shield.fail["configure"] = [err]
    with pytest.raises(ArgumentError) as e:
        mon.configure(10_000, 9.0)
    assert e.value is err
    assert len(shield.calls) == 1 and (mon.rate_hz, mon.voltage) == (0, 3.3)


def test_lpm01a_configure_checks_before_sending(mon: LPM01AMonitor, shield: FakeShield) -> None:
    with pytest.raises(M.MonitorSettingError) as e:
        mon.configure(1000, colour="red")
    assert str(e.value) == "the LPM01A has no option colour"
    with pytest.raises(M.MonitorSettingError) as e:
        mon.configure(100_000, fmt="ascii_dec", max_seconds=1.0)
    assert str(e.value) == (
        "format ascii_dec at freq 100000 Hz: acqtime 1 s is beyond the ASCII throughput limit "
        "(not supported at all, UM2269 Table 2); use format bin_hexa"
    )
    assert shield.calls == []


def test_lpm01a_supply_voltage_is_the_measured_one(mon: LPM01AMonitor, shield: FakeShield) -> None:
    shield.volts = "3.292"
    assert mon.supply_voltage() == 3.292


def test_lpm01a_supply_voltage_falls_back_to_the_set_one(mon: LPM01AMonitor, shield: FakeShield) -> None:
    shield.fail["volt_get"] = [CommandRejected("volt", "unknown", "volt get")]
    mon.configure(1000, 2.5)
    assert mon.supply_voltage() == 2.5


def test_lpm01a_start_before_configure_is_refused(mon: LPM01AMonitor, fake_capture: type[FakeCapture]) -> None:
    with pytest.raises(M.MonitorSettingError) as e:
        mon.start()
    assert str(e.value) == "configure the LPM01A before starting an acquisition"
    assert fake_capture.made == [] and mon.acquisition is None


def test_lpm01a_start_runs_a_capture_at_the_configured_rate_and_format(
    mon: LPM01AMonitor, shield: FakeShield, fake_capture: type[FakeCapture]
) -> None:
    mon.configure(50_000, fmt="bin_hexa")
    cap = mon.start(max_samples=1234, stall_timeout=0.75)
    assert fake_capture.made == [cap]
    assert (cap.driver, cap.rate_hz, cap.fmt, cap.kw) == (  # type: ignore[attr-defined]
        shield,
        50_000,
        "bin_hexa",
        {"max_samples": 1234, "stall_timeout": 0.75},
    )
    assert cap.started == 1 and mon.acquisition is cap  # type: ignore[attr-defined]


def test_lpm01a_start_defaults_no_limit_and_the_captures_stall_timeout(
    mon: LPM01AMonitor, fake_capture: type[FakeCapture]
) -> None:
    mon.configure(1000, fmt="ascii_dec", max_seconds=1.0)
    cap = mon.start()
    assert (cap.rate_hz, cap.fmt, cap.kw) == (1000, "ascii_dec", {"max_samples": None, "stall_timeout": None})  # type: ignore[attr-defined]


def test_lpm01a_release_gives_the_front_panel_back(mon: LPM01AMonitor, shield: FakeShield) -> None:
    mon.release()
    assert shield.calls == [("hrc",)]


def test_lpm01a_release_ignores_a_shield_error(mon: LPM01AMonitor, shield: FakeShield) -> None:
    shield.fail["hrc"] = [PowerShieldTimeout("no reply to 'hrc'")]
    assert mon.release() is None
    assert shield.calls == [("hrc",)]


def test_lpm01a_release_lets_other_errors_through(mon: LPM01AMonitor, shield: FakeShield) -> None:
    shield.fail["hrc"] = [KeyboardInterrupt()]
    with pytest.raises(KeyboardInterrupt):
        mon.release()


def test_lpm01a_close_without_an_acquisition_closes_the_link(mon: LPM01AMonitor, shield: FakeShield) -> None:
    mon.close()
    assert shield.calls == [("close",)]


def test_lpm01a_close_stops_a_running_acquisition_within_3_s(
    mon: LPM01AMonitor, shield: FakeShield, fake_capture: type[FakeCapture]
) -> None:
    mon.configure(1000)
    cap = mon.start()
    shield.calls.clear()
    mon.close()
    assert cap.stops == [3.0]  # type: ignore[attr-defined]
    assert shield.calls == [("close",)] and mon.acquisition is None


def test_lpm01a_close_leaves_a_finished_acquisition_alone(
    mon: LPM01AMonitor, shield: FakeShield, fake_capture: type[FakeCapture]
) -> None:
    mon.configure(1000)
    cap = mon.start()
    cap.finished = True  # type: ignore[misc]
    shield.calls.clear()
    mon.close()
    assert cap.stops == []  # type: ignore[attr-defined]
    assert shield.calls == [("close",)] and mon.acquisition is None


def test_lpm01a_close_closes_the_link_even_when_stopping_fails(
    mon: LPM01AMonitor, shield: FakeShield, fake_capture: type[FakeCapture]
) -> None:
    mon.configure(1000)
    cap = mon.start()
    err = PowerShieldTimeout("no reply to 'stop'")
    cap.stop_error = err  # type: ignore[attr-defined]
    shield.calls.clear()
    with pytest.raises(PowerShieldTimeout) as e:
        mon.close()
    assert e.value is err
    assert shield.calls == [("close",)] and mon.acquisition is None


def test_lpm01a_is_a_context_manager_that_closes(mon: LPM01AMonitor, shield: FakeShield) -> None:
    with mon as m:
        assert m is mon
    assert shield.calls == [("close",)]
