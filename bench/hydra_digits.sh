#!/usr/bin/env bash
# HYDRA against CP and LAMP at equal budget on digits (small_cnn, PGD-AT at 16/255): a dense PGD-AT model,
# each method's mask at 90% and 99% (HYDRA: 5 epochs of score learning under PGD), 5 epochs of PGD-AT
# fine-tuning under every mask, then clean and the `fast` suite at 16/255 on the 359 test images; then HYDRA
# with a global ranking.
#   bash bench/hydra_digits.sh runs/hydra-digits      (about 20 minutes on 2 CPU cores)
set -euo pipefail
OUT=${1:-runs/hydra-digits}
R="python -m robprune"
ADV="--adv pgd --adv-eps 16 --adv-steps 5"
$R train --data digits --arch small_cnn --epochs 20 --lr 0.05 --batch-size 64 $ADV --out $OUT/dense
for s in 0.9 0.99; do
  for m in cp lamp hydra; do
    if [ $m = hydra ]; then
      $R prune $OUT/dense/model.safetensors --method hydra --amount $s --data digits $ADV --epochs 5 \
          --batch-size 64 --out $OUT/$m-$s/mask
    else
      $R prune $OUT/dense/model.safetensors --method $m --amount $s --out $OUT/$m-$s/mask
    fi
    $R train --data digits --init $OUT/$m-$s/mask/model.safetensors --epochs 5 --lr 0.01 --batch-size 64 $ADV \
        --out $OUT/$m-$s/ft
  done
done
$R eval $OUT/dense/model.safetensors $OUT/*-0.9/ft/model.safetensors $OUT/*-0.99/ft/model.safetensors \
    --data digits --eps 16 --suite fast --out $OUT/eval
# HYDRA with one global ranking instead of its per-layer default (CP and LAMP above rank globally)
for s in 0.9 0.99; do
  $R prune $OUT/dense/model.safetensors --method hydra --scope global --amount $s --data digits $ADV --epochs 5 \
      --batch-size 64 --out $OUT/hydraG-$s/mask
  $R train --data digits --init $OUT/hydraG-$s/mask/model.safetensors --epochs 5 --lr 0.01 --batch-size 64 $ADV \
      --out $OUT/hydraG-$s/ft
done
$R eval $OUT/hydraG-0.9/ft/model.safetensors $OUT/hydraG-0.99/ft/model.safetensors --data digits --eps 16 \
    --suite fast --out $OUT/evalG
