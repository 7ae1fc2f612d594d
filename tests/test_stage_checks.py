"""Every stage checked before the first one trains, per-stage overrides in a sweep over experiments, and a
config group given a flag: each mistake ends in one message naming the key to change, before Hydra makes a
run folder (:mod:`longtail.config.validation`, :func:`longtail.config.overrides.check_overrides`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import CONF_DIR, compose_config
from omegaconf import OmegaConf

from longtail.config.overrides import check_overrides, skipped_stage_overrides
from longtail.config.validation import stage_problem

SWEEP = ["-m", "experiment=drolt_cifar10,ride_cifar10", "stages.router.method.router.top_k=4", "debug=smoke"]


@pytest.mark.parametrize("args, key, reason", [
    (["stages.robust.method.centroids=clena", "debug=smoke"], "stages.robust.method.centroids=clena",
     "centroids must be one of"),
    (["drolt.centroids=clena"], "drolt.centroids=clena", "centroids must be one of"),
    (["stages.robust.method.loss.eps_index=foo"], "stages.robust.method.loss.eps_index=foo",
     "eps_index must be one of"),
    (["+stages.robust.method.centroid=clean"], "stages.robust.method.centroid=clean",
     "unexpected keyword argument 'centroid'"),
    (["stages.robust.sampler.num_samples_cls=0"], "stages.robust.sampler.num_samples_cls=0",
     "num_samples_cls must be >= 1"),
    (["drolt.feat_schedule=cosin"], "drolt.feat_schedule=cosin", "'drolt.schedules.cosin' not found"),
])
def test_a_later_stages_mistake_is_named_by_its_key_before_any_stage_trains(args, key, reason):
    message = check_overrides(["experiment=drolt_cifar10", *args])
    assert message is not None and message.startswith(f"{key}: ") and reason in message, message
    assert "stage 'robust' of drolt_cifar10, checked before any stage trains" in message, message


@pytest.mark.parametrize("args, key, reason", [
    (["stages.ipdpp.sampler.cap=100"], "stages.ipdpp.sampler.cap=100", "IP-DPP keeps k=500 images per class"),
])
def test_settings_that_must_agree_are_refused_when_the_config_is_composed(args, key, reason):
    message = check_overrides(["experiment=ipdpp_cifar10", *args])
    assert message is not None and message.startswith(key) and reason in message, message
    assert "stage 'ipdpp' of ipdpp_cifar10" in message, message


def test_difficulty_nets_split_without_its_held_out_validation_is_refused_when_composed():
    """protocol=diffnet validates on its own held-out set: val=none is refused, naming the key (it used to be
    overridden silently)."""
    message = check_overrides(["experiment=diffnet_cifar10", "datamodule.val=none"])
    assert message is not None and message.startswith("datamodule.val=none: "), message
    assert "protocol=diffnet validates on its own held-out set, so datamodule.val must be heldout or source" in message


def test_a_stage_starting_from_one_that_does_not_run_before_it_is_refused():
    message = check_overrides(["experiment=decouple_cifar10", "stages.crt.init_stage=trian"])
    assert message.startswith("stages.crt.init_stage=trian: stage 'crt' starts from stage 'trian'"), message
    assert "train, crt, lws, tau_norm" in message, message


def test_files_named_by_a_path_must_exist_and_no_weights_are_downloaded(monkeypatch):
    import torch

    downloads = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: downloads.append(a) or {})
    cfg = compose_config(["experiment=decouple_places_lt_resnet152"])  # ImageNet-pretrained ResNet-152
    assert stage_problem(cfg) is None and downloads == []
    message = check_overrides(["experiment=ride_cifar10", "method.teacher_checkpoint=/no/teacher.ckpt"])
    assert message.startswith("method.teacher_checkpoint=/no/teacher.ckpt: there is no file '/no/teacher.ckpt' "
                              "(stage 'train' of ride_cifar10"), message


def test_checking_every_stage_takes_seconds():
    cfg = compose_config(["experiment=drolt_cifar10"])
    started = time.perf_counter()
    assert stage_problem(cfg) is None
    assert time.perf_counter() - started < 20  # about 0.3 s alone; generous for a loaded machine


@pytest.mark.parametrize("experiment", ["ride_cifar10", "decouple_cifar10", "ipdpp_cifar10", "diffnet_cifar10"])
def test_each_method_familys_stages_build_as_configured(experiment):
    assert stage_problem(compose_config([f"experiment={experiment}"])) is None


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_shipped_experiment_passes_the_stage_check(experiment):
    assert stage_problem(compose_config([f"experiment={experiment}"])) is None


def test_a_stage_override_in_a_sweep_needs_only_some_experiments_to_have_the_stage():
    assert check_overrides(SWEEP) is None
    message = check_overrides([*SWEEP[:2], "stages.routr.method.router.top_k=4"])
    assert "no experiment of this sweep has a stage 'routr'" in message, message
    assert "Did you mean stages.router.method.router.top_k=4?" in message, message
    message = check_overrides(["-m", "experiment=ce_cifar10,ride_cifar10", "stages.robust.trainer.max_epochs=1"])
    assert "has a stage 'robust'" in message and "A stage is added only from a stage config" in message, message


def test_every_experiment_and_every_choice_of_a_sweep_is_checked():
    message = check_overrides(["-m", "experiment=ride_cifar10,drolt_cifar10", "stages.robust.method.centroids=clena"])
    assert message.startswith("stages.robust.method.centroids=clena: centroids must be one of"), message
    message = check_overrides(["-m", "experiment=drolt_cifar10", "stages.robust.method.centroids=clean,clena"])
    assert message.startswith("stages.robust.method.centroids=clena: "), message


def test_a_multiruns_compositions_skip_a_stage_the_experiment_does_not_have():
    line = "stages.router.method.router.top_k=4"
    drolt = compose_config(["experiment=drolt_cifar10", line, "hydra.mode=MULTIRUN"])
    assert list(drolt.stages) == ["train", "robust", "classifier"]
    ride = compose_config(["experiment=ride_cifar10", line, "hydra.mode=MULTIRUN"])
    assert ride.stages.router.method.router.top_k == 4
    assert list(compose_config([line, "hydra.mode=MULTIRUN"]).stages) == ["train"]  # the sweep's base config
    with pytest.raises(Exception, match="Could not override"):  # a single run still refuses it
        compose_config(["experiment=drolt_cifar10", line])
    assert skipped_stage_overrides([line, "debug=smoke"], drolt.stages) == [(line, "router")]
    assert skipped_stage_overrides([line, "debug=smoke"], ride.stages) == []


@pytest.mark.parametrize("args, options", [
    (["debug=true"], "debug=smoke."),
    (["debug=False"], "debug=smoke."),
    (["debug=null"], "debug=smoke."),
    (["-m", "debug=smoke,1"], "debug=smoke."),
    (["logger=true"], "logger=csv, logger=none or logger=wandb."),
    (["experiment=drolt_cifar10", "sampler=true"], "sampler=class_aware"),
])
def test_a_config_group_given_a_flag_or_number_names_its_options(args, options):
    message = check_overrides(args)
    group = args[-1].split("=")[0]
    assert message is not None and f"{group} is a config group and takes the name of one of its options" in message
    assert message.endswith(options) or options in message, message


@pytest.mark.parametrize("args", [["debug=smoke"], ["~logger"], ["logger=none"]])
def test_config_group_options_pass(args):
    assert check_overrides(args) is None


def _longtail(args: list[str], folder) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, "-m", "longtail.run", *args, f"paths.log_dir={folder}/logs"], cwd=folder,
                          env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("args, fragment", [
    (["experiment=drolt_cifar10", "stages.robust.method.centroids=clena", "debug=smoke", "datamodule.root={tmp}/no"],
     "stages.robust.method.centroids=clena: centroids must be one of"),
    (["debug=true"], "'debug=true': debug is a config group"),
])
def test_the_command_stops_with_one_message_and_no_run_folder(tmp_path, args, fragment):
    done = _longtail([arg.format(tmp=tmp_path) for arg in args], tmp_path)
    assert done.returncode == 2, done.stdout
    assert done.stdout.count("longtail: error:") == 1 and fragment in done.stdout, done.stdout
    assert "Traceback" not in done.stdout and not (tmp_path / "logs").exists(), done.stdout


@pytest.mark.slow
def test_a_sweep_sets_a_stage_where_it_exists_and_says_where_it_skipped_it(tmp_path):
    """Both jobs compose and start; each then stops on its data (a one-class folder, refused at once offline)."""
    from PIL import Image

    for split in ("train", "test"):
        (tmp_path / "tree" / split / "a").mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(tmp_path / "tree" / split / "a" / "x.jpg")
    done = _longtail([*SWEEP, f"datamodule.root={tmp_path}/tree"], tmp_path)
    assert done.returncode == 0, done.stdout
    skipped = "drolt_cifar10: skipped stages.router.method.router.top_k=4 (this experiment has no stage 'router'"
    assert done.stdout.count(skipped) == 1 and "ride_cifar10: skipped" not in done.stdout, done.stdout
    jobs = {job.name: job for job in (tmp_path / "logs" / "multiruns").glob("*/*_cifar10")}
    assert sorted(jobs) == ["0_drolt_cifar10", "1_ride_cifar10"], done.stdout
    for job in jobs.values():
        assert "holds 1 classes" in (job / "FAILED.txt").read_text()  # failed on the data, not on the override
    ride = OmegaConf.load(jobs["1_ride_cifar10"] / ".hydra" / "config.yaml")  # the job's config as Hydra saved it
    assert ride.stages.router.method.router.top_k == 4
