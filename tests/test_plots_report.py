"""Run plots (`longtail.reporting.plots`) and the seed-aggregating report (`python -m longtail.report`)."""

from __future__ import annotations

import csv
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from matplotlib.figure import Figure
from PIL import Image

from longtail import report
from longtail.reporting import plots

PLOT_NAMES = {"per_class_accuracy.png", "shot_groups.png", "confusion.png", "reliability.png", "val_curves.png"}


@pytest.fixture(scope="module")
def multirun(tmp_path_factory) -> Path:
    """A real two-seed Hydra multirun of the embedded default; returns its sweep folder."""
    logs = tmp_path_factory.mktemp("logs")
    command = [
        sys.executable,
        "-m",
        "longtail.run",
        "-m",
        "seed=0,1",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        f"paths.log_dir={logs}",
    ]
    subprocess.run(command, cwd=logs, check=True, capture_output=True, text=True)
    (sweep,) = (logs / "multiruns").iterdir()
    return sweep


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 5_000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 200


def synthetic_results(num_classes: int = 4) -> dict:
    """A results.json with an empty 'many' group, a class never tested, and empty reliability bins."""
    counts = [50, 30, 10, 5][:num_classes]
    confusion = [[8, 2, 0, 0], [1, 9, 0, 0], [0, 3, 7, 0], [0, 0, 0, 0]]
    bins = 15
    return {
        "test/acc": 0.8,
        "test/acc_many": math.nan,
        "test/acc_medium": 0.85,
        "test/acc_few": 0.7,
        "test/ece": 0.1,
        "test/acc_per_class": [0.8, 0.9, 0.7, math.nan],
        "test/confusion": confusion,
        "test/reliability": {
            "confidence": [math.nan] * 5 + [0.05 + i / bins for i in range(5, bins)],
            "accuracy": [math.nan] * 5 + [i / bins for i in range(5, bins)],
            "count": [0.0] * 5 + [10.0] * (bins - 5),
        },
        "train_class_counts": counts,
        "class_names": ["a", "b", "c", "d"],
    }


@pytest.mark.slow
def test_write_run_plots_on_a_real_run(multirun):
    stage = multirun / "0_ce_digits" / "train"
    written = plots.write_run_plots(stage)
    assert {p.name for p in written} == PLOT_NAMES
    assert all(p.parent == stage / "plots" for p in written)
    for path in written:
        assert_png(path)


@pytest.mark.slow
def test_val_curves_read_every_epoch_and_group(multirun):
    (metrics_csv,) = (multirun / "1_ce_digits" / "train").glob("csv/version_*/metrics.csv")
    curves = plots.read_val_curves(metrics_csv)
    assert set(curves) == {"overall", "many", "medium", "few"}
    assert [epoch for epoch, _ in curves["overall"]] == [0, 1]
    assert isinstance(plots.val_curves(metrics_csv), Figure)


def test_plot_functions_on_synthetic_results(tmp_path):
    results = synthetic_results()
    bars = plots.shot_group_bars(results, path=tmp_path / "bars.png")
    assert "n/a" in [text.get_text() for text in bars.axes[0].texts]
    scatter = plots.per_class_accuracy_vs_count(results, thresholds=(40, 8), path=tmp_path / "scatter.png")
    assert len(scatter.axes[0].collections) == 3
    matrix = plots.confusion_matrix(results, path=tmp_path / "confusion.png")
    shown = matrix.axes[0].images[0].get_array()
    assert shown[0, 0] == pytest.approx(0.8) and shown[2, 1] == pytest.approx(0.3)
    assert [t.get_text() for t in matrix.axes[0].get_yticklabels()] == ["a", "b", "c", "d"]
    diagram = plots.reliability_diagram(results, path=tmp_path / "reliability.png")
    accuracy_bars = diagram.axes[0].containers[0]
    assert len(accuracy_bars) == 10
    for name in ("bars", "scatter", "confusion", "reliability"):
        assert_png(tmp_path / f"{name}.png")


def test_confusion_orders_classes_by_train_count():
    results = {
        "test/confusion": [[1, 0, 0], [0, 2, 2], [0, 0, 5]],
        "train_class_counts": [5, 50, 20],
        "class_names": ["x", "y", "z"],
    }
    ax = plots.confusion_matrix(results).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["y", "z", "x"]
    assert ax.images[0].get_array()[0].tolist() == [0.5, 0.5, 0.0]


def test_write_run_plots_skips_what_the_data_cannot_support(tmp_path):
    results = {
        key: value for key, value in synthetic_results().items() if key not in ("test/reliability", "test/confusion")
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    train_only = tmp_path / "csv" / "version_0"
    train_only.mkdir(parents=True)
    (train_only / "metrics.csv").write_text("epoch,step,train/loss_epoch\n0,4,2.3\n1,8,2.1\n")
    written = plots.write_run_plots(tmp_path)
    assert {p.name for p in written} == {"per_class_accuracy.png", "shot_groups.png"}
    with pytest.raises(ValueError, match="no validation"):
        plots.val_curves(train_only / "metrics.csv")


@pytest.mark.slow
def test_report_groups_seeds_of_a_multirun(multirun, tmp_path, capsys):
    csv_path, plot_path = tmp_path / "report.csv", tmp_path / "report.png"
    rows = report.main([str(multirun), "--csv", str(csv_path), "--plot", str(plot_path)])
    assert len(rows) == 1
    (row,) = rows
    assert row["n_seeds"] == 2 and row["experiment"] == "ce_digits trainer.max_epochs=2"
    seeds = [json.loads((multirun / f"{i}_ce_digits" / "results.json").read_text()) for i in (0, 1)]
    for key in ("test/acc", "test/acc_many", "test/acc_medium", "test/acc_few", "test/ece"):
        values = [r[key] for r in seeds]
        assert row["mean"][key] == pytest.approx(statistics.mean(values))
        assert row["std"][key] == pytest.approx(statistics.stdev(values))
    printed = capsys.readouterr().out
    assert f"| {100 * row['mean']['test/acc']:.2f} ± {100 * row['std']['test/acc']:.2f} |" in printed

    with open(csv_path, newline="") as handle:
        (line,) = list(csv.DictReader(handle))
    assert line["experiment"] == row["experiment"] and int(line["n_seeds"]) == 2
    assert float(line["top-1_mean"]) == pytest.approx(100 * row["mean"]["test/acc"])
    assert float(line["ECE_std"]) == pytest.approx(100 * row["std"]["test/ece"])
    assert_png(plot_path)


def write_run(folder: Path, overrides: list[str], results: dict, name: str = "ce_digits") -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    seed = next((int(o.split("=")[1]) for o in overrides if o.startswith("seed=")), 0)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"name": name, "seed": seed}))
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "train").mkdir()
    (folder / "train" / "results.json").write_text(json.dumps({"test/acc": 0.0}))


@pytest.mark.slow
def test_report_splits_experiments_and_finds_runs_without_hydra(tmp_path, capsys):
    base = {"test/acc_many": 0.9, "test/acc_medium": 0.5, "test/acc_few": math.nan, "test/ece": 0.1}
    write_run(
        tmp_path / "a0", ["seed=0", "loss=ce", "paths.log_dir=/x", "hydra.run.dir=/x/0"], {**base, "test/acc": 0.5}
    )
    write_run(
        tmp_path / "a1", ["loss=ce", "seed=1", "paths.log_dir=/y", "datamodule.root=/d"], {**base, "test/acc": 0.7}
    )
    write_run(tmp_path / "b0", ["seed=0", "loss=focal"], {**base, "test/acc": 0.6})
    bare = tmp_path / "bare" / "train"
    bare.mkdir(parents=True)
    (bare / "results.json").write_text(json.dumps({**base, "test/acc": 0.4}))

    rows = {row["experiment"]: row for row in report.main([str(tmp_path)])}
    assert set(rows) == {"ce_digits loss=ce", "ce_digits loss=focal", str(bare.resolve())}
    same = rows["ce_digits loss=ce"]
    assert same["n_seeds"] == 2
    assert same["mean"]["test/acc"] == pytest.approx(0.6) and same["std"]["test/acc"] == pytest.approx(0.1414213562)
    assert math.isnan(same["mean"]["test/acc_few"])
    printed = capsys.readouterr().out
    assert "| ce_digits loss=focal | 1 | 60.00 | 90.00 | 50.00 | n/a | 10.00 |" in printed  # one seed: no ±

    by_name = report.main([str(tmp_path / "a0"), str(tmp_path / "b0"), "--group-by", "name"])
    assert [(row["experiment"], row["n_seeds"], row["n_runs"]) for row in by_name] == [("ce_digits", 1, 2)]


def test_report_counts_distinct_seeds_costs_epochs_stage_folders_and_jobs_without_results(tmp_path, capsys):
    base = {"test/acc_many": 0.9, "test/acc_medium": 0.5, "test/acc_few": 0.2, "test/ece": 0.1, "parameters": 470000,
            "test/gflops": 0.07, "run/epochs": {"train": 20, "crt": 1}}
    write_run(tmp_path / "s0", ["seed=0"], {**base, "test/acc": 0.5, "run/train_images": 2e6, "run/train_seconds": 600})
    write_run(tmp_path / "s1", ["seed=1"], {**base, "test/acc": 0.7, "run/train_images": 4e6, "run/train_seconds": 1200})
    write_run(tmp_path / "s1again", ["seed=1"], {**base, "test/acc": 0.6, "run/train_images": 3e6,
                                                 "run/train_seconds": 900})
    (tmp_path / "broken" / ".hydra").mkdir(parents=True)
    (tmp_path / "broken" / "FAILED.txt").write_text("datamodule.imbalance_factor must be >= 1\n\ntraceback")
    (tmp_path / "killed" / ".hydra").mkdir(parents=True)
    out = tmp_path / "out"
    out.mkdir()
    (row,) = report.main([str(tmp_path / n) for n in ("s0", "s1", "s1again", "broken", "killed")] + [
        "--json", str(out / "t.json"), "--csv", str(out / "t.csv"), "--plot", str(out / "bars.png"),
        "--plot-cost", str(out / "cost.png")])
    assert (row["n_seeds"], row["n_runs"], row["seeds"]) == (2, 3, [0, 1])
    assert row["mean"]["run/train_images"] == pytest.approx(3e6) and row["epochs"] == {"train": 20, "crt": 1}
    printed = capsys.readouterr().out
    assert ("| ce_digits | 2 (3 runs of seeds 0, 1) | 60.00 ± 10.00 | 90.00 ± 0.00 | 50.00 ± 0.00 | 20.00 ± 0.00 | "
            "10.00 ± 0.00 | 0.47 ± 0.00 | 0.070 ± 0.000 | 3.00 ± 1.00 | 15.0 ± 5.0 | train 20 · crt 1 |") in printed
    assert "broken: failed: datamodule.imbalance_factor must be >= 1" in printed and "killed: not finished" in printed
    assert json.loads((out / "t.json").read_text())["rows"][0]["n_seeds"] == 2
    assert_png(out / "bars.png")
    assert_png(out / "cost.png")
    (stage,) = report.main([str(tmp_path / "s0" / "train")])  # a stage folder named on the command line
    assert stage["experiment"] == "ce_digits [train]" and stage["n_seeds"] == 1


@pytest.mark.slow
def test_report_table_goes_to_wandb_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    base = {"test/acc": 0.5, "test/acc_many": 0.9, "test/acc_medium": 0.5, "test/acc_few": 0.2, "test/ece": 0.1}
    write_run(tmp_path / "runs" / "s0", ["seed=0"], base)
    report.main([str(tmp_path / "runs"), "--plot", str(tmp_path / "bars.png"), "--wandb", "longtail-report"])
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    assert list(offline.rglob("*table.json")) and list(offline.rglob("*.png"))
    assert f"W&B run: {offline}" in capsys.readouterr().out
