"""Figures of the multi-seed studies: mean over seeds with std bars (PNG, written atomically)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .markdown import eps_label, save_figure
from .study_common import ARMS, arms_of


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def write_study_figures(state: dict, out: Path) -> list[str]:
    if state.get("study") == "adversarial":
        return _adversarial(state, out)
    if state.get("study") == "methods":
        return _methods(state, out)
    if state.get("study") == "channels":
        return _channels(state, out)
    return _scratch(state, out)


def _scratch(state: dict, out: Path) -> list[str]:
    names = []
    seeds = [k for k, r in state.get("seeds", {}).items() if all(a in r for a in ARMS)]
    if seeds:
        rows = state["seeds"]
        arms = arms_of(state, seeds)
        eps = [r["eps"] for r in rows[seeds[0]]["Baseline"]["pixel"]["robust"]]
        x = np.arange(len(eps) + 1)
        ticks = ["clean"] + [eps_label(e) for e in eps]

        def pixel(k: str, arm: str) -> list[float]:
            ev = rows[k][arm]["pixel"]
            return [100 * ev["clean"]["accuracy"]] + [100 * r["accuracy"] for r in ev["robust"]]

        def suite(k: str, arm: str) -> list[float] | None:
            s = rows[k].get(arm, {}).get("suite")
            return None if s is None else [100 * s["clean"]["accuracy"]] + \
                [100 * r["accuracy"] for r in s["robust"]]

        fig = Figure(figsize=(13, 4))
        ax = fig.add_subplot(1, 3, 1)
        for i, arm in enumerate(arms):
            have = [k for k in seeds if arm in rows[k]]
            acc = np.array([pixel(k, arm) for k in have])
            ax.errorbar(x, acc.mean(0), yerr=acc.std(0, ddof=1) if len(acc) > 1 else None, marker="o", capsize=3,
                        label=arm, color=f"C{i}")
        ax.set_xticks(x, ticks)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"PGD-4, pixel, {rows[seeds[0]]['Baseline']['pixel']['clean']['n']} test images", fontsize=9)
        ax.legend(fontsize=7)
        # the claims about Ours are differences of a point or two, invisible on the accuracy axis: drawn as
        # differences to CP on the same images, PGD-4 and (where both arms were attacked) the strongest suite
        ax = fig.add_subplot(1, 3, 2)
        ax.axhline(0, color="gray", linewidth=0.8)
        for i, arm in enumerate(arms):
            if not arm.startswith("Ours"):
                continue
            have = [k for k in seeds if arm in rows[k]]
            d = np.array([np.subtract(pixel(k, arm), pixel(k, "CP")) for k in have])
            ax.errorbar(x - 0.05, d.mean(0), yerr=d.std(0, ddof=1) if len(d) > 1 else None, marker="o", capsize=3,
                        color=f"C{i}", label=f"{arm}, PGD-4 ({len(d)} seed(s))")
            both = [k for k in have if suite(k, arm) is not None and suite(k, "CP") is not None]
            if both:
                d = np.array([np.subtract(suite(k, arm), suite(k, "CP")) for k in both])
                n = rows[both[0]]["CP"]["suite"]["n"]
                ax.errorbar(x[:d.shape[1]] + 0.05, d.mean(0), yerr=d.std(0, ddof=1) if len(d) > 1 else None,
                            marker="s", linestyle="--", capsize=3, color=f"C{i}",
                            label=f"{arm}, {state['config'].get('suite', 'suite')} suite ({len(both)} seed(s), {n} images)")
        ax.set_xticks(x, ticks)
        ax.set_ylabel("minus CP (points)")
        ax.set_title("Ours minus CP on the same images, mean ± std over seeds", fontsize=9)
        ax.legend(fontsize=7)
        ax = fig.add_subplot(1, 3, 3)
        for i, arm in enumerate(arms):
            h = rows[seeds[0]].get(arm, {}).get("history", [])
            ax.plot([e["epoch"] for e in h], [100 * e["test_acc"] for e in h], marker=".", label=arm, color=f"C{i}")
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
    lines = [(m, lambda s, m=m: f"{m}-{s:g}", f"C{i}", "-") for i, m in enumerate(cfg["methods"])]
    return _sparsity_figure(state, out, sorted(set(cfg["sparsities"]) | set(cfg["extra_sparsities"])), lines,
                            f"{cfg['arch']}, FGSM-RS adversarial training; mean ± std over seeds")


def _methods(state: dict, out: Path) -> list[str]:
    cfg = state["config"]
    lines = [(m + ("+hinge" if h else ""), lambda s, m=m, h=h: f"{m}{'+hinge' if h else ''}-{s:g}", f"C{i}",
              "--" if h else "-")
             for h in ((False, True) if cfg["hinge"] else (False,)) for i, m in enumerate(cfg["methods"])]
    names = _sparsity_figure(state, out, sorted(cfg["sparsities"]), lines,
                             f"{cfg['arch']}, {cfg['dense']['adv']} adversarial training; mean ± std over seeds")
    return names + _layers_figure(state, out, max(cfg["sparsities"]), cfg["methods"])


def _layers_figure(state: dict, out: Path, sparsity: float, methods) -> list[str]:
    """The fraction of each layer kept at ``sparsity`` by each method (mean over seeds): where the budget went."""
    rows = {m: [r[f"{m}-{sparsity:g}"] for r in state.get("seeds", {}).values() if f"{m}-{sparsity:g}" in r]
            for m in methods}
    rows = {m: v for m, v in rows.items() if v}
    if not rows:
        return []
    layers = list(next(iter(rows.values()))[0]["stats"]["layers"])
    fig = Figure(figsize=(9, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    for i, (m, rs) in enumerate(rows.items()):
        kept = [np.mean([1 - r["stats"]["layers"][name]["sparsity"] for r in rs]) for name in layers]
        ax.plot(range(len(layers)), kept, marker="o", label=f"{m} ({len(rs)} seed(s))", color=f"C{i}")
    ax.set_yscale("log")
    ax.set_xticks(range(len(layers)), [name.removesuffix(".weight") for name in layers], rotation=90, fontsize=6)
    ax.set_ylabel("fraction of the layer kept")
    ax.set_title(f"Where each method keeps its weights at {100 * sparsity:g}% sparsity (mean over seeds)",
                 fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "figure-layers.png")
    return ["figure-layers.png"]


def _sparsity_figure(state: dict, out: Path, sparsities: list[float], lines, title_text: str) -> list[str]:
    """Clean, PGD and suite accuracy against sparsity: one line per (label, arm name of a sparsity, colour,
    style), the dense model dashed in gray."""
    cfg = state["config"]
    seeds = list(state.get("seeds", {}))
    if not seeds:
        return []
    panels = [("clean", lambda r: 100 * r["clean"]["clean"]["accuracy"]),
              (f"PGD-{cfg['pgd_steps']} {eps_label(cfg['pgd_eps'][-1])}", lambda r: 100 * r["pgd"]["robust"][-1]["accuracy"]),
              (f"{cfg['suite']} {eps_label(cfg['suite_eps'])}",
               lambda r: 100 * r["suite"]["robust"][0]["accuracy"] if "suite" in r else None)]
    fig = Figure(figsize=(12, 3.6))
    for j, (title, get) in enumerate(panels):
        ax = fig.add_subplot(1, 3, j + 1)
        dense = [get(state["seeds"][k]["Dense"]) for k in seeds if "Dense" in state["seeds"][k]]
        dense = [v for v in dense if v is not None]
        if dense:
            ax.axhline(np.mean(dense), color="gray", linestyle="--", label="dense")
        for shift, (label, name_of, color, style) in enumerate(lines):
            xs, ys, es = [], [], []
            for s in sparsities:
                vals = [get(state["seeds"][k][name_of(s)]) for k in seeds if name_of(s) in state["seeds"][k]]
                vals = [v for v in vals if v is not None]
                if vals:
                    mean, sd = _mean_std(vals)
                    # evenly spaced sparsities (90/95/99% would crowd a linear axis); lines side by side
                    xs.append(sparsities.index(s) + 0.08 * (shift - (len(lines) - 1) / 2))
                    ys.append(mean)
                    es.append(sd)
            if xs:  # one colour per line in every panel, also when a panel has only some lines yet
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label, color=color, linestyle=style)
        ax.set_xticks(range(len(sparsities)), [f"{100 * s:g}%" for s in sparsities])
        ax.set_xlim(-0.4, len(sparsities) - 0.6)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("sparsity")
        ax.set_ylabel("accuracy (%)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "pending", transform=ax.transAxes, ha="center")
    fig.suptitle(title_text, fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "figure-sparsity.png")
    return ["figure-sparsity.png"]


def _channels(state: dict, out: Path) -> list[str]:
    """Robust accuracy against measured latency: the trade-off a deployer looks at (once the latency is measured)."""
    cfg, lat = state["config"], state.get("latency")
    if not lat or not state.get("seeds"):
        return []
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    points = [("Dense", "Dense", "k", "s")] + [
        (f"{m}{'+hinge' if h else ''}-{a:g}", f"{m}{' +hinge' if h else ''}", f"C{i}", "o" if not h else "^")
        for a in cfg["amounts"] for h in ((False, True) if cfg["hinge"] else (False,))
        for i, m in enumerate(cfg["methods"])]
    labelled = set()
    for name, label, color, marker in points:
        rows = [r[name] for r in state["seeds"].values() if name in r]
        key = "Dense" if name == "Dense" else f"{100 * float(name.rsplit('-', 1)[1]):g}%"
        robust = [100 * (r["suite"]["robust"][0]["accuracy"] if "suite" in r
                         else r["pgd"]["robust"][-1]["accuracy"]) for r in rows]
        if robust and key in lat["ms"]:
            ax.scatter(lat["ms"][key], np.mean(robust), color=color, marker=marker,
                       label=None if label in labelled else label)
            labelled.add(label)
    ax.set_xlabel(f"latency, ms per batch of {lat['batch']} ({lat['device']}, {lat['threads']} thread(s))")
    ax.set_ylabel(f"robust accuracy (%), {cfg['suite']} (PGD until attacked)")
    ax.set_title(f"{cfg['arch']}: robust accuracy against measured latency (mean over seeds)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "figure-latency.png")
    return ["figure-latency.png"]
