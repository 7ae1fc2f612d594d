"""Label-aware smoothing (LAS), concave form, as used by Difficulty-Net stage 2 (docs/methods/diffnet.md §4).

Source: Zhong et al., "Improving Calibration for Long-Tailed Recognition" (MiSLAS), CVPR 2021,
arXiv 2104.00466, reference github.com/dvlab-research/MiSLAS ``methods.py``; used unchanged by
Difficulty-Net (github.com/hitachi-rd-cv/Difficulty_Net). Head classes are smoothed more than tail
classes, which counteracts over-confidence on frequent classes:

    eps_y = eps_tail + (eps_head - eps_tail) sin( pi (n_y - n_min) / (2 (n_max - n_min)) )
    L     = mean_i [ (1 - eps_{y_i}) (-log p_{i,y_i}) + eps_{y_i} mean_c (-log p_{i,c}) ]

With ``eps = 0`` this is plain cross-entropy. When every class has the same count the sine is undefined
(0/0); every class then counts as a head class and gets ``eps_head``.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from longtail.losses.weights import ClassCounts, ClassWeightedLoss, counts_tensor, register_constant


def label_aware_smoothing(
    class_counts: ClassCounts, smooth_head: float, smooth_tail: float, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Per-class smoothing ``eps_c`` (C,), from ``smooth_tail`` at n_min to ``smooth_head`` at n_max."""
    for name, value in (("smooth_head", smooth_head), ("smooth_tail", smooth_tail)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value}")
    counts = counts_tensor(class_counts)
    n_min, n_max = counts.min(), counts.max()
    if n_max == n_min:
        return torch.full_like(counts, smooth_head, dtype=dtype)
    phase = math.pi * (counts - n_min) / (2.0 * (n_max - n_min))
    return (smooth_tail + (smooth_head - smooth_tail) * torch.sin(phase)).to(dtype)


def cifar_las_smoothing(imbalance_factor: float) -> tuple[float, float]:
    """Difficulty-Net's CIFAR ``(eps_head, eps_tail)`` for an imbalance factor ``n_max / n_min``."""
    if imbalance_factor < 1:
        raise ValueError(f"imbalance_factor must be >= 1, got {imbalance_factor}")
    if imbalance_factor > 100:
        return 0.4, 0.0
    if imbalance_factor > 50:
        return 0.4, 0.1
    if imbalance_factor > 20:
        return 0.3, 0.0
    return 0.2, 0.0


class LabelAwareSmoothingLoss(ClassWeightedLoss):
    """MiSLAS label-aware smoothing loss (concave form); ``eps`` is the non-persistent buffer ``smoothing``.

    Give ``smooth_head`` and ``smooth_tail``, or leave them ``None`` to take the CIFAR values of
    :func:`cifar_las_smoothing` for ``imbalance_factor``. The house ``weight`` attribute is not
    supported: ``forward`` raises if it is set.
    """

    smoothing: torch.Tensor

    def __init__(
        self,
        class_counts: ClassCounts,
        smooth_head: float | None = None,
        smooth_tail: float | None = None,
        imbalance_factor: float | None = None,
    ):
        super().__init__()
        if smooth_head is None or smooth_tail is None:
            if imbalance_factor is None:
                raise ValueError("LabelAwareSmoothingLoss needs smooth_head and smooth_tail, or imbalance_factor")
            default_head, default_tail = cifar_las_smoothing(imbalance_factor)
            smooth_head = default_head if smooth_head is None else smooth_head
            smooth_tail = default_tail if smooth_tail is None else smooth_tail
        self.smooth_head, self.smooth_tail = smooth_head, smooth_tail
        register_constant(self, "smoothing", label_aware_smoothing(class_counts, smooth_head, smooth_tail))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            raise ValueError("LabelAwareSmoothingLoss does not support class weights; leave .weight as None")
        if logits.ndim != 2 or logits.shape[1] != self.smoothing.numel():
            raise ValueError(f"logits must have shape (B, {self.smoothing.numel()}), got {tuple(logits.shape)}")
        log_probs = F.log_softmax(logits, dim=1)
        nll = -log_probs.gather(1, target.unsqueeze(1)).squeeze(1)
        uniform = -log_probs.mean(dim=1)
        eps = self.smoothing.to(logits.dtype)[target]
        return ((1.0 - eps) * nll + eps * uniform).mean()
