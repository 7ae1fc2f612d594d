"""The composed config of every experiment, stage and suite job, flattened to ``{dotted.key: value}``.

The guard of the config refactors (issue 20): `snapshots/composed_configs.json.gz` holds these views as they were
before a refactor; `test_config_snapshot.py` proves the composed values are still the same, key renames mapped
explicitly. Regenerate (only when a change of behaviour is meant): `python tests/config_snapshot.py`.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import longtail
from longtail.engine.stages import stage_configs

CONF_DIR = Path(longtail.__file__).parent / "conf"
SNAPSHOT = Path(__file__).parent / "snapshots" / "composed_configs.json.gz"
# the environment a composed path depends on, fixed so the snapshot is the same on every machine
ENVIRONMENT = {"LONGTAIL_DATA": "/data", "LONGTAIL_LOGS": "/logs"}


def command_lines() -> dict[str, list[str]]:
    """Every command line whose stages the snapshot holds, by a name for it."""
    experiments = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
    stages = sorted(p.stem for p in (CONF_DIR / "stage").glob("*.yaml"))
    lines = {"default": []}
    for experiment in experiments:
        lines[experiment] = [f"experiment={experiment}"]
        lines[f"{experiment}+reference"] = [f"experiment={experiment}", "fidelity=reference"]
    for stage in stages:
        lines[f"stage={stage}"] = [f"stage={stage}"]
    for suite_file in sorted((CONF_DIR / "suite").glob("*.yaml")):
        params = yaml.safe_load(suite_file.read_text())["hydra"]["sweeper"]["params"]
        for experiment in params["experiment"].split(","):
            lines[f"{suite_file.stem}/{experiment}"] = [f"suite={suite_file.stem}", f"experiment={experiment}"]
    return lines


def flatten(node, prefix: str = "") -> dict:
    """``{"a.b": 1}`` for ``{"a": {"b": 1}}``; lists and scalars are leaves."""
    if isinstance(node, dict) and node:
        flat = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: node}


def composed_views(lines: dict[str, list[str]] | None = None) -> dict[str, dict]:
    """``{"<command line name>/<stage>": {dotted key: resolved value}}`` for every stage of every command line."""
    saved = {k: os.environ.get(k) for k in ENVIRONMENT}
    os.environ.update(ENVIRONMENT)
    views = {}
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            for name, overrides in (lines or command_lines()).items():
                cfg = compose("config", overrides=overrides)
                for stage, stage_cfg in stage_configs(cfg):
                    views[f"{name}:{stage}"] = flatten(OmegaConf.to_container(stage_cfg, resolve=True))
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    return views


def snapshot() -> dict[str, dict]:
    """The views as they were before the refactor."""
    return json.loads(gzip.decompress(SNAPSHOT.read_bytes()))


if __name__ == "__main__":
    SNAPSHOT.parent.mkdir(exist_ok=True)
    views = composed_views()
    # mtime=0: the same views give the same bytes, so git sees a change only when a value changed
    SNAPSHOT.write_bytes(gzip.compress(json.dumps(views, indent=0, sort_keys=True).encode(), mtime=0))
    print(f"{len(views)} stage views -> {SNAPSHOT}", file=sys.stderr)
