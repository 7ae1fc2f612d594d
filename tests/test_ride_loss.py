"""RIDE loss, distillation loss (docs/methods/ride.md §2, §6 R1/R2/R3/R9, §7) against golden vectors and hand checks."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from golden import assert_close, golden_cases, tol
from torch.nn import functional as F

from longtail.losses import (
    BalancedSoftmaxLoss,
    CrossEntropy,
    DistillationLoss,
    LDAMLoss,
    RIDEDistillLoss,
    RIDELoss,
    class_balanced_weights,
    ride_temperatures,
)

COUNTS = [500, 200, 80, 30, 10]
CIFAR100_IF100 = [int(500 * 0.01 ** (i / 99)) for i in range(100)]


def _ride_kwargs(case):
    """RIDELoss keyword arguments for a golden case; the reference variant turns on its quirk flag."""
    hp = case["hyperparameters"]
    counts = case["inputs"]["cls_num_list"]
    return dict(
        class_counts=counts,
        base_loss=None if counts is None else partial(LDAMLoss, max_m=hp["max_m"], scale=float(hp["s"])),
        base_loss_factor=hp.get("base_loss_factor", 1.0),
        diversity_factor=hp["additional_diversity_factor"],
        reweight_factor=hp["reweight_factor"],
        temperature=hp["base_diversity_temperature"],
        collaborative_when_zero=case["variant"] == "reference",
    )


def _inputs(case, dtype):
    logits = torch.tensor(case["inputs"]["expert_logits"], dtype=dtype, requires_grad=True)
    return logits, torch.tensor(case["inputs"]["target"])


def _deferred(case):
    """Golden ``epoch`` is 1-based and DRW is on when ``epoch > reweight_epoch`` (R9)."""
    hp = case["hyperparameters"]
    return hp["epoch"] > hp["reweight_epoch"]


def _random_logits(experts=3, batch=8, classes=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = 20 * torch.randn(experts, batch, classes, generator=g, dtype=dtype)
    return logits, torch.randint(0, classes, (batch,), generator=g)


@pytest.mark.parametrize("golden,case,dtype", golden_cases("ride_loss"))
def test_ride_loss_golden(golden, case, dtype):
    tolerance = tol(golden)
    loss_fn = RIDELoss(**_ride_kwargs(case))
    loss_fn.deferred = _deferred(case)
    logits, target = _inputs(case, dtype)
    loss = loss_fn(logits, target)
    loss.backward()
    assert_close(loss, case["outputs"]["loss"], tolerance)
    assert_close(logits.grad, case["grads"]["expert_logits"], tolerance)

    outputs = case["outputs"]
    if outputs.get("m_list") is not None:
        assert_close(loss_fn.base_loss.margins, outputs["m_list"], tolerance)
    if "drw_weights_active" in outputs:
        expected = outputs["drw_weights_active"]
        assert (loss_fn.base_loss.weight is None) == (expected is None)
        if expected is not None:
            assert_close(loss_fn.base_loss.weight, expected, tolerance)
    if "diversity_temperature_active" in outputs:
        expected = outputs["diversity_temperature_active"]
        temperature, _ = loss_fn.diversity_temperature()
        assert isinstance(temperature, torch.Tensor) == (expected is not None)
        if expected is not None:
            assert_close(temperature, expected, tolerance)


@pytest.mark.parametrize("golden,case,dtype", golden_cases("ride_distill_loss"))
def test_ride_distill_loss_golden(golden, case, dtype):
    tolerance = tol(golden)
    hp = case["hyperparameters"]
    kwargs = _ride_kwargs(case)
    loss_fn = RIDEDistillLoss(
        distill_temperature=hp["distill_temperature"],
        ride_loss_factor=hp["ride_loss_factor"],
        distill_loss_factor=hp["additional_distill_loss_factor"],
        distill_times_experts=kwargs["collaborative_when_zero"],
        **kwargs,
    )
    loss_fn.deferred = _deferred(case)
    assert loss_fn.ride.deferred == _deferred(case)
    logits, target = _inputs(case, dtype)
    teacher = torch.tensor(case["inputs"]["teacher_logits"], dtype=dtype)
    loss = loss_fn(logits, target, teacher)
    loss.backward()
    assert_close(loss, case["outputs"]["loss"], tolerance)
    assert_close(logits.grad, case["grads"]["expert_logits"], tolerance)
    if "kd_term" in case["outputs"]:
        assert_close(loss_fn.distill(logits.mean(0), teacher), case["outputs"]["kd_term"], tolerance)
        assert_close(loss_fn.ride(logits, target), case["outputs"]["ride_term"], tolerance)


def test_temperatures_cifar100_if100():
    temperatures, mean = ride_temperatures(CIFAR100_IF100, reweight_factor=0.05)
    assert temperatures.shape == (100,)
    assert temperatures[0].item() == pytest.approx(1.0, abs=1e-6)
    assert temperatures[99].item() == pytest.approx(0.806711, abs=1e-6)
    assert mean.item() == pytest.approx(0.847114, abs=1e-6)
    assert temperatures.max().item() == pytest.approx(1.0, abs=1e-12)
    assert ride_temperatures(CIFAR100_IF100, 0.05, base=2.0)[0].max().item() == pytest.approx(2.0)


def test_temperatures_reject_nonpositive():
    with pytest.raises(ValueError):
        ride_temperatures([1000, 1], reweight_factor=5.0)


def test_ensemble_is_mean_and_kl_target_detached():
    """The KL target is softmax(mean_k z^(k) / T) with no gradient: zeroing the base loss isolates the KL term."""
    logits, target = _random_logits()
    loss_fn = RIDELoss(COUNTS, base_loss_factor=0.0, diversity_factor=1.0)
    loss_fn.deferred = True
    temperature, mean_t = loss_fn.diversity_temperature()
    temperature = temperature.double()
    p = F.softmax(logits.mean(0) / temperature, dim=-1)
    expected = sum(
        mean_t**2 * (p * (p.log() - F.log_softmax(z / temperature, dim=-1))).sum() / len(target) for z in logits
    )
    torch.testing.assert_close(loss_fn(logits, target), expected)


@pytest.mark.parametrize("deferred", [False, True])
@pytest.mark.parametrize("alpha", [-0.45, 0.0])
def test_identical_experts_give_e_times_ldam(deferred, alpha):
    logits, target = _random_logits(experts=1)
    logits = logits.expand(3, -1, -1)
    loss_fn = RIDELoss(COUNTS, diversity_factor=alpha)
    loss_fn.deferred = deferred
    ldam = LDAMLoss(COUNTS, max_m=0.5, scale=30.0, weight=class_balanced_weights(COUNTS, 0.9999) if deferred else None)
    torch.testing.assert_close(loss_fn(logits, target), 3 * ldam(logits[0], target))


def test_diversity_step_increases_kl():
    """With alpha < 0, a small descent step on the diversity term alone moves expert k away from the fixed ensemble."""
    logits, target = _random_logits(seed=1)
    loss_fn = RIDELoss(COUNTS, base_loss_factor=0.0, diversity_factor=-0.45)
    loss_fn.deferred = True
    temperature = loss_fn.class_temperatures.double()
    p = F.softmax(logits.mean(0) / temperature, dim=-1)

    def kl(z):
        return (p * (p.log() - F.log_softmax(z / temperature, dim=-1))).sum() / len(target)

    z = logits.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(z, target), z)
    stepped = logits - 1e-2 * grad
    for k in range(3):
        assert grad[k].abs().sum() > 0
        assert kl(stepped[k]) > kl(logits[k])


@pytest.mark.parametrize("deferred", [False, True])
def test_no_gradient_through_ensemble_target(deferred):
    """dKL_k/dz^(j) = 0 for j != k, and dKL_k/dz^(k) = (q^k - p) / (T B) with p = softmax(zbar / T) constant.

    (The summed loss cannot show the stop-gradient: p, the normalised geometric mean of the q^k, minimises
    sum_k KL(p || q^k), so the gradient through zbar cancels over experts. Each KL_k shows it.)
    """
    logits, target = _random_logits(seed=2)
    loss_fn = RIDELoss(COUNTS)
    loss_fn.deferred = deferred
    temperature, _ = loss_fn.diversity_temperature()
    if isinstance(temperature, torch.Tensor):
        temperature = temperature.double()
    p = F.softmax(logits.mean(0) / temperature, dim=-1)
    z = logits.clone().requires_grad_(True)
    kl = loss_fn.diversity_kl(z)
    assert kl.shape == (3,)
    for k in range(3):
        (grad,) = torch.autograd.grad(kl[k], z, retain_graph=True)
        q = F.softmax(logits[k] / temperature, dim=-1)
        torch.testing.assert_close(grad[k], (q - p) / temperature / len(target))
        assert all(grad[j].abs().max() == 0 for j in range(3) if j != k)


@pytest.mark.parametrize("deferred", [False, True])
def test_alpha_zero_collaborative_and_default(deferred):
    logits, target = _random_logits(seed=4)
    weight = class_balanced_weights(COUNTS, 0.9999) if deferred else None
    ldam = LDAMLoss(COUNTS, max_m=0.5, scale=30.0, weight=weight)
    collaborative = RIDELoss(COUNTS, diversity_factor=0.0, collaborative_when_zero=True)
    default = RIDELoss(COUNTS, diversity_factor=0.0)
    collaborative.deferred = default.deferred = deferred
    torch.testing.assert_close(collaborative(logits, target), 3 * ldam(logits.mean(0), target))
    torch.testing.assert_close(default(logits, target), sum(ldam(z, target) for z in logits))


def test_collaborative_flag_ignored_when_alpha_nonzero():
    logits, target = _random_logits(seed=5)
    a = RIDELoss(COUNTS, diversity_factor=-0.2, collaborative_when_zero=True)
    b = RIDELoss(COUNTS, diversity_factor=-0.2)
    torch.testing.assert_close(a(logits, target), b(logits, target))


def test_kd_zero_when_teacher_equals_student_mean():
    logits, _ = _random_logits(seed=6)
    ensemble = logits.mean(0)
    assert DistillationLoss(1.5)(ensemble, ensemble.clone()).abs().item() < 1e-12


def test_kd_formula_and_teacher_detached():
    student, _ = _random_logits(experts=1, seed=7)
    teacher, _ = _random_logits(experts=1, seed=8)
    teacher = teacher[0].requires_grad_(True)
    student = student[0].requires_grad_(True)
    loss = DistillationLoss(1.5)(student, teacher)
    expected = 1.5**2 * F.kl_div(F.log_softmax(student / 1.5, -1), F.softmax(teacher / 1.5, -1), reduction="batchmean")
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert teacher.grad is None and student.grad is not None


def test_distill_times_experts_multiplies_by_e():
    logits, target = _random_logits(experts=4, seed=9)
    teacher = _random_logits(experts=1, seed=10)[0][0]
    single = RIDEDistillLoss(COUNTS, distill_times_experts=False, diversity_factor=-0.2)
    times = RIDEDistillLoss(COUNTS, distill_times_experts=True, diversity_factor=-0.2)
    torch.testing.assert_close(times(logits, target, teacher), 4 * single(logits, target, teacher))
    torch.testing.assert_close(
        single(logits, target, teacher), single.ride(logits, target) + single.distill(logits.mean(0), teacher)
    )


@pytest.mark.parametrize("drw_start", [160])
def test_deferred_switch_at_drw_start(drw_start):
    """The method sets ``deferred = current_epoch >= drw_start``: epoch 159 is plain, epoch 160 switches."""
    logits, target = _random_logits(classes=100, seed=11)
    target = torch.tensor([0, 10, 50, 99, 99, 1, 70, 30])
    loss_fn = RIDELoss(CIFAR100_IF100, reweight_factor=0.05)
    results = {}
    for epoch in (159, 160):
        loss_fn.deferred = epoch >= drw_start
        results[epoch] = (loss_fn.base_loss.weight, loss_fn.diversity_temperature(), loss_fn(logits, target))
    weight, (temperature, mean_t), _ = results[159]
    assert weight is None and temperature == 1.0 and mean_t == 1.0
    weight, (temperature, mean_t), _ = results[160]
    torch.testing.assert_close(weight, class_balanced_weights(CIFAR100_IF100, 0.9999))
    torch.testing.assert_close(temperature, ride_temperatures(CIFAR100_IF100, 0.05)[0].float())
    assert mean_t == pytest.approx(0.847114, abs=1e-6)
    assert not torch.allclose(results[159][2], results[160][2])
    loss_fn.deferred = False
    assert loss_fn.base_loss.weight is None


def test_distill_proxies_deferred():
    loss_fn = RIDEDistillLoss(COUNTS)
    assert loss_fn.deferred is False
    loss_fn.deferred = True
    assert loss_fn.ride.deferred and loss_fn.ride.base_loss.weight is not None


def test_buffers_not_persistent_and_move_with_module():
    loss_fn = RIDELoss(COUNTS)
    loss_fn.deferred = True
    assert loss_fn.state_dict() == {}
    loss_fn = loss_fn.to(torch.float64)
    assert loss_fn.base_loss.weight.dtype == torch.float64
    assert loss_fn.class_temperatures.dtype == torch.float64


def test_no_class_counts_uses_plain_ce():
    logits, target = _random_logits(seed=12)
    loss_fn = RIDELoss(None, diversity_factor=-0.45)
    assert isinstance(loss_fn.base_loss, CrossEntropy)
    loss_fn.deferred = True
    assert loss_fn.base_loss.weight is None
    assert loss_fn.diversity_temperature() == (1.0, 1.0)
    base = sum(F.cross_entropy(z, target) for z in logits)
    p = F.softmax(logits.mean(0), dim=-1)
    kl = sum((p * (p.log() - F.log_softmax(z, dim=-1))).sum() / len(target) for z in logits)
    torch.testing.assert_close(loss_fn(logits, target), base - 0.45 * kl)


@pytest.mark.parametrize("deferred", [False, True])
def test_balanced_softmax_per_expert(deferred):
    logits, target = _random_logits(seed=13)
    loss_fn = RIDELoss(COUNTS, base_loss=partial(BalancedSoftmaxLoss), diversity_factor=-0.45)
    loss_fn.deferred = deferred
    z = logits.clone().requires_grad_(True)
    loss = loss_fn(z, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0

    plain = RIDELoss(COUNTS, base_loss=partial(BalancedSoftmaxLoss), diversity_factor=0.0)
    plain.deferred = deferred
    bs = BalancedSoftmaxLoss(COUNTS, weight=class_balanced_weights(COUNTS, 0.9999) if deferred else None)
    torch.testing.assert_close(plain(logits, target), sum(bs(zk, target) for zk in logits))


def test_static_base_loss_weight_kept_before_drw():
    """A weight configured on the base loss applies until the DRW switch, which replaces it (issue 17, item 10)."""
    logits, target = _random_logits(seed=14)
    static = torch.linspace(0.5, 2.0, len(COUNTS))
    loss_fn = RIDELoss(COUNTS, base_loss=partial(CrossEntropy, weight=static), diversity_factor=0.0)
    loss_fn.deferred = False
    torch.testing.assert_close(loss_fn.base_loss.weight, static)
    weighted = sum(F.cross_entropy(z, target, weight=static.to(z.dtype)) for z in logits)
    torch.testing.assert_close(loss_fn(logits, target), weighted)
    loss_fn.deferred = True
    torch.testing.assert_close(loss_fn.base_loss.weight, class_balanced_weights(COUNTS, 0.9999))
    loss_fn.deferred = False
    torch.testing.assert_close(loss_fn.base_loss.weight, static)
