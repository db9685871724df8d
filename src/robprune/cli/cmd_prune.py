"""robprune prune: one-shot pruning of a checkpoint by any registered criterion."""

from __future__ import annotations

from ..checkpoint import load_checkpoint, save_checkpoint
from ..io import write_json, write_text_atomic
from ..pruning import CRITERIA, SCOPES, apply_masks, compute_masks, sparsity_report
from .common import amount, resolved

HELP = "One-shot prune a checkpoint (no training) and report per-layer sparsity."
EXAMPLE = "robprune prune runs/base/model.safetensors --method rp --amount 0.1 --out runs/rp10"


def add_arguments(p) -> None:
    p.add_argument("checkpoint")
    p.add_argument("--method", required=True, help=f"pruning criterion: {CRITERIA.describe()}")
    p.add_argument("--amount", type=amount, required=True,
                   help="fraction of prunable weights pruned in the result, [0, 1); on a pruned checkpoint this is "
                        "the total, its old zeros included (they stay pruned), so it must be at least its sparsity")
    p.add_argument("--scope", default="global", help=f"one of {', '.join(SCOPES)}")
    p.add_argument("--keep-ends", action="store_true", help="leave the first conv and last linear layer dense")
    p.add_argument("--seed", type=int, default=0, help="seed of the random criterion")
    p.add_argument("--arch", help="a package.module:factory the checkpoint was built by (allows importing it)")
    p.add_argument("--out", default="runs/prune", help="output folder")


def run(args) -> None:
    model, old_masks, meta = load_checkpoint(args.checkpoint, expect_arch=args.arch)
    masks = compute_masks(model, args.method, args.amount, args.scope, args.keep_ends, args.seed,
                          previous=old_masks or None)
    apply_masks(model, masks)
    report = sparsity_report(model, args.keep_ends)
    out = args.out_dir
    save_checkpoint(out / "model.safetensors", model, masks,
                    {**{k: v for k, v in meta.items() if k not in ("format", "robprune_version")},
                     "pruned": {"method": args.method, "amount": args.amount, "scope": args.scope,
                                "source": args.checkpoint}})
    write_json(out / "sparsity.json", report)
    write_json(out / "config.json", resolved(args))
    lines = ["| layer | numel | zeros | sparsity |", "|---|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['numel']} | {r['zeros']} | {100 * r['sparsity']:.1f}% |" for r in report["layers"]]
    lines.append(f"| total | {report['numel']} | {report['zeros']} | {100 * report['sparsity']:.2f}% |")
    write_text_atomic(out / "sparsity.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}/model.safetensors")
