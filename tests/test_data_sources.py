"""Data sources and the LDAM long-tail construction (docs/methods/README.md §2, §3, §6)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from fakedata import CIFAR10_CLASSES, make_cifar_pickles, make_image_folder, make_list_dataset
from PIL import Image

from longtail.data import cache as cache_module
from longtail.data.cifar import CIFARSource
from longtail.data.decode import FileImageDataset
from longtail.data.digits import DigitsSource
from longtail.data.folder import ImageFolderSource
from longtail.data.imbalance import heldout_split, lt_counts, lt_subsample
from longtail.data.lists import ListSource, imagenet_lt, inat2018, places_lt, read_list
from longtail.data.splits import ArraySplit, FileSplit

GOLDEN = Path(__file__).parent / "golden" / "lt_class_counts.json"

CIFAR10_COUNTS = {
    10: [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500],
    50: [5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100],
    100: [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50],
    200: [5000, 2775, 1540, 854, 474, 263, 146, 81, 45, 25],
}
CIFAR_TOTALS = {10: {10: 20431, 50: 13996, 100: 12406, 200: 11203}, 100: {10: 19573, 50: 12608, 100: 10847, 200: 9502}}
CIFAR100_IF100 = [
    500, 477, 455, 434, 415, 396, 378, 361, 344, 328, 314, 299, 286, 273, 260, 248, 237, 226, 216, 206, 197, 188,
    179, 171, 163, 156, 149, 142, 135, 129, 123, 118, 112, 107, 102, 98, 93, 89, 85, 81, 77, 74, 70, 67, 64, 61, 58,
    56, 53, 51, 48, 46, 44, 42, 40, 38, 36, 35, 33, 32, 30, 29, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15,
    15, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5,
]
CIFAR100_TAILS = {10: 50, 50: 10, 100: 5, 200: 2}


# ----------------------------------------------------------------------------- counts


@pytest.mark.parametrize("factor", [10, 50, 100, 200])
def test_cifar10_counts(factor):
    counts = lt_counts(5000, 10, factor)
    assert counts == CIFAR10_COUNTS[factor]
    assert sum(counts) == CIFAR_TOTALS[10][factor]


@pytest.mark.parametrize("factor", [10, 50, 100, 200])
def test_cifar100_counts(factor):
    counts = lt_counts(500, 100, factor)
    assert sum(counts) == CIFAR_TOTALS[100][factor]
    assert counts[0] == 500 and counts[-1] == CIFAR100_TAILS[factor]
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    if factor == 100:
        assert counts == CIFAR100_IF100


def test_exp_log_formulation_is_off_by_one():
    """The exp(-log(IF) i/(C-1)) formulation is a known-wrong construction (docs/methods/README.md §2)."""
    wrong10 = [int(5000 * math.exp(-math.log(100) * i / 9)) for i in range(10)]
    wrong100 = [int(500 * math.exp(-math.log(100) * i / 99)) for i in range(100)]
    assert wrong10[-1] == 49 and lt_counts(5000, 10, 100)[-1] == 50
    assert wrong100[-1] == 4 and lt_counts(500, 100, 100)[-1] == 5
    assert wrong10 != lt_counts(5000, 10, 100)


def test_golden_lt_class_counts():
    golden = json.loads(GOLDEN.read_text())
    assert golden["function"] == "lt_class_counts" and len(golden["cases"]) >= 4
    for case in golden["cases"]:
        inputs = case["inputs"]
        n_max = inputs["total_train_images"] / inputs["num_classes"]
        factor = 1.0 / inputs["imb_factor"]
        got = lt_counts(n_max, inputs["num_classes"], factor, inputs["imb_type"])
        assert got == case["outputs"]["img_num_per_cls"], case["name"]


def test_step_profile_and_errors():
    assert lt_counts(5000, 10, 10, "step") == [5000] * 5 + [500] * 5
    assert lt_counts(100, 5, 4, "step") == [100, 100, 25, 25, 25]  # odd C: the tail gets the extra class
    assert lt_counts(500, 7, 1) == [500] * 7
    with pytest.raises(ValueError, match="imbalance factor must be >= 1"):
        lt_counts(500, 10, 0.5)
    with pytest.raises(ValueError, match="profile"):
        lt_counts(500, 10, 10, "linear")


# ----------------------------------------------------------------------------- which images are kept


def _canonical_labels(num_classes, per_class, seed=123):
    """A shuffled balanced label array (ranks depend only on class sizes, not on the interleaving)."""
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


def _kept_ranks(labels, kept):
    """class -> within-class ranks of the kept indices, in kept order."""
    out = {}
    for c in np.unique(labels):
        class_idx = np.flatnonzero(labels == c)
        mine = kept[labels[kept] == c]
        out[int(c)] = np.searchsorted(class_idx, mine).tolist()
    return out


@pytest.fixture(scope="module")
def ranks():
    result = {}
    for num_classes, n_max in ((10, 5000), (100, 500)):
        labels = _canonical_labels(num_classes, n_max)
        for factor in (10, 100):
            kept = lt_subsample(labels, lt_counts(n_max, num_classes, factor), seed=0)
            result[num_classes, factor] = (labels, kept, _kept_ranks(labels, kept))
    return result


def test_within_class_ranks_cifar10(ranks):
    labels, kept, r = ranks[10, 100]
    assert r[0][:5] == [398, 3833, 4836, 4572, 636]
    assert r[1][:5] == [597, 332, 521, 3935, 4800]
    assert r[9][:8] == [2204, 3816, 2206, 2507, 1926, 4765, 368, 3808]
    assert sum(sum(v) for v in r.values()) == 30_953_231
    assert sum(sum(v) for v in ranks[10, 10][2].values()) == 51_242_293


def test_within_class_ranks_cifar100(ranks):
    labels, kept, r = ranks[100, 100]
    assert r[0][:5] == [90, 254, 283, 445, 461]
    assert r[1][:5] == [277, 307, 436, 88, 261]
    assert r[99] == [348, 153, 363, 361, 299]
    assert sum(sum(v) for v in r.values()) == 2_709_482
    assert sum(sum(v) for v in ranks[100, 10][2].values()) == 4_903_396


@pytest.mark.parametrize("num_classes", [10, 100])
def test_kept_grouped_by_class_and_prefix_property(ranks, num_classes):
    labels, kept100, r100 = ranks[num_classes, 100]
    _, kept10, r10 = ranks[num_classes, 10]
    assert np.all(np.diff(labels[kept100]) >= 0), "class 0 first, grouped by class"
    assert len(np.unique(kept100)) == len(kept100)
    for c in r100:
        assert r10[c][: len(r100[c])] == r100[c]


def test_lt_subsample_accepts_tensors_and_checks_counts():
    labels = _canonical_labels(3, 10)
    a = lt_subsample(labels, [10, 5, 2])
    b = lt_subsample(torch.from_numpy(labels), [10, 5, 2])
    assert a.dtype == np.int64 and np.array_equal(a, b)
    assert not np.array_equal(a, lt_subsample(labels, [10, 5, 2], seed=1))
    with pytest.raises(ValueError, match="class 1 has 10 images"):
        lt_subsample(labels, [10, 11, 2])


def test_heldout_split():
    labels = _canonical_labels(10, 500, seed=7)
    keep, val = heldout_split(torch.from_numpy(labels), 25)
    assert np.bincount(labels[val], minlength=10).tolist() == [25] * 10
    assert np.bincount(labels[keep], minlength=10).tolist() == [475] * 10
    assert not set(keep) & set(val) and len(keep) + len(val) == len(labels)
    assert np.all(np.diff(keep) > 0) and np.all(np.diff(val) > 0)
    for c in range(10):  # the LAST 25 in file order of each class
        assert np.array_equal(val[labels[val] == c], np.flatnonzero(labels == c)[-25:])
    # the remainder is then made long-tailed from n_max = 475
    sub = keep[lt_subsample(labels[keep], lt_counts(475, 10, 100))]
    assert not set(sub) & set(val)
    with pytest.raises(ValueError, match="val_per_class"):
        heldout_split(labels, 500)


# ----------------------------------------------------------------------------- split types


def test_split_types_subset_and_counts(tmp_path):
    split = ArraySplit(torch.zeros(6, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 1, 2, 2, 2]), torch.arange(6) + 10)
    sub = split.subset(np.array([5, 0]))
    assert isinstance(sub, ArraySplit) and len(sub) == 2
    assert sub.ids.tolist() == [15, 10] and sub.labels.tolist() == [2, 0]
    assert split.class_counts(4) == [1, 2, 3, 0]
    with pytest.raises(ValueError):
        split.class_counts(2)
    files = FileSplit(tmp_path, ["a", "b", "c"], torch.tensor([1, 0, 1]))
    fsub = files.subset(torch.tensor([2, 1]))
    assert isinstance(fsub, FileSplit) and fsub.paths == ["c", "b"] and fsub.labels.tolist() == [1, 0]
    assert files.class_counts(2) == [1, 2]


# ----------------------------------------------------------------------------- CIFAR pickles


@pytest.fixture(scope="module")
def cifar100_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar100")
    make_cifar_pickles(root, 100, per_class_train=500, per_class_test=100)
    return root


@pytest.mark.slow
def test_cifar100_pickles_full_size(cifar100_root):
    source = CIFARSource(cifar100_root, num_classes=100)
    assert source.num_classes == 100 and len(source.class_names) == 100
    train, test = source.load("train"), source.load("test")
    assert train.images.shape == (50000, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.ids.tolist() == list(range(50000))
    assert test.class_counts(100) == [100] * 100 and len(test) == 10000
    kept = lt_subsample(train.labels, lt_counts(500, 100, 100))
    lt = train.subset(kept)
    assert len(lt) == 10847 and lt.class_counts(100) == CIFAR100_IF100
    # the pixels are the pickle rows, channel-major (as torchvision reads them, before its HWC transpose)
    import pickle

    with open(cifar100_root / "cifar-100-python" / "train", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    i = int(kept[-1])
    assert torch.equal(lt.images[-1], torch.from_numpy(raw["data"][i].reshape(3, 32, 32)))
    assert lt.labels[-1].item() == raw["fine_labels"][i] == 99
    with pytest.raises(ValueError, match="no official val split"):
        source.load("val")
    # the same folder with the wrong class count, and the pickle folder given directly
    with pytest.raises(ValueError, match="cifar100_lt"):
        CIFARSource(cifar100_root, num_classes=10)
    assert len(CIFARSource(cifar100_root / "cifar-100-python", num_classes=100).load("test")) == 10000


def test_cifar10_pickles(tmp_path):
    make_cifar_pickles(tmp_path, 10, per_class_train=30, per_class_test=10)
    source = CIFARSource(tmp_path, num_classes=10)
    assert source.class_names == CIFAR10_CLASSES
    train = source.load("train")
    assert len(train) == 300 and train.class_counts(10) == [30] * 10
    assert source.load("test").class_counts(10) == [10] * 10


def test_cifar_missing_data_errors(tmp_path):
    # download=False: never touches the network (the default, auto, is tested in test_data_download.py)
    with pytest.raises(FileNotFoundError, match="datamodule.root") as err:
        CIFARSource(tmp_path / "nowhere", num_classes=10, download=False)
    assert "cifar-10-batches-py" in str(err.value) and "download" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        CIFARSource(tmp_path / "empty", num_classes=100, download=False)
    broken = make_cifar_pickles(tmp_path / "broken", 10, 2, 1)
    (broken / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        CIFARSource(tmp_path / "broken", num_classes=10)
    with pytest.raises(ValueError, match="10 or 100"):
        CIFARSource(tmp_path, num_classes=20)


# ----------------------------------------------------------------------------- CIFAR / image folders


CLASSES = ["zebra", "apple", "mango", "bee"]  # written unsorted: labels must follow the sorted names


@pytest.fixture
def folder_tree(tmp_path):
    root = tmp_path / "tree"
    written = make_image_folder(root, CLASSES, per_class_train=[6, 5, 4, 3], per_class_test=2, size=32)
    return root, written


def _forbid_decoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("PIL.Image.open called: the cache was not used")

    monkeypatch.setattr(Image, "open", fail)
    monkeypatch.setattr(cache_module.Image, "open", fail)


def test_cifar_image_folder_and_cache(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    classes = [f"c{i}" for i in range(10)][::-1]  # written in reverse: labels must follow the sorted names
    make_image_folder(root.parent / "cifar", classes, per_class_train=[12 - i for i in range(10)][::-1],
                      per_class_test=2)
    source = CIFARSource(root.parent / "cifar", num_classes=10)
    assert source.class_names == sorted(classes)
    train, test = source.load("train"), source.load("test")
    assert test.class_counts(10) == [2] * 10
    assert train.images.shape == (sum(12 - i for i in range(10)), 3, 32, 32)
    # labels follow the sorted folder names: 'c0' is label 0 and was written with 12 images
    assert train.class_counts(10) == [12 - i for i in range(10)]
    assert train.ids.tolist() == list(range(len(train)))
    assert (root.parent / "cifar" / ".longtail_cache" / "train.images.npy").is_file()
    # files sort by name within a class: the first image is c0/0000.png, pixels exact (PNG)
    first = np.array(Image.open(root.parent / "cifar" / "train" / "c0" / "0000.png").convert("RGB"))
    assert torch.equal(train.images[0], torch.from_numpy(first).permute(2, 0, 1))
    # the second load (new source object) reads the cache without decoding anything
    _forbid_decoding(monkeypatch)
    again = CIFARSource(root.parent / "cifar", num_classes=10)
    cached = again.load("train")
    assert torch.equal(cached.images, train.images) and torch.equal(cached.labels, train.labels)
    assert torch.equal(again.load("test").images, test.images)
    with pytest.raises(ValueError, match="holds 10 classes but num_classes=100"):
        CIFARSource(root.parent / "cifar", num_classes=100)


def test_cifar_tarball_cache_outside_readonly_folder(tmp_path, monkeypatch):
    import tarfile

    classes = [f"k{i}" for i in range(10)]
    make_image_folder(tmp_path / "src", classes, per_class_train=3, per_class_test=1, ext=".jpg")
    archive = tmp_path / "data" / "fake-cifar.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "train", arcname="train")
        tar.add(tmp_path / "src" / "test", arcname="test")
    monkeypatch.setenv("LONGTAIL_CACHE_DIR", str(tmp_path / "user_cache"))
    for root in (archive, archive.parent):  # the archive itself, or a folder holding exactly one
        source = CIFARSource(root, num_classes=10)
        assert source.class_names == classes
        train = source.load("train")
        assert len(train) == 30 and train.class_counts(10) == [3] * 10
        assert len(source.load("test")) == 10
    assert not (archive.parent / ".longtail_cache").exists(), "never write next to a (shared) archive"
    assert len(list((tmp_path / "user_cache").glob("fake-cifar-*/train.images.npy"))) == 1
    _forbid_decoding(monkeypatch)
    assert len(CIFARSource(archive, num_classes=10).load("train")) == 30


def test_read_only_folder_caches_in_user_dir(folder_tree, tmp_path, monkeypatch):
    root, _ = folder_tree
    monkeypatch.setenv("LONGTAIL_CACHE_DIR", str(tmp_path / "user_cache"))
    root.chmod(0o555)  # no write bit: respected even when running as root
    try:
        source = ImageFolderSource(root, in_memory=True)
        assert len(source.load("train")) == 18
        assert source.tree.cache_dir.parent == tmp_path / "user_cache"
        assert not (root / ".longtail_cache").exists()
    finally:
        root.chmod(0o755)


def test_image_folder_source(folder_tree, monkeypatch):
    root, written = folder_tree
    source = ImageFolderSource(root)
    assert source.class_names == sorted(CLASSES) and source.num_classes == 4
    train = source.load("train")
    assert isinstance(train, FileSplit)
    # sorted classes: apple(5), bee(3), mango(4), zebra(6)
    assert train.class_counts(4) == [5, 3, 4, 6]
    assert train.paths[:2] == ["train/apple/0000.png", "train/apple/0001.png"]
    with pytest.raises(ValueError, match="no val/"):
        source.load("val")
    dataset = FileImageDataset(train)
    image, label = dataset[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and label == 0
    assert torch.equal(image, torch.from_numpy(written["train"]["train/apple/0000.png"]).permute(2, 0, 1))
    # in memory, resized
    memory = ImageFolderSource(root, in_memory=True, image_size=16)
    arrays = memory.load("train")
    assert isinstance(arrays, ArraySplit) and arrays.images.shape == (18, 3, 16, 16)
    assert arrays.labels.tolist() == train.labels.tolist()
    _forbid_decoding(monkeypatch)
    assert torch.equal(ImageFolderSource(root, in_memory=True, image_size=16).load("train").images, arrays.images)


def test_image_folder_val_and_errors(tmp_path):
    root = tmp_path / "withval"
    make_image_folder(root, ["a", "b"], per_class_train=4, per_class_test=2, per_class_val=1, size=(10, 12))
    source = ImageFolderSource(root, in_memory=True)
    val = source.load("val")
    assert val.class_counts(2) == [1, 1] and val.images.shape == (2, 3, 10, 12)
    # mixed sizes need image_size
    make_image_folder(root, ["a"], per_class_train=1, per_class_test=0, size=9, seed=1)  # overwrites a/0000
    with pytest.raises(ValueError, match="image_size"):
        ImageFolderSource(root, in_memory=True).load("train")
    with pytest.raises(FileNotFoundError, match="datamodule.root"):
        ImageFolderSource(tmp_path / "missing")
    (tmp_path / "only_train" / "train" / "a").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "only_train" / "train" / "a" / "x.png")
    with pytest.raises(FileNotFoundError, match="test"):
        ImageFolderSource(tmp_path / "only_train")
    (tmp_path / "only_train" / "test" / "z").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "only_train" / "test" / "z" / "y.png")
    with pytest.raises(ValueError, match="train/ lacks"):
        ImageFolderSource(tmp_path / "only_train")


# ----------------------------------------------------------------------------- list files


def test_places_lt_lists(tmp_path):
    counts = [40, 25, 12, 6, 5, 3]
    make_list_dataset(tmp_path, "places_lt", counts=counts, val_per_class=2, test_per_class=3)
    # places_lt() pins 365 classes; the same file names through ListSource with a small class count
    source = ListSource(
        tmp_path, "Places_LT_train.txt", "Places_LT_test.txt", "Places_LT_val.txt", num_classes=6, name="Places-LT"
    )
    train, val, test = source.load("train"), source.load("val"), source.load("test")
    assert isinstance(train, FileSplit) and train.root == tmp_path
    assert train.class_counts(6) == counts and len(train) == sum(counts)
    assert val.class_counts(6) == [2] * 6 and test.class_counts(6) == [3] * 6
    assert source.class_names == [f"category_{i:03d}" for i in range(6)]
    assert all(p.startswith("train/") for p in train.paths + val.paths)
    assert all(p.startswith("val/") and "Places365_val_" in p for p in test.paths)
    assert not set(val.paths) & set(train.paths) and not set(val.paths) & set(test.paths)
    image, label = FileImageDataset(test)[0]
    assert image.shape == (3, 8, 8) and label == test.labels[0].item()


def test_list_factories_check_class_count(tmp_path):
    make_list_dataset(tmp_path, "places_lt", counts=[5, 3])
    with pytest.raises(ValueError, match=r"exactly 0\.\.364"):
        places_lt(tmp_path)


@pytest.mark.parametrize("kind,factory,num_classes", [("imagenet_lt", imagenet_lt, 1000), ("inat2018", inat2018, 8142)])
def test_imagenet_and_inat_layouts(tmp_path, monkeypatch, kind, factory, num_classes):
    make_list_dataset(tmp_path, kind, counts=[3] * 4, write_images=False)
    # the factories pin the official class count; shrink it through ListSource for the fake data
    names = {"imagenet_lt": ("ImageNet_LT_train.txt", "ImageNet_LT_test.txt", "ImageNet_LT_val.txt"),
             "inat2018": ("iNaturalist18_train.txt", "iNaturalist18_val.txt", None)}[kind]
    source = ListSource(tmp_path, *names, num_classes=4, check_files=False,
                        class_names_from="folder" if kind == "imagenet_lt" else "label")
    assert len(source.load("train")) == 12 and source.load("test").class_counts(4) == [3] * 4
    if kind == "inat2018":
        assert source.class_names == ["0", "1", "2", "3"]
        with pytest.raises(ValueError, match="no official val list"):
            source.load("val")
        assert all(p.startswith("train_val2018/") for p in source.load("test").paths)
    else:
        assert source.class_names[0].startswith("n") and source.load("val").class_counts(4) == [2] * 4
        assert all("ILSVRC2012_val_" in p for p in source.load("test").paths)
    with pytest.raises(ValueError, match=f"exactly 0..{num_classes - 1}"):
        factory(tmp_path)
    # images missing under root: clear error naming the first path
    strict = ListSource(tmp_path, *names, num_classes=4)
    with pytest.raises(FileNotFoundError, match="missing under"):
        strict.load("train")


def test_list_parsing_paths_with_spaces_and_bad_labels(tmp_path):
    (tmp_path / "train.txt").write_text("train/my class/img 1.jpg 0\ntrain/b/x.jpg 1\n\ntrain/b/y.jpg 1\n")
    paths, labels = read_list(tmp_path / "train.txt")
    assert paths == ["train/my class/img 1.jpg", "train/b/x.jpg", "train/b/y.jpg"] and labels == [0, 1, 1]
    (tmp_path / "test.txt").write_text("val/a.jpg 0\nval/b.jpg 5\n")
    source = ListSource(tmp_path, "train.txt", "test.txt", num_classes=2, check_files=False)
    assert source.class_names == ["my class", "b"]
    with pytest.raises(ValueError, match="outside 0..1"):
        source.load("test")
    (tmp_path / "gap.txt").write_text("a.jpg 0\nb.jpg 2\n")
    with pytest.raises(ValueError, match="contiguous"):
        ListSource(tmp_path, "gap.txt", "test.txt", check_files=False)
    (tmp_path / "bad.txt").write_text("a.jpg 0\nnolabel\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        read_list(tmp_path / "bad.txt")


def test_list_missing_root_and_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        places_lt(tmp_path / "nowhere")
    message = str(err.value)
    assert "Places_LT_train.txt" in message and "classifier-balancing" in message and "datamodule.root" in message
    with pytest.raises(FileNotFoundError) as err:
        imagenet_lt(tmp_path)
    assert "ImageNet_LT_train.txt" in str(err.value) and "classifier-balancing" in str(err.value)
    # lists may also sit in root/lists
    make_list_dataset(tmp_path / "lists", "places_lt", counts=[2, 2], write_images=False)
    source = ListSource(tmp_path, "Places_LT_train.txt", "Places_LT_test.txt", "Places_LT_val.txt", num_classes=2,
                        check_files=False)
    assert len(source.load("train")) == 4
    (tmp_path / "lists" / "Places_LT_val.txt").unlink()
    with pytest.raises(FileNotFoundError, match="Places_LT_val.txt"):
        source.load("val")


PLACES_LISTS = os.environ.get("LONGTAIL_PLACES_LT_LISTS")


@pytest.mark.skipif(not PLACES_LISTS, reason="set LONGTAIL_PLACES_LT_LISTS to a folder with the real Places-LT lists")
def test_real_places_lt_lists():
    from longtail.data.lists import KNOWN_MD5, list_md5

    folder = Path(PLACES_LISTS)
    for name in ("Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"):
        assert list_md5(folder / name) == KNOWN_MD5[name]
    source = places_lt(folder, check_files=False)
    counts = source.load("train").class_counts(365)
    assert sum(counts) == 62500 and max(counts) == 4980 and min(counts) == 5
    assert len(source.load("val")) == 7300 and len(source.load("test")) == 36500


# ----------------------------------------------------------------------------- digits


def test_digits_source():
    source = DigitsSource(test_per_class=30, val_per_class=20)
    assert source.num_classes == 10 and source.class_names == [str(d) for d in range(10)]
    train, val, test = (source.load(s) for s in ("train", "val", "test"))
    assert len(train) + len(val) + len(test) == 1797
    assert val.class_counts(10) == [20] * 10 and test.class_counts(10) == [30] * 10
    assert len(train) == 1797 - 500 and min(train.class_counts(10)) > 100
    ids = [set(s.ids.tolist()) for s in (train, val, test)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == torch.uint8
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    # deterministic; per class the test images are the last ones in file order
    from sklearn.datasets import load_digits

    target = load_digits().target
    for c in range(10):
        assert sorted(test.ids[test.labels == c].tolist()) == np.flatnonzero(target == c)[-30:].tolist()
    assert torch.equal(DigitsSource().load("test").ids, test.ids)
    with pytest.raises(ValueError):
        source.load("holdout")


# ----------------------------------------------------------------------------- real CIFAR-10


def _real_cifar10() -> Path | None:
    env = os.environ.get("LONGTAIL_CIFAR10")
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[1]
    candidate = repo_root.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
    return candidate if candidate.exists() else None


REAL_CIFAR10 = _real_cifar10()


@pytest.mark.slow
@pytest.mark.skipif(
    REAL_CIFAR10 is None,
    reason="real CIFAR-10 not found: set LONGTAIL_CIFAR10 to cifar10-jpeg.tar.gz, an image-folder tree or the "
    "torchvision pickle folder (the first run decodes it once, later runs read the cache)",
)
def test_real_cifar10():
    source = CIFARSource(REAL_CIFAR10, num_classes=10)
    assert source.class_names == CIFAR10_CLASSES
    train, test = source.load("train"), source.load("test")
    assert len(train) == 50000 and len(test) == 10000
    assert train.class_counts(10) == [5000] * 10 and test.class_counts(10) == [1000] * 10
    assert train.images.shape[1:] == (3, 32, 32)
    lt = train.subset(lt_subsample(train.labels, lt_counts(5000, 10, 100)))
    assert lt.class_counts(10) == CIFAR10_COUNTS[100] and len(lt) == 12406
    mean = (train.images[::10].float() / 255).mean(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.tensor([0.4913, 0.4821, 0.4465]), atol=3e-3)  # RGB order, published stats
