"""Checkpoints that cannot be torn (issue 17, item 12): every checkpoint is written to a temporary file in its own
folder and moved into place with ``os.replace``; a torn one found at resume is reported and the stage resumes
from the newest readable checkpoint; a file that is not a checkpoint is named as such."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from conftest import run

from longtail.common.checkpoint import read_checkpoint, unreadable


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


class _FailsToPickle:
    def __reduce__(self):
        raise RuntimeError("killed mid-write")


def test_a_save_that_fails_mid_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    from longtail.common.checkpoint import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "weights": torch.ones(3)}, path)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        io.save_checkpoint({"epoch": 2, "weights": torch.zeros(3), "bad": _FailsToPickle()}, path)
    assert torch.load(path, weights_only=False)["epoch"] == 1

    def killed_before_the_rename(*args):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(os, "replace", killed_before_the_rename)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 3, "weights": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["epoch"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary file left behind


def test_every_checkpoint_the_trainer_writes_is_moved_into_place_from_its_own_folder(tmp_path, monkeypatch):
    """A rename within one folder is atomic; Lightning's own save moves a temporary file from the system's temp
    folder (a copy, which a kill can tear, when that is another file system)."""
    replaced = []
    real_replace = os.replace

    def recording_replace(src, dst, *args, **kwargs):
        replaced.append((Path(src), Path(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", recording_replace)
    run(["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1", "+stage@stages.tau_norm=tau_norm"], tmp_path)
    written = sorted(tmp_path.rglob("*.ckpt"))  # the callback's (train) and trainer.save_checkpoint's (tau_norm)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == {
        "train/checkpoints/epoch000.ckpt", "train/checkpoints/last.ckpt", "tau_norm/checkpoints/last.ckpt"}
    for path in written:
        sources = [src for src, dst in replaced if dst == path]
        assert sources and all(src.parent == path.parent for src in sources), (path, replaced)


@pytest.mark.slow
def test_a_torn_last_ckpt_resumes_from_the_newest_readable_checkpoint_and_says_so(tmp_path, caplog):
    common = ["trainer.max_epochs=3", "callbacks.model_checkpoint.save_top_k=-1"]
    with pytest.raises(RuntimeError, match="killed"):
        run([*common, "+callbacks.kill._target_=conftest.KillAtEpoch", "+callbacks.kill.epoch=2"], tmp_path)
    folder = tmp_path / "train" / "checkpoints"
    assert {p.name for p in folder.glob("*.ckpt")} == {"last.ckpt", "epoch000.ckpt", "epoch001.ckpt"}
    _truncate(folder / "last.ckpt")
    _truncate(folder / "epoch001.ckpt")
    # resumed from epoch000.ckpt, the run never enters epoch 0 again (it would be killed there)
    with caplog.at_level(logging.INFO, logger="longtail"):
        results = run([*common, "+callbacks.kill._target_=conftest.KillAtEpoch", "+callbacks.kill.epoch=0"],
                      tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "longtail"]
    assert any("last.ckpt" in m and "epoch001.ckpt" in m and "are not readable" in m and "epoch000.ckpt" in m
               for m in warnings), warnings
    assert any(f"resuming stage 'train' from {folder / 'epoch000.ckpt'}" in r.getMessage() for r in caplog.records)
    assert torch.load(folder / "last.ckpt", weights_only=False)["epoch"] == 2
    assert {p.name for p in folder.glob("*.torn")} == {"last.ckpt.torn", "epoch001.ckpt.torn"}
    assert all(unreadable(p) is None for p in folder.glob("*.ckpt"))  # epoch001.ckpt written again, whole
    assert unreadable(results["checkpoint"]) is None and 0.0 < results["test/acc"] <= 1.0


@pytest.mark.slow
def test_a_torn_last_ckpt_with_nothing_readable_beside_it_starts_the_stage_again(tmp_path, caplog):
    run(["trainer.max_epochs=1", "trainer.limit_train_batches=2"], tmp_path)
    folder = tmp_path / "train" / "checkpoints"
    (tmp_path / "train" / "results.json").unlink()  # as if killed before the stage's test
    for path in folder.glob("*.ckpt"):
        _truncate(path)
    with caplog.at_level(logging.WARNING, logger="longtail"):
        run(["trainer.max_epochs=2", "trainer.limit_train_batches=2"], tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "longtail"]
    assert any("not readable" in m and "from its first epoch" in m for m in warnings), warnings
    assert torch.load(folder / "last.ckpt", weights_only=False)["epoch"] == 1


@pytest.mark.parametrize("content", [b"garbage", b"", b"PK\x03\x04 torn zip"])
def test_a_file_that_is_not_a_checkpoint_is_named_as_such(tmp_path, content):
    bogus = tmp_path / "notes.ckpt"
    bogus.write_bytes(content)
    with pytest.raises(ValueError) as err:
        read_checkpoint(bogus)
    assert str(err.value).startswith(f"'{bogus}' is not a checkpoint"), str(err.value)


def test_the_resume_point_skips_torn_checkpoints_and_agrees_across_ranks(tmp_path):
    """Without training: the newest readable checkpoint is chosen, torn ones are moved aside, and a rank started
    after rank 0 moved ``last.ckpt`` aside (DDP) picks the same checkpoint."""
    import time

    from longtail.common.checkpoint import resume_point

    log = logging.getLogger("longtail")
    for epoch, name in enumerate(["epoch000.ckpt", "epoch001.ckpt", "epoch002.ckpt", "last.ckpt"]):
        torch.save({"epoch": epoch}, tmp_path / name)
        time.sleep(0.01)
    assert resume_point(tmp_path / "last.ckpt", "train", log) == tmp_path / "last.ckpt"
    _truncate(tmp_path / "last.ckpt")
    _truncate(tmp_path / "epoch002.ckpt")
    (tmp_path / ".last.ckpt.123-abcd.partial").write_bytes(b"half")
    assert resume_point(tmp_path / "last.ckpt", "train", log) == tmp_path / "epoch001.ckpt"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch000.ckpt", "epoch001.ckpt", "epoch002.ckpt.torn", "last.ckpt.torn"]
    assert resume_point(tmp_path / "last.ckpt", "train", log) == tmp_path / "epoch001.ckpt"  # another rank
    assert resume_point(tmp_path / "elsewhere" / "last.ckpt", "train", log) is None  # a fresh stage
