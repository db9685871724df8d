"""robprune import: a foreign checkpoint (community pytorch_resnet_cifar10, or the APB layout) to safetensors."""

from __future__ import annotations

from ..checkpoint import save_checkpoint
from ..export import FORMATS, import_model
from ..models import MODELS
from .common import positive_int

HELP = "Convert a foreign torch checkpoint (read with weights_only=True) to robprune's safetensors format."
EXAMPLE = ("robprune import ../shared/pretrained/resnet56-4bfd9763.th --arch resnet56 --out runs/resnet56.safetensors\n"
           "  robprune import apb-resnet18.pt --arch resnet18 --format apb --out runs/r18.safetensors")
SINGLE_FILE = True


def add_arguments(p) -> None:
    p.add_argument("file")
    p.add_argument("--arch", required=True, help=f"one of {MODELS.describe()}")
    p.add_argument("--format", default="community", help=f"layout of the file: {', '.join(FORMATS)}")
    p.add_argument("--num-classes", type=positive_int, default=10, help="classes of the model")
    p.add_argument("--out", required=True, help="output .safetensors file")


def run(args) -> None:
    model, masks = import_model(args.file, args.arch, args.format, num_classes=args.num_classes)
    path = save_checkpoint(args.out, model, masks, {"imported_from": str(args.file), "import_format": args.format})
    print(f"imported {args.file} ({args.format}) as {args.arch}; wrote {path}")
