#!/usr/bin/env bash
# The real-data comparison of docs/results-fashion-mnist.md, rerunnable by anyone:
#   scripts/compare_fashion_mnist.sh [OUTPUT]          (default runs/compare-fashion-mnist)
# Methods: ce, haframe, the random-hierarchy control haframe@permuted, soft-labels, hxe, etf-dr,
# hug-mhe, hier-cos (those registered), x 3 seeds, with and without CRM, on Fashion-MNIST
# (needs only its IDX files: apt-get install dataset-fashion-mnist, sudo when not root).
# Size: a class-balanced training subset (1,000 images per class = 10k of the 55k), 100
# validation images per class, ALL 10,000 test images; test_resnet at 28 px, 4 epochs. About
# 15 minutes on a quiet 2-core machine (24 runs). Calling it again trains nothing new: finished
# runs are reused, an interrupted one resumes. Override with the environment variables below.
set -euo pipefail
OUT=${1:-runs/compare-fashion-mnist}
shift || true  # further arguments go to hafcls compare (e.g. --no-plots)
SEEDS=${SEEDS:-3}
EPOCHS=${EPOCHS:-4}
TRAIN_PER_CLASS=${TRAIN_PER_CLASS:-1000}   # "all": the 5,500 of each class
VAL_PER_CLASS=${VAL_PER_CLASS:-100}        # "all": the 500 held out per class
TEST_PER_CLASS=${TEST_PER_CLASS:-all}      # all 1,000 test images per class
MODEL=${MODEL:-test_resnet}
IMAGE_SIZE=${IMAGE_SIZE:-}                 # empty: the dataset's own 28 px
BATCH=${BATCH:-64}
LR=${LR:-0.05}
DEVICE=${DEVICE:-cpu}
WORKERS=${WORKERS:-0}                      # batches come from memory: no worker processes
# the control right after its method, so that a partial run already answers the main question
WANTED=${METHODS:-ce,haframe,haframe@permuted,soft-labels,hxe,etf-dr,hug-mhe,hier-cos}
PYTHON=${PYTHON:-python3}

# keep the methods that are registered in this version (and say which are missing)
METHODS=$("$PYTHON" - "$WANTED" <<'PY'
import sys
import hafcls
known = set(hafcls.list_methods())
wanted = [m for m in sys.argv[1].split(",") if m]
missing = [m for m in wanted if m.split("@")[0] not in known]
if missing:
    print("not registered, skipped: " + ",".join(missing), file=sys.stderr)
print(",".join(m for m in wanted if m.split("@")[0] in known))
PY
)

# more torch threads than free cores make every small op spin-wait: one thread when the
# machine is already busy, else one per core
CORES=$(nproc)
LOAD=$(cut -d' ' -f1 /proc/loadavg)
if [ -z "${OMP_NUM_THREADS:-}" ]; then
  if awk -v l="$LOAD" -v c="$CORES" 'BEGIN{exit !(l >= c)}'; then
    export OMP_NUM_THREADS=1
  else
    export OMP_NUM_THREADS=$CORES
  fi
fi
PER_CLASS=""
for pair in "train:$TRAIN_PER_CLASS" "val:$VAL_PER_CLASS" "test:$TEST_PER_CLASS"; do
  [ "${pair#*:}" = all ] || PER_CLASS="$PER_CLASS${PER_CLASS:+, }${pair%%:*}: ${pair#*:}"
done
echo "methods: $METHODS; seeds $SEEDS; $EPOCHS epochs; per class $TRAIN_PER_CLASS train /" \
     "$VAL_PER_CLASS val / $TEST_PER_CLASS test images; $MODEL at ${IMAGE_SIZE:-28} px on $DEVICE;" \
     "load $LOAD on $CORES cores;" \
     "$OMP_NUM_THREADS torch thread(s); started $(date -u +%FT%TZ)" >&2
START=$(date +%s)
# seed by seed: pass s trains seed s of every method (earlier runs are reused) and writes the
# table over seeds 0..s, so an interrupted run still leaves a complete table of fewer seeds
for ((s = 0; s < SEEDS; s++)); do
  PLOTS=--no-plots
  [ $s = $((SEEDS - 1)) ] && PLOTS=--plots
  # a trailing comma makes "0," the seed list [0] rather than a count
  "$PYTHON" -m hafcls compare --methods "$METHODS" --seeds "$(seq -s, 0 $s)," -o "$OUT" \
    --data fashion-mnist --model "$MODEL" ${IMAGE_SIZE:+--image-size "$IMAGE_SIZE"} \
    --epochs "$EPOCHS" \
    --batch-size "$BATCH" --lr "$LR" --workers "$WORKERS" --no-progress --device "$DEVICE" \
    --set "data_options={per_class: {$PER_CLASS}}" $PLOTS "$@"
done
END=$(date +%s)
echo "wall time: $(( (END - START) / 60 )) min $(( (END - START) % 60 )) s;" \
     "load at the end $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/wall_time.txt"
