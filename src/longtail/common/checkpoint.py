"""Self-describing checkpoints: hand-over between stages and ``longtail.load``.

Every checkpoint carries, under ``checkpoint["longtail"]``, the resolved run
config, the train class counts and the class names, so a notebook can rebuild
the model without the training data, and a stage can refuse a checkpoint from
another model or class count with a message in words rather than a shape error.

Checkpoints cannot be torn: every one the Trainer writes goes through :class:`AtomicCheckpointIO` (installed by
:func:`longtail.engine.stages.build_trainer`), which writes a temporary file in the checkpoint's own folder and moves it
into place with ``os.replace``, so a run killed while saving leaves the previous file whole.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import torch
from hydra.utils import instantiate
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

CHECKPOINT_KEY = "longtail"
TEMPORARY_SUFFIX = ".partial"  # ".<name>.<pid>-<id>.partial" in the checkpoint's folder while it is written
# modules that moved when the package root was grouped into common/, engine/, config/ and reporting/: a checkpoint or a
# config written before names its _target_ by the old path, which longtail.load rewrites (moved_targets)
MOVED_MODULES = {f"longtail.{module}": f"longtail.{layer}.{module}" for layer, modules in {
    "common": ("checkpoint", "distributed", "compat"),
    "engine": ("callbacks", "stages", "schedules", "schedule_scale", "runs", "sweeps"),
    "config": ("overrides", "validation"),
    "reporting": ("metrics", "table", "results", "plots", "loggers", "flops")}.items() for module in modules}


def read_checkpoint(path: str | Path) -> dict:
    """Load a longtail checkpoint on the CPU, checking that it is one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist: pass the path of a .ckpt written by longtail.run")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(
            f"'{path}' is not a checkpoint: torch.load cannot read it ({_first_line(err)}); it is another kind of "
            "file or one whose writing was cut off. Pass a .ckpt written by longtail.run"
        ) from err
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint:
        raise ValueError(f"'{path}' is not a longtail checkpoint (it has no '{CHECKPOINT_KEY}' metadata)")
    return checkpoint


def unreadable(path: str | Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be loaded (a torn or foreign file), or ``None`` when it can."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        return _first_line(err)
    return None if isinstance(checkpoint, dict) else "it holds no checkpoint dictionary"


def _first_line(err: Exception) -> str:
    text = str(err).strip().split("\n")[0].split(". ")[0]  # torch's zip errors go on for several sentences
    return text or type(err).__name__


def atomic_save(checkpoint: dict, path: str | Path) -> None:
    """``torch.save`` to a temporary file in ``path``'s folder, flushed to disk, then ``os.replace`` d onto ``path``:
    whatever interrupts the save, ``path`` holds either its previous content or the new one, never part of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}"
    try:
        with open(temporary, "xb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(folder)
    except OSError:
        pass
    finally:
        os.close(folder)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with :func:`atomic_save` for local paths (remote ones are Lightning's)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        from fsspec.implementations.local import LocalFileSystem
        from lightning.fabric.utilities.cloud_io import get_filesystem

        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
        else:
            atomic_save(checkpoint, path)


def resume_point(last: Path, stage: str, log) -> Path | None:
    """The checkpoint a stage resumes from: ``last`` if it exists and loads.

    If it is torn (a run killed while writing it with an older version, a full disk), it is moved aside as
    ``last.ckpt.torn`` and the stage resumes from the newest readable checkpoint in its folder, or starts again
    when none loads; a warning says which. Torn checkpoints met on the way are moved aside too, out of the way of
    the ones the stage writes under the same names. A missing ``last`` beside a ``last.ckpt.torn`` is looked for
    the same way, so the ranks of a DDP run (started after rank 0 moved the torn file) resume from the same
    checkpoint. Temporary files of interrupted saves are removed."""
    last = Path(last)
    for partial in last.parent.glob(f".*{TEMPORARY_SUFFIX}"):
        partial.unlink(missing_ok=True)
    torn = {}
    if last.is_file():
        problem = unreadable(last)
        if problem is None:
            return last
        torn[last] = problem
    elif not last.with_name(f"{last.name}.torn").is_file():
        return None
    others = sorted((p for p in last.parent.glob("*.ckpt") if p.name != last.name and p.is_file()),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    found = None
    for candidate in others:
        problem = unreadable(candidate)
        if problem is None:
            found = candidate
            break
        torn[candidate] = problem
    for path in torn:
        os.replace(path, path.with_name(f"{path.name}.torn"))
    if torn:
        unread = " and ".join(f"{path.name} ({problem})" for path, problem in torn.items())
        unread += " is not readable" if len(torn) == 1 else " are not readable"
        if found is None:
            log.warning("stage '%s': %s (moved aside as *.torn), and no other checkpoint in %s is: the stage "
                        "starts again from its first epoch", stage, unread, last.parent)
        else:
            log.warning("stage '%s': %s (moved aside as *.torn); resuming from the newest readable checkpoint "
                        "in %s, %s, instead", stage, unread, last.parent, found.name)
    return found


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
    model = instantiate(moved_targets(meta["config"]["method"]), class_counts=meta["class_counts"], class_names=meta["class_names"])
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    model.run_config = meta["config"]
    return model


def moved_targets(config):
    """``config`` (plain dicts and lists, as a checkpoint holds it) with every ``_target_`` under a module of
    :data:`MOVED_MODULES` pointing at the module's new place; everything else unchanged."""
    if isinstance(config, dict):
        out = {key: moved_targets(value) for key, value in config.items()}
        target = out.get("_target_")
        if isinstance(target, str):
            module, _, name = target.rpartition(".")
            if module in MOVED_MODULES:
                out["_target_"] = f"{MOVED_MODULES[module]}.{name}"
        return out
    if isinstance(config, list):
        return [moved_targets(value) for value in config]
    return config
