"""AutoAttack (`--suite autoattack`) time in fp32 and bf16, side by side in one run (issue 12, item 9).

On a GPU: the community ResNet-56, N CIFAR-10 (JPEG) test images, eps 8/255 (the field's setting; a naturally
trained network falls to APGD-CE there, so the later attacks see few points) and 1/255 (where every attack of the
suite has work). Prints and writes images/s and robust counts for each precision; bf16 runs the attack passes
under autocast and every outcome is decided by the fp32 model, so bf16 can only find fewer adversarial points.

    PYTHONPATH=src python3 bench/aa_precision.py --data imagefolder:gpu_data/cifar10-jpeg.tar.gz \
        --init gpu_data/resnet56-4bfd9763.th --n 1000 --out $OUT
    PYTHONPATH=src python3 bench/aa_precision.py --quick --out runs/aa   # a CPU check of the script (digits)
    PYTHONPATH=src python3 bench/aa_precision.py --data ... --checkpoint UNIT/model.safetensors --n 100 --eps 8 \
        --out runs/aa
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from robprune.evaluation.run import EvalRequest, run_evaluation


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data")
    p.add_argument("--init", help="a community checkpoint (.th), loaded with weights_only=True")
    p.add_argument("--arch", default="resnet56", help="the architecture of --init (resnet20 or resnet56)")
    p.add_argument("--checkpoint", help="a robprune checkpoint (.safetensors) instead of --init")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--eps", default="8,1", help="comma-separated, units of 1/255")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    card = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    if args.quick:
        from robprune.data import load_digits
        from robprune.models import create_model

        torch.manual_seed(0)
        data = load_digits()
        model = create_model("small_cnn", num_classes=10, in_channels=1)
        x, y, suite, eps_list = data.x_test[:32], data.y_test[:32], "fast", [16 / 255]
    else:
        from robprune.checkpoint import import_checkpoint
        from robprune.data import load_dataset
        from robprune.evaluation.accuracy import fixed_subset

        data = load_dataset(args.data)
        if args.checkpoint:
            from robprune.checkpoint import load_checkpoint

            model = load_checkpoint(args.checkpoint)[0]
        else:
            model = import_checkpoint(args.init, args.arch, num_classes=10)
        x, y = fixed_subset(data.x_test, data.y_test, args.n)
        suite, eps_list = "autoattack", [float(e) / 255 for e in args.eps.split(",")]
    model = model.to(device).eval()
    rows = []
    for eps in eps_list:
        for precision in ("fp32", "bf16"):
            request = EvalRequest(eps=(eps,), suite=suite, precision=precision, checks=False, batch_size=args.batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            result = run_evaluation(model, x, y, request)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            row = {"card": card, "eps_255": eps * 255, "precision": precision, "n": len(x), "seconds": seconds,
                   "images_per_s": len(x) / seconds, "clean": result["clean"]["correct"],
                   "robust": result["robust"][0]["correct"],
                   "after_each": {k: v["robust_after"]["correct"] for k, v in result["robust"][0]["attacks"].items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
            (out / "aa_precision.json").write_text(json.dumps(rows, indent=2))
    for eps in eps_list:
        pair = {r["precision"]: r for r in rows if r["eps_255"] == eps * 255}
        print(f"eps {eps * 255:g}/255 on {card}: bf16 {pair['fp32']['seconds'] / pair['bf16']['seconds']:.2f}x "
              f"fp32's speed; robust {pair['fp32']['robust']} (fp32) vs {pair['bf16']['robust']} (bf16) of {len(x)}")


if __name__ == "__main__":
    main()
