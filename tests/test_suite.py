"""The suites (conf/suite): every method on one protocol from one command, and the one table that comes out."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from conftest import CONF_DIR, compose_config, real_cifar10
from hydra import compose, initialize_config_dir

from longtail import report
from longtail.engine.stages import stage_configs

SUITES = sorted(p.stem for p in (CONF_DIR / "suite").glob("*.yaml"))
LABELS = ["CE", "cRT", "LWS", "tau-norm", "Logit adjustment (post-hoc)", "Focal", "CB-Focal", "LDAM-DRW",
          "Balanced Softmax", "DRO-LT", "RIDE (3 experts)", "RIDE (router)", "Difficulty-Net", "BNS (linear probe)",
          "IP-DPP"]


def suite_experiments(suite: str) -> list[str]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"suite={suite}"], return_hydra_config=True)
    return cfg.hydra.sweeper.params.experiment.split(",")


@pytest.mark.parametrize("suite", SUITES)
def test_every_job_of_a_suite_runs_every_stage_on_the_shared_protocol(suite):
    """One split (the LDAM subsample less 25 held-out images per class), one backbone (ResNet-32, RIDE's experts
    and the BNS encoder too), one selection rule (best held-out top-1) in every stage of every method, and each
    table row a stage that the experiment runs."""
    experiments = suite_experiments(suite)
    assert len(experiments) == 9 and all(e.endswith(suite.split("_")[0]) for e in experiments)
    thresholds = None
    for experiment in experiments:
        cfg = compose_config([f"suite={suite}", f"experiment={experiment}", "schedule.scale=0.04"])
        stages = dict(stage_configs(cfg))
        for name, stage in stages.items():
            assert stage.model.backbone == "resnet32", (experiment, name)
            assert (stage.datamodule.val, stage.datamodule.protocol, stage.datamodule.val_per_class) == (
                "heldout", "ldam", 25), (experiment, name)
            assert stage.datamodule.imbalance_factor == 100 and stage.datamodule.subset_seed == 0
            assert stage.callbacks.model_checkpoint.monitor == "val/acc", (experiment, name)
            assert stage.trainer.max_epochs >= 1, (experiment, name)
            thresholds = thresholds or list(stage.metrics.shot_thresholds)
            assert list(stage.metrics.shot_thresholds) == thresholds, (experiment, name)
        assert suite.startswith(cfg.shared_protocol.name)  # cifar10_lt_cpu: the protocol of cifar10_lt
        assert {row.stage for row in cfg.table_rows} <= set(stages), experiment
    assert thresholds == ([500, 200] if suite.startswith("cifar10_") else [100, 20])


def test_the_cifar10_suite_gives_every_method_of_the_table():
    rows = [row.label for e in suite_experiments("cifar10_lt")
            for row in compose_config([f"experiment={e}"]).table_rows]
    assert rows == LABELS


def test_a_suite_folder_is_found_again_by_the_same_command():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["suite=cifar10_lt", "schedule.scale=0.04", "paths.log_dir=/logs"],
                      return_hydra_config=True)
        smoke = compose("config", overrides=["suite=cifar10_lt", "debug=smoke", "paths.log_dir=/logs"],
                        return_hydra_config=True)
    assert cfg.hydra.sweep.dir == "/logs/suites/cifar10_lt_x0.04" and cfg.hydra.sweep.subdir == "ce_digits/seed0"
    assert smoke.hydra.sweep.dir == "/logs/suites/cifar10_lt_x1.0_smoke"  # never mixed with real runs


@pytest.mark.slow
@pytest.mark.skipif(real_cifar10() is None, reason="real CIFAR-10 not found: set LONGTAIL_CIFAR10 or place ../shared/data")
def test_the_suite_runs_every_method_over_seeds_reports_one_table_and_restarts_without_finished_jobs(tmp_path):
    logs = tmp_path / "logs"
    command = [sys.executable, "-m", "longtail.run", "-m", "suite=cifar10_lt", "seed=0,1",
               f"datamodule.root={real_cifar10()}", "debug=smoke", "trainer.enable_progress_bar=false",
               f"paths.log_dir={logs}"]
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = logs / "suites" / "cifar10_lt_x1.0_smoke"
    assert f"sweep {sweep}: 18 finished, 0 failed, 0 unfinished" in first.stdout
    jobs = sorted(p.parent for p in sweep.rglob(".hydra"))
    assert len(jobs) == 18 and (sweep / "multirun.yaml").is_file()
    for job in jobs:
        results = json.loads((job / "results.json").read_text())
        assert (results["shared_protocol"], results["protocol"], results["val"], results["selection"]) == (
            "cifar10_lt", "ldam", "heldout", "best val/acc"), job

    # decoupling: CE, cRT, LWS and tau-norm from one CE stage; a row's cost is the stages that made its model
    decouple = sweep / "decouple_cifar10" / "seed0"
    train, crt = (json.loads((decouple / s / "results.json").read_text()) for s in ("train", "crt"))
    assert crt["run/train_images"] == train["train_images"] + crt["train_images"]
    assert crt["run/epochs"] == {"train": 2, "crt": 2}
    assert json.loads((decouple / "tau_norm" / "results.json").read_text())["epochs"] == 0

    out = tmp_path / "table"
    out.mkdir()
    rows = report.main([str(sweep), "--csv", str(out / "t.csv"), "--json", str(out / "t.json"),
                        "--plot", str(out / "bars.png"), "--plot-cost", str(out / "cost.png")])
    assert [row["experiment"] for row in rows] == LABELS
    for row in rows:
        assert (row["n_seeds"], row["seeds"]) == (2, [0, 1]), row["experiment"]
        measured = [key for key in row["mean"] if not (row["experiment"] == "RIDE (router)" and key == "test/ece")]
        if row["converged"]:  # a smoke run's row may not have trained: then it says why instead of numbers
            assert all(not math.isnan(row["mean"][key]) for key in measured), row["experiment"]
        else:
            assert row["converged_reason"] and math.isnan(row["mean"]["test/acc"]), row["experiment"]
        assert row["mean"]["run/train_images"] > 0 and row["epochs"]
    assert rows[0]["shared"] == ["debug=smoke", "suite=cifar10_lt"]
    ride, routed = rows[LABELS.index("RIDE (3 experts)")], rows[LABELS.index("RIDE (router)")]
    assert routed["mean"]["test/gflops"] <= ride["mean"]["test/gflops"] + 1e-6
    assert all((out / name).stat().st_size > 0 for name in ("t.csv", "t.json", "bars.png", "cost.png"))

    # killed: one job's last stage unfinished; the same command skips the other 17 and resumes that stage
    killed = sweep / "ipdpp_cifar10" / "seed1"
    (killed / "results.json").unlink()
    (killed / "ipdpp" / "results.json").unlink()
    untouched = (decouple / "results.json").stat().st_mtime_ns
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("finished before: skipped") == 17
    assert f"sweep {sweep}: 18 finished, 0 failed, 0 unfinished" in second.stdout
    assert (decouple / "results.json").stat().st_mtime_ns == untouched
    assert (killed / "ipdpp" / "results.json").is_file()

    # the same folder with other settings: refused job by job, nothing overwritten
    other = subprocess.run([*command[:5], "seed=0", *command[6:], "datamodule.imbalance_factor=50"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert other.returncode == 0 and "holds a finished job with other settings" in other.stderr
    assert (decouple / "results.json").stat().st_mtime_ns == untouched
    assert [row["experiment"] for row in report.main([str(sweep)])] == LABELS  # labelled by what the jobs ran


@pytest.mark.slow
def test_the_cifar100_suite_smoke_runs_on_generated_cifar100(fake_cifar100, tmp_path):
    logs = tmp_path / "logs"
    done = subprocess.run([sys.executable, "-m", "longtail.run", "-m", "suite=cifar100_lt", "seed=0",
                           f"datamodule.root={fake_cifar100}", "debug=smoke", "trainer.enable_progress_bar=false",
                           f"paths.log_dir={logs}"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = logs / "suites" / "cifar100_lt_x1.0_smoke"
    assert f"sweep {sweep}: 9 finished, 0 failed, 0 unfinished" in done.stdout
    rows = report.main([str(sweep)])
    assert [row["experiment"] for row in rows] == LABELS
    counts = json.loads((sweep / "focal_cifar100" / "seed0" / "results.json").read_text())["train_class_counts"]
    assert (len(counts), counts[0], counts[-1]) == (100, 475, 4)  # 25 per class held out first
