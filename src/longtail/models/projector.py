"""Projection head of BNS pretraining (docs/methods/ipdpp.md §1): Linear(512 → 2048) → ReLU → Linear(2048 → 128), no BN.

The BNS loss (:mod:`longtail.losses.bns`) is computed on its L2-normalised output; the later stages
(linear probe, IP-DPP fine-tuning) drop it and use the encoder's 512-d feature.
"""

from __future__ import annotations

from torch import nn


class Projector(nn.Sequential):
    """Two-layer MLP ``(B, in_features) -> (B, out_features)`` without batch norm."""

    def __init__(self, in_features: int = 512, hidden: int = 2048, out_features: int = 128):
        super().__init__(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_features))
        self.in_features = in_features
        self.out_features = out_features
