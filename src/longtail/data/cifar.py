"""CIFAR-10 / CIFAR-100 in canonical order (docs/methods/README.md §2).

``root`` may be any of:

* the torchvision pickle layout: ``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
  or ``root/cifar-100-python/{train,test,meta}`` (fine labels), or that folder itself;
* an image-folder tree ``root/train/<class>/*.jpg``, ``root/test/<class>/*.jpg`` (classes = sorted
  folder names, files sorted by name), decoded once and cached as uint8 ``.npy``;
* a tarball of such a tree (e.g. ``cifar10-jpeg.tar.gz``), or a folder holding exactly one.

``download`` (``datamodule.source.download``) is the only thing that touches the network:

* ``"auto"`` (the default): if none of the above is found at ``root`` (or only torchvision's
  unextracted archive), torchvision fetches the pickles into ``root`` and they are used; data that is
  found (pickles, a tree, a tarball) is used as it is and never replaced. Offline, the download fails
  within seconds and the error says what to put where. A file lock next to ``root`` lets one of several
  processes started at once (DDP ranks, sweep jobs) download while the others wait for it.
* ``True``: torchvision downloads (or verifies and extracts) the pickles first, always.
* ``False``: never download.

:attr:`CIFARSource.provenance` says which of these the images came from: the pickles are the canonical
order; an image tree is sorted by file name, an order not known to be the pickles'.
"""

from __future__ import annotations

import http.client
import pickle
import socket
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import torch

from longtail.data.cache import TAR_SUFFIXES, ImageTree, is_tarball, open_tree, user_cache_dir
from longtail.data.splits import ArraySplit

_LAYOUT = {
    10: {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": ("batches.meta", "label_names"),
        "label_key": "labels",
        "archive": "cifar-10-python.tar.gz",
    },
    100: {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": ("meta", "fine_label_names"),
        "label_key": "fine_labels",
        "archive": "cifar-100-python.tar.gz",
    },
}

DOWNLOAD_CHOICES = ("auto", True, False)
#: seconds a socket may wait (connect, each read) during an automatic download: offline fails fast
DOWNLOAD_SOCKET_TIMEOUT = 20.0
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in entry.items()}


def download_lock(root: Path) -> Path:
    """The lock file of a download into ``root``: in the user's cache (``LONGTAIL_CACHE_DIR``), keyed by the
    root, so a failed download leaves nothing in the data folder."""
    return Path(f"{user_cache_dir(root)}.download.lock")


class CIFARSource:
    """CIFAR-10 or CIFAR-100, train (50,000) and test (10,000) as uint8 :class:`ArraySplit` (ids = file order)."""

    def __init__(self, root: str | Path, num_classes: int = 10, download: bool | str = "auto",
                 cache_dir: str | Path | None = None):
        if num_classes not in _LAYOUT:
            raise ValueError(f"CIFARSource supports num_classes 10 or 100, got {num_classes}")
        if not (download is True or download is False or download == "auto"):
            raise ValueError(
                f"datamodule.source.download must be one of auto, true, false (auto: download only if the data "
                f"is not found), got {download!r}"
            )
        self.root, self.num_classes = Path(root).expanduser().absolute(), num_classes
        self.name = f"CIFAR-{num_classes}"
        self.layout = _LAYOUT[num_classes]
        self.download = download
        self.pickle_dir: Path | None = None
        self.tree: ImageTree | None = None
        if download is True:
            self._download()
        missing = self._resolve(cache_dir)
        if missing is not None and download == "auto":
            missing = self._auto_download(missing, cache_dir)
        if missing is not None:
            raise self._not_found(missing)
        if self.pickle_dir is not None:
            file, key = self.layout["meta"]
            self.class_names = [str(n) for n in _unpickle(self.pickle_dir / file)[key]]
            self.provenance = f"{self.name} torchvision pickles at {self.pickle_dir.resolve()} (canonical order)"
        else:
            self.class_names = self.tree.class_names
            self.tree.require("test")
            self.provenance = (
                f"{self.name} image folder {self.tree.path.resolve()}: files sorted by name, an order not known to "
                f"be the original pickles' — the long-tailed subset has the canonical class counts but not "
                f"necessarily the canonical images; do not compare with published numbers to the decimal"
            )
        if len(self.class_names) != num_classes:
            where = self.pickle_dir or self.tree.path
            found = len(self.class_names)
            use = f"datamodule=cifar{found}_lt" if found in _LAYOUT else \
                "datamodule=image_folder (any train/<class>/, test/<class>/ folder: the class count follows it)"
            raise ValueError(
                f"'{where}' holds {found} classes but num_classes={num_classes} (datamodule.num_classes of "
                f"{self.name}): use {use}, or point datamodule.root=PATH at {self.name}"
            )

    # ------------------------------------------------------------------ locating the data

    def _download(self) -> None:
        """torchvision's download: fetches and extracts the archive into ``root`` (or verifies what is there).
        One split suffices: torchvision downloads the whole archive and checks every file of both splits."""
        import torchvision

        dataset = torchvision.datasets.CIFAR10 if self.num_classes == 10 else torchvision.datasets.CIFAR100
        dataset(str(self.root), train=False, download=True)

    def _auto_download(self, missing: str, cache_dir) -> str | None:
        """``download=auto`` found nothing: download under a file lock (one process of several downloads, the
        others wait and then find the data), then look again. Returns None when found, else the reason."""
        from filelock import FileLock, Timeout

        try:
            download_lock(self.root).parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(download_lock(self.root)))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                print(f"waiting for another process downloading {self.name} into '{self.root}' "
                      f"(lock: {download_lock(self.root)})", flush=True)
                lock.acquire()
        except OSError as err:
            self.download_error = f"{type(err).__name__}: {err}"
            return missing
        try:
            missing = self._resolve(cache_dir)  # another process may have downloaded it meanwhile
            if missing is None:
                return None
            created = [folder for folder in (self.root, *self.root.parents) if not folder.exists()]
            previous = socket.getdefaulttimeout()
            socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT)
            try:
                print(f"{self.name} not found ({missing}): downloading it with torchvision into '{self.root}'",
                      flush=True)
                self._download()
            except (OSError, RuntimeError, http.client.HTTPException, tarfile.TarError) as err:
                offline = isinstance(err, (urllib.error.URLError, socket.gaierror, TimeoutError, ConnectionError))
                self.download_error = f"{'offline? ' if offline else ''}{type(err).__name__}: {err}"
                for folder in created:  # torchvision made them: leave no empty folder behind
                    if folder.is_dir() and not any(folder.iterdir()):
                        folder.rmdir()
                return missing
            finally:
                socket.setdefaulttimeout(previous)
            return self._resolve(cache_dir)
        finally:
            lock.release()

    def _has_pickles(self, folder: Path) -> bool:
        names = self.layout["train"] + self.layout["test"] + [self.layout["meta"][0]]
        return all((folder / n).is_file() for n in names)

    def _not_found(self, detail: str) -> FileNotFoundError:
        layout = self.layout
        failed = getattr(self, "download_error", None)
        if failed is not None:
            detail = f"{detail}, and downloading it with torchvision failed ({failed})"
            how = "on a machine with internet"
        else:
            how = "or with datamodule.source.download=true (needs internet)"
        return FileNotFoundError(
            f"{self.name} data not found: {detail}. Expected one of: '{self.root / layout['folder']}/' "
            f"(torchvision pickle layout: {', '.join(layout['train'] + layout['test'] + [layout['meta'][0]])}); "
            f"an image-folder tree '{self.root}/train/<class>/*.jpg' + '{self.root}/test/<class>/*.jpg'; or "
            f"such a tree as a .tar.gz (e.g. cifar10-jpeg.tar.gz). Get the pickles from "
            f"{CIFAR_URL} ({layout['archive']}, extract it into the root) {how}, "
            f"then set datamodule.root=PATH"
        )

    def _resolve(self, cache_dir) -> str | None:
        """Find the data at ``root`` (sets ``pickle_dir`` or ``tree``) and return None; return the reason when
        there is nothing usable that a download could provide; raise for data that is present but unusable
        (broken pickles, a tree without test/, the other CIFAR, several archives): that is never downloaded over."""
        root, layout = self.root, self.layout
        if not root.exists():
            if root.name.lower().endswith(TAR_SUFFIXES):  # a tarball was meant: downloading pickles there won't do
                raise self._not_found(f"'{root}' does not exist")
            return f"'{root}' does not exist"
        if is_tarball(root):
            self.tree = open_tree(root, cache_dir)
            return None
        if root.is_file():
            raise self._not_found(f"'{root}' is a file but not a .tar/.tar.gz/.tgz archive")
        other = _LAYOUT[110 - self.num_classes]["folder"]
        for folder in (root / layout["folder"], root):
            if self._has_pickles(folder):
                self.pickle_dir = folder
                return None
        if (root / layout["folder"]).is_dir():
            missing = [n for n in layout["train"] + layout["test"] + [layout["meta"][0]]
                       if not (root / layout["folder"] / n).is_file()]
            raise self._not_found(f"'{root / layout['folder']}' lacks {missing}")
        if (root / other).is_dir() or root.name == other:
            raise ValueError(
                f"'{root}' holds the {other} pickles (CIFAR-{110 - self.num_classes}) but num_classes="
                f"{self.num_classes}: use the cifar{110 - self.num_classes}_lt datamodule or point "
                f"datamodule.root=PATH at {self.name}"
            )
        if (root / "train").is_dir():
            if not (root / "test").is_dir():
                raise self._not_found(f"'{root}/train/' exists but '{root}/test/' does not")
            self.tree = open_tree(root, cache_dir)
            return None
        archives = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(TAR_SUFFIXES)
                          and p.name not in (_LAYOUT[10]["archive"], _LAYOUT[100]["archive"]))
        if len(archives) == 1:
            self.tree = open_tree(archives[0], cache_dir)
            return None
        if len(archives) > 1:
            raise self._not_found(
                f"'{root}' contains several archives ({[a.name for a in archives]}): point root at one of them")
        if (root / layout["archive"]).is_file():  # torchvision's archive: download=auto/true verify and extract it
            hint = "" if self.download is not False else \
                " (extract it there, or pass download=true to let torchvision verify and extract it)"
            return f"'{root / layout['archive']}' is not extracted{hint}"
        return f"'{root}' contains none of these"

    # ------------------------------------------------------------------ loading

    def load(self, split: str) -> ArraySplit:
        if split == "val":
            raise ValueError(
                f"{self.name} has no official val split: use datamodule.val=heldout (the last val_per_class "
                f"train images of every class) or datamodule.val=none"
            )
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test' ('val' is not official for CIFAR), got '{split}'")
        if self.tree is not None:
            data = self.tree.load_arrays(split)
            if data.images.shape[1:] != (3, 32, 32):
                raise ValueError(f"{self.name} images must be 32x32 RGB, '{self.tree.path}' has {tuple(data.images.shape[1:])}")
            return data
        images, labels = [], []
        for name in self.layout[split]:
            entry = _unpickle(self.pickle_dir / name)
            images.append(np.asarray(entry["data"], dtype=np.uint8))
            labels.extend(entry[self.layout["label_key"]])
        images = np.concatenate(images).reshape(-1, 3, 32, 32)  # rows are already channel-major (CHW)
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels in '{self.pickle_dir}' span {int(labels.min())}..{int(labels.max())}, "
                             f"not 0..{self.num_classes - 1}")
        return ArraySplit(torch.from_numpy(np.ascontiguousarray(images)), labels, torch.arange(len(labels)))
