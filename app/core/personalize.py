"""Personalization end to end through the real board protocol, with the LPM01A measuring every batch.

Workflow (:func:`personalize`):

1. **User data** (:func:`load_user_data`): WISDM text (v1.1 names or 2019 letter codes, a file or a
   folder; quirks reported by :mod:`app.core.datasets`), the app's own exports (WISDM-v1.1-style text
   from ``labels.export_wisdm_csv`` or the windows ``.npz`` of ``labels.export_windows_npz``), or a
   HAPT npz; resampled to the model's rate, activities mapped to the model's classes
   (:func:`app.core.classmap.class_map`, names compared canonically, the model's spelling kept), split
   chronologically per activity into local train (default 60 %, stride T/2) and test (stride T) with
   no window crossing the split.
2. **Board** (:class:`BoardSession`): a NUCLEO at ``board_url`` (real or virtual), or an in-process
   :class:`device.bench.VirtualBench`; the LPM01A at ``power_url`` (the bench's when the bench is ours)
   streams current in ``bin_hexa`` with D7 events enabled, for the whole session.
3. Per mode (``tl``, ``full``): one round through the app's round pipeline
   (:func:`app.core.board_round.run_board_round`, the one the Training panel uses): upload the general model
   and the training windows (int16, scaled), start a round (warm-up on the last layer, then the mode),
   collect the batch reports, download the weights (CRC-checked); then evaluate them on the host (engine)
   on the test windows.  ``none`` is the
   general model on the same test windows.  If the board refuses the round for lack of SRAM, the
   training set is reduced (class-stratified, deterministic) to what it says fits, and the report says so.
   By default the round is the robust round (``cfg.procedure``, :mod:`app.core.procedure`, issue 17): the
   last tenth of each class's training windows is uploaded after the others as validation windows, the board
   validates before the round and after every epoch (VAL_REPORT), keeps the best epoch and clips the
   gradient norm; the report recommends TL or Full only if its validation macro-F1 is higher than the
   general model's, else none.  A protocol-v1
   board gets the plain round, with a warning.
4. **Per-batch time/power/energy**: time from the board's batch ticks; energy = V · mean(I) · Δt over the
   LPM01A samples between the batch's two D7 rising edges (the firmware raises D7 at the round start and at
   every batch end), placed by :func:`app.core.energy.align_batches` exactly as in the app.  If no edge
   matches (marker off, events lost), the batches are aligned on host time instead and the report carries a
   warning.

Qt-free; TensorFlow only for loading ``.keras`` models and for the exports.
"""

from __future__ import annotations

import functools
import json
import math
import os
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from app.core import datasets as ds
from app.core.board_round import (
    RoundFailed,
    RoundObserver,
    RoundResult,
    RoundSpec,
    run_board_round,
)
from app.core.classmap import ClassMap, ClassMapError, class_map
from app.core.energy import BatchRow, EventLog, PowerTrace, TimelineFeed
from app.core.paths import asset_path
from app.core.procedure import PLAIN, ROBUST, Procedure, ProcedureError, choice_reason
from app.core.round_config import WARMUP_EPOCHS, data_then_model
from app.core.round_data import one_class_note
from app.core.safezip import DATA_LIMITS, ZipRefused, check_zip
from app.core.streams import SampleStream
from device.bench import BOARD_KINDS, BOARD_NAMES, VirtualBench
from device.monitor import LPM01A_KIND
from device.nucleo.fwimage import runs_odl_firmware

ASSET_MODELS = asset_path("models")
TRAIN_MODES = ("tl", "full")
ALL_MODES = ("none", "tl", "full")
VIRTUAL_TIME_SCALE = 500.0  # simulated seconds per wall second for the in-process bench


class PersonalizeError(ValueError):
    """A bad argument, file or board answer; the message names it."""


# ================================================================================================
# configuration
# ================================================================================================


@dataclass
class PersonalizeConfig:
    data: str
    model: str | None = None
    input_size: int | None = None
    user: str | None = None
    activities: Sequence[str] | str | None = None
    modes: Sequence[str] = ALL_MODES
    epochs: int = 5
    warmup_epochs: int = WARMUP_EPOCHS
    lr: float = 0.01
    batch: int = 32
    train_fraction: float = 0.6
    seed: int = 0
    board_url: str | None = None  # None: in-process virtual bench
    # the in-process bench's NUCLEO (BOARD_KINDS): "auto" runs the ODL firmware under QEMU when
    # qemu-system-arm and a built firmware are there (as the app's bench does), else the Python emulated board
    bench_board: str = "auto"
    power_url: str | None = None  # None: the bench's LPM01A when the bench is ours, else no power capture
    power: bool = True
    power_freq: int = 100  # LPM01A samples per (simulated) second
    time_scale: float = VIRTUAL_TIME_SCALE  # for the in-process bench; 1 for real hardware
    timeout: float = 3.0  # per protocol request
    sysclk_hz: int | None = None
    procedure: Procedure = ROBUST  # how TL/Full rounds train (app.core.procedure; PLAIN = the paper's recipe)

    def validate(self) -> None:
        try:
            self.procedure.validate()
        except ProcedureError as exc:
            raise PersonalizeError(str(exc)) from None
        bad = [m for m in self.modes if m not in ALL_MODES]
        if bad or not self.modes:
            raise PersonalizeError(f"--modes: {bad or 'nothing'} not allowed (choose from none, tl, full)")
        if self.input_size is not None and not 10 <= int(self.input_size) <= 1000:
            raise PersonalizeError(f"--input-size must be between 10 and 1000, got {self.input_size}")
        if int(self.epochs) < 0 or int(self.warmup_epochs) < 0:
            raise PersonalizeError(
                f"--epochs and --warmup-epochs must be >= 0, got {self.epochs}, {self.warmup_epochs}"
            )
        if any(m in TRAIN_MODES for m in self.modes) and int(self.epochs) + int(self.warmup_epochs) < 1:
            raise PersonalizeError("--epochs + --warmup-epochs must be >= 1 to train")
        if not 1 <= int(self.batch) <= 1024:
            raise PersonalizeError(f"--batch must be between 1 and 1024, got {self.batch}")
        if not (math.isfinite(float(self.lr)) and 0 < float(self.lr) <= 10):
            raise PersonalizeError(f"--lr must be in (0, 10], got {self.lr}")
        if not 0.0 < float(self.train_fraction) < 1.0:
            raise PersonalizeError(f"--train-fraction must be between 0 and 1 (exclusive), got {self.train_fraction}")
        if not self.time_scale > 0:
            raise PersonalizeError(f"--time-scale must be > 0, got {self.time_scale}")
        if self.bench_board not in BOARD_KINDS:
            raise PersonalizeError(f"--bench-board must be one of {', '.join(BOARD_KINDS)}, got {self.bench_board!r}")
        if self.board_url is not None and self.bench_board != "auto":
            raise PersonalizeError(
                f"--bench-board {self.bench_board} chooses the in-process virtual bench's board; "
                f"it does not apply with --board {self.board_url}"
            )
        if not 1 <= int(self.power_freq) <= 100_000:
            raise PersonalizeError(f"--power-freq must be 1..100000 Hz, got {self.power_freq}")


# ================================================================================================
# model and data
# ================================================================================================


def default_model_path(classes_key: str, T: int) -> Path:
    return ASSET_MODELS / f"paper_cnn_{classes_key}_T{int(T)}.keras"


def resolve_model(model: str | None, T: int | None):
    """Load ``model`` (or the shipped general model ``paper_cnn_wisdm5_T<T>``) as a LoadedModel."""
    from app.core.models import ModelError, load_model  # noqa: PLC0415

    if model is None:
        T = 20 if T is None else int(T)
        path = default_model_path("wisdm5", T)
        if not path.exists():
            have = sorted(p.stem for p in ASSET_MODELS.glob("paper_cnn_*.keras"))
            raise PersonalizeError(
                f"no shipped general model for T={T} ({path.name}); shipped: {', '.join(have) or 'none'} — "
                f"pass --model or create one with 'odlstudio pretrain'"
            )
    else:
        path = Path(model)
    try:
        lm = load_model(path)
    except ModelError as exc:
        raise PersonalizeError(f"--model: {exc}") from exc
    if T is not None and lm.input_size != int(T):
        raise PersonalizeError(f"--model {path} takes T={lm.input_size} but --input-size is {T}")
    if lm.meta.get("classes_unknown"):
        raise PersonalizeError(
            f"--model {path}: class names unknown (no sidecar JSON); cannot map the user's activities"
        )
    return lm


@dataclass
class UserData:
    user: str
    train: ds.WindowSet
    test: ds.WindowSet
    source: str
    skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    rate: float = 20.0
    class_map: dict = field(default_factory=dict)  # model class -> the activities it gathers
    left_out: dict = field(default_factory=dict)  # activity -> samples that no class takes

    def info(self) -> dict:
        return {
            "user": self.user,
            "source": self.source,
            "rate_hz": self.rate,
            "class_map": dict(self.class_map),
            "left_out": dict(self.left_out),
            "n_train": len(self.train),
            "n_test": len(self.test),
            "train_counts": self.train.counts(),
            "test_counts": self.test.counts(),
            "skipped_records": len(self.skipped),
            "skipped_examples": [str(s) for s in self.skipped[:5]],
            "notes": list(self.notes),
        }


def load_user_data(
    path: str | Path,
    classes: Sequence[str],
    T: int,
    rate: float = 20.0,
    activities: Sequence[str] | str | None = None,
    user: str | None = None,
    train_fraction: float = 0.6,
) -> UserData:
    """The user's local train/test windows for a model with ``classes`` and input size ``T``; activities
    are mapped to the classes by :func:`app.core.classmap.class_map` (``activities``: its specification,
    default: every class by canonical name), windows labelled in the model's spelling and order."""
    path = Path(path)
    if not path.exists():
        raise PersonalizeError(f"--data {path}: no such file or directory")
    cmap = _class_map(classes, activities)
    if path.is_file() and path.suffix.lower() == ".npz" and _is_window_npz(path):
        return _load_window_npz(path, cmap, T, train_fraction, user)
    try:
        rs = ds.load_dataset(path, activities=None, rate=rate, takes=f"{ds.DATA_FORMATS}, or {ds.WINDOWS_FORMAT}")
    except ds.DatasetError as exc:
        app = _load_app_text(path, rate) if path.is_file() else None
        if app is None:
            msg = str(exc)
            raise PersonalizeError(msg if msg.startswith("--data ") else f"--data: {msg}") from exc
        rs = app
    subjects = rs.subjects()
    if user is None:
        if len(subjects) > 1:
            raise PersonalizeError(
                f"--data {path} holds {len(subjects)} subjects ({', '.join(subjects[:20])}"
                f"{' ...' if len(subjects) > 20 else ''}): choose one with --user"
            )
        user = subjects[0]
    else:
        hits = [s for s in subjects if s == str(user) or s.split("/")[-1] == str(user)]
        if not hits:
            raise PersonalizeError(f"--user {user} is not in {path} (subjects: {', '.join(subjects)})")
        user = hits[0]
    rs = rs.for_subjects([user])
    try:
        mapped = cmap.apply(rs)
    except ClassMapError:
        raise PersonalizeError(
            f"--data {path}: user {user} has no data for any class of the model ({cmap.describe()}); "
            f"the user has: {', '.join(rs.activities())}"
        ) from None
    rs = mapped.recordings
    train, test = ds.personal_split(rs, T, train_fraction, cmap.classes)
    if len(train) == 0 or len(test) == 0:
        raise PersonalizeError(
            f"--data {path}: user {user} has too little data for T={T}: "
            f"{len(train)} training and {len(test)} test windows"
        )
    notes = list(rs.notes)
    if mapped.missing:
        notes.append(f"user {user} has no data for {', '.join(mapped.missing)}")
    return UserData(
        str(user), train, test, str(path), list(rs.skipped), notes, float(rate), cmap.to_dict(), mapped.left_out
    )


def _class_map(classes: Sequence[str], activities: Sequence[str] | str | None) -> ClassMap:
    try:
        return class_map(classes, activities)
    except ClassMapError as exc:
        raise PersonalizeError(f"--activities: {exc}" if activities is not None else f"--model: {exc}") from None


def _load_app_text(path: Path, rate: float) -> ds.RecordingSet | None:
    """The app's WISDM-style text export (``labels.export_wisdm_csv``) whose user ids are names, not
    integers (which the WISDM parser requires): read with the app's own importer, the sample rate taken
    from the timestamp column (ns).  None if the file is not such an export."""
    from app.core.labels import LabelError, import_wisdm_csv  # noqa: PLC0415
    from app.core.preprocess import resample_to  # noqa: PLC0415

    try:
        segs = import_wisdm_csv(path)
        ts = np.array(
            [
                int(line.split(",")[2])
                for line in path.read_text(encoding="utf-8", errors="replace").split(";")
                if line.count(",") == 5
            ],
            dtype=np.int64,
        )
    except (LabelError, OSError, ValueError, IndexError):
        return None
    steps = np.diff(ts)
    steps = steps[steps > 0]
    if not segs or not len(steps):
        return None
    native = 1e9 / float(np.median(steps))
    out = [
        ds.Segment(
            s.user,
            ds.canonical_activity(s.activity),
            resample_to(s.xyz, round(native, 3), rate),
            float(rate),
            str(path),
            0,
            s.activity,
            native,
            k,
            "app_export",
        )
        for k, s in enumerate(segs)
    ]
    return ds.RecordingSet(out, str(path), "m/s^2", [], [f"{path}: app export read at {native:.2f} Hz"])


def _is_window_npz(path: Path) -> bool:
    """The app's windows export, told from its zip directory (nothing loaded; a damaged, empty or renamed
    file is not one, and the data readers say what it is)."""
    return ds.sniff_file(path).kind == "windows"


def _seen_in_pretraining(meta: dict, user: str) -> str | None:
    """'training' / 'validation' if the general model's metadata lists ``user`` among the subjects it
    was pretrained (or early-stopped) on, else None."""
    uid = str(user).split("/")[-1]
    for key, what in (("train_subjects", "training"), ("val_subjects", "validation")):
        if uid in {str(s) for s in meta.get(key) or ()}:
            return what
    return None


_DAMAGED_WINDOWS = "a damaged windows .npz: its arrays cannot be read (truncated or corrupt data); export it again"


def _load_window_npz(
    path: Path, cmap: ClassMap | Sequence[str], T: int, train_fraction: float, user: str | None
) -> UserData:
    """The app's windows export: windows in recording order per class, their classes mapped by ``cmap``
    (or the default map of a model's classes); the first ``train_fraction`` of each class trains, the rest
    tests, dropping the windows that would overlap across the cut."""
    cmap = cmap if isinstance(cmap, ClassMap) else _class_map(cmap, None)
    classes = cmap.classes
    try:
        check_zip(path, DATA_LIMITS, "windows file")  # declared sizes first: never inflate a zip bomb
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("X", "y", "classes") if k not in z.files]
            if missing:
                raise PersonalizeError(
                    f"--data {path}: not a windows export, missing array(s) {', '.join(missing)} "
                    f"(has: {', '.join(z.files) or 'nothing'})"
                )
            X, y = np.asarray(z["X"], np.float32), np.asarray(z["y"], np.int64)
            src_classes = [str(c) for c in np.atleast_1d(z["classes"])]
            stride = int(z["stride"]) if "stride" in z.files else int(X.shape[1]) if X.ndim >= 2 else 0
            rates = np.atleast_1d(np.asarray(z["rate_hz"], np.float64)) if "rate_hz" in z.files else np.zeros(0)
    except PersonalizeError:
        raise
    except ZipRefused as exc:
        raise PersonalizeError(f"--data {exc}") from None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise PersonalizeError(
                f"--data {path}: an array of this windows file holds Python objects (a pickle), which are never loaded"
            ) from None
        raise PersonalizeError(f"--data {path}: {_DAMAGED_WINDOWS}") from None
    except (OSError, EOFError, TypeError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError, NotImplementedError):
        raise PersonalizeError(f"--data {path}: {_DAMAGED_WINDOWS}") from None
    except MemoryError:  # a damaged header declaring an absurd array size
        raise PersonalizeError(f"--data {path}: {_DAMAGED_WINDOWS}") from None
    if not np.isfinite(X).all():
        raise PersonalizeError(f"--data {path}: windows contain NaN or Inf values")
    if X.ndim != 3 or X.shape[2] != 3 or len(X) != len(y):
        raise PersonalizeError(f"--data {path}: windows must be (N, T, 3) with N labels, got X {X.shape}, y {y.shape}")
    big = np.flatnonzero((np.abs(X) > ds.MAX_ABS_ACCEL).any(axis=(1, 2)))
    if len(big):  # 1e30 trains a model of garbage: say which window, as the text readers say which line
        k = int(big[0])
        raise PersonalizeError(
            f"--data {path}: window {k} holds {float(np.abs(X[k]).max()):.3g} m/s², beyond "
            f"±{ds.MAX_ABS_ACCEL:g} m/s² (not an accelerometer reading; {len(big)} such windows)"
        )
    if X.shape[1] != int(T):
        raise PersonalizeError(
            f"--data {path}: windows have T={X.shape[1]} but the model takes T={T} "
            f"(export the windows again with size {T}, or export the recording as WISDM text)"
        )
    index: dict[str | None, int] = {c: i for i, c in enumerate(classes)}
    remap = np.array([index.get(cmap.class_of(c), -1) for c in src_classes], np.int64)
    if len(y) and (y.min() < 0 or y.max() >= len(src_classes)):
        raise PersonalizeError(f"--data {path}: label index outside 0..{len(src_classes) - 1}")
    yy = remap[y] if len(y) else y
    keep = yy >= 0
    gap = max(0, -(-int(T) // max(1, stride)) - 1)  # windows overlapping the cut
    tr_idx, te_idx = [], []
    for c in np.unique(yy[keep]):
        idx = np.flatnonzero(yy == c)
        cut = int(round(train_fraction * len(idx)))
        tr_idx += idx[:cut].tolist()
        te_idx += idx[cut + gap :].tolist()
    rate = float(np.median(rates)) if len(rates) else 20.0
    name = user or path.stem

    def ws(ix: list[int] | np.ndarray) -> ds.WindowSet:
        ix = np.array(sorted(ix), np.int64)
        return ds.WindowSet(X[ix], yy[ix], np.full(len(ix), name, object), tuple(classes), int(T), rate, stride)

    train, test = ws(tr_idx), ws(te_idx)
    if len(train) == 0 or len(test) == 0:
        raise PersonalizeError(f"--data {path}: not enough windows of the model's classes ({', '.join(classes)})")
    notes = (
        [f"{int(np.count_nonzero(~keep))} windows of classes the model does not have were left out"]
        if (~keep).any()
        else []
    )
    left_out = {src_classes[k]: int(np.count_nonzero(y == k)) for k in range(len(src_classes)) if remap[k] < 0}
    return UserData(
        name, train, test, str(path), [], notes, rate, cmap.to_dict(), {k: v for k, v in left_out.items() if v}
    )


# ================================================================================================
# power capture
# ================================================================================================


class PowerRecorder:
    """A power-monitor acquisition (:mod:`device.monitor`; the LPM01A unless ``kind`` says otherwise) for the
    whole session, put on a power timeline (samples in A and D7 edges)
    exactly as the app's device manager does (:class:`~app.core.energy.TimelineFeed`), so a round's energy
    is attributed by the same code (:meth:`trace`)."""

    #: Seconds of samples kept at full resolution (longer ago: the stream's pyramid).
    KEEP_S = 4 * 3600.0

    def __init__(self, url: str, freq: int = 100, timeout: float = 3.0, kind: str = LPM01A_KIND):
        from device.monitor import open_monitor  # noqa: PLC0415

        self.freq = int(freq)
        self.url = url
        self.monitor = open_monitor(kind, url, timeout=timeout)
        try:
            self.monitor.configure(self.freq, 3.3, events=True)
            self.volt = self.monitor.supply_voltage()
        except Exception:
            self.monitor.close()
            raise
        keep = min(self.KEEP_S, 8e6 / self.freq)
        self.stream = SampleStream("current", self.freq, 1, unit="A", recent_s=keep, history_s=self.KEEP_S)
        self.events = EventLog()
        self._feed = TimelineFeed(self.stream, lambda: 0.0, self.events.add)
        self.acquisition: Any = None
        self._thread = threading.Thread(target=self._pump, name="personalize-power", daemon=True)

    def start(self) -> "PowerRecorder":
        try:
            self.acquisition = self.monitor.start(stall_timeout=max(5.0, 20.0 / self.freq))
            self._sub = self.acquisition.subscribe(from_start=True)
        except Exception:
            self.monitor.close()
            raise
        self._thread.start()
        return self

    def _pump(self) -> None:
        while not self._sub.done:
            b = self._sub.get(0.2)
            if b is not None:
                self._feed.feed(b)

    def trace(self) -> PowerTrace:
        """The acquisition so far as a :class:`~app.core.energy.PowerTrace` (device sample 0 at t = 0)."""
        return PowerTrace(self.stream, self.events, self.volt)

    def close(self) -> None:
        try:
            if self.acquisition is not None and not self.acquisition.finished:
                self.acquisition.stop()
            if self._thread.is_alive():
                self._thread.join(timeout=3.0)
        finally:
            self.monitor.close()


# ================================================================================================
# board session
# ================================================================================================


class BoardSession:
    """NUCLEO client (+ optional LPM01A recorder), over a real/remote board or an in-process bench."""

    def __init__(self, cfg: PersonalizeConfig, log: Callable[[str], None] = lambda m: None):
        from device.nucleo.client import NucleoClient  # noqa: PLC0415

        self.cfg = cfg
        self.log = log
        self.bench = None
        self.power: PowerRecorder | None = None
        self.warnings: list[str] = []
        board_url, power_url = cfg.board_url, cfg.power_url
        power_kind = LPM01A_KIND  # what --power names: an X-NUCLEO-LPM01A
        self.time_scale = 1.0
        try:
            if board_url is None:
                try:
                    self.bench = VirtualBench(time_scale=cfg.time_scale, seed=cfg.seed, board_kind=cfg.bench_board)
                except RuntimeError as exc:  # --bench-board qemu without qemu-system-arm or a built firmware
                    raise PersonalizeError(f"--bench-board {cfg.bench_board}: {exc}") from None
                urls = self.bench.start()
                if urls["board"] is None:
                    raise PersonalizeError(
                        "the virtual bench has no NUCLEO emulator (device/nucleo/emulator.py missing)"
                    )
                board_url = urls["board"]
                if power_url is None:
                    power_url, power_kind = urls["power_monitor"], urls["power_monitor_kind"]
                self.time_scale = float(cfg.time_scale)
                kind = BOARD_NAMES.get(urls.get("board_kind") or "", "board")
                log(
                    f"virtual bench: {kind} {board_url}, {power_kind} {urls['power_monitor']}, "
                    f"time scale {cfg.time_scale:g}"
                )
                if self.bench.board_note:
                    log(f"note: {self.bench.board_note}")
            try:
                self.client = NucleoClient.open(board_url, timeout=cfg.timeout)
            except OSError as exc:
                raise PersonalizeError(f"--board {board_url}: {exc}") from exc
            self.hello = self.client.hello()
            self.info = self.client.info()
            if cfg.sysclk_hz:
                self.client.set_clock(int(cfg.sysclk_hz))
            self.client.set_marker(True)
            if cfg.power and power_url:
                try:
                    self.power = PowerRecorder(power_url, cfg.power_freq, cfg.timeout, kind=power_kind).start()
                except Exception as exc:  # noqa: BLE001 - the bench's shield: no power figures, the round still runs
                    if cfg.power_url is not None:  # the shield the user named: not a round without it, found late
                        raise OSError(
                            f"--power {power_url}: {exc} (give the LPM01A's port, or --no-power for times only)"
                        ) from exc
                    self.warnings.append(f"no power capture from {power_url}: {exc}")
            elif cfg.power:
                self.warnings.append("no LPM01A given (--power URL): time per batch only, no power/energy")
        except Exception:
            self.close()
            raise

    @property
    def tick_hz(self) -> int:
        return int(self.hello.tick_hz) or 1_000_000

    def close(self) -> None:
        client = getattr(self, "client", None)
        for part, close in ((self.power, "close"), (client, "close"), (self.bench, "stop")):
            try:
                if part is not None:
                    getattr(part, close)()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass

    def __enter__(self) -> "BoardSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _i16_scale(x: np.ndarray) -> float:
    peak = float(np.max(np.abs(x))) if x.size else 1.0
    return max(peak / 32000.0, 1e-4)


def run_round(
    session: BoardSession,
    arch,
    weights,
    x: np.ndarray,
    y: np.ndarray,
    mode: str,
    cfg: PersonalizeConfig,
    on_batch: Callable[[BatchRow], None] | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    procedure: Procedure = PLAIN,
) -> RoundResult:
    """One round of ``mode`` on the session's board through the app's round pipeline
    (:func:`app.core.board_round.run_board_round`: upload, train, collect, energy per batch, download); the
    board's OUT_OF_RAM shrinks the training windows (class-stratified) and says so."""

    class _Obs(RoundObserver):
        def report(self, row: BatchRow, total: int) -> None:
            if on_batch is not None:
                on_batch(row)

        def warn(self, text: str) -> None:
            if text not in session.warnings:
                session.warnings.append(text if text.startswith(f"{mode}:") else f"{mode}: {text}")

    spec = RoundSpec(
        mode,
        epochs=cfg.epochs,
        batch_size=cfg.batch,
        lr=cfg.lr,
        warmup_epochs=cfg.warmup_epochs,
        seed=cfg.seed,
        procedure=None if procedure.is_plain else procedure,
    )
    power = session.power.trace() if session.power is not None else None
    try:
        return run_board_round(session.client, arch, weights, (x, y), spec, power=power, observer=_Obs(), val=val)
    except RoundFailed as exc:
        raise PersonalizeError(str(exc)) from exc


def batch_summary(result: RoundResult, batch_size: int) -> dict:
    """The CLI's per-batch figures of one round (time from the board's ticks; power and energy as the round
    pipeline attributed them) and their summary over the main-phase full batches."""
    rows: list[dict[str, Any]] = [
        {
            "phase": r.phase,
            "epoch": r.epoch,
            "batch": r.batch,
            "n": r.n_samples,
            "loss": r.loss,
            "time_s": r.seconds,
            "cycles": r.cycles,
            "power_mw": None if r.avg_power_w is None else r.avg_power_w * 1e3,
            "energy_mj": None if r.energy_j is None else r.energy_j * 1e3,
            "source": r.source,
            **({"macro_f1": r.macro_f1, "best": r.best} if r.phase == "val" else {}),
        }
        for r in result.rows
    ]
    alignment = result.alignment
    main = [r for r in rows if r["phase"] == "main"]
    full = [r for r in main if r["n"] == batch_size] or main
    vals = [r for r in rows if r["phase"] == "val"]
    summary: dict = {
        "batches": len(main),
        "warmup_batches": sum(1 for r in rows if r["phase"] == "warmup"),
        "val_passes": len(vals),
        "val_time_s": sum(r["time_s"] for r in vals),
        "time_per_batch_s": _mean([r["time_s"] for r in full]),
        "batch_size": batch_size,
        "alignment": alignment,
        "round_time_s": sum(r["time_s"] for r in rows),
    }
    if alignment != "none":
        summary["power_mw"] = _mean([r["power_mw"] for r in full])
        summary["energy_per_batch_mj"] = _mean([r["energy_mj"] for r in full])
        summary["round_energy_mj"] = float(sum(r["energy_mj"] or 0.0 for r in rows))
    else:
        summary["power_mw"] = None
        summary["energy_per_batch_mj"] = None
    summary["per_batch"] = rows
    return summary


def _mean(vals: Sequence[float | None]) -> float | None:
    v = [x for x in vals if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


# ================================================================================================
# the whole workflow
# ================================================================================================


def evaluate_host(arch, weights, x: np.ndarray, y: np.ndarray) -> dict:
    from device.engine import Model, evaluate  # noqa: PLC0415

    ev = evaluate(Model(arch, weights), x, y, batch_size=1024)
    # macro-F1 as `loso` and the paper (scikit-learn's): over the classes in the test windows or the predictions
    return {
        "macro_f1": round(float(ev.macro_f1), 4),
        "accuracy": round(float(ev.accuracy), 4),
        "per_class_f1": [round(float(v), 4) for v in ev.per_class_f1],
    }


@dataclass
class PersonalizeResult:
    report: dict
    model: Any  # LoadedModel (general)
    weights: dict  # mode -> personalized weights
    data: UserData
    rounds: dict = field(default_factory=dict)  # mode -> RoundResult (the batches with their energy)

    def json_object(self) -> dict:
        """The documented ``--json`` object (see docs/personalize.md)."""
        keep = (
            "macro_f1",
            "accuracy",
            "batches",
            "time_per_batch_s",
            "energy_per_batch_mj",
            "power_mw",
            "n_train_used",
            "warmup_batches",
            "round_time_s",
            "round_energy_mj",
            "alignment",
            "validation",
            "val_passes",
        )
        res = {m: {k: v for k, v in r.items() if k in keep} for m, r in self.report["results"].items()}
        return {
            "user": self.report["user"],
            "input_size": self.report["input_size"],
            "classes": self.report["classes"],
            "class_map": self.report["data"]["class_map"],
            "results": res,
            "model": self.report["model"],
            "board": self.report["board"],
            "warnings": self.report["warnings"],
            "recommended": self.report.get("recommended"),
        }


def personalize(
    cfg: PersonalizeConfig,
    log: Callable[[str], None] = lambda m: None,
    on_batch: Callable[[str, Any], None] | None = None,
) -> PersonalizeResult:
    """Run the workflow of the module doc; returns the report, the general model and the new weights."""
    cfg.validate()

    def read(classes: tuple[str, ...], T: int, rate: float) -> UserData:
        return load_user_data(cfg.data, classes, T, rate, cfg.activities, cfg.user, cfg.train_fraction)

    size = 20 if cfg.input_size is None else int(cfg.input_size)
    lm, data = data_then_model(size, cfg.model, read, lambda: resolve_model(cfg.model, cfg.input_size))
    T = lm.input_size
    rate = float(lm.meta.get("rate_hz", 20.0))
    log(
        f"user {data.user}: {len(data.train)} training / {len(data.test)} test windows of T={T} at {rate:g} Hz "
        f"({data.source}; {len(data.skipped)} records skipped)"
    )
    for s in data.skipped[:5]:
        log(f"  skipped {s}")
    x_tr, x_te = lm.prepare(data.train.x), lm.prepare(data.test.x)
    arch = lm.arch
    results: dict[str, dict] = {}
    weights: dict[str, dict] = {}
    rounds: dict[str, RoundResult] = {}
    warnings: list[str] = list(data.notes)
    one = one_class_note([c for i, c in enumerate(lm.classes) if np.any(np.asarray(data.train.y) == i)])
    if one:  # (the Training panel says the same before its round)
        warnings.append(one)
    seen = _seen_in_pretraining(lm.meta, data.user)
    if seen:
        warnings.append(
            f"user {data.user} is in the general model's {seen} data: 'none' is not a new-user baseline "
            f"and personalization has little to gain (pick another user, or pretrain without this one)"
        )
    if "none" in cfg.modes:
        results["none"] = evaluate_host(arch, lm.weights, x_te, data.test.y)
        log(f"none: macro-F1 {results['none']['macro_f1']:.3f}, accuracy {results['none']['accuracy']:.3f}")
    board: dict = {}
    val_scores: dict[str, tuple[float, float]] = {}
    train_modes = [m for m in cfg.modes if m in TRAIN_MODES]
    if train_modes:
        with BoardSession(cfg, log) as session:
            board = {
                "url": cfg.board_url or "in-process virtual bench",
                "emulated": bool(session.hello.flags & 1),
                "board": session.info.board,
                "build": session.info.build,
                # the ODL firmware measures its batches; any other board (the Python emulated board of the
                # in-process bench) takes their time and current from the estimator
                "odl_firmware": runs_odl_firmware(session.info.build),
                "mcu": session.info.mcu,
                "sysclk_hz": int(session.info.sysclk_hz),
                "tick_hz": session.tick_hz,
                "time_scale": session.time_scale,
                "power": None
                if session.power is None
                else {"url": session.power.url, "freq_hz": session.power.freq, "volt": session.power.volt},
            }
            procedure = cfg.procedure
            if not procedure.is_plain and not session.client.supports_robust:
                warnings.append(
                    f"the board speaks protocol v{session.client.proto}: it cannot run the robust round "
                    "(validation, best-epoch restore, gradient clipping); the paper's plain round was used "
                    "and no mode is recommended — update its firmware"
                )
                procedure = PLAIN
            tr_idx, va_idx = procedure.split(data.train.y)
            if procedure.validates and len(va_idx) == 0:
                warnings.append(
                    f"too few training windows for a validation split (1/{procedure.val_every} of a class's "
                    "windows): trained without validation, no mode is recommended"
                )
            val = (x_tr[va_idx], data.train.y[va_idx]) if len(va_idx) else None
            board["procedure"] = procedure.label()
            for mode in train_modes:
                t0 = time.monotonic()
                out = run_round(
                    session,
                    arch,
                    lm.weights,
                    x_tr[tr_idx],
                    data.train.y[tr_idx],
                    mode,
                    cfg,
                    on_batch=functools.partial(on_batch, mode) if on_batch else None,
                    val=val,
                    procedure=procedure,
                )
                rounds[mode] = out
                meas = batch_summary(out, cfg.batch)
                ev = evaluate_host(arch, out.weights, x_te, data.test.y)
                weights[mode] = out.weights
                results[mode] = {
                    **ev,
                    **meas,
                    "n_train_used": out.n_train_used,
                    "epochs": cfg.epochs,
                    "warmup_epochs": cfg.warmup_epochs,
                    "wall_s": round(time.monotonic() - t0, 2),
                }
                vinfo = out.validation
                if vinfo is not None:
                    results[mode]["validation"] = vinfo
                    val_scores["none"] = (vinfo["start"]["loss"], vinfo["start"]["macro_f1"])
                    val_scores[mode] = (vinfo["kept"]["loss"], vinfo["kept"]["macro_f1"])
                e = meas.get("energy_per_batch_mj")
                log(
                    f"{mode}: macro-F1 {ev['macro_f1']:.3f}, accuracy {ev['accuracy']:.3f}; {meas['batches']} batches, "
                    f"{meas['time_per_batch_s']:.3g} s/batch"
                    + (f", {e:.4g} mJ/batch ({meas['power_mw']:.3g} mW)" if e else "")
                )
            warnings += session.warnings
    recommended = cfg.procedure.choose_mode(val_scores) if len(val_scores) > 1 else None
    if recommended:
        n_val = results[train_modes[0]]["validation"]["n_val"]
        why = choice_reason(val_scores, cfg.procedure.choose, recommended)
        log(f"recommended: {recommended} ({why}; {n_val} validation windows)")
    for w in warnings:
        log(f"warning: {w}")
    report = {
        "user": data.user,
        "input_size": int(T),
        "classes": list(lm.classes),
        "results": results,
        "model": {"source": str(lm.source), "params": int(arch.params), "rate_hz": rate},
        "data": data.info(),
        "board": board,
        "warnings": warnings,
        "recommended": recommended,
        "validation_scores": {m: {"loss": v[0], "macro_f1": v[1]} for m, v in val_scores.items()},
        "settings": {
            "epochs": cfg.epochs,
            "warmup_epochs": cfg.warmup_epochs,
            "lr": cfg.lr,
            "batch": cfg.batch,
            "train_fraction": cfg.train_fraction,
            "seed": cfg.seed,
            "modes": list(cfg.modes),
            "procedure": cfg.procedure.to_dict(),
        },
    }
    return PersonalizeResult(report, lm, weights, data, rounds)


def export_meta(result: PersonalizeResult, mode: str) -> dict:
    """What a model written by :func:`write_outputs` is, for its JSON sidecar — the same fields as the desktop
    app's Export (``round_history.personalized_meta``): mode, T, settings, whose data (user, data file, windows
    per class), macro-F1/accuracy before (the general model) and after, the board and the measured cost.  It
    replaces the base model's metadata (pretraining optimizer, lr, batch, best epoch, subjects, ``"format":
    "keras"`` on a TFLite file…), keeping only its origin and licence."""
    from app import __version__  # noqa: PLC0415
    from app.core.round_history import inherited_meta  # noqa: PLC0415

    rep = result.report
    res, data, settings = rep["results"], rep["data"], rep["settings"]
    r, T, user = res[mode], rep["input_size"], rep["user"]

    def metrics(m: dict | None) -> dict | None:
        return None if not m else {k: m[k] for k in ("accuracy", "macro_f1", "loss") if k in m}

    src, board = rep["model"].get("source"), rep.get("board") or {}
    return {
        **inherited_meta(result.model.meta),
        "generated_by": f"ODL Studio {__version__} (odlstudio personalize)",
        "description": f"personalized on the board ({mode.upper()}, T={T}) with user {user}'s labelled data",
        "base_model": Path(str(src)).name if src else None,
        "rate_hz": rep["model"].get("rate_hz"),
        "personalized": {
            "mode": mode,
            "input_size": T,
            "epochs": r.get("epochs"),
            "warmup_epochs": r.get("warmup_epochs"),
            "learning_rate": settings.get("lr"),
            "batch_size": settings.get("batch"),
            "seed": settings.get("seed"),
            "procedure": settings.get("procedure"),
            "user": user,
            "dataset": Path(str(data["source"])).name if data.get("source") else None,
            "windows": {
                "train": r.get("n_train_used", data.get("n_train")),
                "test": data.get("n_test"),
                "per_class": {
                    k: {"train": v, "test": (data.get("test_counts") or {}).get(k)}
                    for k, v in (data.get("train_counts") or {}).items()
                },
                "split": f"chronological {int(100 * float(settings.get('train_fraction', 0.6)))} % train per activity",
            },
            "metrics": {"before": metrics(res.get("none")), "after": metrics(r)},
            "board": {k: board[k] for k in ("board", "emulated", "sysclk_hz") if k in board} or None,
            "batches": r.get("batches"),
            "time_per_batch_s": r.get("time_per_batch_s"),
            "energy_per_batch_mj": r.get("energy_per_batch_mj"),
            "round_energy_mj": r.get("round_energy_mj"),
        },
    }


def write_outputs(
    result: PersonalizeResult, out_dir: str | Path, formats: Sequence[str] = ("keras", "tflite_float32", "c_header")
) -> dict[str, dict[str, str]]:
    """``<out>/<mode>/`` personalized model exports with their JSON sidecars (:func:`export_meta`) and
    ``<out>/report.json`` (the full report; its ``outputs`` list every file written, the sidecars as
    ``"metadata (keras)"``…).  A format that fails (e.g. the TFLite converter crashed in its child process)
    does not stop the others: every other file and ``report.json`` (with ``export_errors``) are written, then
    :class:`ExportError` says what is missing."""
    import dataclasses  # noqa: PLC0415

    from app.core.models import ExportError, export_all  # noqa: PLC0415
    from app.core.round_history import sidecar_entries  # noqa: PLC0415

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    earlier = earlier_outputs(out) or []
    written: dict[str, dict[str, str]] = {}
    errors: dict[str, dict[str, str]] = {}
    T = result.report["input_size"]
    for mode, w in result.weights.items():
        lm = result.model.with_weights(w, source=f"personalized {mode} for user {result.data.user}")
        lm = dataclasses.replace(lm, meta=export_meta(result, mode))
        stem = f"{_safe(result.data.user)}_{mode}_T{T}"
        try:
            files = export_all(lm, out / mode, stem=stem, formats=formats)
        except ExportError as exc:
            files, errors[mode] = exc.written, exc.failed
        files = {**files, **sidecar_entries(files)}
        written[mode] = {k: str(v) for k, v in files.items()}
    rep = dict(result.report, outputs=written)
    if errors:
        rep["export_errors"] = errors
    (out / "report.json").write_text(json.dumps(rep, indent=2, default=_json_default) + "\n", encoding="utf-8")
    _remove_stale(out, earlier, {Path(v) for f in written.values() for v in f.values()})
    if errors:
        flat = {f"{mode}/{fmt}": msg for mode, e in errors.items() for fmt, msg in e.items()}
        raise ExportError(
            "; ".join(f"{k} not written: {msg}" for k, msg in flat.items())
            + f" (everything else, with report.json, was written to {out})",
            {f"{mode}/{k}": Path(v) for mode, f in written.items() for k, v in f.items()},
            flat,
        )
    return written


def earlier_outputs(out_dir: str | Path) -> list[Path] | None:
    """The files an earlier run's ``report.json`` in ``out_dir`` lists as its outputs, as paths of files in
    ``out_dir/<mode>/``, or None when there is no report.json.  A report that cannot be read lists nothing.

    The report holds each path as that run wrote it: an absolute path counts when it lies in
    ``out_dir/<mode>/``; a relative one is relative to the folder that run was started from (which may not be
    the current one), so it is read as ``out_dir/<mode>/<file>`` from its last two parts, when what comes
    before them, if anything, ends in ``out_dir``'s name (``results/full/u.keras`` for ``--out results``).
    Anything else — ``../x.txt``, an absolute path elsewhere, a link leading out of ``out_dir`` — is ignored
    without a word: nothing outside ``out_dir`` is ever removed."""
    report = Path(out_dir) / "report.json"
    if not report.is_file():
        return None
    try:
        listed = json.loads(report.read_text(encoding="utf-8")).get("outputs", {})
        paths = [Path(v) for files in listed.values() for v in files.values()]
    except (OSError, ValueError, AttributeError, TypeError):  # damaged or foreign: remove nothing of it
        return []
    root = Path(out_dir).resolve()
    found = (_in_out_dir(root, p) for p in paths)
    return [p for p in found if p is not None]


def _in_out_dir(root: Path, listed: Path) -> Path | None:
    """``listed`` (a path from ``root``'s report.json) as a file in ``root/<mode>/``, or None (see
    :func:`earlier_outputs`)."""
    if listed.is_absolute():
        path = listed
    else:
        parts = listed.parts
        if len(parts) < 2 or any(part in ("", ".", "..") for part in parts[-2:]):
            return None
        if len(parts) > 2 and parts[-3] != root.name:
            return None
        path = root / parts[-2] / parts[-1]
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a link loop
        return None
    return path if real.parent.parent == root else None


def _remove_stale(out: Path, earlier: list[Path], now: set[Path]) -> None:
    """Remove what an earlier run in the same folder wrote and this one did not (a mode not run again), and
    the mode folders that leaves empty: the folder then describes one run, as its report.json does.  Files a
    user put there are not listed in the earlier report and stay."""
    now_resolved = {p.resolve() for p in now}
    for p in earlier:
        if p.resolve() not in now_resolved and p.is_file():
            p.unlink(missing_ok=True)
            try:
                p.parent.rmdir()  # only when empty
            except OSError:
                pass


def _safe(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(s))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
