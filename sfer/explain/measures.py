"""Measures of a heatmap against the key regions, the distractors and for faithfulness, with intervals.

Every map of Figure 8 (Grad-CAM of L4, window attention and KROAFE; the sources of
the two attention blocks) and two baselines are scored per face. The synthetic faces
come with the mask of the pixels that carry their class cue (the *key region*), of the
occluder (a hand, book or pen) and of the face, so the paper's claims by eye become
numbers:

* **energy**, key-region energy (relevance mass accuracy, Arras et al. 2022): the
  share of the map's raw, non-negative mass inside the key-region mask, measured
  *before* any min-max scaling (scaling subtracts each map's minimum, which moves
  mass).
* **pointing**, the pointing game (Zhang et al. 2018): is the map's maximum on the key
  region, with a tolerance of one L4 cell (the mask is dilated by H/7 pixels, since a
  map read from a 7x7 grid cannot place its peak more finely).
* **occluder** and **background**, distractor energy (the paper's Figure 8(f): "window
  attention is drawn to a hand in front of the face, KROAFE is not"): the share of the
  mass on the occluder, and on the background (off the face and off the occluder),
  on faces that have an occluder (NaN on the others). Key region, occluder and
  background are disjoint: occluder pixels over a hidden key part count as key
  region (the mask keeps the hidden cue), not as occluder.
* **class_sensitivity** (the question of Quantus's ``RandomLogit``, Sixt et al. 2020):
  how much the map moves when it explains another class, drawn at random per face
  (seeded) from the classes other than the explained one; the total-variation
  distance between the two maps as distributions of mass, 0.5 * sum |p - q|: 0 for a
  map that ignores the class, 1 for disjoint maps. A map that explains the class
  should move; see below why it is not Quantus itself.
* **road**, ROAD (Rong et al., ICML 2022), pytorch-grad-cam's ``ROADCombined``:
  pixels are removed in order of the map (most relevant first, and least relevant
  first) and filled by noisy linear imputation; the score is (LeRF - MoRF) / 2 of the
  explained class's softmax probability, averaged over the removal percentiles.
  Higher is more faithful. Ties make percentile thresholds degenerate, so every map
  gets a seeded jitter of 1e-6 of its range first: a uniform map becomes a random
  ordering, the usual baseline for ROAD. Opt-in: it costs a sparse linear solve per
  percentile, map and face.

Baselines: **uniform**, a map that looks everywhere alike (its energy is the mask's
area), and **prior**, the mean key-region mask of the training faces
(:func:`mean_mask`): a map that knows where cues usually are but looks at nothing.
A map must beat the prior to show that it reads the face in front of it.

**One rule for an empty map.** A map without mass (all zero, as Grad-CAM gives when
no position has positive evidence for the class) has no shares, no maximum and no
order: every measure is NaN for that face and map (for class sensitivity, when either
map is empty), and it is left out of that map's means and of the paired differences
that involve it. :meth:`MapMeasures.summary` returns how many faces remain.

Intervals are Student-t over faces (:func:`t_interval`); :meth:`MapMeasures.difference`
gives the paired per-face difference of two maps with its interval, and
:meth:`MapMeasures.by_class` the measures per class.

Why class sensitivity is written here and not taken from Quantus: ``quantus`` 0.6
requires ``opencv-python`` (a second OpenCV beside the ``opencv-python-headless``
this environment has; both install the same ``cv2`` package and overwrite each other)
and ``pandas``, for a measure of a few lines. Its ``RandomLogit`` also compares the
two maps by SSIM of the *flattened* maps, which treats a 2-D map as a 1-D signal.
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
from scipy import ndimage, stats

from .cam import compute_cam, scale_maps
from .loading import to_batch

MEASURES = ("energy", "pointing", "occluder", "background", "class_sensitivity", "road")
ROAD_PERCENTILES = (20, 40, 60, 80)
UNIFORM, PRIOR = "uniform", "prior"


def key_region_energy(cams, masks) -> np.ndarray:
    """Share of each map's mass inside its mask: sum(cam * mask) / sum(cam), shape (B,).

    ``cams``: non-negative (B, H, W) or (H, W) maps; ``masks``: boolean maps of the same
    shape. A map without mass has no share: NaN.
    """
    cams = np.asarray(cams, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    if cams.shape != masks.shape:
        raise ValueError(f"CAMs {cams.shape} and masks {masks.shape} differ in shape")
    if (cams < 0).any():
        raise ValueError("CAMs must be non-negative")
    single = cams.ndim == 2
    cams, masks = (cams[None], masks[None]) if single else (cams, masks)
    total = cams.sum(axis=(1, 2))  # (B,)
    inside = (cams * masks).sum(axis=(1, 2))  # (B,)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, inside / total, np.nan)
    return share[0] if single else share


def t_interval(values, confidence: float = 0.95, bounds: tuple[float, float] | None = None
               ) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of the finite ``values``.

    Why t and not a bootstrap: the scores are bounded, so over hundreds of faces the mean
    is close to normal, and the t interval is exact to compute and needs no seed. NaN
    bounds for fewer than two values. ``bounds``: the range the mean cannot leave (a share
    lies in [0, 1]); the interval is cut to it, which keeps its coverage, instead of
    reaching past 100% on a share near 1.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        mean = float(values.mean()) if len(values) else float("nan")
        return mean, float("nan"), float("nan")
    mean = float(values.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    low, high = bounds or (-np.inf, np.inf)
    return mean, max(mean - half, low), min(mean + half, high)


def at_map_resolution(maps, grid: int = 7) -> np.ndarray:
    """(N, H, W) maps average-pooled to a ``grid`` x ``grid`` map and resized back bilinearly:
    what a map of the L4 grid can show, e.g. the prior brought to the resolution of the
    explained maps (a pixel-sharp prior can follow a thin stroke no 7x7 map can)."""
    x = torch.tensor(np.asarray(maps), dtype=torch.float64)[:, None]
    return F.interpolate(F.adaptive_avg_pool2d(x, grid), size=x.shape[-2:], mode="bilinear",
                         align_corners=False)[:, 0].numpy()


def _bounds(measure: str) -> tuple[float, float] | None:
    """The range of a measure's mean: every measure but ROAD is a share or a hit rate, in [0, 1]."""
    return None if measure == "road" else (0.0, 1.0)


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


def class_sensitivity(maps, other_maps) -> np.ndarray:
    """Total-variation distance between each map and the map of another class, both taken as
    distributions of mass: 0.5 * sum |p - q| in [0, 1], (B,); NaN where either map is empty."""
    p, q = (np.asarray(m, dtype=np.float64) for m in (maps, other_maps))
    if p.shape != q.shape:
        raise ValueError(f"maps {p.shape} and other maps {q.shape} differ in shape")
    mass_p, mass_q = p.sum(axis=(1, 2)), q.sum(axis=(1, 2))  # (B,)
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = 0.5 * np.abs(p / mass_p[:, None, None] - q / mass_q[:, None, None]).sum(axis=(1, 2))
    return np.where((mass_p > 0) & (mass_q > 0), distance, np.nan)


def road_scores(model: nn.Module, images, maps, class_idx: Sequence[int],
                percentiles: Sequence[int] = ROAD_PERCENTILES, seed: int = 0) -> np.ndarray:
    """pytorch-grad-cam's ``ROADCombined`` score of each map (B,), for the explained classes;
    NaN for a map without mass (it has no order to remove pixels by).

    The imputer's noise and the tie-breaking jitter are seeded; the caller's RNG state
    is left as it was.
    """
    batch = to_batch(model, images)
    maps = np.asarray(maps, dtype=np.float32)
    scores = np.full(len(maps), np.nan)
    keep = maps.reshape(len(maps), -1).max(axis=1) > 0
    if not keep.any():
        return scores
    scaled = scale_maps(maps[keep])
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c, k in zip(class_idx, keep) if k]
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            torch.manual_seed(seed)
            jitter = np.random.default_rng(seed).random(scaled.shape, dtype=np.float32) * 1e-6
            scores[keep] = ROADCombined(percentiles=list(percentiles))(batch[torch.from_numpy(keep)],
                                                                        scaled + jitter, targets, model)
    finally:
        model.train(was_training)
    return scores


def mean_mask(faces, indices: Sequence[int] | None = None) -> np.ndarray:
    """The prior baseline: the mean key-region mask (H, W) float64 of ``faces`` (a
    :class:`~sfer.data.SyntheticClassroomFaces`, the training split), over ``indices``
    (default all). It knows where cues usually are and looks at nothing."""
    indices = range(len(faces)) if indices is None else indices
    masks = [faces.mask(i) for i in indices]
    if not masks:
        raise ValueError("mean_mask needs at least one face")
    return np.mean(masks, axis=0, dtype=np.float64)


@dataclass(frozen=True)
class MapMeasures:
    """Per-face scores of each map, ``scores[map][measure]`` (N,) float64, NaN where undefined;
    ``class_idx`` (N,): the class each face's maps explain (for :meth:`by_class`)."""

    scores: dict[str, dict[str, np.ndarray]]
    confidence: float = 0.95
    class_idx: np.ndarray | None = None

    def summary(self, name: str, measure: str) -> tuple[float, float, float, int]:
        """Mean, interval low and high, and the number of faces with a defined score."""
        values = self.scores[name][measure]
        return (*t_interval(values, self.confidence, _bounds(measure)), int(np.isfinite(values).sum()))

    def difference(self, a: str, b: str, measure: str) -> tuple[float, float, float, int]:
        """Paired per-face difference a - b: mean, interval, and faces where both are defined."""
        diff = self.scores[a][measure] - self.scores[b][measure]
        return (*t_interval(diff, self.confidence), int(np.isfinite(diff).sum()))

    def by_class(self, name: str, measure: str = "energy") -> dict[int, tuple[float, float, float, int]]:
        """:meth:`summary` of the faces of each explained class: class index -> (mean, low, high, n)."""
        if self.class_idx is None:
            raise ValueError("these measures were built without class_idx: nothing to group by")
        values = self.scores[name][measure]
        return {int(c): (*t_interval(values[self.class_idx == c], self.confidence, _bounds(measure)),
                         int(np.isfinite(values[self.class_idx == c]).sum()))
                for c in np.unique(self.class_idx)}

    def markdown(self, measures: Sequence[str] | None = None) -> str:
        """A table: map, then each measure's mean [interval] (n where some faces are undefined)."""
        measures = self._shown(measures)
        lines = [self._header("map", measures)]
        for name in self.scores:
            lines.append(f"| {name} | " + " | ".join(self._cell(self.scores[name][m], self.summary(name, m))
                                                      for m in measures) + " |")
        return "\n".join(lines)

    def differences_markdown(self, pairs: Sequence[tuple[str, str]], measures: Sequence[str] | None = None) -> str:
        """A table of paired differences ``a - b`` for each pair and measure."""
        measures = self._shown(measures)
        lines = [self._header("difference", measures)]
        for a, b in pairs:
            cells = ["{:+.3f} [{:+.3f}, {:+.3f}]".format(*self.difference(a, b, m)[:3]) for m in measures]
            lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def class_markdown(self, measure: str = "energy", names: Sequence[str] | None = None) -> str:
        """A table of ``measure`` per explained class (rows: maps; columns: classes, named by ``names``)."""
        classes = [int(c) for c in np.unique(self.class_idx)] if self.class_idx is not None else []
        labels = [names[c] if names else str(c) for c in classes]
        lines = [self._header(f"{measure} by class", labels)]
        for name in self.scores:
            groups = self.by_class(name, measure)
            values = self.scores[name][measure]
            lines.append(f"| {name} | " + " | ".join(self._cell(values[self.class_idx == c], groups[c])
                                                      for c in classes) + " |")
        return "\n".join(lines)

    def _shown(self, measures: Sequence[str] | None) -> list[str]:
        return [m for m in (measures or MEASURES) if all(m in s for s in self.scores.values())]

    def _header(self, first: str, columns: Sequence[str]) -> str:
        pct = f"{self.confidence:.0%}"
        return (f"| {first} | " + " | ".join(f"{c} ({pct} CI)" for c in columns) + " |\n"
                + "| --- |" + " --- |" * len(columns))

    @staticmethod
    def _cell(values: np.ndarray, summary: tuple[float, float, float, int]) -> str:
        mean, low, high, n = summary
        return f"{mean:.3f} [{low:.3f}, {high:.3f}]" + ("" if n == len(values) else f" (n = {n})")


def measure_maps(maps: Mapping[str, tuple[nn.Module, str, str]], images, masks, class_idx: Sequence[int],
                 measures: Sequence[str] | None = None, batch_size: int = 32, confidence: float = 0.95,
                 road_percentiles: Sequence[int] = ROAD_PERCENTILES, seed: int = 0, *,
                 occluder_masks=None, face_masks=None, prior=None) -> MapMeasures:
    """Score every map on every face, beside a uniform map and (with ``prior``) the prior map.

    ``maps``: name -> (model, target, method), e.g. ``{"KROAFE sources": (full, "kroafe",
    "attention_sources"), "L4 Grad-CAM": (full, "l4", "gradcam")}``; each model gets the
    images through its own transform (:func:`~sfer.explain.loading.transform_for`).
    ``images``: PIL images or a preprocessed (N, 3, H, W) tensor; ``masks`` (N, h, w)
    key-region masks; ``class_idx`` (N,): the class each map explains (the labels: the
    mask is where the *label's* cue is drawn). Masks are resized (nearest) to each map.

    ``occluder_masks`` and ``face_masks`` (N, h, w) enable the distractor measures;
    ``prior`` (h, w), e.g. :func:`mean_mask` of the training faces, adds the prior
    baseline. ``measures``: default every measure the inputs allow but ROAD (opt-in,
    slow). Class sensitivity's other class is drawn per face from ``seed``; ROAD's
    model for the baselines is the first map's.
    """
    wanted = _measures(measures, occluder_masks is not None and face_masks is not None)
    masks = _bool_masks(masks, "masks", len(images))
    occluders = None if occluder_masks is None else _bool_masks(occluder_masks, "occluder_masks", len(images))
    faces = None if face_masks is None else _bool_masks(face_masks, "face_masks", len(images))
    if len(class_idx) != len(images):
        raise ValueError(f"{len(images)} images and {len(class_idx)} classes: they must match")
    if not maps:
        raise ValueError("maps is empty: name at least one (model, target, method)")
    num_classes = {int(model.num_classes) for model, _, _ in maps.values()}
    if len(num_classes) > 1:
        raise ValueError(f"the maps' models have different class counts {sorted(num_classes)}")
    class_idx = np.asarray(class_idx, dtype=np.int64)
    c = num_classes.pop()
    other_idx = (class_idx + np.random.default_rng(seed).integers(1, c, size=len(class_idx))) % c  # never the same
    baselines = {UNIFORM: torch.ones(masks.shape[-2:], dtype=torch.float64)}
    if prior is not None:
        baselines[PRIOR] = torch.as_tensor(np.asarray(prior, dtype=np.float64))
    if set(maps) & set(baselines):
        raise ValueError(f"map names {sorted(set(maps) & set(baselines))} are taken by the baselines")

    per_map: dict[str, dict[str, list[np.ndarray]]] = {name: {m: [] for m in wanted} for name in [*maps, *baselines]}
    first_model = next(iter(maps.values()))[0]
    for start in range(0, len(images), batch_size):
        part = slice(start, min(start + batch_size, len(images)))
        classes, others = class_idx[part].tolist(), other_idx[part].tolist()
        regions = (masks[part], None if occluders is None else occluders[part], None if faces is None else faces[part])
        batches: dict[int, torch.Tensor] = {}
        for name, (model, target, method) in maps.items():
            if id(model) not in batches:
                batches[id(model)] = to_batch(model, images[part])  # each model's own transform
            batch = batches[id(model)]
            raw = compute_cam(model, batch, target, method, classes, scaled=False)  # (B, H, W)
            other = (compute_cam(model, batch, target, method, others, scaled=False)
                     if "class_sensitivity" in wanted else None)
            _score(per_map[name], raw, other, regions, (model, batch, classes, road_percentiles, seed + start))
        base_batch = batches[id(first_model)]
        size = tuple(base_batch.shape[-2:])
        for name, base in baselines.items():
            raw = _resize(base, size).expand(len(classes), *size).clone().numpy()  # (B, H, W)
            _score(per_map[name], raw, raw, regions, (first_model, base_batch, classes, road_percentiles, seed + start))
        if "pointing" in wanted:  # a flat map's argmax is arbitrary: score its expected hit rate
            tolerance = size[0] // 7
            dilated = [ndimage.maximum_filter(k, size=2 * tolerance + 1)
                       for k in _resize(masks[part], size, nearest=True).numpy()]
            per_map[UNIFORM]["pointing"][-1] = np.stack(dilated).mean(axis=(1, 2))
    scores = {name: {m: np.concatenate(v).astype(np.float64) for m, v in out.items()} for name, out in per_map.items()}
    return MapMeasures(scores, confidence, class_idx)


def measure_faces(maps: Mapping[str, tuple[nn.Module, str, str]], faces, indices: Sequence[int] | None = None,
                  prior=None, **kwargs) -> MapMeasures:
    """:func:`measure_maps` on a :class:`~sfer.data.SyntheticClassroomFaces` (its ``transform``
    is not used: each model applies its own): images, labels, key-region, occluder and face
    masks are taken from ``faces`` at ``indices`` (default all). ``prior``: e.g.
    ``mean_mask(train_faces)``. Other keywords go to :func:`measure_maps`.

    Figure 8's comparison for the claims::

        maps = {"L4 Grad-CAM": (full, "l4", "gradcam"),
                "KROAFE sources": (full, "kroafe", "attention_sources"),
                "window sources": (rw, "window", "attention_sources")}
        result = measure_faces(maps, test_faces, prior=mean_mask(train_faces))
        result.scores["window sources"]["occluder"]  # (N,), NaN on faces without an occluder
    """
    indices = list(range(len(faces)) if indices is None else indices)
    stack = lambda draw: np.stack([draw(i) for i in indices])  # noqa: E731
    return measure_maps(maps, [faces.render(i) for i in indices], stack(faces.mask),
                        [faces.targets[i] for i in indices], occluder_masks=stack(faces.occluder_mask),
                        face_masks=stack(faces.face_mask), prior=prior, **kwargs)


def _measures(measures: Sequence[str] | None, distractors: bool) -> tuple[str, ...]:
    """The measures to take: validated, or by default every one the inputs allow but ROAD."""
    if measures is None:
        return tuple(m for m in MEASURES if m != "road" and (distractors or m not in ("occluder", "background")))
    unknown = set(measures) - set(MEASURES)
    if unknown:
        raise ValueError(f"unknown measures {sorted(unknown)}; choose from {list(MEASURES)}")
    if not distractors and {"occluder", "background"} & set(measures):
        raise ValueError("the occluder and background measures need occluder_masks and face_masks")
    return tuple(measures)


def _bool_masks(masks, name: str, n: int) -> torch.Tensor:
    masks = torch.as_tensor(np.asarray(masks, dtype=bool))
    if masks.dim() != 3 or len(masks) != n:
        raise ValueError(f"{name} must be (N, h, w) with N = {n} images, got shape {tuple(masks.shape)}")
    return masks


def _resize(maps: torch.Tensor, size: tuple[int, int], nearest: bool = False) -> torch.Tensor:
    """(…, h, w) masks (nearest, bool) or maps (bilinear, float64) at ``size``."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:]).double()
    out = F.interpolate(flat, size=size, mode="nearest") > 0.5 if nearest else \
        F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size)


def _score(out: dict[str, list[np.ndarray]], raw: np.ndarray, other: np.ndarray | None, regions, road) -> None:
    """Append one batch's scores of one map to ``out`` (measure -> list of (B,) arrays).

    ``raw``/``other`` (B, H, W): the map for the explained class and for the other class;
    ``regions``: the batch's key, occluder and face masks at their own size; ``road``:
    (model, batch, classes, percentiles, seed).
    """
    size = raw.shape[-2:]
    key, occluder, face = (None if m is None else _resize(m, size, nearest=True).numpy() for m in regions)
    if "energy" in out:
        out["energy"].append(key_region_energy(raw, key))
    if "pointing" in out:
        out["pointing"].append(pointing_game(raw, key, tolerance=size[0] // 7))
    if "occluder" in out or "background" in out:
        occluded = regions[1].flatten(1).any(dim=1).numpy()  # (B,): faces that have an occluder
        on_occluder = occluder & ~key
        off_face = ~face & ~occluder & ~key
        for measure, region in (("occluder", on_occluder), ("background", off_face)):
            if measure in out:
                out[measure].append(np.where(occluded, key_region_energy(raw, region), np.nan))
    if "class_sensitivity" in out:
        out["class_sensitivity"].append(class_sensitivity(raw, other))
    if "road" in out:
        model, batch, classes, percentiles, seed = road
        out["road"].append(road_scores(model, batch, raw, classes, percentiles, seed))
