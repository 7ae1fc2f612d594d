"""Aggregate runs over seeds: ``python -m longtail.report PATH… [--csv FILE] [--plot FILE] [--metric-keys KEY…]``.

Every PATH is a run folder, a Hydra multirun folder, or any folder above them. A run is a
folder holding ``results.json`` next to Hydra's ``.hydra/`` (or, for runs made without Hydra,
a ``results.json`` whose parent folder holds none, i.e. not a stage folder). Runs are grouped
into experiments by their Hydra overrides minus ``seed=…`` and path-only keys (``hydra.*``,
``paths.*``, ``datamodule.root``, ``init_from``, the progress bar), prefixed by the config's
``name`` (``--group-by name`` groups by ``name`` alone); a stage folder named on the command line is a run of
its own (labelled with its stage). The Markdown table shows, per experiment, the mean ± sample std (ddof=1)
over seeds (no ± for one seed) of top-1, many / medium / few and ECE (in %), and what it cost: parameters,
GFLOPs per test image, training images processed over all stages (every SimCLR view and meta batch), training
wall time, and each stage's epochs. ``n seeds`` counts distinct seeds (two runs of one seed are one seed, and
the table says so). Job folders without results (failed or unfinished) are listed under the table.
A run whose results list ``table_rows`` (a suite's jobs, ``conf/suite``) gives one row per listed stage, labelled
as listed; what every row shares (protocol, selection rule, overrides) is said once above the table, each paper's
protocol difference in a footnote, and the published top-1 in a last column.
A stage whose results say ``"converged": false`` did not train: its row's accuracy and ECE cells read
``not converged (<converged_reason>)``, and one such seed is enough (``1 of 2 seeds: seed 1: …``): the others
are not averaged without it.
``--csv``, ``--json`` write the numbers (runs named relative to the file's folder; an unconverged row's
accuracies empty / null, with its reason), ``--plot`` a grouped bar chart of top-1 / many / medium / few,
``--plot-cost`` top-1 against training images processed and ``--plot-per-class`` each row's per-class test
accuracy from head to tail class; every row keeps one colour and marker in all of them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import yaml

from longtail.config.overrides import job_identity, override_key
from longtail.engine.runs import find_runs
from longtail.engine.sweeps import FAILED
from longtail.reporting.results import finite_or_none
from longtail.reporting.table import COLUMNS, DEFAULT_THRESHOLDS

OPTIMISTIC_KEY = "test_diag/acc_max"
PUBLISHED = "published top-1"
# the cost columns: key -> (label, divisor, digits); the run's totals fall back to a stage's own numbers
COST = {"parameters": ("params (M)", 1e6, 2), "test/gflops": ("GFLOPs / image", 1.0, 3),
        "run/train_images": ("train images (M)", 1e6, 2), "run/train_seconds": ("train time (min)", 60.0, 1)}
FALLBACK = {"run/train_images": "train_images", "run/train_seconds": "train_seconds",
            "test/gflops": "test/gflops_all_experts"}
LABELS = {**{key: label for label, key in COLUMNS}, OPTIMISTIC_KEY: "max test top-1 over epochs (optimistic)",
          **{key: label for key, (label, _, _) in COST.items()}}


def hydra_dir_of(run: Path) -> Path | None:
    """The ``.hydra`` folder of a run folder, or of the run a stage folder belongs to."""
    return next((folder / ".hydra" for folder in (run, run.parent) if (folder / ".hydra").is_dir()), None)


def config_of(run: Path) -> dict:
    """The Hydra config a run (or the run of a stage folder) was made with; empty for a run without Hydra."""
    hydra_dir = hydra_dir_of(run)
    if hydra_dir is None or not (hydra_dir / "config.yaml").is_file():
        return {}
    return yaml.safe_load((hydra_dir / "config.yaml").read_text()) or {}


def seed_of(run: Path) -> int | None:
    return config_of(run).get("seed")


def thresholds_of(run: Path) -> tuple[int, int]:
    """The shot-group thresholds a run's many / medium / few were measured with (``metrics.shot_thresholds``:
    many > first, few < second; CIFAR-10-LT's suite uses 500 / 200), the default for a run without Hydra."""
    found = (config_of(run).get("metrics") or {}).get("shot_thresholds")
    return tuple(found) if found else DEFAULT_THRESHOLDS


def overrides_of(run: Path) -> list[str]:
    """The overrides that tell a run's experiment apart: what it computes, less the seed. Those its results.json
    recorded come first (Hydra rewrites ``.hydra/overrides.yaml`` whenever a sweep comes back to the folder)."""
    recorded = json.loads((run / "results.json").read_text()).get("overrides") if (run / "results.json").is_file() else None
    hydra_dir = hydra_dir_of(run)
    overrides_file = hydra_dir / "overrides.yaml" if hydra_dir is not None else None
    if recorded is not None:
        overrides = recorded
    elif overrides_file and overrides_file.is_file():
        overrides = yaml.safe_load(overrides_file.read_text())
    else:
        overrides = []
    return [o for o in job_identity(overrides) if override_key(o) != "seed"]


def job_number(run: Path) -> int:
    """A sweep job's number (the sweep's order: a suite's methods as it lists them); -1 outside a sweep."""
    hydra_file = run / ".hydra" / "hydra.yaml"
    if not hydra_file.is_file():
        return -1
    number = ((yaml.safe_load(hydra_file.read_text()) or {}).get("hydra", {}).get("job") or {}).get("num")
    return -1 if number is None else int(number)


def name_of(run: Path) -> str:
    """A run's config ``name``; a stage folder's is its run's with ``[stage]``, a run without Hydra's its path."""
    hydra_dir = hydra_dir_of(run)
    if hydra_dir is None:
        return str(run)
    if hydra_dir.parent != run:
        return f"{experiment_of(hydra_dir.parent)} [{run.name}]"
    config = yaml.safe_load((hydra_dir / "config.yaml").read_text()) if (hydra_dir / "config.yaml").is_file() else {}
    return str((config or {}).get("name", run.name))


def experiment_of(run: Path, group_by: str = "overrides") -> str:
    """The experiment label of a run: ``name`` plus its overrides other than the seed and paths (and the stage,
    for a stage folder)."""
    own = group_by != "name" and hydra_dir_of(run) == run / ".hydra"
    return " ".join([name_of(run), *(overrides_of(run) if own else [])])


def routed(results: dict) -> dict:
    """A router stage's results seen through the router (``view: router``): its routed accuracies and GFLOPs."""
    view = {key: value for key, value in results.items() if not key.startswith(("test/acc", "test/ece", "test/gflops"))}
    for key, value in results.items():
        if key.startswith("test/acc_router"):
            view[key.replace("test/acc_router", "test/acc")] = value
    view["test/gflops"] = results.get("test/gflops_router")
    return view


def table_entries(runs, group_by: str = "overrides") -> list[dict]:
    """One entry per table row a run gives: ``name`` and ``overrides`` (which label it), ``results``, ``seed``,
    ``published`` top-1 (%) and ``note`` (how the paper's protocol differed). A run whose results list
    ``table_rows`` (a suite's jobs: CE, cRT, LWS and tau-norm from one CE stage) gives a row per listed stage, named
    as listed (``experiment=`` then goes without saying); any other run gives one row, its last stage."""
    entries = []
    for run in sorted(runs, key=lambda run: (job_number(run), str(run))):
        results = json.loads((run / "results.json").read_text())
        own = group_by != "name" and hydra_dir_of(run) == run / ".hydra"
        base = {"run": str(run), "seed": seed_of(run), "note": results.get("paper_protocol_note"), "published": None,
                "protocol": results.get("shared_protocol"), "thresholds": thresholds_of(run),
                "overrides": overrides_of(run) if own else []}
        rows = results.get("table_rows") if (run / ".hydra").is_dir() else None
        if not rows:
            entries.append({**base, "name": name_of(run), "results": results})
            continue
        base["overrides"] = [o for o in base["overrides"] if override_key(o) != "experiment"]
        for row in rows:
            stage = run / row["stage"] / "results.json"
            if stage.is_file():
                numbers = json.loads(stage.read_text())
                entries.append({**base, "name": row["label"], "published": row.get("published"),
                                "results": routed(numbers) if row.get("view") == "router" else numbers})
    return entries


def shared_overrides(entries) -> list[str]:
    """The overrides of every entry (a suite, its scale), said once above the table; none for a single experiment."""
    if len({(entry["name"], tuple(entry["overrides"])) for entry in entries}) < 2:
        return []
    common = set.intersection(*(set(entry["overrides"]) for entry in entries))
    return [o for o in entries[0]["overrides"] if o in common]


def _is_fraction(key: str) -> bool:
    """Accuracies and ECE are fractions shown in %; other metrics (GFLOPs, experts per sample) as they are."""
    leaf = key.rsplit("/", 1)[-1]
    return leaf.startswith("acc") or leaf == "ece"


def _value(results: dict, key: str) -> float:
    value = results.get(key, results.get(FALLBACK.get(key, key)))
    return math.nan if value is None or isinstance(value, (list, dict, str)) else float(value)


def _stats(values: list[float]) -> tuple[float, float]:
    finite = np.asarray([v for v in values if not math.isnan(v)])
    if finite.size == 0:
        return math.nan, math.nan
    std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return float(finite.mean()), std


def not_converged(members, distinct_seeds: int) -> str | None:
    """Why a row has no accuracy, or None when every run of it trained: the ``converged_reason`` of each run whose
    results say ``"converged": false`` (a stage that did not train; results without the key predate the check and
    count as trained). One such seed sinks the row: averaging it in, or dropping it silently, would both print an
    accuracy the runs do not support. Several runs: ``"1 of 2 seeds: seed 1: <reason>"``."""
    failed = [member for member in members if member["results"].get("converged") is False]
    if not failed:
        return None
    reasons = [member["results"].get("converged_reason") or "no reason recorded" for member in failed]
    if len(members) == 1:
        return reasons[0]
    listed = "; ".join(reason if member["seed"] is None else f"seed {member['seed']}: {reason}"
                       for member, reason in zip(failed, reasons))
    unit = "seeds" if distinct_seeds == len(members) else "runs"
    return f"{len(failed)} of {len(members)} {unit}: {listed}"


def per_class_mean(results) -> list[float] | None:
    """The test accuracy of each class averaged over seeds (a class never tested is NaN), or None when a run
    lacks ``test/acc_per_class`` or the runs disagree on the number of classes."""
    lists = [r.get("test/acc_per_class") for r in results]
    if not all(lists) or len({len(values) for values in lists}) != 1:
        return None
    values = np.array([[math.nan if v is None else v for v in values] for values in lists], dtype=float)
    counts = np.sum(~np.isnan(values), axis=0)
    sums = np.nansum(values, axis=0)
    return [float(s / n) if n else math.nan for s, n in zip(sums, counts)]


def aggregate(runs, metric_keys, group_by: str = "overrides") -> list[dict]:
    """One row per experiment (or per table row of a suite's runs): ``experiment`` (its label), ``n_seeds``,
    ``runs``, ``published``, ``note``, ``shared`` (the overrides said above the table), per-key ``mean`` /
    ``std`` (results units), ``converged`` and ``converged_reason`` (see :func:`not_converged`; an unconverged
    row's accuracies and ECE are NaN), and for the per-class plot ``acc_per_class`` (mean over seeds),
    ``train_class_counts`` and ``shot_thresholds``."""
    entries = table_entries(runs, group_by)
    shared = shared_overrides(entries)
    groups: dict[str, list[dict]] = {}
    for entry in entries:
        label = " ".join([entry["name"], *(o for o in entry["overrides"] if o not in shared)])
        groups.setdefault(label, []).append(entry)
    rows = []
    for experiment, members in groups.items():
        results = [member["results"] for member in members]
        stats = {key: _stats([_value(r, key) for r in results]) for key in metric_keys}
        seeds = [member["seed"] for member in members]
        distinct = len(set(seeds)) if None not in seeds else len(members)
        reason = not_converged(members, distinct)
        if reason is not None:
            stats.update({key: (math.nan, math.nan) for key in stats if _is_fraction(key)})
        rows.append(
            {
                "experiment": experiment,
                "n_seeds": distinct,
                "n_runs": len(members),
                "seeds": sorted({s for s in seeds if s is not None}),
                "runs": [member["run"] for member in members],
                "epochs": results[0].get("run/epochs") or {results[0].get("stage", "train"): results[0].get("epochs")},
                "published": members[0]["published"],
                "note": members[0]["note"],
                "protocol": members[0]["protocol"] or results[0].get("protocol"),
                "selection": results[0].get("selection"),
                "shared": shared,
                "mean": {key: mean for key, (mean, _) in stats.items()},
                "std": {key: std for key, (_, std) in stats.items()},
                "converged": reason is None,
                "converged_reason": reason,
                "acc_per_class": per_class_mean(results) if reason is None else None,
                "train_class_counts": results[0].get("train_class_counts"),
                "shot_thresholds": list(members[0]["thresholds"]),
            }
        )
    return rows


def unfinished_jobs(paths) -> list[str]:
    """Run folders under ``paths`` (Hydra's ``.hydra`` inside) without a ``results.json``: failed (with the first
    line of their ``FAILED.txt``) or not finished."""
    found = []
    for path in map(Path, paths):
        for hydra_dir in sorted(path.rglob(".hydra")):
            job = hydra_dir.parent
            if (job / "results.json").is_file():
                continue
            failed = job / FAILED
            why = f"failed: {failed.read_text().splitlines()[0]}" if failed.is_file() else "not finished"
            found.append(f"{job}: {why}")
    return found


def _scale(key: str) -> float:
    return 100.0 if _is_fraction(key) else 1.0 / COST[key][1] if key in COST else 1.0


def _cell(mean: float, std: float, key: str, n: int = 2) -> str:
    """``mean ± std`` in the table's units; the mean alone for one seed."""
    if math.isnan(mean):
        return "n/a"
    digits = 2 if _is_fraction(key) else COST[key][2] if key in COST else 3
    value = f"{_scale(key) * mean:.{digits}f}"
    return value if n <= 1 else f"{value} ± {_scale(key) * std:.{digits}f}"


def _metric_cell(row: dict, key: str) -> str:
    """A metric's cell; an accuracy or ECE of a row that did not train says so, with why, instead of a number."""
    if _is_fraction(key) and not row.get("converged", True):
        return f"not converged ({row['converged_reason']})".replace("|", "\\|")
    return _cell(row["mean"][key], row["std"][key], key, row["n_seeds"])


def _seeds_cell(row: dict) -> str:
    if row.get("n_runs", row["n_seeds"]) == row["n_seeds"]:
        return str(row["n_seeds"])
    return f"{row['n_seeds']} ({row['n_runs']} runs of seeds {', '.join(map(str, row['seeds']))})"


def _epochs_cell(row: dict) -> str:
    return " · ".join(f"{stage} {epochs}" for stage, epochs in row.get("epochs", {}).items())


def format_report(rows, metric_keys, not_run=()) -> str:
    """The Markdown table: experiment | n seeds | metric (mean ± std) … | epochs [| published top-1], with what
    every row shares above it (protocol, selection rule, overrides) and the footnotes below it; a suite's row that
    was not run here (``not_run``) says what it needs and its command instead of a number."""
    header, data = table_rows(rows, metric_keys)
    above = [f"{label}: {value}" for label, value in shared_settings(rows).items()]
    lines = ([" · ".join(above), ""] if above else []) + [
        "| " + " | ".join(header) + " |", "|---|---:|" + "|".join("---:" for _ in header[2:]) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in data]
    lines += ["| " + " | ".join([entry["label"], "0", f"needs {entry['needs']}: `{entry['command']}`",
                                 *("—" for _ in header[3:])]) + " |" for entry in not_run]
    if OPTIMISTIC_KEY in metric_keys:
        lines.append(f"\n*{LABELS[OPTIMISTIC_KEY]}*: the best test accuracy seen during training, i.e. chosen on the "
                     "test set; the other columns come from the checkpoint selected on validation.")
    notes = footnotes(rows)
    if notes:
        lines += [""] + [f"{mark} {note}" for note, mark in notes.items()]
    if any(row.get("published") is not None for row in rows):
        lines.append(f"\n*{PUBLISHED}*: as each paper (or the reference it cites) reports it, on its own protocol and "
                     "full schedule; not comparable to the decimal with the rows above it.")
    return "\n".join(lines)


def not_run_entries(runs) -> list[dict]:
    """The rows a suite declares but does not run here (``shared_protocol.not_run``: label, needs, command), once."""
    entries = {}
    for run in runs:
        for entry in json.loads((run / "results.json").read_text()).get("not_run") or ():
            entries.setdefault(entry["label"], entry)
    return list(entries.values())


def shared_settings(rows) -> dict[str, str]:
    """What every row has in common and the table states once: the protocol, the selection rule, the overrides."""
    found = {}
    for label, key in (("protocol", "protocol"), ("selection", "selection")):
        values = {row.get(key) for row in rows}
        if len(values) == 1 and None not in values:
            found[label] = str(values.pop())
    if rows and rows[0].get("shared"):
        found["every row"] = " ".join(rows[0]["shared"])
    return found


def footnotes(rows) -> dict[str, str]:
    """Each distinct paper-protocol note and its mark (¹, ², …)."""
    marks = "¹²³⁴⁵⁶⁷⁸⁹"
    notes: dict[str, str] = {}
    for row in rows:
        if row.get("note") and row["note"] not in notes:
            notes[row["note"]] = marks[len(notes)] if len(notes) < len(marks) else f"[{len(notes) + 1}]"
    return notes


def runs_relative_to(rows, path) -> list[dict]:
    """The rows with their run folders named relative to the folder of the file written at ``path`` (POSIX
    separators), so the table's folder read from a clone elsewhere still finds its runs; a run on another drive
    keeps its absolute path."""
    folder = Path(path).resolve().parent

    def relative(run: str) -> str:
        try:
            return Path(os.path.relpath(Path(run).resolve(), folder)).as_posix()
        except ValueError:
            return run

    return [{**row, "runs": [relative(run) for run in row["runs"]]} for row in rows]


def write_csv(rows, metric_keys, path) -> None:
    """The table's numbers (in the table's units: % for accuracies and ECE), a mean and a std column per metric;
    a row that did not train leaves its accuracy and ECE cells empty and says why in ``converged_reason``. The
    ``runs`` column lists the row's run folders (separated by ";") relative to the CSV's folder."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["experiment", "n_seeds"]
        for key in metric_keys:
            header += [f"{LABELS.get(key, key)}_mean", f"{LABELS.get(key, key)}_std"]
        writer.writerow([*header, "epochs", PUBLISHED, "converged", "converged_reason", "runs"])
        for row in runs_relative_to(rows, path):
            values = []
            for key in metric_keys:
                hidden = _is_fraction(key) and not row.get("converged", True)
                values += ["", ""] if hidden else [_scale(key) * row["mean"][key], _scale(key) * row["std"][key]]
            published = "" if row.get("published") is None else row["published"]
            writer.writerow([row["experiment"], row["n_seeds"], *values, _epochs_cell(row), published,
                             row.get("converged", True), row.get("converged_reason") or "", ";".join(row["runs"])])


def write_json(rows, metric_keys, path) -> None:
    """The rows as strict JSON (results units: fractions for accuracies; a number that is not one, such as an
    empty group's or an unconverged row's accuracy, is ``null``), with the metric keys and their labels; runs
    are named relative to the JSON file's folder."""
    labels = {key: LABELS.get(key, key) for key in metric_keys}
    table = finite_or_none({"metrics": labels, "rows": runs_relative_to(rows, path)})
    Path(path).write_text(json.dumps(table, indent=1, default=str, allow_nan=False))


def _label(row: dict) -> str:
    return f"{row['experiment']} (n={row['n_seeds']})"


def _say_left_out(fig, rows, drawn) -> None:
    """Name under the figure the rows it leaves out and why, so that a missing method is never a silent gap."""
    kept = {id(row) for _, row in drawn}
    left_out = [f"{row['experiment']} ({'not converged' if not row.get('converged', True) else 'no per-class data'})"
                for row in rows if id(row) not in kept]
    if left_out:
        fig.text(0.0, -0.02, "left out: " + ", ".join(left_out), fontsize=7, va="top", wrap=True)


def plot_cost(rows, path, accuracy: str = "test/acc", cost: str = "run/train_images"):
    """Top-1 (± std over seeds) against training images processed, one point per experiment, named next to it;
    each row keeps its table index's colour and marker (:func:`longtail.reporting.plots.method_style`). Rows
    that did not train have no top-1 and are named under the plot instead. Saved as PNG."""
    from matplotlib.figure import Figure

    from longtail.reporting.plots import method_style

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    drawn = [(i, row) for i, row in enumerate(rows) if row.get("converged", True)]
    points = []
    for i, row in drawn:
        x, y, err = row["mean"].get(cost, math.nan) / 1e6, 100 * row["mean"][accuracy], 100 * row["std"][accuracy]
        style = method_style(i)
        ax.errorbar([x], [y], yerr=[0 if math.isnan(err) else err], fmt=style["marker"], color=style["color"],
                    capsize=3, label=_label(row))
        points.append((x, y, row["experiment"]))
    _name_points(ax, points)
    ax.set_xlabel("training images processed, all stages (M)")
    ax.set_ylabel("test top-1 (%, mean ± std over seeds)")
    ax.set_title("accuracy against training cost")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    _say_left_out(fig, rows, drawn)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _name_points(ax, points, fontsize: float = 7) -> None:
    """Write each point's name beside it (right of it; left of it in the right 30 % of the axes, next to the
    legend); a name that would cover another (points close together on screen, as methods of one schedule are
    on a cost axis) moves up a line at a time, with a thin line back to its point."""
    ax.autoscale_view()
    to_points = 72 / ax.figure.dpi
    line, placed = 1.3 * fontsize, []
    for x, y, name in sorted((p for p in points if np.isfinite(p[:2]).all()), key=lambda p: p[1]):
        px, py = ax.transData.transform((x, y)) * to_points
        width, ty = 0.6 * fontsize * len(name), py
        while clash := [oy for ox, oy, ow in placed if abs(ox - px) < max(ow, width) and abs(oy - ty) < line - 0.01]:
            ty = max(clash) + line
        placed.append((px, ty, width))
        right = ax.transAxes.inverted().transform(ax.transData.transform((x, y)))[0] < 0.7
        ax.annotate(name, (x, y), xytext=(5 if right else -5, ty - py), textcoords="offset points",
                    ha="left" if right else "right", va="center", fontsize=fontsize,
                    arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5} if ty != py else None)


def plot_report(rows, metric_keys, path):
    """Grouped bars of top-1 and the many / medium / few accuracies with ±std error bars, one colour (and, past
    twenty rows, hatch) per experiment; rows that did not train are named under the chart instead. Saved as PNG."""
    from matplotlib.figure import Figure

    from longtail.reporting.plots import method_style

    keys = [key for key in metric_keys if _is_fraction(key) and key != "test/ece"] or list(metric_keys)
    drawn = [(i, row) for i, row in enumerate(rows) if row.get("converged", True)]
    width = 0.8 / max(len(drawn), 1)
    fig = Figure(figsize=(max(6, 1.5 * len(keys) + 0.4 * len(drawn)), 4.5))
    ax = fig.add_subplot()
    positions = np.arange(len(keys))
    for slot, (i, row) in enumerate(drawn):
        means = np.array([_scale(k) * row["mean"][k] for k in keys])
        stds = np.array([_scale(k) * row["std"][k] for k in keys])
        style = method_style(i)
        ax.bar(positions + (slot - (len(drawn) - 1) / 2) * width, np.nan_to_num(means), width,
               yerr=np.nan_to_num(stds), capsize=3, color=style["color"], hatch=style["hatch"], label=_label(row))
    ax.set_xticks(positions, [LABELS.get(key, key) for key in keys])
    ax.set_ylabel("% (mean ± std over seeds)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    _say_left_out(fig, rows, drawn)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def plot_per_class(rows, path):
    """Test accuracy of every class (mean over seeds) from head to tail: x is the class's rank by training count
    (``train_class_counts``, most first; ticked with the counts up to 30 classes), one line per row in its table
    index's colour and marker, and dashed vertical lines where the shot groups change (many > and few < the
    ``metrics.shot_thresholds`` of the first drawn row: one table, one dataset). Rows that did not train are left
    out (an unconverged model's per-class numbers are not accuracies to compare), as are rows without
    per-class accuracies (a router view); both are named under the plot. Saved as PNG."""
    from matplotlib.figure import Figure

    from longtail.reporting.plots import MAX_LABELLED_CLASSES, method_style

    drawn = [(i, row) for i, row in enumerate(rows)
             if row.get("converged", True) and row.get("acc_per_class") and row.get("train_class_counts")]
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    for i, row in drawn:
        order = np.argsort(-np.asarray(row["train_class_counts"]), kind="stable")
        accuracy = 100 * np.array([math.nan if v is None else v for v in row["acc_per_class"]], dtype=float)
        ax.plot(np.arange(len(order)), accuracy[order], linewidth=1.2, markersize=5, label=_label(row),
                **{key: value for key, value in method_style(i).items() if key != "hatch"})
    if drawn:
        _mark_shot_groups(ax, drawn[0][1]["train_class_counts"], drawn[0][1]["shot_thresholds"])
        counts = sorted(drawn[0][1]["train_class_counts"], reverse=True)
        if len(counts) <= MAX_LABELLED_CLASSES:
            ax.set_xticks(range(len(counts)), [str(n) for n in counts], rotation=90, fontsize=7)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    ax.set_ylim(-5, 105)
    ax.set_xlabel("class, by training images (head → tail)")
    ax.set_ylabel("test accuracy (%, mean over seeds)")
    ax.set_title("per-class test accuracy, head to tail")
    _say_left_out(fig, rows, drawn)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _mark_shot_groups(ax, counts, thresholds) -> None:
    """Dashed vertical lines between the many and medium classes and between the medium and few ones (classes
    ranked by ``counts``, most first), each labelled with its rule; none where a group is empty at an end."""
    many_gt, few_lt = thresholds
    n_many, n_few = sum(n > many_gt for n in counts), sum(n < few_lt for n in counts)
    for edge, label in ((n_many, f"many > {many_gt}"), (len(counts) - n_few, f"few < {few_lt}")):
        if 0 < edge < len(counts):
            ax.axvline(edge - 0.5, color="grey", linestyle="--", linewidth=1)
            ax.annotate(label, (edge - 0.5, 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top",
                        ha="right", fontsize=8)


def main(argv=None) -> list[dict]:
    """Command line entry point; prints the table and returns the rows."""
    parser = argparse.ArgumentParser(prog="python -m longtail.report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run folders, multirun folders or folders above them")
    parser.add_argument("--csv", help="also write the numbers to this CSV file")
    parser.add_argument("--plot", help="also write a bar chart (PNG) of top-1 / many / medium / few, ±std")
    parser.add_argument("--plot-cost", help="also write top-1 against training images processed (PNG)")
    parser.add_argument("--plot-per-class", help="also write each row's per-class test accuracy, head to tail (PNG)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--wandb", metavar="PROJECT",
                        help="also send the table and the plots to W&B as a run of PROJECT (offline unless logged in)")
    parser.add_argument("--metric-keys", nargs="+", default=None,
                        help="results.json keys (default: the test table, plus the optimistic max-over-epochs column "
                             "when runs logged it with logging.test_every_epoch=true)")
    parser.add_argument("--group-by", choices=("overrides", "name"), default="overrides")
    args = parser.parse_args(argv)

    runs = find_runs(args.paths)
    if not runs:
        parser.error(f"no results.json found under {' '.join(args.paths)}")
    if args.metric_keys is None:
        args.metric_keys = [key for _, key in COLUMNS] + list(COST)
        if any(OPTIMISTIC_KEY in json.loads((run / "results.json").read_text()) for run in runs):
            args.metric_keys.append(OPTIMISTIC_KEY)
    rows = aggregate(runs, args.metric_keys, args.group_by)
    print(format_report(rows, args.metric_keys, not_run_entries(runs)))
    missing = unfinished_jobs(args.paths)
    if missing:
        print("\nwithout results (not in the table):\n" + "\n".join(f"- {line}" for line in missing))
    if args.csv:
        write_csv(rows, args.metric_keys, args.csv)
    if args.json:
        write_json(rows, args.metric_keys, args.json)
    if args.plot:
        plot_report(rows, args.metric_keys, args.plot)
    if args.plot_cost:
        plot_cost(rows, args.plot_cost)
    if args.plot_per_class:
        plot_per_class(rows, args.plot_per_class)
    if args.wandb:
        from longtail.reporting.loggers import publish_report

        header, data = table_rows(rows, args.metric_keys)
        images = [Path(p) for p in (args.plot, args.plot_cost, args.plot_per_class) if p]
        print(f"W&B run: {publish_report(args.wandb, str(Path.cwd()), header, data, images)}")
    return rows


def table_rows(rows, metric_keys) -> tuple[list[str], list[list]]:
    """The Markdown table's header and cells, as W&B (or any table widget) takes them; a row's label carries the
    mark of its footnote, and a published column follows when a row has a published number."""
    notes = footnotes(rows)
    published = any(row.get("published") is not None for row in rows)
    header = ["experiment", "n seeds", *(LABELS.get(key, key) for key in metric_keys), "epochs",
              *([PUBLISHED] if published else [])]
    data = [[row["experiment"] + (notes[row["note"]] if row.get("note") else ""), _seeds_cell(row),
             *(_metric_cell(row, key) for key in metric_keys),
             _epochs_cell(row), *([_published_cell(row)] if published else [])] for row in rows]
    return header, data


def _published_cell(row: dict) -> str:
    return "—" if row.get("published") is None else f"{row['published']:.2f}"


if __name__ == "__main__":
    main()
