"""DRO-LT robust feature learning (Samuel & Chechik, ICCV 2021, arXiv 2104.03066).

Stage 2 of DRO-LT (docs/methods/drolt.md §2): starting from a trained model, the backbone and a learned
per-class margin ε are trained with

    L = CE_w(z, y) + L_rob(f, y, μ, ε, T),   w_c = n_c / n_max,

while the classifier stays frozen. The class centroids μ are refreshed at the start of every
epoch from one eval-mode, no-grad pass over the (class-aware, augmented) training loader, or
from un-augmented features (``centroids="clean"``), or kept as a running mean of batch class
means (``centroids="running"``). Stage 3 is the library's classifier re-training on the frozen
backbone (:class:`~longtail.methods.decouple.ClassifierFineTuning`).

The nearest-class-mean evaluation (``val/ncm_acc``, ``test/ncm_acc`` with its shot groups) always uses
centroids of *un-augmented* training features (docs/methods/drolt.md §2), whatever the training centroids are;
``drolt/epsilons`` (per class) goes into the results and ``plots/epsilons.png``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy

from longtail.common.checkpoint import load_prefix
from longtail.common.distributed import is_distributed
from longtail.losses import class_centroids, frequency_weights
from longtail.methods import BenchRow, MethodPlot
from longtail.methods.base import LongTailModule
from longtail.reporting.metrics import ACCURACY_KEYS, LongTailMetrics

EPSILON_PARAMETRISATIONS = ("raw", "softplus", "clamp0")
CENTROID_MODES = ("augmented", "clean", "running")


class DROLT(LongTailModule):
    """Robust feature learning: backbone + ε trained, classifier frozen.

    Args:
        loss: ``partial`` of :class:`~longtail.losses.RobustLoss` (completed with ``num_classes``).
        ce_loss: ``partial`` of the classification term (frequency-weighted CE, ``class_counts``).
        epsilon_lr: learning rate of the margins ε (the backbone uses the optimizer's ``lr``).
        epsilon_init: initial ε (1.0).
        eps_param: ``raw`` (an unconstrained parameter, as the reference code), ``softplus`` or ``clamp0``.
        feature_layer: module whose globally pooled output the robust loss acts on; ``None`` is the
            penultimate feature (the backbone output), e.g. ``network.backbone.layer2`` for an earlier one.
        centroids: ``augmented`` (reference), ``clean`` or ``running``.
        centroid_momentum: weight of the old centroid in the ``running`` mode.
        robust_weights: the weighted robust loss Σ_K w_c L_c / Σ_C w_c with the frequency weights w_c = n_c / n_max
            of the CE term (docs/methods/drolt.md §2, off in the published command).
    """

    cross_entropy_loss = False  # weighted CE plus the robust loss

    results_keys = ("test/ncm_acc", "test/ncm_acc_many", "test/ncm_acc_medium", "test/ncm_acc_few", "drolt/epsilons")
    plots = (MethodPlot("epsilons.png", ("drolt/epsilons", "train_class_counts"),
                        "longtail.reporting.plots.class_epsilons"),)
    bench_rows = {"drolt": BenchRow(("stage=robust",))}

    needs_init = True

    def __init__(
        self,
        network: nn.Module,
        loss: Callable[..., nn.Module],
        ce_loss: Callable[..., nn.Module],
        epsilon_lr: float = 0.005,
        epsilon_init: float = 1.0,
        eps_param: str = "raw",
        feature_layer: str | None = None,
        centroids: str = "augmented",
        centroid_momentum: float = 0.9,
        robust_weights: bool = False,
        **kwargs,
    ):
        super().__init__(network, **kwargs)
        if eps_param not in EPSILON_PARAMETRISATIONS:
            raise ValueError(f"eps_param must be one of {EPSILON_PARAMETRISATIONS}, got '{eps_param}'")
        if centroids not in CENTROID_MODES:
            raise ValueError(f"centroids must be one of {CENTROID_MODES}, got '{centroids}'")
        num_classes = len(self.class_counts)
        weights = frequency_weights(self.class_counts) if robust_weights else None
        self.robust_loss = loss(num_classes=num_classes, class_weights=weights)
        self.ce_loss = ce_loss(class_counts=self.class_counts)
        self.epsilon_lr, self.eps_param = epsilon_lr, eps_param
        start = torch.full((num_classes,), float(epsilon_init))
        self.epsilon_raw = nn.Parameter(torch.log(torch.expm1(start)) if eps_param == "softplus" else start)
        self.feature_layer, self.centroid_mode, self.centroid_momentum = feature_layer, centroids, centroid_momentum
        self.register_buffer("centroids", torch.zeros(0), persistent=False)
        self.register_buffer("ncm_centroids", torch.zeros(0), persistent=False)
        self.centroid_refreshes = 0
        self.val_ncm = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_ncm = LongTailMetrics(self.class_counts, self.shot_thresholds)
        self.freeze("network.head")

    @property
    def epsilons(self) -> torch.Tensor:
        if self.eps_param == "softplus":
            return F.softplus(self.epsilon_raw)
        if self.eps_param == "clamp0":
            return self.epsilon_raw.clamp(min=0)
        return self.epsilon_raw

    def init_from(self, state_dict: dict[str, torch.Tensor]) -> None:
        load_prefix(self.network, state_dict, "network.")

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The robust loss's features (penultimate or the configured layer, pooled) and the logits."""
        images = self.to_memory_format(images)
        if self.feature_layer is None:
            features = self.network.features(images)
            return features, self.network.classify(features)
        captured = []
        hook = self.get_submodule(self.feature_layer).register_forward_hook(lambda m, i, out: captured.append(out))
        try:
            logits = self.network(images)
        finally:
            hook.remove()
        output = captured[0]
        features = output.mean(dim=(2, 3)) if output.ndim == 4 else output
        return features, logits

    @torch.no_grad()
    def refresh_centroids(self) -> None:
        """μ_c = mean eval-mode feature of class c over one pass of the training data (docs/methods/drolt.md §2).

        The pass is as long as a training epoch (so ``limit_train_batches`` shortens both alike)."""
        clean = self.centroid_mode == "clean"
        self.centroids = self._centroids_of_training_data(augmented=not clean)
        self.centroid_refreshes += 1

    def _centroids_of_training_data(self, augmented: bool) -> torch.Tensor:
        train_transform, eval_transform = self.data.batch_transforms()
        if augmented:
            loader, transform = self.data.extra_train_dataloader(self.current_epoch), train_transform
        else:
            loader, transform = self.data.train_eval_dataloader(), eval_transform
        max_batches = (getattr(self.trainer, "num_training_batches", float("inf")) if self.trainer.training
                       else self.debug_batch_limit())
        features, labels = [], []
        for images, target in self.eval_pass(loader, transform, max_batches):
            features.append(self.features_and_logits(images)[0])
            labels.append(target)
        features, labels = self._gathered(torch.cat(features)), self._gathered(torch.cat(labels))
        return class_centroids(features, labels, len(self.class_counts))

    def _gathered(self, values: torch.Tensor) -> torch.Tensor:
        """Every rank's values under DDP (samplers give all ranks equal shares), else the values themselves."""
        if is_distributed():
            return self.all_gather(values).flatten(0, 1)
        return values

    def on_train_epoch_start(self) -> None:
        if self.centroid_mode != "running" or self.centroids.numel() == 0:
            self.refresh_centroids()

    def _update_running_centroids(self, features: torch.Tensor, target: torch.Tensor) -> None:
        batch_means = class_centroids(features.detach(), target, len(self.class_counts))
        present = torch.zeros(len(self.class_counts), dtype=torch.bool, device=target.device)
        present[target] = True
        mixed = self.centroid_momentum * self.centroids + (1 - self.centroid_momentum) * batch_means
        self.centroids = torch.where(present[:, None], mixed, self.centroids)

    def training_step(self, batch, batch_idx):
        images, target = batch
        features, logits = self.features_and_logits(images)
        if self.centroid_mode == "running":
            self._update_running_centroids(features, target)
        robust = self.robust_loss(features, target, self.centroids, self.epsilons)
        loss = self.ce_loss(logits, target) + robust
        self.log_dict({"train/loss": loss, "train/robust_loss": robust}, on_step=True, on_epoch=True)
        return loss

    def _ncm_similarity(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=1) @ F.normalize(self.ncm_centroids, dim=1).T

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self.ncm_centroids = self._centroids_of_training_data(augmented=False)

    def _evaluate(self, batch, metrics, ncm_metrics) -> None:
        """Classifier and nearest-class-mean predictions of one evaluation batch."""
        images, target = batch
        features, logits = self.features_and_logits(images)
        metrics.update(logits, target)
        ncm_metrics.update(self._ncm_similarity(features), target)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, self.val_metrics, self.val_ncm)

    def on_validation_epoch_end(self):
        self.log("val/ncm_acc", self.val_ncm.compute())
        self.val_ncm.reset()
        super().on_validation_epoch_end()

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.test_ncm.reset()
        self.ncm_centroids = self._centroids_of_training_data(augmented=False)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, self.test_metrics, self.test_ncm)

    def on_test_epoch_end(self):
        super().on_test_epoch_end()
        ncm = self.test_ncm.compute()
        scalars = {f"test/ncm_{key}": ncm[key] for key in ACCURACY_KEYS}
        self.log_dict(scalars)
        self.test_results.update({key: float(value) for key, value in scalars.items()})
        self.test_results["drolt/epsilons"] = self.epsilons.detach().cpu().tolist()

    def on_train_epoch_end(self) -> None:
        epsilons = self.epsilons.detach()
        self.log_dict({"train/epsilon_mean": epsilons.mean(), "train/epsilon_min": epsilons.min()})

    def parameter_groups(self) -> list[dict]:
        """The backbone at the optimizer's learning rate, the margins ε at their own."""
        trainable = [p for name, p in self.named_parameters() if p.requires_grad and name != "epsilon_raw"]
        return [{"params": trainable}, {"params": [self.epsilon_raw], "lr": self.epsilon_lr}]
