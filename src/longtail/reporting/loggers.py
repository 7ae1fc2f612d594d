"""Logger factories."""

from __future__ import annotations

import os
from pathlib import Path


def wandb_logged_in() -> bool:
    """True when W&B credentials exist (an API key in the environment or a `wandb login` entry)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_logger(save_dir: str, offline: bool | None = None, **kwargs):
    """A Lightning ``WandbLogger`` that stays offline unless the user has logged in to W&B."""
    from lightning.pytorch.loggers import WandbLogger

    if offline is None:
        offline = os.environ.get("WANDB_MODE") == "offline" or not wandb_logged_in()
    return WandbLogger(save_dir=save_dir, offline=offline, **kwargs)


def publish_results(loggers, config: dict, results: dict, plots: list[Path]) -> None:
    """Send a finished stage to the W&B loggers: resolved config, the test table and the plots; close the run
    (each stage is its own W&B run)."""
    from lightning.pytorch.loggers import WandbLogger

    columns = ["top-1", "many", "medium", "few", "ECE"]
    keys = ["test/acc", "test/acc_many", "test/acc_medium", "test/acc_few", "test/ece"]
    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        logger.experiment.config.update(config, allow_val_change=True)
        logger.log_table(key="test/table", columns=columns, data=[[results.get(k) for k in keys]])
        if plots:
            logger.log_image(key="plots", images=[str(p) for p in plots], caption=[p.stem for p in plots])
        logger.experiment.finish()


def publish_report(project: str, save_dir: str, columns: list[str], data: list[list], images: list[Path]) -> Path:
    """Send a ``longtail.report`` table (and its plots) to W&B as one run, offline unless the user has logged in;
    returns the run's local folder."""
    import wandb

    mode = "offline" if os.environ.get("WANDB_MODE") == "offline" or not wandb_logged_in() else "online"
    run = wandb.init(project=project, dir=save_dir, mode=mode, job_type="report")
    run.log({"report/table": wandb.Table(columns=columns, data=data),
             **{f"report/{p.stem}": wandb.Image(str(p)) for p in images}})
    folder = Path(run.dir).parent
    run.finish()
    wandb.teardown()  # no W&B state (mode, folders) left in this process for a later run
    return folder
