"""One results schema and one evaluation path: the converter from earlier files, the units' evaluations equal to
``run_evaluation``'s, cache keys that survive the change, and the one shape of every stored evaluation."""

from __future__ import annotations

import json

import numpy as np
import torch

from robprune.data import load_dataset
from robprune.evaluation.accuracy import fixed_subset, pack_bits
from robprune.evaluation.outcomes import correct
from robprune.evaluation.run import EvalRequest, run_evaluation
from robprune.experiments.grid import eval_key, evaluated, unit_request
from robprune.experiments.study_units import suite_unit
from robprune.models import create_model
from robprune.results import SCHEMA, load_results, upgrade, upgrade_evaluation


def _schema1_suite(robust: list[list[bool]], clean: list[bool], packed: bool) -> dict:
    n = len(clean)
    rows = []
    for eps, r in zip((1 / 255, 8 / 255), robust):
        row = {"eps": eps, "clean": {"correct": sum(clean), "n": n, "accuracy": sum(clean) / n},
               "worst_case": {"correct": sum(r), "n": n, "accuracy": sum(r) / n}, "attacks": {}}
        row["robust_bits" if packed else "robust_mask"] = pack_bits(torch.tensor(r)) if packed else r
        rows.append(row)
    return {"n": n, "suite": "standard", "attacks": [{"name": "apgd-ce"}], "rows": rows, "sanity_checks": []}


def test_a_schema_1_file_upgrades_to_the_one_shape_and_keeps_every_outcome(tmp_path):
    rng = np.random.default_rng(0)
    clean = [bool(v) for v in rng.random(37) < 0.8]
    robust = [[c and bool(v) for c, v in zip(clean, rng.random(37) < p)] for p in (0.6, 0.2)]
    old = {"study": "adversarial", "config": {"seeds": [0]}, "data": "digits", "device": "cpu", "torch_threads": 2,
           "machine": "x86_64, 2 logical CPUs, torch 2", "seeds": {"0": {
               "CP": {"suite": _schema1_suite(robust, clean, packed=True)},
               "RP": {"suite": _schema1_suite(robust, clean, packed=False)}}}}
    (tmp_path / "results.json").write_text(json.dumps(old))
    new = load_results(tmp_path / "results.json")
    assert new["schema"] == SCHEMA and new["machine"] == {"line": "x86_64, 2 logical CPUs, torch 2", "device": "cpu",
                                                          "threads": 2}
    assert "device" not in new and "torch_threads" not in new
    for arm in ("CP", "RP"):  # packed bits and the older list of booleans read back the same
        su = new["seeds"]["0"][arm]["suite"]
        assert su["clean"]["correct"] == sum(clean) and [r["eps"] for r in su["robust"]] == [1 / 255, 8 / 255]
        for i, r in enumerate(robust):
            assert correct(su, i).tolist() == r and su["robust"][i]["accuracy"] == sum(r) / len(r)
    assert upgrade(new) == new  # a schema-2 file comes back as it is
    assert upgrade_evaluation({"n": 3, "clean": {}, "robust": []}) == {"n": 3, "clean": {}, "robust": []}


def test_evaluation_units_are_run_evaluation_and_keep_their_earlier_cache_keys(tmp_path):
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1).eval()
    request = unit_request((8 / 255, 16 / 255), 3, random_start=True, batch_size=64, per_image=True)
    # the key the unit had as EvalConfig(eps, steps=3, random_start=True, n_images=120, batch_size=64,
    # per_image=True): the fields that differed from that config's defaults
    assert eval_key(request, 120) == {"eps": (8 / 255, 16 / 255), "steps": 3, "random_start": True, "n_images": 120,
                                      "batch_size": 64, "per_image": True}
    assert eval_key(unit_request(batch_size=500, per_image=True), None) == {"eps": (), "batch_size": 500,
                                                                             "per_image": True}
    unit = evaluated(model, {"m": 1}, data, request, tmp_path, "u", n_images=120)
    x, y = fixed_subset(data.x_test, data.y_test, 120)
    direct = run_evaluation(model, x, y, request)
    for k in ("n", "clean", "clean_correct_bits"):
        assert unit[k] == direct[k]
    assert [r["correct_bits"] for r in unit["robust"]] == [r["correct_bits"] for r in direct["robust"]]
    assert [r["eps"] for r in unit["robust"]] == [8 / 255, 16 / 255]


def test_a_suite_stores_the_same_shape_as_an_attack_and_an_old_suite_unit_loads_converted(tmp_path):
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1).eval()
    su = suite_unit(model, {"m": 1}, data, "fast", (8 / 255,), 40, 40, tmp_path, "s0-A", None, checks=False)
    pgd = evaluated(model, {"m": 1}, data, unit_request((8 / 255,), 3, per_image=True), tmp_path, "p", n_images=40)
    assert set(pgd) - set(su) <= {"prediction_max_share", "nonfinite_logits"}  # same shape, a few extras
    assert {"eps", "correct", "n", "accuracy", "ci95", "correct_bits"} <= set(su["robust"][0])
    assert correct(su, 0).sum() == su["robust"][0]["correct"] <= correct(su).sum() == su["clean"]["correct"]
    # the same unit as an earlier version stored it (rows of worst_case, a list of booleans) is read converted
    unit = next(d for d in (tmp_path / "units").iterdir() if d.name.startswith("suite-"))
    stored = json.loads((unit / "suite.json").read_text())
    old = _schema1_suite([correct(su, 0).tolist()] * 2, correct(su).tolist(), packed=False)
    old["rows"] = old["rows"][1:]
    (unit / "suite.json").write_text(json.dumps(old))
    again = suite_unit(model, {"m": 1}, data, "fast", (8 / 255,), 40, 40, tmp_path, "s0-A", None, checks=False)
    assert correct(again, 0).tolist() == correct(stored, 0).tolist() and again["robust"][0]["eps"] == 8 / 255


def test_the_cli_request_keeps_per_image_outcomes_for_attacks_and_suites():
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1).eval()
    x, y = fixed_subset(data.x_test, data.y_test, 30)
    for request in (EvalRequest(eps=(8 / 255,), steps=2, checks=False, per_image=True),
                    EvalRequest(eps=(8 / 255,), suite="fast", checks=False, per_image=True)):
        ev = run_evaluation(model, x, y, request)
        assert len(correct(ev, 0)) == 30 and correct(ev, 0).sum() == ev["robust"][0]["correct"]


def test_every_registered_sanity_check_is_documented_once_in_the_evaluation_guide():
    import re
    from pathlib import Path

    from robprune.evaluation.checks import CHECKS

    guide = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    section = guide.split("## Sanity checks", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.M)
    assert documented == list(CHECKS)  # same checks, same order, each once
