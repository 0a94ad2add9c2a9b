"""The data set: samples drawn from ``(seed, index)``, rendered and masked on demand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from .drawing import Op, Pose, _clutter, _paint, face_ops
from .expressions import EXPRESSIONS, Expression, resolve_classes
from .identity import Identity, _draw_identity
from .nuisances import Nuisances, NuisanceStrengths, _draw_nuisances
from .photometry import _photometry

@dataclass(frozen=True)
class _Sample:
    label: int
    identity: Identity
    expression: Expression
    nuisances: Nuisances
    occluder_draws: np.ndarray
    clutter_draws: np.ndarray
    noise_offset: np.ndarray


class SyntheticClassroomFaces(Dataset):
    """``n`` synthetic classroom faces; ``ds[i]`` is ``(image, label)``, ``ds.mask(i)`` its key region.

    Args:
        n: number of samples. Sample ``i`` has label ``i % len(classes)`` (balanced, and
            the same whatever ``n``) and is drawn from the random streams of ``(seed, i)``
            alone: the same seed gives the same bytes, in any access order.
        seed: non-negative int.
        transform: applied to the PIL image (e.g. ``train_transform()``); None gives PIL RGB.
        image_size: side in pixels (>= 32); 112 is what the model's backbone sees.
        classes: ``"scfed"`` (happy, dedicated, neutral, confused, tired, bored),
            ``"basic"`` (the seven FER2013 expressions) or a list of ``EXPRESSIONS`` names.
        nuisance: a global strength in [0, 1] for every nuisance, a dict of per-nuisance
            strengths (missing ones at 1) or a ``NuisanceStrengths``.
        cue: in [0, 1], how far each class moves its facial parts from a face at rest
            (1: as specified; smaller: subtler cues, see ``ExpressionSpec.draw``).
    """

    def __init__(self, n: int, seed: int = 0, transform=None, image_size: int = 112,
                 classes: str | Sequence[str] = "scfed",
                 nuisance: float | Mapping[str, float] | NuisanceStrengths = 1.0, cue: float = 1.0):
        if n < 0 or seed < 0 or image_size < 32:
            raise ValueError(f"need n >= 0, seed >= 0 and image_size >= 32; got {n}, {seed}, {image_size}")
        if not 0.0 <= cue <= 1.0:
            raise ValueError(f"cue must be in [0, 1], got {cue!r}")
        self.cue = float(cue)
        self.n, self.seed, self.transform, self.image_size = int(n), int(seed), transform, int(image_size)
        self.classes = resolve_classes(classes)
        self.strengths = NuisanceStrengths.coerce(nuisance)
        self.targets = [i % len(self.classes) for i in range(self.n)]

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (f"SyntheticClassroomFaces(n={self.n}, seed={self.seed}, image_size={self.image_size}, "
                f"classes={self.classes}, nuisance={self.strengths}, cue={self.cue})")

    def __getitem__(self, i: int):
        image = self.render(i)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[self._index(i)]

    def key_parts(self, label: int) -> tuple[str, ...]:
        """The parts (of ``KEY_PARTS``) that carry class ``label``'s cue."""
        return EXPRESSIONS[self.classes[label]].key_parts

    def nuisances(self, i: int) -> dict:
        """The nuisance values drawn for sample ``i`` (see ``Nuisances``)."""
        return asdict(self._sample(i).nuisances)

    def expression(self, i: int) -> dict:
        """The expression parameters drawn for sample ``i`` (see ``Expression``)."""
        return asdict(self._sample(i).expression)

    def render(self, i: int, hide_key_parts: bool = False) -> Image.Image:
        """Sample ``i`` as a PIL RGB image, without ``transform``.

        ``hide_key_parts=True`` leaves out the parts that carry the class cue (skin
        shows instead) and changes nothing else: the pixels that differ from the full
        image are the mask's, less any that an occluder covers.
        """
        sample = self._sample(i)
        layers = self._layers(sample)
        image = Image.new("RGB", (self.image_size,) * 2, sample.identity.wall)
        draw = ImageDraw.Draw(image)
        _paint(draw, layers["background"])
        _paint(draw, layers["face"])
        if not hide_key_parts:
            _paint(draw, layers["key"])
        _paint(draw, layers["occluder"])
        return _photometry(image, sample.nuisances, sample.noise_offset)

    def mask(self, i: int) -> np.ndarray:
        """Boolean (H, W) key-region mask of sample ``i``: the pixels of the parts that carry
        its class cue, including any that an occluder hides (the cue is still there)."""
        return self._rasterise(self._layers(self._sample(i))["key"])

    def occluder_mask(self, i: int) -> np.ndarray:
        """Boolean (H, W) mask of the occluder's pixels (all False when there is none)."""
        return self._rasterise(self._layers(self._sample(i))["occluder"])

    def face_mask(self, i: int) -> np.ndarray:
        """Boolean (H, W) mask of the face: every pixel the face and its parts cover, hidden
        or not; outside it (and off the occluder) is background."""
        layers = self._layers(self._sample(i))
        return self._rasterise(layers["face"] + layers["key"])

    # -- internals ----------------------------------------------------------------------

    def _index(self, i: int) -> int:
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} samples")
        return i % self.n

    def _sample(self, i: int) -> _Sample:
        i = self._index(i)
        label = self.targets[i]
        # Identity and expression take a fixed number of draws whatever the class, and
        # the nuisances come after them: nuisance strengths never change the face.
        rng = np.random.default_rng([self.seed, i])
        identity = _draw_identity(rng)
        expression = EXPRESSIONS[self.classes[label]].draw(rng, self.cue)
        nuisances, occluder_draws, clutter_draws, noise_offset = _draw_nuisances(rng, self.strengths, self.image_size)
        return _Sample(label, identity, expression, nuisances, occluder_draws, clutter_draws, noise_offset)

    def _layers(self, sample: _Sample) -> dict[str, list[Op]]:
        """Pixel drawing operations in painting order: background, face (all but the key
        parts), key parts, occluder."""
        idn, nz, size = sample.identity, sample.nuisances, self.image_size
        face, key, occluder = face_ops(idn, sample.expression, EXPRESSIONS[self.classes[sample.label]].key_parts,
                                       Pose.of(idn, nz, size), size / 112, nz.occluder, sample.occluder_draws)
        return {
            "background": _clutter(sample.clutter_draws, nz.clutter_items, self.strengths.clutter, idn.wall, size),
            "face": face,
            "key": key,
            "occluder": occluder,
        }

    def _rasterise(self, ops: list[Op]) -> np.ndarray:
        canvas = Image.new("L", (self.image_size,) * 2, 0)
        _paint(ImageDraw.Draw(canvas), ops, fill=255)
        return np.asarray(canvas) > 0


def split_seed(seed: int, split: str) -> int:
    """The seed of one split, derived from ``seed``: distinct random streams per split."""
    index = ("train", "val", "test").index(split)
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def synthetic_splits(num_train: int = 3000, num_val: int = 600, num_test: int = 600, seed: int = 0,
                     **kwargs) -> dict[str, SyntheticClassroomFaces]:
    """``{"train", "val", "test"}`` data sets with seeds derived by ``split_seed`` (no shared
    samples); ``kwargs`` go to every ``SyntheticClassroomFaces`` (set ``.transform`` per
    split afterwards, e.g. ``train_transform()`` for train only)."""
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    return {split: SyntheticClassroomFaces(n, seed=split_seed(seed, split), **kwargs) for split, n in sizes.items()}
