"""``odlstudio sweep``: a grid of LOSO cells, each a pure task keyed by a hash of its inputs (issue 18).

A **spec** (TOML) names the grid::

    name = "seeds-and-lr"              # the results store is <results>/<name>.jsonl (default: the file's stem)

    [grid]                             # a list is an axis; a single value is fixed for the whole sweep
    dataset  = ["hapt", "wisdm2019"]
    T        = [20, 40, 60, 80, 100]
    mode     = ["none", "tl", "full"]
    subjects = "all"                   # or a list, or per dataset: {hapt = ["1", "2"], wisdm2019 = "all"}
    seed     = [0, 1, 2]
    lr       = [0.01, 0.003]           # any other field of app.core.loso.LosoConfig: passed to the task as is

    [data]                             # optional: where a dataset is (default ../shared/data/<folder>)
    hapt = "/data/hapt_kcc2020"

Every training hyper-parameter is a field of :class:`app.core.loso.LosoConfig`, found by name: a field
added there later is a valid grid key here with no change to this module.

A **cell** is one result row: (dataset, T, test subject, mode, settings).  Its **key** hashes every input
of the cell: the code version (:data:`SWEEP_VERSION`), a fingerprint of the recordings' contents (not
their path: a copy of the data on a cluster gives the same keys), T, subject, mode and
``LosoConfig.settings()`` (every setting, including fields added later).  A **task** is the unit of work
sent to an executor: one general model (same dataset, T, subject and pretraining settings — every setting
not in :data:`app.core.loso.PERSONALIZE_FIELDS`) and all the missing cells personalized from it; it runs
:func:`app.core.loso.run_task`, the code ``odlstudio loso`` runs, once per personalization variant,
pretraining once.

Rows go to one append-only JSON-lines store (:mod:`app.core.sweepstore`) as each task finishes; a
re-run reads the store first and computes only the cells whose key is not there, so a killed sweep
resumes where it stopped and a finished one costs nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from app.core import datasets as ds
from app.core import loso
from app.core.loso import DATASETS, MODES, LosoConfig, LosoError
from app.core.sweepstore import ResultStore, read_store

__all__ = [
    "SweepError",
    "SweepSpec",
    "load_spec",
    "parse_spec",
    "plan_sweep",
    "run_sweep",
    "run_sweep_task",
    "report_groups",
    "SWEEP_VERSION",
]

#: Bump when a change of the code changes what a cell computes: every key changes, so rows written by
#: older code are not reused (they stay in the store and in its report).
SWEEP_VERSION = 1
#: Refuse grids larger than this (a typo like ``seed = [0, ..., 99999]``) before loading anything.
MAX_CELLS = 2_000_000
#: Grid keys that are not LosoConfig fields, and the fields a grid may not set.
GRID_AXES = ("dataset", "T", "mode", "subjects")
_NOT_SETTABLE = ("dataset", "data", "sizes", "modes", "subjects")


class SweepError(ValueError):
    """A bad spec, grid or data; the message names the file and the key."""


# ------------------------------------------------------------------------------------------------
# spec
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSpec:
    name: str
    datasets: tuple[str, ...]
    sizes: tuple[int, ...]
    modes: tuple[str, ...]
    subjects: dict  # dataset -> tuple of subjects, or None for all
    axes: dict  # LosoConfig field -> tuple of values (one value: fixed)
    data: dict = field(default_factory=dict)  # dataset -> path
    source: str = "<spec>"

    def n_combos(self) -> int:
        return math.prod(len(v) for v in self.axes.values()) if self.axes else 1

    def varying(self) -> list[str]:
        """Axes with more than one value (besides T, mode and subjects)."""
        out = ["dataset"] if len(self.datasets) > 1 else []
        return out + [k for k, v in self.axes.items() if len(v) > 1]


def _settable_fields() -> dict:
    return {f.name: f for f in fields(LosoConfig) if f.name not in _NOT_SETTABLE}


def _coerce(where: str, name: str, default, value):
    """``value`` as the type of the field's default (bool, int, float or str)."""
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            v = float(value)
            if math.isfinite(v):
                return v
    elif kind is str:
        if isinstance(value, str):
            return value
    else:
        raise SweepError(f"{where}: {name} cannot be set in a sweep")
    raise SweepError(f"{where}: {name} must be {kind.__name__} values (like {default!r}), got {value!r}")


def _as_list(where: str, key: str, v) -> list:
    vals = list(v) if isinstance(v, list) else [v]
    if not vals:
        raise SweepError(f"{where}: [grid] {key} is an empty list")
    if any(isinstance(x, (list, dict)) for x in vals):
        raise SweepError(f"{where}: [grid] {key}: values must be numbers or strings, got {v!r}")
    return list(dict.fromkeys(vals))  # a repeated value is one grid point (linear: a typo's 10**6 values too)


def parse_spec(doc: dict, source: str = "<spec>", default_name: str = "sweep") -> SweepSpec:
    """A spec from a parsed TOML document (see the module doc)."""
    if not isinstance(doc, dict):
        raise SweepError(f"{source}: not a table")
    unknown = sorted(set(doc) - {"name", "grid", "data"})
    if unknown:
        raise SweepError(f"{source}: unknown top-level keys {unknown} (allowed: name, [grid], [data])")
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not name or any(not (c.isalnum() or c in "-_.") for c in name) or name[0] == ".":
        raise SweepError(f"{source}: name must be letters, digits, '-', '_' or '.', got {name!r}")
    grid = doc.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise SweepError(f"{source}: a [grid] table is required (at least: dataset = [...])")
    settable = _settable_fields()
    unknown = sorted(k for k in grid if k not in GRID_AXES and k not in settable)
    if unknown:
        raise SweepError(
            f"{source}: [grid] unknown keys {unknown}; allowed: {', '.join(GRID_AXES)}, {', '.join(settable)}"
        )
    if "dataset" not in grid:
        raise SweepError(f"{source}: [grid] dataset is required (one of {', '.join(DATASETS)})")
    datasets = _as_list(source, "dataset", grid["dataset"])
    bad = [d for d in datasets if d not in DATASETS]
    if bad:
        raise SweepError(f"{source}: [grid] dataset {bad} unknown (choose from {', '.join(DATASETS)})")
    sizes = _as_list(source, "T", grid.get("T", list(loso.PAPER_SIZES)))
    if any(not isinstance(t, int) or isinstance(t, bool) or not 10 <= t <= 1000 for t in sizes):
        raise SweepError(f"{source}: [grid] T must be integers in 10..1000, got {grid.get('T')!r}")
    modes = _as_list(source, "mode", grid.get("mode", list(MODES)))
    if any(m not in MODES for m in modes):
        raise SweepError(f"{source}: [grid] mode must be among {', '.join(MODES)}, got {grid.get('mode')!r}")
    subjects = _subjects(source, grid.get("subjects", "all"), datasets)
    axes = {}
    for k in sorted(k for k in grid if k in settable):
        default = settable[k].default
        axes[k] = tuple(_coerce(f"{source}: [grid]", k, default, v) for v in _as_list(source, k, grid[k]))
    data = doc.get("data", {})
    if not isinstance(data, dict) or any(k not in DATASETS or not isinstance(v, str) or not v for k, v in data.items()):
        raise SweepError(f"{source}: [data] maps a dataset ({', '.join(DATASETS)}) to a path, got {data!r}")
    spec = SweepSpec(name, tuple(datasets), tuple(sizes), tuple(modes), subjects, axes, dict(data), source)
    n_subj = max((len(s) for s in subjects.values() if s), default=30)
    n = len(datasets) * len(sizes) * len(modes) * spec.n_combos() * n_subj
    if n > MAX_CELLS:
        raise SweepError(f"{source}: the grid has about {n:,} cells, more than the {MAX_CELLS:,} allowed")
    return spec


def _subjects(source: str, v, datasets: Sequence[str]) -> dict:
    def one(x, what: str):
        if x == "all":
            return None
        if isinstance(x, list) and x and all(isinstance(s, (str, int)) and not isinstance(s, bool) for s in x):
            return tuple(dict.fromkeys(str(s) for s in x))
        raise SweepError(f'{source}: [grid] subjects{what} must be "all" or a non-empty list, got {x!r}')

    if isinstance(v, dict):
        bad = [k for k in v if k not in datasets]
        if bad:
            raise SweepError(f"{source}: [grid] subjects names datasets not in the grid: {bad}")
        return {d: one(v.get(d, "all"), f".{d}") for d in datasets}
    return {d: one(v, "") for d in datasets}


def _tomls_in(folder: Path) -> str:
    """', e.g. <folder>/a.toml (one of N there)' for the spec files a folder holds, '' when none or unreadable."""
    try:
        found = sorted(p for p in folder.glob("*.toml") if p.is_file())
    except OSError:
        return ""
    if not found:
        return ""
    return f", e.g. {found[0]}" + (f" (one of {len(found)} there)" if len(found) > 1 else "")


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file; a clear :class:`SweepError` for a missing, unreadable or bad file."""
    path = Path(path)
    try:
        import tomllib  # noqa: PLC0415
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]  # noqa: PLC0415
    if path.is_dir():
        raise SweepError(f"{path}: is a folder; give a spec file (.toml){_tomls_in(path)}")
    if not path.is_file():
        raise SweepError(f"{path}: no such spec file")
    try:
        raw = path.read_bytes()
        if len(raw) > 1_000_000:
            raise SweepError(f"{path}: {len(raw)} bytes is too large for a sweep spec")
        doc = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise SweepError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise SweepError(f"{path}: not a text (UTF-8) file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{path}: not valid TOML ({exc})") from None
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem).lstrip(".") or "sweep"
    return parse_spec(doc, str(path), stem)


# ------------------------------------------------------------------------------------------------
# keys and tasks
# ------------------------------------------------------------------------------------------------


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20]


def data_fingerprint(rs: ds.RecordingSet) -> str:
    """A hash of what a task reads from the recordings (subject, activity, order, rate, samples): the
    same data under another path gives the same fingerprint, changed data another one."""
    h = hashlib.sha256()
    for s in rs.segments:
        h.update(f"{s.subject}|{s.activity}|{s.order}|{s.rate!r}|{s.data.shape}\n".encode())
        h.update(np.ascontiguousarray(s.data, dtype="<f4").tobytes())
    return h.hexdigest()[:20]


def cell_key(cfg: LosoConfig, data_sha: str, T: int, subject: str, mode: str) -> str:
    return _digest(
        {
            "v": SWEEP_VERSION,
            "data": data_sha,
            "T": int(T),
            "subject": str(subject),
            "mode": mode,
            "settings": cfg.settings(),
        }
    )


def pretrain_settings(cfg: LosoConfig) -> dict:
    return {k: v for k, v in cfg.settings().items() if k not in loso.PERSONALIZE_FIELDS}


@dataclass(frozen=True)
class Variant:
    """One personalization variant of a task: settings and the missing modes (with their cell keys)."""

    cfg: LosoConfig
    modes: tuple[str, ...]
    keys: tuple[str, ...]


@dataclass(frozen=True)
class SweepTask:
    """One general model and the missing cells personalized from it: pure (its rows depend only on these
    fields and on the recordings with fingerprint ``data_sha``, handed over as ``shared[data_key]``)."""

    index: int
    dataset: str
    data_key: tuple
    data_sha: str
    T: int
    subject: str
    pretrain_key: str
    variants: tuple[Variant, ...]

    @property
    def label(self) -> str:
        return f"{self.dataset} T={self.T} s={self.subject}"

    @property
    def n_cells(self) -> int:
        return sum(len(v.modes) for v in self.variants)


@dataclass
class TaskResult:
    index: int
    rows: list[dict]
    errors: list[str]
    seconds: float = 0.0


@dataclass
class SweepPlan:
    spec: SweepSpec
    keys: list[str]  # every cell of the grid, in grid order
    done: int  # of those, already in the store
    tasks: list[SweepTask]
    data: dict  # data_key -> RecordingSet (lean), for the tasks
    tasks_done: int  # general models whose cells are all in the store


def plan_sweep(spec: SweepSpec, have: Iterable[str] = ()) -> SweepPlan:
    """Load the data, key every cell, and group the cells whose key is not in ``have`` into tasks."""
    have = set(have)
    keys: list[str] = []
    groups: dict[tuple, dict] = {}
    finished_groups: set[tuple] = set()
    shas: dict[tuple, str] = {}
    data: dict[tuple, ds.RecordingSet] = {}
    names = list(spec.axes)
    for d in spec.datasets:
        for combo in itertools.product(*(spec.axes[k] for k in names)):
            hp = dict(zip(names, combo))
            cfg = LosoConfig(dataset=d, data=spec.data.get(d), **hp)
            try:
                cfg.validate()
            except LosoError as exc:
                where = ", ".join(f"{k}={v!r}" for k, v in hp.items() if len(spec.axes[k]) > 1) or "settings"
                raise SweepError(f"{spec.source}: [grid] {where}: {exc}") from None
            dk = loso.data_key(cfg)
            if dk not in shas:
                try:
                    rs = loso.load_recordings(cfg)
                except LosoError as exc:
                    raise SweepError(f"{spec.source}: dataset {d}: {exc}") from None
                shas[dk] = data_fingerprint(rs)
                data[dk] = ds.RecordingSet(list(rs.segments), rs.source, rs.units)  # without the load report
            rs = data[dk]
            all_subjects = rs.subjects()
            if len(all_subjects) < 3:
                raise SweepError(f"{cfg.data_path}: LOSO needs at least 3 subjects, found {len(all_subjects)}")
            wanted = spec.subjects.get(d)
            if wanted:
                unknown = [s for s in wanted if s not in all_subjects]
                if unknown:
                    raise SweepError(
                        f"{spec.source}: [grid] subjects {unknown} not in {d} (subjects: {', '.join(all_subjects)})"
                    )
            subjects = list(wanted) if wanted else all_subjects
            pre = json.dumps(pretrain_settings(cfg), sort_keys=True)
            var = json.dumps(cfg.settings(), sort_keys=True)
            for T in spec.sizes:
                for s in subjects:
                    gk = (d, dk, int(T), s, pre)
                    for m in spec.modes:
                        k = cell_key(cfg, shas[dk], T, s, m)
                        keys.append(k)
                        if k in have:
                            finished_groups.add(gk)
                            continue
                        g = groups.setdefault(gk, {})
                        v = g.setdefault(var, (cfg, [], []))
                        if k not in v[2]:
                            v[1].append(m)
                            v[2].append(k)
    tasks = []
    for i, (gk, g) in enumerate(groups.items()):
        d, dk, T, s, pre = gk
        pk = _digest({"v": SWEEP_VERSION, "data": shas[dk], "T": T, "subject": s, "pretrain": json.loads(pre)})
        variants = tuple(Variant(c, tuple(ms), tuple(ks)) for c, ms, ks in g.values())
        tasks.append(SweepTask(i, d, dk, shas[dk], T, s, pk, variants))
    used = {t.data_key for t in tasks}
    return SweepPlan(
        spec,
        keys,
        sum(k in have for k in set(keys)),
        tasks,
        {k: v for k, v in data.items() if k in used},
        len(finished_groups - set(groups)),
    )


def run_sweep_task(shared: dict, task: SweepTask) -> TaskResult:
    """Run one task (in a worker): pretrain once, personalize every variant with
    :func:`app.core.loso.run_task`.  Never raises: a failing variant is reported in ``errors``."""
    t0 = time.perf_counter()
    out = TaskResult(task.index, [], [])
    rs = shared[task.data_key]
    with tempfile.TemporaryDirectory(prefix="odl-sweep-") as tmp:
        # the variants of a task share their pretraining settings, hence their general model's cache file in
        # ``tmp`` (loso.model_cache_path): the first variant that runs trains it, the next ones load it
        for v in task.variants:
            cfg = v.cfg
            try:
                loso.use_recordings(cfg, rs)
                rows = loso.run_task(cfg, task.T, task.subject, tmp, v.modes)
            except Exception as exc:  # noqa: BLE001 - one variant's failure does not lose the others
                out.errors.append(f"{task.label} {_variant_label(cfg)}: {type(exc).__name__}: {exc}")
                continue
            key_of = dict(zip(v.modes, v.keys))
            settings = cfg.settings()
            for r in rows:
                r.update(
                    key=key_of[r["mode"]],
                    sweep_version=SWEEP_VERSION,
                    seed=int(cfg.seed),
                    settings=settings,
                    data_sha=task.data_sha,
                    pretrain_key=task.pretrain_key,
                )
                out.rows.append(r)
    out.seconds = round(time.perf_counter() - t0, 3)
    return out


def _variant_label(cfg: LosoConfig) -> str:
    base = LosoConfig(dataset=cfg.dataset).settings()
    diff = {k: v for k, v in cfg.settings().items() if base.get(k) != v}
    return " ".join(f"{k}={v}" for k, v in diff.items()) or "(defaults)"


# ------------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------------


def store_path(results_dir: str | Path, spec: SweepSpec) -> Path:
    return Path(results_dir) / f"{spec.name}.jsonl"


@dataclass
class SweepRun:
    spec: SweepSpec
    store: Path
    cells: int
    cells_resumed: int
    tasks_run: int
    tasks_skipped: int
    rows: list[dict]
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    executor: str = "local"
    workers: int = 1
    damaged_lines: int = 0
    task_seconds: list[float] = field(default_factory=list)
    tasks_todo: int = 0

    def as_dict(self) -> dict:
        return {
            "name": self.spec.name,
            "store": str(self.store),
            "cells": self.cells,
            "cells_resumed": self.cells_resumed,
            "rows": len(self.rows),
            "tasks_run": self.tasks_run,
            "tasks_resumed": self.tasks_skipped,
            "tasks_todo": self.tasks_todo,
            "executor": self.executor,
            "workers": self.workers,
            "wall_s": round(self.wall_s, 2),
            "errors": self.errors,
            "damaged_lines": self.damaged_lines,
            "varying": self.spec.varying(),
        }


def run_sweep(
    spec: SweepSpec,
    results_dir: str | Path,
    executor=None,
    progress: bool | object = True,
    log: Callable[[str], None] | None = None,
    dry_run: bool = False,
) -> SweepRun:
    """Run (or resume) every cell of ``spec`` missing from ``<results_dir>/<name>.jsonl``."""
    from app.core.executors import LocalExecutor  # noqa: PLC0415

    executor = executor or LocalExecutor(1)
    results_dir = Path(results_dir)
    path = store_path(results_dir, spec)
    if dry_run:  # plan only: what is done, what would run
        have, damaged, _ = read_store(path)
        plan = plan_sweep(spec, have)
        run = SweepRun(spec, path, len(set(plan.keys)), plan.done, 0, plan.tasks_done, [], [])
        run.tasks_todo, run.damaged_lines = len(plan.tasks), damaged
        run.executor, run.workers = executor.kind, executor.workers
        return _finish(run, plan, have)
    results_dir.mkdir(parents=True, exist_ok=True)
    with ResultStore(path) as store:  # locked: nobody else appends while we read and run
        have, damaged, _ = read_store(path)
        plan = plan_sweep(spec, have)
        run = SweepRun(spec, path, len(set(plan.keys)), plan.done, len(plan.tasks), plan.tasks_done, [], [])
        run.executor, run.workers, run.damaged_lines = executor.kind, executor.workers, damaged
        if damaged and log:
            log(f"{path}: {damaged} damaged line(s) skipped (their cells are computed again)")
        bar = None
        if progress and plan.tasks:
            bar = loso.ProgressBar(len(plan.tasks), None if progress is True else progress, f"sweep {spec.name}")
            bar.update(0, f"{plan.done} cells already done" if plan.done else "")
        t0 = time.perf_counter()
        n = 0
        by_index = {t.index: t for t in plan.tasks}
        try:
            for res in executor.imap(run_sweep_task, plan.tasks, plan.data, on_lost=_lost):
                n += 1
                store.append(res.rows)  # one write + fsync per task: a crash loses at most this task
                have.update({r["key"]: r for r in res.rows})
                run.task_seconds.append(res.seconds)
                for e in res.errors:
                    run.errors.append(e)
                    if log:
                        log(e)
                if bar:
                    f1 = " ".join(f"{r['mode']}={r['macro_f1']:.2f}" for r in res.rows[:3])
                    bar.update(n, f"{by_index[res.index].label} {f1}")
        finally:
            if bar:
                bar.close()
            run.wall_s = time.perf_counter() - t0
            run.workers = executor.workers
    return _finish(run, plan, have)


def _lost(task: SweepTask, msg: str) -> TaskResult:
    return TaskResult(task.index, [], [f"{task.label}: {msg}"])


def _finish(run: SweepRun, plan: SweepPlan, have: dict) -> SweepRun:
    """``run.rows``: the rows of this spec's cells found in the store, in grid order."""
    for k in dict.fromkeys(plan.keys):
        if k in have:
            run.rows.append(have[k])
    return run


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------


@dataclass
class ReportGroup:
    """The rows of one setting combination (seeds pooled): what one Table-II-like table shows."""

    dataset: str
    settings: dict  # the varying settings' values (seed excluded)
    rows: list[dict]
    seeds: list[int]
    subjects: list[str]
    summary: dict

    @property
    def title(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return f"{self.dataset}" + (f", {extra}" if extra else "")

    @property
    def slug(self) -> str:
        text = "_".join([self.dataset] + [f"{k}-{v}" for k, v in self.settings.items()])
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def report_groups(rows: Sequence[dict]) -> list[ReportGroup]:
    """Group store rows by dataset and by every setting that differs between rows (seeds pooled: each
    (subject, seed) is one sample of the mean ± std), and summarise each group like ``odlstudio loso``."""
    rows = [r for r in rows if _reportable(r)]
    keys = sorted({k for r in rows for k in r["settings"]})
    varying = [
        k
        for k in keys
        if k not in ("seed", "dataset") and len({json.dumps(r["settings"].get(k), sort_keys=True) for r in rows}) > 1
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        gk = (r["dataset"], tuple(json.dumps(r["settings"].get(k), sort_keys=True) for k in varying))
        groups.setdefault(gk, []).append(r)
    out = []
    for (d, vals), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        seeds = sorted({int(_row_seed(r)) for r in rs})
        pooled = [dict(r, subject=f"{r['subject']}/seed{int(_row_seed(r))}") for r in rs] if len(seeds) > 1 else rs
        modes = [m for m in MODES if any(r["mode"] == m for r in rs)]
        summary = loso.summarize(pooled, None, modes)
        out.append(
            ReportGroup(
                d,
                {k: json.loads(v) for k, v in zip(varying, vals)},
                rs,
                seeds,
                sorted({str(r["subject"]) for r in rs}),
                summary,
            )
        )
    return out


def _reportable(r: dict) -> bool:
    """A row the report can use (a store is an input: a hand-edited or foreign row is skipped, not a crash)."""

    def num(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    return (
        isinstance(r.get("settings"), dict)
        and isinstance(r.get("T"), int)
        and isinstance(r.get("subject"), str)
        and r.get("mode") in MODES
        and isinstance(r.get("dataset"), str)
        and num(r.get("macro_f1"))
        and num(r.get("accuracy"))
        and isinstance(_row_seed(r), int)
    )


def _row_seed(r: dict):
    """A row's seed: its own, else its settings' (a row without one, or with ``null``), else 0."""
    seed = r.get("seed")
    return r["settings"].get("seed", 0) if seed is None else seed


def overview_table(groups: Sequence[ReportGroup]) -> str:
    """One line per group: mean macro-F1 over T, subjects and seeds per mode."""
    modes = [m for m in MODES if any(m in g.summary["modes"] for g in groups)]
    names = {"none": "No Pers.", "tl": "TL", "full": "Full"}
    head = ["setting", "subjects × seeds"] + [names.get(m, m) for m in modes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [g.title, f"{len(g.subjects)} × {len(g.seeds)}"]
        for m in modes:
            vals = [r["macro_f1"] for r in g.rows if r["mode"] == m]
            cells.append(f"{float(np.mean(vals)):.3f}" if vals else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_rows_for_report(path: str | Path) -> tuple[list[dict], int, int]:
    """Every keyed row of a store, ``(rows, damaged lines, rows without key)``."""
    rows, damaged, keyless = read_store(path)
    return list(rows.values()), damaged, keyless
