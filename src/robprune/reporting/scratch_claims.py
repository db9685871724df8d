"""The scratch protocol's claims (issue 14): (a)-(d) and (f) decided by the one rule, whether Ours' gains survive
the strongest attack, and the verdict in plain words."""

from __future__ import annotations

from ..evaluation.outcomes import correct
from ..evaluation.significance import (ALPHA, FAILS, HOLDS, UNDECIDED, broken, combine, decide_accuracy,
                                       decide_claim, decide_quantity, spearman)
from .markdown import eps_label
from .study_common import ARMS, REGIME, done_seeds, fmt_decision


def scratch_claims(state: dict, reading: str = "pixel", suite: bool = False, ours: str = "Ours") -> dict:
    """Claims (a)-(d) and (f) under ``reading`` (or the suite's worst case for the robust parts when ``suite``);
    ``ours`` names the arm that plays Ours in (c) and (d) ((f) is about the four arms and only given for "Ours")."""
    seeds = done_seeds(state, ARMS + ((ours,) if ours not in ARMS else ()))
    rows = {s: state["seeds"][s] for s in seeds}
    if suite:  # a comparison needs both of its arms attacked; the suite runs arm by arm (CP and Ours first)
        seeds = [s for s in seeds if any("suite" in rows[s][a] for a in ARMS + (ours,))]
    eps = state["config"].get("eps") or [1 / 255, 2 / 255, 4 / 255, 8 / 255]

    def both(a, b):
        return [s for s in seeds if not suite or ("suite" in rows[s][a] and "suite" in rows[s][b])]

    def reasons(arms):
        out = []
        for s in both(*arms):
            for a in arms:
                why = broken(rows[s][a][reading])
                if why:
                    out.append(f"{a} (seed {s}): {why}")
        return out

    def robust_bits(s, arm, i):
        if suite:
            return correct(rows[s][arm]["suite"], i)
        return correct(rows[s][arm][reading], i)

    def compare(a, b, i):
        seeds_ab = both(a, b)
        pairs = [(correct(rows[s][a][reading], None), correct(rows[s][b][reading], None)) if i is None else
                 (robust_bits(s, a, i), robust_bits(s, b, i)) for s in seeds_ab]
        return decide_accuracy(pairs, broken_reasons=reasons((a, b))) | {"seeds": seeds_ab}

    claims = {}
    a = compare("CP", "RP", None)
    claims["a"] = {"text": "RP loses clean accuracy against CP", "verdict": a["verdict"], "parts": {"clean": a}}
    verdict, parts = decide_claim({eps_label(eps[i]): compare("RP", "CP", i) for i in (2, 3)})
    claims["b"] = {"text": "RP beats CP at large eps (4/255 and 8/255)", "verdict": verdict, "parts": parts}
    parts = {eps_label(e): compare(ours, "CP", i) for i, e in enumerate(eps)}
    cost = compare("CP", ours, None) | {"evidence_only": True}  # shown beside the quantity part, not a part itself
    costs = [100 * t["diff"] for t in cost["tests"]]
    # "a small clean cost": the cost per seed (points) is below 1 point, by a one-sided paired t-test over seeds
    small = decide_quantity([1.0 - c for c in costs])
    if cost["verdict"] == UNDECIDED and "broken" in cost["why"]:
        small = small | {"verdict": UNDECIDED, "why": cost["why"], "decidable": False}
    verdict, parts = decide_claim(parts | {"clean cost (CP - Ours, McNemar)": cost,
                                           "clean cost below 1 point (1 - cost, t-test)": small})
    claims["c"] = {"text": "Ours beats CP at every eps, at a clean cost of at most 1 point",
                   "verdict": verdict, "parts": parts,
                   "note": "clean cost per seed " + ", ".join(f"{c:+.2f}" for c in costs) + " points"}
    if not suite:
        widths = {arm: [rows[s][arm]["stats"]["max"] - rows[s][arm]["stats"]["min"] for s in seeds]
                  for arm in ("Baseline", "CP", "RP", ours)}
        parts = {f"range narrower than {arm}": decide_quantity([w - o for w, o in zip(widths[arm], widths[ours])])
                 for arm in ("Baseline", "CP", "RP")}
        parts["L1 below Baseline"] = decide_quantity([rows[s]["Baseline"]["stats"]["l1"] - rows[s][ours]["stats"]["l1"]
                                                      for s in seeds])
        verdict, parts = decide_claim(parts)
        claims["d"] = {"text": "Ours has the narrowest weight range and an L1 norm below the Baseline",
                       "verdict": verdict, "parts": parts}
    if not suite and ours == "Ours":
        bound, measured = [], []
        for s in seeds:
            for arm in ARMS:
                bound.append(rows[s][arm]["bounds"]["spectral"]["log10_bound"])
                measured.append(rows[s][arm]["bounds"]["measured"]["mean"])
        rho = spearman(bound, measured)
        v = UNDECIDED
        if rho["rho"] is not None and rho["p"] is not None and len(seeds) >= 2:
            v = HOLDS if rho["rho"] > 0 and rho["p"] < ALPHA else FAILS if rho["rho"] < 0 and rho["p"] < ALPHA \
                else UNDECIDED
        claims["f"] = {"text": "the Eq. 3 bound's ordering predicts the measured distortion's ordering "
                               "(Spearman over every model and seed, spectral-norm bound)",
                       "verdict": v, "spearman": rho}
    return {"seeds": seeds, "claims": claims}


def gains_survive(state: dict, pgd: dict, regime: dict) -> dict:
    """Claim (e): every comparison at one eps that HOLDS under PGD-4 (RP over CP in (b), Ours and the regime arm over
    CP in (c)) is decided again on the suite's worst case, on the seeds where both arms were attacked; the claim
    HOLDS when every such gain still holds, FAILS when one is reversed, and is UNDECIDED while any is undecided or
    not attacked yet."""
    eps = {eps_label(e) for e in state["config"].get("eps") or [1 / 255, 2 / 255, 4 / 255, 8 / 255]}
    checks = [("Ours", pgd, ("b", "c"))] + ([(REGIME, regime, ("c",))] if regime.get("seeds") else [])
    gains = []
    for ours, claims, keys in checks:
        suite = scratch_claims(state, "pixel", suite=True, ours=ours)
        for k in keys:
            for part, d in claims["claims"][k]["parts"].items():
                if part in eps and d["verdict"] == HOLDS:
                    under = suite["claims"][k]["parts"][part] if suite["seeds"] else None
                    gains.append({"label": f"{'RP' if k == 'b' else ours} vs CP at {part}", "pgd": d,
                                  "suite": under if under and under["seeds"] else None})
    if not gains:
        return {"gains": [], "verdict": UNDECIDED, "why": "no robustness gain holds under PGD-4, so none can survive"}
    attacked = [g for g in gains if g["suite"]]
    _, adjusted = decide_claim({g["label"]: g["suite"] for g in gains if g["suite"]})  # Holm over the gains
    for g in gains:
        g["suite"] = adjusted.get(g["label"])
    verdict = combine([g["suite"]["verdict"] if g["suite"] else UNDECIDED for g in gains])  # pending: undecided
    count = {v: sum(g["suite"]["verdict"] == v for g in attacked) for v in (HOLDS, FAILS, UNDECIDED)}
    why = (f"of {len(gains)} gains under PGD-4, under the suite {count[HOLDS]} still hold, {count[FAILS]} reversed, "
           f"{count[UNDECIDED]} undecided"
           + (f", {len(gains) - len(attacked)} not attacked yet" if len(attacked) < len(gains) else "")
           if attacked else f"{len(gains)} gains hold under PGD-4; the suite has not attacked both arms of any yet")
    return {"gains": gains, "verdict": verdict, "why": why}


def survival_lines(survival: dict, cfg: dict) -> list[str]:
    lines = [f"(e): **{survival['verdict']}** ({survival['why']}). Each gain that holds under PGD-4 on every test "
             f"image, decided again on the worst case of `{cfg['suite']}` on {cfg['suite_images']} test images, on "
             "the seeds where both arms were attacked (fewer images give each McNemar test less power):", "",
             "| gain under PGD-4 | PGD-4 gain, points (all seeds) | suite seeds | under the suite | evidence under the suite |",
             "|---|---:|---|---|---|"]
    for g in survival["gains"]:
        pgd = f"{100 * g['pgd']['effect']['mean']:+.2f}"
        su = g["suite"]
        if su is None:
            lines.append(f"| {g['label']} | {pgd} | - | pending | |")
        else:
            lines.append(f"| {g['label']} | {pgd} | {', '.join(su['seeds'])} | **{su['verdict']}** | {su['why']}; "
                         f"{fmt_decision(su)} |")
    return lines


def verdict_text(claims: dict) -> str:
    parts = []
    for key, c in claims.items():
        parts.append(f"({key}) {c['text']}: **{c['verdict']}**")
    return "; ".join(parts) + "."


def plain_words(pgd: dict, regime: dict, survival: dict, suite_images: int) -> str:
    """The verdicts in a few plain sentences, every number taken from the decisions above it."""
    def pts(d: dict) -> float:
        return 100 * d["effect"]["mean"]

    def eps_where(parts: dict, verdict: str) -> list[str]:
        return [k for k, d in parts.items() if "/" in k and d["verdict"] == verdict]

    c = pgd["claims"]
    out = []
    a, b = c["a"]["parts"]["clean"], c["b"]["parts"]
    out.append(f"RP costs {pts(a):.1f} clean points against CP (claim a {c['a']['verdict']})"
               + (", and under PGD-4 it is " + ", ".join(f"{pts(d):+.2f} points at {k}" for k, d in b.items())
                  + f" against CP (claim b {c['b']['verdict']})" if b else "") + ".")
    for label, res in (("The hinge at the rule's setting", pgd), ("In the paper's weight range, the hinge",
                                                                  regime if regime.get("seeds") else None)):
        if not res:
            continue
        parts = res["claims"]["c"]["parts"]
        won, unsure = eps_where(parts, HOLDS), eps_where(parts, UNDECIDED)
        cost = next(d for k, d in parts.items() if k.startswith("clean cost (CP"))
        out.append(f"{label} significantly beats CP at {', '.join(won) or 'no eps'}"
                   + (f" ({', '.join(f'{pts(parts[k]):+.2f}' for k in won)} points)" if won else "")
                   + (f", undecided at {', '.join(unsure)}" if unsure else "")
                   + f", at a cost of {pts(cost):.2f} clean points (claim c {res['claims']['c']['verdict']})"
                   + (f"; claim d (narrowest weights, L1 below the Baseline) {res['claims']['d']['verdict']}"
                      if "d" in res["claims"] else "") + ".")
    gains = survival.get("gains", [])
    attacked = [g for g in gains if g["suite"]]
    if attacked:
        held = [g for g in attacked if g["suite"]["verdict"] == HOLDS]
        rev = [g for g in attacked if g["suite"]["verdict"] == FAILS]
        best = max(attacked, key=lambda g: g["suite"]["effect"]["mean"])
        shrink = all(pts(g["suite"]) < pts(g["pgd"]) for g in attacked)
        out.append(f"Under the stronger suite (its worst case on {suite_images} test images), {len(held)} of the "
                   f"{len(gains)} gains stay significant and {len(rev)} reverse"
                   f"{'s' if len(rev) == 1 else ''}; the largest under the suite is {best['label']} "
                   f"({pts(best['pgd']):+.2f} points under PGD-4, {pts(best['suite']):+.2f} under the suite)"
                   + (", so the gains shrink under a stronger attack without being shown to be gradient masking"
                      if shrink and not rev and len(held) < len(gains) else "") + ".")
    f = c.get("f", {}).get("spearman")
    if f and f.get("rho") is not None:
        does = "does" if c["f"]["verdict"] == HOLDS else "does not significantly"
        out.append(f"The Eq. 3 bound's ordering of the models {does} predict their measured distortion "
                   f"(Spearman rho {f['rho']:.2f}, p {f['p']:.2g}).")
    return " ".join(out)
