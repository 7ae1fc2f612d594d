"""A new user's first minutes (issue 12): the command line's mistakes end in one message before training,
the console shows one table and where the run is, results say what they cover and parse as strict JSON,
and `make bench` is the README's benchmark command."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, compose_config, run
from hydra.utils import instantiate

from longtail.config.overrides import check_overrides
from longtail.reporting.results import finite_or_none
from longtail.reporting.table import format_table
from longtail.run import describe


def _reject(token):
    raise ValueError(f"non-standard JSON constant {token}")


def test_non_finite_numbers_become_null_at_any_depth():
    value = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (2, "x"), "e": 0.5}
    assert finite_or_none(value) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2, "x"], "e": 0.5}


def test_a_smoke_run_says_it_tested_a_subset_and_its_results_parse_strictly(tmp_path):
    results = run(["debug=smoke", "datamodule.eval_batch_size=32", "metrics.shot_thresholds=[1000,1]"], tmp_path)
    assert math.isnan(results["test/acc_many"])  # an empty group, in memory
    assert (results["test_images"], results["test_images_total"]) == (4 * 32, 300)
    assert results["subset"].startswith("debug=smoke") and "tested on 128 of 300 test images" in results["subset"]
    assert "SUBSET — debug=smoke" in format_table(results)
    assert "scikit-learn" in results["data_source"]
    files = sorted(tmp_path.rglob("results.json"))
    assert files
    for path in files:
        parsed = json.loads(path.read_text(), parse_constant=_reject)
        assert parsed["test/acc_many"] is None and 0.0 <= parsed["test/acc"] <= 1.0
    with pytest.raises(ValueError):
        json.loads('{"x": NaN}', parse_constant=_reject)


@pytest.mark.slow
def test_a_full_test_set_has_no_subset_note(digits_ce_run):
    _, results = digits_ce_run
    assert results["subset"] is None and results["test_images"] == results["test_images_total"] == 300
    assert "SUBSET" not in format_table(results)


BAD_INPUT = {  # issue 12's done-when: each stops before training with one message, no traceback, no run folder
    "missing data": (["experiment=ce_cifar100", "datamodule.root={tmp}/nowhere", "datamodule.source.download=false"],
                     ["CIFAR-100 data not found", "nowhere", "datamodule.root=PATH"]),
    "wrong type": (["trainer.max_epochs=abc"], ["trainer.max_epochs takes an integer", "'abc'"]),
    "misspelt key": (["trainer.max_epoch=3"], ["Did you mean trainer.max_epochs?"]),
    # issue 17: a file that is not a checkpoint is named as such; a stage key naming no stage is refused
    "not a checkpoint": (["init_from={tmp}/notes.ckpt"], ["notes.ckpt' is not a checkpoint"]),
    "old stage option as a stage": (["experiment=drolt_cifar10", "stages.drolt_robust.trainer.max_epochs=1"],
                                ["train, robust, classifier", "use stages.robust.trainer.max_epochs=1."]),
    "added stage key": (["experiment=drolt_cifar10", "+stages.drolt_robust.trainer.max_epochs=1"],
                        ["train, robust, classifier", "use stages.robust.trainer.max_epochs=1."]),
}


@pytest.fixture(scope="module")
def commands(tmp_path_factory):
    """`python -m longtail.run` processes, all started at once (each in its own folder) to share the cores."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    arguments = {name: args for name, (args, _) in BAD_INPUT.items()}
    arguments["good"] = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false"]
    arguments["help"] = ["--help"]
    started = {}
    for name, args in arguments.items():
        folder = tmp_path_factory.mktemp(name.replace(" ", "_"))
        (folder / "notes.ckpt").write_text("garbage\n")  # a file that is not a checkpoint
        args = [a.format(tmp=folder) for a in args] + [f"paths.log_dir={folder}/logs"]
        started[name] = (folder, subprocess.Popen([sys.executable, "-m", "longtail.run", *args], cwd=folder, env=env,
                                                  text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    yield {name: (folder, process) for name, (folder, process) in started.items()}
    for _, process in started.values():
        process.kill()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_stops_before_training_with_one_message_and_no_run_folder(commands, name):
    folder, process = commands[name]
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 2, output
    assert "Traceback" not in output and "Error executing job" not in output, output
    assert output.count("longtail: error:") == 1, output
    for fragment in BAD_INPUT[name][1]:
        assert fragment in output, (fragment, output)
    assert not (folder / "logs").exists() or not any((folder / "logs").rglob("*"))


@pytest.mark.slow
def test_a_run_prints_one_table_its_folder_and_checkpoint_and_links_latest(commands):
    folder, process = commands["good"]
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    assert output.count("| model |") == 1 and "Test metric" not in output, output
    assert "Tip" not in output and "deprecated" not in output and "GPU available" not in output, output
    results = json.loads((folder / "logs" / "latest" / "results.json").read_text(), parse_constant=_reject)
    checkpoint = Path(results["checkpoint"]).relative_to(folder)  # printed as the user types it, from the cwd
    assert f"selected checkpoint ({results['selection']}): {checkpoint}" in output
    assert "run folder: logs/runs/ce_digits/" in output and (folder / checkpoint).is_file()


def test_misspelt_keys_and_options_name_the_nearest_existing_ones():
    assert "Did you mean method.optimizer.lr?" in check_overrides(["method.lr=0.1"])
    assert "Did you mean seed?" in check_overrides(["sed=1"])
    message = check_overrides(["experiment=drolt_cifar10O"])
    assert "Did you mean experiment=drolt_cifar10 or experiment=drolt_cifar100" in message
    # a stage is typed by its name; an unknown one is refused, not silently ignored (all stages run)
    assert "Did you mean stage=robust" in check_overrides(["experiment=drolt_cifar100", "stage=robsut"])
    assert check_overrides(["seed=1", "seed=2"]) is None


@pytest.mark.parametrize("args, fragment", [
    (["datamodule.batch_size=12x"], "datamodule.batch_size takes an integer, got the string '12x'"),
    (["-m", "seed=0,1", "trainer.max_epochs=1.5"], "trainer.max_epochs takes an integer or null, got 1.5"),
    (["metrics.shot_thresholds=100"], "takes a list"),
    (["seed=0,abc"], "seed takes an integer"),
    (["trainer.deterministic=maybe"], "trainer.deterministic=maybe"),
])
def test_values_of_the_wrong_type_are_refused(args, fragment):
    assert fragment in check_overrides(args)


@pytest.mark.parametrize("args", [
    ["experiment=drolt_cifar100", "stage=robust", "trainer.devices=auto", "trainer.precision=bf16-mixed"],
    ["-m", "experiment=ldam_drw_cifar100", "seed=0,1,2", "trainer.limit_train_batches=4"],
    ["model.backbone=timm:resnet18", "+extra=1", "hydra.run.dir=/tmp/somewhere", "trainer.max_epochs=null"],
    ["loss@loss.base_loss=balanced_softmax", "experiment=ride_cifar100", "datamodule.imbalance_factor=50"],
    ["name=${seed}_run", "--help"],
])
def test_valid_command_lines_pass(args):
    assert check_overrides(args) is None


def test_an_instantiation_error_is_reported_by_its_cause(tmp_path):
    from hydra.errors import InstantiationException

    with pytest.raises(InstantiationException) as caught:
        instantiate({"_target_": "longtail.data.cifar.CIFARSource", "root": str(tmp_path / "none"), "download": False})
    message = describe(caught.value)
    assert message.startswith("CIFAR-10 data not found") and "longtail.data.cifar.CIFARSource" in message


def _readme_commands() -> list[list[str]]:
    """The overrides of every `python -m longtail.run …` command the README gives, placeholders filled in."""
    import re

    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    commands = {m.group(1).split("#")[0].strip() for m in re.finditer(r"python -m longtail\.run([^`\n]*)", text)}
    typed = {"experiment=PLACEHOLDER": "experiment=ce_cifar10", "schedule.scale=PLACEHOLDER": "schedule.scale=0.5"}
    filled = set()
    for command in commands:
        command = re.sub(r"<[^>]*>", "PLACEHOLDER", command)
        for placeholder, value in typed.items():
            command = command.replace(placeholder, value)
        filled.add(command)
    return [c.split() for c in sorted(filled)]


@pytest.mark.slow
def test_every_command_in_the_readme_composes():
    """README truth: each command's keys, options and value types exist as written (stage=robust …)."""
    commands = _readme_commands()
    assert ["experiment=drolt_cifar100", "stage=robust", "init_from=PLACEHOLDER"] in commands
    meant_wrong = {("trainer.max_epoch=3",), ("trainer.max_epochs=abc",),
                   ("experiment=drolt_cifar10", "stages.robsut.trainer.max_epochs=1"),
                   ("experiment=drolt_cifar10", "stage=drolt_robust")}
    for args in commands:
        message = check_overrides(args)
        assert (message is not None) == (tuple(args) in meant_wrong), (args, message)
    assert check_overrides(["experiment=drolt_cifar100", "stages.robust.trainer.max_epochs=40"]) is None


def test_a_timm_backbone_takes_the_data_sets_channels():
    """README: `model.backbone=timm:<name>` works on any data set (the digits default has one channel)."""
    import torch

    cfg = compose_config(["model.backbone=timm:resnet10t"])
    network = instantiate(cfg.model)
    assert network(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_checkpoints_store_data_roots_and_paths_absolute(tmp_path, monkeypatch):
    """A notebook in notebooks/ opens a checkpoint of a run started in the repository root."""
    from longtail.engine.stages import with_absolute_paths

    monkeypatch.chdir(tmp_path)
    config = with_absolute_paths({"datamodule": {"root": "data/cifar10"}, "paths": {"data_dir": "./data",
                                  "log_dir": "logs"}, "init_from": None})
    assert config["datamodule"]["root"] == str(tmp_path / "data" / "cifar10")
    assert config["paths"] == {"data_dir": str(tmp_path / "data"), "log_dir": str(tmp_path / "logs")}
    assert config["init_from"] is None


@pytest.mark.slow
def test_help_lists_the_experiments(commands):
    output, _ = commands["help"][1].communicate(timeout=300)
    assert "experiment: balanced_softmax_cifar10" in output and "drolt_cifar100" in output
    assert "stage: bns" in output and "LONGTAIL_DATA" in output
