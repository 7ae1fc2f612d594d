"""The Difficulty-Net rows of ``python -m longtail.bench``: the library's stage-1 step and its anchor, a
reference-style step (model copy, create_graph virtual step, double backward, separate real step), docs/methods/diffnet.md §3."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from test_diffnet_method import DIFFNET_DIGITS, fit_stage_one

from longtail.bench import ReferenceStyleDifficultyNet, compose_stage, method_figures, method_rows
from longtail.methods.diffnet import DifficultyNetMetaLearning


def test_diffnet_rows_include_the_reference_style_anchor_on_the_same_data():
    rows = method_rows(["diffnet"])
    anchor = next(name for name in rows if name.startswith("diffnet_reference_style"))
    assert compose_stage(rows[anchor]).method._target_.endswith(ReferenceStyleDifficultyNet.__name__)
    assert compose_stage(rows["diffnet"]).datamodule == compose_stage(rows[anchor]).datamodule
    rates = {name: float(i + 1) for i, name in enumerate(rows)}
    figures = method_figures(["diffnet"], rates)["diffnet"]
    erm = figures["erm_img_s"]
    assert figures["reference_style_img_s"] == rates[anchor]
    assert figures["reference_style_step_cost_vs_erm"] == pytest.approx(erm / rates[anchor])
    assert figures["step_cost_vs_reference_style"] == pytest.approx(rates[anchor] / rates["diffnet"])


def test_the_reference_style_anchor_takes_the_library_step():
    """The anchor times the same step: two iterations of each from the same start give the same weights."""
    states = []
    for target in (DifficultyNetMetaLearning, ReferenceStyleDifficultyNet):
        L.seed_everything(0)
        model, _ = fit_stage_one([*DIFFNET_DIGITS[:3], "datamodule.batch_size=32", "method.accuracy_timing=before_epoch",
                                  f"method._target_={target.__module__}.{target.__qualname__}"], batches=2)
        assert type(model) is target
        states.append(model.state_dict())
    library, reference = states
    for key, value in library.items():
        assert torch.allclose(value.float(), reference[key].float(), rtol=1e-4, atol=1e-6), key
