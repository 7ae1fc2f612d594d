"""Entry point: ``python -m longtail.run [overrides]``.

Composes the Hydra config in ``conf/``, runs every stage of the experiment in
order (each initialised from the previous stage's checkpoint), writes
``<stage>/results.json`` and a top-level ``results.json`` (the last stage's), and
prints the test table. ``stage=<name> init_from=<ckpt>`` runs one stage alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from longtail.results import write_results
from longtail.stages import run_experiment
from longtail.table import format_table

log = logging.getLogger("longtail")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from lightning.pytorch.utilities import rank_zero_only

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    results = run_experiment(cfg, output_dir)
    if rank_zero_only.rank == 0:  # under DDP (trainer=ddp) every rank runs this; one reports
        print(format_table(results, title=f"{cfg.get('name', 'run')} — test set ({output_dir})"))
        write_results(output_dir / "results.json", results)
    return sweep_objective(results, cfg.get("optimized_metric"))


def sweep_objective(results: dict, metric: str | None) -> float | None:
    """The value a Hydra sweeper optimises: a validation metric of the selected checkpoint, never a test one."""
    if metric is None:
        return None
    if metric.startswith("test/"):
        raise ValueError(f"optimized_metric={metric} would tune on the test set: use a val/ metric (e.g. val/acc)")
    if metric not in results:
        raise ValueError(
            f"optimized_metric={metric} is not in this run's results: sweeps need a validation split "
            "(e.g. datamodule.val=heldout on CIFAR-LT)"
        )
    return float(results[metric])


if __name__ == "__main__":
    main()
