"""Markdown report of ``robprune reproduce``: our numbers beside the paper's, claim by claim."""

from __future__ import annotations

from ..evaluation.significance import MIN_SEEDS, UNDECIDED, broken
from .templating import render_template
from .markdown import eps_label, pct, sweep_markdown, with_ci

PAPER_TABLE2 = {  # clean, PGD eps = 1, 2, 4, 8 (/255); ResNet-56 on the original CIFAR-10
    "Baseline": (94.21, 44.16, 36.08, 23.75, 15.73),
    "CP": (94.17, 44.33, 36.21, 24.00, 15.85),
    "RP": (84.44, 33.79, 31.50, 27.02, 23.29),
    "Ours": (93.84, 45.41, 36.93, 24.84, 17.83),
}
PAPER_TABLE1 = {  # min, q25, q50, q75, max, L1
    "Baseline": (-1.337, -0.029, -0.004, 0.021, 1.811, 28082.62),
    "CP": (-1.176, -0.023, 0.0, 0.0, 1.613, 20576.11),
    "RP": (-0.278, -0.039, 0.0, 0.030, 0.322, 38442.54),
    "Ours": (-0.223, -0.022, 0.0, 0.0, 0.223, 22022.85),
}
PENDING = "_not run yet: rerun the command above; finished units are cached and skipped._"


def _acc_row(ev: dict) -> list[float]:
    return [100 * ev["clean"]["accuracy"]] + [100 * r["accuracy"] for r in ev["robust"]]


def readings_markdown(readings: dict) -> str:
    lines = ["| reading | what it assumes | n | clean | eps 1 | eps 2 | eps 4 | eps 8 | mean abs diff to paper |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    paper = PAPER_TABLE2["Baseline"]
    lines.append("| paper | ResNet-56, original CIFAR-10 | 10000 | " + " | ".join(f"{v:.2f}" for v in paper) + " | |")
    for name, r in readings.items():
        row = _acc_row(r["eval"])
        diff = sum(abs(a - p) for a, p in zip(row[1:], paper[1:])) / 4
        lines.append(f"| {name} | {r['reading']['description']} | {r['eval']['n']} | "
                     + " | ".join(f"{v:.2f}" for v in row) + f" | {diff:.2f} |")
    return "\n".join(lines)


def table2_side_by_side(table: dict) -> str:
    first = next(iter(table.values()))["eval"]
    eps = [eps_label(r["eps"]) for r in first["robust"]]
    lines = ["| model | n | clean (ours / paper) | " + " | ".join(f"eps {e} (ours [95% CI] / paper)" for e in eps) + " |",
             "|---|---:|---:|" + "---:|" * len(eps)]
    for name, row in table.items():
        ev = row["eval"]
        paper = PAPER_TABLE2.get(name, (float("nan"),) * 5)
        cells = [f"{with_ci(s)} / {p:.2f}"
                 for s, p in zip([ev["clean"], *ev["robust"]], paper)]
        lines.append(f"| {name} | {ev['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table1_side_by_side(stats: dict) -> str:
    lines = ["| model | min | q25 | q50 | q75 | max | L1 | sparsity |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in stats.items():
        lines.append(f"| {name} (here) | {s['min']:.3f} | {s['q25']:.3f} | {s['q50']:.3f} | {s['q75']:.3f} | "
                     f"{s['max']:.3f} | {s['l1']:.2f} | {100 * s['sparsity']:.1f}% |")
        if name in PAPER_TABLE1:
            p = PAPER_TABLE1[name]
            lines.append(f"| {name} (paper) | {p[0]:.3f} | {p[1]:.3f} | {p[2]:.3f} | {p[3]:.3f} | {p[4]:.3f} | "
                         f"{p[5]:.2f} | |")
    return "\n".join(lines)


def bounds_markdown(bounds: dict, table: dict | None) -> str:
    lines = ["| model | log10 bound, entry-wise L1 (paper) | log10 bound, spectral | measured ratio mean | "
             "measured ratio max | PGD acc at eps 8 |", "|---|---:|---:|---:|---:|---:|"]
    for name, b in bounds.items():
        acc = f"{pct(table[name]['eval']['robust'][-1]['accuracy'])}" if table and name in table else "-"
        lines.append(f"| {name} | {b['l1']['log10_bound']:.2f} | {b['spectral']['log10_bound']:.2f} | "
                     f"{b['measured']['mean']:.3f} | {b['measured']['max']:.3f} | {acc} |")
    return "\n".join(lines)


def suite_markdown(suite: dict) -> str:
    """Per model and eps: the Table 2 attacks and the suite's attacks, one after the other, on the same images."""
    first = next(iter(suite.values()))
    attacks = [a["name"] for a in first["attacks"]]
    refs = list(first.get("reference", {}))
    names = ", ".join(f"{a['name']} ({a['steps']})" for a in first["attacks"])
    lines = [f"Attacks: {names}, each run only on "
             f"the points still robust, so each column is the accuracy after that attack and all before it; a "
             f"point counts as robust only if it survives all of them. Reference columns: the Table 2 attacks "
             f"({', '.join(refs) or 'none'}) on the same {first['n']} test images (a fixed random subset). "
             "Accuracy in % [95% Wilson interval].", "",
             "| model | eps | clean | " + " | ".join(f"{r} (reference)" for r in refs) + " | "
             + " | ".join(f"after {a}" for a in attacks) + " |",
             "|---|---|---:|" + "---:|" * (len(refs) + len(attacks))]
    for name, s in suite.items():
        for i, row in enumerate(s["robust"]):
            ref_cells = [with_ci(s["reference"][r]["robust"][i]) for r in refs]
            cells = [with_ci(row["attacks"][a]["robust_after"]) for a in attacks]
            lines.append(f"| {name} | {eps_label(row['eps'])} | {pct(s['clean']['accuracy'])} | "
                         + " | ".join(ref_cells + cells) + " |")
    lines += ["", "Sanity checks (the first 200 of these images at most; PGD-4 in pixel units, Square 300 "
              "queries):", ""]
    for name, s in suite.items():
        failed = [c for c in s["sanity_checks"] if not c["passed"]]
        lines.append(f"- {name}: " + ("all " + str(len(s["sanity_checks"])) + " passed" if not failed else
                                      "; ".join(f"**{c['name']} FAILED**: {c['detail']}" for c in failed)))
    return "\n".join(lines)


def masking_verdict(suite: dict) -> list[str]:
    """Do RP's and Ours' gains over CP under the Table 2 attacks survive the worst case of the suite?

    A gain survives at an eps when it is positive under the Table 2 attack and still positive in the
    worst case; it is called clear there only when the two models' 95% intervals do not overlap.
    """
    if not all(k in suite for k in ("CP", "RP", "Ours")):
        return ["the verdict needs CP, RP and Ours"]
    refs = list(suite["CP"].get("reference", {}))
    out = []
    for arm in ("RP", "Ours"):
        for r in refs:
            parts, clear, noise, lost = [], [], [], []
            for i, row in enumerate(suite[arm]["robust"]):
                weak = 100 * (suite[arm]["reference"][r]["robust"][i]["accuracy"]
                              - suite["CP"]["reference"][r]["robust"][i]["accuracy"])
                a, c = row, suite["CP"]["robust"][i]  # the worst case of the suite
                strong = 100 * (a["accuracy"] - c["accuracy"])
                label = eps_label(row["eps"])
                parts.append(f"eps {label}: {weak:+.2f} -> {strong:+.2f}")
                if weak > 0 and strong <= 0:
                    lost.append(label)
                elif weak > 0:
                    (clear if a["ci95"][0] > c["ci95"][1] else noise).append(label)
            found = [f"survives clearly at {', '.join(clear)}"] if clear else []
            found += [f"survives within noise (intervals overlap) at {', '.join(noise)}"] if noise else []
            found += [f"is gone at {', '.join(lost)}"] if lost else []
            gained = bool(found)
            summary = "; ".join(found)
            failed = [c["name"] for c in suite[arm].get("sanity_checks", []) if not c["passed"]]
            if failed and (clear or noise):
                summary += (f"; but {arm} failed the sanity check(s) {', '.join(failed)}, so a surviving gain may come "
                            "from a model that ignores its input rather than from robustness")
            outcome = f"the gain {summary}" if gained else f"{arm} has no gain over CP under this attack, so none to test"
            out.append(f"{arm} - CP in points, {r} -> worst case of the suite ({'; '.join(parts)}): {outcome}.")
    for r in refs:
        drops = {name: [100 * (s["reference"][r]["robust"][i]["accuracy"] - row["accuracy"])
                        for i, row in enumerate(s["robust"])] for name, s in suite.items()}
        out.append(f"How much {r} overstates each model (points above the worst case, eps "
                   f"{', '.join(eps_label(row['eps']) for row in suite['CP']['robust'])}): "
                   + "; ".join(f"{name} {', '.join(f'{d:.2f}' for d in v)}" for name, v in drops.items()) + ".")
    return out


def _claims(table: dict, stats: dict) -> list[str]:
    """The paper's claims (a)-(d) on the one seed of the fine-tuning protocol: observations under the one rule of
    ``evaluation.significance``, which decides nothing on fewer than ``MIN_SEEDS`` seeds."""
    rows = {n: _acc_row(r["eval"]) for n, r in table.items()}
    ci = {n: [r["eval"]["clean"]["ci95"]] + [x["ci95"] for x in r["eval"]["robust"]] for n, r in table.items()}
    if not all(k in rows for k in ("CP", "RP", "Ours", "Baseline")):
        return ["claims need all four models"]

    def sig(a: str, b: str, i: int) -> str:
        lo_a, hi_a = ci[a][i]
        lo_b, hi_b = ci[b][i]
        return "intervals do not overlap" if lo_a > hi_b or lo_b > hi_a else "95% intervals overlap"

    out = [f"One seed: the decision rule (docs/evaluation.md) needs {MIN_SEEDS}, so every claim here is "
           "**UNDECIDED**; what follows is what was observed on this seed, not a verdict."]
    cp, rp, ours = rows["CP"], rows["RP"], rows["Ours"]

    bad = {n: why for n, r in table.items() if (why := broken(r["eval"]))}
    if bad:
        out.append("Broken: " + "; ".join(f"{n}: {why}" for n, why in bad.items()) + ": a broken model can "
                   "neither win nor lose a claim.")

    def verdict_of(holds: bool, models) -> str:
        if any(m in bad for m in models):
            return f"{UNDECIDED}: a model is broken"
        return f"{UNDECIDED}: observed {'in the claimed direction' if holds else 'against the claim'}"

    verdict = verdict_of(rp[0] < cp[0], ("RP", "CP"))
    out.append(f"(a) RP loses clean accuracy against CP: **{verdict}** (RP {rp[0]:.2f}% vs CP {cp[0]:.2f}%, "
               f"{rp[0] - cp[0]:+.2f} points; {sig('RP', 'CP', 0)}; paper: -9.73).")
    verdict = verdict_of(rp[-1] > cp[-1], ("RP", "CP"))
    out.append(f"(b) RP beats CP at large eps: **{verdict}** (eps 8: RP {rp[-1]:.2f}% vs CP {cp[-1]:.2f}%; "
               f"eps 4: RP {rp[-2]:.2f}% vs CP {cp[-2]:.2f}%; {sig('RP', 'CP', len(rp) - 1)} at eps 8; "
               f"paper: +7.44 at eps 8).")
    wins = [o > c for o, c in zip(ours[1:], cp[1:])]
    cost = cp[0] - ours[0]
    verdict = verdict_of(all(wins) and cost <= 1.0, ("Ours", "CP"))
    diffs = ", ".join(f"{o - c:+.2f}" for o, c in zip(ours[1:], cp[1:]))
    out.append(f"(c) Ours beats CP at every eps with a small clean cost: **{verdict}** (Ours - CP per eps: {diffs} "
               f"points; clean cost {cost:.2f} points; paper: +1.08, +0.72, +0.84, +1.98 and 0.33).")
    rng = {n: s["max"] - s["min"] for n, s in stats.items()}
    narrowest = min(rng, key=rng.get)
    verdict = verdict_of(narrowest == "Ours" and stats["Ours"]["l1"] < stats["Baseline"]["l1"], ("Ours",))
    out.append(f"(d) Ours has the narrowest weight range and an L1 norm below the baseline: **{verdict}** "
               f"(ranges: " + ", ".join(f"{n} {v:.3f}" for n, v in rng.items()) +
               f"; L1 Ours {stats['Ours']['l1']:.1f} vs Baseline {stats['Baseline']['l1']:.1f}).")
    return out


def render_report(state: dict, runs_log: str = "") -> str:
    """The report (templates/reproduce.md.j2): prose in the template, tables and numbers computed here."""
    st = state["stages"]
    cfg = state["config"]
    search = st.get("search")
    search_table = ""
    if search:
        lines = ["| candidate | lam | clean | " + " | ".join(f"eps {i}" for i in (1, 2, 4, 8)) + " |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for name, c in search["candidates"].items():
            lines.append(f"| {name} | {c['lam']:g} | " + " | ".join(f"{v:.2f}" for v in _acc_row(c["eval"])) + " |")
        search_table = "\n".join(lines)
    n_test = st["table2-pixel"][next(iter(st["table2-pixel"]))]["eval"]["n"] if "table2-pixel" in st else None
    best = (search or {}).get("reading")
    best_table = ""
    if best and best != "pixel":
        best_table = table2_side_by_side(st[f"table2-{best}"]) if f"table2-{best}" in st else PENDING
    suite = st.get("suite")
    verdict = masking_verdict(suite) if suite and all("reference" in v for v in suite.values()) else []
    figures = "\n\n".join(f"![{f}]({f})" for f in state.get("figures", []))
    claims = []
    for reading in dict.fromkeys(["pixel", best or "pixel"]):
        key = f"table2-{reading}"
        if key in st and "stats" in st:
            claims.append(f"Under reading '{reading}':\n\n" + "\n".join(f"- {c}" for c in _claims(st[key], st["stats"])))
        else:
            claims.append(f"Under reading '{reading}': {PENDING}")
    return render_template(
        "reproduce.md.j2", cfg=cfg, data=state["data"], runs_log=runs_log.strip() or "(no runs.log)",
        engine="elapsed_parts" in state, device=state["machine"]["device"],
        minutes=f"{state.get('elapsed_s', 0) / 60:.1f}", init=state["init"],
        readings=readings_markdown(st["readings"]) if "readings" in st else PENDING, search=search,
        max_drop=f"{100 * cfg['max_clean_drop']:.1f}", chosen_lam=f"{search['chosen_lam']:g}" if search else "",
        search_table=search_table,
        split="the full test split" if cfg.get("eval_images") is None else f"{n_test or cfg['eval_images']} test images",
        table2_pixel=table2_side_by_side(st["table2-pixel"]) if "table2-pixel" in st else PENDING,
        best=best, best_table=best_table,
        best_description=(st["readings"][best]["reading"]["description"] if "readings" in st else best) if best_table
        else "",
        table1=table1_side_by_side(st["stats"]) if "stats" in st else PENDING,
        bounds=bounds_markdown(st["bounds"], st.get("table2-pixel")) if "bounds" in st else "", pending=PENDING,
        suite=suite_markdown(suite) if suite else "", suite_name=next(iter(suite.values()))["suite"] if suite else "",
        masking="\n".join(f"- {v}" for v in verdict) or PENDING,
        sweep=(sweep_markdown(st["sweep"]) + ("\n\n" + figures if figures else "")) if "sweep" in st else PENDING,
        claims=claims)
