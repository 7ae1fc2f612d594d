"""Any image folder: ``root/train/<class>/*``, ``root/test/<class>/*`` and optionally ``root/val/<class>/*``.

``datamodule=image_folder`` takes everything it can from the folder itself:

* the class count: ``datamodule.num_classes`` is ``${folder_classes:${datamodule.root}}``, the number of
  ``train/<class>/`` folders holding images (:func:`folder_class_count`); a ``num_classes`` that disagrees is
  refused;
* the image size (``in_memory="auto"``): small images, whose larger side is at most ``small_max`` (64) px
  like CIFAR's 32, are decoded once into memory at their own size and augmented in batches by the recipe's
  ``augment``, as CIFAR is; larger images are decoded per image by the loader workers with the ImageNet-style
  crop (``datamodule.image_size`` / ``resize``).
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from omegaconf import OmegaConf
from PIL import Image

from longtail.data.cache import SPLITS, ImageTree, _is_image, _member_name, is_tarball, open_tree
from longtail.data.splits import ArraySplit, FileSplit

#: ``in_memory="auto"``: images whose larger side is at most this many pixels are small (CIFAR 32, Tiny ImageNet 64)
SMALL_IMAGE_MAX = 64
IN_MEMORY_CHOICES = (True, False, "auto")


def _missing_folder(root: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"image folder '{root}' does not exist: it must contain train/<class>/<image> and "
        f"test/<class>/<image> (optionally val/<class>/<image>); point datamodule.root=PATH at it"
    )


def _has_image(folder: str) -> bool:
    return any(entry.is_file() and _is_image(entry.name) for entry in os.scandir(folder))


def folder_class_count(root: str | Path) -> int:
    """How many classes the image folder (or tarball) at ``root`` has: its ``train/<class>/`` folders that hold
    at least one image, the classes :class:`ImageFolderSource` reads. It is the ``${folder_classes:<root>}``
    resolver, so ``datamodule=image_folder`` needs no ``num_classes``: the model's output size follows the data."""
    root = Path(str(root)).expanduser()
    if not root.exists():
        raise _missing_folder(root)
    if is_tarball(root):
        return len(open_tree(root).class_names)
    train = root / "train"
    if not train.is_dir():
        raise FileNotFoundError(
            f"'{root}' has no train/ folder: an image folder holds train/<class>/<image> and test/<class>/<image>; "
            f"point datamodule.root=PATH at the folder that contains train/"
        )
    classes = [e.name for e in os.scandir(train) if e.is_dir() and not e.name.startswith(".") and _has_image(e.path)]
    if not classes:
        raise FileNotFoundError(f"no images under '{train}/<class>/': put each class's images in train/<class>/")
    return len(classes)


OmegaConf.register_new_resolver("folder_classes", folder_class_count, replace=True)


def _first_image_size(tree: ImageTree) -> tuple[int, int]:
    """(width, height) of the first training image, read from its header (a tarball is read up to it)."""
    relpath = tree.require("train")[0][0]
    if not is_tarball(tree.path):
        with Image.open(tree.path / relpath) as image:
            return image.size
    wanted = f"{tree.prefix}/{relpath}" if tree.prefix else relpath
    with tarfile.open(tree.path) as tar:
        member = next(m for m in tar if _member_name(m.name) == wanted)
        with Image.open(io.BytesIO(tar.extractfile(member).read())) as image:
            return image.size


class ImageFolderSource:
    """Classes are the sorted folder names under ``train/``; files within a class sort by name.

    Args:
        root: the folder holding ``train/`` and ``test/`` (``datamodule.root=PATH``), or a tarball of it
            (decoded in memory only).
        in_memory: ``True``: decode every image once into a cached uint8 :class:`ArraySplit` (small data sets);
            ``False``: a :class:`FileSplit` decoded per image by the data loader; ``"auto"``: ``True`` when the
            first training image's larger side is at most ``small_max`` px, then at ``image_size`` or, unset,
            that side (every image resized to S×S: the images' own size), else ``False``.
        image_size: in memory, resize every image to ``image_size × image_size`` (needed with ``in_memory=True``
            if the images differ in size).
        cache_dir: where the decoded arrays go (default: ``<root>/.longtail_cache`` or ``~/.cache/longtail``).
        num_classes: the class count the config expects (``datamodule.num_classes``); refused if the folder
            has another (``None``: no check).
        small_max: the largest side, in px, of images ``in_memory="auto"`` decodes in memory.

    ``provenance`` says where the images are, how they are ordered and decoded (for ``results.json``).
    """

    def __init__(self, root: str | Path, in_memory: bool | str = False, image_size: int | None = None,
                 cache_dir: str | Path | None = None, num_classes: int | None = None,
                 small_max: int = SMALL_IMAGE_MAX):
        root = Path(root).expanduser()
        if not root.exists():
            raise _missing_folder(root)
        if in_memory not in IN_MEMORY_CHOICES:
            raise ValueError(f"datamodule.source.in_memory must be one of true, false, auto; got {in_memory!r}")
        if is_tarball(root) and in_memory is False:
            raise ValueError(f"'{root}' is an archive: extract it and point datamodule.root at the folder, "
                             f"or use in_memory=True to decode it straight from the archive")
        self.root = root
        self.tree: ImageTree = open_tree(root, cache_dir)
        self.tree.require("train")
        self.tree.require("test")
        self.class_names = self.tree.class_names
        self.num_classes = len(self.class_names)
        self._check_class_count(num_classes)
        self.in_memory, self.image_size, how = self._decoding(in_memory, image_size, small_max)
        kind = "archive" if is_tarball(root) else "folder"
        self.provenance = (f"image {kind} {root.resolve()}: {self.num_classes} classes = sorted folder names under "
                           f"train/, files sorted by name; {how}")

    def _check_class_count(self, expected: int | None) -> None:
        """Refuse a configured class count the folder does not have (a leftover ``datamodule.num_classes=N``)."""
        if expected is None or expected == self.num_classes:
            return
        shown = ", ".join(self.class_names[:8]) + (", ..." if self.num_classes > 8 else "")
        raise ValueError(
            f"'{self.root}' has {self.num_classes} classes but the config expects {expected} "
            f"(datamodule.num_classes={expected}): an image folder has one class per train/<class>/ folder "
            f"({shown}). Leave datamodule.num_classes out (it follows the folder), or add the missing class folders"
        )

    def _decoding(self, in_memory: bool | str, image_size: int | None, small_max: int):
        """(in memory?, in-memory size, how it is decoded in words) for the ``in_memory`` / ``image_size`` asked."""
        if in_memory == "auto":
            width, height = _first_image_size(self.tree)
            side = max(width, height)
            if side <= small_max:
                size = image_size or side
                return True, size, (f"decoded in memory at {size}x{size} px (in_memory=auto: the first image is "
                                    f"{width}x{height}, at most {small_max} px)")
            if is_tarball(self.root):
                raise ValueError(
                    f"'{self.root}' is an archive of {width}x{height} images, too large to decode in memory by "
                    f"default: extract it and point datamodule.root at the folder, or set "
                    f"datamodule.source.in_memory=true datamodule.source.image_size=<px>"
                )
            return False, None, (f"decoded per image by the data loader (in_memory=auto: the first image is "
                                 f"{width}x{height}, larger than {small_max} px)")
        if in_memory:
            resized = f" at {image_size}x{image_size} px" if image_size else ""
            return True, image_size, f"decoded in memory{resized}"
        return False, image_size, "decoded per image by the data loader"

    def load(self, split: str) -> ArraySplit | FileSplit:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
        if split == "val" and not self.tree.listing.get("val"):
            raise ValueError(
                f"'{self.root}' has no val/<class>/ folder: use datamodule.val=heldout (carve a balanced "
                f"split out of train) or datamodule.val=none"
            )
        if self.in_memory:
            return self.tree.load_arrays(split, self.image_size)
        entries = self.tree.require(split)
        return FileSplit(self.root, [path for path, _ in entries], self.tree.labels(split))
