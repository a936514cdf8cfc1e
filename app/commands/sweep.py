"""``odlstudio sweep``: a grid of LOSO cells (datasets, T, modes, seeds, any training hyper-parameter),
resumable, on the local process pool or on Ray.

Example::

    odlstudio sweep study.toml --jobs 2                          # local pool (default)
    odlstudio sweep study.toml --executor ray                    # a local Ray
    odlstudio sweep study.toml --executor ray --address auto     # the Ray cluster this machine is part of
    odlstudio sweep study.toml --dry-run                         # how many cells are done / to do
    odlstudio sweep study.toml --report                          # Markdown tables + plots of the store
    odlstudio sweep sweep-results/study.jsonl --report           # same, from a results store

The spec is a TOML file (see docs/sweep.md)::

    [grid]
    dataset = ["hapt", "wisdm2019"]
    T = [20, 40]
    mode = ["none", "tl", "full"]
    seed = [0, 1]
    subjects = "all"
    lr = [0.01, 0.003]          # any LOSO training setting, by name

Each cell (dataset, T, subject, mode, settings) is keyed by a hash of its inputs; rows are appended to
``<results>/<name>.jsonl`` as each task (one general model and its cells) finishes, so a re-run skips
finished cells and a killed sweep resumes.  Progress with ETA on stderr.  ``--report`` writes
``<name>_report.md`` (one table per setting, like docs/results.md, plus an overview) and one PNG per
table.  Exit status: 0 ok, 1 some cells failed (the rest is stored), 2 bad spec, arguments, data or
store, 130 interrupted (finished tasks are kept: run again to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from app.commands._argtypes import int_range


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="resumable grid of LOSO cells (datasets, T, modes, seeds, hyper-parameters), local pool or Ray",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", help="the sweep spec (.toml), or with --report a results store (.jsonl)")
    p.add_argument(
        "--results", default="sweep-results", help="results folder (default ./sweep-results); reused to resume"
    )
    add_executor_args(p)
    p.add_argument("--report", action="store_true", help="do not run: write the Markdown report and plots")
    p.add_argument("--dry-run", action="store_true", help="do not run: say how many cells are done and to do")
    p.add_argument("--no-plot", action="store_true", help="--report without PNG plots")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_executor_args(p) -> None:
    """``--executor``, ``--jobs``, ``--address``: shared with ``odlstudio loso``."""
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local process pool (default) or Ray (pip install 'odl-studio[cluster]')",
    )
    p.add_argument(
        "--jobs",
        type=int_range(1, 4096),
        default=2,
        help="local worker processes, or CPUs of a local Ray (default 2)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="with --executor ray: 'auto' (the cluster this machine is in) or ray://host:port; "
        "default: start a local Ray",
    )


def executor_from_args(args):
    """The executor the arguments ask for (raises ExecutorError with a clear message)."""
    from app.core.executors import make_executor  # noqa: PLC0415

    return make_executor(args.executor, args.jobs, args.address)


def run(args: argparse.Namespace) -> int:
    from app.core.executors import quiet_stdout  # noqa: PLC0415

    if args.report:
        return report(args)
    # the whole command, not only the run: a Ray driver already connected in this process prints at any moment
    with quiet_stdout() as stdout:
        return _run(args, stdout)


def _run(args: argparse.Namespace, stdout: TextIO) -> int:
    from app.core import sweep  # noqa: PLC0415
    from app.core.executors import ExecutorError  # noqa: PLC0415
    from app.core.outputs import check_output_dir  # noqa: PLC0415
    from app.core.sweepstore import StoreError  # noqa: PLC0415

    def fail(msg: str, code: int = 2) -> int:
        print(f"odlstudio sweep: {msg}", file=sys.stderr)
        return code

    try:
        spec = sweep.load_spec(args.spec)
        if not args.dry_run:
            check_output_dir(args.results, "--results")  # before hours of work
        executor = executor_from_args(args)
    except (ValueError, OSError, ExecutorError) as exc:
        return fail(str(exc))
    log = None if args.json else (lambda m: print(f"\nodlstudio sweep: {m}", file=sys.stderr))
    try:
        if args.dry_run:
            res = sweep.run_sweep(spec, args.results, executor, progress=False, dry_run=True)
        else:
            with executor:
                res = sweep.run_sweep(spec, args.results, executor, progress=not args.quiet, log=log)
    except KeyboardInterrupt:
        return fail("interrupted; the finished tasks are stored: run the same command again to resume", 130)
    except (ValueError, OSError, ExecutorError, StoreError) as exc:
        return fail(str(exc))
    out = res.as_dict()
    if args.json:
        print(json.dumps(out), file=stdout)
    elif args.dry_run:
        print(
            f"{spec.name}: {res.cells} cells, {res.cells_resumed} in {res.store}, "
            f"{res.tasks_todo} tasks (general models) to run, {res.tasks_skipped} complete",
            file=stdout,
        )
    else:
        groups = sweep.report_groups(res.rows)
        if groups:
            print(sweep.overview_table(groups), file=stdout)
        print(
            f"{len(res.rows)}/{res.cells} cells in {res.store}; wall {res.wall_s:.0f} s for {res.tasks_run} tasks "
            f"({res.cells_resumed} cells resumed) on {res.executor} ({res.workers} workers)"
            + (f"; {len(res.errors)} failed (run again to retry)" if res.errors else ""),
            file=stdout,
        )
        print(f"tables and plots: odlstudio sweep {args.spec} --results {args.results} --report", file=stdout)
    return 1 if res.errors else 0


def report(args: argparse.Namespace) -> int:
    """``--report``: Markdown tables (docs/results.md style) and plots from a results store."""
    from app.core import loso, sweep  # noqa: PLC0415

    src = Path(args.spec)
    try:
        if src.suffix == ".jsonl":
            path = src
            if not path.is_file():
                raise sweep.SweepError(f"{path}: no such results store")
            name = path.stem
        else:
            spec = sweep.load_spec(src)
            path = sweep.store_path(args.results, spec)
            name = spec.name
            if not path.is_file():
                raise sweep.SweepError(f"{path}: no results yet (run: odlstudio sweep {src} --results {args.results})")
        rows, damaged, keyless = sweep.read_rows_for_report(path)
    except (ValueError, OSError) as exc:
        print(f"odlstudio sweep: {exc}", file=sys.stderr)
        return 2
    groups = sweep.report_groups(rows)
    paper = loso.paper_table_ii()
    out_dir = path.parent
    lines = [
        f"# Sweep {name}",
        "",
        f"{len(rows)} rows from `{path}`"
        + (f" ({damaged} damaged lines skipped)" if damaged else "")
        + (f" ({keyless} rows without a cell key ignored)" if keyless else "")
        + ". Macro-F1, mean ± std over subjects (and seeds, pooled); paper columns: Table II (WISDM v1.1).",
        "",
    ]
    plots = []
    if len(groups) > 1:
        lines += ["## Overview (mean over T, subjects and seeds)", "", sweep.overview_table(groups), ""]
    for g in groups:
        lines += [
            f"## {g.title}",
            "",
            f"{len(g.subjects)} subjects, seeds {', '.join(map(str, g.seeds))}, {len(g.rows)} rows",
            "",
            loso.markdown_table(g.summary, paper),
            "",
        ]
        if not args.no_plot and g.rows:
            from app.commands.loso import plot_png  # noqa: PLC0415

            png = out_dir / f"{name}_{g.slug}.png"
            try:
                plot_png(g.summary, png, f"LOSO macro-F1, {g.title}", paper)
                plots.append(str(png))
                lines += [f"![{g.title}]({png.name})", ""]
            except Exception as exc:  # noqa: BLE001 - the plot is a convenience; the numbers are written
                print(f"odlstudio sweep: plot not written: {exc}", file=sys.stderr)
    md = "\n".join(lines).rstrip() + "\n"
    md_path = out_dir / f"{name}_report.md"
    try:
        md_path.write_text(md, encoding="utf-8")
    except OSError as exc:
        print(f"odlstudio sweep: cannot write {md_path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {
                    "store": str(path),
                    "rows": len(rows),
                    "report": str(md_path),
                    "plots": plots,
                    "groups": [{"title": g.title, "summary": g.summary} for g in groups],
                }
            )
        )
    else:
        print(md, end="")
    return 0
