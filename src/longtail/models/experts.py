"""RIDE multi-expert network: a shared trunk and E expert branches (docs/methods/ride.md §1).

RIDE (Wang et al., arXiv 2010.01809; reference ``ride_resnet_cifar.py`` and
``fb_resnets/RIDEResNet.py``) shares the early stages of a ResNet and gives each
of E experts its own later stages, global average pooling and a cosine
classifier (s = 30, no bias). The prediction is the mean of the experts' logits.

* CIFAR ResNets (``resnet8`` … ``resnet110``): shared = stem + layer1;
  expert = layer2 + layer3 built with :func:`~longtail.models.resnet_cifar.make_stage`.
* torchvision ResNets (``resnet10``, ``resnet50``, ``resnext50_32x4d``, …):
  shared = conv1/bn1/relu/maxpool + layer1 + layer2; expert = layer3 + layer4
  built with torchvision's own ``ResNet._make_layer`` (same block type, groups
  and width per group as the backbone).

With ``reduce_dimension=True`` the expert widths are 3/4 of the standard ones,
which gives the reference's 24/48 (CIFAR) and 192/384 planes (ImageNet); the
feature dimension is then 48, 384 (ResNet-10) or 1536 (Bottleneck). Every
expert is initialised independently, like the base models (kaiming normal;
fan-out for the torchvision family). ``pretrained`` weights, if requested
through ``backbone_kwargs``, reach the shared trunk only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet as tv

from longtail.common.compat import resnet_layer
from longtail.models.heads import CosineHead
from longtail.models.registry import create_backbone
from longtail.models.resnet_cifar import ResNetCifar, init_weights, make_stage

MIN_EXPERTS, MAX_EXPERTS = 2, 6


def _reduced(width: int) -> int:
    return width * 3 // 4


class RIDEExpert(nn.Module):
    """One expert: ``stages`` (the later ResNet stages), global average pooling, cosine ``head``."""

    def __init__(self, stages: nn.Sequential, feature_dim: int, num_classes: int, scale: float):
        super().__init__()
        self.stages = stages
        self.head = CosineHead(feature_dim, num_classes, scale=scale)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, C) and pooled features (B, D) from the shared feature map ``h``."""
        features = torch.flatten(F.adaptive_avg_pool2d(self.stages(h), 1), 1)
        return self.head(features), features


def _cifar_parts(base: ResNetCifar, reduce_dimension: bool) -> tuple[nn.Sequential, Callable[[], nn.Sequential], int]:
    w0, w1, w2 = base.widths
    if reduce_dimension:
        w1, w2 = _reduced(w1), _reduced(w2)
    n = len(base.layer1)

    def make_stages() -> nn.Sequential:
        stages = nn.Sequential(make_stage(w0, w1, n, 2), make_stage(w1, w2, n, 2))
        init_weights(stages)
        return stages

    return nn.Sequential(base.stem, base.layer1), make_stages, w2


def _torchvision_parts(
    base: tv.ResNet, reduce_dimension: bool
) -> tuple[nn.Sequential, Callable[[], nn.Sequential], int]:
    block = type(base.layer3[0])
    planes3, planes4 = (_reduced(256), _reduced(512)) if reduce_dimension else (256, 512)
    n3, n4 = len(base.layer3), len(base.layer4)

    def make_stages() -> nn.Sequential:
        base.inplanes, base.dilation = 128 * block.expansion, 1
        stages = nn.Sequential(resnet_layer(base, block, planes3, n3, 2), resnet_layer(base, block, planes4, n4, 2))
        for m in stages.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        return stages

    shared = nn.Sequential(base.conv1, base.bn1, base.relu, base.maxpool, base.layer1, base.layer2)
    return shared, make_stages, planes4 * block.expansion


class RIDENetwork(nn.Module):
    """Shared trunk + E experts; ``forward`` returns the ensemble (mean) logits.

    Args:
        backbone: a registered CIFAR ResNet or torchvision ResNet name.
        num_classes: number of classes C.
        num_experts: E, in 2..6.
        reduce_dimension: experts with 3/4 of the standard widths (RIDE's default).
        scale: cosine-classifier scale s.
        in_channels: image channels.
        backbone_kwargs: passed on to :func:`~longtail.models.registry.create_backbone`.
    """

    def __init__(
        self,
        backbone: str = "resnet32",
        num_classes: int = 10,
        num_experts: int = 3,
        reduce_dimension: bool = True,
        scale: float = 30.0,
        in_channels: int = 3,
        **backbone_kwargs,
    ):
        super().__init__()
        if not MIN_EXPERTS <= num_experts <= MAX_EXPERTS:
            raise ValueError(f"num_experts must be in {MIN_EXPERTS}..{MAX_EXPERTS}, got {num_experts}")
        if ":" in backbone:
            raise ValueError(f"RIDE needs a CIFAR or torchvision ResNet backbone, got '{backbone}'")
        base = create_backbone(backbone, in_channels=in_channels, **backbone_kwargs)
        if isinstance(base, ResNetCifar):
            self.shared, make_stages, feature_dim = _cifar_parts(base, reduce_dimension)
        elif isinstance(base, tv.ResNet):
            self.shared, make_stages, feature_dim = _torchvision_parts(base, reduce_dimension)
        else:
            raise ValueError(f"RIDE needs a CIFAR or torchvision ResNet backbone, got '{backbone}'")
        self.backbone_name = backbone
        self.num_classes = int(num_classes)
        self.num_experts = int(num_experts)
        self.feature_dim = int(feature_dim)
        self.experts = nn.ModuleList(
            RIDEExpert(make_stages(), self.feature_dim, self.num_classes, scale) for _ in range(self.num_experts)
        )

    def expert(self, k: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, C) and pooled features (B, D) of expert ``k`` (0-based) on the trunk output ``h``."""
        return self.experts[k](h)

    def forward_experts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All experts: logits (E, B, C) and pooled features (E, B, D)."""
        h = self.shared(x)
        logits, features = zip(*(expert(h) for expert in self.experts))
        return torch.stack(logits), torch.stack(features)

    def forward_first(self, x: torch.Tensor, j: int) -> torch.Tensor:
        """Mean logits (B, C) of experts 0..j-1 only (the j-expert model, e.g. for FLOPs)."""
        if not 1 <= j <= self.num_experts:
            raise ValueError(f"j must be in 1..{self.num_experts}, got {j}")
        h = self.shared(x)
        return torch.stack([self.experts[k](h)[0] for k in range(j)]).mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Ensemble logits z̄ = mean of the experts' logits (B, C)."""
        return self.forward_experts(x)[0].mean(0)
