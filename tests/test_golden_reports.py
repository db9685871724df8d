"""Golden reports: every committed report re-renders from its committed results byte for byte, and the numbers
that line up two evaluations do so on the very images both evaluated."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from robprune.evaluation.accuracy import fixed_subset, unpack_bits
from robprune.results import load_results

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def _render_module():
    spec = importlib.util.spec_from_file_location("render_reports", RESULTS / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["adversarial-pruning-resnet20", "cifar10-jpeg-resnet20-scratch", "methods-digits",
                                  "channels-study-digits", "methods-cifar",
                                  "channels-cifar"])
def test_study_report_rerenders_identically(name, tmp_path):
    render = _render_module()
    shutil.copytree(RESULTS / name, tmp_path / name)
    text = render.render_study(tmp_path / name, tmp_path / f"{name}.md")
    assert text == (RESULTS / f"{name}.md").read_text()


def test_resnet56_report_rerenders_identically():
    render = _render_module()
    assert render.render_resnet56(RESULTS) == (RESULTS / f"{render.RESNET56}.md").read_text()


def test_suite_reference_column_uses_the_images_the_suite_attacked():
    """The scratch report's "same images, PGD-4 pixel" column: recomputed here from the per-image bits on the
    images fixed_subset hands the suite (not the first n), and no image the suite found robust is misclassified
    clean on those images."""
    state = load_results(RESULTS / "cifar10-jpeg-resnet20-scratch" / "results.json")
    report = (RESULTS / "cifar10-jpeg-resnet20-scratch.md").read_text()
    checked = 0
    for arm in ("Baseline", "CP", "RP", "Ours"):
        refs = []
        for seed, rows in state["seeds"].items():
            ev, suite = rows[arm]["pixel"], rows[arm]["suite"]
            total, n = ev["n"], suite["n"]
            positions = fixed_subset(torch.arange(total), torch.arange(total), n)[0].numpy()
            clean = unpack_bits(ev["clean_correct_bits"], total)[positions]
            for row in suite["robust"]:
                robust = unpack_bits(row["correct_bits"], n)
                assert not (robust & ~clean).any(), (arm, seed)  # robust implies correct clean
                checked += 1
            refs.append([100 * unpack_bits(r["correct_bits"], total)[positions].mean() for r in ev["robust"]])
        expected = " / ".join(f"{v:.2f}" for v in np.mean(refs, axis=0))
        line = next(x for x in report.splitlines() if re.match(rf"\| {arm} \| 0, 1, 2 \| .* \| none \|$", x))
        assert f"| {expected} |" in line, (arm, expected, line)
    assert checked == 4 * 3 * 4
