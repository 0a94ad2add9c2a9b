"""The CUDA input pipeline's two halves (uint8 in the workers, GpuPreprocess on the device),
run here on the CPU device, against the PIL transforms the CPU keeps."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from sfer.data import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from sfer.data.transforms import GpuPreprocess, collate_uint8, uint8_transform

SIZE = 112


def noise(size, seed, mode="RGB"):
    """Uniform noise: every pixel is an edge, the worst case for a resize."""
    rgb = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(rgb).convert(mode)


def device_pipeline(pictures, erase_p=0.0, generator=None):
    batch = collate_uint8([(uint8_transform()(p), 0) for p in pictures], SIZE)[0]
    return GpuPreprocess(SIZE, IMAGENET_MEAN, IMAGENET_STD, erase_p, generator)(batch)


@pytest.mark.parametrize("source", [48, 100, 150, 37])
def test_resize_and_normalise_match_the_pil_pipeline_within_one_grey_level(source):
    # PIL resizes in 8-bit fixed point and rounds to uint8, the device in float: measured on
    # noise and faces, 48..300 px to 112 or 224, a pixel differs by at most 1/255 (0.3/255 mean)
    pictures = [noise((source, source), seed) for seed in range(4)]
    expected = torch.stack([eval_transform(SIZE)(p) for p in pictures])
    grey_levels = (device_pipeline(pictures) - expected).abs() * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    assert grey_levels.max() <= 1 + 1e-4
    assert grey_levels.mean() <= 0.5


def test_without_a_resize_the_device_half_is_bit_identical():
    pictures = [noise((SIZE, SIZE), seed, mode) for seed, mode in enumerate(["RGB", "L", "P"])]
    expected = torch.stack([eval_transform(SIZE)(p) for p in pictures])
    assert torch.equal(device_pipeline(pictures), expected)


def test_workers_ship_uint8_at_the_images_own_size_and_flip_exactly():
    picture = noise((40, 30), 0, "L")
    plain = uint8_transform()(picture)
    assert plain.dtype == torch.uint8 and plain.shape == (3, 30, 40)
    flipped = [uint8_transform(flip=True)(picture) for _ in range(20)]
    assert all(torch.equal(f, plain) or torch.equal(f, plain.flip(-1)) for f in flipped)
    assert any(torch.equal(f, plain.flip(-1)) for f in flipped) and any(torch.equal(f, plain) for f in flipped)


def test_a_batch_of_one_size_is_stacked_as_it_is_and_mixed_sizes_are_resized_in_the_worker():
    same = [(uint8_transform()(noise((48, 48), seed)), seed) for seed in range(3)]
    images, labels = collate_uint8(same, SIZE)
    assert images.shape == (3, 3, 48, 48) and torch.equal(images[1], same[1][0]) and labels.tolist() == [0, 1, 2]
    mixed = [(uint8_transform()(noise(size, 0)), 0) for size in [(48, 48), (300, 200), (120, 120)]]
    images, _ = collate_uint8(mixed, SIZE)
    assert images.dtype == torch.uint8 and images.shape == (3, 3, SIZE, SIZE)


def erased(out, clean):
    """(B, H, W) bool: the pixels the erasing changed."""
    return (out != clean).any(1)


def test_erasing_zeroes_one_rectangle_of_2_to_33_percent_in_every_image_at_p_1():
    pictures = [Image.new("RGB", (SIZE, SIZE), (255, 255, 255))] * 64  # normalised: never 0
    clean = device_pipeline(pictures)
    out = device_pipeline(pictures, erase_p=1.0, generator=torch.Generator().manual_seed(0))
    masks = erased(out, clean)
    assert (out.permute(1, 0, 2, 3)[:, masks] == 0).all()  # erased means 0 in every channel
    for mask in masks:
        rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
        h, w = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
        assert mask.sum() == h * w  # one filled rectangle
        assert 0.015 <= h * w / SIZE**2 <= 0.36 and 0.25 <= h / w <= 4  # the ranges, up to rounding h and w


def test_erasing_draws_as_torchvisions_random_erasing():
    torch.manual_seed(0)
    reference = torch.tensor([float((T.RandomErasing(p=0.5)(torch.ones(3, 64, 64)) == 0).float().mean())
                              for _ in range(2000)])  # the erased fraction of each image
    batch = torch.empty(1).expand(2000, 3, 64, 64)  # the mask reads only the shape
    areas = GpuPreprocess(64, erase_p=0.5, generator=torch.Generator().manual_seed(1)).erase_mask(batch).float()
    areas = areas.mean((1, 2, 3))
    assert abs(float((areas > 0).float().mean() - (reference > 0).float().mean())) < 0.06  # how often
    assert abs(float(areas.mean() - reference.mean())) < 0.01  # how much: about 0.5 x 0.17 on both sides


def test_erasing_is_seeded_and_off_at_p_0():
    pictures = [noise((SIZE, SIZE), seed) for seed in range(8)]
    first, second, other = (device_pipeline(pictures, 0.5, torch.Generator().manual_seed(seed)) for seed in (3, 3, 4))
    assert torch.equal(first, second) and not torch.equal(first, other)
    assert torch.equal(device_pipeline(pictures, 0.0), device_pipeline(pictures))
    with pytest.raises(ValueError, match="erase_p"):
        GpuPreprocess(SIZE, erase_p=1.5)
