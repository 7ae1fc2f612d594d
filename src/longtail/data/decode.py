"""Per-image decoding of a :class:`~longtail.data.splits.FileSplit` (PIL, RGB, torchvision transform)."""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import pil_to_tensor

from longtail.data.splits import FileSplit


class FileImageDataset(Dataset):
    """``(image, label)`` pairs: the image opened with PIL, converted to RGB and passed through
    ``transform`` (default: ``pil_to_tensor``, i.e. uint8 CHW)."""

    def __init__(self, split: FileSplit, transform: Callable | None = None):
        self.root, self.paths, self.labels = split.root, split.paths, split.labels.tolist()
        self.transform = transform or pil_to_tensor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        with Image.open(self.root / self.paths[index]) as image:
            image = image.convert("RGB")
        return self.transform(image), self.labels[index]
