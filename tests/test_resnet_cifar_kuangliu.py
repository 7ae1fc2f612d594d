"""kuangliu CIFAR ResNet-18/34 encoders and the BNS projector (docs/methods/ipdpp.md §1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from longtail.models import Network, Projector, create_backbone, list_backbones
from longtail.models.resnet_cifar_kuangliu import resnet18_cifar, resnet34_cifar

# kuangliu/pytorch-cifar ResNet18 / ResNet34 with a 10-class fc: 11,173,962 / 21,282,122 parameters;
# the fc Linear(512, 10) has 5,130.
KUANGLIU_PARAMS = {"resnet18_cifar": 11_173_962 - 5_130, "resnet34_cifar": 21_282_122 - 5_130}


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", ["resnet18_cifar", "resnet34_cifar"])
def test_registered_with_kuangliu_parameter_count(name):
    assert name in list_backbones()
    backbone = create_backbone(name)
    assert backbone.out_features == 512
    assert _count(backbone) == KUANGLIU_PARAMS[name]
    assert [len(getattr(backbone, f"layer{i}")) for i in range(1, 5)] == (
        [2, 2, 2, 2] if name == "resnet18_cifar" else [3, 4, 6, 3]
    )


def test_stem_keeps_resolution_and_feature_is_512_d():
    torch.manual_seed(0)
    backbone = resnet34_cifar().eval()
    stem = backbone.conv1
    assert (stem.kernel_size, stem.stride, stem.padding, stem.bias) == ((3, 3), (1, 1), (1, 1), None)
    assert isinstance(backbone.maxpool, nn.Identity) and isinstance(backbone.fc, nn.Identity)
    sizes = {}
    for name in ("layer1", "layer4"):
        getattr(backbone, name).register_forward_hook(lambda _m, _i, out, name=name: sizes.update({name: out.shape}))
    with torch.no_grad():
        features = backbone(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 512)
    assert sizes == {"layer1": (2, 64, 32, 32), "layer4": (2, 512, 4, 4)}


def test_other_channel_counts():
    backbone = resnet18_cifar(in_channels=1)
    assert backbone.conv1.in_channels == 1 and backbone.conv1.kernel_size == (3, 3)
    assert _count(backbone) == KUANGLIU_PARAMS["resnet18_cifar"] - 2 * 64 * 9


def test_network_with_linear_head():
    network = Network(backbone="resnet18_cifar", head="linear", num_classes=10).eval()
    assert _count(network) == 11_173_962
    with torch.no_grad():
        assert network(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_projector_shape_and_parameters():
    projector = Projector()
    assert (projector.in_features, projector.out_features) == (512, 128)
    assert _count(projector) == 512 * 2048 + 2048 + 2048 * 128 + 128
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in projector.modules())
    assert [type(m) for m in projector] == [nn.Linear, nn.ReLU, nn.Linear]
    assert projector(torch.randn(3, 512)).shape == (3, 128)
    assert Projector(64, 32, 16)(torch.randn(2, 64)).shape == (2, 16)
