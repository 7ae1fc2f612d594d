"""Issue 19, items 6 and 7: an empty shot group is said once, in the table's footnote, not warned about at
every evaluation; every stage plot names its stage and the per-class plot's legend covers no point; the
README's default-run table is what the default run prints."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import REPO, run
from matplotlib.backends.backend_agg import FigureCanvasAgg

from longtail.reporting import plots
from longtail.reporting.metrics import LongTailMetrics
from longtail.reporting.table import format_table

CIFAR10_LT_COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # imbalance 100: no class under 20
FEW_NOTE = "few: no class has fewer than 20 training images (n/a)"


def shot_group_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if "shot group" in str(w.message)]


def test_an_empty_group_is_nan_without_a_warning():
    metrics = LongTailMetrics([500, 300, 200])
    metrics.update(torch.eye(3), torch.arange(3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = metrics.compute()
    assert shot_group_warnings(caught) == []
    assert math.isnan(out["acc_few"]) and math.isnan(out["acc_medium"]) and out["acc_many"] == 1.0


def test_the_table_footnotes_an_empty_group_once_after_a_blank_line():
    results = {"test/acc": 0.8, "test/acc_many": 0.9, "test/acc_medium": 0.7, "test/acc_few": None,
               "test/ece": 0.05, "train_class_counts": CIFAR10_LT_COUNTS}
    lines = format_table(results, title="ce_cifar10 — test set").splitlines()
    assert lines.count(FEW_NOTE) == 1
    assert lines[lines.index(FEW_NOTE) - 1] == ""  # else Markdown reads the note as a table row
    assert "| all | 80.00 | 90.00 | 70.00 | n/a | 5.00 |" in lines


def test_the_footnote_follows_the_thresholds_and_only_empty_groups():
    results = {"test/acc": 0.8, "test/acc_many": None, "test/acc_medium": 0.7, "test/acc_few": 0.6,
               "test/ece": 0.05, "train_class_counts": CIFAR10_LT_COUNTS}
    table = format_table(results, thresholds=(5000, 200))
    assert "many: no class has more than 5000 training images (n/a)" in table
    assert "few:" not in table and "medium:" not in table
    untested = {**results, "train_class_counts": None}  # n/a for want of data, not of classes: no claim
    assert "no class has" not in format_table(untested, thresholds=(5000, 200))


def test_a_group_with_classes_gets_no_footnote():
    results = {"test/acc": 0.9, "test/acc_many": 0.9, "test/acc_medium": 0.9, "test/acc_few": 0.8,
               "test/ece": 0.02, "train_class_counts": [134, 60, 13]}
    assert format_table(results).rstrip().endswith("| all | 90.00 | 90.00 | 90.00 | 80.00 | 2.00 |")


def test_a_run_with_an_empty_few_group_warns_nothing_and_its_table_says_it(tmp_path):
    overrides = ["debug=smoke", "datamodule.eval_batch_size=32", "datamodule.imbalance_factor=2"]  # 134 → 67
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = run(overrides, tmp_path)
    assert min(results["train_class_counts"]) >= 20 and math.isnan(results["test/acc_few"])
    assert shot_group_warnings(caught) == []
    assert format_table(results).splitlines().count(FEW_NOTE) == 1


def stage_results(stage: str) -> dict:
    """A stage's results.json with a point in every corner of the per-class plot and every figure's inputs."""
    return {
        "stage": stage,
        "test/acc": 0.6, "test/acc_many": 1.0, "test/acc_medium": 0.5, "test/acc_few": 0.0, "test/ece": 0.1,
        "test/acc_per_class": [1.0, 0.0, 1.0, 0.5, 0.0, 1.0],
        "test/confusion": [[5 if i == j else 0 for j in range(6)] for i in range(6)],
        "test/reliability": {"confidence": [0.25, 0.75], "accuracy": [0.2, 0.8], "count": [10.0, 20.0]},
        "train_class_counts": [500, 400, 50, 30, 10, 5],
        "class_names": list("abcdef"),
        "drolt/epsilons": [0.1, 0.2, -0.1, 0.3, 0.2, 0.1],
        "diffnet/class_weights": [0.5, 0.7, 1.0, 1.1, 1.3, 1.4],
        "diffnet/accuracy_vector": [0.9, 0.8, 0.6, 0.5, 0.4, 0.3],
    }


def test_every_stage_plot_names_its_stage(tmp_path, monkeypatch):
    csv = tmp_path / "csv" / "version_0"
    csv.mkdir(parents=True)
    (csv / "metrics.csv").write_text("epoch,step,val/acc,val/acc_many\n0,4,0.5,0.6\n1,8,0.7,0.8\n")
    saved = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.setdefault(path, fig) if path else fig)
    written = plots.write_run_plots(tmp_path, stage_results("robust"))
    assert len(written) == 7 and set(saved) == set(written)
    for path, fig in saved.items():
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert titles and all(title.startswith("robust — ") for title in titles), (path.name, titles)


def test_the_per_class_legend_lies_outside_the_axes():
    fig = plots.per_class_accuracy_vs_count(stage_results("train"))
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert not legend.overlaps(ax.get_window_extent())
    assert legend.x0 > ax.get_window_extent().x1  # right of the axes, clear of the x label too


def readme_default_output() -> str:
    """What the README's `## Run` section says the default run prints: its console block and every other
    measured outcome it lists with its cause (another thread count, ISA or CPU model)."""
    text = (REPO / "README.md").read_text()
    return text[text.index("## Run\n"):text.index("### results.json")]


def printed_table(output: str) -> list[str]:
    """The table's lines and the selected epoch from a run's console output."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    epoch = re.search(r"checkpoints/(epoch\d+)\.ckpt", output).group(1)
    return [*lines, epoch]


def readme_machine() -> bool:
    """Whether this machine computes as one the README measured: torch 2.14.1 on the AMD EPYC of family 25,
    model 17 (Zen 4, AVX-512). oneDNN's kernels differ by CPU model and instruction set, so another CPU of this
    kind prints other last digits (the README gives the range); the test pins the CPU whose numbers it states."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    cpu = ("model name\t: AMD EPYC\n" in info and "cpu family\t: 25\n" in info and "\nmodel\t\t: 17\n" in info
           and " avx512f " in info)
    return torch.__version__.startswith("2.14.1") and cpu


@pytest.mark.slow
@pytest.mark.skipif(not readme_machine(), reason="the README states the default run's numbers for torch 2.14.1 on an AMD EPYC family 25 model 17")
def test_the_readme_shows_what_the_default_run_prints_with_two_threads(tmp_path):
    """README truth: the default run, on two threads like the README's 2-core machine, prints a table and selects
    an epoch that the README shows (the CPU model changes the last bits, so the README lists each one measured)."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-m", "longtail.run", f"paths.log_dir={tmp_path}"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    shown = readme_default_output()
    for line in printed_table(done.stdout):
        assert line in shown, (line, done.stdout[-1500:])
