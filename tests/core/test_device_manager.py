"""The device manager asks a power monitor for its own facts (issue 14): the sampling rates offered and the
supply-voltage range come from the monitor's class in device.monitor.REGISTRY, not from LPM01A constants in
app/core, so a second kind of monitor brings its own."""

from __future__ import annotations

import time

import pytest

from app.core.devices import DeviceError
from device.lpm01a.monitor import LPM01AMonitor
from tests.boardkit import OtherMonitor, add_other_monitor, add_real_board


def test_without_a_monitor_the_rates_are_the_default_kinds(offline_ctx):
    assert offline_ctx.devices.power_rates_hz() == LPM01AMonitor.rates_hz == (1_000, 10_000, 50_000, 100_000)


def test_rates_and_voltage_range_are_the_monitors_own(offline_ctx, monkeypatch):
    dm = offline_ctx.devices
    key = add_other_monitor(dm, monkeypatch)
    assert dm.power_rates_hz() == dm.power_rates_hz(key) == OtherMonitor.rates_hz
    with pytest.raises(DeviceError, match=r"power sampling rate 1000 Hz is not one of \(20, 500\) \(OPM\)"):
        dm.configure_power(key, 1000)  # an LPM01A rate the other monitor does not have
    with pytest.raises(DeviceError, match=r"supply voltage 0\.5 V outside 1\.\.5 V \(OPM\)"):
        dm.configure_power(key, 20, 0.5)
    dm.configure_power(key, 20, 4.5)  # outside the LPM01A's 1.8..3.3 V, inside this monitor's range
    session = dm._session(key)
    deadline = time.monotonic() + 5
    while session.rate_hz != 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (session.rate_hz, session.voltage) == (20, 4.5)


def test_a_board_has_no_power_rates(offline_ctx):
    dm = offline_ctx.devices
    key = add_real_board(dm, "socket://127.0.0.1:9")
    with pytest.raises(DeviceError, match="is not a power monitor"):
        dm.power_rates_hz(key)
    with pytest.raises(DeviceError, match="is not a power monitor"):
        dm.configure_power(key, 1000)
