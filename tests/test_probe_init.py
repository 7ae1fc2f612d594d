"""The linear probe's new head (docs/methods/ipdpp.md Q13): ``probe.head_init=torch_default`` (the reference's plain
``nn.Linear``) gives W, b ~ U(±1/sqrt(fan_in)); the default ``kaiming_normal`` keeps the head the model builds."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import compose_config
from hydra.utils import instantiate

from longtail.engine.stages import stage_configs
from longtail.methods.decouple import LinearProbe

CLASS_COUNTS = [50] * 10


def probe_stage(*overrides: str):
    return dict(stage_configs(compose_config(["experiment=ipdpp_cifar10", *overrides])))["probe"]


def built_head(stage, seed: int = 0) -> torch.nn.Linear:
    """The probe's head as the stage builds it (ResNet-18 encoder: fan_in 512, 10 classes)."""
    torch.manual_seed(seed)
    model = instantiate(stage.method, class_counts=CLASS_COUNTS, **stage.performance)
    assert isinstance(model, LinearProbe)
    return model.network.head


@pytest.mark.parametrize(("overrides", "expected"), [
    ((), "kaiming_normal"),
    (("fidelity=reference",), "torch_default"),
    (("probe.head_init=torch_default",), "torch_default"),
])
def test_the_switch_reaches_the_probe(overrides, expected):
    assert probe_stage(*overrides).method.head_init == expected


def test_reference_init_is_nn_linear_default():
    """nn.Linear's init: kaiming_uniform(a=sqrt(5)), i.e. W ~ U(±1/sqrt(fan_in)) (std 1/sqrt(3 fan_in)), and the
    bias ~ U(±1/sqrt(fan_in))."""
    head = built_head(probe_stage("fidelity=reference"))
    bound = 1 / math.sqrt(head.in_features)
    assert head.in_features == 512 and head.weight.abs().max() <= bound and head.bias.abs().max() <= bound
    assert head.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_default_init_is_the_models_head_unchanged():
    """kaiming_normal redraws nothing: the head is bit-identical to the one the model config builds (W std
    sqrt(2 / fan_in), about sqrt(6) = 2.45 times the reference's)."""
    stage = probe_stage()
    head = built_head(stage)
    torch.manual_seed(0)
    model_head = instantiate(stage.method.network).head
    assert torch.equal(head.weight, model_head.weight) and torch.equal(head.bias, model_head.bias)
    assert head.weight.std().item() == pytest.approx(math.sqrt(2 / head.in_features), rel=0.05)


def test_an_unknown_init_is_refused():
    with pytest.raises(Exception, match="unknown probe head_init 'xavier'"):  # Hydra wraps the ValueError
        built_head(probe_stage("probe.head_init=xavier"))
