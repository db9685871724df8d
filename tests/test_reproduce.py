import json

import pytest

from robprune.cli import main

from conftest import write_imagefolder


@pytest.mark.slow
def test_quick_reproduce_runs_caches_and_reports(tmp_path, capsys):
    root = write_imagefolder(tmp_path / "tree", size=16, per_class=40)
    argv = ["reproduce", "--data", f"imagefolder:{root}", "--quick", "--out", str(tmp_path / "r"), "--device", "cpu"]
    assert main(argv) == 0
    report = (tmp_path / "r" / "report.md").read_text()
    for heading in ("Which reading", "Choosing lam", "Table 2, pixel units", "Table 1", "Eq. 3", "Figure 2",
                    "claims"):
        assert heading in report, heading
    assert "not run yet" not in report
    assert "full test split" not in report  # --quick attacks a few hundred images and says how many
    assert "the gain no gain" not in report
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    table = results["stages"]["table2-pixel"]
    assert set(table) == {"Baseline", "CP", "RP", "Ours"}
    assert table["CP"]["stats"]["sparsity"] > 0.49 and table["RP"]["stats"]["sparsity"] > 0.09
    bounds = results["stages"]["bounds"]
    for b in bounds.values():  # the measured ratio can never exceed a valid Lipschitz bound
        assert b["measured"]["max"] <= 10 ** b["spectral"]["log10_bound"] <= 10 ** b["l1"]["log10_bound"]
    suite = results["stages"]["suite"]
    assert all(set(s["reference"]) >= {"pixel"} and s["reference"]["pixel"]["n"] == s["n"] for s in suite.values())
    assert "Stronger attacks" in report and "worst case of the suite" in report
    readings = {s["reading"] for s in results["stages"]["sweep"]}
    assert "pixel" in readings and len(results["stages"]["sweep"]) == 3 * 2 * len(readings)
    assert results["figures"] and all((tmp_path / "r" / f).is_file() for f in results["figures"])
    assert all(f"]({f})" in report for f in results["figures"])
    capsys.readouterr()
    # a rerun recomputes nothing: every unit is cached
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[start]" not in err and "[cached]" in err


def _acc(a: float) -> dict:
    return {"accuracy": a, "correct": round(a * 100), "n": 100, "ci95": [a, a]}


def _suite_entry(weak: list[float], worst: list[float]) -> dict:
    eps = [1 / 255, 8 / 255]
    return {"n": 100, "reference": {"pixel": {"robust": [_acc(w) for w in weak]}},
            "robust": [{"eps": e, **_acc(w)} for e, w in zip(eps, worst)]}


def test_masking_verdict_tells_surviving_from_vanishing_gains():
    from robprune.reporting.reproduce_report import masking_verdict

    suite = {"CP": _suite_entry([0.40, 0.02], [0.30, 0.00]),
             "RP": _suite_entry([0.35, 0.10], [0.25, 0.00]),  # gain at 8/255 under PGD, none in the worst case
             "Ours": _suite_entry([0.45, 0.03], [0.33, 0.00])}  # gain at 1/255 survives, at 8/255 gone
    rp, ours, overstated = masking_verdict(suite)
    assert "eps 8/255: +8.00 -> +0.00" in rp and "the gain is gone at 8/255." in rp
    assert "survives clearly at 1/255; is gone at 8/255" in ours
    assert "RP 10.00, 10.00" in overstated and "CP 10.00, 2.00" in overstated


def test_finetune_claims_refuse_broken_models_and_read_well():
    from robprune.reporting.reproduce_report import _claims, masking_verdict

    def ev(clean, robust, share=0.12):
        return {"eval": {"clean": _acc(clean), "robust": [_acc(r) for r in robust], "prediction_max_share": share}}

    table = {"Baseline": ev(0.9, [0.4, 0.1]), "CP": ev(0.9, [0.4, 0.1]), "RP": ev(0.075, [0.075, 0.075]),
             "Ours": ev(0.89, [0.45, 0.12])}
    stats = {n: {"min": -1.0, "max": 1.0, "l1": 100.0} for n in table}
    stats["Ours"] = {"min": -0.2, "max": 0.2, "l1": 50.0}
    claims = _claims(table, stats)
    a = next(c for c in claims if c.startswith("(a)"))
    b = next(c for c in claims if c.startswith("(b)"))
    assert "**UNDECIDED: a model is broken**" in a and "**UNDECIDED: a model is broken**" in b  # RP at 7.5%
    assert any("within 10 points of chance" in c for c in claims)
    # one seed decides nothing under the one rule: (d) is only observed in the claimed direction
    assert "**UNDECIDED: observed in the claimed direction**" in next(c for c in claims if c.startswith("(d)"))
    assert not any("**HOLDS" in c or "**FAILS" in c for c in claims)
    suite = {"CP": _suite_entry([0.40, 0.02], [0.30, 0.00]), "RP": _suite_entry([0.30, 0.01], [0.20, 0.00]),
             "Ours": _suite_entry([0.45, 0.03], [0.33, 0.00])}
    text = " ".join(masking_verdict(suite))
    assert "the gain no gain" not in text and "RP has no gain over CP under this attack, so none to test" in text
