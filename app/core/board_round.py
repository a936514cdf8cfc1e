"""One training round on a board — upload, train, collect the batch reports, attribute energy, download — in
one implementation (Qt-free).  The Training panel (:class:`app.core.rounds.RoundRunner`) and ``odlstudio
personalize`` (:func:`app.core.personalize.personalize`) both call :func:`run_board_round`; the power panel's D7
view measures with the same functions (:mod:`app.core.energy`).  So one round gets the same per-batch energies
whichever of them shows it.

The steps, on an open :class:`~device.nucleo.client.NucleoClient`:

1. upload the model and the training windows (slot 0; and the test windows, slot 1, when given), CRC-checked;
2. with test windows: the board's evaluation of them (*before*);
3. start the round; when the board answers OUT_OF_RAM, keep a class-stratified subset of the training windows
   that fits what it says is free and try again (twice at most);
4. collect the batch reports until ROUND_DONE, placing each batch on the power timeline
   (:func:`~app.core.energy.align_batches`) and attributing its energy as soon as the samples cover it (so a
   view shows energies while the round runs); at the end, the whole round is aligned once more with every
   edge, and a batch whose interval changed gets its energy again — so the result is the whole-round
   attribution of the reports and the power trace;
5. with test windows: the board's evaluation after training; then the personalized weights (CRC-32 checked).

What happens on the way is told to a :class:`RoundObserver` (progress, each report, each settled batch,
warnings); cancelling (``observer.cancelled()``) aborts the round on the board and raises
:class:`RoundCancelled`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from app.core.energy import BatchRow, PowerTrace, alignment_warnings, attribute_energy, round_totals, with_energy

__all__ = [
    "RoundCancelled",
    "RoundFailed",
    "RoundObserver",
    "RoundResult",
    "RoundSpec",
    "run_board_round",
    "stratified_subset",
    "whole_round_energy",
]


class RoundFailed(RuntimeError):
    """The board refused or ended the round with an error; the message says what."""


class RoundCancelled(Exception):
    """The round was cancelled (the board was told to abort); ``rows`` are the batches reported so far."""

    def __init__(self, rows: Sequence[BatchRow] = ()) -> None:
        super().__init__("cancelled")
        self.rows = list(rows)


@dataclass(frozen=True)
class RoundSpec:
    """How the board trains: ``mode`` is a board training mode (``tl``, ``full``, ``last``, ``mask`` with
    ``layer_indices``)."""

    mode: str
    epochs: int = 2
    batch_size: int = 32
    lr: float = 0.01
    warmup_epochs: int = 0
    warmup_lr: float | None = None
    seed: int = 0
    shuffle: bool = True
    layer_indices: tuple[int, ...] = ()
    procedure: Any = None  # app.core.procedure.Procedure (None: the plain round); needs protocol v2 on the board


@dataclass
class RoundResult:
    """What one round on the board gave.  ``rows``: every batch, energy attributed (``source`` says how);
    ``status``: the board's final status in lower case (``done``…); ``round_info``: the board's plan;
    ``round_done``: its summary; ``before``/``after``: the board's evaluation (``EvalResult``) of the test
    windows, when they were given; ``n_train_used``: training windows the board held."""

    rows: list[BatchRow]
    status: str
    round_info: dict
    round_done: dict
    weights: dict[str, list[np.ndarray]]
    n_train_used: int
    voltage_v: float | None = None
    warnings: list[str] = field(default_factory=list)
    before: Any = None
    after: Any = None
    trace: PowerTrace | None = field(default=None, repr=False)  # the power trace the energy came from
    n_val: int = 0  # validation windows the board held (robust round)
    restore_best: bool = False

    @property
    def validation(self) -> dict | None:
        """A robust round's validation: the starting weights' and the kept weights' (loss, macro-F1)."""
        vals = [r for r in self.rows if r.phase == "val"]
        if not vals:
            return None
        best = [r for r in vals if r.best]
        kept = (best[-1] if best else vals[0]) if self.restore_best else vals[-1]
        return {
            "n_val": int(self.n_val),
            "passes": len(vals),
            "start": {"loss": float(vals[0].loss), "macro_f1": float(vals[0].macro_f1 or 0.0)},
            "kept": {"loss": float(kept.loss), "macro_f1": float(kept.macro_f1 or 0.0), "epoch": int(kept.epoch)},
            "best_epoch": int(self.round_done.get("best_epoch", 0)),
            "epochs_done": int(self.round_done.get("epochs_done", 0)),
        }

    @property
    def totals(self) -> dict:
        """Batches, board seconds, energy, average power, predictions (:func:`~app.core.energy.round_totals`)."""
        return round_totals(self.rows)

    @property
    def alignment(self) -> str:
        """``d7`` when batches were placed by D7 edges, ``host`` by host time only, ``none`` without power."""
        src = {r.source for r in self.rows}
        if src & {"d7", "d7-interp"}:
            return "d7"
        return "host" if "host" in src else "none"


class RoundObserver:
    """What a caller hears from :func:`run_board_round` (every method may be left as is)."""

    def cancelled(self) -> bool:
        """Polled: True to abort the round."""
        return False

    def stage(self, fraction: float, text: str) -> None:
        """Progress before and after training (``fraction`` of the whole round, 0..1)."""

    def evaluated(self, when: str, result: Any) -> None:
        """The board's evaluation of the test windows, ``when`` = ``before`` | ``after``."""

    def started(self, info: Any, t_train: float) -> None:
        """The board accepted the round: its plan (``RoundInfo``) and the host's ``time.monotonic()``."""

    def report(self, row: BatchRow, total: int) -> None:
        """A batch report arrived (``row.index`` + 1 of ``total`` done; energy not yet attributed)."""

    def settled(self, row: BatchRow) -> None:
        """A batch's interval and energy were attributed (again, if the whole-round alignment moved it)."""

    def aborting(self) -> None:
        """Cancelled: the board was told to abort; the round ends when it confirms."""

    def warn(self, text: str) -> None:
        """Something the user should know about the round (data left out, alignment used…)."""


def stratified_subset(y: np.ndarray, n_keep: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n_keep`` windows keeping each class's share (largest remainders)."""
    y = np.asarray(y)
    n = len(y)
    if n_keep >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    out = []
    quota = np.floor(counts * n_keep / n).astype(int)
    rest = n_keep - quota.sum()
    order = np.argsort(-(counts * n_keep / n - quota))
    quota[order[:rest]] += 1
    for c, q in zip(classes, quota):
        idx = np.flatnonzero(y == c)
        out.append(np.sort(rng.choice(idx, int(q), replace=False)))
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


def int16_scale(*xs: np.ndarray) -> float:
    """Scale so the windows fit int16 counts (the sensor's own resolution is coarser)."""
    m = max(float(np.max(np.abs(x))) if x.size else 0.0 for x in xs)
    return max(m, 1e-6) / 32000.0


def run_board_round(
    client: Any,
    arch: Any,
    weights: Mapping[str, Sequence[np.ndarray]],
    train: tuple[np.ndarray, np.ndarray],
    spec: RoundSpec,
    *,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    power: PowerTrace | None = None,
    predict: Callable[[int, int], tuple[float, float]] | None = None,
    observer: RoundObserver | None = None,
    eval_timeout_s: float = 120.0,
    settle_s: float = 3.0,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    val_pass: Callable[[int], tuple[float, float]] | None = None,
) -> RoundResult:
    """Run one round (module documentation).  ``train``/``test``: board windows ``(N, T, C)`` and class
    indices; ``power``: the trace energy is attributed on (None: time only); ``predict(phase, n)``: the
    estimator's ``(seconds, joules)`` of a batch, stored beside the measurement.  Raises
    :class:`RoundFailed` (board refused or ended the round with an error), :class:`RoundCancelled`.
    ``val``: validation windows of a robust round (``spec.procedure``, protocol v2), uploaded after the
    training windows; ``val_pass(n)``: the estimator's ``(seconds, joules)`` of a validation pass."""
    from device.nucleo import protocol as P
    from device.nucleo.client import NucleoError, WaitCancelled

    obs = observer or RoundObserver()
    warnings: list[str] = []

    def warn(text: str) -> None:
        warnings.append(text)
        obs.warn(text)

    def check() -> None:
        if obs.cancelled():
            raise RoundCancelled()

    def upl(lo: float, hi: float, what: str) -> Callable[[int, int], None]:
        def upload_progress(done: int, total: int) -> None:
            check()
            obs.stage(lo + (hi - lo) * done / max(1, total), what)

        return upload_progress

    def evaluate(when: str) -> Any:
        try:
            ev = client.evaluate(1, timeout=eval_timeout_s, cancelled=obs.cancelled)
        except WaitCancelled:
            raise RoundCancelled() from None
        obs.evaluated(when, ev)
        return ev

    x, y = np.asarray(train[0]), np.asarray(train[1])
    if val is not None and len(val[1]):
        xv, yv = np.asarray(val[0]), np.asarray(val[1])
    else:
        xv, yv = x[:0], y[:0]
    n_val = int(len(yv))
    wire = spec.procedure.wire(n_val) if spec.procedure is not None else {}
    scale = int16_scale(x, xv, *(() if test is None else (np.asarray(test[0]),)))
    info = client.info()
    tick_hz = float(info.tick_hz or 1_000_000)

    obs.stage(0.01, "uploading the model")
    client.upload_model(arch, weights, progress=upl(0.01, 0.025, "uploading the model"))
    client.clear_data()
    client.upload_dataset(
        np.concatenate([x, xv]),
        np.concatenate([y, yv]),
        slot=0,
        dtype=P.DType.I16,
        scale=scale,
        progress=upl(0.025, 0.04, "uploading the training windows"),
    )  # a robust round's validation windows last (TRAIN_START n_val)
    if test is not None:
        client.upload_dataset(
            np.asarray(test[0]),
            np.asarray(test[1]),
            slot=1,
            dtype=P.DType.I16,
            scale=scale,
            progress=upl(0.04, 0.045, "uploading the test windows"),
        )
    check()
    before = None
    if test is not None:
        obs.stage(0.045, "evaluating before personalization")
        before = evaluate("before")
        check()

    idx = np.arange(len(y))
    client.drain_events()
    for attempt in range(3):
        a0 = power.covered if power is not None else 0.0
        try:
            rinfo = client.train(
                spec.mode,
                epochs=spec.epochs,
                batch=spec.batch_size,
                lr=spec.lr,
                warmup_epochs=spec.warmup_epochs,
                warmup_lr=spec.warmup_lr,
                shuffle=spec.shuffle,
                seed=spec.seed,
                layer_indices=spec.layer_indices,
                **wire,
            )
            break
        except NucleoError as exc:
            if exc.code != P.ErrorCode.OUT_OF_RAM or attempt == 2:
                raise RoundFailed(f"the board refused the {spec.mode} round: {exc}") from exc
            need, have = exc.error.arg0, exc.error.arg1
            per_window = 1 + x[0].size * 2
            keep = len(idx) - (int(math.ceil((need - have) / per_window)) + 2)
            if keep < min(spec.batch_size, len(y)):
                raise RoundFailed(
                    f"the board refused the {spec.mode} round: {exc} — even {max(keep, 0)} windows would not fit"
                ) from exc
            idx = stratified_subset(y, keep, spec.seed)
            warn(
                f"{spec.mode}: the board's SRAM holds {keep} of {len(y)} training windows "
                f"(round needs {need} B, {have} B available): a class-stratified subset was used"
            )
            client.clear_data(0)
            client.upload_dataset(
                np.concatenate([x[idx], xv]), np.concatenate([y[idx], yv]), slot=0, dtype=P.DType.I16, scale=scale
            )
            client.drain_events()
    anchor = 0.5 * (a0 + power.covered) if power is not None else 0.0
    round_info = {
        "board_round_id": rinfo.round_id,
        "batches_per_epoch": rinfo.batches_per_epoch,
        "total_batches": rinfo.total_batches,
        "mem_bytes": rinfo.mem_bytes,
        "ram_total": rinfo.ram_total,
        "est_ticks": rinfo.est_ticks,
        "sysclk_hz": float(info.sysclk_hz),
        "tick_hz": tick_hz,
        "board": info.board,
        "build": info.build,
        # where the round starts on the power timeline: the host's view (TRAIN_START answered) and the earliest
        # time a round-start edge may have (the trace's end when the round was requested)
        "anchor_t": anchor,
        "earliest_t": a0 - 0.01,
    }
    rows, done_msg = _collect(client, rinfo, power, round_info, predict, obs, warn, settle_s, val_pass)
    round_done = {
        "status": P.RoundStatus(done_msg.status).name.lower(),
        "epochs_done": done_msg.epochs_done,
        "batches_done": done_msg.batches_done,
        "last_loss": done_msg.last_loss,
        "train_accuracy": done_msg.train_accuracy,
        "seconds": (done_msg.end_tick - done_msg.start_tick) / tick_hz,
        "cycles": done_msg.cycles,
        "best_epoch": int(done_msg.best_epoch),
    }
    if done_msg.status != P.RoundStatus.DONE:
        raise RoundFailed(
            f"the board ended the round with status {P.RoundStatus(done_msg.status).name}"
            + (f" (error {done_msg.error})" if done_msg.error else "")
            + f" after {done_msg.batches_done} batches"
        )
    after = None
    if test is not None:
        obs.stage(0.95, "evaluating after personalization")
        after = evaluate("after")
    obs.stage(0.97, "downloading the personalized weights")
    w = client.download_weights(arch)  # CRC-32 checked (IntegrityError otherwise)
    return RoundResult(
        rows=rows,
        status=round_done["status"],
        round_info=round_info,
        round_done=round_done,
        weights=w,
        n_train_used=int(len(idx)),
        voltage_v=power.voltage if power is not None else None,
        warnings=warnings,
        before=before,
        after=after,
        trace=power,
        n_val=n_val,
        restore_best=bool(wire.get("restore_best")),
    )


def whole_round_energy(rows: Sequence[BatchRow], trace: PowerTrace, round_info: Mapping[str, Any]) -> list[BatchRow]:
    """The rows of a round placed and measured on ``trace`` with every edge known (the attribution a round's
    result ends with; ``round_info`` as in :attr:`RoundResult.round_info`)."""
    if not rows:
        return []
    out, _ = attribute_energy(
        rows,
        trace.edges(round_info["earliest_t"]),
        trace.mean_current,
        trace.voltage,
        tick_hz=round_info["tick_hz"],
        round_start_tick=rows[0].start_tick,
        anchor_t=round_info["anchor_t"],
        rate_hz=trace.rate_hz,
        earliest_t=round_info["earliest_t"],
        covered=trace.covered,
    )
    return out


def _collect(
    client: Any,
    rinfo: Any,
    power: PowerTrace | None,
    round_info: Mapping[str, Any],
    predict: Callable[[int, int], tuple[float, float]] | None,
    obs: RoundObserver,
    warn: Callable[[str], None],
    settle_s: float,
    val_pass: Callable[[int], tuple[float, float]] | None = None,
) -> tuple[list[BatchRow], Any]:
    """Batch reports until ROUND_DONE, attributing energy as the power trace covers each batch; then the
    whole-round attribution.  Returns the rows and the RoundDone message (RoundCancelled after an abort)."""
    from device.nucleo import protocol as P

    anchor, earliest, tick_hz = round_info["anchor_t"], round_info["earliest_t"], round_info["tick_hz"]
    total = max(1, int(rinfo.total_batches))
    obs.started(rinfo, time.monotonic())
    rows: list[BatchRow] = []
    measured: set[int] = set()
    round_start_tick: int | None = None
    per_batch = predict(P.Phase.MAIN, 1)[0] * 32 if predict is not None else float(rinfo.est_ticks) / tick_hz / total
    idle_limit = 30.0 + 3.0 * max(per_batch, 1.0)  # no report for this long = stuck
    last_seen = time.monotonic()
    aborted = False
    done_msg = None

    def spans() -> list[tuple[float, float, str]]:
        from app.core.energy import align_batches

        assert power is not None and round_start_tick is not None
        return align_batches(
            rows,
            power.edges(earliest),
            tick_hz=tick_hz,
            round_start_tick=round_start_tick,
            anchor_t=anchor,
            rate_hz=power.rate_hz,
            earliest_t=earliest,
        )

    def settle(row: BatchRow) -> None:
        measured.add(row.index)
        rows[row.index] = row
        obs.settled(row)

    def attribute() -> None:
        if round_start_tick is None or not rows:
            return
        if power is None:
            for r in rows:
                if r.index not in measured:
                    settle(dataclasses.replace(r, source="none"))
            return
        covered = power.covered
        for r, (t0, t1, src) in zip(rows, spans()):
            if r.index in measured:
                continue
            # a batch is settled once its end is in the trace and its end edge seen (or a later batch's)
            if t1 > covered or (src != "d7" and (r.index == len(rows) - 1 or t1 + 1.0 > covered)):
                continue
            settle(with_energy(r, t0, t1, src, power.mean_current(t0, t1), power.voltage))

    while True:
        ev = client.next_event((P.BatchReport, P.ValReport, P.RoundDone), 0.1)
        now = time.monotonic()
        if ev is not None:
            last_seen = now
        if isinstance(ev, P.ValReport):  # a robust round's validation pass: a D7 interval of its own, no update
            if round_start_tick is None:
                round_start_tick = int(ev.start_tick)
            pt, pe = val_pass(int(ev.n)) if val_pass is not None else (None, None)
            row = BatchRow(
                len(rows), "val", int(ev.epoch), 0, int(ev.n), float(ev.loss), int(ev.start_tick),
                int(ev.end_tick), int(ev.cycles), (ev.end_tick - ev.start_tick) / tick_hz, pt, pe,
                macro_f1=float(ev.macro_f1), best=bool(ev.best),
            )  # fmt: skip
            rows.append(row)
            obs.report(row, total)
        elif isinstance(ev, P.BatchReport):
            if round_start_tick is None:
                round_start_tick = int(ev.start_tick)
            pt, pe = predict(ev.phase, ev.n_samples) if predict is not None else (None, None)
            row = BatchRow(
                len(rows),
                "warmup" if ev.phase == P.Phase.WARMUP else "main",
                int(ev.epoch),
                int(ev.batch),
                int(ev.n_samples),
                float(ev.loss),
                int(ev.start_tick),
                int(ev.end_tick),
                int(ev.cycles),
                (ev.end_tick - ev.start_tick) / tick_hz,
                pt,
                pe,
            )
            rows.append(row)
            obs.report(row, total)
        elif isinstance(ev, P.RoundDone):
            done_msg = ev
            break
        if obs.cancelled() and not aborted:  # first: abort at once (the attribution below can wait)
            aborted = True
            obs.aborting()
            try:
                client.abort()
            except Exception:  # noqa: BLE001 - the RoundDone wait below still times out
                pass
            last_seen = now
        attribute()
        if now - last_seen > (10.0 if aborted else idle_limit):
            raise RoundFailed(
                f"no report from the board for {now - last_seen:.0f} s ({len(rows)}/{total} batches done)"
            )
    # let the power trace catch up with the end of the last batch (not for long after a Cancel or a round the
    # board ended with an error: quitting must not wait seconds for the energy of a round that is over)
    if power is not None and rows and round_start_tick is not None:
        ended_early = aborted or done_msg is None or done_msg.status != P.RoundStatus.DONE
        deadline = time.monotonic() + (0.2 if ended_early else settle_s)
        while time.monotonic() < deadline:
            attribute()
            # every batch settled, and (a round that ran to its end) every edge in: a monitor may report an edge
            # after the samples that follow it, so a batch settled on the board's ticks may still get its edge
            if len(measured) == len(rows) and (ended_early or len(power.edges(earliest)) >= len(rows) + 1):
                break
            time.sleep(0.05)
        # the whole round, every edge known: a batch whose interval moved gets its energy again
        final = whole_round_energy(rows, power, round_info)
        for r, f in zip(list(rows), final):
            if r.index not in measured or (r.t0, r.t1, r.source) != (f.t0, f.t1, f.source):
                settle(f)
    for w in alignment_warnings(rows):
        warn(w)
    if aborted or done_msg is None:
        raise RoundCancelled(rows)
    return rows, done_msg
