"""Batched on-device augmentation: normalisation, pad-crop windows, flips, optional policies, cutout."""

import math

import pytest
import torch
from omegaconf import OmegaConf
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from longtail.data.augment import (
    BatchAugment,
    BatchEval,
    _brightness,
    _contrast,
    _saturation,
    color_jitter,
    reference_cutout_box,
)
from longtail.data.policies import BatchAutoAugment, BatchRandAugment

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


# --- batched AutoAugment / RandAugment, colour jitter, Difficulty-Net exaugment (docs/methods/diffnet.md §5, §7 N6) ---

NEAREST = v2.InterpolationMode.NEAREST
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def torchvision_op(image, name, magnitude):
    """One AutoAugment op on one image with torchvision's functional ops (the per-image reference)."""
    affine = dict(angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, 0.0], interpolation=NEAREST, fill=None)
    shear = math.degrees(math.atan(magnitude))
    ops = {
        "ShearX": lambda: TF.affine(image, **{**affine, "shear": [shear, 0.0], "center": [0, 0]}),
        "ShearY": lambda: TF.affine(image, **{**affine, "shear": [0.0, shear], "center": [0, 0]}),
        "TranslateX": lambda: TF.affine(image, **{**affine, "translate": [int(magnitude), 0]}),
        "TranslateY": lambda: TF.affine(image, **{**affine, "translate": [0, int(magnitude)]}),
        "Rotate": lambda: TF.rotate(image, angle=magnitude, interpolation=NEAREST),
        "Brightness": lambda: TF.adjust_brightness(image, 1.0 + magnitude),
        "Color": lambda: TF.adjust_saturation(image, 1.0 + magnitude),
        "Contrast": lambda: TF.adjust_contrast(image, 1.0 + magnitude),
        "Sharpness": lambda: TF.adjust_sharpness(image, 1.0 + magnitude),
        "Posterize": lambda: TF.posterize(image, int(magnitude)),
        "Solarize": lambda: TF.solarize(image, 255.0 * magnitude),
        "AutoContrast": lambda: TF.autocontrast(image),
        "Equalize": lambda: TF.equalize(image),
        "Invert": lambda: TF.invert(image),
    }
    return ops[name]()


def table_magnitude(space, name, index, bins, negative, h=32, w=32):
    if index is None:
        return 0.0
    magnitude = float(space[name][0](bins, h, w)[index])
    return -magnitude if negative and space[name][1] else magnitude


def distinct(batch):
    return len({b.numpy().tobytes() for b in batch})


def test_autoaugment_gives_copies_of_one_image_different_results():
    torch.manual_seed(10)
    x = images(b=1).expand(64, -1, -1, -1).contiguous()
    out = BatchAutoAugment("cifar10")(x)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert distinct(out) > 25
    through_augment = BatchAugment(MEAN, STD, crop_padding=None, hflip=False, autoaugment="cifar10")(x)
    assert distinct(through_augment) > 25


def test_autoaugment_sub_policies_uniform_ops_follow_probabilities():
    torch.manual_seed(11)
    aug = BatchAutoAugment("cifar10")
    n = 25_000
    choice, applied, negated = aug.draw(n, torch.device("cpu"))
    counts = torch.bincount(choice, minlength=25).double()
    chi2 = ((counts - n / 25) ** 2 / (n / 25)).sum()
    assert chi2 < 51.18  # chi-square, 24 degrees of freedom, p = 0.001
    probability = torch.tensor(
        [[p for _, p, _ in sub] for sub in v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)._policies]
    )
    for k in range(25):
        rate = applied[choice == k].double().mean(0)
        sigma = (probability[k] * (1 - probability[k]) / counts[k]).sqrt()
        assert ((rate - probability[k]).abs() <= 5 * sigma + 1e-9).all()
    assert abs(negated.double().mean() - 0.5) < 0.01


@pytest.mark.parametrize("sub_policy", [0, 1, 2, 3, 4, 5, 6, 14, 18])
def test_autoaugment_forced_sub_policy_matches_torchvision_per_image(sub_policy):
    torch.manual_seed(12)
    aug = BatchAutoAugment("cifar10")
    x = images(b=16, seed=sub_policy)
    choice = torch.full((16,), sub_policy)
    applied = torch.tensor([[a, b] for a in (True, False) for b in (True, False)] * 4)
    negated = torch.rand(16, 2) < 0.5
    out = aug.apply(x, aug.keys(choice, applied, negated))
    ops = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)._policies[sub_policy]
    space = v2.AutoAugment._AUGMENTATION_SPACE
    for i in range(16):
        expected = x[i]
        for slot, (name, _, index) in enumerate(ops):
            if applied[i, slot]:
                expected = torchvision_op(expected, name, table_magnitude(space, name, index, 10, negated[i, slot]))
        assert torch.equal(out[i], expected), (i, ops)


def test_randaugment_gives_copies_of_one_image_different_results():
    torch.manual_seed(13)
    x = images(b=1).expand(64, -1, -1, -1).contiguous()
    out = BatchRandAugment(num_ops=2, magnitude=10, magnitude_std=0.5)(x)
    assert out.dtype == torch.uint8 and distinct(out) > 40
    through_augment = BatchAugment(MEAN, STD, crop_padding=None, hflip=False, randaugment={"num_ops": 2})(x)
    assert distinct(through_augment) > 40


def test_randaugment_ops_uniform_and_magnitude_noise():
    torch.manual_seed(14)
    n = 14_000
    op, bins, negated = BatchRandAugment(num_ops=2, magnitude=10, magnitude_std=0.5).draw(n, torch.device("cpu"))
    assert op.shape == bins.shape == negated.shape == (2, n)
    counts = torch.bincount(op.flatten(), minlength=14).double()
    assert ((counts - 2 * n / 14) ** 2 / (2 * n / 14)).sum() < 34.53  # chi-square, 13 dof, p = 0.001
    assert set(bins.unique().tolist()) <= set(range(8, 13)) and {9, 10, 11} <= set(bins.unique().tolist())
    assert abs(bins.double().mean() - 10) < 0.02
    assert abs((bins == 10).double().mean() - 0.6827) < 0.02  # P(|N(0, 0.5)| < 0.5)
    assert (BatchRandAugment(magnitude=10).draw(100, torch.device("cpu"))[1] == 10).all()
    clipped = BatchRandAugment(magnitude=30, magnitude_std=0.5).draw(1000, torch.device("cpu"))[1]
    assert clipped.max() == 30 and (clipped == 30).double().mean() > 0.75
    with pytest.raises(ValueError, match="magnitude"):
        BatchRandAugment(magnitude=31)


@pytest.mark.parametrize("name", ["Rotate", "TranslateY", "ShearX", "Brightness", "Sharpness", "Posterize", "Solarize"])
def test_randaugment_forced_op_matches_torchvision_per_image(name):
    torch.manual_seed(15)
    aug = BatchRandAugment(num_ops=1, magnitude=9)
    x = images(b=8)
    op = torch.full((1, 8), aug.op_names.index(name))
    bins = torch.tensor([[3, 9, 12, 30, 3, 9, 12, 30]])
    negated = torch.tensor([[False] * 4 + [True] * 4])
    out = aug.apply(x, aug.keys(op, bins, negated))
    space = v2.RandAugment._AUGMENTATION_SPACE
    for i in range(8):
        magnitude = table_magnitude(space, name, int(bins[0, i]), 31, bool(negated[0, i]))
        assert torch.equal(out[i], torchvision_op(x[i], name, magnitude))


def test_policies_reproduce_under_the_global_seed():
    x = images()
    aug = BatchAugment(MEAN, STD, autoaugment="cifar10", randaugment={"magnitude_std": 0.5}, color_jitter=0.4)
    torch.manual_seed(16)
    a = aug(x)
    torch.manual_seed(16)
    assert torch.equal(a, aug(x))


def padded_windows(padded, h, w):
    """Every (h, w) window of an already padded image, by (top, left)."""
    hp, wp = padded.shape[-2:]
    tops, lefts = range(hp - h + 1), range(wp - w + 1)
    return {(top, left): padded[:, top : top + h, left : left + w] for top in tops for left in lefts}


def test_reflect_padding_gives_windows_of_the_mirrored_border():
    torch.manual_seed(17)
    x = images(b=8)
    aug = BatchAugment(MEAN, STD, crop_padding=4, crop_padding_mode="reflect", hflip=True)
    out = denormalise(aug(x))
    for image, result in zip(x, out):
        crops = padded_windows(torch.nn.functional.pad(image.float()[None], (4,) * 4, mode="reflect")[0], 32, 32)
        assert any(torch.equal(result, c) or torch.equal(result, c.flip(-1)) for c in crops.values())
    with pytest.raises(ValueError, match="crop_padding_mode"):
        BatchAugment(MEAN, STD, crop_padding_mode="edge")


def test_reference_quirks_pad_twice_shifts_up_to_8_pixels():
    torch.manual_seed(18)
    x = images(b=200)
    aug = BatchAugment(MEAN, STD, crop_padding=4, crop_padding_mode="reflect", hflip=False, reference_quirks=True)
    out = denormalise(aug(x))
    offsets = []
    for image, result in zip(x, out):
        reflected = torch.nn.functional.pad(image.float()[None], (4,) * 4, mode="reflect")
        crops = padded_windows(torch.nn.functional.pad(reflected, (4,) * 4)[0], 32, 32)
        found = [offset for offset, crop in crops.items() if torch.equal(result, crop)]
        assert len(found) == 1
        offsets.append(found[0])
    shifts = torch.tensor(offsets) - 8
    assert shifts.min() == -8 and shifts.max() == 8


def mean_cutout_images(b=64):
    """Channel 0 is 0, channel 1 is 90, channel 2 is v_i: the image mean (90 + v_i)/3 differs from all three."""
    x = torch.zeros(b, 3, 32, 32, dtype=torch.uint8)
    x[:, 1] = 90
    x[:, 2] = torch.randint(100, 250, (b, 1, 1), dtype=torch.uint8)
    return x


def test_image_mean_cutout_fills_the_box_with_the_image_mean():
    torch.manual_seed(19)
    x = mean_cutout_images()
    aug = BatchAugment(MEAN, STD, crop_padding=None, hflip=False, cutout={"size": 16, "fill": "image_mean"})
    out = (aug(x) * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)) * 255  # not rounded
    box = out[:, 0] > 0.5
    mean = x.float().mean(dim=(1, 2, 3))
    for sample, inside, m in zip(out, box, mean):
        torch.testing.assert_close(sample[:, inside], torch.full_like(sample[:, inside], float(m)), atol=1e-3, rtol=0)
    area = box.flatten(1).sum(1)
    assert area.max() == 256 and area.min() > 0
    rows, cols = box.any(dim=2), box.any(dim=1)
    assert torch.equal(box, rows[:, :, None] & cols[:, None, :])
    assert rows.sum(1).max() == 16 and cols.sum(1).max() == 16


def test_cutout_fill_options_are_checked():
    with pytest.raises(ValueError, match="fill"):
        BatchAugment(MEAN, STD, cutout={"size": 16, "fill": "mean"})
    with pytest.raises(ValueError, match="either fill or value"):
        BatchAugment(MEAN, STD, cutout={"size": 16, "fill": "image_mean", "value": 0.0})


def test_reference_cutout_box_reading_of_n6():
    top = torch.tensor([5, -3, 20, 20, -8, 10])
    left = torch.tensor([20, 10, -2, 0, 23, 3])
    row_start, row_end, col_start, col_end = reference_cutout_box(top, left, 16, 32, 32)
    assert row_start.tolist() == [5, 0, 20, 20, 0, 10]
    assert row_end.tolist() == [21, 13, 32, 32, 8, 26]
    assert col_start.tolist() == [5, 0, 0, 20, 0, 10]
    assert col_end.tolist() == [32, 26, 14, 16, 32, 19]


def test_reference_quirks_cutout_columns_start_at_the_clipped_top():
    torch.manual_seed(20)
    x = mean_cutout_images(b=400)
    aug = BatchAugment(
        MEAN, STD, crop_padding=None, hflip=False, cutout={"size": 16, "fill": "image_mean"}, reference_quirks=True
    )
    box = aug(x)[:, 0] > (0.5 / 255 - MEAN[0]) / STD[0]
    nonempty = box.flatten(1).any(1)
    rows, cols = box.any(dim=2), box.any(dim=1)
    assert torch.equal(box, rows[:, :, None] & cols[:, None, :])
    row_start = rows.float().argmax(1)[nonempty]
    col_start = cols.float().argmax(1)[nonempty]
    assert ((col_start == row_start) | (col_start == 0)).all()
    assert ((col_start == row_start) & (row_start > 0)).double().mean() > 0.35  # independent coordinates: ~1/24
    assert (~nonempty).any()  # start >= end happens (top well right of left + size)


def test_color_jitter_adjustments_match_torchvision_with_per_sample_factors():
    torch.manual_seed(21)
    x = images(b=64)
    factor = torch.empty(64).uniform_(0.0, 2.0).double()
    pairs = [(_brightness, TF.adjust_brightness), (_contrast, TF.adjust_contrast), (_saturation, TF.adjust_saturation)]
    for batched, single in pairs:
        expected = torch.stack([single(image, float(f)) for image, f in zip(x, factor)])
        assert torch.equal(batched(x, factor), expected)
        assert torch.equal(batched(x, torch.ones(64, dtype=torch.float64)), x)


def test_color_jitter_draws_factors_per_sample():
    torch.manual_seed(22)
    x = torch.full((256, 3, 8, 8), 100, dtype=torch.uint8)
    factor = color_jitter(x, 0.4, 0.0, 0.0).float().mean(dim=(1, 2, 3)) / 100
    assert factor.min() >= 0.59 and factor.max() <= 1.41
    assert factor.min() < 0.65 and factor.max() > 1.35 and abs(factor.std() - 0.8 / math.sqrt(12)) < 0.03
    out = color_jitter(images(b=1).expand(64, -1, -1, -1), 0.4, 0.4, 0.4)
    assert out.dtype == torch.uint8 and distinct(out) == 64
    with pytest.raises(ValueError, match="color_jitter"):
        BatchAugment(MEAN, STD, color_jitter={"hue": 0.1})


@pytest.mark.parametrize(
    "name,size",
    [("cifar_exaugment", 32), ("imagenet_randaugment", 64), ("cifar_autoaugment", 32), ("imagenet_autoaugment", 224)],
)
def test_augment_configs_build_and_run(name, size):
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import longtail

    conf = Path(longtail.__file__).parent / "conf" / "augment"
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        aug = instantiate(compose(config_name=name))(mean=MEAN, std=STD)
    torch.manual_seed(23)
    out = aug(images(b=4, h=size, w=size))
    assert out.shape == (4, 3, size, size) and torch.isfinite(out).all()
    assert len(aug.policies) == 1
    assert OmegaConf.load(conf / f"{name}.yaml") is not None


@CUDA
def test_policies_run_on_cuda_with_the_cuda_generator():
    x = images(b=32).cuda()
    aug = BatchAugment(
        MEAN,
        STD,
        crop_padding_mode="reflect",
        autoaugment="cifar10",
        randaugment={"magnitude_std": 0.5},
        color_jitter=0.4,
        cutout={"size": 16, "fill": "image_mean"},
        reference_quirks=True,
    ).cuda()
    torch.manual_seed(24)
    a = aug(x)
    torch.manual_seed(24)
    assert a.device == x.device and torch.isfinite(a).all() and torch.equal(a, aug(x))


@pytest.mark.parametrize(
    "experiment, pad",
    [("diffnet_imagenet_lt_resnet10", 4), ("diffnet_places_lt_resnet152", 4), ("ce_imagenet_lt_resnet50", 0)],
)
def test_file_training_crop_pads_by_reflection_where_the_recipe_says(experiment, pad):
    """Difficulty-Net's ImageNet-LT / Places-LT pipeline reflect-pads 4 before RandomResizedCrop (docs/methods/diffnet.md §5):
    under one seed the data module's training transform equals that pipeline written out; other recipes don't pad."""
    from conftest import compose_config
    from hydra.utils import instantiate
    from PIL import Image

    datamodule = instantiate(compose_config([f"experiment={experiment}", "datamodule.color_jitter=null"]).datamodule)
    image = Image.fromarray(images(1, h=40, w=56)[0].permute(1, 2, 0).numpy())
    tensor = v2.PILToTensor()(image)
    padded = torch.nn.functional.pad(tensor[None].float(), (pad,) * 4, mode="reflect")[0].to(torch.uint8)
    expected_pipeline = v2.Compose([v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip()])
    torch.manual_seed(3)
    produced = datamodule._file_transform(train=True)(image)
    torch.manual_seed(3)
    torch.testing.assert_close(produced, expected_pipeline(padded))
