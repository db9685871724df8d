"""Command-line interface: the only module that parses arguments and talks to the terminal."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm import tqdm

from . import __version__
from .checkpoint import import_checkpoint, load_checkpoint, save_checkpoint
from .data import load_dataset
from .evaluation import evaluate, fixed_subset
from .experiment import progress_counter
from .io import prepare_out_dir, write_json, write_text_atomic
from .models import ARCHITECTURES, create_model
from .pruning import SCOPES, SCORERS, apply_masks, compute_masks, sparsity_report
from .report import eps_label, table2_markdown
from .stats import layer_stats_markdown, stats_markdown, weight_stats
from .train import AUGMENTS, PRUNE_SCHEDULES, SCHEDULES, DivergenceError, TrainConfig, train

EXAMPLES = {
    "demo": "robprune demo --out runs/demo",
    "train": "robprune train --data digits --arch small_cnn --epochs 20 --out runs/base\n"
             "  robprune train --data digits --init runs/base/model.safetensors --method cp --amount 0.5 "
             "--lam 0.1 --tau q0.9 --epochs 10 --lr 0.01 --out runs/ours",
    "prune": "robprune prune runs/base/model.safetensors --method rp --amount 0.1 --out runs/rp10",
    "eval": "robprune eval runs/base/model.safetensors --data digits --eps 8,16,32 --steps 10 --out runs/eval\n"
            "  robprune eval runs/base/model.safetensors --data digits --eps 8,16 --suite standard --n-images 200",
    "stats": "robprune stats runs/base/model.safetensors runs/ours/model.safetensors --out runs/stats",
    "reproduce": "robprune reproduce --data imagefolder:../shared/data/cifar10-jpeg.tar.gz --arch resnet56 "
                 "--init ../shared/pretrained/resnet56-4bfd9763.th --out runs/repro",
    "import": "robprune import ../shared/pretrained/resnet56-4bfd9763.th --arch resnet56 "
              "--out runs/resnet56.safetensors",
}


class UsageError(Exception):
    """Bad command-line usage, reported as one line and exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _amount(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"amount must be in [0, 1), got {value}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def parse_eps_list(text: str) -> list[float]:
    """'1,2,4,8' (units of 1/255) or '8/255,0.05' -> pixel-unit floats; 'none' -> clean accuracy only."""
    if text.strip().lower() == "none":
        return []
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            num, _, den = item.partition("/")
            value = float(num) / (float(den) if den else 255.0)
        except (ValueError, ZeroDivisionError):
            raise argparse.ArgumentTypeError(f"eps must be numbers like 1,2,4,8 (x/255), got {item!r}") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"eps must be >= 0, got {item!r}")
        values.append(value)
    return values


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA GPU is available")
    return device


class Progress:
    """Turns library progress events into tqdm bars and log lines on stderr."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __call__(self, event: dict) -> None:
        kind = event["kind"]
        if kind == "step":
            if self.bar is None:
                self.bar = tqdm(total=event["steps"], desc=f"epoch {event['epoch']}", leave=False,
                                file=sys.stderr, dynamic_ncols=True)
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{event['loss']:.3f}", refresh=False)
        elif kind == "epoch":
            self._close()
            tqdm.write(f"  epoch {event['epoch']}: loss {event['train_loss']:.4f}  train {100 * event['train_acc']:.2f}%"
                       f"  test {100 * event['test_acc']:.2f}%  sparsity {100 * event['sparsity']:.1f}%"
                       f"  {event['images_per_s']:.0f} img/s", file=sys.stderr)
        elif kind == "eval":
            if self.bar is None:
                self.bar = tqdm(total=event["total"], desc=f"attack {event['name']}", leave=False,
                                file=sys.stderr, dynamic_ncols=True, unit="img")
            self.bar.update(event["done"] - self.bar.n)  # update, not n =: tqdm then measures the rate
            if event["done"] >= event["total"]:
                self._close()
        elif kind == "unit":
            self._close()
            tqdm.write(f"[{event['status']}] {event['name']}", file=sys.stderr)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def build_parser() -> Parser:
    parser = Parser(prog="robprune", description="Pruning neural networks for adversarial robustness.",
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog="example:\n  " + EXAMPLES["demo"])
    parser.add_argument("--version", action="version", version=f"robprune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name: str, help_text: str) -> Parser:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="example:\n  " + EXAMPLES[name])
        p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
        return p

    p = command("demo", "Baseline, CP 50%%, RP 10%% and Ours on scikit-learn digits (no download).")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")

    p = command("train", "Train or fine-tune, with optional pruning and the high-magnitude regulariser.")
    p.add_argument("--data", required=True, help="digits | cifar10:DIR | imagefolder:PATH")
    p.add_argument("--arch", choices=None, help=f"one of {', '.join(ARCHITECTURES)} (default: from --init)")
    p.add_argument("--init", help="robprune checkpoint to start from (its masks are kept)")
    d = TrainConfig()
    p.add_argument("--epochs", type=_positive_int, default=d.epochs)
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size)
    p.add_argument("--lr", type=_non_negative, default=d.lr)
    p.add_argument("--momentum", type=_non_negative, default=d.momentum)
    p.add_argument("--weight-decay", type=_non_negative, default=d.weight_decay)
    p.add_argument("--schedule", default=d.schedule, help=f"one of {', '.join(SCHEDULES)}")
    p.add_argument("--method", help=f"pruning criterion: {', '.join(SCORERS)} (default: none)")
    p.add_argument("--amount", type=_amount, default=0.0, help="fraction of prunable weights to prune, [0, 1)")
    p.add_argument("--scope", default="global", help=f"one of {', '.join(SCOPES)}")
    p.add_argument("--keep-ends", action="store_true", help="leave first conv and last linear dense")
    p.add_argument("--prune-schedule", default="oneshot", help=f"one of {', '.join(PRUNE_SCHEDULES)}")
    p.add_argument("--lam", type=_non_negative, default=0.0, help="high-magnitude penalty weight (Eq. 4)")
    p.add_argument("--tau", default=d.tau, help="penalty threshold: absolute, or quantile 'q0.9' (default)")
    p.add_argument("--p", type=int, default=1, help="norm of the penalty: 1 or 2")
    p.add_argument("--augment", default="auto", help=f"one of {', '.join(AUGMENTS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    p.add_argument("--out", default="runs/train", help="output folder (default: runs/train)")

    p = command("prune", "One-shot prune a checkpoint (no training) and report per-layer sparsity.")
    p.add_argument("checkpoint")
    p.add_argument("--method", required=True, help=f"one of {', '.join(SCORERS)}")
    p.add_argument("--amount", type=_amount, required=True, help="fraction to prune, [0, 1)")
    p.add_argument("--scope", default="global", help=f"one of {', '.join(SCOPES)}")
    p.add_argument("--keep-ends", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/prune", help="output folder (default: runs/prune)")

    p = command("eval", "Clean accuracy and accuracy under L-inf PGD for a list of eps.")
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="digits | cifar10:DIR | imagefolder:PATH")
    p.add_argument("--eps", type=parse_eps_list, default=parse_eps_list("1,2,4,8"),
                   help="comma-separated radii in units of 1/255 (default: 1,2,4,8), or a/b values; "
                        "'none' for clean accuracy only")
    p.add_argument("--steps", type=_positive_int, default=4, help="PGD steps (default: 4)")
    p.add_argument("--step-scale", type=_non_negative, default=2.5, help="step size = SCALE*eps/steps")
    p.add_argument("--no-random-start", action="store_true")
    p.add_argument("--attack", default="pgd", help="pgd, fgsm, pgd-l2, apgd-ce, apgd-dlr or square (default: pgd; "
                                                    "--steps is the query budget for square)")
    p.add_argument("--loss", default="ce", help="loss of pgd/pgd-l2: ce, cw or dlr (default: ce)")
    p.add_argument("--restarts", type=_positive_int, default=1, help="random restarts of pgd (default: 1)")
    p.add_argument("--fast", action="store_true", help="attack a BatchNorm-folded channels_last copy (pgd)")
    p.add_argument("--compile", action="store_true", help="torch.compile the attack model (GPU; implies --fast)")
    p.add_argument("--precision", default="fp32", help="attack precision for pgd: fp32, bf16 (CPU/GPU), fp16 (GPU); "
                                                        "adversarial examples are always checked in fp32")
    p.add_argument("--suite", help="run a fixed list of attacks, worst case per point: standard or fast")
    p.add_argument("--seeds", type=_positive_int, default=1, help="repeat with N seeds; report mean and std")
    p.add_argument("--no-checks", action="store_true", help="skip the gradient-masking sanity checks")
    p.add_argument("--check-images", type=_positive_int, default=200, help="images for the sanity checks")
    p.add_argument("--n-images", type=_positive_int, help="N test images, a fixed random subset (default: all)")
    p.add_argument("--batch-size", type=_positive_int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/eval", help="output folder (default: runs/eval)")

    p = command("stats", "Weight statistics (paper Table 1) of one or more checkpoints.")
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--out", default="runs/stats", help="output folder (default: runs/stats)")

    p = command("reproduce", "The paper's grid on real data: Tables 1-2, Figure 2, Eq. 3, and a report (cached, resumable).")
    p.add_argument("--data", required=True, help="imagefolder:PATH or cifar10:DIR")
    p.add_argument("--arch", default=None, help="architecture (default: resnet56, resnet20 with --quick)")
    p.add_argument("--init", help="pretrained checkpoint (.th community file or robprune .safetensors); "
                                  "default: train from scratch")
    p.add_argument("--quick", action="store_true", help="ResNet-20, a few hundred images, 3 ratios: minutes on CPU")
    p.add_argument("--epochs", type=_positive_int, help="fine-tuning epochs of every arm (overrides the default)")
    p.add_argument("--baseline-epochs", type=_positive_int, help="fine-tuning epochs of the baseline")
    p.add_argument("--eval-images", type=_positive_int, help="test images for Table 2 (default: all)")
    p.add_argument("--report-only", action="store_true",
                   help="only rewrite report.md (and figure.png) from OUT/results.json; computes nothing")
    p.add_argument("--out", default="runs/reproduce", help="output folder (default: runs/reproduce)")

    p = command("import", "Convert a pytorch_resnet_cifar10 checkpoint to robprune's safetensors format.")
    p.add_argument("file")
    p.add_argument("--arch", required=True, help=f"one of {', '.join(ARCHITECTURES)}")
    p.add_argument("--num-classes", type=_positive_int, default=10)
    p.add_argument("--out", required=True, help="output .safetensors file")
    return parser


def _resolved(args: argparse.Namespace) -> dict:
    d = {k: v for k, v in vars(args).items() if k != "func"}
    return {"robprune_version": __version__, "command": args.command, "args": d}


def cmd_demo(args) -> None:
    from .demo import run_demo

    device = _device(args.device)
    t0 = time.perf_counter()
    run_demo(args.out, device, Progress())
    write_json(Path(args.out) / "config.json", _resolved(args))
    print((Path(args.out) / "report.md").read_text())
    print(f"demo finished in {time.perf_counter() - t0:.1f} s on {device}; "
          f"wrote {args.out}/report.md, results.json, demo.png")


def cmd_train(args) -> None:
    device = _device(args.device)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                         weight_decay=args.weight_decay, schedule=args.schedule, method=args.method,
                         amount=args.amount, scope=args.scope, keep_ends=args.keep_ends,
                         prune_schedule=args.prune_schedule, lam=args.lam, tau=args.tau, p=args.p,
                         augment=args.augment, seed=args.seed).validate()
    data = load_dataset(args.data)
    masks = None
    if args.init:
        model, masks, meta = load_checkpoint(args.init, expect_arch=args.arch)
        if meta["num_classes"] != len(data.classes) or meta["in_channels"] != data.in_channels:
            raise ValueError(f"{args.init} has {meta['num_classes']} classes and {meta['in_channels']} channels; "
                             f"{args.data} has {len(data.classes)} and {data.in_channels}")
    else:
        if args.arch is None:
            raise ValueError("give --arch (or --init to start from a checkpoint)")
        torch.manual_seed(args.seed)
        mean, std = data.channel_stats()
        model = create_model(args.arch, num_classes=len(data.classes), in_channels=data.in_channels,
                             mean=mean, std=std)
    out = prepare_out_dir(args.out)
    if (out / "last.safetensors").exists() and not args.resume:
        raise ValueError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
    model.to(device)
    write_json(out / "config.json", {**_resolved(args), "train_config": asdict(config)})
    result = train(model, data, config, out_dir=out, masks=masks, resume=args.resume, progress=Progress(),
                   meta={"data": args.data})
    save_checkpoint(out / "model.safetensors", model, result["masks"],
                    {"data": args.data, "config": asdict(config), "tau_resolved": result["tau_resolved"],
                     "history": result["history"]})
    final = result["history"][-1] if result["history"] else {}
    print(f"test accuracy {100 * final.get('test_acc', float('nan')):.2f}%, "
          f"sparsity {100 * sparsity_report(model)['sparsity']:.1f}%; wrote {out}/model.safetensors")


def cmd_prune(args) -> None:
    model, old_masks, meta = load_checkpoint(args.checkpoint)
    masks = compute_masks(model, args.method, args.amount, args.scope, args.keep_ends, args.seed,
                          previous=old_masks or None)
    apply_masks(model, masks)
    report = sparsity_report(model, args.keep_ends)
    out = prepare_out_dir(args.out)
    save_checkpoint(out / "model.safetensors", model, masks,
                    {**{k: v for k, v in meta.items() if k not in ("format", "robprune_version")},
                     "pruned": {"method": args.method, "amount": args.amount, "scope": args.scope,
                                "source": args.checkpoint}})
    write_json(out / "sparsity.json", report)
    write_json(out / "config.json", _resolved(args))
    lines = ["| layer | numel | zeros | sparsity |", "|---|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['numel']} | {r['zeros']} | {100 * r['sparsity']:.1f}% |" for r in report["layers"]]
    lines.append(f"| total | {report['numel']} | {report['zeros']} | {100 * report['sparsity']:.2f}% |")
    write_text_atomic(out / "sparsity.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}/model.safetensors")


def plain_pgd_requested(args) -> bool:
    return args.suite is None and args.attack == "pgd" and args.loss == "ce" and args.restarts == 1


def _attack_label(a) -> str:
    """What one attack of ``robprune eval`` did, naming only the settings that attack uses."""
    if a.name == "fgsm":
        return "FGSM (one step of eps, loss ce)"
    if a.name == "square":
        return f"Square ({a.steps} queries, margin loss)"
    if a.name.startswith("apgd"):
        return f"{a.name.upper()} ({a.steps} steps)"
    return f"{a.name} ({a.steps} steps, loss {a.loss}, {a.restarts} restart(s))"


def cmd_eval(args) -> None:
    from .attacks import check_loss
    from .suite import ATTACK_NAMES, SUITES, AttackSpec, repeat_over_seeds, sanity_checks, worst_case

    device = _device(args.device)
    if args.suite is not None and args.suite not in SUITES:
        raise ValueError(f"unknown suite {args.suite!r}; choose one of {', '.join(SUITES)}")
    if args.attack not in ATTACK_NAMES:
        raise ValueError(f"unknown attack {args.attack!r}; choose one of {', '.join(ATTACK_NAMES)}")
    check_loss(args.loss)
    from .fast import PRECISIONS
    if args.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {args.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if not plain_pgd_requested(args) and (args.fast or args.compile or args.precision != "fp32"):
        raise ValueError("--fast, --compile and --precision apply to plain PGD only (no --suite, --loss or --restarts)")
    model, _, meta = load_checkpoint(args.checkpoint)
    data = load_dataset(args.data)
    if meta["num_classes"] != len(data.classes) or meta["in_channels"] != data.in_channels:
        raise ValueError(f"{args.checkpoint} has {meta['num_classes']} classes and {meta['in_channels']} "
                         f"channels; {args.data} has {len(data.classes)} and {data.in_channels}")
    n = len(data.x_test) if args.n_images is None else min(args.n_images, len(data.x_test))
    x, y = fixed_subset(data.x_test, data.y_test, n)
    model.to(device)
    progress = Progress()
    name = Path(args.checkpoint).name
    plain_pgd = plain_pgd_requested(args)
    attacks = SUITES[args.suite] if args.suite else (AttackSpec(args.attack, args.steps, args.loss, args.restarts),)
    label = (f"suite '{args.suite}' (" + ", ".join(f"{a.name}/{a.steps}" for a in attacks) + "; a point counts as "
             "robust only if it survives all)") if args.suite else (
        f"PGD-{args.steps} (step {args.step_scale}*eps/{args.steps}, {'no ' if args.no_random_start else ''}"
        f"random start; {'BN-folded channels_last ' if args.fast or args.compile or args.precision != 'fp32' else ''}"
        f"{'compiled ' if args.compile else ''}"
        f"{args.precision} attack, checked in fp32)" if plain_pgd else _attack_label(attacks[0]))

    total = n * len(args.eps) * (1 if plain_pgd else len(attacks))  # worst_case ticks once per attack

    def one_run(seed: int) -> dict:
        tick = progress_counter(progress, f"{name} seed {seed}", total)

        if plain_pgd:
            return evaluate(model, x, y, args.eps, args.steps, batch_size=args.batch_size, step_scale=args.step_scale,
                            random_start=not args.no_random_start, seed=seed, progress=tick, fast=args.fast,
                            precision=args.precision, compile=args.compile)
        rows = [worst_case(model, x, y, e, attacks, args.batch_size, seed, tick) for e in args.eps]
        clean = rows[0]["clean"] if rows else evaluate(model, x, y, [], 1)["clean"]
        return {"n": n, "clean": clean, "robust": [{"eps": r["eps"], **r["worst_case"], "attacks": r["attacks"]}
                                                   for r in rows], "attack": {"label": label}}

    t0 = time.perf_counter()
    result = one_run(args.seed)
    if args.seeds > 1:
        result["seeds"] = repeat_over_seeds(lambda s: one_run(args.seed + s), args.seeds,
                                            lambda r: [r["clean"]["accuracy"]] + [e["accuracy"] for e in r["robust"]])
        result["seeds"].pop("runs")
    checks = []
    if not args.no_checks and args.eps:
        m = min(n, args.check_images)
        checks = sanity_checks(model, x[:m], y[:m], args.eps, args.steps, args.batch_size)
    result["sanity_checks"] = checks
    result["seconds"] = time.perf_counter() - t0
    result["checkpoint"] = args.checkpoint
    table = table2_markdown({name: {"eval": result}})
    lines = [table]
    if args.seeds > 1:
        sd = result["seeds"]
        lines.append(f"over {args.seeds} seeds (random starts): mean " + ", ".join(f"{100 * v:.2f}" for v in sd["mean"])
                     + "; std " + ", ".join(f"{100 * v:.2f}" for v in sd["std"]) + " (clean, then each eps)")
    if checks:
        lines.append(f"sanity checks on {min(n, args.check_images)} images:")
        lines += [f"  [{'ok' if c['passed'] else 'FAILED'}] {c['name']}: {c['detail']}" for c in checks]
    out = prepare_out_dir(args.out)
    write_json(out / "eval.json", {**result, "config": _resolved(args)})
    write_text_atomic(out / "eval.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    for c in checks:
        if not c["passed"]:
            print(f"robprune: WARNING: sanity check {c['name']} FAILED: {c['detail']}", file=sys.stderr)
    if not args.eps:
        print(f"clean accuracy only, {n} test images of {args.data}; {result['seconds']:.1f} s; wrote {out}/eval.json")
        return
    print(f"{label} on {n} test images of {args.data}, eps {', '.join(eps_label(e) for e in args.eps)}; "
          f"{result['seconds']:.1f} s; wrote {out}/eval.json")


def cmd_stats(args) -> None:
    rows = {}
    for path in args.checkpoints:
        model, _, _ = load_checkpoint(path)
        rows[path] = weight_stats(model)
    out = prepare_out_dir(args.out)
    write_json(out / "stats.json", {"stats": rows, "config": _resolved(args)})
    text = stats_markdown(rows)
    per_layer = "\n\n".join(f"### {p}\n\n{layer_stats_markdown(s)}" for p, s in rows.items())
    write_text_atomic(out / "stats.md", f"{text}\n\n## Per layer\n\n{per_layer}\n")
    print(text)
    print(f"wrote {out}/stats.json and stats.md (with per-layer tables)")


def cmd_import(args) -> None:
    if args.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {args.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    model = import_checkpoint(args.file, args.arch, num_classes=args.num_classes)
    path = save_checkpoint(args.out, model, None, {"imported_from": str(args.file)})
    print(f"imported {args.file} as {args.arch}; wrote {path}")


def cmd_reproduce(args) -> None:
    from .reproduce import QUICK, ReproduceConfig, run_reproduce

    if args.report_only:
        from .reproduce import rewrite_report

        print(rewrite_report(Path(args.out)))
        return

    device = _device(args.device)
    config = QUICK if args.quick else ReproduceConfig()
    changes = {}
    if args.arch:
        if args.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {args.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        changes["arch"] = args.arch
    if args.epochs:
        changes["finetune"] = replace(config.finetune, epochs=args.epochs)
    if args.baseline_epochs:
        changes["baseline"] = replace(config.baseline, epochs=args.baseline_epochs)
    if args.eval_images:
        changes["eval_images"] = args.eval_images
    config = replace(config, **changes)
    if args.init and not Path(args.init).is_file():
        raise FileNotFoundError(f"checkpoint {args.init} does not exist")
    out = prepare_out_dir(args.out)
    command = "robprune " + " ".join(args.argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.perf_counter()
    with open(out / "runs.log", "a") as log:
        log.write(f"{started} start: {command}\n")
    state = run_reproduce(args.data, args.init, out, config, device, Progress())
    with open(out / "runs.log", "a") as log:
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} finished in {time.perf_counter() - t0:.0f} s\n")
    write_json(out / "config.json", {**_resolved(args), "reproduce_config": state["config"]})
    print((out / "report.md").read_text())
    print(f"wrote {out}/report.md, results.json and the figures")


def _remove_if_empty(folder: Path | None) -> None:
    """A failed command leaves no empty output folder behind (checkpoints it made are kept)."""
    if folder is not None and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _check_out(args) -> None:
    """Refuse an unusable output path before any work is done (nothing is created here)."""
    out = Path(args.out)
    folder = out.parent if args.command == "import" else out
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                raise NotADirectoryError(f"output path {out} cannot be created: {p} is a file")
            break

COMMANDS = {"reproduce": cmd_reproduce, "demo": cmd_demo, "train": cmd_train, "prune": cmd_prune, "eval": cmd_eval,
            "stats": cmd_stats, "import": cmd_import}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``robprune`` command; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    created: Path | None = None
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded with the results
        _check_out(args)
        out = Path(args.out)
        created = out if args.command != "import" and not out.exists() else None
        COMMANDS[args.command](args)
    except SystemExit as exit_:  # --help and --version
        return int(exit_.code or 0)
    except (UsageError, ValueError, TypeError, OSError, DivergenceError, json.JSONDecodeError) as err:
        _remove_if_empty(created)
        print(f"robprune: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("robprune: interrupted; finished units and checkpoints are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
