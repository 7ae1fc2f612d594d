"""scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes): the embedded default data set."""

from __future__ import annotations

import numpy as np
import torch

from longtail.data.splits import ArraySplit


class DigitsSource:
    """Deterministic balanced split of ``sklearn.datasets.load_digits``, per class in file order:
    the last ``test_per_class`` images are test, the ``val_per_class`` before them val, the rest
    the (balanced) train pool that the data module makes long-tailed.

    Images are uint8 (N, 1, 8, 8), the 0..16 values scaled to 0..255; ``ids`` index into the
    original order, shared by all three splits (``split_origin``). ``root`` is ignored.
    ``provenance`` names the scikit-learn version and the split.
    """

    num_classes = 10
    class_names = [str(d) for d in range(10)]
    split_origin = {"train": "digits", "val": "digits", "test": "digits"}

    def __init__(self, test_per_class: int = 30, val_per_class: int = 20, root=None):
        import sklearn
        from sklearn.datasets import load_digits

        if test_per_class < 1 or val_per_class < 0:
            raise ValueError(f"need test_per_class >= 1 and val_per_class >= 0, got {test_per_class}, {val_per_class}")
        digits = load_digits()
        images = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
        labels = digits.target.astype(np.int64)
        self._images, self._labels = torch.from_numpy(images), torch.from_numpy(labels)
        parts = {"train": [], "val": [], "test": []}
        for c in range(self.num_classes):
            idx = np.flatnonzero(labels == c)
            pool = len(idx) - test_per_class - val_per_class
            if pool < 1:
                raise ValueError(f"digit {c} has {len(idx)} images: too few for {test_per_class} test + "
                                 f"{val_per_class} val per class")
            parts["train"].append(idx[:pool])
            parts["val"].append(idx[pool:pool + val_per_class])
            parts["test"].append(idx[pool + val_per_class:])
        self._index = {k: np.sort(np.concatenate(v)) for k, v in parts.items()}
        self.provenance = (
            f"scikit-learn {sklearn.__version__} embedded 8x8 digits (sklearn.datasets.load_digits, 1,797 images, "
            f"original order); per class the last {test_per_class} are test, the {val_per_class} before them val"
        )

    def load(self, split: str) -> ArraySplit:
        if split not in self._index:
            raise ValueError(f"split must be one of train/val/test, got '{split}'")
        index = torch.from_numpy(self._index[split])
        return ArraySplit(self._images[index], self._labels[index], index.clone())
