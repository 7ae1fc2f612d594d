"""Long-tailed counts and subsampling, exactly as the LDAM protocol (docs/methods/README.md §2)."""

from __future__ import annotations

import numpy as np
import torch

PROFILES = ("exp", "step")


def _labels_array(labels) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    return labels.astype(np.int64, copy=False)


def lt_counts(n_max: int, num_classes: int, imbalance_factor: float, profile: str = "exp") -> list[int]:
    """Per-class counts of a long-tailed split, class 0 the largest.

    ``exp``: ``int(n_max * (1.0 / IF) ** (i / (C - 1.0)))`` in float64 (never ``exp(-log(IF) ...)``,
    which loses the last class by one). ``step``: the first ``C // 2`` classes keep ``n_max``, the rest
    get ``int(n_max * (1.0 / IF))``.
    """
    if imbalance_factor < 1:
        raise ValueError(
            f"imbalance factor must be >= 1 (n_max / n_min, e.g. 100), got {imbalance_factor}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if profile not in PROFILES:
        raise ValueError(f"imbalance profile must be one of {PROFILES}, got '{profile}'")
    n_max, factor = float(n_max), 1.0 / float(imbalance_factor)
    if num_classes == 1:
        return [int(n_max)]
    if profile == "exp":
        return [int(n_max * factor ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    half = num_classes // 2
    return [int(n_max)] * half + [int(n_max * factor)] * (num_classes - half)


def lt_subsample(labels, counts, seed: int = 0) -> np.ndarray:
    """Indices of the long-tailed subset: class 0 first, shuffled order within each class.

    One ``np.random.RandomState(seed)`` (the stream of ``np.random.seed(seed)``); for every class
    c in order, the ascending indices of class c are shuffled in place and the first ``counts[c]``
    kept. The generator's consumption does not depend on ``counts``, so a smaller count keeps a
    prefix of a larger one.
    """
    labels = _labels_array(labels)
    counts = [int(n) for n in counts]
    if labels.size and (labels.min() < 0 or labels.max() >= len(counts)):
        raise ValueError(f"labels span {labels.min()}..{labels.max()} but {len(counts)} counts were given")
    rng = np.random.RandomState(seed)
    kept = []
    for c, n_c in enumerate(counts):
        idx = np.flatnonzero(labels == c)
        if n_c > len(idx) or n_c < 0:
            raise ValueError(f"class {c} has {len(idx)} images, cannot keep {n_c}")
        rng.shuffle(idx)
        kept.append(idx[:n_c])
    return np.concatenate(kept).astype(np.int64) if kept else np.zeros(0, np.int64)


def heldout_split(labels, per_class: int, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(remaining_idx, val_idx)``: the last ``per_class`` images in file order of every class go to val.

    Both index arrays are in ascending (file) order, so the remainder keeps the canonical order
    that :func:`lt_subsample` expects.
    """
    labels = _labels_array(labels)
    if per_class < 0:
        raise ValueError(f"per_class must be >= 0, got {per_class}")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    is_val = np.zeros(len(labels), dtype=bool)
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) <= per_class:
            raise ValueError(
                f"class {c} has {len(idx)} images: cannot hold out {per_class} for validation and keep any "
                f"for training (lower datamodule.val_per_class)"
            )
        if per_class:
            is_val[idx[-per_class:]] = True
    return np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64)


def lt_prefix(labels, counts) -> np.ndarray:
    """Indices of the long-tailed subset without shuffling: the *first* ``counts[c]`` images of class c in
    file order (Difficulty-Net's protocol, docs/methods/diffnet.md §1), class 0 first, ascending within a class."""
    labels = _labels_array(labels)
    kept = []
    for c, n_c in enumerate(int(n) for n in counts):
        idx = np.flatnonzero(labels == c)
        if n_c > len(idx) or n_c < 0:
            raise ValueError(f"class {c} has {len(idx)} images, cannot keep {n_c}")
        kept.append(idx[:n_c])
    return np.concatenate(kept).astype(np.int64) if kept else np.zeros(0, np.int64)


def per_class_sample(labels, per_class: int, seed: int = 0) -> np.ndarray:
    """Ascending indices of ``per_class`` images of every class drawn without replacement by a seeded generator
    (the Difficulty-Net meta set of ImageNet-LT / Places-LT, 10 per class from the val list, docs/methods/diffnet.md §1 and N9)."""
    labels = _labels_array(labels)
    rng = np.random.default_rng(seed)
    kept = []
    for c in range(int(labels.max()) + 1 if labels.size else 0):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise ValueError(f"class {c} has {len(idx)} images, fewer than the {per_class} per class asked for")
        kept.append(rng.choice(idx, size=per_class, replace=False))
    return np.sort(np.concatenate(kept)).astype(np.int64) if kept else np.zeros(0, np.int64)
