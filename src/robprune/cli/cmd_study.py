"""robprune study: studies beyond the paper, as cached, resumable grids with a report."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from ..models import MODELS
from .study_options import add_share_argument, add_suite_arguments, run_logged, seed_list
from .common import add_device, positive_int

HELP = ("Studies beyond the paper; 'adversarial': CP, RP and Ours on adversarially trained networks at high "
        "sparsity, under AutoAttack (cached, resumable)")
EXAMPLE = ("robprune study adversarial --data imagefolder:../shared/data/cifar10-jpeg.tar.gz --out "
           "runs/adversarial")
RESUMABLE = True
STUDIES = ("adversarial",)


def sparsity_list(text: str) -> tuple[float, ...]:
    """Comma-separated sparsities in (0, 1), or 'none' for an empty list."""
    if text.strip().lower() == "none":
        return ()
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sparsities in (0, 1) or 'none', got {text!r}") \
            from None
    if not values or any(not 0.0 < v < 1.0 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"sparsities must be distinct numbers in (0, 1), got {text!r}")
    return values


def add_arguments(p) -> None:
    p.add_argument("study", choices=STUDIES, help="which study")
    p.add_argument("--data", required=True, help="imagefolder:PATH, cifar10:DIR or digits")
    p.add_argument("--arch", default=None, help=f"one of {MODELS.describe()} (default resnet20)")
    p.add_argument("--seeds", type=seed_list, help="comma-separated seeds (default 0,1)")
    p.add_argument("--quick", action="store_true",
                   help="a few hundred images, one epoch each: a smoke test, not a result (on digits about 40 s on 2 "
                        "idle CPU cores)")
    p.add_argument("--dense-epochs", type=positive_int, help="epochs of the dense adversarial training")
    p.add_argument("--epochs", type=positive_int, help="adversarial fine-tuning epochs of every pruned arm")
    p.add_argument("--sparsities", type=sparsity_list,
                   help="the core grid's sparsities, every seed (default 0.9,0.99)")
    p.add_argument("--extra-sparsities", type=sparsity_list,
                   help="sparsities on the first seed only, after the core, the highest first; 'none' cuts them "
                        "(default 0.5,0.95). Cached units stay valid when the grid changes")
    add_suite_arguments(p, "autoattack")
    add_share_argument(p)
    p.add_argument("--report-only", action="store_true",
                   help="only rewrite report.md and the figures from OUT/results.json; computes nothing")
    add_device(p)
    p.add_argument("--out", default="runs/adversarial", help="output folder")


def run(args) -> None:
    from ..experiments.adversarial import ADVERSARIAL_QUICK, AdversarialConfig, default_grid, run_adversarial
    from ..reporting.study_report import rewrite_study_report

    if args.report_only:
        print(rewrite_study_report(Path(args.out), default_grid=default_grid()))
        return
    config = ADVERSARIAL_QUICK if args.quick else AdversarialConfig()
    changes = {}
    if args.arch:
        MODELS.get(args.arch)
        changes["arch"] = args.arch
    if args.seeds:
        changes["seeds"] = args.seeds
    if args.dense_epochs:
        changes["dense"] = replace(config.dense, epochs=args.dense_epochs)
    if args.epochs:
        changes["finetune"] = replace(config.finetune, epochs=args.epochs)
    if args.sparsities is not None:
        changes["sparsities"] = args.sparsities
    if args.extra_sparsities is not None:
        changes["extra_sparsities"] = args.extra_sparsities
    if args.suite:
        changes["suite"] = args.suite
    if args.suite_images:
        changes["suite_images"] = args.suite_images
    config = replace(config, **changes)
    run_logged(args, lambda dev, progress: run_adversarial(args.data, args.out_dir, config, dev, progress))
