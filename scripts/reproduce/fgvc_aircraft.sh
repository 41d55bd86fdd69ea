#!/usr/bin/env bash
# HAFrame and its CE baseline on FGVC-Aircraft with the papers' recipes (docs/fidelity.md).
#
#   DATA_DIR=~/data [PRETRAINED_FILE=resnet50-0676ba61.pth] scripts/reproduce/fgvc_aircraft.sh
#
# DATA_DIR holds fgvc-aircraft-2013b/ (add --download to fetch it). Recipes (hafcls recipes
# haframe-fgvc-aircraft): official 3,334/3,333/3,333 splits, 20-px banner cropped, train
# stretch to 224x224 + RandomCrop(224, padding 4) + flip, test stretch; ResNet-50 with
# torchvision's ImageNet weights (resnet50.tv_in1k: timm downloads them, or PRETRAINED_FILE
# points at a local copy); batch 64, 100 epochs, SGD 0.9, weight decay 5e-4, cosine; backbone
# and 1x1 conv at 0.01, BN + transformation (HAFrame) or the type-I head (CE) at 0.1; HAFrame
# gamma 1, alpha 0.5. Output: $OUT/<recipe>/seed<k>/ and $OUT/results.md.
#
# Published (5 seeds), top-1 % / mistake severity / HierDist@1 / @5 / @20:
#   HAFrame        80.49 / 2.02 / 0.39 / 1.74 / 2.45
#   cross-entropy  79.18 / 2.12 / 0.44 / 2.10 / 2.67
DATA_DIR=${DATA_DIR:?set DATA_DIR to the folder that holds fgvc-aircraft-2013b/}
OUT=${OUT:-runs/reproduce/fgvc_aircraft}
RECIPES=${RECIPES:-"haframe-fgvc-aircraft ce-fgvc-aircraft"}
source "$(dirname "$0")/common.sh"
WEIGHTS=()
if [[ -n "${PRETRAINED_FILE:-}" ]]; then WEIGHTS=(--pretrained-file "$PRETRAINED_FILE"); fi

run_recipes "$RECIPES" --data-dir "$DATA_DIR" "${WEIGHTS[@]}" "$@"
