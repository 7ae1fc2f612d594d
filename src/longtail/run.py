"""Entry point: ``python -m longtail.run [overrides]``.

Checks the overrides (:mod:`longtail.overrides`), composes the Hydra config in ``conf/``, runs every stage of
the experiment in order (each initialised from the previous stage's checkpoint), writes ``<stage>/results.json``
and a top-level ``results.json`` (the last stage's), prints the test table, the run folder and the selected
checkpoint, and points ``<log_dir>/latest`` at the run. ``stage=<name> init_from=<ckpt>`` runs one stage alone.

A mistake of the user's (a missing data set, a bad value, a wrong checkpoint) ends the run with one message
and exit status 2, and a run that failed before writing a checkpoint leaves no folder behind; the traceback
is shown only with ``HYDRA_FULL_ERROR=1``. In a multirun a failing job is recorded and the sweep goes on, and a
job that finished before is skipped (:mod:`longtail.sweeps`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from longtail.overrides import check_overrides, job_identity
from longtail.results import write_results
from longtail.sweeps import RESULTS, clear_failure, record_failure
from longtail.table import format_table

log = logging.getLogger("longtail")

USER_ERRORS = (ValueError, OSError, ImportError, InstantiationException, OmegaConfBaseException)


def main() -> None:
    """The console command: refuse a misspelt key or a mistyped value before Hydra makes a run folder."""
    problem = check_overrides(sys.argv[1:])
    if problem:
        stop(problem)
    run()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def run(cfg: DictConfig) -> float | None:
    from lightning.pytorch.utilities import rank_zero_only

    from longtail.runs import link_latest
    from longtail.stages import run_experiment

    quiet_third_party()
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    overrides = list(HydraConfig.get().overrides.task)
    finished = json.loads((output_dir / RESULTS).read_text()) if multirun and (output_dir / RESULTS).is_file() else None
    clear_failure(output_dir)
    if finished is not None and job_identity(finished.get("overrides", overrides)) == job_identity(overrides):
        print(f"job {shown(output_dir)} finished before: skipped")  # a restarted sweep
        return sweep_objective(finished, cfg.get("optimized_metric"))
    records = {".hydra", f"{HydraConfig.get().job.name}.log"}  # what Hydra writes before the run starts
    fresh = not output_dir.is_dir() or not {p.name for p in output_dir.iterdir()} - records
    try:
        refuse_test_objective(cfg.get("optimized_metric"))
        if finished is not None:
            raise ValueError(
                f"{shown(output_dir)} holds a finished job with other settings ({' '.join(job_identity(finished['overrides']))}"
                f"): give this sweep a folder of its own (hydra.sweep.dir=<new folder>)"
            )
        results = {**run_experiment(cfg, output_dir), "overrides": overrides}
    except Exception as error:
        if multirun and cfg.get("optimized_metric") is None and os.environ.get("HYDRA_FULL_ERROR") != "1":
            record_failure(output_dir, describe(error))  # the sweep goes on; SweepReport lists it at the end
            print(f"longtail: error in job {shown(output_dir)}: {describe(error)} (the sweep goes on)",
                  file=sys.stderr)
            return None
        if not isinstance(error, USER_ERRORS):
            raise
        if fresh and not any(output_dir.rglob("*.ckpt")):
            remove_run_folder(output_dir, Path(cfg.paths.log_dir))
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        stop(describe(error), traceback_hint=True)
    if rank_zero_only.rank == 0:  # under DDP (trainer=ddp) every rank runs this; one reports
        write_results(output_dir / "results.json", results)
        print(format_table(results, title=f"{cfg.get('name', 'run')} — test set"))
        latest = link_latest(output_dir, cfg.paths.log_dir)
        print(f"run folder: {shown(output_dir)}" + (f"  (newest run: {shown(latest)})" if latest else ""))
        print(f"selected checkpoint ({results['selection']}): {shown(results['checkpoint'])}")
    return sweep_objective(results, cfg.get("optimized_metric"))


def quiet_third_party() -> None:
    """One table on the console: Lightning's info lines (accelerator, tips, checkpoint restores, its own test
    table is switched off in :mod:`longtail.stages`) and third-party deprecation notices stay out; warnings
    about the run itself are kept."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("default", category=category, module="longtail")
    warnings.filterwarnings("ignore", message=".*does not have many workers")  # in-memory data needs none
    warnings.filterwarnings("ignore", message="The number of training batches .* is smaller than the logging")


def shown(path: str | Path) -> str:
    """``path`` as the user would type it: relative to the current directory when it is below it."""
    path = Path(path).absolute()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def describe(error: Exception) -> str:
    """The message of the error the user caused (unwrapped from Hydra's instantiation error)."""
    inner = error
    while isinstance(inner, InstantiationException) and inner.__cause__ is not None:
        inner = inner.__cause__
    message = str(inner) or type(inner).__name__
    if inner is not error:
        where = " ".join(line for line in str(error).splitlines() if line.startswith(("Error in call", "full_key")))
        message += f"\n({where})"
    return message


def stop(message: str, traceback_hint: bool = False) -> None:
    hint = "\n(HYDRA_FULL_ERROR=1 shows the traceback)" if traceback_hint else ""
    print(f"longtail: error: {message}{hint}", file=sys.stderr)
    sys.exit(2)


def remove_run_folder(output_dir: Path, log_dir: Path) -> None:
    """Delete a run folder that holds nothing but Hydra's records, and the parents it leaves empty."""
    shutil.rmtree(output_dir, ignore_errors=True)
    for parent in output_dir.parents:
        if parent.resolve() != log_dir.resolve() and log_dir.resolve() not in parent.resolve().parents:
            break
        try:
            parent.rmdir()
        except OSError:
            break


def refuse_test_objective(metric: str | None) -> None:
    if metric is not None and metric.startswith("test/"):
        raise ValueError(f"optimized_metric={metric} would tune on the test set: use a val/ metric (e.g. val/acc)")


def sweep_objective(results: dict, metric: str | None) -> float | None:
    """The value a Hydra sweeper optimises: a validation metric of the selected checkpoint, never a test one."""
    if metric is None:
        return None
    refuse_test_objective(metric)
    if metric not in results:
        raise ValueError(
            f"optimized_metric={metric} is not in this run's results: sweeps need a validation split "
            "(e.g. datamodule.val=heldout on CIFAR-LT)"
        )
    return float(results[metric])


if __name__ == "__main__":
    main()
