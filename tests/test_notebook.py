"""CI executes notebooks/inspect_checkpoint.ipynb against checkpoints that smoke runs make."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import REPO, run
from nbclient import NotebookClient

from longtail.engine.runs import link_latest
from longtail.reporting.results import write_results

NOTEBOOK = REPO / "notebooks" / "inspect_checkpoint.ipynb"


def execute(checkpoint: str | None, monkeypatch, cwd: Path = REPO) -> list[str]:
    """The text outputs of the notebook's code cells, run in ``cwd`` (with ``LONGTAIL_CHECKPOINT`` if given)."""
    if checkpoint is None:
        monkeypatch.delenv("LONGTAIL_CHECKPOINT", raising=False)
    else:
        monkeypatch.setenv("LONGTAIL_CHECKPOINT", checkpoint)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return ["".join(o.get("text", "") for o in cell.get("outputs", [])) for cell in notebook.cells if cell.cell_type == "code"]


@pytest.mark.slow
def test_notebook_opens_the_newest_run_from_the_notebooks_folder(digits_ce_run, tmp_path, monkeypatch):
    """A new user's path: a run started in the repo root, then Jupyter in notebooks/ with no variable set."""
    out, results = digits_ce_run
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    relative_run = Path("logs", "runs", "ce_digits", "2024-01-01_00-00-00")
    shutil.copytree(out / "train", repo / relative_run / "train")
    selected = Path(results["checkpoint"]).relative_to(out)
    # as a run started in the repo root writes it: relative to the repo root, not found from notebooks/
    write_results(repo / relative_run / "results.json", {**results, "checkpoint": str(relative_run / selected)})
    link_latest(repo / relative_run, repo / "logs")
    monkeypatch.delenv("LONGTAIL_LOGS", raising=False)
    outputs = "\n".join(execute(None, monkeypatch, cwd=repo / "notebooks"))
    assert f"checkpoint: {(repo / relative_run / selected).resolve()}" in outputs
    assert "test top-1" in outputs and "single-expert model" in outputs


@pytest.mark.slow
def test_notebook_shows_expert_agreement_for_ride(tmp_path, monkeypatch):
    results = run(["model=ride_resnet32", "model.backbone=resnet8", "method=ride", "loss=ride",
                   "trainer.max_epochs=1"], tmp_path)
    outputs = "\n".join(execute(results["checkpoint"], monkeypatch))
    assert "pairwise agreement" in outputs
