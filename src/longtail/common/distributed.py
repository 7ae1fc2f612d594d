"""The few data-parallel facts and collectives shared by methods, losses and samplers (one process: no-ops)."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """Whether this process is one of a torch.distributed process group (DDP)."""
    return dist.is_available() and dist.is_initialized()


def rank_mean(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors averaged over the processes in one all-reduce (unchanged in one process)."""
    if not is_distributed() or not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]
