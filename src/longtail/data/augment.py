"""Batched augmentation of in-memory uint8 images, on whatever device the batch is on.

The data module calls these from ``on_after_batch_transfer``, so a whole (B, C, H, W) uint8
batch is augmented at once on the model's device, with torch's global RNG on that device
(``seed_everything`` reproduces it).

* :class:`BatchEval` - uint8 -> float, normalised with (x/255 − mean)/std.
* :class:`BatchAugment` - the CIFAR-LT recipe of docs/methods/baselines.md §4 (RandomCrop with zero padding,
  horizontal flip, normalise), vectorised: the batch is padded once and every sample's window,
  mirrored or not, is read with one ``gather`` from per-sample offsets. Optional ColorJitter runs
  with per-sample factors; optional AutoAugment / RandAugment draw per-sample random ops and apply
  them in groups (:mod:`longtail.data.policies`). Optional Cutout / RandomErasing runs vectorised
  with per-sample boxes as a mask, after normalisation (fill ``value``) or, for Difficulty-Net's
  image-mean Cutout, before it.

Difficulty-Net's "exaugment" pipeline (docs/methods/diffnet.md §5) is ``crop_padding_mode="reflect"`` +
AutoAugment + ``cutout={"size": 16, "fill": "image_mean"}``; ``reference_quirks`` reproduces the
two augmentation quirks of its reference code (docs/methods/diffnet.md §7 N6).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms.v2 import functional as TF

from longtail.data.policies import BatchAutoAugment, BatchRandAugment, apply_grouped

_ERASING_DEFAULTS = {"p": 0.5, "scale": (0.02, 0.33), "ratio": (0.3, 3.3), "value": 0.0}
_CUTOUT_DEFAULTS = {"p": 1.0, "value": 0.0, "fill": None}
_CUTOUT_FILLS = (None, "image_mean")
_PADDING_MODES = ("constant", "reflect")
_JITTER_KEYS = ("brightness", "contrast", "saturation")


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


def _reflect_index(size: int, padding: int, device) -> torch.Tensor:
    """Source index of every position of a reflect-padded axis (edge not repeated, as ``np.pad``'s reflect)."""
    index = torch.arange(-padding, size + padding, device=device).abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def pad(images: torch.Tensor, padding: int, mode: str = "constant") -> torch.Tensor:
    """Pad H and W by ``padding`` on each side: zeros (``constant``) or mirrored (``reflect``), any dtype."""
    if mode == "constant":
        return F.pad(images, (padding,) * 4)
    h, w = images.shape[-2:]
    if padding >= min(h, w):
        raise ValueError(f"reflect padding {padding} needs images larger than it, got {h}x{w}")
    rows, cols = _reflect_index(h, padding, images.device), _reflect_index(w, padding, images.device)
    return images.index_select(-2, rows).index_select(-1, cols)


def crop_flip(padded: torch.Tensor, h: int, w: int, hflip: bool) -> torch.Tensor:
    """Per-sample random (h, w) window of ``padded``, mirrored with probability 1/2 when ``hflip``."""
    b, c, hp, wp = padded.shape
    device = padded.device
    top = torch.randint(0, hp - h + 1, (b, 1), device=device)
    left = torch.randint(0, wp - w + 1, (b, 1), device=device)
    cols = torch.arange(w, device=device).expand(b, w)
    if hflip:
        cols = torch.where(torch.rand(b, 1, device=device) < 0.5, cols.flip(1), cols)
    rows = top + torch.arange(h, device=device)
    index = (rows[:, :, None] * wp + (left + cols)[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(padded.reshape(b, c, -1), 2, index).view(b, c, h, w)


def pad_crop_flip(
    images: torch.Tensor, padding: int, hflip: bool, padding_mode: str = "constant", pad_twice: bool = False
) -> torch.Tensor:
    """Per-sample random crop of the padded batch back to (H, W), mirrored with probability 1/2.

    ``pad_twice`` pads the ``padding_mode``-padded batch by ``padding`` zeros again before cropping,
    as Difficulty-Net's reference code does (docs/methods/diffnet.md §7 N6a: reflect pad 4, then RandomCrop's own
    zero pad 4, so windows shift by up to ±2·padding).
    """
    h, w = images.shape[-2:]
    padded = pad(images, padding, padding_mode) if padding else images
    if pad_twice and padding:
        padded = pad(padded, padding)
    return crop_flip(padded, h, w, hflip)


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


def reference_cutout_box(top: torch.Tensor, left: torch.Tensor, size: int, h: int, w: int):
    """Box of Difficulty-Net's reference Cutout (docs/methods/diffnet.md §7 N6b) from its sampled corner.

    Our reading of the reference: the corner (top, left) is sampled in [-size//2, H - size//2) x
    [-size//2, W - size//2); the rows are [max(top, 0), min(top + size, H)); the columns start at
    max(top, 0) when left >= 0 (the code assigns the clipped top to left: boxes cluster on the
    diagonal) and at 0 otherwise, and end at min(left + size, W) with the sampled left; the box is
    empty when start >= end.
    """
    row_start = top.clamp(min=0)
    col_start = torch.where(left >= 0, row_start, 0)
    return row_start, (top + size).clamp(max=h), col_start, (left + size).clamp(max=w)


def _boxes_cutout_reference(b: int, h: int, w: int, size: int, device):
    """:func:`reference_cutout_box` for b images with corners drawn as the reference code does."""
    top = torch.randint(-(size // 2), h - size // 2, (b,), device=device)
    left = torch.randint(-(size // 2), w - size // 2, (b,), device=device)
    top, bottom, left, right = reference_cutout_box(top, left, size, h, w)
    return top, bottom, left, right, torch.ones(b, dtype=torch.bool, device=device)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's uint8 ``_blend`` with one float64 factor per sample (B,): factor·x + (1 − factor)·other.

    ``addcmul_`` rounds as torchvision's ``add_(other, alpha=1 - factor)`` does (bit-exact on CPU).
    """
    ratio = factor.view(-1, 1, 1, 1)
    out = images.mul(ratio.float()).addcmul_(other, (1 - ratio).float())
    return out.clamp_(0, 255).to(images.dtype)


def _brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return images.mul(factor.view(-1, 1, 1, 1).float()).clamp_(0, 255).to(images.dtype)


def _contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    grey = TF.rgb_to_grayscale(images) if images.shape[1] == 3 else images
    return _blend(images, grey.float().mean(dim=(-3, -2, -1), keepdim=True), factor)


def _saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images
    return _blend(images, TF.rgb_to_grayscale(images).float(), factor)


_JITTER_OPS = (_brightness, _contrast, _saturation)
_JITTER_ORDERS = list(itertools.permutations(range(len(_JITTER_OPS))))


def color_jitter(images: torch.Tensor, brightness: float, contrast: float, saturation: float) -> torch.Tensor:
    """``v2.ColorJitter(brightness, contrast, saturation, 0)`` with its own factors and order per sample.

    As torchvision per image: each factor ~ U(max(0, 1 − s), 1 + s) and the three adjustments run in
    a random order (one of the 6 permutations). The samples sharing an order are adjusted together
    (:func:`~longtail.data.policies.apply_grouped`), each with its own factors. The uint8 arithmetic
    is torchvision's (grey = floor of ITU-R 601 luma, truncating cast).
    """
    b, device = images.shape[0], images.device
    strengths = (brightness, contrast, saturation)
    factors = [torch.empty(b, device=device).uniform_(max(0.0, 1 - s), 1 + s).double() for s in strengths]

    def adjust(chunk: torch.Tensor, index: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
        for op in order:
            if strengths[op]:
                chunk = _JITTER_OPS[op](chunk, factors[op][index])
        return chunk

    order = torch.randint(len(_JITTER_ORDERS), (b,), device=device)
    return apply_grouped(images, order, [partial(adjust, order=o) for o in _JITTER_ORDERS])


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

    Order: pad-crop + flip -> rotation -> colour jitter -> AutoAugment -> RandAugment (all uint8)
    -> image-mean Cutout (float, [0, 255] scale) -> normalise -> value Cutout / RandomErasing (in
    normalised space, so ``value=0`` fills with the data set mean). Everything is batched with
    per-sample random parameters.

    Args:
        mean, std: per-channel statistics on the [0, 1] scale (length 1 for grey images).
        crop_padding: padding of RandomCrop; ``None`` or 0 disables cropping.
        hflip: random horizontal flip with probability 1/2.
        rotation: maximum angle in degrees of a random rotation (RIDE's RandomRotation(15)); 0 disables it.
        autoaugment: ``"cifar10"``, ``"imagenet"`` or ``"svhn"``: :class:`~longtail.data.policies.BatchAutoAugment`.
        randaugment: keyword arguments of :class:`~longtail.data.policies.BatchRandAugment`, e.g.
            ``{"num_ops": 2, "magnitude": 10, "magnitude_std": 0.5}``.
        cutout: ``{"size": 16}`` (optionally ``p``, and ``value`` or ``fill``) for fixed-size Cutout, or
            RandomErasing parameters ``p`` (0.5), ``scale`` ((0.02, 0.33)), ``ratio`` ((0.3, 3.3)),
            ``value`` (0; a number or one per channel), sampled as ``v2.RandomErasing`` does.
            ``fill: image_mean`` fills the Cutout box with the image's own mean (one scalar over its
            channels and pixels, [0, 255] scale) before normalisation, as Difficulty-Net (docs/methods/diffnet.md §5).
        channels_last: return the batch in channels-last memory format.
        crop_padding_mode: ``constant`` (zeros) or ``reflect`` padding of the random crop.
        color_jitter: ColorJitter strengths, a number for all three or a dict with ``brightness``,
            ``contrast`` and ``saturation`` (no hue), factors drawn per sample (:func:`color_jitter`).
        reference_quirks: reproduce Difficulty-Net's reference augmentation (docs/methods/diffnet.md §7 N6): the
            padded image is zero-padded by ``crop_padding`` again before the crop (shifts up to
            ±2·crop_padding) and fixed-size Cutout boxes follow :func:`reference_cutout_box`.
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
        crop_padding_mode: str = "constant",
        color_jitter: float | dict | None = None,
        reference_quirks: bool = False,
    ):
        super().__init__(mean, std, channels_last=channels_last)
        if crop_padding_mode not in _PADDING_MODES:
            raise ValueError(f"crop_padding_mode must be one of {_PADDING_MODES}, got {crop_padding_mode!r}")
        self.crop_padding, self.hflip, self.rotation = int(crop_padding or 0), hflip, float(rotation)
        self.crop_padding_mode, self.reference_quirks = crop_padding_mode, bool(reference_quirks)
        self.color_jitter = self._jitter_params(color_jitter)
        policies = []
        if autoaugment is not None:
            policies.append(BatchAutoAugment(autoaugment))
        if randaugment is not None:
            policies.append(BatchRandAugment(**randaugment))
        self.policies = nn.ModuleList(policies)
        self.cutout = self._cutout_params(cutout)

    @staticmethod
    def _jitter_params(color_jitter: float | dict | None) -> tuple[float, float, float] | None:
        if color_jitter is None:
            return None
        if isinstance(color_jitter, (int, float)):
            return (float(color_jitter),) * 3
        unknown = set(color_jitter) - set(_JITTER_KEYS)
        if unknown:
            raise ValueError(f"unknown color_jitter keys {sorted(unknown)}; allowed {list(_JITTER_KEYS)}")
        return tuple(float(color_jitter.get(key, 0.0)) for key in _JITTER_KEYS)

    @staticmethod
    def _cutout_params(cutout: dict | None) -> dict | None:
        if cutout is None:
            return None
        defaults = dict(_CUTOUT_DEFAULTS, size=None) if "size" in cutout else _ERASING_DEFAULTS
        unknown = set(cutout) - set(defaults)
        if unknown:
            raise ValueError(f"unknown cutout keys {sorted(unknown)}; allowed {sorted(defaults)}")
        if cutout.get("fill") not in _CUTOUT_FILLS:
            raise ValueError(f"cutout fill must be one of {_CUTOUT_FILLS}, got {cutout['fill']!r}")
        if cutout.get("fill") is not None and "value" in cutout:
            raise ValueError("cutout takes either fill or value, not both")
        params = {**defaults, **cutout}
        if isinstance(params["value"], str):
            raise ValueError("cutout value must be a number or one number per channel")
        value = params["value"]
        params["value"] = float(value) if isinstance(value, (int, float)) else [float(v) for v in value]
        if "scale" in params:
            params["scale"], params["ratio"] = tuple(map(float, params["scale"])), tuple(map(float, params["ratio"]))
        return params

    @property
    def _cutout_image_mean(self) -> bool:
        return self.cutout is not None and self.cutout.get("fill") == "image_mean"

    def _boxes(self, b: int, h: int, w: int, device):
        params = self.cutout
        if params.get("size") is None:
            return _boxes_erasing(b, h, w, params["scale"], params["ratio"], device)
        sample = _boxes_cutout_reference if self.reference_quirks else _boxes_cutout
        return sample(b, h, w, int(params["size"]), device)

    def _erase(self, images: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Fill each sample's box with ``value`` (broadcast to (B, C, 1, 1)), with probability ``p``."""
        b, c, h, w = images.shape
        device = images.device
        top, bottom, left, right, valid = self._boxes(b, h, w, device)
        apply = valid & (torch.rand(b, device=device) < self.cutout["p"])
        rows = torch.arange(h, device=device)
        cols = torch.arange(w, device=device)
        inside_rows = (rows >= top[:, None]) & (rows < bottom[:, None])
        inside_cols = (cols >= left[:, None]) & (cols < right[:, None])
        mask = inside_rows[:, None, :, None] & inside_cols[:, None, None, :] & apply[:, None, None, None]
        return torch.where(mask, value, images)

    def _augment_uint8(self, images: torch.Tensor) -> torch.Tensor:
        if self.crop_padding or self.hflip:
            images = pad_crop_flip(
                images, self.crop_padding, self.hflip, self.crop_padding_mode, pad_twice=self.reference_quirks
            )
        if self.rotation:
            images = random_rotation(images, self.rotation)
        if self.color_jitter is not None:
            images = color_jitter(images, *self.color_jitter)
        for policy in self.policies:
            images = policy(images)
        return images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._check(images)
        images = self._augment_uint8(images)
        if self._cutout_image_mean:
            images = images.float()
            images = self._normalise(self._erase(images, images.mean(dim=(1, 2, 3), keepdim=True)))
        else:
            images = self._normalise(images)
            if self.cutout is not None:
                value = torch.as_tensor(self.cutout["value"], dtype=images.dtype, device=images.device)
                images = self._erase(images, value.reshape(-1, 1, 1))
        return self._layout(images)
