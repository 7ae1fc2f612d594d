"""DRO-LT's three stages on the embedded digits, and its experiments in smoke mode."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import compose_config, direct_evaluation, read_results, real_cifar10, run
from fakedata import make_list_dataset
from hydra.utils import instantiate

import longtail
from longtail.losses import class_centroids

CIFAR10 = real_cifar10()
PLAIN_AUGMENT = ["augment.autoaugment=null", "augment.cutout=null", "augment.hflip=false", "augment.crop_padding=1"]
DROLT_DIGITS = [
    "trainer.max_epochs=2",
    "+stage@stages.robust=robust", "stages.robust.trainer.max_epochs=2",
    *(f"stages.robust.{o}" for o in PLAIN_AUGMENT),
    "+stage@stages.classifier=classifier", "stages.classifier.trainer.max_epochs=1",
    *(f"stages.classifier.{o}" for o in PLAIN_AUGMENT),
]


def state(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def part(state_dict: dict, prefix: str) -> dict:
    return {k: v for k, v in state_dict.items() if k.startswith(prefix)}


@pytest.mark.slow
def test_three_stages_freeze_what_the_spec_freezes(tmp_path):
    record = tmp_path / "refreshes.json"
    run([*DROLT_DIGITS, "+stages.robust.callbacks.record._target_=conftest.RecordAttribute",
         "+stages.robust.callbacks.record.name=centroid_refreshes", f"+stages.robust.callbacks.record.path={record}"],
        tmp_path)
    ce, robust, classifier = (state(read_results(tmp_path / s / "results.json")["checkpoint"])
                              for s in ("train", "robust", "classifier"))
    for key, value in part(ce, "network.head.").items():
        assert torch.equal(value, robust[key]), key
    assert any(not torch.equal(v, robust[k]) for k, v in part(ce, "network.backbone.").items())
    assert not torch.allclose(robust["epsilon_raw"], torch.ones_like(robust["epsilon_raw"]))
    backbone = part(robust, "network.backbone.")
    assert any("running_mean" in k for k in backbone)
    for key, value in backbone.items():
        assert torch.equal(value, classifier[key]), key
    assert not torch.equal(robust["network.head.weight"], classifier["network.head.weight"])
    assert json.loads(record.read_text()) == 2
    results = read_results(tmp_path / "robust" / "results.json")
    assert {"test/ncm_acc", "test/ncm_acc_many", "test/ncm_acc_medium", "test/ncm_acc_few"} <= set(results)
    assert results["drolt/epsilons"] == pytest.approx(robust["epsilon_raw"].tolist())
    assert (tmp_path / "robust" / "plots" / "epsilons.png").is_file()


def robust_model_on_digits(*overrides: str):
    """The robust stage's method and its set-up data module, with a stand-in trainer (no training)."""
    from longtail.engine.stages import stage_configs

    stage = dict(stage_configs(compose_config(["+stage@stages.robust=robust", *overrides])))["robust"]
    datamodule = instantiate(stage.datamodule)
    datamodule.setup()
    model = instantiate(stage.method, class_counts=datamodule.class_counts, class_names=datamodule.class_names)
    model.trainer = SimpleNamespace(datamodule=datamodule, current_epoch=0, training=False)
    return stage, datamodule, model


def test_centroids_are_the_per_class_means_of_eval_mode_features(tmp_path):
    _, datamodule, model = robust_model_on_digits("stages.robust.method.centroids=clean")
    model.train()
    model.refresh_centroids()
    assert model.training and model.centroid_refreshes == 1 and not model.centroids.requires_grad
    model.eval()
    with torch.no_grad():
        images = datamodule.batch_transforms()[1](datamodule.train_split.images)
        features = model.network.features(images)
    expected = torch.stack([features[datamodule.train_split.labels == c].mean(0) for c in range(10)])
    assert torch.allclose(model.centroids, expected, atol=1e-5)
    assert torch.allclose(class_centroids(features, datamodule.train_split.labels, 10), expected, atol=1e-6)


def test_nearest_class_mean_uses_centroids_of_un_augmented_training_features():
    """docs/methods/drolt.md §2: NCM scores against clean centroids even when training uses augmented ones."""
    stage, datamodule, model = robust_model_on_digits()
    assert stage.method.centroids == "augmented"
    model.on_validation_epoch_start()
    model.eval()
    with torch.no_grad():
        features = model.network.features(datamodule.batch_transforms()[1](datamodule.train_split.images))
    expected = class_centroids(features, datamodule.train_split.labels, 10)
    assert torch.allclose(model.ncm_centroids, expected, atol=1e-5)


@pytest.mark.slow
def test_the_robust_stage_runs_alone_from_a_checkpoint(tmp_path, digits_ce_run):
    _, first = digits_ce_run
    results = run(["stage=robust", f"init_from={first['checkpoint']}", "stage.trainer.max_epochs=1",
                   *(f"stage.{o}" for o in PLAIN_AUGMENT)], tmp_path)
    assert results["stage"] == "robust" and results["selection"] == "best val/ncm_acc"
    model = longtail.load(results["checkpoint"])
    assert model.epsilons.shape == (10,)


@pytest.mark.slow
def test_an_earlier_feature_layer_and_running_centroids(tmp_path, digits_ce_run):
    _, first = digits_ce_run
    results = run(["stage=robust", f"init_from={first['checkpoint']}", "stage.trainer.max_epochs=1",
                   "stage.method.feature_layer=network.backbone.layer2", "stage.method.centroids=running",
                   *(f"stage.{o}" for o in PLAIN_AUGMENT)], tmp_path)
    direct = direct_evaluation(results["checkpoint"], feature_layer="network.backbone.layer2")
    assert results["test/acc"] == pytest.approx(direct["acc"]) and results["test_images"] == direct["test_images"]
    assert results["test/ncm_acc"] == pytest.approx(direct["ncm_acc"])


@pytest.mark.slow
@pytest.mark.skipif(CIFAR10 is None, reason="real CIFAR-10 not found: set LONGTAIL_CIFAR10 or place ../shared/data")
def test_drolt_cifar10_smoke_on_the_real_data(tmp_path):
    results = run(["experiment=drolt_cifar10", f"datamodule.root={CIFAR10}", "debug=smoke",
                   "debug.trainer.max_epochs=1", "debug.trainer.limit_test_batches=1"], tmp_path)
    assert results["stage"] == "classifier"
    robust = read_results(tmp_path / "robust" / "results.json")
    direct = direct_evaluation(robust["checkpoint"], test_batches=1, train_batches=4)  # debug=smoke's limits
    assert direct["test_images"] == robust["test_images"] < 10_000  # debug=smoke tests a subset
    assert robust["test/acc"] == pytest.approx(direct["acc"]) and robust["test/ncm_acc"] == pytest.approx(
        direct["ncm_acc"])
    assert len(robust["drolt/epsilons"]) == 10


@pytest.mark.slow
def test_drolt_cifar100_smoke(tmp_path, fake_cifar100):
    results = run(["experiment=drolt_cifar100", f"datamodule.root={fake_cifar100}", "debug=smoke",
                   "debug.trainer.max_epochs=1", "debug.trainer.limit_train_batches=2",
                   "debug.trainer.limit_test_batches=1"], tmp_path)
    assert sum(results["train_class_counts"]) == 10847


@pytest.mark.slow
def test_drolt_imagenet_lt_smoke_on_list_files(tmp_path):
    make_list_dataset(tmp_path / "data", kind="imagenet_lt", counts=(10, 6, 4, 3, 2), val_per_class=2, test_per_class=2)
    results = run(["experiment=drolt_imagenet_lt", f"datamodule.root={tmp_path / 'data'}", "datamodule.num_classes=5",
                   "datamodule.num_workers=0", "datamodule.persistent_workers=false", "datamodule.image_size=32",
                   "datamodule.resize=36", "datamodule.batch_size=4", "debug=smoke", "trainer.limit_train_batches=2"],
                  tmp_path / "run")
    assert results["stage"] == "classifier"
