"""robprune import: a foreign checkpoint (community pytorch_resnet_cifar10, APB, RobustBench) to safetensors."""

from __future__ import annotations

from ..checkpoint import save_checkpoint
from ..export import FORMATS, import_model
from ..models import MODELS
from .common import positive_int

HELP = "Convert a foreign torch checkpoint (read with weights_only=True) to robprune's safetensors format."
EXAMPLE = ("robprune import ../shared/pretrained/resnet56-4bfd9763.th --arch resnet56 --out runs/resnet56.safetensors\n"
           "  robprune import apb-resnet18.pt --arch resnet18 --format apb --out runs/r18.safetensors\n"
           "  robprune import Carmon2019Unlabeled.pt --arch wrn_28_10 --format robustbench --out runs/c.safetensors")
SINGLE_FILE = True


def add_arguments(p) -> None:
    p.add_argument("file")
    p.add_argument("--arch", required=True, help=f"one of {MODELS.describe()}")
    p.add_argument("--format", default="community", help=f"layout of the file: {', '.join(FORMATS)}")
    p.add_argument("--num-classes", type=positive_int, default=10, help="classes of the model")
    p.add_argument("--mean", type=channel_list, default=None,
                   help="per-channel mean of the input normalisation, e.g. 0.5,0.5,0.5 (community and robustbench "
                        "files; default: the file's own, else the community's ImageNet statistics for community "
                        "files and none for robustbench files)")
    p.add_argument("--std", type=channel_list, default=None, help="per-channel std, with --mean")
    p.add_argument("--out", required=True, help="output .safetensors file")


def channel_list(text: str) -> tuple[float, ...]:
    """'0.5,0.5,0.5' -> (0.5, 0.5, 0.5): finite numbers."""
    import argparse
    import math

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def run(args) -> None:
    model, masks = import_model(args.file, args.arch, args.format, num_classes=args.num_classes, mean=args.mean,
                                std=args.std)
    path = save_checkpoint(args.out, model, masks, {"imported_from": str(args.file), "import_format": args.format})
    norm = getattr(model, "normalize", None)
    said = "" if norm is None else (f"; inputs in [0, 1] normalised with mean {_short(norm.mean)} and std "
                                    f"{_short(norm.std)}")
    print(f"imported {args.file} ({args.format}) as {args.arch}{said}; wrote {path}")


def _short(t) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in t.flatten().tolist()) + ")"
