"""Measured inference time of channel-pruned networks: dense against 50/75/90% of every group's channels removed.

    python bench/bench_structured.py [--archs resnet18 vgg16_bn resnet56] [--threads 1] [--json FILE]

For each architecture the dense model and its slim copies (robprune.prune_channels, L1 criterion; timing does
not depend on the weights) are timed side by side in one run: interleaved rounds, median of --repeats, batch
1 and 256 (CIFAR-sized 32x32 inputs), fp32 and bf16 (autocast), inference mode, a fixed thread count. Prints
parameters, MACs (Torch-Pruning's counter) and the speedup over dense of each slim model. On a GPU
(--device cuda) the same, timed with CUDA synchronisation.
"""

from __future__ import annotations

import argparse
import contextlib
import json

import torch

from common import interleaved_medians, machine
from robprune import create_model
from robprune.pruning import count_macs, prune_channels


def forward_fn(model, x, precision: str, device: torch.device):
    ctx = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
           else contextlib.nullcontext())

    def run():
        with torch.inference_mode(), ctx:
            model(x)
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=["resnet18", "vgg16_bn", "resnet56"])
    p.add_argument("--amounts", nargs="+", type=float, default=[0.5, 0.75, 0.9])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 256])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write the measurements here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    print(f"# {machine()}")
    rows = []
    for arch in args.archs:
        torch.manual_seed(0)
        dense = create_model(arch).eval()
        probe = torch.rand(2, 3, 32, 32)
        models = {"dense": dense}
        for a in args.amounts:
            models[f"{a:.0%}"] = prune_channels(dense, "l1", a, probe)[0]
        sizes = {name: count_macs(m, probe[:1]) for name, m in models.items()}
        for m in models.values():
            m.to(device).to(memory_format=torch.channels_last)
        for batch in args.batches:
            x = torch.rand(batch, 3, 32, 32, device=device).to(memory_format=torch.channels_last)
            for precision in args.precisions:
                repeats = args.repeats if batch > 16 else 5 * args.repeats
                times = interleaved_medians({n: forward_fn(m, x, precision, device) for n, m in models.items()},
                                            repeats=repeats, sync=sync)
                for name, t in times.items():
                    macs, params = sizes[name]
                    row = {"arch": arch, "model": name, "batch": batch, "precision": precision,
                           "params": params, "macs": macs, "ms": 1000 * t, "speedup": times["dense"] / t,
                           "mac_ratio": sizes["dense"][0] / macs}
                    rows.append(row)
                    print(f"{arch:9s} {name:6s} batch {batch:4d} {precision}: {params:>10,} params "
                          f"{macs / 1e6:8.1f} MMACs  {1000 * t:9.2f} ms  speedup {row['speedup']:5.2f}x "
                          f"(MACs {row['mac_ratio']:5.2f}x fewer)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "threads": args.threads, "device": args.device, "rows": rows}, f,
                      indent=1)


if __name__ == "__main__":
    main()
