"""What ``robprune prune`` does, as one library call: a checkpoint pruned one shot by a criterion, with a mask
learned from data, or by whole channels removed for real; the result and its report written to a folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import check_fits_data, load_checkpoint, save_checkpoint
from ..io import write_json, write_text_atomic
from ..pruning import CHANNEL_CRITERIA, CRITERIA, LEARNED, SCOPES, apply_masks, compute_masks, sparsity_report
from ..training import TrainConfig


@dataclass(frozen=True)
class PruneJob:
    checkpoint: str
    method: str
    amount: float
    out: Path
    structure: str = "weight"  # or channel
    scope: str | None = None  # None: the method's default
    keep_ends: bool = False
    seed: int = 0
    arch: str | None = None  # a package.module:factory the checkpoint may name
    data: str | None = None  # learned methods: the data the mask (or channel scores) is learned on
    learning: TrainConfig | None = None  # learned methods: the objective and schedule of score learning
    input_size: int | None = None  # channels: the side of the input the model is traced with
    resume: bool = False  # learned methods: continue from OUT/scores.safetensors
    record: dict | None = None  # config.json (the command line)


def run_prune_job(job: PruneJob, device: torch.device | str = "cpu", progress=None) -> tuple[list[str], str]:
    """Prune as ``job`` says; writes model.safetensors, config.json and the size report (sparsity.* for weights,
    channels.* for channels) to ``job.out``; returns the report's lines and a one-line summary. Bad input raises
    ValueError in one line before anything is written."""
    if job.structure == "channel":
        return _channels(job, device, progress)
    learned = job.method in LEARNED.names()
    if not learned:
        CRITERIA.get(job.method)  # an unknown method: one line naming every method
    if learned and not job.data:
        raise ValueError(f"{job.method} learns its mask from data: give --data (e.g. --data digits)")
    scope = job.scope or (LEARNED.info(job.method)["default_scope"] if learned else "global")
    if scope not in SCOPES:
        raise ValueError(f"unknown pruning scope {scope!r}; choose one of {', '.join(SCOPES)}")
    if learned and scope not in LEARNED.info(job.method).get("scopes", SCOPES):
        raise ValueError(f"--method {job.method} takes --scope {' or '.join(LEARNED.info(job.method)['scopes'])} "
                         "(it learns how much of each layer to keep under one global target)")
    model, old_masks, meta = load_checkpoint(job.checkpoint, expect_arch=job.arch)
    pruned = {"method": job.method, "amount": job.amount, "scope": scope, "source": job.checkpoint}
    if learned:
        data = _data(job, meta)
        model.to(device)
        write_json(job.out / "config.json", job.record or {})
        masks, history = LEARNED.get(job.method)(model, data, job.learning, job.amount, scope, job.keep_ends,
                                                 previous=old_masks or None, out_dir=job.out, resume=job.resume,
                                                 progress=progress)
        model.cpu()
        pruned |= {"config": job.learning.__dict__, "history": history}
    else:
        masks = compute_masks(model, job.method, job.amount, scope, job.keep_ends, job.seed,
                              previous=old_masks or None)
    apply_masks(model, masks)
    report = sparsity_report(model, job.keep_ends)
    save_checkpoint(job.out / "model.safetensors", model, masks,
                    {**{k: v for k, v in meta.items() if k not in ("format", "robprune_version")}, "pruned": pruned})
    write_json(job.out / "sparsity.json", report)
    write_json(job.out / "config.json", job.record or {})
    lines = ["| layer | numel | zeros | sparsity |", "|---|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['numel']} | {r['zeros']} | {100 * r['sparsity']:.1f}% |" for r in report["layers"]]
    lines.append(f"| total | {report['numel']} | {report['zeros']} | {100 * report['sparsity']:.2f}% |")
    write_text_atomic(job.out / "sparsity.md", "\n".join(lines) + "\n")
    return lines, f"{100 * report['sparsity']:.2f}% of the prunable weights pruned by {job.method}"


def _data(job: PruneJob, meta: dict):
    """The data a learned method learns from, checked against the checkpoint."""
    from ..data import load_dataset

    data = load_dataset(job.data)
    check_fits_data(job.checkpoint, meta, data, job.data)
    return data


def _channels(job: PruneJob, device, progress) -> tuple[list[str], str]:
    """Channels removed for real (the weights of the rest unchanged), and the measured sizes."""
    from ..pruning.channels import prune_channels
    from ..pruning.slim import count_macs, example_input

    learned = job.method == "hydra"  # HYDRA's score learning at channel level
    if not learned:
        CHANNEL_CRITERIA.get(job.method)
    if job.resume and not learned:
        raise ValueError(f"--resume continues learned channel scores (--method hydra); {job.method} is one-shot")
    if learned != bool(job.data):
        raise ValueError("--structure channel --method hydra learns channel scores from --data; the other channel "
                         "criteria score the weights and take no --data")
    if learned and job.scope == "global":
        raise ValueError("channel HYDRA learns the channels of every coupled group under that group's budget; "
                         "--scope global is for the one-shot channel criteria")
    model, masks, meta = load_checkpoint(job.checkpoint, expect_arch=job.arch)
    x = example_input(meta, job.input_size)
    scores, history = None, None
    if learned:
        from .hydra_channels import learn_channel_scores

        data = _data(job, meta)
        model.to(device)
        scores, history = learn_channel_scores(model, data, job.learning, job.amount, x, progress=progress,
                                               out_dir=job.out, resume=job.resume)
        model.cpu()
    scope = job.scope or "layer"
    slim, masks, record = prune_channels(model, "l1" if learned else job.method, job.amount, x, seed=job.seed,
                                         masks=masks or None, scores=scores, scope=scope)
    (macs0, params0), (macs1, params1) = count_macs(model, x[:1]), count_macs(slim, x[:1])
    sizes = {"input_size": list(x.shape[1:]), "params": [params0, params1], "macs": [macs0, macs1]}
    steps = list(meta.get("channel_pruning") or [])
    steps.append({"method": job.method, "amount": job.amount, "scope": scope, "seed": job.seed,
                  "source": job.checkpoint,
                  "groups": record.groups, **sizes, **({"score_learning": history} if learned else {})})
    keep = {k: v for k, v in meta.items() if k not in ("format", "robprune_version", "structure")}
    save_checkpoint(job.out / "model.safetensors", slim, masks, {**keep, "channel_pruning": steps})
    write_json(job.out / "channels.json", {**sizes, "groups": record.groups, "removed": record.removed})
    write_json(job.out / "config.json", job.record or {})
    lines = ["| | dense | slim | ratio |", "|---|---:|---:|---:|",
             f"| parameters | {params0:,} | {params1:,} | {params1 / params0:.3f} |",
             f"| MACs per image ({'x'.join(map(str, x.shape[1:]))}) | {macs0:,} | {macs1:,} | {macs1 / macs0:.3f} |"]
    write_text_atomic(job.out / "channels.md", "\n".join(lines) + "\n")
    return lines, f"{len(record.groups)} channel groups pruned by {job.method}"
