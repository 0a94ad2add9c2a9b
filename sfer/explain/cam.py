"""Grad-CAM (and friends) of the three places the paper's Figure 8 looks at.

Targets, by name:

* ``l4``: the output of IR50's last unit, L4 (B, C, 7, 7), in any variant;
* ``window``: the ``rw`` model's window block, R = L4 + WA(LN(L4)) (B, C, 7, 7);
* ``kroafe``: the KROAFE block of a full (or nm/np) model, R = L4 + KROA(LN(L4)) (B, C, 7, 7);
* ``kroa`` and ``window_attention``: the attention branches alone, before the
  residual join with L4. The paper notes that KROAFE's heatmaps are wide *because*
  of that join; these two targets show what the attention itself adds.

Layouts: the three block outputs are channel-first, as pytorch-grad-cam expects.
The two branch targets are channel-last (B, 7, 7, C) (attention works on tokens), so
their activations and gradients go through :func:`channel_last_to_first`, passed as
the library's ``reshape_transform``.

Every CAM comes from pytorch-grad-cam: ReLU of the weighted channel sum, bilinearly
resized to the input size and min-max scaled to [0, 1] per image (an all-zero map
stays zero). Two methods are not CAMs but sources (:mod:`sfer.explain.sources`),
resized and scaled the same way, for the ``kroafe`` and ``window`` targets:

* ``method="sources"``: the positive part of each L4 token's exact share of the logit
  through the attention block, residual join included;
* ``method="attention_sources"``: the positive part of the attention branch's part of
  that share alone, without ``w_c . L4_t / (h w)`` that the residual join carries
  past the attention (it says nothing about where attention reads). KROAFE against window attention is compared on this one.

``scaled=False`` returns the raw non-negative maps, resized but not min-max scaled:
min-max scaling subtracts each map's minimum, which moves mass, so shares of mass
(key-region energy) are measured on the raw maps.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, ScoreCAM, XGradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from .loading import class_indices, to_batch
from .sources import sources_map

METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "eigencam": EigenCAM,  # class-agnostic: the first principal component of the activations
    "scorecam": ScoreCAM,  # gradient-free, one forward pass per channel: slow on the paper preset
}

SOURCES = {"sources": "tokens", "attention_sources": "attention"}  # method -> part of the token contributions

# name -> (attribute path from the model, channel-last activations?, variants that have it)
TARGETS: dict[str, tuple[str, bool, str]] = {
    "l4": ("backbone.body.-1", False, "every variant"),
    "window": ("window_fe", False, "the rw variant"),
    "kroafe": ("kroafe", False, "the full, nm and np variants"),
    "kroa": ("kroafe.attention", True, "the full, nm and np variants"),
    "window_attention": ("window_fe.attention", True, "the rw variant"),
}


def channel_last_to_first(tensor: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam ``reshape_transform`` for token layouts: (B, H, W, C) or (B, N, C) -> (B, C, H, W).

    (B, N, C) token sequences must hold a square grid of N = S * S tokens (no class token).
    """
    if tensor.dim() == 4:
        return tensor.permute(0, 3, 1, 2)
    if tensor.dim() == 3:
        b, n, c = tensor.shape
        side = int(round(n ** 0.5))
        if side * side != n:
            raise ValueError(f"cannot lay {n} tokens out on a square grid")
        return tensor.reshape(b, side, side, c).permute(0, 3, 1, 2)
    raise ValueError(f"expected (B, H, W, C) or (B, N, C) activations, got shape {tuple(tensor.shape)}")


def target_layer(model: nn.Module, target: str) -> tuple[nn.Module, Callable | None]:
    """The module whose output ``target`` names, and the reshape transform its layout needs.

    Raises ``ValueError`` for an unknown name or a model without that module.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown CAM target {target!r}; choose one of {list(TARGETS)}")
    path, channel_last, owners = TARGETS[target]
    layer = model
    for part in path.split("."):
        if part.lstrip("-").isdigit():
            layer = layer[int(part)]
        elif hasattr(layer, part):
            layer = getattr(layer, part)
        else:
            variant = getattr(model, "variant", type(model).__name__)
            raise ValueError(f"CAM target {target!r} needs a model with `{path}` ({owners}); "
                             f"this model is the {variant!r} variant")
    return layer, (channel_last_to_first if channel_last else None)


def compute_cam(model: nn.Module, images, target: str, method: str = "gradcam",
                class_idx: int | Sequence[int] | None = None, scaled: bool = True) -> np.ndarray:
    """CAMs (B, H, W) float32 in [0, 1] at the input's size, for ``target`` of ``model``.

    ``images``: a preprocessed (B, 3, H, W) or (3, H, W) tensor, or PIL image(s), which go
    through the model's ``eval_transform``. ``method``: one of :data:`METHODS`, or
    ``"sources"`` or ``"attention_sources"`` (targets ``kroafe`` and ``window``). ``scaled=False``: the raw
    non-negative maps at the input's size, without min-max scaling.
    ``class_idx``: the class to explain, one for all images or one per image; ``None``
    explains each image's predicted class (EigenCAM ignores it).

    The model is run in eval mode (dropout off, BatchNorm frozen), with gradients on
    even inside ``torch.no_grad()``, from an input that requires grad, so frozen weights
    still give gradients. Its training flag and the parameters' ``.grad`` are restored
    and the hooks removed afterwards: the call leaves no trace on the model.
    """
    if method in SOURCES:
        maps = sources_map(model, images, target, class_idx, part=SOURCES[method])
        return scale_maps(maps) if scaled else maps
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {[*METHODS, *SOURCES]}")
    layer, reshape = target_layer(model, target)
    batch = to_batch(model, images)
    indices = class_indices(class_idx, len(batch), model.num_classes)
    targets = None if indices is None else [ClassifierOutputTarget(i) for i in indices]

    was_training = model.training
    grads = [(p, p.grad) for p in model.parameters()]
    cam = METHODS[method](model=model, target_layers=[layer], reshape_transform=reshape)  # sets eval()
    try:
        cam.batch_size = 64  # ScoreCAM's masked images per forward pass (its default is 16)
        with torch.enable_grad(), contextlib.redirect_stderr(io.StringIO()):  # ScoreCAM's tqdm bars
            inputs = batch.detach().clone().requires_grad_(True)
            return cam(input_tensor=inputs, targets=targets) if scaled else _raw_cam(cam, inputs, targets)
    finally:
        cam.activations_and_grads.release()
        model.train(was_training)
        for p, g in grads:
            p.grad = g


def _raw_cam(cam, inputs: torch.Tensor, targets) -> np.ndarray:
    """The library's CAM without its min-max scaling: ReLU of ``get_cam_image``, bilinearly
    resized to the input size (BaseCAM.forward does the same steps, then scales)."""
    outputs = cam.activations_and_grads(inputs)
    if targets is None:
        targets = [ClassifierOutputTarget(int(c)) for c in outputs.argmax(dim=1)]
    cam.model.zero_grad()
    sum(t(o) for t, o in zip(targets, outputs)).backward(retain_graph=True)
    activations = cam.activations_and_grads.activations[0].cpu().numpy()
    grads = cam.activations_and_grads.gradients[0].cpu().numpy()
    maps = np.maximum(cam.get_cam_image(inputs, cam.target_layers[0], targets, activations, grads), 0)
    size = tuple(inputs.shape[-2:])
    return F.interpolate(torch.from_numpy(np.float32(maps))[:, None], size=size, mode="bilinear",
                         align_corners=False)[:, 0].numpy()


def scale_maps(maps: np.ndarray) -> np.ndarray:
    """Min-max scale each map to [0, 1], as pytorch-grad-cam does (an all-zero map stays zero)."""
    return scale_cam_image(np.asarray(maps, dtype=np.float32))
