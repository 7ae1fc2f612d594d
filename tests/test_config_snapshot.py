"""Config refactors change no behaviour: every stage of every experiment, `stage=<name>` and suite job composes
to the values it composed to before (tests/snapshots/composed_configs.json.gz), key renames mapped explicitly."""

from __future__ import annotations

import pytest
from config_snapshot import command_lines, composed_views, snapshot

from longtail.common.checkpoint import moved_targets
from longtail.config.overrides import RENAMED_KEYS, RENAMED_OPTIONS

# old dotted key (prefix) -> its new name; None: the key is gone on purpose (an indirection the refactor removed)
RENAMES: dict[str, str | None] = {**RENAMED_KEYS,
                                   # the same renames where the composed config repeats them
                                   "method.sampler": "method.dpp_sampler",  # IP-DPP's stage
                                   "datamodule.sampler.subset_seed": "datamodule.sampler.draw_seed",
                                   # RIDE's DRW beta moved from its loss to its method (the router has neither)
                                   "method.loss.drw_beta": "method.drw_beta", "loss.drw_beta": None}
# the views of `stage=<option>` are named by the option: a renamed option's view under its new name
VIEWS = {f"stage={old}": f"stage={new}" for old, new in RENAMED_OPTIONS["stage"].items()}


def view_name(name: str) -> str:
    """``stage=drolt_robust:robust`` -> ``stage=robust:robust``: the command line part under its new name."""
    line, _, stage = name.rpartition(":")
    return f"{VIEWS.get(line, line)}:{stage}"


def renamed(view: dict, renames: dict[str, str | None] = RENAMES) -> dict:
    """A snapshot view with its keys under their new names (the longest matching prefix decides) and its
    ``_target_`` values under their modules' new paths (``MOVED_MODULES``)."""
    out = {}
    for key, value in view.items():
        if key == "_target_" or key.endswith("._target_"):
            value = moved_targets({"_target_": value})["_target_"]
        prefix = max((p for p in renames if key == p or key.startswith(p + ".")), key=len, default=None)
        if prefix is None:
            out[key] = value
        elif renames[prefix] is not None:
            out[renames[prefix] + key[len(prefix):]] = value
    return out


DECOUPLE = "longtail.methods.decouple."


def split_classifier_roles(view: dict) -> dict:
    """ClassifierRetraining had three roles, now three classes: cRT keeps the name, the stage that keeps training
    the stage-1 head (``reinit_head: false``, DRO-LT) is ``ClassifierFineTuning``, the probe that may recalibrate
    its encoder (``recalibrate_backbone``, BNS) is ``LinearProbe``."""
    if view.get("method._target_") != DECOUPLE + "ClassifierRetraining":
        return view
    view = dict(view)
    if view.pop("method.reinit_head", True) is False:
        view["method._target_"] = DECOUPLE + "ClassifierFineTuning"
    elif "method.recalibrate_backbone" in view:
        view["method._target_"] = DECOUPLE + "LinearProbe"
    return view


def differences(before: dict, after: dict) -> list[str]:
    keys = sorted(set(before) | set(after))
    return [f"{k}: {before.get(k, '<absent>')!r} -> {after.get(k, '<absent>')!r}"
            for k in keys if before.get(k, "<absent>") != after.get(k, "<absent>")]


@pytest.mark.slow
def test_every_composed_stage_equals_its_snapshot():
    before = {view_name(name): split_classifier_roles(renamed(view)) for name, view in snapshot().items()}
    after = composed_views(command_lines())
    assert set(before) <= set(after), f"stages that no longer compose: {sorted(set(before) - set(after))}"
    changed = {name: differences(before[name], after[name]) for name in before}
    changed = {name: diff for name, diff in changed.items() if diff}
    report = "\n".join(f"{name}:\n  " + "\n  ".join(diff[:8]) for name, diff in list(changed.items())[:10])
    assert not changed, f"{len(changed)} of {len(before)} composed stages changed:\n{report}"


def test_a_changed_value_is_reported():
    """The guard can fail: a value that differs, and a key that vanished, are both named."""
    assert differences({"a.b": 1, "c": 2}, {"a.b": 3}) == ["a.b: 1 -> 3", "c: 2 -> '<absent>'"]


def test_renames_move_and_drop_keys():
    renames = {"fidelity.x": "method.x", "diffnet": None}
    assert renamed({"fidelity.x": 1, "fidelity.xy": 2, "diffnet.a": 3}, renames) == {"method.x": 1, "fidelity.xy": 2}


def test_a_moved_module_is_mapped_in_targets_only():
    view = {"method.scheduler._target_": "longtail.schedules.warmup_cosine", "method.note": "longtail.schedules.x",
            "callbacks.a._target_": "longtail.methods.erm.ERM"}
    assert renamed(view, {}) == {"method.scheduler._target_": "longtail.engine.schedules.warmup_cosine",
                                 "method.note": "longtail.schedules.x", "callbacks.a._target_": "longtail.methods.erm.ERM"}


def test_an_old_key_names_its_new_name():
    from longtail.config.overrides import check_overrides

    message = check_overrides(["experiment=drolt_cifar10", "fidelity.drolt_centroids=clean"])
    assert message == "'fidelity.drolt_centroids' was renamed: use drolt.centroids=clean.", message


def test_an_old_stage_option_names_its_new_name():
    from longtail.config.overrides import check_overrides

    message = check_overrides(["experiment=drolt_cifar10", "stage=drolt_robust"])
    assert message == "'stage=drolt_robust' was renamed: use stage=robust.", message


def test_a_renamed_key_inside_a_stage_names_its_new_name():
    from longtail.config.overrides import check_overrides

    message = check_overrides(["experiment=ipdpp_cifar10", "stages.probe.sampler.subset_seed=3"])
    assert message == "'stages.probe.sampler.subset_seed' was renamed: use stages.probe.sampler.draw_seed=3.", message
