"""RIDE end to end on the embedded digits: experts, DRW switch, router stage, distillation, any base loss."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import CONF_DIR, compose_config, direct_evaluation, read_results, real_cifar10, run
from fakedata import make_list_dataset

import longtail
from longtail.engine.stages import stage_configs

CIFAR10 = real_cifar10()
SMALL_FILES = ["datamodule.num_workers=0", "datamodule.persistent_workers=false", "datamodule.image_size=32",
               "datamodule.resize=36", "datamodule.batch_size=4"]
RIDE_DIGITS = ["model=ride_resnet32", "model.backbone=resnet8", "method=ride", "loss=ride", "trainer.max_epochs=2",
               "trainer.limit_train_batches=3"]
ROUTER = ["+stage@stages.router=router", "stages.router.method.router.top_k=10",
          "stages.router.datamodule.batch_size=64", "stages.router.trainer.max_epochs=1"]


def network_state(path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("network.")}


@pytest.mark.slow
def test_ride_then_router_keeps_the_experts_frozen_and_reports_routing(tmp_path):
    results = run([*RIDE_DIGITS, *ROUTER], tmp_path)
    stage1 = read_results(tmp_path / "train" / "results.json")
    before, after = network_state(stage1["checkpoint"]), network_state(results["checkpoint"])
    assert before.keys() == after.keys() and any("running_var" in k for k in before)
    assert all(torch.equal(before[k], after[k]) for k in before)
    router = longtail.load(results["checkpoint"])
    assert {n.split(".")[0] for n, p in router.named_parameters() if p.requires_grad} == {"router"}
    for key in ("test/acc_router", "test/experts_per_sample", "test/gflops_router", "test/gflops_all_experts"):
        assert key in results
    assert 1.0 <= results["test/experts_per_sample"] <= 3.0
    assert 0 < results["test/gflops_router"] <= results["test/gflops_all_experts"] * 1.01
    assert sum(results["test/expert_fractions"]) == pytest.approx(1.0)
    assert results["test/acc"] == pytest.approx(stage1["test/acc"])


@pytest.mark.slow
def test_ride_deferred_reweighting_switches_at_the_zero_indexed_epoch(tmp_path):
    record = tmp_path / "deferred.json"
    run([*RIDE_DIGITS, "trainer.max_epochs=3", "trainer.limit_train_batches=1", "method.drw_start=2",
         "+callbacks.record._target_=conftest.RecordLossWeights", f"+callbacks.record.path={record}"], tmp_path)
    assert json.loads(record.read_text()) == [False, False, True]


@pytest.mark.slow
def test_distillation_uses_the_previous_stage_as_a_frozen_teacher(tmp_path):
    student_stage = ["+stage@stages.student=student", "stages.student.model.num_experts=2",
                     "stages.student.scheduler.warmup_epochs=1"]
    results = run([*RIDE_DIGITS, "model.num_experts=4", *student_stage], tmp_path)
    teacher_ckpt = read_results(tmp_path / "train" / "results.json")["checkpoint"]
    student = longtail.load(results["checkpoint"])
    assert student.network.num_experts == 2 and longtail.load(teacher_ckpt).network.num_experts == 4
    assert not any(k.startswith("_teacher") or "teacher" in k for k in student.state_dict())


def test_distillation_without_a_teacher_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="teacher"):
        run([*RIDE_DIGITS, "method.distill=true", "loss=ride_distill"], tmp_path)


@pytest.mark.slow
def test_any_library_loss_can_train_the_experts(tmp_path):
    results = run([*RIDE_DIGITS, "loss@loss.base_loss=balanced_softmax", "trainer.max_epochs=1"], tmp_path)
    model = longtail.load(results["checkpoint"])
    assert type(model.loss.base_loss).__name__ == "BalancedSoftmaxLoss"
    assert results["test/acc"] == pytest.approx(direct_evaluation(results["checkpoint"])["acc"])


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("ride*.yaml")))
def test_ride_experiments_follow_the_spec_schedules(experiment):
    stages = dict(stage_configs(compose_config([f"experiment={experiment}"])))
    router = stages["router"]
    assert router.method._target_.endswith("RIDERouter") and router.trainer.max_epochs == 5
    assert router.method.router.top_k <= router.datamodule.num_classes
    first = stages["train"]
    large = "imagenet" in experiment or "inat" in experiment
    assert first.method.drw_start == (80 if large else 160)
    assert first.trainer.max_epochs == (100 if large else 200)
    assert first.loss.diversity_factor == (-0.2 if large else -0.45)


@pytest.mark.slow
@pytest.mark.skipif(CIFAR10 is None, reason="real CIFAR-10 not found: set LONGTAIL_CIFAR10 or place ../shared/data")
def test_ride_cifar10_smoke_on_the_real_data(tmp_path):
    results = run(["experiment=ride_cifar10", f"datamodule.root={CIFAR10}", "debug=smoke",
                   "debug.trainer.max_epochs=1", "debug.trainer.limit_test_batches=1"], tmp_path)
    assert results["stage"] == "router" and "test/acc_router" in results


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["ride_cifar100", "ride_distill_cifar100"])
def test_ride_cifar100_experiments_smoke(tmp_path, fake_cifar100, experiment):
    results = run([f"experiment={experiment}", f"datamodule.root={fake_cifar100}", "debug=smoke",
                   "debug.trainer.max_epochs=1", "debug.trainer.limit_train_batches=2",
                   "debug.trainer.limit_test_batches=1"], tmp_path)
    assert sum(results["train_class_counts"]) == 10847 and "test/gflops_router" in results


@pytest.mark.slow
@pytest.mark.parametrize("experiment,kind", [("ride_imagenet_lt_resnext50", "imagenet_lt"),
                                             ("ride_inat_resnet50", "inat2018")])
def test_ride_large_scale_experiments_smoke_on_list_files(tmp_path, experiment, kind):
    make_list_dataset(tmp_path / "data", kind=kind, counts=(10, 6, 4, 3, 2), val_per_class=2, test_per_class=2)
    results = run([f"experiment={experiment}", f"datamodule.root={tmp_path / 'data'}", "datamodule.num_classes=5",
                   "stages.router.method.router.top_k=5", "stages.router.datamodule.batch_size=4", *SMALL_FILES,
                   "debug=smoke", "trainer.limit_train_batches=2"], tmp_path / "run")
    assert results["train_class_counts"] == [10, 6, 4, 3, 2] and "test/acc_router" in results


@pytest.mark.parametrize("experiment,experts,top_k", [
    ("ride_imagenet_lt_resnet10", (3,), 30), ("ride_imagenet_lt_resnet50", (3,), 50),
    ("ride_distill_imagenet_lt_resnext50", (6, 4), 50), ("ride_distill_inat_resnet50", (6, 4), 50),
    ("ride_distill4_cifar100", (6, 4), 30),
])
def test_ride_presets_of_the_model_zoo(experiment, experts, top_k):
    stages = dict(stage_configs(compose_config([f"experiment={experiment}"])))
    assert list(stages) == ["train", *(["student"] if len(experts) == 2 else []), "router"]
    assert stages["train"].model.num_experts == experts[0]
    assert stages["router"].model.num_experts == experts[-1] and stages["router"].method.router.top_k == top_k
    if len(experts) == 2:
        student = stages["student"]
        assert student.method.distill and student.model.num_experts == experts[1]
        assert student.scheduler.warmup_epochs == (20 if "cifar" in experiment else 5)


@pytest.mark.parametrize("force,experts", [("all", 3), ("one", 1)])
def test_the_router_stage_can_force_all_or_one_expert(force, experts):
    from hydra.utils import instantiate

    stage = dict(stage_configs(compose_config([*RIDE_DIGITS, *ROUTER, f"stages.router.method.force={force}"])))["router"]
    model = instantiate(stage.method, class_counts=[50] * 10).eval()
    logits, used = model.routed(torch.rand(8, 1, 8, 8))
    assert logits.shape == (8, 10) and used.tolist() == [experts] * 8
