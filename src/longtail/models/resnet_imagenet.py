"""ImageNet-size backbones: torchvision ResNets and any timm model.

The large-scale recipes (baselines.md §4, ride.md §1) use ResNet-10
(BasicBlock, [1, 1, 1, 1], as in classifier-balancing and RIDE), ResNet-50,
ResNeXt-50 32×4d and ImageNet-pretrained ResNet-152 (Places-LT). They are
torchvision's ``ResNet`` with ``fc`` replaced by ``Identity``, so the stages
(``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1`` … ``layer4``) stay
accessible for RIDE's shared/expert split. ``pretrained=True`` loads
torchvision's ``DEFAULT`` weights (network needed); the default is ``False``.

``"timm:<name>"`` builds ``timm.create_model(name, num_classes=0)``, whose
forward already returns pooled features.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet as tv

from longtail.models.registry import register_backbone, register_backbone_family


def _as_backbone(model: tv.ResNet, in_channels: int) -> tv.ResNet:
    """Drop the classifier, set ``out_features`` and, if needed, a fresh stem conv for other channel counts."""
    model.out_features = model.fc.in_features
    model.fc = nn.Identity()
    if in_channels != 3:
        old = model.conv1
        model.conv1 = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


@register_backbone("resnet10")
def resnet10(pretrained: bool = False, in_channels: int = 3) -> tv.ResNet:
    """ResNet-10: torchvision BasicBlock ResNet with one block per stage (512-d features)."""
    if pretrained:
        raise ValueError("resnet10 has no pretrained weights; use pretrained=false")
    return _as_backbone(tv.ResNet(tv.BasicBlock, [1, 1, 1, 1]), in_channels)


@register_backbone("resnet50")
def resnet50(pretrained: bool = False, in_channels: int = 3) -> tv.ResNet:
    """ResNet-50 (2048-d features)."""
    return _as_backbone(tv.resnet50(weights="DEFAULT" if pretrained else None), in_channels)


@register_backbone("resnext50_32x4d")
def resnext50_32x4d(pretrained: bool = False, in_channels: int = 3) -> tv.ResNet:
    """ResNeXt-50 32×4d (2048-d features), the ImageNet-LT backbone."""
    return _as_backbone(tv.resnext50_32x4d(weights="DEFAULT" if pretrained else None), in_channels)


@register_backbone("resnet152")
def resnet152(pretrained: bool = False, in_channels: int = 3) -> tv.ResNet:
    """ResNet-152 (2048-d features), the Places-LT backbone (ImageNet-pretrained there)."""
    return _as_backbone(tv.resnet152(weights="DEFAULT" if pretrained else None), in_channels)


@register_backbone_family("timm")
def timm_backbone(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Any timm model without its classifier: ``create_backbone("timm:resnet18")``."""
    import timm

    model = timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
    model.out_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return model
