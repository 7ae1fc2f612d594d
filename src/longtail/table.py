"""The many / medium / few table printed at the end of a run."""

from __future__ import annotations

import math

COLUMNS = (("top-1", "test/acc"), ("many", "test/acc_many"), ("medium", "test/acc_medium"), ("few", "test/acc_few"), ("ECE", "test/ece"))


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.2f}"


def format_table(results: dict, title: str = "test") -> str:
    """A Markdown table of overall / many / medium / few accuracy (%) and ECE (%)."""
    header = "| " + " | ".join(name for name, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---:" for _ in COLUMNS) + "|"
    row = "| " + " | ".join(_cell(results.get(key)) for _, key in COLUMNS) + " |"
    return "\n".join([f"\n{title}", header, rule, row, ""])
