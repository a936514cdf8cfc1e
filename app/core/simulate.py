"""Quick host-side simulation of personalization on a user's own labelled data: measured macro-F1 per
(input size T, mode, epochs), usable as the estimator recommender's accuracy model.

    sim = simulate(recordings, models={20: lm20, 40: lm40}, modes=("tl", "full"), epochs=(1, 2, 5, 10))
    sim.table[(20, "full", 5)]         # macro-F1 on the user's chronological test split
    sim.none[20]                       # the general model before personalization
    estimator.recommend(..., accuracy=sim.accuracy_model())   # MeasuredAccuracy

For every T the user's recording is split chronologically per activity (the same split ``odlstudio
personalize`` uses), the general model for T is personalized with the paper's recipe on the host engine
(``warmup_epochs`` on the last Dense layer, then the mode) and evaluated after each epoch listed in
``epochs`` — one training run per (T, mode) covers every epoch count.  Deterministic for a seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Literal, Mapping, Protocol, Sequence, TypeAlias

from app.core import datasets as ds

if TYPE_CHECKING:
    import numpy as np

    from estimator.arch import Arch
    from estimator.recommend import LosoPrior, MeasuredAccuracy, TableIIPrior


class ModelLike(Protocol):
    """A :class:`~app.core.models.LoadedModel`, or anything with its ``arch`` and ``weights`` (and, if it has
    one, the ``prepare`` its windows go through)."""

    @property
    def arch(self) -> Arch: ...

    @property
    def weights(self) -> Mapping[str, Sequence[np.ndarray]]: ...


# per T: a model, or an (Arch, weights) pair (strings: Arch and numpy are imported for the type checker only)
ModelOrPair: TypeAlias = "ModelLike | tuple[Arch, Mapping[str, Sequence[np.ndarray]]]"
ModelsLike: TypeAlias = "Mapping[int, ModelOrPair] | Callable[[int], ModelOrPair | None]"


@dataclass
class SimulationResult:
    table: dict[tuple[int, str, int], float]  # (T, mode, epochs) -> macro-F1
    accuracy: dict[tuple[int, str, int], float]
    none: dict[int, float]  # T -> macro-F1 of the general model
    n_train: dict[int, int]
    n_test: dict[int, int]
    seconds: float
    settings: dict = field(default_factory=dict)

    def accuracy_model(
        self, fallback: TableIIPrior | LosoPrior | None | Literal["default"] = "default"
    ) -> MeasuredAccuracy:
        """An :class:`estimator.recommend.MeasuredAccuracy` over :attr:`table` (plus ``(T, mode, 0)``
        = the general model), falling back to the Table II prior for configurations not simulated."""
        from estimator.recommend import MeasuredAccuracy, default_accuracy  # noqa: PLC0415

        table = dict(self.table)
        for T, mode, _e in self.table:
            table[(T, mode, 0)] = self.none[T]
        fb = default_accuracy() if fallback == "default" else fallback
        return MeasuredAccuracy(table, fb)

    def __call__(self, input_size: int, mode: str, epochs: int) -> float:
        """Callable accuracy model: the measured value for the nearest simulated epoch count ≤ ``epochs``
        (the largest simulated one beyond it) at this T and mode; KeyError if T/mode was not simulated."""
        have = sorted(e for (T, m, e) in self.table if T == int(input_size) and m == mode)
        if not have:
            raise KeyError(f"T={input_size}, mode={mode} was not simulated")
        below = [e for e in have if e <= int(epochs)]
        if not below:
            return self.none[int(input_size)]
        return self.table[(int(input_size), mode, below[-1])]

    def to_dict(self) -> dict:
        return {
            "table": [
                {"T": T, "mode": m, "epochs": e, "macro_f1": v, "accuracy": self.accuracy[(T, m, e)]}
                for (T, m, e), v in sorted(self.table.items())
            ],
            "none": {str(T): v for T, v in self.none.items()},
            "n_train": {str(k): v for k, v in self.n_train.items()},
            "n_test": {str(k): v for k, v in self.n_test.items()},
            "seconds": self.seconds,
            "settings": self.settings,
        }


def _model_for(
    models: ModelsLike, T: int
) -> tuple[Arch, Mapping[str, Sequence[np.ndarray]], Callable[[np.ndarray], np.ndarray] | None, tuple[str, ...]]:
    lm = models(T) if callable(models) else models.get(T)
    if lm is None:
        raise ValueError(
            f"no general model for T={T} (have: {', '.join(map(str, models)) if not callable(models) else '?'})"
        )
    if isinstance(lm, tuple):
        arch, weights = lm  # (Arch, weights)
        return arch, weights, None, tuple(arch.classes)
    return lm.arch, lm.weights, getattr(lm, "prepare", None), tuple(lm.arch.classes)


class TooLittleData(ValueError):
    """An input size whose labelled windows leave no training or no test window (a caller simulating several
    sizes keeps the others: the Estimator panel)."""


def simulate(
    recordings: ds.RecordingSet,
    models: ModelsLike,
    sizes: Iterable[int] | None = None,
    modes: Sequence[str] = ("tl", "full"),
    epochs: Sequence[int] = (1, 2, 5, 10),
    warmup_epochs: int = 2,
    lr: float = 0.01,
    batch: int = 32,
    train_fraction: float = 0.6,
    seed: int = 0,
    max_train_windows: int | None = None,
) -> SimulationResult:
    """Measure macro-F1 per (T, mode, epochs) on one user's ``recordings`` (activities already named
    like the models' classes).  ``models``: ``{T: LoadedModel or (Arch, weights)}`` or a callable
    ``T -> model``; ``sizes`` default: the mapping's keys.  ``max_train_windows`` caps the local
    training set (class-stratified) to keep the simulation quick."""
    from app.core.board_round import stratified_subset  # noqa: PLC0415
    from app.core.loso import personalize_host, score  # noqa: PLC0415

    if sizes is None:
        if callable(models):
            raise ValueError("sizes must be given when models is a callable")
        sizes = sorted(models)
    sizes = [int(T) for T in sizes]
    epochs = sorted({int(e) for e in epochs})
    if not epochs or epochs[0] < 1:
        raise ValueError(f"epochs must be integers >= 1, got {epochs}")
    bad = [m for m in modes if m not in ("tl", "full", "last")]
    if bad:
        raise ValueError(f"modes {', '.join(map(str, bad))} not allowed (tl, full, last)")
    if len(recordings.subjects()) != 1:
        raise ValueError(f"simulate() takes one user's recordings, got subjects {recordings.subjects()}")
    t0 = time.perf_counter()
    res = SimulationResult(
        {},
        {},
        {},
        {},
        {},
        0.0,
        {
            "modes": list(modes),
            "epochs": epochs,
            "warmup_epochs": warmup_epochs,
            "lr": lr,
            "batch": batch,
            "train_fraction": train_fraction,
            "seed": seed,
        },
    )
    for T in sizes:
        arch, weights, prepare, classes = _model_for(models, T)
        if int(arch.input_size) != T:
            raise ValueError(f"the model given for T={T} takes T={arch.input_size}")
        train, test = ds.personal_split(recordings, T, train_fraction, classes)
        if len(train) == 0 or len(test) == 0:
            raise TooLittleData(f"T={T}: {len(train)} training and {len(test)} test windows — too little data")
        x_tr, x_te = (prepare(train.x), prepare(test.x)) if prepare else (train.x, test.x)
        y_tr = train.y
        if max_train_windows is not None and len(y_tr) > max_train_windows:
            keep = stratified_subset(y_tr, int(max_train_windows), seed)
            x_tr, y_tr = x_tr[keep], y_tr[keep]
        res.n_train[T], res.n_test[T] = int(len(y_tr)), int(len(test))
        res.none[T] = score(personalize_host(arch, weights, x_tr, y_tr, "none", 0), x_te, test.y)["macro_f1"]
        for mode in modes:

            def record(k: int, model, T=T, mode=mode) -> None:
                if k in epochs:
                    s = score(model, x_te, test.y)
                    res.table[(T, mode, k)] = s["macro_f1"]
                    res.accuracy[(T, mode, k)] = s["accuracy"]

            personalize_host(
                arch, weights, x_tr, y_tr, mode, epochs[-1], warmup_epochs, lr, batch, seed, on_epoch=record
            )
    res.seconds = round(time.perf_counter() - t0, 3)
    return res
