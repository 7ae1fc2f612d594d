"""The staged-run steps read on their own, and every method declares how a stage treats it (issue 11 item 9)."""

from __future__ import annotations

from longtail import stages
from longtail.methods.base import LongTailModule
from longtail.methods.decouple import ClassifierRetraining, TauNormalization
from longtail.methods.erm import ERM


def test_the_stage_flags_are_declared_with_their_defaults():
    assert (LongTailModule.needs_init, LongTailModule.requires_training, LongTailModule.has_classifier) == (
        False, True, True)
    assert ERM.needs_init is False and ClassifierRetraining.needs_init is True
    assert TauNormalization.requires_training is False


def test_run_stage_is_built_from_named_steps():
    for step in ("build_stage", "build_trainer", "fit_and_select", "evaluate_selected"):
        assert callable(getattr(stages, step)), step
    source = stages.run_stage.__code__.co_names
    assert {"build_stage", "build_trainer", "fit_and_select", "evaluate_selected"} <= set(source)
