"""``schedule.scale``: every epoch count of every stage of any experiment scaled, the schedule's shape kept."""

from __future__ import annotations

import pytest
from conftest import CONF_DIR, compose_config
from omegaconf import OmegaConf

from longtail.engine.schedule_scale import epoch_keys, scaled, scaled_length
from longtail.engine.stages import stage_configs
from longtail.methods import method_class
from longtail.methods.ipdpp import redraw_epochs

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
def test_only_epoch_valued_keys_change_and_the_length_is_scaled_or_kept_as_the_method_declares(experiment):
    scale = 0.5
    full, short = stages(experiment), stages(experiment, f"schedule.scale={scale}")
    assert list(full) == list(short)
    for name in full:
        before, after = flat(full[name]), flat(short[name])
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        counts, periods = epoch_keys(OmegaConf.create(full[name]))
        scheduling = {"method.scheduler.min_warmup_steps", "method.scheduler_interval", "schedule.scale"}
        assert changed <= {*counts, *periods, *scheduling}, (name, changed)
        length = before["trainer.max_epochs"]
        needs = getattr(method_class(before.get("method._target_")), "min_scaled_epochs", 0)
        assert after["trainer.max_epochs"] == scaled_length(length, scale, 0, needs), name


def test_scale_one_is_the_recipe_unchanged():
    reference = dict(stage_configs(compose_config(["experiment=diffnet_cifar10"])))
    for name, stage in stage_configs(compose_config(["experiment=diffnet_cifar10", "schedule.scale=1.0"])):
        assert OmegaConf.to_yaml(stage) == OmegaConf.to_yaml(reference[name])  # interpolations kept too


def test_the_whole_schedule_keeps_its_shape():
    """CE 200 epochs, warm-up 5, milestones 160/180 and RIDE's DRW at 160 -> 40 epochs at 0.2, the warm-up a
    fraction of the length in optimizer steps; the router keeps its 5 epochs; IP-DPP keeps its recipe's ten draws."""
    ride = stages("ride_cifar10", "schedule.scale=0.2")
    train = ride["train"]
    assert train["trainer"]["max_epochs"] == 40 and train["method"]["scheduler"]["warmup_epochs"] == 1.0
    assert train["method"]["scheduler_interval"] == "step" and train["method"]["scheduler"]["min_warmup_steps"] == 50
    assert train["method"]["scheduler"]["milestones"] == [32, 36] and train["method"]["drw_start"] == 32
    assert ride["router"]["trainer"]["max_epochs"] == 5
    ipdpp = stages("ipdpp_cifar10", "schedule.scale=0.02")
    assert [s["trainer"]["max_epochs"] for s in ipdpp.values()] == [20, 100, 20]  # the probe is never shortened
    assert ipdpp["ipdpp"]["method"]["redraw_every"] == 2
    assert len(redraw_epochs(20, 2)) + 1 == len(redraw_epochs(100, 10)) + 1 == 10


def test_a_short_warmup_is_a_fraction_of_an_epoch_and_milestones_stay_distinct_after_it():
    """At 0.04 CE's 5-epoch warm-up is 0.2 epochs (before: rounded to 0) and 160/180 become 6/7 of 8 epochs; cRT
    keeps the 10 epochs it declares, its milestones 10/20 at 3/7 (before: 0/1, a decay before the first step)."""
    decouple = stages("decouple_cifar10", "schedule.scale=0.04")
    train, crt = decouple["train"]["method"]["scheduler"], decouple["crt"]
    assert (decouple["train"]["trainer"]["max_epochs"], train["warmup_epochs"], train["milestones"]) == (8, 0.2, [6, 7])
    assert crt["trainer"]["max_epochs"] == 10 and crt["method"]["scheduler"]["milestones"] == [3, 7]
    assert scaled_length(30, 0.04, 0, 10) == 10 and scaled_length(5, 0.04, 0, 10) == 5  # never above the recipe


def test_a_stage_too_short_for_its_milestones_is_lengthened_to_hold_them():
    """Places-LT's 30-epoch stage with milestones 10/20 keeps 3 epochs at 0.04 (round(1.2) = 1 would decay before
    the first step); LDAM-DRW's 200 epochs at 0.01 keep 4, milestones 160/180 at 2/3 and the DRW start at 2."""
    places = stages("diffnet_places_lt_resnet152", "schedule.scale=0.04")["train"]
    assert (places["trainer"]["max_epochs"], places["method"]["scheduler"]["milestones"]) == (3, [1, 2])
    ldam = stages("ldam_drw_cifar10", "schedule.scale=0.01")["train"]
    assert (ldam["trainer"]["max_epochs"], ldam["method"]["scheduler"]["milestones"], ldam["method"]["drw_start"]) == (
        4, [2, 3], 2)


def test_a_period_the_recipe_repeats_still_repeats():
    """f = 49 in 100 epochs re-draws twice; at 0.04 IP-DPP keeps 20 epochs and round(9.8) = 10 would never re-draw
    (the last epoch takes no draw), so f becomes 9."""
    ipdpp = stages("ipdpp_cifar10", "schedule.scale=0.04", "ipdpp.redraw_every=49")["ipdpp"]
    assert ipdpp["method"]["redraw_every"] == 9 and redraw_epochs(20, 9) == [8, 17]


def test_a_router_keeps_its_epochs_and_a_stage_scaled_to_zero_is_refused():
    assert stages("ride_cifar10", "schedule.scale=0.05")["router"]["trainer"]["max_epochs"] == 5
    with pytest.raises(ValueError, match=r"stage 'train' round\(0.002 x 200\) = 0 epochs: use schedule.scale >= 0.0025"):
        stages("ce_cifar10", "schedule.scale=0.002")


def test_smoke_still_shrinks_a_scaled_run():
    smoke = stages("drolt_cifar10", "schedule.scale=0.1", "debug=smoke")
    assert all(stage["trainer"]["max_epochs"] == 2 for stage in smoke.values())


def test_a_floor_keeps_a_short_stage_that_the_scale_would_drop():
    """schedule.min_epochs (the suites set 1): every stage keeps at least that many epochs."""
    floored = stages("drolt_cifar10", "schedule.scale=0.002", "schedule.min_epochs=1")
    assert floored["robust"]["trainer"]["max_epochs"] == 1 and floored["train"]["trainer"]["max_epochs"] == 3
