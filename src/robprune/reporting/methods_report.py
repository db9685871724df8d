"""The report of ``study methods`` (templates/methods.md.j2): the learned masks (HYDRA, RATES) against magnitude (CP,
LAMP) at each sparsity, the hinge on top of each, the two questions answered in words from the rule's verdicts.
Works on a partial results file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .claims import Metric, decide_all
from .markdown import eps_label
from .templating import render_template
from .study_common import (unfinished, images_used, RULE_TEXT, acc, fmt_decision, hours, invocations, machine_text, mean_sd, rows_of,
                           suite_acc, suite_cell, suite_check_lines)

# The Adversarial Pruning Benchmark's published ResNet-18 rows (unstructured; CIFAR-10, AutoAttack 8/255, 10,000
# images; clean / robust), as quoted in issue 23.
APB_ROWS = {"HARP (published, ResNet-18)": {0.9: (83.38, 45.40), 0.95: (83.38, 45.69), 0.99: (83.11, 45.50)},
            "FlyingBird (published, ResNet-18)": {0.9: (80.69, 46.49), 0.95: (77.42, 46.10), 0.99: (75.40, 42.02)},
            "HYDRA (published, ResNet-18)": {0.99: (72.2, 38.8)}}
HINGE = "+hinge"
LEARNED = ("HYDRA", "RATES")  # methods that learn their mask from data
MAGNITUDE = ("CP", "LAMP")



def _name(method: str, s: float, hinge: bool = False) -> str:
    return f"{method}{HINGE if hinge else ''}-{s:g}"


def _metrics(cfg: dict) -> list[Metric]:
    last = len(cfg["pgd_eps"]) - 1
    return [Metric("clean", "clean"), Metric(f"PGD-{cfg['pgd_steps']} {eps_label(cfg['pgd_eps'][last])}", "pgd", last),
            Metric(f"{cfg['suite']} {eps_label(cfg['suite_eps'])}", "suite", optional=True)]


def _robust(state: dict, name: str) -> tuple[float | None, str]:
    """Mean robust accuracy of a model under the suite (PGD until the suite is done), and which it is."""
    rows = rows_of(state, name)
    su = [v for r in rows if (v := suite_acc(r)) is not None]
    if su:
        return float(np.mean(su)), state["config"]["suite"]
    return (float(np.mean([acc(r["pgd"], -1) for r in rows])), "PGD") if rows else (None, "")


def methods_claims(state: dict) -> dict:
    cfg = state["config"]
    pairs = []
    ours = cfg["methods"]
    for s in cfg["sparsities"]:
        pairs += [(_name(a, s), _name(b, s), f"{a} vs {b} at {100 * s:g}%")
                  for a in LEARNED if a in ours for b in MAGNITUDE if b in ours]
        if "RATES" in ours and "HYDRA" in ours:
            pairs.append((_name("RATES", s), _name("HYDRA", s), f"RATES vs HYDRA at {100 * s:g}%"))
        if "LAMP" in ours and "CP" in ours:
            pairs.append((_name("LAMP", s), _name("CP", s), f"LAMP vs CP at {100 * s:g}%"))
        if cfg["hinge"]:
            pairs += [(_name(m, s, True), _name(m, s), f"{m}+hinge vs {m} at {100 * s:g}%") for m in cfg["methods"]]
    return decide_all(state, pairs, _metrics(cfg))


def _last_part(claim: dict) -> tuple[str, dict]:
    """The strongest metric decided on every seed of the claim (the suite once all are attacked, else PGD)."""
    parts = list(claim["parts"].items())
    whole = [(label, d) for label, d in parts if len(d["tests"]) == len(claim["seeds"])]
    return (whole or parts)[-1]


def _sentence(question: str, claim: dict) -> str:
    label, d = _last_part(claim)
    return (f"{question}, under {label}: **{d['verdict']}** ({100 * d['effect']['mean']:+.1f} points over "
            f"{len(d['tests'])} seed(s); {d['why']})")


def _answers(state: dict, claims: dict) -> dict:
    cfg = state["config"]
    learned, hinge = [], []
    for s in cfg["sparsities"]:
        learned += [_sentence(q, c) for q, c in claims.items()
                    if q.split(" ")[0] in LEARNED and "hinge" not in q and q.endswith(f" {100 * s:g}%")]
        scored = [(v, m) for m in cfg["methods"] if (v := _robust(state, _name(m, s))[0]) is not None]
        if not scored or not cfg["hinge"]:
            continue
        best = max(scored)[1]
        q = f"{best}+hinge vs {best} at {100 * s:g}%"
        if q in claims:
            hinge.append(f"the best method at {100 * s:g}% so far is {best} (highest mean robust accuracy without the "
                         f"hinge); " + _sentence(q, claims[q]))
    return {"learned": learned, "hinge": hinge}


def _result_rows(state: dict) -> list[list[str]]:
    cfg = state["config"]
    names = ["Dense"] + [_name(m, s, h) for s in cfg["sparsities"] for h in ((False, True) if cfg["hinge"] else (False,))
                         for m in cfg["methods"]]
    out = []
    for name in names:
        rows = rows_of(state, name)
        if not rows:
            out.append([name, "pending"] + [""] * (len(cfg["pgd_eps"]) + 5))
            continue
        who = ", ".join(k for k, r in sorted(state["seeds"].items(), key=lambda kv: int(kv[0])) if name in r)
        su_cell = suite_cell(rows)
        out.append([name, who, f"{100 * rows[0]['stats']['sparsity']:.1f}%", mean_sd([acc(r["clean"], None) for r in rows])]
                   + [mean_sd([acc(r["pgd"], i) for r in rows]) for i in range(len(cfg["pgd_eps"]))]
                   + [su_cell, mean_sd([r["stats"]["max_abs"] for r in rows]), mean_sd([r["stats"]["l1"] for r in rows])])
    return out


def _apb(state: dict, sparsities: list[float]) -> list[tuple[str, list[str]]]:
    cfg = state["config"]
    out = []
    for m in cfg["methods"]:
        for h in (False, True) if cfg["hinge"] else (False,):
            cells = []
            for s in sparsities:
                rows = rows_of(state, _name(m, s, h))
                su = [v for r in rows if (v := suite_acc(r)) is not None]
                cells.append("-" if not rows else f"{np.mean([acc(r['clean'], None) for r in rows]):.1f} / "
                             + (f"{np.mean(su):.1f}" if su else "pending") + f" ({len(rows)} seed(s))")
            out.append((f"{m}{HINGE if h else ''} ({cfg['arch']}, this study)", cells))
    for label, vals in APB_ROWS.items():
        out.append((label, [f"{vals[s][0]} / {vals[s][1]}" if s in vals else "-" for s in sparsities]))
    return out


def _method_clauses(cfg: dict) -> str:
    """The protocol's sentence on how each method that ran makes its mask."""
    stage = (f"for {cfg['score_epochs']} epoch(s) (lr {cfg['score_lr']}, weights frozen, the same adversarial "
             "objective) before its fine-tuning")
    text = {"CP": "CP prunes the smallest |w| over all layers",
            "LAMP": "LAMP prunes the smallest LAMP score over all layers (Lee et al. 2021)",
            "HYDRA": f"HYDRA learns {cfg['hydra_scope']}-wise scores (Sehwag et al. 2020) {stage}",
            "RATES": "RATES learns HYDRA's scores (Sehwag et al. 2020) and one keep fraction per layer together under "
                     f"the global target {stage} (the size term and its step-wise weight in docs/guide.md; in the "
                     "spirit of HARP, Zhao & Wressnegger 2023)"}
    learned = [m for m in cfg["methods"] if m in LEARNED]
    extra = ", a stage the other arms do not have" if learned and len(learned) < len(cfg["methods"]) else ""
    return "; ".join(text[m] for m in cfg["methods"]) + extra + "."


def render_methods(state: dict, default_grid: dict | None = None) -> str:
    """``default_grid``: the study's default grid (``experiments.methods.default_grid``), to name what a run cut."""
    from .study_common import figure_lines, left_out

    cfg = state["config"]
    seeds = state.get("seeds", {})
    per_seed = 1 + len(cfg["methods"]) * len(cfg["sparsities"]) * (2 if cfg["hinge"] else 1)
    total = per_seed * len(cfg["seeds"])
    have = sum(len(r) for r in seeds.values())
    suites = sum(1 for r in seeds.values() for row in r.values() if "suite" in row or "suite_skipped" in row)
    done = state.get("done", False)
    claims = methods_claims(state)
    verdicts = [{"question": q, "seeds": ", ".join(c["seeds"]), "metric": metric, "verdict": d["verdict"],
                 "evidence": f"{d['why']}; {fmt_decision(d)}"} for q, c in claims.items() for metric, d in c["parts"].items()]
    apb_sparsities = sorted(set(cfg["sparsities"]) | {0.9, 0.95, 0.99})
    return render_template("methods.md.j2",
        pgd_n=images_used(state, "pgd", cfg["pgd_images"]), suite_n=images_used(state, "suite", cfg["suite_images"]),
        cfg=cfg, methods=cfg["methods"], data_name=Path(state["data"].split(":", 1)[-1]).name,
        status="complete" if done else f"{unfinished(state)}: {have} of {total} models "
                                       f"trained and evaluated, {suites} of {total} with `{cfg['suite']}` (or skipped as broken)",
        compute=("" if done else "recorded so far ") + hours(state.get("elapsed_s", 0)), machine=machine_text(state),
        invocations="\n".join(invocations(state)).rstrip(), rule=RULE_TEXT, answers=_answers(state, claims),
        verdicts=verdicts, adv_eps=eps_label(cfg["dense"]["adv_eps"]),
        sparsities=", ".join(f"{100 * s:g}%" for s in cfg["sparsities"]),
        pgd_eps=", ".join(eps_label(e) for e in cfg["pgd_eps"]), pgd_labels=[eps_label(e) for e in cfg["pgd_eps"]],
        suite_eps=eps_label(cfg["suite_eps"]), results=_result_rows(state),
        apb_sparsities=[f"{100 * s:g}%" for s in apb_sparsities], apb=_apb(state, apb_sparsities),
        checks=suite_check_lines(state), figures="\n".join(figure_lines(state)).rstrip(),
        method_clauses=_method_clauses(cfg), cut=left_out(cfg, default_grid))
