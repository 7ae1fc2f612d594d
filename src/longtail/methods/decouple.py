"""Decoupled classifier stages on a frozen backbone (Kang et al., arXiv 1910.09217).

* cRT: the classifier is re-initialised and retrained (class-balanced sampling); ``ClassifierFineTuning`` keeps
  training the stage-1 classifier instead (DRO-LT), ``LinearProbe`` trains one on a pretrained encoder (BNS).
* LWS: the stage-1 classifier is kept frozen and per-class scales are learned.
* tau-norm: no training; w_c / ||w_c||^tau with the bias dropped, tau chosen on val.

The backbone is frozen and kept in eval mode in all three, so no BatchNorm
statistic moves (docs/methods/baselines.md §3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from longtail.common.checkpoint import CHECKPOINT_KEY, load_prefix
from longtail.methods import BenchRow
from longtail.methods.base import LongTailModule
from longtail.methods.erm import ERM
from longtail.models.heads import LWSHead, TauNormHead

#: checkpoint metadata key: the backbone buffers a recalibrating probe started from (docs/methods/ipdpp.md §3, Q8)
PRETRAINED_BUFFERS = "pretrained_backbone_buffers"


def load_wrapped_classifier(network: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Stage-1 backbone and linear classifier into a network whose head wraps that classifier (LWS, tau-norm)."""
    load_prefix(network.backbone, state_dict, "network.backbone.")
    load_prefix(network.head.linear, state_dict, "network.head.")


class ClassifierRetraining(ERM):
    """cRT: keep the stage-1 backbone, frozen and in eval mode, and train a freshly initialised classifier."""

    bench_rows = {"crt": BenchRow(("stage=crt",))}

    needs_init = True

    def __init__(self, network: nn.Module, loss: Callable[..., nn.Module], **kwargs):
        super().__init__(network, loss, **kwargs)
        self.freeze("network.backbone")

    def init_from(self, state_dict: dict[str, torch.Tensor]) -> None:
        load_prefix(self.network.backbone, state_dict, "network.backbone.")


class ClassifierFineTuning(ClassifierRetraining):
    """Keep training the previous stage's classifier on its frozen backbone (DRO-LT's balanced-classifier phase,
    docs/methods/drolt.md §3): the classifier starts from its stage-1 weights instead of afresh."""

    def init_from(self, state_dict: dict[str, torch.Tensor]) -> None:
        super().init_from(state_dict)
        load_prefix(self.network.head, state_dict, "network.head.")


class LinearProbe(ClassifierRetraining):
    """A new linear classifier on a frozen pretrained encoder, whose test numbers are the encoder's (BNS's linear
    probe, docs/methods/ipdpp.md §2).

    ``recalibrate_backbone`` leaves the frozen encoder in train mode, so its BatchNorm statistics move, as the BNS
    reference probe does (Q8). The checkpoint then also keeps the encoder's buffers as loaded (under
    ``PRETRAINED_BUFFERS``), so that a next stage can start from the pretrained statistics: IP-DPP fine-tunes from
    the BNS encoder, not the probe's (docs/methods/ipdpp.md §3).
    """

    def __init__(self, network: nn.Module, loss: Callable[..., nn.Module], recalibrate_backbone: bool = False,
                 **kwargs):
        super().__init__(network, loss, **kwargs)
        self.pretrained_buffers: dict[str, torch.Tensor] | None = None
        if recalibrate_backbone:
            self.recalibrate("network.backbone")

    def init_from(self, state_dict: dict[str, torch.Tensor]) -> None:
        super().init_from(state_dict)
        if self.recalibrated:
            self.pretrained_buffers = {k: v.detach().cpu().clone() for k, v in self.network.backbone.named_buffers()}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.pretrained_buffers is not None:
            checkpoint[CHECKPOINT_KEY][PRETRAINED_BUFFERS] = self.pretrained_buffers


class LearnableWeightScaling(ERM):
    """LWS: logits = s ⊙ (W f + b) with the stage-1 (W, b) frozen and s learned.

    Args:
        train_linear: train (W, b) too, from their stage-1 values (Difficulty-Net's CIFAR stage 2).
        recalibrate: frozen sub-modules kept in train mode, so their BatchNorm statistics are re-estimated
            on this stage's batches without any gradient (MiSLAS; Difficulty-Net's ImageNet-LT stage 2
            re-estimates ``network.backbone``, Places-LT only ``network.backbone.extra``).
    """

    bench_rows = {"lws": BenchRow(("stage=lws",))}

    needs_init = True

    def __init__(self, network: nn.Module, loss: Callable[..., nn.Module], train_linear: bool = False,
                 recalibrate: Sequence[str] = (), **kwargs):
        super().__init__(network, loss, **kwargs)
        self.network.replace_head(LWSHead(self.network.head, train_linear=train_linear))
        self.freeze("network.backbone")
        self.recalibrate(*recalibrate)

    def init_from(self, state_dict: dict[str, torch.Tensor]) -> None:
        load_wrapped_classifier(self.network, state_dict)


class TauNormalization(LongTailModule):
    """tau-norm: a post-hoc transform of the stage-1 classifier; tau is picked on val.

    Args:
        tau: the value used when there is no validation split (1.0 on CIFAR).
        taus: candidates swept on the validation split.
    """

    requires_training = False
    needs_init = True

    def __init__(self, network: nn.Module, tau: float = 1.0, taus: Sequence[float] | None = None, **kwargs):
        super().__init__(network, **kwargs)
        self.network.replace_head(TauNormHead(self.network.head, tau=tau))
        self.freeze("network")
        self.taus = [round(0.1 * i, 1) for i in range(21)] if taus is None else list(taus)
        self.sweep = nn.ModuleList(
            MulticlassAccuracy(num_classes=len(self.class_counts), average="macro") for _ in self.taus
        )

    def init_from(self, state_dict: dict[str, torch.Tensor]) -> None:
        load_wrapped_classifier(self.network, state_dict)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY]["tau"] = self.network.head.tau

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.network.head.tau = checkpoint[CHECKPOINT_KEY].get("tau", self.network.head.tau)

    def validation_step(self, batch, batch_idx):
        images, target = batch
        features = self.network.features(self.to_memory_format(images))
        head = self.network.head
        chosen = head.tau
        for tau, metric in zip(self.taus, self.sweep):
            head.tau = tau
            metric.update(head(features), target)
        head.tau = chosen
        self.val_metrics.update(head(features), target)

    def on_validation_epoch_end(self):
        scores = torch.stack([metric.compute() for metric in self.sweep])
        for metric in self.sweep:
            metric.reset()
        best = int(scores.argmax())
        self.network.head.tau = self.taus[best]
        self.log("val/tau", float(self.taus[best]))
        self.log("val/acc_tau_best", scores[best])
        super().on_validation_epoch_end()
