"""Command-line options of the personalization procedure (shared by ``personalize`` and ``loso``)."""

from __future__ import annotations

import argparse

from app.commands._argtypes import finite_float, int_range


def add_procedure_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "procedure",
        "how TL/Full rounds train (default: the robust round of docs/personalize.md; --procedure plain is the "
        "paper's recipe; the other options change one part of the chosen procedure)",
    )
    g.add_argument("--procedure", choices=("robust", "plain"), default="robust", help="robust (default) or plain")
    g.add_argument(
        "--val-every",
        type=int_range(0, 1000),
        default=None,
        help="every k-th local training window of each class validates (robust: 10; 0 = no validation)",
    )
    g.add_argument(
        "--val-split",
        choices=("tail", "interleaved"),
        default=None,
        help="which windows validate: the last 1/k of each class (robust) or every k-th",
    )
    g.add_argument(
        "--choose",
        choices=("strict", "agree", "score"),
        default=None,
        help="the mode Auto keeps: agree (robust): TL/Full only on strictly higher validation macro-F1 than the "
        "general model, and Full only when TL beats it too; strict: without the TL condition; score: the best "
        "(macro-F1, then loss) of the three (issue 17's first rule)",
    )
    g.add_argument(
        "--patience",
        type=int_range(0, 255),
        default=None,
        help="early stopping after k epochs without a better validation pass (default 0 = off)",
    )
    g.add_argument("--no-restore", action="store_true", help="keep the last epoch's weights, not the best one's")
    g.add_argument(
        "--select",
        choices=("f1", "loss"),
        default=None,
        help="best validation pass by macro-F1 then loss (robust) or by loss",
    )
    g.add_argument(
        "--clip-norm", type=finite_float(0.0, 1e6), default=None, help="gradient-norm clipping (robust: 5; 0 = off)"
    )
    g.add_argument(
        "--feature-lr-scale",
        type=finite_float(0.0, 10.0),
        default=None,
        help="lr multiplier of the layers TL leaves frozen, Full only (default 1)",
    )
    g.add_argument(
        "--l2sp", type=finite_float(0.0, 100.0), default=None, help="L2-SP pull toward the general model (default 0)"
    )


def procedure_from_args(args: argparse.Namespace):
    """The :class:`app.core.procedure.Procedure` the options describe (raises ProcedureError, a ValueError)."""
    from app.core.procedure import PLAIN, ROBUST, with_overrides  # noqa: PLC0415

    base = PLAIN if getattr(args, "procedure", "robust") == "plain" else ROBUST
    kw = {
        "val_every": args.val_every,
        "patience": args.patience,
        "clip_norm": args.clip_norm,
        "feature_lr_scale": args.feature_lr_scale,
        "l2sp": args.l2sp,
        "val_split": getattr(args, "val_split", None),
        "choose": getattr(args, "choose", None),
        "select_f1": None if args.select is None else args.select == "f1",
    }
    if args.no_restore:
        kw["restore_best"] = False
    if args.val_every == 0:  # no validation: nothing to restore or stop on
        kw.setdefault("restore_best", False)
        kw["restore_best"] = False
        kw["patience"] = 0 if args.patience is None else args.patience
    return with_overrides(base, **kw)
