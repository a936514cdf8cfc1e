"""The recommender's measured-accuracy table (issue 17): LOSO results -> ``assets/accuracy_prior.json``.

``build_prior(results_dir, datasets)`` reads the ``odlstudio loso`` rows of the default settings (the
robust procedure, every personalization seed listed) and summarises per (dataset, mode, T) the macro-F1
over subjects: mean, standard deviation, worst subject, n.  A subject run with several seeds counts once,
with its mean over the seeds.  :class:`estimator.recommend.LosoPrior` reads the table.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from app.core import loso
from app.core.outputs import atomic_path

SCHEMA = 1


class PriorError(ValueError):
    """No usable LOSO results; the message says which and the command to make them."""


def build_prior(
    results_dir: str | Path,
    datasets: Sequence[str] = ("wisdm2019", "hapt"),
    pers_seeds: Sequence[int] = (0,),
    base: loso.LosoConfig | None = None,
) -> dict:
    """The table from the rows of ``base`` (default: ``odlstudio loso``'s defaults) for each dataset."""
    results_dir = Path(results_dir)
    out: dict = {
        "schema": SCHEMA,
        "model_family": "paper_cnn",
        "metric": "macro-F1 on each test subject's chronological test split (LOSO)",
        "generated_by": "odlstudio accuracy-prior --results "
        + str(results_dir)
        + f" --datasets {','.join(datasets)} --pers-seeds {','.join(map(str, pers_seeds))}",
        "generated_at": time.strftime("%Y-%m-%d"),
        "pers_seeds": list(map(int, pers_seeds)),
        "procedure": (base or loso.LosoConfig()).procedure.to_dict(),
        "procedure_label": (base or loso.LosoConfig()).procedure.label().split(":")[0] + " round",
        "datasets": {},
    }
    if not datasets:
        raise PriorError(f"--datasets: give at least one of {', '.join(loso.DATASETS)}")
    missing = []
    for name in datasets:
        if name not in loso.DATASETS:
            raise PriorError(f"--datasets: {name!r} is not one of {', '.join(loso.DATASETS)}")
        per: dict[tuple, list[float]] = {}
        settings = None
        for s in pers_seeds:
            cfg = replace(base or loso.LosoConfig(), dataset=name, pers_seed=int(s))
            settings = settings or cfg.settings()
            for r in loso.read_rows(loso.results_path(results_dir, name), cfg.settings_hash()):
                per.setdefault((r["mode"], int(r["T"]), str(r["subject"])), []).append(float(r["macro_f1"]))
        if not per:
            missing.append(name)
            continue
        modes: dict = {}
        subjects = set()
        for (mode, T, subj), vals in per.items():
            modes.setdefault(mode, {}).setdefault(T, []).append(float(np.mean(vals)))
            subjects.add(subj)
        out["datasets"][name] = {
            "description": loso.DATASETS[name].description,
            "subjects": len(subjects),
            "settings": settings,
            "modes": {
                mode: {
                    str(T): {
                        "mean": round(float(np.mean(v)), 4),
                        "std": round(float(np.std(v)), 4),
                        "min": round(float(np.min(v)), 4),
                        "n": len(v),
                    }
                    for T, v in sorted(by_T.items())
                }
                for mode, by_T in sorted(modes.items())
            },
        }
    if not out["datasets"]:
        raise PriorError(
            f"{results_dir}: no 'odlstudio loso' rows with the default settings for {', '.join(missing)} "
            f"(run: odlstudio loso --dataset {missing[0]} --results {results_dir})"
        )
    out["missing"] = missing
    return out


def write_prior(table: dict, path: str | Path) -> Path:
    """Write the table whole or not at all: a full disk leaves the previous table (and no temporary file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path
