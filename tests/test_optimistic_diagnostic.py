"""``logging.test_every_epoch``: the optimistic max-over-epochs test accuracy, logged but never selecting
anything, and labelled as optimistic by the report (docs/methods/README.md §5, docs/methods/baselines.md B4; issue 11 item 7)."""

from __future__ import annotations

import pytest
import torch
from conftest import run

from longtail import report


@pytest.mark.slow
def test_the_diagnostic_adds_test_diag_numbers_and_changes_nothing_else(tmp_path, capsys):
    off = run(["trainer.max_epochs=2"], tmp_path / "off")
    on = run(["trainer.max_epochs=2", "logging.test_every_epoch=true"], tmp_path / "on")
    assert "test_diag/acc_max" not in off
    assert len(on["test_diag/acc"]) == 2 and on["test_diag/acc_max"] == max(on["test_diag/acc"])
    assert on["selection"] == off["selection"] == "best val/acc"
    assert on["test/acc"] == off["test/acc"]
    weights = [torch.load(r / "train" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
               for r in (tmp_path / "off", tmp_path / "on")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    (tmp_path / "on" / "results.json").write_text((tmp_path / "on" / "train" / "results.json").read_text())
    rows = report.main([str(tmp_path / "on")])
    table = capsys.readouterr().out
    assert "max test top-1 over epochs (optimistic)" in table and "chosen on the test set" in table
    assert rows[0]["mean"]["test_diag/acc_max"] == on["test_diag/acc_max"]
