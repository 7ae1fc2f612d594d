"""A stage that was never asked for (issue 17, item 13): a ``stages.<name>…`` override naming no stage of the
experiment is refused before anything trains, with the experiment's stage names and the right spelling, with or
without Hydra's ``+``; a stage is added only from a stage config (``+stage@stages.<name>=<option>``)."""

from __future__ import annotations

import pytest

from longtail.config.overrides import check_overrides


@pytest.mark.parametrize("plus", ["", "+", "++"])
def test_an_old_stage_option_used_as_a_stage_is_refused_with_the_right_spelling(plus):
    """Stage options were named for their method (drolt_robust); now each is its stage's name (robust)."""
    message = check_overrides(["experiment=drolt_cifar10", f"{plus}stages.drolt_robust.trainer.max_epochs=1"])
    assert message is not None
    assert "no stage 'drolt_robust'" in message and "train, robust, classifier" in message, message
    assert "use stages.robust.trainer.max_epochs=1." in message, message
    assert "+stage@stages.<name>=<option>" in message and "To append to your config" not in message, message


def test_the_old_classifier_option_maps_to_its_stage_too():
    message = check_overrides(["experiment=drolt_cifar100", "stages.drolt_classifier.method.optimizer.lr=0.1"])
    assert "use stages.classifier.method.optimizer.lr=0.1." in message, message


@pytest.mark.parametrize("line", ["stages.robsut.trainer.max_epochs=1", "+stages.robsut.trainer.max_epochs=1"])
def test_a_misspelt_stage_is_refused_with_the_nearest_one(line):
    message = check_overrides(["experiment=drolt_cifar10", line])
    assert "no stage 'robsut'" in message and "Did you mean stages.robust.trainer.max_epochs=1?" in message, message


@pytest.mark.parametrize("line", ["+stages.crt.trainer.max_epochs=1", "+stages.extra.init_stage=train",
                                  "stages.crt.trainer.max_epochs=1"])
def test_a_stage_is_not_added_by_setting_its_keys(line):
    message = check_overrides([line])
    assert message is not None and "(its stages: train)" in message, message
    assert "A stage is added only from a stage config" in message, message


def test_in_a_one_stage_run_the_stage_is_set_under_stage():
    message = check_overrides(["stage=robust", "init_from=x.ckpt", "stages.robust.trainer.max_epochs=1"])
    assert "use stage.trainer.max_epochs=1." in message, message


@pytest.mark.parametrize("args", [
    ["experiment=drolt_cifar10", "stages.robust.trainer.max_epochs=1", "stages.classifier.trainer.max_epochs=1"],
    ["experiment=drolt_cifar10", "+stage@stages.crt=crt", "stages.crt.trainer.max_epochs=2"],
    ["+stage@stages.tau_norm=tau_norm", "+stages.tau_norm.init_stage=train", "+stages.train.trainer.max_epochs=1"],
    ["-m", "experiment=drolt_cifar10", "stages.robust.method.optimizer.lr=0.1,0.01"],
    ["experiment=drolt_cifar10", "~stages.classifier"],
    ["experiment=drolt_cifar10", "stages.classifier=null"],
])
def test_the_experiments_own_stages_and_added_stage_configs_pass(args):
    assert check_overrides(args) is None
