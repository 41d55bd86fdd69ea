#!/usr/bin/env bash
# HAFrame paper recipe on tieredImageNet-H (Liang & Davis, ICCV 2023; METHODS.md §2), 5 seeds.
#
#   DATA_DIR=/data/tiered HIERARCHY=tiered.json scripts/reproduce/tiered_imagenet.sh [options]
#
# DATA_DIR is a class-folder tree DATA_DIR/{train,val,test}/<WordNet id>/<images> with the
# tieredImageNet-H splits (608 ImageNet classes; the split lists come with Bertinetto et al.'s
# "Making Better Mistakes" release). HIERARCHY is its label tree as a hafcls hierarchy file;
# convert the published nltk pickle once (unpickling runs code, hence the explicit --trust):
#   hafcls hierarchy build nltk-pickle tiered_imagenet_tree.pkl --trust -o tiered.json
# The tree is unbalanced (leaves at depths 3-12, H = 12) and every paper uses the published
# distance H - depth(LCA), which is hafcls's default.
#
# Recipe: ImageNet-pretrained ResNet-50 at 224 px; 100 epochs, SGD (momentum 0.9, weight decay
# 5e-4), per-epoch cosine schedule, peak LR 0.1 for the head and 0.01 for the backbone, batch
# 256, best-validation checkpoint tested; HAFrame gamma = 3, alpha = 0.5, s_min by the paper's
# grid rule (-0.072 here). The folder dataset has no preset, so gamma and alpha are given to
# HAFrame explicitly below.
#
# Caveat: ImageNet-pretrained weights have seen these images' classes (as in the paper).
# Pretrained weights: --pretrained lets timm download resnet50's default ImageNet weights; set
# PRETRAINED_FILE to a local .safetensors/.pth file instead on a machine without network.
#
# Published numbers (5 seeds, mean ± 95% CI), top-1 % / mistake severity / HierDist@1 / @5 / @20:
#   HAFrame (type-II ResNet-50)        74.00 / 6.89 / 1.79 / 4.94 / 6.15
#   cross-entropy (type-I ResNet-50)   73.63 / 6.94 / 1.83 / 5.70 / 7.34
set -euo pipefail

DATA_DIR=${DATA_DIR:?set DATA_DIR to the folder with train/ val/ test/ class folders}
HIERARCHY=${HIERARCHY:?set HIERARCHY to the tieredImageNet-H hierarchy file (see above)}
OUT=${OUT:-runs/reproduce/tiered_imagenet}
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
  --data folder --data-dir "$DATA_DIR" --hierarchy "$HIERARCHY" --image-size 224 \
  --model "$MODEL" "${WEIGHTS[@]}" \
  --epochs 100 --batch-size 256 \
  --optimizer sgd --lr 0.1 --lr-backbone 0.01 --momentum 0.9 --weight-decay 5e-4 \
  --schedule cosine \
  --set "method_options.haframe={gamma: 3, alpha: 0.5}" \
  --select-metric top1 --workers "$WORKERS" \
  --output "$OUT" "$@"
