"""robprune prune: prune a checkpoint by a registered criterion (one shot) or learn its mask from data (HYDRA)."""

from __future__ import annotations

from ..learned.job import PruneJob, run_prune_job
from ..pruning import CHANNEL_CRITERIA, LEARNED, SCOPES, list_methods
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
    channel = args.structure == "channel"
    learned = args.method == "hydra" if channel else args.method in LEARNED.names()
    learning = None
    if learned and args.data:  # score learning: train's objective options, the method's default lr
        from .train_options import config_from_args

        if args.lr is None:
            args.lr = LEARNED.info("hydra" if channel else args.method)["default_lr"]
        learning = config_from_args(args, fine_tuning=False, method=None, amount=0.0, scope="global",
                                    keep_ends=False, seed=args.seed)
    job = PruneJob(checkpoint=args.checkpoint, method=args.method, amount=args.amount, out=args.out_dir,
                   structure=args.structure, scope=args.scope, keep_ends=args.keep_ends, seed=args.seed,
                   arch=args.arch, data=args.data, learning=learning, input_size=args.input_size,
                   resume=args.resume, record=resolved(args))
    lines, summary = run_prune_job(job, device(args.device), Progress() if learned else None)
    print("\n".join(lines))
    print(f"{summary}; wrote {args.out_dir}/model.safetensors" if channel else
          f"wrote {args.out_dir}/model.safetensors")
