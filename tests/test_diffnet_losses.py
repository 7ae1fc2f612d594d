"""Difficulty-Net MLP, driver loss, class weights, weighted loss and stage-2 LAS (docs/methods/diffnet.md §2-§4, §7 N3, §8)."""

from __future__ import annotations

import math

import pytest
import torch
from golden import assert_close, golden_cases, tol
from torch.nn import functional as F

from longtail.losses import (
    DifficultyWeightedLoss,
    LabelAwareSmoothingLoss,
    cifar_las_smoothing,
    difficulty_class_weights,
    driver_loss,
    driver_target,
    label_aware_smoothing,
)
from longtail.models import DifficultyNet

CIFAR100_IF100 = [int(500 * 0.01 ** (i / 99)) for i in range(100)]


def _difficulty_net(case, dtype):
    hp = case["hyperparameters"]
    net = DifficultyNet(hp["num_classes"], hidden=hp["hidden"], bias=hp["has_bias"])
    state = {name: torch.tensor(value) for name, value in case["inputs"]["mlp_params"].items()}
    net.load_state_dict(state)
    return net.to(dtype)


def _weighted_loss_fn(case):
    balanced = case["hyperparameters"]["loss_type"].startswith("balanced_softmax")
    return DifficultyWeightedLoss(
        case["inputs"]["cls_num_list"],
        balanced_softmax=balanced,
        bs_broadcast_bug=balanced and case["variant"] == "reference",
    )


def _random_net(num_classes=7, hidden=16, bias=True, seed=0):
    torch.manual_seed(seed)
    return DifficultyNet(num_classes, hidden=hidden, bias=bias).double()


# --- golden vectors -----------------------------------------------------------------------------


@pytest.mark.parametrize("d, case, dtype", golden_cases("diffnet_class_weights"))
def test_class_weights_golden(d, case, dtype):
    inputs, out = case["inputs"], case["outputs"]
    tolerance = tol(d)
    net = _difficulty_net(case, dtype)
    accuracies = torch.tensor(inputs["class_accuracies"], dtype=dtype)

    outputs = net(accuracies)
    assert outputs.dtype == dtype
    assert_close(outputs, out["sigmoid_outputs"], tolerance)
    assert_close(driver_target(accuracies), out["driver_target"], tolerance)
    loss = driver_loss(outputs, accuracies)
    assert_close(loss, out["driver_loss"], tolerance)
    weights = difficulty_class_weights(outputs)
    assert_close(weights, out["class_weights"], tolerance)
    assert_close(weights[torch.tensor(inputs["labels"])], out["batch_weights"], tolerance)

    names, params = zip(*net.named_parameters())
    assert set(names) == set(case["grads"])
    for name, grad in zip(names, torch.autograd.grad(loss, params)):
        assert_close(grad, case["grads"][name], tolerance)


@pytest.mark.parametrize("d, case, dtype", golden_cases("diffnet_weighted_loss"))
def test_weighted_loss_golden(d, case, dtype):
    inputs, out = case["inputs"], case["outputs"]
    tolerance = tol(d)
    loss_fn = _weighted_loss_fn(case)
    logits = torch.tensor(inputs["logits"], dtype=dtype, requires_grad=True)
    target = torch.tensor(inputs["target"])
    weights = torch.tensor(inputs["class_weights"], dtype=dtype)

    assert_close(loss_fn.per_sample(logits, target), out["per_sample_loss"], tolerance)
    loss = loss_fn(logits, target, weights)
    assert loss.dtype == dtype and loss.ndim == 0
    assert_close(loss, out["loss"], tolerance)
    (grad,) = torch.autograd.grad(loss, logits)
    assert_close(grad, case["grads"]["logits"], tolerance)


# --- Difficulty-Net (§8 "DN") -------------------------------------------------------------------


def test_bias_free_net_at_zero_accuracy_gives_half_and_unit_weights():
    torch.manual_seed(0)
    net = DifficultyNet(10)
    outputs = net(torch.zeros(10))
    assert torch.equal(outputs, torch.full((10,), 0.5))
    assert torch.equal(difficulty_class_weights(outputs), torch.ones(10))


@pytest.mark.parametrize("seed", range(3))
def test_class_weights_sum_to_num_classes(seed):
    net = _random_net(seed=seed)
    weights = difficulty_class_weights(net(torch.rand(7, dtype=torch.float64)))
    assert weights.sum().item() == pytest.approx(7.0, abs=1e-12)
    assert bool((weights > 0).all())


def test_zero_accuracy_driver_target_is_one():
    assert torch.equal(driver_target(torch.zeros(5)), torch.ones(5))


def test_driver_target_keeps_dtype_and_batches():
    a = torch.tensor([[0.5, 0.25, 0.25], [0.0, 0.0, 0.0]], dtype=torch.float32)
    t = driver_target(a)
    assert t.dtype == torch.float32
    assert torch.allclose(t, torch.tensor([[0.5, 0.75, 0.75], [1.0, 1.0, 1.0]]))


def test_net_accepts_a_batch_of_accuracy_vectors():
    net = _random_net()
    a = torch.rand(3, 7, dtype=torch.float64)
    assert torch.allclose(net(a), torch.stack([net(row) for row in a]))
    with pytest.raises(ValueError, match="shape"):
        net(torch.rand(6, dtype=torch.float64))


def test_net_layer_forms():
    cifar, imagenet = DifficultyNet(100), DifficultyNet(1000, hidden=1024, bias=True)
    assert cifar.linear1.bias is None and cifar.linear2.weight.shape == (128, 128)
    assert imagenet.linear3.weight.shape == (1000, 1024) and imagenet.linear3.bias is not None


# --- weighted loss (§3, §7 N3) ------------------------------------------------------------------


def _logits_with_ce(values):
    """Two-class logits whose CE against targets [0, 1, 0, ...] equals ``values``."""
    rows = []
    for i, value in enumerate(values):
        other = math.log(math.expm1(value))
        rows.append([0.0, other] if i % 2 == 0 else [other, 0.0])
    return torch.tensor(rows, dtype=torch.float64), torch.tensor([i % 2 for i in range(len(values))])


@pytest.mark.parametrize("bug, expected", [(False, 3.5), (True, 3.0)])
def test_bs_weighting_example(bug, expected):
    logits, target = _logits_with_ce([1.0, 2.0])
    loss_fn = DifficultyWeightedLoss([4, 4], balanced_softmax=True, bs_broadcast_bug=bug)
    assert torch.allclose(loss_fn.per_sample(logits, target), torch.tensor([1.0, 2.0], dtype=torch.float64))
    weights = torch.tensor([1.0, 3.0], dtype=torch.float64)
    assert loss_fn(logits, target, weights).item() == pytest.approx(expected, abs=1e-12)


def test_weighted_loss_is_unnormalised_mean_and_plain_mean_without_weights():
    torch.manual_seed(1)
    logits, target = torch.randn(9, 4, dtype=torch.float64), torch.randint(0, 4, (9,))
    loss_fn = DifficultyWeightedLoss([40, 20, 10, 5])
    weights = torch.tensor([0.5, 0.8, 1.2, 1.5], dtype=torch.float64)
    ce = F.cross_entropy(logits, target, reduction="none")
    assert torch.allclose(loss_fn(logits, target, weights), (weights[target] * ce).mean())
    assert torch.allclose(loss_fn(logits, target), ce.mean())


def test_weighted_loss_balanced_softmax_matches_shifted_ce():
    torch.manual_seed(2)
    counts = [40, 20, 10, 5]
    logits, target = torch.randn(9, 4, dtype=torch.float64), torch.randint(0, 4, (9,))
    prior = torch.tensor(counts, dtype=torch.float64) / sum(counts)
    loss = DifficultyWeightedLoss(counts, balanced_softmax=True)(logits, target)
    assert torch.allclose(loss, F.cross_entropy(logits + prior.log(), target), rtol=1e-6)


def test_weights_gradient_flows():
    torch.manual_seed(3)
    logits, target = torch.randn(8, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    weights = torch.rand(4, dtype=torch.float64).requires_grad_(True)
    loss_fn = DifficultyWeightedLoss([40, 20, 10, 5], balanced_softmax=True)
    (grad,) = torch.autograd.grad(loss_fn(logits, target, weights), weights)
    per_sample = loss_fn.per_sample(logits, target)
    expected = torch.zeros(4, dtype=torch.float64).index_add_(0, target, per_sample) / len(target)
    assert bool((grad != 0).all())
    assert torch.allclose(grad, expected)


def test_loss_gradient_reaches_difficulty_net():
    net = _random_net(num_classes=4)
    weights = difficulty_class_weights(net(torch.rand(4, dtype=torch.float64)))
    logits, target = torch.randn(8, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 0, 0, 1])
    loss = DifficultyWeightedLoss([40, 20, 10, 5])(logits, target, weights)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    assert any(bool((g != 0).any()) for g in grads)


def test_weight_attribute_is_a_fallback_and_conflicts_with_per_call_weights():
    logits, target = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    weights = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64)
    loss_fn = DifficultyWeightedLoss([30, 20, 10])
    expected = loss_fn(logits, target, weights)
    loss_fn.weight = weights
    assert torch.allclose(loss_fn(logits, target), expected)
    with pytest.raises(ValueError, match="not both"):
        loss_fn(logits, target, weights)


def test_weighted_loss_rejects_bad_shapes():
    loss_fn = DifficultyWeightedLoss([30, 20, 10])
    with pytest.raises(ValueError, match="class_weights"):
        loss_fn(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), torch.ones(4))
    with pytest.raises(ValueError, match="logits"):
        loss_fn(torch.randn(4, 5), torch.zeros(4, dtype=torch.long))


# --- label-aware smoothing (§4, §8 "LAS") -------------------------------------------------------


def test_las_cifar100_if100_values():
    eps = label_aware_smoothing(CIFAR100_IF100, 0.4, 0.1, dtype=torch.float64)
    assert CIFAR100_IF100[0] == 500 and CIFAR100_IF100[-1] == 5
    assert eps[0].item() == pytest.approx(0.4, abs=1e-12)
    assert eps[-1].item() == pytest.approx(0.1, abs=1e-12)
    assert label_aware_smoothing([500, 48, 5], 0.4, 0.1)[1].item() == pytest.approx(0.140809, abs=1e-6)
    if 48 in CIFAR100_IF100:
        assert eps[CIFAR100_IF100.index(48)].item() == pytest.approx(0.140809, abs=1e-6)


def test_las_is_monotone_in_count():
    eps = label_aware_smoothing(CIFAR100_IF100, 0.4, 0.1)
    assert bool((eps[:-1] >= eps[1:]).all())


def test_las_with_zero_smoothing_is_cross_entropy():
    torch.manual_seed(4)
    logits, target = torch.randn(10, 5, dtype=torch.float64), torch.randint(0, 5, (10,))
    loss = LabelAwareSmoothingLoss([50, 30, 20, 10, 5], smooth_head=0.0, smooth_tail=0.0)(logits, target)
    assert torch.allclose(loss, F.cross_entropy(logits, target))


def test_las_with_uniform_smoothing_is_label_smoothing():
    torch.manual_seed(5)
    logits, target = torch.randn(10, 5, dtype=torch.float64), torch.randint(0, 5, (10,))
    loss = LabelAwareSmoothingLoss([7] * 5, smooth_head=0.3, smooth_tail=0.1)(logits, target)
    assert torch.allclose(loss, F.cross_entropy(logits, target, label_smoothing=0.3))


def test_las_matches_formula():
    torch.manual_seed(6)
    counts = [50, 30, 20, 10, 5]
    logits, target = torch.randn(10, 5, dtype=torch.float64), torch.randint(0, 5, (10,))
    eps = label_aware_smoothing(counts, 0.4, 0.1, dtype=torch.float64)[target]
    log_p = F.log_softmax(logits, dim=1)
    expected = ((1 - eps) * -log_p[torch.arange(10), target] + eps * -log_p.mean(dim=1)).mean()
    loss = LabelAwareSmoothingLoss(counts, 0.4, 0.1)(logits, target)
    assert torch.allclose(loss, expected, rtol=1e-6)


@pytest.mark.parametrize(
    "imbalance_factor, expected",
    [
        (200, (0.4, 0.0)),
        (100, (0.4, 0.1)),
        (51, (0.4, 0.1)),
        (50, (0.3, 0.0)),
        (21, (0.3, 0.0)),
        (20, (0.2, 0.0)),
        (1, (0.2, 0.0)),
    ],
)
def test_cifar_las_smoothing(imbalance_factor, expected):
    assert cifar_las_smoothing(imbalance_factor) == expected


def test_las_defaults_from_imbalance_factor():
    loss_fn = LabelAwareSmoothingLoss([100, 10, 1], imbalance_factor=100)
    assert (loss_fn.smooth_head, loss_fn.smooth_tail) == (0.4, 0.1)
    assert "smoothing" not in loss_fn.state_dict()
    with pytest.raises(ValueError, match="imbalance_factor"):
        LabelAwareSmoothingLoss([100, 10, 1])


def test_las_rejects_class_weights():
    loss_fn = LabelAwareSmoothingLoss([100, 10, 1], 0.4, 0.1)
    loss_fn.weight = torch.ones(3)
    with pytest.raises(ValueError, match="class weights"):
        loss_fn(torch.randn(2, 3), torch.tensor([0, 1]))
