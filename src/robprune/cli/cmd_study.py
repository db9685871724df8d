"""robprune study: studies beyond the paper, as cached, resumable grids with a report."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from ..models import MODELS
from .study_options import (add_only_argument, add_share_argument, add_suite_arguments, only_filter, run_logged,
                            seed_list)
from .common import add_device, positive_int

HELP = ("Studies beyond the paper; 'adversarial': CP, RP and Ours on adversarially trained networks at high "
        "sparsity, under AutoAttack; 'methods': HYDRA and HYDRA with learned layer rates against CP and LAMP, "
        "each with and without the hinge; 'channels': channel criteria with channels removed for real, with "
        "measured latency (cached, resumable)")
EXAMPLE = ("robprune study adversarial --data imagefolder:../shared/data/cifar10-jpeg.tar.gz --out "
           "runs/adversarial")
RESUMABLE = True
STUDIES = ("adversarial", "methods", "channels")
METHOD_LABELS = ("CP", "LAMP", "HYDRA", "RATES")


CHANNEL_METHODS = ("l1", "reverse", "bn_scale", "hydra")


def method_list(text: str) -> tuple[str, ...]:
    """Comma-separated, distinct method names (checked against the study's methods when it runs)."""
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names or len(set(n.lower() for n in names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct comma-separated methods, got {text!r}")
    return names


def _methods_of(study: str, names: tuple[str, ...]) -> tuple[str, ...]:
    known = CHANNEL_METHODS if study == "channels" else METHOD_LABELS
    names = tuple(n.lower() if study == "channels" else n.upper() for n in names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)} for the {study} study; choose from "
                         f"{', '.join(known)}")
    return names


def folder_list(text: str) -> tuple[Path, ...]:
    """Comma-separated output folders."""
    folders = tuple(Path(t.strip()) for t in text.split(",") if t.strip())
    if not folders:
        raise argparse.ArgumentTypeError(f"expected comma-separated output folders, got {text!r}")
    return folders


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
                   help="the sparsities every seed gets (default: adversarial 0.9,0.99; methods 0.99,0.95,0.9); "
                        "channels: the fraction of every group's channels removed (default 0.5,0.75)")
    p.add_argument("--extra-sparsities", type=sparsity_list,
                   help="adversarial: sparsities on the first seed only, after the core, the highest first; 'none' "
                        "cuts them (default 0.5,0.95). Cached units stay valid when the grid changes")
    p.add_argument("--methods", type=method_list,
                   help="methods: which of CP, LAMP, HYDRA, RATES (HYDRA with learned layer rates); channels: "
                        "which of l1, reverse, bn_scale, hydra (default all)")
    p.add_argument("--score-epochs", type=positive_int,
                   help="methods, channels: score-learning epochs of the learned methods")
    p.add_argument("--no-hinge", action="store_true", help="methods, channels: no '+hinge' arms")
    add_suite_arguments(p, "autoattack")
    add_share_argument(p)
    add_only_argument(p)
    p.add_argument("--report-only", action="store_true",
                   help="only rewrite report.md and the figures from OUT/results.json; computes nothing")
    p.add_argument("--merge", type=folder_list, metavar="DIR,DIR[,...]",
                   help="computes nothing: merge the results of this study run in several output folders (e.g. "
                        "other seeds on another machine, more methods on the same dense models) into --out, a new "
                        "folder, and write its report; the folders may differ only in seeds, methods, sparsities and "
                        "whether they ran the hinge arms")
    add_device(p)
    p.add_argument("--out", default=None, help="output folder (default runs/STUDY)")


def default_out(args) -> str:
    return f"runs/{args.study}"


def run(args) -> None:
    from ..reporting.study_report import rewrite_study_report

    if args.study == "adversarial":
        from ..experiments.adversarial import ADVERSARIAL_QUICK as QUICK, AdversarialConfig as Config, \
            default_grid, run_adversarial as run_study
        grid = default_grid()
        wrong = [o for o, v in (("--methods", args.methods), ("--score-epochs", args.score_epochs),
                                ("--no-hinge", args.no_hinge)) if v]
    elif args.study == "methods":
        from ..experiments.methods import METHODS_QUICK as QUICK, MethodsConfig as Config, default_grid, \
            run_methods as run_study
        grid = default_grid()
        wrong = ["--extra-sparsities"] if args.extra_sparsities is not None else []
    else:
        from ..experiments.channel_study import CHANNELS_QUICK as QUICK, ChannelsConfig as Config, \
            default_grid, run_channels as run_study
        grid = default_grid()
        wrong = ["--extra-sparsities"] if args.extra_sparsities is not None else []
    if args.methods:
        args.methods = _methods_of(args.study, args.methods)
    if wrong:
        raise ValueError(f"{', '.join(wrong)} do(es) not apply to the {args.study} study")
    if args.report_only and args.merge:
        raise ValueError("--merge already writes the report; drop --report-only")
    if args.report_only:
        print(rewrite_study_report(Path(args.out), default_grid=grid))
        return
    if args.merge:
        _merge(args, grid)
        return
    config = QUICK if args.quick else Config()
    changes = {}
    if args.arch:
        MODELS.get(args.arch)
        changes["arch"] = args.arch
    grid_field = "amounts" if args.study == "channels" else "sparsities"  # channels: the fraction removed
    for field, value in (("seeds", args.seeds), (grid_field, args.sparsities), ("suite", args.suite),
                         ("suite_images", args.suite_images), ("extra_sparsities", args.extra_sparsities),
                         ("methods", args.methods), ("score_epochs", args.score_epochs)):
        if value is not None:
            changes[field] = value
    if args.no_hinge:
        changes["hinge"] = False
    if args.dense_epochs:
        changes["dense"] = replace(config.dense, epochs=args.dense_epochs)
    if args.epochs:
        changes["finetune"] = replace(config.finetune, epochs=args.epochs)
    if changes.get(grid_field) == ():
        raise ValueError("--sparsities needs at least one sparsity")
    config = replace(config, **changes)
    only = only_filter(args.only)
    run_logged(args, lambda dev, progress: run_study(args.data, args.out_dir, config, dev, progress, only))


def _merge(args, grid) -> None:
    from ..experiments.study_merge import write_merged

    given = [o for o, v in (("--seeds", args.seeds), ("--sparsities", args.sparsities), ("--methods", args.methods),
                            ("--quick", args.quick), ("--dense-epochs", args.dense_epochs), ("--epochs", args.epochs),
                            ("--score-epochs", args.score_epochs), ("--suite", args.suite),
                            ("--suite-images", args.suite_images), ("--only", args.only), ("--share", args.share),
                            ("--no-hinge", args.no_hinge), ("--extra-sparsities", args.extra_sparsities)) if v]
    if given:
        raise ValueError(f"{', '.join(given)} do(es) not apply with --merge, which computes nothing and takes every "
                         "seed and model of the folders")
    from ..io import write_json
    from ..reporting.study_report import rewrite_study_report
    from .common import resolved

    write_merged(list(args.merge), args.out_dir, args.study, args.data, "robprune " + " ".join(args.argv), grid)
    write_json(args.out_dir / "config.json", resolved(args))
    print(rewrite_study_report(args.out_dir, default_grid=grid))
    print(f"wrote {args.out_dir}/report.md, results.json and the figures")
