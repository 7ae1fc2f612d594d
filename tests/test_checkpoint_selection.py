"""Checkpoint selection on the held-out split: of two epochs with the same score, the later one is kept."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from longtail.engine.callbacks import ModelCheckpoint


def decides(mode: str, best: float, current: float) -> bool:
    callback = ModelCheckpoint(monitor="val/acc", mode=mode, save_top_k=1)
    callback.best_k_models, callback.kth_best_model_path = {"epoch000.ckpt": torch.tensor(best)}, "epoch000.ckpt"
    trainer = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=lambda decision: decision))
    return callback.check_monitor_top_k(trainer, torch.tensor(current))


def test_a_tie_goes_to_the_later_epoch_and_a_worse_score_never_does():
    assert decides("max", 0.5, 0.5) and decides("min", 0.5, 0.5)
    assert decides("max", 0.5, 0.6) and not decides("max", 0.5, 0.4)
    assert not decides("min", 0.5, 0.6)
