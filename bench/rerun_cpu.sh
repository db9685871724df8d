#!/bin/bash
# Reruns the CPU benchmarks whose figures docs/performance.md quotes, storing each raw output (with its
# command and the date) in docs/results/bench/. Run from the repository root on an otherwise idle machine.
set -e -o pipefail
cd "$(dirname "$0")"
OUT=../docs/results/bench
export PYTHONPATH=../src
PY=${PY:-../.venv/bin/python}  # the environment of `make install`
run() {
  name=$1; shift
  { echo "\$ $*"; echo "# $(date -u '+%Y-%m-%d %H:%M UTC')"; "$@"; } > "$OUT/$name.txt" 2>&1
  echo "wrote $OUT/$name.txt"
}
run pgd $PY bench_pgd.py --images 512 --repeats 3
run apgd $PY bench_apgd.py --images 256 --eps 0.25,1,8
run data $PY bench_data.py --decode ../../shared/data/cifar10-jpeg.tar.gz
run objectives $PY bench_objectives.py
run autoattack-torchattacks-digits $PY bench_autoattack.py --digits --images 100 --eps 16 --pgd-images 300
run autoattack-torchattacks-resnet56 $PY bench_autoattack.py --arch resnet56 --images 48 --eps 1
# the standard suite on the community ResNet-56, 500 test images, four eps (the reproduction's setting)
TMP=$(mktemp -d)
$PY -m robprune import ../../shared/pretrained/resnet56-4bfd9763.th --arch resnet56 --out "$TMP/r56.safetensors" > /dev/null
run standard-suite-resnet56 bash -c "time $PY -m robprune eval $TMP/r56.safetensors --data imagefolder:../../shared/data/cifar10-jpeg.tar.gz --suite standard --eps 1,2,4,8 --n-images 500 --no-checks --out $TMP/eval"
sed -i "s#$TMP#\$TMP#g" "$OUT/standard-suite-resnet56.txt"  # no machine path in a stored output
rm -rf "$TMP"
