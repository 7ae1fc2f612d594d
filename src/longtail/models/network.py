"""A classification network: backbone (features) + head (logits), kept apart.

Keeping them apart lets a decoupled stage freeze ``backbone`` and swap
``head`` (cRT, LWS, τ-norm), and lets a stage load ``network.backbone.*``
from a checkpoint on its own. Buildable from Hydra with names::

    model:
      _target_: longtail.models.Network
      backbone: resnet32
      head: linear
      num_classes: 10
      backbone_kwargs: {in_channels: 3}
      head_kwargs: {}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from longtail.models.heads import create_head
from longtail.models.registry import create_backbone


class Network(nn.Module):
    """Backbone + head.

    Args:
        backbone: a registered backbone name or a built module with ``out_features``.
        head: a head name (``"linear"``, ``"cosine"``), a built module, or a
            callable ``head(in_features, num_classes)`` (e.g. a Hydra partial).
        num_classes: number of classes C.
        backbone_kwargs: passed to :func:`create_backbone` when ``backbone`` is a name.
        head_kwargs: passed to the head factory when ``head`` is a name or a callable.
    """

    def __init__(
        self,
        backbone: nn.Module | str,
        head: nn.Module | Callable[..., nn.Module] | str,
        num_classes: int,
        backbone_kwargs: Mapping[str, Any] | None = None,
        head_kwargs: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if isinstance(backbone, str):
            backbone = create_backbone(backbone, **dict(backbone_kwargs or {}))
        elif backbone_kwargs:
            raise ValueError("backbone_kwargs apply only when backbone is given by name")
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.out_features = int(backbone.out_features)
        if isinstance(head, str):
            head = create_head(head, self.out_features, self.num_classes, **dict(head_kwargs or {}))
        elif not isinstance(head, nn.Module):
            head = head(self.out_features, self.num_classes, **dict(head_kwargs or {}))
        elif head_kwargs:
            raise ValueError("head_kwargs apply only when head is a name or a factory")
        self.head = self._check_head(head)

    def _check_head(self, head: nn.Module) -> nn.Module:
        outputs = getattr(head, "out_features", self.num_classes)
        if outputs != self.num_classes:
            raise ValueError(f"the head has {outputs} outputs but num_classes is {self.num_classes}")
        return head

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, D)."""
        return self.backbone(images)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) from features (B, D)."""
        return self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(images))

    def replace_head(self, head: nn.Module) -> None:
        """Swap the classifier (e.g. for an LWS or τ-norm head built from the current one)."""
        self.head = self._check_head(head)
