"""What every method shares: evaluation, optimisation set-up, self-describing checkpoints.

A method subclasses :class:`LongTailModule` and owns only its training step.
Validation and test run the same long-tailed metrics (``val/acc``,
``test/acc_few``, …); a reported number is never selected on ``test/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from longtail.common.checkpoint import CHECKPOINT_KEY
from longtail.data.contract import MethodData, method_data
from longtail.losses import posthoc_adjust
from longtail.reporting.metrics import ACCURACY_KEYS, LongTailMetrics


class LongTailModule(L.LightningModule):
    """Base LightningModule: a network, the train class counts, and long-tailed evaluation.

    Args:
        network: the model (backbone + head), already built.
        class_counts: training images per class, in label order.
        class_names: names in label order.
        optimizer: ``functools.partial`` of a torch optimizer, called with the trainable parameters.
        scheduler: ``partial`` called with ``(optimizer, max_epochs=...)``, stepped once per epoch.
        shot_thresholds: (many_gt, few_lt) for the shot groups.
        posthoc_tau: post-hoc logit adjustment at evaluation, ``z - tau·log π`` (0 = off).
        channels_last: run convolutions in NHWC memory layout (measured 1.4x faster on CPU for ResNet-32,
            and the layout tensor cores want on GPUs).
        compile: ``torch.compile`` the backbone in place (state-dict keys unchanged).
        scheduler_interval: ``epoch`` (the scheduler is stepped once per epoch) or ``step`` (once per optimizer
            step; it is then also called with ``steps_per_epoch``).
        decay_all: weight decay on every parameter; ``False`` exempts biases and 1-D parameters (norm layers),
            as MAE-style AdamW recipes do (BNS / IP-DPP).
    """

    #: False for a method without a classifier (BNS pretraining): no validation or test, a probe evaluates it
    has_classifier: bool = True
    #: what a method declares beyond the shared evaluation (longtail.methods: MethodPlot, BenchRow): the
    #: figures of its results, the keys it adds to results.json, its rows in python -m longtail.bench
    plots: tuple = ()
    results_keys: tuple[str, ...] = ()
    bench_rows: dict = {}
    #: constructor arguments counted in epochs, which schedule.scale scales (periods stay >= 1)
    epoch_counts: tuple[str, ...] = ()
    epoch_periods: tuple[str, ...] = ()
    #: the fewest epochs schedule.scale leaves a stage of this method (never more than its recipe's): a stage that
    #: calibrates or evaluates another stage's model needs its budget whatever the main stage's length; ``None``:
    #: never shortened (longtail.engine.schedule_scale)
    min_scaled_epochs: int | None = 0
    #: True for a stage that starts from a trained model (cRT, LWS, τ-norm, routers, IP-DPP): without
    #: ``init_from`` or a previous stage, the run stops with a message instead of training from scratch
    needs_init: bool = False
    #: False for a post-hoc stage without optimisation (τ-norm): it is validated and saved, not fitted
    requires_training: bool = True
    #: True where the logged ``train/loss`` is a cross-entropy over the C classes, so that a trained model's ends
    #: below ln C (longtail.engine.convergence); False for sums of several losses (RIDE, DRO-LT) and other objectives
    cross_entropy_loss: bool = True

    #: images the last training step processed besides its batch (Difficulty-Net's meta batch), for the cost
    side_images_in_step: int = 0
    #: (C, H, W) of the test images, recorded by the test step (for the cost per test image)
    test_image_shape: tuple[int, ...] | None = None

    frozen: tuple[str, ...] = ()
    recalibrated: tuple[str, ...] = ()

    def __init__(
        self,
        network: nn.Module,
        class_counts: Sequence[int],
        class_names: Sequence[str] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        shot_thresholds: Sequence[int] = (100, 20),
        posthoc_tau: float = 0.0,
        channels_last: bool = True,
        compile: bool = False,
        scheduler_interval: str = "epoch",
        decay_all: bool = True,
    ):
        super().__init__()
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        self.class_counts = [int(c) for c in class_counts]
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(len(class_counts))]
        num_classes = getattr(network, "num_classes", len(self.class_counts))
        if num_classes != len(self.class_counts):
            raise ValueError(
                f"the model has {num_classes} outputs but the data has {len(self.class_counts)} classes: "
                f"set model.num_classes to the data set's class count"
            )
        self.network = network
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.posthoc_tau = posthoc_tau
        self.shot_thresholds = tuple(shot_thresholds)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.network.to(memory_format=self.memory_format)
        self.compile_backbone = compile
        self.scheduler_interval, self.decay_all = scheduler_interval, decay_all
        self.val_metrics = LongTailMetrics(self.class_counts, shot_thresholds)
        self.test_metrics = LongTailMetrics(self.class_counts, shot_thresholds)
        self.run_config: dict | None = None
        self.test_results: dict[str, Any] = {}

    def configure_model(self) -> None:
        if self.compile_backbone:
            self.network.backbone.compile()

    def to_memory_format(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=self.memory_format) if images.ndim == 4 else images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(self.to_memory_format(images))

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits used for evaluation (post-hoc adjusted when ``posthoc_tau`` is set)."""
        logits = self(images)
        if self.posthoc_tau:
            logits = posthoc_adjust(logits, self.class_counts, self.posthoc_tau)
        return logits

    def train(self, mode: bool = True):
        """Keep frozen sub-modules in eval mode (their BatchNorm statistics never change), except the
        recalibrated ones, which follow ``mode``."""
        super().train(mode)
        for name in self.frozen:
            self.get_submodule(name).eval()
        for name in self.recalibrated:
            self.get_submodule(name).train(mode)
        return self

    def freeze(self, *names: str) -> None:
        """Stop gradients into the named sub-modules and keep them in eval mode."""
        for name in names:
            self.get_submodule(name).requires_grad_(False)
        self.frozen = tuple(dict.fromkeys(self.frozen + names))
        self.train(self.training)

    def recalibrate(self, *names: str) -> None:
        """Let the named frozen sub-modules re-estimate their BatchNorm statistics while training (train mode,
        still no gradient)."""
        self.recalibrated = tuple(dict.fromkeys(self.recalibrated + names))
        self.train(self.training)

    @classmethod
    def config_conflict(cls, stage_cfg) -> tuple[str, str] | None:
        """``(key, why)`` for a setting of the composed stage config that cannot go with this method (the key to
        change, relative to the stage), or ``None``; refused when the config is composed, before any stage runs."""
        return None

    @property
    def data(self) -> MethodData:
        """The data module, as far as a method may ask it for data (docs/architecture.md §4)."""
        return method_data(self.trainer.datamodule)

    def debug_batch_limit(self) -> float:
        """How many batches a pass over the training data may take outside an epoch: an integer
        ``trainer.limit_train_batches`` (``debug=smoke``) caps it as it caps the epoch, else no limit."""
        limit = getattr(self.trainer, "limit_train_batches", None)
        return limit if isinstance(limit, int) else float("inf")

    def eval_pass(self, loader, transform: nn.Module, max_batches: float = float("inf")):
        """Yield ``(transform(images), target)`` on this module's device for up to ``max_batches`` batches of
        ``loader``, with the module in eval mode and no gradient; the previous mode is restored afterwards
        (the per-epoch passes of DRO-LT's centroids and Difficulty-Net's accuracy vector)."""
        transform = transform.to(self.device)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                for batch_idx, (images, target) in enumerate(loader):
                    if batch_idx >= max_batches:
                        break
                    yield transform(images.to(self.device, non_blocking=True)), target.to(self.device)
        finally:
            self.train(was_training)

    def validation_step(self, batch, batch_idx):
        images, target = batch
        self.val_metrics.update(self.predict_logits(images), target)

    def test_step(self, batch, batch_idx):
        images, target = batch
        self.test_image_shape = tuple(images.shape[1:])
        self.test_metrics.update(self.predict_logits(images), target)

    def on_validation_epoch_start(self):
        self.val_metrics.reset()

    def on_test_epoch_start(self):
        # fresh states in this process: under ddp_spawn on CPU the metric states arrive in shared memory
        # (Lightning un-shares only parameters and buffers), and the ranks would add into one tensor
        self.test_metrics.reset()

    def on_validation_epoch_end(self):
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_end(self):
        results = self._log_metrics("test", self.test_metrics)
        self.test_results = {f"test/{k}": v.tolist() if v.ndim else float(v) for k, v in results.items()}
        confidence, accuracy, count = results["reliability"].tolist()
        self.test_results["test/reliability"] = {"confidence": confidence, "accuracy": accuracy, "count": count}

    def _log_metrics(self, split: str, metrics: LongTailMetrics) -> dict[str, torch.Tensor]:
        results = metrics.compute()
        scalars = {f"{split}/{k}": results[k] for k in (*ACCURACY_KEYS, "ece")}
        self.log_dict(scalars, prog_bar=split == "val", sync_dist=False)
        metrics.reset()
        return results

    def parameter_groups(self) -> list:
        """What the optimizer trains: every parameter that requires grad (methods may split it in groups); with
        ``decay_all=False`` biases and 1-D parameters form a second group without weight decay."""
        trainable = [(name, p) for name, p in self.named_parameters() if p.requires_grad]
        if self.decay_all:
            return [p for _, p in trainable]
        exempt = [p.ndim <= 1 or name.endswith(".bias") for name, p in trainable]
        groups = [
            {"params": [p for (_, p), no_decay in zip(trainable, exempt) if not no_decay]},
            {"params": [p for (_, p), no_decay in zip(trainable, exempt) if no_decay], "weight_decay": 0.0},
        ]
        return [group for group in groups if group["params"]]

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ValueError(f"{type(self).__name__} trains but no optimizer is configured (method.optimizer)")
        optimizer = self.optimizer_factory(self.parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        max_epochs = self.trainer.max_epochs
        if self.scheduler_interval == "step":
            steps_per_epoch = self.trainer.estimated_stepping_batches / max_epochs
            scheduler = self.scheduler_factory(optimizer, max_epochs=max_epochs, steps_per_epoch=steps_per_epoch)
        else:
            scheduler = self.scheduler_factory(optimizer, max_epochs=max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "config": self.run_config,
            "class_counts": self.class_counts,
            "class_names": self.class_names,
            "method": f"{type(self).__module__}.{type(self).__qualname__}",
            "has_classifier": self.has_classifier,
        }

    def init_from_checkpoint(self, checkpoint: dict) -> None:
        """Start from the previous stage's checkpoint; by default, from its weights (see :meth:`init_from`)."""
        self.init_from(checkpoint["state_dict"])

    def init_from(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Initialise from the previous stage's weights (a method may keep only some parts)."""
        self.load_state_dict(state_dict, strict=True)
