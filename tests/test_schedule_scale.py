"""``schedule.scale``: every epoch count of every stage of any experiment scaled, the schedule's shape kept."""

from __future__ import annotations

import pytest
from conftest import CONF_DIR, compose_config
from omegaconf import OmegaConf

from longtail.engine.schedule_scale import epoch_keys, scaled
from longtail.engine.stages import stage_configs

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
FAST = {"ldam_drw_cifar10", "crt_cifar10", "drolt_cifar10", "ride_distill_cifar100", "diffnet_cifar10",
        "diffnet_places_lt_resnet152", "ipdpp_cifar10"}  # the rest in the slow tier (composition takes ~0.5 s)


def stages(experiment: str, *overrides: str) -> dict:
    return {name: OmegaConf.to_container(stage, resolve=True) for name, stage in
            stage_configs(compose_config([f"experiment={experiment}", *overrides]))}


def flat(tree, prefix=""):
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree}


def test_round_half_up():
    assert [scaled(n, 0.1) for n in (200, 160, 5, 15, 4)] == [20, 16, 1, 2, 0]
    assert scaled(5, 0.5) == 3 and scaled(1000, 0.075) == 75


@pytest.mark.parametrize("experiment", [e if e in FAST else pytest.param(e, marks=pytest.mark.slow)
                                        for e in EXPERIMENTS])
def test_every_epoch_valued_key_of_every_stage_is_scaled_and_nothing_else(experiment):
    scale = 0.5
    full, short = stages(experiment), stages(experiment, f"schedule.scale={scale}")
    assert list(full) == list(short)
    for name in full:
        before, after = flat(full[name]), flat(short[name])
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        counts, periods = epoch_keys(OmegaConf.create(full[name]))
        assert changed <= {*counts, *periods, "schedule.scale"}, (name, changed)
        for key in (*counts, *periods):
            value = before.get(key)
            if value is None:
                continue
            expected = [scaled(n, scale) for n in value] if isinstance(value, list) else scaled(value, scale)
            if key in periods:
                expected = max(expected, 1)
            assert after[key] == expected, (name, key, value, after[key])


def test_scale_one_is_the_recipe_unchanged():
    reference = dict(stage_configs(compose_config(["experiment=diffnet_cifar10"])))
    for name, stage in stage_configs(compose_config(["experiment=diffnet_cifar10", "schedule.scale=1.0"])):
        assert OmegaConf.to_yaml(stage) == OmegaConf.to_yaml(reference[name])  # interpolations kept too


def test_the_whole_schedule_keeps_its_shape():
    """CE 200 epochs, warm-up 5, milestones 160/180, RIDE's DRW at 160 and router 5, IP-DPP's f = 10."""
    ride = stages("ride_cifar10", "schedule.scale=0.2")
    train = ride["train"]
    assert (train["trainer"]["max_epochs"], train["method"]["scheduler"]["warmup_epochs"]) == (40, 1)
    assert train["method"]["scheduler"]["milestones"] == [32, 36] and train["method"]["drw_start"] == 32
    assert ride["router"]["trainer"]["max_epochs"] == 1
    ipdpp = stages("ipdpp_cifar10", "schedule.scale=0.02")
    assert [s["trainer"]["max_epochs"] for s in ipdpp.values()] == [20, 2, 2]
    assert ipdpp["ipdpp"]["method"]["redraw_every"] == 1  # round(0.2) = 0, but a period is at least one epoch


def test_a_stage_scaled_to_zero_epochs_is_refused_with_the_smallest_scale_that_keeps_it():
    with pytest.raises(ValueError, match=r"stage 'router' round\(0.05 x 5\) = 0 epochs: use schedule.scale >= 0.1"):
        stages("ride_cifar10", "schedule.scale=0.05")


def test_smoke_still_shrinks_a_scaled_run():
    smoke = stages("drolt_cifar10", "schedule.scale=0.1", "debug=smoke")
    assert all(stage["trainer"]["max_epochs"] == 2 for stage in smoke.values())


def test_a_floor_keeps_a_short_stage_that_the_scale_would_drop():
    """schedule.min_epochs (the suites set 1): RIDE's 5-epoch router keeps one epoch at scale 0.04; the other
    stages are scaled as without the floor."""
    floored = stages("ride_cifar10", "schedule.scale=0.04", "schedule.min_epochs=1")
    assert floored["router"]["trainer"]["max_epochs"] == 1
    assert floored["train"]["trainer"]["max_epochs"] == 8 and floored["train"]["method"]["scheduler"]["milestones"] == [6, 7]
    with pytest.raises(ValueError, match="schedule.min_epochs=1"):
        stages("ride_cifar10", "schedule.scale=0.04")
