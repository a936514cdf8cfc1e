"""The context every panel gets (app/core/context.py; mutation target ``context``): settings with their defaults
and refusals, the cancel token, the current user and dataset, the publish/subscribe hub, and what
:meth:`AppContext.create` and :meth:`AppContext.close` open, repair and close, also when a step fails."""

from __future__ import annotations

import pytest

from app.core import context as C
from app.core.context import SETTING_DEFAULTS, TOPICS, AppContext, Cancelled, CancelToken, Settings
from app.core.store import Store, StoreError

KNOWN = ", ".join(SETTING_DEFAULTS)


@pytest.fixture
def ctx(tmp_path):
    c = AppContext.create(tmp_path / "data", bench=False, discover=False)
    yield c
    c.close()


# --- settings -------------------------------------------------------------------------------------------------------


def test_settings_have_their_defaults_until_set_and_keep_what_is_set(tmp_path):
    store = Store(tmp_path)
    try:
        s = Settings(store)
        assert [s[k] for k in SETTING_DEFAULTS] == list(SETTING_DEFAULTS.values())
        assert (s["user"], s["power.rate_hz"], s["export.csv_max_rows"]) == ("engineer", 100_000, 1_048_575)
        s["accel.odr_hz"] = 104.0
        assert s["accel.odr_hz"] == 104.0 and store.get_setting("accel.odr_hz") == 104.0
        assert s.get("accel.fs_g") == 4 and s.get("accel.fs_g", 99) == 4  # a known key: its default wins
        assert s.get("plugin.x") is None and s.get("plugin.x", 7) == 7
        s.set("plugin.x", [1, 2])
        assert s.get("plugin.x", 7) == [1, 2] and store.get_setting("plugin.x") == [1, 2]
    finally:
        store.close()


def test_an_unknown_setting_is_refused_naming_the_known_ones(tmp_path):
    store = Store(tmp_path)
    try:
        s = Settings(store)
        for op in (lambda: s["acel.odr_hz"], lambda: s.__setitem__("acel.odr_hz", 1)):
            with pytest.raises(KeyError) as e:
                op()
            assert e.value.args == (f"unknown setting 'acel.odr_hz' (known: {KNOWN})",)
        assert store.get_setting("acel.odr_hz", "unset") == "unset"  # nothing was written
    finally:
        store.close()


def test_the_defaults_and_topics_are_what_the_panels_use():
    assert SETTING_DEFAULTS == {
        "user": "engineer",
        "accel.odr_hz": 52.0,
        "accel.fs_g": 4,
        "accel.window_s": 10.0,
        "power.rate_hz": 100_000,
        "power.voltage": 3.3,
        "power.window_s": 2.0,
        "power.show": "current",
        "ui.fps": 60,
        "labelling.input_size": 20,
        "labelling.segment_s": 10.0,
        "export.csv_max_rows": 1_048_575,
    }
    assert set(TOPICS) == {"user_changed", "recording_added", "labels_changed", "status", "round_finished"}


# --- cancel ---------------------------------------------------------------------------------------------------------


def test_a_cancel_token_raises_only_once_cancelled():
    t = CancelToken()
    assert t.cancelled is False
    t.check()
    t.cancel()
    assert t.cancelled is True
    with pytest.raises(Cancelled):
        t.check()
    t.cancel()
    assert t.cancelled is True


# --- user and dataset -----------------------------------------------------------------------------------------------


def test_the_context_starts_with_the_saved_user_and_its_dataset(tmp_path):
    first = AppContext.create(tmp_path, bench=False, discover=False)
    try:
        assert first.data_dir == tmp_path and first.user.name == "engineer"
        assert first.settings["user"] == "engineer"
        first.set_user("ann")
    finally:
        first.close()
    again = AppContext.create(str(tmp_path), bench=False, discover=False)
    try:
        assert again.data_dir == tmp_path and again.user.name == "ann"
        assert again.dataset.id == again.store.user(again.user.id).dataset_id
        assert again.dataset.name == "default"
    finally:
        again.close()


def _next_start(tmp_path, **saved):
    """The device manager of the app's next start, after a first one saved ``saved`` (``a__b`` for ``a.b``); the
    first start's defaults are the settings' own."""
    first = AppContext.create(tmp_path, bench=False, discover=False)
    try:
        dm = first.devices
        assert (dm.power_voltage_default, dm.power_rate_default, dm.accel_default) == (3.3, 100_000, (52.0, 4))
        for k, v in saved.items():
            first.settings[k.replace("__", ".")] = v
    finally:
        first.close()
    again = AppContext.create(tmp_path, bench=False, discover=False)
    again.close()
    return again.devices


@pytest.mark.parametrize(
    ("saved", "default"), [(2.5, 2.5), ("1.8", 1.8), ("high", 3.3), (None, 3.3), ([2], 3.3), ("nan", 3.3), ("inf", 3.3)]
)
def test_the_context_gives_the_devices_the_supply_voltage_last_set(tmp_path, saved, default):
    """Power monitors found after start-up start at the remembered voltage (a broken value: the 3.3 V default)."""
    dm = _next_start(tmp_path, power__voltage=saved)
    assert dm.power_voltage_default == default and type(dm.power_voltage_default) is float


@pytest.mark.parametrize(
    ("saved", "default"), [(10_000, 10_000), (2000, 2000), ("10000", None), (True, None), (1e4, None)]
)
def test_the_context_gives_the_devices_the_power_rate_last_set(tmp_path, saved, default):
    """Power monitors found after start-up start at the remembered rate, where they offer it (a monitor that does
    not: its own default; a broken value: None, every monitor's own default)."""
    assert _next_start(tmp_path, power__rate_hz=saved).power_rate_default == default


@pytest.mark.parametrize(
    ("odr", "fs", "default"),
    [
        (104.0, 8, (104.0, 8)),
        ("208", "16", (208.0, 16)),
        (12.5, 2, (12.5, 2)),
        (100.0, 8, (52.0, 4)),  # not an ODR the sensor has
        (104.0, 3, (52.0, 4)),  # not a full scale it has
        ("fast", 8, (52.0, 4)),
        (104.0, None, (52.0, 4)),
    ],
)
def test_the_context_gives_the_devices_the_odr_and_full_scale_last_set(tmp_path, odr, fs, default):
    """Boards found after start-up start at the remembered ODR and full scale (a broken value: 52 Hz / ±4 g)."""
    got = _next_start(tmp_path, accel__odr_hz=odr, accel__fs_g=fs).accel_default
    assert got == default and type(got[0]) is float and type(got[1]) is int


def test_status_messages_are_kept_with_their_time_the_last_thousand(ctx, monkeypatch):
    told: list = []
    ctx.subscribe("status", lambda **kw: told.append((kw, ctx.messages[-1])))
    monkeypatch.setattr(C.time, "time", lambda: 1234.5)
    ctx.status("saved")
    assert told == [({"text": "saved", "timeout_ms": 5000}, (1234.5, "saved"))]  # kept before anyone is told
    for i in range(C.MESSAGES_KEPT + 4):
        ctx.status(f"m{i}", 15000)
    assert C.MESSAGES_KEPT == 1000 and len(ctx.messages) == 1000
    assert ctx.messages[0] == (1234.5, "m4") and ctx.messages[-1] == (1234.5, "m1003")


def test_set_user_and_set_dataset_save_and_tell_the_panels(ctx):
    heard = []
    ctx.subscribe("user_changed", lambda **kw: heard.append(kw))
    user = ctx.set_user("bob")
    assert (user, ctx.user, ctx.settings["user"]) == (ctx.store.ensure_user("bob"), user, "bob")
    assert heard == [{"user": user, "dataset": ctx.dataset}]
    other = ctx.store.create_dataset(user.id, "stairs", ("walking", "upstairs"))
    assert ctx.set_dataset(other.id) == other == ctx.dataset
    assert ctx.user.dataset_id == other.id  # the user re-read: its selection saved
    assert heard[1] == {"user": ctx.user, "dataset": other}
    assert len(heard) == 2


def test_a_user_without_a_dataset_is_said(ctx):
    ctx.store._exec("UPDATE users SET dataset_id=NULL WHERE id=?", (ctx.user.id,))  # noqa: SLF001 - a damaged db
    with pytest.raises(StoreError) as e:
        ctx.dataset  # noqa: B018
    assert str(e.value) == f"user 'engineer' has no dataset selected in {ctx.store.path}"


# --- publish / subscribe --------------------------------------------------------------------------------------------


def test_subscribers_hear_their_topic_until_they_unsubscribe(ctx):
    heard = []
    stop_a = ctx.subscribe("status", lambda **kw: heard.append(("a", kw)))
    ctx.subscribe("status", lambda **kw: heard.append(("b", kw)))
    ctx.subscribe("labels_changed", lambda **kw: heard.append(("c", kw)))
    ctx.status("saved")
    ctx.status("slow", timeout_ms=0)
    assert heard == [
        ("a", {"text": "saved", "timeout_ms": 5000}),
        ("b", {"text": "saved", "timeout_ms": 5000}),
        ("a", {"text": "slow", "timeout_ms": 0}),
        ("b", {"text": "slow", "timeout_ms": 0}),
    ]
    heard.clear()
    assert stop_a() is None
    assert stop_a() is None  # twice: nothing to remove, no error
    ctx.publish("status", text="x", timeout_ms=1)
    ctx.publish("nobody", x=1)  # a topic nobody listens to
    assert heard == [("b", {"text": "x", "timeout_ms": 1})]
    assert ctx.subscribe("never_published", print)() is None


def test_a_subscriber_may_unsubscribe_while_being_called(ctx):
    heard = []
    stops = {}

    def once(**kw):
        heard.append("once")
        stops["once"]()

    stops["once"] = ctx.subscribe("recording_added", once)
    ctx.subscribe("recording_added", lambda **kw: heard.append("always"))
    ctx.publish("recording_added", recording=None)
    ctx.publish("recording_added", recording=None)
    assert heard == ["once", "always", "always"]  # the second subscriber was not skipped


# --- create and close -----------------------------------------------------------------------------------------------


def test_create_repairs_a_crashed_session_and_discovers_only_when_asked(tmp_path, monkeypatch):
    store = Store(tmp_path)
    rid = store.add_round({"mode": "tl"}, store.ensure_user("engineer").dataset_id)
    store.update_round(rid, status="running")
    store.close()
    found, tuned = [], []
    monkeypatch.setattr(C.DeviceManager, "discover", lambda self: found.append(self) or [])
    import app.core.memory as memory

    monkeypatch.setattr(memory, "tune_allocator", lambda: tuned.append(True))
    ctx = AppContext.create(tmp_path, bench=False, bench_kwargs={"time_scale": 4.0}, discover=False, history_s=12.0)
    try:
        assert ctx.store.rounds()[0]["status"] == "aborted"  # the crashed session's round
        assert found == [] and tuned == [True]
        devices = ctx.devices
        assert (devices.history_s, devices._bench_mode, devices._bench_kwargs) == (12.0, False, {"time_scale": 4.0})  # noqa: SLF001
    finally:
        ctx.close()
    ctx = AppContext.create(tmp_path, bench=False)
    try:
        assert found == [ctx.devices]
    finally:
        ctx.close()


def test_create_without_a_folder_uses_the_users_data_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "default_data_dir", lambda: tmp_path / "home-data")
    ctx = AppContext.create(None, bench=False, discover=False)
    try:
        assert ctx.data_dir == tmp_path / "home-data" and ctx.store.path.parent == tmp_path / "home-data"
    finally:
        ctx.close()


def test_a_failed_create_closes_what_it_opened(tmp_path, monkeypatch):
    opened = []
    real_init = Store.__init__

    def init(self, *a, **k):
        real_init(self, *a, **k)
        opened.append(self)

    monkeypatch.setattr(Store, "__init__", init)

    def broken(*a, **k):
        raise RuntimeError("no devices")

    monkeypatch.setattr(C, "DeviceManager", broken)
    with pytest.raises(RuntimeError, match="^no devices$"):
        AppContext.create(tmp_path, bench=False, discover=False)
    assert opened[-1].closed

    monkeypatch.undo()
    monkeypatch.setattr(Store, "__init__", init)
    shut = []
    monkeypatch.setattr(C.DeviceManager, "shutdown", lambda self, timeout=3.0: shut.append(self))
    monkeypatch.setattr(AppContext, "__post_init__", lambda self: (_ for _ in ()).throw(StoreError("damaged")))
    with pytest.raises(StoreError, match="^damaged$"):
        AppContext.create(tmp_path, bench=False, discover=False)
    assert opened[-1].closed and len(shut) == 1


def test_close_stops_the_devices_then_closes_the_store_even_when_they_fail(ctx, monkeypatch):
    order = []
    monkeypatch.setattr(ctx.devices, "shutdown", lambda: (order.append("devices"), 1 / 0))
    real_close = ctx.store.close
    monkeypatch.setattr(ctx.store, "close", lambda: (order.append("store"), real_close()))
    with pytest.raises(ZeroDivisionError):
        ctx.close()
    assert order == ["devices", "store"] and ctx.store.closed
