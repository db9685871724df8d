"""What the study commands (reproduce, study) share: seed lists, the suite and --share options, and running a
study with its invocation logged to OUT/runs.log."""

from __future__ import annotations

import time

from ..evaluation.suite import SUITES
from ..io import write_json
from .common import Progress, device, positive_int, resolved


def add_share_argument(p) -> None:
    """--share, shared by reproduce and study: several processes on one output folder divide its units."""
    p.add_argument("--share", action="store_true",
                   help="join other processes running this command on the same --out (also started with --share; "
                        "other hosts through a shared filesystem): each unit is computed by one of them, the "
                        "others take the next independent unit; results.json sums their compute time")


def add_only_argument(p) -> None:
    """--only, shared by reproduce --protocol scratch and study: a process that takes part of the plan."""
    p.add_argument("--only", type=lambda t: tuple(m.strip() for m in t.split(",") if m.strip()),
                   help="take only the steps of these measures (comma-separated: record, suite, and for the "
                        "scratch protocol search, sweep), e.g. a second process with --share --only suite that "
                        "attacks while the first trains; the models a step needs are loaded from the cache or "
                        "trained. The study is marked done only by a run without --only")


def only_filter(measures):
    """The step filter of ``--only`` (None: every step)."""
    if not measures:
        return None
    return lambda step: any(m in measures for m in step.measures)


def add_suite_arguments(p, default: str) -> None:
    """--suite and --suite-images, shared by reproduce and study."""
    p.add_argument("--suite", choices=tuple(SUITES),
                   help=f"worst-case suite run on every model (unset: {default}, fast with --quick; autoattack "
                        "is AutoAttack's standard version and costs several times more where many points survive, "
                        "see docs/performance.md)")
    p.add_argument("--suite-images", type=positive_int, help="test images the suite attacks")


def seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ValueError(f"seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers >= 0, got {text!r}")
    return seeds


def run_logged(args, fn, config_name: str | None = None) -> None:
    """Run ``fn(device, progress)`` with the invocation and its wall time appended to OUT/runs.log; write
    config.json (with the run's resolved config under ``config_name``) and print the report."""
    from .. import distributed

    group = distributed.setup(device(args.device))
    out = args.out_dir
    command = "robprune " + " ".join(args.argv)
    t0 = time.perf_counter()
    if group.is_main:
        with open(out / "runs.log", "a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} start: {command} ({group.world} process(es))\n")
        if not (out / "config.json").is_file():  # marks the folder as this command's: a killed run continues
            write_json(out / "config.json", resolved(args))
    state = fn(group.device, Progress() if group.is_main else None)
    if not group.is_main:
        return
    with open(out / "runs.log", "a") as log:
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} finished in {time.perf_counter() - t0:.0f} s\n")
    write_json(out / "config.json", {**resolved(args), **({config_name: state["config"]} if config_name else {})})
    print((out / "report.md").read_text())
    print(f"wrote {out}/report.md, results.json and the figures")
