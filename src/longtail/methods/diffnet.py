"""Difficulty-Net stage 1: a meta-learned MLP predicts relative class difficulties that weight the loss.

Sinha & Ohashi, "Difficulty-Net: Learning to Predict Difficulty for Long-Tailed Recognition", WACV 2023
(arXiv 2209.02960); reference code github.com/hitachi-rd-cv/Difficulty_Net. Per step (docs/methods/diffnet.md §3):

    o = DN_φ(a),  w = C·o / Σo,  L_drv = mean_c (o_c − (1 − a_c / Σa))²
    θ' = θ − α_t ∇_θ L_v(θ, w),   L_v = mean_i w_{y_i} ℓ(f_θ(x_i), y_i)      (virtual SGD step)
    φ ← Adam(∇_φ [CE(f_θ'(x_m), y_m) + λ·L_drv])                            (balanced meta batch)
    θ ← SGD(∇_θ L_v(θ, w)),  w from the updated φ, no grad

How it is computed, exactly and without model copies (``torch.func.functional_call`` throughout):

* One train-mode forward f_θ(x) on cloned buffers serves the virtual step and the real step; its clones'
  BatchNorm statistics are then copied into the model, so the real statistics move once per step.
* The second-order term is a forward-mode product, not a double backward. With v = ∇_θ' CE(f_θ'(x_m)):
  ∂CE/∂w = −∂/∂w ⟨α v, ∇_θ L_v(θ, w)⟩ = −∂/∂w L_v evaluated on s_i = d/dt ℓ_i(θ + t α v) — one JVP
  (``torch.autograd.forward_ad``) of the per-sample losses along αv, since L_v is linear in the ℓ_i.
* Difficulty-Net and its input stay in float32 under mixed precision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from longtail.common.compat import ddp_ignore
from longtail.common.distributed import rank_mean
from longtail.losses import difficulty_class_weights, driver_loss
from longtail.methods import BenchRow, MethodPlot
from longtail.methods.base import LongTailModule

META_STEPS = ("functional", "pseudo_optimizer")
VIRTUAL_PARAMS = ("all", "last_stage")
ACCURACY_TIMINGS = ("after_epoch", "before_epoch")


DIFFNET_BENCH_DATA = ("datamodule.protocol=diffnet", "datamodule.val=heldout", "datamodule.meta_batch_size=100")

@dataclass
class MetaStep:
    """One meta step's results: ``objective`` (its gradient in φ is the meta-gradient), the meta loss and the
    driver loss (for logging), the per-sample training losses (their graph feeds the real step), the
    stepped parameters θ' and the buffer clones after the shared forward."""

    objective: torch.Tensor
    meta_loss: torch.Tensor
    driver: torch.Tensor
    per_sample: torch.Tensor
    stepped: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]


def last_stage_parameters(network: nn.Module) -> set[str]:
    """Names of the head's parameters and of the backbone's last child that has parameters (its last residual
    stage, or the OLTR extra block): the ``virtual_params=last_stage`` memory saver of docs/methods/diffnet.md §3."""
    children = [name for name, child in network.backbone.named_children() if any(True for _ in child.parameters())]
    prefixes = ("head.", f"backbone.{children[-1]}.") if children else ("head.",)
    return {n for n, _ in network.named_parameters() if n.startswith(prefixes)}


class DifficultyNetMetaLearning(LongTailModule):
    """Stage 1: classifier and Difficulty-Net trained together (Lightning manual optimisation, two optimisers).

    Args:
        loss: ``partial`` of :class:`~longtail.losses.DifficultyWeightedLoss` (CE or Balanced Softmax).
        difficulty_net: ``partial`` of :class:`~longtail.models.DifficultyNet`, completed with ``num_classes``.
        difficulty_optimizer: ``partial`` of the Difficulty-Net's optimizer (Adam).
        lamda: weight λ of the driver loss (0.3).
        detach_weights: N1 — the class weights enter the virtual step as constants, so Difficulty-Net learns
            from λ·L_drv only (the reference code).
        meta_step: ``functional`` (differentiable virtual step) or ``pseudo_optimizer`` (N2: a real step of
            a pseudo-model with its own momentum SGD, meta criterion = the training criterion; no
            second-order path).
        virtual_params: ``all`` or ``last_stage`` (virtual step of the last residual stage + head only).
        accuracy_timing: ``after_epoch`` (CIFAR: a = 0 in epoch 0, then the accuracy after each epoch) or
            ``before_epoch`` (ImageNet-LT / Places-LT).
        meta_augment: give the meta batches the training augmentation; by default they get the evaluation
            transform, as the reference's meta loaders (the spec is silent, docs/methods/diffnet.md §3).
        lr_groups: learning rate per parameter-name prefix, e.g. ``{network.head: 0.01}`` (Places-LT);
            other parameters use the optimizer's ``lr``.
        **kwargs: see :class:`LongTailModule`.
    """

    results_keys = ("diffnet/accuracy_vector", "diffnet/class_weights")
    plots = (MethodPlot("class_difficulty.png", (*results_keys, "train_class_counts"),
                        "longtail.reporting.plots.class_difficulty"),)
    # Difficulty-Net's own split (docs/methods/diffnet.md §1); its stage 2, LAS, is timed with it
    bench_rows = {
        "diffnet": BenchRow(("method=diffnet",), DIFFNET_BENCH_DATA),
        "diffnet_last_stage": BenchRow(("method=diffnet", "method.virtual_params=last_stage"), DIFFNET_BENCH_DATA),
        "diffnet_las": BenchRow(("stage=las",), DIFFNET_BENCH_DATA[:2]),
    }

    def __init__(
        self,
        network: nn.Module,
        loss: Callable[..., nn.Module],
        difficulty_net: Callable[..., nn.Module],
        difficulty_optimizer: Callable[..., torch.optim.Optimizer],
        lamda: float = 0.3,
        detach_weights: bool = False,
        meta_step: str = "functional",
        virtual_params: str = "all",
        accuracy_timing: str = "after_epoch",
        meta_augment: bool = False,
        lr_groups: Mapping[str, float] | None = None,
        **kwargs,
    ):
        super().__init__(network, **kwargs)
        for name, value, allowed in (("meta_step", meta_step, META_STEPS),
                                     ("virtual_params", virtual_params, VIRTUAL_PARAMS),
                                     ("accuracy_timing", accuracy_timing, ACCURACY_TIMINGS)):
            if value not in allowed:
                raise ValueError(f"method.{name} must be one of {allowed}, got '{value}'")
        self.automatic_optimization = False
        num_classes = len(self.class_counts)
        self.loss = loss(class_counts=self.class_counts)
        self.difficulty_net = difficulty_net(num_classes=num_classes)
        self.difficulty_optimizer_factory = difficulty_optimizer
        self.lamda, self.detach_weights, self.meta_step = lamda, detach_weights, meta_step
        self.virtual = last_stage_parameters(network) if virtual_params == "last_stage" else None
        self.accuracy_timing, self.meta_augment = accuracy_timing, meta_augment
        self.lr_groups = dict(lr_groups or {})
        self.register_buffer("accuracy_vector", torch.zeros(num_classes))
        self.pseudo_momentum: dict[str, torch.Tensor] = {}
        self._meta_batches = None

    # ------------------------------------------------------------------ optimisation set-up

    def parameter_groups(self) -> list[dict]:
        """The classifier network's parameters (Difficulty-Net has its own optimizer), split by ``lr_groups``."""
        groups: dict[str, list] = {prefix: [] for prefix in self.lr_groups}
        rest = []
        for name, p in self.named_parameters():
            if not p.requires_grad or name.startswith("difficulty_net."):
                continue
            prefix = next((k for k in self.lr_groups if name.startswith(f"{k}.")), None)
            (groups[prefix] if prefix else rest).append(p)
        return [{"params": rest}, *({"params": ps, "lr": self.lr_groups[k]} for k, ps in groups.items() if ps)]

    def configure_optimizers(self):
        configured = super().configure_optimizers()
        main = configured["optimizer"] if isinstance(configured, dict) else configured
        optimizers = [main, self.difficulty_optimizer_factory(self.difficulty_net.parameters())]
        if isinstance(configured, dict):
            return optimizers, [configured["lr_scheduler"]]
        return optimizers

    def configure_model(self) -> None:
        """DDP's reducer expects one backward per forward over every parameter; Difficulty-Net has its own backward
        and its gradient is averaged over the ranks by :meth:`update_difficulty_net`, so the reducer ignores it."""
        super().configure_model()
        ddp_ignore(self, [f"difficulty_net.{name}" for name, _ in self.difficulty_net.named_parameters()])

    def update_difficulty_net(self, objective: torch.Tensor) -> None:
        """One optimizer step of Difficulty-Net on ∇_φ objective (float32, never loss-scaled), rank-averaged. Each
        process holds an equal shard of the global batch and meta batch, so averaging this gradient, the virtual
        step's and the meta-gradient makes N processes take one process's step (docs/methods/diffnet.md §3)."""
        parameters = list(self.difficulty_net.parameters())
        for parameter, grad in zip(parameters, rank_mean(list(torch.autograd.grad(objective, parameters)))):
            parameter.grad = grad
        self.optimizers()[1].optimizer.step()

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    # ------------------------------------------------------------------ difficulty and accuracy vector

    def class_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w, L_drv)`` from the current accuracy vector, in Difficulty-Net's own precision (float32) whatever
        the training precision: autocast is off around it."""
        with torch.autocast(device_type=self.device.type, enabled=False):
            accuracies = self.accuracy_vector.to(next(self.difficulty_net.parameters()).dtype)
            outputs = self.difficulty_net(accuracies)
            return difficulty_class_weights(outputs), driver_loss(outputs, accuracies)

    def measure_accuracy_vector(self) -> None:
        """a_c = accuracy on class c of the held-out (meta) set, model in eval mode (every image once)."""
        num_classes = len(self.class_counts)
        correct = torch.zeros(num_classes, device=self.device)
        total = torch.zeros(num_classes, device=self.device)
        for images, target in self.eval_pass(self.data.meta_eval_dataloader(), self.data.batch_transforms()[1]):
            hits = (self(images).argmax(dim=1) == target).float()
            correct.index_add_(0, target, hits)
            total.index_add_(0, target, torch.ones_like(hits))
        self.accuracy_vector.copy_(correct / total.clamp_min(1))

    def on_train_epoch_start(self) -> None:
        if self.accuracy_timing == "before_epoch" or self.current_epoch > 0:
            self.measure_accuracy_vector()
        weights, _ = self.class_weights()
        self.log_dict({"train/dn_weight_max": weights.max(), "train/dn_weight_min": weights.min(),
                       "train/meta_acc": self.accuracy_vector.mean()}, on_epoch=True, on_step=False)
        self._meta_batches, self._meta_round = None, 0

    def next_meta_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next meta batch, under the evaluation transform (or the training one with ``meta_augment``); the
        meta loader restarts each epoch from a seed derived from the epoch, so a run resumed at an epoch boundary
        sees the same meta batches."""
        while True:
            if self._meta_batches is None:
                epoch = self.current_epoch * 10_000 + self._meta_round
                self._meta_batches, self._meta_round = iter(self.data.meta_dataloader(epoch, self.meta_augment)), self._meta_round + 1
            try:
                images, target = next(self._meta_batches)
                break
            except StopIteration:
                self._meta_batches = None
        self.side_images_in_step = len(images)
        transform = self.data.batch_transforms()[0 if self.meta_augment else 1].to(self.device)
        return self.to_memory_format(transform(images.to(self.device, non_blocking=True))), target.to(self.device)

    # ------------------------------------------------------------------ the step

    def _step_sizes(self, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """α per parameter name: the current learning rate of its group in the main optimizer."""
        by_id = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
        return {n: by_id.get(id(p), 0.0) for n, p in self.network.named_parameters()}

    def _cloned_buffers(self) -> dict[str, torch.Tensor]:
        return {n: b.clone() for n, b in self.network.named_buffers()}

    def _functional_forward(self, params, buffers, images) -> torch.Tensor:
        return functional_call(self.network, (params, buffers), (images,))

    def meta_update(self, images, target, meta_images, meta_target, lrs: Mapping[str, float]) -> MetaStep:
        """The virtual step, the meta loss on the meta batch and the objective whose φ-gradient is the
        meta-gradient (see the module docstring)."""
        weights, driver = self.class_weights()
        params = dict(self.network.named_parameters())
        buffers = self._cloned_buffers()
        per_sample = self.loss.per_sample(self._functional_forward(params, buffers, images), target)
        movable = {n: p for n, p in params.items() if p.requires_grad and (self.virtual is None or n in self.virtual)}
        grads = torch.autograd.grad(self.loss.weighted_mean(per_sample, target, weights.detach()),
                                    list(movable.values()), retain_graph=True, allow_unused=True)
        grads = dict(zip(movable, rank_mean([torch.zeros_like(p) if g is None else g
                                                  for p, g in zip(movable.values(), grads)])))
        if self.meta_step == "pseudo_optimizer":
            stepped = self._pseudo_step(movable, grads, lrs)
        else:
            stepped = {n: (p - lrs[n] * grads[n]).detach().requires_grad_() for n, p in movable.items()}
        meta_params = {**{n: p.detach() for n, p in params.items()}, **stepped}
        meta_logits = self._functional_forward(meta_params, self._cloned_buffers(), meta_images)
        if self.meta_step == "pseudo_optimizer":  # N2: the training criterion, and no second-order path
            meta_criterion = self.loss(meta_logits, meta_target)
        else:
            meta_criterion = F.cross_entropy(meta_logits, meta_target)
        objective = self.lamda * driver
        if self.meta_step == "functional" and not self.detach_weights:
            meta_grads = rank_mean(list(torch.autograd.grad(meta_criterion, list(stepped.values()))))
            tangents = {n: lrs[n] * g for n, g in zip(stepped, meta_grads)}
            slopes = self._directional_derivatives(params, images, target, tangents)
            objective = objective - self.loss.weighted_mean(slopes, target, weights)
        return MetaStep(objective, meta_criterion.detach() + self.lamda * driver.detach(), driver.detach(),
                        per_sample, stepped, buffers)

    @torch.no_grad()
    def _directional_derivatives(self, params, images, target, tangents) -> torch.Tensor:
        """s_i = d/dt ℓ_i(θ + t·τ) at t = 0 for the tangents τ (zero for parameters not in ``tangents``)."""
        with fwAD.dual_level():
            duals = {n: fwAD.make_dual(p.detach(), tangents[n]) if n in tangents else p.detach()
                     for n, p in params.items()}
            losses = self.loss.per_sample(self._functional_forward(duals, self._cloned_buffers(), images), target)
            return fwAD.unpack_dual(losses).tangent

    @torch.no_grad()
    def _pseudo_step(self, movable, grads, lrs) -> dict[str, torch.Tensor]:
        """N2: the reference's pseudo-model step — a real momentum-SGD step (PyTorch's SGD rule, with the main
        optimizer's momentum and weight decay) of a copy of θ whose momentum persists across iterations."""
        settings = self.optimizers()[0].optimizer.param_groups[0]
        momentum, decay = settings.get("momentum", 0.0), settings.get("weight_decay", 0.0)
        stepped = {}
        for name, p in movable.items():
            step = grads[name] + decay * p
            if momentum:
                previous = self.pseudo_momentum.get(name)
                step = step if previous is None else momentum * previous + step
                self.pseudo_momentum[name] = step
            stepped[name] = (p - lrs[name] * step).requires_grad_()
        return stepped

    def training_step(self, batch, batch_idx):
        images, target = batch
        images = self.to_memory_format(images)
        optimizer = self.optimizers()[0]
        meta_images, meta_target = self.next_meta_batch()
        meta = self.meta_update(images, target, meta_images, meta_target, self._step_sizes(optimizer.optimizer))
        self.update_difficulty_net(meta.objective)

        with torch.no_grad():
            weights, _ = self.class_weights()
            for name, buffer in self.network.named_buffers():
                buffer.copy_(meta.buffers[name])
        loss = self.loss.weighted_mean(meta.per_sample, target, weights)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        self.log_dict({"train/loss": loss.detach(), "train/meta_loss": meta.meta_loss, "train/driver_loss": meta.driver},
                      on_step=True, on_epoch=True)

    def on_test_epoch_end(self):
        super().on_test_epoch_end()
        weights, _ = self.class_weights()
        self.test_results["diffnet/accuracy_vector"] = self.accuracy_vector.tolist()
        self.test_results["diffnet/class_weights"] = weights.tolist()
