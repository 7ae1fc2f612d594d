"""Callbacks of the staged runs."""

from __future__ import annotations

import random

import numpy as np
import torch
from lightning.pytorch import callbacks
from lightning.pytorch.callbacks import Callback


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """Lightning's checkpointing, with ``last.ckpt`` rewritten after every validation.

    Lightning 2.6 writes ``last.ckpt`` only when a top-k checkpoint was saved in the same step, so with a
    monitored metric that stops improving ``last.ckpt`` stays at the best epoch, and a killed run would resume
    from there instead of from its last epoch.
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._save_last_if_skipped(trainer, at_train_epoch_end=True)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        self._save_last_if_skipped(trainer, at_train_epoch_end=False)

    def _save_last_if_skipped(self, trainer, at_train_epoch_end: bool) -> None:
        if (self.save_last and not self._should_skip_saving_checkpoint(trainer)
                and self._should_save_on_train_epoch_end(trainer) == at_train_epoch_end):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class RNGState(Callback):
    """Saves the random generators in every checkpoint so a resumed run continues bit-identically.

    Batch augmentation draws from torch's global generator; without this a run
    resumed from ``last.ckpt`` would augment differently from the uninterrupted one.
    """

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]
        state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        kind, keys, pos, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state_dict["python"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
