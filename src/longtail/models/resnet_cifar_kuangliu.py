"""CIFAR ResNet-18/34 in the "kuangliu" layout (github.com/kuangliu/pytorch-cifar), the BNS + IP-DPP encoders.

docs/methods/ipdpp.md §1: ResNet-18 ([2, 2, 2, 2]) for CIFAR-10-LT and ResNet-34 ([3, 4, 6, 3]) for CIFAR-100-LT,
as in the reference code's ``models/models_resnet.py``. Unlike the ImageNet ResNet, the stem is a
single 3×3 stride-1 convolution (64 channels, no bias) + BN + ReLU with no max-pool, so a 32×32
image keeps its resolution in ``layer1`` and reaches ``layer4`` at 4×4; the global average pool
then gives the 512-d feature. BasicBlocks with widths 64/128/256/512 and conv1×1 + BN projection
shortcuts where the shape changes are exactly torchvision's, so the models are torchvision's
``resnet18``/``resnet34`` with the stem swapped and ``maxpool`` and ``fc`` replaced by ``Identity``.
Parameters without a classifier: 11,168,832 (ResNet-18) and 21,276,992 (ResNet-34).
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet as tv

from longtail.models.registry import register_backbone
from longtail.models.resnet_imagenet import _as_backbone


def _cifar_stem(model: tv.ResNet, in_channels: int) -> tv.ResNet:
    """Drop ``fc`` and ``maxpool`` and use a 3×3 stride-1 stem conv (Kaiming-normal, as torchvision inits convs)."""
    model = _as_backbone(model, in_channels=3)
    model.conv1 = nn.Conv2d(in_channels, model.bn1.num_features, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


@register_backbone("resnet18_cifar")
def resnet18_cifar(in_channels: int = 3) -> tv.ResNet:
    """kuangliu CIFAR ResNet-18 (512-d features), the BNS encoder for CIFAR-10-LT."""
    return _cifar_stem(tv.resnet18(weights=None), in_channels)


@register_backbone("resnet34_cifar")
def resnet34_cifar(in_channels: int = 3) -> tv.ResNet:
    """kuangliu CIFAR ResNet-34 (512-d features), the BNS encoder for CIFAR-100-LT."""
    return _cifar_stem(tv.resnet34(weights=None), in_channels)
