"""Places-LT OLTR ResNet-152 backbone, offline weight loading, cosine model configs, N5 ramp schedule (docs/methods/diffnet.md §2, §7)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from hydra.utils import instantiate
from torch import nn
from torchvision.models import resnet as tv

from longtail.engine.schedules import ramp_multistep
from longtail.models import CosineHead, create_backbone, list_backbones
from longtail.models.resnet_imagenet import OLTRResNet, load_imagenet_weights


@pytest.fixture(scope="module")
def oltr() -> nn.Module:
    return create_backbone("resnet152_oltr", pretrained=False)


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache under tmp and a download that fails as without network (never hits it)."""

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    assert cache.parent == tmp_path / "torch" / "hub"
    return cache


def saved_resnet18(path: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    state = tv.resnet18().state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


# --- architecture --------------------------------------------------------------------------


def test_oltr_architecture(oltr):
    assert "resnet152_oltr" in list_backbones()
    assert isinstance(oltr, OLTRResNet) and oltr.out_features == 2048 and isinstance(oltr.fc, nn.Identity)
    for stage in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
        assert hasattr(oltr, stage)
    assert [len(getattr(oltr, f"layer{i}")) for i in range(1, 5)] == [3, 8, 36, 2]
    extra = oltr.extra
    assert isinstance(extra, tv.Bottleneck) and extra.downsample is None
    assert extra.conv1.in_channels == 2048 and extra.conv3.out_channels == 2048 and extra.conv2.out_channels == 512
    keys = oltr.state_dict().keys()
    assert not any(k.startswith("layer4.2.") for k in keys)
    assert any(k.startswith("layer4.1.") for k in keys) and any(k.startswith("extra.") for k in keys)
    oltr.eval()
    with torch.no_grad():
        out = oltr(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 2048) and torch.isfinite(out).all()


def test_extra_block_is_freshly_initialised_like_torchvision(oltr):
    assert torch.equal(oltr.extra.bn3.weight, torch.ones(2048)) and torch.equal(oltr.extra.bn3.bias, torch.zeros(2048))
    assert oltr.extra.conv1.weight.std() > 0


# --- weight loading ------------------------------------------------------------------------


def test_load_state_dict_file_into_a_torchvision_resnet(tmp_path):
    state = saved_resnet18(tmp_path / "r18.pth")
    model = tv.resnet18()
    fc_before = model.fc.weight.clone()
    assert load_imagenet_weights(model, str(tmp_path / "r18.pth")) is model
    loaded = model.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    assert torch.equal(model.fc.weight, fc_before)  # fc.* ignored


def test_load_into_a_cut_resnet_drops_the_cut_blocks_and_keeps_extra_new(tmp_path):
    state = saved_resnet18(tmp_path / "r18.pth")
    torch.manual_seed(2)
    model = OLTRResNet(tv.BasicBlock, [2, 2, 2, 2], layer4_blocks=1)
    extra_before = {k: v.clone() for k, v in model.extra.state_dict().items()}
    load_imagenet_weights(model, tmp_path / "r18.pth")
    assert len(model.layer4) == 1
    assert torch.equal(model.layer4[0].conv2.weight, state["layer4.0.conv2.weight"])
    assert torch.equal(model.layer1[1].bn2.running_mean, state["layer1.1.bn2.running_mean"])
    assert all(torch.equal(v, extra_before[k]) for k, v in model.extra.state_dict().items())
    assert not any(k.startswith("layer4.1.") for k in model.state_dict())


def test_mismatched_weights_raise(tmp_path):
    state = saved_resnet18(tmp_path / "r18.pth")
    del state["layer2.0.conv1.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(RuntimeError, match="layer2.0.conv1.weight"):
        load_imagenet_weights(tv.resnet18(), tmp_path / "partial.pth")
    with pytest.raises(RuntimeError, match="missing"):
        load_imagenet_weights(tv.resnet34(), tmp_path / "r18.pth")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="backbone_kwargs.pretrained="):
        load_imagenet_weights(tv.resnet18(), str(tmp_path / "nope.pth"))


def test_pretrained_false_loads_nothing():
    torch.manual_seed(3)
    model = tv.resnet18()
    before = model.conv1.weight.clone()
    load_imagenet_weights(model, False)
    assert torch.equal(model.conv1.weight, before)


def test_default_weights_come_from_the_local_hub_cache(offline):
    weights = tv.ResNet18_Weights.IMAGENET1K_V1
    state = saved_resnet18(offline / Path(weights.url).name)
    model = load_imagenet_weights(tv.resnet18(), True, default_weights=weights)
    assert torch.equal(model.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])


def test_offline_without_cached_weights_says_where_to_put_them(offline):
    with pytest.raises(RuntimeError) as info:
        create_backbone("resnet152_oltr")  # pretrained=True by default
    message = str(info.value)
    assert "resnet152-f82ba261.pth" in message and str(offline) in message
    assert "model.backbone_kwargs.pretrained=/path/to/resnet152.pth" in message
    assert "download" in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)


# --- configs -------------------------------------------------------------------------------


def test_resnet152_oltr_config():
    cfg = compose_config(["model=resnet152_oltr"])
    assert cfg.model.backbone == "resnet152_oltr" and cfg.model.backbone_kwargs.pretrained is True
    assert cfg.model.head == "cosine" and cfg.model.head_kwargs.scale == 30.0
    cfg = compose_config(["model=resnet152_oltr", "model.backbone_kwargs.pretrained=false"])
    network = instantiate(cfg.model)
    assert isinstance(network.head, CosineHead) and network.head.scale == 30.0
    assert network.num_classes == cfg.datamodule.num_classes and network.out_features == 2048
    assert isinstance(network.backbone.extra, tv.Bottleneck)


@pytest.mark.parametrize("name,backbone", [("resnet10_cosine", "resnet10"), ("resnet50_cosine", "resnet50")])
def test_imagenet_cosine_configs(name, backbone):
    cfg = compose_config([f"model={name}"])
    assert cfg.model.backbone == backbone and cfg.model.backbone_kwargs.pretrained is False
    assert cfg.model.head == "cosine" and cfg.model.head_kwargs.scale == 30.0
    if backbone == "resnet10":
        network = instantiate(cfg.model)
        assert isinstance(network.head, CosineHead) and network.head.scale == 30.0


# --- N5 schedule ---------------------------------------------------------------------------


def sgd(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_ramp_multistep_reference_wrn_schedule():
    factor = ramp_multistep(sgd(), max_epochs=12800).lr_lambdas[0]
    expected = {
        0: 1.0,
        100: 1.25,
        200: 1.5,
        399: 1 + 399 / 400,
        400: 2.0,
        6399: 2.0,
        6400: 0.2,
        9599: 0.2,
        9600: 0.02,
        12799: 0.02,
    }
    for epoch, value in expected.items():
        assert factor(epoch) == pytest.approx(value), epoch


def test_ramp_multistep_steps_the_optimizer_per_epoch():
    optimizer = sgd(0.1)
    scheduler = ramp_multistep(optimizer, max_epochs=10, ramp_epochs=4, ramp_to=2.0, milestones=(8, 6), gamma=0.5)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1, 0.125, 0.15, 0.175, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05])


def test_ramp_multistep_without_ramp_is_multistep():
    factor = ramp_multistep(sgd(), max_epochs=10, ramp_epochs=0, ramp_to=1.0, milestones=(3,), gamma=0.1).lr_lambdas[0]
    assert [factor(e) for e in range(5)] == pytest.approx([1, 1, 1, 0.1, 0.1])
