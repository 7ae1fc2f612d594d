"""Image-folder trees (a directory or a .tar.gz of one), decoded once into cached uint8 arrays.

Layout: ``<split>/<class>/<file>`` for split in train/val/test. Classes are the sorted folder
names of ``train/``; files within a class sort by name. The first in-memory load decodes every
image with PIL (2 worker processes, tqdm bar) and writes ``<split>[_<size>].images.npy`` /
``.labels.npy`` / ``.json`` to the cache dir; later loads read the ``.npy`` files.

Cache dir: ``<root>/.longtail_cache/`` for a writable directory; for a read-only directory and for
a tarball, ``$LONGTAIL_CACHE_DIR`` or ``~/.cache/longtail/`` (one sub-folder per data set, named
after it plus a hash of its absolute path). A tarball is decoded straight from the archive: nothing
is extracted.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from longtail.data.splits import ArraySplit

SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CACHE_VERSION = 1


def is_tarball(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(TAR_SUFFIXES)


def _member_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def user_cache_dir(path: Path) -> Path:
    """A folder of the user's cache (``LONGTAIL_CACHE_DIR``, default ``~/.cache/longtail``) for data at ``path``."""
    base = Path(os.environ.get("LONGTAIL_CACHE_DIR") or Path.home() / ".cache" / "longtail")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = path.name.split(".")[0] or "data"
    return base / f"{name}-{digest}"


def _may_write(folder: Path) -> bool:
    """Writable, and not a read-only folder (no write bit at all) that only root could write to."""
    try:
        return bool(folder.stat().st_mode & 0o222) and os.access(folder, os.W_OK)
    except OSError:
        return False


def _writable_dir(path: Path) -> bool:
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not _may_write(existing):
        return False
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_probe_{os.getpid()}"
        probe.touch()
        probe.unlink()
        return True
    except OSError:
        return False


def default_cache_dir(path: Path) -> Path:
    """``<root>/.longtail_cache`` for a writable folder; otherwise, and always for a tarball (archives
    usually sit in shared data folders), ``$LONGTAIL_CACHE_DIR`` or ``~/.cache/longtail/<name>-<hash>``."""
    path = Path(path)
    if not path.is_file():
        preferred = path / ".longtail_cache"
        if _writable_dir(preferred):
            return preferred
    fallback = user_cache_dir(path)
    if not _writable_dir(fallback):
        raise PermissionError(
            f"cannot write a decode cache for '{path}' to '{fallback}': set LONGTAIL_CACHE_DIR to a writable folder"
        )
    return fallback


# --------------------------------------------------------------------------- decoding


def decode_image(item, size: int | None = None) -> np.ndarray:
    """One image (a path or the encoded bytes) as uint8 (H, W, 3), optionally resized to size×size."""
    source = io.BytesIO(item) if isinstance(item, (bytes, bytearray)) else item
    with Image.open(source) as image:
        image = image.convert("RGB")
        if size is not None and image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def _decode_worker(args):
    return decode_image(*args)


def decode_images(items: list, size: int | None = None, workers: int | None = None, desc: str = "decoding") -> np.ndarray:
    """Decode images (paths or bytes) into one uint8 (N, 3, H, W) array, with a progress bar.

    Uses a pool of ``min(2, cpu count)`` processes for more than a few hundred images
    (``LONGTAIL_DECODE_WORKERS`` overrides). All images must share one size unless ``size`` is given.
    """
    from tqdm.auto import tqdm

    if not items:
        raise ValueError("no images to decode")
    if workers is None:
        workers = int(os.environ.get("LONGTAIL_DECODE_WORKERS", min(2, os.cpu_count() or 1)))
    first = decode_image(items[0], size)
    out = np.empty((len(items), *first.shape), dtype=np.uint8)
    jobs = [(item, size) for item in items]
    bar = tqdm(total=len(items), desc=desc, unit="img", leave=False, mininterval=1.0)

    def fill(results):
        for i, image in enumerate(results):
            if image.shape != first.shape:
                raise ValueError(
                    f"image {i} ({_describe(items[i])}) is {image.shape[1]}x{image.shape[0]} but the first is "
                    f"{first.shape[1]}x{first.shape[0]}: pass image_size=... to resize to a common size"
                )
            out[i] = image
            bar.update(1)

    try:
        if workers > 1 and len(items) >= 512:
            method = "fork" if "fork" in mp.get_all_start_methods() else None
            with mp.get_context(method).Pool(workers) as pool:
                fill(pool.imap(_decode_worker, jobs, chunksize=256))
        else:
            fill(map(_decode_worker, jobs))
    finally:
        bar.close()
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _describe(item) -> str:
    return f"{len(item)} bytes" if isinstance(item, (bytes, bytearray)) else str(item)


# --------------------------------------------------------------------------- trees


class ImageTree:
    """``<split>/<class>/<file>`` images in a directory (:class:`DirTree`) or a tarball (:class:`TarTree`)."""

    path: Path
    #: split -> list of (relative path, class folder name), sorted by (class, file name)
    listing: dict[str, list[tuple[str, str]]]

    def __init__(self, path: Path, cache_dir: Path | None = None):
        self.path = Path(path)
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None

    @property
    def cache_dir(self) -> Path:
        if self._cache_dir is None:
            self._cache_dir = default_cache_dir(self.path)
        return self._cache_dir

    # subclasses provide: _list() -> dict split -> list[(relpath, class)], fingerprint(), read(split, relpaths)

    @property
    def splits(self) -> list[str]:
        return [s for s in SPLITS if self.listing.get(s)]

    @property
    def class_names(self) -> list[str]:
        if "train" not in self.listing or not self.listing["train"]:
            raise FileNotFoundError(
                f"no images found under '{self._where('train')}/<class>/': expected train/<class>/*.jpg "
                f"(and test/<class>/*.jpg) inside '{self.path}'"
            )
        names = sorted({cls for _, cls in self.listing["train"]})
        for split in self.splits:
            extra = sorted({cls for _, cls in self.listing[split]} - set(names))
            if extra:
                raise ValueError(
                    f"'{self._where(split)}' has class folders that train/ lacks: {extra[:5]}"
                    f"{' ...' if len(extra) > 5 else ''}; every class needs a train/<class>/ folder"
                )
        return names

    def _where(self, split: str) -> str:
        return f"{self.path}/{split}" if not is_tarball(self.path) else f"{self.path}:{split}"

    def require(self, split: str) -> list[tuple[str, str]]:
        entries = self.listing.get(split)
        if not entries:
            raise FileNotFoundError(
                f"no images under '{self._where(split)}/<class>/' (the image-folder layout is "
                f"<root>/{split}/<class>/<image>); point datamodule.root=PATH at the folder that contains {split}/"
            )
        return entries

    def labels(self, split: str) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.array([index[cls] for _, cls in self.require(split)], dtype=np.int64)

    # ---- in-memory arrays, cached

    def _cache_files(self, split: str, size: int | None) -> dict[str, Path]:
        stem = split if size is None else f"{split}_{size}"
        return {k: self.cache_dir / f"{stem}.{k}" for k in ("images.npy", "labels.npy", "json")}

    def _cache_key(self, split: str, size: int | None) -> dict:
        return {"version": CACHE_VERSION, "split": split, "size": size, "source": self.fingerprint(split)}

    def _read_cache(self, split: str, size: int | None):
        files = self._cache_files(split, size)
        try:
            meta = json.loads(files["json"].read_text())
            if meta.get("key") != self._cache_key(split, size):
                return None
            images = np.load(files["images.npy"])
            labels = np.load(files["labels.npy"])
        except (OSError, ValueError):
            return None
        if not len(images) == len(labels) == meta.get("n"):
            return None
        return images, labels, meta["class_names"]

    def _write_cache(self, split: str, size: int | None, images: np.ndarray, labels: np.ndarray) -> None:
        files = self._cache_files(split, size)
        files["json"].unlink(missing_ok=True)  # the json is the commit marker: written last
        for key, array in (("images.npy", images), ("labels.npy", labels)):
            tmp = files[key].with_name(f"{files[key].name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, array)
            os.replace(tmp, files[key])
        meta = {"key": self._cache_key(split, size), "n": int(len(labels)), "class_names": self.class_names}
        tmp = files["json"].with_name(f"{files['json'].name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, files["json"])

    def splits_to_build_with(self, split: str) -> list[str]:
        return [split]

    def load_arrays(self, split: str, size: int | None = None) -> ArraySplit:
        """The split as an :class:`ArraySplit` (ids = position in the sorted file listing)."""
        cached = self._read_cache(split, size)
        if cached is None:
            self.require(split)
            todo = [s for s in self.splits_to_build_with(split) if s == split or self._read_cache(s, size) is None]
            items = self.read(todo)
            for s in todo:
                images = decode_images(items[s], size, desc=f"decoding {self.path.name}/{s}")
                self._write_cache(s, size, images, self.labels(s))
            cached = self._read_cache(split, size)
            if cached is None:
                raise RuntimeError(f"the decode cache in '{self.cache_dir}' could not be read back")
        images, labels, _ = cached
        return ArraySplit(torch.from_numpy(images), torch.from_numpy(labels), torch.arange(len(labels)))


class DirTree(ImageTree):
    """An image-folder tree on disk; the listing is read on construction (names only, no decoding)."""

    def __init__(self, path: Path, cache_dir: Path | None = None):
        super().__init__(path, cache_dir)
        self.listing = {}
        for split in SPLITS:
            split_dir = self.path / split
            if not split_dir.is_dir():
                continue
            entries = []
            for cls in sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith(".")):
                files = sorted(e.name for e in os.scandir(split_dir / cls) if e.is_file() and _is_image(e.name))
                entries.extend((f"{split}/{cls}/{name}", cls) for name in files)
            self.listing[split] = entries

    def fingerprint(self, split: str) -> str:
        paths = "\n".join(p for p, _ in self.listing.get(split, []))
        return hashlib.sha1(paths.encode()).hexdigest()

    def read(self, splits: list[str]) -> dict[str, list]:
        return {s: [str(self.path / p) for p, _ in self.require(s)] for s in splits}


class TarTree(ImageTree):
    """An image-folder tree inside a tarball (optionally under one top folder), decoded from the archive.

    The member listing is cached next to the arrays, keyed by the archive's size and mtime.
    """

    def __init__(self, path: Path, cache_dir: Path | None = None):
        super().__init__(path, cache_dir)
        stat = self.path.stat()
        self._stamp = f"{self.path.name}:{stat.st_size}:{stat.st_mtime_ns}"
        index_file = self.cache_dir / "index.json"
        try:
            index = json.loads(index_file.read_text())
            if index["stamp"] != self._stamp:
                raise ValueError("stale index")
            self.prefix, self.listing = index["prefix"], {k: [tuple(e) for e in v] for k, v in index["listing"].items()}
        except (OSError, ValueError, KeyError):
            self.prefix, self.listing = self._scan()
            tmp = index_file.with_name(f"index.json.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"stamp": self._stamp, "prefix": self.prefix, "listing": self.listing}))
            os.replace(tmp, index_file)

    def _scan(self):
        prefixes, found = set(), {s: [] for s in SPLITS}
        with tarfile.open(self.path) as tar:
            for member in tar:
                parts = _member_name(member.name).split("/")
                if not member.isfile() or len(parts) < 3 or parts[-3] not in SPLITS or not _is_image(parts[-1]):
                    continue
                prefixes.add("/".join(parts[:-3]))
                found[parts[-3]].append((parts[-3], parts[-2], parts[-1]))
        if len(prefixes) > 1:
            raise ValueError(f"'{self.path}' holds several image trees ({sorted(prefixes)[:3]}); extract it and pick one")
        if not any(found.values()):
            raise FileNotFoundError(
                f"'{self.path}' contains no images in the layout [<top>/]train/<class>/<image>, test/<class>/<image>"
            )
        listing = {s: [(f"{s}/{c}/{f}", c) for s, c, f in sorted(v)] for s, v in found.items() if v}
        return (prefixes.pop() if prefixes else ""), listing

    def fingerprint(self, split: str) -> str:
        return self._stamp

    def splits_to_build_with(self, split: str) -> list[str]:
        return self.splits  # one pass over the archive decodes every split

    def read(self, splits: list[str]) -> dict[str, list]:
        wanted = {(f"{self.prefix}/{p}" if self.prefix else p): (s, i) for s in splits for i, (p, _) in enumerate(self.listing[s])}
        out = {s: [None] * len(self.listing[s]) for s in splits}
        from tqdm.auto import tqdm

        with tarfile.open(self.path) as tar, tqdm(total=len(wanted), desc=f"reading {self.path.name}", unit="img", leave=False, mininterval=1.0) as bar:
            for member in tar:
                key = wanted.get(_member_name(member.name))
                if key is not None and member.isfile():
                    out[key[0]][key[1]] = tar.extractfile(member).read()
                    bar.update(1)
        missing = sum(v is None for s in splits for v in out[s])
        if missing:
            raise RuntimeError(f"{missing} images listed for '{self.path}' could not be read back from the archive")
        return out


def open_tree(path: Path, cache_dir: Path | None = None) -> ImageTree:
    """A :class:`TarTree` for a tarball, a :class:`DirTree` for a directory."""
    path = Path(path).expanduser()
    return TarTree(path, cache_dir) if is_tarball(path) else DirTree(path, cache_dir)
