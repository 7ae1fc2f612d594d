"""Hydra sweeps: Optuna searches tune on validation metrics only; launcher configs compose."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import CONF_DIR
from hydra import compose, initialize_config_dir

from longtail.run import sweep_objective

SEARCHES = sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml"))


def test_a_sweep_never_optimises_a_test_metric():
    with pytest.raises(ValueError, match="test set"):
        sweep_objective({"test/acc": 0.9}, "test/acc")
    with pytest.raises(ValueError, match="validation split"):
        sweep_objective({"test/acc": 0.9}, "val/acc")
    assert sweep_objective({"val/acc": 0.5}, "val/acc") == 0.5


@pytest.mark.parametrize("search,experiment", [("focal_optuna", "focal_cifar10"), ("ldam_drw_optuna", "ldam_drw_cifar100"),
                                               ("ride_optuna", "ride_cifar100")])
def test_search_spaces_name_keys_the_experiment_has(search, experiment):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}", f"hparams_search={search}"],
                      return_hydra_config=True)
    assert cfg.optimized_metric.startswith("val/")
    for key in cfg.hydra.sweeper.params:
        node = cfg
        for part in key.split("."):
            assert part in node, f"{search}: {key} is not a key of {experiment}"
            node = node[part]


@pytest.mark.parametrize("launcher", ["local_parallel", "slurm"])
def test_launcher_configs_compose(launcher):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "joblib" in cfg.hydra.launcher._target_.lower() or "submitit" in cfg.hydra.launcher._target_.lower()


@pytest.mark.slow
def test_an_optuna_sweep_runs_and_reports_the_best_validation_value(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "longtail.run", "-m", "hparams_search=focal_optuna", "hydra.sweeper.n_trials=2",
         "trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"paths.log_dir={tmp_path}"],
        cwd=tmp_path, check=True, capture_output=True, text=True,
    )
    best = yaml.safe_load(next(tmp_path.rglob("optimization_results.yaml")).read_text())
    assert set(best["best_params"]) == {"loss.gamma", "method.drw_start"} and 0.0 <= best["best_value"] <= 1.0
