"""Empirical risk minimisation: one network, one loss, optional deferred re-weighting.

This is the training step behind the CE, Focal, LDAM-DRW, Balanced Softmax,
logit-adjustment and class-balanced baselines (docs/methods/baselines.md §1): which of them
runs is the configured ``loss`` and sampler. Deferred re-weighting (Cao et al.,
arXiv 1906.07413) switches the loss to class-balanced weights from the 0-indexed
epoch ``drw_start`` on; before it the loss keeps the weights it was built with
(``loss.weight``, e.g. 1/n for CE-DRW's first phase or none), and ``drw_start=0``
gives class-balanced CE / Focal (Cui et al., arXiv 1901.05555) from the first epoch.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from longtail.losses import DeferredReweighting, check_head_scale
from longtail.methods import BenchRow
from longtail.methods.base import LongTailModule


class ERM(LongTailModule):
    """Backbone + head trained with a long-tailed loss.

    Args:
        loss: ``partial`` of a loss from :mod:`longtail.losses`, completed with ``class_counts``.
        drw_start: 0-indexed epoch from which class-balanced weights apply (``None``: never).
        drw_beta: beta of the effective-number weights used by DRW.
        drw_weights: ``cb`` (effective-number weights, LDAM-DRW) or ``inverse`` (1/n, BagofTricks-LT's CE-DRW).
        **kwargs: see :class:`LongTailModule`.
    """

    epoch_counts = ("drw_start",)
    bench_rows = {
        "erm": BenchRow(()),
        "ldam_drw": BenchRow(("loss=ldam", "model=resnet32_cosine", "method.drw_start=0")),
        "balanced_softmax": BenchRow(("loss=balanced_softmax",)),
    }

    def __init__(
        self,
        network: nn.Module,
        loss: Callable[..., nn.Module],
        drw_start: int | None = None,
        drw_beta: float = 0.9999,
        drw_weights: str = "cb",
        **kwargs,
    ):
        super().__init__(network, **kwargs)
        self.loss = loss(class_counts=self.class_counts)
        check_head_scale(self.loss, self.network.head)
        self.static_weight = self.loss.weight
        self.reweighting = DeferredReweighting(drw_start, drw_beta, drw_weights)

    def on_train_epoch_start(self) -> None:
        weights = self.reweighting.weights(self.current_epoch, self.class_counts)
        weights = self.static_weight if weights is None else weights
        self.loss.weight = None if weights is None else weights.to(self.device)

    def training_step(self, batch, batch_idx):
        images, target = batch
        loss = self.loss(self(images), target)
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        return loss
