"""Identical stages are trained once within a sweep: a stage whose composed config, seed and starting point equal a
finished stage's reuses that stage's checkpoint and results instead of training again.

In ``suite=cifar10_lt`` DRO-LT's first stage and IP-DPP's starting point are the CE stage of the decoupling job of the
same seed. The stage's identity (:func:`stage_key`) is a hash of its resolved config without what does not change the
trained model (names, table rows, loggers, paths), and of the identity of the stage it starts from. A reused stage's
``results.json`` is the twin's, with ``reused_from`` (the twin's folder, relative to this stage's), so its cost still
counts for every row that depends on it; the run log says which stage was reused and from where.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from longtail.reporting.results import write_results

log = logging.getLogger("longtail")

#: top-level keys that do not change what a stage trains
IGNORED = ("name", "table_rows", "paper_protocol_note", "logger", "paths", "stage_name", "init_stage", "evaluates",
           "optimized_metric", "shared_protocol", "init_from")


def stage_key(stage_cfg: DictConfig, start: str | None) -> str:
    """The stage's identity: its resolved config (less :data:`IGNORED` and the progress bar) and ``start``, the
    identity of the stage it starts from (or the checkpoint path it is initialised from)."""
    tree = OmegaConf.to_container(stage_cfg, resolve=True)
    for key in IGNORED:
        tree.pop(key, None)
    tree.get("trainer", {}).pop("enable_progress_bar", None)
    blob = json.dumps({"config": tree, "start": start}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def find_twin(key: str, root: Path | None, stage_dir: Path) -> Path | None:
    """The folder of a finished stage under ``root`` (a sweep's folder) with identity ``key`` and its checkpoint on
    disk, trained there (not itself reused), or ``None``."""
    if root is None or not Path(root).is_dir():
        return None
    for path in sorted(Path(root).glob("**/results.json")):
        if path.parent.resolve() == stage_dir.resolve():
            continue
        try:
            results = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (results.get("stage_key") == key and results.get("stage") == path.parent.name
                and not results.get("reused_from") and Path(results.get("checkpoint", "")).is_file()):
            return path.parent
    return None


def reuse_twin(twin: Path, stage_dir: Path, stage: str) -> dict:
    """Write the twin's results as this stage's (``reused_from`` added) and return them."""
    results = json.loads((twin / "results.json").read_text())
    results["reused_from"] = os.path.relpath(twin, stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_results(stage_dir / "results.json", results)
    log.info("stage '%s' equals the finished stage in %s (same config, seed and start): reusing its checkpoint and "
             "results", stage, twin)
    return results
