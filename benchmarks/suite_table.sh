#!/usr/bin/env bash
# The committed CIFAR-10-LT table (`make table`): the suite at schedule.scale=$SCALE for each seed of $SEEDS, the seeds
# side by side with one thread each (on a 2-core CPU that is ~1.2x the throughput of one run on both cores), then
# longtail.report into benchmarks/results/cifar10_lt_x$SCALE/. The sweep's folder is jobs/ there, committed without
# its checkpoints, so the measurement spans sessions: run it again after a kill or a session's end and the finished
# jobs are skipped, the interrupted ones resume from their last checkpoint (or start again in a fresh clone).
set -euo pipefail
ROOT=${CIFAR10:-../shared/data/cifar10-jpeg.tar.gz}
SCALE=${SCALE:-0.04}
SEEDS=${SEEDS:-0 1}
OUT=benchmarks/results/cifar10_lt_x$SCALE
mkdir -p "$OUT/logs"
for seed in $SEEDS; do
  (
    echo "start $(date -u +%FT%TZ) seed=$seed scale=$SCALE $(nproc) cores"
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python -m longtail.run -m suite=cifar10_lt "seed=$seed" "datamodule.root=$ROOT" \
      "schedule.scale=$SCALE" "hydra.sweep.dir=$OUT/jobs" trainer.enable_progress_bar=false
    echo "end $(date -u +%FT%TZ) seed=$seed"
  ) >> "$OUT/logs/seed$seed.log" 2>&1 &
done
wait
python -m longtail.report "$OUT/jobs" --csv "$OUT/table.csv" --json "$OUT/table.json" \
  --plot "$OUT/groups.png" --plot-cost "$OUT/cost.png" | tee "$OUT/table.md"
