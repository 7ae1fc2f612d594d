"""BNS + IP-DPP (Lin & Yuan, NeurIPS 2025, arXiv 2510.08836; docs/methods/ipdpp.md).

* :class:`BNSPretraining` — stage 1: encoder + projector trained with the balanced-negative-sampling loss
  on two augmented views per image. It has no classifier; the linear probe (a cRT stage on the frozen
  encoder, :class:`~longtail.methods.decouple.LinearProbe`) is its evaluation.
* :class:`IPDPPFineTuning` — stage 2: the whole network (or only a new head) fine-tuned with CE on a per-class
  undersample of at most k images chosen by a k-DPP whose kernel (Eq. 16) is built from each image's
  correct-class probability, re-drawn every ``redraw_every`` epochs (§3). The first draw uses the probe model.

The k-DPP samplers live in :mod:`longtail.data.dpp`, the subset is served by
:class:`~longtail.data.samplers.CappedSubsetSampler`; this module only decides when to draw and with which model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from longtail.common.checkpoint import CHECKPOINT_KEY, load_prefix
from longtail.data.dpp import KERNEL_SCALES, SAMPLERS, select_subset, subset_class_counts
from longtail.methods import BenchRow
from longtail.methods.base import LongTailModule
from longtail.methods.decouple import PRETRAINED_BUFFERS
from longtail.methods.erm import ERM

PROB_TRANSFORMS = ("test", "train")
FIRST_PROBS = ("probe", "current")
FINETUNE_SCOPES = ("all", "head")


class BNSPretraining(LongTailModule):
    """Encoder + projector trained with :class:`~longtail.losses.BNSLoss` on batches of two views.

    The batch is ``((view1, view2), labels)`` (``augment: simclr_two_view``). Both views go through the encoder
    in one forward pass; the network's linear head is not trained here (it stays frozen and unused).

    Args:
        loss: ``partial`` of :class:`~longtail.losses.BNSLoss`.
        projector: ``partial`` of :class:`~longtail.models.Projector`, completed with the encoder's feature size.
    """

    cross_entropy_loss = False  # a contrastive loss

    bench_rows = {"bns": BenchRow(("stage=bns",), ("model=resnet18_cifar",))}

    has_classifier = False

    def __init__(self, network: nn.Module, loss: Callable[..., nn.Module], projector: Callable[..., nn.Module],
                 **kwargs):
        super().__init__(network, **kwargs)
        self.loss = loss()
        self.projector = projector(in_features=self.network.out_features)
        self.freeze("network.head")

    def training_step(self, batch, batch_idx):
        (view1, view2), target = batch
        features = self.network.features(self.to_memory_format(torch.cat([view1, view2])))
        emb1, emb2 = self.projector(features).float().split(len(target))
        loss = self.loss(emb1, emb2, target)
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        raise RuntimeError("BNS pretraining has no classifier to validate: its linear probe stage evaluates it")

    test_step = validation_step


def redraw_epochs(max_epochs: int, every: int) -> list[int]:
    """0-indexed epochs before which the subset is re-drawn with the current model (docs/methods/ipdpp.md §3):
    (e + 1) divisible by ``every``, never before the last epoch. The initial draw comes before epoch 0, and the first
    epoch always trains on it (a period of 1 epoch re-draws from epoch 1 on)."""
    return [e for e in range(1, max_epochs) if (e + 1) % every == 0 and e + 1 != max_epochs]


class IPDPPFineTuning(ERM):
    """CE fine-tuning on a k-DPP undersample, re-drawn on a schedule (docs/methods/ipdpp.md §3).

    Args:
        k: images kept per class (classes with n_c ≤ k are kept whole).
        redraw_every: re-draw period f in epochs (see :func:`redraw_epochs`).
        dpp_sampler: the DPP sampler, ``exact_kdpp`` (default), ``paper_alg1`` or ``reference_uniform`` (Q1-Q2).
        kernel_scale: ``n`` (Eq. 16) or ``n_squared`` (Q3).
        prob_transform: p(i) from the ``test`` transform (default) or the ``train`` augmentation (Q4).
        first_probs: the first draw uses the ``probe`` model (default; init from the probe stage) or the
            ``current`` one, i.e. the new random head (Q4).
        finetune_scope: ``all`` (the whole network, as released) or ``head`` (frozen encoder in eval mode).
        seed: the training seed; draw r of class c uses the generator seeded with (seed, r, c).
    """

    results_keys = ("ipdpp/draws", "ipdpp/subset_class_counts")
    epoch_periods = ("redraw_every",)
    #: a shortened schedule keeps the recipe's ten draws: 20 epochs re-drawn every 2 (docs/methods/ipdpp.md §3)
    min_scaled_epochs = 20
    # the step alone: the uniform draw skips the probability pass at the epoch start (timed in dpp_select_s)
    bench_rows = {"ipdpp": BenchRow(("stage=ipdpp", "ipdpp.dpp_sampler=reference_uniform"), ("model=resnet18_cifar",))}

    needs_init = True

    def __init__(
        self,
        network: nn.Module,
        loss: Callable[..., nn.Module],
        k: int,
        redraw_every: int,
        dpp_sampler: str = "exact_kdpp",
        kernel_scale: str = "n",
        prob_transform: str = "test",
        first_probs: str = "probe",
        finetune_scope: str = "all",
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(network, loss, **kwargs)
        for name, value, choices in (("dpp_sampler", dpp_sampler, SAMPLERS), ("kernel_scale", kernel_scale, KERNEL_SCALES),
                                     ("prob_transform", prob_transform, PROB_TRANSFORMS),
                                     ("first_probs", first_probs, FIRST_PROBS),
                                     ("finetune_scope", finetune_scope, FINETUNE_SCOPES)):
            if value not in choices:
                raise ValueError(f"ipdpp.{name} must be one of {choices}, got {value!r}")
        if k < 1 or redraw_every < 1:
            raise ValueError(f"ipdpp.k and ipdpp.redraw_every must be >= 1, got {k} and {redraw_every}")
        self.k, self.redraw_every, self.seed = int(k), int(redraw_every), int(seed)
        self.sampler_name, self.kernel_scale = dpp_sampler, kernel_scale
        self.prob_transform, self.first_probs = prob_transform, first_probs
        self.probe_head = copy.deepcopy(self.network.head)
        self.freeze("probe_head")
        if finetune_scope == "head":
            self.freeze("network.backbone")
        self.subset: torch.Tensor | None = None
        self.draws: list[dict] = []

    def init_from_checkpoint(self, checkpoint: dict) -> None:
        if self.first_probs == "probe" and not checkpoint[CHECKPOINT_KEY].get("has_classifier", True):
            raise ValueError(
                "IP-DPP's first draw uses the linear-probe model, but this checkpoint has no classifier (BNS "
                "pretraining): init_from the probe stage's checkpoint, or set ipdpp.first_probs=current"
            )
        super().init_from_checkpoint(checkpoint)
        pretrained = checkpoint[CHECKPOINT_KEY].get(PRETRAINED_BUFFERS)
        if pretrained is not None:
            self._load_backbone_buffers(pretrained)

    def _load_backbone_buffers(self, buffers: dict[str, torch.Tensor]) -> None:
        """The encoder's BatchNorm statistics from the BNS stage: a probe run with ``probe.bn_train_mode`` (Q8)
        moved its own, but fine-tuning starts from the BNS encoder, buffers included (docs/methods/ipdpp.md §3)."""
        own = dict(self.network.backbone.named_buffers())
        if set(own) != set(buffers):
            raise RuntimeError(f"the checkpoint's pretrained backbone buffers do not match this backbone's: "
                               f"{sorted(set(own) ^ set(buffers))[:5]}")
        with torch.no_grad():
            for name, buffer in own.items():
                buffer.copy_(buffers[name])

    def init_from(self, state_dict: dict[str, torch.Tensor]) -> None:
        """The encoder and (for the first draw) the probe head; with a recalibrating probe's checkpoint the encoder's
        buffers are then replaced by the BNS ones (:meth:`init_from_checkpoint`)."""
        load_prefix(self.network.backbone, state_dict, "network.backbone.")
        if self.first_probs == "probe":
            load_prefix(self.probe_head, state_dict, "network.head.")

    @classmethod
    def config_conflict(cls, stage_cfg) -> tuple[str, str] | None:
        """IP-DPP trains on a capped subset whose cap is its k (docs/methods/ipdpp.md §3)."""
        method, sampler = stage_cfg.method, stage_cfg.get("sampler")
        target = str(sampler.get("_target_", "")) if hasattr(sampler, "get") else ""
        if not target.endswith(".CappedSubsetSampler"):
            return "sampler", f"IP-DPP trains on min(n_c, k) images per class: it needs sampler=capped_subset (got {target or sampler})"
        if int(sampler.cap) != int(method.k):
            return "sampler.cap", (f"IP-DPP keeps k={method.k} images per class (ipdpp.k), so its capped subset must "
                                   f"hold as many: set both to the same value")
        return None

    def on_train_epoch_start(self) -> None:
        """Draw (initial, or re-draw on schedule) and hand the subset to the sampler; the training loader starts
        at the epoch's first batch (``EpochStartLoader``), so this epoch serves it with any number of workers."""
        super().on_train_epoch_start()
        epoch = self.current_epoch
        if self.subset is None:
            self.draw(epoch, head=self.probe_head if self.first_probs == "probe" else self.network.head)
        if epoch in redraw_epochs(self.trainer.max_epochs, self.redraw_every):
            self.draw(epoch, head=self.network.head)
        self.data.set_train_subset(self.subset, per_class_cap=self.k)

    def correct_class_probabilities(self, head: nn.Module) -> np.ndarray:
        """p_i = softmax(head(features(x_i)))_{y_i} for every training image, in eval mode, in file order.

        An integer ``trainer.limit_train_batches`` (``debug=smoke``) shortens this pass to as many batches, as it
        shortens the epoch; the images it does not reach take the mean p of those it does (a debug shortcut: the
        kernel stays valid, the draw is no longer the paper's)."""
        train_transform, eval_transform = self.data.batch_transforms()
        transform = eval_transform if self.prob_transform == "test" else train_transform
        probs = []
        for images, target in self.eval_pass(self.data.train_eval_dataloader(), transform, self.debug_batch_limit()):
            logits = head(self.network.features(self.to_memory_format(images))).float()
            probs.append(logits.softmax(dim=1).gather(1, target[:, None]).squeeze(1))
        probs = torch.cat(probs).cpu().double().numpy()
        return np.concatenate([probs, np.full(len(self.data.train_labels()) - len(probs), probs.mean())])

    def draw(self, epoch: int, head: nn.Module) -> None:
        """Choose the next subset; every rank uses rank 0's choice."""
        labels = self.data.train_labels().numpy()
        probs = None if self.sampler_name == "reference_uniform" else self.correct_class_probabilities(head)
        indices = select_subset(probs, labels, self.k, sampler=self.sampler_name, kernel_scale=self.kernel_scale,
                                seed=self.seed, round=len(self.draws))
        subset = self.trainer.strategy.broadcast(torch.as_tensor(indices, dtype=torch.long).sort()[0], src=0)
        changed = None if self.subset is None else int(len(subset) - np.intersect1d(subset, self.subset).size)
        self.draws.append({
            "epoch": epoch,
            "model": "probe" if head is self.probe_head else "current",
            "class_counts": subset_class_counts(subset.numpy(), labels, len(self.class_counts)).tolist(),
            "changed_images": changed,
        })
        self.subset = subset
        self.log("ipdpp/changed_images", float(changed or 0))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY]["ipdpp"] = {"subset": self.subset, "draws": self.draws}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resume with the checkpoint's subset; a test of an earlier (selected) checkpoint keeps the whole run's
        draw history, which extends the checkpoint's."""
        state = checkpoint.get(CHECKPOINT_KEY, {}).get("ipdpp")
        if state is not None and len(state["draws"]) >= len(self.draws):
            self.subset, self.draws = state["subset"], list(state["draws"])

    def on_test_epoch_end(self):
        super().on_test_epoch_end()
        if self.draws:
            self.test_results["ipdpp/subset_class_counts"] = self.draws[-1]["class_counts"]
        self.test_results["ipdpp/draws"] = self.draws
