"""Run by test_distributed under torchrun: a tiny grid of cached units with every rank taking part."""

import json
import sys

import torch

from robprune import distributed
from robprune.data import load_digits
from robprune.experiments.grid import Arm, EvalConfig, GridConfig, run_grid
from robprune.models import create_model
from robprune.training import TrainConfig, subset_data

out = sys.argv[1]
group = distributed.setup(torch.device("cpu"))
data = subset_data(load_digits(), TrainConfig(n_train=256, n_test=96))
torch.manual_seed(0)
base = create_model("user_models.nets:tiny_mlp")
ft = TrainConfig(epochs=1, batch_size=64, lr=0.05, augment="none")
grid = GridConfig(finetune=ft, evaluation=EvalConfig(eps=(16 / 255,), steps=3, batch_size=32),
                  arms=(Arm("Base", None, 0.0), Arm("CP", "cp", 0.5)), sweep_ratios=(0.3,), sweep_epochs=1)
result = run_grid(base, {"tiny": 1}, data, grid, out)
counts = [result["rows"][a]["eval"]["robust"][0]["correct"] for a in ("Base", "CP")]
with open(f"{out}.rank{group.rank}.json", "w") as f:  # one file per rank: their stdout lines interleave
    json.dump({"rank": group.rank, "counts": counts,
               "sweep": [s["eval"]["robust"][0]["correct"] for s in result["sweep"]]}, f)
distributed.teardown()
