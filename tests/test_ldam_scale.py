"""LDAM's logit scale has one source of truth, the cosine head's (docs/methods/baselines.md §1, issue 11 item 2)."""

from __future__ import annotations

from functools import partial

import pytest
from conftest import CONF_DIR, compose_config
from hydra.utils import instantiate
from omegaconf import OmegaConf

from longtail.losses import LDAMLoss
from longtail.methods.erm import ERM
from longtail.models import Network


def test_the_loss_follows_the_heads_scale():
    cfg = compose_config(["experiment=ldam_drw_cifar10", "model.head_kwargs.scale=20"])
    assert cfg.loss.scale == 20.0 and cfg.method.loss.scale == 20.0
    ride = compose_config(["experiment=ride_cifar100", "model.scale=15"])
    assert ride.loss.base_loss.scale == 15.0
    assert compose_config(["loss=ldam"]).loss.scale == 30.0


def test_a_loss_scale_that_disagrees_with_the_head_is_refused():
    network = Network("resnet8", "cosine", 3, backbone_kwargs={"in_channels": 1}, head_kwargs={"scale": 30.0})
    with pytest.raises(ValueError, match="model.head_kwargs.scale"):
        ERM(network, partial(LDAMLoss, scale=20.0), class_counts=[10, 5, 2])
    ERM(network, partial(LDAMLoss, scale=30.0), class_counts=[10, 5, 2])


@pytest.mark.slow
def test_the_optuna_search_varies_the_scale_where_it_takes_effect():
    params = OmegaConf.load(CONF_DIR / "hparams_search" / "ldam_drw_optuna.yaml").hydra.sweeper.params
    assert "model.head_kwargs.scale" in params and "loss.scale" not in params
    model = instantiate(compose_config(["experiment=ldam_drw_cifar100", "model.head_kwargs.scale=50"]).model)
    assert model.head.scale == 50.0
