"""Synthetic classroom faces whose expression is drawn, with a ground-truth key-region mask.

Real FER data sets cannot ship with the workbook (licences) nor be downloaded here,
and their explanations cannot be checked: nobody knows which pixels carry the label.
Here the label is *drawn*: each class moves a few facial parts (brows, eyes with
their lids and gaze, mouth, nose wrinkles) away from rest, and the sample's mask is
exactly the pixels of those parts. The other parts are drawn too, at rest, so that a
model must look at the right ones.

A sample is made in three steps, each from numbers drawn for ``(seed, index)``:

1. **Parameters.** Identity (skin, hair, proportions), expression (the class's
   ranges, see ``EXPRESSIONS``) and nuisances (``NuisanceStrengths``). Nuisances are
   drawn last and in a fixed number, so turning a nuisance up or down leaves the
   identity and the expression of every sample unchanged.
2. **Geometry.** Every part is a polygon or a polyline in *face coordinates*
   (u, v in [-1, 1] across and down the head). One projection maps them to pixels:
   yaw rotates the points about a vertical axis through the head (so the features
   slide and the far side compresses), then roll, scale and shift. Image and mask
   are drawn from the same projected points, so they cannot drift apart: no pixel
   warp is ever applied to one and not the other. The key parts are drawn after
   every other face part (only an occluder can cover them), so the mask is exactly
   where hiding them changes the image (``render(i, hide_key_parts=True)``).
3. **Photometry.** Distance (downsample, upsample and blur, folded into one
   separable linear operator), uneven lighting (a multiplicative gradient field)
   and sensor noise (a window of a fixed Gaussian noise tile), in numpy on
   channel-planar float arrays.

One idea per module: ``expressions`` (the classes and the parameters they move),
``nuisances``, ``identity``, ``drawing`` (face geometry, occluders, background),
``photometry`` (distance resampling, lighting, noise) and ``dataset``. ``sfer.data.scenes``
reuses them to draw whole classrooms.

Drawing uses PIL's C rasteriser; with the numpy photometry this makes well over a
thousand 112x112 images per second on one core (``benchmarks/synth_rate.py``).
"""

from .dataset import SyntheticClassroomFaces, split_seed, synthetic_splits
from .drawing import Op, Pose, Shape
from .expressions import (
    BASIC_CLASSES,
    EXPRESSIONS,
    KEY_PARTS,
    REST,
    SCFED_CLASSES,
    Expression,
    ExpressionSpec,
    Range,
    resolve_classes,
)
from .identity import Color, Identity
from .nuisances import NUISANCE_KINDS, OCCLUDERS, Nuisances, NuisanceStrengths

__all__ = [
    "BASIC_CLASSES", "EXPRESSIONS", "KEY_PARTS", "NUISANCE_KINDS", "OCCLUDERS", "REST", "SCFED_CLASSES",
    "Color", "Expression", "ExpressionSpec", "Identity", "Nuisances", "NuisanceStrengths", "Op", "Pose", "Range",
    "Shape", "SyntheticClassroomFaces", "resolve_classes", "split_seed", "synthetic_splits",
]
