"""Shared helpers of the benchmark scripts: machine description, timing, a model and images."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.system()} {cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, {gpu}")


def interleaved_medians(fns: dict, repeats: int = 3, sync=None) -> dict[str, float]:
    """Median wall time of each function, run in rounds (A B C, A B C, ...) so that load from other
    processes or clock changes hit every path alike; one warm-up round first."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            if sync:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            if round_ > 0:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def model_and_images(arch: str, n: int, device: torch.device, checkpoint: str | None = None):
    """The community ``arch`` (resnet20 or resnet56; or the robprune ``checkpoint``) and CIFAR-10 (JPEG) test
    images when ../shared has them, else a random-init ``arch`` on random images."""
    from robprune import create_model, import_checkpoint, load_checkpoint, load_dataset
    from robprune.evaluation import fixed_subset

    found = sorted((SHARED / "pretrained").glob(f"{arch}-*.th")) if (SHARED / "pretrained").is_dir() else []
    weights = found[0] if found else SHARED / "pretrained" / "none.th"  # the community resnet20 or resnet56
    archive = SHARED / "data" / "cifar10-jpeg.tar.gz"
    if checkpoint:
        data = load_dataset(f"imagefolder:{archive}")
        x, y = fixed_subset(data.x_test, data.y_test, n)
        model = load_checkpoint(checkpoint)[0]
        source = f"{checkpoint} on CIFAR-10 (JPEG) test images"
    elif weights.is_file() and archive.is_file():
        data = load_dataset(f"imagefolder:{archive}")
        x, y = fixed_subset(data.x_test, data.y_test, n)
        model = import_checkpoint(weights, arch)
        source = f"the community pretrained {arch} on CIFAR-10 (JPEG) test images"
    else:
        torch.manual_seed(0)
        model = create_model(arch)
        x, y = (torch.rand(n, 3, 32, 32) * 255).to(torch.uint8), torch.randint(0, 10, (n,))
        source = f"random-init {arch} on random images (../shared absent)"
    return model.to(device).eval(), x.float().div(255).to(device), y.to(device), source
