"""The staged-run steps read on their own, and every method declares how a stage treats it (issue 11 item 9)."""

from __future__ import annotations

from longtail.methods.base import LongTailModule
from longtail.methods.decouple import ClassifierRetraining, TauNormalization
from longtail.methods.erm import ERM


def test_the_stage_flags_are_declared_with_their_defaults():
    assert (LongTailModule.needs_init, LongTailModule.requires_training, LongTailModule.has_classifier) == (
        False, True, True)
    assert ERM.needs_init is False and ClassifierRetraining.needs_init is True
    assert TauNormalization.requires_training is False

