"""Run by test_distributed under torchrun: a tiny study of cached units on the engine, every rank taking part."""

import json
import sys
from dataclasses import replace

import torch

from robprune import distributed
from robprune.experiments.engine import Arm, Measure, Step, Study, run_study
from robprune.experiments.grid import evaluated, unit_request
from robprune.models import create_model
from robprune.training import TrainConfig, subset_data

out = sys.argv[1]
group = distributed.setup(torch.device("cpu"))
torch.manual_seed(0)
base = create_model("user_models.nets:tiny_mlp")
ft = TrainConfig(epochs=1, batch_size=64, lr=0.05, augment="none")
evaluation = unit_request((16 / 255,), 3, batch_size=32)
arms = {"Base": Arm("Base"), "CP": Arm("CP", replace(ft, method="cp", amount=0.5), parent="Base")}
for m in ("cp", "rp"):
    arms[f"sweep-{m}-0.3"] = Arm(f"sweep-{m}-0.3", replace(ft, method=m, amount=0.3), parent="Base")


def correct(ctx, t):
    return evaluated(t.model, t.key, ctx.data, evaluation, ctx.out, t.arm)["robust"][0]["correct"]


def place(state, t, value):
    state["counts"][t.arm] = value


study = Study(kind={}, config=ft, arch="user_models.nets:tiny_mlp", root_key=lambda seed: {},
              root=lambda ctx, seed: (base, {"tiny": 1}), unit_name=lambda seed, unit: unit, arms=arms,
              measures={"correct": Measure(correct, place=place)},
              plan=lambda ctx: ctx.run([Step(0, a, ("correct",)) for a in arms]), render=lambda state: "tiny\n",
              prepare=lambda data: (subset_data(data, TrainConfig(n_train=256, n_test=96)),) * 2,
              state={"counts": {}}, figures=lambda state, out: [])
result = run_study(study, "digits", out, torch.device("cpu"))
counts = [result["counts"][a] for a in ("Base", "CP")]
with open(f"{out}.rank{group.rank}.json", "w") as f:  # one file per rank: their stdout lines interleave
    json.dump({"rank": group.rank, "counts": counts,
               "sweep": [result["counts"][f"sweep-{m}-0.3"] for m in ("cp", "rp")]}, f)
distributed.teardown()
