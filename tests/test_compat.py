"""Each private API in longtail.common.compat still does what the library relies on (an upgrade breaks here first)."""

from __future__ import annotations

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn
from torchvision.models import resnet as tv
from torchvision.transforms import v2

from longtail.common import compat
from longtail.config.overrides import CONF_DIR


def test_ddp_ignore_marks_the_named_parameters():
    module = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    compat.ddp_ignore(module, ["1.weight", "1.bias"])
    assert set(module._ddp_params_and_buffers_to_ignore) == {"1.weight", "1.bias"}


def test_resnet_layer_is_torchvisions_stage():
    base = tv.resnet18()
    base.inplanes, base.dilation = 128, 1
    layer = compat.resnet_layer(base, tv.BasicBlock, 256, 2, 2)
    assert isinstance(layer, nn.Sequential) and len(layer) == 2
    assert layer(torch.zeros(1, 128, 8, 8)).shape == (1, 256, 4, 4)


def test_autoaugment_space_policies_and_op():
    space = compat.autoaugment_space()
    magnitudes, signed = space["Rotate"]
    assert len(magnitudes(10, 32, 32)) == 10 and signed is True
    policy = compat.autoaugment_policy(v2.AutoAugmentPolicy.CIFAR10)
    assert len(policy) == 25 and all(len(sub) == 2 and len(sub[0]) == 3 for sub in policy)
    images = torch.rand(2, 3, 8, 8)
    flipped = compat.apply_autoaugment_op(v2.AutoAugment(), images, "Invert", 0.0)
    assert torch.allclose(flipped, 1 - images)


def test_hydras_override_step_and_error_strings():
    loader = compat.hydra_config_loader()
    assert loader is not None and callable(loader._apply_overrides_to_config)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for overrides, pattern, groups in ((["no_such_key=1"], compat.HYDRA_NOT_IN_STRUCT, ("no_such_key",)),
                                           (["model=nope"], compat.HYDRA_MISSING_OPTION, ("model", "nope"))):
            try:
                compose("config", overrides=overrides)
            except Exception as error:
                match = pattern.search(str(error))
                assert match and match.groups() == groups, str(error)
            else:
                raise AssertionError(f"{overrides} composed")


def test_raw_values_of_omegaconf_nodes():
    cfg = OmegaConf.create({"a": {"b": "${c}"}, "c": 1, "n": None})
    child = compat.raw_child(cfg.a, "b")
    assert compat.is_interpolation(child) and compat.raw_value(child) == "${c}"
    assert compat.raw_child(cfg.a, "missing") is None
    assert compat.is_none_or_interpolation(compat.raw_child(cfg, "n"))


def test_a_stand_in_trainer_lets_optimizers_be_built():
    from lightning.pytorch import LightningModule

    module = LightningModule()
    compat.stand_in_trainer(module, 7)
    assert module.trainer.max_epochs == 7 and module.trainer.estimated_stepping_batches == 7
