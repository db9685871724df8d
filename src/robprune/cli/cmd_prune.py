"""robprune prune: prune a checkpoint by a registered criterion (one shot) or learn its mask from data (HYDRA)."""

from __future__ import annotations

from ..checkpoint import load_checkpoint, save_checkpoint
from ..io import write_json, write_text_atomic
from ..pruning import (CHANNEL_CRITERIA, CRITERIA, LEARNED, SCOPES, apply_masks, compute_masks, list_methods,
                       sparsity_report)
from .common import Progress, add_device, amount, device, positive_int, resolved

HELP = ("Prune a checkpoint: weights one shot by a criterion or with a mask learned from data (hydra), or whole "
        "channels removed for real (--structure channel).")
EXAMPLE = ("robprune prune runs/base/model.safetensors --method rp --amount 0.1 --out runs/rp10\n"
           "  robprune prune runs/base/model.safetensors --method hydra --amount 0.9 --data digits --adv pgd "
           "--adv-eps 16 --epochs 5 --out runs/hydra90\n"
           "  robprune prune runs/base/model.safetensors --structure channel --method l1 --amount 0.5 --out runs/ch50\n"
           "  robprune train --data digits --init runs/hydra90/model.safetensors --epochs 5 --out runs/hydra90-ft")
# TrainConfig fields prune sets itself (the learned methods' objective, epochs, lr... come from the options)
OWN = ("method", "amount", "scope", "keep_ends", "seed")


def add_arguments(p) -> None:
    from .train_options import add_config_arguments

    methods = ", ".join(f"{n}{' (learns from --data)' if v['needs_data'] else ''}" for n, v in list_methods().items())
    p.add_argument("checkpoint")
    p.add_argument("--method", required=True, help=f"pruning method: {methods}; with --structure channel one of "
                                                   f"{', '.join(CHANNEL_CRITERIA.names())}, or hydra (channel scores "
                                                   "learned from --data)")
    p.add_argument("--structure", choices=("weight", "channel"), default="weight",
                   help="weight: zero single weights (masks; same shapes); channel: remove whole channels, the "
                        "dependent layers shrunk (a smaller, faster model; --amount is the fraction of every "
                        "coupled group's channels)")
    p.add_argument("--input-size", type=positive_int, default=None,
                   help="--structure channel: side of the square input the model is traced with (default: the "
                        "checkpoint's, else 8 for digits and 32 otherwise)")
    p.add_argument("--amount", type=amount, required=True,
                   help="fraction of prunable weights pruned in the result, [0, 1); on a pruned checkpoint this is "
                        "the total, its old zeros included (they stay pruned), so it must be at least its sparsity")
    p.add_argument("--scope", default=None, help=f"one of {', '.join(SCOPES)} (default: global; layer for hydra, as "
                                                 "in its paper; with --structure channel: layer, the same fraction "
                                                 "of every coupled group, or global, the lowest normalised channel "
                                                 "scores of all groups)")
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
    if args.structure == "channel":
        return run_channels(args)
    learned = args.method in LEARNED.names()
    if not learned:
        CRITERIA.get(args.method)  # an unknown method: one line naming every method
    if learned and not args.data:
        raise ValueError(f"{args.method} learns its mask from data: give --data (e.g. --data digits)")
    scope = args.scope or (LEARNED.info(args.method)["default_scope"] if learned else "global")
    if scope not in SCOPES:
        raise ValueError(f"unknown pruning scope {scope!r}; choose one of {', '.join(SCOPES)}")
    if learned and scope not in LEARNED.info(args.method).get("scopes", SCOPES):
        raise ValueError(f"--method {args.method} takes --scope {' or '.join(LEARNED.info(args.method)['scopes'])} "
                         "(it learns how much of each layer to keep under one global target)")
    model, old_masks, meta = load_checkpoint(args.checkpoint, expect_arch=args.arch)
    out = args.out_dir
    pruned = {"method": args.method, "amount": args.amount, "scope": scope, "source": args.checkpoint}
    if learned:
        config, data = _learning(args, meta)
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


def _learning(args, meta: dict):
    """(TrainConfig, data) of a method that learns from data: train's objective options, HYDRA's default lr."""
    from ..data import load_dataset
    from .train_options import config_from_args

    if args.lr is None:
        args.lr = LEARNED.info("hydra" if args.structure == "channel" else args.method)["default_lr"]
    config = config_from_args(args, fine_tuning=False, method=None, amount=0.0, scope="global", keep_ends=False,
                              seed=args.seed)
    data = load_dataset(args.data)
    if (meta.get("num_classes"), meta.get("in_channels")) != (len(data.classes), data.in_channels):
        raise ValueError(f"{args.checkpoint} has {meta.get('num_classes')} classes and {meta.get('in_channels')} "
                         f"channels; {args.data} has {len(data.classes)} and {data.in_channels}")
    return config, data


def run_channels(args) -> None:
    """--structure channel: a slim model (channels removed, weights of the rest unchanged) and its measured sizes."""
    from ..pruning.channels import prune_channels
    from ..pruning.slim import count_macs, example_input

    learned = args.method == "hydra"  # HYDRA's score learning at channel level
    if not learned:
        CHANNEL_CRITERIA.get(args.method)
    if args.resume and not learned:
        raise ValueError(f"--resume continues learned channel scores (--method hydra); {args.method} is one-shot")
    if learned != bool(args.data):
        raise ValueError("--structure channel --method hydra learns channel scores from --data; the other channel "
                         "criteria score the weights and take no --data")
    if learned and args.scope == "global":
        raise ValueError("channel HYDRA learns the channels of every coupled group under that group's budget; "
                         "--scope global is for the one-shot channel criteria")
    model, masks, meta = load_checkpoint(args.checkpoint, expect_arch=args.arch)
    x = example_input(meta, args.input_size)
    scores, history = None, None
    if learned:
        from ..learned.hydra_channels import learn_channel_scores

        config, data = _learning(args, meta)
        model.to(device(args.device))
        scores, history = learn_channel_scores(model, data, config, args.amount, x, progress=Progress(),
                                               out_dir=args.out_dir, resume=args.resume)
        model.cpu()
    scope = args.scope or "layer"
    slim, masks, record = prune_channels(model, "l1" if learned else args.method, args.amount, x, seed=args.seed,
                                         masks=masks or None, scores=scores, scope=scope)
    (macs0, params0), (macs1, params1) = count_macs(model, x[:1]), count_macs(slim, x[:1])
    sizes = {"input_size": list(x.shape[1:]), "params": [params0, params1], "macs": [macs0, macs1]}
    steps = list(meta.get("channel_pruning") or [])
    steps.append({"method": args.method, "amount": args.amount, "scope": scope, "seed": args.seed,
                  "source": args.checkpoint,
                  "groups": record.groups, **sizes, **({"score_learning": history} if learned else {})})
    keep = {k: v for k, v in meta.items() if k not in ("format", "robprune_version", "structure")}
    save_checkpoint(args.out_dir / "model.safetensors", slim, masks, {**keep, "channel_pruning": steps})
    write_json(args.out_dir / "channels.json", {**sizes, "groups": record.groups, "removed": record.removed})
    write_json(args.out_dir / "config.json", resolved(args))
    lines = ["| | dense | slim | ratio |", "|---|---:|---:|---:|",
             f"| parameters | {params0:,} | {params1:,} | {params1 / params0:.3f} |",
             f"| MACs per image ({'x'.join(map(str, x.shape[1:]))}) | {macs0:,} | {macs1:,} | {macs1 / macs0:.3f} |"]
    write_text_atomic(args.out_dir / "channels.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"{len(record.groups)} channel groups pruned by {args.method}; wrote {args.out_dir}/model.safetensors")
