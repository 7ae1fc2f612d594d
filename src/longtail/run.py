"""Entry point: ``python -m longtail.run [overrides]``.

Composes the Hydra config in ``conf/``, runs every stage of the experiment in
order (each initialised from the previous stage's checkpoint), writes
``<stage>/results.json`` and a top-level ``results.json`` (the last stage's), and
prints the test table. ``stage=<name> init_from=<ckpt>`` runs one stage alone.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from longtail.stages import run_experiment
from longtail.table import format_table

log = logging.getLogger("longtail")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    results = run_experiment(cfg, output_dir)
    print(format_table(results, title=f"{cfg.get('name', 'run')} — test set ({output_dir})"))
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    value = results.get(cfg.get("optimized_metric") or "test/acc")
    return None if value is None else float(value)


if __name__ == "__main__":
    main()
