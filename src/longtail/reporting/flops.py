"""Compute cost in "GFLOPs" as RIDE reports it (docs/methods/ride.md §3).

Counted with :class:`torch.utils.flop_counter.FlopCounterMode`, which counts a
multiply-add as 2 FLOPs and covers matrix products and convolutions only
(not BatchNorm, activations, pooling or additions). RIDE's ``utils/gflops.py``
reports multiply-accumulates (MACs) under the name "GFLOPs", so every value
here is ``flop_counter total / 2 / 1e9``, i.e. **GMACs labelled GFLOPs**; a
Linear(10 → 5) on one sample gives 50 MACs = 5e-8.

:func:`ride_gflops` is RIDE's routed cost Σ_j p_j · GFLOPs(model with j
experts plus the routers consulted), measured at batch 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def gflops(fn: Callable[..., object], *inputs: torch.Tensor) -> float:
    """GMACs ("GFLOPs" in RIDE's convention) of one call ``fn(*inputs)``, run without gradients."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*inputs)
    return counter.get_total_flops() / 2 / 1e9


def _first_experts_with_routers(network: nn.Module, router: nn.Module | None, x: torch.Tensor, j: int) -> None:
    """Run the trunk and experts 0..j-1, scoring every router that a j-expert sample consulted.

    A sample stopping after j < E experts consulted routers 0..j-1 (the last said no);
    one using all E consulted routers 0..E-2.
    """
    h = network.shared(x)
    out = None
    for k in range(j):
        logits, features = network.expert(k, h)
        out = logits if out is None else out + logits
        if router is not None and k < network.num_experts - 1:
            router.score(k, out / (k + 1), features)


def ride_gflops(
    network: nn.Module, router: nn.Module | None, image_shape: Sequence[int], expert_fractions: Sequence[float]
) -> float:
    """Σ_j p_j · GFLOPs(first j experts + routers consulted), with ``expert_fractions[j-1]`` = p_j.

    Args:
        network: a :class:`~longtail.models.experts.RIDENetwork`.
        router: its :class:`~longtail.models.router.ExpertRouter`, or ``None`` to count the experts only.
        image_shape: one image's shape, e.g. ``(3, 32, 32)``.
        expert_fractions: E fractions of samples that used exactly 1..E experts.
    """
    fractions = [float(p) for p in expert_fractions]
    if len(fractions) != network.num_experts:
        raise ValueError(f"expected {network.num_experts} expert fractions, got {len(fractions)}")
    x = torch.zeros(1, *image_shape, device=next(network.parameters()).device)
    return float(
        sum(
            p * gflops(lambda inp, j=j: _first_experts_with_routers(network, router, inp, j), x)
            for j, p in enumerate(fractions, start=1)
            if p > 0
        )
    )
