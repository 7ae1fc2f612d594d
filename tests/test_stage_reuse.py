"""Within a sweep, a stage whose config, seed and start equal a finished stage's reuses its checkpoint and results."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import compose_config

from longtail.engine.reuse import stage_key
from longtail.engine.stages import run_experiment, stage_configs


def job(tmp_path: Path, name: str, *overrides: str) -> dict:
    cfg = compose_config(["trainer.enable_progress_bar=false", "trainer.max_epochs=1", f"name={name}", *overrides])
    return run_experiment(cfg, tmp_path / "sweep" / name, twins_in=tmp_path / "sweep")


def test_an_identical_stage_is_reused_with_its_cost_and_a_different_one_is_trained(tmp_path, caplog):
    first = job(tmp_path, "ce")
    caplog.set_level("INFO", logger="longtail")
    second = job(tmp_path, "ce_then_crt", "+stage@stages.crt=crt", "stages.crt.trainer.max_epochs=1")
    reused = json.loads((tmp_path / "sweep" / "ce_then_crt" / "train" / "results.json").read_text())
    assert reused["reused_from"] == "../../ce/train" and reused["checkpoint"] == first["checkpoint"]
    assert reused["train_images"] == first["train_images"] > 0
    assert not (tmp_path / "sweep" / "ce_then_crt" / "train" / "checkpoints").exists()  # not trained again
    assert "stage 'train' equals the finished stage in" in caplog.text
    assert second["run/train_images"] == first["train_images"] + second["train_images"]  # the row still pays for it
    other_seed = job(tmp_path, "ce_seed1", "seed=1")
    assert "reused_from" not in json.loads((tmp_path / "sweep" / "ce_seed1" / "train" / "results.json").read_text())
    assert other_seed["checkpoint"] != first["checkpoint"]


def test_names_rows_and_loggers_do_not_change_a_stage_but_its_start_does():
    def key(*overrides, start=None):
        return stage_key(stage_configs(compose_config(list(overrides)))[0][1], start)

    assert key("name=a", "logger=none") == key("name=b")
    assert key() != key("seed=1") and key() != key(start="0123")
