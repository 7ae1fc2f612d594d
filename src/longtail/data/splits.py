"""The two split types every data source returns.

* :class:`ArraySplit` — small data sets held in memory as uint8 tensors (CIFAR, digits,
  in-memory image folders). ``ids`` index into the source's original file order, so the
  data module can check that val/train/test are disjoint.
* :class:`FileSplit` — large data sets decoded per image (ImageNet-LT, Places-LT, iNaturalist,
  image folders): paths relative to ``root`` plus labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

Indices = Union[Sequence[int], np.ndarray, torch.Tensor]


def _as_index(indices: Indices) -> torch.Tensor:
    if isinstance(indices, torch.Tensor):
        return indices.to(torch.long).reshape(-1)
    return torch.as_tensor(np.asarray(indices, dtype=np.int64).reshape(-1))


def _class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels span {int(labels.min())}..{int(labels.max())} but num_classes={num_classes}"
        )
    return torch.bincount(labels.to(torch.long), minlength=num_classes).tolist()


@dataclass
class ArraySplit:
    """In-memory split: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,), ``ids`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor

    def __post_init__(self):
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        self.ids = torch.as_tensor(self.ids, dtype=torch.long)
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if not len(self.images) == len(self.labels) == len(self.ids):
            raise ValueError(
                f"images/labels/ids lengths differ: {len(self.images)}/{len(self.labels)}/{len(self.ids)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Indices) -> "ArraySplit":
        index = _as_index(indices)
        return ArraySplit(self.images[index], self.labels[index], self.ids[index])

    def class_counts(self, num_classes: int) -> list[int]:
        return _class_counts(self.labels, num_classes)


@dataclass
class FileSplit:
    """Per-image split: ``paths`` relative to ``root``, ``labels`` int64 (N,)."""

    root: Path
    paths: list[str]
    labels: torch.Tensor

    def __post_init__(self):
        self.root = Path(self.root)
        self.paths = list(self.paths)
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        if len(self.paths) != len(self.labels):
            raise ValueError(f"paths/labels lengths differ: {len(self.paths)}/{len(self.labels)}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Indices) -> "FileSplit":
        index = _as_index(indices)
        return FileSplit(self.root, [self.paths[i] for i in index.tolist()], self.labels[index])

    def class_counts(self, num_classes: int) -> list[int]:
        return _class_counts(self.labels, num_classes)
