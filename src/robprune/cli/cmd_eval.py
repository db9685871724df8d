"""robprune eval: clean and attacked accuracy of one or more checkpoints (a thin shell over run_evaluation)."""

from __future__ import annotations

from pathlib import Path


from ..attacks.registry import ATTACKS
from ..evaluation.checkpoints import evaluate_checkpoints
from ..evaluation.fast import PRECISIONS
from ..evaluation.run import EvalRequest
from ..evaluation.suite import SUITE_HELP
from ..io import write_json, write_text_atomic
from ..reporting.markdown import eps_label, eval_report, plot_accuracy_vs_eps
from .common import (Progress, add_device, device, factory_arch, non_negative, parse_eps_list, positive_int, resolved,
                     say_error)

HELP = "Clean accuracy and accuracy under attack (any registered attack, or a suite) for a list of eps."
EXAMPLE = ("robprune eval runs/base/model.safetensors --data digits --eps 8,16,32 --steps 10 --out runs/eval\n"
           "  robprune eval runs/cp/model.safetensors runs/rp/model.safetensors --data digits --eps 8,16 "
           "--suite autoattack --n-images 200")


def add_arguments(p) -> None:
    p.add_argument("checkpoints", nargs="+", metavar="checkpoint")
    p.add_argument("--data", required=True, help="digits | cifar10:DIR | imagefolder:PATH")
    p.add_argument("--eps", default="1,2,4,8", help="comma-separated radii in units of 1/255 (or a/b values); "
                                                      "'none' for clean accuracy only")
    p.add_argument("--eps-unit", default="255", help="unit of plain --eps numbers: 255 (8 = 8/255) or fraction "
                                                      "(0.031, as the Adversarial Pruning Benchmark writes it)")
    p.add_argument("--attack", default="pgd", help=f"one of {ATTACKS.describe()}")
    p.add_argument("--steps", type=positive_int, default=4, help="the attack's budget: steps, or queries for square")
    p.add_argument("--step-scale", type=non_negative, default=2.5, help="PGD step size = SCALE*eps/steps")
    p.add_argument("--no-random-start", action="store_true", help="PGD starts at the clean image")
    p.add_argument("--loss", default="ce", help="loss of pgd/pgd-l2: ce, cw or dlr")
    p.add_argument("--restarts", type=positive_int, default=1, help="random restarts of pgd")
    p.add_argument("--suite", help="worst case per point over a fixed list of attacks: "
                                   + "; ".join(f"{k}: {v}" for k, v in SUITE_HELP.items())
                                   + ". 'autoattack' is the one comparable with published AutoAttack numbers")
    p.add_argument("--exact-model", action="store_true", help="attack the model itself, not its BatchNorm-folded "
                                                              "channels_last copy (the fast default; outcomes are "
                                                              "always decided by the original model)")
    p.add_argument("--compile", action="store_true", help="torch.compile the attack model (GPU; plain PGD)")
    p.add_argument("--precision", default="fp32", help=f"precision of the attack passes (plain PGD, any attack or "
                                                        f"--suite): {', '.join(PRECISIONS)} (fp16 GPU only); every "
                                                        "outcome is checked in fp32, so it can only be weaker")
    p.add_argument("--seeds", type=positive_int, default=1, help="repeat with N seeds; report mean and std")
    p.add_argument("--no-checks", action="store_true", help="skip the gradient-masking sanity checks")
    p.add_argument("--check-images", type=positive_int, default=200, help="images for the sanity checks "
                                                                          "(class-balanced, random)")
    p.add_argument("--n-images", type=positive_int, help="N test images, a fixed random subset (default: all)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per attack batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    p.add_argument("--label", action="append", help="row label of each checkpoint, in order (default: a unique "
                                                    "readable name from its path)")
    p.add_argument("--arch", help="a package.module:factory the checkpoints were built by (allows importing it)")
    p.add_argument("--dist-backend", default="auto", help="torch.distributed backend under torchrun: auto, gloo "
                                                          "or nccl (the images are split across the ranks)")
    add_device(p)
    p.add_argument("--out", default="runs/eval", help="output folder")


def labels_for(paths: list[str], given: list[str] | None) -> list[str]:
    """Unique readable labels: --label values, else the shortest path suffix that tells the files apart."""
    if given:
        if len(given) != len(paths):
            raise ValueError(f"{len(given)} --label values for {len(paths)} checkpoints")
        if len(set(given)) != len(given):
            raise ValueError("--label values must be unique")
        return list(given)
    parts = [Path(p).resolve().parts for p in paths]
    for depth in range(1, max(len(q) for q in parts) + 1):
        names = ["/".join(q[-depth:]) for q in parts]
        if depth == 1:  # model.safetensors says nothing: prefer the folder
            names = [q[-2] if len(q) > 1 and q[-1] == "model.safetensors" else q[-1] for q in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def request_from_args(args) -> EvalRequest:
    if args.eps_unit not in ("255", "fraction"):
        raise ValueError(f"unknown --eps-unit {args.eps_unit!r}; use 255 or fraction")
    eps = parse_eps_list(args.eps, args.eps_unit)
    return EvalRequest(eps=tuple(eps), attack=args.attack, steps=args.steps, step_scale=args.step_scale,
                       random_start=not args.no_random_start, loss=args.loss, restarts=args.restarts,
                       suite=args.suite, seeds=args.seeds, checks=not args.no_checks,
                       check_images=args.check_images, batch_size=args.batch_size, seed=args.seed,
                       precision=args.precision, exact_model=args.exact_model, compile=args.compile,
                       per_image=True).validate()


def run(args) -> None:
    from .. import distributed

    dev = device(args.device)
    request = request_from_args(args)
    group = distributed.setup(dev, args.dist_backend)
    dev = group.device
    labels = labels_for(args.checkpoints, args.label)
    progress = Progress() if group.is_main else None
    results, n = evaluate_checkpoints(args.checkpoints, args.data, request, labels, args.n_images, factory_arch(args),
                                      dev, progress, data_progress=Progress())
    if progress is not None:
        progress.close()
    if not group.is_main:
        return
    attack, lines = eval_report(results, request, n)
    out = args.out_dir
    config = resolved(args)
    payload = {**results[labels[0]], "config": config} if len(results) == 1 else {"models": results, "config": config}
    write_json(out / "eval.json", payload)
    write_text_atomic(out / "eval.md", "\n".join(lines) + "\n")
    if len(request.eps) > 1 and all(isinstance(e, float) for e in request.eps):  # one line per checkpoint
        plot_accuracy_vs_eps(results, out / "eval.png", attack)
    print("\n".join(lines))
    for label, result in results.items():
        for warning in result["warnings"]:
            say_error(f"robprune: WARNING: {label}: {warning}")
    seconds = sum(r["seconds"] for r in results.values())
    if not request.eps:
        print(f"clean accuracy only, {n} test images of {args.data}; {seconds:.1f} s; wrote {out}/eval.json")
        return
    print(f"{request.label()} on {n} test images of {args.data}, eps {', '.join(eps_label(e) for e in request.eps)}; "
          f"{seconds:.1f} s; wrote {out}/eval.json")
