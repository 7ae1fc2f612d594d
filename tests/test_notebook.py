"""CI executes notebooks/inspect_checkpoint.ipynb against checkpoints that smoke runs make."""

from __future__ import annotations

import nbformat
import pytest
from conftest import REPO, run
from nbclient import NotebookClient

NOTEBOOK = REPO / "notebooks" / "inspect_checkpoint.ipynb"


def execute(checkpoint: str, monkeypatch) -> list[str]:
    monkeypatch.setenv("LONGTAIL_CHECKPOINT", checkpoint)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    return ["".join(o.get("text", "") for o in cell.get("outputs", [])) for cell in notebook.cells if cell.cell_type == "code"]


def test_notebook_runs_on_a_single_model_checkpoint(digits_ce_run, monkeypatch):
    _, results = digits_ce_run
    outputs = "\n".join(execute(results["checkpoint"], monkeypatch))
    assert "test top-1" in outputs and "single-expert model" in outputs


@pytest.mark.slow
def test_notebook_shows_expert_agreement_for_ride(tmp_path, monkeypatch):
    results = run(["model=ride_resnet32", "model.backbone=resnet8", "method=ride", "loss=ride",
                   "trainer.max_epochs=1"], tmp_path)
    outputs = "\n".join(execute(results["checkpoint"], monkeypatch))
    assert "pairwise agreement" in outputs
