"""What ``robprune train`` runs, as one library call: a model (a new architecture, or a checkpoint to fine-tune),
optionally pruned first (channels removed for real, or a mask learned from data), trained into a folder."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..checkpoint import check_fits_data, load_checkpoint
from ..data import load_dataset
from ..io import write_json
from ..models import create_model
from ..pruning import LEARNED
from .config import TrainConfig
from .folder import train_into


@dataclass(frozen=True)
class TrainJob:
    data: str  # digits | cifar10:DIR | imagefolder:PATH
    config: TrainConfig  # with a learned mask or channel pruning, its own method/amount are off (set below)
    out: Path
    arch: str | None = None  # a new model of this architecture (or the checkpoint's, checked against it)
    arch_kwargs: dict | None = None
    init: str | None = None  # a checkpoint to start from (its masks are kept)
    structure: str = "weight"  # channel: remove `amount` of every coupled group's channels by `method` first
    method: str | None = None  # the channel criterion, or a learned method (hydra, hydra-rates); else in config
    amount: float = 0.0
    score_epochs: int | None = None  # a learned method's score learning (default: config.epochs)
    score_lr: float | None = None
    resume: bool = False
    sync_bn: bool = False
    record: dict | None = None  # what config.json records beside the train config (the command line)
    init_note: str | None = None  # a remark for ``note`` once the init checkpoint has loaded (e.g. the lr chosen)

    @property
    def channel(self) -> bool:
        return self.structure == "channel"

    @property
    def learned(self) -> bool:
        return not self.channel and self.method in LEARNED.names()

    def validate(self, world: int = 1, device: torch.device | None = None) -> TrainJob:
        """Refuse what cannot run, before anything is loaded or written (one-line ValueErrors)."""
        if self.learned and not self.init:
            raise ValueError(f"{self.method} learns the mask of a trained model: give --init CKPT")
        scopes = LEARNED.info(self.method).get("scopes", (self.config.scope,)) if self.learned else ()
        if self.learned and self.config.scope not in scopes:
            raise ValueError(f"--method {self.method} takes --scope {' or '.join(scopes)}")
        if not self.learned and (self.score_epochs is not None or self.score_lr is not None):
            raise ValueError("--score-epochs and --score-lr set the score learning of --method hydra")
        if self.sync_bn and world == 1:
            raise ValueError("--sync-bn needs a distributed run (torchrun with more than one process)")
        if self.sync_bn and device is not None and device.type != "cuda":
            raise ValueError("--sync-bn needs GPUs (SyncBatchNorm has no CPU kernel); leave it out on CPUs")
        if self.config.batch_size % world:
            raise ValueError(f"batch size {self.config.batch_size} is not divisible by the {world} ranks; the batch "
                             "size is the global batch, choose a multiple of the rank count")
        if self.init and self.arch_kwargs:
            raise ValueError("--arch-kwargs builds a new model; a checkpoint given by --init rebuilds its own")
        return self


def run_train_job(job: TrainJob, device: torch.device, world: int = 1, is_main: bool = True,
                  progress=None, note=None) -> dict:
    """Train as ``job`` says into ``job.out`` (model.safetensors, config.json, metrics); returns train_into's
    result plus ``model`` and ``classes``. ``progress``: a factory of progress callbacks (None: silent);
    ``note(text)`` receives one-line remarks (the pruning done before training)."""
    job.validate(world, device)
    data = load_dataset(job.data)
    masks = None
    if job.init:
        model, masks, meta = load_checkpoint(job.init, expect_arch=job.arch)
        check_fits_data(job.init, meta, data, job.data)
        arch = meta["arch"]
        if note is not None and job.init_note:
            note(job.init_note)
    else:
        if job.arch is None:
            raise ValueError("give --arch (or --init to start from a checkpoint)")
        torch.manual_seed(job.config.seed)
        mean, std = data.channel_stats()
        model = create_model(job.arch, num_classes=len(data.classes), in_channels=data.in_channels,
                             mean=mean, std=std, **(job.arch_kwargs or {}))
        arch = job.arch
    extra = {}
    if job.channel:
        model, masks, extra = _prune_channels_first(model, masks, data, job, note)
    if job.learned:
        if world > 1:
            raise ValueError(f"--method {job.method} learns its mask in one process; run it without torchrun or "
                             "--nproc (prune --method hydra, then train --init on several)")
        model, masks, extra = _learn_mask_first(model, masks, data, job, device, progress)
    if (job.out / "last.safetensors").exists() and not job.resume:
        raise ValueError(f"{job.out} already holds a training run; pass --resume to continue it or choose another "
                         "--out")
    identity = {"data": job.data, "arch": arch, "init": str(Path(job.init).resolve()) if job.init else None}
    model.to(device)
    if job.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if is_main:
        write_json(job.out / "config.json", {**(job.record or {}), "train_config": asdict(job.config),
                                             "world_size": world})
    result = train_into(job.out, model, data, job.config, masks=masks, resume=job.resume,
                        progress=progress() if progress and is_main else None,
                        meta={"data": job.data, "identity": identity, "world_size": world, **extra})
    return {**result, "model": model, "classes": data.classes}


def _learn_mask_first(model, masks, data, job: TrainJob, device, progress):
    """A learned method: the mask learned from data (OUT/score-learning, resumable), then fine-tuned under it."""
    config = job.config
    scoring = dataclasses.replace(config, epochs=job.score_epochs or config.epochs,
                                  lr=LEARNED.info(job.method)["default_lr"] if job.score_lr is None
                                  else job.score_lr).validate()
    folder = job.out / "score-learning"
    folder.mkdir(parents=True, exist_ok=True)
    resume = job.resume and any(folder.iterdir())
    model.to(device)
    learned, history = LEARNED.get(job.method)(model, data, scoring, job.amount, config.scope, config.keep_ends,
                                               previous=masks or None, out_dir=folder, resume=resume,
                                               progress=progress() if progress else None)
    model.cpu()
    step = {"method": job.method, "amount": job.amount, "scope": config.scope, "source": job.init,
            "config": asdict(scoring), "history": history}
    return model, learned, {"pruned": step}


def _prune_channels_first(model, masks, data, job: TrainJob, note):
    """Channel pruning: the slim model training starts from (the same every time, so a resume fits it)."""
    from ..pruning.channels import prune_channels
    from ..pruning.slim import count_macs

    seed = job.config.seed
    x = data.x_test[:2].float() / 255
    slim, masks, record = prune_channels(model, job.method, job.amount, x, seed=seed, masks=masks or None)
    (macs0, params0), (macs1, params1) = count_macs(model, x[:1]), count_macs(slim, x[:1])
    if note is not None:
        note(f"channel pruning by {job.method}: {params1:,} of {params0:,} parameters, {macs1:,} of {macs0:,} MACs "
             "per image")
    step = {"method": job.method, "amount": job.amount, "seed": seed, "source": job.init or "random init",
            "groups": record.groups, "input_size": list(x.shape[1:]), "params": [params0, params1],
            "macs": [macs0, macs1]}
    return slim, masks, {"channel_pruning": [step]}
