"""Training samplers that change the class mix of the batches (docs/methods/baselines.md §2).

Source: Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition"
(arXiv 1910.09217) and its reference code (github.com/facebookresearch/classifier-balancing,
``data/ClassAwareSampler.py``).

* :class:`InstanceSampler` - plain shuffling, every image once per epoch.
* :class:`ClassAwareSampler` - cycles over classes, ``num_samples_cls`` images of one class per step.
* :class:`SquareRootSampler` - with replacement, P(c) ∝ n_c^q (q = 1/2).
* :class:`ClassBalancedSampler` - the square-root sampler with q = 0 (uniform over classes).
* :class:`ProgressiveSampler` - with replacement, moves from instance- to class-balanced over training.
* :class:`CappedSubsetSampler` - a per-class capped subset (≤ ``cap`` images of every class), shuffled every
  epoch: a seeded uniform draw (the linear probe's balanced subset) until a method sets its own (IP-DPP).
* :class:`ShardedEvalSampler` - evaluation: every index exactly once over all ranks, in order, no padding.

Every sampler draws only from its own ``torch.Generator`` seeded with ``seed + epoch``, and is
DDP-correct by itself: each rank builds the same global sequence, pads it (by repeating its start)
to a multiple of ``num_replicas`` and keeps the strided slice ``[rank::num_replicas]``, as
``DistributedSampler`` does. Use them with ``Trainer(use_distributed_sampler=False)``; Lightning
still calls :meth:`set_epoch` every epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from longtail.common.distributed import is_distributed

Labels = Sequence[int] | np.ndarray | torch.Tensor


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Fill missing ``num_replicas``/``rank`` from torch.distributed, else 1/0, and check them."""
    initialised = is_distributed()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas=} {rank=}")
    return int(num_replicas), int(rank)


class _EpochSampler(Sampler[int]):
    """Shared seeding, epoch and distributed slicing; subclasses only build the global sequence."""

    def __init__(self, labels: Labels, seed: int = 0, num_replicas: int | None = None, rank: int | None = None):
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu()
        else:
            labels = torch.as_tensor(np.asarray(labels))
        if labels.ndim != 1 or labels.numel() == 0:
            raise ValueError(f"labels must be a non-empty 1-D sequence, got shape {tuple(labels.shape)}")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
        if int(labels.min()) < 0:
            raise ValueError(f"labels must be non-negative, got minimum {int(labels.min())}")
        self.labels = labels.long()
        self.seed, self.epoch = int(seed), 0
        self.num_replicas, self.rank = _world(num_replicas, rank)

    #: LDAM-DRW's "Resample" quirk (docs/methods/baselines.md B1): the sampler is built but never used, so training sees plain
    #: shuffled epochs; set by the class-based samplers' ``ldam_resample_noop``
    resample_noop: bool = False

    @property
    def global_length(self) -> int:
        """Length of one epoch's sequence over all ranks, before padding."""
        return len(self.labels)

    def _epoch_length(self) -> int:
        return len(self.labels) if self.resample_noop else self.global_length

    def _global_indices(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self._epoch_length() / self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.resample_noop:
            indices = torch.randperm(len(self.labels), generator=generator)
        else:
            indices = self._global_indices(generator)
        total = len(self) * self.num_replicas
        if total > len(indices):
            indices = indices.repeat(math.ceil(total / len(indices)))[:total]
        return iter(indices[self.rank : total : self.num_replicas].tolist())


class InstanceSampler(_EpochSampler):
    """Instance-balanced sampling: a fresh permutation of all images every epoch.

    ``fixed_permutation`` repeats epoch 0's permutation every epoch (so ``drop_last`` always drops the same
    images), as a single-process ``DistributedSampler`` whose ``set_epoch`` is never called (docs/methods/ipdpp.md Q6).
    """

    def __init__(self, labels: Labels, fixed_permutation: bool = False, **kwargs):
        super().__init__(labels, **kwargs)
        self.fixed_permutation = bool(fixed_permutation)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(0 if self.fixed_permutation else epoch)

    def _global_indices(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(self.labels), generator=generator)


class _ClassSampler(_EpochSampler):
    """Adds per-class counts, checked against an optional ``num_classes``, and ``ldam_resample_noop``.

    Classes are 0..C-1 with C = ``num_classes`` or max label + 1; each must have a sample, since a
    class-dependent sampler would otherwise be asked to draw from a class that does not exist.
    """

    def __init__(
        self,
        labels: Labels,
        seed: int = 0,
        num_classes: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
        ldam_resample_noop: bool = False,
    ):
        super().__init__(labels, seed=seed, num_replicas=num_replicas, rank=rank)
        self.resample_noop = bool(ldam_resample_noop)
        distinct = len(torch.unique(self.labels))
        largest = int(self.labels.max())
        if num_classes is not None and (largest >= num_classes or num_classes < distinct):
            raise ValueError(
                f"num_classes={num_classes} but the labels contain {distinct} distinct classes "
                f"with largest label {largest}"
            )
        self.num_classes = largest + 1 if num_classes is None else int(num_classes)
        self.counts = torch.bincount(self.labels, minlength=self.num_classes)
        empty = torch.nonzero(self.counts == 0).flatten().tolist()
        if empty:
            raise ValueError(
                f"num_classes={self.num_classes} but the labels contain only {distinct} distinct classes; "
                f"classes without samples: {empty[:10]}{' ...' if len(empty) > 10 else ''}"
            )


class ClassAwareSampler(_ClassSampler):
    """Class-aware sampling (Kang et al. §4; ``data/ClassAwareSampler.py``).

    Each class keeps a cyclic iterator over its own indices, reshuffled at every wrap; a class
    iterator cycles over a permutation of the classes, also reshuffled at every wrap. Each step
    takes the next class and emits its next ``num_samples_cls`` indices. Epoch length is n_max·C.

    The j-th visit of a class always falls in the j-th pass over the class permutation, so the
    whole epoch is built with tensor ops: one stream of wrapped permutations per class, gathered
    at offset j·k for step s = j·C + position.
    """

    def __init__(
        self,
        labels: Labels,
        num_samples_cls: int = 4,
        **kwargs,
    ):
        if num_samples_cls < 1:
            raise ValueError(f"num_samples_cls must be >= 1, got {num_samples_cls}")
        super().__init__(labels, **kwargs)
        self.num_samples_cls = int(num_samples_cls)
        order = torch.argsort(self.labels, stable=True)
        self.class_indices = list(torch.split(order, self.counts.tolist()))

    @property
    def global_length(self) -> int:
        return int(self.counts.max()) * self.num_classes

    def _global_indices(self, generator: torch.Generator) -> torch.Tensor:
        k, num_classes = self.num_samples_cls, self.num_classes
        steps = math.ceil(self.global_length / k)
        passes = math.ceil(steps / num_classes)
        class_order = torch.cat([torch.randperm(num_classes, generator=generator) for _ in range(passes)])[:steps]
        width = passes * k
        streams = torch.empty(num_classes, width, dtype=torch.long)
        for c, members in enumerate(self.class_indices):
            wraps = math.ceil(width / len(members))
            keys = torch.rand(wraps, len(members), generator=generator, dtype=torch.float64)
            streams[c] = members[keys.argsort(dim=1)].flatten()[:width]
        step = torch.arange(steps)
        columns = (step // num_classes * k)[:, None] + torch.arange(k)
        return streams[class_order[:, None], columns].flatten()[: self.global_length]


class _WeightedClassSampler(_ClassSampler):
    """Draws N indices with replacement; class c has probability ``class_probabilities[c]`` ((C,) float64)."""

    @property
    def class_probabilities(self) -> torch.Tensor:
        raise NotImplementedError

    def _global_indices(self, generator: torch.Generator) -> torch.Tensor:
        per_sample = (self.class_probabilities / self.counts.double())[self.labels]
        return torch.multinomial(per_sample, len(self.labels), replacement=True, generator=generator)


class SquareRootSampler(_WeightedClassSampler):
    """Square-root sampling: P(c) ∝ n_c^q (q = 1/2; q = 0 class-balanced, q = 1 instance-balanced)."""

    def __init__(
        self,
        labels: Labels,
        q: float = 0.5,
        **kwargs,
    ):
        super().__init__(labels, **kwargs)
        self.q = float(q)

    @property
    def class_probabilities(self) -> torch.Tensor:
        weights = self.counts.double() ** self.q
        return weights / weights.sum()


class ClassBalancedSampler(SquareRootSampler):
    """Class-balanced sampling: the square-root sampler with q = 0 (cRT on CIFAR, BagofTricks-LT)."""

    def __init__(self, labels: Labels, **kwargs):
        super().__init__(labels, q=0.0, **kwargs)


class ProgressiveSampler(_WeightedClassSampler):
    """Progressively-balanced sampling: P_t(c) = (1 − t/T)·n_c/N + (t/T)/C.

    t is the epoch given to :meth:`set_epoch`, clipped to [0, T] with T = ``max_epochs``.
    """

    def __init__(
        self,
        labels: Labels,
        max_epochs: int,
        **kwargs,
    ):
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        super().__init__(labels, **kwargs)
        self.max_epochs = int(max_epochs)

    @property
    def class_probabilities(self) -> torch.Tensor:
        t = min(max(self.epoch, 0), self.max_epochs) / self.max_epochs
        instance = self.counts.double() / len(self.labels)
        return (1 - t) * instance + t / self.num_classes


class CappedSubsetSampler(_ClassSampler):
    """A subset with min(n_c, ``cap``) images of every class c, in a fresh order every epoch.

    Until :meth:`set_subset` is called the subset is a uniform draw per class seeded with ``draw_seed``
    (fixed for the whole run: the linear probe's balanced subset, docs/methods/ipdpp.md §2). A method may replace it at
    any epoch start with its own choice (IP-DPP's k-DPP draws, §3); the epoch length never changes.
    """

    def __init__(self, labels: Labels, cap: int, draw_seed: int = 0, **kwargs):
        if cap < 1:
            raise ValueError(f"cap must be >= 1 image per class, got {cap}")
        super().__init__(labels, **kwargs)
        self.cap = int(cap)
        self.capped_counts = self.counts.clamp(max=self.cap)
        generator = torch.Generator().manual_seed(int(draw_seed))
        members = torch.split(torch.argsort(self.labels, stable=True), self.counts.tolist())
        self.subset = torch.cat([m[torch.randperm(len(m), generator=generator)[: self.cap]] for m in members]).sort()[0]

    @property
    def global_length(self) -> int:
        return int(self.capped_counts.sum())

    def set_subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> None:
        """Train on ``indices`` (into ``labels``) from the next epoch on; they must hold min(n_c, cap) of class c."""
        indices = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        if indices.unique().numel() != indices.numel():
            raise ValueError("the subset repeats images")
        counts = torch.bincount(self.labels[indices], minlength=self.num_classes)
        if not torch.equal(counts, self.capped_counts):
            raise ValueError(
                f"the subset has per-class counts {counts.tolist()} but the sampler draws min(n_c, cap={self.cap}) "
                f"= {self.capped_counts.tolist()}"
            )
        self.subset = indices.sort()[0]

    def _global_indices(self, generator: torch.Generator) -> torch.Tensor:
        return self.subset[torch.randperm(len(self.subset), generator=generator)]


class ShardedEvalSampler(Sampler[int]):
    """Evaluation sampler: rank r of W takes indices r, r+W, r+2W, ... of 0..N-1, with no padding.

    Under DDP with ``use_distributed_sampler=False`` every rank would otherwise evaluate the whole
    split, and the torchmetrics sums synchronised at ``compute`` would count each sample W times.
    ``DistributedSampler`` is no fix either: it pads the last shard by repeating indices, so a few
    samples are counted twice. Evaluation must be exact, so the shards here are disjoint, cover every
    index once, and may differ in length by one (which DDP evaluation tolerates: no gradient sync).
    With one process (the default when torch.distributed is not initialised) it yields 0..N-1.
    """

    def __init__(self, num_samples: int, num_replicas: int | None = None, rank: int | None = None):
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.num_samples = int(num_samples)
        self.num_replicas, self.rank = _world(num_replicas, rank)

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_samples, self.num_replicas))
