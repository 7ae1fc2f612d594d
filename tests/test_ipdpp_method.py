"""BNS pretraining, the linear probe and IP-DPP fine-tuning as stages (ipdpp.md §2-3, §6-7): schedules, the
subset sampler, freezing, the re-draw schedule, the reference switches, and all stages on the embedded data."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from conftest import compose_config, read_results, real_cifar10, run
from lightning.pytorch.callbacks import Callback

from longtail.data.samplers import CappedSubsetSampler, InstanceSampler
from longtail.losses import CrossEntropy
from longtail.methods.ipdpp import IPDPPFineTuning, redraw_epochs
from longtail.models import Network
from longtail.schedules import iteration_warmup_cosine
from longtail.stages import stage_configs

QUICK_SMOKE = ["debug=smoke", "debug.trainer.max_epochs=1", "debug.trainer.limit_train_batches=2",
               "debug.trainer.limit_val_batches=1", "debug.trainer.limit_test_batches=1"]
# the three stages on the embedded 8x8 digits (one grey channel, no Normalize), ResNet-8, a few batches each
IPDPP_DIGITS = [
    "experiment=ipdpp_cifar10", "datamodule=digits_lt", "model=resnet8", "datamodule.mean=[0.0]",
    "datamodule.std=[1.0]", "metrics.shot_thresholds=[100,20]", "ipdpp.k=40", "ipdpp.redraw_every=2",
    "stages.bns.datamodule.batch_size=128", "stages.bns.trainer.max_epochs=1", "+stages.bns.trainer.limit_train_batches=3",
    "stages.probe.sampler.cap=20", "stages.probe.trainer.max_epochs=1", "stages.ipdpp.trainer.max_epochs=3",
    "+stages.ipdpp.trainer.limit_train_batches=2", "stages.bns.augment.size=8", "stages.probe.augment.size=8",
    "stages.ipdpp.augment.size=8",
]


def state(checkpoint: str) -> dict:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]


def test_warm_up_and_cosine_endpoints_per_iteration():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=4e-3)
    schedule = iteration_warmup_cosine(optimizer, max_epochs=100, steps_per_epoch=12, warmup_epochs=20)
    factor = schedule.lr_lambdas[0]
    assert factor(0) == 0.0
    assert factor(20 * 12) == pytest.approx(1.0)
    assert factor(10 * 12) == pytest.approx(0.5)
    assert factor(100 * 12) == pytest.approx(0.0, abs=1e-12)
    assert factor(60 * 12) == pytest.approx(0.5)
    assert optimizer.param_groups[0]["lr"] == 0.0


def test_the_redraw_schedule():
    assert redraw_epochs(100, 10) == [9, 19, 29, 39, 49, 59, 69, 79, 89]
    assert redraw_epochs(100, 20) == [19, 39, 59, 79]
    assert redraw_epochs(3, 1) == [0, 1]


def test_the_capped_subset_sampler_is_seeded_balanced_and_reshuffled():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 5)
    sampler = CappedSubsetSampler(labels, cap=10, subset_seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) == 25
    assert torch.bincount(labels[first]).tolist() == [10, 10, 5]
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == sorted(second) and first != second
    assert sorted(first) == sorted(CappedSubsetSampler(labels, cap=10, subset_seed=3))
    assert sorted(first) != sorted(CappedSubsetSampler(labels, cap=10, subset_seed=4))
    chosen = list(range(10)) + list(range(50, 60)) + list(range(80, 85))
    sampler.set_subset(chosen)
    assert sorted(sampler) == chosen
    with pytest.raises(ValueError, match="per-class counts"):
        sampler.set_subset(list(range(25)))
    shards = [list(CappedSubsetSampler(labels, cap=10, subset_seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 13 and set(shards[0]) | set(shards[1]) == set(first)


def test_a_fixed_permutation_repeats_every_epoch():
    labels = torch.arange(20) % 4
    fixed, fresh = InstanceSampler(labels, fixed_permutation=True), InstanceSampler(labels)
    orders = []
    for epoch in range(2):
        fixed.set_epoch(epoch)
        fresh.set_epoch(epoch)
        orders.append((list(fixed), list(fresh)))
    assert orders[0][0] == orders[1][0]
    assert orders[0][1] != orders[1][1]


def test_fidelity_reference_turns_on_q1_to_q8_each_settable_alone():
    stages = dict(stage_configs(compose_config(["experiment=ipdpp_cifar10", "fidelity=reference"])))
    assert list(stages) == ["bns", "probe", "ipdpp"]
    ipdpp, bns, probe = stages["ipdpp"].method, stages["bns"], stages["probe"].method
    assert (ipdpp.sampler, ipdpp.kernel_scale, ipdpp.prob_transform, ipdpp.first_probs) == (
        "reference_uniform", "n_squared", "train", "current")
    assert ipdpp.finetune_scope == "all"
    assert bns.method.loss.form == "reference" and bns.sampler.fixed_permutation is True
    assert probe.recalibrate_backbone is True
    paper = dict(stage_configs(compose_config(["experiment=ipdpp_cifar10", "ipdpp.kernel_scale=n_squared"])))
    assert paper["ipdpp"].method.kernel_scale == "n_squared" and paper["ipdpp"].method.sampler == "exact_kdpp"
    assert paper["bns"].method.loss.form == "paper" and paper["bns"].datamodule.drop_last is True


def _fine_tuner(scope: str) -> IPDPPFineTuning:
    from longtail.models import create_backbone

    network = Network(create_backbone("resnet8", in_channels=1), "linear", 3)
    return IPDPPFineTuning(network, partial(CrossEntropy), k=4, redraw_every=2, finetune_scope=scope,
                           class_counts=[8, 4, 2], optimizer=partial(torch.optim.AdamW, lr=1e-3))


@pytest.mark.parametrize("scope", ["all", "head"])
def test_fine_tuning_scope_decides_which_parameters_get_gradients(scope):
    model = _fine_tuner(scope).train()
    model(torch.rand(6, 1, 8, 8)).sum().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    network = {n for n, _ in model.network.named_parameters()}
    if scope == "all":
        assert with_grad == {f"network.{n}" for n in network}
    else:
        assert with_grad == {"network.head.weight", "network.head.bias"}
        assert not model.network.backbone.training
    assert not any(n.startswith("probe_head") for n in with_grad)


class RecordSubsets(Callback):
    """Writes the subset each epoch trains on (the sampler's, read at the first batch) to ``path``."""

    def __init__(self, path: str):
        self.path, self.subsets = path, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.subsets.append(trainer.train_dataloader.sampler.subset.tolist())

    def on_train_end(self, trainer, pl_module):
        with open(self.path, "w") as f:
            json.dump(self.subsets, f)


@pytest.fixture(scope="module")
def ipdpp_digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ipdpp_digits")
    record = out / "subsets.json"
    results = run([*IPDPP_DIGITS, "+stages.ipdpp.callbacks.record._target_=test_ipdpp_method.RecordSubsets",
                   f"+stages.ipdpp.callbacks.record.path={record}"], out)
    return out, results, json.loads(record.read_text())


def test_all_three_stages_run_on_the_embedded_data(ipdpp_digits_run):
    out, results, _ = ipdpp_digits_run
    bns, probe = read_results(out / "bns" / "results.json"), read_results(out / "probe" / "results.json")
    assert "test/acc" not in bns and bns["linear_probe"]["test/acc"] == probe["test/acc"]
    assert {"test/acc", "test/acc_few", "test/acc_per_class"} <= set(probe) and {"test/acc", "test/acc_few"} <= set(results)
    counts = results["train_class_counts"]
    assert results["ipdpp/subset_class_counts"] == [min(c, 40) for c in counts]
    draws = results["ipdpp/draws"]
    assert [(d["epoch"], d["model"]) for d in draws] == [(0, "probe"), (1, "current")]
    assert all(d["class_counts"] == results["ipdpp/subset_class_counts"] for d in draws)
    assert draws[1]["changed_images"] > 0


def test_the_probe_keeps_the_encoder_and_its_batchnorm_statistics(ipdpp_digits_run):
    out, _, _ = ipdpp_digits_run
    bns = state(read_results(out / "bns" / "results.json")["checkpoint"])
    probe = state(read_results(out / "probe" / "results.json")["checkpoint"])
    backbone = [k for k in bns if k.startswith("network.backbone.")]
    assert any("running_mean" in k for k in backbone)
    for key in backbone:
        assert torch.equal(bns[key], probe[key]), key


def test_the_fine_tuning_subset_is_redrawn_on_schedule_and_the_encoder_trains(ipdpp_digits_run):
    out, results, subsets = ipdpp_digits_run
    assert len(subsets) == 3
    assert subsets[0] != subsets[1] and subsets[1] == subsets[2]
    probe, tuned = state(read_results(out / "probe" / "results.json")["checkpoint"]), state(results["checkpoint"])
    assert torch.equal(probe["network.head.weight"], tuned["probe_head.weight"])
    assert not torch.equal(probe["network.backbone.stem.0.weight"], tuned["network.backbone.stem.0.weight"])


def test_reference_uniform_draws_repeat_and_a_bns_checkpoint_needs_first_probs_current(tmp_path, ipdpp_digits_run):
    out, _, _ = ipdpp_digits_run
    bns_checkpoint = read_results(out / "bns" / "results.json")["checkpoint"]
    with pytest.raises(ValueError, match="first_probs=current"):
        run([*IPDPP_DIGITS, "stage=ipdpp", f"init_from={bns_checkpoint}"], tmp_path / "refused")
    results = run([*IPDPP_DIGITS, "stage=ipdpp", f"init_from={bns_checkpoint}", "ipdpp.first_probs=current",
                   "ipdpp.sampler=reference_uniform"], tmp_path / "uniform")
    assert [d["changed_images"] for d in results["ipdpp/draws"]] == [None, 0]


@pytest.mark.skipif(real_cifar10() is None, reason="real CIFAR-10 not found: set LONGTAIL_CIFAR10 or place ../shared/data")
def test_ipdpp_cifar10_smoke_on_the_real_data(tmp_path):
    overrides = ["experiment=ipdpp_cifar10", f"datamodule.root={real_cifar10()}", "model=resnet8", *QUICK_SMOKE,
                 "stages.bns.datamodule.batch_size=64"]
    results = run(overrides, tmp_path)
    assert results["ipdpp/subset_class_counts"] == [500, 500, 500, 500, 500, 387, 232, 139, 83, 50]
    for stage in ("bns", "probe", "ipdpp"):
        assert (tmp_path / stage / "results.json").is_file()
    assert "test/acc" in read_results(tmp_path / "probe" / "results.json")


def test_adamw_groups_exempt_biases_and_norm_parameters_from_weight_decay():
    model = _fine_tuner("all")
    model.decay_all = False
    decay, exempt = model.parameter_groups()
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith("weight") and p.ndim > 1 for p in decay["params"])
    assert {names[id(p)] for p in exempt["params"]} >= {"network.head.bias", "network.backbone.stem.1.weight"}
    assert exempt["weight_decay"] == 0.0 and "weight_decay" not in decay


def test_the_probe_runs_alone_from_a_bns_checkpoint(tmp_path, ipdpp_digits_run):
    out, _, _ = ipdpp_digits_run
    bns_checkpoint = read_results(out / "bns" / "results.json")["checkpoint"]
    results = run([*IPDPP_DIGITS, "stage=ipdpp_probe", f"init_from={bns_checkpoint}"], tmp_path)
    assert results["stage"] == "probe" and "test/acc" in results


def test_a_killed_fine_tuning_resumes_with_its_subset_and_weights(tmp_path, ipdpp_digits_run):
    out, whole, _ = ipdpp_digits_run
    kill = ["+stages.ipdpp.callbacks.kill._target_=conftest.KillAtEpoch", "+stages.ipdpp.callbacks.kill.epoch=2"]
    with pytest.raises(RuntimeError, match="killed"):
        run([*IPDPP_DIGITS, *kill], tmp_path)
    resumed = run(IPDPP_DIGITS, tmp_path)
    assert resumed["ipdpp/draws"] == whole["ipdpp/draws"]
    a, b = state(out / "ipdpp" / "checkpoints" / "last.ckpt"), state(tmp_path / "ipdpp" / "checkpoints" / "last.ckpt")
    for key in a:
        assert torch.equal(a[key], b[key]), key
