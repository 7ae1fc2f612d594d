"""Post-hoc logit adjustment (docs/methods/baselines.md §3): no training, z_c - tau log pi_c on the CE stage's model,
tau picked on the validation split from a grid and never on the test set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import compose_config, read_results, run
from lightning.pytorch.callbacks import Callback

import longtail
from longtail.engine.stages import stage_configs
from longtail.methods.decouple import PosthocLogitAdjustment
from longtail.models import Network
from longtail.models.registry import create_backbone

GRID = [0.25 * i for i in range(13)]


class RecordTauAroundTest(Callback):
    """Writes, for a stage that selects tau, its tau and how often its sweep was updated, before and after the test
    pass: the test pass must change neither."""

    def __init__(self, path: str):
        self.path, self.record = Path(path), {}

    def snapshot(self, pl_module) -> dict:
        return {"tau": pl_module.tau, "sweep_updates": [m._update_count for m in pl_module.sweep]}

    def on_test_start(self, trainer, pl_module):
        if isinstance(pl_module, PosthocLogitAdjustment):
            self.record["before"] = self.snapshot(pl_module)

    def on_test_end(self, trainer, pl_module):
        if isinstance(pl_module, PosthocLogitAdjustment):
            self.record["after"] = self.snapshot(pl_module)
            self.path.write_text(json.dumps(self.record))


@pytest.fixture(scope="module")
def posthoc_run(tmp_path_factory):
    """The embedded digits default (CE, 2 epochs, a validation split) and a posthoc_la stage from it."""
    out = tmp_path_factory.mktemp("posthoc_la")
    record = out / "record.json"
    run(["trainer.max_epochs=2", "+stage@stages.posthoc_la=posthoc_la", "+stages.posthoc_la.init_stage=train",
         "+callbacks.record._target_=test_posthoc_la.RecordTauAroundTest", f"+callbacks.record.path={record}"], out)
    ce = read_results(out / "train" / "results.json")["checkpoint"]
    results = read_results(out / "posthoc_la" / "results.json")
    return longtail.load(ce).eval(), longtail.load(results["checkpoint"]).eval(), results, json.loads(record.read_text())


def val_batches(checkpoint: str):
    """The validation split's images (eval transform) and labels, as the stage's validation pass sees them."""
    datamodule = longtail.load_datamodule(checkpoint, stage="fit")
    transform = datamodule.batch_transforms()[1]
    images, labels = zip(*[(transform(x), y) for x, y in datamodule.val_dataloader()])
    return torch.cat(images), torch.cat(labels)


def balanced_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean per-class accuracy (the sweep's score)."""
    hits = logits.argmax(1) == labels
    return torch.stack([hits[labels == c].float().mean() for c in labels.unique()]).mean().item()


@pytest.mark.slow
def test_the_chosen_tau_maximises_validation_accuracy_over_the_grid(posthoc_run):
    _, posthoc, results, _ = posthoc_run
    assert posthoc.taus == GRID and results["epochs"] == 0
    images, labels = val_batches(results["checkpoint"])
    with torch.no_grad():
        features = posthoc.network.features(posthoc.to_memory_format(images))
        scores = [balanced_accuracy(posthoc.logits_at(features, tau), labels) for tau in GRID]
    best = max(scores)
    assert posthoc.tau == GRID[next(i for i, s in enumerate(scores) if s >= best - 1e-9)]  # the first best
    assert results["val/tau"] == posthoc.tau


@pytest.mark.slow
def test_tau_zero_gives_the_ce_models_logits_exactly(posthoc_run):
    ce, posthoc, results, _ = posthoc_run
    posthoc = longtail.load(results["checkpoint"]).eval()  # a copy: this test changes its tau
    images = torch.rand(16, 1, 8, 8)
    chosen = posthoc.tau
    with torch.no_grad():
        z = ce.predict_logits(images)
        adjusted = posthoc.predict_logits(images)
        at_zero = posthoc.logits_at(posthoc.network.features(posthoc.to_memory_format(images)), 0.0)
        posthoc.tau = 0.0
        plain = posthoc.predict_logits(images)
    assert torch.equal(plain, z) and torch.equal(at_zero, z)
    prior = torch.tensor(posthoc.class_counts, dtype=torch.float64)
    expected = z.double() - chosen * (prior / prior.sum()).log()  # z_c - tau log pi_c at the chosen tau
    torch.testing.assert_close(adjusted.double(), expected, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_the_test_pass_neither_selects_nor_changes_tau(posthoc_run):
    _, posthoc, results, record = posthoc_run
    assert record["before"] == record["after"]
    assert record["after"]["tau"] == posthoc.tau == results["val/tau"]


def tiny_model() -> PosthocLogitAdjustment:
    return PosthocLogitAdjustment(Network(create_backbone("resnet8", in_channels=1), "linear", 3), class_counts=[8, 4, 2])


def test_without_a_validation_split_tau_is_one():
    model = tiny_model()
    assert model.tau == 1.0 and model.taus == GRID and not model.requires_training and model.needs_init
    assert not any(p.requires_grad for p in model.parameters())


def test_the_chosen_tau_travels_with_the_checkpoint():
    model, checkpoint = tiny_model(), {}
    model.tau = 2.25
    model.on_save_checkpoint(checkpoint)
    restored = tiny_model()
    restored.on_load_checkpoint(checkpoint)
    assert restored.tau == restored.posthoc_tau == 2.25


@pytest.mark.parametrize("data", ["10", "100"])
def test_decouple_experiments_run_posthoc_la_from_the_ce_stage(data):
    cfg = compose_config([f"experiment=decouple_cifar{data}"])
    stage = dict(stage_configs(cfg))["posthoc_la"]
    assert stage.init_stage == "train"
    assert stage.method._target_ == "longtail.methods.decouple.PosthocLogitAdjustment"
    rows = {row.stage: row for row in cfg.table_rows}
    assert rows["posthoc_la"].label == "Logit adjustment (post-hoc)" and rows["posthoc_la"].published is None
