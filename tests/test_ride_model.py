"""RIDE network, expert router and FLOPs (docs/methods/ride.md §1, §3, §7; golden ``ride_ea_router.json``)."""

from __future__ import annotations

import pytest
import torch
from golden import load_golden, tol
from torch import nn

from longtail.models.experts import RIDENetwork
from longtail.models.router import ExpertRouter
from longtail.reporting.flops import gflops, ride_gflops

GOLDEN = load_golden("ride_ea_router")
CASES = GOLDEN["cases"]
TOL = tol(GOLDEN)


def small_network(num_experts: int = 3, num_classes: int = 10) -> RIDENetwork:
    torch.manual_seed(0)
    return RIDENetwork("resnet8", num_classes=num_classes, num_experts=num_experts).eval()


def expert_widths(expert) -> list[int]:
    return [stage[-1].bn2.num_features for stage in expert.stages]


# --- network --------------------------------------------------------------------------------


def test_cifar_resnet32_reduced_widths_and_shapes():
    net = RIDENetwork("resnet32", num_classes=100, num_experts=3).eval()
    assert net.feature_dim == 48 and net.num_experts == 3 and net.num_classes == 100
    assert len(net.experts) == 3 and isinstance(net.experts, nn.ModuleList)
    for expert in net.experts:
        assert expert_widths(expert) == [24, 48]
        assert [len(stage) for stage in expert.stages] == [5, 5]
        assert expert.head.weight.shape == (48, 100) and expert.head.scale == 30.0
        assert not any("bias" in name for name, _ in expert.head.named_parameters())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        h = net.shared(x)
        assert h.shape == (4, 16, 32, 32)
        logits, features = net.expert(1, h)
        assert logits.shape == (4, 100) and features.shape == (4, 48)
        expert_logits, expert_features = net.forward_experts(x)
        assert expert_logits.shape == (3, 4, 100) and expert_features.shape == (3, 4, 48)
        torch.testing.assert_close(expert_logits[1], logits)
        torch.testing.assert_close(net(x), expert_logits.mean(0))
        torch.testing.assert_close(net.forward_first(x, 2), expert_logits[:2].mean(0))
        torch.testing.assert_close(net.forward_first(x, 1), expert_logits[0])


def test_cifar_standard_widths_without_reduction():
    net = RIDENetwork("resnet32", num_classes=10, reduce_dimension=False)
    assert net.feature_dim == 64
    assert all(expert_widths(e) == [32, 64] for e in net.experts)


def test_experts_are_initialised_independently():
    net = small_network()
    w = [e.stages[0][0].conv1.weight for e in net.experts]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])


@pytest.mark.parametrize(
    ("backbone", "dim", "trunk_channels"),
    [("resnet10", 384, 128), ("resnet50", 1536, 512), ("resnext50_32x4d", 1536, 512)],
)
def test_imagenet_family(backbone, dim, trunk_channels):
    net = RIDENetwork(backbone, num_classes=7, num_experts=2).eval()
    assert net.feature_dim == dim
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        h = net.shared(x)
        assert h.shape == (2, trunk_channels, 8, 8)
        logits, features = net.forward_experts(x)
    assert logits.shape == (2, 2, 7) and features.shape == (2, 2, dim)
    assert net.experts[0].head.weight.shape == (dim, 7)
    if backbone == "resnext50_32x4d":
        assert net.experts[0].stages[0][0].conv2.groups == 32


def test_imagenet_standard_widths_without_reduction():
    assert RIDENetwork("resnet10", num_classes=5, reduce_dimension=False).feature_dim == 512


@pytest.mark.parametrize("num_experts", [2, 3, 4, 5, 6])
def test_expert_counts_accepted(num_experts):
    net = RIDENetwork("resnet8", num_classes=4, num_experts=num_experts)
    assert len(net.experts) == num_experts
    with torch.no_grad():
        assert net.forward_experts(torch.randn(2, 3, 8, 8))[0].shape == (num_experts, 2, 4)


@pytest.mark.parametrize("num_experts", [1, 7])
def test_expert_counts_rejected(num_experts):
    with pytest.raises(ValueError, match="num_experts"):
        RIDENetwork("resnet8", num_classes=4, num_experts=num_experts)


def test_in_channels_and_unknown_family():
    net = RIDENetwork("resnet8", num_classes=3, in_channels=1)
    with torch.no_grad():
        assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="ResNet"):
        RIDENetwork("timm:resnet18", num_classes=3)


# --- router: golden -------------------------------------------------------------------------


def golden_router(case) -> ExpertRouter:
    hp = case["hyperparameters"]
    features = torch.tensor(case["inputs"]["expert_features"])
    router = ExpertRouter(
        hp["num_experts"],
        features.shape[-1],
        hp["num_classes"],
        top_k=hp["top_choices_num"],
        hidden=hp["router_hidden_dim"],
    )
    params = case["inputs"]["router_params"]
    state = {"shared_fc.weight": params["shared_fc_weight"], "shared_fc.bias": params["shared_fc_bias"]}
    for k in range(hp["num_experts"] - 1):
        state[f"hidden_fc.{k}.weight"] = params[f"hidden_fc_{k}_weight"]
        state[f"hidden_fc.{k}.bias"] = params[f"hidden_fc_{k}_bias"]
    router.load_state_dict({name: torch.tensor(value) for name, value in state.items()})
    return router


def golden_inputs(case):
    inputs = case["inputs"]
    return (
        torch.tensor(inputs["expert_logits"]),
        torch.tensor(inputs["expert_features"]),
        torch.tensor(inputs["target"]),
    )


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_router_golden_training(case):
    router = golden_router(case)
    logits, features, target = golden_inputs(case)
    expected = case["outputs"]
    assert torch.equal(router.prefix_correct(logits, target), torch.tensor(expected["prefix_correct"]).bool())
    assert torch.equal(router.train_targets(logits, target), torch.tensor(expected["train_router_targets"]).float())
    assert torch.allclose(router.train_scores(logits, features), torch.tensor(expected["train_router_logits"]), **TOL)
    loss, output = router.train_loss(logits, features, target, pos_weight=case["hyperparameters"]["pos_weight"])
    assert torch.allclose(loss, torch.tensor(expected["train_loss"]), **TOL)
    assert torch.allclose(output, torch.tensor(expected["train_output"]), **TOL)
    loss.backward()
    params = dict(router.named_parameters())
    for name, grad in case["grads"].items():
        param = params[name.replace("_fc_", "_fc.").replace("_weight", ".weight").replace("_bias", ".bias")]
        assert torch.allclose(param.grad, torch.tensor(grad), **TOL), name


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_router_golden_dynamic_routing(case):
    router = golden_router(case)
    logits, features, _ = golden_inputs(case)
    out, used = router.route_logits(logits, features)
    assert torch.equal(used, torch.tensor(case["outputs"]["test_num_experts"]))
    assert used.dtype == torch.long
    assert torch.allclose(out, torch.tensor(case["outputs"]["test_output"]), **TOL)


# --- router: behaviour ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ([0, 1, 1], [1, 0]),
        ([1, 1, 1], [0, 0]),
        ([0, 0, 0], [0, 0]),
        ([0, 0, 1], [1, 1]),
        ([1, 0, 1], [0, 1]),
    ],
)
def test_router_target_table(pattern, expected):
    """Build logits whose prefix ensembles are right/wrong as in docs/methods/ride.md §7."""
    prefix_sums = torch.tensor([[10.0, 0.0] if right else [0.0, 10.0] for right in pattern])
    expert_logits = torch.diff(prefix_sums, dim=0, prepend=torch.zeros(1, 2)).unsqueeze(1)
    router = ExpertRouter(3, 4, 2, top_k=2)
    target = torch.tensor([0])
    assert router.prefix_correct(expert_logits, target).squeeze(1).tolist() == [bool(p) for p in pattern]
    assert router.train_targets(expert_logits, target).squeeze(1).tolist() == expected


def forced_router(sign: float, num_experts: int = 3, feature_dim: int = 6, num_classes: int = 5) -> ExpertRouter:
    router = ExpertRouter(num_experts, feature_dim, num_classes, top_k=3)
    with torch.no_grad():
        router.shared_fc.weight.zero_()
        router.shared_fc.bias.fill_(sign * 1e9)
    return router


def test_router_forced_negative_uses_one_expert():
    torch.manual_seed(1)
    logits, features = torch.randn(3, 8, 5), torch.randn(3, 8, 6)
    out, used = forced_router(-1).route_logits(logits, features)
    assert torch.equal(used, torch.ones(8, dtype=torch.long))
    assert torch.equal(out.argmax(1), logits[0].argmax(1))


def test_router_forced_positive_uses_all_experts():
    torch.manual_seed(2)
    logits, features = torch.randn(3, 8, 5), torch.randn(3, 8, 6)
    out, used = forced_router(1).route_logits(logits, features)
    assert torch.equal(used, torch.full((8,), 3))
    assert torch.equal(out.argmax(1), logits.mean(0).argmax(1))
    torch.testing.assert_close(out, logits.mean(0))


def test_force_flags_bypass_the_router():
    torch.manual_seed(3)
    logits, features = torch.randn(3, 8, 5), torch.randn(3, 8, 6)
    out, used = forced_router(-1).route_logits(logits, features, force="all")
    assert torch.equal(used, torch.full((8,), 3))
    torch.testing.assert_close(out, logits.mean(0))
    out, used = forced_router(1).route_logits(logits, features, force="one")
    assert torch.equal(used, torch.ones(8, dtype=torch.long))
    torch.testing.assert_close(out, logits[0])
    with pytest.raises(ValueError, match="force"):
        forced_router(1).route_logits(logits, features, force="some")


def test_router_shapes_and_validation():
    router = ExpertRouter(4, 48, 100, top_k=30)
    assert len(router.hidden_fc) == 3
    assert router.shared_fc.in_features == 30 + 16 and router.shared_fc.out_features == 1
    assert all(fc.in_features == 48 and fc.out_features == 16 and fc.bias is not None for fc in router.hidden_fc)
    assert ExpertRouter(3, 48, 10, top_k=30).top_k == 10  # K = min(top_k, num_classes)
    with pytest.raises(ValueError, match="2 experts"):
        ExpertRouter(1, 48, 10, top_k=5)


def test_route_on_network_matches_route_logits():
    net = small_network(num_experts=3, num_classes=10)
    router = ExpertRouter(3, net.feature_dim, 10, top_k=5)
    x = torch.randn(16, 3, 16, 16)
    with torch.no_grad():
        logits, features = net.forward_experts(x)
        scores = router.score(0, logits[0], features[0]).sort().values
        router.shared_fc.bias -= (scores[7] + scores[8]) / 2  # about half the samples go on to expert 2
    expected_out, expected_used = router.route_logits(logits, features)
    out, used = router.route(net, x)
    assert torch.equal(used, expected_used)
    assert 1 < len(used.unique())
    torch.testing.assert_close(out, expected_out, rtol=1e-4, atol=1e-4)
    out_all, used_all = router.route(net, x, force="all")
    assert torch.equal(used_all, torch.full((16,), 3))
    torch.testing.assert_close(out_all, net(x), rtol=1e-4, atol=1e-4)


# --- FLOPs ----------------------------------------------------------------------------------


def test_gflops_counts_macs():
    assert gflops(nn.Linear(10, 5), torch.zeros(1, 10)) == pytest.approx(5e-8)


def test_ride_gflops():
    net = small_network(num_experts=3, num_classes=10)
    router = ExpertRouter(3, net.feature_dim, 10, top_k=5)
    shape = (3, 16, 16)
    one, every = ride_gflops(net, router, shape, [1, 0, 0]), ride_gflops(net, router, shape, [0, 0, 1])
    assert 0 < one < every
    x = torch.zeros(1, *shape)
    routers = 2 * (48 * 16 + (5 + 16) * 1) / 1e9  # two routers' MACs: hidden_fc (48 -> 16), shared_fc (21 -> 1)
    assert every == pytest.approx(gflops(net.forward_first, x, 3) + routers, rel=1e-9)
    assert one == pytest.approx(gflops(net.forward_first, x, 1) + routers / 2, rel=1e-9)
    mixed = ride_gflops(net, router, shape, [0.5, 0.25, 0.25])
    assert mixed == pytest.approx(0.5 * one + 0.25 * ride_gflops(net, router, shape, [0, 1, 0]) + 0.25 * every)
    assert ride_gflops(net, None, shape, [0, 0, 1]) == pytest.approx(gflops(net, x))
    with pytest.raises(ValueError, match="3 expert fractions"):
        ride_gflops(net, router, shape, [1, 0])
