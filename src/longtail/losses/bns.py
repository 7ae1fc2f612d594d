"""Balanced Negative Sampling (BNS) contrastive loss, stage 1 of BNS + IP-DPP (ipdpp.md §2, §6 Q5).

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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FORMS = ("paper", "reference")


def _draw_without_replacement(
    candidates: torch.Tensor, count: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, up to ``count`` column indices drawn uniformly without replacement among ``candidates`` (B, B).

    Returns ``(indices (B, k), valid (B, k))`` with ``k = min(count, B)``; ``valid`` is false where a row
    has fewer candidates than ``count`` (those indices are arbitrary and must be masked).
    """
    keys = torch.rand(candidates.shape, generator=generator, device=candidates.device)
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
        labels = labels.to(emb1.device)
        if self.form == "reference":
            return self._reference(z1, z2, labels)
        loss = self._paper_direction(z1, z2, labels, generator)
        if self.symmetric:
            loss = (loss + self._paper_direction(z2, z1, labels, generator)) / 2
        return loss

    def _paper_direction(
        self, anchors: torch.Tensor, others: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Eq. 12 averaged over anchors: anchors and extra anchors from ``anchors``, v⁺ and v⁻ from ``others``."""
        batch = anchors.shape[0]
        logits = anchors @ others.T / self.temperature  # logits[k, j] = q_k · v_j / τ
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        self_index = torch.arange(batch, device=anchors.device)
        extra, extra_valid = _draw_without_replacement(
            same & ~torch.eye(batch, dtype=torch.bool, device=anchors.device), self.extra_anchors, generator
        )
        negative, negative_valid = _draw_without_replacement(~same, self.negatives, generator)
        negative_mask = torch.zeros_like(same).scatter_(1, negative, negative_valid)

        anchor_index = torch.cat([self_index.unsqueeze(1), extra], dim=1)  # (B, 1 + m): {i} ∪ Q⁺_i
        anchor_valid = torch.cat([torch.ones_like(self_index, dtype=torch.bool).unsqueeze(1), extra_valid], dim=1)
        positive = F.logsigmoid(logits.T.gather(1, anchor_index))  # log σ(q_k · v⁺_i / τ)
        negative_terms = F.logsigmoid(-logits)[anchor_index]  # (B, 1 + m, B): log σ(−q_k · v_j / τ)
        negative_sum = torch.einsum("ikj,ij->ik", negative_terms, negative_mask.to(logits.dtype))
        per_anchor = torch.where(anchor_valid, positive + negative_sum, 0.0).sum(1)
        return -(per_anchor / anchor_valid.sum(1)).mean()

    def _reference(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The released code's loss (module docstring, ``form="reference"``)."""
        z = torch.cat([z1, z2])
        all_labels = torch.cat([labels, labels])
        similarity = torch.exp(z @ z.T / self.temperature)
        same = all_labels.unsqueeze(0) == all_labels.unsqueeze(1)
        positive_mask = same & ~torch.eye(len(z), dtype=torch.bool, device=z.device)
        positive = (similarity * positive_mask).sum(1) / positive_mask.sum(1).clamp(min=1)
        negative = (similarity * ~same).sum(1) / len(z)
        return -(F.logsigmoid(positive) + F.logsigmoid(-negative)).mean()
