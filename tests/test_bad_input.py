"""Bad input is a clear error naming the problem and the fix."""

from __future__ import annotations

import pytest
import torch
from conftest import run
from fakedata import make_image_folder


def test_a_missing_data_root_names_the_path(tmp_path, monkeypatch):
    import urllib.error

    import torchvision

    def offline(*args, **kwargs):  # download=auto tries torchvision: fail as without network, never reach it
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    missing = tmp_path / "nowhere"
    with pytest.raises(Exception, match="nowhere") as err:
        run(["experiment=ce_cifar10", f"datamodule.root={missing}", "debug=smoke"], tmp_path / "run")
    assert "datamodule.root" in str(err.value) and "download" in str(err.value)


def test_an_imbalance_factor_below_one_is_refused(tmp_path):
    with pytest.raises(Exception, match="imbalance_factor must be >= 1"):
        run(["datamodule.imbalance_factor=0.5"], tmp_path)


def test_a_sampler_asking_for_more_classes_than_exist(tmp_path):
    with pytest.raises(Exception, match="20"):
        run(["sampler=class_aware", "sampler.num_classes=20", "trainer.max_epochs=1"], tmp_path)


def test_a_data_set_with_another_class_count_than_the_config(tmp_path):
    make_image_folder(tmp_path / "data", ["a", "b", "c"], per_class_train=4, per_class_test=2, size=8)
    with pytest.raises(ValueError, match="3 classes but the config expects 5"):
        run(["datamodule=image_folder", f"datamodule.root={tmp_path / 'data'}", "datamodule.num_classes=5"], tmp_path / "r")


@pytest.mark.slow
def test_a_checkpoint_from_another_model(tmp_path, digits_ce_run):
    _, first = digits_ce_run
    with pytest.raises(ValueError, match="different model"):
        run(["stage=crt", f"init_from={first['checkpoint']}", "model=resnet20", "stage.trainer.max_epochs=1"], tmp_path)


@pytest.mark.slow
def test_a_checkpoint_with_another_class_count(tmp_path, digits_ce_run):
    _, first = digits_ce_run
    make_image_folder(tmp_path / "data", ["a", "b", "c", "d"], per_class_train=4, per_class_test=2, size=8)
    overrides = ["datamodule=image_folder", f"datamodule.root={tmp_path / 'data'}", "datamodule.num_classes=4",
                 "datamodule.num_workers=0", "datamodule.image_size=8", "datamodule.resize=8", "model=resnet8",
                 "stage=crt", f"init_from={first['checkpoint']}"]
    with pytest.raises(ValueError, match="trained on 10 classes but this run has 4"):
        run(overrides, tmp_path / "run")


def test_a_file_that_is_not_a_longtail_checkpoint(tmp_path):
    bogus = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, bogus)
    with pytest.raises(ValueError, match="not a longtail checkpoint"):
        run(["stage=crt", f"init_from={bogus}"], tmp_path / "run")


def test_a_file_that_is_no_checkpoint_at_all_is_named(tmp_path):
    """Issue 17: `init_from=<a text file>` said only "invalid literal for int() with base 10: 'arbage'"."""
    notes = tmp_path / "notes.ckpt"
    notes.write_text("garbage\n")
    with pytest.raises(ValueError) as err:
        run([f"init_from={notes}", "trainer.max_epochs=1"], tmp_path / "run")
    assert str(err.value).startswith(f"'{notes}' is not a checkpoint"), str(err.value)
    assert not list((tmp_path / "run").rglob("*.ckpt"))
