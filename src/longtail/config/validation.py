"""Every stage of an experiment checked before the first one trains.

A stage's mistake (a value its method refuses, ``stages.robust.method.centroids=clena``; an argument its class
does not take; a stage that starts from one that does not run before it) otherwise surfaces only when that stage
starts, after the stages before it have trained. :func:`stage_problem` composes every stage's config
(:func:`longtail.engine.stages.stage_configs`) and builds, without data and without training, what the stage builds:

* the data module (its constructor checks its values; no image is read), its on-device augmentation and its
  sampler (on stand-in labels);
* the method, with a stand-in long-tailed class count of the configured size, and its optimizer and scheduler.
  The method is built on the meta device (no memory, no initialisation: an ImageNet network costs nothing); a
  method that computes with its tensors while it is built fails there and is built again on the CPU, so an
  error is only ever reported as the CPU build raises it.

Files a constructor would read (ImageNet weights, a teacher checkpoint) are checked to exist, not read or
downloaded. An error names the key to change: the command line's override that sets the value if there is one,
else the stage's own key (``stages.<name>.…``) or the global one, followed along plain interpolations
(``${drolt.centroids}``).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from longtail.common.compat import is_interpolation, is_none_or_interpolation, raw_child, raw_value, stand_in_trainer

#: constructor arguments that read a file: the check looks for the file and builds without it
FILE_ARGUMENTS = {"pretrained": False, "teacher_checkpoint": None}
#: errors that come from the config (a value, a key, a class name); anything else (missing data included: a
#: config may count an image folder's classes) is left to the run, which reports it before training too
CONFIG_ERRORS = (ValueError, TypeError, LookupError, ImportError, OmegaConfBaseException)
REFERENCE = re.compile(r"\$\{([\w.]+)\}")
ARGUMENT = re.compile(r"^'?([A-Za-z_][\w.]*)'?(?=[ =:])|unexpected keyword argument '(\w+)'")
FULL_KEY = re.compile(r"full_key: (\S+)")
_ABSENT = object()


class FileArgumentError(ValueError):
    """A file a constructor would read does not exist (``path``: where the argument is in the stage config)."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path


class ConflictError(ValueError):
    """Two settings of a stage that do not go together (``path``: the one to change, in the stage config)."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path


def stage_problem(cfg: DictConfig, user_keys=()) -> str | None:
    """Why a stage of the composed ``cfg`` would fail to start (the first one, in stage order), or ``None``;
    ``user_keys`` are the keys the command line sets, named in preference to the config's own."""
    from longtail.engine.stages import stage_configs

    try:
        stages = stage_configs(cfg)
    except CONFIG_ERRORS as error:
        return str(error)
    problem = order_problem(cfg, [name for name, _ in stages])
    for name, stage_cfg in stages:
        for part, check in (("datamodule", check_data), ("method", check_method), ("sampler", check_pairs)):
            problem = problem or _problem_of(check, part, cfg, name, stage_cfg, list(user_keys))
    return problem


def _problem_of(check, part: str, cfg: DictConfig, stage: str, stage_cfg: DictConfig, user_keys: list) -> str | None:
    """The message for what ``check(stage_cfg)`` raises (its warnings silenced: the run gives them), or ``None``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check(stage_cfg)
    except Exception as error:
        return _located(error, part, cfg, stage, stage_cfg, user_keys)
    return None


def order_problem(cfg: DictConfig, order: list[str]) -> str | None:
    """A stage that starts from (``init_stage``) or evaluates (``evaluates``) a stage that does not run before it
    (checked when the whole experiment runs; ``stage=<name>`` runs one stage from ``init_from``)."""
    if cfg.get("stage") is not None:
        return None
    for index, name in enumerate(order):
        for key, verb in (("init_stage", "starts from"), ("evaluates", "evaluates")):
            other = cfg.stages[name].get(key)
            if other is not None and other not in order[:index]:
                return (f"stages.{name}.{key}={other}: stage '{name}' {verb} stage '{other}', which does not run "
                        f"before it (the stages, in order: {', '.join(order)})")
    return None


def check_data(stage_cfg: DictConfig) -> None:
    """Build the stage's data module (no image is read), its augmentation and its sampler on stand-in labels; first,
    the split strategy must allow the validation asked for (Difficulty-Net's split validates on its held-out set,
    docs/methods/diffnet.md §1)."""
    from hydra.utils import instantiate

    from longtail.data.split_strategies import SPLIT_STRATEGIES, protocol_val_problem

    protocol, val = stage_cfg.datamodule.get("protocol", "ldam"), stage_cfg.datamodule.get("val", "none")
    problem = protocol_val_problem(protocol, val) if protocol in SPLIT_STRATEGIES else None
    if problem:
        raise ConflictError("datamodule.val", problem)
    datamodule = instantiate(stage_cfg.datamodule)
    datamodule.batch_transforms()
    if datamodule.sampler_factory is not None:
        datamodule.sampler_factory(labels=_labels(_counts(stage_cfg)), seed=0)


def check_pairs(stage_cfg: DictConfig) -> None:
    """Settings that must agree across the stage's parts, refused when the config is composed rather than when the
    stage reaches them: each method says which of its settings conflict with the rest of the stage
    (``LongTailModule.config_conflict``, e.g. IP-DPP's k and its capped subset's cap)."""
    from longtail.methods import method_class

    cls = method_class(stage_cfg.method.get("_target_"))
    conflict = cls.config_conflict(stage_cfg) if cls is not None else None
    if conflict is not None:
        raise ConflictError(*conflict)


def check_method(stage_cfg: DictConfig) -> None:
    """Build the stage's method for stand-in class counts (on the meta device, else on the CPU), and its
    optimizer and scheduler."""
    method = _without_file_reads(OmegaConf.to_container(stage_cfg.method, resolve=True), "method")
    performance = OmegaConf.to_container(stage_cfg.performance, resolve=True)
    try:
        model = _build_method(method, _counts(stage_cfg), performance, "meta")
    except Exception:
        model = _build_method(method, _counts(stage_cfg), performance, "cpu")
    if model.requires_training:
        max_epochs = stage_cfg.trainer.get("max_epochs") or 1
        stand_in_trainer(model, max_epochs)
        model.configure_optimizers()


def _build_method(method: dict, counts: list[int], performance: dict, device: str):
    """The method on ``device`` (its nested objects instantiated by Hydra, then the class called with the class
    counts: Hydra would otherwise copy a long count list into its config, seconds for iNaturalist)."""
    import torch
    from hydra.utils import instantiate

    with torch.device(device):
        build = instantiate(OmegaConf.create(method), _partial_=True)
        return build(class_counts=counts, class_names=None, **performance)


def stand_in_counts(num_classes: int, imbalance_factor: float | None, largest: int = 500) -> list[int]:
    """Training images per class as the configured long-tailed profile would have them (exponential, ``largest``
    for the head class): what the constructors see instead of the data's counts."""
    factor = float(imbalance_factor or 1.0)
    last = max(int(num_classes) - 1, 1)
    return [max(1, round(largest * factor ** (-index / last))) for index in range(int(num_classes))]


def _counts(stage_cfg: DictConfig) -> list[int]:
    return stand_in_counts(stage_cfg.datamodule.num_classes, stage_cfg.datamodule.get("imbalance_factor"))


def _labels(counts: list[int]):
    import torch

    return torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))


def _without_file_reads(node, path: str):
    """``node`` (a resolved config) with every argument that reads a file turned off, after checking that a file
    it names exists (``True``, torchvision's cached or downloaded weights, is not checked)."""
    if isinstance(node, list):
        return [_without_file_reads(item, f"{path}.{index}") for index, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    plain = {}
    for key, value in node.items():
        if key in FILE_ARGUMENTS and value not in (None, False):
            if isinstance(value, str) and not Path(value).expanduser().is_file():
                raise FileArgumentError(f"{path}.{key}", f"there is no file '{value}'")
            value = FILE_ARGUMENTS[key]
        plain[key] = _without_file_reads(value, f"{path}.{key}")
    return plain


def _cause(error: Exception) -> Exception | None:
    """The error the config caused, unwrapped from Hydra's instantiation error, or ``None`` for any other (also
    for one raised over a missing file: ``${folder_class_count:…}`` counting the classes of a data folder that is
    not there, which the run reports as it starts)."""
    from hydra.errors import InstantiationException

    inner = error
    while isinstance(inner, InstantiationException) and inner.__cause__ is not None:
        inner = inner.__cause__
    if any(isinstance(link, OSError) for link in _chain(inner)):
        return None
    return inner if isinstance(inner, (*CONFIG_ERRORS, InstantiationException)) else None


def _chain(error: BaseException):
    """``error`` and the errors it was raised from or while handling."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _located(error: Exception, part: str, cfg: DictConfig, stage: str, stage_cfg: DictConfig,
             user_keys: list) -> str | None:
    """The message for ``error``, raised building ``part`` (``method`` or ``datamodule``) of stage ``stage``: the
    key to change, its value and the reason."""
    cause = _cause(error)
    if cause is None:
        return None  # not the config's doing: the run reports it
    reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    where = f"stage '{stage}' of {cfg.get('name', 'this run')}, checked before any stage trains"
    path = _failing_path(error, cause, part, stage_cfg)
    if path is None:
        return f"{reason} ({where})"
    key = _key_to_change(cfg, stage, path, user_keys)
    value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    shown = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
    return f"{key}={'null' if shown is None else shown}: {reason} ({where})"


def _failing_path(error: Exception, cause: Exception, part: str, stage_cfg: DictConfig) -> str | None:
    """Where in the stage config the failing value is: named by the error (a file argument, an interpolation),
    or the argument its message starts with (``centroids must be one of …``), looked up under the node that
    failed (Hydra's ``full_key``: relative to the method, which is built from a copy), then under ``part``."""
    if isinstance(cause, (FileArgumentError, ConflictError)):
        return cause.path
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        return cause.full_key
    match = ARGUMENT.search(str(cause))
    if match is None:
        return None
    name = match.group(1) or match.group(2)
    if "." in name and OmegaConf.select(stage_cfg, name, default=_ABSENT,
                                        throw_on_resolution_failure=False) is not _ABSENT:
        return name
    full_key = FULL_KEY.search(str(error))
    failed = full_key.group(1) if full_key else part
    roots = [f"method.{failed}" if part == "method" and full_key else failed, part]
    for root in roots:
        found = _paths_named(stage_cfg, root, name.rpartition(".")[2], str(cause))
        if found:
            return found
    return None


def _paths_named(stage_cfg: DictConfig, root: str, name: str, message: str) -> str | None:
    """The key called ``name`` under ``root`` (through interpolations), preferring one whose value the message
    quotes, then the shallowest."""
    node = OmegaConf.select(stage_cfg, root, default=None, throw_on_resolution_failure=False)
    if not isinstance(node, DictConfig):
        return None
    try:
        container = OmegaConf.to_container(node, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException:
        container = OmegaConf.to_container(node, resolve=False)
    found = sorted(_walk(container, root, name), key=lambda item: (str(item[1]) not in message, item[0].count(".")))
    return found[0][0] if found else None


def _walk(node, path: str, name: str):
    """``(path, value)`` of every key called ``name`` in a resolved config."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == name:
                yield f"{path}.{key}", value
            yield from _walk(value, f"{path}.{key}", name)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}.{index}", name)


def _key_to_change(cfg: DictConfig, stage: str, path: str, user_keys: list) -> str:
    """The key that sets ``path`` of the stage's config: a command-line key among those that feed it, else the
    last of them (the one holding the value)."""
    chain = _setting_keys(cfg, stage, path)
    return next((key for key in chain if key in user_keys), chain[-1])


def _setting_keys(cfg: DictConfig, stage: str, path: str, depth: int = 0) -> list[str]:
    """The keys that feed ``path`` of the stage's config, nearest first: the stage's own or the global one, then
    the keys an interpolation on the way reads (``method.network`` → ``model``)."""
    prefix = f"stages.{stage}" if stage in (cfg.get("stages") or {}) else "stage"
    parts = path.split(".")
    for cut in range(1, len(parts) + 1):
        head, rest = ".".join(parts[:cut]), parts[cut:]
        where = next((w for w in (f"{prefix}.{head}", head) if _raw(cfg, w) is not _ABSENT), None)
        if where is None:
            break
        raw = _raw(cfg, where)
        references = REFERENCE.findall(raw) if isinstance(raw, str) else []
        if references and depth < 8:
            followed = [key for ref in references for key in _setting_keys(cfg, stage, ".".join([ref, *rest]), depth + 1)]
            return [".".join([where, *rest]), *followed] if rest else [where, *followed]
    own = f"{prefix}.{path}"
    return [own if _raw(cfg, own) is not _ABSENT else path]


def _raw(cfg: DictConfig, key: str):
    """The value at ``key`` as written (an interpolation unresolved), or ``_ABSENT``."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or is_none_or_interpolation(node):
            return _ABSENT
        node = raw_child(node, part)
        if node is None:
            return _ABSENT
    return raw_value(node) if is_interpolation(node) or not isinstance(node, (DictConfig, ListConfig)) else node
