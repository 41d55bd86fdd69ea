#!/usr/bin/env bash
# The Fashion-MNIST comparison at full scale on one GPU; prints the table (mean ± 95% interval
# over 3 seeds, with and without CRM) and the wall time. Needs only the four IDX files
# (apt-get install dataset-fashion-mnist, or --data-dir via EXTRA: see below) and a CUDA torch.
#   scripts/gpu_check.sh [--quick] [OUTPUT] [extra hafcls compare flags, e.g. --data-dir DIR]
# Full: all 55,000 training images (5,000 validation, 10,000 test), resnet18 from scratch at
# 32 px, bf16 + channels-last, batch 256, 5 epochs, every method of
# scripts/compare_fashion_mnist.sh (ce, haframe, the control haframe@permuted, soft-labels, hxe,
# etf-dr, hug-mhe, hier-cos) x 3 seeds = 24 runs, sized for under 10 minutes on one recent GPU.
# --quick: the same pipeline, tiny (30 training / 5 validation / 20 test images per class,
# 1 epoch, 2 seeds) on the CPU, to check that it runs before borrowing a GPU.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
if [ $QUICK = 1 ]; then
  OUT=${1:-runs/gpu-check-quick}
  export SEEDS=${SEEDS:-2} EPOCHS=${EPOCHS:-1} TRAIN_PER_CLASS=${TRAIN_PER_CLASS:-30}
  export VAL_PER_CLASS=${VAL_PER_CLASS:-5} TEST_PER_CLASS=${TEST_PER_CLASS:-20}
  export BATCH=${BATCH:-32} DEVICE=cpu WORKERS=0
  AMP=()
else
  OUT=${1:-runs/gpu-check}
  if ! ${PYTHON:-python3} -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "No CUDA device visible to torch: run on a GPU machine, or try --quick on the CPU." >&2
    exit 2
  fi
  export SEEDS=${SEEDS:-3} EPOCHS=${EPOCHS:-5} TRAIN_PER_CLASS=${TRAIN_PER_CLASS:-all}
  export VAL_PER_CLASS=${VAL_PER_CLASS:-all} TEST_PER_CLASS=${TEST_PER_CLASS:-all}
  export BATCH=${BATCH:-256} DEVICE=${DEVICE:-cuda} WORKERS=${WORKERS:-4}
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
  AMP=(--amp bf16 --channels-last)
fi
shift || true
export MODEL=${MODEL:-resnet18} IMAGE_SIZE=${IMAGE_SIZE:-32} LR=${LR:-0.1}
exec "$HERE/compare_fashion_mnist.sh" "$OUT" "${AMP[@]}" "$@"
