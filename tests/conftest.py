"""Shared fixtures: tiny models and data sets the tests make themselves."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

# CI runs the same examples every time: a property failure is then reproducible, never a coin flip.
settings.register_profile("robprune", derandomize=True)
settings.load_profile("robprune")

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers on two cores: one thread each
    torch.set_num_threads(1)

from robprune import create_model  # noqa: E402  (after the hypothesis profile)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_file(relative: str) -> Path:
    """A file under ../shared, or a clean skip when it is absent (a user's fresh clone)."""
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return path


@pytest.fixture(scope="session")
def trained_digits_cnn():
    """A small_cnn trained 4 epochs on digits, trained once per test process; modules take a copy each
    (``copy.deepcopy``), so one module's changes never reach another."""
    import robprune as rp

    data = rp.load_dataset("digits")
    torch.manual_seed(0)
    mean, std = data.channel_stats()
    model = rp.create_model("small_cnn", in_channels=1, mean=mean, std=std)
    rp.train(model, data, rp.TrainConfig(epochs=4, batch_size=64, lr=0.05))
    return model.eval(), data


@pytest.fixture
def tiny_resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet20").eval()


@pytest.fixture
def small_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("small_cnn", in_channels=1)


def write_imagefolder(root: Path, size: int = 8, per_class: int = 4, classes=("cat", "dog", "ant")) -> Path:
    from PIL import Image

    rng = np.random.RandomState(0)
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = (rng.rand(size, size, 3) * 60 + 60 * c).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i:03d}.png")
    return root


def write_cifar_batches(root: Path, n: int = 10) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.randint(0, 256, (n, 3072)).astype(np.uint8),
                 b"labels": [int(v) for v in rng.randint(0, 10, n)], b"batch_label": name.encode()}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return root
