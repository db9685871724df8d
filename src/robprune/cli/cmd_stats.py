"""robprune stats: weight statistics of the paper's Table 1."""

from __future__ import annotations

from ..checkpoint import load_checkpoint
from ..evaluation.stats import layer_stats_markdown, stats_markdown, weight_stats
from ..io import write_json, write_text_atomic
from .common import factory_arch, positive_int, resolved

HELP = "Weight statistics (paper Table 1), parameters and MACs of one or more checkpoints."
EXAMPLE = "robprune stats runs/base/model.safetensors runs/ours/model.safetensors --out runs/stats"


def add_arguments(p) -> None:
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--arch", help="a package.module:factory the checkpoints were built by (allows importing it)")
    p.add_argument("--input-size", type=positive_int, default=None,
                   help="side of the square input MACs are counted for (default: the size a channel-pruned "
                        "checkpoint was traced at, else 8 for digits and 32 otherwise)")
    p.add_argument("--out", default="runs/stats", help="output folder")


def run(args) -> None:
    from ..pruning.slim import count_macs, example_input

    rows, sizes = {}, {}
    for path in args.checkpoints:
        model, _, meta = load_checkpoint(path, expect_arch=factory_arch(args))
        rows[path] = weight_stats(model)
        x = example_input(meta, args.input_size)
        macs, params = count_macs(model, x[:1])
        sizes[path] = {"params": params, "macs": macs, "input_size": list(x.shape[1:])}
    out = args.out_dir
    write_json(out / "stats.json", {"stats": rows, "sizes": sizes, "config": resolved(args)})
    size_lines = ["| model | parameters | MACs per image | input |", "|---|---:|---:|---|"]
    size_lines += [f"| {p} | {s['params']:,} | {s['macs']:,} | {'x'.join(map(str, s['input_size']))} |"
                   for p, s in sizes.items()]
    text = stats_markdown(rows) + "\n\n" + "\n".join(size_lines)
    per_layer = "\n\n".join(f"### {p}\n\n{layer_stats_markdown(s)}" for p, s in rows.items())
    write_text_atomic(out / "stats.md", f"{text}\n\n## Per layer\n\n{per_layer}\n")
    print(text)
    print(f"wrote {out}/stats.json and stats.md (with per-layer tables)")
