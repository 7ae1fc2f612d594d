"""Every data set family runs end to end with `debug=smoke`: real CIFAR-10, CIFAR-100 pickles, list files, folders."""

from __future__ import annotations

import pytest
from conftest import compose_config, real_cifar10, run
from fakedata import make_image_folder, make_list_dataset
from hydra.utils import instantiate

from longtail.data.imbalance import lt_counts

CIFAR10 = real_cifar10()
needs_cifar10 = pytest.mark.skipif(
    CIFAR10 is None, reason="real CIFAR-10 not found: set LONGTAIL_CIFAR10 or place ../shared/data/cifar10-jpeg.tar.gz"
)
SMALL_FILES = ["datamodule.num_workers=0", "datamodule.persistent_workers=false", "datamodule.pin_memory=false",
               "datamodule.image_size=32", "datamodule.resize=36", "datamodule.batch_size=8"]


@pytest.mark.slow
@needs_cifar10
def test_ce_cifar10_smoke_on_the_real_data(tmp_path):
    results = run(["experiment=ce_cifar10", f"datamodule.root={CIFAR10}", "debug=smoke"], tmp_path)
    assert results["train_class_counts"] == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert results["class_names"][0] == "airplane" and results["class_names"][-1] == "truck"
    assert results["selection"] == "last epoch" and (results["protocol"], results["val"]) == ("ldam", "none")
    assert 0.0 <= results["test/acc"] <= 1.0


@pytest.mark.slow
@needs_cifar10
def test_crt_cifar10_smoke_runs_both_stages(tmp_path):
    results = run(["experiment=crt_cifar10", f"datamodule.root={CIFAR10}", "debug=smoke"], tmp_path)
    assert results["stage"] == "crt"
    assert (tmp_path / "train" / "results.json").is_file() and (tmp_path / "crt" / "results.json").is_file()


@pytest.mark.slow
@needs_cifar10
def test_heldout_validation_on_cifar10_is_balanced_disjoint_and_changes_the_protocol():
    cfg = compose_config(["experiment=ce_cifar10", f"datamodule.root={CIFAR10}", "datamodule.val=heldout"])
    datamodule = instantiate(cfg.datamodule)
    datamodule.setup()
    assert datamodule.val_split.class_counts(10) == [25] * 10
    assert datamodule.class_counts == lt_counts(4975, 10, 100)
    assert not set(datamodule.val_split.ids.tolist()) & set(datamodule.train_split.ids.tolist())
    assert (datamodule.protocol, datamodule.val_mode) == ("ldam", "heldout")
    assert datamodule.test_split.class_counts(10) == [1000] * 10


@pytest.mark.slow
def test_ce_cifar100_smoke_on_files_in_the_real_pickle_layout(tmp_path, fake_cifar100):
    results = run(["experiment=ce_cifar100", f"datamodule.root={fake_cifar100}", "debug=smoke"], tmp_path / "run")
    assert sum(results["train_class_counts"]) == 10847
    assert len(results["test/acc_per_class"]) == 100


@pytest.mark.slow
def test_imagenet_lt_list_files_run_with_val_list_selection(tmp_path):
    make_list_dataset(tmp_path / "data", kind="imagenet_lt", counts=(12, 8, 5, 3, 2), val_per_class=2, test_per_class=2)
    results = run(["experiment=ce_imagenet_lt_resnet50", "model=resnet10", f"datamodule.root={tmp_path / 'data'}",
                   "datamodule.num_classes=5", *SMALL_FILES, "debug=smoke"], tmp_path / "run")
    assert results["train_class_counts"] == [12, 8, 5, 3, 2]
    assert results["selection"] == "best val/acc"


def test_places_lt_list_files_give_the_counts_they_list(tmp_path):
    make_list_dataset(tmp_path / "data", kind="places_lt", counts=(30, 10, 4), val_per_class=2, test_per_class=3)
    cfg = compose_config(["datamodule=places_lt", f"datamodule.root={tmp_path / 'data'}", "datamodule.num_classes=3"])
    datamodule = instantiate(cfg.datamodule)
    datamodule.setup()
    assert datamodule.class_counts == [30, 10, 4]
    assert datamodule.val_split.class_counts(3) == [2, 2, 2] and datamodule.test_split.class_counts(3) == [3, 3, 3]


@pytest.mark.slow
def test_any_image_folder_made_long_tailed_by_the_same_profile(tmp_path):
    make_image_folder(tmp_path / "data", ["a", "b", "c", "d"], per_class_train=40, per_class_test=5, size=16)
    results = run(["datamodule=image_folder", f"datamodule.root={tmp_path / 'data'}", "datamodule.num_classes=4",
                   "datamodule.imbalance_factor=8", "model=resnet8", *SMALL_FILES, "debug=smoke"], tmp_path / "run")
    assert results["train_class_counts"] == lt_counts(40, 4, 8) == [40, 20, 10, 5]
    assert results["class_names"] == ["a", "b", "c", "d"]
