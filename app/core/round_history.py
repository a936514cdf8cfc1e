"""Rounds after they ran (Qt-free): their stored batches, the history line and report, the personalized model
and its export, the calibration records and the Estimator's inputs.  Part of :mod:`app.core.rounds` (which
re-exports it)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from app.core.energy import (
    BatchRow,
)
from estimator.arch import Arch

if TYPE_CHECKING:  # pragma: no cover
    from app.core.models import LoadedModel
    from app.core.store import Store

from app.core.outputs import failure_reason, write_failure
from app.core.round_config import (
    EXPORT_FORMATS,
    GENERAL_SIZES,
    RECOMMEND_EPOCHS,
    ROUNDS_DIR,
    ExportIncomplete,
    RoundError,
)

# ================================================================================================
# History, report, export, calibration records
# ================================================================================================


def round_rows(store: "Store", round_id: int) -> list[BatchRow]:
    return [BatchRow.from_dict(d) for d in store.round_batches(round_id)]


def _progress_noop(fraction: float, text: str = "") -> None:
    return None


def _round(store: "Store", round_id: int) -> dict:
    for r in store.rounds():
        if r["id"] == round_id:
            return r
    from app.core.store import StoreError

    raise StoreError(f"no training round with id {round_id}")


def round_summary(r: Mapping[str, Any]) -> str:
    """One line for a history list: id, model, mode, epochs, status, F1 before -> after."""
    c, res = r.get("config", {}), r.get("result", {})
    f1 = ""
    if res.get("before") and res.get("after"):
        f1 = f"  F1 {res['before']['macro_f1']:.3f} → {res['after']['macro_f1']:.3f}"
    e = f"  {res['energy_j'] * 1e3:.1f} mJ" if res.get("energy_j") else ""
    return (
        f"#{r['id']}  T={c.get('input_size', '?')} {str(c.get('mode', '?')).upper()} "
        f"{c.get('epochs', '?')} ep  [{r.get('status')}]{f1}{e}"
    )


#: What a round on a board that does not run the ODL firmware (the Python emulated board) measured.
ESTIMATOR_DRIVEN = (
    "This board does not run the ODL firmware: it takes each batch's time and current from the estimator "
    "(cost profile `{build}`), so the table above compares the estimator with itself. Run the round on the ODL "
    "firmware (the virtual bench's QEMU board, or a NUCLEO-L496ZG) to measure them."
)


def round_report(store: "Store", round_id: int) -> str:
    """A short Markdown report of a round: model, data, round metrics, estimator vs measured."""
    r = _round(store, round_id)
    c, res = r["config"], r["result"]
    rows = round_rows(store, round_id)
    lines = [
        f"# ODL Studio — personalization round {round_id}",
        "",
        f"* date: {time.strftime('%Y-%m-%d %H:%M', time.localtime(r['created']))}; status: **{r['status']}**",
        "",
        "## Model",
        "",
        f"* base model: `{Path(str(c.get('model_source', '?'))).name}` (input T={c.get('input_size')}, "
        f"{c.get('rate_hz', '?')} Hz), classes {', '.join(c.get('model_classes', []))}",
        f"* trained: {c.get('mode')} → layers {', '.join(c.get('trainable', []))}",
        f"* epochs {c.get('epochs')} (+{c.get('warmup_epochs', 0)} warm-up), lr {c.get('lr')}, "
        f"batch {c.get('batch_size')}, seed {c.get('seed')}",
        "",
        "## Data",
        "",
        f"* {c.get('n_train')} training windows, {c.get('n_test')} test windows "
        f"(chronological {int(100 * float(c.get('train_fraction', 0.6)))}/"
        f"{100 - int(100 * float(c.get('train_fraction', 0.6)))} split per activity)",
    ]
    held = res.get("counts_on_board") or {}  # the board's SRAM held a part of them
    if held:
        lines.append(
            f"* the board's SRAM held {sum(v[0] for v in held.values())} of the training and "
            f"{sum(v[1] for v in held.values())} of the test windows: the round trained and was evaluated on those"
        )
    for cls, (ntr, nte) in (res.get("counts") or {}).items():
        on = f" (on the board: {held[cls][0]} / {held[cls][1]})" if cls in held else ""
        lines.append(f"  * {cls}: {ntr} train / {nte} test{on}")
    lines += ["", "## Round", ""]
    if res.get("before") and res.get("after"):
        b, a = res["before"], res["after"]

        def loss(m: Mapping[str, Any]) -> str:  # (a loss of 0.0 is a loss; an evaluation without one: —)
            return "—" if m.get("loss") is None else f"{m['loss']:.3f}"

        lines += [
            "| | accuracy | macro-F1 | loss |",
            "|---|---|---|---|",
            f"| before | {b['accuracy']:.3f} | {b['macro_f1']:.3f} | {loss(b)} |",
            f"| after | {a['accuracy']:.3f} | {a['macro_f1']:.3f} | {loss(a)} |",
            "",
        ]
    board = res.get("board") or {}
    if board:
        lines.append(
            f"* board: {board['name']}, ODL firmware {board['firmware']} (build `{board['build']}`)"
            if board.get("odl_firmware")
            else f"* board: {board['name']}, cost profile `{board['build']}`"
        )
    batches = [r for r in rows if r.phase != "val"]  # (a validation pass is a row, not a batch: as the panel says)
    if rows:
        n_val = len(rows) - len(batches)
        lines.append(
            f"* {len(batches)} batches"
            + (f" + {n_val} validation pass{'es' if n_val > 1 else ''}" if n_val else "")
            + f", board time {sum(r.seconds for r in rows):.2f} s"
            + (f", final batch loss {batches[-1].loss:.3f}" if batches else "")
        )
    if res.get("energy_j") is not None:
        lines.append(
            f"* measured energy {res['energy_j'] * 1e3:.2f} mJ, average power "
            f"{res['avg_power_w'] * 1e3:.3f} mW ({', '.join(['LPM01A', *res.get('energy_sources', [])])})"
        )
    lines += ["", "## Estimator vs measured", "", "| | predicted | measured | error |", "|---|---|---|---|"]

    def row(name: str, pred: float | None, meas: float | None, unit: str, k: float) -> str:
        p = "—" if pred is None else f"{pred * k:.3f} {unit}"
        m = "—" if meas is None else f"{meas * k:.3f} {unit}"
        if pred is None or not meas:  # (no relative error against nothing or against a measured 0)
            return f"| {name} | {p} | {m} | — |"
        return f"| {name} | {p} | {m} | {100.0 * (pred - meas) / meas:+.1f} % |"

    lines.append(row("round time", res.get("pred_seconds"), res.get("seconds"), "s", 1.0))
    lines.append(row("round energy", res.get("pred_energy_j"), res.get("energy_j"), "mJ", 1e3))
    main = [r for r in rows if r.phase == "main" and r.n_samples == c.get("batch_size")]
    if main:
        pt = np.mean([r.pred_seconds for r in main])
        mt = np.mean([r.seconds for r in main])
        lines.append(row(f"time per batch of {c.get('batch_size')}", float(pt), float(mt), "s", 1.0))
    lines.append(f"\nprofile: `{res.get('profile', c.get('profile'))}`")
    if board and not board.get("odl_firmware"):
        lines.append("\n" + ESTIMATOR_DRIVEN.format(build=board["build"]))
    if res.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"* {w}" for w in res["warnings"]]
    return "\n".join(lines) + "\n"


def personalized_model(store: "Store", round_id: int) -> "LoadedModel":
    """The personalized model of a finished round (weights as downloaded from the board)."""
    from app.core.models import load_npz

    r = _round(store, round_id)
    rel = r["result"].get("weights_path")
    if not rel:
        raise RoundError(f"round {round_id} has no personalized weights (status {r['status']})")
    path = store.resolve(rel)
    if not path.is_file():
        raise RoundError(f"round {round_id}: weights file {path} is missing")
    return load_npz(path)


def personalized_meta(store: "Store", round_id: int, model: "LoadedModel") -> dict:
    """What an exported personalized model is: the round (mode, layers, epochs, lr, batch, T), whose data
    (user, dataset, windows per class), its metrics before/after, the board and the measured cost.  This
    replaces the base model's metadata (pretraining optimizer, lr, batch, best epoch, the developer's paths,
    ``"format": "keras"`` on a TFLite file…) in the JSON sidecars and the ``.npz``."""
    from app import __version__
    from app.core.store import StoreError

    r = _round(store, round_id)
    c, res = r["config"], r["result"]
    user, dataset = None, None
    try:
        ds = store.dataset(int(r["dataset_id"]))
        dataset = ds.name
        user = store.user(ds.user_id).name
    except (StoreError, KeyError, TypeError, ValueError):
        pass

    def metrics(m: Mapping[str, Any] | None) -> dict | None:
        return None if not m else {k: m.get(k) for k in ("accuracy", "macro_f1", "loss") if k in m}

    info = res.get("round_info") or {}
    board = {k: info.get(k) for k in ("board", "build", "sysclk_hz") if info.get(k) is not None}
    ran = res.get("board") or {}  # which board ran it, as the panel and the report say (virtual or not)
    if ran:
        board.update({k: ran[k] for k in ("name", "firmware") if ran.get(k) is not None})
        board["odl_firmware"] = bool(ran.get("odl_firmware"))
        board["times"] = (
            "measured by the board (ODL firmware)"
            if ran.get("odl_firmware")
            else f"the estimator's (cost profile {ran.get('build')!r}): this board does not run the ODL firmware"
        )
    base = model.meta.get("base_model") or c.get("model_source") or ""
    return {
        **inherited_meta(model.meta),
        "generated_by": f"ODL Studio {__version__}",
        "description": f"personalized on the board in round {round_id} ({str(c.get('mode', '?')).upper()}, "
        f"T={c.get('input_size')}) with {user or 'the user'}'s labelled data",
        "base_model": Path(str(base)).name if base else None,
        "rate_hz": float(c.get("rate_hz") or model.meta.get("rate_hz") or 20.0),
        "personalized": {
            "round_id": int(round_id),
            "status": r.get("status"),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(r["created"])) if r.get("created") else None,
            "mode": c.get("mode"),
            "trainable": list(c.get("trainable") or []),
            "input_size": c.get("input_size"),
            "epochs": c.get("epochs"),
            "warmup_epochs": c.get("warmup_epochs"),
            "learning_rate": c.get("lr"),
            "batch_size": c.get("batch_size"),
            "seed": c.get("seed"),
            "user": user,
            "dataset": dataset,
            "windows": {
                "train": c.get("n_train"),
                "test": c.get("n_test"),
                "per_class": {k: {"train": v[0], "test": v[1]} for k, v in (res.get("counts") or {}).items()},
                "split": f"chronological {int(100 * float(c.get('train_fraction', 0.6)))} % train per activity",
                **_on_board(res.get("counts_on_board")),
            },
            "metrics": {"before": metrics(res.get("before")), "after": metrics(res.get("after"))},
            "board": board or None,
            "batches": res.get("n_batches"),
            "board_seconds": res.get("seconds"),
            "energy_j": res.get("energy_j"),
            "profile": res.get("profile", c.get("profile")),
        },
    }


def _on_board(held: Mapping[str, Sequence[int]] | None) -> dict:
    """The windows the board's SRAM held, when it could not hold all of them (``counts_on_board``)."""
    if not held:
        return {}
    return {
        "on_board": {
            "train": sum(int(v[0]) for v in held.values()),
            "test": sum(int(v[1]) for v in held.values()),
            "per_class": {k: {"train": int(v[0]), "test": int(v[1])} for k, v in held.items()},
            "why": "the board's SRAM could not hold every window: the rest was left out evenly",
        }
    }


#: Export formats written with a JSON sidecar (``<file stem>.json``; .keras and .h5 share one).
SIDECAR_FORMATS = ("keras", "h5", "tflite_float32", "tflite_int8")

#: What a base model's metadata says that stays true of a model personalized from it: where it came from
#: and its licence (ST's model zoo: SLA0044).  The rest (pretraining optimizer, lr, epochs, subjects, paths,
#: ``format``…) describes the base model's training and is not carried into a personalized model's sidecar.
INHERITED_META = ("origin", "license")


def inherited_meta(meta: Mapping[str, Any]) -> dict:
    """The :data:`INHERITED_META` entries of a base model's ``meta``."""
    return {k: meta[k] for k in INHERITED_META if k in meta}


def sidecar_entries(written: Mapping[str, Path], existing: bool = True) -> dict[str, Path]:
    """The JSON sidecars beside the files of ``models.export_all``'s ``written`` (``{format: path}``), as
    ``{"metadata (keras, h5)": path}``, so that a list of the files written names them too.  ``existing``
    False: the sidecars those files would have (:func:`export_files`, before the export), not only those
    on disk."""
    from app.core.models import sidecar_path

    sides: dict[Path, list[str]] = {}
    for k, p in written.items():
        if k in SIDECAR_FORMATS and (not existing or sidecar_path(p).is_file()):
            sides.setdefault(sidecar_path(p), []).append(k)
    return {f"metadata ({', '.join(kinds)})": side for side, kinds in sides.items()}


def _files(n: int) -> str:
    return "file was" if n == 1 else "files were"


def export_files(
    out_dir: str | Path, round_id: int, formats: Sequence[str], stem: str | None = None
) -> dict[Path, str]:
    """The files :func:`export_round` of ``formats`` writes into ``out_dir``, as ``{path: what}`` in its terms
    (a format, ``'metadata (keras, h5)'`` for a JSON sidecar, ``'report'`` last): what an export would
    replace, known before it starts.  (``tflite_int8`` is listed even when the round has no windows.)"""
    from app.core.models import export_path

    stem = stem or f"personalized_round{round_id}"
    models = {f: export_path(out_dir, stem, f) for f in formats}
    files = {p: f for f, p in models.items()}
    files.update({side: what for what, side in sidecar_entries(models, existing=False).items()})
    files[report_path(out_dir, stem)] = "report"
    return files


def report_path(out_dir: str | Path, stem: str) -> Path:
    """The report :func:`export_round` writes beside the models of ``stem``."""
    return Path(out_dir) / f"{stem}_report.md"


def export_round(
    store: "Store",
    round_id: int,
    out_dir: str | Path,
    formats: Sequence[str] = EXPORT_FORMATS,
    stem: str | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    progress: Callable[..., None] = _progress_noop,
    isolate: bool = False,
) -> dict[str, Path]:
    """Write the round's personalized weights in ``formats`` plus ``<stem>_report.md`` into ``out_dir``.
    ``isolate`` (the app): TensorFlow works in child processes only (:func:`app.core.models.export_all`).

    ``tflite_int8`` is calibrated on the round's own training windows.  Returns every file written:
    ``{format: path}``, the JSON sidecars as ``'metadata (keras, h5)'``… and ``'report'``.  The sidecars and
    the ``.npz`` describe the personalized model (:func:`personalized_meta`), not the base model.  Checks
    ``cancelled()`` between formats (a running TFLite conversion is stopped); a cancelled export leaves what
    was written.  A format that fails (e.g. the TFLite converter crashed in its child process) does not
    stop the others: every other format and the report (which says what is missing) are written, then
    :class:`ExportIncomplete` names the failures and carries the files written.  A report that cannot be
    written (a full disk, a folder of its name) is such a failure too (``failed['report']``): the models
    written before it stay and are listed."""
    from app.core.models import ModelError, export_all, export_path

    bad = [f for f in formats if f not in EXPORT_FORMATS]
    if bad:
        raise RoundError(f"unknown export formats {', '.join(map(str, bad))} (known: {', '.join(EXPORT_FORMATS)})")
    if not formats:
        raise RoundError("choose at least one export format")
    model = personalized_model(store, round_id)
    model = dataclasses.replace(model, meta=personalized_meta(store, round_id, model))
    stem = stem or f"personalized_round{round_id}"
    out = Path(out_dir)
    rep = None
    if "tflite_int8" in formats:
        wpath = store.resolve(f"{ROUNDS_DIR}/round_{round_id}_windows.npz")
        if not wpath.is_file():
            raise RoundError(f"int8 export needs the round's training windows ({wpath} is missing)")
        with np.load(wpath) as z:
            rep = np.array(z["x"])
    try:  # (a folder that cannot be made fails every format: said once, not once per format and the report)
        if not cancelled():  # (an export cancelled before it starts makes nothing)
            out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RoundError(
            f"{out}: cannot create the export folder ({failure_reason(exc)}); nothing was written"
        ) from exc
    written: dict[str, Path] = {}
    failed: dict[str, str] = {}
    for i, f in enumerate(formats):
        if cancelled():
            break
        progress(i / (len(formats) + 1), f"writing {f}")
        try:
            written.update(export_all(model, out, stem, rep, formats=(f,), cancelled=cancelled, isolate=isolate))
        except ModelError as exc:
            if cancelled():
                break
            failed[f] = str(getattr(exc, "failed", {}).get(f, exc))
        except OSError as exc:  # a disk that filled up: the formats written before it stay, and are listed
            failed[f] = write_failure(export_path(out, stem, f), exc)
    written.update(sidecar_entries(written))
    if not cancelled():
        report = report_path(out, stem)
        text = round_report(store, round_id)
        text += "\n## Files\n\n" + "\n".join(f"* `{p.name}` ({k})" for k, p in written.items()) + "\n"
        if failed:
            text += "\n## Not written\n\n" + "\n".join(f"* {k}: {msg}" for k, msg in failed.items()) + "\n"
        try:
            report.write_text(text, encoding="utf-8")
        except OSError as exc:  # the models stay; the caller is told which were written and why not the report
            failed["report"] = failure_reason(exc)
        else:
            written["report"] = report
        progress(1.0, "done")
    if failed:
        why = [f"export {k} failed: {msg}" for k, msg in failed.items() if k != "report"]
        if "report" in failed:
            why.append(f"the report {report_path(out, stem).name} was not written: {failed['report']}")
        raise ExportIncomplete(
            "; ".join(why) + f" (the other {len(written)} {_files(len(written))} written to {out})",
            written,
            failed,
        )
    return written


def calibration_records(store: "Store", rounds: Iterable[Mapping[str, Any]] | None = None) -> list:
    """:class:`estimator.BatchRecord` s from the finished rounds' batches (board-measured time and, where
    both D7 edges were seen, LPM01A energy), for ``estimator.calibrate``."""
    from estimator.calibrate import BatchRecord

    recs = []
    for r in store.rounds() if rounds is None else rounds:
        c, res = r["config"], r["result"]
        if r["status"] != "done" or not res.get("round_info"):
            continue
        try:
            arch = personalized_model(store, r["id"]).arch
        except Exception:  # noqa: BLE001 - weights file moved or deleted: skip the round
            continue
        clock = res["round_info"].get("sysclk_hz")
        for b in round_rows(store, r["id"]):
            if b.phase == "val":  # a validation pass is inference, not a training batch
                continue
            tr: Any = "last" if b.phase == "warmup" else list(c.get("trainable") or [])
            recs.append(
                BatchRecord(
                    arch,
                    tr,
                    int(b.n_samples),
                    float(b.seconds),
                    clock_hz=clock,
                    energy_j=b.energy_j if b.source == "d7" else None,
                    voltage_v=res.get("voltage_v"),
                    label=f"round {r['id']} batch {b.index}",
                )
            )
    return recs


# ================================================================================================
# Estimator inputs shared by the Estimator and Training panels
# ================================================================================================


@dataclass
class EstimatorInputs:
    """Budgets and options of the Estimator panel (persisted as ``estimator.*`` settings).  Budgets of 0
    mean "no budget"."""

    profile: str = "odl-firmware"  # the app's boards run the ODL firmware (the CLI's estimate: "paper")
    batch_size: int = 32
    epochs: int = 2  # epochs shown in the table and chart
    ram_kib: float = 320.0
    reserve_kib: float = 24.0
    time_s: float = 0.0
    energy_mj: float = 0.0
    power_source: str = "charging"  # 'battery' | 'charging'
    accounting: str = "firmware"  # one of estimator.recommend.ACCOUNTINGS; the app's boards run the ODL firmware
    n_classes: int = 5

    KEYS = (
        "profile",
        "batch_size",
        "epochs",
        "ram_kib",
        "reserve_kib",
        "time_s",
        "energy_mj",
        "power_source",
        "accounting",
    )

    @classmethod
    def from_settings(cls, settings: Any) -> "EstimatorInputs":
        d = cls()
        for k in cls.KEYS:
            v = settings.get(f"estimator.{k}", getattr(d, k))
            setattr(d, k, type(getattr(d, k))(v))
        return d

    def save(self, settings: Any) -> None:
        for k in self.KEYS:
            settings.set(f"estimator.{k}", getattr(self, k))

    def recommend(
        self,
        n_windows: int | tuple[int, int] | Callable[[int], int | tuple[int, int] | None] | None = None,
        profile_dir: str | Path | None = None,
        input_sizes: Sequence[int] = GENERAL_SIZES,
        epochs: Sequence[int] = RECOMMEND_EPOCHS,
        *,
        arch: "Arch | Callable[[int], Arch] | None" = None,
        accuracy: Any = None,
    ) -> Any:
        """:func:`estimator.recommend.recommend` under these budgets: TL and Full at ``input_sizes`` and
        ``epochs`` (plus the table's own :attr:`epochs`).

        ``arch``: the model — None for the paper CNN (:attr:`n_classes` classes), an :class:`Arch` (resized
        to each input size) or a factory ``T -> Arch`` (e.g. an imported model that fits other sizes);
        ``n_windows``: windows per epoch (int or ``T -> int``; None = one batch per epoch; a ``T`` it maps to
        None is left out when another size has windows: its round would not run), or the pair
        ``(training, validation)`` windows the round will run (:func:`estimation_windows`, what both panels
        pass); ``accuracy``: an accuracy model (e.g. measured by :mod:`app.core.simulate`),
        None = the Table II prior; ``profile_dir``: where calibrated profiles live.  Both the Estimator and
        the Training panel call this, so they recommend the same thing."""
        from estimator.arch import paper_cnn
        from estimator.profiles import get_profile
        from estimator.recommend import recommend

        n_classes = int(self.n_classes)
        model = arch if arch is not None else (lambda T: paper_cnn(int(T), n_classes))
        sizes = tuple(int(T) for T in input_sizes)
        if callable(n_windows):  # a size the labelled data cannot fill is no option (its round would not run)
            runs = tuple(T for T in sizes if n_windows(T) is not None)
            sizes = runs or sizes  # (no data at all: every size costed as one batch per epoch)
        return recommend(
            model,
            sizes,
            ("tl", "full"),
            tuple(sorted(set(int(e) for e in epochs) | {int(self.epochs)})),
            batch_size=int(self.batch_size),
            profile=get_profile(self.profile, profile_dir),
            n_windows=n_windows,
            ram_kib=self.ram_kib,
            reserve_kib=self.reserve_kib,
            time_s=self.time_s or None,
            energy_mj=self.energy_mj or None,
            power_source=self.power_source,
            accounting=self.accounting,
            accuracy=accuracy,
            robust=True,  # the app's rounds are robust rounds (issue 17): cost their validation and RAM
        )


def estimation_windows(
    store: "Store",
    dataset_id: int,
    classes: Sequence[str],
    rate_hz: float,
    batch_size: int,
    user: str = "user",
) -> Callable[[int], tuple[int, int] | None]:
    """``T -> (training windows, validation windows)`` a robust round at input size T would run on the dataset's
    labelled windows for a model with ``classes`` at ``rate_hz`` (:func:`app.core.round_data.planned_counts`),
    None when a round would not run: what the Estimator and Training panels give :meth:`EstimatorInputs.recommend`
    so that they cost what the round then records."""
    from app.core.round_data import planned_counts

    def windows(T: int) -> tuple[int, int] | None:
        c = planned_counts(store, dataset_id, classes, int(T), rate_hz, batch_size, 1, user=user)
        return None if c is None else (c.n_train, c.n_val)

    return windows


def measured_points(store: "Store") -> list[dict]:
    """Per finished round: input size, mode, mean measured time and energy of its full-size main batches,
    and the predictions for the same batches (for the Estimator panel's overlay)."""
    out = []
    for r in store.rounds():
        if r["status"] != "done":
            continue
        c = r["config"]
        rows = [b for b in round_rows(store, r["id"]) if b.phase == "main" and b.n_samples == c.get("batch_size")]
        if not rows:
            continue
        e = [b.energy_j for b in rows if b.energy_j is not None]
        out.append(
            {
                "round_id": r["id"],
                "input_size": c.get("input_size"),
                "mode": c.get("mode"),
                "batch_size": c.get("batch_size"),
                "seconds": float(np.mean([b.seconds for b in rows])),
                "energy_mj": float(np.mean(e)) * 1e3 if e else None,
                "pred_seconds": float(np.mean([b.pred_seconds or 0 for b in rows])),
                "pred_energy_mj": float(np.mean([b.pred_energy_j or 0 for b in rows])) * 1e3,
            }
        )
    return out
