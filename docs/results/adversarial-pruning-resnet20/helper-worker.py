"""(Record of a helper process, run from the study cache as worker2-adv.py; not part of robprune.) A second worker on
the adversarial study's unit store: walks run_adversarial (core grid only: the extra sparsities are cut from the
walk, as the issue says to cut them first) with suite_unit recorded instead of run, in a throwaway output folder
whose units/ is the main run's store, then computes the AutoAttack units the main run reaches last (argv[1], a
comma-separated list of s{seed}-{model}), skipping any that is done or that another process is working on (a file
in its folder written in the last 30 minutes: suite units save every finished batch since 267b775), so the two meet
in the middle; a unit left part-way by a stopped process is continued from its saved batches."""
import json, sys, time
from dataclasses import replace
from pathlib import Path
import robprune.experiments.study as S
from robprune.cli.main import main

UNITS = Path("runs/adversarial-resnet20/units")
real, calls = S.suite_unit, []
dummy = json.loads(next(UNITS.glob("suite-s0-CP-0.9-*/suite.json")).read_text())
ORDER = sys.argv[1].split(",") if len(sys.argv) > 1 else ["s0-Dense", "s1-Dense", "s0-RP-0.1", "s1-RP-0.1",
                                                         "s1-Ours-0.99", "s1-CP-0.99"]

def record(*args, **kwargs):
    calls.append((args, kwargs))
    return dummy

S.suite_unit = record
_run = S.run_adversarial
S.run_adversarial = lambda data, out, config, *a, **k: _run(data, out, replace(config, extra_sparsities=()), *a, **k)
main(["study", "adversarial", "--data", "imagefolder:../shared/data/cifar10-jpeg.tar.gz",
      "--out", "runs/adversarial-worker2", "--device", "cpu"])
S.suite_unit = real
by_name = {c[0][8]: c for c in calls}
print("worker2-adv: recorded", list(by_name), flush=True)
for name in ORDER:
    if name not in by_name:
        print(f"worker2-adv: {name} not in the plan; skipping", flush=True)
        continue
    folders = list(UNITS.glob(f"suite-{name}-*"))
    touched = max((f.stat().st_mtime for d in folders for f in [d, *d.iterdir()]), default=0.0)
    if any((d / ".done").exists() for d in folders) or time.time() - touched < 1800:
        print(f"worker2-adv: suite-{name} done or in progress elsewhere; skipping", flush=True)
        continue
    print(f"worker2-adv: computing suite-{name}", flush=True)
    args, kwargs = by_name[name]
    real(*args, **kwargs)
print("worker2-adv: finished", flush=True)
