"""``fidelity=reference`` on Difficulty-Net sets the reference code's switches per data set (docs/methods/diffnet.md §7; the
exact set each experiment changes is pinned in test_recipes.py), and each switch stays settable alone."""

from __future__ import annotations

import pytest
from conftest import compose_config

from longtail.engine.stages import stage_configs


def train_method(experiment: str, *overrides: str):
    return dict(stage_configs(compose_config([f"experiment={experiment}", *overrides])))["train"].method


@pytest.mark.parametrize("experiment,reference_step", [("diffnet_cifar100", "functional"),
                                                       ("diffnet_imagenet_lt_resnet10", "pseudo_optimizer")])
def test_n2_is_the_reference_only_where_its_scripts_have_it(experiment, reference_step):
    assert train_method(experiment, "fidelity=reference").meta_step == reference_step
    assert train_method(experiment).meta_step == "functional"


@pytest.mark.parametrize("experiment,meta_step", [("diffnet_cifar100", "pseudo_optimizer"),
                                                  ("diffnet_imagenet_lt_resnet10", "functional")])
def test_each_switch_stays_settable_alone_against_the_preset(experiment, meta_step):
    assert train_method(experiment, "fidelity=reference", f"diffnet.meta_step={meta_step}").meta_step == meta_step
