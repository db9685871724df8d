"""What the study reports share: the paper's Table 1, the arms, the rule's text, formatting of means and per-seed
values, per-image bits, the machine and invocation lines, Table 1 and the bounds table, figure links."""

from __future__ import annotations

import math

import numpy as np

from ..evaluation.significance import ALPHA, spearman_models_needed


PAPER_TABLE1 = {"Baseline": (-1.337, -0.029, -0.004, 0.021, 1.811, 28082.62),
                "CP": (-1.176, -0.023, 0, 0, 1.613, 20576.11), "RP": (-0.278, -0.039, 0, 0.030, 0.322, 38442.54),
                "Ours": (-0.223, -0.022, 0, 0, 0.223, 22022.85)}


ARMS = ("Baseline", "CP", "RP", "Ours")


REGIME = "Ours-regime"  # the scratch study's optional fifth arm (Ours in the paper's weight regime)


READING_TEXT = {"pixel": "PGD-4 in pixel units (eps/255 on [0, 1] images, 4 steps of 2.5*eps/4, no random start)",
                "pixel-fgsm": "FGSM in pixel units (one step of eps; the reading that best matched the paper's "
                              "Baseline row in the fine-tuning reproduction)"}


RULE_TEXT = (f"Verdicts follow the one rule of docs/evaluation.md (src/robprune/evaluation/significance.py): an "
             f"accuracy comparison HOLDS when the exact McNemar test pooled over seeds (stratified by seed, on the "
             f"same test images) is significant at {ALPHA:g} in its favour and no seed is significant against it, "
             "FAILS symmetrically, and is UNDECIDED otherwise; weight statistics use a one-sided paired t-test over "
             "seeds; the parts of one claim are Holm-adjusted; fewer than 2 seeds, or a model within 10 points of "
             "chance or predicting one class for most images, decide nothing.")


def mean_sd(values) -> str:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.2f}"
    return f"{np.mean(v):.2f} ± {np.std(v, ddof=1):.2f}"


def per_seed(values) -> str:
    return " / ".join("-" if v is None else f"{v:.2f}" for v in values)


def acc(ev: dict, i: int | None) -> float:
    return 100 * (ev["clean"]["accuracy"] if i is None else ev["robust"][i]["accuracy"])


def fmt_decision(d: dict) -> str:
    e = d["effect"]
    lo, hi = e["ci95"]
    per = ", ".join(f"{100 * t['diff']:+.2f} (p={t['p']:.2g})" for t in d.get("tests", [])) or \
        ", ".join(f"{v:+.4g}" for v in e["values"])
    scale = 100 if "tests" in d else 1
    ci = "" if math.isnan(lo) else f", 95% CI [{scale * lo:+.2f}, {scale * hi:+.2f}]"
    return f"mean {scale * e['mean']:+.2f}{ci}; per seed {per}"


def arms_of(state: dict, seeds: list[str]) -> tuple[str, ...]:
    """The four arms, plus the regime arm when some of ``seeds`` have it."""
    return ARMS + ((REGIME,) if any(REGIME in state["seeds"][s] for s in seeds) else ())


def done_seeds(state: dict, arms) -> list[str]:
    return [s for s, rows in sorted(state.get("seeds", {}).items(), key=lambda kv: int(kv[0]))
            if all(a in rows for a in arms)]


def machine_text(state: dict) -> str:
    """The machine as recorded at run time (results written before that was recorded name the device only)."""
    m = state.get("machine") or {}
    where = f"{m['line']}; " if m.get("line") else ""
    return f"{where}{m.get('threads') or '?'} torch thread(s), device {m.get('device') or '?'}"


def invocations(state: dict) -> list[str]:
    log = state.get("runs_log", "").strip()
    if state.get("merged_from"):
        return [f"Merged from {len(state['merged_from'])} output folders by the last line below; each folder's "
                "invocations continue from that folder's cached units:", "", "```text", log, "```", ""]
    return ["Produced by these invocations (from the output folder's runs.log; each continues from the cached units "
            "of the ones before):", "", "```text", log or "(no runs.log)", "```", ""]


def unfinished(state: dict) -> str:
    """The status word of a study not done: a run still going, or a merge of folders that did not run every arm on
    every seed (nothing left running; the missing arms are run in a folder of their own and merged again)."""
    stamp = f"updated {state.get('updated', '?')}"
    if not state.get("merged_from"):
        return f"IN PROGRESS ({stamp})"
    why = ("a merged folder's run had not finished" if not all(m.get("done") for m in state["merged_from"])
           else "a seed lacks models another seed has")
    return f"INCOMPLETE (merged, {stamp}; {why})"


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def claim_lines(result: dict) -> list[str]:
    lines = ["| claim | verdict | evidence |", "|---|---|---|"]
    for key, c in result["claims"].items():
        ev = []
        for name, d in c.get("parts", {}).items():
            ev.append(f"{name}: **{d['verdict']}** ({d['why']}; {fmt_decision(d)})")
        if "spearman" in c:
            r = c["spearman"]
            ev.append("rho = -" if r["rho"] is None else f"rho = {r['rho']:.2f}, p = {r['p']:.2g}, n = {r['n']} models")
            need = spearman_models_needed(r["rho"]) if r["rho"] is not None and (r["p"] or 1) >= ALPHA else None
            if need:
                arms_per_seed = len(ARMS)
                ev.append(f"a correlation this size would be significant with about {need} models "
                          f"({math.ceil(need / arms_per_seed)} seeds of the {arms_per_seed} arms)")
        if c.get("note"):
            ev.append(c["note"])
        lines.append(f"| ({key}) {c['text']} | **{c['verdict']}** | {'<br>'.join(ev)} |")
    return lines


def table1(rows_by_seed: list[dict], arms, paper: dict | None = None) -> list[str]:
    keys = ("min", "q25", "q50", "q75", "max", "l1")
    head = "| arm | " + " | ".join(keys) + " | sparsity |" + (" paper (min q25 q50 q75 max L1) |" if paper else "")
    lines = [head, "|---|" + "---:|" * (len(keys) + 1) + ("---|" if paper else "")]
    for arm in arms:
        stats = [r[arm]["stats"] for r in rows_by_seed if arm in r]
        if not stats:
            continue
        cells = []
        for k in keys:
            v = [s[k] for s in stats]
            cells.append(f"{np.mean(v):.1f} ± {np.std(v, ddof=1):.1f}" if k == "l1" and len(v) > 1 else
                         f"{np.mean(v):.1f}" if k == "l1" else
                         f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else f"{np.mean(v):.3f}")
        cells.append(f"{100 * np.mean([s['sparsity'] for s in stats]):.1f}%")
        extra = (" " + " ".join(f"{v:g}" for v in paper[arm]) + " |") if paper and arm in paper else (" |" if paper else "")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |" + extra)
    return lines


def bounds_lines(state: dict, seeds: list[str], arms=ARMS) -> list[str]:
    lines = ["| arm | log10 bound, spectral | log10 bound, L1 | measured distortion at 8/255 (mean ratio) |",
             "|---|---:|---:|---:|"]
    for arm in arms:
        rows = [state["seeds"][s][arm]["bounds"] for s in seeds if arm in state["seeds"][s]]
        if not rows:
            continue
        lines.append(f"| {arm} | {mean_sd([r['spectral']['log10_bound'] for r in rows])} | "
                     f"{mean_sd([r['l1']['log10_bound'] for r in rows])} | {mean_sd([r['measured']['mean'] for r in rows])} |")
    return lines


def c_label(c: dict) -> str:
    return f"lam {c['lam']:g} tau {c['tau']} ({c['mode']})"


FIGURE_CAPTIONS = {
    "figure-table2.png": "Left: Table 2 as curves (PGD-4, pixel units, mean ± std over seeds). Middle: Ours and the regime "
                         "arm minus CP on the same test images, under PGD-4 (solid) and the strongest suite (dashed, "
                         "seeds where both arms were attacked): claims (c) and (e). Right: held-out accuracy by epoch, "
                         "first seed.",
    "figure-sweep.png": "Figure 2: CP and RP over pruning ratios, clean and PGD-4 per eps (mean ± std over seeds).",
    "figure-latency.png": "Robust accuracy against measured latency: one point per method at each amount (circles "
                          "plain, triangles with the hinge), the dense model as a square.",
    "figure-layers.png": "The fraction of each prunable layer kept at the highest sparsity, by method (log scale): "
                         "CP and LAMP rank globally, HYDRA keeps the same fraction of every layer, RATES learns it.",
    "figure-sparsity.png": "Accuracy against sparsity, one line per method (mean ± std over seeds; methods side by "
                           "side at each sparsity); the dashed line is the dense model.",
}


def figure_lines(state: dict) -> list[str]:
    lines = []
    where = state.get("figure_prefix", "")  # the figures' folder as seen from the report
    for fig in state.get("figures", []):
        lines += [f"![{fig}]({where}{fig})", ""] + ([f"*{FIGURE_CAPTIONS[fig]}*", ""] if fig in FIGURE_CAPTIONS else [])
    return lines


def rows_of(state: dict, name: str) -> list[dict]:
    """Model ``name``'s rows, in seed order."""
    return [r[name] for _, r in sorted(state.get("seeds", {}).items(), key=lambda kv: int(kv[0])) if name in r]


def suite_acc(row: dict) -> float | None:
    """A row's worst-case accuracy under the suite at its first eps (percent), None before it is attacked."""
    su = row.get("suite")
    return None if su is None else 100 * su["robust"][0]["accuracy"]


def suite_cell(rows: list[dict]) -> str:
    """The suite column of a results table: mean ± std over the seeds attacked, or why it is empty."""
    su = [v for r in rows if (v := suite_acc(r)) is not None]
    if su:
        return mean_sd(su) + (f" ({len(su)} of {len(rows)} seeds)" if len(su) < len(rows) else "")
    return "skipped (broken model)" if rows and all("suite_skipped" in r for r in rows) else "pending"


def suite_check_lines(state: dict) -> list[str]:
    """One line per model and seed: its suite's sanity checks, or why it was not attacked."""
    lines = []
    for k, rows in sorted(state.get("seeds", {}).items(), key=lambda kv: int(kv[0])):
        for name, r in rows.items():
            if "suite" in r:
                failed = [c["name"] for c in r["suite"].get("sanity_checks", []) if not c["passed"]]
                lines.append(f"seed {k} {name}: {'all passed' if not failed else 'FAILED ' + ', '.join(failed)}")
            elif "suite_skipped" in r:
                lines.append(f"seed {k} {name}: not attacked, the model is broken ({r['suite_skipped']})")
    return lines


def images_used(state: dict, measure: str, configured) -> int:
    """How many test images ``measure`` evaluated (the first row that has it), else the configured number (a
    configured 1000 on a 359-image test split evaluates 359)."""
    for rows in state.get("seeds", {}).values():
        for row in rows.values():
            if isinstance(row.get(measure), dict) and "n" in row[measure]:
                return row[measure]["n"]
    return configured


def left_out(cfg: dict, default_grid: dict | None) -> str:
    """What the study's default grid (``default_grid``: its ``methods``, ``sparsities`` or ``amounts``, ``seeds`` and
    ``hinge``, from the experiments layer) has and this run left out, in words; empty when nothing or no grid."""
    if default_grid is None:
        return ""
    grid = "sparsities" if "sparsities" in default_grid else "amounts"
    parts = [", ".join(m for m in default_grid["methods"] if m not in cfg["methods"]),
             ", ".join(f"{100 * s:g}%" for s in default_grid[grid] if s not in cfg[grid]),
             ", ".join(f"seed {s}" for s in default_grid["seeds"] if s not in cfg["seeds"]),
             "the +hinge arms" if default_grid["hinge"] and not cfg["hinge"] else ""]
    return "; ".join(p for p in parts if p)
