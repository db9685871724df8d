#!/usr/bin/env bash
# The two studies on a lent GPU (issues 14 and 15), as one prepared call under 8 minutes: the paper's protocol
# from scratch on ResNet-56 (the paper's architecture) and the adversarial pruning study on ResNet-18 (the
# benchmark's). Both are cached grids: the output folder keeps every finished unit, so a second call (or a
# later session that carries the folder back) continues where the first stopped; `timeout` ends each study at
# its share of the time and the report says what is done.
#
#   cp ../shared/data/cifar10-jpeg.tar.gz gpu_data/        # the git-ignored folder; name it in `carry`
#   bash bench/gpu_studies.sh [OUT]                         # OUT defaults to $OUT, else runs/gpu_studies
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-runs/gpu_studies/out}}"
work=runs/gpu_studies   # the units (checkpoints) stay here, on the machine's disk; $out gets what to read
mkdir -p "$out" "$work"
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
data=imagefolder:gpu_data/cifar10-jpeg.tar.gz

timeout 230 python3 -m robprune reproduce --protocol scratch --arch resnet56 --data "$data" \
    --baseline-epochs 30 --epochs 10 --out "$work/scratch-resnet56" 2>&1 | tail -40 > "$out/scratch.log"
timeout 230 python3 -m robprune study adversarial --arch resnet18 --data "$data" --dense-epochs 30 --epochs 8 \
    --out "$work/adversarial-resnet18" 2>&1 | tail -40 > "$out/adversarial.log"
python3 -m robprune reproduce --protocol scratch --report-only --data "$data" --out "$work/scratch-resnet56" >/dev/null
python3 -m robprune study adversarial --report-only --data "$data" --out "$work/adversarial-resnet18" >/dev/null
# the units' checkpoints stay on the device's disk; bring back the reports, results and figures only
for d in scratch-resnet56 adversarial-resnet18; do
  mkdir -p "$out/$d" && cp "$work/$d"/*.md "$work/$d"/*.json "$work/$d"/*.png "$work/$d"/runs.log "$out/$d/" 2>/dev/null
done
