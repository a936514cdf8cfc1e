"""Fit a device profile's cycle costs and power model from measured training batches.

Time model (linear in the costs, so a non-negative least-squares fit):

    seconds · f  =  Σ_g c_g · X_g  +  fixed cycles  +  B · io_s(window) · f

where ``X_g = B · Σ_{op ∈ g} N_op`` (per-sample counts from :mod:`estimator.ops`) and ``g`` runs
over *groups* of op types sharing one cost.  Op types outside every group keep the base profile's
cost (their cycles are the "fixed" part; by default ``elementwise`` and ``update``).  With
``groups='auto'`` the finest grouping of :data:`GROUPINGS` (per op type, then coarser, down to a
single cost per MAC) is used whose design matrix has full column rank, in which every group
carries at least :data:`MIN_GROUP_SHARE` of the MACs of some record, and whose records vary enough
in their mix of groups (:data:`MIN_SHARE_SPREAD`): Table III cannot tell
``dense_fwd`` from ``dense_dw`` apart (they always occur together), and a group that is only a few
per cent of every record (e.g. the Dense backward in TL-only records) is fitted to noise and then
extrapolates badly to configurations where it dominates.

Power model: ``I = I0 + k·f`` with ``I = P / V``, from the records that carry an energy or an
average power.  With two or more distinct clocks both I0 and k are fitted; with one clock I0 keeps
the base value and k is fitted (if that would make k negative, I0 is set to 0 instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence

import numpy as np

from estimator.arch import Arch
from estimator.core import Trainable, _names, mode_label
from estimator.ops import MAC_TYPES, _prod, count_ops
from estimator.profiles import DeviceProfile, get_profile

# Candidate groupings, finest first.
GROUPINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "per-op": {k: (k,) for k in MAC_TYPES},
    "paper4": {
        "conv_fwd": ("conv_fwd",),
        "conv_dw": ("conv_dw",),
        "conv_dx": ("conv_dx",),
        "dense": ("dense_fwd", "dense_dw", "dense_dx"),
    },
    "fwd-bwd-dense": {
        "conv_fwd": ("conv_fwd",),
        "conv_bwd": ("conv_dw", "conv_dx"),
        "dense": ("dense_fwd", "dense_dw", "dense_dx"),
    },
    "fwd-bwd": {"fwd": ("conv_fwd", "dense_fwd"), "bwd": ("conv_dw", "conv_dx", "dense_dw", "dense_dx")},
    "conv-dense": {"conv": ("conv_fwd", "conv_dw", "conv_dx"), "dense": ("dense_fwd", "dense_dw", "dense_dx")},
    "single": {"mac": MAC_TYPES},
}


MIN_GROUP_SHARE = 0.10
# Smallest singular value of the records' share matrix (rows: records, columns: each group's share of
# the record's MACs).  Below it the records barely vary in mix, so the groups cannot be separated
# (e.g. Full-only records: forward and backward shares stay ~1:2 at every T).
MIN_SHARE_SPREAD = 0.025


class CalibrationError(ValueError):
    """Records that cannot be fitted; the message says which record or what is missing."""


@dataclass(frozen=True)
class BatchRecord:
    """One measured training batch (what the board's per-batch record and the LPM01A give)."""

    arch: Arch
    trainable: Trainable
    batch_size: int
    seconds: float
    clock_hz: float | None = None  # None: the base profile's clock
    energy_j: float | None = None
    avg_power_w: float | None = None
    voltage_v: float | None = None  # None: the base profile's voltage
    label: str = ""

    def power_w(self) -> float | None:
        if self.avg_power_w is not None:
            return float(self.avg_power_w)
        if self.energy_j is not None and self.seconds > 0:
            return float(self.energy_j) / float(self.seconds)
        return None

    def name(self) -> str:
        return self.label or f"{self.arch.name} {mode_label(self.arch, self.trainable)} B={self.batch_size}"

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "record") -> "BatchRecord":
        """From JSON: ``arch`` is an :class:`Arch` dict, or ``{"paper_cnn": T}`` for the paper's model."""
        try:
            a = d["arch"]
            if isinstance(a, Arch):
                arch = a
            elif isinstance(a, Mapping) and "paper_cnn" in a:
                from estimator.arch import paper_cnn

                arch = paper_cnn(int(a["paper_cnn"]), int(a.get("n_classes", 6)))
            else:
                arch = Arch.from_dict(a)
            return cls(
                arch=arch,
                trainable=d.get("trainable", "tl"),
                batch_size=int(d["batch_size"]),
                seconds=float(d["seconds"]),
                clock_hz=None if d.get("clock_hz") is None else float(d["clock_hz"]),
                energy_j=None if d.get("energy_j") is None else float(d["energy_j"]),
                avg_power_w=None if d.get("avg_power_w") is None else float(d["avg_power_w"]),
                voltage_v=None if d.get("voltage_v") is None else float(d["voltage_v"]),
                label=str(d.get("label", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"{where}: {exc.__class__.__name__}: {exc}") from exc


@dataclass(frozen=True)
class CalibrationReport:
    grouping: str
    groups: dict[str, tuple[str, ...]]
    costs: dict[str, float]  # fitted cycles per op, by group
    time_rows: list[dict]
    power_rows: list[dict]
    i0_a: float
    k_a_per_hz: float
    notes: tuple[str, ...] = field(default=())

    @property
    def time_rms_rel(self) -> float:
        return _rms([r["rel_error"] for r in self.time_rows])

    @property
    def time_max_abs_rel(self) -> float:
        return max((abs(r["rel_error"]) for r in self.time_rows), default=0.0)

    @property
    def power_rms_rel(self) -> float | None:
        return _rms([r["rel_error"] for r in self.power_rows]) if self.power_rows else None

    def to_dict(self) -> dict:
        return {
            "grouping": self.grouping,
            "groups": {k: list(v) for k, v in self.groups.items()},
            "costs_cycles_per_op": dict(self.costs),
            "time_rows": list(self.time_rows),
            "time_rms_rel": self.time_rms_rel,
            "time_max_abs_rel": self.time_max_abs_rel,
            "power_rows": list(self.power_rows),
            "power_rms_rel": self.power_rms_rel,
            "i0_a": self.i0_a,
            "k_a_per_hz": self.k_a_per_hz,
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        lines = [f"grouping {self.grouping}: " + ", ".join(f"{g} {c:.3g} cyc/op" for g, c in self.costs.items())]
        for r in self.time_rows:
            lines.append(
                f"  {r['label']}: measured {r['measured_s']:.4g} s, model {r['predicted_s']:.4g} s ({100 * r['rel_error']:+.2f} %)"
            )
        lines.append(f"time residuals: RMS {100 * self.time_rms_rel:.2f} %, max {100 * self.time_max_abs_rel:.2f} %")
        if self.power_rows:
            lines.append(
                f"power: I0 = {self.i0_a * 1e6:.1f} µA, k = {self.k_a_per_hz * 1e12:.1f} µA/MHz, RMS {100 * (self.power_rms_rel or 0):.2f} %"
            )
        return "\n".join(lines)


def _rms(xs: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in xs) / len(xs)) if xs else 0.0


def nnls(A: np.ndarray, b: np.ndarray, max_iter: int = 500) -> np.ndarray:
    """Non-negative least squares (Lawson–Hanson active set): argmin ||A x − b|| subject to x ≥ 0."""
    m, n = A.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = A.T @ (b - A @ x)
    tol = 10 * np.finfo(float).eps * np.linalg.norm(A, 1) * max(m, n)
    for _ in range(max_iter):
        if passive.all() or (w[~passive] <= tol).all():
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        w = A.T @ (b - A @ x)
    return x


def _record_parts(rec: BatchRecord, base: DeviceProfile) -> tuple[dict[str, float], float, float, float]:
    """Per-batch op counts (MAC types), fixed cycles from the base costs of the other types, the
    I/O seconds and the clock."""
    if rec.batch_size < 1:
        raise CalibrationError(f"{rec.name()}: batch_size must be >= 1")
    if not (math.isfinite(rec.seconds) and rec.seconds > 0):
        raise CalibrationError(f"{rec.name()}: measured seconds must be > 0, got {rec.seconds}")
    f = float(rec.clock_hz or base.clock_hz)
    ops = count_ops(rec.arch, _names(rec.arch, rec.trainable))
    per_batch = ops.per_batch(rec.batch_size)
    macs = {k: float(per_batch[k]) for k in MAC_TYPES}
    fixed = (
        base.cycles["elementwise"] * per_batch["elementwise"] - base.cycles["elementwise"] * ops.update["elementwise"]
    )
    fixed += base.cycles["update"] * ops.update["elementwise"]
    io = rec.batch_size * base.io_s(_prod(rec.arch.input_shape))
    return macs, fixed, io, f


def _design(records: Sequence[BatchRecord], base: DeviceProfile, groups: Mapping[str, Sequence[str]]):
    grouped = {op for ops in groups.values() for op in ops}
    X, y = [], []
    for rec in records:
        macs, fixed, io, f = _record_parts(rec, base)
        fixed += sum(base.cycles[k] * macs[k] for k in MAC_TYPES if k not in grouped)  # kept at the base cost
        X.append([sum(macs[k] for k in ops) for ops in groups.values()])
        y.append((rec.seconds - io) * f - fixed)
    return np.asarray(X, float), np.asarray(y, float)


def _full_rank(X: np.ndarray) -> bool:
    if X.shape[0] < X.shape[1]:
        return False
    norms = np.linalg.norm(X, axis=0)
    if (norms == 0).any():
        return False
    s = np.linalg.svd(X / norms, compute_uv=False)
    return bool(s[-1] > 1e-9 * s[0])


def _identifiable(X: np.ndarray) -> bool:
    """Full column rank, every group >= MIN_GROUP_SHARE of some record's MACs, and enough spread."""
    if not _full_rank(X):
        return False
    share = X / np.maximum(X.sum(axis=1, keepdims=True), 1e-300)
    if not (share.max(axis=0) >= MIN_GROUP_SHARE).all():
        return False
    if X.shape[1] == 1:
        return True
    return bool(np.linalg.svd(share, compute_uv=False)[-1] >= MIN_SHARE_SPREAD)


def _active_groups(
    records: Sequence[BatchRecord], base: DeviceProfile, grouping: Mapping[str, Sequence[str]]
) -> dict[str, tuple[str, ...]]:
    """Drop groups whose ops never occur in the records (they keep the base cost)."""
    X, _ = _design(records, base, grouping)
    return {g: tuple(ops) for (g, ops), col in zip(grouping.items(), X.T) if np.any(col > 0)}


def calibrate(
    records: Iterable[BatchRecord],
    base: DeviceProfile | str = "paper",
    *,
    groups: str | Mapping[str, Sequence[str]] = "auto",
    name: str | None = None,
    fit_power: bool = True,
) -> tuple[DeviceProfile, CalibrationReport]:
    """Fit cycle costs (and the power model) from measured batches; returns the new profile and the
    residual report.  ``groups``: ``'auto'``, a key of :data:`GROUPINGS`, or a mapping
    ``group -> MAC op types`` (op types not in any group keep the base profile's cost)."""
    recs = list(records)
    if not recs:
        raise CalibrationError("no records to calibrate from")
    base_p = get_profile(base)
    notes: list[str] = []
    if isinstance(groups, str):
        if groups == "auto":
            chosen = None
            for gname, grouping in GROUPINGS.items():
                active = _active_groups(recs, base_p, grouping)
                if active and _identifiable(_design(recs, base_p, active)[0]):
                    chosen = (gname, active)
                    break
            if chosen is None:
                raise CalibrationError("records contain no MAC work to fit (all op counts are zero)")
            gname, active = chosen
        elif groups in GROUPINGS:
            gname, active = groups, _active_groups(recs, base_p, GROUPINGS[groups])
        else:
            raise CalibrationError(f"unknown grouping {groups!r} (known: auto, {', '.join(GROUPINGS)})")
    else:
        gname = "custom"
        for g, ops in groups.items():
            bad = [o for o in ops if o not in MAC_TYPES]
            if bad:
                raise CalibrationError(
                    f"group {g!r}: op types {bad} cannot be fitted (MAC op types: {', '.join(MAC_TYPES)})"
                )
        active = {g: tuple(ops) for g, ops in groups.items()}
    X, y = _design(recs, base_p, active)
    if not _full_rank(X):
        notes.append(f"grouping {gname} is rank-deficient for these records: the costs are not unique")
    costs_vec = nnls(X, y)
    costs = {g: float(c) for g, c in zip(active, costs_vec)}
    cycles = dict(base_p.cycles)
    for g, ops in active.items():
        for op in ops:
            cycles[op] = costs[g]
    untouched = [k for k in MAC_TYPES if not any(k in ops for ops in active.values())]
    if untouched:
        notes.append(f"not in the records, kept from {base_p.name}: {', '.join(untouched)}")

    # --- power ---------------------------------------------------------------------------------
    i0, k = base_p.i0_a, base_p.k_a_per_hz
    pw = [(r, p) for r in recs if (p := r.power_w()) is not None]
    if fit_power and pw:
        freqs = np.array([float(r.clock_hz or base_p.clock_hz) for r, _ in pw])
        amps = np.array([p / float(r.voltage_v or base_p.voltage_v) for r, p in pw])
        if len(set(freqs.tolist())) >= 2:
            sol = nnls(np.column_stack([np.ones_like(freqs), freqs / 1e6]), amps)
            i0, k = float(sol[0]), float(sol[1]) / 1e6
        else:
            k = float(np.mean(amps) - i0) / freqs[0]
            if k < 0:
                i0, k = 0.0, float(np.mean(amps)) / freqs[0]
                notes.append("one clock only: measured current below the base profile's I0, I0 set to 0, k fitted")
            else:
                notes.append("one clock only: I0 kept from the base profile, k fitted")
    profile = replace(
        base_p,
        name=name or f"{base_p.name}-calibrated",
        cycles=cycles,
        i0_a=i0,
        k_a_per_hz=k,
        source=f"calibrated from {len(recs)} measured batches (grouping {gname}) on top of {base_p.name!r}",
        meta={"calibration": {"grouping": gname, "n_records": len(recs)}},
    )
    time_rows, power_rows = evaluate(profile, recs)
    report = CalibrationReport(gname, active, costs, time_rows, power_rows, i0, k, tuple(notes))
    return profile, report


def evaluate(profile: DeviceProfile | str, records: Iterable[BatchRecord]) -> tuple[list[dict], list[dict]]:
    """Residuals of a profile on measured records: (time rows, power rows)."""
    from estimator.core import time_per_batch_s

    p = get_profile(profile)
    time_rows, power_rows = [], []
    for rec in records:
        f = float(rec.clock_hz or p.clock_hz)
        pred = time_per_batch_s(rec.arch, _names(rec.arch, rec.trainable), rec.batch_size, p, f)
        time_rows.append(
            {
                "label": rec.name(),
                "measured_s": rec.seconds,
                "predicted_s": pred,
                "error_s": pred - rec.seconds,
                "rel_error": (pred - rec.seconds) / rec.seconds,
            }
        )
        pw = rec.power_w()
        if pw is not None:
            v = float(rec.voltage_v or p.voltage_v)
            pp = v * p.current_a(f)
            power_rows.append({"label": rec.name(), "measured_w": pw, "predicted_w": pp, "rel_error": (pp - pw) / pw})
    return time_rows, power_rows
