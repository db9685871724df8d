import json

from robprune.cli import main

from conftest import write_imagefolder


def test_quick_reproduce_runs_caches_and_reports(tmp_path, capsys):
    root = write_imagefolder(tmp_path / "tree", size=16, per_class=40)
    argv = ["reproduce", "--data", f"imagefolder:{root}", "--quick", "--out", str(tmp_path / "r"), "--device", "cpu"]
    assert main(argv) == 0
    report = (tmp_path / "r" / "report.md").read_text()
    for heading in ("Which reading", "Choosing lam", "Table 2, pixel units", "Table 1", "Eq. 3", "Figure 2",
                    "claims"):
        assert heading in report, heading
    assert "not run yet" not in report
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    table = results["stages"]["table2-pixel"]
    assert set(table) == {"Baseline", "CP", "RP", "Ours"}
    assert table["CP"]["stats"]["sparsity"] > 0.49 and table["RP"]["stats"]["sparsity"] > 0.09
    bounds = results["stages"]["bounds"]
    for b in bounds.values():  # the measured ratio can never exceed a valid Lipschitz bound
        assert b["measured"]["max"] <= 10 ** b["spectral"]["log10_bound"] <= 10 ** b["l1"]["log10_bound"]
    assert (tmp_path / "r" / "figure.png").is_file()
    capsys.readouterr()
    # a rerun recomputes nothing: every unit is cached
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[start]" not in err and "[cached]" in err
