"""Balanced Negative Sampling (BNS) contrastive loss, stage 1 of BNS + IP-DPP (docs/methods/ipdpp.md §2, §6 Q5).

Source: Lin & Yuan, "Long-Tailed Recognition via Information-Preservable Two-Stage Learning",
NeurIPS 2025, arXiv 2510.08836, Eq. 11–12; reference code BNS_IPDPP ``losses/bns_loss.py``.

A supervised, sigmoid (NCE-style) contrastive loss on the projector outputs ``e¹, e²`` (B, D) of two
augmented views of the same images. Both forms L2-normalise the embeddings themselves.

``form="paper"`` (default, Eq. 12). For anchor i, q_i = view-1 embedding, v⁺_i = view-2 embedding of
the same image, Q⁺_i = m_i ≤ m other view-1 embeddings of class y_i (extra anchors) and v⁻_1 … v⁻_n
view-2 embeddings of other classes, all drawn uniformly without replacement from the batch (all of
them when there are fewer candidates; m_i is the number drawn):

    L(i) = −1/(m_i+1) · Σ_{q ∈ {q_i} ∪ Q⁺_i} [ log σ(q·v⁺_i/τ) + Σ_{j=1..n} log σ(−q·v⁻_j/τ) ]

averaged over anchors; ``symmetric=True`` averages this with the same loss with the views swapped.
m = 0 gives L_NS (Eq. 11). The extra same-class anchors pull a class together (the paper argues they
maximise the mutual information between same-class views); the fixed count n of negatives per anchor
balances the negatives between head and tail anchors.

``form="reference"`` (what the released code computes; ``bns.form=reference``). With
Z = normalise([e¹; e²]) (2B × D), Y = [y; y] and E_ab = exp(cos(Z_a, Z_b)/τ):

    Pos_a = mean_{b ≠ a, Y_b = Y_a} E_ab,   Neg_a = (1/2B) · Σ_{b: Y_b ≠ Y_a} E_ab,
    L = −(1/2B) · Σ_a [ log σ(Pos_a) + log σ(−Neg_a) ]

It differs from Eq. 12 in four ways: log σ is applied to aggregated exp-similarities instead of to
each pair; there is a single negative term per anchor; there is no per-class m (every same-class
sample is a positive); and there is no balancing (all negatives are used, divided by 2B).

Under DDP (torch.distributed initialised, N > 1 processes) ``datamodule.batch_size`` is the global batch
B and each process holds B/N images. The loss gathers every process's embeddings and labels (in rank
order: the global batch) and averages the per-anchor terms of its *own* anchors against that global
pool, so the extra anchors and negatives come from the whole batch, as on one device. The mean of the N
losses is the one-process loss; the gather's backward sums every process's gradient into the local
embeddings, so DDP's gradient average is the one-process gradient. The random draws are made on the
global B × B candidate matrix and sliced to the local rows: with equal generator states the processes
draw exactly what one process would.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from longtail.common.distributed import is_distributed

FORMS = ("paper", "reference")


class _GatherWithGradient(torch.autograd.Function):
    """All processes' (b, ...) tensors concatenated in rank order; the backward sums the gradient of the
    concatenation over the processes and returns this process's slice (every process holds b rows)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def _global_batch(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor):
    """``(z1, z2, labels, rows)`` of the global batch and the rows of this process's anchors in it; one
    process: its own batch and all rows. The samplers give every process the same number of images."""
    rows = torch.arange(len(labels), device=labels.device)
    if not is_distributed() or dist.get_world_size() == 1:
        return z1, z2, labels, rows
    z1, z2 = _GatherWithGradient.apply(z1), _GatherWithGradient.apply(z2)
    gathered = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, labels.contiguous())
    return z1, z2, torch.cat(gathered), rows + dist.get_rank() * len(labels)


def _draw_without_replacement(
    candidates: torch.Tensor, count: int, generator: torch.Generator | None, rows: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, up to ``count`` column indices drawn uniformly without replacement among ``candidates`` (B, B).

    Returns ``(indices (R, k), valid (R, k))`` for the ``rows`` (default: all B) with ``k = min(count, B)``;
    ``valid`` is false where a row has fewer candidates than ``count`` (those indices are arbitrary and must be
    masked). The keys are drawn for the whole matrix, so a row's draw does not depend on which rows are kept.
    """
    keys = torch.rand(candidates.shape, generator=generator, device=candidates.device)
    if rows is not None:
        keys, candidates = keys[rows], candidates[rows]
    keys = keys.masked_fill(~candidates, float("inf"))
    smallest, indices = keys.topk(min(count, candidates.shape[1]), dim=1, largest=False)
    return indices, torch.isfinite(smallest)


class BNSLoss(nn.Module):
    """BNS loss ``forward(emb1, emb2, labels, generator=None) -> scalar`` (see the module docstring).

    Args:
        temperature: τ (the reference code's hidden default 0.5).
        extra_anchors: m, same-class view-1 anchors added per anchor (paper form only).
        negatives: n, other-class embeddings per anchor (paper form only).
        symmetric: also use view 2 as anchors and average both directions (paper form only).
        form: ``"paper"`` (Eq. 12) or ``"reference"`` (the released code).
    """

    def __init__(
        self,
        temperature: float = 0.5,
        extra_anchors: int = 2,
        negatives: int = 64,
        symmetric: bool = True,
        form: str = "paper",
    ):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if extra_anchors < 0 or negatives < 0:
            raise ValueError(f"extra_anchors and negatives must be >= 0, got {extra_anchors} and {negatives}")
        self.temperature = float(temperature)
        self.extra_anchors = int(extra_anchors)
        self.negatives = int(negatives)
        self.symmetric = bool(symmetric)
        self.form = form

    def forward(
        self,
        emb1: torch.Tensor,
        emb2: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Loss of the (B, D) projector outputs of view 1 and view 2 with (B,) labels; row i is one image.

        The paper form draws its extra anchors and negatives from ``generator`` (which must live on the
        embeddings' device) or, when it is ``None``, from torch's global RNG of that device.
        """
        if emb1.dim() != 2 or emb1.shape != emb2.shape:
            raise ValueError(f"emb1 and emb2 must both be (B, D), got {tuple(emb1.shape)} and {tuple(emb2.shape)}")
        if labels.shape != (emb1.shape[0],):
            raise ValueError(f"labels must be ({emb1.shape[0]},), got {tuple(labels.shape)}")
        dtype = torch.promote_types(emb1.dtype, torch.float32)
        z1 = F.normalize(emb1.to(dtype), dim=1)
        z2 = F.normalize(emb2.to(dtype), dim=1)
        z1, z2, labels, rows = _global_batch(z1, z2, labels.to(emb1.device))
        if self.form == "reference":
            return self._reference(z1, z2, labels, rows)
        loss = self._paper_direction(z1, z2, labels, generator, rows)
        if self.symmetric:
            loss = (loss + self._paper_direction(z2, z1, labels, generator, rows)) / 2
        return loss

    def _paper_direction(
        self, anchors: torch.Tensor, others: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None,
        rows: torch.Tensor,
    ) -> torch.Tensor:
        """Eq. 12 averaged over the anchors ``rows``: anchors and extra anchors from ``anchors``, v⁺ and v⁻ from
        ``others`` (all B of them)."""
        batch = anchors.shape[0]
        logits = anchors @ others.T / self.temperature  # logits[k, j] = q_k · v_j / τ
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        extra, extra_valid = _draw_without_replacement(
            same & ~torch.eye(batch, dtype=torch.bool, device=anchors.device), self.extra_anchors, generator, rows
        )
        negative, negative_valid = _draw_without_replacement(~same, self.negatives, generator, rows)
        negative_mask = torch.zeros_like(same[rows]).scatter_(1, negative, negative_valid)

        anchor_index = torch.cat([rows.unsqueeze(1), extra], dim=1)  # (R, 1 + m): {i} ∪ Q⁺_i
        anchor_valid = torch.cat([torch.ones_like(rows, dtype=torch.bool).unsqueeze(1), extra_valid], dim=1)
        positive = F.logsigmoid(logits.T[rows].gather(1, anchor_index))  # log σ(q_k · v⁺_i / τ)
        negative_terms = F.logsigmoid(-logits)[anchor_index]  # (R, 1 + m, B): log σ(−q_k · v_j / τ)
        negative_sum = torch.einsum("ikj,ij->ik", negative_terms, negative_mask.to(logits.dtype))
        per_anchor = torch.where(anchor_valid, positive + negative_sum, 0.0).sum(1)
        return -(per_anchor / anchor_valid.sum(1)).mean()

    def _reference(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The released code's loss (module docstring, ``form="reference"``), averaged over the anchors of both
        views of ``rows``."""
        z = torch.cat([z1, z2])
        all_labels = torch.cat([labels, labels])
        anchors = torch.cat([rows, rows + len(z1)])
        similarity = torch.exp(z[anchors] @ z.T / self.temperature)
        same = all_labels[anchors].unsqueeze(1) == all_labels.unsqueeze(0)
        positive_mask = same.clone()
        positive_mask[torch.arange(len(anchors), device=z.device), anchors] = False
        positive = (similarity * positive_mask).sum(1) / positive_mask.sum(1).clamp(min=1)
        negative = (similarity * ~same).sum(1) / len(z)
        return -(F.logsigmoid(positive) + F.logsigmoid(-negative)).mean()
