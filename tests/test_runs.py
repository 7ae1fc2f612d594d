"""Finding the newest run and its selected checkpoint (longtail.engine.runs), on run folders made by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import longtail
from longtail.engine.runs import data_root, latest_run, link_latest, selected_checkpoint


def make_run(log_dir: Path, name: str, date: str, checkpoint: str | None = None, stage: str = "train",
             mtime: float | None = None) -> Path:
    """A finished run folder: ``<stage>/checkpoints/last.ckpt``, ``<stage>/results.json`` and ``results.json``."""
    run_dir = log_dir / "runs" / name / date
    (run_dir / stage / "checkpoints").mkdir(parents=True)
    (run_dir / stage / "checkpoints" / "last.ckpt").write_bytes(b"")
    results = {"checkpoint": checkpoint or str(run_dir / stage / "checkpoints" / "last.ckpt")}
    for path in (run_dir / stage / "results.json", run_dir / "results.json"):
        path.write_text(json.dumps(results))
        if mtime is not None:
            os.utime(path, (mtime, mtime))
    return run_dir


@pytest.fixture(autouse=True)
def no_logs_env(monkeypatch):
    monkeypatch.delenv("LONGTAIL_LOGS", raising=False)


def test_link_latest_creates_and_replaces_a_relative_link(tmp_path):
    logs = tmp_path / "logs"
    first, second = make_run(logs, "a", "1"), make_run(logs, "b", "2")
    link = link_latest(first, logs)
    assert link == logs / "latest" and link.is_symlink() and os.readlink(link) == os.path.join("runs", "a", "1")
    assert link_latest(second, logs) == link and link.resolve() == second.resolve()
    assert sorted(p.name for p in logs.iterdir()) == ["latest", "runs"]  # no temporary link left behind
    outside = make_run(tmp_path / "elsewhere", "c", "3")
    assert os.readlink(link_latest(outside, logs)) == str(outside)  # outside the logs folder: absolute


def test_link_latest_writes_a_text_file_without_symbolic_links(tmp_path, monkeypatch):
    logs = tmp_path / "logs"
    run_dir = make_run(logs, "a", "1")

    def no_symlinks(*args, **kwargs):
        raise OSError("symbolic links are not supported here")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    written = link_latest(run_dir, logs)
    assert written == logs / "latest.txt" and written.read_text().strip() == str(run_dir)
    make_run(logs, "b", "2")  # newer, but latest.txt names the run that linked itself last
    assert latest_run(logs) == run_dir


def test_latest_run_prefers_the_link_and_falls_back_to_the_newest_results(tmp_path):
    logs = tmp_path / "logs"
    old, new = make_run(logs, "a", "1", mtime=1_000_000), make_run(logs, "b", "2", mtime=2_000_000)
    assert latest_run(logs) == new  # no link: the newest top-level results.json (not a stage folder)
    link_latest(old, logs)
    assert latest_run(logs) == old.resolve()
    (logs / "latest").unlink()
    sweep_job = logs / "multiruns" / "c" / "3" / "0"
    (sweep_job / "train").mkdir(parents=True)
    for path in (sweep_job / "results.json", sweep_job / "train" / "results.json"):
        path.write_text("{}")
        os.utime(path, (3_000_000, 3_000_000))
    assert latest_run(logs) == sweep_job


def test_latest_run_walks_up_from_a_subfolder_and_honours_longtail_logs(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path / "logs", "a", "1")
    link_latest(run_dir, tmp_path / "logs")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert latest_run() == run_dir.resolve()
    assert longtail.latest_run() == run_dir.resolve()
    other = make_run(tmp_path / "shared_logs", "b", "2")
    monkeypatch.setenv("LONGTAIL_LOGS", str(tmp_path / "shared_logs"))
    assert latest_run() == other


def test_latest_run_says_what_to_do_when_there_is_no_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no 'logs' folder .*python -m longtail.run.*LONGTAIL_CHECKPOINT"):
        latest_run()
    (tmp_path / "logs" / "runs" / "a" / "1").mkdir(parents=True)  # a run that never finished
    with pytest.raises(FileNotFoundError, match="no run found under .*logs: run `python -m longtail.run` first"):
        latest_run()


def test_selected_checkpoint_resolves_relative_paths_from_elsewhere(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    relative = "logs/runs/a/1/train/checkpoints/last.ckpt"  # as written by a run started in the repo root
    run_dir = make_run(repo / "logs", "a", "1", checkpoint=relative)
    expected = (repo / relative).resolve()
    monkeypatch.chdir(repo)
    assert selected_checkpoint(run_dir).resolve() == expected
    (repo / "notebooks").mkdir()
    monkeypatch.chdir(repo / "notebooks")  # not found from here: found from the run folder's ancestors
    assert selected_checkpoint(Path("../logs/runs/a/1")).resolve() == expected
    assert longtail.selected_checkpoint(latest_run()).resolve() == expected


def test_selected_checkpoint_of_a_moved_run_and_errors(tmp_path):
    run_dir = make_run(tmp_path / "logs", "a", "1", checkpoint="/gone/logs/runs/a/1/train/checkpoints/last.ckpt")
    assert selected_checkpoint(run_dir) == run_dir / "train" / "checkpoints" / "last.ckpt"
    (run_dir / "results.json").write_text(json.dumps({"checkpoint": "/gone/nowhere.ckpt"}))
    with pytest.raises(FileNotFoundError, match="'/gone/nowhere.ckpt' selected in .* is not found"):
        selected_checkpoint(run_dir)
    with pytest.raises(FileNotFoundError, match="holds no results.json"):
        selected_checkpoint(tmp_path)


def test_a_relative_data_root_is_found_from_the_repo_of_the_run(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "data" / "cifar10").mkdir(parents=True)
    checkpoint = make_run(repo / "logs", "a", "1") / "train" / "checkpoints" / "last.ckpt"
    (repo / "notebooks").mkdir()
    monkeypatch.chdir(repo / "notebooks")
    assert data_root("./data/cifar10", checkpoint) == str(repo / "data" / "cifar10")
    assert data_root("./data/missing", checkpoint) == "./data/missing"  # left for the data module's own error
    assert data_root(None, checkpoint) is None


def test_load_datamodule_finds_an_old_checkpoints_relative_data_root(tmp_path, monkeypatch):
    """A checkpoint of an older run holds ``datamodule.root`` relative to the repo it ran in."""
    import torch
    from fakedata import make_image_folder

    repo = tmp_path / "repo"
    make_image_folder(repo / "data" / "tree", ["a", "b"], per_class_train=3, per_class_test=2, size=8)
    checkpoint = make_run(repo / "logs", "a", "1") / "train" / "checkpoints" / "last.ckpt"
    datamodule = {"_target_": "longtail.data.datamodule.LongTailDataModule", "num_classes": 2, "root": "./data/tree",
                  "source": {"_target_": "longtail.data.folder.ImageFolderSource", "_partial_": True,
                             "in_memory": True}}
    torch.save({"longtail": {"config": {"datamodule": datamodule}}}, checkpoint)
    (repo / "notebooks").mkdir()
    monkeypatch.chdir(repo / "notebooks")
    loaded = longtail.load_datamodule(checkpoint)
    assert Path(loaded.root) == repo / "data" / "tree" and len(loaded.test_split) == 4
