"""Aggregate runs over seeds: ``python -m longtail.report PATH… [--csv FILE] [--plot FILE] [--metric-keys KEY…]``.

Every PATH is a run folder, a Hydra multirun folder, or any folder above them. A run is a
folder holding ``results.json`` next to Hydra's ``.hydra/`` (or, for runs made without Hydra,
a ``results.json`` whose parent folder holds none, i.e. not a stage folder). Runs are grouped
into experiments by their Hydra overrides minus ``seed=…`` and path-only keys (``hydra.*``,
``paths.*``, ``datamodule.root``, ``init_from``, the progress bar), prefixed by the config's
``name`` (``--group-by name`` groups by ``name`` alone). The Markdown table shows, per
experiment, the mean ± sample std (ddof=1) over seeds, accuracies and ECE in %.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import yaml

from longtail.overrides import override_key
from longtail.runs import find_runs
from longtail.table import COLUMNS

IGNORED_PREFIXES = ("hydra.", "paths.")
IGNORED_KEYS = ("seed", "datamodule.root", "init_from", "trainer.enable_progress_bar")
OPTIMISTIC_KEY = "test_diag/acc_max"
LABELS = {**{key: label for label, key in COLUMNS}, OPTIMISTIC_KEY: "max test top-1 over epochs (optimistic)"}


def experiment_of(run: Path, group_by: str = "overrides") -> str:
    """The experiment label of a run: ``name`` plus its overrides other than the seed and paths."""
    hydra_dir = run / ".hydra"
    if not hydra_dir.is_dir():
        return str(run)
    config = yaml.safe_load((hydra_dir / "config.yaml").read_text()) if (hydra_dir / "config.yaml").is_file() else {}
    name = str((config or {}).get("name", run.name))
    if group_by == "name":
        return name
    overrides_file = hydra_dir / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    kept = sorted(
        o
        for o in overrides or []
        if override_key(o) not in IGNORED_KEYS and not override_key(o).startswith(IGNORED_PREFIXES)
    )
    return " ".join([name, *kept])


def _is_fraction(key: str) -> bool:
    """Accuracies and ECE are fractions shown in %; other metrics (GFLOPs, experts per sample) as they are."""
    leaf = key.rsplit("/", 1)[-1]
    return leaf.startswith("acc") or leaf == "ece"


def _value(results: dict, key: str) -> float:
    value = results.get(key)
    return math.nan if value is None or isinstance(value, (list, dict, str)) else float(value)


def _stats(values: list[float]) -> tuple[float, float]:
    finite = np.asarray([v for v in values if not math.isnan(v)])
    if finite.size == 0:
        return math.nan, math.nan
    std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return float(finite.mean()), std


def aggregate(runs, metric_keys, group_by: str = "overrides") -> list[dict]:
    """One row per experiment: ``experiment``, ``n_seeds``, ``runs`` and per-key ``mean`` / ``std`` (results units)."""
    groups: dict[str, list[Path]] = {}
    for run in runs:
        groups.setdefault(experiment_of(run, group_by), []).append(run)
    rows = []
    for experiment, members in groups.items():
        results = [json.loads((run / "results.json").read_text()) for run in members]
        stats = {key: _stats([_value(r, key) for r in results]) for key in metric_keys}
        rows.append(
            {
                "experiment": experiment,
                "n_seeds": len(members),
                "runs": [str(run) for run in members],
                "mean": {key: mean for key, (mean, _) in stats.items()},
                "std": {key: std for key, (_, std) in stats.items()},
            }
        )
    return rows


def _scale(key: str) -> float:
    return 100.0 if _is_fraction(key) else 1.0


def _cell(mean: float, std: float, key: str) -> str:
    if math.isnan(mean):
        return "n/a"
    digits = 2 if _is_fraction(key) else 3
    return f"{_scale(key) * mean:.{digits}f} ± {_scale(key) * std:.{digits}f}"


def format_report(rows, metric_keys) -> str:
    """The Markdown table: experiment | n seeds | metric (mean ± std) …"""
    labels = [LABELS.get(key, key) for key in metric_keys]
    lines = [
        "| experiment | n seeds | " + " | ".join(labels) + " |",
        "|---|---:|" + "|".join("---:" for _ in labels) + "|",
    ]
    for row in rows:
        cells = [_cell(row["mean"][key], row["std"][key], key) for key in metric_keys]
        lines.append(f"| {row['experiment']} | {row['n_seeds']} | " + " | ".join(cells) + " |")
    if OPTIMISTIC_KEY in metric_keys:
        lines.append(f"\n*{LABELS[OPTIMISTIC_KEY]}*: the best test accuracy seen during training, i.e. chosen on the "
                     "test set; the other columns come from the checkpoint selected on validation.")
    return "\n".join(lines)


def write_csv(rows, metric_keys, path) -> None:
    """The table's numbers (in the table's units: % for accuracies and ECE), a mean and a std column per metric."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["experiment", "n_seeds"]
        for key in metric_keys:
            header += [f"{LABELS.get(key, key)}_mean", f"{LABELS.get(key, key)}_std"]
        writer.writerow(header)
        for row in rows:
            values = []
            for key in metric_keys:
                values += [_scale(key) * row["mean"][key], _scale(key) * row["std"][key]]
            writer.writerow([row["experiment"], row["n_seeds"], *values])


def plot_report(rows, metric_keys, path):
    """Grouped bars (one colour per experiment) of the %-valued metrics with ±std error bars; saved as PNG."""
    from matplotlib.figure import Figure

    keys = [key for key in metric_keys if _is_fraction(key)] or list(metric_keys)
    width = 0.8 / max(len(rows), 1)
    fig = Figure(figsize=(max(6, 1.5 * len(keys) + 0.4 * len(rows)), 4.5))
    ax = fig.add_subplot()
    positions = np.arange(len(keys))
    for i, row in enumerate(rows):
        means = np.array([_scale(k) * row["mean"][k] for k in keys])
        stds = np.array([_scale(k) * row["std"][k] for k in keys])
        ax.bar(
            positions + (i - (len(rows) - 1) / 2) * width,
            np.nan_to_num(means),
            width,
            yerr=np.nan_to_num(stds),
            capsize=3,
            label=f"{row['experiment']} (n={row['n_seeds']})",
        )
    ax.set_xticks(positions, [LABELS.get(key, key) for key in keys])
    ax.set_ylabel("% (mean ± std over seeds)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def main(argv=None) -> list[dict]:
    """Command line entry point; prints the table and returns the rows."""
    parser = argparse.ArgumentParser(prog="python -m longtail.report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run folders, multirun folders or folders above them")
    parser.add_argument("--csv", help="also write the numbers to this CSV file")
    parser.add_argument("--plot", help="also write a bar chart (PNG) with ±std error bars")
    parser.add_argument("--metric-keys", nargs="+", default=None,
                        help="results.json keys (default: the test table, plus the optimistic max-over-epochs column "
                             "when runs logged it with logging.test_every_epoch=true)")
    parser.add_argument("--group-by", choices=("overrides", "name"), default="overrides")
    args = parser.parse_args(argv)

    runs = find_runs(args.paths)
    if not runs:
        parser.error(f"no results.json found under {' '.join(args.paths)}")
    if args.metric_keys is None:
        args.metric_keys = [key for _, key in COLUMNS]
        if any(OPTIMISTIC_KEY in json.loads((run / "results.json").read_text()) for run in runs):
            args.metric_keys.append(OPTIMISTIC_KEY)
    rows = aggregate(runs, args.metric_keys, args.group_by)
    print(format_report(rows, args.metric_keys))
    if args.csv:
        write_csv(rows, args.metric_keys, args.csv)
    if args.plot:
        plot_report(rows, args.metric_keys, args.plot)
    return rows


if __name__ == "__main__":
    main()
