"""Training rounds on the board from the Training panel: orchestration, live state, persistence (Qt-free).

A *round* personalizes a model on the NUCLEO board with the user's labelled windows and measures what
each batch costs.  :class:`RoundRunner` does it in one call (on a worker thread, never the GUI thread):

1. load the model (the general model shipped in ``assets/models`` for the chosen input size, or an
   imported ``.keras``/``.h5``/``.npz``);
2. cut the current dataset's labelled accel recordings into windows at the model's rate (the paper's
   local split: chronological 60/40 per activity, training stride T/2, test stride T) and map the labels
   to the model's classes (``upstairs``/``downstairs`` gather into ``stairs`` etc.);
3. upload the model, the training windows (slot 0) and the test windows (slot 1), CRC-checked;
4. evaluate the test windows on the board (*before*), start the round, collect the per-batch reports,
   attribute LPM01A energy to each batch (below), evaluate again (*after*);
5. download the personalized weights (CRC-32 verified) and keep them beside the database
   (``rounds/round_<id>.npz``) with the raw training windows (for int8 export);
6. persist the round (``rounds`` table: config, result) and every batch (``round_batches``, written as
   each report arrives, so a crash mid-round keeps what was measured).

Progress and results are published through a :class:`RoundState` that views *pull* (a lock-protected
snapshot with a version counter); cancelling aborts the round on the board (TRAIN_ABORT).

**Energy per batch** comes from the one round pipeline, :func:`app.core.board_round.run_board_round` (steps 3–5),
which ``odlstudio personalize`` runs too: :mod:`app.core.energy` places every batch between the board's D7
edges on the power timeline and gives it ``V · mean(I) · Δt`` (host alignment, with a warning, when no edge
matches).

The module is split by job: :mod:`app.core.round_config` (settings, general models), :mod:`app.core.round_data`
(local windows, metrics), this module (live state and :class:`RoundRunner`) and :mod:`app.core.round_history`
(history, report, export, calibration records, Estimator inputs); every name is re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from app.core.board_round import RoundCancelled, RoundObserver, RoundSpec, run_board_round
from app.core.energy import (
    BatchRow,
    PowerTrace,
    align_batches,
    attribute_energy,
)
from app.core.memory import release_memory
from app.core.procedure import PLAIN
from estimator.arch import resolve_trainable

if TYPE_CHECKING:  # pragma: no cover
    from app.core.models import LoadedModel
    from app.core.store import Store
from app.core.round_config import (
    EXPORT_FORMATS,
    GENERAL_SIZES,
    MODELS_DIR,
    MODES,
    RECOMMEND_EPOCHS,
    ROUNDS_DIR,
    ExportIncomplete,
    RoundConfig,
    RoundError,
    data_then_model,
    general_model_facts,
    general_model_path,
    trainable_names,
)
from app.core.round_data import (
    LocalData,
    RoundCounts,
    check_labelled,
    local_windows,
    macro_f1_scope,
    metrics_from_confusion,
    model_recordings,
    one_class_note,
    planned_counts,
    round_counts,
    round_counts_text,
)
from app.core.round_history import (
    SIDECAR_FORMATS,
    EstimatorInputs,
    calibration_records,
    estimation_windows,
    export_files,
    export_round,
    measured_points,
    personalized_meta,
    personalized_model,
    round_report,
    round_rows,
    round_summary,
)

__all__ = [
    "RoundError",
    "RoundConfig",
    "BatchRow",
    "LocalData",
    "RoundState",
    "RoundRunner",
    "align_batches",
    "attribute_energy",
    "local_windows",
    "general_model_path",
    "GENERAL_SIZES",
    "MODES",
    "metrics_from_confusion",
    "round_rows",
    "round_summary",
    "round_report",
    "export_round",
    "export_files",
    "ExportIncomplete",
    "calibration_records",
    "EXPORT_FORMATS",
    "EstimatorInputs",
    "RECOMMEND_EPOCHS",
    "measured_points",
    "personalized_model",
    "personalized_meta",
    "model_recordings",
    "RoundCounts",
    "general_model_facts",
    "estimation_windows",
    "round_counts",
    "planned_counts",
    "round_counts_text",
    "macro_f1_scope",
    "one_class_note",
    "trainable_names",
    "batch_fraction",
    "eta_text",
    "round_eta",
    "MODELS_DIR",
    "ROUNDS_DIR",
    "SIDECAR_FORMATS",
]


# ================================================================================================
# Live state (pulled by the view)
# ================================================================================================


#: Progress of a round: everything before training (model, windows, uploads, first evaluation) is the first
#: 5 %, the batches share 5 … 95 % linearly (progress by batches done), the last evaluation and the download
#: the rest.
TRAIN_FRACTION = (0.05, 0.95)


def batch_fraction(done: int, total: int) -> float:
    """Round progress after ``done`` of ``total`` batches (linear in batches)."""
    lo, hi = TRAIN_FRACTION
    return lo + (hi - lo) * min(max(done, 0), max(total, 1)) / max(total, 1)


def round_eta(plan_s: Sequence[float], done: int, elapsed_s: float, tail_s: float = 0.0) -> float:
    """Seconds left of a round: the round plan's predicted board time of the batches not done yet plus
    ``tail_s`` (the evaluation after), scaled by how the batches done so far actually went — wall-clock
    seconds since training started per predicted second (1 before the first batch: the plan as is).  So it
    holds on a board slower or faster than its profile and on the virtual bench's fast clock."""
    done = max(0, min(int(done), len(plan_s)))
    pred_done = float(sum(plan_s[:done]))
    rest = float(sum(plan_s[done:])) + float(tail_s)
    speed = elapsed_s / pred_done if done and pred_done > 0 and elapsed_s > 0 else 1.0
    return max(0.0, rest * speed)


def eta_text(seconds: float | None) -> str:
    """``'about 2 min 10 s left'`` (rounded to what a person reads), ``''`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    s = max(0.0, float(seconds))
    if s < 5:
        return "a few seconds left"
    if s < 60:
        return f"about {int(round(s / 5) * 5)} s left"
    m, r = divmod(int(round(s / 10) * 10), 60)
    if m >= 10:
        return f"about {int(round(s / 60))} min left"
    return f"about {m} min {r} s left" if r else f"about {m} min left"


class RoundState:
    """Thread-safe progress of one round; the worker writes, views read :meth:`snapshot` on a timer.

    ``batches_done``/``total_batches`` and ``eta_s`` (seconds left when written, at ``eta_at`` =
    ``time.monotonic()``; None before training) give the progress by batches and the time estimate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.version = 0
        self.stage = "idle"
        self.fraction = 0.0
        self.text = ""
        self.batches_done = 0
        self.eta_s: float | None = None
        self.eta_at = 0.0
        self.round_id: int | None = None
        self.total_batches = 0
        self.rows: list[BatchRow] = []
        self.warnings: list[str] = []
        self.before: dict | None = None
        self.after: dict | None = None
        self.classes: tuple[str, ...] = ()
        self.status = "idle"  # idle | running | done | failed | cancelled

    def update(self, **kw: Any) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, v)
            self.version += 1

    def set_row(self, row: BatchRow) -> None:
        with self._lock:
            if row.index < len(self.rows):
                self.rows[row.index] = row
            else:
                self.rows.append(row)
            self.version += 1

    def warn(self, text: str) -> None:
        with self._lock:
            if text not in self.warnings:
                self.warnings.append(text)
                self.version += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "version": self.version,
                "stage": self.stage,
                "fraction": self.fraction,
                "text": self.text,
                "batches_done": self.batches_done,
                "eta_s": self.eta_s,
                "eta_at": self.eta_at,
                "round_id": self.round_id,
                "total_batches": self.total_batches,
                "rows": list(self.rows),
                "warnings": list(self.warnings),
                "before": self.before,
                "after": self.after,
                "classes": self.classes,
                "status": self.status,
            }


# ================================================================================================
# Orchestration
# ================================================================================================


def _progress_noop(fraction: float, text: str = "") -> None:
    return None


class _RunnerObserver(RoundObserver):
    """What the Training panel hears of a round: its :class:`RoundState`, the store's batch rows, progress."""

    def __init__(
        self,
        runner: "RoundRunner",
        cancelled: Callable[[], bool],
        progress: Callable[..., None],
        predict: Callable[[int, int], tuple[float, float]],
        tail_s: float,
        result: dict,
        classes: Sequence[str],
    ) -> None:
        self.r, self._cancelled, self.progress = runner, cancelled, progress
        self.predict, self.tail_s, self.result, self.classes = predict, tail_s, result, classes
        self.plan: list[float] = []
        self.t_train = 0.0
        self.vals = 0

    def cancelled(self) -> bool:
        return self._cancelled()

    def stage(self, fraction: float, text: str) -> None:
        self.r.stage(fraction, text, self.progress)

    def evaluated(self, when: str, result: Any) -> None:
        m = metrics_from_confusion(result.matrix, self.classes, result.loss)
        self.r.state.update(**{when: m})
        self.result[when] = m

    def started(self, info: Any, t_train: float) -> None:
        from device.nucleo import protocol as P

        total = max(1, int(info.total_batches))
        warm = int(self.r.config.warmup_epochs) * max(1, int(info.batches_per_epoch))
        bs = int(self.r.config.batch_size)
        self.plan = [self.predict(P.Phase.WARMUP if i < warm else P.Phase.MAIN, bs)[0] for i in range(total)]
        self.t_train = t_train  # TRAIN_START acknowledged: the board trains from here
        self.r.state.update(
            total_batches=int(info.total_batches),
            fraction=batch_fraction(0, total),
            text=f"batch 0/{total}",
            batches_done=0,
            eta_s=round_eta(self.plan, 0, 0.0, self.tail_s),
            eta_at=t_train,
        )

    def report(self, row: BatchRow, total: int) -> None:
        assert self.r.round_id is not None
        self.r.store.put_round_batch(self.r.round_id, row.index, row.to_dict())
        self.r.state.set_row(row)
        if row.phase == "val":  # a robust round's validation pass: shown, not counted as a batch
            self.vals += 1
            return
        now = time.monotonic()
        done = row.index + 1 - self.vals
        f = batch_fraction(done, total)
        eta = round_eta(self.plan, done, now - self.t_train, self.tail_s)
        text = f"batch {done}/{total}, loss {row.loss:.3f}"
        self.r.state.update(fraction=f, text=text, batches_done=done, eta_s=eta, eta_at=now)
        self.progress(f, f"{text}, {eta_text(eta)}")

    def settled(self, row: BatchRow) -> None:
        self.r.store_row(row)

    def aborting(self) -> None:
        self.r.state.update(text="aborting the round")

    def warn(self, text: str) -> None:
        self.r.state.warn(text)


class RoundRunner:
    """Runs one round (see the module documentation).  Construct on any thread, call :meth:`run` on a
    worker thread.  ``devices`` is the :class:`~app.core.devices.DeviceManager`; ``cancelled()`` is polled."""

    def __init__(
        self,
        store: "Store",
        devices: Any,
        data_dir: str | Path,
        config: RoundConfig,
        dataset_id: int,
        state: RoundState | None = None,
        *,
        user: str = "user",
        profile_dir: str | Path | None = None,
        board_key: str | None = None,
        eval_timeout_s: float = 120.0,
        wait_power_s: float = 5.0,
    ):
        self.store = store
        self.devices = devices
        self.data_dir = Path(data_dir)
        self.config = config.validate()
        self.dataset_id = dataset_id
        self.state = state or RoundState()
        self.user = user
        self.profile_dir = profile_dir
        self.board_key = board_key
        self.eval_timeout_s = float(eval_timeout_s)
        self.wait_power_s = float(wait_power_s)
        self.round_id: int | None = None

    # --- helpers ------------------------------------------------------------------------------------
    def stage(self, fraction: float, text: str, progress: Callable[..., None]) -> None:
        self.state.update(stage=text, fraction=fraction, text=text)
        progress(fraction, text)

    def load_model(self) -> "LoadedModel":
        from app.core.models import ModelError, load_model

        path = Path(self.config.model_path) if self.config.model_path else general_model_path(self.config.input_size)
        try:
            return load_model(path, isolate=True)  # not in this process: see app.core.child
        except ModelError as exc:
            raise RoundError(str(exc)) from exc

    def _power(self) -> PowerTrace | None:
        """The live power trace, starting the power monitor's stream if one is connected."""
        dm = self.devices
        from app.core.devices import POWER_MONITOR

        st = dm.first(POWER_MONITOR)
        if st is None:
            self.state.warn("no LPM01A power shield: time is measured by the board, energy is not measured")
            return None
        from app.core.devices import DeviceState

        if st.state in (DeviceState.DISCONNECTED, DeviceState.ERROR):
            dm.connect(st.info.key)
        if st.state != DeviceState.STREAMING:
            dm.set_streaming(st.info.key, True)
        deadline = time.monotonic() + self.wait_power_s
        while time.monotonic() < deadline:
            s = dm.power_stream
            if dm.status(st.info.key).state == DeviceState.STREAMING and s is not None and s.n_total > 0:
                n0 = s.n_total
                time.sleep(0.05)
                if s.n_total > n0:
                    return dm.power_trace()
            time.sleep(0.05)
        self.state.warn(
            f"{st.info.name} is not streaming ({dm.status(st.info.key).message or 'no samples'}): energy not measured"
        )
        return None

    def _board_ready(self) -> str:
        """Key of a connected board with its accel stream stopped (training needs the sensor idle)."""
        from app.core.devices import DeviceState

        dm = self.devices
        st = dm.status(self.board_key) if self.board_key else dm.first("board")
        if st is None:
            raise RoundError("no NUCLEO board found: connect one (Devices panel) or start the virtual bench")
        key = st.info.key
        if st.state in (DeviceState.DISCONNECTED, DeviceState.ERROR):
            dm.connect(key)
        # Whatever the state now: a board in ERROR or CONNECTING that was streaming resumes its stream when it
        # reconnects, and would never be READY.  Queued after the connect, this stops it once it is back.
        dm.set_streaming(key, False)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            s = dm.status(key).state
            if s == DeviceState.READY:
                return key
            if s == DeviceState.TRAINING:
                raise RoundError("the board is already running a round")
            time.sleep(0.05)
        raise RoundError(f"{st.info.name} did not become ready within 10 s ({dm.status(key).message})")

    # --- the round ----------------------------------------------------------------------------------
    def run(
        self, cancelled: Callable[[], bool] = lambda: False, progress: Callable[..., None] = _progress_noop
    ) -> dict:
        """Run the round; returns the stored result dict (raises :class:`RoundError` on failure, after
        recording the round as failed).  Cancelling returns the partial result with status 'cancelled'."""
        try:
            return self._run(cancelled, progress)
        finally:  # the round's windows and models are freed now: hand their pages back (see app.core.memory)
            # Only the trim, never gc.collect: a round runs on a worker thread, and a collection there may finalize
            # Qt objects left in reference cycles (a closed dialog, a menu), whose destructors then wait for the
            # GIL while the GUI thread, holding it, waits for their Qt lock: the app hung (CI, test_gui_st_zoo)
            if cancelled():  # Cancel or quitting: trim in the background, the round's end is not delayed
                threading.Thread(target=release_memory, name="release-memory", daemon=True).start()
            else:
                release_memory()

    def _run(self, cancelled: Callable[[], bool], progress: Callable[..., None]) -> dict:
        cfg = self.config
        self.state.update(
            status="running",
            rows=[],
            warnings=[],
            before=None,
            after=None,
            round_id=None,
            total_batches=0,
            batches_done=0,
            eta_s=None,
        )
        # What needs no model first (loading one imports TensorFlow in a child: seconds): nothing labelled, or
        # (the general model, whose classes and rate its sidecar gives) no window of T, is said at once
        check_labelled(self.store, self.dataset_id, self.user)

        def load() -> "LoadedModel":
            self.stage(0.005, "loading the model", progress)
            m = self.load_model()
            if cfg.model_path is None and m.input_size != cfg.input_size:
                raise RoundError(f"{m.source} takes T={m.input_size}, not {cfg.input_size}")
            self.stage(0.01, "windowing the labelled data", progress)
            return m

        def read(classes: tuple[str, ...], T: int, rate: float) -> LocalData:
            return local_windows(self.store, self.dataset_id, classes, T, rate, cfg.train_fraction, self.user)

        model, data = data_then_model(cfg.input_size, cfg.model_path, read, load)
        rate = float(model.meta.get("rate_hz", 20.0))
        trainable = trainable_names(model.arch, cfg)
        for n in data.notes:
            self.state.warn(n)
        config = {
            **cfg.to_dict(),
            "model_source": model.source,
            "model_classes": list(model.classes),
            "input_size": model.input_size,
            "rate_hz": rate,
            "trainable": sorted(trainable),
            "n_train": int(len(data.train_y)),
            "n_test": int(len(data.test_y)),
        }
        self.round_id = rid = self.store.add_round(config, self.dataset_id)
        self.store.update_round(rid, status="running")
        self.state.update(round_id=rid, classes=model.classes)
        result: dict = {"warnings": [], "classes": list(model.classes), "counts": data.counts()}
        try:
            result = self._run_on_board(model, data, trainable, cancelled, progress, result)
        except RoundCancelled:
            result["warnings"] = self.state.snapshot()["warnings"]
            result.update(self._how_far())
            self.store.update_round(rid, status="cancelled", result=result)
            self.state.update(status="cancelled", text="cancelled")
            return {**result, "status": "cancelled", "round_id": rid}
        except Exception as exc:
            result["error"] = str(exc)
            result["warnings"] = self.state.snapshot()["warnings"]
            result.update(self._how_far())
            self.store.update_round(rid, status="failed", result=result)
            self.state.update(status="failed", text=str(exc))
            raise RoundError(f"round {rid} failed: {exc}") from exc
        self.store.update_round(rid, status="done", result=result)
        self.state.update(status="done", fraction=1.0, text="done")
        progress(1.0, "done")
        return {**result, "status": "done", "round_id": rid}

    def _how_far(self) -> dict:
        """How far a round that did not finish got: its training batches done of those planned (0 planned
        when it ended before the board started training), for the history's progress."""
        snap = self.state.snapshot()
        return {"batches_done": int(snap["batches_done"]), "total_batches": int(snap["total_batches"])}

    def _run_on_board(
        self,
        model: "LoadedModel",
        data: LocalData,
        trainable: frozenset[str],
        cancelled: Callable[[], bool],
        progress: Callable[..., None],
        result: dict,
    ) -> dict:
        from device.nucleo.fwimage import runs_odl_firmware
        from estimator.core import inference_time_s, time_per_batch_s, time_per_sample_s
        from estimator.profiles import get_profile

        cfg, rid = self.config, self.round_id
        assert rid is not None
        power = self._power() if cfg.measure_power else None
        if not cfg.measure_power:
            self.state.warn("power measurement switched off for this round")
        key = self._board_ready()
        if cancelled():
            raise RoundCancelled()

        with self.devices.board_session(key) as client:
            client.drain_events()
            info = client.info()
            # which board ran it: the report says whether its times were measured or are the estimator's
            result["board"] = {
                "name": self.devices.status(key).info.name,
                "build": info.build,
                "firmware": f"{info.fw_major}.{info.fw_minor}.{info.fw_patch}",
                "odl_firmware": runs_odl_firmware(info.build),
            }
            try:
                prof = get_profile(cfg.profile, self.profile_dir)
            except Exception:  # noqa: BLE001 - unknown profile: fall back to the firmware's preset
                prof = get_profile("odl-firmware")
                self.state.warn(f"estimator profile {cfg.profile!r} not found; predictions use 'odl-firmware'")
            clock = float(info.sysclk_hz)
            fitted = self._fit_ram(model, data, trainable, info, prof)
            if fitted is not data:  # what the round trained and was evaluated on (the report and sidecars say it)
                result["counts_on_board"] = fitted.counts()
            data = fitted
            procedure = cfg.proc
            if not procedure.is_plain and not client.supports_robust:
                self.state.warn(
                    f"the board speaks protocol v{client.proto}: no robust round (validation, best-epoch restore, "
                    "gradient clipping) — the paper's plain round runs; update the board's firmware"
                )
                procedure = PLAIN
            tr_idx, va_idx = procedure.split(data.train_y)
            if procedure.validates and not len(va_idx):
                self.state.warn(
                    f"too few training windows to hold out 1/{procedure.val_every} of a class for validation: "
                    "no validation, no best-epoch restore"
                )
            result["procedure"] = {**procedure.to_dict(), "label": procedure.label(), "n_val": int(len(va_idx))}
            t_fwd = float(time_per_sample_s(model.arch, frozenset(), prof, clock))
            last_tr = frozenset(resolve_trainable(model.arch, "last"))

            def predict(phase: int, n: int) -> tuple[float, float]:
                from device.nucleo import protocol as P

                names = last_tr if phase == P.Phase.WARMUP else trainable
                t = float(time_per_batch_s(model.arch, names, n, prof, clock))
                return t, t * float(prof.power_w(clock))

            # the evaluation after training, as the board costs it (inference of the test windows)
            tail_s = inference_time_s(model.arch, len(data.test_y), prof, clock)
            spec = RoundSpec(
                "mask" if cfg.mode == "custom" else cfg.mode,
                epochs=cfg.epochs,
                batch_size=cfg.batch_size,
                lr=cfg.lr,
                warmup_epochs=cfg.warmup_epochs,
                warmup_lr=cfg.warmup_lr,
                seed=cfg.seed,
                layer_indices=tuple(i for i, ly in enumerate(model.arch.layers) if ly.name in trainable)
                if cfg.mode == "custom"
                else (),
                procedure=None if procedure.is_plain else procedure,
            )
            obs = _RunnerObserver(self, cancelled, progress, predict, tail_s, result, model.classes)
            rr = run_board_round(
                client,
                model.arch,
                model.weights,
                (_board_windows(model, data.train_x[tr_idx]), data.train_y[tr_idx]),
                spec,
                test=(_board_windows(model, data.test_x), data.test_y),
                power=power,
                predict=predict,
                observer=obs,
                eval_timeout_s=self.eval_timeout_s,
                val=(_board_windows(model, data.train_x[va_idx]), data.train_y[va_idx]) if len(va_idx) else None,
                val_pass=lambda n: (n * t_fwd, n * t_fwd * float(prof.power_w(clock))),
            )
        result["round_info"] = rr.round_info
        result["round_done"] = rr.round_done
        result.update(rr.totals)
        if rr.validation is not None:
            result["validation"] = rr.validation
        result["weights_path"] = self._save_weights(model, rr.weights, data)
        result["warnings"] = self.state.snapshot()["warnings"]
        result["voltage_v"] = rr.voltage_v
        result["profile"] = prof.name
        return result

    def _fit_ram(
        self, model: "LoadedModel", data: LocalData, trainable: frozenset[str], info: Any, prof: Any
    ) -> LocalData:
        """Subsample the windows (evenly, keeping order) when they would not fit the board's SRAM next to
        the training buffers; the board stores int16 values plus one label byte per window."""
        from estimator.memory import robust_round_bytes, training_memory

        need = training_memory(model.arch, trainable).paper_bytes
        if self.config.warmup_epochs:
            need = max(need, training_memory(model.arch, resolve_trainable(model.arch, "last")).paper_bytes)
        proc = self.config.proc
        if not proc.is_plain:  # the best epoch's weights, the L2-SP anchor, the confusion counts
            need += robust_round_bytes(
                model.arch,
                trainable,
                bool(self.config.warmup_epochs),
                validate=proc.validates,
                restore_best=proc.restore_best and proc.validates,
                l2sp=proc.l2sp > 0,
            )
        budget = int(info.ram_total) - int(prof.firmware_reserve_bytes) - int(need) - 2048
        per = 2 * int(np.prod(model.arch.input_shape)) + 1
        n_tr, n_te = len(data.train_y), len(data.test_y)
        if (n_tr + n_te) * per + 64 <= budget:
            return data
        if budget < 2 * per + 64:
            raise RoundError(
                f"training needs {need / 1024:.0f} KiB of the board's {info.ram_total / 1024:.0f} KiB "
                "SRAM: no room left for any window; choose a smaller input size or TL"
            )
        keep_te = min(n_te, max(1, budget // (3 * per)))
        keep_tr = min(n_tr, max(1, (budget - 64 - keep_te * per) // per))
        pick = lambda n, k: np.unique(np.linspace(0, n - 1, int(k)).round().astype(int))  # noqa: E731
        itr, ite = pick(n_tr, keep_tr), pick(n_te, keep_te)
        self.state.warn(
            f"the board's SRAM holds {len(itr)} of {n_tr} training and {len(ite)} of {n_te} test "
            f"windows next to {need / 1024:.0f} KiB of training buffers: the rest was left out evenly"
        )
        return dataclasses.replace(
            data, train_x=data.train_x[itr], train_y=data.train_y[itr], test_x=data.test_x[ite], test_y=data.test_y[ite]
        )

    def store_row(self, row: BatchRow) -> None:
        assert self.round_id is not None
        self.store.put_round_batch(self.round_id, row.index, row.to_dict())
        self.state.set_row(row)

    def _save_weights(self, model: "LoadedModel", weights: Mapping[str, Sequence[np.ndarray]], data: LocalData) -> str:
        """Write the personalized weights and the round's training windows; weights that came back with a
        NaN or Inf (the round diverged) fail the round instead (its measured batches stay stored)."""
        from app.core.models import export_npz, nonfinite_layers
        from app.core.outputs import atomic_path

        bad = nonfinite_layers({k: list(v) for k, v in weights.items()})
        if bad:
            raise RoundError(
                f"the round diverged: the board's weights of layer(s) {', '.join(bad)} are NaN or Inf "
                f"(learning rate {self.config.lr:g} too large?); its batches' time and energy are kept, "
                "its weights are not"
            )

        rel = f"{ROUNDS_DIR}/round_{self.round_id}.npz"
        path = self.data_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pm = model.with_weights(weights)  # (its source is not written: the round and base model go in meta)
        pm.meta.update({"personalized_round": self.round_id, "base_model": model.source})
        export_npz(pm, path)
        with atomic_path(self.data_dir / f"{ROUNDS_DIR}/round_{self.round_id}_windows.npz") as tmp:
            np.savez(tmp, x=data.train_x, y=data.train_y)
        return rel


def _board_windows(model: "LoadedModel", x: np.ndarray) -> np.ndarray:
    """Raw windows -> what the board stores: the model's preprocessing, flattened to (N, T, C)."""
    xp = model.prepare(x)
    return xp.reshape(xp.shape[0], xp.shape[1], -1)
