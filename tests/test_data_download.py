"""CIFAR's automatic download (``download=auto``) and every source's ``provenance`` — never touching the network:
torchvision's CIFAR classes are replaced by fakes that write fake pickles or fail as without network."""

from __future__ import annotations

import tarfile
import threading
import time
import urllib.error
from functools import partial
from pathlib import Path

import pytest
import torchvision
from conftest import compose_config
from fakedata import make_cifar_pickles, make_image_folder, make_list_dataset
from filelock import FileLock
from hydra.utils import instantiate

from longtail.data import lists
from longtail.data.cifar import CIFARSource, download_lock
from longtail.data.datamodule import LongTailDataModule
from longtail.data.digits import DigitsSource
from longtail.data.folder import ImageFolderSource

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


class FakeTorchvision:
    """Stands in for ``torchvision.datasets.CIFAR10/100``: records each call; with ``download=True`` writes fake
    pickles into ``root`` (as torchvision extracts the archive there) or raises ``error``."""

    def __init__(self, monkeypatch, num_classes: int, error: Exception | None = None, per_class_train: int = 5):
        self.calls: list[tuple[str, bool, bool]] = []
        fake = self

        class FakeCIFAR:
            def __init__(self, root, train=True, download=False, **kwargs):
                fake.calls.append((str(root), train, download))
                if download:
                    if error is not None:
                        Path(root).mkdir(parents=True, exist_ok=True)  # torchvision makes the root first
                        raise error
                    make_cifar_pickles(root, num_classes, per_class_train=per_class_train, per_class_test=2)

        monkeypatch.setattr(torchvision.datasets, f"CIFAR{num_classes}", FakeCIFAR)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Download locks go to the user's cache: a temporary one here."""
    monkeypatch.setenv("LONGTAIL_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def no_download(monkeypatch):
    """Both CIFAR classes fail the test if constructed at all."""
    fakes = {n: FakeTorchvision(monkeypatch, n, error=AssertionError("torchvision must not be called")) for n in (10, 100)}
    yield fakes
    assert not fakes[10].calls and not fakes[100].calls, "torchvision was called although it must not be"


# ----------------------------------------------------------------------------- download=auto


def test_auto_downloads_the_pickles_when_nothing_is_found(tmp_path, monkeypatch):
    fake = FakeTorchvision(monkeypatch, 100)
    root = tmp_path / "data" / "cifar100"  # neither it nor its parent exists yet
    source = CIFARSource(root=root, num_classes=100)  # download defaults to auto
    assert fake.calls and all(call[0] == str(root) and call[2] for call in fake.calls)
    assert source.pickle_dir == root / "cifar-100-python"
    assert source.load("train").class_counts(100) == [5] * 100 and len(source.load("test")) == 200
    assert source.provenance == f"CIFAR-100 torchvision pickles at {(root / 'cifar-100-python').resolve()} (canonical order)"
    # found the second time: no download
    fake.calls.clear()
    CIFARSource(root=root, num_classes=100)
    assert fake.calls == []


def test_auto_download_through_the_config_lands_in_the_data_dir(tmp_path, monkeypatch):
    fake = FakeTorchvision(monkeypatch, 100, per_class_train=20)
    cfg = compose_config(["datamodule=cifar100_lt", f"paths.data_dir={tmp_path}", "datamodule.imbalance_factor=10"])
    assert cfg.datamodule.source.download == "auto"
    dm = instantiate(cfg.datamodule)
    dm.setup("fit")
    assert [call[0] for call in fake.calls] == [str(tmp_path / "cifar100")]
    assert (tmp_path / "cifar100" / "cifar-100-python" / "train").is_file()
    assert dm.class_counts[0] == 20 and dm.class_counts[-1] == 2
    assert dm.data_source == dm.source.provenance and "canonical order" in dm.data_source
    assert str((tmp_path / "cifar100").resolve()) in dm.data_source


def test_offline_auto_download_fails_fast_with_the_clear_message(tmp_path, monkeypatch):
    fake = FakeTorchvision(monkeypatch, 10, error=urllib.error.URLError("no network"))
    root = tmp_path / "data" / "cifar10"
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as err:
        CIFARSource(root, num_classes=10)
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert len(fake.calls) == 1
    assert str(root) in message and "cifar-10-batches-py" in message
    assert "downloading it with torchvision failed" in message and "no network" in message and "offline?" in message
    assert "datamodule.root" in message and CIFAR_URL in message
    assert "download=true" not in message, "auto already tried: don't suggest it as the fix"
    assert not (tmp_path / "data").exists(), "a failed download leaves no empty folder behind"


def test_download_false_never_downloads_and_keeps_the_message(tmp_path, no_download):
    with pytest.raises(FileNotFoundError) as err:
        CIFARSource(tmp_path / "nowhere", num_classes=100, download=False)
    message = str(err.value)
    assert "'" + str(tmp_path / "nowhere") + "' does not exist" in message
    assert "datamodule.source.download=true" in message and "datamodule.root" in message and CIFAR_URL in message
    assert "failed" not in message


def test_download_accepts_only_auto_true_false(tmp_path, no_download):
    for bad in ("yes", "true", "Auto", 1):
        with pytest.raises(ValueError, match=r"datamodule\.source\.download must be one of auto, true, false"):
            CIFARSource(tmp_path, num_classes=10, download=bad)


def test_download_true_asks_torchvision_first(tmp_path, monkeypatch):
    fake = FakeTorchvision(monkeypatch, 10)
    make_cifar_pickles(tmp_path, 10, per_class_train=2, per_class_test=1)
    CIFARSource(tmp_path, num_classes=10, download=True)
    assert fake.calls and fake.calls[0] == (str(tmp_path), False, True)


# ----------------------------------------------------------------------------- data present: never downloaded over


def _tree(root, per_class_train=2):
    make_image_folder(root, [f"c{i}" for i in range(10)], per_class_train=per_class_train, per_class_test=1, size=32)


def test_present_data_is_used_not_downloaded(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("LONGTAIL_CACHE_DIR", str(tmp_path / "cache"))
    make_cifar_pickles(tmp_path / "pickles", 10, per_class_train=2, per_class_test=1)
    assert "canonical order" in CIFARSource(tmp_path / "pickles", num_classes=10).provenance
    # an image-folder tree
    _tree(tmp_path / "tree")
    tree = CIFARSource(tmp_path / "tree", num_classes=10)
    assert tree.tree is not None and len(tree.load("train")) == 20
    assert tree.provenance.startswith(f"CIFAR-10 image folder {(tmp_path / 'tree').resolve()}: files sorted by name")
    assert "not known to be the original pickles'" in tree.provenance and "published numbers" in tree.provenance
    # a tarball of it, as root or as the one archive in root
    archive = tmp_path / "tarball" / "cifar10-jpeg.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(tmp_path / "tree" / split, arcname=split)
    for root in (archive, archive.parent):
        source = CIFARSource(root, num_classes=10)
        assert source.tree is not None and len(source.load("test")) == 10
        assert str(archive.resolve()) in source.provenance and "not known to be the original" in source.provenance
    assert sorted(p.name for p in archive.parent.iterdir()) == ["cifar10-jpeg.tar.gz"]
    # a missing tarball is not a place to download pickles into; a broken tree is not downloaded over
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CIFARSource(tmp_path / "elsewhere" / "cifar10-jpeg.tar.gz", num_classes=10)
    make_image_folder(tmp_path / "half" / "train", ["a"], per_class_train=1, per_class_test=0)
    with pytest.raises(FileNotFoundError, match="test/' does not"):
        CIFARSource(tmp_path / "half", num_classes=10)


def test_concurrent_processes_wait_for_the_one_downloading(tmp_path, monkeypatch):
    """A second process finds the lock held, waits, and then uses what the first one downloaded."""
    fake = FakeTorchvision(monkeypatch, 100, error=AssertionError("the waiting process must not download"))
    monkeypatch.setenv("LONGTAIL_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "cifar100"
    lock_path = download_lock(root.absolute())
    assert lock_path.parent == tmp_path / "cache"  # not in the data folder
    lock_path.parent.mkdir(parents=True)
    lock = FileLock(str(lock_path))
    lock.acquire()  # "the other process", downloading
    found = {}

    def second():
        try:
            found["source"] = CIFARSource(root, num_classes=100)
        except BaseException as err:  # noqa: BLE001 - reported below
            found["error"] = err

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive(), "the second process did not wait for the lock"
    make_cifar_pickles(root, 100, per_class_train=2, per_class_test=1)
    lock.release()
    thread.join(10)
    assert "error" not in found, found.get("error")
    assert found["source"].pickle_dir == root / "cifar-100-python" and fake.calls == []


# ----------------------------------------------------------------------------- provenance of the other sources


def test_provenance_of_digits_lists_and_folders(tmp_path, monkeypatch):
    digits = DigitsSource()
    assert "load_digits" in digits.provenance and "original order" in digits.provenance
    dm = LongTailDataModule(DigitsSource, num_classes=10, channels=1, imbalance_factor=10)
    assert dm.data_source == dm.source.provenance == digits.provenance

    paths = make_list_dataset(tmp_path / "places", "places_lt", write_images=False)
    places = lists.places_lt(tmp_path / "places", num_classes=5)
    folder = str((tmp_path / "places").resolve())
    assert places.provenance.startswith(f"Places-LT list files at {folder}")
    assert "not the official split" in places.provenance  # fake lists: their MD5 differs from the published
    monkeypatch.setattr(lists, "KNOWN_MD5", {p.name: lists.list_md5(p) for p in paths.values()})
    official = lists.places_lt(tmp_path / "places", num_classes=5).provenance
    assert official.startswith(f"Places-LT official list files at {folder}") and "matches the published" in official

    _tree(tmp_path / "tree", per_class_train=[3, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    folder_source = ImageFolderSource(tmp_path / "tree")
    assert folder_source.provenance.startswith(f"image folder {(tmp_path / 'tree').resolve()}")
    assert "sorted by name" in folder_source.provenance
    dm = LongTailDataModule(partial(ImageFolderSource, in_memory=True), num_classes=10, root=str(tmp_path / "tree"))
    assert dm.data_source == dm.source.provenance and "decoded in memory" in dm.data_source


def test_a_source_without_provenance_is_still_named(tmp_path):
    class Custom(DigitsSource):  # a user's own source: no provenance attribute
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            del self.provenance

    dm = LongTailDataModule(Custom, num_classes=10, channels=1)
    assert "records no provenance" in dm.data_source and "Custom" in dm.data_source
