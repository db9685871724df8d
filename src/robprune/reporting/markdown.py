"""Markdown tables and PNG figures for a grid's results (paper Tables 1-2, Figure 2)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io import write_bytes_atomic
from ..evaluation.stats import stats_markdown


def eps_label(eps: float) -> str:
    """Every eps in the same unit, whichever unit it was given in: 8/255, 0.5/255, 7.905/255 (for 0.031)."""
    levels = eps * 255
    return f"{round(levels):d}/255" if abs(levels - round(levels)) < 1e-6 else f"{levels:.4g}/255"


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def table2_markdown(rows: dict, attack: str = "PGD") -> str:
    """Clean and attacked accuracy (%) per model, with the image count and a 95% Wilson interval.

    ``attack`` heads the columns ("PGD", or "worst case" for a suite).
    """
    first = next(iter(rows.values()))["eval"]
    eps = [r["eps"] for r in first["robust"]]
    head = "| " + " | ".join(["model", "n", "clean"] + [f"{attack} eps={eps_label(e)}" for e in eps]) + " |"
    lines = [head, "|---|---:|---:|" + "---:|" * len(eps)]
    for name, row in rows.items():
        ev = row["eval"]
        cells = [with_ci(ev["clean"])] + [with_ci(r) for r in ev["robust"]]
        lines.append(f"| {name} | {ev['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def with_ci(s: dict) -> str:
    """Accuracy (%) with its 95% Wilson interval, e.g. 41.20 [36.97, 45.57]."""
    low, high = s["ci95"]
    return f"{pct(s['accuracy'])} [{pct(low)}, {pct(high)}]"


def table1_markdown(rows: dict) -> str:
    return stats_markdown({name: row["stats"] for name, row in rows.items()})


def sweep_markdown(sweep: list[dict]) -> str:
    """Figure 2 as a table: accuracy (%) per method and pruning ratio."""
    if not sweep:
        return "(no sweep)"
    eps = [r["eps"] for r in sweep[0]["eval"]["robust"]]
    readings = "reading" in sweep[0]  # reproduce evaluates each sweep model under several attack readings
    lines = ["| method | ratio | " + ("attack reading | " if readings else "") + "n | clean | "
             + " | ".join(f"eps={eps_label(e)}" for e in eps) + " |",
             "|---|---:|" + ("---|" if readings else "") + "---:|---:|" + "---:|" * len(eps)]
    for s in sorted(sweep, key=lambda s: (s.get("reading", ""), s["method"], s["ratio"])):
        ev = s["eval"]
        lines.append(f"| {s['method'].upper()} | {s['ratio']:.2f} | " + (f"{s['reading']} | " if readings else "")
                     + f"{ev['n']} | {pct(ev['clean']['accuracy'])} | "
                     + " | ".join(pct(r["accuracy"]) for r in ev["robust"]) + " |")
    return "\n".join(lines)


def plot_grid(result: dict, path: str | Path, title: str, attack: str = "PGD") -> Path:
    """Three panels: accuracy vs eps per model, weight quantiles per model, CP-vs-RP sweep (``attack`` names
    the attack in the labels)."""
    rows, sweep = result["rows"], result["sweep"]
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    ax_eps, ax_w, ax_sw = fig.subplots(1, 3)
    for name, row in rows.items():
        ev = row["eval"]
        xs = [0.0] + [r["eps"] * 255 for r in ev["robust"]]
        ys = [100 * ev["clean"]["accuracy"]] + [100 * r["accuracy"] for r in ev["robust"]]
        ax_eps.plot(xs, ys, marker="o", label=name)
    ax_eps.set(xlabel="L-inf eps (x/255; 0 = clean)", ylabel="accuracy (%)", title=f"Accuracy under {attack}")
    ax_eps.legend()
    ax_eps.grid(alpha=0.3)

    boxes = [{"label": name, "whislo": r["stats"]["min"], "q1": r["stats"]["q25"], "med": r["stats"]["q50"],
              "q3": r["stats"]["q75"], "whishi": r["stats"]["max"], "fliers": []} for name, r in rows.items()]
    ax_w.bxp(boxes, showfliers=False)
    for i, (name, r) in enumerate(rows.items(), start=1):
        ax_w.annotate(f"L1={r['stats']['l1']:.4g}", (i, r["stats"]["max"]), textcoords="offset points",
                      xytext=(0, 4), ha="center", fontsize=8)
    ax_w.set(ylabel="weight value", title="Weights: min / q25 / q50 / q75 / max")
    ax_w.grid(alpha=0.3, axis="y")

    if sweep:
        robust = sweep[0]["eval"]["robust"]
        shown = list(dict.fromkeys([0, len(robust) // 2]))  # smallest and middle eps: one is rarely all ~0
        for method, color in (("cp", "tab:blue"), ("rp", "tab:red")):
            pts = sorted(((s["ratio"], s["eval"]) for s in sweep if s["method"] == method), key=lambda p: p[0])
            if not pts:
                continue
            ratios = [100 * r for r, _ in pts]
            ax_sw.plot(ratios, [100 * e["clean"]["accuracy"] for _, e in pts], "-o", color=color,
                       label=f"{method.upper()} clean")
            for i, style in zip(shown, ("--s", ":^")):
                ax_sw.plot(ratios, [100 * e["robust"][i]["accuracy"] for _, e in pts], style, color=color,
                           label=f"{method.upper()} {attack} {eps_label(robust[i]['eps'])}")
        ax_sw.set(xlabel="pruning ratio (%)", ylabel="accuracy (%)", title="CP vs RP by pruning ratio")
        ax_sw.legend(fontsize=8)
        ax_sw.grid(alpha=0.3)
    else:
        ax_sw.set_axis_off()
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_accuracy_vs_eps(results: dict[str, dict], path: str | Path, attack: str) -> Path:
    """Accuracy (%) against eps (/255), one line per model, clean accuracy at eps 0, with the 95% intervals."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    for label, r in results.items():
        points = [(0.0, r["clean"])] + [(255 * row["eps"], row) for row in r["robust"]]
        xs = [e for e, _ in points]
        ax.plot(xs, [100 * p["accuracy"] for _, p in points], "o-", label=label)
        ax.fill_between(xs, [100 * p["ci95"][0] for _, p in points], [100 * p["ci95"][1] for _, p in points],
                        alpha=0.15)
    ax.set(xlabel="eps (/255)", ylabel="accuracy (%)", title=f"{attack}, {next(iter(results.values()))['n']} images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def save_figure(fig: Figure, path: str | Path) -> Path:
    import io

    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return write_bytes_atomic(path, buf.getvalue())


def grid_markdown(result: dict, title: str, preamble: str = "") -> str:
    parts = [f"# {title}", preamble,
             "## Table 2 analogue: accuracy (%) [95% Wilson interval]", table2_markdown(result["rows"]),
             "## Table 1 analogue: weight statistics over all prunable weights (zeros included)",
             table1_markdown(result["rows"])]
    if result["sweep"]:
        parts += ["## Figure 2 analogue: CP vs RP by pruning ratio (accuracy %)", sweep_markdown(result["sweep"])]
    return "\n\n".join(p for p in parts if p) + "\n"


def eval_report(results: dict, request, n: int) -> tuple[str, list[str]]:
    """What ``robprune eval`` writes to eval.md and prints: the attack's name and the lines (Table 2 of every
    checkpoint, the spread over seeds, the sanity checks)."""
    attack = f"worst case of {request.suite}" if request.suite else \
        ("PGD" if request.plain_pgd() else request.attacks()[0].name)
    lines = [table2_markdown({label: {"eval": r} for label, r in results.items()},
                             attack="worst case" if request.suite else attack)]
    for label, result in results.items():
        if request.seeds > 1:
            sd = result["seeds"]
            lines.append(f"{label}: over {request.seeds} seeds (random starts): mean "
                         + ", ".join(f"{100 * v:.2f}" for v in sd["mean"]) + "; std "
                         + ", ".join(f"{100 * v:.2f}" for v in sd["std"]) + " (clean, then each eps)")
        if result["sanity_checks"]:
            lines.append(f"sanity checks of {label} on {min(n, request.check_images)} images:")
            lines += [f"  [{'ok' if c['passed'] else 'FAILED'}] {c['name']}: {c['detail']}"
                      for c in result["sanity_checks"]]
    return attack, lines
