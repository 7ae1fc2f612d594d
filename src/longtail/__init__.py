"""longtail: long-tailed image recognition methods under one honest protocol."""

from longtail.checkpoint import load

__all__ = ["load"]
__version__ = "0.1.0"
