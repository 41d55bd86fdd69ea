# Shared by the reproduction scripts: train each recipe for each seed, then summarise.
#   run_recipes "<recipe> <recipe>" [hafcls train options...]
# Environment: OUT (output folder), SEEDS (default "0 1 2 3 4", the papers' five seeds),
# WORKERS (DataLoader workers). A run with metrics.json is finished and skipped; an interrupted
# one is resumed from its last checkpoint (--resume).
set -euo pipefail

SEEDS=${SEEDS:-"0 1 2 3 4"}
WORKERS=${WORKERS:-8}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

run_recipes() {
  local recipes=$1
  shift
  for recipe in $recipes; do
    for seed in $SEEDS; do
      local run="$OUT/$recipe/seed$seed"
      if [[ -f "$run/metrics.json" ]]; then
        echo "done: $run"
        continue
      fi
      echo "training: $recipe, seed $seed -> $run"
      hafcls train --recipe "$recipe" --seed "$seed" --workers "$WORKERS" \
        --output "$run" --resume "$@"
    done
  done
  python3 "$HERE/summarize.py" "$OUT"
}
