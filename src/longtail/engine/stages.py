"""The staged-run mechanism: compose each stage's config, run it, hand over its checkpoint.

An experiment is an ordered mapping ``stages`` of stage name → overrides of the
global config (a method, a sampler, a schedule, …). A stage's config is the
global config with its overrides merged in: a node whose ``_target_`` changes is
replaced whole, anything else is merged key by key. ``debug`` settings are
applied last so ``debug=smoke`` shrinks every stage, after ``schedule.scale`` has scaled each stage's epoch
counts (:mod:`longtail.engine.schedule_scale`). A stage starts from the
previous stage's checkpoint, or from the stage named by its ``init_stage``
(e.g. cRT, LWS and tau-norm side by side, each from the same CE stage). A
stage set to ``null`` is dropped (an experiment replacing the default ``train``).
A method without a classifier (BNS pretraining) is not validated or tested; a
later stage with ``evaluates: <stage>`` (its linear probe) reports its test
numbers into that stage's ``results.json`` as well, under ``linear_probe``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from longtail.engine.callbacks import TrainingCost
from longtail.engine.convergence import stage_convergence
from longtail.engine.reuse import find_twin, reuse_twin, stage_key
from longtail.engine.schedule_scale import scale_stage
from longtail.reporting.results import write_results

log = logging.getLogger("longtail")

RESERVED = ("stages", "stage", "debug", "hydra")
STAGE_KEYS = ("name", "init_stage", "evaluates")


def merge_overrides(base: DictConfig, overrides: DictConfig) -> DictConfig:
    """Merge ``overrides`` into ``base``; nodes whose ``_target_`` differs are replaced, not mixed."""
    merged = OmegaConf.merge(base, {})
    for key, value in overrides.items_ex(resolve=False):
        current = merged.get(key)
        if isinstance(value, DictConfig) and isinstance(current, DictConfig):
            if "_target_" in value and value.get("_target_") != current.get("_target_"):
                merged[key] = value
            else:
                merged[key] = merge_overrides(current, value)
        else:
            merged[key] = value
    return merged


def stage_configs(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """The (name, config) of every stage to run, in order."""
    base = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k not in RESERVED])
    OmegaConf.set_struct(base, False)
    stages = [(str(name), overrides) for name, overrides in cfg.stages.items() if overrides is not None]
    if cfg.get("stage") is not None:
        name = cfg.stage.name
        chosen = cfg.stages.get(name, cfg.stage)
        stages = [(name, chosen)]
    composed = []
    for name, overrides in stages:
        keys = [k for k in overrides if k not in STAGE_KEYS]
        stage_cfg = merge_overrides(base, OmegaConf.masked_copy(overrides, keys))
        stage_cfg = scale_stage(stage_cfg, float(OmegaConf.select(cfg, "schedule.scale", default=1)), name,
                                int(OmegaConf.select(cfg, "schedule.min_epochs", default=0)),
                                int(OmegaConf.select(cfg, "schedule.min_warmup_steps", default=0)))
        stage_cfg = apply_shared_selection(stage_cfg, OmegaConf.select(cfg, "shared_protocol.selection"))
        if cfg.get("debug") is not None:
            stage_cfg = merge_overrides(stage_cfg, cfg.debug)
        stage_cfg.stage_name = name
        stage_cfg.init_stage = overrides.get("init_stage")
        stage_cfg.evaluates = overrides.get("evaluates")
        composed.append((name, stage_cfg))
    return composed


def apply_shared_selection(stage_cfg: DictConfig, monitor: str | None) -> DictConfig:
    """A suite's one selection rule (``shared_protocol.selection``, e.g. ``val/acc``) replaces the checkpoint
    monitor a stage's recipe chose (DRO-LT's robust stage selects on ``val/ncm_acc``)."""
    if monitor and OmegaConf.select(stage_cfg, "callbacks.model_checkpoint") is not None:
        stage_cfg.callbacks.model_checkpoint.monitor = monitor
    return stage_cfg


def _checkpoint_callback(callbacks):
    from lightning.pytorch.callbacks import ModelCheckpoint

    return next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)


class HandBackTestResults(Callback):
    """Writes rank 0's ``test_results`` to ``path``: under ``ddp_spawn`` the test runs in worker processes
    and only scalar callback metrics come back to the caller's model, not the confusion matrix etc."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_test_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            write_results(self.path, pl_module.test_results)


def build_stage(cfg: DictConfig, init_from: str | None):
    """The stage's data module (set up) and method, initialised from the previous stage's checkpoint."""
    from longtail.common.checkpoint import init_from_checkpoint

    datamodule = instantiate(cfg.datamodule)
    datamodule.setup("fit")
    model = instantiate(
        cfg.method, class_counts=datamodule.class_counts, class_names=datamodule.class_names, **cfg.performance
    )
    model.run_config = with_absolute_paths(OmegaConf.to_container(cfg, resolve=True))
    if init_from:
        init_from_checkpoint(model, init_from)
    elif model.needs_init:
        raise ValueError(
            f"stage '{cfg.stage_name}' starts from a trained model: run the whole experiment, "
            "or pass init_from=<checkpoint of the previous stage>"
        )
    return datamodule, model


def with_absolute_paths(run_config: dict) -> dict:
    """The run config with its data root and paths absolute, so a checkpoint opened from another folder (a
    notebook in ``notebooks/``) finds its data."""
    for node, key in ((run_config.get("datamodule", {}), "root"), (run_config.get("paths", {}), "data_dir"),
                      (run_config.get("paths", {}), "log_dir"), (run_config, "init_from")):
        if node.get(key):
            node[key] = str(Path(node[key]).expanduser().absolute())
    return run_config


def tested_subset(cfg: DictConfig, tested: int, total: int) -> dict:
    """How many test images the numbers cover and, for a debug run or a truncated test set, a ``subset`` note
    saying the numbers are not comparable with published ones (printed above the table, too)."""
    notes = [cfg.get("debug_note")] if cfg.get("debug_note") else []
    if tested < total:
        notes.append(f"tested on {tested:,} of {total:,} test images")
    subset = "; ".join(notes) + ": not comparable with published numbers" if notes else None
    return {"test_images": tested, "test_images_total": total, "subset": subset}


def build_trainer(cfg: DictConfig, stage_dir: Path, validates: bool):
    """The Lightning Trainer with the configured callbacks and loggers; checkpoints go to ``stage_dir``, and
    the checkpoint monitor is dropped when nothing is validated (the last epoch is then selected)."""
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    checkpointing = _checkpoint_callback(callbacks)
    if checkpointing is not None:
        checkpointing.dirpath = str(stage_dir / "checkpoints")
        if not validates:
            checkpointing.monitor = None
    loggers = [instantiate(c, save_dir=str(stage_dir)) for c in cfg.logger.values() if c is not None]
    extra = {} if validates else {"limit_val_batches": 0}
    callbacks += [HandBackTestResults(stage_dir / ".test_results.json"), TrainingCost()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(stage_dir),
                          plugins=checkpoint_plugins(cfg.trainer), **extra)
    return trainer, checkpointing, loggers


def checkpoint_plugins(trainer_cfg: DictConfig) -> list:
    """The Trainer's plugins with :class:`~longtail.common.checkpoint.AtomicCheckpointIO` as its checkpoint I/O, so every
    checkpoint it writes (the callback's, ``trainer.save_checkpoint``) is replaced atomically, never torn."""
    from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO

    from longtail.common.checkpoint import AtomicCheckpointIO

    configured = trainer_cfg.get("plugins")
    configured = [] if configured is None else instantiate(configured)
    plugins = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins


def fit_and_select(trainer, model, datamodule, checkpointing, last: Path, stage_name: str) -> str:
    """Train (resuming from ``last``, or from the newest readable checkpoint when ``last`` is torn) and return the
    selected checkpoint (docs/methods/README.md §5: best val metric where there is a validation split, else the last epoch); a method
    without training is saved as is."""
    from longtail.common.checkpoint import resume_point

    if model.requires_training:
        resume = resume_point(last, stage_name, log)  # a torn last.ckpt: the newest readable one, said so
        resume = str(resume) if resume else None
        if resume:
            log.info("resuming stage '%s' from %s", stage_name, resume)
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
        selected = checkpointing.best_model_path if checkpointing and checkpointing.monitor else str(last)
    else:
        if datamodule.has_val:
            trainer.validate(model, datamodule=datamodule, verbose=False)
        trainer.strategy.connect(model)
        trainer.save_checkpoint(last)
        selected = str(last)
    return selected if selected and Path(selected).is_file() else str(last)


def evaluate_selected(trainer, model, datamodule, selected: str, handback: Path) -> dict:
    """The test-set results of the selected checkpoint (a method without a classifier is not tested)."""
    if not model.has_classifier:
        return {"evaluation": "no classifier: the linear_probe entry (written by the probe stage)"}
    trainer.test(model, datamodule=datamodule, ckpt_path=selected if model.requires_training else None, verbose=False)
    if trainer.is_global_zero and handback.is_file():
        if not model.test_results:  # ddp_spawn: the results were computed in a worker process
            model.test_results = json.loads(handback.read_text())
        handback.unlink()
    return model.test_results


def training_cost(trainer) -> dict:
    """What the whole fit cost: images processed in training and its wall seconds (:class:`TrainingCost`), read
    before the test restores the selected checkpoint (and with it the cost up to that epoch)."""
    cost = next(c for c in trainer.callbacks if isinstance(c, TrainingCost))
    return {"train_images": cost.images, "train_seconds": round(cost.seconds, 3)}


def inference_cost(model) -> dict:
    """The network's parameters and its GFLOPs per test image (multiply-adds, :mod:`longtail.reporting.flops`)."""
    import torch

    from longtail.reporting.flops import gflops

    numbers = {"parameters": sum(p.numel() for p in model.network.parameters())}
    if model.test_image_shape is not None:
        image = torch.zeros(1, *model.test_image_shape, device=model.device)
        was_training = model.training
        model.eval()
        numbers["test/gflops"] = gflops(model.predict_logits, model.to_memory_format(image))
        model.train(was_training)
    return numbers


def run_stage(cfg: DictConfig, stage_dir: Path, init_from: str | None) -> tuple[dict, str]:
    """Build, fit, select the checkpoint by the §5 rule, test, and write ``results.json`` and the plots."""
    from longtail.reporting.loggers import publish_results
    from longtail.reporting.plots import write_run_plots

    stage_dir.mkdir(parents=True, exist_ok=True)
    datamodule, model = build_stage(cfg, init_from)
    trainer, checkpointing, loggers = build_trainer(cfg, stage_dir, datamodule.has_val and model.has_classifier)
    selected = fit_and_select(trainer, model, datamodule, checkpointing, stage_dir / "checkpoints" / "last.ckpt",
                              cfg.stage_name)
    fitted = {**training_cost(trainer), **stage_convergence(trainer, model, checkpointing)}
    monitor = checkpointing.monitor if checkpointing else None
    results = {
        **evaluate_selected(trainer, model, datamodule, selected, stage_dir / ".test_results.json"),
        "train_class_counts": datamodule.class_counts,
        "class_names": datamodule.class_names,
        "stage": cfg.stage_name,
        "protocol": datamodule.protocol,  # datamodule.protocol and datamodule.val, as configured
        "val": datamodule.val_mode,
        "data_source": datamodule.data_source,
        "checkpoint": selected,
        "selection": f"best {monitor}" if monitor else "last epoch",
        "epochs": cfg.trainer.max_epochs if model.requires_training else 0,
        "schedule_scale": float(OmegaConf.select(cfg, "schedule.scale", default=1)),
        **fitted,
        **inference_cost(model),
    }
    if monitor and checkpointing.best_model_score is not None:
        results[monitor] = float(checkpointing.best_model_score)
    if "test/reliability" in results:
        results.update(tested_subset(cfg, int(sum(results["test/reliability"]["count"])), len(datamodule.test_split)))
    if trainer.is_global_zero:  # under DDP every rank has the same (synced) results; one writes them
        write_results(stage_dir / "results.json", results)
        plots = write_run_plots(stage_dir, results, thresholds=tuple(cfg.metrics.shot_thresholds))
        publish_results(loggers, model.run_config, results, plots)
    return results, selected


def run_experiment(cfg: DictConfig, output_dir: Path, twins_in: Path | None = None) -> dict:
    """Run every stage in order; return the last stage's results with the whole run's training cost
    (``run/train_images``, ``run/train_seconds``, ``run/epochs`` per stage) and what a comparison table needs
    (:func:`table_description`). Each stage's ``results.json`` gets the cost of the stages that made its model
    (itself and, back along ``init_stage`` or the previous stage, its predecessors), so a stage can be a row. A stage
    identical to one finished under ``twins_in`` (a sweep's folder) reuses it (:mod:`longtail.engine.reuse`)."""
    import lightning as L

    report_skipped_overrides(cfg)
    init_from = cfg.get("init_from")
    checkpoints: dict[str, str] = {}
    keys: dict[str, str] = {}
    results: dict = {}
    totals: dict = {"run/train_images": 0, "run/train_seconds": 0.0, "run/epochs": {}}  # over every stage
    lineage: dict[str, dict] = {}  # stage -> the cost of the stages that made its model
    previous = None
    for name, stage_cfg in stage_configs(cfg):
        L.seed_everything(stage_cfg.seed, workers=True)
        if stage_cfg.init_stage is not None:
            if stage_cfg.init_stage not in checkpoints:
                raise ValueError(f"stage '{name}' starts from stage '{stage_cfg.init_stage}', which has not run before it")
            init_from = checkpoints[stage_cfg.init_stage]
        done = output_dir / name / "results.json"
        start = keys.get(stage_cfg.init_stage or previous) or (str(init_from) if init_from else None)
        keys[name] = stage_key(stage_cfg, start)
        twin = None if done.is_file() else find_twin(keys[name], twins_in, done.parent)
        if done.is_file():
            log.info("stage '%s' already finished in %s; reusing it", name, done.parent)
            results = json.loads(done.read_text())
        elif twin is not None:
            results = reuse_twin(twin, done.parent, name)
        else:
            results, _ = run_stage(stage_cfg, output_dir / name, init_from)
            if stage_cfg.evaluates is not None:
                report_probe(output_dir / stage_cfg.evaluates / "results.json", name, results)
        init_from = checkpoints[name] = results["checkpoint"]
        for cost in (totals, lineage.setdefault(name, cost_of(lineage.get(stage_cfg.init_stage or previous)))):
            cost["run/train_images"] += results.get("train_images", 0)
            cost["run/train_seconds"] += results.get("train_seconds", 0.0)
            cost["run/epochs"][name] = results.get("epochs")
        record_lineage(output_dir / name / "results.json", {**lineage[name], "stage_key": keys[name]})
        previous = name
    return {**results, **totals, **table_description(cfg)}


def report_skipped_overrides(cfg: DictConfig) -> list[str]:
    """Print (and return) one line per override of this multirun job that sets a stage its experiment does not
    have: a sweep over experiments sets a stage's keys where the stage exists and skips them elsewhere
    (:func:`longtail.config.overrides.skip_absent_stages_in_multiruns`)."""
    from hydra.core.hydra_config import HydraConfig
    from lightning.pytorch.utilities import rank_zero_only

    from longtail.config.overrides import skipped_stage_overrides

    if not HydraConfig.initialized() or rank_zero_only.rank != 0:  # under DDP every rank runs this; one says it
        return []
    experiment = HydraConfig.get().runtime.choices.get("experiment") or cfg.get("name")
    stages = [str(name) for name in cfg.stages]
    lines = [f"{experiment}: skipped {line} (this experiment has no stage '{name}'; its stages: {', '.join(stages)})"
             for line, name in skipped_stage_overrides(HydraConfig.get().overrides.task, stages)]
    for line in lines:
        print(line)
    return lines


def cost_of(predecessor: dict | None) -> dict:
    """A copy of a predecessor's cost to add a stage to (zero for the first stage)."""
    if predecessor is None:
        return {"run/train_images": 0, "run/train_seconds": 0.0, "run/epochs": {}}
    return {**predecessor, "run/epochs": dict(predecessor["run/epochs"])}


def record_lineage(stage_results: Path, cost: dict) -> None:
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0 and stage_results.is_file():
        write_results(stage_results, {**json.loads(stage_results.read_text()), **cost})


def table_description(cfg: DictConfig) -> dict:
    """What ``longtail.report`` needs beyond the numbers: the suite's protocol, the rows this run gives
    (stage -> label and published top-1), how the paper's protocol differed, and the suite's rows that were not run
    here (``not_run``: label, what they need, their command)."""
    keys = ("shared_protocol", "table_rows", "paper_protocol_note")
    found = {key: OmegaConf.select(cfg, key) for key in keys}
    found["shared_protocol"] = OmegaConf.select(cfg, "shared_protocol.name")
    found["not_run"] = OmegaConf.select(cfg, "shared_protocol.not_run")
    return {key: OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            for key, value in found.items() if value is not None}


def report_probe(evaluated: Path, probe_stage: str, probe_results: dict) -> None:
    """Add a probe stage's test numbers to the results of the stage it evaluates (BNS has no classifier)."""
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank != 0 or not evaluated.is_file():
        return
    results = json.loads(evaluated.read_text())
    numbers = {k: v for k, v in probe_results.items() if k.startswith(("test/acc", "test/ece"))}
    results["linear_probe"] = {"stage": probe_stage, **numbers}
    write_results(evaluated, results)
