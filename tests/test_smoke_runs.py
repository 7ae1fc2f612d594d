"""`debug=smoke` runs every seed method's CIFAR-10 experiment end to end on the real data, each stage writing its
results.json (the README's one- to two-minute check: conf/debug/smoke.yaml caps the batches and steps of every
stage, BNS's 1024-image batches included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import compose_config, real_cifar10, run
from lightning.pytorch.callbacks import Callback

from longtail.engine.stages import stage_configs

EXPERIMENTS = ["drolt_cifar10", "ride_cifar10", "diffnet_cifar10", "ipdpp_cifar10"]


class RecordBatchSizes(Callback):
    """Appends the largest training batch of every stage that trains to ``path`` (one JSON number per line)."""

    def __init__(self, path: str):
        self.path, self.largest = Path(path), 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.largest = max(self.largest, len(batch[-1]))

    def on_train_end(self, trainer, pl_module):
        with self.path.open("a") as f:
            f.write(json.dumps(self.largest) + "\n")


@pytest.mark.slow
@pytest.mark.skipif(real_cifar10() is None, reason="real CIFAR-10 not found: set LONGTAIL_CIFAR10 or place ../shared/data")
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_smoke_run_writes_results_for_every_stage_with_capped_batches(experiment, tmp_path):
    overrides = [f"experiment={experiment}", f"datamodule.root={real_cifar10()}", "debug=smoke"]
    stages = [name for name, _ in stage_configs(compose_config(overrides))]
    record = tmp_path / "batches.jsonl"
    run([*overrides, "+callbacks.smoke_batches._target_=test_smoke_runs.RecordBatchSizes",
         f"+callbacks.smoke_batches.path={record}"], tmp_path)
    for stage in stages:
        assert (tmp_path / stage / "results.json").is_file(), stage
    largest = [json.loads(line) for line in record.read_text().splitlines()]
    assert largest and max(largest) <= compose_config(["debug=smoke"]).debug.datamodule.batch_size
