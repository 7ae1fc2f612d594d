"""What a method may ask of the data module: the method–data contract (docs/architecture.md §4).

A method receives its class counts and names through its constructor and its batches already transformed
(``LongTailDataModule.on_after_batch_transfer``). Anything more it asks through ``LongTailModule.data``, which is
the Trainer's data module checked against :class:`MethodData`; nothing else of the data module (its splits, its
samplers, the Trainer's loaders) is a method's business. A new kind of data need is a new method here, implemented
by :class:`longtail.data.datamodule.LongTailDataModule`, so it is written down once and reviewed as such.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import DataLoader


@runtime_checkable
class MethodData(Protocol):
    """The data module as a method sees it."""

    def batch_transforms(self) -> tuple[nn.Module, nn.Module]:
        """The on-device ``(train, eval)`` transforms, for batches a method loads itself."""

    def train_eval_dataloader(self) -> DataLoader:
        """The training split once, in file order, without loader augmentation (DRO-LT's clean centroids,
        IP-DPP's p_i)."""

    def extra_train_dataloader(self, epoch: int) -> DataLoader:
        """A pass over the training stream (its sampler and augmentation) apart from the epoch being trained, its
        order seeded by ``epoch`` (DRO-LT's augmented centroids)."""

    def train_labels(self) -> torch.Tensor:
        """The training labels in file order (the indices :meth:`set_train_subset` takes refer to them)."""

    def meta_dataloader(self, epoch: int = 0, augment: bool = True) -> DataLoader:
        """Shuffled batches of the held-out (meta) set, reshuffled per ``epoch`` (Difficulty-Net's meta step)."""

    def meta_eval_dataloader(self) -> DataLoader:
        """The held-out (meta) set once without augmentation (Difficulty-Net's per-class accuracy vector)."""

    def set_train_subset(self, indices: torch.Tensor, per_class_cap: int) -> None:
        """Train the coming epoch on ``indices`` of the training split only, at most ``per_class_cap`` per class
        (IP-DPP's k-DPP subset, set at the epoch's start)."""

    def test_dataloader(self) -> DataLoader:
        """The balanced test split (the optimistic every-epoch diagnostic, never for selection)."""


CONTRACT = tuple(name for name in vars(MethodData) if not name.startswith("_"))


def method_data(datamodule) -> MethodData:
    """``datamodule`` if it keeps the contract, else an error naming what it lacks."""
    if datamodule is None:
        raise RuntimeError("this method asks the data module for data, but its Trainer has none: pass a "
                           "LongTailDataModule to trainer.fit (longtail.run does)")
    missing = [name for name in CONTRACT if not callable(getattr(datamodule, name, None))]
    if missing:
        raise TypeError(f"{type(datamodule).__name__} does not keep the method–data contract "
                        f"(longtail.data.contract.MethodData): it lacks {', '.join(sorted(missing))}")
    return datamodule
