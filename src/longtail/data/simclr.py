"""SimCLR augmentation of in-memory uint8 images, batched on the batch's device with kornia.

BNS pretraining and the IP-DPP probe / fine-tuning (docs/methods/ipdpp.md §2) augment CIFAR with the SimCLR
recipe (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations"),
as the reference code's ``datasets/data_augmentation.py`` writes it with a colour strength ``s``:

    RandomResizedCrop(32, scale=(0.08, 1)) -> RandomHorizontalFlip()
    -> RandomApply([ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)], p=0.8) -> RandomGrayscale(p=0.2)
    -> GaussianBlur(3, sigma=(0.1, 2.0)) (always applied) -> ToTensor()

There is no Normalize in the reference, not even at test time: the IP-DPP configs pass mean 0 and
std 1, so the output is the augmented x/255. The reference feeds ``s`` from ``num_views`` (spec Q10):
pretraining uses s = 2, jitter (1.6, 1.6, 1.6, 0.4); fine-tuning s = 1, jitter (0.8, 0.8, 0.8, 0.2).

:class:`SimCLRAugment` runs that pipeline on a whole (B, C, H, W) batch at once, on float images in
[0, 1], with per-sample random parameters drawn from torch's global RNG (``torch.manual_seed`` /
``seed_everything`` reproduce it; kornia draws them on the CPU and moves them to the batch's device).
The kornia modules, in order::

    K.RandomResizedCrop((size, size), scale=scale, ratio=ratio, align_corners=False)
    K.RandomHorizontalFlip(p=0.5)
    K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=jitter_p)
    K.RandomGrayscale(p=grayscale_p)
    K.RandomGaussianBlur((blur_kernel, blur_kernel), sigma=blur_sigma, border_type="reflect", p=blur_p)

``kornia.augmentation.ColorJitter`` (not ``ColorJiggle``) is the one with torchvision's semantics:
brightness multiplies by a factor ~ U(max(0, 1 − b), 1 + b), contrast blends with the grey mean,
saturation with the grey image, and hue ~ U(−h, h) turns. ``align_corners=False`` makes the crop's
bilinear resize torchvision's (kornia's default ``True`` differs by up to 0.28 on CIFAR crops).

Differences from torchvision, per image, that remain:

* kornia draws one order of the four colour adjustments per call (per batch), torchvision one per
  image; every sample's order is still uniformly random, but the samples of a batch share it.
  With ``views=2`` each view is its own call, so the two views of an image have independent orders.
* kornia's grey weights are (0.299, 0.587, 0.114), torchvision's (0.2989, 0.587, 0.114): the
  saturation step differs by ≤ 2e-4, contrast by ≤ 1e-4.
* The reference jitters PIL uint8 images (rounded after every step); here everything is float.

Cost: kornia's torchvision-exact ``cropping_mode="slice"`` crops and resizes sample by sample in a
Python loop (its batched ``"resample"`` mode samples differently, by up to 0.41); the other steps are
batched.

Grey (1-channel) images: saturation, hue and grayscale are skipped, as torchvision leaves a
1-channel image unchanged under them; brightness, contrast, crop, flip and blur apply as usual.
"""

from __future__ import annotations

from collections.abc import Sequence

import kornia.augmentation as K
import torch
from torch import nn

from longtail.data.augment import BatchEval

_VIEWS = (1, 2)


class SimCLRAugment(BatchEval):
    """SimCLR augmentation of a uint8 (B, C, H, W) batch; float (B, C, size, size), or two of them.

    Args:
        mean, std: per-channel statistics on the [0, 1] scale; mean 0 and std 1 give the reference's
            un-normalised x/255 output.
        size: side of the square RandomResizedCrop output.
        scale: range of the crop's area as a fraction of the image.
        ratio: range of the crop's aspect ratio (width / height).
        strength: colour strength s; ColorJitter(0.8s, 0.8s, 0.8s, 0.2s). The hue bound 0.2s must stay ≤ 0.5.
        jitter_p: probability of applying ColorJitter to a sample.
        grayscale_p: probability of converting a sample to grey (kept 3 channels).
        blur_kernel: side of the Gaussian blur kernel.
        blur_sigma: range of the blur's standard deviation, drawn per sample.
        blur_p: probability of blurring a sample (the reference always blurs).
        hflip: random horizontal flip with probability 1/2.
        views: 1 returns one augmented batch; 2 returns a tuple (view1, view2) of independent draws.
        channels_last: return the batch(es) in channels-last memory format.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        size: int = 32,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        strength: float = 1.0,
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        blur_kernel: int = 3,
        blur_sigma: Sequence[float] = (0.1, 2.0),
        blur_p: float = 1.0,
        hflip: bool = True,
        views: int = 1,
        channels_last: bool = False,
    ):
        super().__init__(mean, std, channels_last=channels_last)
        if views not in _VIEWS:
            raise ValueError(f"views must be one of {_VIEWS}, got {views!r}")
        self.views = views
        colour = len(self.scale) == 3
        if not colour and len(self.scale) != 1:
            raise ValueError(f"SimCLRAugment takes 1- or 3-channel images, got {len(self.scale)} channels")
        jitter = 0.8 * strength
        steps = [K.RandomResizedCrop((size, size), scale=tuple(scale), ratio=tuple(ratio), align_corners=False)]
        if hflip:
            steps.append(K.RandomHorizontalFlip(p=0.5))
        if colour:
            steps.append(K.ColorJitter(jitter, jitter, jitter, 0.2 * strength, p=jitter_p))
            steps.append(K.RandomGrayscale(p=grayscale_p))
        else:
            steps.append(K.ColorJitter(jitter, jitter, 0.0, 0.0, p=jitter_p))
        kernel = (int(blur_kernel), int(blur_kernel))
        steps.append(K.RandomGaussianBlur(kernel, sigma=tuple(blur_sigma), border_type="reflect", p=blur_p))
        self.pipeline = nn.Sequential(*steps)

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        """One draw of the pipeline on float [0, 1] images, then clamped to [0, 1] and normalised."""
        return self._layout(self._normalise(self.pipeline(images).clamp_(0.0, 1.0).mul_(255.0)))

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self._check(images)
        images = images.float().div_(255.0)
        if self.views == 1:
            return self._augment(images)
        return self._augment(images), self._augment(images)
