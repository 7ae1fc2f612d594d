"""The remaining switches of the spec tables, reachable from the config (issue 11 item 8): LDAM-DRW's
"Resample" no-op (B1), the gamma-1 Focal recipe (B8), CE-DRW with 1/n weights, DRO-LT's cosine feature
schedule (D6) and weighted robust loss."""

from __future__ import annotations

import torch
from conftest import compose_config
from hydra.utils import instantiate

from longtail.data.samplers import ClassBalancedSampler, InstanceSampler
from longtail.engine.stages import stage_configs
from longtail.losses import DeferredReweighting, frequency_weights, inverse_frequency_weights


def test_the_ldam_resample_noop_trains_like_plain_shuffling():
    labels = torch.tensor([0] * 90 + [1] * 10)
    noop = ClassBalancedSampler(labels, ldam_resample_noop=True, seed=3)
    assert len(noop) == 100 and list(noop) == list(InstanceSampler(labels, seed=3))
    balanced = list(ClassBalancedSampler(labels, seed=3))
    assert torch.bincount(labels[balanced])[1] > 30
    cfg = compose_config(["sampler=class_balanced", "sampler.ldam_resample_noop=true"])
    assert instantiate(cfg.sampler)(labels=labels).resample_noop


def test_ce_drw_uses_inverse_frequency_weights_after_the_switch():
    counts = [5000, 500, 50]
    weights = inverse_frequency_weights(counts)
    assert torch.allclose(weights, torch.tensor([1 / 5000, 1 / 500, 1 / 50]) / (1 / 5000 + 1 / 500 + 1 / 50) * 3)
    drw = DeferredReweighting(160, kind="inverse")
    assert drw.weights(159, counts) is None and torch.equal(drw.weights(160, counts), weights)
    cfg = compose_config(["experiment=ce_drw_cifar10"])
    assert (cfg.method.drw_start, cfg.method.drw_weights, cfg.loss._target_) == (160, "inverse", "longtail.losses.CrossEntropy")


def test_the_focal_ldam_recipe_uses_gamma_one():
    cfg = compose_config(["experiment=focal_ldam_recipe"])
    assert cfg.loss.gamma == 1.0 and compose_config(["experiment=focal_cifar10"]).loss.gamma == 2.0


def test_drolt_feature_schedule_and_robust_weights_are_reachable():
    base = ["+stage@stages.robust=robust"]
    robust = dict(stage_configs(compose_config(base)))["robust"]
    assert robust.method.scheduler is None and robust.method.robust_weights is False
    cosine = dict(stage_configs(compose_config([*base, "drolt.feat_schedule=cosine",
                                                "stages.robust.method.robust_weights=true"])))["robust"]
    assert cosine.method.scheduler._target_ == "longtail.engine.schedules.warmup_cosine"
    model = instantiate(cosine.method, class_counts=[100, 10, 1, 1, 1, 1, 1, 1, 1, 1])
    assert torch.allclose(model.robust_loss.class_weights, frequency_weights([100, 10, 1, 1, 1, 1, 1, 1, 1, 1]))
