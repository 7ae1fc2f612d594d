"""Learning-rate schedules used by the published recipes.

* ``warmup_multistep``: linear warm-up lr·(e+1)/W for e < W, then the rate is
  multiplied by ``gamma`` at every milestone (LDAM-DRW ``cifar_train.py``:
  W = 5, milestones 160 and 180, gamma 0.01 on CIFAR-LT).
* ``warmup_cosine``: optional linear warm-up, then cosine to 0 over the run,
  stepped once per epoch (classifier-balancing ImageNet-LT configs).
* ``ramp_multistep``: linear ramp of the rate from lr to ``ramp_to``·lr, then
  multi-step decay (Difficulty-Net CIFAR script's WRN-28-10 schedule, docs/methods/diffnet.md N5).

* ``iteration_warmup_cosine``: the same shape evaluated at the fractional epoch of every iteration
  (BNS / IP-DPP, MAE-style scaffolding, docs/methods/ipdpp.md §2): linear warm-up from 0, then cosine to 0 at the end.

All return a ``LambdaLR``; epochs are 0-indexed. The per-epoch ones are stepped once per epoch, the
per-iteration one once per optimizer step (set ``scheduler_interval: step`` on the method). ``warmup_multistep`` and
``warmup_cosine`` are per-iteration too when given ``steps_per_epoch``: ``schedule.scale`` uses that to keep a warm-up
of a fraction of an epoch (:mod:`longtail.config.schedule_scale`), and every warm-up then lasts at least
``min_warmup_steps`` optimizer steps.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_steps(warmup_epochs: float, steps_per_epoch: float, min_warmup_steps: int = 0) -> float:
    """The warm-up in optimizer steps: ``warmup_epochs`` of them, and at least ``min_warmup_steps`` where there is one."""
    if warmup_epochs <= 0:
        return 0.0
    return max(warmup_epochs * steps_per_epoch, float(min_warmup_steps))


def per_step(after_warmup: Callable[[float], float], warmup_epochs: float, steps_per_epoch: float,
             min_warmup_steps: int = 0) -> Callable[[int], float]:
    """The factor at optimizer step s: (s + 1)/S over a warm-up of S steps (:func:`warmup_steps`), then
    ``after_warmup(t)`` at the fractional epoch t = s / ``steps_per_epoch``."""
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be > 0, got {steps_per_epoch}")
    span = warmup_steps(warmup_epochs, steps_per_epoch, min_warmup_steps)

    def factor(step: int) -> float:
        if step < span:
            return (step + 1) / math.ceil(span)
        return after_warmup(step / steps_per_epoch)

    return factor


def warmup_multistep(
    optimizer: Optimizer, max_epochs: int, warmup_epochs: float = 0, milestones: Sequence[int] = (), gamma: float = 0.1,
    steps_per_epoch: float | None = None, min_warmup_steps: int = 0,
) -> LambdaLR:
    milestones = sorted(milestones)

    def decay(epoch: float) -> float:
        return gamma ** bisect.bisect_right(milestones, math.floor(epoch + 1e-9))

    if steps_per_epoch is not None:
        return LambdaLR(optimizer, per_step(decay, warmup_epochs, steps_per_epoch, min_warmup_steps))

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / warmup_epochs
        return decay(epoch)

    return LambdaLR(optimizer, factor)


def warmup_cosine(optimizer: Optimizer, max_epochs: int, warmup_epochs: float = 0,
                  steps_per_epoch: float | None = None, min_warmup_steps: int = 0) -> LambdaLR:
    if steps_per_epoch is not None:
        warmup_epochs = warmup_steps(warmup_epochs, steps_per_epoch, min_warmup_steps) / steps_per_epoch

    def cosine(epoch: float) -> float:
        span = max(1, max_epochs - warmup_epochs)
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch - warmup_epochs, span) / span))

    if steps_per_epoch is not None:
        return LambdaLR(optimizer, per_step(cosine, warmup_epochs, steps_per_epoch))

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / warmup_epochs
        return cosine(epoch)

    return LambdaLR(optimizer, factor)


def iteration_warmup_cosine(
    optimizer: Optimizer, max_epochs: int, steps_per_epoch: float, warmup_epochs: float = 0, min_warmup_steps: int = 0
) -> LambdaLR:
    """Factor at fractional epoch t = step / ``steps_per_epoch``: t/W for t < W, then ½(1 + cos(π(t − W)/(E − W))).

    lr(0) = 0, lr(W) = lr_max, lr(E) = 0 (docs/methods/ipdpp.md §2: W = 20 epochs of BNS pretraining, 5 of fine-tuning).
    W lasts at least ``min_warmup_steps`` steps.
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be > 0, got {steps_per_epoch}")
    warmup_epochs = warmup_steps(warmup_epochs, steps_per_epoch, min_warmup_steps) / steps_per_epoch

    def factor(step: int) -> float:
        t = step / steps_per_epoch
        if t < warmup_epochs:
            return t / warmup_epochs
        span = max(max_epochs - warmup_epochs, 1e-12)
        return 0.5 * (1.0 + math.cos(math.pi * min(t - warmup_epochs, span) / span))

    return LambdaLR(optimizer, factor)


def ramp_multistep(
    optimizer: Optimizer,
    max_epochs: int,
    ramp_epochs: int = 400,
    ramp_to: float = 2.0,
    milestones: Sequence[int] = (6400, 9600),
    gamma: float = 0.1,
) -> LambdaLR:
    """Linear ramp from 1 to ``ramp_to`` over ``ramp_epochs``, then ×``gamma`` at every milestone.

    The factor is ``1 + (ramp_to − 1)·e/ramp_epochs`` for e < ``ramp_epochs`` and
    ``ramp_to · gamma^k`` afterwards, k = number of milestones ≤ e (0-indexed epochs).
    The defaults reproduce the Difficulty-Net reference CIFAR script's WRN-28-10
    schedule (docs/methods/diffnet.md §7 N5, ``max_epochs=12800``): lr 0.1 warmed to 0.2 over
    400 epochs, ×0.1 at 6400 and at 9600. ``max_epochs`` is unused (uniform signature).
    """
    milestones = sorted(milestones)

    def factor(epoch: int) -> float:
        if epoch < ramp_epochs:
            return 1.0 + (ramp_to - 1.0) * epoch / ramp_epochs
        return ramp_to * gamma ** bisect.bisect_right(milestones, epoch)

    return LambdaLR(optimizer, factor)


def constant(optimizer: Optimizer, max_epochs: int) -> LambdaLR:
    return LambdaLR(optimizer, lambda epoch: 1.0)
