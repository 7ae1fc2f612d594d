"""LongTailDataModule: one data module for every data set, imbalance, sampler and augmentation.

It yields the long-tailed train split, a balanced validation split where the
protocol has one, and the balanced test split, and exposes the train class
counts, the class names and ``data_source``, where the images came from
(docs/methods/README.md §2–§5).

* In-memory data sets (CIFAR, digits) are uint8 tensors; a batch is gathered
  with one indexing op and augmented on the model's device in
  ``on_after_batch_transfer`` — no per-image Python in the hot loop.
* File-list data sets decode per image in workers; the uint8 crops are
  normalised on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from longtail.data.augment import BatchAugment, BatchEval
from longtail.data.decode import FileImageDataset
from longtail.data.samplers import CappedSubsetSampler, InstanceSampler, ShardedEvalSampler
from longtail.data.split_strategies import SPLIT_STRATEGIES, protocol_val_problem
from longtail.data.splits import ArraySplit, FileSplit

VAL_MODES = ("none", "heldout", "source")


class TensorBatches(Dataset):
    """Map-style view of uint8 arrays whose ``__getitems__`` returns a whole batch at once."""

    def __init__(self, split: ArraySplit):
        self.images, self.labels = split.images, split.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: Sequence[int]):
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index], self.labels[index]


def _whole_batch(batch):
    return batch


NO_META_SET = ("this data module has no meta set: set datamodule.protocol=diffnet datamodule.val=heldout (Difficulty-Net's own split) or "
               "datamodule.val=heldout (the held-out validation set is then the meta set too)")


class _StartAtFirstBatch:
    """An iterator that calls ``start()`` (which returns the real one) only when its first item is asked for."""

    def __init__(self, start: Callable[[], Any]):
        self._start, self._iterator = start, None

    def __iter__(self):
        return self

    def __next__(self):
        if self._iterator is None:
            self._iterator = self._start()
        return next(self._iterator)


class EpochStartLoader(DataLoader):
    """The training loader: its iterator starts (asks the sampler for the epoch's indices, starts the workers) at
    the epoch's first batch, not when ``iter()`` is called.

    Lightning creates the iterator of a fit's first epoch (epoch 0, or the first one after a resume) before
    ``set_epoch`` and ``on_train_epoch_start``, and with ``num_workers > 0`` the DataLoader draws the sampler's
    indices right then, for the workers' prefetch. A sampler changed at an epoch's start (IP-DPP's subset,
    docs/methods/ipdpp.md §3; a resumed run's epoch) would then serve its old state for that epoch. Started at the first
    batch, after every epoch-start hook, the sampler's ``__iter__`` sees the state meant for its epoch with any
    number of workers.
    """

    def __iter__(self):
        return _StartAtFirstBatch(super().__iter__)


def _interleaved(split):
    """A fixed shuffle of an evaluation split: full evaluations are unchanged, and a run limited to a few
    batches (``debug=smoke``) still sees every class instead of the first classes of a class-sorted file."""
    return split.subset(torch.randperm(len(split), generator=torch.Generator().manual_seed(0)))


class LongTailDataModule(L.LightningDataModule):
    """Train (long-tailed) / val (balanced, held out) / test (balanced) splits of one source.

    Args:
        source: ``partial`` of a data source (``longtail.data.*Source``), completed with ``root``.
        root: where the data set's files are (``datamodule.root=PATH``); ``None`` for embedded data.
        num_classes: the class count the config expects; the source must agree.
        channels: image channels the model expects (1 for the digits, 3 otherwise).
        imbalance_factor: n_max / n_min of the long-tailed subsample; ``None`` keeps the split as it is.
        imbalance_profile: ``exp`` or ``step``.
        subset_seed: seed of the per-class shuffle (0 is the canonical split; independent of the training seed).
        val: ``none`` (report the last epoch), ``heldout`` (last ``val_per_class`` images of every class,
            carved out before subsampling: a different protocol) or ``source`` (the data set's own val split).
        sampler: ``partial`` of a sampler from :mod:`longtail.data.samplers`, completed with labels and seed.
        augment: ``partial`` of a batch augmentation (:class:`BatchAugment`, ``SimCLRAugment``; mean/std come from
            here), run on the device on every training batch: on whole images of in-memory data, on the crops
            of file-based data (after the per-image crop, flip and ``color_jitter`` of :meth:`_file_transform`).
        image_size / resize: crop size and test-time resize of file-based data sets.
        color_jitter: brightness/contrast/saturation jitter of file-based training images (``None``: off).
        train_reflect_pad: pixels of reflect padding before the random-resized crop of file-based training images
            (Difficulty-Net's ImageNet-LT / Places-LT pipeline pads 4, docs/methods/diffnet.md §5; 0: none).
        protocol: the split strategy (:mod:`longtail.data.split_strategies`): ``ldam`` (docs/methods/README.md §2:
            seeded per-class subsample) or ``diffnet`` (docs/methods/diffnet.md §1: Difficulty-Net's held-out split,
            which needs ``val=heldout`` on in-memory data and ``val=source`` on list data sets).
        meta_per_class: meta-set images per class drawn from a val list (``protocol=diffnet``).
        meta_batch_size: batch size of the meta batches (``None``: ``batch_size``).
        drop_last: drop the last incomplete training batch (BNS pretraining's large contrastive batches).
    """

    def __init__(
        self,
        source: Callable[..., Any],
        num_classes: int,
        root: str | None = None,
        channels: int = 3,
        imbalance_factor: float | None = None,
        imbalance_profile: str = "exp",
        subset_seed: int = 0,
        val: str = "none",
        val_per_class: int = 25,
        sampler: Callable[..., torch.utils.data.Sampler] | None = None,
        augment: Callable[..., BatchAugment] | None = None,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        batch_size: int = 128,  # the global training batch: each of N DDP processes loads batch_size / N
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = True,
        persistent_workers: bool = False,
        image_size: int = 224,
        resize: int = 256,
        color_jitter: float | None = 0.4,
        train_reflect_pad: int = 0,
        seed: int = 0,
        protocol: str = "ldam",
        meta_per_class: int = 10,
        meta_batch_size: int | None = None,
        drop_last: bool = False,
    ):
        super().__init__()
        if protocol not in SPLIT_STRATEGIES:
            raise ValueError(f"datamodule.protocol must be one of {tuple(SPLIT_STRATEGIES)}, got '{protocol}'")
        if val not in VAL_MODES:
            raise ValueError(f"datamodule.val must be one of {VAL_MODES}, got '{val}'")
        if protocol_val_problem(protocol, val):
            raise ValueError(protocol_val_problem(protocol, val))
        if imbalance_factor is not None and imbalance_factor < 1:
            raise ValueError(
                f"datamodule.imbalance_factor must be >= 1 (n_max / n_min, e.g. 100), got {imbalance_factor}"
            )
        self.source_factory, self.root = source, root
        self.num_classes, self.channels = num_classes, channels
        self.imbalance_factor, self.imbalance_profile, self.subset_seed = imbalance_factor, imbalance_profile, subset_seed
        self.val_mode, self.val_per_class = val, val_per_class
        self.sampler_factory, self.augment_factory = sampler, augment
        self.mean, self.std = tuple(mean), tuple(std)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.image_size, self.resize, self.seed = image_size, resize, seed
        self.color_jitter, self.train_reflect_pad = color_jitter, train_reflect_pad
        self.split_strategy, self.meta_per_class = SPLIT_STRATEGIES[protocol], meta_per_class
        self.meta_batch_size = meta_batch_size or batch_size
        self.drop_last = drop_last
        self.train_split = self.val_split = self.test_split = self.meta_split = None
        self.source = None

    @property
    def protocol(self) -> str:
        """The split strategy's name, as configured (``datamodule.protocol``)."""
        return self.split_strategy.name

    @property
    def has_val(self) -> bool:
        return self.val_mode != "none"

    def setup(self, stage: str | None = None) -> None:
        if self.train_split is not None:
            return
        self.source = self.source_factory() if self.root is None else self.source_factory(root=str(Path(self.root).expanduser()))
        if self.source.num_classes != self.num_classes:
            raise ValueError(
                f"the data at '{self.root}' has {self.source.num_classes} classes but the config expects "
                f"{self.num_classes}: pick the matching datamodule (e.g. cifar100_lt) or set datamodule.num_classes"
            )
        train = self.source.load("train")
        splits = self.split_strategy.split(self, train)
        self.train_split, self.val_split, self.meta_split = splits.train, splits.val, splits.meta
        self.test_split = _interleaved(self.source.load("test"))
        if self.val_split is not None:
            self.val_split = _interleaved(self.val_split)
        if isinstance(train, ArraySplit) and train.images.shape[1] != self.channels:
            raise ValueError(
                f"the images have {train.images.shape[1]} channels but datamodule.channels is {self.channels}"
            )
        self._check_disjoint()

    def _check_disjoint(self) -> None:
        if self.val_split is None:
            return
        if isinstance(self.val_split, FileSplit):
            overlap = set(self.val_split.paths) & set(self.test_split.paths)
            overlap |= set(self.val_split.paths) & set(self.train_split.paths)
        else:
            origin = getattr(self.source, "split_origin", {"train": "train", "val": "val", "test": "test"})
            val_origin = "train" if self.val_mode == "heldout" else origin["val"]
            overlap = set()
            for name, split in (("train", self.train_split), ("test", self.test_split)):
                if origin[name] == val_origin:
                    overlap |= set(self.val_split.ids.tolist()) & set(split.ids.tolist())
        if overlap:
            raise RuntimeError(f"validation split overlaps train/test in {len(overlap)} images: the source is broken")

    @property
    def class_counts(self) -> list[int]:
        self.setup()
        return self.train_split.class_counts(self.num_classes)

    @property
    def class_names(self) -> list[str]:
        self.setup()
        return list(self.source.class_names)

    @property
    def data_source(self) -> str:
        """Where the images came from and whether their order is canonical (the source's ``provenance``);
        a source without one (a user's own ``_target_``) is named by its class and root."""
        self.setup()
        provenance = getattr(self.source, "provenance", None)
        if provenance:
            return str(provenance)
        name = getattr(self.source, "name", type(self.source).__name__)
        where = f" at {Path(self.root).expanduser().resolve()}" if self.root is not None else ""
        return f"{name}{where} ({type(self.source).__module__}.{type(self.source).__qualname__} records no provenance)"

    def per_process_batch_size(self, name: str = "batch_size") -> int:
        """``batch_size`` (and ``meta_batch_size``) is the global batch (docs/methods/ride.md §4: the published recipes' batches
        are global): each of the N data-parallel processes loads batch_size / N, so an N-GPU run takes the same
        steps with the same lr."""
        world = self.trainer.world_size if self.trainer is not None else 1
        size = getattr(self, name)
        if size % world:
            raise ValueError(
                f"datamodule.{name}={size} is the global batch and must split evenly over the {world} "
                f"processes: use a multiple of {world}"
            )
        return size // world

    def train_dataloader(self) -> DataLoader:
        factory = self.sampler_factory or InstanceSampler
        sampler = factory(labels=self.train_split.labels, seed=self.seed)
        return self._loader(self.train_split, train=True, sampler=sampler, drop_last=self.drop_last,
                            batch_size=self.per_process_batch_size(), loader_class=EpochStartLoader)

    def train_eval_dataloader(self) -> DataLoader:
        """The training split in file order without augmentation (features for centroids, NCM)."""
        return self._loader(self.train_split, train=False)

    def extra_train_dataloader(self, epoch: int) -> DataLoader:
        """The training stream once more (sampler, loader augmentation) for a pass outside the epoch being trained,
        ordered from ``epoch`` offset by a large prime so that it does not repeat the training order."""
        loader = self.train_dataloader()
        loader.sampler.set_epoch(epoch + 1_000_003)
        return loader

    def train_labels(self) -> torch.Tensor:
        """The training labels in file order."""
        self.setup()
        return self.train_split.labels

    def set_train_subset(self, indices: torch.Tensor, per_class_cap: int) -> None:
        """Serve only ``indices`` of the training split from the coming epoch on: the running training loader's
        sampler must be a :class:`CappedSubsetSampler` with ``cap == per_class_cap`` (``sampler=capped_subset``).
        Called at an epoch's start, it takes effect in that epoch (:class:`EpochStartLoader`)."""
        loader = self.trainer.train_dataloader if self.trainer is not None else None
        sampler = getattr(loader, "sampler", None)
        if not isinstance(sampler, CappedSubsetSampler) or sampler.cap != per_class_cap:
            raise ValueError(
                f"training on a subset of min(n_c, {per_class_cap}) images per class needs sampler=capped_subset "
                f"with sampler.cap={per_class_cap} (got {type(sampler).__name__}"
                f"{f' with cap {sampler.cap}' if isinstance(sampler, CappedSubsetSampler) else ''})"
            )
        sampler.set_subset(indices)

    def meta_dataloader(self, epoch: int = 0, augment: bool = True) -> DataLoader:
        """Shuffled batches of the meta set (``protocol=diffnet``, or the held-out set of ``val=heldout``),
        reshuffled per ``epoch``; file images get the
        training crop with ``augment`` and the test resize-and-centre-crop without it."""
        if self.meta_split is None:
            raise ValueError(NO_META_SET)
        sampler = InstanceSampler(labels=self.meta_split.labels, seed=self.seed + 7919)
        sampler.set_epoch(epoch)
        return self._loader(self.meta_split, train=augment, sampler=sampler,
                            batch_size=self.per_process_batch_size("meta_batch_size"))

    def meta_eval_dataloader(self) -> DataLoader:
        """The meta set without augmentation, for the per-class accuracy vector (every image once)."""
        if self.meta_split is None:
            raise ValueError(NO_META_SET)
        return self._loader(self.meta_split, train=False)

    def val_dataloader(self):
        if self.val_split is None:
            return []
        return self._loader(self.val_split, train=False, sampler=ShardedEvalSampler(len(self.val_split)))

    def test_dataloader(self) -> DataLoader:
        # exact under DDP: each rank evaluates a disjoint shard, torchmetrics sums them at compute
        return self._loader(self.test_split, train=False, sampler=ShardedEvalSampler(len(self.test_split)))

    def _loader(self, split, train: bool, sampler=None, batch_size: int | None = None, drop_last: bool = False,
                loader_class: type[DataLoader] = DataLoader) -> DataLoader:
        """A loader of ``split`` for any data source: in-memory arrays gathered a batch at a time, files decoded
        per image (``train``: the training crop). ``drop_last`` drops the last incomplete batch on both paths."""
        batch_size = batch_size or (self.batch_size if train else self.eval_batch_size)
        pin_memory = self.pin_memory and torch.cuda.is_available()
        if isinstance(split, ArraySplit):
            return loader_class(
                TensorBatches(split),
                batch_size=batch_size,
                sampler=sampler,
                collate_fn=_whole_batch,
                pin_memory=pin_memory,
                drop_last=drop_last,
            )
        return loader_class(
            FileImageDataset(split, self._file_transform(train)),
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=pin_memory,
            persistent_workers=self.persistent_workers,
            drop_last=drop_last,
        )

    def _file_transform(self, train: bool) -> v2.Transform:
        if train:
            jitter = [v2.ColorJitter(*(3 * [self.color_jitter]), 0.0)] if self.color_jitter else []
            pad = [v2.Pad(self.train_reflect_pad, padding_mode="reflect")] if self.train_reflect_pad else []
            return v2.Compose([
                v2.PILToTensor(),
                *pad,
                v2.RandomResizedCrop(self.image_size, antialias=True),
                v2.RandomHorizontalFlip(),
                *jitter,
            ])
        return v2.Compose([v2.PILToTensor(), v2.Resize(self.resize, antialias=True), v2.CenterCrop(self.image_size)])

    def batch_transforms(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The on-device transforms: (train, eval). File-based data arrives cropped (and flipped) per image; an
        ``augment`` for it (colour jitter, RandAugment) then runs batched on the device."""
        if not hasattr(self, "_train_transform"):
            if self.augment_factory is not None:
                self._train_transform = self.augment_factory(mean=self.mean, std=self.std)
            else:
                self._train_transform = BatchEval(self.mean, self.std)
            self._eval_transform = BatchEval(self.mean, self.std)
        return self._train_transform, self._eval_transform

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        train_transform, eval_transform = self.batch_transforms()
        training = self.trainer is not None and self.trainer.training
        transform = train_transform if training else eval_transform
        return transform.to(images.device)(images), labels
