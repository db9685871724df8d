"""robprune train: training or fine-tuning; its options are derived from the fields of TrainConfig."""

from __future__ import annotations

import argparse

from ..evaluation.checks import CHANCE_MARGIN
from ..models import MODELS
from ..pruning import LEARNED, sparsity_report
from ..training.job import TrainJob, run_train_job
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
    job = TrainJob(data=args.data, config=config, out=args.out_dir, arch=args.arch, arch_kwargs=args.arch_kwargs,
                   init=args.init, structure=args.structure, method=args.method, amount=args.amount,
                   score_epochs=args.score_epochs, score_lr=args.score_lr, resume=args.resume, sync_bn=args.sync_bn,
                   record=resolved(args), init_note=f"fine-tuning from {args.init}: lr {FINETUNE_LR} (pass --lr to "
                                                        "change)" if args.lr is None else None)
    group = distributed.setup(dev, args.dist_backend, args.dist_timeout)
    result = run_train_job(job, group.device, group.world, group.is_main, progress=Progress,
                           note=lambda text: Progress()({"kind": "note", "text": text}))
    if not group.is_main:
        return
    final = result["history"][-1] if result["history"] else {}
    adv = f", adversarial train {100 * final['train_adv_acc']:.2f}%" if "train_adv_acc" in final else ""
    print(f"test accuracy {100 * final.get('test_acc', float('nan')):.2f}%{adv}, "
          f"sparsity {100 * sparsity_report(result['model'])['sparsity']:.1f}%; wrote {args.out_dir}/model.safetensors")
    chance = 1 / len(result["classes"])
    if final.get("test_acc", 1.0) < chance + CHANCE_MARGIN:  # the run "succeeded", the model did not
        say_error(f"robprune: WARNING: the final model is at chance ({100 * final['test_acc']:.1f}% test accuracy "
                  f"with {len(result['classes'])} classes): it learned nothing usable; look for a layer pruned "
                  "entirely (warned above), a too-high --lr or --amount")
