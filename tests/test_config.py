"""The Hydra config tree: every experiment composes, selects honestly, and is found from a wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import CONF_DIR, REPO, compose_config, real_cifar10
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from longtail.engine.stages import stage_configs

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
REQUIRED = [f"{m}_{d}" for m in ("ce", "focal", "ldam_drw", "balanced_softmax", "logit_adjust", "crt", "tau_norm")
            for d in ("cifar10", "cifar100")] + ["ce_imagenet_lt_resnet50"]


def test_the_issue_experiments_exist():
    assert set(REQUIRED) <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_never_selects_on_test(experiment):
    cfg = compose_config([f"experiment={experiment}"])
    assert cfg.name == experiment
    for name, stage in stage_configs(cfg):
        monitors = [c.get("monitor") for c in stage.callbacks.values() if c is not None and "monitor" in c]
        assert all(m is None or m.startswith("val/") for m in monitors), (name, monitors)
        if stage.model.get("backbone_kwargs", {}).get("pretrained"):
            stage.model.backbone_kwargs.pretrained = False  # tests never download weights
        with torch.device("meta"):  # shapes only: no memory, no weight initialisation
            network = instantiate(stage.method.network)
        assert network.num_classes == stage.datamodule.num_classes


@pytest.mark.parametrize("experiment", ["ce_cifar10", "crt_cifar100", "ldam_drw_cifar10"])
def test_cifar_recipe_is_the_published_schedule(experiment):
    cfg = compose_config([f"experiment={experiment}"])
    (_, first), *rest = stage_configs(cfg)
    assert first.trainer.max_epochs == 200 and first.model.backbone == "resnet32"
    assert first.method.optimizer.lr == 0.1 and first.method.scheduler.milestones == [160, 180]
    assert first.datamodule.imbalance_factor == 100 and first.datamodule.subset_seed == 0
    for _, stage in rest:
        assert stage.method._target_.startswith("longtail.methods.decouple.")


@pytest.mark.parametrize("experiment", ["crt_cifar10", "ipdpp_cifar10"])
def test_smoke_shrinks_every_stage_but_keeps_data_and_method(experiment):
    """Fewer epochs, steps and smaller batches in every stage (BNS's 1024 too); the same data and method."""
    full = dict(stage_configs(compose_config([f"experiment={experiment}"])))
    smoke = dict(stage_configs(compose_config([f"experiment={experiment}", "debug=smoke"])))
    batches = ("batch_size", "eval_batch_size")
    for name in full:
        assert smoke[name].trainer.max_epochs <= 2 < full[name].trainer.max_epochs
        assert smoke[name].trainer.limit_train_batches <= 4
        assert smoke[name].method == full[name].method
        assert smoke[name].datamodule.batch_size == smoke[name].datamodule.eval_batch_size == 32
        assert {k: v for k, v in smoke[name].datamodule.items() if k not in batches} == {
            k: v for k, v in full[name].datamodule.items() if k not in batches}


def test_fidelity_reference_turns_on_the_quirk_flags():
    cfg = compose_config(["experiment=focal_cifar10", "fidelity=reference"])
    assert cfg.loss.pt_from_weighted_ce is True
    assert compose_config(["experiment=focal_cifar10"]).loss.pt_from_weighted_ce is False


def test_an_unknown_config_key_is_an_error_naming_it():
    with pytest.raises(ConfigCompositionException, match="max_epoch"):
        compose_config(["trainer.max_epoch=3"])
    with pytest.raises(ConfigCompositionException, match="no_such_experiment"):
        compose_config(["experiment=no_such_experiment"])


@pytest.mark.slow
def test_the_config_tree_ships_in_the_wheel_and_runs_from_any_directory(tmp_path):
    wheel_dir, target, cwd = tmp_path / "wheel", tmp_path / "site", tmp_path / "elsewhere"
    cwd.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(REPO)], check=True)
    wheel = next(wheel_dir.glob("longtail-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    assert (target / "longtail" / "conf" / "config.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    run_dir = tmp_path / "run"
    subprocess.run(
        [sys.executable, "-m", "longtail.run", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
         f"hydra.run.dir={run_dir}"],
        cwd=cwd, env=env, check=True, capture_output=True, text=True,
    )
    results = json.loads((run_dir / "results.json").read_text())
    assert results["checkpoint"].startswith(str(run_dir))
    where = subprocess.run([sys.executable, "-c", "import longtail; print(longtail.__file__)"],
                           cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(target))
    assert {"test/acc", "test/acc_few"} <= set(results)
    cifar10 = real_cifar10()
    if cifar10 is not None:  # the bench from the wheel too (it needs CIFAR; the skip of test_bench.py says so)
        bench = subprocess.run(
            [sys.executable, "-m", "longtail.bench", "--root", str(cifar10), "--method", "erm", "--steps", "2",
             "--warmup", "1", "--repeats", "1", "--eval-batches", "2", "--no-epoch-rss", "--json", "bench.json"],
            cwd=cwd, env=env, check=True, capture_output=True, text=True)
        assert json.loads((cwd / "bench.json").read_text())["methods"]["erm"]["img_s"] > 0, bench.stdout


def test_resolved_config_round_trips_through_yaml():
    cfg = compose_config(["experiment=ce_cifar100"])
    for _, stage in stage_configs(cfg):
        assert OmegaConf.to_yaml(stage, resolve=True)


def test_make_test_fast_skips_the_slow_tier_and_ci_prints_the_slowest_tests():
    """The edit loop (README: make test-fast) runs everything but the slow tier; CI runs make test with durations."""
    makefile = (REPO / "Makefile").read_text()
    recipes = dict(block.split(":\n", 1) for block in makefile.split("\n\n") if ":\n\t" in block)
    fast = next(recipe for target, recipe in recipes.items() if target.endswith("test-fast"))
    assert '-m pytest -q -m "not slow"' in fast
    assert "make test PYTEST_ARGS=--durations=20" in (REPO / ".ci" / "run").read_text()
    assert "make test-fast" in (REPO / "README.md").read_text()


def test_the_optimizer_group_and_a_stage_override():
    """`optimizer=adamw` swaps the first stage's optimizer; a stage keeps its own (cRT: SGD with
    the group's momentum and its own weight decay) and takes a key override."""
    stages = dict(stage_configs(compose_config(["experiment=crt_cifar10", "optimizer=adamw",
                                                "stages.crt.method.optimizer.lr=0.05"])))
    assert stages["train"].method.optimizer._target_ == "torch.optim.AdamW"
    assert list(stages["train"].method.optimizer.betas) == [0.9, 0.95]
    crt = stages["crt"].method.optimizer
    assert (crt._target_, crt.lr, crt.momentum, crt.weight_decay) == ("torch.optim.SGD", 0.05, 0.9, 5.0e-4)
