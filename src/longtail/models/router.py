"""RIDE expert-assignment router (stage 2, docs/methods/ride.md §3).

After experts 0..k have run, router k decides per sample whether expert k+1 is
needed. Following the reference (``ea_resnet_cifar.py``, ``EAResNet.py``), its
score is

    u_k = shared_fc([topK(running-mean logits) ; relu(hidden_fc_k(f_k / ‖f_k‖))])

with one ``hidden_fc_k`` Linear(D → 16) per router and a single
``shared_fc`` Linear(K + 16 → 1) shared by all routers. It is trained with
BCE (pos_weight 100) to fire when the k-expert ensemble is wrong but a longer
one is right; at test time experts beyond the first run only on the samples
routed to them. The golden file ``ride_ea_router.json`` pins the semantics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

ExpertFn = Callable[[int, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
FORCE_MODES = (None, "all", "one")


class ExpertRouter(nn.Module):
    """E − 1 routers sharing their output layer.

    Args:
        num_experts: E (≥ 2).
        feature_dim: D, the experts' pooled feature size.
        num_classes: C.
        top_k: K, number of sorted running-mean logits fed to the router; K = min(top_k, C), so a recipe's K
            (30, or 10 for CIFAR-10) also runs on data with fewer classes (a 4-class image folder: K = 4).
        hidden: size of each router's hidden layer (16 in RIDE).
    """

    def __init__(self, num_experts: int, feature_dim: int, num_classes: int, top_k: int = 30, hidden: int = 16):
        super().__init__()
        if num_experts < 2:
            raise ValueError(f"a router needs at least 2 experts, got num_experts={num_experts}")
        if top_k < 1:
            raise ValueError(f"top_k={top_k}: the router reads the top-K logits; set method.router.top_k to 1 or more")
        self.num_experts = int(num_experts)
        self.top_k = min(int(top_k), int(num_classes))
        self.hidden_fc = nn.ModuleList(nn.Linear(feature_dim, hidden) for _ in range(self.num_experts - 1))
        self.shared_fc = nn.Linear(self.top_k + hidden, 1)

    def score(self, k: int, running_mean_logits: torch.Tensor, features_k: torch.Tensor) -> torch.Tensor:
        """Router ``k``'s logit u (B,) from the mean logits of experts 0..k and expert k's features."""
        top = running_mean_logits.topk(self.top_k, dim=1, sorted=True).values
        hidden = F.relu(self.hidden_fc[k](F.normalize(features_k, dim=1)))
        return self.shared_fc(torch.cat([top, hidden], dim=1)).squeeze(1)

    @staticmethod
    def prefix_correct(expert_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(E, B) bool: is the ensemble of experts 0..k right, for every k."""
        return expert_logits.cumsum(0).argmax(-1) == target

    def train_targets(self, expert_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(E − 1, B) float: 1 iff prefix 0..k is wrong and some longer prefix is right."""
        correct = self.prefix_correct(expert_logits, target)
        later_right = correct.flip(0).cummax(0).values.flip(0)[1:]
        return (~correct[:-1] & later_right).float()

    def train_scores(self, expert_logits: torch.Tensor, expert_features: torch.Tensor) -> torch.Tensor:
        """(E − 1, B) router logits u_k, each on the running mean S_k / (k + 1) and features of expert k."""
        sums = expert_logits.cumsum(0)
        return torch.stack([self.score(k, sums[k] / (k + 1), expert_features[k]) for k in range(self.num_experts - 1)])

    def train_loss(
        self,
        expert_logits: torch.Tensor,
        expert_features: torch.Tensor,
        target: torch.Tensor,
        pos_weight: float = 100.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over routers of BCEWithLogits(u_k, target_k; pos_weight), and the all-expert ensemble logits."""
        scores = self.train_scores(expert_logits, expert_features)
        targets = self.train_targets(expert_logits, target)
        weight = torch.as_tensor(pos_weight, dtype=scores.dtype, device=scores.device)
        loss = F.binary_cross_entropy_with_logits(scores, targets, pos_weight=weight)
        return loss, expert_logits.mean(0)

    def _route(self, logits0: torch.Tensor, features0: torch.Tensor, expert_fn: ExpertFn, force: str | None):
        """Dynamic routing given expert 0's outputs; ``expert_fn(k, indices)`` runs expert k on some samples."""
        if force not in FORCE_MODES:
            raise ValueError(f"force must be one of {FORCE_MODES}, got {force!r}")
        out = logits0.clone()
        count = torch.ones(out.shape[0], dtype=torch.long, device=out.device)
        active = torch.arange(out.shape[0], device=out.device)
        features = features0
        for k in range(1, self.num_experts if force != "one" else 1):
            if force is None:
                keep = torch.sigmoid(self.score(k - 1, out[active] / k, features)) > 0.5
                active = active[keep]
                if active.numel() == 0:
                    break
            logits, features = expert_fn(k, active)
            out[active] += logits
            count[active] += 1
        return out / count.unsqueeze(1).to(out.dtype), count

    @torch.no_grad()
    def route_logits(
        self, expert_logits: torch.Tensor, expert_features: torch.Tensor, force: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Routing on precomputed (E, B, C) logits and (E, B, D) features: (logits (B, C), experts used (B,))."""
        return self._route(
            expert_logits[0], expert_features[0], lambda k, idx: (expert_logits[k][idx], expert_features[k][idx]), force
        )

    @torch.no_grad()
    def route(self, network: nn.Module, x: torch.Tensor, force: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Dynamic inference with a :class:`~longtail.models.experts.RIDENetwork`; expert k runs only on routed samples.

        ``force="all"`` uses every expert, ``force="one"`` only the first (routers bypassed).
        """
        h = network.shared(x)
        logits0, features0 = network.expert(0, h)
        return self._route(logits0, features0, lambda k, idx: network.expert(k, h[idx]), force)
