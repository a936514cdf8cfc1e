"""The application context every panel receives (Qt-free).

:class:`AppContext` bundles the :class:`~app.core.store.Store` (SQLite), the
:class:`~app.core.devices.DeviceManager` (devices and their live streams), typed settings, the current
user profile and dataset, and a tiny publish/subscribe hub for cross-panel notifications
("dataset changed", "recording added", ...).  Panels must not talk to each other directly: they publish
and subscribe through the context.  The hub is *not* thread-safe: publish from the GUI thread only (worker
threads hand results back through the UI's task runner first).

:class:`CancelToken` and :class:`Progress` are the Qt-free half of long work: a worker function receives
them, checks ``token.cancelled`` and reports ``progress(fraction, text)``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from app.core.devices import ACCEL_FS_G, ACCEL_ODR_HZ, DeviceManager
from app.core.store import Dataset, Store, StoreError, User, default_data_dir

__all__ = ["AppContext", "CancelToken", "Cancelled", "MESSAGES_KEPT", "Progress", "Settings", "TOPICS"]

#: Topics published on :meth:`AppContext.publish` (kwargs in brackets).
TOPICS = {
    "user_changed": "current user or dataset changed [user, dataset]",
    "recording_added": "a recording was completed or imported [recording]",
    "labels_changed": "labels of a recording changed [recording_id]",
    "status": "a message for the status bar [text, timeout_ms]",
    "round_finished": "a training round finished (Training panel) [round_id]",
}

#: Status messages kept for View › Messages (a session's worth: a busy hour says a few hundred).
MESSAGES_KEPT = 1000


class Cancelled(Exception):
    """Raised by :meth:`CancelToken.check` inside a worker after the user pressed Cancel."""


class CancelToken:
    def __init__(self) -> None:
        self._ev = threading.Event()

    def cancel(self) -> None:
        self._ev.set()

    @property
    def cancelled(self) -> bool:
        return self._ev.is_set()

    def check(self) -> None:
        if self._ev.is_set():
            raise Cancelled()


class Progress(Protocol):
    def __call__(self, fraction: float, text: str = "") -> None: ...


#: Setting name -> default.  Values live in the ``settings`` table (JSON).
SETTING_DEFAULTS: dict[str, Any] = {
    "user": "engineer",
    "accel.odr_hz": 52.0,
    "accel.fs_g": 4,
    "accel.window_s": 10.0,
    "power.rate_hz": 100_000,
    "power.voltage": 3.3,
    "power.window_s": 2.0,
    "power.show": "current",  # 'current' | 'power'
    "ui.fps": 60,
    "labelling.input_size": 20,
    "labelling.segment_s": 10.0,
    "export.csv_max_rows": 1_048_575,
}


class Settings:
    """Typed access to persisted settings with defaults (``settings['accel.odr_hz']``)."""

    def __init__(self, store: Store):
        self._store = store

    def __getitem__(self, key: str) -> Any:
        if key not in SETTING_DEFAULTS:
            raise KeyError(f"unknown setting {key!r} (known: {', '.join(SETTING_DEFAULTS)})")
        return self._store.get_setting(key, SETTING_DEFAULTS[key])

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in SETTING_DEFAULTS:
            raise KeyError(f"unknown setting {key!r} (known: {', '.join(SETTING_DEFAULTS)})")
        self._store.set_setting(key, value)

    def get(self, key: str, default: Any = None) -> Any:
        """Free-form settings (panels of other engineers may use their own prefixed keys)."""
        return self._store.get_setting(key, SETTING_DEFAULTS.get(key, default))

    def set(self, key: str, value: Any) -> None:
        self._store.set_setting(key, value)


@dataclass
class AppContext:
    """What every panel receives.  Build with :meth:`create`; :meth:`close` at exit."""

    store: Store
    devices: DeviceManager
    data_dir: Path
    settings: Settings = field(init=False)
    user: User = field(init=False)
    _subs: dict[str, list[Callable[..., None]]] = field(default_factory=dict, init=False)
    #: (wall-clock time, text) of the last :data:`MESSAGES_KEPT` status messages of this session, oldest first.
    messages: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=MESSAGES_KEPT), init=False)

    def __post_init__(self) -> None:
        self.settings = Settings(self.store)
        self.user = self.store.ensure_user(str(self.settings["user"]))
        self._device_defaults()

    def _device_defaults(self) -> None:
        """What every device found from now on starts with: the settings last chosen (a saved value that is
        broken, or that the sensor or monitor does not have: the device's own default)."""
        try:  # the supply voltage last set (Power panel) for every power monitor found from now on
            volt = float(self.settings["power.voltage"])
        except (TypeError, ValueError):
            volt = math.nan
        if math.isfinite(volt):
            self.devices.power_voltage_default = volt
        rate = self.settings["power.rate_hz"]  # (a monitor that does not offer it starts at its own default)
        if isinstance(rate, int) and not isinstance(rate, bool):
            self.devices.power_rate_default = rate
        try:  # the ODR and full scale last set (Live panel) for every board found from now on (was: 52 Hz / ±4 g
            # until the Live panel was built, and for a board plugged in later, until its ▶ Stream)
            accel = float(self.settings["accel.odr_hz"]), int(self.settings["accel.fs_g"])
        except (TypeError, ValueError):
            accel = self.devices.accel_default
        if accel[0] in ACCEL_ODR_HZ and accel[1] in ACCEL_FS_G:  # (a hand-edited setting: the board's default)
            self.devices.accel_default = accel

    @classmethod
    def create(
        cls,
        data_dir: str | Path | None = None,
        *,
        bench: bool | None = None,
        bench_kwargs: dict | None = None,
        discover: bool = True,
        **device_kw: Any,
    ) -> "AppContext":
        """Open the database in ``data_dir`` (default: the per-user data directory), repair recordings of
        a crashed session, build the device manager and (``discover``) scan for devices / start the bench.
        Tunes the allocator for a long-running process first (:func:`app.core.memory.tune_allocator`)."""
        from app.core.memory import tune_allocator
        from app.core.recording import recover

        tune_allocator()  # before the device threads exist: arenas and thresholds apply from here on
        data_dir = Path(data_dir) if data_dir else default_data_dir()
        store = Store(data_dir)
        try:
            recover(store)  # recordings left 'recording' by a crashed session: count what reached the disk
            store.recover_rounds()  # rounds left 'running' by a crashed session: shown as 'aborted'
            devices = DeviceManager(bench=bench, bench_kwargs=bench_kwargs, **device_kw)
        except BaseException:
            store.close()
            raise
        try:
            ctx = cls(store, devices, data_dir)
        except BaseException:
            devices.shutdown()
            store.close()
            raise
        if discover:
            devices.discover()
        return ctx

    # --- user profile and dataset ------------------------------------------------------------------
    @property
    def dataset(self) -> Dataset:
        user = self.store.user(self.user.id)
        if user.dataset_id is None:  # only a damaged or hand-edited database has a user without one
            raise StoreError(f"user {user.name!r} has no dataset selected in {self.store.path}")
        return self.store.dataset(user.dataset_id)

    def set_user(self, name: str) -> User:
        self.user = self.store.ensure_user(name)
        self.settings["user"] = self.user.name
        self.publish("user_changed", user=self.user, dataset=self.dataset)
        return self.user

    def set_dataset(self, dataset_id: int) -> Dataset:
        self.store.select_dataset(self.user.id, dataset_id)
        self.user = self.store.user(self.user.id)
        self.publish("user_changed", user=self.user, dataset=self.dataset)
        return self.dataset

    # --- notifications -------------------------------------------------------------------------------
    def subscribe(self, topic: str, fn: Callable[..., None]) -> Callable[[], None]:
        """Call ``fn(**kwargs)`` on each :meth:`publish` of ``topic``; returns an unsubscribe function."""
        subs = self._subs.setdefault(topic, [])
        subs.append(fn)
        return lambda: subs.remove(fn) if fn in subs else None

    def publish(self, topic: str, **kwargs: Any) -> None:
        for fn in list(self._subs.get(topic, [])):
            fn(**kwargs)

    def status(self, text: str, timeout_ms: int = 5000) -> None:
        """Say ``text`` in the status bar for ``timeout_ms``; kept in :attr:`messages` (View › Messages), since the
        bar shows it for a few seconds and cuts what is wider than the window."""
        self.messages.append((time.time(), text))
        self.publish("status", text=text, timeout_ms=timeout_ms)

    def close(self) -> None:
        """Stop the devices, then close the store (which first stops any recorder still writing, so no
        background thread ever writes to a closed database)."""
        try:
            self.devices.shutdown()
        finally:
            self.store.close()
