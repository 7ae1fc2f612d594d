"""AutoAugment and RandAugment for a whole uint8 (B, C, H, W) batch, with per-sample random parameters.

torchvision's ``v2.AutoAugment`` / ``v2.RandAugment`` draw one sub-policy (resp. one op list) per
call, so batching them means a Python loop over the images; kornia's policies draw once per batch,
so every image of a batch gets the same ops. Here every sample draws its own parameters, with the
distribution torchvision gives one image, and the batch is transformed by *grouping*
(:func:`apply_grouped`): per op slot, the samples that share an (op, magnitude, sign) entry are
transformed together with one batched call of torchvision's own op (``v2.AutoAugment._apply_image_or_video_transform``, which dispatches
to ``torchvision.transforms.v2.functional`` and accepts batched uint8 tensors on any device).
A sample's pixels therefore equal torchvision's op applied to that image alone.

Op definitions, magnitude ranges and the sub-policy tables are torchvision's
(``v2.AutoAugment._AUGMENTATION_SPACE`` / ``_get_policies``, ``v2.RandAugment._AUGMENTATION_SPACE``).
torchvision's functional ops were measured 2-3x faster than kornia's on 32x32 uint8 batches of
4 and 128 images (kornia works on float and needs the uint8 round trip), hence this choice.

Random numbers come from torch's global generator on the batch's device, so ``seed_everything``
reproduces a batch. Each op slot costs one host sync (the group sizes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn
from torchvision.transforms import v2

from longtail.common.compat import apply_autoaugment_op, autoaugment_policy, autoaugment_space

AUTOAUGMENT_POLICIES = {
    "cifar10": v2.AutoAugmentPolicy.CIFAR10,
    "imagenet": v2.AutoAugmentPolicy.IMAGENET,
    "svhn": v2.AutoAugmentPolicy.SVHN,
}
IDENTITY = ("Identity", None, False)


def apply_grouped(images: torch.Tensor, keys: torch.Tensor, transforms: Sequence[Callable | None]) -> torch.Tensor:
    """Sample i becomes ``transforms[keys[i]]`` applied to it, with one batched call per group.

    A transform is called as ``transform(chunk, index)`` on the samples ``index`` (positions in the
    batch) of its group; ``None`` leaves its samples as they are. One host sync (the group sizes).
    """
    counts = torch.bincount(keys, minlength=len(transforms)).tolist()
    groups = keys.argsort(stable=True).split(counts)
    out = images.clone()
    for transform, index, count in zip(transforms, groups, counts):
        if count and transform is not None:
            out[index] = transform(images[index], index)
    return out


class _GroupedPolicy(nn.Module):
    """A policy as a table of op entries ``(name, magnitude index, negative)``; entry 0 is the identity.

    Subclasses add their entries with :meth:`_entry` and implement :meth:`draw` (random parameters)
    and :meth:`keys` (parameters -> entries per op slot). An entry's magnitude for an image size is
    torchvision's: bin ``magnitude index`` of ``space[name]`` at ``num_bins`` bins, negated if ``negative``.
    """

    def __init__(self, space: dict, num_bins: int, interpolation, fill):
        super().__init__()
        self.space, self.num_bins = space, num_bins
        self.entries: list[tuple[str, int | None, bool]] = [IDENTITY]
        self._torchvision = v2.AutoAugment(interpolation=interpolation, fill=fill)
        self._ops: dict[tuple[int, int], list[tuple[str, float]]] = {}

    def _entry(self, name: str, magnitude_index: int | None, negative: bool) -> int:
        """Index of the entry, added on first use."""
        entry = (name, magnitude_index, negative)
        if entry not in self.entries:
            self.entries.append(entry)
        return self.entries.index(entry)

    def ops(self, height: int, width: int) -> list[tuple[str, float]]:
        """``(name, signed magnitude)`` of every entry for this image size, as torchvision computes them."""
        if (height, width) not in self._ops:
            self._ops[height, width] = [self._magnitude(*entry, height, width) for entry in self.entries]
        return self._ops[height, width]

    def _magnitude(self, name: str, index: int | None, negative: bool, height: int, width: int):
        if index is None:
            return name, 0.0
        magnitude = float(self.space[name][0](self.num_bins, height, width)[index])
        return name, -magnitude if negative else magnitude

    def _transform(self, images: torch.Tensor, index: torch.Tensor, op: tuple[str, float]) -> torch.Tensor:
        """torchvision's op ``(name, magnitude)`` on a batch (``index`` is unused: one magnitude for all)."""
        tv = self._torchvision
        return apply_autoaugment_op(tv, images, *op)

    def apply(self, images: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Apply the entries ``keys`` (slots, B) slot after slot; entry 0 (identity) leaves a sample as it is."""
        transforms = [None] + [partial(self._transform, op=op) for op in self.ops(*images.shape[-2:])[1:]]
        for slot_keys in keys:
            images = apply_grouped(images, slot_keys, transforms)
        return images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.apply(images, self.keys(*self.draw(images.shape[0], images.device)))


class BatchAutoAugment(_GroupedPolicy):
    """AutoAugment (Cubuk et al. 2019) with torchvision's policy tables, one random sub-policy per sample.

    As ``v2.AutoAugment`` does per image: each sample draws one of the policy's sub-policies
    uniformly; each of its two ops is applied with the op's probability, at the fixed magnitude of
    the table (10 bins), negated with probability 1/2 for signed ops.

    Args:
        policy: ``"cifar10"``, ``"imagenet"`` or ``"svhn"``.
        interpolation, fill: of the geometric ops, as in ``v2.AutoAugment`` (nearest, zero fill).
    """

    def __init__(self, policy: str, interpolation="nearest", fill=None):
        if policy not in AUTOAUGMENT_POLICIES:
            raise ValueError(f"autoaugment must be one of {sorted(AUTOAUGMENT_POLICIES)}, got {policy!r}")
        super().__init__(autoaugment_space(), 10, interpolation, fill)
        self.policy = policy
        table = autoaugment_policy(AUTOAUGMENT_POLICIES[policy])
        probability, positive, negative = [], [], []
        for sub_policy in table:
            probability.append([p for _, p, _ in sub_policy])
            positive.append([self._entry(name, index, False) for name, _, index in sub_policy])
            negative.append([self._entry(name, index, self._signed(name, index)) for name, _, index in sub_policy])
        self.register_buffer("probability", torch.tensor(probability), persistent=False)
        self.register_buffer("positive", torch.tensor(positive), persistent=False)
        self.register_buffer("negative", torch.tensor(negative), persistent=False)

    def _signed(self, name: str, index: int | None) -> bool:
        return index is not None and self.space[name][1]

    @property
    def num_sub_policies(self) -> int:
        return len(self.probability)

    def draw(self, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per sample: its sub-policy (B,), whether each op is applied (B, 2) and whether it is negated (B, 2)."""
        choice = torch.randint(self.num_sub_policies, (batch_size,), device=device)
        probability = self.probability.to(device)[choice]
        applied = torch.rand(batch_size, 2, device=device) <= probability
        negated = torch.rand(batch_size, 2, device=device) <= 0.5
        return choice, applied, negated

    def keys(self, choice: torch.Tensor, applied: torch.Tensor, negated: torch.Tensor) -> torch.Tensor:
        """Entries (2, B) of the ops drawn; unapplied ops are the identity (entry 0)."""
        device = choice.device
        entry = torch.where(negated, self.negative.to(device)[choice], self.positive.to(device)[choice])
        return torch.where(applied, entry, 0).T


class BatchRandAugment(_GroupedPolicy):
    """RandAugment (Cubuk et al. 2020) with torchvision's op list, random ops per sample.

    As ``v2.RandAugment`` does per image: each sample draws ``num_ops`` ops independently and
    uniformly over torchvision's 14 ops (Identity included), signed ops negated with probability
    1/2, at magnitude bin ``magnitude`` of ``num_magnitude_bins``. With ``magnitude_std`` > 0
    (timm's magnitude noise), every sample and op draws its bin from N(magnitude, magnitude_std),
    clipped to [0, num_magnitude_bins - 1] and rounded to the nearest bin (timm keeps the continuous
    value; rounding lets samples of one bin share a batched call).

    Note the scale: torchvision's default of 31 bins puts ``magnitude=10`` at a third of each op's
    range, whereas timm's ``rand-m10`` is the top of its 0-10 scale (``num_magnitude_bins=11`` here).
    """

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: int = 9,
        num_magnitude_bins: int = 31,
        magnitude_std: float = 0.0,
        interpolation="nearest",
        fill=None,
    ):
        if num_ops < 0 or not 0 <= magnitude < num_magnitude_bins or magnitude_std < 0:
            raise ValueError(
                "randaugment needs num_ops >= 0, 0 <= magnitude < num_magnitude_bins and magnitude_std >= 0, "
                f"got {num_ops}, {magnitude}, {num_magnitude_bins}, {magnitude_std}"
            )
        super().__init__(v2.RandAugment._AUGMENTATION_SPACE, num_magnitude_bins, interpolation, fill)
        self.num_ops, self.magnitude, self.magnitude_std = int(num_ops), int(magnitude), float(magnitude_std)
        self.op_names = list(self.space)
        table = [
            [[self._op_entry(name, b, negative) for negative in (False, True)] for b in range(self.num_bins)]
            for name in self.op_names
        ]
        self.register_buffer("table", torch.tensor(table), persistent=False)

    def _op_entry(self, name: str, magnitude_index: int, negative: bool) -> int:
        magnitudes_fn, signed = self.space[name]
        if name == "Identity":
            return 0
        if magnitudes_fn(self.num_bins, 1, 1) is None:
            return self._entry(name, None, False)
        return self._entry(name, magnitude_index, negative and signed)

    def draw(self, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per op slot and sample (num_ops, B): op index into ``op_names``, magnitude bin, negated."""
        shape = (self.num_ops, batch_size)
        op = torch.randint(len(self.op_names), shape, device=device)
        if self.magnitude_std > 0:
            noisy = torch.randn(shape, device=device) * self.magnitude_std + self.magnitude
            bins = noisy.clamp(0, self.num_bins - 1).round().long()
        else:
            bins = torch.full(shape, self.magnitude, device=device)
        negated = torch.rand(shape, device=device) <= 0.5
        return op, bins, negated

    def keys(self, op: torch.Tensor, bins: torch.Tensor, negated: torch.Tensor) -> torch.Tensor:
        """Entries (num_ops, B) of the ops drawn."""
        return self.table.to(op.device)[op, bins, negated.long()]
