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
