"""Self-describing checkpoints: hand-over between stages and ``longtail.load``.

Every checkpoint carries, under ``checkpoint["longtail"]``, the resolved run
config, the train class counts and the class names, so a notebook can rebuild
the model without the training data, and a stage can refuse a checkpoint from
another model or class count with a message in words rather than a shape error.
"""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

CHECKPOINT_KEY = "longtail"


def read_checkpoint(path: str | Path) -> dict:
    """Load a longtail checkpoint on the CPU, checking that it is one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist: pass the path of a .ckpt written by longtail.run")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if CHECKPOINT_KEY not in checkpoint:
        raise ValueError(f"'{path}' is not a longtail checkpoint (it has no '{CHECKPOINT_KEY}' metadata)")
    return checkpoint


def load_prefix(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str) -> None:
    """Load the entries of ``state_dict`` under ``prefix`` into ``module`` (strict)."""
    part = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not part:
        raise RuntimeError(f"the checkpoint holds no weights under '{prefix}'")
    module.load_state_dict(part, strict=True)


def init_from_checkpoint(model, path: str | Path) -> None:
    """Initialise ``model`` (a LongTailModule) from the previous stage's checkpoint."""
    checkpoint = read_checkpoint(path)
    counts = checkpoint[CHECKPOINT_KEY]["class_counts"]
    if len(counts) != len(model.class_counts):
        raise ValueError(
            f"checkpoint '{path}' was trained on {len(counts)} classes but this run has "
            f"{len(model.class_counts)}: use a checkpoint of the same data set"
        )
    try:
        model.init_from_checkpoint(checkpoint)
    except RuntimeError as err:
        raise ValueError(
            f"checkpoint '{path}' comes from a different model than this stage builds "
            f"(compare its model.backbone / model.head with this run's): {str(err).splitlines()[0]}"
        ) from err


def load(path: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild the model saved in a longtail checkpoint, in eval mode, ready for inference."""
    return build_from_checkpoint(read_checkpoint(path)).to(map_location).eval()


def build_from_checkpoint(checkpoint: dict):
    """The LightningModule described by a loaded checkpoint, with its weights (and ``run_config``)."""
    meta = checkpoint[CHECKPOINT_KEY]
    model = instantiate(meta["config"]["method"], class_counts=meta["class_counts"], class_names=meta["class_names"])
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    model.run_config = meta["config"]
    return model


def load_datamodule(path: str | Path, stage: str = "test"):
    """The data module of the run that wrote the checkpoint at ``path``, set up for ``stage``.

    Its data root is looked for with :func:`longtail.runs.data_root`: a checkpoint of an older run may hold
    it relative to the folder the run was started in (``./data/cifar10``), which a notebook started
    elsewhere finds from the checkpoint's own folders.
    """
    from longtail.runs import data_root

    config = dict(read_checkpoint(path)[CHECKPOINT_KEY]["config"]["datamodule"])
    if config.get("root") is not None:
        config["root"] = data_root(config["root"], path)
    datamodule = instantiate(config)
    datamodule.setup(stage)
    return datamodule
