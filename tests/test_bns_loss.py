"""BNS loss (docs/methods/ipdpp.md §2, §6 Q5, §7 "BNS"): reference form against golden vectors, paper form against loops."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from golden import assert_close, golden_cases, tol
from torch.nn import functional as F

from longtail.losses import BNSLoss
from longtail.losses.bns import _draw_without_replacement

TAU = 0.5


def _pair_term(q: torch.Tensor, positive: torch.Tensor, negatives: list[torch.Tensor]) -> torch.Tensor:
    """log σ(q·v⁺/τ) + Σ_j log σ(−q·v⁻_j/τ) for one anchor q."""
    term = F.logsigmoid(q @ positive / TAU)
    for v in negatives:
        term = term + F.logsigmoid(-(q @ v) / TAU)
    return term


def _loop_direction(emb_a, emb_b, labels, extra_anchors: dict[int, list[int]] | None = None) -> torch.Tensor:
    """Eq. 12 by a loop over anchors with every other-class negative; ``extra_anchors[i]`` = Q⁺_i (default all)."""
    q, v = F.normalize(emb_a, dim=1), F.normalize(emb_b, dim=1)
    losses = []
    for i in range(len(labels)):
        negatives = [v[j] for j in range(len(labels)) if labels[j] != labels[i]]
        if extra_anchors is None:
            extra = [k for k in range(len(labels)) if k != i and labels[k] == labels[i]]
        else:
            extra = extra_anchors.get(i, [])
        terms = [_pair_term(q[k], v[i], negatives) for k in [i, *extra]]
        losses.append(-torch.stack(terms).sum() / len(terms))
    return torch.stack(losses).mean()


def _loop_loss(emb1, emb2, labels, symmetric: bool, extra_anchors=None) -> torch.Tensor:
    forward = _loop_direction(emb1, emb2, labels, extra_anchors)
    if not symmetric:
        return forward
    return (forward + _loop_direction(emb2, emb1, labels, extra_anchors)) / 2


def _random_views(labels, dim=5, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    emb1 = torch.randn(len(labels), dim, generator=g, dtype=torch.float64, requires_grad=requires_grad)
    emb2 = torch.randn(len(labels), dim, generator=g, dtype=torch.float64, requires_grad=requires_grad)
    return emb1, emb2, torch.tensor(labels)


@pytest.mark.parametrize("d, case, dtype", golden_cases("bns_loss"))
def test_reference_form_golden(d, case, dtype):
    inputs, hp = case["inputs"], case["hyperparameters"]
    assert inputs["labels_i"] == inputs["labels_j"]
    emb_i = torch.tensor(inputs["emb_i"], dtype=dtype, requires_grad=True)
    emb_j = torch.tensor(inputs["emb_j"], dtype=dtype, requires_grad=True)
    assert hp["batch_size"] == len(emb_i)
    loss = BNSLoss(temperature=hp["temperature"], form="reference")(emb_i, emb_j, torch.tensor(inputs["labels_i"]))
    assert loss.dtype == dtype
    assert_close(loss, case["outputs"]["loss"], tol(d))
    loss.backward()
    assert_close(emb_i.grad, case["grads"]["emb_i"], tol(d))
    assert_close(emb_j.grad, case["grads"]["emb_j"], tol(d))


def test_reference_form_spec_value():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    views = torch.stack([e1, e2])
    loss = BNSLoss(temperature=TAU, form="reference")(views, views.clone(), torch.tensor([0, 1]))
    expected = -(F.logsigmoid(torch.tensor(math.exp(2.0))) + F.logsigmoid(torch.tensor(-0.5)))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert loss.item() == pytest.approx(0.974695, abs=1e-6)


@pytest.mark.parametrize("symmetric", [True, False])
def test_paper_form_spec_value(symmetric):
    # anchor i: q_i = v⁺_i = e_i (q·v⁺ = 1), one negative v_{1-i} = e_{1-i} (q·v⁻ = 0)
    views = torch.eye(2, dtype=torch.float64)
    loss_fn = BNSLoss(temperature=TAU, extra_anchors=0, negatives=1, symmetric=symmetric)
    loss = loss_fn(3.0 * views, views.clone(), torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-2.0)) + math.log(2.0), abs=1e-12)
    assert loss.item() == pytest.approx(0.820075, abs=1e-6)


@pytest.mark.parametrize("symmetric", [True, False])
def test_paper_form_without_extra_anchors_is_l_ns(symmetric):
    labels = [0, 1, 0, 2, 1, 0, 3, 2, 0, 1]
    emb1, emb2, y = _random_views(labels)
    loss = BNSLoss(temperature=TAU, extra_anchors=0, negatives=len(labels), symmetric=symmetric)(emb1, emb2, y)
    expected = _loop_loss(emb1, emb2, labels, symmetric, extra_anchors={})
    assert torch.allclose(loss, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("symmetric", [True, False])
def test_all_candidates_used_when_fewer_than_m_and_n(symmetric):
    # class sizes 4, 3, 1, 2: m = 5 exceeds every class, n = 50 exceeds every negative set;
    # class 2 has a single image (m_i = 0)
    labels = [0, 1, 0, 2, 0, 1, 3, 0, 1, 3]
    emb1, emb2, y = _random_views(labels, seed=1, requires_grad=True)
    loss = BNSLoss(temperature=TAU, extra_anchors=5, negatives=50, symmetric=symmetric)(emb1, emb2, y)
    expected = _loop_loss(emb1, emb2, labels, symmetric)
    assert torch.allclose(loss, expected, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(loss, (emb1, emb2))
    expected_grads = torch.autograd.grad(expected, (emb1, emb2))
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.isfinite(grad).all()
        assert torch.allclose(grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_extra_anchors_come_only_from_the_same_class():
    # m = 1 with classes of 3: each anchor draws one of its two class mates; every drawn loss must be
    # one of the 2^6 values of the loop with some same-class choice per anchor
    labels = [0, 1, 0, 1, 0, 1]
    emb1, emb2, y = _random_views(labels, seed=2)
    mates = {i: [k for k in range(6) if k != i and labels[k] == labels[i]] for i in range(6)}
    achievable = torch.stack(
        [
            _loop_direction(emb1, emb2, labels, {i: [k] for i, k in enumerate(choice)})
            for choice in itertools.product(*(mates[i] for i in range(6)))
        ]
    )
    loss_fn = BNSLoss(temperature=TAU, extra_anchors=1, negatives=6, symmetric=False)
    drawn = torch.stack([loss_fn(emb1, emb2, y, generator=torch.Generator().manual_seed(s)) for s in range(40)])
    distance = (drawn.unsqueeze(1) - achievable.unsqueeze(0)).abs().min(dim=1).values
    assert (distance < 1e-12).all()
    assert len(torch.unique(drawn)) > 5


def test_draws_are_distinct_candidates_of_the_requested_count():
    g = torch.Generator().manual_seed(0)
    candidates = torch.rand(50, 50, generator=g) < torch.linspace(0.0, 1.0, 50).unsqueeze(1)
    indices, valid = _draw_without_replacement(candidates, 7, g)
    assert indices.shape == valid.shape == (50, 7)
    assert torch.equal(valid.sum(1), candidates.sum(1).clamp(max=7))
    for row, (index, ok) in enumerate(zip(indices, valid)):
        chosen = index[ok]
        assert len(torch.unique(chosen)) == len(chosen)
        assert candidates[row, chosen].all()
    empty_indices, empty_valid = _draw_without_replacement(candidates, 0, g)
    assert empty_indices.shape == empty_valid.shape == (50, 0)


def test_negative_sampling_is_random_and_reproducible():
    labels = [0, 1, 2, 3, 0, 1, 2, 3, 4, 5]
    emb1, emb2, y = _random_views(labels, seed=3)
    loss_fn = BNSLoss(temperature=TAU, extra_anchors=1, negatives=3)
    first = loss_fn(emb1, emb2, y, generator=torch.Generator().manual_seed(7))
    again = loss_fn(emb1, emb2, y, generator=torch.Generator().manual_seed(7))
    other = loss_fn(emb1, emb2, y, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    torch.manual_seed(11)
    global_first = loss_fn(emb1, emb2, y)
    torch.manual_seed(11)
    assert torch.equal(loss_fn(emb1, emb2, y), global_first)


@pytest.mark.parametrize("form", ["paper", "reference"])
def test_gradient_reaches_both_views(form):
    labels = [0, 0, 1, 2, 1, 0]
    emb1, emb2, y = _random_views(labels, seed=4, requires_grad=True)
    BNSLoss(form=form)(emb1.float(), emb2.float(), y).backward()
    for grad in (emb1.grad, emb2.grad):
        assert torch.isfinite(grad).all()
        assert (grad.abs().sum(dim=1) > 0).all()


def test_batch_without_negatives_in_float32():
    emb1, emb2, y = _random_views([3, 3, 3, 3], seed=5)
    loss = BNSLoss(extra_anchors=3, negatives=4)(emb1.float(), emb2.float(), y)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(_loop_loss(emb1, emb2, [3, 3, 3, 3], True).item(), abs=1e-6)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="paper.*reference"):
        BNSLoss(form="other")
    with pytest.raises(ValueError):
        BNSLoss(temperature=0.0)
    with pytest.raises(ValueError):
        BNSLoss(negatives=-1)
    loss_fn = BNSLoss()
    with pytest.raises(ValueError, match="emb1 and emb2"):
        loss_fn(torch.zeros(4, 3), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="emb1 and emb2"):
        loss_fn(torch.zeros(4), torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        loss_fn(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(3, dtype=torch.long))
