"""One knob that shortens every stage of any experiment and keeps the shape of its schedule.

``schedule.scale=s`` maps each epoch count n of a stage (its length, the warm-up, the learning-rate milestones,
the DRW start, IP-DPP's re-draw period f) to ``round(s * n)``, rounding halves up, so a 200-epoch CE run with
milestones 160/180 and DRW from 160 becomes, at s = 0.1, 20 epochs with milestones 16/18 and DRW from 16.
Stage lengths are scaled stage by stage (DRO-LT's 200 + 80 + 20, IP-DPP's BNS / probe / fine-tune,
Difficulty-Net's LAS, RIDE's router), each from its own recipe. A stage whose length would round to 0 is
refused, naming the smallest scale that keeps it, unless ``schedule.min_epochs`` (a suite's floor, 0 by default)
lifts it to that many epochs; a period (f) never goes below 1 epoch. ``s = 1`` leaves the
config untouched. Values reached through interpolation are read before any is rewritten, so a key that
follows another (a cosine horizon reading ``trainer.max_epochs``) is scaled once.
"""

from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf

LENGTH = "trainer.max_epochs"
#: epoch-valued keys of every stage config (counts are scaled); a method adds its own constructor arguments
#: (``epoch_counts``, and ``epoch_periods``, scaled but kept >= 1: ERM's and RIDE's DRW start, IP-DPP's f)
EPOCH_COUNTS = (LENGTH, "method.scheduler.warmup_epochs", "method.scheduler.milestones")


def epoch_keys(stage_cfg: DictConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The epoch-valued keys of ``stage_cfg``: (counts, periods), the stage's method's own ones included."""
    from longtail.methods import method_class

    cls = method_class(OmegaConf.select(stage_cfg, "method._target_"))
    counts, periods = (tuple(f"method.{name}" for name in getattr(cls, kind, ())) for kind in ("epoch_counts", "epoch_periods"))
    return (*EPOCH_COUNTS, *counts), periods


def scaled(n: int, scale: float) -> int:
    """``round(scale * n)`` with halves rounded up (Python's ``round`` would round 0.5 to 0)."""
    return math.floor(scale * n + 0.5)


def scale_stage(stage_cfg: DictConfig, scale: float, stage: str, min_epochs: int = 0) -> DictConfig:
    """The stage config with every epoch-valued key scaled by ``scale``, a stage lasting at least ``min_epochs``
    (see the module docstring)."""
    if scale == 1:
        return stage_cfg
    if not scale > 0:
        raise ValueError(f"schedule.scale must be a positive number (1 = the recipe's schedule), got {scale}")
    counts, periods = epoch_keys(stage_cfg)
    found = {key: OmegaConf.select(stage_cfg, key) for key in (*counts, *periods)}
    found = {key: value for key, value in found.items() if value is not None}
    length = found.get(LENGTH)
    if length is not None and length > 0 and max(scaled(length, scale), min_epochs) == 0:
        raise ValueError(
            f"schedule.scale={scale} gives stage '{stage}' round({scale} x {length}) = 0 epochs: use "
            f"schedule.scale >= {0.5 / length:.3g} (the smallest that keeps one epoch of it), or give every "
            f"stage a floor with schedule.min_epochs=1"
        )
    for key in found:
        _own_parents(stage_cfg, key)
    for key, value in found.items():
        if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
            new = [scaled(int(n), scale) for n in value]
        else:
            new = scaled(int(value), scale)
            if key in periods:
                new = max(new, 1)
            elif key == LENGTH and value > 0:
                new = max(new, min_epochs)
        OmegaConf.update(stage_cfg, key, new, force_add=True)
    return stage_cfg


def _own_parents(cfg: DictConfig, key: str) -> None:
    """Replace each node on ``key``'s path that is an interpolation (``method.scheduler: ${scheduler}``) by a
    resolved copy, so that updating ``key`` changes a value of this stage and keeps its siblings."""
    node = cfg
    for part in key.split(".")[:-1]:
        if OmegaConf.is_interpolation(node, part):
            node[part] = OmegaConf.create(OmegaConf.to_container(node[part], resolve=True))
        node = node[part]
