"""RIDE multi-expert loss and its distillation variant, Wang et al., arXiv 2010.01809.

Reference: github.com/frank-xwang/RIDE-LongTailRecognition ``model/loss.py`` (``RIDELoss``,
``RIDELossWithDistill``); see docs/methods/ride.md §2 and §6. With expert logits ``z^(k)`` (E, B, C), already scaled by the
cosine head, and the ensemble ``zbar = mean_k z^(k)``:

    L = sum_k [ base_loss_factor * base(z^(k), y) + alpha * Tbar^2 * KL( softmax(zbar / T) || softmax(z^(k) / T) ) ]

* ``base`` is any library loss (default LDAM with ``max_m = 0.5``, ``s = 30``); after the DRW switch its
  ``weight`` is the class-balanced weights ``CB(drw_beta)``.
* Diversity temperatures (per class, applied column-wise) ``b_c = gamma C pi_c + 1 - gamma``,
  ``T_c = T_base b_c / max_j b_j`` and ``Tbar = mean_c T_c`` after the DRW switch; ``T = Tbar = T_base`` before.
* The KL is batch-averaged, compares un-margined logits, and its target ``softmax(zbar / T)`` is detached.
  ``alpha < 0`` rewards divergence from the ensemble. The ``Tbar^2`` factor is the reference's (R2).
* ``alpha = 0`` drops the KL term; with ``collaborative_when_zero`` (reference quirk R1) every individual term
  uses the ensemble instead, giving ``E * base(zbar, y)``.

Distillation: ``L = ride_loss_factor * L_RIDE + distill_loss_factor * Td^2 KL(softmax(z_t / Td) || softmax(zbar / Td))``
(batch mean, frozen teacher logits ``z_t``); ``distill_times_experts`` (quirk R3) multiplies the total by E.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from longtail.losses.ce import CrossEntropy
from longtail.losses.ldam import LDAMLoss
from longtail.losses.weights import ClassCounts, class_balanced_weights, counts_tensor, register_constant


def ride_temperatures(
    class_counts: ClassCounts, reweight_factor: float, base: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class diversity temperatures ``T`` (C,) and their mean ``Tbar`` (0-d), float64 on the CPU."""
    counts = counts_tensor(class_counts)
    b = reweight_factor * counts.numel() * counts / counts.sum() + 1.0 - reweight_factor
    if not bool((b > 0).all()):
        raise ValueError(f"reweight_factor={reweight_factor} is too large: some temperatures are not positive")
    temperatures = base * b / b.max()
    return temperatures, temperatures.mean()


def _batchmean_kl(log_q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``sum_{i, c} p (log p - log q) / B`` for (..., B, C) inputs: one batch-mean KL per leading index."""
    return F.kl_div(log_q, p.expand_as(log_q), reduction="none").sum((-2, -1)) / log_q.shape[-2]


class RIDELoss(nn.Module):
    """RIDE loss for expert logits (E, B, C) and targets (B,) (see the module docstring).

    Args:
        class_counts: training counts per class; ``None`` disables DRW weights and per-class temperatures
            and makes the default base loss plain cross-entropy.
        base_loss: factory of the per-expert loss, called as ``base_loss(class_counts=...)``;
            default ``LDAMLoss(max_m=0.5, scale=30)``.
        diversity_factor: alpha; ``reweight_factor``: gamma; ``temperature``: T_base.
        drw_beta: beta of the class-balanced weights used once ``deferred`` is set.
        collaborative_when_zero: reference quirk R1 for ``diversity_factor == 0``.

    The training method sets ``deferred`` (DRW and temperatures on) every epoch; switching swaps
    precomputed buffers only. Before the switch the base loss keeps the weight it was built with (a static
    weight configured on it, or none); from the switch on, the class-balanced weights replace it.
    """

    cb_weights: torch.Tensor | None
    static_weight: torch.Tensor | None
    class_temperatures: torch.Tensor | None

    def __init__(
        self,
        class_counts: ClassCounts | None,
        base_loss: Callable[..., nn.Module] | None = None,
        base_loss_factor: float = 1.0,
        diversity_factor: float = -0.45,
        reweight_factor: float = 0.05,
        temperature: float = 1.0,
        drw_beta: float = 0.9999,
        collaborative_when_zero: bool = False,
    ):
        super().__init__()
        if base_loss is None:
            base_loss = CrossEntropy if class_counts is None else functools.partial(LDAMLoss, max_m=0.5, scale=30.0)
        self.base_loss = base_loss(class_counts=class_counts)
        self.register_buffer("static_weight", getattr(self.base_loss, "weight", None), persistent=False)
        self.base_loss_factor = float(base_loss_factor)
        self.diversity_factor = float(diversity_factor)
        self.temperature = float(temperature)
        self.collaborative_when_zero = bool(collaborative_when_zero)
        self.register_buffer("cb_weights", None, persistent=False)
        self.register_buffer("class_temperatures", None, persistent=False)
        self.deferred_mean_temperature = self.temperature
        if class_counts is not None:
            temperatures, mean = ride_temperatures(class_counts, reweight_factor, self.temperature)
            register_constant(self, "cb_weights", class_balanced_weights(class_counts, drw_beta))
            register_constant(self, "class_temperatures", temperatures)
            self.deferred_mean_temperature = float(mean)
        self.deferred = False

    @property
    def deferred(self) -> bool:
        """Whether DRW weights and per-class temperatures are on (``current_epoch >= drw_start``)."""
        return self._deferred

    @deferred.setter
    def deferred(self, value: bool) -> None:
        self._deferred = bool(value)
        deferred_weight = self._deferred and self.cb_weights is not None
        self.base_loss.weight = self.cb_weights if deferred_weight else self.static_weight

    def diversity_temperature(self) -> tuple[torch.Tensor | float, float]:
        """The current ``(T, Tbar)``: per-class (C,) tensor and its mean when deferred, else ``T_base`` twice."""
        if self._deferred and self.class_temperatures is not None:
            return self.class_temperatures, self.deferred_mean_temperature
        return self.temperature, self.temperature

    def forward(self, expert_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.diversity_factor == 0 and self.collaborative_when_zero:
            return expert_logits.shape[0] * self.base_loss_factor * self.base_loss(expert_logits.mean(0), target)
        loss = self.base_loss_factor * sum(self.base_loss(logits, target) for logits in expert_logits)
        if self.diversity_factor == 0:
            return loss
        _, mean_temperature = self.diversity_temperature()
        return loss + self.diversity_factor * mean_temperature**2 * self.diversity_kl(expert_logits).sum()

    def diversity_kl(self, expert_logits: torch.Tensor) -> torch.Tensor:
        """Per-expert ``KL_k`` (E,) to the detached ensemble target ``softmax(zbar / T)``.

        The stop-gradient shows in each ``KL_k`` only: ``softmax(zbar / T)`` is the normalised geometric mean of
        the ``q^k`` and minimises ``sum_k KL_k``, so gradients through it would cancel in the sum anyway.
        """
        temperature, _ = self.diversity_temperature()
        if isinstance(temperature, torch.Tensor):
            temperature = temperature.to(expert_logits.dtype)
        target_dist = F.softmax(expert_logits.mean(0).detach() / temperature, dim=-1)
        return _batchmean_kl(F.log_softmax(expert_logits / temperature, dim=-1), target_dist)

    def extra_repr(self) -> str:
        return (
            f"base_loss_factor={self.base_loss_factor}, diversity_factor={self.diversity_factor}, "
            f"temperature={self.temperature}, collaborative_when_zero={self.collaborative_when_zero}"
        )


class DistillationLoss(nn.Module):
    """``Td^2 * (1/B) sum_i KL(softmax(t_i / Td) || softmax(s_i / Td))`` with the teacher detached."""

    def __init__(self, temperature: float = 1.5):
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        target_dist = F.softmax(teacher_logits.detach() / t, dim=-1)
        return t * t * _batchmean_kl(F.log_softmax(student_logits / t, dim=-1), target_dist)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class RIDEDistillLoss(nn.Module):
    """RIDE loss plus distillation of the student ensemble towards frozen teacher logits.

    ``forward(expert_logits (E, B, C), target (B,), teacher_logits (B, C))``. Keyword arguments other than the
    listed ones build the inner :class:`RIDELoss` (exposed as ``ride``; ``deferred`` is proxied to it).
    ``distill_times_experts`` reproduces reference quirk R3 (total multiplied by E).
    """

    def __init__(
        self,
        class_counts: ClassCounts | None,
        distill_temperature: float = 1.5,
        ride_loss_factor: float = 1.0,
        distill_loss_factor: float = 1.0,
        distill_times_experts: bool = False,
        **ride_kwargs,
    ):
        super().__init__()
        self.ride = RIDELoss(class_counts, **ride_kwargs)
        self.distill = DistillationLoss(distill_temperature)
        self.ride_loss_factor = float(ride_loss_factor)
        self.distill_loss_factor = float(distill_loss_factor)
        self.distill_times_experts = bool(distill_times_experts)

    @property
    def deferred(self) -> bool:
        return self.ride.deferred

    @deferred.setter
    def deferred(self, value: bool) -> None:
        self.ride.deferred = value

    def forward(self, expert_logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        loss = self.ride_loss_factor * self.ride(expert_logits, target)
        loss = loss + self.distill_loss_factor * self.distill(expert_logits.mean(0), teacher_logits)
        return expert_logits.shape[0] * loss if self.distill_times_experts else loss

    def extra_repr(self) -> str:
        return (
            f"ride_loss_factor={self.ride_loss_factor}, distill_loss_factor={self.distill_loss_factor}, "
            f"distill_times_experts={self.distill_times_experts}"
        )
