"""Difficulty-Net losses: the driver loss, the class weights and the difficulty-weighted loss.

Source: Sinha & Ohashi, "Difficulty-Net", WACV 2023, arXiv 2209.02960; reference code
github.com/hitachi-rd-cv/Difficulty_Net (docs/methods/diffnet.md §3, §7 N3). With ``o = DN(a)`` the difficulties
predicted from the class accuracies ``a`` (:class:`longtail.models.DifficultyNet`):

    t_c    = 1 - a_c / (sum_j a_j + 1e-12)           driver target (a = 0 gives t = 1)
    L_drv  = mean_c (o_c - t_c)^2                    driver loss, pulls o toward the heuristic t
    w_c    = C o_c / sum_j o_j                       class weights, mean 1
    L      = mean_i w_{y_i} l_i                      weighted loss; l = CE(z, y) or CE(z + log pi, y)

The weighted loss is a plain batch mean of ``w_{y_i} l_i``, not PyTorch's normalised weighted mean,
and stays differentiable in ``w`` so that the meta-gradient reaches Difficulty-Net. The reference's
Balanced-Softmax variant loses the per-sample weighting through a broadcasting slip (N3):
``L = mean_i(l_i) mean_j(w_{y_j})``; ``bs_broadcast_bug=True`` reproduces it.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from longtail.losses.weights import ClassCounts, ClassWeightedLoss, counts_tensor, log_prior, register_constant

DRIVER_EPS = 1e-12


def driver_target(accuracies: torch.Tensor) -> torch.Tensor:
    """``t = 1 - a / (sum(a) + 1e-12)`` over the last dimension, computed in float64 as the reference does.

    The result has the input's dtype (float32 for non-floating input).
    """
    dtype = accuracies.dtype if accuracies.is_floating_point() else torch.float32
    a = accuracies.to(torch.float64)
    return (1.0 - a / (a.sum(dim=-1, keepdim=True) + DRIVER_EPS)).to(dtype)


def driver_loss(outputs: torch.Tensor, accuracies: torch.Tensor) -> torch.Tensor:
    """``mean_c (o_c - t_c)^2`` with ``t = driver_target(a)``; differentiable in the outputs ``o``."""
    target = driver_target(accuracies).to(device=outputs.device, dtype=outputs.dtype)
    if target.shape != outputs.shape:
        raise ValueError(f"outputs {tuple(outputs.shape)} and accuracies {tuple(target.shape)} differ in shape")
    return F.mse_loss(outputs, target)


def difficulty_class_weights(outputs: torch.Tensor) -> torch.Tensor:
    """Class weights ``C o / sum(o)`` over the last dimension (mean 1); keeps the autograd graph."""
    return outputs * (outputs.shape[-1] / outputs.sum(dim=-1, keepdim=True))


class DifficultyWeightedLoss(ClassWeightedLoss):
    """Per-sample CE or Balanced Softmax, averaged with per-class Difficulty-Net weights.

    ``forward(logits, target, class_weights)`` returns ``mean_i w_{y_i} l_i``; ``class_weights`` is a (C,)
    tensor that may carry a graph (the virtual step differentiates through it) and ``None`` gives the
    plain mean. Difficulty-Net weights change every iteration, so they are passed per call. The
    ``weight`` attribute of the house loss API is honoured as a fallback with the same (unnormalised)
    semantics when ``class_weights`` is ``None``; setting both raises.

    Args:
        class_counts: training counts n; they define C and, with Balanced Softmax, pi = n / sum(n).
        balanced_softmax: use ``l_i = CE(z_i + log pi, y_i)`` instead of ``CE(z_i, y_i)``.
        bs_broadcast_bug: reference quirk N3, ``L = mean_i(l_i) mean_j(w_{y_j})``. It occurs only in the
            reference's Balanced-Softmax path, so with CE (``fidelity=reference`` on a CE run) it changes nothing.
    """

    log_prior: torch.Tensor

    def __init__(self, class_counts: ClassCounts, balanced_softmax: bool = False, bs_broadcast_bug: bool = False):
        super().__init__()
        self.num_classes = counts_tensor(class_counts).numel()
        self.balanced_softmax = balanced_softmax
        self.bs_broadcast_bug = bs_broadcast_bug
        register_constant(self, "log_prior", log_prior(class_counts))

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The unweighted per-sample losses ``l``, shape (B,)."""
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must have shape (B, {self.num_classes}), got {tuple(logits.shape)}")
        if self.balanced_softmax:
            logits = logits + self.log_prior.to(logits.dtype)
        return F.cross_entropy(logits, target, reduction="none")

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.weighted_mean(self.per_sample(logits, target), target, class_weights)

    def weighted_mean(
        self, losses: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The reduction of per-sample values ``losses`` (B,): ``mean_i w_{y_i} losses_i`` (or the N3 form).

        It is linear in ``losses``, so applied to per-sample directional derivatives it gives the directional
        derivative of the loss (Difficulty-Net's meta-gradient uses this)."""
        weights = self._class_weights(class_weights, losses)
        if weights is None:
            return losses.mean()
        sample_weights = weights[target]
        if self.bs_broadcast_bug and self.balanced_softmax:
            return losses.mean() * sample_weights.mean()
        return (sample_weights * losses).mean()

    def _class_weights(self, class_weights: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        """The per-call weights (or the ``weight`` attribute) on ``like``'s device and dtype, or ``None``."""
        if class_weights is None:
            return self._weight_like(like)
        if self.weight is not None:
            raise ValueError("pass Difficulty-Net weights either per call or through .weight, not both")
        if class_weights.shape != (self.num_classes,):
            raise ValueError(f"class_weights must have shape ({self.num_classes},), got {tuple(class_weights.shape)}")
        return class_weights.to(device=like.device, dtype=like.dtype)
