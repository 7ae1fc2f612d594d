"""DRO-LT robust loss and "ce_lt" weighted CE (docs/methods/drolt.md §2, §5 D1/D9, §6) against golden vectors and hand checks."""

from __future__ import annotations

import math

import pytest
import torch
from golden import assert_close, golden_cases, tol
from torch.nn import functional as F

from longtail.losses import (
    FrequencyWeightedCE,
    RobustLoss,
    applied_epsilons,
    class_centroids,
    frequency_weights,
)

EPS_INDEX = {"reference": "reference", "paper_faithful": "paper"}


def _toy(eps):
    """docs/methods/drolt.md §6 toy: C = 2, d = 1, mu = [0, 1], z = [0, 1], y = [0, 1], T = 1."""
    features = torch.tensor([[0.0], [1.0]], dtype=torch.float64, requires_grad=True)
    centroids = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    epsilons = torch.tensor(eps, dtype=torch.float64, requires_grad=True)
    return RobustLoss(2)(features, torch.tensor([0, 1]), centroids, epsilons), features, epsilons


def _random_batch(seed=0, batch=10, dim=4, num_classes=6, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, dim, generator=g, dtype=dtype)
    targets = torch.tensor([3, 1, 3, 0, 1, 1, 3, 0, 4, 3])[:batch]
    centroids = torch.randn(num_classes, dim, generator=g, dtype=dtype)
    epsilons = torch.rand(num_classes, generator=g, dtype=dtype) * 2 - 0.5
    return features, targets, centroids, epsilons


@pytest.mark.parametrize("d, case, dtype", golden_cases("drolt_robust_loss"))
def test_robust_loss_golden(d, case, dtype):
    inputs, hp, out = case["inputs"], case["hyperparameters"], case["outputs"]
    tolerance = tol(d)
    num_classes = len(inputs["epsilons"])
    features = torch.tensor(inputs["batch_feats"], dtype=dtype, requires_grad=True)
    targets = torch.tensor(inputs["batch_targets"])
    epsilons = torch.tensor(inputs["epsilons"], dtype=dtype, requires_grad=True)
    centroids = class_centroids(
        torch.tensor(inputs["centroid_feats"], dtype=dtype), torch.tensor(inputs["centroid_targets"]), num_classes
    )
    assert_close(centroids, out["prototypes"], tolerance)

    eps_index = EPS_INDEX[case["variant"]]
    assert_close(applied_epsilons(targets, epsilons, num_classes, eps_index), out["epsilon_applied"], tolerance)
    if hp["cls_num_list_for_weights"] is not None:
        assert_close(frequency_weights(hp["cls_num_list_for_weights"]), hp["class_weights"], tolerance)

    loss_fn = RobustLoss(
        num_classes,
        temperature=hp["temperature"],
        base_temperature=hp["base_temperature"],
        eps_index=eps_index,
        class_weights=hp["class_weights"],
    )
    loss = loss_fn(features, targets, centroids, epsilons)
    assert_close(loss, out["loss"], tolerance)
    loss.backward()
    assert_close(features.grad, case["grads"]["batch_feats"], tolerance)
    assert_close(epsilons.grad, case["grads"]["epsilons"], tolerance)


@pytest.mark.parametrize("d, case, dtype", golden_cases("drolt_ce_lt"))
def test_ce_lt_golden(d, case, dtype):
    inputs, out = case["inputs"], case["outputs"]
    tolerance = tol(d)
    assert_close(frequency_weights(inputs["cls_num_list"]), out["class_weights"], tolerance)
    logits = torch.tensor(inputs["logits"], dtype=dtype, requires_grad=True)
    loss = FrequencyWeightedCE(inputs["cls_num_list"])(logits, torch.tensor(inputs["target"]))
    assert_close(loss, out["loss"], tolerance)
    loss.backward()
    assert_close(logits.grad, case["grads"]["logits"], tolerance)


def test_toy_values_and_finite_gradient_at_zero_distance():
    loss, features, epsilons = _toy([0.0, 0.0])
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-9)
    assert loss.item() == pytest.approx(0.313262, abs=1e-6)
    loss.backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(epsilons.grad).all()
    loss, _, _ = _toy([1.0, 1.0])
    assert loss.item() == pytest.approx(math.log(2.0), abs=1e-9)


@pytest.mark.parametrize("eps_index", ["paper", "reference"])
@pytest.mark.parametrize("temperature, eps", [(1.0, 1.0), (0.07, -0.3), (5.0, 2.5)])
def test_single_class_gives_log_batch_size(eps_index, temperature, eps):
    angles = torch.arange(6, dtype=torch.float64) * (2 * math.pi / 6)
    centroids = torch.tensor([[5.0, 5.0], [1.0, -2.0], [-3.0, 0.0]], dtype=torch.float64)
    features = centroids[1] + 0.7 * torch.stack([angles.cos(), angles.sin()], dim=1)
    epsilons = torch.full((3,), eps, dtype=torch.float64)
    loss_fn = RobustLoss(3, temperature=temperature, eps_index=eps_index)
    loss = loss_fn(features, torch.full((6,), 1), centroids, epsilons)
    assert loss.item() == pytest.approx(math.log(6), abs=1e-9)
    assert loss.item() == pytest.approx(1.791759, abs=1e-6)


def test_paper_mode_is_batch_order_invariant():
    features, targets, centroids, epsilons = _random_batch()
    loss_fn = RobustLoss(6, temperature=0.5)
    base = loss_fn(features, targets, centroids, epsilons)
    for seed in range(5):
        perm = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))
        assert torch.allclose(loss_fn(features[perm], targets[perm], centroids, epsilons), base, rtol=0, atol=1e-6)


def test_reference_mode_depends_on_order_unless_sorted():
    features, targets, centroids, epsilons = _random_batch()
    paper, reference = RobustLoss(6), RobustLoss(6, eps_index="reference")
    assert not torch.allclose(
        reference(features, targets, centroids, epsilons), paper(features, targets, centroids, epsilons)
    )
    order = torch.sort(targets, stable=True).indices
    sorted_args = (features[order], targets[order], centroids, epsilons)
    assert torch.allclose(reference(*sorted_args), paper(*sorted_args), rtol=0, atol=1e-12)


def test_reference_epsilon_assignment_example():
    targets = torch.tensor([3, 1, 3, 0, 2, 1])
    epsilons = torch.tensor([10.0, 11.0, 12.0, 13.0])
    applied = applied_epsilons(targets, epsilons, 4, "reference")
    received = {3: 13.0, 1: 11.0, 5: 13.0, 4: 10.0, 0: 12.0, 2: 11.0}
    expected = torch.zeros(4, 6)
    for sample, value in received.items():
        expected[targets[sample], sample] = value
    assert torch.equal(applied, expected)
    paper = applied_epsilons(targets, epsilons, 4, "paper")
    assert torch.equal(paper, F.one_hot(targets, 4).T * epsilons.unsqueeze(1))


@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_epsilon_gradient_formula(temperature):
    features, targets, centroids, epsilons = _random_batch(seed=3)
    epsilons.requires_grad_(True)
    loss = RobustLoss(6, temperature=temperature)(features, targets, centroids, epsilons)
    (grad,) = torch.autograd.grad(loss, epsilons)

    positive = torch.arange(6).unsqueeze(1) == targets.unsqueeze(0)
    distances = (centroids.unsqueeze(1) - features.unsqueeze(0)).norm(dim=-1)
    logits = -(distances + positive * epsilons.detach().unsqueeze(1)) / temperature
    prob = logits.softmax(dim=1)
    present = positive.any(dim=1)
    expected = torch.where(present, 1 - (prob * positive).sum(dim=1), 0.0) / temperature / present.sum()
    assert torch.allclose(grad, expected, rtol=1e-10, atol=1e-12)
    assert (grad >= 0).all()
    assert (grad[~present] == 0).all() and (grad[present] > 0).all()


def test_centroids_are_per_class_means_without_gradient():
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0], [5.0, -6.0], [-1.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 2, 0, 2])
    centroids = class_centroids(features, labels, 4)
    assert not centroids.requires_grad
    assert torch.allclose(centroids[0], torch.tensor([3.0, 0.0]))
    assert torch.allclose(centroids[2], torch.tensor([4.5, 0.0]))
    assert torch.isnan(centroids[[1, 3]]).all()

    given = centroids.clone().nan_to_num(0.0).requires_grad_(True)
    batch = torch.randn(4, 2, requires_grad=True)
    RobustLoss(4)(batch, torch.tensor([0, 2, 2, 1]), given, torch.ones(4)).backward()
    assert given.grad is None and batch.grad is not None


def test_classes_without_centroid_count_as_absent():
    features, targets, centroids, epsilons = _random_batch()
    features.requires_grad_(True)
    missing = centroids.clone()
    missing[4] = float("nan")
    loss = RobustLoss(6)(features, targets, missing, epsilons)
    loss.backward()
    assert torch.isfinite(features.grad).all()
    # Class 4's samples stay in the batch softmax; only its own term L_4 is dropped.
    only_with_centroid = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    expected = RobustLoss(6, class_weights=only_with_centroid)(features, targets, centroids, epsilons)
    assert torch.allclose(loss, expected, rtol=0, atol=1e-12)


def test_weighted_variant_and_base_temperature():
    features, targets, centroids, epsilons = _random_batch()
    weights = torch.tensor([1.0, 0.5, 0.25, 0.2, 0.1, 0.05], dtype=torch.float64)
    per_class = []
    for c in range(6):
        plain = RobustLoss(6, class_weights=F.one_hot(torch.tensor(c), 6).double())
        per_class.append(plain(features, targets, centroids, epsilons))
    expected = sum(w * term for w, term in zip(weights, per_class)) / weights.sum()
    weighted = RobustLoss(6, class_weights=weights)(features, targets, centroids, epsilons)
    assert torch.allclose(weighted, expected)
    halved = RobustLoss(6, temperature=0.5, base_temperature=1.0)(features, targets, centroids, epsilons)
    assert torch.allclose(halved, 0.5 * RobustLoss(6, temperature=0.5)(features, targets, centroids, epsilons))


def test_ce_lt_weights_and_weighted_mean():
    assert torch.equal(frequency_weights([5000, 50]), torch.tensor([1.0, 0.01]))
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5]])
    target = torch.tensor([0, 1, 1])
    loss = FrequencyWeightedCE([5000, 50])(logits, target)
    weights = torch.tensor([1.0, 0.01])[target]
    expected = (weights * F.cross_entropy(logits, target, reduction="none")).sum() / weights.sum()
    assert torch.allclose(loss, expected)
    assert torch.allclose(
        FrequencyWeightedCE([5000, 50], weight=[1.0, 1.0])(logits, target), F.cross_entropy(logits, target)
    )


def test_invalid_arguments():
    with pytest.raises(ValueError):
        RobustLoss(3, eps_index="other")
    with pytest.raises(ValueError):
        RobustLoss(3, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError):
        RobustLoss(3)(torch.zeros(2, 4), torch.tensor([0, 1]), torch.zeros(2, 4), torch.zeros(3))
    with pytest.raises(ValueError):
        frequency_weights([10, 0])
