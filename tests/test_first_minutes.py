"""A new user's first minutes (issue 12): strict-JSON results, and `make bench` is the README's benchmark command."""

from __future__ import annotations

import json
import math

import pytest
from conftest import run

from longtail.results import finite_or_none


def _reject(token):
    raise ValueError(f"non-standard JSON constant {token}")


def test_non_finite_numbers_become_null_at_any_depth():
    value = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (2, "x"), "e": 0.5}
    assert finite_or_none(value) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2, "x"], "e": 0.5}


def test_every_results_file_of_a_run_parses_with_a_strict_parser(tmp_path):
    results = run(["trainer.max_epochs=1", "metrics.shot_thresholds=[1000,1]"], tmp_path)
    assert math.isnan(results["test/acc_many"])  # an empty group, in memory
    files = sorted(tmp_path.rglob("results.json"))
    assert files
    for path in files:
        parsed = json.loads(path.read_text(), parse_constant=_reject)
        assert parsed["test/acc_many"] is None and 0.0 <= parsed["test/acc"] <= 1.0
    with pytest.raises(ValueError):
        json.loads('{"x": NaN}', parse_constant=_reject)


def test_make_bench_runs_the_command_the_readme_gives():
    """issue 12 item 5: ``make bench`` equal to the README's benchmark command."""
    from conftest import REPO

    recipe = (REPO / "Makefile").read_text().split("bench:\n", 1)[1].splitlines()[0].strip()
    command = recipe.replace("$(PYTHON)", "python")
    readme = (REPO / "README.md").read_text()
    assert f"`make bench` runs every row, all methods included:\n`{command}`" in readme
