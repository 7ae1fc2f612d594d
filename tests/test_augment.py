"""Batched on-device augmentation: normalisation, pad-crop windows, flips, optional policies, cutout."""

import pytest
import torch

from longtail.data.augment import BatchAugment, BatchEval

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def images(b=16, c=3, h=32, w=32, seed=0):
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def denormalise(x, mean=MEAN, std=STD):
    """Back to the uint8 scale, rounded (exact inverse of the normalisation up to float error)."""
    m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    return ((x * s + m) * 255).round()


def windows(image, padding, h, w):
    """Every (h, w) window of the zero-padded image, and of its mirror."""
    padded = torch.nn.functional.pad(image.float(), (padding,) * 4)
    found = []
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[:, top : top + h, left : left + w]
            found += [crop, crop.flip(-1)]
    return found


def test_eval_normalises():
    x = images()
    out = BatchEval(MEAN, STD)(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    expected = (x.float() / 255 - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_eval_rejects_wrong_input():
    with pytest.raises(ValueError, match="uint8"):
        BatchEval(MEAN, STD)(images().float())
    with pytest.raises(ValueError, match="uint8"):
        BatchEval(MEAN, STD)(images(c=1))


def test_crop_gives_windows_of_padded_input():
    torch.manual_seed(0)
    x = images(b=6)
    out = denormalise(BatchAugment(MEAN, STD, crop_padding=4, hflip=False)(x))
    for image, result in zip(x, out):
        candidates = windows(image, 4, 32, 32)[::2]
        assert any(torch.equal(result, crop) for crop in candidates)


def test_crop_and_flip_give_windows_or_mirrors():
    torch.manual_seed(1)
    x = images(b=8)
    out = denormalise(BatchAugment(MEAN, STD, crop_padding=4, hflip=True)(x))
    for image, result in zip(x, out):
        assert any(torch.equal(result, crop) for crop in windows(image, 4, 32, 32))


def test_flip_only_gives_image_or_mirror_both_seen():
    torch.manual_seed(2)
    x = images(b=64)
    out = denormalise(BatchAugment(MEAN, STD, crop_padding=None, hflip=True)(x))
    same = [torch.equal(o, i.float()) for o, i in zip(out, x)]
    mirrored = [torch.equal(o, i.float().flip(-1)) for o, i in zip(out, x)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 10 < sum(mirrored) < 54


def test_samples_get_different_offsets():
    torch.manual_seed(3)
    x = torch.zeros(256, 1, 8, 8, dtype=torch.uint8)
    x[:, :, 0, 0] = 255
    out = BatchAugment((0.0,), (1.0,), crop_padding=2, hflip=False)(x)
    flat = out[:, 0].flatten(1).argmax(1)
    positions = {int(p) for p, o in zip(flat, out) if o.max() > 0}
    assert len(positions) == 9
    assert (out.flatten(1).max(1).values == 0).sum() > 100


def test_same_global_seed_same_batch():
    x = images()
    aug = BatchAugment(MEAN, STD, cutout={"size": 8})
    torch.manual_seed(7)
    a = aug(x)
    torch.manual_seed(7)
    assert torch.equal(a, aug(x))


@pytest.mark.parametrize("kw", [{"autoaugment": "cifar10"}, {"randaugment": {"num_ops": 2, "magnitude": 9}}])
def test_policies_keep_shape(kw):
    torch.manual_seed(4)
    x = images(b=8)
    out = BatchAugment(MEAN, STD, **kw)(x)
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_fixed_size_cutout_zeroes_a_box_in_normalised_space():
    torch.manual_seed(5)
    x = torch.full((32, 3, 32, 32), 200, dtype=torch.uint8)
    out = BatchAugment(MEAN, STD, crop_padding=None, hflip=False, cutout={"size": 16})(x)
    erased = (out == 0).all(dim=1)
    assert out.shape == x.shape
    assert erased.flatten(1).sum(1).max() == 256 and erased.flatten(1).sum(1).min() > 0
    rows, cols = erased.any(dim=2), erased.any(dim=1)
    assert torch.equal(erased, rows[:, :, None] & cols[:, None, :])


def test_random_erasing_cutout():
    torch.manual_seed(6)
    x = torch.full((200, 3, 32, 32), 200, dtype=torch.uint8)
    aug = BatchAugment(MEAN, STD, crop_padding=None, hflip=False, cutout={"p": 0.5, "value": [1.0, 2.0, 3.0]})
    out = aug(x)
    erased = out[:, 0] == 1.0
    assert torch.equal(erased, out[:, 2] == 3.0)
    area = erased.flatten(1).float().mean(1)
    hit = area > 0
    assert 60 < hit.sum() < 140
    assert area[hit].min() >= 0.015 and area[hit].max() <= 0.40
    with pytest.raises(ValueError, match="unknown cutout keys"):
        BatchAugment(MEAN, STD, cutout={"length": 16})


def test_one_channel_8x8_digits():
    torch.manual_seed(8)
    x = torch.randint(0, 17, (32, 1, 8, 8), dtype=torch.uint8)
    aug = BatchAugment((0.3,), (0.4,), crop_padding=1, autoaugment="cifar10", cutout={"size": 2})
    out = aug(x)
    assert out.shape == (32, 1, 8, 8) and out.dtype == torch.float32
    plain = denormalise(BatchAugment((0.3,), (0.4,), crop_padding=1)(x), (0.3,), (0.4,))
    for image, result in zip(x, plain):
        assert any(torch.equal(result, crop) for crop in windows(image, 1, 8, 8))


def test_channels_last_and_device_follow_input():
    x = images(b=4)
    out = BatchAugment(MEAN, STD, channels_last=True)(x)
    assert out.is_contiguous(memory_format=torch.channels_last) and out.device == x.device


def test_random_rotation_keeps_the_centre_and_rotates_each_image_differently():
    torch.manual_seed(0)
    from longtail.data.augment import random_rotation

    images = torch.zeros(64, 1, 33, 33, dtype=torch.uint8)
    images[:, :, 16, :] = 255
    rotated = random_rotation(images, 15.0)
    assert rotated.dtype == torch.uint8 and rotated.shape == images.shape
    assert (rotated[:, 0, 16, 16] == 255).all()
    assert len({tuple(r[0, :, 0].nonzero().flatten().tolist()) for r in rotated}) > 5
    assert torch.equal(random_rotation(images, 0.0), images)
