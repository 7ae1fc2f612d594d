"""Difficulty-Net stage 1 (the meta step, the accuracy vector) and stage 2 (LAS re-training), docs/methods/diffnet.md §3-4, §8."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import read_results, real_cifar10, run
from golden import assert_close, golden_cases, tol
from lightning.pytorch.callbacks import Callback
from torch import nn

import longtail
from longtail.losses import DifficultyWeightedLoss, driver_loss
from longtail.methods.diffnet import DifficultyNetMetaLearning
from longtail.models import DifficultyNet, LinearHead, Network

# debug settings are applied after every stage's, so a shorter smoke run overrides them there
QUICK_SMOKE = ["debug=smoke", "debug.trainer.max_epochs=1", "debug.trainer.limit_train_batches=2",
               "debug.trainer.limit_val_batches=1", "debug.trainer.limit_test_batches=1"]
DIFFNET_DIGITS = [
    "method=diffnet", "datamodule.protocol=diffnet", "datamodule.val=heldout", "datamodule.meta_batch_size=50",
    "trainer.max_epochs=2", "+stage@stages.las=las", "stages.las.trainer.max_epochs=1",
]


class Features(nn.Identity):
    """A backbone that hands the inputs to the head unchanged (the golden meta step's linear classifier)."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_features = dim


def linear_meta_learner(num_classes: int, dim: int, hidden: int, dtype=torch.float32, **kwargs):
    network = Network(Features(dim), LinearHead(dim, num_classes), num_classes)
    model = DifficultyNetMetaLearning(
        network, loss=partial(DifficultyWeightedLoss), difficulty_net=partial(DifficultyNet, hidden=hidden),
        difficulty_optimizer=partial(torch.optim.Adam), class_counts=[1] * num_classes, channels_last=False, **kwargs,
    )
    return model.to(dtype)


def golden_meta_learner(case, dtype, detach_weights):
    inputs, hp = case["inputs"], case["hyperparameters"]
    weight = torch.tensor(inputs["classifier_weight"], dtype=dtype)
    model = linear_meta_learner(hp["num_classes"], weight.shape[1], hp["hidden"], dtype, lamda=hp["lamda"],
                                detach_weights=detach_weights)
    model.difficulty_net.load_state_dict({k: torch.tensor(v, dtype=dtype) for k, v in inputs["mlp_params"].items()})
    model.network.head.weight.data.copy_(weight)
    model.network.head.bias.data.copy_(torch.tensor(inputs["classifier_bias"], dtype=dtype))
    model.accuracy_vector = torch.tensor(inputs["class_accuracies"], dtype=dtype)
    batches = [torch.tensor(inputs[k], dtype=dtype) for k in ("train_x", "meta_x")]
    labels = [torch.tensor(inputs[k]) for k in ("train_y", "meta_y")]
    lrs = {"head.weight": hp["inner_lr"], "head.bias": hp["inner_lr"]}
    return model, (batches[0], labels[0], batches[1], labels[1], lrs)


@pytest.mark.parametrize("golden,case,dtype", golden_cases("diffnet_meta_step"))
def test_meta_gradient_matches_the_golden_file(golden, case, dtype):
    model, args = golden_meta_learner(case, dtype, detach_weights=case["variant"] == "reference")
    step = model.meta_update(*args)
    grads = torch.autograd.grad(step.objective, list(model.difficulty_net.parameters()))
    tolerance = tol(golden)
    assert_close(step.meta_loss, case["outputs"]["meta_loss"], tolerance)
    assert_close(step.driver, case["outputs"]["driver_loss"], tolerance)
    for (name, _), grad in zip(model.difficulty_net.named_parameters(), grads):
        assert_close(grad, case["grads"][name], tolerance)
    assert_close(step.stepped["head.weight"], case["outputs"]["updated_weight"], tolerance)
    assert_close(step.stepped["head.bias"], case["outputs"]["updated_bias"], tolerance)


def test_the_forward_mode_meta_gradient_equals_the_double_backward_one():
    """The JVP formulation against the textbook one (create_graph virtual step, backward through it)."""
    torch.manual_seed(0)
    model = linear_meta_learner(4, 5, 6, torch.float64)
    model.accuracy_vector = torch.tensor([0.9, 0.5, 0.3, 0.0], dtype=torch.float64)
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 4, (16,))
    xm, ym = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 4, (8,))
    lrs = {"head.weight": 0.3, "head.bias": 0.3}
    jvp = torch.autograd.grad(model.meta_update(x, y, xm, ym, lrs).objective, list(model.difficulty_net.parameters()))
    weights, driver = model.class_weights()
    params = dict(model.network.named_parameters())
    inner = model.loss(torch.func.functional_call(model.network, params, (x,)), y, weights)
    grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
    stepped = {n: p - lrs[n] * g for (n, p), g in zip(params.items(), grads)}
    meta = nn.functional.cross_entropy(torch.func.functional_call(model.network, stepped, (xm,)), ym)
    textbook = torch.autograd.grad(meta + model.lamda * driver, list(model.difficulty_net.parameters()))
    for a, b in zip(jvp, textbook):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def toy_problem(detach_weights=False, meta_step="functional"):
    """2 classes, a linear model, a = (0.9, 0.2)."""
    torch.manual_seed(0)
    model = linear_meta_learner(2, 3, 4, detach_weights=detach_weights, meta_step=meta_step)
    model.accuracy_vector = torch.tensor([0.9, 0.2])
    x, y = torch.randn(8, 3), torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    meta_x, meta_y = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 0, 1])
    return model, (x, y, meta_x, meta_y)


def dn_gradient(model, loss):
    grads = torch.autograd.grad(loss, list(model.difficulty_net.parameters()), allow_unused=True)
    return torch.cat([torch.zeros_like(p).flatten() if g is None else g.flatten()
                      for p, g in zip(model.difficulty_net.parameters(), grads)])


def driver_gradient(model):
    outputs = model.difficulty_net(model.accuracy_vector)
    return dn_gradient(model, model.lamda * driver_loss(outputs, model.accuracy_vector))


@pytest.mark.parametrize("alpha", [0.1, 0.0])
def test_the_classification_meta_loss_reaches_difficulty_net_only_in_paper_mode(alpha):
    lrs = {"head.weight": alpha, "head.bias": alpha}
    paper, batch = toy_problem()
    reference, _ = toy_problem(detach_weights=True)
    paper_grad = dn_gradient(paper, paper.meta_update(*batch, lrs).objective)
    reference_grad = dn_gradient(reference, reference.meta_update(*batch, lrs).objective)
    assert torch.equal(reference_grad, driver_gradient(reference))
    ce_part = paper_grad - driver_gradient(paper)
    if alpha:
        assert ce_part.abs().max() > 1e-6
    else:
        assert torch.allclose(ce_part, torch.zeros_like(ce_part), atol=1e-9)


def test_the_pseudo_optimizer_step_gives_difficulty_net_the_driver_gradient_only():
    model, batch = toy_problem(meta_step="pseudo_optimizer")
    optimizer = torch.optim.SGD(model.network.parameters(), lr=0.1, momentum=0.9)
    model.optimizers = lambda: [type("Wrapped", (), {"optimizer": optimizer})()]
    lrs = {"head.weight": 0.1, "head.bias": 0.1}
    grad = dn_gradient(model, model.meta_update(*batch, lrs).objective)
    assert torch.allclose(grad, driver_gradient(model))
    first = {k: v.clone() for k, v in model.pseudo_momentum.items()}
    model.meta_update(*batch, lrs)
    assert all(not torch.equal(first[k], model.pseudo_momentum[k]) for k in first)


def test_the_meta_step_leaves_the_real_batchnorm_statistics_alone():
    torch.manual_seed(0)
    network = Network("resnet8", "linear", 3, backbone_kwargs={"in_channels": 1})
    model = DifficultyNetMetaLearning(
        network, loss=partial(DifficultyWeightedLoss), difficulty_net=partial(DifficultyNet, hidden=4),
        difficulty_optimizer=partial(torch.optim.Adam), class_counts=[5, 3, 2], channels_last=False,
    ).train()
    images, target = torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,))
    before = {n: b.clone() for n, b in network.named_buffers()}
    step = model.meta_update(images, target, images[:6], target[:6], {n: 0.1 for n, _ in network.named_parameters()})
    for name, value in network.named_buffers():
        assert torch.equal(value, before[name]), name
    twin = Network("resnet8", "linear", 3, backbone_kwargs={"in_channels": 1})
    twin.load_state_dict(network.state_dict())
    twin.train()(images)
    for name, value in twin.named_buffers():
        assert torch.allclose(step.buffers[name], value, atol=1e-6), name


def state(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_one_iteration_updates_the_real_batchnorm_statistics_exactly_once(tmp_path):
    from conftest import compose_config
    from hydra.utils import instantiate

    from longtail.engine.stages import stage_configs

    stage = stage_configs(compose_config([*DIFFNET_DIGITS, "datamodule.batch_size=16"]))[0][1]
    datamodule = instantiate(stage.datamodule)
    datamodule.setup()
    model = instantiate(stage.method, class_counts=datamodule.class_counts, class_names=datamodule.class_names)
    twin = instantiate(stage.method, class_counts=datamodule.class_counts, class_names=datamodule.class_names)
    twin.load_state_dict(model.state_dict())
    import lightning as L

    trainer = L.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    torch.manual_seed(3)
    batches = []
    record = type("Record", (L.Callback,), {"on_train_batch_start": lambda s, t, m, batch, i: batches.append(batch)})
    trainer.callbacks.append(record())
    trainer.fit(model, datamodule=datamodule)
    twin.train()
    with torch.no_grad():
        twin(batches[0][0])
    for (name, value), (_, expected) in zip(model.network.named_buffers(), twin.network.named_buffers()):
        assert torch.allclose(value, expected, atol=1e-6), name


def fit_stage_one(overrides, batches: int = 1):
    """Stage 1 of ``overrides`` fitted in this process for ``batches`` training batches; (module, data module)."""
    import lightning as L
    from conftest import compose_config
    from hydra.utils import instantiate

    from longtail.engine.stages import stage_configs

    stage = stage_configs(compose_config(overrides))[0][1]
    datamodule = instantiate(stage.datamodule)
    datamodule.setup()
    model = instantiate(stage.method, class_counts=datamodule.class_counts, class_names=datamodule.class_names)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=batches, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    trainer.fit(model, datamodule=datamodule)
    return model, datamodule


def list_data_overrides(root: Path, kind: str = "imagenet_lt") -> list[str]:
    """A tiny list data set (3 classes, 10 val images per class) and the overrides of its Difficulty-Net run."""
    from fakedata import make_list_dataset

    make_list_dataset(root, kind=kind, counts=(10, 6, 4), val_per_class=10, test_per_class=2)
    experiment = "diffnet_imagenet_lt_resnet10" if kind == "imagenet_lt" else "diffnet_places_lt_resnet152"
    return [f"experiment={experiment}", f"datamodule.root={root}", "datamodule.num_classes=3",
            "datamodule.num_workers=0", "datamodule.persistent_workers=false", "datamodule.image_size=32",
            "datamodule.resize=36", "datamodule.batch_size=4", "model.backbone_kwargs.pretrained=false"]


@pytest.mark.parametrize("data", ["digits", "list"])
@pytest.mark.parametrize("meta_augment", [False, True])
def test_meta_batches_are_the_eval_transform_of_held_out_images(tmp_path, monkeypatch, data, meta_augment):
    """The reference feeds its meta loaders the held-out set under the test transform; meta_augment=true restores
    the training augmentation. The meta batch the step receives is matched image by image against the held-out set
    under the eval transform (the accuracy pass's images)."""
    captured = []
    meta_update = DifficultyNetMetaLearning.meta_update

    def capture(self, images, target, meta_images, meta_target, lrs):
        captured.append((meta_images.detach().clone(), meta_target.clone()))
        return meta_update(self, images, target, meta_images, meta_target, lrs)

    monkeypatch.setattr(DifficultyNetMetaLearning, "meta_update", capture)
    overrides = DIFFNET_DIGITS[:3] if data == "digits" else list_data_overrides(tmp_path / "data")
    model, datamodule = fit_stage_one([*overrides, f"diffnet.meta_augment={str(meta_augment).lower()}"])
    evaluate = datamodule.batch_transforms()[1]
    held_out = [(evaluate(images), target) for images, target in datamodule.meta_eval_dataloader()]
    held_images, held_target = (torch.cat(parts) for parts in zip(*held_out))
    (meta_images, meta_target), = captured
    assert len(meta_target) == min(datamodule.meta_batch_size, len(held_target))
    found = [any(torch.allclose(image, candidate, atol=1e-6) for candidate in held_images[held_target == label])
             for image, label in zip(meta_images, meta_target)]
    assert all(found) != meta_augment


@pytest.mark.slow
def test_both_stages_run_on_the_embedded_data_and_freeze_what_the_spec_freezes(tmp_path):
    results = run([*DIFFNET_DIGITS], tmp_path)
    first = read_results(tmp_path / "train" / "results.json")
    assert first["protocol"] == results["protocol"] == "diffnet"
    assert first["selection"] == "best val/acc"
    assert len(first["diffnet/class_weights"]) == 10
    assert abs(sum(first["diffnet/class_weights"]) - 10) < 1e-4
    assert (tmp_path / "train" / "plots" / "class_difficulty.png").is_file()
    meta, las = state(first["checkpoint"]), state(results["checkpoint"])
    assert not torch.equal(meta["accuracy_vector"], torch.zeros(10))
    for key, value in meta.items():
        if key.startswith("network.backbone."):
            assert torch.equal(value, las[key]), key
    assert not torch.equal(meta["network.head.weight"], las["network.head.linear.weight"])
    assert not torch.equal(las["network.head.scales"], torch.ones(10))


@pytest.mark.slow
def test_stage_two_starts_from_the_stage_one_logits(tmp_path):
    results = run([*DIFFNET_DIGITS[:4], "trainer.max_epochs=1"], tmp_path)
    stage_one = longtail.load(results["checkpoint"])
    from conftest import compose_config
    from hydra.utils import instantiate

    from longtail.common.checkpoint import init_from_checkpoint
    from longtail.engine.stages import stage_configs

    stage = dict(stage_configs(compose_config(DIFFNET_DIGITS)))["las"]
    las = instantiate(stage.method, class_counts=stage_one.class_counts, class_names=stage_one.class_names)
    init_from_checkpoint(las, results["checkpoint"])
    images = torch.randn(4, 1, 8, 8)
    las.eval()
    with torch.no_grad():
        assert torch.allclose(las(images), stage_one(images), atol=1e-5)
    trainable = {n for n, p in las.named_parameters() if p.requires_grad}
    assert trainable == {"network.head.scales", "network.head.linear.weight", "network.head.linear.bias"}


@pytest.mark.slow
def test_each_stage_runs_alone_from_a_checkpoint(tmp_path):
    first = run([*DIFFNET_DIGITS[:4], "trainer.max_epochs=1"], tmp_path / "one")
    second = run([*DIFFNET_DIGITS[:4], "stage=las", f"init_from={first['checkpoint']}",
                  "stage.trainer.max_epochs=1"], tmp_path / "two")
    assert second["stage"] == "las" and second["protocol"] == "diffnet"


def test_difficulty_net_stays_float32_under_bf16_autocast():
    model, _ = toy_problem()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weights, driver = model.class_weights()
    assert weights.dtype == driver.dtype == torch.float32


def direct_accuracy_vector(module) -> torch.Tensor:
    """Per-class accuracy of ``module`` on the whole held-out (accuracy) set in one eval-mode forward, under the
    evaluation transform: the accuracy vector computed directly."""
    datamodule = module.trainer.datamodule
    split, evaluate = datamodule.meta_split, datamodule.batch_transforms()[1].to(module.device)
    was_training = module.training
    module.eval()
    with torch.no_grad():
        hits = (module.network(evaluate(split.images)).argmax(dim=1) == split.labels).float()
    module.train(was_training)
    num_classes = len(module.class_counts)
    return torch.bincount(split.labels, hits, num_classes) / torch.bincount(split.labels, minlength=num_classes)


@pytest.mark.slow
@pytest.mark.parametrize("timing", ["after_epoch", "before_epoch"])
def test_the_accuracy_vector_is_measured_once_per_epoch(tmp_path, monkeypatch, timing):
    """CIFAR measures after each epoch (a = 0 in epoch 0), ImageNet/Places before each (docs/methods/diffnet.md §3): the number
    of measurements, and each measured vector against a direct eval pass over the accuracy set."""
    epochs, measured = 3, []
    measure = DifficultyNetMetaLearning.measure_accuracy_vector

    def record(self):
        measure(self)
        measured.append((self.current_epoch, self.accuracy_vector.clone(), direct_accuracy_vector(self)))

    monkeypatch.setattr(DifficultyNetMetaLearning, "measure_accuracy_vector", record)
    record_path = tmp_path / "vectors.json"
    run([*DIFFNET_DIGITS[:3], f"trainer.max_epochs={epochs}", f"method.accuracy_timing={timing}",
         "+callbacks.record._target_=test_diffnet_method.RecordEpochStartVector", f"+callbacks.record.path={record_path}"],
        tmp_path)
    first = 0 if timing == "before_epoch" else 1
    assert [epoch for epoch, _, _ in measured] == list(range(first, epochs))
    for _, vector, direct in measured:
        assert torch.allclose(vector, direct)
    trained_with = torch.tensor(json.loads(record_path.read_text()))
    assert len(trained_with) == epochs
    assert torch.equal(trained_with[first:], torch.stack([vector for _, vector, _ in measured]))
    assert torch.equal(trained_with[:first], torch.zeros(first, len(trained_with[0])))
    assert len({tuple(v.tolist()) for _, v, _ in measured}) > 1  # the vector follows the model


class RecordEpochStartVector(Callback):
    """Writes the accuracy vector each epoch trained with (read at its first batch) to ``path``."""

    def __init__(self, path: str):
        self.path, self.vectors = Path(path), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.vectors.append(pl_module.accuracy_vector.tolist())

    def on_train_end(self, trainer, pl_module):
        self.path.write_text(json.dumps(self.vectors))


@pytest.mark.slow
def test_a_killed_stage_one_resumes_to_the_same_weights(tmp_path):
    overrides = [*DIFFNET_DIGITS[:4], "datamodule.batch_size=64"]
    whole = run(overrides, tmp_path / "whole")
    with pytest.raises(RuntimeError, match="killed"):
        run([*overrides, "+callbacks.kill._target_=conftest.KillAtEpoch", "+callbacks.kill.epoch=1"], tmp_path / "cut")
    resumed = run(overrides, tmp_path / "cut")
    a, b = state(whole["checkpoint"]), state(resumed["checkpoint"])
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_stage_two_can_re_estimate_batchnorm_statistics_without_gradients(tmp_path, digits_ce_run):
    _, first = digits_ce_run
    results = run(["stage=las", f"init_from={first['checkpoint']}", "stage.trainer.max_epochs=1",
                   "stage.method.train_linear=false", "stage.method.recalibrate=[network.backbone]"], tmp_path)
    before, after = state(first["checkpoint"]), state(results["checkpoint"])
    moved = [k for k, v in before.items() if k.startswith("network.backbone.") and not torch.equal(v, after[k])]
    assert moved and all("running_" in k or "num_batches_tracked" in k for k in moved)
    assert torch.equal(before["network.head.weight"], after["network.head.linear.weight"])


class RecordFirstStepLoss(Callback):
    """Writes to ``path`` the first step's logged training loss and, on that batch, the mean Balanced Softmax and
    mean CE of a train-mode forward of a copy of the model as it was before the step."""

    def __init__(self, path: str):
        self.path, self.before = Path(path), None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0 and isinstance(pl_module, DifficultyNetMetaLearning):
            import copy

            self.before = copy.deepcopy(pl_module.network).train()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 0 and isinstance(pl_module, DifficultyNetMetaLearning):
            from longtail.losses import BalancedSoftmaxLoss

            images, target = batch
            with torch.no_grad():
                logits = self.before(pl_module.to_memory_format(images))
            bs = BalancedSoftmaxLoss(pl_module.class_counts).to(logits.device)(logits, target)
            self.path.write_text(json.dumps({"logged": float(trainer.callback_metrics["train/loss_step"]),
                                             "balanced_softmax": float(bs),
                                             "ce": float(nn.functional.cross_entropy(logits, target))}))


@pytest.mark.slow
def test_diffnet_bs_cifar100_smoke(tmp_path, fake_cifar100):
    """The variant trains with Balanced Softmax: at a = 0 the bias-free Difficulty-Net gives w = 1, so the first
    step's loss is the plain Balanced Softmax of the batch (and not its CE)."""
    record = tmp_path / "loss.json"
    results = run(["experiment=diffnet_bs_cifar100", f"datamodule.root={fake_cifar100}", *QUICK_SMOKE,
                   "+callbacks.record._target_=test_diffnet_method.RecordFirstStepLoss", f"+callbacks.record.path={record}"],
                  tmp_path)
    assert results["stage"] == "las" and results["protocol"] == "diffnet"
    assert sum(results["train_class_counts"]) == 10302
    losses = json.loads(record.read_text())
    assert losses["logged"] == pytest.approx(losses["balanced_softmax"], rel=1e-4)
    assert losses["balanced_softmax"] != pytest.approx(losses["ce"], rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["diffnet_imagenet_lt_resnet50", "diffnet_places_lt_resnet152"])
def test_list_data_set_experiments_smoke(tmp_path, experiment):
    from fakedata import make_list_dataset

    kind = "imagenet_lt" if "imagenet" in experiment else "places_lt"
    make_list_dataset(tmp_path / "data", kind=kind, counts=(10, 6, 4), val_per_class=10, test_per_class=2)
    results = run([f"experiment={experiment}", f"datamodule.root={tmp_path / 'data'}", "datamodule.num_classes=3",
                   "datamodule.num_workers=0", "datamodule.persistent_workers=false", "datamodule.image_size=32",
                   "datamodule.resize=36", "datamodule.batch_size=4", "model.backbone_kwargs.pretrained=false",
                   *QUICK_SMOKE], tmp_path / "run")
    first = read_results(tmp_path / "run" / "train" / "results.json")
    assert results["stage"] == "las" and first["protocol"] == "diffnet" and first["train_class_counts"] == [10, 6, 4]
    assert sum(first["diffnet/accuracy_vector"]) >= 0 and len(first["diffnet/class_weights"]) == 3


@pytest.mark.slow
@pytest.mark.skipif(real_cifar10() is None, reason="real CIFAR-10 not found: set LONGTAIL_CIFAR10 or place ../shared/data")
def test_diffnet_cifar10_smoke_on_the_real_data(tmp_path):
    run(["experiment=diffnet_cifar10", f"datamodule.root={real_cifar10()}", *QUICK_SMOKE], tmp_path)
    for stage in ("train", "las"):
        results = read_results(tmp_path / stage / "results.json")
        assert results["protocol"] == "diffnet" and results["selection"] == "best val/acc"
        assert results["train_class_counts"] == [4975, 2982, 1787, 1071, 642, 385, 230, 138, 82, 49]


DDP_SCRIPT = """
import sys

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from longtail.models.registry import register_backbone
from longtail.config.overrides import CONF_DIR
from longtail.engine.stages import stage_configs


@register_backbone("flat_mlp")
def flat_mlp(in_channels=1, **_):
    # no BatchNorm: its batch statistics are per process, so only a BN-free model takes one process's exact step
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh())
    mlp.out_features = 32
    return mlp


world, out = int(sys.argv[1]), sys.argv[2]
with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
    cfg = compose("config", overrides=sys.argv[3:])
stage = stage_configs(cfg)[0][1]
L.seed_everything(0)
datamodule = instantiate(stage.datamodule)
datamodule.setup()
model = instantiate(stage.method, class_counts=datamodule.class_counts, class_names=datamodule.class_names)
trainer = L.Trainer(accelerator="cpu", devices=world, strategy="ddp" if world > 1 else "auto", max_epochs=1,
                    limit_train_batches=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False)
trainer.fit(model, datamodule=datamodule)
if trainer.global_rank == 0:
    grads = {f"grad.{n}": p.grad for n, p in model.named_parameters() if p.grad is not None}
    torch.save({**model.state_dict(), **grads}, out)
"""


@pytest.mark.slow
def test_two_process_ddp_takes_the_one_process_steps(tmp_path):
    """2 processes (gloo) on the same global batches and meta batches give one process's gradients and weights:
    the virtual step, the meta-gradient and Difficulty-Net's gradient are the global batch's (a BN-free model, since
    BatchNorm statistics are per process; no augmentation, which each process draws on its own)."""
    import subprocess
    import sys

    script = tmp_path / "fit.py"
    script.write_text(DDP_SCRIPT)
    overrides = [*DIFFNET_DIGITS[:3], "model.backbone=flat_mlp", "datamodule.batch_size=32", "datamodule.augment=null",
                 "method.accuracy_timing=before_epoch", "method.difficulty_optimizer._target_=torch.optim.SGD",
                 "method.difficulty_optimizer.lr=1.0"]  # SGD: Adam's first steps would amplify rounding to ±lr
    states = []
    for world in (1, 2):
        out = tmp_path / f"world{world}.pt"
        done = subprocess.run([sys.executable, str(script), str(world), str(out), *overrides], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        states.append(torch.load(out, weights_only=False))
    one, two = states
    assert any(k.startswith("grad.difficulty_net.") for k in one) and any(k.startswith("grad.network.") for k in one)
    assert one.keys() == two.keys()
    for key in one:
        assert torch.allclose(one[key].float(), two[key].float(), rtol=1e-4, atol=1e-6), key


@pytest.mark.slow
def test_difficulty_net_runs_on_the_shared_held_out_split(tmp_path):
    """Under protocol=ldam with val=heldout (one split for every method) the held-out set is Difficulty-Net's
    meta and accuracy set."""
    overrides = [o for o in DIFFNET_DIGITS if o != "datamodule.protocol=diffnet"]
    results = run([*overrides, "datamodule.imbalance_factor=10"], tmp_path)
    stage1 = read_results(tmp_path / "train" / "results.json")
    assert stage1["protocol"] == results["protocol"] == "ldam" and stage1["val"] == "heldout" and len(stage1["diffnet/accuracy_vector"]) == 10
