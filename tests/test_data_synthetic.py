"""Synthetic classroom faces: determinism, balance, masks that sit on the drawn cue, export and CLI."""

import csv
import math

import numpy as np
import pytest
import torch

from sfer.cli import main
from sfer.data import SyntheticClassroomFaces, build_dataset, eval_transform, synthetic_splits
from sfer.data.real import load_masks
from sfer.data.synthetic.expressions import BASIC_CLASSES, SCFED_CLASSES
from sfer.data.synthetic.nuisances import NUISANCE_KINDS, NuisanceStrengths


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2r+1)^2 square, with numpy shifts."""
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    h, w = mask.shape
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def test_same_seed_same_bytes_in_any_order():
    a = SyntheticClassroomFaces(40, seed=7)
    b = SyntheticClassroomFaces(40, seed=7)
    forward = [a.render(i).tobytes() for i in range(0, 40, 3)]
    backward = [b.render(i).tobytes() for i in reversed(range(0, 40, 3))][::-1]
    assert forward == backward
    assert [a.mask(i).tobytes() for i in range(5)] == [b.mask(i).tobytes() for i in range(5)]
    # a sample does not depend on how many there are, and the seed matters
    assert SyntheticClassroomFaces(500, seed=7).render(12).tobytes() == a.render(12).tobytes()
    assert SyntheticClassroomFaces(40, seed=8).render(12).tobytes() != a.render(12).tobytes()


def test_item_is_pil_rgb_with_label_and_transform_applies():
    ds = SyntheticClassroomFaces(12, seed=1, image_size=96)
    image, label = ds[5]
    assert image.mode == "RGB" and image.size == (96, 96)
    assert label == ds.targets[5] == 5 % 6
    assert ds.mask(5).shape == (96, 96) and ds.mask(5).dtype == bool
    tensor, _ = SyntheticClassroomFaces(12, seed=1, transform=eval_transform(224))[5]
    assert tensor.shape == (3, 224, 224) and tensor.dtype == torch.float32
    with pytest.raises(IndexError):
        ds[12]


@pytest.mark.parametrize("classes, names", [("scfed", SCFED_CLASSES), ("basic", BASIC_CLASSES),
                                            (["happy", "sad", "tired"], ("happy", "sad", "tired"))])
def test_classes_are_balanced(classes, names):
    ds = SyntheticClassroomFaces(100, classes=classes)
    assert ds.classes == list(names)
    counts = np.bincount(ds.targets, minlength=len(names))
    assert counts.max() - counts.min() <= 1
    assert counts.sum() == 100


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="classes"):
        SyntheticClassroomFaces(10, classes=["happy", "smug"])
    with pytest.raises(ValueError, match="outside"):
        SyntheticClassroomFaces(10, nuisance=1.5)
    with pytest.raises(ValueError, match="unknown nuisances"):
        SyntheticClassroomFaces(10, nuisance={"fog": 0.5})


def test_splits_have_distinct_seeds_and_images():
    splits = synthetic_splits(num_train=12, num_val=6, num_test=6, seed=3)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [12, 6, 6]
    assert len({d.seed for d in splits.values()}) == 3
    images = {splits[s].render(0).tobytes() for s in splits}
    assert len(images) == 3
    assert synthetic_splits(12, 6, 6, seed=3)["val"].render(2).tobytes() == splits["val"].render(2).tobytes()


def test_nuisance_strengths_leave_identity_and_expression_alone():
    clean = SyntheticClassroomFaces(12, seed=4, nuisance=0.0)
    noisy = SyntheticClassroomFaces(12, seed=4, nuisance=1.0)
    for i in range(12):
        assert clean.expression(i) == noisy.expression(i)
        off = clean.nuisances(i)
        assert off["roll_deg"] == off["yaw_deg"] == off["noise_sigma"] == off["light_gradient"] == 0.0
        assert off["occluder"] == "none" and off["clutter_items"] == 0 and off["downsample"] == 1.0
    drawn = [noisy.nuisances(i) for i in range(12)]
    assert any(abs(n["roll_deg"]) > 1 for n in drawn) and any(n["downsample"] > 1 for n in drawn)


# Every sample is drawn twice: as is, and with the parts that carry its class cue left
# out. Where the two differ is where the cue is drawn, which the mask must match.
SETTINGS = [("none", NuisanceStrengths.only())] + [(k, NuisanceStrengths.only(k)) for k in NUISANCE_KINDS] \
    + [("all", NuisanceStrengths())]


@pytest.mark.parametrize("name, strengths", SETTINGS, ids=[s[0] for s in SETTINGS])
@pytest.mark.parametrize("classes", ["scfed", "basic"])
def test_mask_is_exactly_where_the_cue_is_drawn(name, strengths, classes):
    ds = SyntheticClassroomFaces(28, seed=11, classes=classes, nuisance=strengths)
    for i in range(len(ds)):
        changed = np.abs(pixels(ds.render(i)) - pixels(ds.render(i, hide_key_parts=True))).max(axis=-1) > 0
        mask, occluder = ds.mask(i), ds.occluder_mask(i)
        visible = mask & ~occluder
        assert mask.any() and changed.any()
        nz = ds.nuisances(i)
        if nz["downsample"] > 1 or nz["blur_px"] > 0:
            # resampling spreads each change over the operators' support: half an area
            # footprint down, one low-resolution pixel of interpolation up, the blur to 4 sigma
            radius = math.ceil(1.5 * nz["downsample"] + 4 * nz["blur_px"])
            assert not (changed & ~dilate(mask, radius)).any(), f"sample {i}: change far outside the mask"
            assert (changed & visible).sum() >= 0.95 * visible.sum()
        else:
            assert not (changed & ~mask).any(), f"sample {i}: change outside the mask"
            # all of the visible mask changes, save pixels that lighting or noise clip to 0 or 255
            assert (changed & visible).sum() >= 0.98 * visible.sum()


def test_mask_covers_occluded_cue_and_follows_the_pose():
    occluded = SyntheticClassroomFaces(60, seed=2, nuisance=NuisanceStrengths.only("occlusion", "viewpoint"))
    unoccluded = SyntheticClassroomFaces(60, seed=2, nuisance=NuisanceStrengths.only("viewpoint"))
    frontal = SyntheticClassroomFaces(60, seed=2, nuisance=NuisanceStrengths.only())
    overlaps = 0
    for i in range(60):
        # the occluder changes no geometry: the mask is the same whether or not it hides the cue
        assert np.array_equal(occluded.mask(i), unoccluded.mask(i))
        overlaps += (occluded.mask(i) & occluded.occluder_mask(i)).any()
        # a turned, shifted head moves its mask with it
        assert not np.array_equal(unoccluded.mask(i), frontal.mask(i))
    assert overlaps > 0, "some occluder should cover part of a key region"


def test_masks_follow_the_class_cue_parts():
    ds = SyntheticClassroomFaces(60, seed=5, nuisance=0.0)
    area = {c: np.mean([ds.mask(i).mean() for i in range(len(ds)) if ds.targets[i] == k])
            for k, c in enumerate(ds.classes)}
    assert ds.key_parts(ds.classes.index("neutral")) == ("brows", "eyes", "mouth")
    assert ds.key_parts(ds.classes.index("happy")) == ("mouth",)
    assert area["neutral"] > area["dedicated"] > area["happy"]  # three parts > brows + eyes > mouth


def test_cli_synth_writes_a_tree_the_loaders_read(tmp_path):
    out = tmp_path / "synthetic"
    assert main(["data", "synth", "--out", str(out), "--n", "48", "--seed", "9", "--image-size", "64"]) == 0
    assert (out / "classes.txt").read_text().split() == list(SCFED_CLASSES)
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 48 and {r["split"] for r in rows} == {"train", "val", "test"}
    assert {"file", "label", "class", "mask_file", "roll_deg", "occluder", "noise_sigma"} <= set(rows[0])

    expected = synthetic_splits(34, 7, 7, seed=9, image_size=64)  # 0.7 / 0.15 / 0.15 of 48, rounded
    for split in ("train", "val", "test"):
        ds = build_dataset("imagefolder", out, split)
        assert ds.classes == list(SCFED_CLASSES) and len(ds) == len(expected[split])
        masks = load_masks(out, split)
        assert masks.shape == (len(ds), 64, 64) and masks.dtype == bool
        by_index = {int(item.source.stem): k for k, item in enumerate(ds.samples)}
        for i in range(len(expected[split])):
            k = by_index[i]
            assert np.array_equal(np.asarray(ds[k][0]), np.asarray(expected[split].render(i)))  # PNG is lossless
            assert ds.targets[k] == expected[split].targets[i]
            assert np.array_equal(masks[k], expected[split].mask(i))
            assert np.array_equal(ds.mask(k), masks[k])

    # an earlier export is not overwritten by accident
    assert main(["data", "synth", "--out", str(out), "--n", "12"]) == 2
    assert main(["data", "synth", "--out", str(out), "--n", "12", "--overwrite"]) == 0
    assert len(build_dataset("imagefolder", out, "train")) == 8
