"""Class weights reach the loss in every epoch (docs/methods/baselines.md §1, issue 11 item 1): static ``loss.weight``,
class-balanced CE / Focal from the first epoch, and DRW switching from the static weights to CB weights."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import real_cifar10, run
from lightning.pytorch.callbacks import Callback

from longtail.losses import class_balanced_weights

QUICK_SMOKE = ["debug=smoke", "debug.trainer.max_epochs=2", "debug.trainer.limit_train_batches=1",
               "debug.trainer.limit_val_batches=1", "debug.trainer.limit_test_batches=1"]


class RecordLossWeightValues(Callback):
    """Writes the loss's class weights (or null) at the first batch of every epoch to ``path``."""

    def __init__(self, path: str):
        self.path, self.weights = path, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            weight = pl_module.loss.weight
            self.weights.append(None if weight is None else weight.tolist())

    def on_train_end(self, trainer, pl_module):
        with open(self.path, "w") as f:
            json.dump(self.weights, f)


def _weights(tmp_path, overrides) -> tuple[list, dict]:
    record = tmp_path / "weights.json"
    results = run([*overrides, "+callbacks.weights._target_=test_class_weights_in_training.RecordLossWeightValues",
                   f"+callbacks.weights.path={record}"], tmp_path / "run")
    return json.loads(record.read_text()), results


@pytest.mark.slow
def test_a_static_loss_weight_is_used_in_every_epoch(tmp_path):
    weight = [float(c) for c in range(1, 11)]
    weights, _ = _weights(tmp_path, ["trainer.max_epochs=2", f"+loss.weight={weight}"])
    assert weights == [weight, weight]


@pytest.mark.slow
def test_drw_switches_from_the_static_weights_to_class_balanced_ones(tmp_path):
    weight = [1.0] * 9 + [5.0]
    weights, results = _weights(tmp_path, ["trainer.max_epochs=2", f"+loss.weight={weight}", "method.drw_start=1"])
    assert weights[0] == weight
    expected = class_balanced_weights(results["train_class_counts"], 0.9999)
    assert torch.allclose(torch.tensor(weights[1]), expected)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["cb_ce_cifar10", "cb_focal_cifar10"])
def test_class_balanced_experiments_weight_every_epoch(tmp_path, experiment):
    weights, results = _weights(tmp_path, [f"experiment={experiment}", "datamodule=digits_lt", "model=resnet8",
                                           "augment=digits", *QUICK_SMOKE])
    expected = class_balanced_weights(results["train_class_counts"], 0.9999)
    assert len(weights) == 2 and all(torch.allclose(torch.tensor(w), expected) for w in weights)


@pytest.mark.slow
@pytest.mark.skipif(real_cifar10() is None, reason="real CIFAR-10 not found: set LONGTAIL_CIFAR10 or place ../shared/data")
def test_cb_focal_cifar10_smoke_on_the_real_data_trains_with_its_weights(tmp_path):
    weights, results = _weights(tmp_path, ["experiment=cb_focal_cifar10", f"datamodule.root={real_cifar10()}",
                                           "model=resnet8", *QUICK_SMOKE])
    assert results["train_class_counts"][0] == 5000
    expected = class_balanced_weights(results["train_class_counts"], 0.9999)
    assert all(torch.allclose(torch.tensor(w), expected) for w in weights)
