"""Training into a folder: the one place a trained model is written (``model.safetensors`` beside the resumable
``last.safetensors``), with one metadata schema, for ``robprune train``, the studies' cached units and the demo."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..distributed import is_main
from .config import TrainConfig
from .loop import CatastrophicOverfitting, train


def train_into(folder: str | Path, model: nn.Module, data, config: TrainConfig, *, masks=None, resume: bool = True,
               progress=None, meta: dict | None = None, keep_best: bool = False) -> dict:
    """Train ``model`` in place with ``config`` into ``folder`` (``resume``: continue its last.safetensors) and
    write ``folder/model.safetensors`` with ``{"config", "tau_resolved", "history", "stopped", **meta}``; returns
    train's result (history, masks, tau_resolved) with "stopped".

    ``keep_best``: when adversarial training collapses (catastrophic overfitting, caught by the guard), keep the
    guard's best checkpoint and say so in "stopped" instead of raising."""
    folder = Path(folder)
    meta = dict(meta or {})
    stopped = None
    try:
        result = train(model, data, config, out_dir=folder, masks=masks, resume=resume, progress=progress, meta=meta)
    except CatastrophicOverfitting as err:
        if not keep_best or not (folder / "best.safetensors").is_file():
            raise
        best, kept, saved = load_checkpoint(folder / "best.safetensors")
        model.load_state_dict(best.state_dict())
        stopped = str(err)
        result = {"masks": kept, "tau_resolved": saved.get("tau_resolved"), "history": saved.get("history", []),
                  "config": asdict(config)}
    if is_main():
        save_checkpoint(folder / "model.safetensors", model, result["masks"],
                        {"config": asdict(config), "tau_resolved": result["tau_resolved"],
                         "history": result["history"], "stopped": stopped, **meta})
    return result | {"stopped": stopped}
