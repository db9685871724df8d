#!/usr/bin/env bash
# Channel pruning of an adversarially trained ResNet-20 on digits (exploratory; the CIFAR study needs a GPU):
# per seed a dense PGD-AT model (16/255, 5 steps, 15 epochs), channels removed at 50% and 75% of every coupled
# group by l1, reverse, bn_scale and hydra (channel scores learned 3 epochs under the same PGD objective), each
# fine-tuned 5 epochs under PGD-AT with and without the hinge (lam 0.1,
# tau q0.9: the demo's), then clean and the `fast` suite at 16/255 on the 359 test images; then
# bench/channels_report.py decides the comparisons by the project's rule and times every model. Later added:
# l1 with --scope global (the same total of channels, taken where the normalised L1 norms are lowest), plain.
#   bash bench/channels_digits.sh runs/channels-digits      (about an hour on 2 CPU cores; resumes)
set -euo pipefail
OUT=${1:-runs/channels-digits}
R="python -m robprune"
ADV="--adv pgd --adv-eps 16 --adv-steps 5 --batch-size 64"
for seed in 0 1; do
  D=$OUT/s$seed
  [ -f $D/dense/model.safetensors ] || $R train --data digits --arch resnet20 --epochs 15 --lr 0.05 --seed $seed \
      $ADV --out $D/dense --overwrite
  for a in 0.5 0.75; do
    for m in l1 reverse bn_scale hydra; do
      LEARN=""; [ $m = hydra ] && LEARN="--data digits $ADV --epochs 3"
      [ -f $D/$m-$a/mask/model.safetensors ] || $R prune $D/dense/model.safetensors --structure channel \
          --method $m --amount $a --seed $seed $LEARN --out $D/$m-$a/mask --overwrite
      for h in plain hinge; do
        HINGE=""; [ $h = hinge ] && HINGE="--lam 0.1 --tau q0.9"
        [ -f $D/$m-$a/$h/model.safetensors ] || $R train --data digits --init $D/$m-$a/mask/model.safetensors \
            --epochs 5 --lr 0.01 --seed $seed $ADV $HINGE --out $D/$m-$a/$h --overwrite
      done
    done
  done
  [ -f $D/eval/eval.json ] || $R eval $D/dense/model.safetensors $D/*/plain/model.safetensors \
      $D/*/hinge/model.safetensors --data digits --eps 16 --suite fast --out $D/eval --overwrite
  # the learned channel scores came later: their arms are evaluated on their own (same images, same suite)
  [ -f $D/eval-hydra/eval.json ] || $R eval $D/hydra-*/plain/model.safetensors $D/hydra-*/hinge/model.safetensors \
      --data digits --eps 16 --suite fast --out $D/eval-hydra --overwrite
  # so did --scope global: l1 over all groups' channels (the same total, widths chosen by the scores)
  for a in 0.5 0.75; do
    [ -f $D/l1global-$a/mask/model.safetensors ] || $R prune $D/dense/model.safetensors --structure channel \
        --method l1 --scope global --amount $a --seed $seed --out $D/l1global-$a/mask --overwrite
    [ -f $D/l1global-$a/plain/model.safetensors ] || $R train --data digits \
        --init $D/l1global-$a/mask/model.safetensors --epochs 5 --lr 0.01 --seed $seed $ADV \
        --out $D/l1global-$a/plain --overwrite
  done
  [ -f $D/eval-global/eval.json ] || $R eval $D/l1global-*/plain/model.safetensors --data digits --eps 16 \
      --suite fast --out $D/eval-global --overwrite
done
python bench/channels_report.py $OUT
