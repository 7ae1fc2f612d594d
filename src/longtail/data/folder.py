"""Any image folder: ``root/train/<class>/*``, ``root/test/<class>/*`` and optionally ``root/val/<class>/*``."""

from __future__ import annotations

from pathlib import Path

from longtail.data.cache import SPLITS, ImageTree, is_tarball, open_tree
from longtail.data.splits import ArraySplit, FileSplit


class ImageFolderSource:
    """Classes are the sorted folder names under ``train/``; files within a class sort by name.

    Args:
        root: the folder holding ``train/`` and ``test/`` (``datamodule.root=PATH``), or a tarball of it
            (``in_memory=True`` only).
        in_memory: decode every image once into a cached uint8 :class:`ArraySplit` (small data sets);
            otherwise a :class:`FileSplit` decoded per image by the data loader.
        image_size: with ``in_memory``, resize every image to ``image_size × image_size``
            (required if the images differ in size).
        cache_dir: where the decoded arrays go (default: ``<root>/.longtail_cache`` or ``~/.cache/longtail``).

    ``provenance`` says where the images are and how they are ordered (for ``results.json``).
    """

    def __init__(self, root: str | Path, in_memory: bool = False, image_size: int | None = None,
                 cache_dir: str | Path | None = None):
        root = Path(root).expanduser()
        if not root.exists():
            raise FileNotFoundError(
                f"image folder '{root}' does not exist: it must contain train/<class>/<image> and "
                f"test/<class>/<image> (optionally val/<class>/<image>); point datamodule.root=PATH at it"
            )
        if is_tarball(root) and not in_memory:
            raise ValueError(f"'{root}' is an archive: extract it and point datamodule.root at the folder, "
                             f"or use in_memory=True to decode it straight from the archive")
        self.root, self.in_memory, self.image_size = root, in_memory, image_size
        self.tree: ImageTree = open_tree(root, cache_dir)
        self.tree.require("train")
        self.tree.require("test")
        self.class_names = self.tree.class_names
        self.num_classes = len(self.class_names)
        kind = "archive" if is_tarball(root) else "folder"
        decoded = "" if not in_memory else \
            f"; decoded in memory{f', resized to {image_size}x{image_size}' if image_size else ''}"
        self.provenance = (f"image {kind} {root.resolve()}: classes = sorted folder names under train/, files sorted "
                           f"by name{decoded}")

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
