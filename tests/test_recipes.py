"""Every seed-method experiment's recipe, pinned to the method specs (docs/methods/{drolt,ride,diffnet,ipdpp}.md).

``RECIPES`` holds one table per experiment: stage name → {dotted key of the composed, resolved stage config:
the value the spec gives}, each with the spec section / table row it comes from. The stages are those of
``longtail.engine.stages.stage_configs`` in run order; keys are read from the nodes a stage instantiates (``method``,
``datamodule``, ``trainer``, ``callbacks``), after interpolation, so ``method.loss`` is the loss the method gets
and ``datamodule.augment`` the augmentation its loader applies. Values the spec marks *unconfirmed* are pinned to
what it says; experiments the spec does not cover (library choices) are pinned only on what it does give.

``FIDELITY`` lists, per experiment and stage, every key that ``fidelity=reference`` changes relative to
``fidelity=paper`` and its (paper, reference) values: the switches of the method's "Where the reference code
differs from the paper" section, and nothing else.
"""

from __future__ import annotations

import functools
import math

import pytest
from config_snapshot import flatten
from conftest import CONF_DIR, compose_config
from omegaconf import OmegaConf

from longtail.engine.stages import stage_configs

SEED_METHODS = ("drolt", "ride", "diffnet", "ipdpp")
SEED_EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")
                          if p.stem.split("_")[0] in SEED_METHODS)
# the nodes a stage instantiates or reads at run time (longtail.engine.stages.build_stage / build_trainer); the
# top-level switch nodes (focal, ride, drolt, diffnet, ipdpp, bns, probe) only feed these through interpolation
EFFECTIVE_NODES = ("method", "datamodule", "trainer", "callbacks", "logging")


# ---------------------------------------------------------------------------------------------------------------
# matching


class _Absent:
    def __repr__(self):
        return "<absent>"


ABSENT = _Absent()  # the key is not in the composed config (or its parent node is null)


class Matcher:
    def __init__(self, description, predicate):
        self.description, self.predicate = description, predicate

    def __call__(self, actual):
        return self.predicate(actual)

    def __repr__(self):
        return self.description


def absent_or(value):
    """Not set (the constructor's default applies), or set to ``value``; e.g. torch SGD's nesterov=False."""
    return Matcher(f"absent or {value!r}", lambda actual: actual is ABSENT or matches(value, actual))


def at_most(bound):
    return Matcher(f"<= {bound!r}", lambda actual: _is_number(actual) and actual <= bound)


def near(values, rel):
    return Matcher(f"≈{values!r} (rel {rel})", lambda actual: isinstance(actual, list) and len(actual) == len(values)
                   and all(_is_number(a) and math.isclose(a, v, rel_tol=rel) for a, v in zip(actual, values)))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def matches(expected, actual) -> bool:
    if isinstance(expected, Matcher):
        return expected(actual)
    if expected is ABSENT or expected is None or isinstance(expected, bool):
        return actual is expected
    if _is_number(expected):
        return _is_number(actual) and math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(expected, (list, tuple)):
        return (isinstance(actual, list) and len(actual) == len(expected)
                and all(matches(e, a) for e, a in zip(expected, actual)))
    if isinstance(expected, dict):
        return (isinstance(actual, dict) and set(actual) == set(expected)
                and all(matches(v, actual[k]) for k, v in expected.items()))
    return actual == expected


def lookup(stage: dict, dotted: str):
    node = stage
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return ABSENT
        node = node[part]
    return node


@functools.lru_cache(maxsize=None)
def composed(experiment: str, fidelity: str | None = None) -> dict[str, dict]:
    """{stage name: the stage's effective nodes, resolved}, in run order."""
    overrides = [f"experiment={experiment}"] + ([f"fidelity={fidelity}"] if fidelity else [])
    return {name: {node: OmegaConf.to_container(stage[node], resolve=True) for node in EFFECTIVE_NODES}
            for name, stage in stage_configs(compose_config(overrides))}


# ---------------------------------------------------------------------------------------------------------------
# shared values

CIFAR10_MEAN, CIFAR10_STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]  # docs/methods/baselines.md §4, docs/methods/ride.md §4
CIFAR100_MEAN, CIFAR100_STD = [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]  # docs/methods/diffnet.md §1
ERM = "longtail.methods.erm.ERM"
SGD, ADAMW, ADAM = "torch.optim.SGD", "torch.optim.AdamW", "torch.optim.Adam"
MULTISTEP, COSINE = "longtail.engine.schedules.warmup_multistep", "longtail.engine.schedules.warmup_cosine"
ITER_COSINE = "longtail.engine.schedules.iteration_warmup_cosine"
INSTANCE = "longtail.data.samplers.InstanceSampler"
CLASS_AWARE = "longtail.data.samplers.ClassAwareSampler"
CLASS_BALANCED = "longtail.data.samplers.ClassBalancedSampler"
CAPPED = "longtail.data.samplers.CappedSubsetSampler"
CE = "longtail.losses.CrossEntropy"


def cifar_lt(num_classes):
    """docs/methods/README.md §2: the LDAM protocol, IF 100 (every seed CIFAR experiment is the IF100 row of its spec)."""
    return {"datamodule.num_classes": num_classes, "datamodule.imbalance_factor": 100, "datamodule.protocol": "ldam",
            "datamodule.subset_seed": 0}


# ---------------------------------------------------------------------------------------------------------------
# DRO-LT (docs/methods/drolt.md)


def drolt_cifar(num_classes):
    data = cifar_lt(num_classes)
    heavy_augment = {  # §3 "B1/B2 augmentation": pad-crop, flip, AutoAugment CIFAR-10, Cutout 16 zero fill, Normalize
        "datamodule.augment.crop_padding": 4,
        "datamodule.augment.hflip": True,
        "datamodule.augment.autoaugment": "cifar10",
        "datamodule.augment.cutout.size": 16,
        # zero fill before Normalize = -mean/std in normalised units
        "datamodule.augment.cutout.value": near([-m / s for m, s in zip(CIFAR10_MEAN, CIFAR10_STD)], rel=1e-3),
        "datamodule.mean": CIFAR10_MEAN, "datamodule.std": CIFAR10_STD,
    }
    class_aware = {  # §3 "sampler, both phases": class-aware, k = 4 (D3: B2 reuses the feature loader)
        "datamodule.sampler._target_": CLASS_AWARE, "datamodule.sampler.num_samples_cls": 4,
    }
    return {
        # §3 row "phase A": LDAM-DRW cifar_train.py --loss_type CE --train_rule None
        "train": {
            **data,
            "method._target_": ERM,
            "method.network.backbone": "resnet32",  # §1 "Backbone"
            "method.network.head": "linear",  # §1: Linear(64, C) with bias
            "method.loss._target_": CE,
            "method.drw_start": None,  # --train_rule None
            "trainer.max_epochs": 200,
            "datamodule.batch_size": 128,
            "method.optimizer._target_": SGD,
            "method.optimizer.lr": 0.1,
            "method.optimizer.momentum": 0.9,
            "method.optimizer.nesterov": absent_or(False),
            "method.optimizer.weight_decay": 2e-4,
            "method.scheduler._target_": MULTISTEP,  # warm-up 5, x0.01 at 160, x1e-4 at 180
            "method.scheduler.warmup_epochs": 5,
            "method.scheduler.milestones": [160, 180],
            "method.scheduler.gamma": 0.01,
            "datamodule.sampler._target_": INSTANCE,
            "datamodule.augment.crop_padding": 4,  # RandomCrop 32 pad 4 + HFlip
            "datamodule.augment.hflip": True,
            "datamodule.augment.autoaugment": None,
            "datamodule.augment.cutout": None,
            "datamodule.mean": CIFAR10_MEAN, "datamodule.std": CIFAR10_STD,
        },
        # B1, epochs 0..79 of phase B (§1 table; §3 E / E_cls = 100 / 20)
        "robust": {
            **data, **heavy_augment, **class_aware,
            "method._target_": "longtail.methods.drolt.DROLT",
            "method.network.backbone": "resnet32",
            "trainer.max_epochs": 80,  # E - E_cls
            "datamodule.batch_size": 128,  # §3 "batch size"
            "method.optimizer._target_": SGD,
            "method.optimizer.lr": 0.005,  # §3 "lr_f"
            "method.epsilon_lr": 0.005,  # lr_f covers backbone + ε
            "method.optimizer.momentum": 0.9,  # §3 "momentum / weight decay": 0.9 / 1e-4, ε included
            "method.optimizer.weight_decay": 1e-4,
            "method.scheduler": None,  # §3 "LR schedule in phase B": constant (D6)
            "method.loss._target_": "longtail.losses.RobustLoss",
            "method.loss.temperature": 1.0,  # §3 "temperature T"
            "method.epsilon_init": 1.0,  # §3 "ε init / parametrisation": 1.0 / raw
            "method.eps_param": "raw",
            "method.ce_loss._target_": "longtail.losses.FrequencyWeightedCE",  # §3 "CE weights in B1": n_c / n_max
            "method.robust_weights": False,  # §2: the weighted variant is off in the published command
            "method.feature_layer": None,  # §1 "Where the loss applies": the penultimate feature only
            "method.centroids": "augmented",  # §3 "centroid refresh" / D4
            "method.loss.eps_index": "paper",  # D1 library default
            "callbacks.model_checkpoint.monitor": "val/ncm_acc",  # D5 library default (the last epoch without val)
        },
        # B2, epochs 80..99 of phase B
        "classifier": {
            **data, **heavy_augment, **class_aware,
            "method._target_": "longtail.methods.decouple.ClassifierFineTuning",  # §1: A's classifier stays
            "method.loss._target_": CE,  # §1 table: plain CE
            "trainer.max_epochs": 20,  # E_cls
            "datamodule.batch_size": 128,
            "method.optimizer._target_": SGD,
            "method.optimizer.lr": 0.01,  # §3 "lr_c"
            "method.optimizer.momentum": 0.9,
            "method.optimizer.weight_decay": 1e-4,
            "method.scheduler": None,  # constant
        },
    }


# §3 last row: ImageNet-LT has no reference code; only the backbone (ResNet-50) is given, the rest unconfirmed.
# Phase A is the CE baseline experiment (D7); the stages are those of §1.
DROLT_IMAGENET = {
    "train": {"method._target_": ERM, "method.loss._target_": CE, "method.network.backbone": "resnet50",
              "datamodule.num_classes": 1000},
    "robust": {"method._target_": "longtail.methods.drolt.DROLT", "method.network.backbone": "resnet50",
               "datamodule.num_classes": 1000},
    "classifier": {"method._target_": "longtail.methods.decouple.ClassifierFineTuning",
                   "method.network.backbone": "resnet50", "datamodule.num_classes": 1000},
}


# ---------------------------------------------------------------------------------------------------------------
# RIDE (docs/methods/ride.md)

RIDE = "longtail.methods.ride.RIDE"


def ride_experts(backbone, experts):
    """§1 architecture / §4 row "E / reduce_dimension / cosine s": 3 / true / 30 (teacher 6, student 4)."""
    return {"method.network._target_": "longtail.models.experts.RIDENetwork", "method.network.backbone": backbone,
            "method.network.num_experts": experts, "method.network.reduce_dimension": True,
            "method.network.scale": 30.0}


def ride_loss(alpha, gamma):
    """§2 stage-1 loss; §4 rows "α (diversity)", "γ (reweight_factor)", "LDAM max_m / DRW β" (0.5 / 0.9999)."""
    values = {
        "method.loss.base_loss._target_": "longtail.losses.LDAMLoss",
        "method.loss.base_loss.max_m": 0.5,
        "method.loss.base_loss.scale": 30.0,  # §2: LDAM on the s = 30 cosine logits
        "method.drw_beta": 0.9999,
        "method.loss.temperature": 1.0,  # §2 step 3: T_base = 1
        "method.loss.base_loss_factor": 1.0,  # §2 step 4: CE_r + α · ...
        "method.loss.diversity_factor": alpha,
        "method.loss.collaborative_when_zero": False,  # R1 library default
    }
    if gamma is not None:
        values["method.loss.reweight_factor"] = gamma
    return values


def ride_schedule(*, epochs, lr, wd, warmup, milestones, gamma, drw_start):
    """§4 rows "epochs", "optimiser" (SGD m 0.9 Nesterov), "LR schedule (per epoch)", "drw_start"."""
    return {
        "trainer.max_epochs": epochs,
        "method.optimizer._target_": SGD,
        "method.optimizer.momentum": 0.9,
        "method.optimizer.nesterov": True,
        "method.optimizer.lr": lr,
        "method.optimizer.weight_decay": wd,
        "method.scheduler._target_": MULTISTEP,
        "method.scheduler.warmup_epochs": warmup,  # × (e+1)/5 for e < 5
        "method.scheduler.milestones": milestones,
        "method.scheduler.gamma": gamma,
        "method.drw_start": drw_start,
    }


def ride_router(experts, top_k):
    """§3 and §4 rows "router: K / pos_weight", "router training" (5 epochs, batch 512, SGD Nesterov lr 0.01,
    wd 5e-4, cosine (T_max 5) to 0); balanced sampler (§3 "Training setup")."""
    return {
        "method._target_": "longtail.methods.ride.RIDERouter",
        "method.network.num_experts": experts,
        "method.router.top_k": top_k,
        "method.router.hidden": 16,  # h_k ∈ R^16
        "method.pos_weight": 100.0,
        "trainer.max_epochs": 5,
        "datamodule.batch_size": 512,
        "method.optimizer._target_": SGD,
        "method.optimizer.nesterov": True,
        "method.optimizer.lr": 0.01,
        "method.optimizer.weight_decay": 5e-4,
        "method.scheduler._target_": COSINE,
        "method.scheduler.warmup_epochs": 0,
        "datamodule.sampler._target_": CLASS_BALANCED,
    }


def ride_distill_loss():
    """§2 "Distillation": T_d = 1.5, both weights 1; R3 library default (L_RIDE + L_KD, once)."""
    return {"method.loss._target_": "longtail.losses.RIDEDistillLoss", "method.loss.distill_temperature": 1.5,
            "method.loss.ride_loss_factor": 1.0, "method.loss.distill_loss_factor": 1.0,
            "method.loss.distill_times_experts": False, "method.distill": True}


# CIFAR-100-LT IF100 column of §4
RIDE_CIFAR_SCHEDULE = ride_schedule(epochs=200, lr=0.1, wd=5e-4, warmup=5, milestones=[160, 180], gamma=0.01,
                                    drw_start=160)
RIDE_CIFAR_DATA = {
    **cifar_lt(100),
    "datamodule.batch_size": 128,  # "epochs / global batch": 200 / 128
    # "augmentation" / R6: pad-crop, flip, RandomRotation(15), CIFAR-10 statistics
    "datamodule.augment.crop_padding": 4,
    "datamodule.augment.hflip": True,
    "datamodule.augment.rotation": 15.0,
    "datamodule.mean": CIFAR10_MEAN, "datamodule.std": CIFAR10_STD,
}


def ride_cifar100(teacher_experts=3):
    return {"method._target_": RIDE, "method.distill": False, **RIDE_CIFAR_DATA,
            **ride_experts("resnet32", teacher_experts), **ride_loss(-0.45, 0.05), **RIDE_CIFAR_SCHEDULE}


def ride_distill_cifar100(student_experts):
    # teacher: 6 experts (§1, §4 "distillation: T_d / teacher"); student warm-up 20 ("warm-up with distillation")
    return {
        "train": ride_cifar100(teacher_experts=6),
        "student": {**ride_cifar100(teacher_experts=student_experts), **ride_distill_loss(),
                    "method.scheduler.warmup_epochs": 20},
        "router": {**ride_router(student_experts, 30), "datamodule.num_classes": 100},
    }


# ImageNet-LT (R10 / R50 / RX50) column of §4; augmentation RandomResizedCrop 224, HFlip, ColorJitter(0.4, 0.4, 0.4, 0),
# test Resize 256 + CenterCrop 224
RIDE_IMAGENET = {
    "method._target_": RIDE,
    "datamodule.num_classes": 1000,
    "datamodule.batch_size": 256,
    "datamodule.image_size": 224, "datamodule.resize": 256, "datamodule.color_jitter": 0.4,
    **ride_schedule(epochs=100, lr=0.1, wd=2e-4, warmup=5, milestones=[60, 80], gamma=0.1, drw_start=80),
    **ride_loss(-0.2, 0.02),
}
# iNaturalist 2018 (R50) column: 100 / 512, lr 0.2, γ 0.015, no ColorJitter, iNaturalist statistics
RIDE_INAT = {
    "method._target_": RIDE,
    "datamodule.num_classes": 8142,
    "datamodule.batch_size": 512,
    "datamodule.color_jitter": None,
    "datamodule.mean": [0.466, 0.471, 0.380], "datamodule.std": [0.195, 0.194, 0.192],
    **ride_schedule(epochs=100, lr=0.2, wd=2e-4, warmup=5, milestones=[60, 80], gamma=0.1, drw_start=80),
    **ride_loss(-0.2, 0.015),
}


def ride_large(data, backbone, top_k, distilled=False):
    if not distilled:
        return {"train": {**data, **ride_experts(backbone, 3), "method.distill": False},
                "router": {**ride_router(3, top_k), "datamodule.num_classes": data["datamodule.num_classes"]}}
    # 6-expert teacher, 4-expert student (model zoo rows), warm-up with distillation 5
    return {
        "train": {**data, **ride_experts(backbone, 6), "method.distill": False},
        "student": {**data, **ride_experts(backbone, 4), **ride_distill_loss(), "method.scheduler.warmup_epochs": 5},
        "router": {**ride_router(4, top_k), "datamodule.num_classes": data["datamodule.num_classes"]},
    }


# ---------------------------------------------------------------------------------------------------------------
# Difficulty-Net (docs/methods/diffnet.md)

DN_METHOD = "longtail.methods.diffnet.DifficultyNetMetaLearning"
LWS = "longtail.methods.decouple.LearnableWeightScaling"
LAS = "longtail.losses.LabelAwareSmoothingLoss"
DN_PAPER_SWITCHES = {  # §7 library defaults (fidelity=paper)
    "method.detach_weights": False,  # N1
    "method.meta_step": "functional",  # N2
    "method.loss.bs_broadcast_bug": False,  # N3
}


def diffnet_meta(*, hidden, bias, dn_lr, balanced_softmax):
    """§2 DN table (H / biases / Adam lr, wd 1e-4); §3 λ = 0.3; §5 "loss ℓ"."""
    return {
        "method._target_": DN_METHOD,
        "method.difficulty_net.hidden": hidden,
        "method.difficulty_net.bias": bias,
        "method.difficulty_optimizer._target_": ADAM,
        "method.difficulty_optimizer.lr": dn_lr,
        "method.difficulty_optimizer.weight_decay": 1e-4,
        "method.lamda": 0.3,
        "method.loss.balanced_softmax": balanced_softmax,
        "method.virtual_params": "all",  # §3 "Implementation details": all by default
        **DN_PAPER_SWITCHES,
    }


def diffnet_las(*, smooth_head, smooth_tail, train_linear, recalibrate, epochs, batch, lr, wd):
    """§4 stage 2 and §5 stage-2 rows; class-aware k = 4; cosine to 0."""
    return {
        "method._target_": LWS,
        "method.loss._target_": LAS,
        "method.loss.smooth_head": smooth_head,
        "method.loss.smooth_tail": smooth_tail,
        "method.train_linear": train_linear,
        "method.recalibrate": recalibrate,
        "trainer.max_epochs": epochs,
        "datamodule.batch_size": batch,
        "method.optimizer._target_": SGD,
        "method.optimizer.momentum": 0.9,
        "method.optimizer.lr": lr,
        "method.optimizer.weight_decay": wd,
        "method.scheduler._target_": COSINE,
        "method.scheduler.warmup_epochs": 0,
        "datamodule.sampler._target_": CLASS_AWARE,
        "datamodule.sampler.num_samples_cls": 4,
    }


def diffnet_cifar(num_classes, balanced_softmax=False):
    data = {
        "datamodule.num_classes": num_classes,
        "datamodule.imbalance_factor": 100,
        # §1: DN protocol, 25 held out per class (DN input, meta set, selection), CIFAR-100 statistics for both
        "datamodule.protocol": "diffnet",
        "datamodule.val": "heldout",
        "datamodule.val_per_class": 25,
        "datamodule.mean": CIFAR100_MEAN, "datamodule.std": CIFAR100_STD,
        "method.network.backbone": "resnet32",  # §2: ResNet-32 + Linear(64, C) with bias
        "method.network.head": "linear",
        # §5 "stage-1 augmentation" exaugment: reflect pad 4, crop, flip, AutoAugment, Cutout 16 image mean
        "datamodule.augment.crop_padding": 4,
        "datamodule.augment.crop_padding_mode": "reflect",
        "datamodule.augment.hflip": True,
        "datamodule.augment.autoaugment": "cifar10",
        "datamodule.augment.cutout.size": 16,
        "datamodule.augment.cutout.fill": "image_mean",
        "datamodule.augment.reference_quirks": False,  # N6 library default
    }
    return {
        "train": {
            **data,
            **diffnet_meta(hidden=128, bias=False, dn_lr=1e-5, balanced_softmax=balanced_softmax),
            "method.accuracy_timing": "after_epoch",  # §3: CIFAR after each epoch, from a = 0
            # §5 CIFAR column: 240 / 128, SGD m 0.9 lr 0.1 wd 1e-4, x0.01 at 160 and at 210 (unconfirmed, N5)
            "trainer.max_epochs": 240,
            "datamodule.batch_size": 128,
            "datamodule.meta_batch_size": 100,  # §3: B_m = 100 on CIFAR
            "method.optimizer._target_": SGD,
            "method.optimizer.momentum": 0.9,
            "method.optimizer.nesterov": absent_or(False),
            "method.optimizer.lr": 0.1,
            "method.optimizer.weight_decay": 1e-4,
            "method.scheduler._target_": MULTISTEP,
            "method.scheduler.warmup_epochs": 0,
            "method.scheduler.milestones": [160, 210],
            "method.scheduler.gamma": 0.01,
        },
        "las": {
            **data,
            # §4 CIFAR: backbone in eval mode; W, b and s all trained; (ε_head, ε_tail) by IF: None = from
            # datamodule.imbalance_factor (0.4, 0.1 at IF 100); §5: 50 / 128, lr 0.05, wd 1e-4,
            # lr_e = 0.025 (1 + cos(π e/50))
            **diffnet_las(smooth_head=None, smooth_tail=None, train_linear=True, recalibrate=[], epochs=50,
                          batch=128, lr=0.05, wd=1e-4),
            "method.loss.imbalance_factor": 100,
        },
    }


# §1 "ImageNet-LT / Places-LT": meta set 10 per class from the val list (also the accuracy set), selection on the
# full val list; §3 B_m = the training batch; accuracy vector before each epoch
DN_LISTS_DATA = {"datamodule.protocol": "diffnet", "datamodule.meta_per_class": 10, "datamodule.val": "source",
                 "datamodule.batch_size": 128, "datamodule.meta_batch_size": 128}
# §5 stage-1 augmentation: reflect-pad 4 → RandomResizedCrop 224 → HFlip → ColorJitter(0.4, 0.4, 0.4, 0)
DN_LISTS_AUGMENT = {"datamodule.train_reflect_pad": 4, "datamodule.image_size": 224,
                    "datamodule.augment.color_jitter.brightness": 0.4,
                    "datamodule.augment.color_jitter.contrast": 0.4,
                    "datamodule.augment.color_jitter.saturation": 0.4}
# §2: cosine classifier 30 · cos, no bias, on ImageNet-LT and Places-LT
COSINE_HEAD = {"method.network.head": "cosine", "method.network.head_kwargs.scale": 30.0}


def diffnet_imagenet(backbone, randaugment):
    network = {"method.network.backbone": backbone, "method.network.backbone_kwargs.pretrained": False,  # scratch
               "datamodule.num_classes": 1000, **COSINE_HEAD}
    return {
        "train": {
            **network, **DN_LISTS_DATA, **DN_LISTS_AUGMENT,
            **diffnet_meta(hidden=1024, bias=True, dn_lr=1e-3, balanced_softmax=True),  # §5 "loss ℓ": BS
            "method.accuracy_timing": "before_epoch",
            # §5 ImageNet-LT column: 180 / 128, SGD m 0.9 Nesterov, lr 0.05, wd 5e-4, cosine to 0 (per epoch)
            "trainer.max_epochs": 180,
            "method.optimizer._target_": SGD,
            "method.optimizer.momentum": 0.9,
            "method.optimizer.nesterov": True,
            "method.optimizer.lr": 0.05,
            "method.optimizer.weight_decay": 5e-4,
            "method.scheduler._target_": COSINE,
            "method.scheduler.warmup_epochs": 0,
            # §5 RandAugment (n 2, m 10, mstd 0.5); §6: ResNet-10's 44.6 is without it, ResNet-50's 57.4 with it
            "datamodule.augment.randaugment": randaugment,
        },
        "las": {
            **network,
            # §4 ImageNet-LT: scales only on the frozen cosine classifier, backbone BN re-estimated (train mode,
            # no grad); §5: 10 / 128, lr 0.05, wd 2e-4, cosine; LAS (0.3, 0.0)
            **diffnet_las(smooth_head=0.3, smooth_tail=0.0, train_linear=False, recalibrate=["network.backbone"],
                          epochs=10, batch=128, lr=0.05, wd=2e-4),
        },
    }


RANDAUGMENT = {"num_ops": 2, "magnitude": 10, "magnitude_std": 0.5, "num_magnitude_bins": 11}

DIFFNET_PLACES = {
    "train": {
        # §2: ImageNet-pretrained ResNet-152, layer4 cut to 2 blocks + a new Bottleneck (OLTR), cosine classifier
        "method.network.backbone": "resnet152_oltr", "method.network.backbone_kwargs.pretrained": True,
        **COSINE_HEAD, "datamodule.num_classes": 365,
        **DN_LISTS_DATA, **DN_LISTS_AUGMENT,
        "datamodule.augment.randaugment": None,  # §5: as ImageNet-LT, without RandAugment
        **diffnet_meta(hidden=512, bias=True, dn_lr=1e-3, balanced_softmax=False),  # §5 "loss ℓ": CE
        "method.accuracy_timing": "before_epoch",
        # §5 Places-LT column: 30 / 128; SGD m 0.9; lr 0.01 block + classifier, 0.001 backbone; wd 5e-4;
        # x0.1 at 10 and 20
        "trainer.max_epochs": 30,
        "method.optimizer._target_": SGD,
        "method.optimizer.momentum": 0.9,
        "method.optimizer.nesterov": absent_or(False),
        "method.optimizer.lr": 0.001,
        "method.lr_groups": {"network.backbone.extra": 0.01, "network.head": 0.01},
        "method.optimizer.weight_decay": 5e-4,
        "method.scheduler._target_": MULTISTEP,
        "method.scheduler.warmup_epochs": 0,
        "method.scheduler.milestones": [10, 20],
        "method.scheduler.gamma": 0.1,
    },
    "las": {
        "method.network.backbone": "resnet152_oltr", **COSINE_HEAD, "datamodule.num_classes": 365,
        # §4 Places-LT: scales only; backbone eval mode, the extra block in train mode; §5: 20 / 256, lr 0.1,
        # wd 5e-4, cosine; LAS (0.4, 0.1)
        **diffnet_las(smooth_head=0.4, smooth_tail=0.1, train_linear=False,
                      recalibrate=["network.backbone.extra"], epochs=20, batch=256, lr=0.1, wd=5e-4),
    },
}


# ---------------------------------------------------------------------------------------------------------------
# BNS + IP-DPP (docs/methods/ipdpp.md)

BNS = "longtail.methods.ipdpp.BNSPretraining"
PROBE = "longtail.methods.decouple.LinearProbe"
IPDPP = "longtail.methods.ipdpp.IPDPPFineTuning"
IPDPP_PAPER_SWITCHES = {  # §6 library defaults (fidelity=paper)
    "bns": {"method.loss.form": "paper",  # Q5
            "datamodule.sampler.fixed_permutation": False},  # Q6
    "probe": {"method.recalibrate_backbone": False},  # Q8: frozen encoder in eval mode
    "ipdpp": {"method.dpp_sampler": "exact_kdpp",  # Q1-Q2
              "method.kernel_scale": "n",  # Q3: Eq. 16
              "method.prob_transform": "test",  # Q4
              "method.first_probs": "probe",  # Q4
              "method.finetune_scope": "all"},  # Q7: the whole network, as released
}


def simclr(strength, views):
    """§2 "Augmentation (SimCLR, strength s)": RandomResizedCrop(32, (0.08, 1)), HFlip, ColorJitter(0.8s, ...)
    p 0.8, grayscale p 0.2, GaussianBlur(3, σ ~ U(0.1, 2)) always; no Normalize, not even at test time."""
    return {
        "datamodule.augment._target_": "longtail.data.simclr.SimCLRAugment",
        "datamodule.augment.size": 32,
        "datamodule.augment.scale": [0.08, 1.0],
        "datamodule.augment.hflip": True,
        "datamodule.augment.strength": strength,
        "datamodule.augment.jitter_p": 0.8,
        "datamodule.augment.grayscale_p": 0.2,
        "datamodule.augment.blur_kernel": 3,
        "datamodule.augment.blur_sigma": [0.1, 2.0],
        "datamodule.augment.blur_p": 1.0,
        "datamodule.augment.views": views,
        "datamodule.mean": [0.0, 0.0, 0.0], "datamodule.std": [1.0, 1.0, 1.0],
    }


def ipdpp_cifar(num_classes, *, encoder, bns_batch, bns_lr, probe_cap, probe_warmup, probe_strength, k, f,
                thresholds):
    """§4 table (one column per data set) with §2 (stage 1, probe) and §3 (stage 2)."""
    data = {**cifar_lt(num_classes), "method.network.backbone": encoder,  # §1 "Encoder"; Q11: IF 100 throughout
            "method.shot_thresholds": thresholds}  # §4 "m/m/f thresholds (reference code)"
    return {
        "bns": {
            **data, **simclr(2.0, views=2), **IPDPP_PAPER_SWITCHES["bns"],
            "method._target_": BNS,
            "method.loss._target_": "longtail.losses.BNSLoss",
            "method.loss.temperature": 0.5,  # §4 "BNS τ / m / n": 0.5 / 2 / 64
            "method.loss.extra_anchors": 2,
            "method.loss.negatives": 64,
            "method.projector.hidden": 2048,  # §1: Linear(512→2048) → ReLU → Linear(2048→128)
            "method.projector.out_features": 128,
            # §2 "Stage-1 recipe", §4 "BNS batch / epochs / lr / warm-up"
            "trainer.max_epochs": 1000,
            "datamodule.batch_size": bns_batch,
            "datamodule.drop_last": True,
            "datamodule.sampler._target_": INSTANCE,
            "method.optimizer._target_": ADAMW,
            "method.optimizer.lr": bns_lr,  # 1e-3 · B/256
            "method.optimizer.betas": [0.9, 0.95],
            "method.optimizer.weight_decay": 0.05,
            "method.decay_all": False,  # none on biases and 1-D parameters
            "method.scheduler._target_": ITER_COSINE,  # per iteration: linear warm-up from 0, cosine to 0
            "method.scheduler.warmup_epochs": 20,
            "method.scheduler_interval": "step",
        },
        "probe": {
            # §2 "Linear probe": frozen encoder, Linear(512, C); 100 epochs, batch 64, AdamW lr 2.5e-4, wd 0.05;
            # §4 "probe: per-class cap / warm-up / s"
            **data, **simclr(probe_strength, views=1), **IPDPP_PAPER_SWITCHES["probe"],
            "method._target_": PROBE,
            "method.loss._target_": CE,
            "method.network.head": "linear",
            "trainer.max_epochs": 100,
            "datamodule.batch_size": 64,
            "method.optimizer._target_": ADAMW,
            "method.optimizer.lr": 2.5e-4,
            "method.optimizer.weight_decay": 0.05,
            "method.scheduler.warmup_epochs": probe_warmup,
            "datamodule.sampler._target_": CAPPED,
            "datamodule.sampler.cap": probe_cap,
        },
        "ipdpp": {
            # §3 "Stage-2 recipe", §4 "IP-DPP k", "re-draw period f", "fine-tune epochs / batch / lr / warm-up"
            **data, **simclr(1.0, views=1), **IPDPP_PAPER_SWITCHES["ipdpp"],
            "method._target_": IPDPP,
            "method.loss._target_": CE,
            "method.k": k,
            "method.redraw_every": f,
            "datamodule.sampler._target_": CAPPED,
            "datamodule.sampler.cap": k,  # min(n_c, k) images per class
            "trainer.max_epochs": 100,
            "datamodule.batch_size": 64,
            "datamodule.drop_last": False,
            "method.optimizer._target_": ADAMW,
            "method.optimizer.lr": 2.5e-4,
            "method.optimizer.betas": [0.9, 0.95],
            "method.optimizer.weight_decay": 0.05,
            "method.scheduler._target_": ITER_COSINE,
            "method.scheduler.warmup_epochs": 5,
            "method.scheduler_interval": "step",
        },
    }


# §4 ImageNet-LT column: everything unconfirmed (no code). Pinned: the pipeline of §1 (BNS on two augmented views →
# probe → whole-network CE fine-tuning) and the library defaults of the §6 switches.
IPDPP_IMAGENET = {
    "bns": {"method._target_": BNS, "method.loss._target_": "longtail.losses.BNSLoss", "datamodule.num_classes": 1000,
            "datamodule.augment.views": 2, **IPDPP_PAPER_SWITCHES["bns"]},
    "probe": {"method._target_": PROBE, "method.loss._target_": CE, "datamodule.num_classes": 1000,
              **IPDPP_PAPER_SWITCHES["probe"]},
    "ipdpp": {"method._target_": IPDPP, "method.loss._target_": CE, "datamodule.num_classes": 1000,
              **IPDPP_PAPER_SWITCHES["ipdpp"]},
}


# ---------------------------------------------------------------------------------------------------------------
# the tables

RECIPES = {
    # docs/methods/drolt.md §3: CIFAR-100-LT IF100 from the reference README command; the same values for CIFAR-10-LT
    # (unconfirmed that the authors did so)
    "drolt_cifar10": drolt_cifar(10),
    "drolt_cifar100": drolt_cifar(100),
    "drolt_imagenet_lt": DROLT_IMAGENET,
    # docs/methods/ride.md §4, CIFAR-100-LT IF100 column
    "ride_cifar100": {"train": ride_cifar100(), "router": {**ride_router(3, 30), "datamodule.num_classes": 100}},
    # no CIFAR-10 column: pinned on what docs/methods/ride.md gives for CIFAR in general (§2 α −0.45 and drw_start 160 on CIFAR,
    # §4 architecture, R6 augmentation, R7 200 epochs, §7 CIFAR schedule) and §3's K ≤ C
    "ride_cifar10": {
        "train": {"method._target_": RIDE, "method.distill": False, **cifar_lt(10), **ride_experts("resnet32", 3),
                  **ride_loss(-0.45, None), **RIDE_CIFAR_SCHEDULE,
                  **{k: v for k, v in RIDE_CIFAR_DATA.items() if k.startswith("datamodule.augment")
                     or k in ("datamodule.mean", "datamodule.std")}},
        "router": {**{k: v for k, v in ride_router(3, 30).items() if k != "method.router.top_k"},
                   "method.router.top_k": at_most(10), "datamodule.num_classes": 10},
    },
    # §4 "distillation: T_d / teacher": 1.5 / 6 experts; student 3 (model zoo, E = 3) or 4 experts
    "ride_distill_cifar100": ride_distill_cifar100(3),
    "ride_distill4_cifar100": ride_distill_cifar100(4),
    # §4 "router: K": 30 (R10), 50 (R50, RX50); iNaturalist 50
    "ride_imagenet_lt_resnext50": ride_large(RIDE_IMAGENET, "resnext50_32x4d", 50),
    "ride_imagenet_lt_resnet50": ride_large(RIDE_IMAGENET, "resnet50", 50),
    "ride_imagenet_lt_resnet10": ride_large(RIDE_IMAGENET, "resnet10", 30),
    "ride_inat_resnet50": ride_large(RIDE_INAT, "resnet50", 50),
    "ride_distill_imagenet_lt_resnext50": ride_large(RIDE_IMAGENET, "resnext50_32x4d", 50, distilled=True),
    "ride_distill_inat_resnet50": ride_large(RIDE_INAT, "resnet50", 50, distilled=True),
    # docs/methods/diffnet.md §1-5
    "diffnet_cifar10": diffnet_cifar(10),
    "diffnet_cifar100": diffnet_cifar(100),
    "diffnet_bs_cifar100": diffnet_cifar(100, balanced_softmax=True),  # the reference's `Balanced_Softmax`
    "diffnet_imagenet_lt_resnet10": diffnet_imagenet("resnet10", randaugment=None),
    "diffnet_imagenet_lt_resnet50": diffnet_imagenet("resnet50", randaugment=RANDAUGMENT),
    "diffnet_places_lt_resnet152": DIFFNET_PLACES,
    # docs/methods/ipdpp.md §4
    "ipdpp_cifar10": ipdpp_cifar(10, encoder="resnet18_cifar", bns_batch=1024, bns_lr=4e-3, probe_cap=100,
                                 probe_warmup=20, probe_strength=2.0, k=500, f=10, thresholds=[500, 200]),
    "ipdpp_cifar100": ipdpp_cifar(100, encoder="resnet34_cifar", bns_batch=512, bns_lr=2e-3, probe_cap=50,
                                  probe_warmup=5, probe_strength=1.0, k=50, f=20, thresholds=[100, 20]),
    "ipdpp_imagenet_lt": IPDPP_IMAGENET,  # experimental (library choices)
    # §3 from a CE-trained ResNet-32 (the CPU suite's IP-DPP row): the CIFAR-10 fine-tuning recipe on that encoder
    "ipdpp_ce_cifar10": {"train": {**cifar_lt(10), "method._target_": ERM, "method.loss._target_": CE,
                                   "method.network.backbone": "resnet32", "trainer.max_epochs": 200,
                                   "method.optimizer._target_": SGD},
                         "ipdpp": {**ipdpp_cifar(10, encoder="resnet32", bns_batch=1024, bns_lr=4e-3, probe_cap=100,
                                                 probe_warmup=20, probe_strength=2.0, k=500, f=10,
                                                 thresholds=[100, 20])["ipdpp"],
                                   # the CE model's input normalisation, not BNS's raw [0, 1] images
                                   "datamodule.mean": [0.4914, 0.4822, 0.4465], "datamodule.std": [0.2023, 0.1994, 0.201]}},
}


# ---------------------------------------------------------------------------------------------------------------
# fidelity=reference: (paper, reference) of every key it changes

def _switch(paper, reference):
    return paper, reference


DROLT_REFERENCE = {"robust": {"method.loss.eps_index": _switch("paper", "reference")}}  # D1 (D2, D4: same; D6: off)

RIDE_REFERENCE = {"train": {"method.loss.collaborative_when_zero": _switch(False, True)}}  # R1
RIDE_DISTILL_REFERENCE = {
    **RIDE_REFERENCE,
    "student": {"method.loss.collaborative_when_zero": _switch(False, True),  # R1
                "method.loss.distill_times_experts": _switch(False, True)},  # R3
}

DIFFNET_COMMON_REFERENCE = {
    "method.detach_weights": _switch(False, True),  # N1
    "method.loss.bs_broadcast_bug": _switch(False, True),  # N3 (changes nothing with CE)
}
DIFFNET_CIFAR_REFERENCE = {
    "train": {
        **DIFFNET_COMMON_REFERENCE,
        # N5: the script's 12,800-epoch WRN schedule, warm from 0.1 to 0.2 over 400 epochs, x0.1 at 6400 and 9600
        "trainer.max_epochs": _switch(240, 12800),
        "method.scheduler._target_": _switch(MULTISTEP, "longtail.engine.schedules.ramp_multistep"),
        "method.scheduler.warmup_epochs": _switch(0, ABSENT),
        "method.scheduler.ramp_epochs": _switch(ABSENT, 400),
        "method.scheduler.ramp_to": _switch(ABSENT, 2.0),
        "method.scheduler.milestones": _switch([160, 210], [6400, 9600]),
        "method.scheduler.gamma": _switch(0.01, 0.1),
        "datamodule.augment.reference_quirks": _switch(False, True),  # N6
    },
    # N6: the reference's augmentation is that of both CIFAR stages (stage 2 keeps the exaugment pipeline)
    "las": {"datamodule.augment.reference_quirks": _switch(False, True)},
}
# §7: N2 is the ImageNet/Places scripts' (pseudo-model step); N5, N6 are CIFAR-only
DIFFNET_LISTS_REFERENCE = {
    "train": {**DIFFNET_COMMON_REFERENCE, "method.meta_step": _switch("functional", "pseudo_optimizer")},
}

IPDPP_REFERENCE = {
    "bns": {"method.loss.form": _switch("paper", "reference"),  # Q5
            "datamodule.sampler.fixed_permutation": _switch(False, True)},  # Q6
    "probe": {"method.recalibrate_backbone": _switch(False, True),  # Q8
              "method.head_init": _switch("kaiming_normal", "torch_default")},  # Q13
    "ipdpp": {"method.dpp_sampler": _switch("exact_kdpp", "reference_uniform"),  # Q1-Q2
              "method.kernel_scale": _switch("n", "n_squared"),  # Q3
              "method.prob_transform": _switch("test", "train"),  # Q4
              "method.first_probs": _switch("probe", "current")},  # Q4 (Q7: the default is the release's)
}

FIDELITY = {
    **{e: DROLT_REFERENCE for e in ("drolt_cifar10", "drolt_cifar100", "drolt_imagenet_lt")},
    **{e: RIDE_REFERENCE for e in ("ride_cifar10", "ride_cifar100", "ride_imagenet_lt_resnet10",
                                   "ride_imagenet_lt_resnet50", "ride_imagenet_lt_resnext50", "ride_inat_resnet50")},
    **{e: RIDE_DISTILL_REFERENCE for e in ("ride_distill_cifar100", "ride_distill4_cifar100",
                                           "ride_distill_imagenet_lt_resnext50", "ride_distill_inat_resnet50")},
    **{e: DIFFNET_CIFAR_REFERENCE for e in ("diffnet_cifar10", "diffnet_cifar100", "diffnet_bs_cifar100")},
    **{e: DIFFNET_LISTS_REFERENCE for e in ("diffnet_imagenet_lt_resnet10", "diffnet_imagenet_lt_resnet50",
                                            "diffnet_places_lt_resnet152")},
    **{e: IPDPP_REFERENCE for e in ("ipdpp_cifar10", "ipdpp_cifar100", "ipdpp_imagenet_lt")},
    "ipdpp_ce_cifar10": {"ipdpp": IPDPP_REFERENCE["ipdpp"]},
}


# ---------------------------------------------------------------------------------------------------------------
# tests


def test_every_seed_method_experiment_has_a_recipe_and_fidelity_table():
    assert SEED_EXPERIMENTS, "no seed-method experiments found"
    assert set(RECIPES) == set(SEED_EXPERIMENTS)
    assert set(FIDELITY) == set(SEED_EXPERIMENTS)


def test_the_matchers_tell_values_apart():
    assert matches(0.1, 0.1) and not matches(0.1, 0.01) and not matches(1, True) and not matches(True, 1)
    assert matches(None, None) and not matches(None, ABSENT) and not matches(False, ABSENT)
    assert matches(absent_or(False), ABSENT) and matches(absent_or(False), False) and not matches(absent_or(False), True)
    assert matches([160, 180], [160, 180]) and not matches([160, 180], [160, 210])
    assert lookup({"a": {"b": None}}, "a.b.c") is ABSENT and lookup({"a": {"b": 3}}, "a.b") == 3


@pytest.mark.parametrize("experiment", sorted(RECIPES))
def test_recipe_is_the_spec(experiment):
    stages = composed(experiment)
    assert list(stages) == list(RECIPES[experiment]), "stages (in run order)"
    wrong = []
    for stage, table in RECIPES[experiment].items():
        for key, expected in table.items():
            actual = lookup(stages[stage], key)
            if not matches(expected, actual):
                wrong.append(f"{stage}: {key} = {actual!r}, spec: {expected!r}")
    assert not wrong, f"{experiment} differs from its spec:\n  " + "\n  ".join(wrong)


@pytest.mark.parametrize("experiment", sorted(FIDELITY))
def test_fidelity_reference_turns_on_exactly_the_methods_switches(experiment):
    paper, reference = composed(experiment, "paper"), composed(experiment, "reference")
    assert list(paper) == list(reference)
    changed = {}
    for stage in paper:
        flat_paper, flat_reference = flatten(paper[stage]), flatten(reference[stage])
        diff = {key: (flat_paper.get(key, ABSENT), flat_reference.get(key, ABSENT))
                for key in flat_paper.keys() | flat_reference.keys()
                if flat_paper.get(key, ABSENT) != flat_reference.get(key, ABSENT)}
        if diff:
            changed[stage] = diff
    assert changed == FIDELITY[experiment]
