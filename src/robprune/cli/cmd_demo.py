"""robprune demo: the paper's comparison on scikit-learn's digits, no download."""

from __future__ import annotations

import time
from pathlib import Path

from ..io import write_json
from .common import Progress, add_device, device, resolved

HELP = "Baseline, CP 50%%, RP 10%% and Ours on scikit-learn digits (no download)."
EXAMPLE = "robprune demo --out runs/demo"
RESUMABLE = True


def add_arguments(p) -> None:
    add_device(p)
    p.add_argument("--out", default="runs/demo", help="output folder")


def run(args) -> None:
    from .. import distributed
    from ..experiments.demo import run_demo

    group = distributed.setup(device(args.device))
    dev = group.device
    t0 = time.perf_counter()
    if group.is_main and not (Path(args.out) / "config.json").is_file():  # marks the folder: a killed demo continues
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_json(Path(args.out) / "config.json", resolved(args))
    run_demo(args.out, dev, Progress() if group.is_main else None)
    if not group.is_main:
        return
    write_json(Path(args.out) / "config.json", resolved(args))
    print((Path(args.out) / "report.md").read_text())
    print(f"demo finished in {time.perf_counter() - t0:.1f} s on {dev}; "
          f"wrote {args.out}/report.md, results.json, demo.png")
