"""Access to the golden test vectors copied into ``tests/golden/`` (see /work/shared/golden/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def load_golden(name: str) -> dict[str, Any]:
    """Parsed contents of ``tests/golden/<name>.json`` (``name`` with or without the ``.json`` suffix)."""
    path = GOLDEN_DIR / (name if name.endswith(".json") else f"{name}.json")
    with path.open() as f:
        return json.load(f)


def tol(d: dict[str, Any] | str) -> dict[str, float]:
    """``dict(rtol=..., atol=...)`` for ``torch.allclose`` from a golden file (or its ``tolerance`` field).

    The string ``"exact"`` (for the whole field or either entry) means zero tolerance.
    """
    t = d.get("tolerance", d) if isinstance(d, dict) else d
    if t == "exact":
        return dict(rtol=0.0, atol=0.0)
    return {k: 0.0 if t[k] == "exact" else float(t[k]) for k in ("rtol", "atol")}
