"""Every experiment's every stage, at schedule.scale 0.04, 0.15 and 1: the schedule pinned, and the checks a
shortened schedule must pass (a warm-up that exists, milestones distinct, after the warm-up and inside the stage,
the DRW start inside the stage, IP-DPP's f leaving at least two draws)."""

from __future__ import annotations

import json
import math

import pytest
from scaled_schedules import EXPERIMENTS, PIN, SCALES, schedules

from longtail.methods import method_class
from longtail.methods.ipdpp import redraw_epochs

FAST = {"decouple_cifar10", "ride_cifar10", "ipdpp_cifar10", "diffnet_cifar10"}
PINNED = json.loads(PIN.read_text())


def check(stage: dict, recipe: dict) -> list[str]:
    """What is wrong with a scaled stage's schedule, given its recipe's."""
    problems, epochs = [], stage["epochs"]
    if recipe.get("warmup") and not stage.get("warmup"):
        problems.append("the warm-up disappeared")
    milestones = stage.get("milestones", [])
    inside = [m for m, r in zip(milestones, recipe.get("milestones", [])) if r < recipe["epochs"]]
    if sorted(set(inside)) != inside:
        problems.append(f"milestones {milestones} not distinct and increasing")
    if any(m < max(1, math.ceil(stage.get("warmup", 0))) or m >= epochs for m in inside):
        problems.append(f"milestones {milestones} not after the warm-up and inside {epochs} epochs")
    if recipe.get("drw_start") and not 0 < stage["drw_start"] < epochs:
        problems.append(f"DRW start {stage['drw_start']} not inside {epochs} epochs")
    if "redraw_every" in stage and not redraw_epochs(epochs, stage["redraw_every"]):
        problems.append(f"f={stage['redraw_every']} gives one draw in {epochs} epochs")
    return problems


@pytest.mark.parametrize("experiment", [e if e in FAST else pytest.param(e, marks=pytest.mark.slow)
                                        for e in EXPERIMENTS])
def test_every_stage_keeps_its_pinned_schedule_and_its_shape(experiment):
    recipe = schedules(experiment, 1.0)
    for scale in SCALES:
        found = schedules(experiment, scale)
        assert found == PINNED[experiment][str(scale)], (experiment, scale)
        for name, stage in found.items():
            if getattr(method_class(stage.get("method")), "requires_training", True):
                assert not check(stage, recipe[name]), (experiment, scale, name, check(stage, recipe[name]))


def test_the_check_sees_what_rounding_did_to_the_old_schedules():
    recipe = {"epochs": 30, "warmup": 5, "milestones": [10, 20]}
    assert check({"epochs": 1, "warmup": 0, "milestones": [0, 1]}, recipe) == [
        "the warm-up disappeared", "milestones [0, 1] not after the warm-up and inside 1 epochs"]
    assert check({"epochs": 4, "redraw_every": 1}, {"epochs": 100}) == []
    assert check({"epochs": 2, "redraw_every": 1}, {"epochs": 100}) == ["f=1 gives one draw in 2 epochs"]
