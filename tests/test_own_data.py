"""Issue 19, item 2: any recipe on your own image folder, with nothing but ``datamodule=image_folder
datamodule.root=<folder>`` (README "Your own data"): the class count, the image size and RIDE's ``top_k``
follow the data, and a configured class count that disagrees is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from hydra.utils import instantiate
from PIL import Image

import longtail
from longtail.data.augment import BatchAugment
from longtail.data.folder import ImageFolderSource, folder_class_count
from longtail.data.splits import ArraySplit, FileSplit
from longtail.models.router import ExpertRouter

CLASSES = {"ant": 100, "bee": 50, "cat": 25, "dog": 12}  # long-tailed train counts, 187 images
TEST_PER_CLASS = 10


def write_folder(root: Path, counts: dict[str, int], test_per_class: int, size: int = 32) -> Path:
    """``root/train/<class>/NNNN.png`` (``counts`` images per class) and ``root/test/<class>/`` of random
    ``size``-px RGB PNGs."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", counts), ("test", dict.fromkeys(counts, test_per_class))):
        for name, n in per_class.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("own") / "images", CLASSES, TEST_PER_CLASS)


def own_data(experiment: str, root: Path, *extra: str):
    return compose_config([f"experiment={experiment}", "datamodule=image_folder", f"datamodule.root={root}",
                           "debug=smoke", *extra])


@pytest.mark.parametrize("experiment", ["drolt_cifar10", "ride_cifar10"])
def test_the_class_count_comes_from_the_folder(folder, experiment):
    cfg = own_data(experiment, folder)
    assert folder_class_count(folder) == 4
    assert cfg.datamodule.num_classes == 4 and cfg.model.num_classes == 4


def test_empty_and_hidden_class_folders_do_not_count(tmp_path):
    root = write_folder(tmp_path / "images", {"a": 2, "b": 2}, 1, size=8)
    (root / "train" / "empty").mkdir()
    (root / "train" / ".hidden").mkdir()
    Image.new("RGB", (8, 8)).save(root / "train" / ".hidden" / "x.png")
    assert folder_class_count(root) == len(ImageFolderSource(root).class_names) == 2


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="datamodule.root=PATH"):
        folder_class_count(tmp_path / "nowhere")


def test_a_class_count_that_disagrees_with_the_folder_is_refused(folder):
    with pytest.raises(ValueError, match=r"has 4 classes but the config expects 5 \(datamodule.num_classes=5\)"):
        ImageFolderSource(folder, num_classes=5)
    datamodule = instantiate(own_data("ride_cifar10", folder, "datamodule.num_classes=3").datamodule)
    with pytest.raises(ValueError, match="has 4 classes but the config expects 3") as refused:
        datamodule.setup("fit")
    assert "Leave datamodule.num_classes out" in str(refused.value)


def test_a_cifar_datamodule_on_your_folder_names_the_image_folder_option(folder):
    """Forgetting ``datamodule=image_folder``: the message names options that exist (no ``cifar4_lt``)."""
    from longtail.data.cifar import CIFARSource

    with pytest.raises(ValueError, match="holds 4 classes but num_classes=10") as refused:
        CIFARSource(folder, num_classes=10, download=False)
    assert "datamodule=image_folder" in str(refused.value) and "cifar4_lt" not in str(refused.value)


def test_a_cifar_recipe_on_small_images_gets_32_px_cifar_transforms(folder):
    datamodule = instantiate(own_data("drolt_cifar10", folder).datamodule)
    datamodule.setup("fit")
    assert isinstance(datamodule.train_split, ArraySplit)
    assert datamodule.train_split.images.shape[1:] == (3, 32, 32)
    assert datamodule.class_counts == list(CLASSES.values())
    images, _ = next(iter(datamodule.train_dataloader()))
    train, _ = datamodule.batch_transforms()
    assert isinstance(train, BatchAugment) and train(images).shape[1:] == (3, 32, 32)
    assert str(folder.resolve()) in datamodule.data_source and "32x32" in datamodule.data_source


def test_large_images_keep_the_imagenet_style_pipeline(tmp_path):
    root = write_folder(tmp_path / "large", {"a": 2, "b": 2}, 1, size=96)
    datamodule = instantiate(own_data("ce_cifar10", root, "datamodule.num_workers=0").datamodule)
    datamodule.setup("fit")
    assert isinstance(datamodule.train_split, FileSplit) and "per image" in datamodule.data_source
    images, _ = next(iter(datamodule.test_dataloader()))
    assert images.shape[1:] == (3, 224, 224)


def test_the_router_reads_at_most_as_many_logits_as_there_are_classes():
    assert ExpertRouter(num_experts=3, feature_dim=8, num_classes=4, top_k=10).top_k == 4
    assert ExpertRouter(num_experts=3, feature_dim=8, num_classes=100, top_k=30).top_k == 30
    router = ExpertRouter(num_experts=3, feature_dim=8, num_classes=4, top_k=10)
    logits, features = torch.randn(3, 5, 4), torch.randn(3, 5, 8)
    assert router.train_scores(logits, features).shape == (2, 5)
    with pytest.raises(ValueError, match="top_k to 1 or more"):
        ExpertRouter(num_experts=3, feature_dim=8, num_classes=4, top_k=0)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["drolt_cifar10", "ride_cifar10"])
def test_any_recipe_runs_on_your_own_folder(folder, tmp_path, experiment):
    """The README's command as the user types it, in a fresh folder (the run goes to ./logs)."""
    command = [sys.executable, "-m", "longtail.run", f"experiment={experiment}", "datamodule=image_folder",
               f"datamodule.root={folder}", "debug=smoke"]
    start = time.monotonic()
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    seconds = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(next((tmp_path / "logs" / "runs" / experiment).glob("*/results.json")).read_text())
    assert results["class_names"] == sorted(CLASSES) and len(results["train_class_counts"]) == 4
    assert str(folder.resolve()) in results["data_source"] and "32x32" in results["data_source"]
    datamodule = longtail.load_datamodule(results["checkpoint"])
    datamodule.setup("test")
    images, _ = next(iter(datamodule.test_dataloader()))
    assert images.shape[1:] == (3, 32, 32)
    assert seconds < 180, f"{experiment} took {seconds:.0f} s on your own folder"
