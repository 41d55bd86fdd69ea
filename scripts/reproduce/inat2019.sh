#!/usr/bin/env bash
# HAFrame paper recipe on iNaturalist 2019 (Liang & Davis, ICCV 2023; METHODS.md §2), 5 seeds.
#
#   DATA_DIR=/data/inat2019 scripts/reproduce/inat2019.sh [any other hafcls compare option]
#
# DATA_DIR holds train2019.json, val2019.json, test2019.json and the extracted train_val2019/
# and test2019/ folders (no automatic download: see `hafcls train --data inat2019 --help` and
# hafcls.data.inaturalist). The competition never released test labels, so hafcls tests on the
# official validation set and holds out the last images of each training class for
# validation; the protocol is recorded in each run. Output: $OUT/results.md (mean ± 95%
# t-interval over seeds, without and with CRM), results.csv, plots/, runs/. Re-running the
# script trains nothing that already finished; an interrupted run is resumed.
#
# Recipe: 1,010 species in a 7-level taxonomy (H = 7); ImageNet-pretrained ResNet-50 at 224 px;
# 100 epochs, SGD (momentum 0.9, weight decay 5e-4), per-epoch cosine schedule, peak LR 0.1 for
# the head and 0.01 for the backbone, batch 256, best-validation checkpoint tested; HAFrame
# gamma = 5, alpha = 0.4 (the inat2019 preset), s_min by the paper's grid rule (-0.031 here).
# --amp bf16 roughly halves the time on recent GPUs (the paper trained in fp32).
#
# Pretrained weights: --pretrained lets timm download resnet50's default ImageNet weights; set
# PRETRAINED_FILE to a local .safetensors/.pth file instead on a machine without network.
#
# Published numbers (5 seeds, mean ± 95% CI), top-1 % / mistake severity / HierDist@1 / @5 / @20:
#   HAFrame (type-II ResNet-50)        70.89 / 2.04 / 0.59 / 1.14 / 1.73
#   cross-entropy (type-I ResNet-50)   70.68 / 2.22 / 0.65 / 1.95 / 3.37
#   cross-entropy + CRM (type-I)       70.67 / 2.16 / 0.63 / 1.17 / 1.75   (our "With CRM" table)
set -euo pipefail

DATA_DIR=${DATA_DIR:?set DATA_DIR to the iNaturalist 2019 folder (json files + images)}
OUT=${OUT:-runs/reproduce/inat2019}
METHODS=${METHODS:-ce,haframe}          # add baselines, e.g. ce,haframe,etf-dr,hug-mhe,soft-labels,hxe
SEEDS=${SEEDS:-5}
MODEL=${MODEL:-resnet50}
WORKERS=${WORKERS:-16}
if [[ -n "${PRETRAINED_FILE:-}" ]]; then
  WEIGHTS=(--pretrained-file "$PRETRAINED_FILE")
else
  WEIGHTS=(--pretrained)
fi

hafcls compare \
  --methods "$METHODS" --seeds "$SEEDS" \
  --data inat2019 --data-dir "$DATA_DIR" --image-size 224 \
  --model "$MODEL" "${WEIGHTS[@]}" \
  --epochs 100 --batch-size 256 \
  --optimizer sgd --lr 0.1 --lr-backbone 0.01 --momentum 0.9 --weight-decay 5e-4 \
  --schedule cosine \
  --set "method_options.haframe={gamma: 5, alpha: 0.4}" \
  --select-metric top1 --workers "$WORKERS" \
  --output "$OUT" "$@"

# Several GPUs for one run: torchrun --nproc_per_node=4 $(which hafcls) train --data inat2019 \
#   --data-dir "$DATA_DIR" --method haframe --model resnet50 --pretrained --epochs 100 \
#   --batch-size 64 --lr 0.1 --lr-backbone 0.01 --seed 0 --output runs/inat-haframe-seed0
# (--batch-size is per process: 4 x 64 = 256.)
