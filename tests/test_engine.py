"""The study engine (experiments/engine.py), the claims module and the methods study (HYDRA vs CP and LAMP, the
hinge on top of each)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from robprune.cli import main
from robprune.evaluation.accuracy import pack_bits
from robprune.evaluation.significance import FAILS, HOLDS, UNDECIDED
from robprune.experiments import engine, grid
from robprune.experiments.engine import Arm, Learn, Measure, Step, Study, run_study
from robprune.experiments.grid import evaluated, unit_request
from robprune.pruning import LEARNED
from robprune.reporting.claims import Metric, compare
from robprune.training import TrainConfig

CFG = TrainConfig(epochs=1, batch_size=64, lr=0.05, n_train=200)


def _toy(calls: list, plan_steps: list[Step]) -> Study:
    arms = {"A": Arm("A", CFG), "B": Arm("B", replace(CFG, method="cp", amount=0.5), parent="A"),
            "B2": Arm("B2", replace(CFG, method="cp", amount=0.5), parent="A", unit="B"),
            "H": Arm("H", CFG, parent="A", learn=Learn("hydra", 0.5, replace(CFG, lr=0.1)))}
    clean = unit_request(per_image=True)

    def record(ctx, t):
        calls.append(("record", t.seed, t.arm))
        return {**ctx.train_record(t), "clean": evaluated(t.model, t.key, ctx.data, clean, ctx.out,
                                                          f"clean-s{t.seed}-{t.arm}", ctx.progress, 100)}

    def extra(ctx, t):
        calls.append(("extra", t.seed, t.arm))
        return {"extra": t.unit, "sparsity": sum(int((~m).sum()) for m in t.masks.values())
                / max(1, sum(m.numel() for m in t.masks.values()))}

    return Study(kind={"study": "toy"}, config=CFG, arch="small_cnn", root_key=lambda seed: {"toy": seed},
                 arms=arms, measures={"record": Measure(record, row=True), "extra": Measure(extra)},
                 plan=lambda ctx: ctx.run(plan_steps), render=lambda state: "toy report\n")


def test_the_engine_trains_through_the_parent_chain_once_and_a_rerun_computes_nothing(tmp_path, monkeypatch):
    calls = []
    plan = [Step(0, "A", ("record",)), Step(0, "B", ("record", "extra")), Step(0, "B2", ("extra",)),
            Step(0, "H", ("record", "extra"))]
    state = run_study(_toy(calls, plan), "digits", tmp_path, torch.device("cpu"))
    assert state["done"] and set(state["seeds"]["0"]) == {"A", "B", "B2", "H"}
    rows = state["seeds"]["0"]
    # B2 shares B's unit (one model, trained once) but is its own row; its extra step recorded the row first
    assert rows["B2"]["extra"] == "s0-B" and "clean" in rows["B2"]
    assert ("record", 0, "B2") in calls and calls.index(("record", 0, "B2")) < calls.index(("extra", 0, "B2"))
    units = sorted(d.name.rsplit("-", 1)[0] for d in (tmp_path / "units").iterdir() if d.name.startswith("s0-"))
    assert units == ["s0-A", "s0-B", "s0-H", "s0-H-masks"]
    # HYDRA's learned mask is the arm's mask: exactly half of each layer pruned (HYDRA's default, per layer)
    assert rows["H"]["extra"] == "s0-H" and rows["H"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert rows["B"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert (tmp_path / "report.md").read_text() == "toy report\n"

    def refuse(*args, **kwargs):
        raise AssertionError("a cached unit was computed again")

    from robprune.training import folder

    monkeypatch.setattr(folder, "train", refuse)
    monkeypatch.setattr(grid, "run_evaluation", refuse)
    monkeypatch.setitem(LEARNED._entries, "hydra", refuse)
    again = run_study(_toy([], plan), "digits", tmp_path, torch.device("cpu"))
    assert {k: {f: v for f, v in r.items() if f != "history"} for k, r in again["seeds"]["0"].items()} == \
        {k: {f: v for f, v in r.items() if f != "history"} for k, r in json.loads(json.dumps(rows)).items()}


def test_only_takes_part_of_the_plan_and_does_not_mark_the_study_done(tmp_path):
    calls = []
    plan = [Step(0, "A", ("record",)), Step(0, "B", ("record",)), Step(0, "B", ("extra",))]
    state = run_study(_toy(calls, plan), "digits", tmp_path, torch.device("cpu"),
                      only=lambda step: "extra" in step.measures)
    assert not state.get("done")
    assert set(state["seeds"]["0"]) == {"B"} and state["seeds"]["0"]["B"]["extra"] == "s0-B"
    assert ("record", 0, "A") not in calls  # A was trained as B's parent, never recorded


def _eval(bits: np.ndarray) -> dict:
    return {"n": len(bits), "clean": {"accuracy": float(bits.mean())}, "robust": [],
            "clean_correct_bits": pack_bits(torch.tensor(bits))}


def test_compare_decides_each_metric_by_the_rule_on_the_seeds_that_have_it():
    rng = np.random.default_rng(0)
    base = rng.random(400) < 0.5
    better = base | (rng.random(400) < 0.4)
    state = {"seeds": {str(k): {"a": {"clean": _eval(better)}, "b": {"clean": _eval(base)}} for k in range(3)}}
    metrics = [Metric("clean", "clean"), Metric("suite", "suite", optional=True)]
    result = compare(state, "a", "b", metrics)
    assert result["seeds"] == ["0", "1", "2"] and list(result["parts"]) == ["clean"]  # no suite yet: not decided
    assert result["parts"]["clean"]["verdict"] == HOLDS
    assert compare(state, "b", "a", metrics)["parts"]["clean"]["verdict"] == FAILS
    assert compare(state, "a", "missing", metrics) is None
    state["seeds"]["1"]["b"]["clean"] = _eval(np.zeros(400, bool))  # a broken model decides nothing
    assert compare(state, "a", "b", metrics)["parts"]["clean"]["verdict"] == UNDECIDED


@pytest.mark.slow
def test_methods_quick_runs_reports_and_resumes(tmp_path, capsys):
    out = tmp_path / "m"
    argv = ["study", "methods", "--quick", "--methods", "cp,hydra", "--data", "digits", "--out", str(out),
            "--device", "cpu", "--suite-images", "20"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    state = json.loads((out / "results.json").read_text())
    assert state["done"] and state["study"] == "methods"
    names = {"Dense", "CP-0.9", "HYDRA-0.9", "CP+hinge-0.9", "HYDRA+hinge-0.9"}
    for seed in ("0", "1"):
        assert set(state["seeds"][seed]) == names
        for name, row in state["seeds"][seed].items():
            assert row["stats"]["sparsity"] == pytest.approx(0.0 if name == "Dense" else 0.9, abs=0.01)
            assert ("suite" in row) != ("suite_skipped" in row)
        rows = state["seeds"][seed]
        assert rows["CP+hinge-0.9"]["train"]["lam"] > 0 == rows["CP-0.9"]["train"]["lam"]
    masks = list((out / "units").glob("s0-HYDRA_hinge-0.9-masks-*/model.safetensors"))
    assert len(masks) == 1
    for part in ("**1. Does learning the mask", "**2. Does the paper's hinge", "| HYDRA vs CP at 90% |",
                 "| CP+hinge vs CP at 90% |", "| HYDRA+hinge vs HYDRA at 90% |", "HARP (published, ResNet-18)"):
        assert part in text
    assert (out / "figure-sparsity.png").is_file()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "units").iterdir()}
    assert main(argv) == 0  # everything cached: nothing computed again
    assert {p.name: p.stat().st_mtime_ns for p in (out / "units").iterdir()} == before
    capsys.readouterr()
    assert main(["study", "methods", "--report-only", "--data", "digits", "--out", str(out)]) == 0
    assert "| HYDRA vs CP at 90% |" in capsys.readouterr().out


def test_methods_report_describes_only_the_methods_that_ran_and_names_what_was_cut():
    from dataclasses import asdict

    from robprune.experiments.methods import MethodsConfig, default_grid
    from robprune.reporting.methods_report import _method_clauses
    from robprune.reporting.study_common import left_out

    cfg = asdict(MethodsConfig(methods=("CP", "RATES"), sparsities=(0.99,), seeds=(0, 1)))
    assert left_out(cfg, default_grid()) == "LAMP, HYDRA; 95%, 90%; seed 2"
    clauses = _method_clauses(cfg)
    assert clauses.startswith("CP prunes") and "RATES learns" in clauses and "LAMP" not in clauses
    assert left_out(asdict(MethodsConfig()), default_grid()) == "" and left_out(cfg, None) == ""


def test_channels_report_describes_only_the_criteria_that_ran_and_names_what_was_cut():
    from dataclasses import asdict

    from robprune.experiments.channel_study import ChannelsConfig, default_grid
    from robprune.reporting.channels_report import _criteria
    from robprune.reporting.study_common import left_out

    cfg = asdict(ChannelsConfig(methods=("l1", "hydra"), amounts=(0.75,), hinge=False))
    assert left_out(cfg, default_grid()) == "reverse, bn_scale; 50%; the +hinge arms"
    assert _criteria(cfg).startswith("`l1` the smallest filter L1 norms, `hydra` the lowest")
    assert "reverse" not in _criteria(cfg) and left_out(asdict(ChannelsConfig()), default_grid()) == ""


@pytest.mark.parametrize("extra", [["--extra-sparsities", "0.5"], ["--methods", "cp,foo"], ["--sparsities", "none"]])
def test_methods_study_arguments_are_checked(tmp_path, extra):
    out = tmp_path / "never"
    assert main(["study", "methods", "--data", "digits", "--out", str(out)] + extra) != 0
    assert not out.exists()
    assert main(["study", "adversarial", "--data", "digits", "--score-epochs", "2", "--out", str(out)]) != 0
    assert not out.exists()


@pytest.mark.slow
def test_a_study_killed_part_way_continues_without_overwrite(tmp_path, monkeypatch, capsys):
    """A study stopped before its end (here: by an error after its last unit) has written its results but not
    finished; the same command continues it, without --overwrite, and computes no unit again."""
    out = tmp_path / "k"
    argv = ["study", "methods", "--quick", "--methods", "cp", "--no-hinge", "--data", "digits", "--out", str(out),
            "--device", "cpu", "--suite-images", "10"]

    def killed(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.Context, "finish", killed)
    assert main(argv) != 0
    assert (out / "results.json").is_file() and not json.loads((out / "results.json").read_text()).get("done")
    monkeypatch.undo()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "units").iterdir()}
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["done"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "units").iterdir()} == before


def test_train_into_writes_one_schema_and_keeps_the_best_checkpoint_on_a_collapse(tmp_path, monkeypatch):
    import robprune as rp
    from robprune.training import CatastrophicOverfitting, folder

    data = rp.load_dataset("digits")
    model = rp.create_model("small_cnn", in_channels=1)
    result = folder.train_into(tmp_path / "ok", model, data, CFG, meta={"unit": "x"})
    _, _, meta = rp.load_checkpoint(tmp_path / "ok" / "model.safetensors")
    assert {"config", "tau_resolved", "history", "stopped", "unit"} <= set(meta) and meta["stopped"] is None
    assert len(result["history"]) == CFG.epochs

    best = rp.create_model("small_cnn", in_channels=1)

    def collapses(model, data, config, out_dir, **kwargs):  # the guard's best epoch saved, then the collapse
        rp.save_checkpoint(out_dir / "best.safetensors", best, {}, {"history": [{"epoch": 1}]})
        raise CatastrophicOverfitting("PGD accuracy collapsed")

    monkeypatch.setattr(folder, "train", collapses)
    (tmp_path / "bad").mkdir()
    with pytest.raises(CatastrophicOverfitting):
        folder.train_into(tmp_path / "bad", rp.create_model("small_cnn", in_channels=1), data, CFG)
    kept = rp.create_model("small_cnn", in_channels=1)
    result = folder.train_into(tmp_path / "bad", kept, data, CFG, keep_best=True)
    assert "collapsed" in result["stopped"] and result["history"] == [{"epoch": 1}]
    assert all(torch.equal(a, b) for a, b in zip(kept.state_dict().values(), best.state_dict().values()))
    _, _, meta = rp.load_checkpoint(tmp_path / "bad" / "model.safetensors")
    assert "collapsed" in meta["stopped"]


@pytest.mark.slow
def test_channels_quick_removes_channels_times_shapes_and_resumes(tmp_path, capsys):
    out = tmp_path / "c"
    argv = ["study", "channels", "--quick", "--methods", "l1", "--no-hinge", "--data", "digits", "--out", str(out),
            "--device", "cpu", "--suite-images", "10"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    state = json.loads((out / "results.json").read_text())
    assert state["done"] and set(state["seeds"]["0"]) == {"Dense", "l1-0.5"}
    for seed in ("0", "1"):
        dense, slim = state["seeds"][seed]["Dense"], state["seeds"][seed]["l1-0.5"]
        assert slim["params"] < 0.4 * dense["params"] and slim["macs"] < 0.4 * dense["macs"]  # removed for real
    assert set(state["latency"]["ms"]) == {"Dense", "50%"} and all(v > 0 for v in state["latency"]["ms"].values())
    assert len(list((out / "units").glob("s0-l1-0.5-slim-*/model.safetensors"))) == 1
    assert "| l1-0.5 |" in text and "TwinRep (published, ResNet-18)" in text and (out / "figure-latency.png").is_file()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "units").iterdir()}
    assert main(argv) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "units").iterdir()} == before
    assert main(["study", "channels", "--data", "digits", "--methods", "l2", "--out", str(tmp_path / "no")]) == 2
    assert not (tmp_path / "no").exists()


def test_a_unit_gives_the_same_results_computed_or_loaded(tmp_path):
    """Units built on a model do not depend on whether that model was trained in the same process or loaded from
    its cached unit (a trained model used to be handed on as training left it, with channels_last weights, and
    the learned channel scores and fine-tuning after it came out different)."""
    from safetensors.torch import load_file

    command = ["study", "channels", "--data", "digits", "--quick", "--seeds", "0", "--methods", "l1,hydra",
               "--no-hinge", "--only", "record", "--out"]
    assert main(command + [str(tmp_path / "a")]) == 0
    (tmp_path / "b" / "units").mkdir(parents=True)
    dense = next((tmp_path / "a" / "units").glob("s0-Dense-*"))
    shutil.copytree(dense, tmp_path / "b" / "units" / dense.name)
    assert main(command + [str(tmp_path / "b")]) == 0
    checked = 0
    for unit in sorted((tmp_path / "a" / "units").iterdir()):
        if unit.name.startswith("s0-") and unit.name != dense.name:
            a = load_file(unit / "model.safetensors")
            b = load_file(tmp_path / "b" / "units" / unit.name / "model.safetensors")
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), unit.name
            checked += 1
    assert checked == 4  # l1 and hydra: the slim model and its fine-tuned one

    def measures(folder):
        rows = json.loads((tmp_path / folder / "results.json").read_text())["seeds"]["0"]
        return {arm: {m: row[m].get("clean") for m in ("clean",)} | {"stats": row["stats"]} for arm, row in
                rows.items()}

    assert measures("a") == measures("b")
