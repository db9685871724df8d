"""robprune train: training or fine-tuning; its options are derived from the fields of TrainConfig."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import asdict
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..data import load_dataset
from ..evaluation.checks import CHANCE_MARGIN
from ..io import write_json
from ..models import MODELS, create_model
from ..pruning import LEARNED, sparsity_report
from ..training import train_into
from .common import Progress, add_device, device, non_negative, positive_int, resolved, say_error
from .train_options import FINETUNE_LR, add_config_arguments, config_from_args

HELP = "Train or fine-tune, with pruning, the high-magnitude regulariser and adversarial objectives."
EXAMPLE = ("robprune train --data digits --arch small_cnn --epochs 20 --out runs/base\n"
           "  robprune train --data digits --init runs/base/model.safetensors --method cp --amount 0.5 "
           "--lam 0.1 --tau q0.9 --epochs 10 --lr 0.01 --out runs/ours\n"
           "  robprune train --data digits --arch small_cnn --adv pgd --adv-eps 32 --adv-steps 5 --method cp "
           "--amount 0.5 --out runs/adv")


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="digits | cifar10:DIR | imagefolder:PATH")
    p.add_argument("--arch", help=f"one of {MODELS.describe()}, or package.module:factory (default: from --init)")
    p.add_argument("--arch-kwargs", type=arch_kwargs, default=None,
                   help='keyword arguments of the architecture or factory as a JSON object, e.g. \'{"width": 16}\' '
                        "(recorded in the checkpoint, which rebuilds the model with them)")
    p.add_argument("--init", help="robprune checkpoint to start from (its masks are kept)")
    p.add_argument("--structure", choices=("weight", "channel"), default="weight",
                   help="channel: before training, remove --amount of every coupled group's channels by the channel "
                        "criterion --method (l1, reverse, random, bn_scale), then train the slim model (the hinge "
                        "--lam/--tau works as for weights)")
    add_config_arguments(p)
    p.add_argument("--score-epochs", type=positive_int, default=None,
                   help="--method hydra (a mask learned from data): epochs of score learning before the fine-tuning "
                        "of --epochs (default: --epochs)")
    p.add_argument("--score-lr", type=non_negative, default=None,
                   help="--method hydra: peak lr of score learning (default: the method's, 0.1)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    p.add_argument("--nproc", type=positive_int, default=1, help="start N data-parallel processes on this machine "
                                                                  "through torch's elastic launcher (torchrun)")
    p.add_argument("--sync-bn", action="store_true", help="distributed runs: BatchNorm statistics over the global "
                                                          "batch (SyncBatchNorm; GPUs only)")
    p.add_argument("--dist-backend", default="auto", help="torch.distributed backend under torchrun: auto (NCCL on "
                                                          "GPUs, gloo on CPUs), gloo or nccl")
    p.add_argument("--dist-timeout", type=non_negative, default=300.0, help="seconds to wait for the other ranks")
    add_device(p)
    p.add_argument("--out", default="runs/train", help="output folder")


def arch_kwargs(text: str) -> dict:
    """``--arch-kwargs``: a JSON object of scalar values (numbers, strings, booleans, null)."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err.msg}): {text!r}") from None
    if not isinstance(value, dict) or not all(isinstance(v, (int, float, str, bool, type(None)))
                                              for v in value.values()):
        raise argparse.ArgumentTypeError(f"must be a JSON object of numbers, strings or booleans, got {text!r}")
    reserved = sorted(set(value) & {"num_classes", "in_channels", "mean", "std"})
    if reserved:
        raise argparse.ArgumentTypeError(f"{', '.join(reserved)} come from the data, not --arch-kwargs")
    return value


def launch(args) -> None:
    """``--nproc N``: rerun this command under torch's elastic launcher (torchrun) with N processes.

    Called by the CLI before it takes the output folder's lock: the ranks it starts take it themselves (rank 0),
    so the launcher must not hold it."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    argv = []
    skip = False
    for arg in args.argv:  # drop "--nproc N" and "--nproc=N"
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            argv.append(arg)
    try:
        torchrun(["--standalone", "--nproc_per_node", str(args.nproc), "-m", "robprune", *argv])
    except ChildFailedError as err:
        codes = sorted({f.exitcode for f in err.failures.values()})
        raise RuntimeError(f"{len(err.failures)} of {args.nproc} training processes failed (exit code "
                           f"{', '.join(map(str, codes))}); their own error lines are above") from None


def launch_if_asked(args) -> bool:
    """Start torchrun for ``--nproc N`` > 1 (True), or do nothing (False) when this process is the run."""
    from .. import distributed

    if args.nproc <= 1:
        return False
    if distributed.launched_by_torchrun():
        raise ValueError("--nproc starts torchrun itself; under torchrun leave it out")
    launch(args)
    return True


def run(args) -> None:
    from .. import distributed

    if launch_if_asked(args):  # the CLI launches before locking; this is for a caller of run() itself
        return None
    dev = device(args.device)
    channel = args.structure == "channel"
    learned = not channel and args.method in LEARNED.names()
    # channel pruning and a learned mask happen once, before training; the weight-pruning fields then stay off
    config = config_from_args(args, fine_tuning=args.init is not None,
                              **({"method": None, "amount": 0.0} if channel or learned else {}))
    if learned and not args.init:
        raise ValueError(f"{args.method} learns the mask of a trained model: give --init CKPT")
    if learned and config.scope not in LEARNED.info(args.method).get("scopes", (config.scope,)):
        raise ValueError(f"--method {args.method} takes --scope {' or '.join(LEARNED.info(args.method)['scopes'])}")
    if not learned and (args.score_epochs is not None or args.score_lr is not None):
        raise ValueError("--score-epochs and --score-lr set the score learning of --method hydra")
    group = distributed.setup(dev, args.dist_backend, args.dist_timeout)
    dev = group.device
    if args.sync_bn and group.world == 1:
        raise ValueError("--sync-bn needs a distributed run (torchrun with more than one process)")
    if args.sync_bn and dev.type != "cuda":
        raise ValueError("--sync-bn needs GPUs (SyncBatchNorm has no CPU kernel); leave it out on CPUs")
    if config.batch_size % group.world:
        raise ValueError(f"batch size {config.batch_size} is not divisible by the {group.world} ranks; the batch "
                         "size is the global batch, choose a multiple of the rank count")
    if args.init and args.arch_kwargs:
        raise ValueError("--arch-kwargs builds a new model; a checkpoint given by --init rebuilds its own")
    data = load_dataset(args.data)
    masks = None
    if args.init:
        model, masks, meta = load_checkpoint(args.init, expect_arch=args.arch)
        if meta["num_classes"] != len(data.classes) or meta["in_channels"] != data.in_channels:
            raise ValueError(f"{args.init} has {meta['num_classes']} classes and {meta['in_channels']} channels; "
                             f"{args.data} has {len(data.classes)} and {data.in_channels}")
        arch = meta["arch"]
        if args.lr is None:
            Progress()({"kind": "note", "text": f"fine-tuning from {args.init}: lr {FINETUNE_LR} (pass --lr to "
                                                "change)"})
    else:
        if args.arch is None:
            raise ValueError("give --arch (or --init to start from a checkpoint)")
        torch.manual_seed(config.seed)
        mean, std = data.channel_stats()
        model = create_model(args.arch, num_classes=len(data.classes), in_channels=data.in_channels,
                             mean=mean, std=std, **(args.arch_kwargs or {}))
        arch = args.arch
    extra = {}
    if channel:
        model, masks, extra = _prune_channels_first(model, masks, data, args, config.seed)
    out = args.out_dir
    if learned:
        if group.world > 1:
            raise ValueError(f"--method {args.method} learns its mask in one process; run it without torchrun or "
                             "--nproc (prune --method hydra, then train --init on several)")
        model, masks, extra = _learn_mask_first(model, masks, data, args, config, dev, out)
    if (out / "last.safetensors").exists() and not args.resume:
        raise ValueError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
    identity = {"data": args.data, "arch": arch, "init": str(Path(args.init).resolve()) if args.init else None}
    model.to(dev)
    if args.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if group.is_main:
        write_json(out / "config.json", {**resolved(args), "train_config": asdict(config), "world_size": group.world})
    result = train_into(out, model, data, config, masks=masks, resume=args.resume,
                        progress=Progress() if group.is_main else None,
                        meta={"data": args.data, "identity": identity, "world_size": group.world, **extra})
    if not group.is_main:
        return
    final = result["history"][-1] if result["history"] else {}
    adv = f", adversarial train {100 * final['train_adv_acc']:.2f}%" if "train_adv_acc" in final else ""
    print(f"test accuracy {100 * final.get('test_acc', float('nan')):.2f}%{adv}, "
          f"sparsity {100 * sparsity_report(model)['sparsity']:.1f}%; wrote {out}/model.safetensors")
    chance = 1 / len(data.classes)
    if final.get("test_acc", 1.0) < chance + CHANCE_MARGIN:  # the run "succeeded", the model did not
        say_error(f"robprune: WARNING: the final model is at chance ({100 * final['test_acc']:.1f}% test accuracy "
                  f"with {len(data.classes)} classes): it learned nothing usable; look for a layer pruned "
                  "entirely (warned above), a too-high --lr or --amount")


def _learn_mask_first(model, masks, data, args, config, dev, out):
    """``--method hydra``: the mask learned from data (OUT/score-learning, resumable), then fine-tuned under it."""
    scoring = dataclasses.replace(config, epochs=args.score_epochs or config.epochs,
                                  lr=LEARNED.info(args.method)["default_lr"] if args.score_lr is None
                                  else args.score_lr).validate()
    folder = out / "score-learning"
    folder.mkdir(parents=True, exist_ok=True)
    resume = args.resume and any(folder.iterdir())
    model.to(dev)
    learned, history = LEARNED.get(args.method)(model, data, scoring, args.amount, config.scope, config.keep_ends,
                                                previous=masks or None, out_dir=folder, resume=resume,
                                                progress=Progress())
    model.cpu()
    step = {"method": args.method, "amount": args.amount, "scope": config.scope, "source": args.init,
            "config": asdict(scoring), "history": history}
    return model, learned, {"pruned": step}


def _prune_channels_first(model, masks, data, args, seed: int):
    """``--structure channel``: the slim model training starts from (the same every time, so --resume fits it)."""
    from ..pruning.channels import prune_channels
    from ..pruning.slim import count_macs

    x = data.x_test[:2].float() / 255
    slim, masks, record = prune_channels(model, args.method, args.amount, x, seed=seed, masks=masks or None)
    (macs0, params0), (macs1, params1) = count_macs(model, x[:1]), count_macs(slim, x[:1])
    Progress()({"kind": "note", "text": f"channel pruning by {args.method}: {params1:,} of {params0:,} parameters, "
                                        f"{macs1:,} of {macs0:,} MACs per image"})
    step = {"method": args.method, "amount": args.amount, "seed": seed, "source": args.init or "random init",
            "groups": record.groups, "input_size": list(x.shape[1:]), "params": [params0, params1],
            "macs": [macs0, macs1]}
    return slim, masks, {"channel_pruning": [step]}
