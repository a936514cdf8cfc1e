"""``odlstudio accuracy-prior``: the recommender's measured-accuracy table from ``odlstudio loso`` results.

Example::

    odlstudio loso --dataset wisdm2019 --results loso-results
    odlstudio loso --dataset hapt --results loso-results
    odlstudio accuracy-prior --results loso-results            # -> assets/accuracy_prior.json

Per dataset, mode (none, tl, full, auto) and input size T: the mean macro-F1 over the LOSO test subjects,
its standard deviation, the worst subject and n, for the rows of the default settings (the robust round).
The estimator's recommender then predicts F1 from this table (with its spread) instead of the paper's
Table II, and says so.  Exit status: 0 written, 2 no results / bad arguments / cannot write.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "accuracy-prior",
        help="make the recommender's measured-accuracy table from LOSO results",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--results", required=True, help="the folder 'odlstudio loso --results' wrote")
    p.add_argument("--datasets", default="wisdm2019,hapt", help="comma list (default wisdm2019,hapt)")
    p.add_argument("--pers-seeds", default="0", help="personalization seeds to average per subject (default 0)")
    p.add_argument("--out", default=None, help="output JSON (default: the app's assets/accuracy_prior.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.core.accuracy_prior import PriorError, build_prior, write_prior  # noqa: PLC0415
    from app.core.outputs import OutputError, check_output_file  # noqa: PLC0415
    from estimator.recommend import accuracy_prior_path  # noqa: PLC0415

    try:
        seeds = tuple(int(s) for s in args.pers_seeds.split(",") if s.strip())
    except ValueError:
        print(
            f"odlstudio accuracy-prior: --pers-seeds must be a comma list of integers, got {args.pers_seeds!r}",
            file=sys.stderr,
        )
        return 2
    datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
    try:
        out = check_output_file(args.out, "--out", (".json",)) if args.out else accuracy_prior_path()
        table = build_prior(args.results, datasets, seeds or (0,))
        path = write_prior(table, out)
    except (PriorError, OutputError, OSError) as exc:
        print(f"odlstudio accuracy-prior: {exc}", file=sys.stderr)
        return 2
    for name, d in table["datasets"].items():
        cols = d["modes"]
        line = ", ".join(
            f"{m} " + "/".join(f"{v['mean']:.3f}" for _T, v in sorted(cols[m].items(), key=lambda kv: int(kv[0])))
            for m in ("none", "tl", "full", "auto")
            if m in cols
        )
        print(f"{name}: {d['subjects']} subjects; mean F1 by T ascending: {line}")
    if table["missing"]:
        print(f"no results for {', '.join(table['missing'])} (skipped)", file=sys.stderr)
    print(f"wrote {path}")
    return 0
