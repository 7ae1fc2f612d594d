"""Generators of small fake data sets in the exact on-disk layouts the sources read.

* :func:`make_cifar_pickles` — torchvision's ``cifar-10-batches-py`` / ``cifar-100-python`` pickles.
* :func:`make_image_folder` — ``train/<class>/*``, ``test/<class>/*`` (optionally ``val/``), PNG or JPEG.
* :func:`make_list_dataset` — ImageNet-LT / Places-LT / iNaturalist 2018 list files with the official
  file names and path patterns, plus the (tiny) images they name.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _balanced_labels(num_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(num_classes), per_class))


def _dump(path: Path, entry: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def make_cifar_pickles(root, num_classes: int = 100, per_class_train: int = 500, per_class_test: int = 100,
                       seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py`` (10 classes) or ``root/cifar-100-python`` (100) and return that folder.

    Same structure as the real files, as torchvision reads them (``pickle.load(f, encoding="latin1")``):
    a dict with a ``data`` uint8 array (N, 3072) of channel-major rows (R plane, G plane, B plane of a
    32×32 image), a ``labels`` (CIFAR-10) or ``fine_labels`` + ``coarse_labels`` (CIFAR-100) list,
    ``filenames`` and ``batch_label``; CIFAR-10 train is split over ``data_batch_1..5``. Labels are a
    random balanced permutation; pixels are random bytes (rows repeat every 4093 images).
    """
    if num_classes not in (10, 100):
        raise ValueError("num_classes must be 10 or 100")
    rng = np.random.default_rng(seed)
    folder = Path(root) / ("cifar-10-batches-py" if num_classes == 10 else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    names = CIFAR10_CLASSES if num_classes == 10 else [f"class_{i:03d}" for i in range(num_classes)]

    def entry(labels: np.ndarray, batch_label: str) -> dict:
        # random rows, repeating every 4093 images (keeps the full-size 150 MB fake quick to make)
        block = np.frombuffer(rng.bytes(min(len(labels), 4093) * 3072), dtype=np.uint8).reshape(-1, 3072)
        data = np.resize(block, (len(labels), 3072))
        out = {"batch_label": batch_label, "data": data, "filenames": [f"img_{i:05d}.png" for i in range(len(labels))]}
        if num_classes == 10:
            out["labels"] = labels.tolist()
        else:
            out["fine_labels"] = labels.tolist()
            out["coarse_labels"] = (labels // 5).tolist()
        return out

    train = _balanced_labels(num_classes, per_class_train, rng)
    test = _balanced_labels(num_classes, per_class_test, rng)
    if num_classes == 10:
        for i, chunk in enumerate(np.array_split(train, 5), 1):
            _dump(folder / f"data_batch_{i}", entry(chunk, f"training batch {i} of 5"))
        _dump(folder / "test_batch", entry(test, "testing batch 1 of 1"))
        _dump(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": len(train) // 5, "num_vis": 3072})
    else:
        _dump(folder / "train", entry(train, "training batch 1 of 1"))
        _dump(folder / "test", entry(test, "testing batch 1 of 1"))
        _dump(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"super_{i}" for i in range(20)]})
    return folder


def _per_class(value, classes) -> list[int]:
    return [value] * len(classes) if isinstance(value, int) else list(value)


def _write_image(path: Path, size, rng: np.random.Generator, mode: str = "RGB") -> np.ndarray:
    h, w = (size, size) if isinstance(size, int) else size
    pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
        pixels = np.asarray(image.convert("RGB"))
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=90)
    else:
        image.save(path)
    return pixels


def make_image_folder(root, classes: Sequence[str], per_class_train, per_class_test, size=32,
                      per_class_val=0, ext: str = ".png", seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Write ``root/{train,test[,val]}/<class>/<NNNN><ext>`` with random pixels.

    ``per_class_*`` is an int or a per-class list. File names are written in reverse order so that
    the readers' sorting is exercised. Returns ``{split: {relative path: HWC uint8 pixels}}`` (exact
    for PNG, pre-compression for JPEG).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    written: dict[str, dict[str, np.ndarray]] = {}
    for split, per_class in (("train", per_class_train), ("val", per_class_val), ("test", per_class_test)):
        counts = _per_class(per_class, classes)
        if not any(counts):
            continue
        written[split] = {}
        for cls, n in zip(classes, counts):
            for i in reversed(range(n)):
                rel = f"{split}/{cls}/{i:04d}{ext}"
                written[split][rel] = _write_image(root / rel, size, rng)
    return written


LIST_KINDS = {
    # kind: (train list, val list, test list)
    "imagenet_lt": ("ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt"),
    "places_lt": ("Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"),
    "inat2018": ("iNaturalist18_train.txt", None, "iNaturalist18_val.txt"),
}


def _class_folder(kind: str, label: int) -> str:
    if kind == "imagenet_lt":
        return f"n{1440764 + 1000 * label:08d}"  # wnid-like
    if kind == "places_lt":
        return f"category_{label:03d}"
    return f"Super{label % 3}/{label}"  # iNat: <supercategory>/<category id>


def make_list_dataset(root, kind: str = "places_lt", counts: Sequence[int] = (40, 20, 10, 5, 3),
                      val_per_class: int = 2, test_per_class: int = 3, size: int = 8, write_images: bool = True,
                      shuffle: bool = True, seed: int = 0) -> dict[str, Path]:
    """Write the list files of ``kind`` (official file names) and the tiny JPEGs they name.

    Path patterns (docs/methods/README.md §3): ImageNet-LT ``train/<wnid>/<wnid>_<n>.JPEG`` (train and val lists),
    ``val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG`` (test list); Places-LT ``train/<category>/<8 digits>.jpg``
    (train and val), ``val/<category>/Places365_val_<8 digits>.jpg`` (test); iNaturalist
    ``train_val2018/<supercategory>/<category id>/<hash>.jpg`` (no val list; the val list is the test set).
    Lines are shuffled across classes, as in the real lists. Returns ``{split: list path}``.
    """
    if kind not in LIST_KINDS:
        raise ValueError(f"kind must be one of {sorted(LIST_KINDS)}")
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    train_name, val_name, test_name = LIST_KINDS[kind]
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    serial = 0
    for label, n_train in enumerate(counts):
        folder = _class_folder(kind, label)
        n_val = val_per_class if val_name else 0
        for i in range(n_train + n_val):  # val lists hold *train* images of the original data set
            split = "train" if i < n_train else "val"
            serial += 1
            if kind == "imagenet_lt":
                rel = f"train/{folder}/{folder}_{serial}.JPEG"
            elif kind == "places_lt":
                rel = f"train/{folder}/{serial:08d}.jpg"
            else:
                rel = f"train_val2018/{folder}/{rng.bytes(16).hex()}.jpg"
            lines[split].append(f"{rel} {label}")
        for _ in range(test_per_class):
            serial += 1
            if kind == "imagenet_lt":
                rel = f"val/{folder}/ILSVRC2012_val_{serial:08d}.JPEG"
            elif kind == "places_lt":
                rel = f"val/{folder}/Places365_val_{serial:08d}.jpg"
            else:
                rel = f"train_val2018/{folder}/{rng.bytes(16).hex()}.jpg"
            lines["test"].append(f"{rel} {label}")
    out = {}
    for split, name in (("train", train_name), ("val", val_name), ("test", test_name)):
        if name is None:
            continue
        split_lines = list(lines[split])
        if shuffle:
            split_lines = [split_lines[i] for i in rng.permutation(len(split_lines))]
        (root / name).write_text("".join(f"{line}\n" for line in split_lines), encoding="utf-8")
        out[split] = root / name
        if write_images:
            for line in split_lines:
                _write_image(root / line.rpartition(" ")[0], size, rng)
    return out
