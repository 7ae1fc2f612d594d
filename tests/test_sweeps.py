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


@pytest.mark.slow
def test_a_sweep_lives_in_one_folder_goes_on_past_a_failed_job_and_restarts_without_finished_jobs(tmp_path):
    """Two run names (as two experiments would have) share the sweep folder; IF 0.5 is refused in its jobs."""
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "longtail.run", "-m", "datamodule.imbalance_factor=10,0.5", "name=alpha,beta",
               "trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"paths.log_dir={tmp_path / 'logs'}",
               f"hydra.sweep.dir={sweep}"]
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0_alpha", "1_beta", "2_alpha", "3_beta"] and (sweep / "multirun.yaml").is_file()
    for job in ("0_alpha", "1_beta"):
        assert (sweep / job / "results.json").is_file() and not (sweep / job / "FAILED.txt").exists()
    for job in ("2_alpha", "3_beta"):
        assert "imbalance_factor" in (sweep / job / "FAILED.txt").read_text()
    assert f"sweep {sweep}: 2 finished, 2 failed, 0 unfinished" in first.stdout
    assert f"hydra.sweep.dir={sweep}" in first.stdout
    finished = (sweep / "0_alpha" / "results.json").stat().st_mtime_ns
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert "0_alpha finished before: skipped" in second.stdout and "1_beta finished before: skipped" in second.stdout
    assert (sweep / "0_alpha" / "results.json").stat().st_mtime_ns == finished
    assert f"sweep {sweep}: 2 finished, 2 failed, 0 unfinished" in second.stdout
