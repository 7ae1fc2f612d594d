"""The scaled schedule of every experiment's every stage at the scales the tables use, pinned in
``snapshots/scaled_schedules.json`` (``test_scaled_schedules.py``). Regenerate when a change of schedule is meant:
``python tests/scaled_schedules.py``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).parent))
from conftest import CONF_DIR, compose_config  # noqa: E402

from longtail.engine.stages import stage_configs  # noqa: E402

PIN = Path(__file__).parent / "snapshots" / "scaled_schedules.json"
SCALES = (0.04, 0.15, 1.0)
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
KEYS = {"epochs": "trainer.max_epochs", "warmup": "method.scheduler.warmup_epochs",
        "min_warmup_steps": "method.scheduler.min_warmup_steps", "milestones": "method.scheduler.milestones",
        "ramp": "method.scheduler.ramp_epochs", "drw_start": "method.drw_start", "redraw_every": "method.redraw_every",
        "interval": "method.scheduler_interval", "method": "method._target_"}


def schedules(experiment: str, scale: float) -> dict:
    """``{stage: {name: value}}`` of the keys in :data:`KEYS` that the stage has."""
    cfg = compose_config([f"experiment={experiment}", f"schedule.scale={scale}"])
    found = {}
    for name, stage in stage_configs(cfg):
        values = {key: OmegaConf.select(stage, path) for key, path in KEYS.items()}
        found[name] = {key: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v
                       for key, v in values.items() if v is not None}
    return found


if __name__ == "__main__":
    pinned = {experiment: {str(scale): schedules(experiment, scale) for scale in SCALES} for experiment in EXPERIMENTS}
    PIN.write_text(json.dumps(pinned, indent=1, sort_keys=True) + "\n")
    print(f"wrote {PIN}")
