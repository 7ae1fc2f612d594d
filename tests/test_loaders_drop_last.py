"""``datamodule.drop_last`` drops the last incomplete training batch for every data source, and only in training.

BNS pretraining (conf/stage/bns.yaml: batch 1024, ``drop_last: true``) needs full contrastive batches whatever
the data: in-memory arrays (digits, CIFAR, small image folders), per-image files (large image folders) and
list files (ImageNet-LT, Places-LT, iNaturalist). Each source here is a tiny generated data set whose training
split does not divide by the batch size.
"""

from __future__ import annotations

from functools import partial

import pytest
from fakedata import make_cifar_pickles, make_image_folder, make_list_dataset

from longtail.data.cifar import CIFARSource
from longtail.data.datamodule import LongTailDataModule
from longtail.data.digits import DigitsSource
from longtail.data.folder import ImageFolderSource
from longtail.data.lists import places_lt
from longtail.data.splits import ArraySplit, FileSplit

SOURCES = ("digits", "cifar", "folder_in_memory", "folder_files", "list_files")


def _source(kind: str, root) -> tuple:
    """(source partial, root, class count, split type) of a tiny data set of ``kind`` written under ``root``."""
    if kind == "digits":
        return partial(DigitsSource, val_per_class=2, test_per_class=5), None, 10, ArraySplit
    if kind == "cifar":
        make_cifar_pickles(root, num_classes=10, per_class_train=5, per_class_test=2)
        return partial(CIFARSource, num_classes=10, download=False), root, 10, ArraySplit
    if kind.startswith("folder"):
        make_image_folder(root, ["a", "b", "c"], per_class_train=[9, 7, 5], per_class_test=2, size=8)
        in_memory = kind == "folder_in_memory"
        return partial(ImageFolderSource, in_memory=in_memory), root, 3, ArraySplit if in_memory else FileSplit
    make_list_dataset(root, kind="places_lt", counts=(9, 7, 5), val_per_class=2, test_per_class=2, size=8)
    return partial(places_lt, num_classes=3), root, 3, FileSplit


def datamodule(kind: str, root, drop_last: bool) -> tuple[LongTailDataModule, int]:
    """A set-up data module of ``kind`` and a batch size that does not divide its training split."""
    source, root, num_classes, split_type = _source(kind, root)
    channels = 1 if kind == "digits" else 3
    val = "source" if kind in ("digits", "list_files") else "none"
    module = LongTailDataModule(source=source, root=None if root is None else str(root), num_classes=num_classes,
                                val=val, channels=channels, mean=[0.5] * channels, std=[0.5] * channels, image_size=8,
                                resize=8, pin_memory=False, drop_last=drop_last, eval_batch_size=4)
    module.setup("fit")
    assert isinstance(module.train_split, split_type), f"{kind}: expected a {split_type.__name__}"
    size = len(module.train_split)
    module.batch_size = next(b for b in range(4, size) if size % b)
    return module, size


def batch_sizes(loader) -> list[int]:
    """How many images each batch of ``loader`` holds (labels are the batch's second item on every path)."""
    return [len(batch[1]) for batch in loader]


@pytest.mark.parametrize("kind", SOURCES)
def test_every_training_batch_is_full_with_drop_last(tmp_path, kind):
    module, size = datamodule(kind, tmp_path / "data", drop_last=True)
    sizes = batch_sizes(module.train_dataloader())
    assert sizes == [module.batch_size] * (size // module.batch_size), f"{kind}: training batches {sizes}"


@pytest.mark.parametrize("kind", SOURCES)
def test_the_last_training_batch_is_short_without_drop_last(tmp_path, kind):
    module, size = datamodule(kind, tmp_path / "data", drop_last=False)
    sizes = batch_sizes(module.train_dataloader())
    assert sizes[:-1] == [module.batch_size] * (len(sizes) - 1) and sizes[-1] == size % module.batch_size, sizes
    assert sum(sizes) == size


@pytest.mark.parametrize("kind", ("digits", "list_files"))
def test_evaluation_loaders_keep_every_image_with_drop_last(tmp_path, kind):
    """drop_last is the training loader's: validation, test and the un-augmented training pass see every image."""
    module, size = datamodule(kind, tmp_path / "data", drop_last=True)
    assert sum(batch_sizes(module.test_dataloader())) == len(module.test_split)
    assert sum(batch_sizes(module.val_dataloader())) == len(module.val_split)
    assert sum(batch_sizes(module.train_eval_dataloader())) == size
