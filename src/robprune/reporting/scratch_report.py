"""The report of ``reproduce --protocol scratch``: Table 2 with the paper's numbers, the lambda search, the suite,
the CP-vs-RP sweep, the claims and their survival under the strongest attack. Works on a partial results file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..evaluation.accuracy import subset_indices
from ..evaluation.outcomes import correct
from .markdown import eps_label
from .templating import render_template
from .study_common import (unfinished, ARMS, PAPER_TABLE1, READING_TEXT, REGIME, RULE_TEXT, acc, arms_of, bounds_lines, c_label,
                           claim_lines, done_seeds, figure_lines, hours, invocations, machine_text, mean_sd, per_seed,
                           table1)
from .scratch_claims import gains_survive, plain_words, scratch_claims, survival_lines, verdict_text


PAPER_TABLE2 = {"Baseline": (94.21, 44.16, 36.08, 23.75, 15.73), "CP": (94.17, 44.33, 36.21, 24.00, 15.85),
                "RP": (84.44, 33.79, 31.50, 27.02, 23.29), "Ours": (93.84, 45.41, 36.93, 24.84, 17.83)}


def _table2(state: dict, reading: str, seeds: list[str]) -> list[str]:
    arms = arms_of(state, seeds)
    eps = [r["eps"] for r in state["seeds"][seeds[0]]["Baseline"][reading]["robust"]]
    n = state["seeds"][seeds[0]]["Baseline"][reading]["n"]
    head = ["arm", f"clean (n={n})"] + [f"eps {eps_label(e)}" for e in eps]
    lines = ["| " + " | ".join(head) + " | paper (clean / " + " / ".join(eps_label(e) for e in eps) + ") |",
             "|---|" + "---:|" * (len(head) - 1) + "---|"]
    for arm in arms:
        evs = [state["seeds"][s][arm][reading] for s in seeds if arm in state["seeds"][s]]
        cells = [mean_sd([acc(e, None) for e in evs])] + [mean_sd([acc(e, i) for e in evs]) for i in range(len(eps))]
        paper = PAPER_TABLE2.get(arm, PAPER_TABLE2["Ours"])  # the regime arm stands beside the paper's Ours
        lines.append(f"| {arm} | " + " | ".join(cells) + " | " + " / ".join(f"{v:.2f}" for v in paper) + " |")
    lines += ["", "Per seed (" + ", ".join(seeds) + "):", "", "| arm | clean | "
              + " | ".join(f"eps {eps_label(e)}" for e in eps) + " |", "|---|" + "---:|" * (len(eps) + 1)]
    for arm in arms:
        evs = [state["seeds"][s][arm][reading] if arm in state["seeds"][s] else None for s in seeds]
        cells = [per_seed([None if e is None else acc(e, None) for e in evs])] + \
            [per_seed([None if e is None else acc(e, i) for e in evs]) for i in range(len(eps))]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def _search_lines(state: dict) -> list[str]:
    search = state.get("search", {})
    if not search:
        return ["(the search has not finished yet)"]
    first = next(iter(search.values()))["eval"]
    eps = [r["eps"] for r in first["robust"]]
    lines = [f"| candidate | held-out clean (n={first['n']}) | " + " | ".join(f"eps {eps_label(e)}" for e in eps)
             + " | mean robust | min w | max w | L1 | max abs w by epoch |",
             "|---|---:|" + "---:|" * len(eps) + "---:|---:|---:|---:|---|"]
    for label, s in search.items():
        ev, st = s["eval"], s["stats"]
        curve = ", ".join(f"{h.get('max_abs_weight', float('nan')):.2f}" for h in s.get("history", []))
        mean_r = np.mean([acc(ev, i) for i in range(len(eps))])
        mark = " (chosen)" if state.get("chosen", {}).get("label") == label else ""
        lines.append(f"| {label}{mark} | {acc(ev, None):.2f} | " + " | ".join(f"{acc(ev, i):.2f}" for i in range(len(eps)))
                     + f" | {mean_r:.2f} | {st['min']:.3f} | {st['max']:.3f} | {st['l1']:.0f} | {curve} |")
    notes = [f"- {c_label(c)}: {c['note']}" for c in state["config"]["candidates"] if c.get("note")]
    return lines + ([""] + notes if notes else [])


def _suite_lines(state: dict, seeds: list[str]) -> list[str]:
    rows = {s: state["seeds"][s] for s in seeds}
    arms = arms_of(state, seeds)
    have = {arm: [s for s in seeds if "suite" in rows[s].get(arm, {})] for arm in arms}
    firsts = [rows[s][arm]["suite"] for arm in arms for s in have[arm]]
    if not firsts:
        return ["(pending: the suite runs after the sweep: CP, Ours and the regime arm seed by seed, then Baseline and RP)"]
    first = firsts[0]
    eps = [r["eps"] for r in first["robust"]]
    lines = [f"Worst case over `{first['suite']}` ({', '.join(a['name'] for a in first['attacks'])}) on {first['n']} "
             "test images; mean ± std over the seeds listed (%):", "",
             "| arm | seeds | " + " | ".join(f"eps {eps_label(e)}" for e in eps)
             + " | same images, PGD-4 pixel | failed sanity checks |",
             "|---|---|" + "---:|" * len(eps) + "---|---|"]
    for arm in arms:
        skipped = [f"seed {s}: {rows[s][arm]['suite_skipped']}" for s in seeds if "suite_skipped" in rows[s].get(arm, {})]
        if not have[arm]:
            lines.append(f"| {arm} | {'skipped (' + '; '.join(skipped) + ')' if skipped else 'pending'} |"
                         + " |" * (len(eps) + 2))
            continue
        suites = [rows[s][arm]["suite"] for s in have[arm]]
        cells = [mean_sd([100 * su["robust"][i]["accuracy"] for su in suites]) for i in range(len(eps))]
        ref = []
        for s in have[arm]:
            ev = rows[s][arm]["pixel"]
            same = subset_indices(ev["n"], first["n"])  # the suite attacked fixed_subset's images, not the first n
            ref.append([100 * correct(ev, i)[same].mean() for i in range(len(ev["robust"]))])
        ref_cells = " / ".join(f"{np.mean([r[i] for r in ref]):.2f}" for i in range(len(eps)))
        failed = sorted({c["name"] for su in suites for c in su.get("sanity_checks", []) if not c["passed"]})
        lines.append(f"| {arm} | {', '.join(have[arm])} | " + " | ".join(cells) + f" | {ref_cells} | "
                     f"{', '.join(failed) or 'none'} |")
    return lines


def _sweep_lines(state: dict) -> list[str]:
    sweep = state.get("sweep", [])
    if not sweep:
        return ["(pending: the sweep runs after every seed's core arms)"]
    ratios = sorted({s["ratio"] for s in sweep})
    eps = [r["eps"] for r in sweep[0]["eval"]["robust"]]
    lines = [f"PGD-4 pixel on {sweep[0]['eval']['n']} test images; mean over the seeds done (per-seed count in n):", "",
             "| method | ratio | seeds | clean | " + " | ".join(f"eps {eps_label(e)}" for e in eps) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(eps)]
    evals = {(m, r): [s["eval"] for s in sweep if s["method"] == m and s["ratio"] == r]
             for m in ("cp", "rp") for r in ratios}
    for (method, r), evs in evals.items():
        if evs:
            lines.append(f"| {method.upper()} | {r:g} | {len(evs)} | {mean_sd([acc(e, None) for e in evs])} | "
                         + " | ".join(mean_sd([acc(e, i) for e in evs]) for i in range(len(eps))) + " |")

    def gap(i):  # RP - CP at each ratio both have, mean over seeds (points)
        d = [np.mean([acc(e, i) for e in evals["rp", r]]) - np.mean([acc(e, i) for e in evals["cp", r]])
             for r in ratios if evals["cp", r] and evals["rp", r]]
        return f"{min(d):+.1f} to {max(d):+.1f}" if d else "-"
    epochs = state["config"].get("sweep_epochs")
    lines += ["", "RP minus CP over the ratios (points, mean over seeds): clean " + gap(None) + "; "
              + "; ".join(f"{eps_label(e)} {gap(i)}" for i, e in enumerate(eps)) + "."
              + (f" Each ratio is fine-tuned {epochs} epoch(s) from the Baseline (Table 2's arms: "
                 f"{state['config']['finetune']['epochs']}), so RP's clean accuracy here has had less time to recover "
                 "than the RP arm's." if epochs else "")]
    return lines


def _curve_lines(state: dict, seeds: list[str]) -> list[str]:
    lines = []
    for arm in arms_of(state, seeds[:1]):
        h = state["seeds"][seeds[0]][arm].get("history", [])
        lines.append(f"- {arm}: " + ", ".join(f"{100 * e['test_acc']:.1f}" for e in h)
                     + ("; max |w| " + ", ".join(f"{e['max_abs_weight']:.2f}" for e in h if "max_abs_weight" in e)
                        if any("max_abs_weight" in e for e in h) else ""))
    return lines


def render_scratch(state: dict) -> str:
    """The report (templates/scratch.md.j2): prose in the template, every number and table computed here."""
    cfg = state["config"]
    seeds_all = [str(s) for s in cfg["seeds"]]
    seeds = done_seeds(state, ARMS)
    done = state.get("done", False)
    # every claim set is computed once (each is a McNemar test per seed on 10,000 per-image outcomes)
    claims = {reading: scratch_claims(state, reading) for reading in READING_TEXT} if seeds else {}
    regime = scratch_claims(state, "pixel", ours=REGIME) if seeds and cfg.get("regime") else {"seeds": []}
    survival = gains_survive(state, claims["pixel"], regime) if seeds else {"gains": []}
    regime_claims = {"claims": {k: v for k, v in regime["claims"].items() if k in ("c", "d")}} if regime["seeds"] \
        else None
    context = dict(
        cfg=cfg, data_name=Path(state["data"].split(":", 1)[-1]).name, seeds=seeds,
        status="complete" if done else f"{unfinished(state)}: "
                                       f"{len(seeds)} of {len(seeds_all)} seeds have every arm evaluated",
        compute=("" if done else "recorded so far ") + hours(state.get("elapsed_s", 0)), machine=machine_text(state),
        invocations="\n".join(invocations(state)).rstrip(), rule=RULE_TEXT, survival=survival,
        regime_name=REGIME, regime_label=c_label(cfg["regime"]) if cfg.get("regime") else "",
        verdict_regime=verdict_text(regime_claims["claims"]) if regime_claims else "",
        regime_seeds=len(regime["seeds"]), regime_seed_list=", ".join(regime["seeds"]),
        cp=f"{100 * cfg['cp_amount']:g}%", rp=f"{100 * cfg['rp_amount']:g}%",
        candidates=", ".join(c_label(c) for c in cfg["candidates"]),
        one_tau=len({c["tau"] for c in cfg["candidates"]}) == 1, max_drop=f"{100 * cfg['max_clean_drop']:g}",
        ratios=", ".join(f"{r:g}" for r in cfg["sweep_ratios"]), chosen=state.get("chosen", {}).get("label"),
        search="\n".join(_search_lines(state)))
    if seeds:
        context |= dict(
            verdict_pixel=verdict_text(claims["pixel"]["claims"]),
            plain=plain_words(claims["pixel"], regime, survival, cfg["suite_images"]),
            base=f"{np.mean([acc(state['seeds'][k]['Baseline']['pixel'], None) for k in seeds]):.1f}",
            table2=[(r, READING_TEXT[r], "\n".join(_table2(state, r, seeds))) for r in ("pixel", "pixel-fgsm")],
            claims=[(READING_TEXT[r], "\n".join(claim_lines(claims[r]))) for r in ("pixel", "pixel-fgsm")],
            regime_claims="\n".join(claim_lines(regime_claims)) if regime_claims else "",
            survival_lines="\n".join(survival_lines(survival, cfg)) if survival["gains"] else "",
            suite="\n".join(_suite_lines(state, seeds)),
            table1="\n".join(table1([state["seeds"][s] for s in seeds], arms_of(state, seeds), PAPER_TABLE1)),
            bounds="\n".join(bounds_lines(state, seeds)), curves=_curve_lines(state, seeds),
            sweep="\n".join(_sweep_lines(state)), tail="\n".join([""] + figure_lines(state)))
    return render_template("scratch.md.j2", **context)
