"""robprune prune: prune a checkpoint by a registered criterion (one shot) or learn its mask from data (HYDRA)."""

from __future__ import annotations

from ..checkpoint import load_checkpoint, save_checkpoint
from ..io import write_json, write_text_atomic
from ..pruning import CRITERIA, LEARNED, SCOPES, apply_masks, compute_masks, list_methods, sparsity_report
from .common import Progress, add_device, amount, device, resolved

HELP = "Prune a checkpoint: one shot by a weight criterion, or with a mask learned from data (hydra)."
EXAMPLE = ("robprune prune runs/base/model.safetensors --method rp --amount 0.1 --out runs/rp10\n"
           "  robprune prune runs/base/model.safetensors --method hydra --amount 0.9 --data digits --adv pgd "
           "--adv-eps 16 --epochs 5 --out runs/hydra90\n"
           "  robprune train --data digits --init runs/hydra90/model.safetensors --epochs 5 --out runs/hydra90-ft")
# TrainConfig fields prune sets itself (the learned methods' objective, epochs, lr... come from the options)
OWN = ("method", "amount", "scope", "keep_ends", "seed")


def add_arguments(p) -> None:
    from .cmd_train import add_config_arguments

    methods = ", ".join(f"{n}{' (learns from --data)' if v['needs_data'] else ''}" for n, v in list_methods().items())
    p.add_argument("checkpoint")
    p.add_argument("--method", required=True, help=f"pruning method: {methods}")
    p.add_argument("--amount", type=amount, required=True,
                   help="fraction of prunable weights pruned in the result, [0, 1); on a pruned checkpoint this is "
                        "the total, its old zeros included (they stay pruned), so it must be at least its sparsity")
    p.add_argument("--scope", default=None, help=f"one of {', '.join(SCOPES)} (default: global; layer for hydra, as "
                                                 "in its paper)")
    p.add_argument("--keep-ends", action="store_true", help="leave the first conv and last linear layer dense")
    p.add_argument("--seed", type=int, default=0, help="seed of the random criterion and of score learning")
    p.add_argument("--arch", help="a package.module:factory the checkpoint was built by (allows importing it)")
    p.add_argument("--data", help="learned methods: the data to learn the mask on (digits | cifar10:DIR | "
                                  "imagefolder:PATH)")
    group = p.add_argument_group("learned methods (hydra): the objective and schedule of score learning")
    add_config_arguments(group, skip=OWN)
    p.add_argument("--resume", action="store_true", help="learned methods: continue from OUT/scores.safetensors")
    add_device(p)
    p.add_argument("--out", default="runs/prune", help="output folder")


def run(args) -> None:
    learned = args.method in LEARNED.names()
    if not learned:
        CRITERIA.get(args.method)  # an unknown method: one line naming every method
    if learned and not args.data:
        raise ValueError(f"{args.method} learns its mask from data: give --data (e.g. --data digits)")
    scope = args.scope or (LEARNED.info(args.method)["default_scope"] if learned else "global")
    if scope not in SCOPES:
        raise ValueError(f"unknown pruning scope {scope!r}; choose one of {', '.join(SCOPES)}")
    model, old_masks, meta = load_checkpoint(args.checkpoint, expect_arch=args.arch)
    out = args.out_dir
    pruned = {"method": args.method, "amount": args.amount, "scope": scope, "source": args.checkpoint}
    if learned:
        from ..data import load_dataset
        from .cmd_train import config_from_args

        if args.lr is None:
            args.lr = LEARNED.info(args.method)["default_lr"]
        config = config_from_args(args, fine_tuning=False, method=None, amount=0.0, scope="global", keep_ends=False,
                                  seed=args.seed)
        data = load_dataset(args.data)
        if (meta.get("num_classes"), meta.get("in_channels")) != (len(data.classes), data.in_channels):
            raise ValueError(f"{args.checkpoint} has {meta.get('num_classes')} classes and {meta.get('in_channels')} "
                             f"channels; {args.data} has {len(data.classes)} and {data.in_channels}")
        model.to(device(args.device))
        write_json(out / "config.json", resolved(args))
        masks, history = LEARNED.get(args.method)(model, data, config, args.amount, scope, args.keep_ends,
                                                  previous=old_masks or None, out_dir=out, resume=args.resume,
                                                  progress=Progress())
        model.cpu()
        pruned |= {"config": config.__dict__, "history": history}
    else:
        masks = compute_masks(model, args.method, args.amount, scope, args.keep_ends, args.seed,
                              previous=old_masks or None)
    apply_masks(model, masks)
    report = sparsity_report(model, args.keep_ends)
    save_checkpoint(out / "model.safetensors", model, masks,
                    {**{k: v for k, v in meta.items() if k not in ("format", "robprune_version")}, "pruned": pruned})
    write_json(out / "sparsity.json", report)
    write_json(out / "config.json", resolved(args))
    lines = ["| layer | numel | zeros | sparsity |", "|---|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['numel']} | {r['zeros']} | {100 * r['sparsity']:.1f}% |" for r in report["layers"]]
    lines.append(f"| total | {report['numel']} | {report['zeros']} | {100 * report['sparsity']:.2f}% |")
    write_text_atomic(out / "sparsity.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}/model.safetensors")
