"""Recommender: the best (input size, trainable set, epochs) under RAM, time, energy and power-source
constraints, with the binding constraint explained in one sentence and the whole trade-off table.

Accuracy models
---------------
* :class:`LosoPrior` (default when ``assets/accuracy_prior.json`` exists, see :func:`default_accuracy`):
  macro-F1 measured by leave-one-subject-out on real multi-user data (``odlstudio accuracy-prior`` makes the
  table from ``odlstudio loso`` results), per (dataset, T, mode): the mean over subjects with its spread (std,
  worst subject, n), interpolated linearly in T; epochs follow the same saturating curve as below between
  the measured No Pers. and the measured mode.
* :class:`TableIIPrior` (the fallback): the paper's Table II F1 scores (WISDM or ST dataset) as the
  F1 reached after a full personalization, interpolated linearly in the input size (clamped to
  20..100).  Epochs follow a saturating curve *assumed here, not measured by the paper*:
  ``F1(e) = F1_0 + (F1_TableII − F1_0)·(1 − exp(−e/τ))`` with ``F1_0`` the WISDM "No Pers." column
  (the pretrained model before personalization) and τ = 2 epochs.  Trainable sets other than
  ``full`` use the TL column (conservative).
* :class:`MeasuredAccuracy`: a table of accuracies measured on the user's own labelled windows by a
  quick host-side simulation, keyed ``(input_size, mode, epochs)`` or ``(input_size, mode)``;
  missing entries fall back to the prior.
* Any callable ``(input_size, mode, epochs) -> F1``.

Choice: among the options that meet every constraint, those within ``accuracy_tolerance`` (0.002 F1)
of the most accurate are "as good"; of those the one with the least energy per round wins (then
time, then RAM).  Power source (the paper's advice, Sec. IV-C): on ``battery`` Full personalization
is not allowed (TL only); while ``charging`` it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from estimator.arch import Arch, paper_cnn
from estimator.core import estimate, inference_time_s, mode_label
from estimator.memory import robust_round_bytes
from estimator.profiles import DeviceProfile, get_profile

# Table II of the paper (F1 scores), by input size.
TABLE_II: dict[str, dict[str, dict[int, float]]] = {
    "wisdm": {
        "no_pers": {100: 0.813, 80: 0.815, 60: 0.819, 40: 0.808, 20: 0.804},
        "tl": {100: 0.955, 80: 0.963, 60: 0.962, 40: 0.958, 20: 0.948},
        "full": {100: 0.969, 80: 0.973, 60: 0.978, 40: 0.974, 20: 0.967},
    },
    "st": {
        "no_pretrain": {100: 0.936, 80: 0.944, 60: 0.938, 40: 0.951, 20: 0.945},
        "tl": {100: 0.938, 80: 0.939, 60: 0.931, 40: 0.929, 20: 0.911},
        "full": {100: 0.960, 80: 0.962, 60: 0.966, 40: 0.965, 20: 0.959},
    },
}

POWER_SOURCES = ("battery", "charging")
#: Memory accountings the RAM budget can be checked with (estimator.memory).
ACCOUNTINGS = ("paper", "peak", "firmware")
CONSTRAINTS = ("power_source", "ram", "time", "energy")


def _interp(table: Mapping[int, float], x: float) -> float:
    xs = sorted(table)
    return float(np.interp(x, xs, [table[k] for k in xs]))


@dataclass(frozen=True)
class TableIIPrior:
    dataset: str = "st"
    tau_epochs: float = 2.0

    def __post_init__(self) -> None:
        if self.dataset not in TABLE_II:
            raise ValueError(f"unknown Table II dataset {self.dataset!r} (known: {', '.join(TABLE_II)})")
        if not self.tau_epochs > 0:
            raise ValueError(f"tau_epochs must be > 0, got {self.tau_epochs}")

    def lookup(self, input_size: int, mode: str, epochs: int) -> tuple[float, str]:
        col = "full" if mode == "full" else "tl"
        final = _interp(TABLE_II[self.dataset][col], input_size)
        start = _interp(TABLE_II["wisdm"]["no_pers"], input_size)
        f1 = start + (final - start) * (1.0 - math.exp(-epochs / self.tau_epochs))
        return f1, f"Table II prior ({self.dataset}, {col.upper()}, τ={self.tau_epochs:g} epochs)"

    def __call__(self, input_size: int, mode: str, epochs: int) -> float:
        return self.lookup(input_size, mode, epochs)[0]


@dataclass(frozen=True)
class MeasuredAccuracy:
    """Accuracies measured on the user's windows; keys ``(T, mode, epochs)`` or ``(T, mode)``."""

    table: Mapping[tuple, float]
    fallback: "TableIIPrior | LosoPrior | None" = field(default_factory=TableIIPrior)

    def lookup(self, input_size: int, mode: str, epochs: int) -> tuple[float, str]:
        for key in ((int(input_size), mode, int(epochs)), (int(input_size), mode)):
            if key in self.table:
                return float(self.table[key]), "measured (host-side simulation)"
        if self.fallback is None:
            raise KeyError(f"no measured accuracy for T={input_size}, mode={mode}, epochs={epochs}")
        value, src = self.fallback.lookup(input_size, mode, epochs)
        return value, src + " (no measurement)"

    def __call__(self, input_size: int, mode: str, epochs: int) -> float:
        return self.lookup(input_size, mode, epochs)[0]


DATASET_NAMES = {"wisdm2019": "WISDM-2019", "hapt": "UCI HAPT"}


@dataclass(frozen=True)
class LosoPrior:
    """Accuracy measured by LOSO (``odlstudio loso``), from a table written by ``odlstudio accuracy-prior``:
    ``{"datasets": {name: {"subjects": n, "modes": {mode: {T: {"mean", "std", "min", "n"}}}}}, ...}``.
    Missing modes or datasets fall back to ``fallback`` (the paper's Table II)."""

    table: Mapping
    dataset: str = "wisdm2019"
    tau_epochs: float = 2.0
    fallback: "TableIIPrior | None" = field(default_factory=TableIIPrior)

    def _col(self, mode: str) -> Mapping[int, Mapping] | None:
        ds = self.table.get("datasets", {}).get(self.dataset) or {}
        col = ds.get("modes", {}).get(mode)
        return {int(T): v for T, v in col.items()} if col else None

    def spread(self, input_size: int, mode: str) -> dict | None:
        """``{"std", "min", "n"}`` of the measured F1 at ``input_size`` (interpolated in T), or None."""
        col = self._col("full" if mode == "full" else "tl")
        return _spread(col, input_size) if col else None

    def lookup(self, input_size: int, mode: str, epochs: int) -> tuple[float, str]:
        name = "full" if mode == "full" else "tl"
        col, none = self._col(name), self._col("none")
        if not col or not none:
            if self.fallback is None:
                raise KeyError(f"no LOSO measurement of {name} on {self.dataset}")
            v, src = self.fallback.lookup(input_size, mode, epochs)
            return v, src + " (no LOSO measurement)"
        final = _interp({T: v["mean"] for T, v in col.items()}, input_size)
        start = _interp({T: v["mean"] for T, v in none.items()}, input_size)
        f1 = start + (final - start) * (1.0 - math.exp(-epochs / self.tau_epochs))
        sp = _spread(col, input_size)
        return f1, f"{self.name(sp['n'])}: ± {sp['std']:.3f} over users, worst {sp['min']:.3f}"

    def name(self, n_users: int | None = None) -> str:
        """``LOSO prior (WISDM-2019, 16 users, robust round)``: how the recommender's reason, the Estimator's
        title and its accuracy line all name this prior."""
        ds = self.table["datasets"][self.dataset]
        proc = self.table.get("procedure_label")
        return (
            f"LOSO prior ({DATASET_NAMES.get(self.dataset, self.dataset)}, {ds.get('subjects', n_users)} users"
            f"{', ' + proc if proc else ''})"
        )

    def __call__(self, input_size: int, mode: str, epochs: int) -> float:
        return self.lookup(input_size, mode, epochs)[0]


def _spread(col: Mapping[int, Mapping], input_size: int) -> dict:
    """``{"std", "min", "n"}`` of a LOSO table column at ``input_size`` (interpolated in T; n: the fewest)."""
    return {
        "std": _interp({T: v["std"] for T, v in col.items()}, input_size),
        "min": _interp({T: v["min"] for T, v in col.items()}, input_size),
        "n": int(min(v["n"] for v in col.values())),
    }


def accuracy_prior_path():
    """``assets/accuracy_prior.json`` (made by ``odlstudio accuracy-prior``): under ``$ODL_ASSETS`` when set,
    else the assets folder beside this package (the repository's, or the frozen bundle's — the same rule as
    ``app.core.paths.assets_dir``, which the estimator must not import)."""
    import os  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    env = os.environ.get("ODL_ASSETS")
    base = Path(env).expanduser() if env else Path(__file__).resolve().parents[1] / "assets"
    return base / "accuracy_prior.json"


def load_accuracy_prior(path=None) -> dict | None:
    """The measured-accuracy table, or None when it is missing or unreadable (the Table II fallback)."""
    import json  # noqa: PLC0415

    p = accuracy_prior_path() if path is None else path
    try:
        with open(p, encoding="utf-8") as fh:
            d = json.load(fh)
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and isinstance(d.get("datasets"), dict) else None


def default_accuracy(dataset: str = "wisdm2019") -> "LosoPrior | TableIIPrior":
    """The recommender's default accuracy model: the shipped LOSO measurements of ``dataset`` (the app's
    general models are trained on WISDM-2019) when present, else the paper's Table II."""
    table = load_accuracy_prior()
    if table is not None and dataset in table["datasets"]:
        return LosoPrior(table, dataset)
    return TableIIPrior()


AccuracyLike = str | TableIIPrior | LosoPrior | MeasuredAccuracy | Mapping | Callable[[int, str, int], float] | None


def _accuracy_fn(model: AccuracyLike) -> Callable[[int, str, int], tuple[float, str]]:
    if model is None:
        model = default_accuracy()
    elif isinstance(model, str):
        model = TableIIPrior(model)
    elif isinstance(model, Mapping):
        model = MeasuredAccuracy(model)
    if hasattr(model, "lookup"):
        return model.lookup
    if callable(model):
        return lambda T, m, e: (float(model(T, m, e)), "user accuracy model")
    raise TypeError(f"accuracy model must be a dataset name, a table or a callable, got {type(model).__name__}")


@dataclass(frozen=True)
class Recommendation:
    choice: dict | None
    reason: str
    binding: str  # 'none', 'power_source', 'ram', 'time', 'energy', or 'infeasible'
    table: list[dict]
    budgets: dict

    def to_dict(self) -> dict:
        return {
            "choice": self.choice,
            "reason": self.reason,
            "binding": self.binding,
            "budgets": dict(self.budgets),
            "table": list(self.table),
        }


def fmt3(x: float) -> str:
    """``x`` to three significant digits as a person writes it: ``0.697``, ``44.3``, ``12,300`` (not ``1.23e+04``,
    which ``:.3g`` gives from 1000 on: a round of hours read as "1.42e+04 s")."""
    x = float(x)
    if not math.isfinite(x) or abs(float(f"{x:.3g}")) < 1000:  # (999.6 rounds to 1000: the branch below)
        return f"{x:.3g}"
    return f"{round(x, 2 - int(math.floor(math.log10(abs(x))))):,.0f}"


def _label(row: Mapping) -> str:
    mode = row["mode"]
    m = {"tl": "TL", "full": "Full", "last": "last-layer"}.get(mode, mode)
    e = row["epochs"]
    return f"{m} at T={row['input_size']} with {e} epoch{'s' if e != 1 else ''}"


def _why(row: Mapping, constraint: str, budgets: Mapping) -> str:
    if constraint == "power_source":
        return "Full personalization is kept for when the device is charging and it runs on battery"
    if constraint == "ram":
        if budgets["ram_available_kib"] <= 0:  # (was "against -1008 KiB left"): nothing is left to compare with
            return (
                f"needs {row['ram_needed_kib'] - budgets['reserve_kib']:.0f} KiB of RAM for training, but the firmware "
                f"reserve ({budgets['reserve_kib']:g} KiB) takes all of the {budgets['ram_kib']:g} KiB of RAM: give "
                "the device's RAM and a smaller reserve"
            )
        return (
            f"needs {row['ram_needed_kib'] - budgets['reserve_kib']:.0f} KiB of RAM for training against "
            f"{budgets['ram_available_kib']:.0f} KiB left after the firmware reserve"
        )
    if constraint == "time":
        return f"takes {fmt3(row['time_per_round_s'])} s per round against a {budgets['time_s']:g} s budget"
    return f"uses {fmt3(row['energy_per_round_mj'])} mJ per round against a {budgets['energy_mj']:g} mJ budget"


_NAMES = {"power_source": "power source", "ram": "RAM budget", "time": "time budget", "energy": "energy budget"}


def recommend(
    arch: Arch | Callable[[int], Arch] = paper_cnn,
    input_sizes: Sequence[int] = (20, 40, 60, 80, 100),
    modes: Sequence[str | Sequence[str]] = ("tl", "full"),
    epochs: Sequence[int] = (1, 2, 3, 5, 10),
    *,
    batch_size: int = 32,
    profile: DeviceProfile | str = "paper",
    n_windows: int | tuple[int, int] | Callable[[int], int | tuple[int, int] | None] | None = None,
    ram_kib: float | None = None,
    reserve_kib: float | None = None,
    time_s: float | None = None,
    energy_mj: float | None = None,
    power_source: str = "battery",
    accuracy: AccuracyLike = None,
    accounting: str = "paper",
    dataset_in_ram: bool = False,
    accuracy_tolerance: float = 0.002,
    allow_full_on_battery: bool = False,
    robust: bool = False,
) -> Recommendation:
    """Best (input size, trainable set, epochs) within the budgets (time and energy are per round).

    ``arch``: an :class:`Arch` (resized with ``with_input_size``) or a factory ``T -> Arch``.
    ``n_windows``: local windows per epoch (int or ``T -> int``); ``None`` means one batch per epoch.
    ``ram_kib``/``reserve_kib``: defaults from the profile (320 KiB RAM, 24 KiB firmware reserve).
    ``accounting``: ``'paper'``, ``'peak'`` or ``'firmware'`` (the ODL firmware's arena plan) memory
    figure against the RAM budget.
    ``robust``: cost the robust round (issue 17): 1/10 of the windows validate instead of training, a
    validation pass (forward only) before the round and after every epoch, and the board's extra RAM
    (the best epoch's weights, the confusion counts: ``estimator.memory.robust_round_bytes``).
    ``n_windows`` may also give a pair ``(training, validation)`` windows, counted by the caller as its
    round splits them (:func:`window_counts`).
    """
    p = get_profile(profile)
    if not (isinstance(arch, Arch) or callable(arch)):
        raise TypeError(f"arch must be an Arch or a function of the input size, got {type(arch).__name__}")
    if power_source not in POWER_SOURCES:
        raise ValueError(f"power_source must be one of {POWER_SOURCES}, got {power_source!r}")
    if accounting not in ACCOUNTINGS:
        raise ValueError(f"accounting must be one of {', '.join(ACCOUNTINGS)}, got {accounting!r}")
    if not input_sizes or not modes or not epochs:
        raise ValueError("input_sizes, modes and epochs must each list at least one value")
    if any(int(e) < 1 for e in epochs):
        raise ValueError(f"epochs must be >= 1, got {list(epochs)}")
    for name, b in (("ram_kib", ram_kib), ("reserve_kib", reserve_kib), ("time_s", time_s), ("energy_mj", energy_mj)):
        if b is not None and not (math.isfinite(b) and b >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {b}")
    acc = _accuracy_fn(accuracy)
    acc_obj = default_accuracy() if accuracy is None else accuracy
    spread_of = getattr(acc_obj, "spread", None) or getattr(getattr(acc_obj, "fallback", None), "spread", None)
    ram_total = p.ram_bytes / 1024 if ram_kib is None else float(ram_kib)
    reserve = p.firmware_reserve_bytes / 1024 if reserve_kib is None else float(reserve_kib)
    budgets = {
        "ram_kib": ram_total,
        "reserve_kib": reserve,
        "ram_available_kib": ram_total - reserve,
        "time_s": time_s,
        "energy_mj": energy_mj,
        "power_source": power_source,
        "accounting": accounting,
        "profile": p.name,
        "batch_size": batch_size,
    }
    table: list[dict] = []
    for T in input_sizes:
        a = arch(int(T)) if callable(arch) and not isinstance(arch, Arch) else arch.with_input_size(int(T))
        nw = n_windows(int(T)) if callable(n_windows) else n_windows
        n_train, n_val = window_counts(nw, batch_size, robust)
        nw_eff = n_train + n_val
        for mode in modes:
            est = estimate(a, mode, batch_size, p, n_windows=n_train, epochs=1, dataset_in_ram=dataset_in_ram)
            label = mode_label(a, mode)
            mem = est.memory_for(accounting)
            t_val = e_val = extra_kib = 0.0
            if robust:
                extra_kib = robust_round_bytes(a, mode, False, validate=True, restore_best=True) / 1024
                mem += extra_kib
                t_val = inference_time_s(a, n_val, p, est.clock_hz)
                e_val = t_val * est.power_w
            ds = est.memory.excluded_bytes.get("local_dataset", 0) / 1024 if dataset_in_ram else 0.0
            ram_needed = mem + ds + reserve  # what the board needs in all, firmware reserve included
            for e in epochs:
                f1, src = acc(int(T), label, int(e))
                row: dict[str, Any] = {
                    "input_size": int(T),
                    "mode": label,
                    "epochs": int(e),
                    "n_windows": nw_eff,
                    "params": est.params,
                    "trainable_params": est.trainable_params,
                    "memory_kib": est.memory_kib,
                    "memory_peak_kib": est.memory_peak_kib,
                    "memory_firmware_kib": est.memory_firmware_kib,
                    "robust_extra_kib": extra_kib,  # in ram_needed_kib, not in the Table III figures
                    "ram_needed_kib": ram_needed,
                    "time_per_batch_s": est.time_per_batch_s,
                    "time_per_round_s": e * (est.time_per_epoch_s or 0.0) + (e + 1) * t_val,
                    "power_mw": est.power_w * 1e3,
                    "energy_per_batch_mj": est.energy_per_batch_j * 1e3,
                    "energy_per_round_mj": (e * (est.energy_per_epoch_j or 0.0) + (e + 1) * e_val) * 1e3,
                    "procedure": "robust" if robust else "plain",
                    "n_val": n_val,
                    "accuracy": f1,
                    "accuracy_source": src,
                }
                sp = spread_of(int(T), label) if spread_of is not None and not src.startswith("measured (") else None
                if sp is not None and src.startswith("LOSO prior"):
                    row.update(accuracy_std=sp["std"], accuracy_min=sp["min"], accuracy_n=sp["n"])
                v: list[str] = []
                if power_source == "battery" and label == "full" and not allow_full_on_battery:
                    v.append("power_source")
                if ram_needed > ram_total:
                    v.append("ram")
                if time_s is not None and row["time_per_round_s"] > time_s:
                    v.append("time")
                if energy_mj is not None and row["energy_per_round_mj"] > energy_mj:
                    v.append("energy")
                row["fits_ram"] = "ram" not in v
                row["violations"] = v
                row["feasible"] = not v
                row["chosen"] = False
                table.append(row)
    choice, reason, binding = _choose(table, budgets, accuracy_tolerance)
    if choice is not None:
        choice["chosen"] = True
    return Recommendation(choice, reason, binding, table, budgets)


def window_counts(n_windows: int | tuple[int, int] | None, batch_size: int, robust: bool) -> tuple[int, int]:
    """``(training windows per epoch, validation windows)`` of a round from ``recommend``'s ``n_windows``
    value: a pair ``(train, val)`` as its caller counted them (the desktop app: the split its round makes,
    ``app.core.round_data.round_counts``); an int ``n``: ``n - n // 10`` and ``n // 10`` when ``robust``
    (about the robust round's tenth), ``n`` and 0 otherwise; None: one batch per epoch, no validation."""
    if n_windows is None:
        return int(batch_size), 0
    if isinstance(n_windows, tuple):
        n_train, n_val = (max(0, int(v)) for v in n_windows)
        return (max(1, n_train), n_val) if robust else (max(1, n_train + n_val), 0)  # (a plain round trains on all)
    n = int(n_windows)
    n_val = n // 10 if robust else 0
    return n - n_val, n_val


def _cost_key(r: Mapping) -> tuple:
    return (r["energy_per_round_mj"], r["time_per_round_s"], r["ram_needed_kib"])


def _choose(table: list[dict], budgets: Mapping, tol: float) -> tuple[dict | None, str, str]:
    feasible = [r for r in table if r["feasible"]]
    if not feasible:
        for c in CONSTRAINTS:
            if all(c in r["violations"] for r in table):
                if c == "power_source":
                    return (
                        None,
                        "Nothing fits: every option is Full personalization, which is kept for when the device is charging.",
                        c,
                    )
                key = {"ram": "ram_needed_kib", "time": "time_per_round_s", "energy": "energy_per_round_mj"}[c]
                least = min(table, key=lambda r: r[key])
                return (
                    None,
                    f"Nothing fits the {_NAMES[c]}: even the cheapest option, {_label(least)}, {_why(least, c, budgets)}.",
                    c,
                )
        closest = min(table, key=lambda r: (len(r["violations"]), _cost_key(r)))
        names = " and ".join(_NAMES[c] for c in closest["violations"])
        return (
            None,
            f"Nothing fits all budgets together: the closest option, {_label(closest)}, still breaks the {names}.",
            "infeasible",
        )
    best_acc = max(r["accuracy"] for r in feasible)
    good = [r for r in feasible if r["accuracy"] >= best_acc - tol]
    choice = min(good, key=_cost_key)
    better = [r for r in table if not r["feasible"] and r["accuracy"] > choice["accuracy"] + tol]
    cost = f"{choice['ram_needed_kib'] - budgets['reserve_kib']:.0f} KiB of training RAM, {fmt3(choice['time_per_round_s'])} s and {fmt3(choice['energy_per_round_mj'])} mJ per round"
    if not better:
        return (
            choice,
            f"No constraint binds: {_label(choice)} reaches the best predicted F1 ({choice['accuracy']:.3f}{_src(choice)}) at the lowest cost, {cost}.",
            "none",
        )
    counts = {c: sum(c in r["violations"] for r in better) for c in CONSTRAINTS}
    binding = max(CONSTRAINTS, key=lambda c: counts[c])
    top = max(
        (r for r in better if binding in r["violations"]), key=lambda r: (r["accuracy"], -r["energy_per_round_mj"])
    )
    reason = (
        f"The {_NAMES[binding]} binds: {_label(top)} would reach F1 {top['accuracy']:.3f} but {_why(top, binding, budgets)}, "
        f"so {_label(choice)} (F1 {choice['accuracy']:.3f}{_src(choice)}, {cost}) is the best option within budget."
    )
    return choice, reason, binding


def _src(row: Mapping) -> str:
    """Where a predicted F1 comes from, for the one-sentence reason."""
    src = str(row.get("accuracy_source", ""))
    if src.startswith("LOSO prior"):
        return f" ± {row.get('accuracy_std', float('nan')):.3f}, {src.split(':')[0]}"
    if src.startswith("measured"):
        return ", measured on your windows"
    if src.startswith("Table II"):
        return ", the paper's Table II"
    return f", {src}" if src else ""


def n_windows_from_recording(seconds: float, rate_hz: float = 20.0) -> Callable[[int], int]:
    """Windows per epoch from a labelled recording of ``seconds`` at ``rate_hz``, non-overlapping."""
    if not (seconds > 0 and rate_hz > 0):
        raise ValueError(f"recording seconds and rate must be > 0, got {seconds}, {rate_hz}")
    return lambda T: max(1, int(seconds * rate_hz) // int(T))


def summarize(table: Iterable[Mapping]) -> list[str]:
    """One text line per row (used by the CLI)."""
    return [
        f"{_label(r)}: F1 {r['accuracy']:.3f}, {fmt3(r['energy_per_round_mj'])} mJ, {fmt3(r['time_per_round_s'])} s"
        for r in table
    ]
