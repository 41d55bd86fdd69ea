#!/usr/bin/env bash
# HAFrame and its CE baseline on CIFAR-100 with the papers' recipes (docs/fidelity.md), 5 seeds.
#
#   DATA_DIR=~/data scripts/reproduce/cifar100.sh [any other hafcls train option]
#
# DATA_DIR holds cifar-100-python/ (add --download to fetch it there). Recipes (hafcls recipes
# haframe-cifar100): WideResNet-28-8 from scratch at 32 px, the 5-level tree, 45k/5k/10k split
# (seeded), 4-px reflect padding + crop + flip, batch 64, 100 epochs, SGD 0.9, weight decay
# 5e-4, cosine; the whole network at LR 0.01, only CE's linear classifier at 0.1; HAFrame
# gamma 2, alpha 0.4. Output: $OUT/<recipe>/seed<k>/ run folders and $OUT/results.md.
# One WRN-28-8 run takes hours on a GPU (100 epochs x 704 steps of batch 64).
#
# Published (5 seeds), top-1 % / mistake severity / HierDist@1 / @5 / @20:
#   HAFrame        77.71 / 2.21 / 0.49 / 1.11 / 2.18
#   cross-entropy  77.65 / 2.34 / 0.52 / 2.25 / 3.19
DATA_DIR=${DATA_DIR:?set DATA_DIR to the folder that holds cifar-100-python/}
OUT=${OUT:-runs/reproduce/cifar100}
RECIPES=${RECIPES:-"haframe-cifar100 ce-cifar100"}
source "$(dirname "$0")/common.sh"

run_recipes "$RECIPES" --data-dir "$DATA_DIR" "$@"
