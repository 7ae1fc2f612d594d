"""Difficulty-Net's data protocol (docs/methods/diffnet.md §1, §8 "Split"): held-out / meta set and the un-shuffled long tail."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from conftest import real_cifar10
from fakedata import make_list_dataset

from longtail.data import lists
from longtail.data.cifar import CIFARSource
from longtail.data.datamodule import LongTailDataModule
from longtail.data.digits import DigitsSource
from longtail.data.imbalance import lt_counts

CIFAR10 = real_cifar10()
# docs/methods/diffnet.md §1: total (min class) per imbalance factor, n' = 475 (CIFAR-100) and 4,975 (CIFAR-10)
TOTALS = {
    (100, 10): (18591, 47), (100, 20): (15111, 23), (100, 50): (11975, 9), (100, 100): (10302, 4),
    (100, 200): (9022, 2), (10, 10): (20327, 497), (10, 20): (16936, 248), (10, 50): (13926, 99),
    (10, 100): (12341, 49), (10, 200): (11145, 24),
}


@pytest.mark.parametrize("num_classes,imbalance", sorted(TOTALS))
def test_the_protocol_counts_give_the_published_totals(num_classes, imbalance):
    counts = lt_counts(50000 // num_classes - 25, num_classes, imbalance)
    assert (sum(counts), min(counts)) == TOTALS[num_classes, imbalance]


def cifar(root, num_classes, **kwargs) -> LongTailDataModule:
    dm = LongTailDataModule(partial(CIFARSource, num_classes=num_classes), num_classes, root=str(root),
                            imbalance_factor=100, protocol="diffnet", val="heldout", **kwargs)
    dm.setup()
    return dm


def assert_protocol_indices(dm: LongTailDataModule, labels: torch.Tensor) -> None:
    """Held-out = the last 25 file-order images of each class; train = the first n_c of the rest."""
    held, train = dm.val_split, dm.train_split
    assert sorted(dm.meta_split.ids.tolist()) == sorted(held.ids.tolist()) and dm.protocol == "diffnet"
    assert not set(held.ids.tolist()) & set(train.ids.tolist())
    for c in range(dm.num_classes):
        in_file_order = torch.nonzero(labels == c).flatten()
        assert sorted(held.ids[held.labels == c].tolist()) == in_file_order[-25:].tolist()
        n_c = dm.class_counts[c]
        assert train.ids[train.labels == c].tolist() == in_file_order[:n_c].tolist()


@pytest.mark.slow
def test_cifar100_protocol_on_pickles(fake_cifar100):
    dm = cifar(fake_cifar100, 100)
    assert (sum(dm.class_counts), min(dm.class_counts), len(dm.val_split)) == (10302, 4, 2500)
    assert_protocol_indices(dm, CIFARSource(fake_cifar100, num_classes=100).load("train").labels)


@pytest.mark.slow
@pytest.mark.skipif(CIFAR10 is None, reason="real CIFAR-10 not found: set LONGTAIL_CIFAR10 or place ../shared/data")
def test_cifar10_protocol_on_the_real_data():
    dm = cifar(CIFAR10, 10)
    assert dm.class_counts == [4975, 2982, 1787, 1071, 642, 385, 230, 138, 82, 49]
    assert len(dm.val_split) == 250 and len(dm.test_split) == 10000
    assert_protocol_indices(dm, CIFARSource(CIFAR10, num_classes=10).load("train").labels)


def test_list_data_sets_draw_a_seeded_meta_set_from_the_val_list(tmp_path):
    make_list_dataset(tmp_path, kind="imagenet_lt", counts=(30, 20, 12), val_per_class=14, test_per_class=2,
                      write_images=False)

    def module(seed):
        dm = LongTailDataModule(partial(lists.imagenet_lt, num_classes=3, check_files=False), 3, root=str(tmp_path),
                                protocol="diffnet", val="source", subset_seed=seed)
        dm.setup()
        return dm

    dm = module(0)
    assert dm.class_counts == [30, 20, 12] and len(dm.val_split) == 42
    assert dm.meta_split.class_counts(3) == [10, 10, 10]
    assert set(dm.meta_split.paths) <= set(dm.val_split.paths)
    assert module(0).meta_split.paths == dm.meta_split.paths
    assert module(1).meta_split.paths != dm.meta_split.paths


def test_a_data_set_without_file_order_or_val_list_is_refused(tmp_path):
    make_list_dataset(tmp_path, kind="inat2018", counts=(30, 20, 12), write_images=False)
    dm = LongTailDataModule(partial(lists.inat2018, num_classes=3, check_files=False), 3, root=str(tmp_path), protocol="diffnet",
                            val="source")
    with pytest.raises(ValueError, match="file order .* or an official val list"):
        dm.setup()


def test_a_class_too_small_to_hold_out_25_images_is_refused():
    dm = LongTailDataModule(partial(DigitsSource, test_per_class=30, val_per_class=130), 10, channels=1,
                            protocol="diffnet", val="heldout")
    with pytest.raises(ValueError, match=r"needs at least 25 \+ 1"):
        dm.setup()


def test_meta_batches_are_balanced_set_batches_of_the_configured_size():
    dm = LongTailDataModule(DigitsSource, 10, channels=1, imbalance_factor=10, protocol="diffnet", val="heldout",
                            meta_batch_size=100)
    dm.setup()
    batches = list(dm.meta_dataloader(epoch=0))
    assert [len(b[1]) for b in batches] == [100, 100, 50]
    labels = torch.cat([b[1] for b in batches])
    assert np.bincount(labels.numpy()).tolist() == [25] * 10
    assert not torch.equal(labels, torch.cat([b[1] for b in dm.meta_dataloader(epoch=1)]))


def test_under_the_standard_protocol_the_held_out_set_is_the_meta_set_too():
    """One split for every method (issue 18): with val=heldout, Difficulty-Net's meta and accuracy sets are the
    held-out validation images, none of them trained on; without a held-out set a clear error says what to set."""
    dm = LongTailDataModule(DigitsSource, 10, channels=1, imbalance_factor=10, val="heldout", val_per_class=10)
    dm.setup()
    def images(split):
        return sorted(img.numpy().tobytes() for img in split.images)

    assert images(dm.meta_split) == images(dm.val_split) and (dm.protocol, dm.val_mode) == ("ldam", "heldout")
    labels = torch.cat([y for _, y in dm.meta_eval_dataloader()])
    assert np.bincount(labels.numpy()).tolist() == [10] * 10
    assert not set(images(dm.meta_split)) & set(images(dm.train_split))
    without = LongTailDataModule(DigitsSource, 10, channels=1, imbalance_factor=10, val="source")
    without.setup()
    with pytest.raises(ValueError, match="set datamodule.protocol=diffnet .* or datamodule.val=heldout"):
        without.meta_dataloader()
