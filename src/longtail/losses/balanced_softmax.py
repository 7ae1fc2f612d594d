"""Balanced Softmax, Ren et al., arXiv 2007.10740.

Reference: github.com/jiawei-ren/BalancedMetaSoftmax-Classification ``loss/BalancedSoftmaxLoss.py``.

    l = CE(z + log pi, y),    pi = n / sum(n)

(raw counts give the same loss). Computed in log space only, so it is finite for logits of any magnitude;
predictions use ``argmax z``. Optional class weights use the weighted-CE semantics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from longtail.losses.weights import ClassCounts, ClassWeightedLoss, log_prior, register_constant


class BalancedSoftmaxLoss(ClassWeightedLoss):
    log_prior: torch.Tensor

    def __init__(self, class_counts: ClassCounts, weight: Sequence[float] | torch.Tensor | None = None):
        super().__init__(weight)
        register_constant(self, "log_prior", log_prior(class_counts))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._cross_entropy(logits + self.log_prior.to(logits.dtype), target)
