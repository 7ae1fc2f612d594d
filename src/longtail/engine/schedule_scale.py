"""One knob that shortens every stage of any experiment and keeps the shape of its schedule.

``schedule.scale=s`` shortens a stage of length L to L' = round(s·L) epochs (halves up) and maps every other epoch
value of the stage with the same factor s' = L'/L:

* **Stage length.** At least ``schedule.min_epochs`` (a suite's floor) and at least what the stage's method declares it
  needs (``LongTailModule.min_scaled_epochs``, never more than the recipe's L): a re-trained classifier, LAS or a
  router calibrates the main stage's model and needs its budget whatever the main stage's length; a method that
  declares ``None`` (the linear probe, RIDE's router) keeps its recipe's length. A stage left with 0 epochs is refused,
  naming the smallest scale that keeps it.
* **Warm-up**, in optimizer steps: W' = s'·W epochs, a fraction of an epoch allowed, and at least
  ``schedule.min_warmup_steps`` steps, so it never disappears; the stage's scheduler is then stepped per optimizer step
  (``method.scheduler_interval: step``).
* **Points in the stage** (learning-rate milestones, a ramp's end, the DRW start and the method's other
  ``epoch_counts``): round(s'·n), then lifted just enough that points distinct in the recipe stay distinct and in
  order, equal ones stay equal (LDAM-DRW's DRW starts at its first milestone), and a point after the warm-up stays
  after it; a point at 0 stays at 0. The stage is lengthened where a point the recipe has inside it would not fit
  (a 30-epoch stage with milestones 10/20 keeps 3 epochs at scale 0.04, not 1 with a decay before the first step).
* **Periods** (``epoch_periods``, IP-DPP's re-draw f): round(s'·f), at least 1, and short enough that a period the
  recipe repeats still repeats (IP-DPP keeps at least two draws).

``s = 1`` leaves the config untouched. Values reached through interpolation are read before any is rewritten, so a
key that follows another (a cosine horizon reading ``trainer.max_epochs``) is scaled once.
"""

from __future__ import annotations

import inspect
import math

from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

LENGTH = "trainer.max_epochs"
WARMUP = "method.scheduler.warmup_epochs"
#: epoch points of every stage's scheduler; a method adds its own constructor arguments (``epoch_counts``: ERM's and
#: RIDE's DRW start) and periods (``epoch_periods``: IP-DPP's f)
SCHEDULE_POINTS = ("method.scheduler.milestones", "method.scheduler.ramp_epochs")
EPOCH_COUNTS = (LENGTH, WARMUP, *SCHEDULE_POINTS)


def epoch_keys(stage_cfg: DictConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The epoch-valued keys of ``stage_cfg``: (counts, periods), the stage's method's own ones included."""
    cls = _method(stage_cfg)
    counts, periods = (tuple(f"method.{name}" for name in getattr(cls, kind, ())) for kind in ("epoch_counts", "epoch_periods"))
    return (*EPOCH_COUNTS, *counts), periods


def _method(stage_cfg: DictConfig):
    from longtail.methods import method_class

    return method_class(OmegaConf.select(stage_cfg, "method._target_"))


def scaled(n: float, scale: float) -> int:
    """``round(scale * n)`` with halves rounded up (Python's ``round`` would round 0.5 to 0)."""
    return math.floor(scale * n + 0.5)


def scaled_length(length: int, scale: float, min_epochs: int = 0, needs: int | None = 0) -> int:
    """The stage's scaled length: round(scale·length), at least ``min_epochs`` and ``min(needs, length)``; the recipe's
    length where the method declares ``needs=None``."""
    if needs is None:
        return length
    return max(scaled(length, scale), min_epochs, min(needs, length))


def scale_stage(stage_cfg: DictConfig, scale: float, stage: str, min_epochs: int = 0, min_warmup_steps: int = 0
                ) -> DictConfig:
    """The stage config with every epoch-valued key scaled (see the module docstring)."""
    if scale == 1:
        return stage_cfg
    if not scale > 0:
        raise ValueError(f"schedule.scale must be a positive number (1 = the recipe's schedule), got {scale}")
    counts, periods = epoch_keys(stage_cfg)
    found = {key: OmegaConf.select(stage_cfg, key) for key in (*counts, *periods)}
    found = {key: value for key, value in found.items() if value is not None}
    length = found.pop(LENGTH, None)
    if not length:
        return stage_cfg
    new_length = scaled_length(length, scale, min_epochs, getattr(_method(stage_cfg), "min_scaled_epochs", 0))
    if new_length == 0:
        raise ValueError(
            f"schedule.scale={scale} gives stage '{stage}' round({scale} x {length}) = 0 epochs: use "
            f"schedule.scale >= {0.5 / length:.3g} (the smallest that keeps one epoch of it), or give every "
            f"stage a floor with schedule.min_epochs=1"
        )
    factor = new_length / length
    new = {LENGTH: new_length}
    warmup = found.pop(WARMUP, 0)
    if warmup:
        new.update(_scaled_warmup(stage_cfg, warmup, factor, min_warmup_steps))
    recipe_periods = {key: found.pop(key) for key in periods if key in found}
    points = _scaled_points(found, factor, warmup, new.get(WARMUP, 0))
    new.update(points)
    new[LENGTH] = max(new_length, _room_for(found, points, length))
    new.update({key: _scaled_period(period, factor, length, new[LENGTH]) for key, period in recipe_periods.items()})
    for key in new:
        _own_parents(stage_cfg, key)
    for key, value in new.items():
        OmegaConf.update(stage_cfg, key, value, force_add=True)
    return stage_cfg


def _scaled_warmup(stage_cfg: DictConfig, warmup: int, factor: float, min_warmup_steps: int) -> dict:
    """W' = factor·W epochs, counted in optimizer steps with a floor, where the scheduler can step per iteration."""
    target = OmegaConf.select(stage_cfg, "method.scheduler._target_")
    if target is None or "steps_per_epoch" not in inspect.signature(get_method(target)).parameters:
        return {WARMUP: max(1, scaled(warmup, factor))}
    return {WARMUP: round(factor * warmup, 6), "method.scheduler.min_warmup_steps": int(min_warmup_steps),
            "method.scheduler_interval": "step"}


def _scaled_points(points: dict, factor: float, warmup: float, new_warmup: float) -> dict:
    """Every epoch point mapped by one monotone rule: recipe values in increasing order, each round(factor·n) lifted
    above the previous one and past the scaled warm-up where the recipe has it after the warm-up; 0 stays 0."""
    values = sorted({int(n) for value in points.values() for n in _as_list(value) if int(n) > 0})
    mapped, previous = {0: 0}, 0
    for n in values:
        lowest = previous + 1
        if warmup and n >= warmup:
            lowest = max(lowest, math.ceil(new_warmup))
        mapped[n] = previous = max(scaled(n, factor), lowest)
    return {key: [mapped[int(n)] for n in value] if isinstance(value, (list, tuple)) or OmegaConf.is_list(value)
            else mapped[int(value)] for key, value in points.items()}


def _scaled_period(period: int, factor: float, recipe_length: int, length: int) -> int:
    """round(factor·period), at least 1, and short enough to start at least twice more inside the stage where the
    recipe's does (IP-DPP keeps its re-draws)."""
    scaled_period = max(1, scaled(period, factor))
    if recipe_length > 2 * period:
        scaled_period = min(scaled_period, max(1, (length - 1) // 2))
    return scaled_period


def _room_for(points: dict, new_points: dict, length: int) -> int:
    """The fewest epochs that hold every scaled point the recipe puts inside its ``length`` epochs."""
    inside = [m for key in points for n, m in zip(_as_list(points[key]), _as_list(new_points[key])) if int(n) < length]
    return max(inside, default=0) + 1


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else [value]


def _own_parents(cfg: DictConfig, key: str) -> None:
    """Replace each node on ``key``'s path that is an interpolation (``method.scheduler: ${scheduler}``) by a
    resolved copy, so that updating ``key`` changes a value of this stage and keeps its siblings."""
    node = cfg
    for part in key.split(".")[:-1]:
        if OmegaConf.is_interpolation(node, part):
            node[part] = OmegaConf.create(OmegaConf.to_container(node[part], resolve=True))
        node = node[part]
