"""A hand-made mutation check of the attacks, the decision rule and the learned pruning methods: does some test
fail when a mechanism breaks?

    python bench/mutation_check.py [--only NAME] > docs/results/mutation-check.txt

Each mutant is one textual change to a copy of src/ (the working tree is never touched); the tests named with
it run against that copy. A mutant is *killed* when those tests fail, and *survives* when they pass: a survivor
is a mechanism no test watches. Prints one line per mutant and the survivors at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (name, file under src/robprune, text, replacement, tests to run)
MUTANTS = [
    ("pgd returns its input", "attacks/pgd.py",
     "    return x_adv.detach().contiguous() if nchw else x_adv.detach()\n", "    return x.detach()\n",
     ["tests/test_registries.py::test_each_attack_alone_lowers_accuracy"]),
    ("pgd ignores restarts", "attacks/common.py", "    for r in range(restarts):\n", "    for r in range(1):\n",
     ["tests/test_strong_attacks.py::test_restarts_break_more_and_never_fewer_points"]),
    ("pgd steps without the sign", "attacks/pgd.py", "x_adv + alpha * grad.sign()", "x_adv + alpha * grad",
     ["tests/test_registries.py::test_each_attack_alone_lowers_accuracy",
      "tests/test_strong_attacks.py::test_cross_check_against_torchattacks_pgd"]),
    ("pgd forgets the eps-ball", "attacks/pgd.py",
     "x_adv = torch.minimum(torch.maximum(x_adv + alpha * grad.sign(), lower), upper)",
     "x_adv = (x_adv + alpha * grad.sign()).clamp(0, 1)", ["tests/test_registries.py::test_attack_invariants"]),
    ("square returns its input", "attacks/square.py", "    return x_best\n", "    return x.clone()\n",
     ["tests/test_registries.py::test_each_attack_alone_lowers_accuracy"]),
    ("square never accepts a better point", "attacks/square.py", "better = new_margin < margin[active]",
     "better = new_margin < -1e9", ["tests/test_registries.py::test_each_attack_alone_lowers_accuracy"]),
    ("cw loss sign flipped", "attacks/common.py",
     "return _other_max(logits, y) - logits.gather(1, y[:, None]).squeeze(1)",
     "return logits.gather(1, y[:, None]).squeeze(1) - _other_max(logits, y)",
     ["tests/test_strong_attacks.py"]),
    ("dlr without its scale normaliser", "attacks/common.py", "/ (top[:, 0] - top[:, 2] + 1e-12)", "",
     ["tests/test_strong_attacks.py"]),
    ("apgd without momentum", "attacks/apgd.py", "alpha: float = 0.75,", "alpha: float = 1.0,",
     ["tests/test_strong_attacks.py", "tests/test_registries.py::test_each_attack_alone_lowers_accuracy"]),
    ("fab returns its input", "attacks/fab.py", "        return torch.where(broken, inside, x[idx])\n",
     "        return x[idx]\n", ["tests/test_registries.py::test_each_attack_alone_lowers_accuracy",
                               "tests/test_autoattack.py::test_fab_stops_a_point_once_it_is_broken_within_eps"]),
    ("rule without the reversed-seed guard", "evaluation/significance.py",
     "    if against:\n        return UNDECIDED", "    if False:\n        return UNDECIDED",
     ["tests/test_studies.py::test_decision_rule_pools_seeds_and_guards_against_a_reversed_seed"]),
    ("rule back to every-seed-significant", "evaluation/significance.py",
     "    if pooled[\"p\"] >= alpha or sign == 0:",
     "    if pooled[\"p\"] >= alpha or sign == 0 or any(t[\"p\"] >= alpha for t in tests):",
     ["tests/test_studies.py::test_decision_rule_pools_seeds_and_guards_against_a_reversed_seed"]),
    ("pooled test counts one seed only", "evaluation/significance.py",
     "    a_only = sum(t[\"a_only\"] for t in tests)\n    b_only = sum(t[\"b_only\"] for t in tests)",
     "    a_only = tests[0][\"a_only\"] if tests else 0\n    b_only = tests[0][\"b_only\"] if tests else 0",
     ["tests/test_studies.py -k 'cmh or rule'"]),
    ("Holm without its multiplier", "evaluation/significance.py", "min(1.0, (m - i) * parts[k][\"p\"])",
     "min(1.0, parts[k][\"p\"])", ["tests/test_studies.py::test_holm_adjusts_the_parts_of_a_claim"]),
    ("power ignores the guard", "evaluation/significance.py",
     "        if (in_direction & (pooled_p < alpha) & ~against).mean() >= power:",
     "        if (in_direction & (pooled_p < alpha)).mean() >= power:",
     ["tests/test_studies.py::test_seeds_to_decide_matches_the_rule_it_sizes"]),
    ("power at the wrong rate", "evaluation/significance.py",
     "    rate_a = sum(t[\"a_only\"] for t in tests) / total",
     "    rate_a = 2 * sum(t[\"a_only\"] for t in tests) / total",
     ["tests/test_studies.py::test_seeds_to_decide_matches_the_rule_it_sizes"]),
    ("hydra scores never update", "learned/hydra.py", "            optimizer.step()\n", "",
     ["tests/test_hydra.py::test_hydra_learns_masks_that_beat_its_own_starting_point"]),
    ("hydra forward ignores the mask", "learned/hydra.py",
     "        return w * (self.mask.to(w.dtype) + magnitude - magnitude.detach())", "        return w",
     ["tests/test_hydra.py::test_hydra_learns_masks_that_beat_its_own_starting_point"]),
    ("lamp scores are plain magnitudes", "pruning/criteria.py",
     "    scores[order] = sorted_sq / suffix.clamp_min(torch.finfo(sq.dtype).tiny)", "    scores[order] = sorted_sq",
     ["tests/test_pruning.py -k lamp"]),
    ("suite reference on the first n images", "reporting/scratch_report.py",
     "same = subset_indices(ev[\"n\"], first[\"n\"])", "same = np.arange(first[\"n\"])",
     ["tests/test_golden_reports.py"]),
]


def run(name: str, path: str, old: str, new: str, tests: list[str]) -> tuple[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(ROOT / "src", Path(tmp) / "src")
        target = Path(tmp) / "src" / "robprune" / path
        text = target.read_text()
        if text.count(old) != 1:
            return f"NOT APPLIED (the text occurs {text.count(old)} times)", 0.0
        target.write_text(text.replace(old, new))
        env = dict(os.environ, PYTHONPATH=str(Path(tmp) / "src"))
        where = subprocess.run([sys.executable, "-c", "import robprune; print(robprune.__file__)"], env=env,
                               capture_output=True, text=True).stdout
        if not where.startswith(tmp):  # a run that imported the working tree would prove nothing
            return f"error (imported {where.strip()})", 0.0
        t0 = time.perf_counter()
        args = []
        for t in tests:
            args += t.split(" ", 1)[0:1] + (["-k", t.split("-k ", 1)[1].strip("'")] if " -k " in t else [])
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        return ("killed" if proc.returncode == 1 else "SURVIVED" if proc.returncode == 0
                else f"error (pytest exit {proc.returncode})"), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="run the mutants whose name contains this")
    args = ap.parse_args()
    survivors = []
    for name, path, old, new, tests in MUTANTS:
        if args.only and args.only not in name:
            continue
        verdict, seconds = run(name, path, old, new, tests)
        print(f"{verdict:10s} {name} ({path}; {', '.join(tests)}; {seconds:.0f} s)", flush=True)
        if verdict != "killed":
            survivors.append(name)
    print(f"survivors: {', '.join(survivors) or 'none'}")


if __name__ == "__main__":
    main()
