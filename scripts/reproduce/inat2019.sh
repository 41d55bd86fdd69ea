#!/usr/bin/env bash
# HAFrame and its CE baseline on iNaturalist 2019 with the papers' recipes (docs/fidelity.md).
#
#   DATA_DIR=/data/inat19 SPLITS=splits_inat19.zip [PRETRAINED_FILE=...] \
#     scripts/reproduce/inat2019.sh
#
# SPLITS is making-better-mistakes' split listing (zip or folder: train/ val/ test/ with one
# nat<id>.txt per class); images are read from DATA_DIR/<split>/nat<id>/<file>, the taxonomy
# from DATA_DIR/categories.json or DATA_DIR/train2019.json. The listing's sizes (the test set
# size) are printed and recorded in each run's metrics.json (data_info). Recipes: ResNet-50
# tv_in1k, 224 px, RandomResizedCrop + flip, test stretched to 224x224, batch 256, 100 epochs,
# SGD 0.9, weight decay 5e-4, cosine, every group at LR 0.01; HAFrame gamma 5, alpha 0.4.
# Batch 256 over several GPUs: torchrun --nproc_per_node=4 $(which hafcls) train --recipe
# haframe-inat2019 --batch-size 64 ... (--batch-size is per process).
#
# Published (5 seeds), top-1 % / mistake severity / HierDist@1 / @5 / @20:
#   HAFrame        70.89 / 2.04 / 0.59 / 1.14 / 1.73
#   cross-entropy  70.68 / 2.22 / 0.65 / 1.95 / 3.37
DATA_DIR=${DATA_DIR:?set DATA_DIR to the folder with train/ val/ test/ image folders}
SPLITS=${SPLITS:?set SPLITS to making-better-mistakes splits_inat19.zip (or its folder)}
OUT=${OUT:-runs/reproduce/inat2019}
RECIPES=${RECIPES:-"haframe-inat2019 ce-inat2019"}
source "$(dirname "$0")/common.sh"
WEIGHTS=()
if [[ -n "${PRETRAINED_FILE:-}" ]]; then WEIGHTS=(--pretrained-file "$PRETRAINED_FILE"); fi

run_recipes "$RECIPES" --data-dir "$DATA_DIR" --set "data_options.splits=$SPLITS" \
  "${WEIGHTS[@]}" "$@"
