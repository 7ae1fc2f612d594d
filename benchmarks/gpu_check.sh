#!/usr/bin/env bash
# The GPU check (issue 18, item 6), on one H200 within 10 minutes, without network:
#   1. python -m longtail.bench on cuda (CIFAR-10-LT, ResNet-32)                       -> $OUT/gpu_bench.json
#   2. the full-schedule (schedule.scale=1) CE and LDAM-DRW rows of the CIFAR-10-LT suite, side by side on the one
#      GPU (published 70.36 / 77.73 on the LDAM protocol, without a held-out split)    -> $OUT/gpu_table.{md,json}
# Prepare on a machine that reaches the package registries (wheels the GPU image lacks, and the data, into
# benchmarks/.carry/, ignored by git):   bash benchmarks/gpu_check.sh --prepare
# then on the device machine:            bash benchmarks/gpu_check.sh      (carry: benchmarks/.carry)
# GPU_CHECK_SMOKE=1 runs the same steps on the CPU with debug=smoke, to check the script itself.
set -euo pipefail
CARRY=benchmarks/.carry
# what the project imports that the GPU image (torch, lightning, torchmetrics, timm) may not have
WHEELS="hydra-core omegaconf antlr4-python3-runtime==4.9.3 hydra-joblib-launcher joblib kornia kornia-rs dppy
        matplotlib contourpy cycler fonttools kiwisolver pyparsing"

if [ "${1:-}" = "--prepare" ]; then
  mkdir -p "$CARRY/wheels"
  python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d "$CARRY/wheels" $WHEELS
  python -m pip download --no-deps --only-binary=:all: -d "$CARRY/wheels" $WHEELS  # this machine's Python too
  cp "${CIFAR10:-../shared/data/cifar10-jpeg.tar.gz}" "$CARRY/cifar10-jpeg.tar.gz"
  du -sh "$CARRY"
  exit 0
fi

OUT=${OUT:-benchmarks/gpu_out}
mkdir -p "$OUT"
DATA=$CARRY/cifar10-jpeg.tar.gz
DEVICE=cuda
RUN=(trainer=gpu)
if [ "${GPU_CHECK_SMOKE:-0}" = 1 ]; then
  DEVICE=cpu
  RUN=(debug=smoke)
  DATA=${CIFAR10:-../shared/data/cifar10-jpeg.tar.gz}
else
  for wheel in $WHEELS; do  # only what is missing, from the carried wheels
    python -m pip install -q --no-index --find-links "$CARRY/wheels" --no-deps "$wheel" 2>/dev/null || true
  done
  python -m pip install -q --no-deps --no-build-isolation -e . || python -m pip install -q --no-deps -e .
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
fi
export PYTHONUNBUFFERED=1 LONGTAIL_LOGS=${LONGTAIL_LOGS:-logs}

STEPS=30
[ "${GPU_CHECK_SMOKE:-0}" = 1 ] && STEPS=2
timeout 150 python -m longtail.bench --device "$DEVICE" --root "$DATA" --steps "$STEPS" --repeats 2 --warmup 2 \
  --method erm,ldam_drw,balanced_softmax,crt,lws,ride,drolt,diffnet,bns,ipdpp --no-epoch-rss \
  --json "$OUT/gpu_bench.json" || echo "bench: stopped (exit $?)"

SWEEP=$LONGTAIL_LOGS/suites/cifar10_lt_x1.0$([ "${GPU_CHECK_SMOKE:-0}" = 1 ] && echo _smoke || true)
timeout 400 python -m longtail.run -m suite=cifar10_lt experiment=ce_cifar10,ldam_drw_cifar10 \
  seed=0 "datamodule.root=$DATA" hydra/launcher=local_parallel hydra.launcher.n_jobs=2 \
  trainer.enable_progress_bar=false "${RUN[@]}" > "$OUT/gpu_runs.log" 2>&1 || echo "runs: stopped (exit $?)"
python -m longtail.report "$SWEEP" --json "$OUT/gpu_table.json" | tee "$OUT/gpu_table.md"
