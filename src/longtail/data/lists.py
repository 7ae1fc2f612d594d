"""List-file data sets: ImageNet-LT, Places-LT, iNaturalist 2018 (docs/methods/README.md §3).

Each list line is ``<relative path> <label>``; the path is relative to the data set root, the label
a 0-based contiguous integer. The lists are those of github.com/facebookresearch/classifier-balancing
(folder ``data/``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from longtail.data.splits import FileSplit

LISTS_URL = "github.com/facebookresearch/classifier-balancing (folder data/)"

#: MD5 of the lists as distributed (docs/methods/README.md §3), for a data-preparation check with :func:`list_md5`.
KNOWN_MD5 = {
    "ImageNet_LT_val.txt": "ef44f8e43fbc904809a77216042e7498",
    "ImageNet_LT_test.txt": "5f5f97c738923e877c5c78accce6744f",
    "Places_LT_train.txt": "e7795ab1bf428a89f900854127b1e556",
    "Places_LT_val.txt": "2f6e727cd6c99c7b7fdecc9876875b1b",
    "Places_LT_test.txt": "1347af35b053bd31cf782256306affe7",
    "iNaturalist18_val.txt": "b7ed52f3854c157c487cc3be9deb8abf",
}


def list_md5(path: str | Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def read_list(path: str | Path) -> tuple[list[str], list[int]]:
    """Parse a list file: one ``<relative path> <label>`` per line, split on the LAST space."""
    paths, labels = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            rel, sep, label = line.rpartition(" ")
            try:
                if not sep or not rel:
                    raise ValueError
                labels.append(int(label))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: expected '<relative path> <integer label>', got {line!r}") from None
            paths.append(rel)
    return paths, labels


class ListSource:
    """Train/val/test :class:`FileSplit`\\ s read from list files in ``root`` (or ``root/lists``).

    Args:
        root: the data set root; list paths are relative to it (``datamodule.root=PATH``).
        train_list, test_list, val_list: list file names (``val_list=None``: no official val split).
        num_classes: expected class count; the train labels must be exactly 0..num_classes-1
            (``None``: inferred from the train list, which must still be contiguous).
        class_names_from: ``"folder"`` (the parent folder of the first train path of each label,
            e.g. the wnid) or ``"label"`` (``str(label)``).
        check_files: on ``load``, check that the first image of the list exists under ``root``.
        name: data set name for messages.

    ``provenance`` says where the lists are and whether their MD5 matches the published lists'.
    """

    def __init__(self, root: str | Path, train_list: str, test_list: str, val_list: str | None = None,
                 num_classes: int | None = None, class_names_from: str = "folder", check_files: bool = True,
                 name: str = "list data set"):
        self.root, self.name, self.check_files = Path(root).expanduser(), name, check_files
        self.list_names = {"train": train_list, "val": val_list, "test": test_list}
        expected = [n for n in (train_list, val_list, test_list) if n]
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"{name} root '{self.root}' does not exist. It must contain the list files {', '.join(expected)} "
                f"(from {LISTS_URL}) and the image folders they name; set datamodule.root=PATH"
            )
        self._splits: dict[str, FileSplit] = {}
        train = self._read("train")
        labels = train.labels
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if len(labels) else 0
        present = torch.unique(labels)
        if len(present) != num_classes or int(present[0]) != 0 or int(present[-1]) != num_classes - 1:
            missing = sorted(set(range(num_classes)) - set(present.tolist()))[:10]
            raise ValueError(
                f"{self.list_path('train')}: labels must be exactly 0..{num_classes - 1} ({num_classes} classes, "
                f"contiguous); found {len(present)} distinct labels in {int(present[0])}..{int(present[-1])}"
                f"{f', missing e.g. {missing}' if missing else ''}"
            )
        self.num_classes = num_classes
        names = [None] * num_classes
        for path, label in zip(train.paths, labels.tolist()):
            if names[label] is None:
                parts = path.split("/")
                names[label] = parts[-2] if class_names_from == "folder" and len(parts) >= 2 else str(label)
        self.class_names = names
        self.provenance = self._provenance()

    def _provenance(self) -> str:
        """Where the lists are, and whether those with a published MD5 (:data:`KNOWN_MD5`) match it."""
        names = [n for n in self.list_names.values() if n]
        folder = self.list_path("train").parent.resolve()
        checked = [n for n in names if n in KNOWN_MD5 and self._find(n) is not None]
        differ = [n for n in checked if list_md5(self._find(n)) != KNOWN_MD5[n]]
        where = f"list files at {folder} ({', '.join(names)}; images under {self.root.resolve()}, in list order)"
        if differ:
            return f"{self.name} {where}; MD5 of {', '.join(differ)} differs from the published lists: not the official split"
        if not checked:
            return f"{self.name} {where}; no list with a published MD5 to check"
        return f"{self.name} official {where}; MD5 of {', '.join(checked)} matches the published lists"

    def _find(self, name: str) -> Path | None:
        for folder in (self.root, self.root / "lists"):
            if (folder / name).is_file():
                return folder / name
        return None

    def list_path(self, split: str) -> Path:
        name = self.list_names[split]
        return self._find(name) or self.root / name

    def _read(self, split: str) -> FileSplit:
        if split not in self._splits:
            path = self.list_path(split)
            if not path.is_file():
                expected = ", ".join(n for n in self.list_names.values() if n)
                raise FileNotFoundError(
                    f"{self.name}: list file '{self.list_names[split]}' not found in '{self.root}' (nor "
                    f"'{self.root / 'lists'}'). The root needs {expected}, from {LISTS_URL}; "
                    f"copy them there or set datamodule.root=PATH"
                )
            paths, labels = read_list(path)
            if not paths:
                raise ValueError(f"list file '{path}' is empty")
            self._splits[split] = FileSplit(self.root, paths, torch.as_tensor(labels, dtype=torch.long))
        return self._splits[split]

    def load(self, split: str) -> FileSplit:
        if split not in self.list_names:
            raise ValueError(f"split must be one of train/val/test, got '{split}'")
        if self.list_names[split] is None:
            raise ValueError(
                f"{self.name} has no official val list (its only held-out list is used as the test set): "
                f"use datamodule.val=none (last epoch) or datamodule.val=heldout"
            )
        data = self._read(split)
        if split != "train":
            low, high = int(data.labels.min()), int(data.labels.max())
            if low < 0 or high >= self.num_classes:
                raise ValueError(f"{self.list_path(split)}: labels span {low}..{high}, outside 0..{self.num_classes - 1}")
        if self.check_files and not (self.root / data.paths[0]).is_file():
            raise FileNotFoundError(
                f"{self.name}: '{self.list_path(split).name}' names '{data.paths[0]}', which is missing under "
                f"'{self.root}': the list paths are relative to the data set root, so point datamodule.root=PATH at "
                f"the folder that contains '{data.paths[0].split('/')[0]}/'"
            )
        return data


def imagenet_lt(root: str | Path, num_classes: int = 1000, **kwargs) -> ListSource:
    """ImageNet-LT: 1,000 classes; val 20/class (ILSVRC train images), test 50/class (ILSVRC val images)."""
    return ListSource(root, "ImageNet_LT_train.txt", "ImageNet_LT_test.txt", "ImageNet_LT_val.txt",
                      num_classes=num_classes, class_names_from="folder", name="ImageNet-LT", **kwargs)


def places_lt(root: str | Path, num_classes: int = 365, **kwargs) -> ListSource:
    """Places-LT: 365 classes; val 20/class (Places365 train images), test 100/class (Places365 val images)."""
    return ListSource(root, "Places_LT_train.txt", "Places_LT_test.txt", "Places_LT_val.txt",
                      num_classes=num_classes, class_names_from="folder", name="Places-LT", **kwargs)


def inat2018(root: str | Path, num_classes: int = 8142, **kwargs) -> ListSource:
    """iNaturalist 2018: 8,142 classes; the official val list (3/class) is the test set; no val split."""
    return ListSource(root, "iNaturalist18_train.txt", "iNaturalist18_val.txt", None,
                      num_classes=num_classes, class_names_from="label", name="iNaturalist 2018", **kwargs)
