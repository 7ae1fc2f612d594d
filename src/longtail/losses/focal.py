"""Focal loss, Lin et al., arXiv 1708.02002, with class weights as in LDAM-DRW (arXiv 1906.07413).

Default (paper): ``L = mean_i w_{y_i} (1 - p_i)^gamma CE_i`` with ``p_i = softmax(z_i)_{y_i}``, a plain mean
over the batch (not divided by the weight sum); ``w = 1`` without weights, and ``gamma = 0`` is CE.

``pt_from_weighted_ce=True`` reproduces github.com/kaidic/LDAM-DRW ``losses.py`` (docs/methods/baselines.md §6, B2):
``ce_i = w_{y_i} CE_i``, ``p_i = exp(-ce_i)``, ``L = mean_i (1 - p_i)^gamma ce_i``, so with weights ``p_i`` is
``p_true ** w_{y_i}`` rather than the softmax probability.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from longtail.losses.weights import ClassCounts, ClassWeightedLoss


class FocalLoss(ClassWeightedLoss):
    def __init__(
        self,
        class_counts: ClassCounts | None = None,
        gamma: float = 2.0,
        pt_from_weighted_ce: bool = False,
        weight: Sequence[float] | torch.Tensor | None = None,
    ):
        super().__init__(weight)
        if gamma < 0:
            raise ValueError(f"gamma must be non-negative, got {gamma}")
        self.gamma = float(gamma)
        self.pt_from_weighted_ce = pt_from_weighted_ce

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_pt = F.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
        weight = self._weight_like(logits)
        class_weight = None if weight is None else weight[target]
        if self.pt_from_weighted_ce and class_weight is not None:
            log_pt = class_weight * log_pt
            class_weight = None
        loss = (-torch.expm1(log_pt)).pow(self.gamma) * -log_pt
        if class_weight is not None:
            loss = class_weight * loss
        return loss.mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, pt_from_weighted_ce={self.pt_from_weighted_ce}"
