#!/usr/bin/env bash
# The committed CIFAR-10-LT table (`make table`): the suite at schedule.scale=$SCALE for each seed of $SEEDS, the seeds
# side by side with one thread each (on a 2-core CPU that is ~1.2x the throughput of one run on both cores), then
# longtail.report into benchmarks/results/cifar10_lt_x$SCALE/. Run it again after a kill or a session's end: finished
# jobs are skipped and the interrupted ones resume from their last checkpoint.
set -euo pipefail
ROOT=${CIFAR10:-../shared/data/cifar10-jpeg.tar.gz}
SCALE=${SCALE:-0.04}
SEEDS=${SEEDS:-0 1}
LOGS=${LONGTAIL_LOGS:-logs}
OUT=benchmarks/results/cifar10_lt_x$SCALE
mkdir -p "$LOGS" "$OUT"
for seed in $SEEDS; do
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python -m longtail.run -m suite=cifar10_lt "seed=$seed" "datamodule.root=$ROOT" \
    "schedule.scale=$SCALE" trainer.enable_progress_bar=false >> "$LOGS/suite_cifar10_lt_x${SCALE}_seed$seed.log" 2>&1 &
done
wait
python -m longtail.report "$LOGS/suites/cifar10_lt_x$SCALE" --csv "$OUT/table.csv" --json "$OUT/table.json" \
  --plot "$OUT/groups.png" --plot-cost "$OUT/cost.png" | tee "$OUT/table.md"
