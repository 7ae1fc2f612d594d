"""Long-tailed evaluation metrics: top-1, per-class, many/medium/few, ECE.

Groups follow the shared protocol (docs/methods/README.md §4): a class is *many* when its training
count n_c > many_gt (default 100), *few* when n_c < few_lt (default 20), *medium*
otherwise. Group accuracy is the mean of per-class accuracies over the group; an
empty group is NaN (never 0), silently: an empty group is a fact of the class counts (CIFAR-10-LT has no
class under 20 images), not a fault, and the printed table says it once in a footnote
(:func:`longtail.reporting.table.format_table`). A class with no evaluated sample (e.g. a run
limited to a few test batches) has NaN accuracy and is left out of its
group's mean. Everything accumulates in torchmetrics on the
device, so a step never synchronises with the host and DDP sums are exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError, MulticlassConfusionMatrix

GROUPS = ("many", "medium", "few")
ACCURACY_KEYS = ("acc", *(f"acc_{group}" for group in GROUPS))


def shot_groups(class_counts: Sequence[int], thresholds: Sequence[int] = (100, 20)) -> dict[str, torch.Tensor]:
    """Boolean class masks for the many / medium / few groups from training counts."""
    many_gt, few_lt = thresholds
    if few_lt > many_gt:
        raise ValueError(f"shot_thresholds must be (many_gt, few_lt) with many_gt >= few_lt, got {list(thresholds)}")
    counts = torch.as_tensor(list(class_counts))
    many = counts > many_gt
    few = counts < few_lt
    return {"many": many, "medium": ~many & ~few, "few": few}


class ReliabilityBins(Metric):
    """Per confidence bin: mean confidence, accuracy and sample count (the reliability diagram behind ECE)."""

    full_state_update = False

    def __init__(self, n_bins: int = 15):
        super().__init__()
        self.n_bins = n_bins
        for name in ("confidence", "correct", "count"):
            self.add_state(name, default=torch.zeros(n_bins, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probabilities: torch.Tensor, target: torch.Tensor) -> None:
        confidence, prediction = probabilities.max(dim=1)
        bins = (confidence * self.n_bins).ceil().long().clamp(1, self.n_bins) - 1
        self.confidence.index_add_(0, bins, confidence.double())
        self.correct.index_add_(0, bins, (prediction == target).double())
        self.count.index_add_(0, bins, torch.ones_like(confidence, dtype=torch.float64))

    def compute(self) -> torch.Tensor:
        """(3, n_bins): mean confidence, accuracy and count per bin (NaN where a bin is empty)."""
        return torch.stack([self.confidence / self.count, self.correct / self.count, self.count])


class LongTailMetrics(nn.Module):
    """Accumulates predictions of one split and reports the long-tailed table."""

    def __init__(self, class_counts: Sequence[int], shot_thresholds: Sequence[int] = (100, 20), ece_bins: int = 15):
        super().__init__()
        num_classes = len(class_counts)
        self.top1 = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.confusion = MulticlassConfusionMatrix(num_classes=num_classes)
        self.ece = MulticlassCalibrationError(num_classes=num_classes, n_bins=ece_bins, norm="l1")
        self.reliability = ReliabilityBins(ece_bins)
        for name, mask in shot_groups(class_counts, shot_thresholds).items():
            self.register_buffer(f"mask_{name}", mask, persistent=False)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        logits = logits.float()
        self.top1.update(logits, target)
        self.confusion.update(logits, target)
        probabilities = logits.softmax(dim=-1)
        self.ece.update(probabilities, target)
        self.reliability.update(probabilities, target)

    def compute(self) -> dict[str, torch.Tensor]:
        confusion = self.confusion.compute()
        per_class = confusion.diagonal() / confusion.sum(dim=1)
        out = {"acc": self.top1.compute(), "ece": self.ece.compute()}
        for name in GROUPS:
            mask = getattr(self, f"mask_{name}")
            out[f"acc_{name}"] = per_class[mask].nanmean() if mask.any() else per_class.new_tensor(math.nan)
        out["acc_per_class"] = per_class
        out["confusion"] = confusion
        out["reliability"] = self.reliability.compute()
        return out

    def reset(self) -> None:
        for metric in (self.top1, self.confusion, self.ece, self.reliability):
            metric.reset()
