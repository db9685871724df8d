"""(Record of a helper process, run from the study cache as worker2.py; not part of robprune.) A second worker on the scratch study's unit store: computes the suite units of Baseline and RP in
reverse seed order (s2 first) while the main run works forward, so the two meet in the middle.
It walks the same run_scratch (every other unit is cached) with suite_unit recorded instead of run,
in a throwaway output folder whose units/ is the main run's store; the main run then finds these
units cached. Its own results.json/report in scratch-worker2/ are not used."""
import json, sys
from pathlib import Path
import robprune.experiments.study as S
from robprune.cli.main import main

UNITS = Path("runs/scratch-resnet20/units")
real, calls = S.suite_unit, []
dummy = json.loads(next(UNITS.glob("suite-s0-CP-*/suite.json")).read_text())

def record(*args, **kwargs):
    calls.append((args, kwargs))
    return dummy

S.suite_unit = record
main(["reproduce", "--protocol", "scratch", "--data", "imagefolder:../shared/data/cifar10-jpeg.tar.gz",
      "--out", "runs/scratch-worker2", "--device", "cpu"])
S.suite_unit = real
todo = [c for c in calls if c[0][8].split("-", 1)[1] in ("Baseline", "RP")]
print("worker2: suite units to consider, reverse order:", [c[0][8] for c in reversed(todo)], flush=True)
for args, kwargs in reversed(todo):
    name = args[8]
    if list(UNITS.glob(f"suite-{name}-*")):
        print(f"worker2: suite-{name} already started or done elsewhere; skipping", flush=True)
        continue
    print(f"worker2: computing suite-{name}", flush=True)
    real(*args, **kwargs)
print("worker2: finished", flush=True)
