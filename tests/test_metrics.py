"""Shot groups, group accuracy and ECE (docs/methods/README.md §4)."""

import math

import pytest
import torch

from longtail.data.imbalance import lt_counts
from longtail.reporting.metrics import LongTailMetrics, shot_groups
from longtail.reporting.table import format_table


def sizes(counts, thresholds=(100, 20)):
    groups = shot_groups(counts, thresholds)
    return tuple(int(groups[g].sum()) for g in ("many", "medium", "few"))


@pytest.mark.parametrize(
    "n_max,num_classes,factor,thresholds,expected",
    [
        (5000, 10, 10, (100, 20), (10, 0, 0)),
        (5000, 10, 50, (100, 20), (9, 1, 0)),
        (5000, 10, 100, (100, 20), (8, 2, 0)),
        (5000, 10, 200, (100, 20), (7, 3, 0)),
        (5000, 10, 10, (500, 200), (9, 1, 0)),
        (5000, 10, 50, (500, 200), (6, 2, 2)),
        (5000, 10, 100, (500, 200), (5, 2, 3)),
        (5000, 10, 200, (500, 200), (4, 2, 4)),
        (500, 100, 10, (100, 20), (69, 31, 0)),
        (500, 100, 50, (100, 20), (41, 41, 18)),
        (500, 100, 100, (100, 20), (35, 35, 30)),
        (500, 100, 200, (100, 20), (30, 31, 39)),
    ],
)
def test_group_sizes_match_the_protocol_table(n_max, num_classes, factor, thresholds, expected):
    assert sizes(lt_counts(n_max, num_classes, factor), thresholds) == expected


def test_groups_are_derived_from_counts_not_class_order():
    counts = [5, 500, 50]
    groups = shot_groups(counts)
    assert groups["many"].tolist() == [False, True, False]
    assert groups["few"].tolist() == [True, False, False]


def test_group_accuracy_on_a_balanced_set_equals_pooled_accuracy():
    torch.manual_seed(0)
    counts = [500, 400, 50, 40, 10, 5]
    target = torch.arange(6).repeat_interleave(20)
    logits = torch.randn(120, 6) + 2.0 * torch.nn.functional.one_hot(target, 6)
    metrics = LongTailMetrics(counts)
    metrics.update(logits[:50], target[:50])
    metrics.update(logits[50:], target[50:])
    out = metrics.compute()
    correct = logits.argmax(1) == target
    assert out["acc"] == pytest.approx(correct.float().mean().item())
    for name, classes in (("many", [0, 1]), ("medium", [2, 3]), ("few", [4, 5])):
        mask = torch.isin(target, torch.tensor(classes))
        assert out[f"acc_{name}"] == pytest.approx(correct[mask].float().mean().item())
    per_class = torch.stack([correct[target == c].float().mean() for c in range(6)])
    assert torch.allclose(out["acc_per_class"], per_class)


def test_ece_matches_its_definition_with_15_bins():
    torch.manual_seed(1)
    logits, target = torch.randn(400, 4) * 3, torch.randint(0, 4, (400,))
    metrics = LongTailMetrics([200, 150, 50, 10])
    metrics.update(logits, target)
    confidence, prediction = logits.softmax(1).max(1)
    correct = (prediction == target).float()
    bins = torch.clamp((confidence * 15).ceil().long() - 1, 0, 14)
    ece = sum(
        (bins == b).float().mean() * (confidence[bins == b].mean() - correct[bins == b].mean()).abs()
        for b in range(15)
        if (bins == b).any()
    )
    out = metrics.compute()
    assert out["ece"] == pytest.approx(float(ece), abs=1e-5)
    confidence_bins, accuracy_bins, counts = out["reliability"]
    assert counts.sum() == 400
    filled = counts > 0
    from_bins = (counts[filled] / 400 * (confidence_bins[filled] - accuracy_bins[filled]).abs()).sum()
    assert float(from_bins) == pytest.approx(float(ece), abs=1e-5)


def test_a_class_without_test_samples_is_nan_and_left_out_of_its_group():
    metrics = LongTailMetrics([500, 400, 50])
    metrics.update(torch.eye(3)[:2] * 5, torch.tensor([0, 0]))
    out = metrics.compute()
    assert out["acc_per_class"][0] == 0.5 and math.isnan(out["acc_per_class"][1])
    assert out["acc_many"] == 0.5


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError, match="shot_thresholds"):
        shot_groups([10, 20], (20, 100))


def test_table_shows_nan_groups_as_not_available():
    table = format_table({"test/acc": 0.5, "test/acc_many": 0.9, "test/acc_medium": 0.4, "test/acc_few": float("nan"), "test/ece": 0.1})
    assert "| all | 50.00 | 90.00 | 40.00 | n/a | 10.00 |" in table
