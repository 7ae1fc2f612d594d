"""Batched augmentation of in-memory uint8 images, on whatever device the batch is on.

The data module calls these from ``on_after_batch_transfer``, so a whole (B, C, H, W) uint8
batch is augmented at once on the model's device, with torch's global RNG on that device
(``seed_everything`` reproduces it).

* :class:`BatchEval` - uint8 -> float, normalised with (x/255 − mean)/std.
* :class:`BatchAugment` - the CIFAR-LT recipe of baselines.md §4 (RandomCrop with zero padding,
  horizontal flip, normalise), vectorised: the batch is padded once and every sample's window,
  mirrored or not, is read with one ``gather`` from per-sample offsets. Optional AutoAugment /
  RandAugment (torchvision v2, uint8) are per-image policies and run in a Python loop over the
  batch: the slow optional path. Optional Cutout / RandomErasing runs vectorised after
  normalisation, with per-sample boxes as a mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import v2

_AUTOAUGMENT_POLICIES = {
    "cifar10": v2.AutoAugmentPolicy.CIFAR10,
    "imagenet": v2.AutoAugmentPolicy.IMAGENET,
    "svhn": v2.AutoAugmentPolicy.SVHN,
}
_ERASING_DEFAULTS = {"p": 0.5, "scale": (0.02, 0.33), "ratio": (0.3, 3.3), "value": 0.0}
_CUTOUT_DEFAULTS = {"p": 1.0, "value": 0.0}


class BatchEval(nn.Module):
    """uint8 (B, C, H, W) -> float32 normalised; ``mean``/``std`` are per channel on the [0, 1] scale."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels_last: bool = False):
        super().__init__()
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.ndim != 1 or mean.shape != std.shape:
            raise ValueError(f"mean and std must be 1-D of equal length, got {tuple(mean.shape)}, {tuple(std.shape)}")
        self.register_buffer("scale", (1.0 / (255.0 * std)).view(-1, 1, 1), persistent=False)
        self.register_buffer("shift", (mean / std).view(-1, 1, 1), persistent=False)
        self.channels_last = channels_last

    def _check(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != len(self.scale):
            raise ValueError(
                f"expected uint8 (B, {len(self.scale)}, H, W) images, got {images.dtype} {tuple(images.shape)}"
            )

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        scale, shift = self.scale.to(images.device), self.shift.to(images.device)
        return images.float().mul_(scale).sub_(shift)

    def _layout(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._check(images)
        return self._layout(self._normalise(images))


def pad_crop_flip(images: torch.Tensor, padding: int, hflip: bool) -> torch.Tensor:
    """Per-sample random crop of the zero-padded batch back to (H, W), mirrored with probability 1/2."""
    b, c, h, w = images.shape
    device = images.device
    padded = nn.functional.pad(images, (padding,) * 4) if padding else images
    wp = w + 2 * padding
    top = torch.randint(0, 2 * padding + 1, (b, 1), device=device)
    left = torch.randint(0, 2 * padding + 1, (b, 1), device=device)
    cols = torch.arange(w, device=device).expand(b, w)
    if hflip:
        cols = torch.where(torch.rand(b, 1, device=device) < 0.5, cols.flip(1), cols)
    rows = top + torch.arange(h, device=device)
    index = (rows[:, :, None] * wp + (left + cols)[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(padded.reshape(b, c, -1), 2, index).view(b, c, h, w)


def _boxes_erasing(b: int, h: int, w: int, scale, ratio, device, attempts: int = 10):
    """RandomErasing's box sampling for b images at once: first of 10 attempts that fits, else none."""
    area = h * w * torch.empty(b, attempts, device=device).uniform_(*scale)
    log_ratio = torch.empty(b, attempts, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_ratio)
    bh = torch.sqrt(area * aspect).round().long()
    bw = torch.sqrt(area / aspect).round().long()
    fits = (bh < h) & (bw < w)
    first = fits.long().argmax(dim=1, keepdim=True)
    bh, bw = bh.gather(1, first).squeeze(1), bw.gather(1, first).squeeze(1)
    top = (torch.rand(b, device=device) * (h - bh + 1)).long()
    left = (torch.rand(b, device=device) * (w - bw + 1)).long()
    return top, top + bh, left, left + bw, fits.any(dim=1)


def _boxes_cutout(b: int, h: int, w: int, size: int, device):
    """DeVries & Taylor Cutout: a size×size square centred anywhere, clipped at the border."""
    cy = torch.randint(0, h, (b,), device=device)
    cx = torch.randint(0, w, (b,), device=device)
    return (
        (cy - size // 2).clamp(0, h),
        (cy + size // 2).clamp(0, h),
        (cx - size // 2).clamp(0, w),
        (cx + size // 2).clamp(0, w),
        torch.ones(b, dtype=torch.bool, device=device),
    )


def random_rotation(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate every image by its own angle ~ U(-degrees, degrees) about the centre, nearest
    neighbour, zero fill — ``transforms.RandomRotation(degrees)`` done for the whole batch at once."""
    b = images.shape[0]
    angle = (torch.rand(b, device=images.device) * 2 - 1) * math.radians(degrees)
    cos, sin = angle.cos(), angle.sin()
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    rotated = F.grid_sample(images.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return rotated.to(images.dtype)


class BatchAugment(BatchEval):
    """Training augmentation of a uint8 batch; returns float normalised (B, C, H, W).

    Order: pad-crop + flip (vectorised, uint8) -> rotation (vectorised) -> AutoAugment / RandAugment (per image, uint8)
    -> normalise -> cutout (vectorised, in normalised space, so ``value=0`` fills with the mean).

    Args:
        mean, std: per-channel statistics on the [0, 1] scale (length 1 for grey images).
        crop_padding: zero padding of RandomCrop; ``None`` or 0 disables cropping.
        hflip: random horizontal flip with probability 1/2.
        rotation: maximum angle in degrees of a random rotation (RIDE's RandomRotation(15)); 0 disables it.
        autoaugment: ``"cifar10"``, ``"imagenet"`` or ``"svhn"`` policy of ``v2.AutoAugment``.
        randaugment: keyword arguments of ``v2.RandAugment``, e.g. ``{"num_ops": 2, "magnitude": 9}``.
        cutout: ``{"size": 16}`` (optionally ``p``, ``value``) for fixed-size Cutout, or
            RandomErasing parameters ``p`` (0.5), ``scale`` ((0.02, 0.33)), ``ratio`` ((0.3, 3.3)),
            ``value`` (0; a number or one per channel), sampled as ``v2.RandomErasing`` does.
        channels_last: return the batch in channels-last memory format.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        crop_padding: int | None = 4,
        hflip: bool = True,
        rotation: float = 0.0,
        autoaugment: str | None = None,
        randaugment: dict | None = None,
        cutout: dict | None = None,
        channels_last: bool = False,
    ):
        super().__init__(mean, std, channels_last=channels_last)
        self.crop_padding, self.hflip, self.rotation = int(crop_padding or 0), hflip, float(rotation)
        policies = []
        if autoaugment is not None:
            if autoaugment not in _AUTOAUGMENT_POLICIES:
                raise ValueError(f"autoaugment must be one of {sorted(_AUTOAUGMENT_POLICIES)}, got {autoaugment!r}")
            policies.append(v2.AutoAugment(_AUTOAUGMENT_POLICIES[autoaugment]))
        if randaugment is not None:
            policies.append(v2.RandAugment(**randaugment))
        self.policy = v2.Compose(policies) if policies else None
        self.cutout = self._cutout_params(cutout)

    @staticmethod
    def _cutout_params(cutout: dict | None) -> dict | None:
        if cutout is None:
            return None
        defaults = dict(_CUTOUT_DEFAULTS, size=None) if "size" in cutout else _ERASING_DEFAULTS
        unknown = set(cutout) - set(defaults)
        if unknown:
            raise ValueError(f"unknown cutout keys {sorted(unknown)}; allowed {sorted(defaults)}")
        params = {**defaults, **cutout}
        if isinstance(params["value"], str):
            raise ValueError("cutout value must be a number or one number per channel")
        value = params["value"]
        params["value"] = float(value) if isinstance(value, (int, float)) else [float(v) for v in value]
        if "scale" in params:
            params["scale"], params["ratio"] = tuple(map(float, params["scale"])), tuple(map(float, params["ratio"]))
        return params

    def _erase(self, images: torch.Tensor) -> torch.Tensor:
        b, c, h, w = images.shape
        device, params = images.device, self.cutout
        if params.get("size") is not None:
            top, bottom, left, right, valid = _boxes_cutout(b, h, w, int(params["size"]), device)
        else:
            top, bottom, left, right, valid = _boxes_erasing(b, h, w, params["scale"], params["ratio"], device)
        apply = valid & (torch.rand(b, device=device) < params["p"])
        rows = torch.arange(h, device=device)
        cols = torch.arange(w, device=device)
        inside_rows = (rows >= top[:, None]) & (rows < bottom[:, None])
        inside_cols = (cols >= left[:, None]) & (cols < right[:, None])
        mask = inside_rows[:, None, :, None] & inside_cols[:, None, None, :] & apply[:, None, None, None]
        value = torch.as_tensor(params["value"], dtype=images.dtype, device=device).reshape(-1, 1, 1)
        return torch.where(mask, value, images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._check(images)
        if self.crop_padding or self.hflip:
            images = pad_crop_flip(images, self.crop_padding, self.hflip)
        if self.rotation:
            images = random_rotation(images, self.rotation)
        if self.policy is not None:
            images = torch.stack([self.policy(image) for image in images])
        images = self._normalise(images)
        if self.cutout is not None:
            images = self._erase(images)
        return self._layout(images)
