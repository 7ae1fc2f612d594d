"""Logit adjustment, Menon et al., arXiv 2007.07314.

Loss form:     l = CE(z + tau log pi, y),  pi = n / sum(n)   (tau = 1 equals Balanced Softmax).
Post-hoc form: train plain CE, predict ``argmax_c (z_c - tau log pi_c)`` (an evaluation-time transform).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from longtail.losses.weights import ClassCounts, ClassWeightedLoss, log_prior, register_constant


class LogitAdjustedLoss(ClassWeightedLoss):
    log_prior: torch.Tensor

    def __init__(
        self,
        class_counts: ClassCounts,
        tau: float = 1.0,
        weight: Sequence[float] | torch.Tensor | None = None,
    ):
        super().__init__(weight)
        self.tau = float(tau)
        register_constant(self, "log_prior", log_prior(class_counts))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._cross_entropy(logits + self.tau * self.log_prior.to(logits.dtype), target)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


def posthoc_adjust(logits: torch.Tensor, class_counts: ClassCounts, tau: float) -> torch.Tensor:
    """``logits - tau * log pi``; its argmax is the post-hoc logit-adjusted prediction."""
    return logits - tau * log_prior(class_counts).to(device=logits.device, dtype=logits.dtype)
