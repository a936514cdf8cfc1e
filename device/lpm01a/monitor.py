"""The X-NUCLEO-LPM01A as a :class:`device.monitor.PowerMonitor` (the first implementation of the interface):
:class:`~device.lpm01a.driver.PowerShield` for the link and the settings, :class:`~device.lpm01a.capture.Capture`
for the acquisition (binary ``bin_hexa`` stream, D7 rising edges as ``event`` items)."""

from __future__ import annotations

from typing import Any, ClassVar

from device import discovery
from device.lpm01a import spec
from device.lpm01a.capture import Capture
from device.lpm01a.driver import BufferOverflow, Overcurrent, PowerShield, PowerShieldError, PowerShieldTimeout
from device.monitor import LPM01A_KIND, MonitorSettingError, PowerMonitor

__all__ = ["LPM01AMonitor"]

#: Options :meth:`LPM01AMonitor.configure` passes on to :meth:`PowerShield.configure` (the rest is refused).
_OPTIONS = frozenset({"fmt", "output", "acqmode", "funcmode", "trigsrc", "trigdelay", "pwrend"})


class LPM01AMonitor(PowerMonitor):
    """One open link to an X-NUCLEO-LPM01A (see :class:`device.monitor.PowerMonitor`).  ``ps`` is the driver,
    for LPM01A-only commands (``odlstudio power``)."""

    kind: ClassVar[str] = LPM01A_KIND
    name: ClassVar[str] = "X-NUCLEO-LPM01A"
    short_name: ClassVar[str] = "LPM01A"
    usb_ids: ClassVar[tuple[tuple[int, int], ...]] = discovery.LPM01A_IDS
    rates_hz: ClassVar[tuple[int, ...]] = (1_000, 10_000, 50_000, 100_000)
    default_rate_hz: ClassVar[int] = 100_000
    voltage_range: ClassVar[tuple[float, float]] = (spec.VOLT_MIN, spec.VOLT_MAX)

    def __init__(self, ps: PowerShield, url: str) -> None:
        self.ps = ps
        self.url = url
        self.rate_hz = 0
        self.fmt = "bin_hexa"
        self.voltage = 3.3
        self.acquisition: Capture | None = None

    @classmethod
    def open(cls, url: str, timeout: float = 2.0) -> LPM01AMonitor:
        return cls(PowerShield(url, timeout=timeout), url)

    @classmethod
    def parse_rate(cls, text: str | int | float) -> int:
        try:
            return spec.parse_freq_user(str(text))
        except spec.ArgumentError as exc:
            raise MonitorSettingError(str(exc)) from None

    @classmethod
    def check(cls, rate_hz: int, *, max_seconds: float = 0.0, **options: Any) -> None:
        unknown = set(options) - _OPTIONS
        if unknown:
            raise MonitorSettingError(f"the LPM01A has no option {', '.join(sorted(unknown))}")
        try:
            PowerShield.check_combination(
                int(rate_hz),
                options.get("fmt", "bin_hexa"),
                max_seconds,
                options.get("output", "current"),
                options.get("funcmode", "optim"),
            )
        except spec.ArgumentError as exc:
            raise MonitorSettingError(str(exc)) from None

    @classmethod
    def describe(cls, exc: BaseException) -> str:
        if isinstance(exc, Overcurrent):
            return (
                "overcurrent: the target drew more than the LPM01A allows (59 mA for 2 ms or a 75 mA peak), "
                "so it stopped measuring to protect it; check the target, then press Stream again"
            )
        if isinstance(exc, BufferOverflow):
            return (
                "the LPM01A's transmit buffer overflowed (its data were not read fast enough); "
                "restarting the stream, the lost time is marked"
            )
        if isinstance(exc, PowerShieldTimeout):
            return "the LPM01A stopped answering or sending data"
        return super().describe(exc)

    # -- one link -----------------------------------------------------------------------------------------
    def prepare(self) -> dict[str, Any]:
        ps = self.ps
        # after an unplug the shield may still be acquiring (its state survives the host): stop that stream
        # first, or 'htc' drowns in sample data
        ps.drain_stale_stream()
        try:
            ps.htc()
        except PowerShieldTimeout:
            if not ps.drain_stale_stream():
                raise
            ps.htc()
        return {"firmware": ps.version(), "board": ps.powershield()}

    def ping(self) -> None:
        self.ps.status()

    def configure(
        self, rate_hz: int, voltage: float = 3.3, *, events: bool = True, max_seconds: float = 0.0, **options: Any
    ) -> None:
        self.check(int(rate_hz), max_seconds=max_seconds, **options)
        kw = dict(freq=int(rate_hz), acqtime=max_seconds, volt=voltage, **options)
        kw.setdefault("fmt", "bin_hexa")
        try:
            self.ps.configure(**kw, eventsrc=("d7", "ris") if events else None)
        except PowerShieldError as exc:
            if not events or isinstance(exc, MonitorSettingError):
                raise
            self.ps.configure(**kw)  # older firmware without eventsrc: acquisitions without D7 events
        self.rate_hz, self.fmt, self.voltage = int(rate_hz), str(kw["fmt"]), float(voltage)

    def supply_voltage(self) -> float:
        try:
            return float(self.ps.volt_get())
        except Exception:  # noqa: BLE001 - not every firmware answers; the set voltage is the fallback
            return self.voltage

    def start(self, *, max_samples: int | None = None, stall_timeout: float | None = None) -> Capture:
        if not self.rate_hz:
            raise MonitorSettingError("configure the LPM01A before starting an acquisition")
        cap = Capture(self.ps, self.rate_hz, self.fmt, max_samples=max_samples, stall_timeout=stall_timeout)
        self.acquisition = cap.start()
        return cap

    def release(self) -> None:
        try:
            self.ps.hrc()
        except PowerShieldError:
            pass

    def close(self) -> None:
        cap, self.acquisition = self.acquisition, None
        try:
            if cap is not None and not cap.finished:
                cap.stop(timeout=3.0)
        finally:
            self.ps.close()
