"""SimCLRAugment: the SimCLR pipeline of docs/methods/ipdpp.md §2, batched with kornia."""

import pytest
import torch

from longtail.data.simclr import SimCLRAugment

RGB = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
IDENTITY = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "hflip": False, "jitter_p": 0.0, "grayscale_p": 0.0}


def _images(b: int = 8, c: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_one_view_shape_dtype_and_range():
    out = SimCLRAugment(**RGB)(_images())
    assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_two_views_shapes_and_range():
    view1, view2 = SimCLRAugment(**RGB, views=2, strength=2.0)(_images())
    for view in (view1, view2):
        assert view.shape == (8, 3, 32, 32) and view.dtype == torch.float32
        assert 0.0 <= view.min() and view.max() <= 1.0


def test_crop_resizes_to_size():
    images = torch.randint(0, 256, (4, 3, 48, 40), dtype=torch.uint8)
    assert SimCLRAugment(**RGB, size=24)(images).shape == (4, 3, 24, 24)


def test_copies_and_views_of_one_image_differ():
    image = _images(1)
    view1, view2 = SimCLRAugment(**RGB, views=2)(image.expand(2, -1, -1, -1).contiguous())
    assert not torch.allclose(view1[0], view1[1])
    assert not torch.allclose(view1[0], view2[0])
    assert not torch.allclose(view2[0], view2[1])


def test_identity_two_views_are_both_x_over_255():
    images = _images()
    view1, view2 = SimCLRAugment((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), **IDENTITY, blur_p=0.0, views=2)(images)
    torch.testing.assert_close(view1, images.float() / 127.5 - 1)
    torch.testing.assert_close(view2, images.float() / 127.5 - 1)


def test_same_seed_reproduces():
    augment, images = SimCLRAugment(**RGB, views=2, strength=2.0), _images()
    torch.manual_seed(3)
    first = augment(images)
    torch.manual_seed(3)
    second = augment(images)
    torch.manual_seed(4)
    third = augment(images)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not torch.equal(first[0], third[0])


def test_identity_settings_give_x_over_255():
    images = _images()
    out = SimCLRAugment(**RGB, **IDENTITY, blur_p=0.0)(images)
    assert torch.allclose(out, images.float() / 255, rtol=0, atol=1e-6)


def test_normalises_with_mean_and_std():
    images, mean, std = _images(), (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    out = SimCLRAugment(mean, std, **IDENTITY, blur_p=0.0)(images)
    expected = (images.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(out, expected)


def test_tiny_blur_and_zero_strength_leave_only_the_crop():
    images = _images()
    crop_only = {**IDENTITY, "scale": (0.08, 1.0), "ratio": (3 / 4, 4 / 3), "jitter_p": 1.0, "strength": 0.0}
    torch.manual_seed(0)
    blurred = SimCLRAugment(**RGB, **crop_only, blur_sigma=(1e-3, 1e-3))(images)
    torch.manual_seed(0)
    unblurred = SimCLRAugment(**RGB, **crop_only, blur_p=0.0)(images)
    assert not torch.equal(blurred, images.float() / 255)
    torch.testing.assert_close(blurred, unblurred)


@pytest.mark.parametrize("strength", [1.0, 2.0])
def test_brightness_range_follows_strength(strength):
    """On a flat grey image contrast, saturation and hue do nothing: out / in is the brightness factor."""
    torch.manual_seed(0)
    value = 40
    images = torch.full((1000, 3, 8, 8), value, dtype=torch.uint8)
    settings = {**IDENTITY, "jitter_p": 1.0}
    out = SimCLRAugment(**RGB, **settings, size=8, strength=strength, blur_p=0.0)(images)
    factor = out[:, 0, 0, 0] / (value / 255)
    torch.testing.assert_close(out, factor.view(-1, 1, 1, 1).expand_as(out) * value / 255, atol=1e-5, rtol=1e-5)
    low, high = max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength
    assert low - 1e-4 <= factor.min() < low + 0.05
    assert high - 0.05 < factor.max() <= high + 1e-4


@pytest.mark.parametrize("strength", [1.0, 2.0])
def test_jitter_parameters_follow_strength(strength):
    torch.manual_seed(0)
    augment = SimCLRAugment(**RGB, size=8, strength=strength, jitter_p=1.0, blur_p=0.0)
    augment(torch.randint(0, 256, (1000, 3, 8, 8), dtype=torch.uint8))
    params = augment.pipeline[2]._params
    for name in ("brightness", "contrast", "saturation"):
        factors = params[f"{name}_factor"]
        assert max(0.0, 1 - 0.8 * strength) - 1e-6 <= factors.min() and factors.max() <= 1 + 0.8 * strength + 1e-6
        assert factors.max() > 1 + 0.75 * strength
    hue = params["hue_factor"]
    assert hue.abs().max() <= 0.2 * strength + 1e-6 and hue.abs().max() > 0.18 * strength


def test_jitter_probability_is_per_sample():
    torch.manual_seed(0)
    images = torch.full((2000, 3, 8, 8), 40, dtype=torch.uint8)
    out = SimCLRAugment(**RGB, **{**IDENTITY, "jitter_p": 0.8}, size=8, blur_p=0.0)(images)
    untouched = (out == 40 / 255).flatten(1).all(1).float().mean()
    assert 0.15 < untouched < 0.25


def test_grayscale_gives_equal_channels():
    out = SimCLRAugment(**RGB, grayscale_p=1.0)(_images())
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 1], out[:, 2])


def test_channels_last_input_and_output():
    images = _images().contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    out = SimCLRAugment(**RGB, channels_last=True)(images)
    torch.manual_seed(0)
    reference = SimCLRAugment(**RGB)(images.contiguous())
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, reference)
    view1, view2 = SimCLRAugment(**RGB, views=2, channels_last=True)(images)
    assert view1.is_contiguous(memory_format=torch.channels_last)
    assert view2.is_contiguous(memory_format=torch.channels_last)


def test_grey_images_skip_colour_only_steps():
    augment = SimCLRAugment((0.0,), (1.0,), views=2, jitter_p=1.0)
    view1, view2 = augment(_images(c=1))
    assert view1.shape == view2.shape == (8, 1, 32, 32)
    names = [type(step).__name__ for step in augment.pipeline]
    assert "RandomGrayscale" not in names
    jitter = augment.pipeline[names.index("ColorJitter")]
    assert jitter.saturation == 0.0 and jitter.hue == 0.0


def test_rejects_float_input_and_wrong_channels():
    augment = SimCLRAugment(**RGB)
    with pytest.raises(ValueError, match="uint8"):
        augment(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="uint8"):
        augment(_images(c=1))


def test_rejects_bad_views():
    with pytest.raises(ValueError, match="views"):
        SimCLRAugment(**RGB, views=3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    augment = SimCLRAugment(**RGB, views=2).cuda()
    view1, view2 = augment(_images().cuda())
    assert view1.is_cuda and view2.is_cuda and view1.shape == (8, 3, 32, 32)
