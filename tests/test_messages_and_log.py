"""Issue 19 (items 3 and 5): `init_from` takes a checkpoint, a run or stage folder or a results.json, and says in
one message what any other path is; `run.log` holds what the console showed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import CONF_DIR
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from longtail.engine.runs import resolve_init_from
from longtail.run import CONSOLE_COPY, copy_warnings_to_log, init_from_problem, main, say


def fake_run(root: Path) -> Path:
    """A finished run as longtail.run leaves it: one stage, its checkpoints, the results naming the selected one."""
    run_dir = root / "logs" / "runs" / "ce_digits" / "2026-01-01_00-00-00"
    checkpoints = run_dir / "train" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in ("epoch002.ckpt", "last.ckpt"):
        (checkpoints / name).write_bytes(b"weights")
    selected = {"checkpoint": str(checkpoints / "epoch002.ckpt")}
    (run_dir / "train" / "results.json").write_text(json.dumps(selected))
    (run_dir / "results.json").write_text(json.dumps(selected))
    return run_dir


def test_init_from_takes_a_checkpoint_a_run_or_stage_folder_or_a_results_json(tmp_path, monkeypatch):
    run_dir = fake_run(tmp_path)
    selected = run_dir / "train" / "checkpoints" / "epoch002.ckpt"
    monkeypatch.chdir(tmp_path)  # relative paths are the user's, from the current directory
    relative = run_dir.relative_to(tmp_path)
    assert resolve_init_from(str(relative / "train" / "checkpoints" / "last.ckpt")) == str(
        relative / "train" / "checkpoints" / "last.ckpt")
    for named in (relative, relative / "train", relative / "results.json", relative / "train" / "results.json"):
        assert Path(resolve_init_from(str(named))).resolve() == selected.resolve(), named


@pytest.mark.parametrize("make, fragments", [
    (lambda root: root / "nowhere", ["init_from=nowhere does not exist", "pass a checkpoint (.ckpt)"]),
    (lambda root: root / "empty", ["init_from=empty is a folder without results.json or checkpoints"]),
    (lambda root: fake_run(root) / "train" / "checkpoints",
     ["is a folder without results.json", "2 checkpoints (epoch002.ckpt, last.ckpt): pass one of them"]),
    (lambda root: fake_run(root).parent, ["is a folder of runs", "1 run (2026-01-01_00-00-00): pass one of them"]),
    (lambda root: root / "notes.json", ["notes.json is not a results.json", "does not parse as JSON"]),
    (lambda root: root / "other.json", ["other.json names no selected checkpoint"]),
])
def test_any_other_init_from_is_said_in_one_line(tmp_path, monkeypatch, make, fragments):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.json").write_text("not json\n")
    (tmp_path / "other.json").write_text('{"test/acc": 0.5}')
    path = make(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises((ValueError, OSError)) as error:
        resolve_init_from(os.path.relpath(path, tmp_path))
    message = str(error.value)
    assert "\n" not in message and all(fragment in message for fragment in fragments), message


def test_a_wrong_init_from_stops_before_hydra_makes_a_run_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["longtail.run", "init_from=empty", f"paths.log_dir={tmp_path / 'logs'}"])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err == ("longtail: error: init_from=empty is a folder without results.json or checkpoints: pass a "
                   "checkpoint (.ckpt), or the folder or results.json of a finished run or stage\n")
    assert not (tmp_path / "logs").exists()


def test_init_from_values_checked_on_the_command_line(tmp_path, monkeypatch):
    run_dir = fake_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert init_from_problem(["stage=crt", f"init_from={run_dir}"]) is None
    assert "nowhere does not exist" in init_from_problem(["-m", f"init_from={run_dir},nowhere"])
    assert init_from_problem(["init_from=${paths.log_dir}/x.ckpt"]) is None  # checked once Hydra resolves it
    assert init_from_problem(["init_from=nowhere", "--cfg", "job"]) is None  # Hydra's business
    assert init_from_problem(["init_from=null"]) is None


def test_run_log_gets_the_console_lines_from_hydras_job_logging():
    """The console's copy goes to the file of Hydra's job log (run.log), and nowhere else (print() shows it)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        job_logging = OmegaConf.to_container(compose("config", return_hydra_config=True).hydra.job_logging)
    assert job_logging["loggers"]["longtail.console"] == {"level": "INFO", "handlers": ["console_copy"],
                                                          "propagate": False}
    handler, logs = job_logging["handlers"]["console_copy"], job_logging["handlers"]["file"]
    assert handler["class"] == "logging.FileHandler" and handler["filename"] == logs["filename"]
    assert job_logging["formatters"][handler["formatter"]] == {"format": "%(message)s"}  # the lines as printed


def test_say_prints_as_before_and_copies_lines_and_warnings_to_the_log(tmp_path, monkeypatch, capsys):
    console_warnings = []  # what the console shows of warnings (stderr; pytest records them instead)
    monkeypatch.setattr(warnings, "showwarning", lambda message, *args, **kwargs: console_warnings.append(message))
    handler = logging.FileHandler(tmp_path / "run.log")
    handler.setFormatter(logging.Formatter("%(message)s"))
    monkeypatch.setattr(CONSOLE_COPY, "propagate", False)
    CONSOLE_COPY.addHandler(handler)
    CONSOLE_COPY.setLevel(logging.INFO)  # as conf/config.yaml's hydra.job_logging sets it
    try:
        say("| all | 20.67 |")
        say("longtail: error: something", error=True)
        copy_warnings_to_log()
        copy_warnings_to_log()  # installed once
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("a warning about the run", UserWarning, stacklevel=1)
    finally:
        CONSOLE_COPY.setLevel(logging.NOTSET)
        CONSOLE_COPY.removeHandler(handler)
        handler.close()
    shown = capsys.readouterr()
    assert shown.out == "| all | 20.67 |\n"
    assert shown.err == "longtail: error: something\n"
    assert [str(message) for message in console_warnings] == ["a warning about the run"]
    logged = (tmp_path / "run.log").read_text()
    assert logged.startswith("| all | 20.67 |\nlongtail: error: something\n")
    assert logged.count("UserWarning: a warning about the run") == 1


def python_run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, "-m", "longtail.run", "trainer.enable_progress_bar=false", *args],
                          cwd=cwd, env=env, text=True, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`python -m longtail.run` of the embedded default, one epoch: its folder and what it printed."""
    folder = tmp_path_factory.mktemp("default_run")
    done = python_run(["trainer.max_epochs=1", f"paths.log_dir={folder / 'logs'}"], folder)
    assert done.returncode == 0, done.stdout + done.stderr
    return folder, done


@pytest.mark.slow
def test_run_log_holds_what_the_console_showed(default_run):
    folder, done = default_run
    run_log = (folder / "logs" / "latest" / "run.log").read_text()
    assert "| all |" in run_log and "selected checkpoint" in run_log and "run folder:" in run_log, run_log
    for line in done.stdout.splitlines():
        assert line in run_log.splitlines(), (line, run_log)


@pytest.mark.slow
def test_a_stage_starts_from_a_run_folder(default_run):
    folder, _ = default_run
    run_dir = (folder / "logs" / "latest").resolve()
    selected = json.loads((run_dir / "results.json").read_text())["checkpoint"]
    done = python_run(["stage=crt", "stage.trainer.max_epochs=1", f"init_from={run_dir.relative_to(folder)}",
                       f"paths.log_dir={folder / 'alone'}"], folder)
    assert done.returncode == 0, done.stdout + done.stderr
    import torch

    crt = json.loads((folder / "alone" / "latest" / "results.json").read_text())["checkpoint"]
    config = torch.load(Path(folder / crt), map_location="cpu", weights_only=False)["longtail"]["config"]
    assert Path(config["init_from"]).resolve() == (folder / selected).resolve()
