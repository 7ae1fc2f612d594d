"""CIFAR-10 / CIFAR-100 in canonical order (docs/methods/README.md §2).

``root`` may be any of:

* the torchvision pickle layout: ``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
  or ``root/cifar-100-python/{train,test,meta}`` (fine labels), or that folder itself;
* an image-folder tree ``root/train/<class>/*.jpg``, ``root/test/<class>/*.jpg`` (classes = sorted
  folder names, files sorted by name), decoded once and cached as uint8 ``.npy``;
* a tarball of such a tree (e.g. ``cifar10-jpeg.tar.gz``), or a folder holding exactly one.

``download=True`` fetches the pickles with torchvision (the only code path that touches the network).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from longtail.data.cache import TAR_SUFFIXES, ImageTree, is_tarball, open_tree
from longtail.data.splits import ArraySplit

_LAYOUT = {
    10: {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": ("batches.meta", "label_names"),
        "label_key": "labels",
        "archive": "cifar-10-python.tar.gz",
    },
    100: {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": ("meta", "fine_label_names"),
        "label_key": "fine_labels",
        "archive": "cifar-100-python.tar.gz",
    },
}


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in entry.items()}


class CIFARSource:
    """CIFAR-10 or CIFAR-100, train (50,000) and test (10,000) as uint8 :class:`ArraySplit` (ids = file order)."""

    def __init__(self, root: str | Path, num_classes: int = 10, download: bool = False,
                 cache_dir: str | Path | None = None):
        if num_classes not in _LAYOUT:
            raise ValueError(f"CIFARSource supports num_classes 10 or 100, got {num_classes}")
        self.root, self.num_classes = Path(root).expanduser(), num_classes
        self.name = f"CIFAR-{num_classes}"
        self.layout = _LAYOUT[num_classes]
        if download:
            self._download()
        self.pickle_dir: Path | None = None
        self.tree: ImageTree | None = None
        self._resolve(cache_dir)
        if self.pickle_dir is not None:
            file, key = self.layout["meta"]
            self.class_names = [str(n) for n in _unpickle(self.pickle_dir / file)[key]]
        else:
            self.class_names = self.tree.class_names
            self.tree.require("test")
        if len(self.class_names) != num_classes:
            where = self.pickle_dir or self.tree.path
            raise ValueError(
                f"'{where}' holds {len(self.class_names)} classes but num_classes={num_classes}: use the "
                f"cifar{len(self.class_names)}_lt datamodule (or num_classes={len(self.class_names)}), "
                f"or point datamodule.root=PATH at {self.name}"
            )

    # ------------------------------------------------------------------ locating the data

    def _download(self) -> None:
        import torchvision

        dataset = torchvision.datasets.CIFAR10 if self.num_classes == 10 else torchvision.datasets.CIFAR100
        for train in (True, False):
            dataset(str(self.root), train=train, download=True)

    def _has_pickles(self, folder: Path) -> bool:
        names = self.layout["train"] + self.layout["test"] + [self.layout["meta"][0]]
        return all((folder / n).is_file() for n in names)

    def _not_found(self, detail: str) -> FileNotFoundError:
        layout = self.layout
        return FileNotFoundError(
            f"{self.name} data not found: {detail}. Expected one of: '{self.root / layout['folder']}/' "
            f"(torchvision pickle layout: {', '.join(layout['train'] + layout['test'] + [layout['meta'][0]])}); "
            f"an image-folder tree '{self.root}/train/<class>/*.jpg' + '{self.root}/test/<class>/*.jpg'; or "
            f"such a tree as a .tar.gz (e.g. cifar10-jpeg.tar.gz). Get the pickles from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html ({layout['archive']}, extract it into the root) or with "
            f"datamodule.source.download=true (needs internet), then set datamodule.root=PATH"
        )

    def _resolve(self, cache_dir) -> None:
        root, layout = self.root, self.layout
        if not root.exists():
            raise self._not_found(f"'{root}' does not exist")
        if is_tarball(root):
            self.tree = open_tree(root, cache_dir)
            return
        other = _LAYOUT[110 - self.num_classes]["folder"]
        for folder in (root / layout["folder"], root):
            if self._has_pickles(folder):
                self.pickle_dir = folder
                return
        if (root / layout["folder"]).is_dir():
            missing = [n for n in layout["train"] + layout["test"] + [layout["meta"][0]]
                       if not (root / layout["folder"] / n).is_file()]
            raise self._not_found(f"'{root / layout['folder']}' lacks {missing}")
        if (root / other).is_dir() or root.name == other:
            raise ValueError(
                f"'{root}' holds the {other} pickles (CIFAR-{110 - self.num_classes}) but num_classes="
                f"{self.num_classes}: use the cifar{110 - self.num_classes}_lt datamodule or point "
                f"datamodule.root=PATH at {self.name}"
            )
        if (root / "train").is_dir():
            if not (root / "test").is_dir():
                raise self._not_found(f"'{root}/train/' exists but '{root}/test/' does not")
            self.tree = open_tree(root, cache_dir)
            return
        archives = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(TAR_SUFFIXES)
                          and p.name not in (_LAYOUT[10]["archive"], _LAYOUT[100]["archive"]))
        if len(archives) == 1:
            self.tree = open_tree(archives[0], cache_dir)
            return
        if (root / layout["archive"]).is_file():
            raise self._not_found(
                f"'{root / layout['archive']}' is not extracted (extract it there, or pass download=true to let "
                f"torchvision verify and extract it)"
            )
        detail = f"'{root}' contains none of these" if not archives else \
            f"'{root}' contains several archives ({[a.name for a in archives]}): point root at one of them"
        raise self._not_found(detail)

    # ------------------------------------------------------------------ loading

    def load(self, split: str) -> ArraySplit:
        if split == "val":
            raise ValueError(
                f"{self.name} has no official val split: use datamodule.val=heldout (the last val_per_class "
                f"train images of every class) or datamodule.val=none"
            )
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test' ('val' is not official for CIFAR), got '{split}'")
        if self.tree is not None:
            data = self.tree.load_arrays(split)
            if data.images.shape[1:] != (3, 32, 32):
                raise ValueError(f"{self.name} images must be 32x32 RGB, '{self.tree.path}' has {tuple(data.images.shape[1:])}")
            return data
        images, labels = [], []
        for name in self.layout[split]:
            entry = _unpickle(self.pickle_dir / name)
            images.append(np.asarray(entry["data"], dtype=np.uint8))
            labels.extend(entry[self.layout["label_key"]])
        images = np.concatenate(images).reshape(-1, 3, 32, 32)  # rows are already channel-major (CHW)
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels in '{self.pickle_dir}' span {int(labels.min())}..{int(labels.max())}, "
                             f"not 0..{self.num_classes - 1}")
        return ArraySplit(torch.from_numpy(np.ascontiguousarray(images)), labels, torch.arange(len(labels)))
