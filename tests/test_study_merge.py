"""robprune study --merge: a study's seeds run in separate folders (another machine, a later run) merge into
the report one run of every seed would have written; folders that do not belong together are refused with nothing
written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robprune.cli import main
from robprune.experiments.methods import default_grid
from robprune.reporting.study_report import rewrite_study_report
from robprune.results import load_results

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def _split(tmp_path: Path, name: str, groups: list[list[str]]) -> list[Path]:
    """The committed study ``name`` cut into one folder per group of seeds, as separate runs would have left it."""
    state = json.loads((RESULTS / name / "results.json").read_text())
    folders = []
    for i, seeds in enumerate(groups):
        part = dict(state, seeds={s: state["seeds"][s] for s in seeds},
                    config=dict(state["config"], seeds=[int(s) for s in seeds]),
                    elapsed_parts={f"host:{i}": 100.0 * (i + 1)}, elapsed_s=100.0 * (i + 1))
        folder = tmp_path / f"part{i}"
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps(part))
        (folder / "runs.log").write_text(f"2026-01-0{i + 1} 00:00:00 start: robprune study ... part {i}\n")
        folders.append(folder)
    return folders


def _body(text: str) -> str:
    """A report without what a merge rightly changes: the compute time and the invocations."""
    head, rest = text.split("**Status", 1)
    return head + rest.split("```text", 1)[1].split("```", 1)[1]


def _whole(tmp_path: Path) -> str:
    """The committed 3-seed report, every seed's models in the order the study runs them (a shared run saved seed
    2's in the order its processes finished them; a merge writes the study's order)."""
    state = json.loads((RESULTS / "methods-digits" / "results.json").read_text())
    order = list(state["seeds"]["0"])
    state["seeds"] = {s: {arm: rows[arm] for arm in order} for s, rows in state["seeds"].items()}
    copy = tmp_path / "whole"
    copy.mkdir()
    (copy / "results.json").write_text(json.dumps(state))
    return rewrite_study_report(copy, default_grid=default_grid())


def test_merged_seeds_render_the_report_of_one_run(tmp_path):
    parts = _split(tmp_path, "methods-digits", [["0", "1"], ["2"]])
    later = json.loads((parts[1] / "results.json").read_text())
    (parts[1] / "results.json").write_text(json.dumps(dict(later, latency={"ms": {"x": 1.0}})))
    out = tmp_path / "merged"
    assert main(["study", "methods", "--data", "digits", "--merge", ",".join(map(str, parts)), "--out", str(out)]) == 0
    whole = _whole(tmp_path)
    merged = (out / "report.md").read_text()
    assert _body(merged) == _body(whole)
    assert "over 3 seeds" in merged
    state = json.loads((out / "results.json").read_text())
    assert state["config"]["seeds"] == [0, 1, 2] and sorted(state["seeds"]) == ["0", "1", "2"]
    assert state["elapsed_s"] == pytest.approx(300.0)
    assert state["latency"] == {"ms": {"x": 1.0}}  # a record only the later folder has is kept
    log = (out / "runs.log").read_text()
    assert "part 0" in log and "part 1" in log and "merged: robprune study methods" in log
    assert "Merged from 2 output folders" in merged


def _refused(tmp_path, parts, out_name="merged", data="digits", study="methods") -> str:
    out = tmp_path / out_name
    assert main(["study", study, "--data", data, "--merge", ",".join(map(str, parts)), "--out", str(out)]) == 2
    assert not (out / "results.json").exists()
    return out


def test_merge_refuses_what_does_not_belong_together(tmp_path, capsys):
    parts = _split(tmp_path, "methods-digits", [["0", "1"], ["1", "2"]])
    state = json.loads((parts[1] / "results.json").read_text())
    state["seeds"]["1"] = state["seeds"]["2"]  # seed 1 with other results than in the first folder
    (parts[1] / "results.json").write_text(json.dumps(state))
    _refused(tmp_path, parts)
    assert "seed 1" in capsys.readouterr().err
    (tmp_path / "b").mkdir()
    parts = _split(tmp_path / "b", "methods-digits", [["0"], ["1"]])
    state = json.loads((parts[1] / "results.json").read_text())
    state["config"]["finetune"]["epochs"] += 1  # another fine-tuning budget: not the same study
    (parts[1] / "results.json").write_text(json.dumps(state))
    _refused(tmp_path, parts)
    assert "finetune" in capsys.readouterr().err
    (tmp_path / "c").mkdir()
    good = _split(tmp_path / "c", "methods-digits", [["0"], ["1"]])
    _refused(tmp_path, good, study="channels")  # another study
    _refused(tmp_path, good, data="imagefolder:x.tar.gz")  # other data
    state = json.loads((good[1] / "results.json").read_text())
    (good[1] / "results.json").write_text(json.dumps(dict(state, data="cifar10:data")))
    _refused(tmp_path, good)  # one folder run on other data
    _refused(tmp_path, good[:1])  # one folder is not a merge
    assert main(["study", "methods", "--data", "digits", "--merge", ",".join(map(str, good)), "--seeds", "1",
                 "--out", str(tmp_path / "seeds")]) == 2  # an option that computes: refused, not ignored
    assert not (tmp_path / "seeds").exists()
    _refused(tmp_path, [good[0], tmp_path / "missing"])
    assert main(["study", "methods", "--data", "digits", "--merge", ",".join(map(str, good)),
                 "--out", str(good[0])]) == 2  # into one of its inputs
    assert json.loads((good[0] / "results.json").read_text())["config"]["seeds"] == [0]


def _split_arms(tmp_path: Path, name: str, groups: list[list[str]]) -> list[Path]:
    """The committed study ``name`` cut into one folder per group of methods, every folder with the dense arm (as a
    later run of more methods on the same dense models leaves it, its measured times differing)."""
    state = json.loads((RESULTS / name / "results.json").read_text())
    folders = []
    for i, methods in enumerate(groups):
        seeds = {s: {arm: row for arm, row in rows.items() if arm == "Dense" or arm.split("-")[0].split("+")[0]
                     in methods} for s, rows in state["seeds"].items()}
        if i:  # the dense model trained again: the same results, other times
            for rows in seeds.values():
                rows["Dense"] = json.loads(json.dumps(rows["Dense"]))
                for epoch in rows["Dense"]["history"]:
                    epoch["seconds"] *= 2
                    epoch["images_per_s"] /= 2
        part = dict(state, seeds=seeds, config=dict(state["config"], methods=methods))
        folder = tmp_path / f"arms{i}"
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps(part))
        folders.append(folder)
    return folders


def test_merged_methods_render_the_report_of_one_run(tmp_path):
    parts = _split_arms(tmp_path, "methods-digits", [["RATES", "CP"], ["HYDRA", "LAMP"]])
    out = tmp_path / "merged"
    assert main(["study", "methods", "--data", "digits", "--merge", ",".join(map(str, parts)), "--out", str(out)]) == 0
    whole = _whole(tmp_path)
    assert _body((out / "report.md").read_text()) == _body(whole)
    state = json.loads((out / "results.json").read_text())
    assert state["config"]["methods"] == ["CP", "LAMP", "HYDRA", "RATES"]  # the default grid's order
    assert state["done"]
    first = json.loads((parts[0] / "results.json").read_text())
    assert state["seeds"]["1"]["Dense"]["history"] == first["seeds"]["1"]["Dense"]["history"]  # its times kept


def test_merged_arms_missing_on_a_seed_leave_the_study_unfinished(tmp_path):
    parts = _split_arms(tmp_path, "methods-digits", [["CP"], ["LAMP"]])
    later = json.loads((parts[1] / "results.json").read_text())
    later["seeds"] = {"2": later["seeds"]["2"]}
    (parts[1] / "results.json").write_text(json.dumps(later))
    out = tmp_path / "merged"
    assert main(["study", "methods", "--data", "digits", "--merge", ",".join(map(str, parts)), "--out", str(out)]) == 0
    state = json.loads((out / "results.json").read_text())
    assert not state["done"] and "LAMP-0.99" in state["seeds"]["2"] and "LAMP-0.99" not in state["seeds"]["0"]


def test_merge_refuses_a_dense_model_that_differs_beyond_its_times(tmp_path, capsys):
    parts = _split_arms(tmp_path, "methods-digits", [["CP"], ["LAMP"]])
    later = json.loads((parts[1] / "results.json").read_text())
    later["seeds"]["0"]["Dense"]["history"][-1]["test_acc"] += 0.01  # another dense model under the same key
    (parts[1] / "results.json").write_text(json.dumps(later))
    _refused(tmp_path, parts)
    assert "seed 0 Dense" in capsys.readouterr().err


def test_a_merged_folder_merges_again_with_one_section_per_run(tmp_path):
    parts = _split(tmp_path, "methods-digits", [["0"], ["1"], ["2"]])
    first = tmp_path / "first"
    assert main(["study", "methods", "--data", "digits", "--merge", f"{parts[0]},{parts[1]}", "--out", str(first)]) == 0
    again = tmp_path / "again"
    assert main(["study", "methods", "--data", "digits", "--merge", f"{first},{parts[2]}", "--out", str(again)]) == 0
    log = (again / "runs.log").read_text()
    assert [line for line in log.splitlines() if line.startswith("# ")] == [f"# {p}:" for p in parts]
    assert log.count("merged: ") == 2


def test_a_partial_folder_without_a_measure_merges_with_the_measure_kept(tmp_path):
    parts = _split_arms(tmp_path, "methods-digits", [["CP"], ["LAMP"]])
    later = json.loads((parts[1] / "results.json").read_text())
    for rows in later["seeds"].values():
        del rows["Dense"]["suite"]  # its dense AutoAttack unit not run yet
    later["done"] = False
    (parts[1] / "results.json").write_text(json.dumps(later))
    out = tmp_path / "merged"
    assert main(["study", "methods", "--data", "digits", "--merge", ",".join(map(str, parts)), "--out", str(out)]) == 0
    state = json.loads((out / "results.json").read_text())
    assert all("suite" in rows["Dense"] for rows in state["seeds"].values()) and not state["done"]


def test_the_latency_timed_over_the_most_shapes_is_kept(tmp_path):
    parts = _split(tmp_path, "methods-digits", [["0"], ["1"], ["2"]])
    timed = [{"ms": {"Dense": 4.0, "75%": 2.0}, "seed": 0}, None, {"ms": {"Dense": 5.0, "50%": 3.0, "75%": 2.5}}]
    for folder, latency in zip(parts, timed):
        state = json.loads((folder / "results.json").read_text())
        state.pop("latency", None)
        (folder / "results.json").write_text(json.dumps(dict(state, **({"latency": latency} if latency else {}))))
    out = tmp_path / "merged"
    assert main(["study", "methods", "--data", "digits", "--merge", ",".join(map(str, parts)), "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["latency"] == timed[2]  # not a mix of two runs' times


def test_a_folder_without_the_hinge_arms_merges_with_one_that_ran_them(tmp_path):
    state = json.loads((RESULTS / "methods-digits" / "results.json").read_text())
    plain, hinged = tmp_path / "plain", tmp_path / "hinged"
    for folder, keep, hinge in ((plain, lambda arm: "+hinge" not in arm, False), (hinged, lambda arm: True, True)):
        folder.mkdir()
        seeds = {s: {arm: row for arm, row in rows.items() if keep(arm)} for s, rows in state["seeds"].items()}
        if hinge:  # the later run: seeds 0 and 1 only, every arm (its plain arms the same as the first run's)
            seeds = {s: seeds[s] for s in ("0", "1")}
        part = dict(state, seeds=seeds, config=dict(state["config"], hinge=hinge, seeds=[int(s) for s in seeds]))
        (folder / "results.json").write_text(json.dumps(part))
    out = tmp_path / "merged"
    assert main(["study", "methods", "--data", "digits", "--merge", f"{plain},{hinged}", "--out", str(out)]) == 0
    merged = json.loads((out / "results.json").read_text())
    assert merged["config"]["hinge"] and merged["config"]["seeds"] == [0, 1, 2]
    whole = load_results(RESULTS / "methods-digits" / "results.json")
    assert merged["seeds"]["0"] == whole["seeds"]["0"]  # every arm of seed 0, plain and with the hinge
    assert not any("+hinge" in arm for arm in merged["seeds"]["2"]) and not merged["done"]  # seed 2 lacks them
    report = (out / "report.md").read_text()
    assert "CP+hinge" in report and "INCOMPLETE (merged" in report and "IN PROGRESS" not in report
