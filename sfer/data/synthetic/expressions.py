"""Expressions: which parameters each class moves, and so which parts carry its cue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

SCFED_CLASSES = ("happy", "dedicated", "neutral", "confused", "tired", "bored")
BASIC_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER2013 order
KEY_PARTS = ("brows", "eyes", "nose", "mouth")


@dataclass(frozen=True)
class Expression:
    """The parameters of the drawn facial parts; the defaults are a face at rest.

    Vertical amounts are in face half-heights, horizontal ones in face half-widths.
    """

    brow_raise: float = 0.0  # both brows up (+) or down (-)
    brow_tilt: float = 0.0  # inner ends up (+: sad, fear) or down (-: anger, concentration)
    brow_knit: float = 0.0  # inner ends pulled toward the midline (and a little down)
    brow_asym: float = 0.0  # one brow up and the other down by this much (confusion)
    eye_open: float = 1.0  # upper-lid opening: 0 closed, 1 relaxed, 1.4 wide
    gaze_x: float = 0.0  # iris across the opening: -1 to the face's right .. 1 to its left
    gaze_y: float = 0.0  # -1 up .. 1 down
    mouth_curve: float = 0.0  # corners up (+, smile) or down (-, frown)
    mouth_open: float = 0.0  # lip gap: 0 closed .. 1 wide open
    mouth_width: float = 1.0  # relative to the identity's mouth width
    mouth_skew: float = 0.0  # one corner up, the other down
    nose_wrinkle: float = 0.0  # 0..1: how many wrinkle lines cross the nose bridge


@dataclass(frozen=True)
class Range:
    """Uniform on [low, high]; ``either_sign`` flips the sign with probability 1/2."""

    low: float
    high: float
    either_sign: bool = False


# A face at rest still varies a little: the same draw is every class's default.
REST = {
    "brow_raise": Range(-0.015, 0.025),
    "brow_tilt": Range(-0.02, 0.02),
    "brow_knit": Range(-0.01, 0.01),
    "brow_asym": Range(-0.008, 0.008),
    "eye_open": Range(0.9, 1.05),
    "gaze_x": Range(-0.35, 0.35),
    "gaze_y": Range(-0.2, 0.2),
    "mouth_curve": Range(-0.1, 0.12),
    "mouth_open": Range(0.0, 0.06),
    "mouth_width": Range(0.9, 1.08),
    "mouth_skew": Range(-0.02, 0.02),
    "nose_wrinkle": Range(0.0, 0.0),
}


@dataclass(frozen=True)
class ExpressionSpec:
    """A class: the parts that carry its cue and the ranges it draws them from."""

    key_parts: tuple[str, ...]
    ranges: Mapping[str, Range]

    def draw(self, rng: np.random.Generator, cue: float = 1.0) -> Expression:
        """One expression; the same number of draws for every class (fixed stream layout).

        ``cue`` in [0, 1] scales how far the class moves each of its parameters from a
        face at rest: a parameter's value is ``rest + cue * (class - rest)``, both drawn
        from the same uniform number, so ``cue = 1`` is the class as specified, ``cue = 0``
        a face at rest (every class alike), and the draws never change.
        """
        u, flip = rng.random(len(REST)).tolist(), rng.random(len(REST)).tolist()
        values = {}
        for (name, rest), uk, fk in zip(REST.items(), u, flip):
            r = self.ranges.get(name, rest)
            value = r.low + (r.high - r.low) * uk
            value = -value if (r.either_sign and fk < 0.5) else value
            if cue != 1.0 and name in self.ranges:
                at_rest = rest.low + (rest.high - rest.low) * uk
                value = at_rest + cue * (value - at_rest)
            values[name] = value
        return Expression(**values)


# Dedicated and neutral differ only by slightly lowered, knitted brows and a steady
# forward gaze (neutral's gaze wanders): the pair a CNN confuses, as in the paper.
EXPRESSIONS: dict[str, ExpressionSpec] = {
    "happy": ExpressionSpec(("mouth",), {
        "mouth_curve": Range(0.7, 1.3), "mouth_open": Range(0.25, 0.7), "mouth_width": Range(1.1, 1.3)}),
    "dedicated": ExpressionSpec(("brows", "eyes"), {
        "brow_raise": Range(-0.065, -0.025), "brow_knit": Range(0.02, 0.05), "brow_tilt": Range(-0.06, -0.02),
        "gaze_x": Range(-0.1, 0.1), "gaze_y": Range(-0.1, 0.05), "eye_open": Range(0.85, 1.0)}),
    "neutral": ExpressionSpec(("brows", "eyes", "mouth"), {}),
    "confused": ExpressionSpec(("brows", "mouth"), {
        "brow_asym": Range(0.05, 0.09, either_sign=True), "brow_knit": Range(0.02, 0.05),
        "mouth_skew": Range(0.07, 0.14, either_sign=True), "mouth_curve": Range(-0.25, 0.0)}),
    "tired": ExpressionSpec(("eyes",), {
        "eye_open": Range(0.08, 0.4), "gaze_y": Range(0.2, 0.6)}),
    "bored": ExpressionSpec(("eyes", "mouth"), {
        "gaze_x": Range(0.7, 1.0, either_sign=True), "gaze_y": Range(-0.6, 0.2), "eye_open": Range(0.6, 0.8),
        "mouth_curve": Range(-0.5, -0.2)}),
    "angry": ExpressionSpec(("brows", "mouth"), {
        "brow_raise": Range(-0.1, -0.06), "brow_knit": Range(0.05, 0.09), "brow_tilt": Range(-0.13, -0.07),
        "mouth_curve": Range(-0.4, -0.15), "mouth_width": Range(0.75, 0.9)}),
    "disgust": ExpressionSpec(("nose", "mouth"), {
        "nose_wrinkle": Range(0.6, 1.0), "mouth_curve": Range(-0.5, -0.2),
        "mouth_skew": Range(0.05, 0.1, either_sign=True), "mouth_open": Range(0.1, 0.3)}),
    "fear": ExpressionSpec(("brows", "eyes", "mouth"), {
        "brow_raise": Range(0.05, 0.09), "brow_tilt": Range(0.06, 0.12), "eye_open": Range(1.25, 1.45),
        "mouth_open": Range(0.3, 0.6), "mouth_width": Range(1.05, 1.2), "mouth_curve": Range(-0.3, -0.05)}),
    "sad": ExpressionSpec(("brows", "mouth"), {
        "brow_tilt": Range(0.08, 0.14), "brow_raise": Range(0.0, 0.03), "mouth_curve": Range(-0.9, -0.45)}),
    "surprise": ExpressionSpec(("brows", "eyes", "mouth"), {
        "brow_raise": Range(0.07, 0.11), "eye_open": Range(1.3, 1.5), "mouth_open": Range(0.6, 1.0),
        "mouth_width": Range(0.5, 0.7)}),
}


def resolve_classes(classes: str | Sequence[str]) -> list[str]:
    """``"scfed"``, ``"basic"`` or a list of names from ``EXPRESSIONS``, as a list of names."""
    if isinstance(classes, str):
        presets = {"scfed": SCFED_CLASSES, "basic": BASIC_CLASSES}
        if classes not in presets:
            raise ValueError(f"classes must be 'scfed', 'basic' or a list of names, got {classes!r}")
        return list(presets[classes])
    names = list(classes)
    unknown = [c for c in names if c not in EXPRESSIONS]
    if unknown or len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"classes must be at least two distinct names from {sorted(EXPRESSIONS)}, got {names}")
    return names
