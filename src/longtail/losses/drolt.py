"""DRO-LT losses: the distributional-robustness feature loss and the frequency-weighted CE ("ce_lt").

Source: Samuel & Chechik, "Distributional Robustness Loss for Long-tail Learning", arXiv 2104.03066
(ICCV 2021); reference code github.com/dvirsamuel/DRO-LT ``losses.py``. The equations follow the code
(docs/methods/drolt.md §2).

Robust loss. For a batch ``(z_i, y_i)``, i = 1..B, constant class centroids ``mu_c`` and learned margins
``eps_c``, with ``K`` the distinct batch labels and ``B_c = {i : y_i = c}``:

    D_ci     = ||mu_c - z_i||_2                               (plain, not squared)
    l_ci     = -(D_ci + E_ci) / T,          E_ci = eps_c [y_i = c]
    log P_ci = l_ci - logsumexp_j l_cj                        (softmax over the batch samples)
    L_c      = -(T / T_base) mean_{i in B_c} log P_ci,        c in K
    L_rob    = mean_{c in K} L_c       or, with class weights w,   sum_{c in K} w_c L_c / sum_{all c} w_c

``eps_index="reference"`` reproduces the released code's margin indexing (docs/methods/drolt.md D1): the positives
(c, i), enumerated in row-major order (by class, then sample index), receive ``eps[y_k]`` in batch order,
so a positive can get another class's margin unless the batch is sorted by label.
``logsumexp`` replaces the code's ``log(sum(exp))`` (D9).

Frequency-weighted CE ("ce_lt"): ``w_c = n_c / max_j n_j`` with PyTorch weighted-mean semantics
``sum_i w_{y_i} CE_i / sum_i w_{y_i}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from longtail.losses.weights import ClassCounts, ClassWeightedLoss, _as_weight, counts_tensor

EPS_INDEX_MODES = ("paper", "reference")


def frequency_weights(class_counts: ClassCounts) -> torch.Tensor:
    """The "ce_lt" class weights ``w_c = n_c / max_j n_j`` as a (C,) float32 tensor."""
    counts = counts_tensor(class_counts)
    return (counts / counts.max()).to(torch.float32)


class FrequencyWeightedCE(ClassWeightedLoss):
    """Cross-entropy weighted by class frequency (DRO-LT "ce_lt"); ``weight`` overrides the default weights."""

    def __init__(self, class_counts: ClassCounts, weight: Sequence[float] | torch.Tensor | None = None):
        super().__init__(frequency_weights(class_counts) if weight is None else weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._cross_entropy(logits, target)


@torch.no_grad()
def class_centroids(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class mean features, (C, D), on the features' device; constants (no gradient).

    Classes without any sample get a row of NaN (their mean is undefined); :class:`RobustLoss` treats
    such classes as absent.
    """
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(
            f"expected features (N, D) and labels (N,), got {tuple(features.shape)}, {tuple(labels.shape)}"
        )
    features = features if features.is_floating_point() else features.float()
    sums = features.new_zeros(num_classes, features.shape[1]).index_add_(0, labels, features)
    counts = features.new_zeros(num_classes).index_add_(0, labels, features.new_ones(labels.shape))
    return sums / counts.unsqueeze(1)


def _sample_epsilons(targets: torch.Tensor, epsilons: torch.Tensor, eps_index: str) -> torch.Tensor:
    """The margin applied to each sample's positive entry (y_i, i), (B,)."""
    per_sample = epsilons[targets]
    if eps_index == "paper":
        return per_sample
    if eps_index == "reference":
        # The k-th positive in class-sorted order (sample order[k]) receives eps[y_k] of batch position k.
        order = torch.sort(targets, stable=True).indices
        return per_sample[torch.argsort(order)]
    raise ValueError(f"eps_index must be one of {EPS_INDEX_MODES}, got {eps_index!r}")


def applied_epsilons(
    targets: torch.Tensor, epsilons: torch.Tensor, num_classes: int, eps_index: str = "paper"
) -> torch.Tensor:
    """The (C, B) margin matrix ``E`` actually added to the distances; non-zero only at positives (y_i, i)."""
    positive = torch.arange(num_classes, device=targets.device).unsqueeze(1) == targets.unsqueeze(0)
    margins = _sample_epsilons(targets, epsilons, eps_index).unsqueeze(0)
    return torch.where(positive, margins, torch.zeros_like(margins))


class RobustLoss(nn.Module):
    """DRO-LT robust loss ``L_rob(features, targets, centroids, epsilons)`` (see the module docstring).

    ``forward`` takes features (B, D), targets (B,), centroids (C, D) (detached; NaN rows mark classes
    without a centroid, which count as absent) and epsilons (C,), and returns a scalar.
    ``class_weights`` (C,) switches to the weighted class average; ``base_temperature`` defaults to
    ``temperature``.
    """

    class_weights: torch.Tensor | None

    def __init__(
        self,
        num_classes: int,
        temperature: float = 1.0,
        base_temperature: float | None = None,
        eps_index: str = "paper",
        class_weights: Sequence[float] | torch.Tensor | None = None,
    ):
        super().__init__()
        if eps_index not in EPS_INDEX_MODES:
            raise ValueError(f"eps_index must be one of {EPS_INDEX_MODES}, got {eps_index!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.num_classes = int(num_classes)
        self.temperature = float(temperature)
        self.base_temperature = self.temperature if base_temperature is None else float(base_temperature)
        self.eps_index = eps_index
        weights = None if class_weights is None else _as_weight(class_weights)
        if weights is not None and weights.shape != (self.num_classes,):
            raise ValueError(f"class_weights must have shape ({self.num_classes},), got {tuple(weights.shape)}")
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(
        self, features: torch.Tensor, targets: torch.Tensor, centroids: torch.Tensor, epsilons: torch.Tensor
    ) -> torch.Tensor:
        num_classes = self.num_classes
        if centroids.shape != (num_classes, features.shape[-1]) or epsilons.shape != (num_classes,):
            raise ValueError(
                f"expected centroids ({num_classes}, {features.shape[-1]}) and epsilons ({num_classes},), "
                f"got {tuple(centroids.shape)} and {tuple(epsilons.shape)}"
            )
        dtype = torch.promote_types(features.dtype, epsilons.dtype)
        features = features.to(dtype)
        centroids = centroids.detach().to(device=features.device, dtype=dtype)
        has_centroid = torch.isfinite(centroids).all(dim=1)
        centroids = torch.where(has_centroid.unsqueeze(1), centroids, torch.zeros_like(centroids))

        # cdist without the matmul shortcut: exact for coincident points, zero (not NaN) gradient at D = 0.
        distances = torch.cdist(centroids, features, compute_mode="donot_use_mm_for_euclid_dist")
        margins = applied_epsilons(targets, epsilons.to(dtype), num_classes, self.eps_index)
        logits = -(distances + margins) / self.temperature
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)

        positive = torch.arange(num_classes, device=targets.device).unsqueeze(1) == targets.unsqueeze(0)
        class_size = positive.sum(dim=1)
        present = (class_size > 0) & has_centroid
        scale = self.temperature / self.base_temperature
        per_class = -scale * torch.where(positive, log_prob, 0.0).sum(dim=1) / class_size.clamp(min=1)
        per_class = torch.where(present, per_class, 0.0)
        if self.class_weights is None:
            return per_class.sum() / present.sum()
        weights = self.class_weights.to(device=features.device, dtype=dtype)
        return (weights * per_class).sum() / weights.sum()

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, temperature={self.temperature}, "
            f"base_temperature={self.base_temperature}, eps_index={self.eps_index!r}, "
            f"weighted={self.class_weights is not None}"
        )
