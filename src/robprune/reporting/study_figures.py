"""Figures of the multi-seed studies: mean over seeds with std bars (PNG, written atomically)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .markdown import eps_label, save_figure
from .study_report import ARMS


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def write_study_figures(state: dict, out: Path) -> list[str]:
    if state.get("study") == "adversarial":
        return _adversarial(state, out)
    return _scratch(state, out)


def _scratch(state: dict, out: Path) -> list[str]:
    names = []
    seeds = [k for k, r in state.get("seeds", {}).items() if all(a in r for a in ARMS)]
    if seeds:
        fig = Figure(figsize=(11, 4))
        for j, reading in enumerate(("pixel", "pixel-fgsm")):
            ax = fig.add_subplot(1, 3, j + 1)
            eps = [r["eps"] for r in state["seeds"][seeds[0]]["Baseline"][reading]["robust"]]
            x = np.arange(len(eps) + 1)
            for arm in ARMS:
                acc = [[100 * state["seeds"][k][arm][reading]["clean"]["accuracy"]]
                       + [100 * r["accuracy"] for r in state["seeds"][k][arm][reading]["robust"]] for k in seeds]
                m, s = np.mean(acc, 0), (np.std(acc, 0, ddof=1) if len(acc) > 1 else np.zeros(len(x)))
                ax.errorbar(x, m, yerr=s, marker="o", capsize=3, label=arm)
            ax.set_xticks(x, ["clean"] + [eps_label(e) for e in eps])
            ax.set_ylabel("accuracy (%)")
            ax.set_title("PGD-4, pixel" if reading == "pixel" else "FGSM, pixel", fontsize=9)
            ax.legend(fontsize=7)
        ax = fig.add_subplot(1, 3, 3)
        for arm in ARMS:
            h = state["seeds"][seeds[0]][arm].get("history", [])
            ax.plot([e["epoch"] for e in h], [100 * e["test_acc"] for e in h], marker=".", label=arm)
        ax.set_xlabel("epoch (seed " + seeds[0] + ")")
        ax.set_ylabel("held-out accuracy (%)")
        ax.set_title("training curves", fontsize=9)
        ax.legend(fontsize=7)
        fig.suptitle(f"{state['config']['arch']}, mean ± std over {len(seeds)} seed(s)", fontsize=10)
        fig.tight_layout()
        save_figure(fig, out / "figure-table2.png")
        names.append("figure-table2.png")
    sweep = state.get("sweep", [])
    if sweep:
        eps = [r["eps"] for r in sweep[0]["eval"]["robust"]]
        fig = Figure(figsize=(4 * (len(eps) + 1), 3.4))
        for j in range(len(eps) + 1):
            ax = fig.add_subplot(1, len(eps) + 1, j + 1)
            for method in ("cp", "rp"):
                ratios = sorted({s["ratio"] for s in sweep if s["method"] == method})
                ms = [_mean_std([100 * (s["eval"]["clean"]["accuracy"] if j == 0 else s["eval"]["robust"][j - 1]["accuracy"])
                                 for s in sweep if s["method"] == method and s["ratio"] == r]) for r in ratios]
                ax.errorbar(ratios, [m for m, _ in ms], yerr=[s for _, s in ms], marker="o", capsize=3,
                            label=method.upper())
            ax.set_title("clean" if j == 0 else f"PGD-4 eps {eps_label(eps[j - 1])}", fontsize=9)
            ax.set_xlabel("pruning ratio")
            ax.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, out / "figure-sweep.png")
        names.append("figure-sweep.png")
    return names


def _adversarial(state: dict, out: Path) -> list[str]:
    cfg = state["config"]
    seeds = list(state.get("seeds", {}))
    if not seeds:
        return []
    sparsities = sorted(set(cfg["sparsities"]) | set(cfg["extra_sparsities"]))
    panels = [("clean", lambda r: 100 * r["clean"]["clean"]["accuracy"]),
              (f"PGD-{cfg['pgd_steps']} {eps_label(cfg['pgd_eps'][-1])}", lambda r: 100 * r["pgd"]["robust"][-1]["accuracy"]),
              (f"{cfg['suite']} {eps_label(cfg['suite_eps'])}",
               lambda r: 100 * r["suite"]["rows"][0]["worst_case"]["accuracy"] if "suite" in r else None)]
    fig = Figure(figsize=(12, 3.6))
    for j, (title, get) in enumerate(panels):
        ax = fig.add_subplot(1, 3, j + 1)
        dense = [get(state["seeds"][k]["Dense"]) for k in seeds if "Dense" in state["seeds"][k]]
        dense = [v for v in dense if v is not None]
        if dense:
            ax.axhline(np.mean(dense), color="gray", linestyle="--", label="dense")
        for shift, m in enumerate(cfg["methods"]):
            xs, ys, es = [], [], []
            for s in sparsities:
                vals = [get(state["seeds"][k][f"{m}-{s:g}"]) for k in seeds if f"{m}-{s:g}" in state["seeds"][k]]
                vals = [v for v in vals if v is not None]
                if vals:
                    mean, sd = _mean_std(vals)
                    # evenly spaced sparsities (90/95/99% would crowd a linear axis); methods side by side
                    xs.append(sparsities.index(s) + 0.08 * (shift - 1))
                    ys.append(mean)
                    es.append(sd)
            if xs:  # one colour per method in every panel, also when a panel has only some methods yet
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=m, color=f"C{shift}")
        ax.set_xticks(range(len(sparsities)), [f"{100 * s:g}%" for s in sparsities])
        ax.set_xlim(-0.4, len(sparsities) - 0.6)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("sparsity")
        ax.set_ylabel("accuracy (%)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "pending", transform=ax.transAxes, ha="center")
    fig.suptitle(f"{cfg['arch']}, FGSM-RS adversarial training; mean ± std over seeds", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "figure-sparsity.png")
    return ["figure-sparsity.png"]
