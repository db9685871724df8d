"""robprune stats: weight statistics of the paper's Table 1."""

from __future__ import annotations

from ..checkpoint import load_checkpoint
from ..evaluation.stats import layer_stats_markdown, stats_markdown, weight_stats
from ..io import write_json, write_text_atomic
from .common import factory_arch, resolved

HELP = "Weight statistics (paper Table 1) of one or more checkpoints."
EXAMPLE = "robprune stats runs/base/model.safetensors runs/ours/model.safetensors --out runs/stats"


def add_arguments(p) -> None:
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--arch", help="a package.module:factory the checkpoints were built by (allows importing it)")
    p.add_argument("--out", default="runs/stats", help="output folder")


def run(args) -> None:
    rows = {}
    for path in args.checkpoints:
        model, _, _ = load_checkpoint(path, expect_arch=factory_arch(args))
        rows[path] = weight_stats(model)
    out = args.out_dir
    write_json(out / "stats.json", {"stats": rows, "config": resolved(args)})
    text = stats_markdown(rows)
    per_layer = "\n\n".join(f"### {p}\n\n{layer_stats_markdown(s)}" for p, s in rows.items())
    write_text_atomic(out / "stats.md", f"{text}\n\n## Per layer\n\n{per_layer}\n")
    print(text)
    print(f"wrote {out}/stats.json and stats.md (with per-layer tables)")
