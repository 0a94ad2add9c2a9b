"""Measures of a heatmap against the key regions and for faithfulness, with intervals.

Every map of Figure 8 (Grad-CAM of L4, window attention and KROAFE; the sources of
the two attention blocks; a uniform map) is scored per face by:

* **key-region energy** (relevance mass accuracy, Arras et al. 2022): the share of
  the map's raw, non-negative mass inside the face's key-region mask, measured
  *before* any min-max scaling (scaling subtracts each map's minimum, which moves
  mass). A uniform map scores the mask's area.
* **pointing game** (Zhang et al. 2018): is the map's maximum on the key region,
  with a tolerance of one L4 cell (the mask is dilated by H/7 pixels, since a map
  read from a 7x7 grid cannot place its peak more finely). A uniform map's
  expected score is the dilated mask's area.
* **ROAD** (Rong et al., ICML 2022), pytorch-grad-cam's ``ROADCombined``: pixels
  are removed in order of the map (most relevant first, and least relevant first)
  and filled by noisy linear imputation; the score is (LeRF - MoRF) / 2 of the
  explained class's softmax probability, averaged over the removal percentiles.
  Higher is more faithful. Ties (flat zero areas of a ReLU'd map, or a uniform map)
  make percentile thresholds degenerate, so every map gets a seeded jitter of 1e-6
  of its range before ROAD; the uniform map thereby becomes a random ordering, the
  usual baseline for ROAD.

Intervals are Student-t over faces (:func:`sfer.explain.energy.t_interval`), and
:meth:`MapMeasures.difference` gives the paired per-face difference of two maps
with its interval.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pytorch_grad_cam.metrics.road import ROADCombined
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from scipy import ndimage

from .cam import compute_cam, scale_maps
from .energy import key_region_energy, t_interval
from .loading import to_batch

MEASURES = ("energy", "pointing", "road")
ROAD_PERCENTILES = (20, 40, 60, 80)
UNIFORM = "uniform"


def pointing_game(maps, masks, tolerance: int = 0) -> np.ndarray:
    """1.0 where a map's maximum lies on its mask dilated by ``tolerance`` pixels, else 0.0;
    NaN for a map without mass. ``maps`` (B, H, W) >= 0, ``masks`` (B, H, W) bool."""
    maps, masks = np.asarray(maps, dtype=np.float64), np.asarray(masks, dtype=bool)
    if maps.shape != masks.shape:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} differ in shape")
    hits = np.full(len(maps), np.nan)
    for i, (m, mask) in enumerate(zip(maps, masks)):
        if m.max() <= 0:
            continue
        if tolerance:
            mask = ndimage.maximum_filter(mask, size=2 * tolerance + 1)
        y, x = np.unravel_index(np.argmax(m), m.shape)
        hits[i] = float(mask[y, x])
    return hits


def road_scores(model: nn.Module, images, maps, class_idx: Sequence[int],
                percentiles: Sequence[int] = ROAD_PERCENTILES, seed: int = 0) -> np.ndarray:
    """pytorch-grad-cam's ``ROADCombined`` score of each map (B,), for the explained classes.

    The imputer's noise and the tie-breaking jitter are seeded; the caller's RNG state
    is left as it was.
    """
    batch = to_batch(model, images)
    maps = scale_maps(maps)
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in class_idx]
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            jitter = np.random.default_rng(seed).random(maps.shape, dtype=np.float32) * 1e-6
            return ROADCombined(percentiles=list(percentiles))(batch, maps + jitter, targets, model)
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class MapMeasures:
    """Per-face scores of each map (``scores[map][measure]``, NaN where undefined)."""

    scores: dict[str, dict[str, np.ndarray]]
    confidence: float = 0.95

    def summary(self, name: str, measure: str) -> tuple[float, float, float, int]:
        """Mean, interval low and high, and the number of faces with a defined score."""
        values = self.scores[name][measure]
        return (*t_interval(values, self.confidence), int(np.isfinite(values).sum()))

    def difference(self, a: str, b: str, measure: str) -> tuple[float, float, float, int]:
        """Paired per-face difference a - b: mean, interval, and faces where both are defined."""
        diff = self.scores[a][measure] - self.scores[b][measure]
        return (*t_interval(diff, self.confidence), int(np.isfinite(diff).sum()))

    def markdown(self, measures: Sequence[str] | None = None) -> str:
        """A table: map, then each measure's mean [interval] (n where some faces are undefined)."""
        measures = [m for m in (measures or MEASURES) if all(m in s for s in self.scores.values())]
        pct = f"{self.confidence:.0%}"
        lines = ["| map | " + " | ".join(f"{m} ({pct} CI)" for m in measures) + " |",
                 "| --- |" + " --- |" * len(measures)]
        for name in self.scores:
            cells = []
            for m in measures:
                mean, low, high, n = self.summary(name, m)
                total = len(self.scores[name][m])
                cells.append(f"{mean:.3f} [{low:.3f}, {high:.3f}]" + ("" if n == total else f" (n = {n})"))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def differences_markdown(self, pairs: Sequence[tuple[str, str]], measures: Sequence[str] | None = None) -> str:
        """A table of paired differences ``a - b`` for each pair and measure."""
        measures = [m for m in (measures or MEASURES) if all(m in s for s in self.scores.values())]
        pct = f"{self.confidence:.0%}"
        lines = ["| difference | " + " | ".join(f"{m} ({pct} CI)" for m in measures) + " |",
                 "| --- |" + " --- |" * len(measures)]
        for a, b in pairs:
            cells = []
            for m in measures:
                mean, low, high, _ = self.difference(a, b, m)
                cells.append(f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]")
            lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def measure_maps(maps: Mapping[str, tuple[nn.Module, str, str]], images, masks, class_idx: Sequence[int],
                 measures: Sequence[str] = MEASURES, batch_size: int = 32, confidence: float = 0.95,
                 road_percentiles: Sequence[int] = ROAD_PERCENTILES, seed: int = 0) -> MapMeasures:
    """Score every map on every face, plus a uniform map.

    ``maps``: name -> (model, target, method), e.g. ``{"KROAFE sources": (full, "kroafe",
    "sources"), "L4 Grad-CAM": (full, "l4", "gradcam")}``. ``images``: a preprocessed
    (N, 3, H, W) tensor or PIL images; ``masks`` (N, h, w) key-region masks, resized
    (nearest) to the maps' size; ``class_idx`` (N,): the class each map explains (the
    labels: the mask is where the *label's* cue is drawn). ROAD's model is the map's own.
    """
    unknown = set(measures) - set(MEASURES)
    if unknown:
        raise ValueError(f"unknown measures {sorted(unknown)}; choose from {list(MEASURES)}")
    masks = torch.as_tensor(np.asarray(masks, dtype=bool))
    if len(masks) != len(images) or len(class_idx) != len(images):
        raise ValueError(f"{len(images)} images, {len(masks)} masks and {len(class_idx)} classes: they must match")
    class_idx = [int(c) for c in class_idx]
    per_map: dict[str, dict[str, list[np.ndarray]]] = {name: {m: [] for m in measures} for name in [*maps, UNIFORM]}
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        classes = class_idx[start:stop]
        first_model = next(iter(maps.values()))[0]
        batch = to_batch(first_model, images[start:stop])
        size = tuple(batch.shape[-2:])
        mask = masks[start:stop]
        if tuple(mask.shape[-2:]) != size:
            mask = F.interpolate(mask[:, None].float(), size=size, mode="nearest")[:, 0] > 0.5
        mask = mask.numpy()
        raw = {name: compute_cam(model, batch, target, method, classes, scaled=False)
               for name, (model, target, method) in maps.items()}
        raw[UNIFORM] = np.ones((stop - start, *size), dtype=np.float32)
        road_model = {name: spec[0] for name, spec in maps.items()} | {UNIFORM: first_model}
        for name, m in raw.items():
            out = per_map[name]
            if "energy" in out:
                out["energy"].append(key_region_energy(m, mask))
            if "pointing" in out:
                if name == UNIFORM:  # a flat map's argmax is arbitrary: score its expected hit rate
                    tolerance = size[0] // 7
                    dilated = np.stack([ndimage.maximum_filter(k, size=2 * tolerance + 1) for k in mask])
                    out["pointing"].append(dilated.mean(axis=(1, 2)))
                else:
                    out["pointing"].append(pointing_game(m, mask, tolerance=size[0] // 7))
            if "road" in out:
                with contextlib.redirect_stderr(io.StringIO()):
                    out["road"].append(road_scores(road_model[name], batch, m, classes, road_percentiles,
                                                   seed=seed + start))
    scores = {name: {m: np.concatenate(v).astype(np.float64) for m, v in out.items()} for name, out in per_map.items()}
    return MapMeasures(scores, confidence)
