"""Report of bench/channels_digits.sh: robust accuracy per arm, the comparisons decided by the project's rule,
and measured latency of the dense and slim architectures.

    python bench/channels_report.py runs/channels-digits [--threads 1 --repeats 5]

Reads OUT/s<seed>/eval/eval.json (per-image outcomes of the `fast` suite) and each arm's channels.json; times
the seed-0 dense, 50% and 75% models (every criterion gives the same shapes at one amount) side by side in one
run, at batch 1 and 256, 8x8 (digits) and 32x32 (CIFAR-sized) inputs, fp32, a fixed thread count. Writes
OUT/report.md, OUT/summary.json and OUT/robust_vs_latency.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from common import interleaved_medians, machine
from robprune import load_checkpoint
from robprune.evaluation.significance import decide_accuracy, holm

CRITERIA = ("l1", "reverse", "bn_scale", "hydra")
AMOUNTS = ("0.5", "0.75")


def arms_of(out: Path) -> dict[int, dict[str, dict]]:
    """{seed: {arm: the eval.json entry}}; arm is "dense" or "<criterion>-<amount>/<plain|hinge>"."""
    found = {}
    for seed_dir in sorted(out.glob("s[0-9]*")):
        seed = int(seed_dir.name[1:])
        found[seed] = {}
        models = {}
        for name in ("eval", "eval-hydra", "eval-global"):
            if (seed_dir / name / "eval.json").is_file():
                models |= json.loads((seed_dir / name / "eval.json").read_text())["models"]
        for path, entry in models.items():
            parts = Path(path).parts
            arm = "dense" if parts[-2] == "dense" else f"{parts[-3]}/{parts[-2]}"
            found[seed][arm] = entry
    return found


def bits(entry: dict) -> np.ndarray:
    return np.asarray(entry["robust"][0]["robust_mask"], dtype=bool)


def shape_key(arm: str) -> str:
    """The model shape an arm has: dense, an amount (every criterion per group gives the same shapes), or
    g<amount> (l1 over all groups: its own widths)."""
    if arm == "dense":
        return "dense"
    amount = arm.split("-")[-1].split("/")[0]
    return f"g{amount}" if arm.startswith("l1global") else amount


def latency(out: Path, threads: int, repeats: int) -> dict:
    torch.set_num_threads(threads)
    models = {"dense": out / "s0" / "dense" / "model.safetensors"}
    models |= {a: out / "s0" / f"l1-{a}" / "plain" / "model.safetensors" for a in AMOUNTS}
    models |= {f"g{a}": out / "s0" / f"l1global-{a}" / "plain" / "model.safetensors" for a in AMOUNTS
               if (out / "s0" / f"l1global-{a}" / "plain" / "model.safetensors").is_file()}
    loaded = {k: load_checkpoint(p)[0].eval() for k, p in models.items()}
    result = {}
    for side in (8, 32):
        for batch in (1, 256):
            x = torch.rand(batch, 1, side, side)

            def fn(m):
                def run():
                    with torch.inference_mode():
                        m(x)
                return run
            times = interleaved_medians({k: fn(m) for k, m in loaded.items()}, repeats=repeats * (5 if batch == 1
                                                                                                  else 1))
            result[f"{side}x{side} batch {batch}"] = {k: 1000 * t for k, t in times.items()}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    out = Path(args.out)
    runs = arms_of(out)
    seeds = sorted(runs)
    arms = ["dense"] + [f"{m}-{a}/{h}" for a in AMOUNTS for m in CRITERIA for h in ("plain", "hinge")]
    arms += [f"l1global-{a}/plain" for a in AMOUNTS]
    sizes = {}
    for a in AMOUNTS:
        for key, folder in ((a, f"l1-{a}"), (f"g{a}", f"l1global-{a}")):
            path = out / "s0" / folder / "mask" / "channels.json"
            if path.is_file():
                info = json.loads(path.read_text())
                sizes["dense"] = (info["params"][0], info["macs"][0])
                sizes[key] = (info["params"][1], info["macs"][1])
    lat = latency(out, args.threads, args.repeats)
    key = "32x32 batch 256"

    def mean(arm, what):
        vals = [runs[s][arm]["clean" if what == "clean" else "robust"] for s in seeds]
        vals = [v["accuracy"] if what == "clean" else v[0]["accuracy"] for v in vals]
        return 100 * statistics.mean(vals)

    lines = ["# Channel pruning of an adversarially trained ResNet-20 on digits (exploratory)", "",
             "Produced by `bash bench/channels_digits.sh runs/channels-digits` (which ends with "
             f"`python bench/channels_report.py runs/channels-digits`); seeds {', '.join(map(str, seeds))}; "
             f"latency measured on: {machine()}, fp32, median of interleaved rounds. Fine-tuning with the hinge used "
             "the demo's lam 0.1 and tau q0.9, not tuned for channel pruning.", "",
             "Robust accuracy: worst case of the `fast` suite (APGD-CE, APGD-DLR, Square) at 16/255 on the 359 test "
             "images, mean over seeds. Latency: the seed-0 model of each amount (all per-group criteria give the same "
             "shapes at one amount; l1global, l1 with `--scope global`, removes the same total with its own "
             f"widths), {key}.", "",
             "| arm | clean % | robust % | parameters | MACs (8x8) | latency ms | speedup |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for arm in arms:
        if any(arm not in runs[s] for s in seeds):
            continue
        params, macs = sizes[shape_key(arm)]
        ms = lat[key][shape_key(arm)]
        lines.append(f"| {arm} | {mean(arm, 'clean'):.2f} | {mean(arm, 'robust'):.2f} | {params:,} | {macs:,} | "
                     f"{ms:.2f} | {lat[key]['dense'] / ms:.2f}x |")
    shapes = [k for k in ("0.5", "0.75", "g0.5", "g0.75") if k in lat[key]]
    names = {"0.5": "50%", "0.75": "75%", "g0.5": "50% global", "g0.75": "75% global"}
    lines += ["", "## Measured latency (ms; speedup over dense)", "",
              "| input, batch | dense | " + " | ".join(names[k] for k in shapes) + " |",
              "|---|---:|" + "---:|" * len(shapes)]
    for k, t in lat.items():
        lines.append(f"| {k} | {t['dense']:.2f} | " + " | ".join(f"{t[s]:.2f} ({t['dense'] / t[s]:.2f}x)"
                                                               for s in shapes) + " |")
    parts = {}
    for a in AMOUNTS:
        for other in ("reverse", "bn_scale", "hydra"):
            parts[f"{other} beats l1 at {a} (no hinge)"] = (f"{other}-{a}/plain", f"l1-{a}/plain")
        for m in CRITERIA:
            parts[f"the hinge helps {m} at {a}"] = (f"{m}-{a}/hinge", f"{m}-{a}/plain")
        if all(f"l1global-{a}/plain" in runs[s] for s in seeds):
            parts[f"l1 over all groups beats l1 per group at {a} (no hinge)"] = (f"l1global-{a}/plain",
                                                                                f"l1-{a}/plain")
    decided = {name: decide_accuracy([(bits(runs[s][x]), bits(runs[s][y])) for s in seeds])
               for name, (x, y) in parts.items()}
    decided = holm(decided)
    lines += ["", "## Comparisons (robust accuracy; the rule of docs/evaluation.md, Holm over these "
              f"{len(decided)})", "", "| claim | verdict | mean difference (points) | why |", "|---|---|---:|---|"]
    for name, d in decided.items():
        lines.append(f"| {name} | {d['verdict']} | {100 * d['effect']['mean']:+.2f} | {d['why']} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    summary = {"seeds": seeds, "latency_ms": lat, "sizes": sizes, "machine": machine(), "threads": args.threads,
               "decisions": {k: {"verdict": d["verdict"], "why": d["why"]} for k, d in decided.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(out, runs, seeds, arms, lat[key], mean)
    print("\n".join(lines))


def plot(out: Path, runs, seeds, arms, lat: dict, mean) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    markers = {"l1": "o", "reverse": "s", "bn_scale": "^", "hydra": "D", "l1global": "v"}
    for arm in arms:
        if any(arm not in runs[s] for s in seeds):
            continue
        if arm == "dense":
            ax.scatter(lat["dense"], mean(arm, "robust"), marker="*", s=120, color="k", label="dense")
            continue
        crit, rest = arm.split("-", 1)
        amount, hinge = rest.split("/")
        ax.scatter(lat[shape_key(arm)], mean(arm, "robust"), marker=markers[crit],
                   facecolors="C0" if hinge == "hinge" else "none", edgecolors="C0" if amount == "0.5" else "C3",
                   label=f"{crit} {float(amount):.0%} {hinge}")
    ax.set_xlabel("measured latency, 32x32 batch 256 (ms, CPU)")
    ax.set_ylabel("robust accuracy at 16/255 (%)")
    ax.set_xscale("log")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "robust_vs_latency.png", dpi=120)


if __name__ == "__main__":
    main()
