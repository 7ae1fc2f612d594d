"""A recipe's augmentation reaches the transform its training loader really uses, in every stage of every experiment.

For each stage the data module is instantiated from the stage's composed config and its training loader is built
on a tiny stand-in split of the type the configured source returns (uint8 arrays for CIFAR and the digits, files
for the list data sets): no data set is read. The operations of the two layers that loader runs — the per-image
transform of file-decoded data (crop, flip, colour jitter in the workers) and the batch transform run on the
device (:meth:`LongTailDataModule.batch_transforms`) — must be exactly the configured ones: the stage's
``augment`` on the device, the data module's own crop settings per image.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import kornia.augmentation as K
import pytest
import torch
from conftest import CONF_DIR, compose_config
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from torchvision.transforms import v2

from longtail.data.augment import BatchAugment, BatchEval
from longtail.data.decode import FileImageDataset
from longtail.data.policies import BatchAutoAugment, BatchRandAugment
from longtail.data.simclr import SimCLRAugment
from longtail.data.splits import ArraySplit, FileSplit
from longtail.engine.stages import stage_configs

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
# one experiment per kind of data and augmentation runs in the fast tier; composing all of them takes ~25 s
FAST = {"drolt_imagenet_lt",  # stages' AutoAugment + Cutout on list data
        "drolt_cifar10",  # the same on in-memory CIFAR
        "ipdpp_imagenet_lt",  # SimCLR views on list data
        "diffnet_imagenet_lt_resnet50",  # colour jitter + RandAugment on list data, reflect pad per image
        "ride_cifar10",  # rotation
        "ce_imagenet_lt_resnet50",  # the loader's crop, flip and jitter alone
        "ride_distill_inat_resnet50"}  # the loader's crop and flip alone
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
# the split type each configured source returns: a new source needs its entry here
SPLIT_TYPES = {
    "longtail.data.cifar.CIFARSource": ArraySplit,
    "longtail.data.digits.DigitsSource": ArraySplit,
    "longtail.data.lists.imagenet_lt": FileSplit,
    "longtail.data.lists.places_lt": FileSplit,
    "longtail.data.lists.inat2018": FileSplit,
}
# per-image ops of the file loader (torchvision v2) and the kornia steps of SimCLRAugment, by class
PER_IMAGE_OPS = {v2.RandomResizedCrop: "resized_crop", v2.RandomHorizontalFlip: "flip", v2.ColorJitter: "color_jitter",
                 v2.Pad: "reflect_pad", v2.PILToTensor: None}
KORNIA_OPS = {K.RandomResizedCrop: "resized_crop", K.RandomHorizontalFlip: "flip", K.ColorJitter: "color_jitter",
              K.RandomGrayscale: "grayscale", K.RandomGaussianBlur: "blur"}


def with_defaults(node: DictConfig | None) -> dict:
    """A ``_target_`` node's resolved keys over its target's own defaults: what the constructor is called with."""
    if node is None:
        return {}
    values = OmegaConf.to_container(node, resolve=True)
    parameters = inspect.signature(get_object(values["_target_"])).parameters.values()
    return {**{p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}, **values}


def configured_batch_ops(augment: dict) -> set[str]:
    """The operations a stage's ``augment`` config asks for, read from the config alone."""
    if not augment:
        return set()
    if get_object(augment["_target_"]) is SimCLRAugment:
        wanted = {"resized_crop": True, "flip": augment["hflip"], "blur": augment["blur_p"] > 0,
                  "color_jitter": augment["strength"] > 0 and augment["jitter_p"] > 0,
                  "grayscale": augment["grayscale_p"] > 0}
        return {name for name, on in wanted.items() if on}
    cutout = augment["cutout"]
    wanted = {"pad_crop": bool(augment["crop_padding"]), "flip": augment["hflip"], "rotation": bool(augment["rotation"]),
              "color_jitter": augment["color_jitter"] is not None, "randaugment": augment["randaugment"] is not None,
              f"autoaugment({augment['autoaugment']})": augment["autoaugment"] is not None,
              "cutout" if cutout and cutout.get("size") else "random_erasing": cutout is not None}
    return {name for name, on in wanted.items() if on}


def configured_per_image_ops(datamodule: dict) -> set[str]:
    """The per-image operations of a file-decoded training image, from the data module's config."""
    wanted = {"resized_crop": True, "flip": True, "color_jitter": bool(datamodule["color_jitter"]),
              "reflect_pad": bool(datamodule["train_reflect_pad"])}
    return {name for name, on in wanted.items() if on}


def batch_ops(transform: torch.nn.Module) -> set[str]:
    """The operations the built on-device transform applies, read from the object the loader's batches go through."""
    if isinstance(transform, SimCLRAugment):
        return {KORNIA_OPS[type(step)] for step in transform.pipeline if step.p > 0}
    if not isinstance(transform, BatchAugment):
        assert type(transform) is BatchEval, f"unknown batch transform {type(transform).__name__}: teach this test"
        return set()
    policies = {f"autoaugment({p.policy})" if isinstance(p, BatchAutoAugment) else "randaugment"
                for p in transform.policies if isinstance(p, (BatchAutoAugment, BatchRandAugment))}
    cutout = transform.cutout
    found = {"pad_crop": bool(transform.crop_padding), "flip": transform.hflip, "rotation": bool(transform.rotation),
             "color_jitter": transform.color_jitter is not None,
             "cutout" if cutout and cutout.get("size") else "random_erasing": cutout is not None}
    return policies | {name for name, on in found.items() if on}


def per_image_ops(transform) -> set[str]:
    """The operations of the per-image training transform of file-decoded data (a ``v2.Compose``)."""
    unknown = [type(t).__name__ for t in transform.transforms if type(t) not in PER_IMAGE_OPS]
    assert not unknown, f"unknown per-image transforms {unknown}: teach this test"
    return {PER_IMAGE_OPS[type(t)] for t in transform.transforms} - {None}


def stand_in_split(split_type: type, num_classes: int, channels: int):
    """One tiny image per class of the type the source returns (file paths are never opened)."""
    labels = torch.arange(num_classes)
    if split_type is ArraySplit:
        return ArraySplit(torch.zeros(num_classes, channels, 8, 8, dtype=torch.uint8), labels, labels)
    return FileSplit(Path("unused"), [f"{c}.jpg" for c in range(num_classes)], labels)


def tiered(experiments: list[str]) -> list:
    """The experiments as test parameters, those outside :data:`FAST` marked slow."""
    return [e if e in FAST else pytest.param(e, marks=pytest.mark.slow) for e in experiments]


@functools.lru_cache(maxsize=None)
def stages(experiment: str) -> tuple:
    """Per stage: (name, split type, per-image ops (None for in-memory data), device ops, and the configured
    per-image and device ops)."""
    built = []
    for name, cfg in stage_configs(compose_config([f"experiment={experiment}"])):
        datamodule_cfg = with_defaults(cfg.datamodule)
        split_type = SPLIT_TYPES.get(cfg.datamodule.source._target_)
        assert split_type, f"{experiment}/{name}: unknown source {cfg.datamodule.source._target_}: add it to SPLIT_TYPES"
        datamodule = instantiate(cfg.datamodule)
        datamodule.train_split = stand_in_split(split_type, datamodule.num_classes, datamodule.channels)
        loader = datamodule.train_dataloader()
        files = isinstance(loader.dataset, FileImageDataset)
        augment = with_defaults(cfg.get("augment")) or with_defaults(cfg.datamodule.get("augment"))
        built.append((name, split_type, per_image_ops(loader.dataset.transform) if files else None,
                      batch_ops(datamodule.batch_transforms()[0]),
                      configured_per_image_ops(datamodule_cfg) if files else None, configured_batch_ops(augment)))
    return tuple(built)


@pytest.mark.parametrize("experiment", tiered(EXPERIMENTS))
def test_the_configured_augmentation_is_what_the_training_loader_applies(experiment):
    for name, _, per_image, device, wanted_per_image, wanted_device in stages(experiment):
        assert device == wanted_device, (
            f"{experiment}/{name}: the stage's augment asks for {sorted(wanted_device)} but its training batches get "
            f"{sorted(device) or 'no augmentation'} on the device (missing {sorted(wanted_device - device)})")
        assert per_image == wanted_per_image, (
            f"{experiment}/{name}: per-image training transform {per_image}, configured {wanted_per_image}")


@pytest.mark.parametrize("experiment", tiered(EXPERIMENTS))
def test_file_decoded_crops_get_imagenet_size_batch_augmentation(experiment):
    """The loader already random-resized-crops and flips each file image: a batch augmentation on top of it pads and
    crops no further, flips no second time and uses no CIFAR AutoAugment policy (SimCLR's own views excepted)."""
    for name, split_type, _, device, _, _ in stages(experiment):
        if split_type is FileSplit and "resized_crop" not in device:
            cifar_only = device & {"pad_crop", "flip", "autoaugment(cifar10)"}
            assert not cifar_only, f"{experiment}/{name}: CIFAR-size {sorted(cifar_only)} on the loader's 224-px crops"
