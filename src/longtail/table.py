"""The many / medium / few table printed at the end of a run."""

from __future__ import annotations

import math

COLUMNS = (("top-1", "test/acc"), ("many", "test/acc_many"), ("medium", "test/acc_medium"), ("few", "test/acc_few"), ("ECE", "test/ece"))


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.2f}"


def format_table(results: dict, title: str = "test") -> str:
    """A Markdown table of overall / many / medium / few accuracy (%) and ECE (%).

    A multi-expert run with a router adds a row for the routed prediction, with the mean number
    of experts per sample and the GFLOPs per image of both. A run that tested a subset (``debug=smoke``, a
    limited test set) says so above the table.
    """
    header = "| model | " + " | ".join(name for name, _ in COLUMNS) + " |"
    rule = "|---|" + "|".join("---:" for _ in COLUMNS) + "|"
    rows = ["| all | " + " | ".join(_cell(results.get(key)) for _, key in COLUMNS) + " |"]
    if "test/acc_router" in results:
        routed = [_cell(results.get(key.replace("test/acc", "test/acc_router"))) for _, key in COLUMNS[:4]]
        rows[0] = rows[0].replace("| all |", f"| all experts ({results['test/gflops_all_experts']:.3f} GFLOPs) |")
        label = f"router ({results['test/experts_per_sample']:.2f} experts, {results['test/gflops_router']:.3f} GFLOPs)"
        rows.append(f"| {label} | " + " | ".join(routed) + " | |")
    subset = [f"SUBSET — {results['subset']}"] if results.get("subset") else []
    return "\n".join([f"\n{title}", *subset, header, rule, *rows, ""])
