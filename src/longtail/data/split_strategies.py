"""How a data module carves its source into train, validation and held-out (meta) sets: ``datamodule.protocol``.

Each strategy takes the data module's settings and the source's training split and returns the
:class:`Splits`; the data module only picks one by name and loads. A new protocol is a new strategy here and a name
in :data:`SPLIT_STRATEGIES`, not a branch in the data module.

- ``ldam`` (docs/methods/README.md §2): the seeded per-class subsample of the LDAM protocol; validation is none,
  ``heldout`` (the last ``val_per_class`` images of every class, carved out before subsampling, which are also the
  meta set a method may ask for) or ``source`` (the data set's own val split).
- ``diffnet`` (docs/methods/diffnet.md §1): Difficulty-Net's own split. On in-memory data in file order the last
  ``val_per_class`` train images of every class are the held-out set (validation, meta and accuracy set at once) and
  class c keeps the *first* n_c images of the rest, no shuffle (``val=heldout``); on list data sets the meta set is
  ``meta_per_class`` images per class drawn with ``subset_seed`` from the official val list, which stays the
  validation split (``val=source``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from longtail.data.imbalance import heldout_split, lt_counts, lt_prefix, lt_subsample, per_class_sample
from longtail.data.splits import ArraySplit


@dataclass(frozen=True)
class Splits:
    """What a strategy gives the data module: the long-tailed training split, the validation split and the
    held-out (meta) set (either ``None`` when the protocol has none)."""

    train: Any
    val: Any = None
    meta: Any = None


class SplitStrategy(Protocol):
    name: str

    def validation_modes(self) -> tuple[str, ...]:
        """The ``datamodule.val`` values this protocol allows."""

    def split(self, datamodule, train) -> Splits:
        """The splits of ``train`` (the source's training split) under ``datamodule``'s settings."""


def long_tailed(datamodule, pool, subsample):
    """``pool`` subsampled to the data module's long-tailed counts (``None`` imbalance factor: unchanged)."""
    if datamodule.imbalance_factor is None:
        return pool
    counts = lt_counts(min(pool.class_counts(datamodule.num_classes)), datamodule.num_classes,
                       datamodule.imbalance_factor, datamodule.imbalance_profile)
    return pool.subset(subsample(pool.labels, counts))


def _seeded(datamodule):
    return lambda labels, counts: lt_subsample(labels, counts, seed=datamodule.subset_seed)


class LDAMSplit:
    name = "ldam"

    def validation_modes(self) -> tuple[str, ...]:
        return ("none", "heldout", "source")

    def split(self, datamodule, train) -> Splits:
        val = meta = None
        if datamodule.val_mode == "heldout":
            keep, held = heldout_split(train.labels, datamodule.val_per_class)
            val = meta = train.subset(held)
            train = train.subset(keep)
        elif datamodule.val_mode == "source":
            val = datamodule.source.load("val")
        return Splits(long_tailed(datamodule, train, _seeded(datamodule)), val, meta)


class DifficultyNetSplit:
    name = "diffnet"

    def validation_modes(self) -> tuple[str, ...]:
        return ("heldout", "source")

    def split(self, datamodule, train) -> Splits:
        if isinstance(train, ArraySplit):
            self._check_val(datamodule, "heldout", "in-memory data in file order: its held-out set is the last "
                                                   "val_per_class training images of every class")
            return self._held_out(datamodule, train)
        source = datamodule.source
        if getattr(source, "list_names", {}).get("val") is None:
            raise ValueError(
                f"protocol=diffnet needs the training images in their file order (in-memory CIFAR-style data, to "
                f"hold out the last {datamodule.val_per_class} of every class) or an official val list to draw the "
                f"meta set from (ImageNet-LT, Places-LT); {getattr(source, 'name', type(source).__name__)} has "
                f"neither: use protocol=ldam"
            )
        self._check_val(datamodule, "source", "a list data set: it validates on the official val list and draws "
                                              "its meta set from it")
        return self._from_val_list(datamodule, train)

    @staticmethod
    def _check_val(datamodule, wanted: str, kind: str) -> None:
        if datamodule.val_mode != wanted:
            raise ValueError(f"protocol=diffnet on {kind}: set datamodule.val={wanted} (got val={datamodule.val_mode})")

    @staticmethod
    def _held_out(datamodule, train) -> Splits:
        counts = train.class_counts(datamodule.num_classes)
        per_class = datamodule.val_per_class
        if min(counts) < per_class + 1:
            raise ValueError(
                f"protocol=diffnet holds out the last {per_class} training images of every class and trains on the "
                f"rest, but class {counts.index(min(counts))} has only {min(counts)} images: it needs at least "
                f"{per_class} + 1 (lower datamodule.val_per_class, or use protocol=ldam)"
            )
        keep, held = heldout_split(train.labels, per_class, datamodule.num_classes)
        held = train.subset(held)
        return Splits(long_tailed(datamodule, train.subset(keep), lt_prefix), held, held)

    @staticmethod
    def _from_val_list(datamodule, train) -> Splits:
        val = datamodule.source.load("val")
        meta = val.subset(per_class_sample(val.labels, datamodule.meta_per_class, seed=datamodule.subset_seed))
        return Splits(long_tailed(datamodule, train, _seeded(datamodule)), val, meta)

SPLIT_STRATEGIES: dict[str, SplitStrategy] = {strategy.name: strategy for strategy in (LDAMSplit(), DifficultyNetSplit())}


def protocol_val_problem(protocol: str, val: str) -> str | None:
    """Why ``datamodule.protocol=protocol`` cannot run with ``datamodule.val=val``, or ``None`` when it can."""
    modes = SPLIT_STRATEGIES[protocol].validation_modes()
    if val in modes:
        return None
    return (f"protocol={protocol} validates on its own held-out set, so datamodule.val must be "
            f"{' or '.join(modes)} (heldout: in-memory data such as CIFAR; source: a list data set's val list), "
            f"got val={val}")
