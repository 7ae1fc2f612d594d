"""Every private API of a dependency the library relies on, in one place, each with a test (tests/test_compat.py).

An upgrade of torch, torchvision, Lightning, Hydra or OmegaConf that moves one of these breaks here and in its
test, not somewhere in a method. What each one is for:

- DDP: :func:`ddp_ignore` keeps Difficulty-Net's parameters (it has its own backward) out of DDP's reducer.
- torchvision ``ResNet._make_layer``: :func:`resnet_layer` builds RIDE's per-expert stages with torchvision's own
  block layout.
- torchvision ``v2.AutoAugment`` internals: its op space, policy tables and per-op transform, so batched
  AutoAugment applies exactly torchvision's ops (:mod:`longtail.data.policies`).
- Hydra's override step and error strings: a multirun's stage overrides skip the jobs without the stage
  (:mod:`longtail.config.overrides`), and a composition error is turned into one message naming the key.
- OmegaConf node internals: a value as written (interpolations unresolved) for error messages.
- Lightning's ``LightningModule._trainer``: a stand-in Trainer so a method's optimizers are built before training,
  in the pre-flight check (:mod:`longtail.config.validation`).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import torch
from omegaconf import DictConfig
from torch import nn

# Hydra's messages for an unknown key and an unknown config option (hydra-core 1.3)
HYDRA_NOT_IN_STRUCT = re.compile(r"Could not override '([^']+)'")
HYDRA_MISSING_OPTION = re.compile(r"Could not find '([^']+)/([^']+)'")


def ddp_ignore(module: nn.Module, names: list[str]) -> None:
    """Parameters and buffers (dotted names in ``module``) that DDP neither broadcasts nor reduces."""
    from torch.nn.parallel import DistributedDataParallel

    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, names)


def resnet_layer(resnet, block: type, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """One residual stage built by torchvision's ``ResNet`` (its ``inplanes`` and ``dilation`` as set)."""
    return resnet._make_layer(block, planes, blocks, stride=stride)


def autoaugment_space() -> dict:
    """torchvision's AutoAugment op space: ``{name: (magnitudes(num_bins, height, width), signed)}``."""
    from torchvision.transforms import v2

    return v2.AutoAugment._AUGMENTATION_SPACE


def autoaugment_policy(policy) -> list:
    """The sub-policies of a ``v2.AutoAugmentPolicy``: ``[((name, probability, magnitude bin), ...), ...]``."""
    from torchvision.transforms import v2

    return v2.AutoAugment(policy)._policies


def apply_autoaugment_op(transform, images: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    """torchvision's op ``name`` at ``magnitude`` on a batch, with ``transform``'s interpolation and fill."""
    return transform._apply_image_or_video_transform(images, name, magnitude, interpolation=transform.interpolation,
                                                     fill=transform._fill)


def hydra_config_loader():
    """Hydra's ``ConfigLoaderImpl`` (whose ``_apply_overrides_to_config`` applies the value overrides), or None."""
    try:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
    except ImportError:
        return None
    return ConfigLoaderImpl if hasattr(ConfigLoaderImpl, "_apply_overrides_to_config") else None


def raw_child(node: DictConfig, key: str):
    """The child node ``key`` of ``node`` without resolving it, or None."""
    return node._get_node(key, validate_access=False, throw_on_missing_key=False)


def is_none_or_interpolation(node) -> bool:
    return node._is_none() or node._is_interpolation()


def is_interpolation(node) -> bool:
    return node._is_interpolation()


def raw_value(node):
    """A leaf node's value as written (``"${a.b}"`` for an interpolation)."""
    return node._value()


def stand_in_trainer(module, max_epochs: int) -> None:
    """Attach a minimal Trainer so ``configure_optimizers`` (which reads the schedule length) runs before ``fit``."""
    module._trainer = SimpleNamespace(max_epochs=max_epochs, estimated_stepping_batches=max_epochs)
