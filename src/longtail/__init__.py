"""longtail: long-tailed image recognition methods under one honest protocol."""

from longtail.common.checkpoint import load
from longtail.data import folder as _folder  # noqa: F401  registers ${folder_classes:<root>} (conf/datamodule/image_folder.yaml)
from longtail.engine.runs import latest_run, load_datamodule, selected_checkpoint

__all__ = ["load", "load_datamodule", "latest_run", "selected_checkpoint"]
__version__ = "0.1.0"
