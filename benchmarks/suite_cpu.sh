#!/usr/bin/env bash
# The committed CIFAR-10-LT table (`make table`): suite=cifar10_lt_cpu (30-epoch main stages, every other stage in
# proportion or at its declared budget) for each seed of $SEEDS, the seeds side by side with one thread each, then
# longtail.report into benchmarks/results/cifar10_lt_cpu/. The sweep's folder is jobs/ there, committed without its
# checkpoints, so the measurement spans sessions: run it again after a kill or a session's end and the finished jobs
# are skipped, the interrupted ones resume from their last checkpoint (or start again in a fresh clone).
# logs/load.log samples the load average every minute: a train time is a timing only where nothing else ran.
set -euo pipefail
ROOT=${CIFAR10:-../shared/data/cifar10-jpeg.tar.gz}
SEEDS=${SEEDS:-0 1}
OUT=benchmarks/results/cifar10_lt_cpu
mkdir -p "$OUT/logs"
( while sleep 60; do echo "$(date -u +%FT%TZ) $(cut -d' ' -f1-3 /proc/loadavg)"; done ) >> "$OUT/logs/load.log" &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null' EXIT
PIDS=()
for seed in $SEEDS; do
  (
    echo "start $(date -u +%FT%TZ) seed=$seed $(nproc) cores"
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python -m longtail.run -m suite=cifar10_lt_cpu "seed=$seed" \
      "datamodule.root=$ROOT" "hydra.sweep.dir=$OUT/jobs" trainer.enable_progress_bar=false
    echo "end $(date -u +%FT%TZ) seed=$seed"
  ) >> "$OUT/logs/seed$seed.log" 2>&1 &
  PIDS+=($!)
done
wait "${PIDS[@]}"
python -m longtail.report "$OUT/jobs" --csv "$OUT/table.csv" --json "$OUT/table.json" --plot "$OUT/groups.png" \
  --plot-cost "$OUT/cost.png" --plot-per-class "$OUT/per_class.png" | tee "$OUT/table.md"
