"""compute_cam: every target with every method, refusals, and no trace left on the model."""

import numpy as np
import pytest
import torch

from sfer.explain.cam import METHODS, TARGETS, channel_last_to_first, compute_cam, target_layer
from sfer.models import build_model

OWNER = {"l4": "full", "kroafe": "full", "kroa": "full", "window": "rw", "window_attention": "rw"}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {v: build_model("tiny", v, num_classes=6).eval() for v in ("full", "rw", "na")}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("target", list(TARGETS))
def test_cam_shape_and_range(models, target, method):
    images = torch.randn(1 if method == "scorecam" else 2, 3, 112, 112)
    cams = compute_cam(models[OWNER[target]], images, target, method=method)
    assert cams.shape == (len(images), 112, 112) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() <= 1 + 1e-6
    assert np.allclose(cams.reshape(len(images), -1).max(axis=1), 1, atol=1e-4)  # min-max scaled, not empty


def test_cam_at_the_input_size(models):
    assert compute_cam(models["full"], torch.randn(3, 96, 80), "kroafe").shape == (1, 96, 80)


@pytest.mark.parametrize(("variant", "target"), [("full", "window"), ("rw", "kroafe"), ("na", "kroafe"),
                                                  ("na", "kroa"), ("full", "window_attention")])
def test_missing_target_is_refused(models, variant, target):
    with pytest.raises(ValueError, match=rf"{target}.*'{variant}' variant"):
        compute_cam(models[variant], torch.randn(1, 3, 112, 112), target)


def test_unknown_names_are_refused(models):
    x = torch.randn(1, 3, 112, 112)
    with pytest.raises(ValueError, match="unknown CAM target 'l5'"):
        compute_cam(models["full"], x, "l5")
    with pytest.raises(ValueError, match="unknown CAM method 'gradcam3'"):
        compute_cam(models["full"], x, "l4", method="gradcam3")
    with pytest.raises(ValueError, match="out of range"):
        compute_cam(models["full"], x, "l4", class_idx=6)
    with pytest.raises(ValueError, match="2 entries for 1 images"):
        compute_cam(models["full"], x, "l4", class_idx=[0, 1])


def test_target_layers_and_layouts(models):
    full = models["full"]
    assert target_layer(full, "l4") == (full.backbone.body[-1], None)
    assert target_layer(full, "kroafe") == (full.kroafe, None)
    assert target_layer(full, "kroa") == (full.kroafe.attention, channel_last_to_first)
    assert target_layer(models["rw"], "window") == (models["rw"].window_fe, None)


def test_channel_last_to_first():
    x = torch.randn(2, 7, 7, 5)
    assert torch.equal(channel_last_to_first(x), x.permute(0, 3, 1, 2))
    assert torch.equal(channel_last_to_first(x.reshape(2, 49, 5)), x.permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="square grid"):
        channel_last_to_first(torch.randn(2, 50, 5))


def test_class_idx_picks_the_explained_class(models):
    x = torch.randn(2, 3, 112, 112)
    a, b = (compute_cam(models["full"], x, "l4", class_idx=c) for c in (0, 3))
    assert not np.allclose(a, b)
    assert np.allclose(compute_cam(models["full"], x, "l4", class_idx=[0, 3])[1], b[1], atol=1e-5)


def test_the_model_is_left_as_found(models):
    model = models["full"].train()
    try:
        model(torch.randn(2, 3, 112, 112)).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        with torch.no_grad():  # gradients are switched on inside
            compute_cam(model, torch.randn(1, 3, 112, 112), "kroafe")
        assert model.training
        assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters() if n in grads)
        assert not any(m._forward_hooks for m in model.modules())
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_frozen_weights_still_give_a_cam(models):
    model = build_model("tiny", "full", num_classes=6).eval().requires_grad_(False)
    cams = compute_cam(model, torch.randn(1, 3, 112, 112), "kroafe")
    assert cams.max() > 0.99
