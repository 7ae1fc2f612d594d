"""Backbones, heads and Network (docs/methods/baselines.md §1, §3, §7; docs/methods/ride.md §1)."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from longtail.models import (
    CosineHead,
    LinearHead,
    LWSHead,
    Network,
    ResNetCifar,
    ShortcutA,
    TauNormHead,
    create_backbone,
    create_head,
    list_backbones,
)

GOLDEN = Path(__file__).parent / "golden"
CIFAR = ["resnet8", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
IMAGENET = ["resnet10", "resnet50", "resnext50_32x4d", "resnet152"]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- backbones -----------------------------------------------------------------------------


def test_registry_lists_every_backbone():
    assert set(CIFAR + IMAGENET) <= set(list_backbones())
    assert "timm:<name>" in list_backbones()


@pytest.mark.parametrize("name", CIFAR)
def test_cifar_backbone_features(name):
    torch.manual_seed(0)
    backbone = create_backbone(name).eval()
    assert backbone.out_features == 64
    with torch.no_grad():
        assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    for stage in ("stem", "layer1", "layer2", "layer3"):
        assert isinstance(getattr(backbone, stage), nn.Module)


@pytest.mark.parametrize(
    ("name", "dim", "size"),
    [("resnet10", 512, 64), ("resnet50", 2048, 64), ("resnext50_32x4d", 2048, 64), ("resnet152", 2048, 32)],
)
def test_imagenet_backbone_features(name, dim, size):
    backbone = create_backbone(name).eval()
    assert backbone.out_features == dim
    assert isinstance(backbone.fc, nn.Identity)
    with torch.no_grad():
        assert backbone(torch.randn(2, 3, size, size)).shape == (2, dim)


def test_resnet10_is_one_basic_block_per_stage():
    backbone = create_backbone("resnet10")
    assert [len(getattr(backbone, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="pretrained"):
        create_backbone("resnet10", pretrained=True)


def test_timm_family():
    backbone = create_backbone("timm:resnet18").eval()
    assert backbone.out_features == 512
    with torch.no_grad():
        assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, 512)


def test_resnet32_parameter_count():
    """ResNet-32 is the 0.46M-parameter net of He et al. (464,154 with a 10-class linear head)."""
    backbone = create_backbone("resnet32")
    assert n_params(backbone) == 463_504
    assert n_params(backbone) + n_params(LinearHead(64, 10)) == 464_154


def test_option_a_shortcut_is_parameter_free_and_zero_pads():
    backbone = create_backbone("resnet32")
    shortcuts = [m for m in backbone.modules() if isinstance(m, ShortcutA)]
    assert len(shortcuts) == 2
    assert all(n_params(m) == 0 and not list(m.buffers()) for m in shortcuts)
    x = torch.randn(1, 16, 8, 8)
    out = ShortcutA(16, 32, 2)(x)
    assert out.shape == (1, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


def test_cifar_widths_for_ride_experts():
    """RIDE's reduced experts: widths 16/24/48 give a 48-d feature, still option-A only."""
    backbone = create_backbone("resnet32", widths=(16, 24, 48)).eval()
    assert backbone.out_features == 48
    assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, 48)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in backbone.modules())


def test_resnet8_on_digits():
    backbone = create_backbone("resnet8", in_channels=1).eval()
    assert backbone(torch.randn(2, 1, 8, 8)).shape == (2, 64)


def test_cifar_init_is_kaiming_normal():
    torch.manual_seed(0)
    conv = ResNetCifar(5).layer3[0].conv1
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)


def test_unknown_backbone_lists_names():
    with pytest.raises(KeyError) as err:
        create_backbone("resnet33")
    assert "resnet32" in str(err.value) and "timm:<name>" in str(err.value)


def test_unknown_head_lists_names():
    with pytest.raises(KeyError, match="cosine"):
        create_head("mlp", 4, 2)


# --- heads ---------------------------------------------------------------------------------


def linear_head(weight, bias=None) -> LinearHead:
    weight = torch.as_tensor(weight, dtype=torch.float32)
    head = LinearHead(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(weight)
        if bias is not None:
            head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return head


def test_tau_norm_golden():
    golden = json.loads((GOLDEN / "tau_norm.json").read_text())
    tol = golden["tolerance"]
    for case in golden["cases"]:
        weight = torch.tensor(case["inputs"]["weight"], dtype=torch.float32)
        feats = torch.tensor(case["inputs"]["feats"], dtype=torch.float32)
        head = TauNormHead(linear_head(weight, bias=torch.randn(weight.shape[0])))
        for result in case["outputs"]["results"]:
            head.tau = result["p"]
            expected_w = torch.tensor(result["normalized_weight"])
            expected = torch.tensor(result["logits"])
            torch.testing.assert_close(head.normalized_weight(), expected_w, rtol=tol["rtol"], atol=tol["atol"])
            with torch.no_grad():
                logits = head(feats)
            torch.testing.assert_close(logits, expected, rtol=tol["rtol"], atol=tol["atol"])
            assert logits.argmax(1).tolist() == result["predictions"], (case["name"], result["p"])


@pytest.mark.parametrize(("tau", "expected"), [(0.0, [2.0, 1.0]), (0.5, [math.sqrt(2), 1.0]), (1.0, [1.0, 1.0])])
def test_tau_norm_hand_case_ignores_bias(tau, expected):
    f = torch.tensor([[1.0, 1.0]])
    for bias in (None, [5.0, -3.0]):
        head = TauNormHead(linear_head([[2.0, 0.0], [0.0, 1.0]], bias), tau=tau)
        torch.testing.assert_close(head(f), torch.tensor([expected]))


def test_tau_norm_has_no_trainable_parameters():
    linear = LinearHead(8, 3)
    head = TauNormHead(linear)
    assert not any(p.requires_grad for p in head.parameters())
    assert linear.weight.requires_grad
    assert head.linear.state_dict().keys() == linear.state_dict().keys()


def test_lws_with_unit_scales_reproduces_linear_exactly():
    torch.manual_seed(0)
    linear = LinearHead(16, 5)
    head = LWSHead(linear)
    f = torch.randn(7, 16)
    assert torch.equal(head(f), linear(f))
    assert [name for name, p in head.named_parameters() if p.requires_grad] == ["scales"]
    assert head.linear.state_dict().keys() == linear.state_dict().keys()


def test_lws_scales_multiply_bias_too():
    head = LWSHead(linear_head([[1.0, 0.0], [0.0, 1.0]], bias=[1.0, 2.0]))
    with torch.no_grad():
        head.scales.copy_(torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(head(torch.tensor([[1.0, 1.0]])), torch.tensor([[4.0, 9.0]]))


def test_cosine_head_init_and_bounds():
    torch.manual_seed(0)
    head = CosineHead(64, 10, scale=30.0)
    assert head.weight.shape == (64, 10)
    assert not any(name == "bias" for name, _ in head.named_parameters())
    torch.testing.assert_close(head.weight.norm(dim=0), torch.ones(10), rtol=0, atol=1e-5)
    logits = head(torch.randn(32, 64) * 100)
    assert logits.abs().max() <= 30.0 + 1e-4
    f = head.weight[:, 3].detach().unsqueeze(0) * 7.0
    assert head(f)[0, 3].item() == pytest.approx(30.0, abs=1e-4)


def test_linear_head_init_options():
    torch.manual_seed(0)
    assert LinearHead(512, 1000).weight.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.02)
    assert LinearHead(512, 1000, init="default").weight.abs().max() <= 1 / math.sqrt(512)
    assert LinearHead(4, 2, bias=False).bias is None


# --- network -------------------------------------------------------------------------------


def test_network_features_classify_compose_to_forward():
    torch.manual_seed(0)
    net = Network("resnet8", "linear", num_classes=10, backbone_kwargs={"in_channels": 1}).eval()
    x = torch.randn(3, 1, 8, 8)
    features = net.features(x)
    assert features.shape == (3, 64)
    assert torch.equal(net.classify(features), net(x))
    assert net(x).shape == (3, 10)
    assert net.num_classes == 10 and net.out_features == 64


def test_network_from_modules_and_factories():
    backbone = create_backbone("resnet8")
    net = Network(backbone, functools.partial(CosineHead, scale=16.0), num_classes=4)
    assert net.backbone is backbone and isinstance(net.head, CosineHead) and net.head.scale == 16.0
    net = Network("resnet8", "cosine", num_classes=4, head_kwargs={"scale": 10.0})
    assert net.head.scale == 10.0
    with pytest.raises(ValueError, match="outputs"):
        Network("resnet8", LinearHead(64, 3), num_classes=4)


def test_network_replace_head():
    net = Network("resnet8", "linear", num_classes=4).eval()
    x = torch.randn(2, 3, 32, 32)
    before = net(x)
    net.replace_head(LWSHead(net.head))
    assert isinstance(net.head, LWSHead)
    torch.testing.assert_close(net(x), before, rtol=0, atol=0)


def test_network_from_hydra():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "_target_": "longtail.models.Network",
            "backbone": "resnet32",
            "head": "linear",
            "num_classes": 10,
            "backbone_kwargs": {"widths": [16, 32, 64]},
            "head_kwargs": {"bias": True},
        }
    )
    net = instantiate(cfg)
    assert n_params(net) == 464_154
