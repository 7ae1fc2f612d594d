"""RIDE: routing diverse distribution-aware experts (Wang et al., arXiv 2010.01809).

* :class:`RIDE` — stage 1: a multi-expert network trained with :class:`~longtail.losses.RIDELoss`
  (per-expert loss with deferred re-weighting plus the diversity term), optionally distilled from a
  frozen teacher RIDE model (the previous stage's checkpoint, or ``teacher_checkpoint``).
* :class:`RIDERouter` — stage 2: the expert-assignment router trained on frozen experts (BatchNorm in
  eval mode); at test time each sample consults further experts only while the router asks.

Evaluation of both is the ensemble mean, so the generic long-tailed metrics apply unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchmetrics.aggregation import CatMetric

from longtail.common.checkpoint import build_from_checkpoint, load_prefix, read_checkpoint
from longtail.losses import check_head_scale
from longtail.methods import BenchRow
from longtail.methods.base import LongTailModule
from longtail.reporting.flops import gflops, ride_gflops
from longtail.reporting.metrics import ACCURACY_KEYS, LongTailMetrics


class RIDE(LongTailModule):
    """Stage 1: E experts, RIDE loss, optional knowledge distillation.

    Args:
        network: a :class:`~longtail.models.experts.RIDENetwork`.
        loss: ``partial`` of :class:`~longtail.losses.RIDELoss` (or ``RIDEDistillLoss`` with a teacher).
        drw_start: 0-indexed epoch from which class weights and per-class temperatures apply.
        drw_beta: beta of those class-balanced weights (ERM's ``method.drw_beta`` too); None: the loss's own.
        distill: take the previous stage's checkpoint as the frozen teacher instead of as initial weights.
        teacher_checkpoint: path of a teacher RIDE checkpoint (distillation without a teacher stage).
    """

    cross_entropy_loss = False  # the experts' losses summed, with the diversity term

    epoch_counts = ("drw_start",)
    bench_rows = {"ride": BenchRow(("model=ride_resnet32", "method=ride", "loss=ride", "augment=cifar_ride"))}

    def __init__(
        self,
        network: nn.Module,
        loss: Callable[..., nn.Module],
        drw_start: int | None = None,
        drw_beta: float | None = None,
        distill: bool = False,
        teacher_checkpoint: str | None = None,
        **kwargs,
    ):
        super().__init__(network, **kwargs)
        self.loss = loss(class_counts=self.class_counts, **({} if drw_beta is None else {"drw_beta": drw_beta}))
        check_head_scale(self.loss, self.network.experts[0].head)
        self.drw_start = drw_start
        self.distill = distill or teacher_checkpoint is not None
        self._teacher: list[nn.Module] = []
        if teacher_checkpoint is not None:
            self.init_from_checkpoint(read_checkpoint(teacher_checkpoint))

    @property
    def teacher(self) -> nn.Module | None:
        """The frozen teacher network (kept out of this module's state dict and parameters)."""
        return self._teacher[0] if self._teacher else None

    def init_from_checkpoint(self, checkpoint: dict) -> None:
        if not self.distill:
            return super().init_from_checkpoint(checkpoint)
        teacher = build_from_checkpoint(checkpoint).network.eval().requires_grad_(False)
        if teacher.num_classes != self.network.num_classes:
            raise ValueError(f"the teacher has {teacher.num_classes} classes, the student {self.network.num_classes}")
        self._teacher = [teacher]

    def on_fit_start(self) -> None:
        if self.distill and self.teacher is None:
            raise ValueError("distillation needs a teacher: run the teacher stage first or set method.teacher_checkpoint")
        if self.teacher is not None:
            self.teacher.to(device=self.device, memory_format=self.memory_format)

    def on_train_epoch_start(self) -> None:
        self.loss.deferred = self.drw_start is not None and self.current_epoch >= self.drw_start

    def training_step(self, batch, batch_idx):
        images, target = batch
        images = self.to_memory_format(images)
        expert_logits, _ = self.network.forward_experts(images)
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(images)
            loss = self.loss(expert_logits, target, teacher_logits)
        else:
            loss = self.loss(expert_logits, target)
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        return loss


class RIDERouter(LongTailModule):
    """Stage 2: train the expert-assignment router on frozen experts; test with and without routing.

    Args:
        router: ``partial`` of :class:`~longtail.models.router.ExpertRouter` (completed with the
            network's expert count, feature size and class count; its ``top_k`` is capped at the class count).
        pos_weight: BCE weight of the positive ("ask the next expert") targets.
        force: evaluate the routed prediction with every expert (``all``, the reference's ``force_all``: usage
            fractions p_E = 1) or only the first (``one``); ``None`` lets the router decide.
    """

    cross_entropy_loss = False  # a binary cross-entropy per expert

    results_keys = ("test/acc_router", "test/acc_router_many", "test/acc_router_medium", "test/acc_router_few",
                    "test/experts_per_sample", "test/expert_fractions", "test/gflops_router", "test/gflops_all_experts")

    #: five epochs on a frozen model: cheap, and what the router needs to route at all
    min_scaled_epochs = None
    needs_init = True

    def __init__(self, network: nn.Module, router: Callable[..., nn.Module], pos_weight: float = 100.0,
                 force: str | None = None, **kwargs):
        super().__init__(network, **kwargs)
        self.force = force
        self.router = router(
            num_experts=network.num_experts, feature_dim=network.feature_dim, num_classes=network.num_classes
        )
        self.pos_weight = pos_weight
        self.freeze("network")
        self.router_metrics = LongTailMetrics(self.class_counts, self.shot_thresholds)
        self.experts_used = CatMetric()
        self.image_shape: tuple[int, ...] | None = None

    def init_from(self, state_dict: dict[str, torch.Tensor]) -> None:
        load_prefix(self.network, state_dict, "network.")

    def training_step(self, batch, batch_idx):
        images, target = batch
        with torch.no_grad():
            expert_logits, expert_features = self.network.forward_experts(self.to_memory_format(images))
        loss, _ = self.router.train_loss(expert_logits, expert_features, target, pos_weight=self.pos_weight)
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        return loss

    def routed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.router.route(self.network, self.to_memory_format(images), force=self.force)

    def validation_step(self, batch, batch_idx):
        images, target = batch
        self.val_metrics.update(self.routed(images)[0], target)

    def test_step(self, batch, batch_idx):
        images, target = batch
        self.image_shape = tuple(images.shape[1:])
        self.test_metrics.update(self.predict_logits(images), target)
        logits, used = self.routed(images)
        self.router_metrics.update(logits, target)
        self.experts_used.update(used.float())

    def on_test_epoch_end(self):
        super().on_test_epoch_end()
        routed = self.router_metrics.compute()
        self.router_metrics.reset()
        used = self.experts_used.compute().long()
        self.experts_used.reset()
        fractions = (torch.bincount(used - 1, minlength=self.network.num_experts) / len(used)).tolist()
        extra = {
            **{f"test/{k.replace('acc', 'acc_router', 1)}": float(routed[k]) for k in ACCURACY_KEYS},
            "test/experts_per_sample": float(used.float().mean()),
            "test/expert_fractions": fractions,
            "test/gflops_router": ride_gflops(self.network, self.router, self.image_shape, fractions),
            "test/gflops_all_experts": gflops(self.network, torch.zeros(1, *self.image_shape, device=self.device)),
        }
        self.log_dict({k: v for k, v in extra.items() if not isinstance(v, list)})
        self.test_results.update(extra)
