"""CIFAR ResNets (He et al., arXiv 1512.03385, §4.2) as used by LDAM-DRW and RIDE.

Follows LDAM-DRW's ``models/resnet_cifar.py``: a 3×3 conv stem and three stages
of BasicBlocks (6n + 2 layers), option-A shortcuts (identity, strided
subsampling and zero-padded channels, no parameters) and kaiming-normal
initialisation of every convolution. ResNet-32 gives a 64-d feature and, with
a 10-class linear head, 0.46M parameters.

The stages are attributes (``stem``, ``layer1``, ``layer2``, ``layer3``) and
:func:`make_stage` is public, so RIDE (docs/methods/ride.md §1) can share ``stem`` and
``layer1`` and give every expert its own, narrower ``layer2``/``layer3``
(e.g. ``widths=(16, 24, 48)``). The option-A padding ``(planes − in_planes)//2``
per side is RIDE's generalisation of LDAM-DRW's ``planes//4``; both agree when
the width doubles.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from longtail.models.registry import register_backbone


class ShortcutA(nn.Module):
    """Option-A shortcut: subsample spatially by ``stride``, zero-pad the new channels."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        if planes < in_planes:
            raise ValueError(f"option-A shortcut cannot shrink channels ({in_planes} -> {planes})")
        self.stride = stride
        self.pad_front = (planes - in_planes) // 2
        self.pad_back = planes - in_planes - self.pad_front

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = ShortcutA(in_planes, planes, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def make_stage(in_planes: int, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
    """``num_blocks`` BasicBlocks; only the first one changes stride and width."""
    blocks = [BasicBlock(in_planes, planes, stride)]
    blocks += [BasicBlock(planes, planes, 1) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal init of conv and linear weights (LDAM-DRW's ``_weights_init``)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)


class ResNetCifar(nn.Module):
    """CIFAR ResNet feature extractor: (B, C, H, W) -> (B, widths[-1]).

    Args:
        num_blocks: BasicBlocks per stage (n in 6n + 2).
        in_channels: image channels.
        widths: channels of the stem/layer1, layer2 and layer3.
    """

    def __init__(self, num_blocks: int, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3:
            raise ValueError(f"widths must give 3 stage widths, got {widths}")
        self.widths = widths
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.layer1 = make_stage(widths[0], widths[0], num_blocks, 1)
        self.layer2 = make_stage(widths[0], widths[1], num_blocks, 2)
        self.layer3 = make_stage(widths[1], widths[2], num_blocks, 2)
        self.out_features = widths[2]
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


@register_backbone("resnet8")
def resnet8(in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)) -> ResNetCifar:
    """ResNet-8 (1 block per stage): tiny, for the embedded 8×8 digits."""
    return ResNetCifar(1, in_channels=in_channels, widths=widths)


@register_backbone("resnet20")
def resnet20(in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)) -> ResNetCifar:
    """ResNet-20 (3 blocks per stage)."""
    return ResNetCifar(3, in_channels=in_channels, widths=widths)


@register_backbone("resnet32")
def resnet32(in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)) -> ResNetCifar:
    """ResNet-32 (5 blocks per stage): the CIFAR-LT backbone of LDAM-DRW and RIDE."""
    return ResNetCifar(5, in_channels=in_channels, widths=widths)


@register_backbone("resnet44")
def resnet44(in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)) -> ResNetCifar:
    """ResNet-44 (7 blocks per stage)."""
    return ResNetCifar(7, in_channels=in_channels, widths=widths)


@register_backbone("resnet56")
def resnet56(in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)) -> ResNetCifar:
    """ResNet-56 (9 blocks per stage)."""
    return ResNetCifar(9, in_channels=in_channels, widths=widths)


@register_backbone("resnet110")
def resnet110(in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)) -> ResNetCifar:
    """ResNet-110 (18 blocks per stage)."""
    return ResNetCifar(18, in_channels=in_channels, widths=widths)
