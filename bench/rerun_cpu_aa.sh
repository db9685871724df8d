#!/bin/bash
# AutoAttack in fp32 and bf16, and AutoAttack against the `standard` suite, on the community ResNet-20 (the
# models of the first measurements were study units outside the repository). Raw outputs to
# docs/results/bench/. Run from the repository root on an otherwise idle machine.
set -e -o pipefail
cd "$(dirname "$0")"
OUT=../docs/results/bench
export PYTHONPATH=../src
PY=${PY:-../.venv/bin/python}
DATA=imagefolder:../../shared/data/cifar10-jpeg.tar.gz
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
{ echo "\$ python aa_precision.py --data $DATA --init ../../shared/pretrained/resnet20-12fca82f.th --arch resnet20 --n 100 --eps 0.5 --batch 100"
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC')"
  $PY aa_precision.py --data $DATA --init ../../shared/pretrained/resnet20-12fca82f.th --arch resnet20 --n 100 \
      --eps 0.5 --batch 100 --out "$W/aa"; } > "$OUT/aa-precision-resnet20.txt" 2>&1
$PY -m robprune import ../../shared/pretrained/resnet20-12fca82f.th --arch resnet20 --out "$W/r20.safetensors" > /dev/null
for s in standard autoattack; do
  { echo "\$ robprune eval resnet20.safetensors --data $DATA --suite $s --eps 1,2,4,8 --n-images 100 --no-checks"
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC')"
    start=$(date +%s.%N)
    $PY -m robprune eval "$W/r20.safetensors" --data $DATA --suite $s --eps 1,2,4,8 --n-images 100 --no-checks \
        --out "$W/$s" 2>&1 | grep -v "^\s*$"
    echo "wall time: $(echo "$(date +%s.%N) - $start" | bc) s"
    $PY -c "import json,sys; from robprune.evaluation.outcomes import correct; e=json.load(open(sys.argv[1])); [print(f\"robust_mask at {r['eps'] * 255:g}/255:\", ''.join('1' if v else '0' for v in correct(e, i))) for i, r in enumerate(e['robust'])]" "$W/$s/eval.json"
  } > "$OUT/suite-$s-resnet20.txt" 2>&1
done
sed -i "s#$W#\$W#g" "$OUT/aa-precision-resnet20.txt" "$OUT"/suite-*-resnet20.txt  # no machine path in a stored output
