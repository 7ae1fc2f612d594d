"""What `python -m longtail.report` makes of its rows: a run that did not train is never an accuracy, the written
table names its runs relative to itself, and the comparison figures keep every method apart."""

from __future__ import annotations

import csv
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.container import BarContainer
from PIL import Image

from longtail import report
from longtail.reporting.plots import method_style
from longtail.reporting.table import format_table

LOSS = "final training loss 7.70 above ln 10 = 2.30"
CHANCE = "held-out top-1 10.0 % at or below chance 10.0 %"
COUNTS = [10, 500, 50, 1000]  # by class index; head to tail: classes 3, 1, 2, 0


def results(acc: float, **extra) -> dict:
    return {"test/acc": acc, "test/acc_many": acc + 0.1, "test/acc_medium": acc, "test/acc_few": acc - 0.1,
            "test/ece": 0.05, "test/acc_per_class": [0.1, 0.6, 0.4, 0.9], "train_class_counts": COUNTS,
            "run/train_images": 2e6, "run/train_seconds": 600, **extra}


def write_run(folder: Path, name: str, seed: int, numbers: dict) -> Path:
    """A Hydra run folder of experiment ``name`` (its own overrides) with ``numbers`` as its results."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
    config = {"name": name, "seed": seed, "metrics": {"shot_thresholds": [100, 20]}}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "results.json").write_text(json.dumps(numbers))
    return folder


def line_of(printed: str, experiment: str) -> str:
    return next(line for line in printed.splitlines() if line.startswith(f"| {experiment} |"))


@pytest.fixture
def jobs(tmp_path) -> Path:
    """Four experiments: one that did not train, one whose second seed did not, one trained, one from before
    results said whether they trained."""
    root = tmp_path / "jobs"
    write_run(root / "diverged" / "seed0", "diverged", 0, results(0.1, converged=False, converged_reason=LOSS))
    write_run(root / "half" / "seed0", "half", 0, results(0.5, converged=True))
    write_run(root / "half" / "seed1", "half", 1, results(0.1, converged=False, converged_reason=CHANCE))
    write_run(root / "trained" / "seed0", "trained", 0, results(0.6, converged=True, converged_reason=None))
    write_run(root / "trained" / "seed1", "trained", 1, results(0.8, converged=True, converged_reason=None))
    write_run(root / "older" / "seed0", "older", 0, results(0.7))
    return root


def test_a_run_that_did_not_train_prints_why_instead_of_an_accuracy(jobs, capsys):
    rows = {row["experiment"]: row for row in report.main([str(jobs)])}
    printed = capsys.readouterr().out
    cells = line_of(printed, "diverged").split(" | ")
    assert cells[2:7] == [f"not converged ({LOSS})"] * 5  # top-1, many, medium, few, ECE
    assert "10.00" not in line_of(printed, "diverged") and "2.00" in line_of(printed, "diverged")  # costs stay
    assert not rows["diverged"]["converged"] and np.isnan(rows["diverged"]["mean"]["test/acc"])
    assert "| trained | 2 | 70.00 ± 14.14 |" in printed and "| older | 1 | 70.00 |" in printed
    assert rows["trained"]["converged"] and rows["older"]["converged"]


def test_one_seed_that_did_not_train_sinks_its_row(jobs, capsys):
    rows = {row["experiment"]: row for row in report.main([str(jobs)])}
    line = line_of(capsys.readouterr().out, "half")
    assert line.startswith(f"| half | 2 | not converged (1 of 2 seeds: seed 1: {CHANCE}) |")
    assert "50.00" not in line and "30.00" not in line  # neither the converged seed alone nor the average
    assert rows["half"]["converged_reason"] == f"1 of 2 seeds: seed 1: {CHANCE}"
    assert rows["half"]["acc_per_class"] is None


def test_the_written_table_says_not_converged_with_empty_numbers(jobs, tmp_path):
    out = tmp_path / "table"
    out.mkdir()
    report.main([str(jobs), "--csv", str(out / "t.csv"), "--json", str(out / "t.json")])
    table = json.loads((out / "t.json").read_text())  # strict JSON: no NaN
    by_name = {row["experiment"]: row for row in table["rows"]}
    diverged = by_name["diverged"]
    assert (diverged["converged"], diverged["converged_reason"]) == (False, LOSS)
    assert all(diverged[part][key] is None for part in ("mean", "std")
               for key in ("test/acc", "test/acc_many", "test/acc_medium", "test/acc_few", "test/ece"))
    assert diverged["mean"]["run/train_images"] == 2e6
    assert by_name["trained"]["mean"]["test/acc"] == pytest.approx(0.7)
    with open(out / "t.csv", newline="") as handle:
        lines = {line["experiment"]: line for line in csv.DictReader(handle)}
    assert (lines["diverged"]["top-1_mean"], lines["diverged"]["ECE_std"]) == ("", "")
    assert lines["diverged"]["converged_reason"] == LOSS and lines["diverged"]["converged"] == "False"
    assert lines["half"]["converged_reason"] == f"1 of 2 seeds: seed 1: {CHANCE}"
    assert float(lines["trained"]["top-1_mean"]) == pytest.approx(70.0) and lines["trained"]["converged_reason"] == ""


def test_the_written_table_names_its_runs_relative_to_its_own_folder(jobs, tmp_path):
    out = tmp_path / "results" / "table"
    out.mkdir(parents=True)
    report.main([str(jobs), "--csv", str(out / "t.csv"), "--json", str(out / "t.json")])
    rows = {row["experiment"]: row for row in json.loads((out / "t.json").read_text())["rows"]}
    assert rows["trained"]["runs"] == ["../../jobs/trained/seed0", "../../jobs/trained/seed1"]
    assert str(tmp_path) not in (out / "t.json").read_text() + (out / "t.csv").read_text()
    with open(out / "t.csv", newline="") as handle:
        lines = {line["experiment"]: line for line in csv.DictReader(handle)}
    assert lines["trained"]["runs"].split(";") == rows["trained"]["runs"]
    assert (out / rows["half"]["runs"][1] / "results.json").resolve() == (jobs / "half" / "seed1" / "results.json")


def test_the_per_class_plot_goes_head_to_tail_and_leaves_out_what_did_not_train(jobs, tmp_path):
    path = tmp_path / "per_class.png"
    rows = report.main([str(jobs), "--plot-per-class", str(path)])
    with Image.open(path) as image:
        assert image.format == "PNG"
    fig = report.plot_per_class(rows, tmp_path / "again.png")
    ax = fig.axes[0]
    drawn = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert set(drawn) == {"trained (n=2)", "older (n=1)"}
    assert drawn["older (n=1)"].get_ydata() == pytest.approx([90, 60, 40, 10])  # classes 3, 1, 2, 0
    boundaries = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_label().startswith("_"))
    assert boundaries == [1.5, 2.5]  # many: 1000, 500 (> 100); medium: 50; few: 10 (< 20)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1000", "500", "50", "10"]
    (note,) = fig.texts
    assert "diverged (not converged)" in note.get_text() and "half (not converged)" in note.get_text()


def test_the_per_class_plot_averages_the_seeds_of_a_row(tmp_path):
    write_run(tmp_path / "s0", "two", 0, results(0.5, **{"test/acc_per_class": [0.0, 0.2, None, 1.0]}))
    write_run(tmp_path / "s1", "two", 1, results(0.5, **{"test/acc_per_class": [0.5, 0.4, 0.3, 0.8]}))
    (row,) = report.main([str(tmp_path)])
    assert row["acc_per_class"] == pytest.approx([0.25, 0.3, 0.3, 0.9])
    assert row["shot_thresholds"] == [100, 20]


def test_the_cost_plot_names_each_point(jobs, tmp_path):
    rows = report.main([str(jobs)])
    ax = report.plot_cost(rows, tmp_path / "cost.png").axes[0]
    assert sorted(text.get_text() for text in ax.texts) == ["older", "trained"]


def fake_rows(n: int) -> list[dict]:
    return [{"experiment": f"method {i}", "n_seeds": 1, "converged": True, "converged_reason": None,
             "mean": {"test/acc": 0.3 + 0.01 * i, "test/acc_many": 0.5, "run/train_images": 1e5 * (i + 1)},
             "std": {"test/acc": 0.0, "test/acc_many": 0.0, "run/train_images": 0.0},
             "acc_per_class": [0.9, 0.5, 0.1], "train_class_counts": [200, 50, 5], "shot_thresholds": [100, 20]}
            for i in range(n)]


def assert_distinct(pairs: list) -> None:
    assert all(a != b for a, b in combinations(pairs, 2)), pairs


def test_no_two_methods_share_a_colour_and_marker_in_any_figure(tmp_path):
    rows = fake_rows(20)
    per_class = report.plot_per_class(rows, tmp_path / "per_class.png").axes[0]
    lines = [line for line in per_class.get_lines() if not line.get_label().startswith("_")]
    assert len(lines) == 20
    assert_distinct([(line.get_color(), line.get_marker()) for line in lines])
    cost = report.plot_cost(rows, tmp_path / "cost.png").axes[0]
    points = [container.lines[0] for container in cost.containers]
    assert len(points) == 20
    assert_distinct([(point.get_color(), point.get_marker()) for point in points])
    bars = report.plot_report(rows, ["test/acc", "test/acc_many"], tmp_path / "bars.png").axes[0]
    first = [c.patches[0] for c in bars.containers if isinstance(c, BarContainer)]
    assert len(first) == 20
    assert_distinct([(tuple(bar.get_facecolor()), bar.get_hatch()) for bar in first])
    assert len({tuple(bar.get_facecolor()) for bar in first}) == 20  # twenty colours: no hatch needed yet


def test_styles_stay_distinct_well_past_twenty_rows():
    styles = [method_style(i) for i in range(140)]
    assert_distinct([(style["color"], style["marker"]) for style in styles])
    assert_distinct([(style["color"], style["hatch"]) for style in styles[:100]])


def test_a_run_table_says_when_its_stage_did_not_train():
    table = format_table({"test/acc": 0.1, "converged": False, "converged_reason": CHANCE})
    assert f"NOT CONVERGED — {CHANCE}" in table
    assert "NOT CONVERGED" not in format_table({"test/acc": 0.1, "converged": True})


def test_a_row_the_suite_does_not_run_here_names_what_it_needs_and_its_command_not_a_number():
    from longtail.report import format_report

    entry = {"label": "BNS (linear probe)", "needs": "a GPU", "command": "python -m longtail.run experiment=ipdpp_cifar10"}
    table = format_report([], ["test/acc", "test/acc_few"], [entry])
    assert "| BNS (linear probe) | 0 | needs a GPU: `python -m longtail.run experiment=ipdpp_cifar10` | — | — |" in table
