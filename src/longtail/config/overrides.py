"""The command line's overrides, checked before Hydra creates a run folder or anything trains.

Mistakes Hydra itself reports late or misleadingly:

* a misspelt key (``trainer.max_epoch=3``): Hydra suggests ``+trainer.max_epoch=3``, which adds the key and
  fails later inside the Trainer; here the message names the nearest existing key (``trainer.max_epochs``);
* a value of the wrong type (``trainer.max_epochs=abc``): plain config nodes take any value, and Lightning
  fails with a bare ``AssertionError`` minutes later; here the value is checked against the annotation of
  the parameter it feeds (the node's ``_target_`` signature) or, where there is none, against the default's
  type;
* a config group given a flag or a number (``debug=true``): Hydra stops with a traceback; here the group's
  options are named;
* a value a later stage refuses (``stages.robust.method.centroids=clena``): it would surface only after the
  stages before it have trained; here every stage is built without data (:mod:`longtail.config.validation`).

:func:`check_overrides` composes the config with the Compose API (a sweep's first value stands for the
numbers of it; each value of a swept config group or string is composed too, so each experiment of
``experiment=a,b``) and returns a message — Hydra's own for any other composition error — or ``None`` to let
Hydra run. A ``stages.<name>…`` override in a sweep over experiments applies to those that have the stage and
is skipped in the others (:func:`skip_absent_stages_in_multiruns`).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import re
import types
import typing
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from longtail.common.compat import HYDRA_MISSING_OPTION, HYDRA_NOT_IN_STRUCT, hydra_config_loader, raw_child

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
# keys that were renamed (issue 20: one name per switch), old -> new; the config snapshot test maps them too
RENAMED_KEYS = {
    "fidelity.focal_pt_from_weighted_ce": "focal.pt_from_weighted_ce",
    "fidelity.ride_collaborative_when_zero": "ride.collaborative_when_zero",
    "fidelity.ride_distill_times_experts": "ride.distill_times_experts",
    **{f"fidelity.drolt_{k}": f"drolt.{k}" for k in ("eps_index", "eps_param", "centroids")},
    **{f"fidelity.diffnet_{k}": f"diffnet.{k}"
       for k in ("detach_weights", "meta_step", "bs_broadcast_bug", "schedule", "aug_reference")},
    "fidelity.ipdpp_sampler": "ipdpp.dpp_sampler",
    **{f"fidelity.ipdpp_{k}": f"ipdpp.{k}" for k in ("kernel_scale", "prob_transform", "first_probs")},
    "ipdpp.sampler": "ipdpp.dpp_sampler",  # a DPP sampler, not the data sampler of conf/sampler
    "sampler.subset_seed": "sampler.draw_seed",  # the capped subset's draw, not datamodule.subset_seed
    "loss.drw_beta": "method.drw_beta",  # DRW's keys are method.drw_* for ERM and RIDE alike
    "method.train_classifier": "method.train_linear",  # LWS: the wrapped linear layer (W, b) trains too
    "fidelity.bns_form": "bns.form",
    "fidelity.bns_fixed_permutation": "bns.fixed_permutation",
    "fidelity.probe_bn_train_mode": "probe.bn_train_mode",
}
# config options that were renamed, group -> {old: new}: a stage option is named as its stage (issue 20)
RENAMED_OPTIONS = {"stage": {"drolt_robust": "robust", "drolt_classifier": "classifier", "diffnet_las": "las",
                             "ipdpp_probe": "probe", "ride_router": "router", "ride_student": "student"}}
_ABSENT = object()


def check_overrides(args: list[str]) -> str | None:
    """A message for the first misspelt key, wrongly typed value or stage that would fail among ``args``, or
    ``None``. In a multirun every value of a swept config group or string (each experiment of ``experiment=a,b``)
    is composed and checked, and a ``stages.<name>…`` override needs only one of its jobs to have the stage."""
    if any(arg.startswith("-") and arg not in ("-m", "--multirun") for arg in args):
        return None  # --help, --cfg, --config-dir …: Hydra's own business
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        overrides = OverridesParser.create().parse_overrides([a for a in args if a not in ("-m", "--multirun")])
    except HydraException:
        return None
    message = _group_value_message(overrides)
    if message or GlobalHydra.instance().is_initialized():
        return message
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        @functools.cache
        def composed(chosen: tuple):
            return compose("config", overrides=list(chosen), return_hydra_config=True)

        def compose_with(chosen):
            return composed(tuple(line for line in chosen if line))

        return _command_message(overrides, "-m" in args or "--multirun" in args, compose_with)


def _command_message(overrides, multirun: bool, compose_with) -> str | None:
    """The first problem of any job of the command worth composing (:func:`_variants`), or ``None``."""
    from hydra.errors import HydraException

    lines = [_first_value_line(o) for o in overrides]
    staged = [_stage_of(o) for o in overrides]
    try:
        base = compose_with(line for line, name in zip(lines, staged) if name is None)
    except (HydraException, ValueError) as error:
        return _composition_message(str(error), lines, compose_with)
    variants = _variants(overrides, lines, _sweeper_params(base, multirun))
    stages = _stages_of(variants, staged, compose_with)
    message = _stage_key_message(overrides, staged, stages, variants, compose_with)
    for variant, names in zip(variants, stages):
        if message:
            return message
        chosen = [line if index >= len(staged) or staged[index] in (None, *names) else None
                  for index, line in enumerate(variant)]  # a job skips the stages it does not have
        message = _job_message(overrides, chosen, compose_with)
    return message


def _group_value_message(overrides) -> str | None:
    """A config group given a value that is not an option's name (``debug=true``, ``logger=1``, ``debug=null``):
    Hydra stops on it with a long traceback; here the group and its options are named."""
    for override in overrides:
        group = override.key_or_group
        if override.is_hydra_override() or not (CONF_DIR / group).is_dir():
            continue
        try:
            values = list(override.sweep_iterator()) if override.is_discrete_sweep() else [override.value()]
        except Exception:
            continue  # a glob or an interval: Hydra's own message
        wrong = [v for v in values if v is None or isinstance(v, (bool, int, float))]
        if wrong and not override.is_delete():
            shown = "null" if wrong[0] is None else str(wrong[0]).lower() if isinstance(wrong[0], bool) else wrong[0]
            options = [f"{group}={p.stem}" for p in sorted((CONF_DIR / group).glob("*.yaml"))]
            listed = " or ".join([", ".join(options[:-1]), options[-1]] if len(options) > 1 else options)
            return (f"'{override.input_line}': {group} is a config group and takes the name of one of its options, "
                    f"not {shown}: {listed}.")
    return None


def _variants(overrides, lines: list, params: list) -> list[list]:
    """The command's jobs worth composing, as override lines: every sweep at its first value, then each other
    value of a sweep of strings in turn (a config group, ``experiment=a,b``: other stages, another method; or a
    choice a constructor checks, ``…centroids=clean,running``). Numbers are checked by type for every value. A
    sweeper's ``params`` (a suite's experiments) are sweeps too, unless the command line sets the key itself."""
    keys = {o.key_or_group for o in overrides}
    extra = [p for p in params if p.key_or_group not in keys]
    first = [*lines, *(_first_value_line(p) for p in extra)]
    variants = [first]
    for position, override in enumerate([*overrides, *extra]):
        key = override.input_line.split("=", 1)[0]
        for value in _other_strings(override):
            variants.append([*first[:position], f"{key}={value}", *first[position + 1:]])
    return variants


def _other_strings(override) -> list[str]:
    """The values after the first of a sweep of strings, as override text (none for a glob: Hydra's to expand)."""
    if override.is_hydra_override() or not override.is_discrete_sweep():
        return []
    try:
        if all(isinstance(value, str) for value in override.sweep_iterator()):
            return list(override.sweep_string_iterator())[1:]
    except Exception:
        pass
    return []


def _sweeper_params(cfg: DictConfig, multirun: bool) -> list:
    """The sweeps a multirun's config adds (``hydra.sweeper.params``: a suite's experiments), parsed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    multirun = multirun or _in_multirun([], cfg)
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) if multirun else None
    if not isinstance(params, DictConfig):
        return []
    try:
        return OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    except Exception:
        return []  # the sweeper reports its own syntax


def _stages_of(variants: list, staged: list, compose_with) -> list[set]:
    """The stage names of each job (composed without the ``stages.<name>…`` overrides), where any is addressed;
    a job that does not compose has none (its composition reports why)."""
    from hydra.errors import HydraException

    if not any(staged):
        return [set() for _ in variants]
    found = []
    for variant in variants:
        chosen = [line for index, line in enumerate(variant) if index >= len(staged) or staged[index] is None]
        try:
            found.append({str(name) for name in compose_with(chosen).get("stages") or {}})
        except (HydraException, ValueError):
            found.append(set())
    return found


def _job_message(overrides, chosen: list, compose_with) -> str | None:
    """What is wrong with one job: a key or option that does not exist, a value of the wrong type, or a stage
    that would fail to start (:func:`longtail.config.validation.stage_problem`)."""
    from hydra.errors import HydraException

    from longtail.config.validation import stage_problem

    try:
        cfg = compose_with(chosen)
    except (HydraException, ValueError) as error:
        return _composition_message(str(error), chosen, compose_with)
    applied = [o for o, line in zip(overrides, chosen) if line]
    values = [o for o in applied if _is_value(o, cfg)]

    @functools.cache
    def baseline():  # the config without the value overrides: their defaults (composed only if needed)
        return compose_with(line for index, line in enumerate(chosen)
                            if index >= len(overrides) or overrides[index] not in values)

    for override in values:
        message = _type_message(override, cfg, baseline)
        if message:
            return message
    return stage_problem(cfg, [o.key_or_group for o in applied])


def _stage_of(override) -> str | None:
    """The stage a ``stages.<name>…`` value override (added, forced or deleted too) addresses, else ``None``."""
    key = override.key_or_group
    if override.is_hydra_override() or override.package is not None or not key.startswith("stages."):
        return None
    return key.split(".")[1]


def _stage_key_message(overrides, staged: list, stages: list, variants: list, compose_with) -> str | None:
    """A ``stages.<name>…`` override whose stage no job of the command has: Hydra would suggest adding it with
    ``+``, which runs an extra training stage of the global method. A stage is only ever added from a stage
    config, ``+stage@stages.<name>=<option>``, which is composed here before the experiment's stages are read.
    A stage that only some jobs have (a sweep over experiments) is set in those and skipped in the others; a
    stage none has is explained with the job whose stages come closest to it."""
    from hydra.errors import HydraException

    for override, name in zip(overrides, staged):
        if name is None or any(name in names for names in stages):
            continue
        closest = max(range(len(stages)), key=lambda i: _likeness(name, stages[i]))
        try:
            cfg = compose_with(line for index, line in enumerate(variants[closest])
                               if index >= len(staged) or staged[index] is None)
        except (HydraException, ValueError):
            return None  # reported by the composition of the job
        return _unknown_stage_message(override, name, cfg, swept=len({frozenset(n) for n in stages}) > 1)
    return None


def _likeness(name: str, names) -> float:
    """How close ``name`` comes to the nearest of ``names`` (0 to 1)."""
    return max((difflib.SequenceMatcher(None, name, other).ratio() for other in names), default=0.0)


def _unknown_stage_message(override, name: str, cfg: DictConfig, swept: bool = False) -> str:
    """Which stages the experiment has, the one ``name`` most likely means (a renamed stage option's new name,
    :data:`RENAMED_OPTIONS`, or the nearest stage), and the override spelt for it; ``swept``: the command's
    experiments have different stages and none has ``name``."""
    stages = [str(n) for n, v in cfg.stages.items() if v is not None]
    line = override.input_line
    lead = line[:len(line) - len(line.lstrip("+~"))]
    rest = override.key_or_group.split(".", 2)[2:]
    renamed = RENAMED_OPTIONS["stage"].get(name)
    single = cfg.get("stage") is not None and cfg.stage.get("name") in (name, renamed)
    if single and cfg.stage.name not in stages:  # stage=<option>: its keys are stage.…
        meant, key = cfg.stage.name, ".".join(["stage", *rest])
        why = f"With stage={cfg.stage.name}, the one stage that runs is set under stage"
    else:
        meant = renamed if renamed in stages else None
        why = f"The stage option '{name}' is now '{renamed}', its stage's name" if meant else ""
        if meant is None:
            close = difflib.get_close_matches(name, stages, n=1, cutoff=0.6)
            meant = close[0] if close else None
        key = ".".join(["stages", str(meant), *rest])
    options = sorted(p.stem for p in (CONF_DIR / "stage").glob("*.yaml"))
    message = f"'{line}': this experiment has no stage '{name}' (its stages: {', '.join(stages)})."
    if swept:
        experiment = cfg.hydra.runtime.choices.get("experiment") or cfg.get("name")
        message = (f"'{line}': no experiment of this sweep has a stage '{name}' "
                   f"({experiment}'s stages: {', '.join(stages)}).")
    if meant is not None:
        exists = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=False) is not _ABSENT
        spelt = f"{'' if exists and lead.startswith('+') else lead}{key}" + (f"={line.split('=', 1)[1]}" if "=" in line else "")
        message += f" {why}: use {spelt}." if why else f" Did you mean {spelt}?"
    added = f"+stage@stages.{name}={name}" if name in options and meant is None else "+stage@stages.<name>=<option>"
    return f"{message} A stage is added only from a stage config: {added} (options: {', '.join(options)})."


def _first_value_line(override) -> str | None:
    """The override with a sweep replaced by its first value (an interval, which has none, is dropped)."""
    if not override.is_sweep_override():
        return override.input_line
    try:
        first = next(iter(override.sweep_string_iterator()))
    except Exception:  # an interval sweep (Optuna) has no first value
        return None
    return f"{override.input_line.split('=', 1)[0]}={first}"


def _is_value(override, cfg: DictConfig) -> bool:
    """Whether ``override`` sets an existing value (not a config group, an added key or a Hydra setting)."""
    if override.is_add() or override.is_force_add() or override.is_delete() or override.is_hydra_override():
        return False
    node = OmegaConf.select(cfg, override.key_or_group, default=_ABSENT, throw_on_resolution_failure=False)
    return node is not _ABSENT and not isinstance(node, DictConfig)


def renamed_key(key: str) -> str | None:
    """The new name of a renamed key, also inside a stage (``stages.probe.sampler.subset_seed``), or None."""
    stage = re.match(r"(stages\.[^.]+\.|stage\.)", key)
    prefix = stage.group(0) if stage else ""
    new = RENAMED_KEYS.get(key[len(prefix):])
    return prefix + new if new else None


def _composition_message(error: str, lines: list, compose_with) -> str:
    """A misspelt key or config option, with the nearest existing ones; Hydra's message for other errors."""
    missing = HYDRA_NOT_IN_STRUCT.search(error)
    if missing and renamed_key(missing.group(1)):
        key = missing.group(1)
        value = next((line.partition("=")[2] for line in lines if line and override_key(line) == key), "…")
        return f"'{key}' was renamed: use {renamed_key(key)}={value}."
    if missing:
        key = missing.group(1)
        parent, _, leaf = key.rpartition(".")
        others = [line for line in lines if line and override_key(line) != key]
        try:
            cfg = compose_with(others)
        except Exception:
            return error
        node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
        if not isinstance(node, DictConfig):
            return error
        keys = [str(k) for k in node.keys() if k != "hydra"]
        close = [f"{parent}.{c}" if parent else c for c in difflib.get_close_matches(leaf, keys, n=3, cutoff=0.6)]
        for scope in (_leaf_paths(node, f"{parent}." if parent else ""), _leaf_paths(cfg)):
            deeper = {path.rpartition(".")[2]: path for path in scope}
            close = close or [deeper[name] for name in difflib.get_close_matches(leaf, list(deeper), n=3, cutoff=0.8)]
        where = f"'{parent}'" if parent else "the top level"
        hint = f"Did you mean {' or '.join(close)}? " if close else ""
        return (f"'{key}' is not a config key. {hint}The keys of {where} are: {', '.join(keys)}. "
                f"(`python -m longtail.run --cfg job` prints the whole config.)")
    option = HYDRA_MISSING_OPTION.search(error)
    if option and not option.group(1).startswith("hydra"):  # Hydra's own groups list their options already
        group, name = option.groups()
        if name in RENAMED_OPTIONS.get(group, {}):  # as typed: stage=drolt_robust or +stage@stages.robust=…
            typed = next((line.partition("=")[0] for line in lines if line and line.partition("=")[2] == name
                          and override_key(line).split("@")[0] == group), group)
            return f"'{typed}={name}' was renamed: use {typed}={RENAMED_OPTIONS[group][name]}."
        choices = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(f'{group}={c}' for c in close)}?" if close else ""
        return f"'{group}={name}': there is no {group} called '{name}'.{hint} Options: {', '.join(choices)}."
    return error


def _leaf_paths(node: DictConfig, prefix: str = ""):
    """Every dotted key of a value in ``node`` (the Hydra node excluded), depth first."""
    for key in node.keys():
        if key == "hydra":
            continue
        child = raw_child(node, key)
        path = f"{prefix}{key}"
        if isinstance(child, DictConfig):
            yield from _leaf_paths(child, f"{path}.")
        else:
            yield path


def skipped_stage_overrides(lines, stages) -> list[tuple[str, str]]:
    """``(line, stage)`` for each of a job's override ``lines`` that sets a stage the job does not have (in a
    sweep over experiments, an override of a stage only some of them have; skipped in the others)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    names = {str(name) for name in stages}
    parsed = OverridesParser.create().parse_overrides([str(line) for line in lines])
    return [(o.input_line, _stage_of(o)) for o in parsed if _stage_of(o) is not None and _stage_of(o) not in names]


def skip_absent_stages_in_multiruns() -> None:
    """Let a multirun set a stage's keys in the jobs that have that stage (``-m experiment=drolt_cifar10,
    ride_cifar10 stages.router.method.router.top_k=4``). Hydra applies every override to every composition of a
    multirun, the sweep's base config (composed before an experiment is chosen) and each job's; a key of a stage
    the config lacks stops the whole sweep. Here, in a multirun's compositions only, a ``stages.<name>…`` override
    is dropped where stage ``<name>`` is absent: :func:`check_overrides` has refused a stage no job has, and a job
    prints what it skipped (:func:`longtail.engine.stages.report_skipped_overrides`). Hydra has no hook for this; its
    override step is wrapped (once), at import, so that launcher processes that import the task do it too."""
    ConfigLoaderImpl = hydra_config_loader()
    if ConfigLoaderImpl is None:
        return  # another Hydra: such an override stops the sweep, as before
    apply = ConfigLoaderImpl._apply_overrides_to_config
    if getattr(apply, "skips_absent_stages", False):
        return

    def apply_present(overrides, cfg):
        if _in_multirun(overrides, cfg):
            names = {str(name) for name in cfg.get("stages") or {}}
            overrides = [o for o in overrides if _stage_of(o) is None or _stage_of(o) in names]
        return apply(overrides, cfg)

    apply_present.skips_absent_stages = True
    ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply_present)


def _in_multirun(overrides, cfg: DictConfig) -> bool:
    """Whether a composition is a multirun's: ``-m`` adds ``hydra.mode=MULTIRUN``; a suite sets it in its config."""
    configured = OmegaConf.select(cfg, "hydra.mode", default=None, throw_on_missing=False)
    given = [o.value() for o in overrides if o.key_or_group == "hydra.mode"]
    return any(str(mode).endswith("MULTIRUN") for mode in [configured, *given])


#: overrides that say where files are or how the console looks, not what a run computes
PLACE_ONLY_PREFIXES = ("hydra.", "paths.")
PLACE_ONLY_KEYS = ("datamodule.root", "init_from", "trainer.enable_progress_bar")


def job_identity(overrides) -> list[str]:
    """A run's overrides that change what it computes, sorted: two jobs with the same identity are the same job."""
    return sorted(o for o in overrides or []
                  if override_key(o) not in PLACE_ONLY_KEYS and not override_key(o).startswith(PLACE_ONLY_PREFIXES))


def override_key(line: str) -> str:
    """The key an override line sets: ``+a.b=1`` → ``a.b``."""
    return line.split("=", 1)[0].lstrip("+~")


def _type_message(override, cfg: DictConfig, baseline) -> str | None:
    """Why the override's value cannot feed its key, or ``None`` when it can (or nobody can tell);
    ``baseline()`` is the config without the value overrides."""
    key = override.key_or_group
    values = list(override.sweep_iterator()) if override.is_discrete_sweep() else [override.value()]
    parent = key.rpartition(".")[0]
    annotation = _annotation(OmegaConf.select(cfg, parent, default=None) if parent else None, key.rpartition(".")[2])

    def default():
        return OmegaConf.select(baseline(), key, default=None, throw_on_resolution_failure=False)

    for value in values:
        if isinstance(value, str) and "${" in value:
            continue
        if not (_admits(annotation, value) if annotation is not None else _same_kind(value, default())):
            current = default()
            expected = _describe(annotation) if annotation is not None else _kind(current)
            shown = f"the string '{value}'" if isinstance(value, str) else repr(value)
            return (f"{key}={value}: {key} takes {expected}, got {shown}"
                    f"{'' if current is None else f' (its value here is {current!r})'}.")
    return None


def _annotation(node, name: str):
    """The type annotation of parameter ``name`` of the node's ``_target_``, or ``None`` if unknown."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return None
    from hydra.utils import get_object

    try:
        target = get_object(node._target_)
        function = target.__init__ if inspect.isclass(target) else target
        hints = typing.get_type_hints(function)
    except Exception:
        return None
    return hints.get(name)


def _admits(annotation, value) -> bool:
    """Whether ``value`` (as Hydra parsed it) is acceptable for the type ``annotation``."""
    if annotation is typing.Any:
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_admits(arg, value) for arg in args)
    if origin is typing.Literal:
        return value in args
    if annotation is type(None):
        return value is None
    if origin in (list, tuple, typing.Sequence, set) or annotation in (list, tuple):
        return isinstance(value, (list, tuple))
    kind = origin or annotation
    if not isinstance(kind, type):
        return True
    if kind is bool:
        return isinstance(value, bool)
    if kind in (int, float):
        return _same_kind(value, kind(0))
    if issubclass(kind, (str, os.PathLike)):
        return isinstance(value, str)
    return True


def _same_kind(value, default) -> bool:
    """Whether ``value`` can replace ``default``: a number for a number, a flag for a flag, a list for a list."""
    if value is None or default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, ListConfig)):
        return isinstance(value, (list, tuple))
    return True


KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def _kind(default) -> str:
    if isinstance(default, (list, ListConfig)):
        return "a list like [1,2]"
    return KINDS.get(type(default), type(default).__name__)


def _describe(annotation) -> str:
    """``Optional[int]`` → "an integer or null"; ``Literal['a', 'b']`` → "one of 'a', 'b'"."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(arg) for arg in args))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin in (list, tuple, typing.Sequence, set):
        return "a list"
    return KINDS.get(annotation, getattr(annotation, "__name__", str(annotation)))


skip_absent_stages_in_multiruns()
