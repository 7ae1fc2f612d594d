"""Cross-entropy with optional class weights.

Unweighted: ``mean_i CE(z_i, y_i)``. Weighted (PyTorch ``weight=`` semantics, relied on by every reference
code base, e.g. github.com/kaidic/LDAM-DRW): ``sum_i w_{y_i} CE(z_i, y_i) / sum_i w_{y_i}``, which is
invariant to rescaling all weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from longtail.losses.weights import ClassCounts, ClassWeightedLoss


class CrossEntropy(ClassWeightedLoss):
    """Plain (optionally class-weighted) cross-entropy; ``class_counts`` is accepted for the uniform API only."""

    def __init__(
        self,
        class_counts: ClassCounts | None = None,
        weight: Sequence[float] | torch.Tensor | None = None,
    ):
        super().__init__(weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._cross_entropy(logits, target)
