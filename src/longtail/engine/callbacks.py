"""Callbacks of the staged runs."""

from __future__ import annotations

import random
import time

import numpy as np
import torch
from lightning.pytorch import callbacks
from lightning.pytorch.callbacks import Callback


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """Lightning's checkpointing, with ``last.ckpt`` rewritten after every validation and ties going to the later
    epoch.

    Lightning 2.6 writes ``last.ckpt`` only when a top-k checkpoint was saved in the same step, so with a
    monitored metric that stops improving ``last.ckpt`` stays at the best epoch, and a killed run would resume
    from there instead of from its last epoch. Lightning keeps the earlier of two epochs with equal scores; here the
    later one wins (docs/methods/README.md §5): a held-out accuracy that has not moved yet would otherwise select the
    first epoch, before the model has trained.
    """

    def check_monitor_top_k(self, trainer, current: torch.Tensor | None = None) -> bool:
        if current is None or self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return super().check_monitor_top_k(trainer, current)
        at_least_as_good = {"min": torch.le, "max": torch.ge}[self.mode]
        decision = at_least_as_good(current, self.best_k_models[self.kth_best_model_path])
        return trainer.strategy.reduce_boolean_decision(bool(decision))

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


class TestEveryEpoch(Callback):
    """The optimistic diagnostic (docs docs/methods/README.md §5, docs/methods/baselines.md B4): test-set top-1 after every training epoch.

    Logs ``test_diag/acc`` per epoch and, at the stage's test, adds ``test_diag/acc`` (the per-epoch list)
    and ``test_diag/acc_max`` to its results, so a run can be compared with papers that report the maximum
    test accuracy over epochs. It never selects anything: checkpoints are chosen on validation only, and
    ``longtail.report`` shows the column labelled as optimistic. The pass leaves the random generators as they
    were, so a run trains identically with it on or off. ``enabled=false`` (``logging.test_every_epoch``) makes it a no-op.
    """

    def __init__(self, enabled: bool = False):
        self.enabled = enabled
        self.history: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.enabled or trainer.sanity_checking:
            return
        data = pl_module.data
        correct = total = 0
        with torch.random.fork_rng(devices=[]):  # a DataLoader draws its base seed from the global generator
            for images, target in pl_module.eval_pass(data.test_dataloader(), data.batch_transforms()[1]):
                correct += int((pl_module.predict_logits(images).argmax(dim=1) == target).sum())
                total += len(target)
        counts = pl_module.all_gather(torch.tensor([correct, total], device=pl_module.device))
        counts = counts.reshape(-1, 2).sum(dim=0)
        accuracy = float(counts[0]) / max(float(counts[1]), 1.0)
        self.history.append(accuracy)
        pl_module.log("test_diag/acc", accuracy)

    def on_test_end(self, trainer, pl_module) -> None:
        if self.enabled and self.history:
            pl_module.test_results["test_diag/acc"] = list(self.history)
            pl_module.test_results["test_diag/acc_max"] = max(self.history)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict["history"])


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


class TrainingCost(Callback):
    """What a stage's training cost: images processed (every view of a multi-view batch, and the images a step
    processed besides its batch, e.g. Difficulty-Net's meta batch; summed over DDP processes) and wall seconds
    of ``fit``. Both survive a resume (they live in the checkpoint)."""

    def __init__(self):
        self.images, self.seconds, self._started = 0, 0.0, None

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        inputs = batch[0]
        views = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        step = sum(len(v) for v in views) + pl_module.side_images_in_step
        self.images += step * trainer.world_size

    def on_train_end(self, trainer, pl_module) -> None:
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None

    def state_dict(self) -> dict:
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return {"images": self.images, "seconds": self.seconds + running}

    def load_state_dict(self, state_dict: dict) -> None:
        self.images, self.seconds = int(state_dict["images"]), float(state_dict["seconds"])
