"""The report of ``study channels`` (templates/channels.md.j2): each channel criterion against L1 at each amount,
the hinge on each, with parameters, MACs and measured latency beside the accuracies. Works on a partial file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .claims import Metric, decide_all
from .markdown import eps_label
from .templating import render_template
from .study_common import (unfinished, images_used, RULE_TEXT, acc, fmt_decision, hours, invocations, machine_text, mean_sd, rows_of,
                           suite_acc, suite_cell, suite_check_lines)

# The Adversarial Pruning Benchmark's published channel rows (ResNet-18, CIFAR-10, AutoAttack 8/255; clean /
# robust), as quoted in issue 24.
APB_CHANNEL_ROWS = {"TwinRep (published, ResNet-18)": {0.5: (79.90, 45.58), 0.75: (79.37, 45.21), 0.9: (78.41, 44.30)},
                    "HARP (published, ResNet-18)": {0.5: (77.38, 42.73), 0.75: (80.06, 42.09), 0.9: (77.88, 41.59)}}
HINGE = "+hinge"


def _name(method: str, amount: float, hinge: bool = False) -> str:
    return f"{method}{HINGE if hinge else ''}-{amount:g}"


def channels_claims(state: dict) -> dict:
    cfg = state["config"]
    pairs = []
    for a in cfg["amounts"]:
        if "l1" in cfg["methods"]:
            pairs += [(_name(m, a), _name("l1", a), f"{m} vs l1 at {100 * a:g}%") for m in cfg["methods"] if m != "l1"]
        if cfg["hinge"]:
            pairs += [(_name(m, a, True), _name(m, a), f"{m}+hinge vs {m} at {100 * a:g}%") for m in cfg["methods"]]
    last = len(cfg["pgd_eps"]) - 1
    return decide_all(state, pairs, [
        Metric("clean", "clean"), Metric(f"PGD-{cfg['pgd_steps']} {eps_label(cfg['pgd_eps'][last])}", "pgd", last),
        Metric(f"{cfg['suite']} {eps_label(cfg['suite_eps'])}", "suite", optional=True)])


def _latency_of(state: dict, name: str) -> tuple[str, str]:
    """(ms, speedup over dense) of the shape model ``name`` has ("-" until the latency is measured)."""
    lat = state.get("latency")
    if not lat:
        return "-", "-"
    key = "Dense" if name == "Dense" else f"{100 * float(name.rsplit('-', 1)[1]):g}%"
    ms = lat["ms"].get(key)
    return ("-", "-") if ms is None else (f"{ms:.2f}", f"{lat['ms']['Dense'] / ms:.2f}x")


def _result_rows(state: dict) -> list[list[str]]:
    cfg = state["config"]
    names = ["Dense"] + [_name(m, a, h) for a in cfg["amounts"] for h in ((False, True) if cfg["hinge"] else (False,))
                         for m in cfg["methods"]]
    out = []
    for name in names:
        rows = rows_of(state, name)
        if not rows:
            out.append([name, "pending"] + [""] * (len(cfg["pgd_eps"]) + 6))
            continue
        who = ", ".join(k for k, r in sorted(state["seeds"].items(), key=lambda kv: int(kv[0])) if name in r)
        out.append([name, who, mean_sd([acc(r["clean"], None) for r in rows])]
                   + [mean_sd([acc(r["pgd"], i) for r in rows]) for i in range(len(cfg["pgd_eps"]))]
                   + [suite_cell(rows), f"{rows[0]['params']:,}", f"{rows[0]['macs']:,}", *_latency_of(state, name)])
    return out


def _apb(state: dict) -> list[tuple[str, list[str]]]:
    cfg = state["config"]
    out = []
    for m in cfg["methods"]:
        for h in (False, True) if cfg["hinge"] else (False,):
            cells = []
            for a in (0.5, 0.75, 0.9):
                rows = rows_of(state, _name(m, a, h))
                su = [v for r in rows if (v := suite_acc(r)) is not None]
                cells.append("-" if not rows else f"{np.mean([acc(r['clean'], None) for r in rows]):.1f} / "
                             + (f"{np.mean(su):.1f}" if su else "pending") + f" ({len(rows)} seed(s))")
            out.append((f"{m}{HINGE if h else ''} ({cfg['arch']}, this study)", cells))
    for label, vals in APB_CHANNEL_ROWS.items():
        out.append((label, [f"{vals[a][0]} / {vals[a][1]}" for a in (0.5, 0.75, 0.9)]))
    return out


def _criteria(cfg: dict) -> str:
    """How each criterion that ran ranks channels (all four: the text the default grid has always had)."""
    text = {"l1": "`l1` the smallest filter L1 norms",
            "reverse": "`reverse` the largest" + ("" if "l1" in cfg["methods"] else " filter L1 norms"),
            "bn_scale": "`bn_scale` the smallest BatchNorm scales",
            "hydra": f"`hydra` the lowest channel scores learned for {cfg['score_epochs']} epoch(s) under the same "
                     "adversarial objective (weights frozen)"}
    return ", ".join(text[m] for m in cfg["methods"])


def render_channels(state: dict, default_grid: dict | None = None) -> str:
    """``default_grid``: the study's default grid (``experiments.channel_study.default_grid``), to name what a run
    cut."""
    from .study_common import figure_lines, left_out

    cfg = state["config"]
    seeds = state.get("seeds", {})
    total = len(cfg["seeds"]) * (1 + len(cfg["methods"]) * len(cfg["amounts"]) * (2 if cfg["hinge"] else 1))
    have = sum(len(r) for r in seeds.values())
    suites = sum(1 for r in seeds.values() for row in r.values() if "suite" in row or "suite_skipped" in row)
    done = state.get("done", False)
    claims = channels_claims(state)
    lat = state.get("latency")
    latency_text = ("Latency: not measured yet (the last step, on the first seed's models)." if not lat else
                    f"Latency: median of {lat['rounds']} interleaved rounds, one forward pass of {lat['batch']} test "
                    f"images, seed {lat['seed']}'s model of each shape (the criteria and the hinge leave the same "
                    f"shapes at one amount), {lat['threads']} torch thread(s), device {lat['device']}, on "
                    f"{lat['machine']}; measured while the machine did whatever else it was doing then.")
    return render_template("channels.md.j2", criteria=_criteria(cfg), cut=left_out(cfg, default_grid),
        pgd_n=images_used(state, "pgd", cfg["pgd_images"]), suite_n=images_used(state, "suite", cfg["suite_images"]),
        cfg=cfg, methods=cfg["methods"], data_name=Path(state["data"].split(":", 1)[-1]).name,
        status="complete" if done else f"{unfinished(state)}: {have} of {total} models "
                                       f"trained and evaluated, {suites} of {total} with `{cfg['suite']}` (or skipped as broken)",
        compute=("" if done else "recorded so far ") + hours(state.get("elapsed_s", 0)), machine=machine_text(state),
        invocations="\n".join(invocations(state)).rstrip(), rule=RULE_TEXT,
        verdicts=[{"question": q, "seeds": ", ".join(c["seeds"]), "metric": metric, "verdict": d["verdict"],
                   "evidence": f"{d['why']}; {fmt_decision(d)}"}
                  for q, c in claims.items() for metric, d in c["parts"].items()],
        adv_eps=eps_label(cfg["dense"]["adv_eps"]), amounts=" or ".join(f"{100 * a:g}%" for a in cfg["amounts"]),
        pgd_eps=", ".join(eps_label(e) for e in cfg["pgd_eps"]), pgd_labels=[eps_label(e) for e in cfg["pgd_eps"]],
        suite_eps=eps_label(cfg["suite_eps"]), results=_result_rows(state), latency_text=latency_text,
        apb=_apb(state), checks=suite_check_lines(state), figures="\n".join(figure_lines(state)).rstrip())
