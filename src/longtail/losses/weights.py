"""Per-class constants derived from training counts, and the shared class-weight plumbing.

Class-balanced ("effective number") weights, Cui et al., arXiv 1901.05555, as used by deferred
re-weighting (DRW) in Cao et al., arXiv 1906.07413 (github.com/kaidic/LDAM-DRW, ``cifar_train.py``):

    r_c = (1 - beta) / (1 - beta ** n_c),    rescaled so that sum_c r_c = C.

``beta = 0`` gives all ones. DRW uses no weights before a start epoch and ``beta = 0.9999`` from it on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

ClassCounts = Sequence[int] | torch.Tensor


def counts_tensor(class_counts: ClassCounts) -> torch.Tensor:
    """Class counts as a 1-D float64 CPU tensor; raises unless every count is positive."""
    counts = torch.as_tensor(class_counts, dtype=torch.float64, device="cpu")
    if counts.ndim != 1 or counts.numel() == 0:
        raise ValueError(f"class_counts must be a non-empty 1-D sequence, got shape {tuple(counts.shape)}")
    if not bool((counts > 0).all()):
        raise ValueError("every class count must be positive")
    return counts


def log_prior(class_counts: ClassCounts) -> torch.Tensor:
    """``log pi`` with ``pi = n / sum(n)``, float64 on the CPU."""
    counts = counts_tensor(class_counts)
    return counts.log() - counts.sum().log()


def class_balanced_weights(
    class_counts: ClassCounts, beta: float, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Effective-number weights ``(1 - beta) / (1 - beta**n_c)`` rescaled to sum to C (computed in float64)."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must lie in [0, 1), got {beta}")
    counts = counts_tensor(class_counts)
    weights = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts))
    return (weights * (counts.numel() / weights.sum())).to(dtype)


def inverse_frequency_weights(class_counts: ClassCounts, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``1 / n_c`` rescaled to sum to C (BagofTricks-LT's CE-DRW weights)."""
    weights = 1.0 / counts_tensor(class_counts)
    return (weights * (weights.numel() / weights.sum())).to(dtype)


DRW_WEIGHTS = ("cb", "inverse")


class DeferredReweighting:
    """DRW schedule: no class weights before ``start_epoch`` (0-indexed), CB(``beta``) weights from it on
    (``kind="inverse"``: 1/n weights, BagofTricks-LT's CE-DRW).

    ``start_epoch=None`` never switches weights on.
    """

    def __init__(self, start_epoch: int | None, beta: float = 0.9999, kind: str = "cb"):
        if kind not in DRW_WEIGHTS:
            raise ValueError(f"DRW weights must be one of {DRW_WEIGHTS}, got {kind!r}")
        self.start_epoch = start_epoch
        self.beta = beta
        self.kind = kind

    def active(self, epoch: int) -> bool:
        return self.start_epoch is not None and epoch >= self.start_epoch

    def weights(self, epoch: int, class_counts: ClassCounts) -> torch.Tensor | None:
        """The (C,) float32 class weights for ``epoch``, or ``None`` while re-weighting is off."""
        if not self.active(epoch):
            return None
        if self.kind == "inverse":
            return inverse_frequency_weights(class_counts)
        return class_balanced_weights(class_counts, self.beta)

    def __repr__(self) -> str:
        return f"DeferredReweighting(start_epoch={self.start_epoch}, beta={self.beta}, kind={self.kind!r})"


class ClassWeightedLoss(nn.Module):
    """Base of every loss: holds the optional (C,) class ``weight`` that a method may reassign at any time.

    ``weight`` is a non-persistent buffer (``None`` or a tensor), so ``.to(device)`` moves it and checkpoints
    do not depend on it; it is cast to the logits' device and dtype in ``forward``.
    """

    weight: torch.Tensor | None

    def __init__(self, weight: Sequence[float] | torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("weight", None if weight is None else _as_weight(weight), persistent=False)

    def _weight_like(self, logits: torch.Tensor) -> torch.Tensor | None:
        if self.weight is None:
            return None
        return self.weight.to(device=logits.device, dtype=logits.dtype)

    def _cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean CE with PyTorch ``weight=`` semantics: ``sum_i w_{y_i} l_i / sum_i w_{y_i}``."""
        return F.cross_entropy(logits, target, weight=self._weight_like(logits))


def _as_weight(weight: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """A (C,) floating-point weight tensor; floating tensors keep their dtype, anything else becomes float32."""
    if isinstance(weight, torch.Tensor) and weight.is_floating_point():
        return weight.detach()
    return torch.as_tensor(weight, dtype=torch.float32)


def register_constant(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Register a class-count-derived constant as a non-persistent float32 buffer."""
    module.register_buffer(name, value.to(torch.float32), persistent=False)
