"""What ``robprune eval`` does with its checkpoints, as one library call: each loaded (weights only), checked
against the data, and evaluated by ``run_evaluation`` on the same test images."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..checkpoint import check_fits_data, load_checkpoint
from ..data import load_dataset
from ..data.batches import as_float_images
from .accuracy import fixed_subset
from .run import EvalRequest, run_evaluation


def evaluate_checkpoints(paths: Sequence[str], data_spec: str, request: EvalRequest, labels: Sequence[str],
                         n_images: int | None = None, arch: str | None = None, device: torch.device | str = "cpu",
                         progress: Callable[[dict], None] | None = None, data_progress=None) -> tuple[dict, int]:
    """``{label: run_evaluation result (plus "checkpoint")}`` for every checkpoint, on the first ``n_images`` of
    ``fixed_subset`` (None: every test image), and that number of images. Every checkpoint is loaded and checked
    (classes, channels, logits per image) before anything is evaluated; a mismatch raises ValueError in one line.
    ``arch``: a user factory (package.module:function) a checkpoint may name."""
    models = [load_checkpoint(path, expect_arch=arch) for path in paths]
    data = load_dataset(data_spec, progress=data_progress)
    for path, (_, _, meta) in zip(paths, models):
        check_fits_data(path, meta, data, data_spec)
    n = len(data.x_test) if n_images is None else min(n_images, len(data.x_test))
    if n == 0:
        raise ValueError(f"{data_spec} has no test images to evaluate")
    x, y = fixed_subset(data.x_test, data.y_test, n)
    for path, (model, _, _) in zip(paths, models):  # what the model computes, not what its file says
        was = model.training
        with torch.no_grad():
            width = model.eval()(as_float_images(x[:1])).shape[-1]
        model.train(was)
        if width != len(data.classes):
            raise ValueError(f"{path} gives {width} logits per image; {data_spec} has {len(data.classes)} classes")
    results = {}
    for label, path, (model, _, _) in zip(labels, paths, models):
        results[label] = {**run_evaluation(model.to(device), x, y, request, progress, name=label),
                          "checkpoint": path}
    return results, n
