"""robprune reproduce: the paper's grid on real data, cached and resumable, with an honest report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..models import MODELS
from .common import add_device, positive_int
from .study_options import (add_only_argument, add_share_argument, add_suite_arguments, only_filter, run_logged,
                            seed_list)

HELP = "The paper's grid on real data: Tables 1-2, Figure 2, Eq. 3, and a report (cached, resumable)."
EXAMPLE = ("robprune reproduce --data imagefolder:../shared/data/cifar10-jpeg.tar.gz --arch resnet56 "
           "--init ../shared/pretrained/resnet56-4bfd9763.th --out runs/repro")
RESUMABLE = True


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="imagefolder:PATH or cifar10:DIR")
    p.add_argument("--arch", default=None, help=f"one of {MODELS.describe()} (default: resnet56, resnet20 with "
                                                "--quick)")
    p.add_argument("--init", help="pretrained checkpoint (.th community file or robprune .safetensors); "
                                  "default: train from scratch")
    p.add_argument("--protocol", choices=("finetune", "scratch"), default="finetune",
                   help="finetune: every arm fine-tuned briefly from --init (the first reproduction); scratch: the "
                        "paper's protocol from random initialisation, several seeds, lam/tau searched on held-out "
                        "images, significance tests (ResNet-20 by default)")
    p.add_argument("--seeds", type=seed_list, help="scratch protocol: comma-separated seeds (default 0,1,2)")
    p.add_argument("--quick", action="store_true",
                   help="a small version of the protocol (ResNet-20, a few hundred images, 3 ratios; the tests run "
                        "it): a smoke test of the pipeline, not a result (on digits 40-60 s on 2 idle CPU cores)")
    p.add_argument("--epochs", type=positive_int, help="fine-tuning epochs of every arm (default: the protocol's)")
    p.add_argument("--baseline-epochs", type=positive_int, help="fine-tuning epochs of the baseline")
    p.add_argument("--eval-images", type=positive_int, help="test images for Table 2 (default: all)")
    add_suite_arguments(p, "standard")
    add_share_argument(p)
    add_only_argument(p)
    p.add_argument("--report-only", action="store_true",
                   help="only rewrite report.md (and figure.png) from OUT/results.json; computes nothing")
    add_device(p)
    p.add_argument("--out", default="runs/reproduce", help="output folder")


def run(args) -> None:
    from ..experiments.reproduce import rewrite_report, run_reproduce
    from ..experiments.reproduce_config import QUICK, ReproduceConfig

    if args.protocol == "scratch":
        run_scratch_protocol(args)
        return
    if args.seeds:
        raise ValueError("--seeds belongs to --protocol scratch (the fine-tuning protocol has one seed)")
    if args.only:
        raise ValueError("--only belongs to --protocol scratch")
    if args.report_only:
        print(rewrite_report(Path(args.out)))
        return
    config = QUICK if args.quick else ReproduceConfig()
    config = replace(config, **_overrides(args, config))
    if args.init and not Path(args.init).is_file():
        raise FileNotFoundError(f"checkpoint {args.init} does not exist")
    run_logged(args, lambda dev, progress: run_reproduce(args.data, args.init, args.out_dir, config, dev, progress),
               config_name="reproduce_config")


def _overrides(args, config) -> dict:
    """The config fields the command line changes (shared by both protocols)."""
    changes = {}
    if args.arch:
        MODELS.get(args.arch)
        changes["arch"] = args.arch
    if args.epochs:
        changes["finetune"] = replace(config.finetune, epochs=args.epochs)
    if args.baseline_epochs:
        changes["baseline"] = replace(config.baseline, epochs=args.baseline_epochs)
    if args.eval_images:
        changes["eval_images"] = args.eval_images
    if args.suite:
        changes["suite"] = args.suite
    if args.suite_images:
        changes["suite_images"] = args.suite_images
    return changes


def run_scratch_protocol(args) -> None:
    from ..experiments.scratch import SCRATCH_QUICK, ScratchConfig, run_scratch
    from ..reporting.study_report import rewrite_study_report

    if args.init:
        raise ValueError("--protocol scratch trains from random initialisation; --init belongs to --protocol "
                         "finetune")
    if args.report_only:
        print(rewrite_study_report(Path(args.out)))
        return
    config = SCRATCH_QUICK if args.quick else ScratchConfig()
    changes = _overrides(args, config)
    if args.seeds:
        changes["seeds"] = args.seeds
        changes["search_seed"] = args.seeds[0]
        changes["sweep_seeds"] = args.seeds[:len(config.sweep_seeds)]
    config = replace(config, **changes)
    only = only_filter(args.only)
    run_logged(args, lambda dev, progress: run_scratch(args.data, args.out_dir, config, dev, progress, only))


