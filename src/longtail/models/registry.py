"""Backbones by name, in the style of timm's model registry.

A backbone is an ``nn.Module`` mapping images (B, C, H, W) to globally pooled,
flattened features (B, D), with an integer attribute ``out_features`` = D. It
has no classifier: heads live in :mod:`longtail.models.heads`, so a decoupled
stage can swap the classifier without touching the feature extractor.

Two kinds of entries:

* names (``"resnet32"``), registered with :func:`register_backbone`;
* families (``"timm:<model>"``), registered with :func:`register_backbone_family`,
  whose factory receives the part after the colon.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

BackboneFactory = Callable[..., nn.Module]

_BACKBONES: dict[str, BackboneFactory] = {}
_FAMILIES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator registering ``factory(**kwargs) -> backbone`` under ``name``."""

    def decorator(factory: BackboneFactory) -> BackboneFactory:
        if name in _BACKBONES:
            raise ValueError(f"backbone '{name}' is already registered")
        _BACKBONES[name] = factory
        return factory

    return decorator


def register_backbone_family(prefix: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering ``factory(model_name, **kwargs)`` for names ``"<prefix>:<model_name>"``."""

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if prefix in _FAMILIES:
            raise ValueError(f"backbone family '{prefix}:' is already registered")
        _FAMILIES[prefix] = factory
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Registered names, sorted, followed by one ``"<prefix>:<name>"`` pattern per family."""
    return sorted(_BACKBONES) + [f"{prefix}:<name>" for prefix in sorted(_FAMILIES)]


def create_backbone(name: str, **kwargs) -> nn.Module:
    """Build the backbone registered as ``name`` (or ``"<family>:<model>"``) with ``kwargs``.

    Raises:
        KeyError: the name is unknown; the message lists the available names.
    """
    if name in _BACKBONES:
        model = _BACKBONES[name](**kwargs)
    elif ":" in name and name.split(":", 1)[0] in _FAMILIES:
        prefix, model_name = name.split(":", 1)
        model = _FAMILIES[prefix](model_name, **kwargs)
    else:
        raise KeyError(f"unknown backbone '{name}'; available: {', '.join(list_backbones())}")
    if not isinstance(getattr(model, "out_features", None), int):
        raise TypeError(f"backbone '{name}' does not set an integer `out_features`")
    return model
