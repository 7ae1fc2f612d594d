"""Decoupled classifier stages on a frozen backbone (Kang et al., arXiv 1910.09217).

* cRT: the classifier is re-initialised and retrained (class-balanced sampling); ``ClassifierFineTuning`` keeps
  training the stage-1 classifier instead (DRO-LT), ``LinearProbe`` trains one on a pretrained encoder (BNS).
* LWS: the stage-1 classifier is kept frozen and per-class scales are learned.
* tau-norm: no training; w_c / ||w_c||^tau with the bias dropped, tau chosen on val.
* post-hoc logit adjustment (Menon et al., arXiv 2007.07314): no training; z_c - tau log pi_c on the stage-1
  model, tau chosen on val. tau-norm and it share :class:`ValidationTauSelection`.

The backbone is frozen and kept in eval mode in all of them, so no BatchNorm
statistic moves (docs/methods/baselines.md §3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from longtail.common.checkpoint import CHECKPOINT_KEY, load_prefix
from longtail.losses import posthoc_adjust
from longtail.methods import BenchRow
from longtail.methods.base import LongTailModule
from longtail.methods.erm import ERM
from longtail.models.heads import LWSHead, TauNormHead

#: checkpoint metadata key: the backbone buffers a recalibrating probe started from (docs/methods/ipdpp.md §3, Q8)
PRETRAINED_BUFFERS = "pretrained_backbone_buffers"
#: the linear probe's head initialisations (docs/methods/ipdpp.md Q13)
PROBE_HEAD_INITS = ("kaiming_normal", "torch_default")


def load_wrapped_classifier(network: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Stage-1 backbone and linear classifier into a network whose head wraps that classifier (LWS, tau-norm)."""
    load_prefix(network.backbone, state_dict, "network.backbone.")
    load_prefix(network.head.linear, state_dict, "network.head.")


class ClassifierRetraining(ERM):
    """cRT: keep the stage-1 backbone, frozen and in eval mode, and train a freshly initialised classifier."""

    bench_rows = {"crt": BenchRow(("stage=crt",))}
    #: a re-trained classifier calibrates the main stage's model: ten epochs whatever the main stage's length
    min_scaled_epochs = 10

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


def init_probe_head(head: nn.Module, scheme: str) -> None:
    """Initialise the linear probe's new head (docs/methods/ipdpp.md Q13).

    ``kaiming_normal``: the head as the model builds it (``LinearHead``: W ~ N(0, 2/fan_in), nn.Linear's bias),
    nothing redrawn. ``torch_default``: ``nn.Linear.reset_parameters``, W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (kaiming_uniform with a = sqrt(5)), the plain ``nn.Linear`` of the BNS reference probe; its weight std
    1/sqrt(3 fan_in) is sqrt(6) ~ 2.45x smaller.
    """
    if scheme not in PROBE_HEAD_INITS:
        raise ValueError(f"unknown probe head_init '{scheme}'; use one of {', '.join(PROBE_HEAD_INITS)}")
    if scheme == "torch_default":
        if not isinstance(head, nn.Linear):
            raise ValueError(f"head_init=torch_default needs a linear head, got {type(head).__name__}")
        nn.Linear.reset_parameters(head)


class LinearProbe(ClassifierRetraining):
    """A new linear classifier on a frozen pretrained encoder, whose test numbers are the encoder's (BNS's linear
    probe, docs/methods/ipdpp.md §2).

    ``recalibrate_backbone`` leaves the frozen encoder in train mode, so its BatchNorm statistics move, as the BNS
    reference probe does (Q8). The checkpoint then also keeps the encoder's buffers as loaded (under
    ``PRETRAINED_BUFFERS``), so that a next stage can start from the pretrained statistics: IP-DPP fine-tunes from
    the BNS encoder, not the probe's (docs/methods/ipdpp.md §3).

    ``head_init`` picks the new head's initialisation (:func:`init_probe_head`, Q13).
    """

    #: the probe is the pretrained encoder's evaluation: trained to convergence at every scale
    min_scaled_epochs = None

    def __init__(self, network: nn.Module, loss: Callable[..., nn.Module], recalibrate_backbone: bool = False,
                 head_init: str = "kaiming_normal", **kwargs):
        super().__init__(network, loss, **kwargs)
        init_probe_head(self.network.head, head_init)
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
    #: LWS and LAS calibrate the main stage's classifier: ten epochs whatever the main stage's length
    min_scaled_epochs = 10

    needs_init = True

    def __init__(self, network: nn.Module, loss: Callable[..., nn.Module], train_linear: bool = False,
                 recalibrate: Sequence[str] = (), **kwargs):
        super().__init__(network, loss, **kwargs)
        self.network.replace_head(LWSHead(self.network.head, train_linear=train_linear))
        self.freeze("network.backbone")
        self.recalibrate(*recalibrate)

    def init_from(self, state_dict: dict[str, torch.Tensor]) -> None:
        load_wrapped_classifier(self.network, state_dict)


class ValidationTauSelection(LongTailModule):
    """A post-hoc stage (no training) whose evaluation has one scalar ``tau``, picked on the validation split.

    Every candidate of ``taus`` is scored on the validation batches by mean per-class accuracy (the balanced
    accuracy; on a class-balanced val split the same as top-1); the first best one is kept, logged as ``val/tau``
    and written to results.json and the checkpoint. Only the validation pass selects: the test pass reads ``tau``
    and never changes it. Without a validation split ``tau`` keeps its configured value.

    A subclass says where ``tau`` lives (:attr:`tau`) and what the logits at a candidate are (:meth:`logits_at`).
    """

    requires_training = False
    needs_init = True
    results_keys = ("val/tau",)

    def __init__(self, network: nn.Module, taus: Sequence[float], **kwargs):
        super().__init__(network, **kwargs)
        self.freeze("network")
        self.taus = [float(tau) for tau in taus]
        self.sweep = nn.ModuleList(
            MulticlassAccuracy(num_classes=len(self.class_counts), average="macro") for _ in self.taus
        )

    @property
    def tau(self) -> float:
        raise NotImplementedError

    @tau.setter
    def tau(self, value: float) -> None:
        raise NotImplementedError

    def logits_at(self, features: torch.Tensor, tau: float) -> torch.Tensor:
        """The evaluation logits from backbone features with ``tau`` in place of the chosen value."""
        raise NotImplementedError

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY]["tau"] = self.tau

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.tau = checkpoint[CHECKPOINT_KEY].get("tau", self.tau)

    def validation_step(self, batch, batch_idx):
        images, target = batch
        features = self.network.features(self.to_memory_format(images))
        for tau, metric in zip(self.taus, self.sweep):
            metric.update(self.logits_at(features, tau), target)
        self.val_metrics.update(self.logits_at(features, self.tau), target)

    def on_validation_epoch_end(self):
        scores = torch.stack([metric.compute() for metric in self.sweep])
        for metric in self.sweep:
            metric.reset()
        best = int(scores.argmax())
        self.tau = self.taus[best]
        self.log("val/tau", float(self.taus[best]))
        self.log("val/acc_tau_best", scores[best])
        super().on_validation_epoch_end()

    def on_test_epoch_end(self):
        super().on_test_epoch_end()
        self.test_results["val/tau"] = float(self.tau)


class TauNormalization(ValidationTauSelection):
    """tau-norm: a post-hoc transform of the stage-1 classifier, w_c / ||w_c||^tau with the bias dropped; tau is
    picked on val (docs/methods/baselines.md §3).

    Args:
        tau: the value used when there is no validation split (1.0 on CIFAR).
        taus: candidates swept on the validation split, {0, 0.1, ..., 2.0} by default (classifier-balancing's
            ``tau_norm.py``).
    """

    def __init__(self, network: nn.Module, tau: float = 1.0, taus: Sequence[float] | None = None, **kwargs):
        network.replace_head(TauNormHead(network.head, tau=tau))
        taus = [round(0.1 * i, 1) for i in range(21)] if taus is None else taus
        super().__init__(network, taus, **kwargs)

    @property
    def tau(self) -> float:
        return self.network.head.tau

    @tau.setter
    def tau(self, value: float) -> None:
        self.network.head.tau = value

    def logits_at(self, features: torch.Tensor, tau: float) -> torch.Tensor:
        head = self.network.head
        chosen, head.tau = head.tau, tau
        try:
            return head(features)
        finally:
            head.tau = chosen

    def init_from(self, state_dict: dict[str, torch.Tensor]) -> None:
        load_wrapped_classifier(self.network, state_dict)


class PosthocLogitAdjustment(ValidationTauSelection):
    """Post-hoc logit adjustment of a trained model (Menon et al., arXiv 2007.07314; docs/methods/baselines.md §1):
    no training, the logits at evaluation are z_c - tau log pi_c with pi the training class prior, tau picked on
    val. tau = 0 gives the stage-1 model's logits unchanged.

    Args:
        tau: the value used when there is no validation split (1.0, the spec's tau for logit adjustment).
        taus: candidates swept on the validation split, {0, 0.25, ..., 3.0} by default (a library choice: the spec
            gives no grid; it contains tau = 0, the plain model, and brackets tau = 1 on both sides).
    """

    def __init__(self, network: nn.Module, tau: float = 1.0, taus: Sequence[float] | None = None, **kwargs):
        taus = [0.25 * i for i in range(13)] if taus is None else taus
        super().__init__(network, taus, posthoc_tau=tau, **kwargs)

    @property
    def tau(self) -> float:
        return self.posthoc_tau

    @tau.setter
    def tau(self, value: float) -> None:
        self.posthoc_tau = float(value)

    def logits_at(self, features: torch.Tensor, tau: float) -> torch.Tensor:
        logits = self.network.classify(features)
        return posthoc_adjust(logits, self.class_counts, tau) if tau else logits

    def init_from(self, state_dict: dict[str, torch.Tensor]) -> None:
        load_prefix(self.network, state_dict, "network.")
