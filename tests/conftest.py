"""Shared fixtures: compose the Hydra config as `python -m longtail.run` would, and run it in a temp folder."""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import Callback

import longtail

CONF_DIR = Path(longtail.__file__).parent / "conf"
REPO = Path(__file__).resolve().parents[1]


def compose_config(overrides=()):
    """The config ``python -m longtail.run <overrides>`` composes (a fresh copy: composing once per distinct
    command line keeps the fast tier fast, since many tests compose the same experiments)."""
    return copy.deepcopy(_composed(tuple(overrides)))


@functools.lru_cache(maxsize=None)
def _composed(overrides: tuple[str, ...]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def run(overrides, output_dir: Path) -> dict:
    """Run an experiment in ``output_dir`` (quietly: no progress bar) and return its results."""
    from longtail.engine.stages import run_experiment

    cfg = compose_config(["trainer.enable_progress_bar=false", *overrides])
    return run_experiment(cfg, Path(output_dir))


def real_cifar10() -> Path | None:
    """The real CIFAR-10 (image-folder tarball or extracted tree) from $LONGTAIL_CIFAR10 or ../shared/data."""
    candidates = [os.environ.get("LONGTAIL_CIFAR10"), REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"]
    return next((Path(c) for c in candidates if c and Path(c).exists()), None)


def read_results(path: Path) -> dict:
    return json.loads(Path(path).read_text())


class KillAtEpoch(Callback):
    """Simulates a run killed at the start of a given epoch."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("killed")


class RecordLossWeights(Callback):
    """Writes to ``path``, per epoch, whether the loss was re-weighted (class weights on, or RIDE's ``deferred``)."""

    def __init__(self, path: str):
        self.path, self.weighted = Path(path), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            loss = pl_module.loss
            self.weighted.append(bool(loss.deferred) if hasattr(loss, "deferred") else loss.weight is not None)

    def on_train_end(self, trainer, pl_module):
        self.path.write_text(json.dumps(self.weighted))


@pytest.fixture(scope="session")
def digits_ce_run(tmp_path_factory):
    """One short run of the embedded default, shared by the tests that only read its outputs."""
    out = tmp_path_factory.mktemp("digits_ce")
    results = run(["trainer.max_epochs=3"], out)
    return out, results


@pytest.fixture(scope="session")
def fake_cifar100(tmp_path_factory):
    """A CIFAR-100 of random pixels in the exact torchvision pickle layout (500 / 100 images per class)."""
    from fakedata import make_cifar_pickles

    root = tmp_path_factory.mktemp("cifar100")
    make_cifar_pickles(root, num_classes=100, per_class_train=500, per_class_test=100)
    return root


class RecordAttribute(Callback):
    """Writes ``pl_module.<name>`` to ``path`` when training ends."""

    def __init__(self, name: str, path: str):
        self.name, self.path = name, Path(path)

    def on_train_end(self, trainer, pl_module):
        value = getattr(pl_module, self.name)
        self.path.write_text(json.dumps(value.tolist() if hasattr(value, "tolist") else value))


def direct_evaluation(checkpoint: str | Path, test_batches: int | None = None, train_batches: int | None = None,
                      feature_layer: str | None = None) -> dict:
    """Test-set accuracies of a checkpoint recomputed outside Lightning, to check a run's reported numbers.

    ``acc``: argmax of the network's logits on the eval-transformed test images (a multi-expert network: of the
    mean of its experts' logits). ``ncm_acc`` (single-head networks): nearest class mean by cosine similarity,
    with centroids averaged over the eval-mode features of the eval-transformed training split (DRO-LT's rule,
    docs/methods/drolt.md §2): the penultimate features, or the spatially pooled output of ``feature_layer``. ``test_batches``
    / ``train_batches``: only the first batches (as a run with ``trainer.limit_test_batches`` /
    ``limit_train_batches``).
    """
    from itertools import islice

    import torch
    from torch.nn import functional as F

    import longtail

    model, datamodule = longtail.load(checkpoint), longtail.load_datamodule(checkpoint, stage="fit")
    datamodule.setup("test")
    network, transform = model.network, datamodule.batch_transforms()[1]
    experts = hasattr(network, "forward_experts")
    captured = []
    if feature_layer is not None:
        model.get_submodule(feature_layer).register_forward_hook(lambda m, i, out: captured.append(out.mean((2, 3))))

    def features_and_logits(loader):
        out = []
        with torch.no_grad():
            for images, labels in loader:
                images = transform(images)
                if experts:
                    out.append((None, network.forward_experts(images)[0].mean(0), labels))
                    continue
                features = network.features(images)
                out.append((captured.pop() if captured else features, network.head(features), labels))
        features = None if experts else torch.cat([f for f, _, _ in out])
        return features, torch.cat([z for _, z, _ in out]), torch.cat([y for _, _, y in out])

    features, logits, labels = features_and_logits(islice(datamodule.test_dataloader(), test_batches))
    result = {"acc": (logits.argmax(1) == labels).float().mean().item(), "test_images": len(labels)}
    if not experts:
        train = islice(datamodule.train_eval_dataloader(), train_batches)
        train_features, _, train_labels = features_and_logits(train)
        classes = range(len(datamodule.class_counts))
        centroids = torch.stack([train_features[train_labels == c].mean(0) for c in classes])
        ncm = F.normalize(features, dim=1) @ F.normalize(centroids, dim=1).T
        result["ncm_acc"] = (ncm.argmax(1) == labels).float().mean().item()
    return result
