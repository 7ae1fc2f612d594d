"""The many / medium / few table printed at the end of a run.

A shot group with no class (CIFAR-10-LT has no class under 20 training images) is ``n/a`` in the table and
said once in a footnote under it, instead of a warning at every evaluation.
"""

from __future__ import annotations

import math

DEFAULT_THRESHOLDS = (100, 20)  # metrics.shot_thresholds: many > 100 training images, few < 20
COLUMNS = (("top-1", "test/acc"), ("many", "test/acc_many"), ("medium", "test/acc_medium"), ("few", "test/acc_few"), ("ECE", "test/ece"))


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.2f}"


def shot_group(count: int, thresholds=(100, 20)) -> str:
    """The shot group of a class with ``count`` training images (the rule of :func:`longtail.reporting.metrics.shot_groups`,
    without importing torch: the console command imports this module before it needs torch)."""
    many_gt, few_lt = thresholds
    return "many" if count > many_gt else "few" if count < few_lt else "medium"


def empty_group_notes(results: dict, thresholds=(100, 20)) -> list[str]:
    """One footnote per shot group that is ``n/a`` because no training class falls in it, e.g.
    ``few: no class has fewer than 20 training images (n/a)``; none without ``train_class_counts``."""
    counts = results.get("train_class_counts")
    if not counts:
        return []
    many_gt, few_lt = thresholds
    rules = {"many": f"more than {many_gt}", "medium": f"{few_lt} to {many_gt}", "few": f"fewer than {few_lt}"}
    present = {shot_group(n, thresholds) for n in counts}
    return [
        f"{name}: no class has {rule} training images (n/a)"
        for name, rule in rules.items()
        if name not in present and _cell(results.get(f"test/acc_{name}")) == "n/a"
    ]


def format_table(results: dict, title: str = "test", thresholds=(100, 20)) -> str:
    """A Markdown table of overall / many / medium / few accuracy (%) and ECE (%).

    A multi-expert run with a router adds a row for the routed prediction, with the mean number
    of experts per sample and the GFLOPs per image of both. A run that tested a subset (``debug=smoke``, a
    limited test set) says so above the table, and so does a stage that did not train (``"converged": false``,
    with its ``converged_reason``). A shot group without a class under ``thresholds``
    (``metrics.shot_thresholds``: many > first, few < second) gets a footnote below it, after a blank line so
    that Markdown does not read it as a row.
    """
    header = "| model | " + " | ".join(name for name, _ in COLUMNS) + " |"
    rule = "|---|" + "|".join("---:" for _ in COLUMNS) + "|"
    rows = ["| all | " + " | ".join(_cell(results.get(key)) for _, key in COLUMNS) + " |"]
    if "test/acc_router" in results:
        routed = [_cell(results.get(key.replace("test/acc", "test/acc_router"))) for _, key in COLUMNS[:4]]
        rows[0] = rows[0].replace("| all |", f"| all experts ({results['test/gflops_all_experts']:.3f} GFLOPs) |")
        label = f"router ({results['test/experts_per_sample']:.2f} experts, {results['test/gflops_router']:.3f} GFLOPs)"
        rows.append(f"| {label} | " + " | ".join(routed) + " | |")
    above = [f"SUBSET — {results['subset']}"] if results.get("subset") else []
    if results.get("converged") is False:
        above.append(f"NOT CONVERGED — {results.get('converged_reason') or 'no reason recorded'}: "
                     "these are not the accuracies of a trained model")
    notes = empty_group_notes(results, thresholds)
    footnotes = ["", *notes] if notes else []
    return "\n".join([f"\n{title}", *above, header, rule, *rows, *footnotes, ""])
