#!/usr/bin/env bash
# HAFrame and its CE baseline on tieredImageNet-H with the papers' recipes (docs/fidelity.md).
#
#   DATA_DIR=/data/tiered SPLITS=splits_tiered.zip HIERARCHY=tiered.json \
#     PRETRAINED_FILE=pass_moco_v2_800ep.pth.tar scripts/reproduce/tiered_imagenet.sh
#
# SPLITS: making-better-mistakes' listing (608 WordNet-id classes; 15,200 test images, printed
# and recorded in each run). Images at DATA_DIR/<split>/<wnid>/<file>. HIERARCHY: the tiered
# tree as a hafcls file (once: hafcls hierarchy build nltk-pickle tiered_imagenet_tree.pkl
# --trust -o tiered.json). PRETRAINED_FILE: PASS MoCo-v2 (800 epochs) checkpoint; its
# module.encoder_q.* keys are mapped to timm's resnet50, the projection head dropped, and
# missing/unexpected keys reported. Supervised ImageNet weights would leak the test classes.
# Recipes: 224 px, RandomResizedCrop + flip, test stretch, batch 256, 100 epochs, SGD 0.9,
# weight decay 5e-4, cosine, every group at 0.01; HAFrame gamma 3, alpha 0.5.
#
# Published (5 seeds), top-1 % / mistake severity / HierDist@1 / @5 / @20:
#   HAFrame        74.00 / 6.89 / 1.79 / 4.94 / 6.15
#   cross-entropy  73.63 / 6.94 / 1.83 / 5.70 / 7.34
DATA_DIR=${DATA_DIR:?set DATA_DIR to the folder with train/ val/ test/ image folders}
SPLITS=${SPLITS:?set SPLITS to making-better-mistakes splits_tiered.zip (or its folder)}
HIERARCHY=${HIERARCHY:?set HIERARCHY to the tieredImageNet-H hierarchy file (see above)}
PRETRAINED_FILE=${PRETRAINED_FILE:?set PRETRAINED_FILE to the PASS MoCo-v2 checkpoint}
OUT=${OUT:-runs/reproduce/tiered_imagenet}
RECIPES=${RECIPES:-"haframe-tiered-imagenet ce-tiered-imagenet"}
source "$(dirname "$0")/common.sh"

run_recipes "$RECIPES" --data-dir "$DATA_DIR" --hierarchy "$HIERARCHY" \
  --set "data_options.splits=$SPLITS" --pretrained-file "$PRETRAINED_FILE" "$@"
