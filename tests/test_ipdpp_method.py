"""BNS pretraining, the linear probe and IP-DPP fine-tuning as stages (docs/methods/ipdpp.md §2-3, §6-7): schedules, the
subset sampler, freezing, the re-draw schedule, the reference switches, and all stages on the embedded data."""

from __future__ import annotations

import copy
import itertools
import json
import math
from functools import partial
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from conftest import KillAtEpoch, compose_config, read_results, real_cifar10, run
from fakedata import make_list_dataset
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from scipy.stats import chisquare
from torch.utils.data import Dataset

from longtail.data.datamodule import LongTailDataModule
from longtail.data.samplers import CappedSubsetSampler, InstanceSampler
from longtail.data.simclr import SimCLRAugment
from longtail.data.splits import ArraySplit, FileSplit
from longtail.engine.schedules import iteration_warmup_cosine
from longtail.engine.stages import build_stage, stage_configs
from longtail.losses import BNSLoss, CrossEntropy
from longtail.methods.ipdpp import IPDPPFineTuning, redraw_epochs
from longtail.models import Network, create_backbone

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
    assert redraw_epochs(3, 1) == [1]  # the first epoch trains on the first (probe-scored) draw


def test_the_capped_subset_sampler_is_seeded_balanced_and_reshuffled():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 5)
    sampler = CappedSubsetSampler(labels, cap=10, draw_seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) == 25
    assert torch.bincount(labels[first]).tolist() == [10, 10, 5]
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == sorted(second) and first != second
    assert sorted(first) == sorted(CappedSubsetSampler(labels, cap=10, draw_seed=3))
    assert sorted(first) != sorted(CappedSubsetSampler(labels, cap=10, draw_seed=4))
    chosen = list(range(10)) + list(range(50, 60)) + list(range(80, 85))
    sampler.set_subset(chosen)
    assert sorted(sampler) == chosen
    with pytest.raises(ValueError, match="per-class counts"):
        sampler.set_subset(list(range(25)))
    shards = [list(CappedSubsetSampler(labels, cap=10, draw_seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
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
    assert (ipdpp.dpp_sampler, ipdpp.kernel_scale, ipdpp.prob_transform, ipdpp.first_probs) == (
        "reference_uniform", "n_squared", "train", "current")
    assert ipdpp.finetune_scope == "all"
    assert bns.method.loss.form == "reference" and bns.sampler.fixed_permutation is True
    assert probe.recalibrate_backbone is True
    paper = dict(stage_configs(compose_config(["experiment=ipdpp_cifar10", "ipdpp.kernel_scale=n_squared"])))
    assert paper["ipdpp"].method.kernel_scale == "n_squared" and paper["ipdpp"].method.dpp_sampler == "exact_kdpp"
    assert paper["bns"].method.loss.form == "paper" and paper["bns"].datamodule.drop_last is True


def _fine_tuner(scope: str) -> IPDPPFineTuning:
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_probe_keeps_the_encoder_and_its_batchnorm_statistics(ipdpp_digits_run):
    out, _, _ = ipdpp_digits_run
    bns = state(read_results(out / "bns" / "results.json")["checkpoint"])
    probe = state(read_results(out / "probe" / "results.json")["checkpoint"])
    backbone = [k for k in bns if k.startswith("network.backbone.")]
    assert any("running_mean" in k for k in backbone)
    for key in backbone:
        assert torch.equal(bns[key], probe[key]), key


@pytest.mark.slow
def test_the_fine_tuning_subset_is_redrawn_on_schedule_and_the_encoder_trains(ipdpp_digits_run):
    out, results, subsets = ipdpp_digits_run
    assert len(subsets) == 3
    assert subsets[0] != subsets[1] and subsets[1] == subsets[2]
    probe, tuned = state(read_results(out / "probe" / "results.json")["checkpoint"]), state(results["checkpoint"])
    assert torch.equal(probe["network.head.weight"], tuned["probe_head.weight"])
    assert not torch.equal(probe["network.backbone.stem.0.weight"], tuned["network.backbone.stem.0.weight"])


@pytest.mark.slow
def test_reference_uniform_draws_repeat_and_a_bns_checkpoint_needs_first_probs_current(tmp_path, ipdpp_digits_run):
    out, _, _ = ipdpp_digits_run
    bns_checkpoint = read_results(out / "bns" / "results.json")["checkpoint"]
    with pytest.raises(ValueError, match="first_probs=current"):
        run([*IPDPP_DIGITS, "stage=ipdpp", f"init_from={bns_checkpoint}"], tmp_path / "refused")
    results = run([*IPDPP_DIGITS, "stage=ipdpp", f"init_from={bns_checkpoint}", "ipdpp.first_probs=current",
                   "ipdpp.dpp_sampler=reference_uniform"], tmp_path / "uniform")
    assert [d["changed_images"] for d in results["ipdpp/draws"]] == [None, 0]


@pytest.mark.slow
@pytest.mark.skipif(real_cifar10() is None, reason="real CIFAR-10 not found: set LONGTAIL_CIFAR10 or place ../shared/data")
def test_ipdpp_cifar10_smoke_on_the_real_data(tmp_path):
    overrides = ["experiment=ipdpp_cifar10", f"datamodule.root={real_cifar10()}", "model=resnet8", *QUICK_SMOKE]
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


@pytest.mark.slow
def test_the_probe_runs_alone_from_a_bns_checkpoint(tmp_path, ipdpp_digits_run):
    out, _, _ = ipdpp_digits_run
    bns_checkpoint = read_results(out / "bns" / "results.json")["checkpoint"]
    results = run([*IPDPP_DIGITS, "stage=probe", f"init_from={bns_checkpoint}"], tmp_path)
    assert results["stage"] == "probe" and "test/acc" in results


@pytest.mark.slow
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


# ---------------------------------------------------------------- the subset an epoch actually serves (workers)

COUNTS = (12, 8, 4)


class FileListSource:
    """Three classes of ``COUNTS`` training images (in a fixed shuffled order) and 3 test images each, as file
    lists: the data module then loads them with per-image workers."""

    num_classes, class_names, provenance = 3, ["a", "b", "c"], "test file lists"

    def load(self, split: str) -> FileSplit:
        counts = COUNTS if split == "train" else (3, 3, 3)
        labels = np.random.default_rng(0).permutation(np.repeat(np.arange(3), counts))
        return FileSplit("/nonexistent", [f"{split}/{i}.png" for i in range(len(labels))], labels)


class IndexedImages(Dataset):
    """Stands in for the decoded files: image i is uint8 noise whose first two pixels hold i = 256 a + b."""

    def __init__(self, split: FileSplit, transform=None):
        self.labels = split.labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(index))
        image[0, 0, 0], image[0, 0, 1] = index // 256, index % 256
        return image, self.labels[index]


class RecordServed(Callback):
    """Per epoch: the training indices the batches carried, and the module's drawn subset."""

    def __init__(self):
        self.served, self.drawn = {}, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        pixels = (batch[0][:, 0, 0, :2].double() * 255).round().long()  # mean 0, std 1: the images are x / 255
        self.served.setdefault(trainer.current_epoch, []).extend((pixels[:, 0] * 256 + pixels[:, 1]).tolist())
        self.drawn[trainer.current_epoch] = pl_module.subset.tolist()


def _fit_with_workers(tmp_path, callbacks, ckpt_path=None) -> IPDPPFineTuning:
    datamodule = LongTailDataModule(
        source=FileListSource, num_classes=3, sampler=partial(CappedSubsetSampler, cap=4, num_classes=3),
        mean=(0.0,) * 3, std=(1.0,) * 3, batch_size=4, eval_batch_size=8, num_workers=2, pin_memory=False,
    )
    datamodule.setup()
    torch.manual_seed(0)
    model = IPDPPFineTuning(Network(create_backbone("resnet8", in_channels=3), "linear", 3), partial(CrossEntropy),
                            k=4, redraw_every=2, class_counts=datamodule.class_counts,
                            optimizer=partial(torch.optim.AdamW, lr=1e-3))
    checkpoints = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_on_train_epoch_end=True)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False, callbacks=[checkpoints, *callbacks])
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return model


@pytest.mark.slow
def test_with_workers_each_epoch_serves_the_subset_drawn_for_it_also_after_a_resume(tmp_path, monkeypatch):
    """docs/methods/ipdpp.md §3: the first k-DPP draw is trained on in epoch 0, a re-draw (before epoch 1) in epoch 1, and a run
    resumed at epoch 2 trains on its checkpoint's subset, with two loader workers prefetching (Lightning creates
    a fit's first iterator before on_train_epoch_start)."""
    monkeypatch.setattr("longtail.data.datamodule.FileImageDataset", IndexedImages)
    killed, resumed = RecordServed(), RecordServed()
    with pytest.raises(RuntimeError, match="killed"):
        _fit_with_workers(tmp_path, [killed, KillAtEpoch(2)])
    _fit_with_workers(tmp_path, [resumed], ckpt_path=str(tmp_path / "last.ckpt"))
    served, drawn = {**killed.served, **resumed.served}, {**killed.drawn, **resumed.drawn}
    assert sorted(served) == [0, 1, 2]
    for epoch in served:
        assert sorted(served[epoch]) == drawn[epoch], epoch
    labels = FileListSource().load("train").labels
    assert drawn[0] != CappedSubsetSampler(labels, cap=4).subset.tolist()  # not the sampler's seeded subset
    assert drawn[1] != drawn[0] and drawn[2] == drawn[1]  # re-drawn before epoch 1, restored for epoch 2


# ---------------------------------------------------------------- fine-tuning starts from the BNS encoder


class RecordBackboneBuffers(Callback):
    """Saves the backbone's buffers as fine-tuning starts to ``path``."""

    def __init__(self, path: str):
        self.path = path

    def on_train_start(self, trainer, pl_module):
        torch.save({k: v.clone() for k, v in pl_module.network.backbone.named_buffers()}, self.path)


@pytest.mark.slow
def test_fine_tuning_after_a_recalibrating_probe_starts_from_the_bns_batchnorm_statistics(tmp_path, ipdpp_digits_run):
    """docs/methods/ipdpp.md §3, Q8: with probe.bn_train_mode=true the probe moves the encoder's BN statistics; fine-tuning takes
    the encoder, buffers included, from BNS and only the head from the probe."""
    out, _, _ = ipdpp_digits_run
    bns_checkpoint = read_results(out / "bns" / "results.json")["checkpoint"]
    probe = run([*IPDPP_DIGITS, "stage=probe", f"init_from={bns_checkpoint}", "probe.bn_train_mode=true"],
                tmp_path / "probe")
    record = tmp_path / "buffers.pt"
    tuned = run([*IPDPP_DIGITS, "stage=ipdpp", f"init_from={probe['checkpoint']}", "stages.ipdpp.trainer.max_epochs=1",
                 "+stages.ipdpp.callbacks.record._target_=test_ipdpp_method.RecordBackboneBuffers",
                 f"+stages.ipdpp.callbacks.record.path={record}"], tmp_path / "ipdpp")
    start, bns, probe_state = torch.load(record), state(bns_checkpoint), state(probe["checkpoint"])
    moved = [k for k in start if not torch.equal(bns[f"network.backbone.{k}"], probe_state[f"network.backbone.{k}"])]
    assert any("running_mean" in k for k in moved) and any("running_var" in k for k in moved)
    for key, value in start.items():
        assert torch.equal(value, bns[f"network.backbone.{key}"]), key
    assert torch.equal(state(tuned["checkpoint"])["probe_head.weight"], probe_state["network.head.weight"])


# ---------------------------------------------------------------- the law of IP-DPP's draw


class ArraySource:
    """Three classes of (5, 3, 2) random 8x8 grey training images (and 2 test images each), in memory."""

    num_classes, class_names, provenance = 3, ["a", "b", "c"], "random test images"

    def load(self, split: str) -> ArraySplit:
        labels = torch.tensor([0, 1, 0, 2, 0, 1, 0, 2, 1, 0] if split == "train" else [0, 1, 2] * 2)
        images = torch.randint(0, 256, (len(labels), 1, 8, 8), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(len(labels)))
        return ArraySplit(images, labels, torch.arange(len(labels)))


class Pixels(torch.nn.Flatten):
    """A backbone as cheap as can be: the 64 pixels of an 8x8 grey image are its features."""

    out_features = 64


@pytest.mark.slow
def test_the_draw_follows_the_k_dpp_of_independently_computed_probabilities():
    """docs/methods/ipdpp.md §3: class c's subset is drawn from P(Y) ∝ det S_Y with S = diag(1 − p_i p̄) + p pᵀ/N and p_i the
    model's test-transform correct-class probability; checked against the exact law by enumeration."""
    mean, std, k, draws = (0.2,), (0.5,), 2, 800
    datamodule = LongTailDataModule(source=ArraySource, num_classes=3, mean=mean, std=std, channels=1,
                                    augment=partial(SimCLRAugment, size=8))
    datamodule.setup()
    torch.manual_seed(0)
    model = IPDPPFineTuning(Network(Pixels(), "linear", 3), partial(CrossEntropy), k=k, redraw_every=1,
                            class_counts=datamodule.class_counts)
    with torch.no_grad():  # confident, varied p_i, a high mean p̄: a law far from uniform
        model.network.head.weight.mul_(3.0)
        model.network.head.bias[0] += 5.0
    model._trainer = SimpleNamespace(datamodule=datamodule, strategy=SimpleNamespace(broadcast=lambda x, src: x))
    model.log = lambda *args, **kwargs: None
    split = datamodule.train_split
    with torch.no_grad():
        network = copy.deepcopy(model.network).eval()
        images = (split.images.double() / 255 - mean[0]) / std[0]
        probs = network(images.float()).double().softmax(1)[torch.arange(len(split)), split.labels].numpy()
    members = np.flatnonzero(split.labels.numpy() == 0)
    p = probs[members]
    kernel = np.diag(1 - p * p.mean()) + np.outer(p, p) / len(p)
    subsets = list(itertools.combinations(range(len(p)), k))
    law = np.array([np.linalg.det(kernel[np.ix_(y, y)]) for y in subsets])
    law /= law.sum()
    counts = np.zeros(len(subsets))
    for _ in range(draws):
        model.draw(0, model.network.head)
        kept = np.flatnonzero(np.isin(members, model.subset.numpy()))
        counts[subsets.index(tuple(kept))] += 1
    assert np.ptp(p) > 0.25
    assert chisquare(counts, law * draws).pvalue > 1e-3
    assert chisquare(counts, np.full(len(subsets), draws / len(subsets))).pvalue < 1e-6  # the test has power


# ---------------------------------------------------------------- the BNS training step


class RecordBNSStep(Callback):
    """The first step's batch (as training_step receives it), the network and projector before it, and the loss
    it logged."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.batch = batch
            self.network, self.projector = copy.deepcopy(pl_module.network), copy.deepcopy(pl_module.projector)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 0:
            self.logged = trainer.callback_metrics["train/loss_step"].item()


def test_the_bns_step_logs_bns_loss_of_the_projected_views_it_received(tmp_path):
    """docs/methods/ipdpp.md §2: the step's loss is L_BNS of the projector outputs of view 1 and view 2 (the SimCLR views the
    batch arrived with), with their labels."""
    overrides = [*IPDPP_DIGITS, "stage=bns", "stages.bns.method.loss.extra_anchors=1000",
                 "stages.bns.method.loss.negatives=1000"]  # every candidate: the loss draws nothing at random
    cfg = dict(stage_configs(compose_config(overrides)))["bns"]
    datamodule, model = build_stage(cfg, None)
    record = RecordBNSStep()
    trainer = L.Trainer(max_epochs=1, limit_train_batches=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
                        use_distributed_sampler=False, callbacks=[record], default_root_dir=tmp_path)
    trainer.fit(model, datamodule=datamodule)
    (view1, view2), labels = record.batch
    assert not torch.equal(view1, view2)
    network, projector = record.network.train(), record.projector.train()
    with torch.no_grad():
        emb1, emb2 = projector(network.features(torch.cat([view1, view2]))).split(len(labels))
        expected = BNSLoss(extra_anchors=1000, negatives=1000)(emb1, emb2, labels)
    assert record.logged == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.slow
def test_ipdpp_imagenet_lt_runs_its_three_stages_on_list_files_with_two_simclr_views(tmp_path):
    """ImageNet-LT has no batch augmentation of its own: the experiment hands each stage's SimCLR augmentation to
    the loader, so BNS gets its two views (it used to get one un-augmented batch and fail to unpack it)."""
    make_list_dataset(tmp_path / "data", kind="imagenet_lt", counts=(40, 24, 16, 12, 8), val_per_class=2,
                      test_per_class=2, size=24)  # 100 images: BNS drops its last incomplete batch of 32
    results = run(["experiment=ipdpp_imagenet_lt", f"datamodule.root={tmp_path / 'data'}", "datamodule.num_classes=5",
                   "model=resnet10", "datamodule.num_workers=0", "datamodule.persistent_workers=false",
                   "datamodule.image_size=16", "datamodule.resize=20", "ipdpp.k=3", "stages.probe.sampler.cap=3",
                   *(f"stages.{s}.augment.size=16" for s in ("bns", "probe", "ipdpp")), *QUICK_SMOKE],
                  tmp_path / "run")
    assert results["stage"] == "ipdpp" and results["ipdpp/subset_class_counts"] == [3, 3, 3, 3, 3]
    assert "linear_probe" in read_results(tmp_path / "run" / "bns" / "results.json")


@pytest.mark.slow
@pytest.mark.skipif(real_cifar10() is None, reason="real CIFAR-10 not found: set LONGTAIL_CIFAR10 or place ../shared/data")
def test_the_probe_converges_at_a_short_schedule_on_the_real_data(tmp_path):
    """At schedule.scale=0.04 the probe keeps its 100 epochs (a cheap encoder here: ResNet-8 after three BNS steps):
    its training loss ends below ln 10 and its held-out top-1 above chance, and the stage says it converged."""
    overrides = ["experiment=ipdpp_cifar10", f"datamodule.root={real_cifar10()}", "model=resnet8", "schedule.scale=0.04",
                 "schedule.min_epochs=1", "stages.ipdpp=null", "stages.bns.trainer.max_epochs=1",
                 "+stages.bns.trainer.limit_train_batches=3", "+stages.probe.trainer.limit_test_batches=4",
                 "datamodule.val=heldout", "datamodule.val_per_class=25"]
    run(overrides, tmp_path)
    probe = read_results(tmp_path / "probe" / "results.json")
    metrics = (tmp_path / "probe" / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    assert probe["epochs"] == 100 and probe["converged"] is True, probe.get("converged_reason")
    assert probe["val/acc"] > 0.1
    header = metrics[0].split(",")
    losses = [float(row.split(",")[header.index("train/loss_epoch")]) for row in metrics[1:]
              if row.split(",")[header.index("train/loss_epoch")]]
    assert losses[-1] < math.log(10)
