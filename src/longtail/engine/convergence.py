"""Whether a stage trained at all: a row that did not is reported as ``not converged (<reason>)``, never as a number.

Two signs, each from the run itself (``results.json`` gets ``converged`` and, when false, ``converged_reason``):

* the final epoch's mean training loss above ln C, the cross-entropy of a uniform prediction over C classes, for a
  method whose training loss is such a cross-entropy (``LongTailModule.cross_entropy_loss``);
* the held-out top-1 of the selected checkpoint (or of the last validation) at or below chance, 1/C on a balanced
  held-out split.
"""

from __future__ import annotations

import math


def convergence(num_classes: int, final_loss: float | None = None, heldout_top1: float | None = None) -> dict:
    """``{"converged": bool}``, with ``converged_reason`` naming every sign that failed."""
    reasons = []
    chance_loss = math.log(num_classes)
    if final_loss is not None and final_loss > chance_loss:
        reasons.append(f"final training loss {final_loss:.3f} above ln {num_classes} = {chance_loss:.3f}")
    if heldout_top1 is not None and heldout_top1 <= 1 / num_classes + 1e-9:
        reasons.append(f"held-out top-1 {100 * heldout_top1:.2f} % at or below chance {100 / num_classes:.2f} %")
    return {"converged": not reasons, **({"converged_reason": "; ".join(reasons)} if reasons else {})}


def stage_convergence(trainer, model, checkpointing) -> dict:
    """:func:`convergence` of a fitted stage, read from its logged metrics (nothing for a stage that did not train
    or has no classifier: its probe is judged instead)."""
    if not (model.requires_training and model.has_classifier):
        return {}
    metrics = trainer.callback_metrics
    loss = metrics.get("train/loss_epoch") if model.cross_entropy_loss else None
    heldout = metrics.get("val/acc")
    if checkpointing is not None and checkpointing.monitor == "val/acc" and checkpointing.best_model_score is not None:
        heldout = checkpointing.best_model_score
    return convergence(len(model.class_counts), None if loss is None else float(loss),
                       None if heldout is None else float(heldout))
