"""The multi-seed studies: the decision rule, the proximal hinge, per-image outcomes, and both quick grids."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
import torch

from robprune.cli import main
from robprune.data import load_digits
from robprune.evaluation.accuracy import evaluate, pack_bits, unpack_bits
from robprune.evaluation.significance import (FAILS, HOLDS, UNDECIDED, broken, combine, decide_accuracy,
                                              decide_quantity, mcnemar, paired_t)
from robprune.experiments.scratch import choose_candidate
from robprune.pruning.regularizer import max_abs_weight, proximal_shrink


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_mcnemar_exact_values():
    a = np.array([True] * 10 + [False] * 5)
    b = np.array([False] * 10 + [False] * 5)
    t = mcnemar(a, b)
    assert (t["a_only"], t["b_only"]) == (10, 0)
    assert t["p"] == pytest.approx(2 * 0.5 ** 10)
    assert t["diff"] == pytest.approx(10 / 15)
    assert mcnemar(a, a)["p"] == 1.0
    with pytest.raises(ValueError, match="same images"):
        mcnemar(a, a[:3])


def _pair(n_better: int, n_worse: int, n: int = 400):
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:n_better] = True
    b[n_better:n_better + n_worse] = True
    return a, b


def test_decision_rule_pools_seeds_and_guards_against_a_reversed_seed():
    strong = _pair(40, 5)
    assert decide_accuracy([strong, strong])["verdict"] == HOLDS
    assert decide_accuracy([strong[::-1], strong[::-1]])["verdict"] == FAILS
    weak = _pair(12, 9)
    # the earlier rule needed every seed significant on its own: more seeds made HOLDS harder, not easier
    pooled = decide_accuracy([strong, weak])
    assert pooled["verdict"] == HOLDS and "pooled McNemar" in pooled["why"]
    assert decide_accuracy([weak, weak])["verdict"] == UNDECIDED
    assert decide_accuracy([weak] * 12)["verdict"] == HOLDS  # same small effect, enough seeds
    reversed_seed = _pair(5, 40)
    guarded = decide_accuracy([strong, strong, strong, reversed_seed])
    assert guarded["pooled"]["a_only"] > guarded["pooled"]["b_only"] and guarded["pooled"]["p"] < 0.05
    assert guarded["verdict"] == UNDECIDED and "other way" in guarded["why"]
    single = decide_accuracy([strong])
    assert single["verdict"] == UNDECIDED and "1 seed(s)" in single["why"] and "observed" in single["why"]
    no = decide_accuracy([strong, strong], broken_reasons=["RP (seed 0): near chance"])
    assert no["verdict"] == UNDECIDED and "broken" in no["why"]


def test_pooled_mcnemar_is_the_cmh_test_with_a_stratum_per_image_pair():
    """The Cochran-Mantel-Haenszel statistic written out over 2x2 tables (model x correct), one per image pair,
    against pooled_mcnemar's chi-square; the exact p-value against scipy's binomial test on the pooled counts."""
    from scipy.stats import binomtest

    from robprune.evaluation.significance import pooled_mcnemar

    rng = np.random.default_rng(3)
    tests, num, var = [], 0.0, 0.0
    for seed in range(3):
        a = rng.random(500) < 0.6
        b = np.where(rng.random(500) < 0.8, a, rng.random(500) < 0.5)
        tests.append(mcnemar(a, b))
        for ai, bi in zip(a, b):  # table [[a right, a wrong], [b right, b wrong]], n = 2
            n11, m1, n1 = int(ai), int(ai) + int(bi), 1
            num += n11 - n1 * m1 / 2
            var += n1 * 1 * m1 * (2 - m1) / (2 * 2 * 1)
    pooled = pooled_mcnemar(tests)
    assert pooled["chi2"] == pytest.approx(num ** 2 / var)
    n = pooled["a_only"] + pooled["b_only"]
    assert pooled["p"] == pytest.approx(binomtest(pooled["a_only"], n, 0.5).pvalue)


def test_holm_adjusts_the_parts_of_a_claim():
    from robprune.evaluation.significance import decide_claim, holm

    def part(p, sign=1):
        return {"p": p, "sign": sign, "kind": "quantity", "verdict": HOLDS if p < 0.05 else UNDECIDED, "why": ""}

    adjusted = holm({"x": part(0.01), "y": part(0.04), "z": part(0.03)})
    # by hand: sorted 0.01, 0.03, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert [adjusted[k]["p_holm"] for k in "xzy"] == pytest.approx([0.03, 0.06, 0.06])
    assert [adjusted[k]["verdict"] for k in "xyz"] == [HOLDS, UNDECIDED, UNDECIDED]
    verdict, parts = decide_claim({"x": part(0.001), "y": part(0.001, sign=-1) | {"verdict": FAILS}})
    assert verdict == FAILS and parts["y"]["verdict"] == FAILS
    # a part shown as evidence only is neither adjusted nor combined; a part that cannot decide keeps its verdict
    verdict, parts = decide_claim({"x": part(0.01), "e": part(0.9) | {"evidence_only": True},
                                   "b": part(0.001) | {"decidable": False, "verdict": UNDECIDED}})
    assert verdict == UNDECIDED and "p_holm" not in parts["e"] and parts["x"]["p_holm"] == pytest.approx(0.01)


def test_seeds_to_decide_matches_the_rule_it_sizes():
    """The simulated power of the accuracy rule at the returned number of seeds, checked by running
    decide_accuracy itself on freshly drawn per-image outcomes."""
    from robprune.evaluation.significance import seeds_to_decide

    n, rate_a, rate_b = 1000, 0.05, 0.035
    observed = [{"a_only": int(rate_a * n), "b_only": int(rate_b * n)}] * 2
    need = seeds_to_decide(observed, [n, n], sims=1000)
    assert need is not None and 2 < need < 30
    rng = np.random.default_rng(1)

    def power(k, runs=150):
        hits = 0
        for _ in range(runs):
            pairs = []
            for _ in range(k):
                u = rng.random(n)
                a, b = u < rate_a, (u >= rate_a) & (u < rate_a + rate_b)
                common = u > 0.8  # both right: not discordant
                pairs.append((a | common, b | common))
            hits += decide_accuracy(pairs, power_sims=0)["verdict"] == HOLDS
        return hits / runs

    assert power(need) >= 0.7
    assert power(max(2, need // 2)) < 0.8
    assert seeds_to_decide([{"a_only": 10, "b_only": 10}], [n]) is None


def test_paired_t_and_quantities():
    e = paired_t([1.0, 2.0, 3.0])
    assert e["mean"] == pytest.approx(2.0)
    assert e["ci95"][0] < 2.0 < e["ci95"][1]
    assert e["p_greater"] < 0.05 < e["p_less"]
    assert decide_quantity([1.0, 1.1, 0.9])["verdict"] == HOLDS
    assert decide_quantity([-1.0, -1.1, -0.9])["verdict"] == FAILS
    assert decide_quantity([1.0, -1.0, 0.5])["verdict"] == UNDECIDED
    assert combine([HOLDS, HOLDS]) == HOLDS and combine([HOLDS, FAILS]) == FAILS
    assert combine([HOLDS, UNDECIDED]) == UNDECIDED and combine([]) == UNDECIDED


def test_models_needed_for_spearman_agrees_with_scipy():
    from scipy.stats import spearmanr

    from robprune.evaluation.significance import spearman_models_needed

    rng = np.random.default_rng(0)
    for n in (6, 12, 20, 40):
        for _ in range(10):
            x = rng.normal(size=n)
            res = spearmanr(x, x + rng.normal(scale=1.5, size=n))
            need = spearman_models_needed(float(res.statistic))
            # a sample of n points is significant exactly when n reaches the points its rho needs
            assert (res.pvalue < 0.05) == (need is not None and need <= n), (n, res.statistic, res.pvalue, need)
    assert spearman_models_needed(0.0) is None and spearman_models_needed(0.5) == spearman_models_needed(-0.5)


def test_broken_model_is_recognised():
    assert broken({"clean": {"accuracy": 0.15}}) is not None
    assert broken({"clean": {"accuracy": 0.9}, "prediction_max_share": 0.7}) is not None
    assert broken({"clean": {"accuracy": 0.9}, "prediction_max_share": 0.12}) is None


def test_choose_candidate_follows_the_written_rule():
    def ev(clean, robust):
        return {"clean": {"accuracy": clean}, "robust": [{"accuracy": r} for r in robust]}

    search = {"CP": ev(0.90, [0.3, 0.2]), "weak": ev(0.895, [0.31, 0.2]), "strong": ev(0.85, [0.5, 0.4]),
              "mid": ev(0.90, [0.32, 0.22])}
    assert choose_candidate(search, 0.01) == "mid"  # "strong" is more robust but loses 5 points of clean accuracy
    assert choose_candidate({"CP": ev(0.9, [0.1]), "a": ev(0.5, [0.9]), "b": ev(0.6, [0.0])}, 0.01) == "b"


def test_proximal_shrink_moves_large_weights_to_tau_never_past():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.05, -0.05, 0.5, -0.5], [0.2, -0.2, 0.11, 0.0], [1.0, -1.0, 0.3, 0.1]]))
    before = model[0].weight.detach().clone()
    proximal_shrink(model, tau=0.1, step=0.15)
    w = model[0].weight.detach()
    small = before.abs() <= 0.1
    assert torch.equal(w[small], before[small])
    assert torch.equal(torch.sign(w[~small]), torch.sign(before[~small]))
    expected = torch.maximum(before[~small].abs() - 0.15, torch.tensor(0.1))
    assert torch.allclose(w[~small].abs(), expected)
    assert max_abs_weight(model) == pytest.approx(0.85)


def test_proximal_training_reaches_the_regime(digits, tmp_path):
    from robprune.models import create_model
    from robprune.training import TrainConfig, train

    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    start = max_abs_weight(model)
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.05, lam=20.0, tau=0.05, penalty_mode="proximal", n_train=640)
    result = train(model, digits, cfg)
    assert start > 0.2
    assert max_abs_weight(model) <= 0.05 + 1e-6
    assert result["history"][-1]["max_abs_weight"] == pytest.approx(max_abs_weight(model))
    with pytest.raises(ValueError, match="proximal"):
        TrainConfig(penalty_mode="proximal", p=2).validate()


def test_per_image_outcomes_match_the_counts(digits):
    from robprune.models import create_model

    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    x, y = digits.x_test[:60], digits.y_test[:60]
    r = evaluate(model, x, y, [2 / 255, 8 / 255], steps=2, per_image=True, batch_size=25)
    clean = unpack_bits(r["clean_correct_bits"], 60)
    assert clean.sum() == r["clean"]["correct"]
    for row in r["robust"]:
        bits = unpack_bits(row["correct_bits"], 60)
        assert bits.sum() == row["correct"]
        assert not (bits & ~clean).any()  # an image wrong when clean is wrong under attack
    assert unpack_bits(pack_bits(torch.tensor([True, False, True])), 3).tolist() == [True, False, True]


def _synthetic_scratch(ours_gain: int, suite_gain: int | None, n: int = 400) -> dict:
    """A two-seed scratch state where Ours is correct on ``ours_gain`` more images than CP at 1/255 under PGD-4 (and
    equal elsewhere), and, when ``suite_gain`` is not None, on ``suite_gain`` more under the suite (negative: fewer)."""
    eps = [1 / 255, 2 / 255, 4 / 255, 8 / 255]

    def ev(clean, robust):
        return {"n": n, "clean": {"accuracy": float(clean.mean())},
                "clean_correct_bits": pack_bits(torch.tensor(clean)),
                "robust": [{"eps": e, "accuracy": float(r.mean()), "correct_bits": pack_bits(torch.tensor(r))}
                           for e, r in zip(eps, robust)]}

    def suite(robust):
        return {"n": n, "suite": "standard", "attacks": [], "robust": [
            {"eps": e, "accuracy": float(r.mean()), "correct_bits": pack_bits(torch.tensor(r))}
            for e, r in zip(eps, robust)]}

    seeds = {}
    for seed in ("0", "1"):
        clean = np.arange(n) < 0.8 * n
        base = [np.arange(n) < k for k in (160, 80, 20, 0)]
        rows = {}
        for k, arm in enumerate(("Baseline", "CP", "RP", "Ours")):
            robust = [b.copy() for b in base]
            if arm == "Ours":
                robust[0] = np.arange(n) < 160 + ours_gain
            rows[arm] = {"pixel": ev(clean, robust), "stats": {"max": 1.0, "min": -1.0, "l1": 100.0},
                         "bounds": {"spectral": {"log10_bound": float(k)}, "measured": {"mean": float(k)}}}
            if suite_gain is not None and arm in ("CP", "Ours"):
                attacked = [b.copy() for b in base]
                if arm == "Ours":
                    attacked[0] = np.arange(n) < 160 + suite_gain
                rows[arm]["suite"] = suite(attacked)
        seeds[seed] = rows
    return {"config": {"eps": eps, "seeds": [0, 1]}, "seeds": seeds}


@pytest.mark.parametrize("suite_gain, verdict", [(40, HOLDS), (-40, FAILS), (0, UNDECIDED), (None, UNDECIDED)])
def test_claim_e_decides_each_pgd_gain_again_under_the_suite(suite_gain, verdict):
    from robprune.reporting.study_report import gains_survive, scratch_claims

    state = _synthetic_scratch(ours_gain=40, suite_gain=suite_gain)
    result = gains_survive(state, scratch_claims(state, "pixel"), {"seeds": []})
    assert [g["label"] for g in result["gains"]] == ["Ours vs CP at 1/255"]  # the only gain under PGD-4
    assert result["verdict"] == verdict
    if suite_gain is None:
        assert result["gains"][0]["suite"] is None and "not attacked" in result["why"]
    # no gain under PGD-4: nothing can survive, whatever the suite says
    state = _synthetic_scratch(ours_gain=0, suite_gain=40)
    assert gains_survive(state, scratch_claims(state, "pixel"), {"seeds": []})["gains"] == []


def test_a_restart_keeps_finished_suite_results_of_the_same_model():
    from types import SimpleNamespace

    from robprune.experiments.study_units import place_row as _place

    saved = []
    st = SimpleNamespace(state={"seeds": {}}, save=lambda: saved.append(1))
    train = {"epochs": 3, "lr": 0.02, "betas": (0.9, 0.99)}  # a tuple comes back from results.json as a list
    suite = {"suite": "standard", "n": 1000, "robust": []}
    st.state["seeds"]["0"] = {"CP": {"train": json.loads(json.dumps(train)), "suite": suite},
                              "RP": {"train": json.loads(json.dumps(train)), "suite_skipped": "near chance"}}
    _place(st, 0, "CP", {"train": dict(train), "pixel": {}}, "standard", 1000)
    _place(st, 0, "RP", {"train": dict(train)}, "standard", 1000)
    assert st.state["seeds"]["0"]["CP"]["suite"] is suite and "pixel" in st.state["seeds"]["0"]["CP"]
    assert st.state["seeds"]["0"]["RP"]["suite_skipped"] == "near chance" and len(saved) == 2
    # another trained model, or another suite or image count: the old result does not belong to the new row
    for changed, suite_name, n in (({**train, "epochs": 4}, "standard", 1000), (train, "autoattack", 1000),
                                   (train, "standard", 500)):
        st.state["seeds"]["0"]["CP"] = {"train": json.loads(json.dumps(train)), "suite": suite}
        _place(st, 0, "CP", {"train": dict(changed)}, suite_name, n)
        assert "suite" not in st.state["seeds"]["0"]["CP"]


def test_processes_sharing_an_output_folder_keep_each_others_rows_and_time(tmp_path, monkeypatch):
    """Two study processes on one --out (store.py's claims divide the units): each save keeps the rows and the
    compute time the other saved; a results.json from another configuration contributes nothing."""
    import robprune.experiments.study_state as study

    clock = [1000.0]
    monkeypatch.setattr(study.time, "time", lambda: clock[0])
    monkeypatch.setattr("robprune.reporting.study_figures.write_study_figures", lambda state, out: [])

    def new_state():
        return {"config": {"seeds": (0, 1)}, "data": "digits", "seeds": {}}

    a = study.StudyState(tmp_path, new_state(), lambda st: "report")
    b = study.StudyState(tmp_path, new_state(), lambda st: "report")
    b.me = "other:1:1"  # another process (same host and pid in a test)
    clock[0] += 30
    a.state["seeds"]["0"] = {"CP": {"train": {"epochs": 2}, "clean": 1}}
    a.save()
    clock[0] += 30
    b.state["seeds"]["1"] = {"CP": {"train": {"epochs": 2}, "clean": 2}}
    b.state["seeds"]["0"] = {"CP": {"train": {"epochs": 2}, "suite": {"n": 5}}}
    b.save()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["seeds"]["0"]["CP"] == {"train": {"epochs": 2}, "suite": {"n": 5}}
    assert saved["seeds"]["1"]["CP"]["clean"] == 2
    assert saved["elapsed_s"] == pytest.approx(30 + 60)  # a: 30 s at its save, b: 60 s
    a.save()  # a keeps b's rows, and takes b's suite result for the same trained model
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["seeds"]["0"]["CP"] == {"train": {"epochs": 2}, "clean": 1, "suite": {"n": 5}}
    assert saved["seeds"]["1"]["CP"]["clean"] == 2 and saved["elapsed_s"] == pytest.approx(60 + 60)
    c = study.StudyState(tmp_path, {**new_state(), "config": {"seeds": (0,)}}, lambda st: "report")
    c.save()  # another configuration: no rows from the file, but the time spent in the folder is still counted
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["seeds"] == {} and saved["elapsed_s"] == pytest.approx(120)


def test_a_damaged_results_json_does_not_lose_the_earlier_compute_time(tmp_path, monkeypatch):
    import robprune.experiments.study_state as study

    clock = [1000.0]
    monkeypatch.setattr(study.time, "time", lambda: clock[0])
    monkeypatch.setattr("robprune.reporting.study_figures.write_study_figures", lambda state, out: [])
    first = study.StudyState(tmp_path, {"config": {}, "data": "digits", "seeds": {}}, lambda st: "report")
    clock[0] += 3600
    first.save()
    text = (tmp_path / "results.json").read_text()
    (tmp_path / "results.json").write_text(text[: len(text) // 2])  # a crash or a full disk cut it short
    second = study.StudyState(tmp_path, {"config": {}, "data": "digits", "seeds": {}}, lambda st: "report")
    second.me = "other:2:2"
    clock[0] += 600
    second.save()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["elapsed_s"] == pytest.approx(3600 + 600)


def _run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    return out


@pytest.mark.slow
def test_scratch_quick_runs_resumes_and_reports(tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["reproduce", "--protocol", "scratch", "--quick", "--data", "digits", "--out", str(out), "--device", "cpu",
            "--suite-images", "30"]
    text = _run(argv, capsys)
    assert "## Verdict" in text and "Table 2" in text and "lam and tau search" in text
    state = json.loads((out / "results.json").read_text())
    assert state["done"] and sorted(state["seeds"]) == ["0", "1"]
    assert set(state["search"]) == {"CP", "lam0.01-tauq0.9-gradient", "lam0.1-tauq0.9-proximal"}
    assert "- lam 0.1 tau q0.9 (proximal): a proximal candidate" in text  # a candidate's note under the table
    # the fifth arm (Ours at the regime setting) on every seed, with (c) and (d) decided for it too
    assert all("Ours-regime" in state["seeds"][s] for s in ("0", "1"))
    assert {r["suite"]["n"] for rows in state["seeds"].values() for r in rows.values() if "suite" in r} == {30}
    regime = text.split("### Ours in the paper's weight regime")[1].split("###")[0]
    assert "(c) Ours beats CP" in regime and "(d) Ours has the narrowest" in regime and "(f)" not in regime
    assert "| Ours-regime |" in text.split("## Table 2")[1]
    assert "With `Ours-regime`" in text.split("## Protocol")[0]  # and in the verdict at the top
    for claim in ("(a)", "(b)", "(c)", "(d)", "(f)"):
        assert claim in text
    assert "(e) every robustness gain that holds under PGD-4 survives" in text.split("## Protocol")[0]
    # the plain-language verdict at the top takes its numbers from the claim tables below it
    plain = text.split("**In plain words.** ")[1].split("\n")[0]
    cost = float(re.search(r"RP costs (-?[0-9.]+) clean points", plain).group(1))
    table = text.split("### PGD-4 in pixel units")[1].split("###")[0]
    assert cost == pytest.approx(float(re.search(r"\(a\) RP loses.*?mean ([+-][0-9.]+)", table).group(1)), abs=0.051)
    assert "The hinge at the rule's setting significantly beats CP" in plain and "In the paper's weight range" in plain
    # a broken arm (near chance) never decides a claim: the same results with RP at chance on one seed
    from robprune.reporting.study_report import scratch_claims

    at_chance = json.loads(json.dumps(state))
    at_chance["seeds"]["1"]["RP"]["pixel"]["clean"]["accuracy"] = 0.1
    a = scratch_claims(at_chance, "pixel")["claims"]["a"]
    assert a["verdict"] == UNDECIDED and "RP (seed 1)" in a["parts"]["clean"]["why"]
    if any(broken(state["seeds"][s]["RP"]["pixel"]) for s in ("0", "1")):
        assert "(a) RP loses clean accuracy against CP | **UNDECIDED**" in text
    units = sorted(p.name for p in (out / "units").iterdir())
    mtimes = {p: p.stat().st_mtime for p in (out / "units").rglob("*.safetensors")}
    again = _run(argv, capsys)
    assert sorted(p.name for p in (out / "units").iterdir()) == units
    assert {p: p.stat().st_mtime for p in (out / "units").rglob("*.safetensors")} == mtimes  # nothing retrained
    assert again.split("**Status")[1][:10] == text.split("**Status")[1][:10]
    rendered = _run(["reproduce", "--protocol", "scratch", "--report-only", "--data", "digits", "--out", str(out)],
                    capsys)
    assert "figure-table2.png" in rendered and (out / "figure-table2.png").is_file()
    assert (out / "figure-sweep.png").is_file()


@pytest.mark.slow
def test_adversarial_quick_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "a"
    argv = ["study", "adversarial", "--quick", "--seeds", "0,1", "--data", "digits", "--out", str(out),
            "--device", "cpu", "--suite", "fast", "--suite-images", "30"]
    text = _run(argv, capsys)
    state = json.loads((out / "results.json").read_text())
    assert state["done"]
    for seed in ("0", "1"):
        assert set(state["seeds"][seed]) == {"Dense", "CP-0.9", "RP-0.9", "Ours-0.9", "RP-0.1"}
        for row in state["seeds"][seed].values():
            assert "pgd" in row and "bounds" in row
            assert (out / row["export"]["path"]).is_file()
            # a broken model (near chance or near-constant) is not attacked, and only a broken one
            assert ("suite_skipped" in row) == (broken(row["clean"]) is not None) != ("suite" in row)
            if "suite" in row:
                assert row["suite"]["n"] == 30 and row["suite"]["suite"] == "fast"
                checks = {c["name"]: c["passed"] for c in row["suite"]["sanity_checks"]}
                assert checks["model_in_eval_mode"]
            assert abs(row["stats"]["sparsity"] - {"Dense": 0.0, "RP-0.1": 0.1}.get(
                next(k for k, v in state["seeds"][seed].items() if v is row), 0.9)) < 0.01
    assert sum("suite" in r for rows in state["seeds"].values() for r in rows.values()) >= 6
    assert "RP vs CP at 90%" in text and "Ours vs CP at 90%" in text and "RP at 10% vs Dense" in text
    assert "HARP (published, ResNet-18)" in text
    short = text.split("**In short** ")[1].split("\n")[0]
    assert "RP vs CP at 90%: clean" in short and "Ours vs CP at 90%: clean" in short
    for section in ("## Table 1", "## Eq. 3"):  # weight statistics and the bound for every model
        part = text.split(section)[1].split("\n## ")[0]
        assert all(f"| {name} |" in part for name in state["seeds"]["0"])
    assert (out / "figure-sparsity.png").is_file()
    payload = torch.load(out / state["seeds"]["0"]["CP-0.9"]["export"]["path"], weights_only=True)
    assert payload["format"] == "torch" and payload["sparsity"] == pytest.approx(0.9, abs=0.01)
    # the report's export command for a model writes the same weights as the study's export
    line = next(x for x in text.splitlines() if x.startswith("| 0 | CP-0.9 | `robprune export"))
    cmd = line.split("`")[1].replace("OUT/", f"{out}/").split()
    cmd[cmd.index("--out") + 1] = str(tmp_path / "again.pt")
    assert main(cmd[1:]) == 0
    again = torch.load(tmp_path / "again.pt", weights_only=True)
    assert again["state_dict"].keys() == payload["state_dict"].keys()
    assert all(torch.equal(again["state_dict"][k], v) for k, v in payload["state_dict"].items())


def test_study_arguments_are_checked(capsys):
    assert main(["study", "adversarial", "--data", "digits", "--seeds", "1,1"]) != 0
    assert main(["reproduce", "--protocol", "finetune", "--seeds", "0,1", "--data", "digits"]) != 0
    # argparse: one line naming the choices, exit 2
    assert main(["study", "adversarial", "--data", "digits", "--suite", "auto-attack"]) == 2
    assert "choose from" in capsys.readouterr().err
    assert main(["reproduce", "--protocol", "scratch", "--data", "digits", "--suite-images", "0"]) != 0


@pytest.mark.slow
def test_adversarial_extras_come_one_sparsity_at_a_time_highest_first(tmp_path, monkeypatch):
    """The extra sparsities (seed 0 only) are trained and attacked one column at a time, the highest first, so a
    run stopped part-way leaves whole columns of the benchmark's table rather than half of each."""
    from dataclasses import replace

    from robprune.experiments.adversarial import ADVERSARIAL_QUICK, run_adversarial

    config = replace(ADVERSARIAL_QUICK, seeds=(0, 1), methods=("CP",), rp_paper=0.0,
                     extra_sparsities=(0.5, 0.8), suite_images=20, pgd_images=50, export=False)
    out = tmp_path / "x"
    state = run_adversarial("digits", out, config, torch.device("cpu"))
    assert state["done"]
    assert set(state["seeds"]["0"]) == {"Dense", "CP-0.9", "CP-0.8", "CP-0.5"}
    assert set(state["seeds"]["1"]) == {"Dense", "CP-0.9"}  # the extras are on the first seed only

    def finished(prefix):  # when a unit's result was written
        (unit,) = [d for d in (out / "units").iterdir() if re.fullmatch(re.escape(prefix) + r"-[0-9a-f]+", d.name)]
        return max(f.stat().st_mtime_ns for f in unit.iterdir())

    for name in ("CP-0.8", "CP-0.5"):
        row = state["seeds"]["0"][name]
        assert ("suite" in row) != ("suite_skipped" in row)
        assert abs(row["stats"]["sparsity"] - float(name.split("-")[1])) < 0.01
    assert "suite" in state["seeds"]["0"]["CP-0.8"]  # so the order below includes its attack
    assert finished("s0-CP-0.8") < finished("suite-s0-CP-0.8") < finished("s0-CP-0.5")
    assert max(finished("suite-s0-CP-0.9"), finished("suite-s1-CP-0.9")) < finished("s0-CP-0.8")
    # cutting an extra sparsity afterwards (--extra-sparsities) computes nothing and reports the smaller grid
    units = {d.name: finished(d.name.rsplit("-", 1)[0]) for d in (out / "units").iterdir()}
    state = run_adversarial("digits", out, replace(config, extra_sparsities=(0.8,)), torch.device("cpu"))
    assert state["done"] and set(state["seeds"]["0"]) == {"Dense", "CP-0.9", "CP-0.8"}
    assert {d.name: finished(d.name.rsplit("-", 1)[0]) for d in (out / "units").iterdir()} == units
    assert "CP-0.5" not in (out / "report.md").read_text() and "| CP-0.8 |" in (out / "report.md").read_text()

    # A unit of an earlier stage held by another live process (here: seed 1's core suite, claimed by a sleeping
    # process) does not hold up the later steps: the extra sparsity is trained and attacked meanwhile.
    import socket
    import subprocess
    import sys
    import threading

    from robprune.experiments import sharing, store

    monkeypatch.setattr(store, "POLL_S", 0.2)
    (held,) = (out / "units").glob("suite-s1-CP-0.9-*")
    for f in held.iterdir():
        f.unlink()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        (held / ".claim").write_text(json.dumps({"host": socket.gethostname(), "pid": sleeper.pid,
                                                 "started": sharing.started(sleeper.pid)}))
        result = {}
        walk = threading.Thread(target=lambda: result.update(state=run_adversarial(
            "digits", out, replace(config, extra_sparsities=(0.7, 0.8)), torch.device("cpu"))))
        walk.start()
        deadline = time.time() + 120
        while not list((out / "units").glob("suite-s0-CP-0.7-*/suite.json")) and time.time() < deadline:
            time.sleep(0.2)
        assert list((out / "units").glob("suite-s0-CP-0.7-*/suite.json")), "the walk waited for the held unit"
        assert walk.is_alive() and not (held / "suite.json").exists()  # still waiting for the held one
    finally:
        sleeper.kill()
        sleeper.wait()
    walk.join(timeout=120)
    assert not walk.is_alive() and result["state"]["done"]
    assert finished("suite-s0-CP-0.7") < finished("suite-s1-CP-0.9")  # taken over once its process was gone
