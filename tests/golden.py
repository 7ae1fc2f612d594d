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


GOLDEN_DTYPES = ("float32", "float64")


def golden_cases(name: str) -> list:
    """pytest params ``(file, case, dtype)`` for every case of a golden file, in float32 and float64."""
    import pytest
    import torch

    d = load_golden(name)
    return [
        pytest.param(d, case, getattr(torch, dtype), id=f"{case['name']}-{dtype}")
        for case in d["cases"]
        for dtype in GOLDEN_DTYPES
    ]


def assert_close(actual, expected, tolerance: dict[str, float]) -> None:
    """``torch.allclose`` in float64 against a golden value, with matching shapes."""
    import torch

    expected = torch.as_tensor(expected, dtype=torch.float64)
    actual = actual.detach().to(torch.float64)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, **tolerance), (actual, expected)
