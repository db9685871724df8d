"""The report of ``study adversarial``: adversarially trained sparse networks, each method against CP at each
sparsity under the suite, beside the Adversarial Pruning Benchmark's published rows. Works on a partial file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .claims import Metric, decide_all
from .markdown import eps_label
from .templating import render_template
from .study_common import (unfinished, images_used, RULE_TEXT, acc, bounds_lines, figure_lines, fmt_decision, hours, invocations,
                           machine_text, mean_sd, table1)


# The Adversarial Pruning Benchmark's published ResNet-18 rows (CIFAR-10, AutoAttack at 8/255, 10,000 images),
# as quoted in issue 15. Another architecture and another data encoding than this study.
APB_ROWS = {"HARP (published, ResNet-18)": {0.99: (83.1, 45.5)},
            "HYDRA (published, ResNet-18)": {0.99: (72.2, 38.8)}}


def _adv_names(state: dict) -> list[str]:
    cfg = state["config"]
    names = ["Dense"]
    for s in list(cfg["sparsities"]) + list(cfg["extra_sparsities"]):
        names += [f"{m}-{s:g}" for m in cfg["methods"]]
    if cfg.get("rp_paper"):
        names.append(f"RP-{cfg['rp_paper']:g}")
    return names


def _not_attacked(rows: list[dict]) -> str:
    """Why a model's suite cell is empty: every seed skipped as broken, or not attacked yet."""
    return "skipped (broken model)" if all("suite_skipped" in r for r in rows) else "pending"


def _suite_acc(row: dict) -> float | None:
    su = row.get("suite")
    return None if su is None else 100 * su["robust"][0]["accuracy"]


def adversarial_claims(state: dict) -> dict:
    """RP vs CP and Ours vs CP at every sparsity, and RP at the paper's 10% vs Dense: clean, PGD-10 8/255 and
    (when done) AutoAttack."""
    cfg = state["config"]
    pairs = [(f"{other}-{s:g}", f"CP-{s:g}", f"{other} vs CP at {100 * s:g}%")
             for s in list(cfg["sparsities"]) + list(cfg["extra_sparsities"]) for other in ("RP", "Ours")]
    if cfg.get("rp_paper"):  # the paper's RP (10%) against the dense model it was pruned from
        pairs.append((f"RP-{cfg['rp_paper']:g}", "Dense", f"RP at {100 * cfg['rp_paper']:g}% vs Dense"))
    last = len(cfg["pgd_eps"]) - 1
    return decide_all(state, pairs, [
        Metric("clean", "clean"), Metric(f"PGD-{cfg['pgd_steps']} {eps_label(cfg['pgd_eps'][last])}", "pgd", last),
        Metric(f"{cfg['suite']} {eps_label(cfg['suite_eps'])}", "suite", optional=True)])


def _cut_sentence(cfg: dict, default_grid: dict | None) -> str:
    """Which of the default grid's extra sparsities (``default_grid``: the study's default ``sparsities``,
    ``extra_sparsities`` and ``seeds``) a full-size run left out (``--extra-sparsities``)."""
    if default_grid is None:
        return ""
    cut = [s for s in default_grid["extra_sparsities"] if s not in cfg["extra_sparsities"]]
    if (not cut or tuple(cfg["sparsities"]) != tuple(default_grid["sparsities"])
            or tuple(cfg["seeds"]) != tuple(default_grid["seeds"])):
        return ""
    return (f" Cut from the default grid: {', '.join(f'{100 * s:g}%' for s in cut)} (`--extra-sparsities`; extra "
            "sparsities are cut first when the grid does not fit its compute budget).")


def _result_lines(state: dict, names: list[str], seeds: list[str]) -> list[str]:
    cfg = state["config"]
    lines = []
    for name in names:
        rows = [state["seeds"][k][name] for k in seeds if name in state["seeds"][k]]
        if not rows:
            lines.append(f"| {name} | pending |" + " |" * (len(cfg["pgd_eps"]) + 6))
            continue
        who = ", ".join(k for k in seeds if name in state["seeds"][k])
        su = [v for r in rows if (v := _suite_acc(r)) is not None]
        if not su:
            su_cell = _not_attacked(rows)
        else:
            su_cell = mean_sd(su) + (f" ({len(su)} of {len(rows)} seeds)" if len(su) < len(rows) else "")
        lines.append(f"| {name} | {who} | {100 * rows[0]['stats']['sparsity']:.1f}% | "
                     f"{mean_sd([acc(r['clean'], None) for r in rows])} | "
                     + " | ".join(mean_sd([acc(r["pgd"], i) for r in rows]) for i in range(len(cfg["pgd_eps"])))
                     + f" | {su_cell} | {mean_sd([r['stats']['max_abs'] for r in rows])} | "
                     f"{mean_sd([r['stats']['l1'] for r in rows])} | "
                     f"{mean_sd([r['bounds']['spectral']['log10_bound'] for r in rows])} |")
    return lines


def _apb_lines(state: dict, seeds: list[str]) -> list[str]:
    cfg = state["config"]
    lines = []
    for m in cfg["methods"]:
        cells = []
        for s in (0.9, 0.95, 0.99):
            rows = [state["seeds"][k][f"{m}-{s:g}"] for k in seeds if f"{m}-{s:g}" in state["seeds"][k]]
            su = [_suite_acc(r) for r in rows if _suite_acc(r) is not None]
            if not rows:
                cells.append("-")
                continue
            aa = f"{np.mean(su):.1f}" if su else _not_attacked(rows)
            cells.append(f"{np.mean([acc(r['clean'], None) for r in rows]):.1f} / {aa} (seeds: {len(rows)} clean"
                         + (f", {len(su)} AutoAttack)" if su else ")"))
        lines.append(f"| {m} ({cfg['arch']}, this study) | " + " | ".join(cells) + " |")
    for label, vals in APB_ROWS.items():
        lines.append(f"| {label} | " + " | ".join(f"{vals[s][0]} / {vals[s][1]}" if s in vals else "-"
                                                  for s in (0.9, 0.95, 0.99)) + " |")
    return lines


def _check_lines(state: dict, seeds: list[str]) -> list[str]:
    lines = []
    for k in seeds:
        for name, r in state["seeds"][k].items():
            if "suite" in r:
                failed = [c["name"] for c in r["suite"].get("sanity_checks", []) if not c["passed"]]
                lines.append(f"- seed {k} {name}: {'all passed' if not failed else 'FAILED ' + ', '.join(failed)}")
            elif "suite_skipped" in r:
                lines.append(f"- seed {k} {name}: not attacked, the model is broken ({r['suite_skipped']}); it takes "
                             "part in no verdict")
    return lines


def _export_lines(state: dict, seeds: list[str]) -> list[str]:
    exports = [(k, name, r) for k in seeds for name, r in state["seeds"][k].items() if "export" in r]
    if not exports:
        return []
    lines = ["| seed | model | command |", "|---|---|---|"]
    for k, name, r in exports:
        source = f"OUT/{r['checkpoint']}" if "checkpoint" in r else f"OUT/units/s{k}-{name}-*/model.safetensors"
        lines.append(f"| {k} | {name} | `robprune export {source} --format {r['export']['format']} "
                     f"--out OUT/{r['export']['path']}` |")
    return lines + [""]


def render_adversarial(state: dict, default_grid: dict | None = None) -> str:
    """The report (templates/adversarial.md.j2): prose in the template, every number computed here."""
    cfg = state["config"]
    names = _adv_names(state)
    seeds = sorted(state.get("seeds", {}), key=int)
    done = state.get("done", False)
    total = len(cfg["seeds"]) * (1 + 3 * len(cfg["sparsities"]) + (1 if cfg.get("rp_paper") else 0)) + \
        3 * len(cfg["extra_sparsities"])
    have = sum(len(state["seeds"][k]) for k in seeds)
    suites = sum(1 for k in seeds for r in state["seeds"][k].values() if "suite" in r or "suite_skipped" in r)
    claims = adversarial_claims(state)
    verdicts = [{"question": q, "seeds": ", ".join(c["seeds"]), "metric": metric, "verdict": d["verdict"],
                 "evidence": f"{d['why']}; {fmt_decision(d)}"} for q, c in claims.items()
                for metric, d in c["parts"].items()]
    in_short = " ".join(f"{q}: " + ", ".join(
        f"{metric} {100 * d['effect']['mean']:+.1f} ({d['verdict']}" + ("; a model is broken" if "broken" in d["why"]
                                                                        else "") + ")"
        for metric, d in c["parts"].items()) + "." for q, c in claims.items())
    dense_rows = [state["seeds"][k]["Dense"] for k in seeds if "Dense" in state["seeds"][k]]
    dense = {"clean": f"{np.mean([acc(r['clean'], None) for r in dense_rows]):.1f}",
             "pgd": f"{np.mean([acc(r['pgd'], len(cfg['pgd_eps']) - 1) for r in dense_rows]):.1f}"} \
        if dense_rows else None
    have_names = [n for n in names if any(n in state["seeds"][k] for k in seeds)]
    percent = ", ".join
    return render_template(
        "adversarial.md.j2", cfg=cfg,
        pgd_n=images_used(state, "pgd", cfg["pgd_images"]), suite_n=images_used(state, "suite", cfg["suite_images"]), data_name=Path(state["data"].split(":", 1)[-1]).name,
        status="complete" if done else (f"{unfinished(state)}: {have} of {total} models "
                                        f"trained and evaluated (clean, PGD), {suites} of {total} with "
                                        f"`{cfg['suite']}` (or skipped as broken)"),
        compute=("" if done else "recorded so far ") + hours(state.get("elapsed_s", 0)), machine=machine_text(state),
        invocations="\n".join(invocations(state)).rstrip(), rule=RULE_TEXT, verdicts=verdicts, in_short=in_short,
        adv_eps=eps_label(cfg["dense"]["adv_eps"]), sparsities=percent(f"{100 * s:g}%" for s in cfg["sparsities"]),
        extra_sparsities=percent(f"{100 * s:g}%" for s in cfg["extra_sparsities"]),
        rp_paper=f"{100 * cfg['rp_paper']:g}%", cut=_cut_sentence(cfg, default_grid),
        pgd_eps=", ".join(eps_label(e) for e in cfg["pgd_eps"]), pgd_labels=[eps_label(e) for e in cfg["pgd_eps"]],
        pgd_last=eps_label(cfg["pgd_eps"][-1]), suite_eps=eps_label(cfg["suite_eps"]), dense=dense,
        results=_result_lines(state, names, seeds), table1="\n".join(table1([state["seeds"][k] for k in seeds],
                                                                             have_names)),
        bounds="\n".join(bounds_lines(state, seeds, have_names)), apb=_apb_lines(state, seeds),
        checks=_check_lines(state, seeds),
        tail="\n".join([""] + _export_lines(state, seeds) + figure_lines(state)))
