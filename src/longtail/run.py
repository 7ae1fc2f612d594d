"""Entry point: ``python -m longtail.run [overrides]``.

Checks the overrides (:mod:`longtail.config.overrides`), composes the Hydra config in ``conf/``, runs every stage of
the experiment in order (each initialised from the previous stage's checkpoint), writes ``<stage>/results.json``
and a top-level ``results.json`` (the last stage's), prints the test table, the run folder and the selected
checkpoint, and points ``<log_dir>/latest`` at the run. ``stage=<name> init_from=<ckpt>`` runs one stage alone
(``init_from`` also takes a run or stage folder, or its ``results.json``: the checkpoint it selected).
What the console shows (those lines, warnings, errors) is also written to the run folder's ``run.log``.

A mistake of the user's (a missing data set, a bad value, a wrong checkpoint) ends the run with one message
and exit status 2, and a run that failed before writing a checkpoint leaves no folder behind; the traceback
is shown only with ``HYDRA_FULL_ERROR=1``. In a multirun a failing job is recorded and the sweep goes on, and a
job that finished before is skipped (:mod:`longtail.engine.sweeps`).
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

from longtail.config.overrides import check_overrides, job_identity
from longtail.engine.sweeps import RESULTS, clear_failure, record_failure
from longtail.reporting.results import write_results
from longtail.reporting.table import format_table

log = logging.getLogger("longtail")
# the console's lines, copied to run.log by the handler conf/config.yaml's hydra.job_logging gives it (no console
# handler: print() shows them, unformatted); without Hydra's job logging it has none and the copy is skipped
CONSOLE_COPY = logging.getLogger("longtail.console")

USER_ERRORS = (ValueError, OSError, ImportError, InstantiationException, OmegaConfBaseException)


def main() -> None:
    """The console command: refuse a misspelt key, a mistyped value or an ``init_from`` that names no checkpoint
    before Hydra makes a run folder."""
    problem = check_overrides(sys.argv[1:]) or init_from_problem(sys.argv[1:])
    if problem:
        stop(problem)
    run()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def run(cfg: DictConfig) -> float | None:
    from lightning.pytorch.utilities import rank_zero_only

    from longtail.engine.runs import link_latest, resolve_init_from
    from longtail.engine.stages import run_experiment

    quiet_third_party()
    copy_warnings_to_log()
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    overrides = list(HydraConfig.get().overrides.task)
    finished = json.loads((output_dir / RESULTS).read_text()) if multirun and (output_dir / RESULTS).is_file() else None
    clear_failure(output_dir)
    if finished is not None and job_identity(finished.get("overrides", overrides)) == job_identity(overrides):
        say(f"job {shown(output_dir)} finished before: skipped")  # a restarted sweep
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
        if cfg.get("init_from"):
            cfg.init_from = resolve_init_from(cfg.init_from)  # a value with an interpolation is resolved only here
        twins_in = Path(HydraConfig.get().sweep.dir) if multirun else None
        results = {**run_experiment(cfg, output_dir, twins_in), "overrides": overrides}
    except Exception as error:
        if multirun and cfg.get("optimized_metric") is None and os.environ.get("HYDRA_FULL_ERROR") != "1":
            record_failure(output_dir, describe(error))  # the sweep goes on; SweepReport lists it at the end
            say(f"longtail: error in job {shown(output_dir)}: {describe(error)} (the sweep goes on)", error=True)
            return None
        if not isinstance(error, USER_ERRORS):
            log_traceback(error)
            raise
        if fresh and not any(output_dir.rglob("*.ckpt")):
            remove_run_folder(output_dir, Path(cfg.paths.log_dir))
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            log_traceback(error)
            raise
        stop(describe(error), traceback_hint=True)
    if rank_zero_only.rank == 0:  # under DDP (trainer=ddp) every rank runs this; one reports
        write_results(output_dir / "results.json", results)
        say(format_table(results, title=f"{cfg.get('name', 'run')} — test set"))
        latest = link_latest(output_dir, cfg.paths.log_dir)
        say(f"run folder: {shown(output_dir)}" + (f"  (newest run: {shown(latest)})" if latest else ""))
        say(f"selected checkpoint ({results['selection']}): {shown(results['checkpoint'])}")
    return sweep_objective(results, cfg.get("optimized_metric"))


def quiet_third_party() -> None:
    """One table on the console: Lightning's info lines (accelerator, tips, checkpoint restores, its own test
    table is switched off in :mod:`longtail.engine.stages`) and third-party deprecation notices stay out; warnings
    about the run itself are kept."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("default", category=category, module="longtail")
    warnings.filterwarnings("ignore", message=".*does not have many workers")  # in-memory data needs none
    warnings.filterwarnings("ignore", message="The number of training batches .* is smaller than the logging")


def say(message: str, error: bool = False) -> None:
    """Print ``message`` (to stderr if ``error``) and copy it to the run folder's ``run.log``: Hydra's job logging,
    which writes that file, does not capture print(), and the console's lines are what a finished run is read by."""
    print(message, file=sys.stderr if error else sys.stdout)
    if CONSOLE_COPY.hasHandlers():
        CONSOLE_COPY.log(logging.ERROR if error else logging.INFO, message)


def copy_warnings_to_log() -> None:
    """Copy each warning the console shows to ``run.log`` too: ``warnings.warn`` (Lightning's, torch's) writes to
    stderr, outside logging. The console keeps them as they are; installed once per process (a sweep's jobs)."""
    show = warnings.showwarning
    if getattr(show, "copies_to_run_log", False):
        return

    def show_and_copy(message, category, filename, lineno, file=None, line=None):
        show(message, category, filename, lineno, file, line)
        if CONSOLE_COPY.hasHandlers():
            CONSOLE_COPY.warning(warnings.formatwarning(message, category, filename, lineno, line).rstrip("\n"))

    show_and_copy.copies_to_run_log = True
    warnings.showwarning = show_and_copy


def log_traceback(error: Exception) -> None:
    """Write the traceback of the error that ends the job to ``run.log`` (Hydra prints it to the console only)."""
    if CONSOLE_COPY.hasHandlers():
        CONSOLE_COPY.error("the job failed:", exc_info=error)


def init_from_problem(args: list[str]) -> str | None:
    """Why an ``init_from=`` of the command line (each value of a sweep) names no checkpoint
    (:func:`longtail.engine.runs.resolve_init_from`), or ``None``. A value with an interpolation is checked in :func:`run`,
    once Hydra has resolved it; ``--help``, ``--cfg`` and the like are Hydra's business, as in ``check_overrides``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from longtail.engine.runs import resolve_init_from

    if any(arg.startswith("-") and arg not in ("-m", "--multirun") for arg in args):
        return None
    try:
        overrides = OverridesParser.create().parse_overrides([a for a in args if a not in ("-m", "--multirun")])
    except HydraException:
        return None
    for override in overrides:
        if override.key_or_group != "init_from" or override.package is not None or override.is_delete():
            continue
        try:
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        except Exception:  # an interval sweep has no values to check
            continue
        for value in values:
            if isinstance(value, str) and "${" not in value:
                try:
                    resolve_init_from(value)
                except (ValueError, OSError) as error:
                    return str(error)
    return None


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
    """End with the user's mistake in one message (on the console and in run.log) and exit status 2."""
    hint = "\n(HYDRA_FULL_ERROR=1 shows the traceback)" if traceback_hint else ""
    say(f"longtail: error: {message}{hint}", error=True)
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
