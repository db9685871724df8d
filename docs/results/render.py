"""Re-render every committed report in this folder from its stored results; computes nothing.

    python docs/results/render.py            # rewrite the reports (and figures) in place
    python docs/results/render.py --check    # exit 1 naming each report that differs from its re-rendering

The study reports are exactly what `robprune ... --report-only` writes, with figure links relative to this
folder. The ResNet-56 report keeps its hand-written preface (everything above its line of dashes) and below
it the report rendered from cifar10-jpeg-resnet56.json, figure links renamed to the committed PNGs.
tests/test_golden_reports.py runs the same functions on copies.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STUDIES = ("adversarial-pruning-resnet20", "cifar10-jpeg-resnet20-scratch", "methods-digits", "channels-study-digits",
           "methods-cifar", "channels-cifar")
RESNET56 = "cifar10-jpeg-resnet56"
DASHES = "-" * 100
R56_FIGURES = {"![figure.png](figure.png)": f"![Figure, FGSM reading]({RESNET56}.png)",
               "![figure-pixel.png](figure-pixel.png)": f"![Figure, pixel PGD-4]({RESNET56}-pixel.png)"}


def render_study(folder: Path, report: Path) -> str:
    """The study report of ``folder``'s results.json, written to ``report`` (figures stay in ``folder``), set
    against its study's default grid."""
    from robprune.experiments import adversarial, channel_study, methods
    from robprune.reporting.study_report import rewrite_study_report

    grids = {"adversarial": adversarial.default_grid, "methods": methods.default_grid,
             "channels": channel_study.default_grid}
    study = json.loads((folder / "results.json").read_text()).get("study")
    return rewrite_study_report(folder, report=report, default_grid=grids[study]() if study in grids else None)


def render_resnet56(here: Path) -> str:
    """The ResNet-56 fine-tuning report: the committed preface, then the rendered report."""
    from robprune.reporting.reproduce_report import render_report

    from robprune.results import load_results

    state = load_results(here / f"{RESNET56}.json")
    text = render_report(state, (here / f"{RESNET56}.runs.log").read_text())
    for old, new in R56_FIGURES.items():
        text = text.replace(old, new)
    preface = (here / f"{RESNET56}.md").read_text().split(DASHES + "\n", 1)[0]
    return preface + DASHES + "\n\n" + text


def main(argv: list[str]) -> int:
    check = "--check" in argv
    differ = []
    for name in STUDIES:
        report = HERE / f"{name}.md"
        before = report.read_text()
        if check:
            import shutil
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                shutil.copytree(HERE / name, Path(tmp) / name)
                text = render_study(Path(tmp) / name, Path(tmp) / f"{name}.md")
        else:
            text = render_study(HERE / name, report)
        if text != before:
            differ.append(report.name)
    r56 = HERE / f"{RESNET56}.md"
    text = render_resnet56(HERE)
    if text != r56.read_text():
        differ.append(r56.name)
        if not check:
            r56.write_text(text)
    print(("differ from their re-rendering: " if check else "rewritten: ") + (", ".join(differ) or "none"))
    return 1 if check and differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
