"""A Hydra multirun that survives its jobs: one folder, failed jobs recorded and skipped over, restartable.

Every job of ``python -m longtail.run -m ...`` lives in ``<log_dir>/multiruns/<date>/<job number>_<name>/``
(one folder for the whole sweep, ``multirun.yaml`` at its top, whatever experiments it spans); a suite's jobs
(``suite=<name>``) in ``<log_dir>/suites/<name>_x<scale>/<name>/seed<seed>/``, a folder that the same command
finds again. A job that fails
writes ``FAILED.txt`` (its message and traceback) into its folder and the sweep goes on with the next job; when
the sweep ends, :class:`SweepReport` lists the finished, failed and unfinished jobs and the command that
restarts it. Rerunning the same command with ``hydra.sweep.dir=<that folder>`` gives every job its old folder:
a finished job (its ``results.json`` is there) is skipped, an interrupted one resumes from its stages'
``last.ckpt`` (:func:`longtail.engine.stages.run_experiment`), a failed one is tried again.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

FAILED = "FAILED.txt"
RESULTS = "results.json"


def record_failure(job_dir: Path, message: str) -> None:
    """Write the job's failure (its message, then the traceback being handled) to ``<job_dir>/FAILED.txt``."""
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / FAILED).write_text(f"{message}\n\n{traceback.format_exc()}")


def clear_failure(job_dir: Path) -> None:
    """A job tried again starts without the record of its previous failure."""
    (job_dir / FAILED).unlink(missing_ok=True)


def job_states(sweep_dir: Path) -> dict[str, list[Path]]:
    """The sweep's job folders by state: ``finished`` (a results.json), ``failed`` (FAILED.txt), ``unfinished``."""
    states: dict[str, list[Path]] = {"finished": [], "failed": [], "unfinished": []}
    jobs = {hydra_dir.parent for hydra_dir in sweep_dir.rglob(".hydra")}  # <num>_<name>, or a suite's <name>/seed<n>
    for job in sorted(jobs, key=lambda p: (len(str(p)), str(p))):
        if (job / FAILED).is_file():
            states["failed"].append(job)
        elif (job / RESULTS).is_file():
            states["finished"].append(job)
        else:
            states["unfinished"].append(job)
    return states


class SweepReport(Callback):
    """At the end of a multirun: how many jobs finished, which failed (and why) or did not finish, and how to
    restart the sweep."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        states = job_states(sweep_dir)
        lines = [f"sweep {sweep_dir}: {len(states['finished'])} finished, {len(states['failed'])} failed, "
                 f"{len(states['unfinished'])} unfinished"]
        for job in states["failed"]:
            lines.append(f"  failed: {job.relative_to(sweep_dir)}: {(job / FAILED).read_text().splitlines()[0]}")
        for job in states["unfinished"]:
            lines.append(f"  unfinished: {job.relative_to(sweep_dir)}")
        if states["failed"] or states["unfinished"]:
            again = "" if OmegaConf.select(config, "shared_protocol.name") else f" with hydra.sweep.dir={sweep_dir}"
            lines.append(f"  restart (finished jobs are skipped): the same command{again}")
        print("\n".join(lines))
