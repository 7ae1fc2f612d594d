"""``results.json`` as strict JSON: a number that is not finite (an empty shot group's NaN accuracy, an empty
reliability bin) is written as ``null``, so any JSON parser reads the file (Python's ``json`` would otherwise
write the non-standard ``NaN``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float, at any depth of dicts and lists, replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def write_results(path: str | Path, results: dict) -> None:
    """Write ``results`` to ``path`` as indented strict JSON (``allow_nan=False`` guarantees it)."""
    Path(path).write_text(json.dumps(finite_or_none(results), indent=2, allow_nan=False))
