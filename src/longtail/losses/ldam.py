"""LDAM loss (label-distribution-aware margin), Cao et al., arXiv 1906.07413.

Reference: github.com/kaidic/LDAM-DRW ``losses.py``. Margins ``m_c = K n_c^{-1/4}`` with K such that
``max_c m_c = max_m``; only the target logit is reduced:

    L = CE(s * (cos - m_y e_y), y)  =  CE(z - s m_y e_y, y)    with z = s * cos.

Convention here: ``forward`` receives logits ``z`` already multiplied by ``scale`` (the cosine head scales),
so the loss subtracts ``scale * m_y`` from the target logit. The head's scale is the one source of truth:
the configs interpolate ``loss.scale`` from it, and :func:`check_head_scale` refuses a loss whose scale differs. Class weights (e.g. DRW) use the weighted-CE
semantics ``sum_i w_{y_i} l_i / sum_i w_{y_i}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from longtail.losses.weights import ClassCounts, ClassWeightedLoss, counts_tensor, register_constant


def ldam_margins(class_counts: ClassCounts, max_m: float = 0.5) -> torch.Tensor:
    """``n_c^{-1/4}`` rescaled so the largest margin is ``max_m`` (float64, CPU)."""
    margins = counts_tensor(class_counts).pow(-0.25)
    return margins * (max_m / margins.max())


class LDAMLoss(ClassWeightedLoss):
    margins: torch.Tensor

    def __init__(
        self,
        class_counts: ClassCounts,
        max_m: float = 0.5,
        scale: float = 30.0,
        weight: Sequence[float] | torch.Tensor | None = None,
    ):
        super().__init__(weight)
        self.max_m = float(max_m)
        self.scale = float(scale)
        register_constant(self, "margins", ldam_margins(class_counts, self.max_m))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        shift = (self.scale * self.margins.to(logits.dtype))[target].unsqueeze(1)
        is_target = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, target.unsqueeze(1), True)
        return self._cross_entropy(torch.where(is_target, logits - shift, logits), target)

    def extra_repr(self) -> str:
        return f"num_classes={self.margins.numel()}, max_m={self.max_m}, scale={self.scale}"


def check_head_scale(loss: torch.nn.Module, head: torch.nn.Module) -> None:
    """Raise if an LDAM loss (alone or as a RIDE base loss) assumes another logit scale than the cosine head's."""
    ldam = getattr(loss, "base_loss", loss)
    head_scale = getattr(head, "scale", None)
    if isinstance(ldam, LDAMLoss) and head_scale is not None and float(head_scale) != ldam.scale:
        raise ValueError(
            f"LDAM's scale ({ldam.scale}) differs from the cosine head's ({float(head_scale)}): the loss subtracts "
            "scale * m_y from logits the head already scaled. Set the scale once, on the model "
            "(model.head_kwargs.scale, or model.scale for RIDE); loss.scale follows it"
        )
