"""Figures of one run stage, drawn from its ``results.json`` and CSVLogger ``metrics.csv``.

Each function returns a matplotlib ``Figure`` and, given ``path``, saves it as a PNG.
Figures are built without ``pyplot`` (plain ``Figure`` objects rendered by Agg), so
importing this module never switches the backend of an interactive session.
``write_run_plots`` writes every figure the data supports into ``<stage>/plots/``, each titled with the stage's
name (a multi-stage run writes the same figures for every stage, and a figure shown alone must say which).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from hydra.utils import get_method
from matplotlib import colormaps
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

GROUP_COLOURS = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red"}
VAL_CURVES = (("overall", "val/acc"), ("many", "val/acc_many"), ("medium", "val/acc_medium"), ("few", "val/acc_few"))
MAX_LABELLED_CLASSES = 30
# one style per table row: tab20's strong shades first, then its light ones, so the first ten rows differ in hue
METHOD_COLOURS = tuple(to_hex(c) for c in (colormaps["tab20"].colors[0::2] + colormaps["tab20"].colors[1::2]))
METHOD_MARKERS = ("o", "s", "^", "D", "v", "P", "X")  # 7 markers against 20 colours: 140 distinct pairs
METHOD_HATCHES = ("", "//", "..", "xx", "\\\\")


def method_style(index: int) -> dict:
    """The colour, marker and (for bars) hatch of the table's row ``index``, the same in every figure of a table.

    Colours and markers cycle together (20 and 7 are coprime), so no two of the first 140 rows share a (colour,
    marker) pair; the hatch changes once the colours wrap, so no two of the first 100 bars share (colour, hatch)."""
    return {"color": METHOD_COLOURS[index % len(METHOD_COLOURS)],
            "marker": METHOD_MARKERS[index % len(METHOD_MARKERS)],
            "hatch": METHOD_HATCHES[index // len(METHOD_COLOURS) % len(METHOD_HATCHES)]}


def _floats(values) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=float)


def _save(fig: Figure, path) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def per_class_accuracy_vs_count(results: dict, thresholds=(100, 20), path=None) -> Figure:
    """Per-class test accuracy against the class's training count (log x), with the shot-group thresholds.

    The legend sits outside the axes, right of them: inside, any corner can hold a class's point (a
    legend in the lower right hid two points)."""
    counts = np.asarray(results["train_class_counts"], dtype=float)
    accuracy = 100 * _floats(results["test/acc_per_class"])
    many_gt, few_lt = thresholds
    groups = {"many": counts > many_gt, "few": counts < few_lt}
    groups["medium"] = ~groups["many"] & ~groups["few"]
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for name in ("many", "medium", "few"):
        mask = groups[name]
        if mask.any():
            ax.scatter(counts[mask], accuracy[mask], color=GROUP_COLOURS[name], label=name, zorder=3)
    for value, label in ((many_gt, f"many > {many_gt}"), (few_lt, f"few < {few_lt}")):
        ax.axvline(value, color="grey", linestyle="--", linewidth=1)
        ax.annotate(
            label, (value, 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right", fontsize=8
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    if counts.max() < 30 * counts.min():
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_ylim(-5, 105)
    ax.set_xlabel("training images of the class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("per-class accuracy vs. training count")
    ax.legend(title="shot group", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _save(fig, path)


def shot_group_bars(results: dict, path=None) -> Figure:
    """Overall / many / medium / few test accuracy (%); an empty (NaN) group is an absent bar labelled "n/a"."""
    names = ("overall", "many", "medium", "few")
    values = 100 * _floats(
        [results.get(key) for key in ("test/acc", "test/acc_many", "test/acc_medium", "test/acc_few")]
    )
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    colours = ["tab:grey", *GROUP_COLOURS.values()]
    bars = ax.bar(names, np.nan_to_num(values), color=colours)
    for bar, value in zip(bars, values):
        text = "n/a" if math.isnan(value) else f"{value:.1f}"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, 105)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy by shot group")
    return _save(fig, path)


def class_difficulty(results: dict, path=None) -> Figure:
    """Difficulty-Net's class weights w = C·o/Σo (bars) and the accuracy vector they were predicted from (line),
    classes ordered by training count, head first: a harder class should get a larger weight."""
    order = np.argsort(-np.asarray(results["train_class_counts"]), kind="stable")
    weights = np.asarray(results["diffnet/class_weights"], dtype=float)[order]
    accuracy = 100 * np.asarray(results["diffnet/accuracy_vector"], dtype=float)[order]
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    positions = np.arange(len(order))
    ax.bar(positions, weights, color="tab:purple", label="class weight (mean 1)")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("class, by training count (head → tail)")
    ax.set_ylabel("Difficulty-Net class weight")
    twin = ax.twinx()
    twin.plot(positions, accuracy, color="tab:green", marker=".", label="held-out accuracy (%)")
    twin.set_ylim(-5, 105)
    twin.set_ylabel("held-out accuracy (%)")
    if len(order) <= MAX_LABELLED_CLASSES:
        ax.set_xticks(positions, [str(results.get("class_names", order)[i]) for i in order], rotation=90, fontsize=7)
    ax.set_title("predicted class difficulty")
    fig.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def class_epsilons(results: dict, path=None) -> Figure:
    """DRO-LT's learned per-class margins ε, classes ordered by training count, head first; a negative ε
    (a class whose robust loss pushes samples toward other centroids) stands out in red."""
    order = np.argsort(-np.asarray(results["train_class_counts"]), kind="stable")
    epsilons = np.asarray(results["drolt/epsilons"], dtype=float)[order]
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    positions = np.arange(len(order))
    ax.bar(positions, epsilons, color=np.where(epsilons < 0, "tab:red", "tab:blue"))
    ax.axhline(0.0, color="grey", linewidth=1)
    ax.set_xlabel("class, by training count (head → tail)")
    ax.set_ylabel("learned margin ε")
    if len(order) <= MAX_LABELLED_CLASSES:
        ax.set_xticks(positions, [str(results.get("class_names", order)[i]) for i in order], rotation=90, fontsize=7)
    ax.set_title("DRO-LT per-class ε")
    return _save(fig, path)


def confusion_matrix(results: dict, path=None) -> Figure:
    """Row-normalised test confusion matrix (rows = true class), classes ordered by training count, head first."""
    confusion = np.asarray(results["test/confusion"], dtype=float)
    order = np.argsort(-np.asarray(results["train_class_counts"]), kind="stable")
    confusion = confusion[np.ix_(order, order)]
    totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, totals, out=np.full_like(confusion, math.nan), where=totals > 0)
    size = min(10.0, 3 + 0.3 * len(order))
    fig = Figure(figsize=(size + 1, size))
    ax = fig.add_subplot()
    image = ax.imshow(normalised, vmin=0, vmax=1, cmap="viridis")
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    if len(order) <= MAX_LABELLED_CLASSES:
        names = results.get("class_names") or [str(i) for i in range(len(order))]
        labels = [str(names[i]) for i in order]
        ax.set_xticks(range(len(order)), labels, rotation=90)
        ax.set_yticks(range(len(order)), labels)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("predicted class (head → tail)")
    ax.set_ylabel("true class (head → tail)")
    ax.set_title("confusion matrix (row-normalised)")
    return _save(fig, path)


def reliability_diagram(results: dict, path=None) -> Figure:
    """Accuracy per confidence bin against the diagonal, from ``results["test/reliability"]``.

    The reliability entry holds per-bin lists ``confidence`` (mean confidence), ``accuracy`` and
    ``count`` over equal-width bins of [0, 1]; empty bins (NaN) are left blank.
    """
    bins = results["test/reliability"]
    confidence, accuracy, count = (_floats(bins[key]) for key in ("confidence", "accuracy", "count"))
    n_bins = len(accuracy)
    edges = np.linspace(0, 1, n_bins + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, 1 / n_bins
    filled = count > 0
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.bar(centres[filled], accuracy[filled], width=width, edgecolor="black", color="tab:blue", label="accuracy")
    gap = confidence[filled] - accuracy[filled]
    ax.bar(
        centres[filled],
        gap,
        bottom=accuracy[filled],
        width=width,
        fill=False,
        edgecolor="tab:red",
        hatch="//",
        label="gap to mean confidence",
    )
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ece = results.get("test/ece")
    title = "reliability diagram" if ece is None or math.isnan(ece) else f"reliability diagram (ECE {100 * ece:.2f}%)"
    ax.set_title(title)
    ax.legend(loc="upper left")
    return _save(fig, path)


def read_val_curves(metrics_csv) -> dict[str, list[tuple[int, float]]]:
    """The per-epoch (epoch, value) of every val accuracy column in a CSVLogger ``metrics.csv`` (last value per epoch)."""
    with open(metrics_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    curves = {}
    for name, column in VAL_CURVES:
        per_epoch = {
            int(float(row["epoch"])): float(row[column]) for row in rows if row.get(column) and row.get("epoch")
        }
        if per_epoch:
            curves[name] = sorted(per_epoch.items())
    return curves


def val_curves(metrics_csv, path=None) -> Figure:
    """Validation accuracy (%) per epoch, overall and by shot group, from a CSVLogger ``metrics.csv``."""
    curves = read_val_curves(metrics_csv)
    if not curves:
        raise ValueError(f"{metrics_csv} has no validation accuracy columns (was the run validated?)")
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for name, points in curves.items():
        epochs, values = zip(*points)
        ax.plot(epochs, 100 * np.asarray(values), marker="o", label=name, color=GROUP_COLOURS.get(name, "black"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("validation accuracy by shot group")
    ax.legend()
    return _save(fig, path)


def _metrics_csv(stage_dir: Path) -> Path | None:
    """The CSVLogger file of the latest version under ``stage_dir``."""
    candidates = sorted(stage_dir.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1]))
    return candidates[-1] if candidates else None


def method_plots() -> list:
    """The figures the methods declare (``MethodPlot``: Difficulty-Net's class difficulties, DRO-LT's ε_c, …)."""
    from longtail.methods import declared

    return declared("plots")


def write_run_plots(stage_dir, results: dict | None = None, thresholds=(100, 20)) -> list[Path]:
    """Write every figure the stage's data supports into ``stage_dir/plots/``; return the written paths.

    ``results`` defaults to ``stage_dir/results.json``; besides the shared figures, each method's declared ones
    (``MethodPlot``) are drawn. Figures whose inputs are missing (no
    confusion matrix, no reliability bins, no validation columns, …) are skipped. Each title names the stage
    (``results["stage"]``, else the folder's name).
    """
    stage_dir = Path(stage_dir)
    if results is None:
        results = json.loads((stage_dir / "results.json").read_text())
    out = stage_dir / "plots"
    written = []

    def has(*keys):
        return all(results.get(key) is not None for key in keys)

    figures = [
        (
            "per_class_accuracy.png",
            has("test/acc_per_class", "train_class_counts"),
            lambda: per_class_accuracy_vs_count(results, thresholds=thresholds),
        ),
        ("shot_groups.png", has("test/acc"), lambda: shot_group_bars(results)),
        ("confusion.png", has("test/confusion", "train_class_counts"), lambda: confusion_matrix(results)),
        ("reliability.png", has("test/reliability"), lambda: reliability_diagram(results)),
        *((plot.file, has(*plot.needs), lambda plot=plot: get_method(plot.draw)(results)) for plot in method_plots()),
    ]
    metrics_csv = _metrics_csv(stage_dir)
    if metrics_csv is not None and read_val_curves(metrics_csv):
        figures.append(("val_curves.png", True, lambda: val_curves(metrics_csv)))
    stage = results.get("stage") or stage_dir.name
    for name, supported, draw in figures:
        if supported:
            _save(titled_with_stage(draw(), stage), out / name)
            written.append(out / name)
    return written


def titled_with_stage(fig: Figure, stage: str) -> Figure:
    """Prefix every titled axes of ``fig`` with the stage name: "train — per-class accuracy vs. training count"."""
    for ax in fig.axes:
        if ax.get_title():
            ax.set_title(f"{stage} — {ax.get_title()}")
    return fig
