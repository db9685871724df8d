#!/usr/bin/env bash
# The prepared GPU check (issue: beyond one machine). One script, under 8 minutes on one GPU, run from the
# source tree on a machine that has PyTorch with CUDA, numpy, safetensors, tqdm, matplotlib, scikit-learn
# and pillow (no pytest, no internet). For CIFAR, copy ../shared/data/cifar10-jpeg.tar.gz into the
# git-ignored folder gpu_data/ of the repository first; without it the CIFAR stage is skipped.
#
#   bash bench/gpu_check.sh [OUT]         # OUT defaults to $OUT, else runs/gpu_check
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-runs/gpu_check}}"
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

# 1. CUDA checks, 2. training images/s (resnet20/56/18; fp32 and bf16; channels_last; one torch.compile run),
#    PGD-10 images/s. (No CIFAR needed: synthetic batches.)
python3 bench/gpu_run.py --out "$out" 2>&1 | tee "$out/throughput.log"

# 3. A 1-GPU torchrun DDP smoke run through the CLI (NCCL), then the same with the CLI's --nproc launcher.
python3 -m torch.distributed.run --standalone --nproc_per_node 1 -m robprune train --data digits \
    --arch small_cnn --epochs 2 --batch-size 128 --out "$out/ddp1" --overwrite 2>&1 | tail -3 | tee "$out/ddp.log"

# 4. With CIFAR present: a short FGSM-RS ResNet-18 run, CP/Ours at 90%, AutoAttack at 8/255 (timed).
data=gpu_data/cifar10-jpeg.tar.gz
if [ -f "$data" ]; then
  python3 bench/gpu_run.py --skip-throughput --data "imagefolder:$data" --out "$out/study" \
      --dense-epochs 10 --ft-epochs 5 --arms CP90,Ours90 --aa-images 500 --aa-models dense,CP90 \
      2>&1 | tee "$out/study.log"
else
  echo "no $data: CIFAR stage skipped"
fi

# 5. AutoAttack in fp32 and bf16 side by side (issue 12): the community ResNet-56 (copy
#    ../shared/pretrained/resnet56-4bfd9763.th into gpu_data/ too), 1,000 test images, eps 8/255 and 1/255.
if [ -f "$data" ] && [ -f gpu_data/resnet56-4bfd9763.th ]; then
  python3 bench/aa_precision.py --data "imagefolder:$data" --init gpu_data/resnet56-4bfd9763.th --n 1000 \
      --out "$out/aa_precision" 2>&1 | tee "$out/aa_precision.log"
fi
