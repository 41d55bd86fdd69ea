#!/usr/bin/env bash
# HAFrame paper recipe on FGVC-Aircraft (Liang & Davis, ICCV 2023; METHODS.md §2), 5 seeds.
#
#   DATA_DIR=~/data scripts/reproduce/fgvc_aircraft.sh [any other hafcls compare option]
#
# DATA_DIR holds fgvc-aircraft-2013b/ (add --download to fetch it there). Output: $OUT/results.md
# (mean ± 95% t-interval over seeds, without and with CRM), results.csv, plots/, runs/.
# Re-running the script trains nothing that already finished; an interrupted run is resumed.
#
# Recipe: the official 3,334 / 3,333 / 3,333 train / val / test splits with the 20-pixel
# copyright banner cropped, 100 variants in the manufacturer -> family -> variant tree (H = 3);
# ImageNet-pretrained ResNet-50 at 224 px; 100 epochs, SGD (momentum 0.9, weight decay 5e-4),
# per-epoch cosine schedule, peak LR 0.1 for the head and 0.01 for the backbone, batch 64,
# best-validation checkpoint tested; HAFrame gamma = 1, alpha = 0.5 (the fgvc-aircraft preset),
# s_min by the paper's grid rule (-0.610 here).
#
# Pretrained weights: --pretrained lets timm download resnet50's default ImageNet weights; set
# PRETRAINED_FILE to a local .safetensors/.pth file instead on a machine without network.
# (The paper's torchvision ImageNet weights differ from timm's default resnet50 weights, so
# expect small differences in absolute numbers.)
#
# Published numbers (5 seeds, mean ± 95% CI), top-1 % / mistake severity / HierDist@1 / @5 / @20:
#   HAFrame (type-II ResNet-50)        80.49 / 2.02 / 0.39 / 1.74 / 2.45
#   cross-entropy (type-I ResNet-50)   79.18 / 2.12 / 0.44 / 2.10 / 2.67
set -euo pipefail

DATA_DIR=${DATA_DIR:?set DATA_DIR to the folder that holds fgvc-aircraft-2013b/}
OUT=${OUT:-runs/reproduce/fgvc_aircraft}
METHODS=${METHODS:-ce,haframe}          # add baselines, e.g. ce,haframe,etf-dr,hug-mhe,soft-labels,hxe
SEEDS=${SEEDS:-5}
MODEL=${MODEL:-resnet50}
WORKERS=${WORKERS:-8}
if [[ -n "${PRETRAINED_FILE:-}" ]]; then
  WEIGHTS=(--pretrained-file "$PRETRAINED_FILE")
else
  WEIGHTS=(--pretrained)
fi

hafcls compare \
  --methods "$METHODS" --seeds "$SEEDS" \
  --data fgvc-aircraft --data-dir "$DATA_DIR" --image-size 224 \
  --model "$MODEL" "${WEIGHTS[@]}" \
  --epochs 100 --batch-size 64 \
  --optimizer sgd --lr 0.1 --lr-backbone 0.01 --momentum 0.9 --weight-decay 5e-4 \
  --schedule cosine \
  --set "method_options.haframe={gamma: 1, alpha: 0.5}" \
  --select-metric top1 --workers "$WORKERS" \
  --output "$OUT" "$@"

# One run on its own:
#   hafcls train --data fgvc-aircraft --data-dir "$DATA_DIR" --method haframe --model resnet50 \
#     --pretrained --epochs 100 --batch-size 64 --lr 0.1 --lr-backbone 0.01 --seed 0 \
#     --output runs/fgvc-haframe-seed0
