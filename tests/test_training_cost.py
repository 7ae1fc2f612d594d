"""What a stage's training cost (images processed, seconds, parameters, GFLOPs per test image), in results.json."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import run

import longtail
from longtail.engine.callbacks import TrainingCost
from longtail.reporting.flops import gflops


def test_every_view_and_every_side_image_of_a_step_counts_on_every_process():
    cost, trainer = TrainingCost(), SimpleNamespace(world_size=2)
    views = (torch.zeros(8, 3, 4, 4), torch.zeros(8, 3, 4, 4))  # a two-view SimCLR batch (BNS)
    cost.on_train_batch_end(trainer, SimpleNamespace(side_images_in_step=0), None, (views, torch.zeros(8)), 0)
    assert cost.images == 2 * 16
    meta_step = SimpleNamespace(side_images_in_step=5)  # Difficulty-Net: a meta batch of 5 besides the batch
    cost.on_train_batch_end(trainer, meta_step, None, (torch.zeros(8, 3, 4, 4), torch.zeros(8)), 1)
    assert cost.images == 2 * 16 + 2 * (8 + 5)
    restored = TrainingCost()
    restored.load_state_dict(cost.state_dict())
    assert restored.images == cost.images


@pytest.mark.slow
def test_results_hold_the_stage_and_run_cost(tmp_path):
    results = run(["trainer.max_epochs=2", "+stage@stages.crt=crt", "stages.crt.trainer.max_epochs=1"], tmp_path)
    first = longtail.load(tmp_path / "train" / "checkpoints" / "last.ckpt")
    stage1 = json.loads((tmp_path / "train" / "results.json").read_text())
    assert stage1["train_images"] == 2 * sum(stage1["train_class_counts"]) and stage1["train_seconds"] > 0
    assert stage1["parameters"] == sum(p.numel() for p in first.network.parameters())
    image = torch.zeros(1, 1, 8, 8).contiguous(memory_format=torch.channels_last)
    assert stage1["test/gflops"] == pytest.approx(gflops(first.predict_logits, image))
    assert results["stage"] == "crt" and results["epochs"] == 1
    assert results["run/epochs"] == {"train": 2, "crt": 1}
    assert results["run/train_images"] == stage1["train_images"] + results["train_images"]
    assert results["run/train_seconds"] == pytest.approx(stage1["train_seconds"] + results["train_seconds"])


def test_the_cost_counts_every_epoch_trained_when_an_earlier_epoch_is_selected(tmp_path):
    """The test restores the selected checkpoint; the cost stays the whole fit's (mode=min selects epoch 0 here)."""
    run(["trainer.max_epochs=3", "callbacks.model_checkpoint.mode=min"], tmp_path)
    results = json.loads((tmp_path / "train" / "results.json").read_text())
    assert results["checkpoint"].endswith("epoch000.ckpt")
    assert results["train_images"] == 3 * sum(results["train_class_counts"])
