"""ImageNet-size backbones: torchvision ResNets and any timm model.

The large-scale recipes (docs/methods/baselines.md §4, docs/methods/ride.md §1) use ResNet-10
(BasicBlock, [1, 1, 1, 1], as in classifier-balancing and RIDE), ResNet-50,
ResNeXt-50 32×4d and ImageNet-pretrained ResNet-152 (Places-LT). They are
torchvision's ``ResNet`` with ``fc`` replaced by ``Identity``, so the stages
(``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1`` … ``layer4``) stay
accessible for RIDE's shared/expert split. ``pretrained=True`` loads
torchvision's ``DEFAULT`` weights (network needed); the default is ``False``.

``"resnet152_oltr"`` is the Places-LT backbone of OLTR and Difficulty-Net
(docs/methods/diffnet.md §2): ImageNet-pretrained ResNet-152 with ``layer4`` cut to its first
two blocks, plus a new, freshly initialised ``Bottleneck(2048, 512)`` called
``extra`` after it. It loads torchvision's weights by default; without network
the file must already be in the torch hub cache, or be given as a path
(:func:`load_imagenet_weights`).

``"timm:<name>"`` builds ``timm.create_model(name, num_classes=0)``, whose
forward already returns pooled features.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
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
def resnet152(pretrained: bool | str = False, in_channels: int = 3) -> tv.ResNet:
    """ResNet-152 (2048-d features), the Places-LT backbone (ImageNet-pretrained there): ``pretrained=True`` reads
    torchvision's weights from the torch hub cache (or downloads them), a path reads that file; offline without
    either, :func:`load_imagenet_weights` stops with a message naming the file and the folder."""
    return _as_backbone(load_imagenet_weights(tv.resnet152(), pretrained, tv.ResNet152_Weights.DEFAULT), in_channels)


class OLTRResNet(tv.ResNet):
    """torchvision ``ResNet`` with ``layer4`` cut to ``layer4_blocks`` blocks and one new block ``extra`` after it.

    OLTR's ``ResNet152Feature`` / Difficulty-Net's ``resnet_places.py``: for
    Bottleneck ResNets ``extra`` is ``Bottleneck(2048, 512)`` without downsample
    (2048 in and out), initialised like torchvision's ResNet (Kaiming-normal
    convolutions, BN weight 1 and bias 0). The forward is the torchvision one with
    ``extra`` between ``layer4`` and the global average pool. The dropped blocks
    are not modules, so they are not in the state dict.
    """

    def __init__(self, block: type[tv.BasicBlock | tv.Bottleneck], layers: list[int], layer4_blocks: int = 2, **kwargs):
        super().__init__(block, layers, **kwargs)
        if not 1 <= layer4_blocks <= layers[3]:
            raise ValueError(f"layer4_blocks must be in [1, {layers[3]}], got {layer4_blocks}")
        self.layer4 = nn.Sequential(*list(self.layer4)[:layer4_blocks])
        width = 512 * block.expansion
        self.extra = block(width, width // block.expansion)
        for m in self.extra.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _forward_impl(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.extra(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


_WEIGHTS_HINT = "model.backbone_kwargs.pretrained=/path/to/resnet152.pth"


def _read_state_dict(source: bool | str | os.PathLike, default_weights: tv.WeightsEnum) -> dict[str, torch.Tensor]:
    if source is True:
        file_name = os.path.basename(default_weights.url)
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        try:
            return torch.hub.load_state_dict_from_url(default_weights.url, progress=True, check_hash=True)
        except OSError as err:  # urllib.error.URLError, ConnectionError, timeouts
            raise RuntimeError(
                f"could not download the ImageNet weights {default_weights} from {default_weights.url} ({err}). "
                f"Without network, place the file '{file_name}' in the torch hub cache folder '{cache}' "
                f"(or set TORCH_HOME), or load a local file with {_WEIGHTS_HINT}"
            ) from err
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights file '{path}' not found; pass an existing torchvision state dict file, "
            f"e.g. {_WEIGHTS_HINT}"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_imagenet_weights(
    model: tv.ResNet,
    source: bool | str | os.PathLike,
    default_weights: tv.WeightsEnum = tv.ResNet152_Weights.DEFAULT,
    allow_missing: tuple[str, ...] = ("extra.",),
) -> tv.ResNet:
    """Load torchvision ImageNet ResNet weights into ``model`` (in place) and return it.

    Args:
        model: a torchvision ``ResNet`` (or :class:`OLTRResNet`) with its ``fc`` still in place or not.
        source: ``True`` loads ``default_weights`` through ``torch.hub.load_state_dict_from_url``,
            i.e. from ``torch.hub.get_dir()/checkpoints`` if the file is there, else downloading it;
            a path loads that state dict file (torchvision keys); ``False`` leaves the model as is.
        default_weights: the torchvision weights for ``source=True``.
        allow_missing: key prefixes of ``model`` that the file may lack (new modules such as ``extra``).

    The file's ``fc.*`` keys are ignored, and so are the blocks that ``model`` cut
    from a stage (``layer4.2.*`` when ``layer4`` keeps 2 blocks). Any other missing
    or unexpected key, or a shape mismatch, raises.

    Raises:
        RuntimeError: ``source=True`` and the file is neither cached nor downloadable; the message
            names the file, the cache folder and the ``pretrained=/path`` alternative.
        FileNotFoundError: ``source`` is a path that does not exist.
    """
    if source is False or source is None:
        return model
    state = _read_state_dict(source, default_weights)
    own = model.state_dict()
    kept: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        if key in own:
            kept[key] = value
            continue
        cut = re.match(r"(layer\d)\.(\d+)\.", key)
        stage = getattr(model, cut.group(1), None) if cut else None
        if isinstance(stage, nn.Sequential) and int(cut.group(2)) >= len(stage):
            continue
        unexpected.append(key)
    missing = [k for k in own if k not in kept and not k.startswith(("fc.", *allow_missing))]
    if missing or unexpected:
        raise RuntimeError(
            f"the weights do not match the model: missing {missing[:8]}{' …' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{' …' if len(unexpected) > 8 else ''}"
        )
    model.load_state_dict(kept, strict=False)
    return model


@register_backbone("resnet152_oltr")
def resnet152_oltr(pretrained: bool | str = True, in_channels: int = 3) -> OLTRResNet:
    """Places-LT backbone (OLTR / Difficulty-Net): ResNet-152, layer4 cut to 2 blocks, new block ``extra`` (2048-d).

    Args:
        pretrained: ``True`` loads torchvision's ``ResNet152_Weights.DEFAULT`` (from the torch hub
            cache if present, else downloaded); a path loads that torchvision ResNet-152 state dict
            file (``fc.*`` ignored); ``False`` keeps the random initialisation. ``extra`` is always new.
        in_channels: a fresh stem convolution is used when not 3 (the loaded ``conv1`` is replaced).
    """
    model = OLTRResNet(tv.Bottleneck, [3, 8, 36, 3], layer4_blocks=2)
    load_imagenet_weights(model, pretrained, tv.ResNet152_Weights.DEFAULT)
    return _as_backbone(model, in_channels)


@register_backbone_family("timm")
def timm_backbone(name: str, pretrained: bool = False, in_channels: int = 3, **kwargs) -> nn.Module:
    """Any timm model without its classifier: ``create_backbone("timm:resnet18")``; ``in_channels`` (the
    library's name, set by every model config) is timm's ``in_chans``."""
    import timm

    model = timm.create_model(name, pretrained=pretrained, num_classes=0, in_chans=in_channels, **kwargs)
    model.out_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return model
