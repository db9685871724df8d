"""Reports of the multi-seed studies: mean +- std over seeds with the per-seed values, and every claim decided by
the rule in ``evaluation.significance`` (or UNDECIDED with the numbers).

``render_scratch`` renders ``reproduce --protocol scratch``; ``render_adversarial`` renders ``study adversarial``;
``render_methods`` renders ``study methods``; ``render_channels`` renders ``study channels``. All work on a partial results file (a run in progress): what is not done yet is listed as pending.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..results import load_results
from .adversarial_report import adversarial_claims, render_adversarial
from .channels_report import render_channels
from .methods_report import render_methods
from .scratch_claims import gains_survive, scratch_claims
from .scratch_report import render_scratch
from .study_common import ARMS, READING_TEXT, REGIME


def rewrite_study_report(out, report=None, default_grid: dict | None = None) -> str:
    """Re-render the report (OUT/report.md, or ``report``) and the figures of a study from OUT/results.json;
    computes nothing. ``default_grid``: the study's default grid (each study module's ``default_grid()``), which
    its report compares the run's grid with."""
    from ..io import write_text_atomic
    from .study_figures import write_study_figures

    out = Path(out)
    path = out / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the study first")
    state = load_results(path)
    if "config" not in state or "seeds" not in state:
        raise ValueError(f"{path} is not a study results file (no 'config' and 'seeds')")
    if (out / "runs.log").is_file():
        state["runs_log"] = (out / "runs.log").read_text()
    state["figures"] = write_study_figures(state, out)
    report = out / "report.md" if report is None else Path(report)
    if report.parent.resolve() != out.resolve():
        state["figure_prefix"] = Path(os.path.relpath(out.resolve(), report.parent.resolve())).as_posix() + "/"
    if state.get("study") == "adversarial":
        text = render_adversarial(state, default_grid)
    elif state.get("study") == "methods":
        text = render_methods(state, default_grid)
    elif state.get("study") == "channels":
        text = render_channels(state, default_grid)
    else:
        text = render_scratch(state)
    write_text_atomic(report, text)
    return text


__all__ = ["ARMS", "READING_TEXT", "REGIME", "adversarial_claims", "gains_survive", "render_adversarial",
           "render_methods", "render_scratch", "rewrite_study_report", "scratch_claims"]
