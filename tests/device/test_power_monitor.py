"""The power-monitor interface (device/monitor.py) and its first implementation, the LPM01A
(device/lpm01a/monitor.py), on the virtual bench's emulated shield; the registry that maps a device kind to it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from device import monitor as M
from device.lpm01a.driver import AcquisitionError, Disconnected, Overcurrent, PowerShieldTimeout
from device.lpm01a.monitor import LPM01AMonitor


@pytest.fixture(scope="module")
def shield_url():
    from device.bench import VirtualBench

    with VirtualBench(board=False, time_scale=1.0) as bench:
        yield bench.urls["powershield"]


def test_registry_maps_a_kind_to_its_monitor_and_names_what_is_known(monkeypatch):
    assert M.monitor_kinds() == ("powershield",) and M.is_monitor("powershield") and not M.is_monitor("board")
    assert M.monitor_class("powershield") is LPM01AMonitor
    assert M.LPM01A_KIND == LPM01AMonitor.kind == "powershield"  # the kind the app saved and the bench names
    with pytest.raises(KeyError, match=r"no power monitor of kind 'otii' \(known: powershield\)"):
        M.monitor_class("otii")
    # a registry line that does not name a PowerMonitor of its kind is refused, not used
    monkeypatch.setitem(M.REGISTRY, "bad", "device.lpm01a.monitor:LPM01AMonitor")
    with pytest.raises(TypeError, match="not a PowerMonitor of kind 'bad'"):
        M.monitor_class("bad")


def test_discovery_finds_every_registered_kind_by_usb_id():
    ports = [
        SimpleNamespace(device="/dev/ttyACM1", vid=0x0483, pid=0x5740, serial_number="PS1", description="x"),
        SimpleNamespace(device="/dev/ttyACM0", vid=0x0483, pid=0x374B, serial_number="NU1", description="x"),
        SimpleNamespace(device="/dev/ttyS0", vid=None, pid=None),
    ]
    found = M.find_monitors(lambda: ports)
    assert [(k, p.device, p.serial_number) for k, p in found] == [("powershield", "/dev/ttyACM1", "PS1")]


def test_settings_are_checked_before_anything_is_sent():
    assert LPM01AMonitor.parse_rate("100k") == 100_000
    with pytest.raises(M.MonitorSettingError, match="freq"):
        LPM01AMonitor.parse_rate("123")
    with pytest.raises(M.MonitorSettingError, match="no option colour"):
        LPM01AMonitor.check(1000, colour="red")
    with pytest.raises(M.MonitorSettingError, match="energy"):
        LPM01AMonitor.check(100_000, output="energy")


def test_faults_are_described_in_plain_words():
    d = LPM01AMonitor.describe
    assert "overcurrent" in d(Overcurrent("F5")) and isinstance(Overcurrent("x"), M.ProtectiveStop)
    assert d(Disconnected("gone")) == "USB link to the LPM01A lost (unplugged, or it reset itself)"
    assert d(PowerShieldTimeout("t")) == "the LPM01A stopped answering or sending data"
    assert d(AcquisitionError("voltage drop")) == "the LPM01A stopped the acquisition: voltage drop"
    # consumers catch the interface's errors
    assert issubclass(Disconnected, M.MonitorLinkError) and issubclass(PowerShieldTimeout, M.MonitorTimeout)


def test_lpm01a_acquisition_through_the_interface(shield_url):
    with M.open_monitor("powershield", shield_url) as mon:
        assert isinstance(mon, LPM01AMonitor)
        info = mon.prepare()
        assert info["firmware"] and info["board"]
        mon.ping()
        with pytest.raises(M.MonitorSettingError):
            mon.start()  # not configured yet
        mon.configure(1000, 3.0, events=True)
        assert mon.ps.settings["eventsrc"] == ("d7", "ris")  # the board's marker edges come in the stream
        assert mon.supply_voltage() == pytest.approx(3.0, abs=0.05)
        acq = mon.start(max_samples=500)
        sub = acq.subscribe(from_start=True)
        stats = M.RunningStats()
        blocks = list(sub)
        for b in blocks:
            stats.update(b)
        assert acq.wait(10.0) and acq.finished and acq.error is None
        assert stats.samples + stats.lost == 500 == acq.samples_total
        assert blocks[-1].final and blocks[0].first_index == 0
        assert np.isfinite(stats.mean) and stats.mean > 0
        assert set(acq.diagnostics()) >= {"buffer_max_pct", "corrupt_bytes", "excess"}
        mon.release()
    with pytest.raises(M.MonitorLinkError):
        M.open_monitor("powershield", "socket://127.0.0.1:9", timeout=0.5)
