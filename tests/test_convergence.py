"""A stage that did not train is marked ``converged: false`` with its reason, from its own logged metrics."""

from __future__ import annotations

import json
import math

from conftest import run

from longtail.engine.convergence import convergence


def test_a_loss_above_ln_c_or_a_heldout_top1_at_chance_is_not_converged():
    assert convergence(10, final_loss=0.4, heldout_top1=0.6) == {"converged": True}
    assert convergence(10, final_loss=7.7, heldout_top1=0.104) == {
        "converged": False, "converged_reason": f"final training loss 7.700 above ln 10 = {math.log(10):.3f}"}
    assert convergence(10, heldout_top1=0.1)["converged_reason"] == "held-out top-1 10.00 % at or below chance 10.00 %"
    assert convergence(10) == {"converged": True}  # nothing to judge by


def test_a_stage_with_no_learning_rate_is_marked_not_converged_and_a_trained_one_converged(tmp_path):
    run(["trainer.max_epochs=2", "method.optimizer.lr=0", "scheduler=cosine"], tmp_path / "frozen")
    frozen = json.loads((tmp_path / "frozen" / "train" / "results.json").read_text())
    assert frozen["converged"] is False and "above ln 10" in frozen["converged_reason"]
    run(["trainer.max_epochs=3"], tmp_path / "trained")
    trained = json.loads((tmp_path / "trained" / "train" / "results.json").read_text())
    assert trained["converged"] is True and "converged_reason" not in trained
