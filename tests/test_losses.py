"""Losses of docs/methods/baselines.md §1 against the golden vectors and the hand numbers of docs/methods/baselines.md §7."""

from __future__ import annotations

import math

import pytest
import torch
from golden import load_golden, tol
from torch.nn import functional as F

from longtail.losses import (
    BalancedSoftmaxLoss,
    CrossEntropy,
    DeferredReweighting,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    class_balanced_weights,
    posthoc_adjust,
)

DTYPES = [torch.float32, torch.float64]
CIFAR10_IF100 = [int(5000 * 0.01 ** (i / 9)) for i in range(10)]
CIFAR100_IF100 = [int(500 * 0.01 ** (i / 99)) for i in range(100)]


def _cases(name):
    d = load_golden(name)
    return [pytest.param(d, case, id=case["name"]) for case in d["cases"]]


def _t(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


def _assert_close(actual, expected, tolerance):
    expected = torch.as_tensor(expected, dtype=torch.float64)
    actual = actual.detach().to(torch.float64)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, **tolerance), (actual, expected)


def _loss_and_grad(loss_fn, x, target, transform=lambda x: x):
    x = x.clone().requires_grad_(True)
    loss = loss_fn(transform(x), target)
    (grad,) = torch.autograd.grad(loss, x)
    return loss, grad


# --- golden vectors -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d, case", _cases("ldam_loss"))
def test_ldam_golden(d, case, dtype):
    hp, inp = case["hyperparameters"], case["inputs"]
    s = hp["s"]
    loss_fn = LDAMLoss(class_counts=inp["cls_num_list"], max_m=hp["max_m"], scale=s)
    loss_fn.weight = None if hp["weight"] is None else _t(hp["weight"], torch.float32)
    x, target = _t(inp["x"], dtype), torch.tensor(inp["target"])
    loss, grad = _loss_and_grad(loss_fn, x, target, transform=lambda x: s * x)
    assert loss.dtype == dtype
    _assert_close(loss_fn.margins, case["outputs"]["m_list"], tol(d))
    _assert_close(loss, case["outputs"]["loss"], tol(d))
    _assert_close(grad, case["grads"]["x"], tol(d))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d, case", _cases("focal_loss"))
def test_focal_golden(d, case, dtype):
    hp, inp = case["hyperparameters"], case["inputs"]
    loss_fn = FocalLoss(
        class_counts=hp["cls_num_list_for_weight"],
        gamma=hp["gamma"],
        pt_from_weighted_ce=case["variant"] == "reference",
    )
    loss_fn.weight = None if hp["weight"] is None else _t(hp["weight"], torch.float32)
    loss, grad = _loss_and_grad(loss_fn, _t(inp["input"], dtype), torch.tensor(inp["target"]))
    _assert_close(loss, case["outputs"]["loss"], tol(d))
    _assert_close(grad, case["grads"]["input"], tol(d))


def test_focal_default_is_paper_faithful():
    d = load_golden("focal_loss")
    case = next(c for c in d["cases"] if c["variant"] == "paper_faithful")
    loss_fn = FocalLoss(gamma=case["hyperparameters"]["gamma"], weight=case["hyperparameters"]["weight"])
    loss = loss_fn(_t(case["inputs"]["input"]), torch.tensor(case["inputs"]["target"]))
    _assert_close(loss, case["outputs"]["loss"], tol(d))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d, case", _cases("balanced_softmax_loss"))
def test_balanced_softmax_golden(d, case, dtype):
    inp = case["inputs"]
    loss_fn = BalancedSoftmaxLoss(class_counts=inp["cls_num_list"])
    logits, target = _t(inp["logits"], dtype), torch.tensor(inp["target"])
    loss, grad = _loss_and_grad(loss_fn, logits, target)
    per_sample = F.cross_entropy(logits + loss_fn.log_prior.to(dtype), target, reduction="none")
    _assert_close(loss_fn.log_prior, case["outputs"]["log_prior"], tol(d))
    _assert_close(per_sample, case["outputs"]["per_sample_loss"], tol(d))
    _assert_close(loss, case["outputs"]["loss"], tol(d))
    _assert_close(grad, case["grads"]["logits"], tol(d))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d, case", _cases("logit_adjusted_loss"))
def test_logit_adjusted_golden(d, case, dtype):
    inp, tau = case["inputs"], case["hyperparameters"]["tau"]
    loss_fn = LogitAdjustedLoss(class_counts=inp["cls_num_list"], tau=tau)
    logits, target = _t(inp["logits"], dtype), torch.tensor(inp["target"])
    loss, grad = _loss_and_grad(loss_fn, logits, target)
    _assert_close(loss, case["outputs"]["loss"], tol(d))
    _assert_close(grad, case["grads"]["logits"], tol(d))
    adjusted = posthoc_adjust(logits, inp["cls_num_list"], tau)
    assert adjusted.dtype == dtype
    _assert_close(adjusted, case["outputs"]["adjusted_logits_posthoc"], tol(d))
    assert adjusted.argmax(1).tolist() == case["outputs"]["predictions_posthoc"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d, case", _cases("drw_class_weights"))
def test_class_balanced_weights_golden(d, case, dtype):
    weights = class_balanced_weights(case["inputs"]["cls_num_list"], case["hyperparameters"]["beta"], dtype=dtype)
    assert weights.dtype == dtype
    _assert_close(weights, case["outputs"]["per_cls_weights"], tol(d))


# --- LDAM (§7) ----------------------------------------------------------------------------------


def test_ldam_margins_two_classes():
    assert torch.allclose(LDAMLoss(class_counts=[5000, 50]).margins, _t([0.158114, 0.5], torch.float32), atol=1e-6)


def test_ldam_margins_cifar10_lt():
    expected = [0.1581, 0.1797, 0.2042, 0.2321, 0.2638, 0.2998, 0.3407, 0.3872, 0.4405, 0.5000]
    assert CIFAR10_IF100 == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert torch.allclose(LDAMLoss(class_counts=CIFAR10_IF100).margins, _t(expected, torch.float32), atol=1e-4)


def test_ldam_equal_counts_give_max_margin():
    assert torch.equal(LDAMLoss(class_counts=[7] * 6, max_m=0.5).margins, torch.full((6,), 0.5))


def test_ldam_only_target_logit_changes():
    torch.manual_seed(0)
    counts, s = [5000, 500, 50], 30.0
    loss_fn = LDAMLoss(class_counts=counts, scale=s)
    cos = torch.rand(8, 3, dtype=torch.float64) * 2 - 1
    target = torch.randint(0, 3, (8,))
    logits = s * cos
    expected_logits = logits - s * F.one_hot(target, 3) * loss_fn.margins.double()[target, None]
    assert torch.allclose(loss_fn(logits, target), F.cross_entropy(expected_logits, target), rtol=1e-12, atol=0)
    unit = torch.zeros(1, 3, dtype=torch.float64)
    for y in range(3):
        shifted = F.log_softmax(unit - s * F.one_hot(torch.tensor([y]), 3) * loss_fn.margins.double()[y], dim=1)
        assert torch.allclose(loss_fn(unit, torch.tensor([y])), -shifted[0, y])


# --- class-balanced weights, weighted CE, DRW (§7) ----------------------------------------------


@pytest.mark.parametrize(
    "beta, expected", [(0.9999, [0.025034, 1.974966]), (0.999, [0.093649, 1.906351]), (0.0, [1.0, 1.0])]
)
def test_cb_weights_two_classes(beta, expected):
    weights = class_balanced_weights([5000, 50], beta)
    assert weights.dtype == torch.float32
    assert torch.allclose(weights, _t(expected, torch.float32), atol=1e-6)
    assert torch.allclose(weights.sum(), torch.tensor(2.0))


def test_cb_weights_cifar100_lt():
    weights = class_balanced_weights(CIFAR100_IF100, 0.9999, dtype=torch.float64)
    assert abs(float(weights[0]) - 0.044876) < 1e-6
    assert abs(float(weights[99]) - 4.378313) < 1e-6
    assert math.isclose(float(weights.sum()), 100.0, rel_tol=1e-12)


def test_cb_weights_reject_invalid_input():
    with pytest.raises(ValueError):
        class_balanced_weights([10, 0], 0.9)
    with pytest.raises(ValueError):
        class_balanced_weights([10, 5], 1.0)


def test_weighted_ce_semantics_and_rescaling_invariance():
    torch.manual_seed(1)
    logits, target = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 5, (16,))
    w = torch.rand(5, dtype=torch.float64) + 0.1
    per_sample = F.cross_entropy(logits, target, reduction="none")
    expected = (w[target] * per_sample).sum() / w[target].sum()
    loss_fn = CrossEntropy(class_counts=[1, 2, 3, 4, 5], weight=w)
    assert torch.allclose(loss_fn(logits, target), expected, rtol=1e-12, atol=0)
    loss_fn.weight = 7.3 * w
    assert torch.allclose(loss_fn(logits, target), expected, rtol=1e-12, atol=0)
    loss_fn.weight = None
    assert torch.allclose(loss_fn(logits, target), per_sample.mean(), rtol=1e-12, atol=0)


def test_deferred_reweighting_schedule():
    drw = DeferredReweighting(start_epoch=160)
    assert drw.weights(0, CIFAR10_IF100) is None
    assert drw.weights(159, CIFAR10_IF100) is None
    for epoch in (160, 199):
        weights = drw.weights(epoch, CIFAR10_IF100)
        assert weights.dtype == torch.float32
        assert torch.equal(weights, class_balanced_weights(CIFAR10_IF100, 0.9999))
    never = DeferredReweighting(start_epoch=None)
    assert all(never.weights(e, CIFAR10_IF100) is None for e in (0, 160, 10_000))
    assert torch.equal(DeferredReweighting(0, beta=0.999).weights(0, [5, 3]), class_balanced_weights([5, 3], 0.999))


@pytest.mark.parametrize("loss_cls", [CrossEntropy, LDAMLoss])
def test_drw_switches_loss_weighting(loss_cls):
    torch.manual_seed(2)
    counts = CIFAR10_IF100
    loss_fn = loss_cls(class_counts=counts)
    drw = DeferredReweighting(start_epoch=160, beta=0.9999)
    logits, target = 30 * (torch.rand(12, 10) * 2 - 1), torch.randint(0, 10, (12,))
    margins = loss_fn.margins if loss_cls is LDAMLoss else torch.zeros(10)
    shifted = logits - 30 * F.one_hot(target, 10) * margins[target, None]

    loss_fn.weight = drw.weights(159, counts)
    assert torch.allclose(loss_fn(logits, target), F.cross_entropy(shifted, target))
    loss_fn.weight = drw.weights(160, counts)
    cb = class_balanced_weights(counts, 0.9999)
    assert torch.allclose(loss_fn(logits, target), F.cross_entropy(shifted, target, weight=cb))


# --- focal (§7) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pt_from_weighted_ce", [False, True])
def test_focal_gamma0_is_ce(pt_from_weighted_ce):
    torch.manual_seed(3)
    logits, target = torch.randn(32, 7, dtype=torch.float64), torch.randint(0, 7, (32,))
    loss_fn = FocalLoss(gamma=0.0, pt_from_weighted_ce=pt_from_weighted_ce)
    assert abs(float(loss_fn(logits, target) - F.cross_entropy(logits, target))) < 1e-7


@pytest.mark.parametrize("gamma, expected", [(1.0, 0.346574), (2.0, 0.173287)])
def test_focal_at_half_probability(gamma, expected):
    loss = FocalLoss(gamma=gamma)(torch.zeros(1, 2), torch.tensor([0]))
    assert abs(float(loss) - expected) < 1e-6


def test_focal_weighted_is_plain_batch_mean():
    torch.manual_seed(4)
    logits, target = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 4, (10,))
    w = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    p = F.softmax(logits, 1).gather(1, target[:, None]).squeeze(1)
    expected = (w[target] * (1 - p) ** 2 * -p.log()).mean()
    assert torch.allclose(FocalLoss(gamma=2.0, weight=w)(logits, target), expected, rtol=1e-12, atol=0)


# --- Balanced Softmax and logit adjustment (§7) -------------------------------------------------


def test_balanced_softmax_zero_logits():
    loss_fn = BalancedSoftmaxLoss(class_counts=[5000, 50])
    zeros = torch.zeros(1, 2)
    assert abs(float(loss_fn(zeros, torch.tensor([1]))) - 4.615121) < 1e-5
    assert abs(float(loss_fn(zeros, torch.tensor([0]))) - 0.009950) < 1e-6
    assert math.isclose(float(loss_fn(zeros.double(), torch.tensor([1]))), math.log(101), rel_tol=1e-7)


def test_balanced_softmax_finite_for_huge_logits():
    loss_fn = BalancedSoftmaxLoss(class_counts=[5000, 500, 50])
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, -1e4, 1e4]], requires_grad=True)
    loss = loss_fn(logits, torch.tensor([1, 0, 2]))
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(logits.grad).all())
    assert float(loss.detach()) > 1e3


def test_logit_adjusted_tau1_equals_balanced_softmax():
    torch.manual_seed(5)
    counts = CIFAR100_IF100
    logits, target = 5 * torch.randn(64, 100), torch.randint(0, 100, (64,))
    la = LogitAdjustedLoss(class_counts=counts, tau=1.0)(logits, target)
    bs = BalancedSoftmaxLoss(class_counts=counts)(logits, target)
    assert abs(float(la - bs)) < 1e-6


def test_posthoc_tau0_is_argmax():
    torch.manual_seed(6)
    logits = torch.randn(50, 10)
    adjusted = posthoc_adjust(logits, CIFAR10_IF100, 0.0)
    assert torch.equal(adjusted.argmax(1), logits.argmax(1))


def test_posthoc_flips_head_prediction():
    logits = torch.tensor([[math.log(5000) - 0.1, math.log(50)]])
    assert int(logits.argmax(1)) == 0
    assert int(posthoc_adjust(logits, [5000, 50], 1.0).argmax(1)) == 1


# --- uniform API --------------------------------------------------------------------------------

ALL_LOSSES = [
    lambda c: CrossEntropy(class_counts=c),
    lambda c: FocalLoss(class_counts=c, gamma=1.0),
    lambda c: FocalLoss(class_counts=c, gamma=1.0, pt_from_weighted_ce=True),
    lambda c: LDAMLoss(class_counts=c, max_m=0.5, scale=30.0),
    lambda c: BalancedSoftmaxLoss(class_counts=c),
    lambda c: LogitAdjustedLoss(class_counts=c, tau=1.0),
]


@pytest.mark.parametrize("make", ALL_LOSSES)
def test_uniform_api(make):
    counts = torch.tensor([50, 20, 5])
    loss_fn = make(counts)
    assert loss_fn.weight is None
    assert loss_fn.state_dict() == {}
    logits, target = torch.randn(6, 3, requires_grad=True), torch.tensor([0, 1, 2, 2, 1, 0])
    plain = loss_fn(logits, target)
    assert plain.ndim == 0 and torch.isfinite(plain)

    loss_fn.weight = class_balanced_weights(counts, 0.9999)
    weighted = loss_fn(logits, target)
    assert torch.isfinite(weighted) and not torch.allclose(weighted, plain)
    weighted.backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())

    loss_fn = loss_fn.to(torch.float64)
    assert all(b.dtype == torch.float64 for b in loss_fn.buffers())
    assert torch.allclose(loss_fn(logits.detach().double(), target), weighted.detach().double(), rtol=1e-5)
    loss_fn.weight = torch.ones(3)
    assert torch.allclose(loss_fn(logits.detach(), target), plain.detach(), rtol=1e-6)
    loss_fn.weight = None
    assert torch.allclose(loss_fn(logits.detach(), target), plain.detach())
