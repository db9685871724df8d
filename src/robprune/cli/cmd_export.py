"""robprune export: a checkpoint as a plain torch file other tools read with torch.load(weights_only=True)."""

from __future__ import annotations

from ..checkpoint import load_checkpoint
from ..export import export_model
from .common import factory_arch

HELP = "Export a checkpoint for other tools: a weights-only torch file (state_dict with masks folded in)."
EXAMPLE = "robprune export runs/cp90/model.safetensors --format apb --out runs/cp90-apb.pt"
SINGLE_FILE = True


def add_arguments(p) -> None:
    p.add_argument("checkpoint")
    p.add_argument("--format", default="torch", help="key layout: torch, apb")
    p.add_argument("--arch", help="a package.module:factory the checkpoint was built by (allows importing it)")
    p.add_argument("--out", required=True, help="output .pt file")


def run(args) -> None:
    model, masks, meta = load_checkpoint(args.checkpoint, expect_arch=factory_arch(args))
    payload = export_model(model, masks, meta, args.format, args.out)
    print(f"exported {args.checkpoint} ({meta['arch']}, sparsity {100 * payload['sparsity']:.2f}%) as "
          f"{args.format}; wrote {args.out}")
