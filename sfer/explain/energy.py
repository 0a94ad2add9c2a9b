"""Key-region energy: how much of a CAM lies where the class cue is drawn.

Figure 8 of the paper argues by eye that KROAFE looks at the key regions (brows,
eyes, mouth) more than L4 or window attention do. The synthetic faces come with
the mask of the pixels that carry their class cue, so the claim becomes a number:
the share of a CAM's mass inside that mask. A map that looks everywhere alike
scores the mask's area share, the *uniform baseline*; a map that looks only at the
cue scores 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import stats

from .cam import compute_cam


def key_region_energy(cams, masks) -> np.ndarray:
    """Share of each CAM's mass inside its mask: sum(cam * mask) / sum(cam), shape (B,).

    ``cams``: non-negative (B, H, W) or (H, W) maps; ``masks``: boolean maps of the same
    shape. A CAM without mass (all zero, as Grad-CAM gives when no position has
    positive evidence) has no share: NaN, which :func:`compare_targets` leaves out and
    counts.
    """
    cams = np.asarray(cams, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    if cams.shape != masks.shape:
        raise ValueError(f"CAMs {cams.shape} and masks {masks.shape} differ in shape")
    if (cams < 0).any():
        raise ValueError("CAMs must be non-negative")
    single = cams.ndim == 2
    cams, masks = (cams[None], masks[None]) if single else (cams, masks)
    total = cams.sum(axis=(1, 2))
    inside = (cams * masks).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, inside / total, np.nan)
    return share[0] if single else share


@dataclass(frozen=True)
class Summary:
    """Mean share over a split with its confidence interval, and the mean lift over the
    uniform baseline (share - mask area, paired per image) with its interval."""

    mean: float
    low: float
    high: float
    lift: float
    lift_low: float
    lift_high: float
    n: int
    undefined: int  # images whose CAM had no mass (left out)


@dataclass(frozen=True)
class EnergyComparison:
    """What :func:`compare_targets` measured: one :class:`Summary` per target plus ``uniform``."""

    summaries: dict[str, Summary]
    shares: dict[str, np.ndarray]  # per-image shares (NaN where undefined), "uniform" = mask areas
    confidence: float
    method: str

    def markdown(self) -> str:
        """A markdown table: target, mean share [CI], lift over uniform [CI], n."""
        pct = f"{self.confidence:.0%}"
        lines = [f"| target | key-region energy ({pct} CI) | minus uniform ({pct} CI) | n |",
                 "| --- | --- | --- | --- |"]
        for name, s in self.summaries.items():
            lift = "—" if name == "uniform" else f"{s.lift:+.3f} [{s.lift_low:+.3f}, {s.lift_high:+.3f}]"
            n = f"{s.n}" + (f" ({s.undefined} empty CAMs left out)" if s.undefined else "")
            lines.append(f"| {name} | {s.mean:.3f} [{s.low:.3f}, {s.high:.3f}] | {lift} | {n} |")
        return "\n".join(lines)


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of the finite ``values``.

    Why t and not a bootstrap: shares are bounded, so with the >= 200 faces of a test
    split the mean is close to normal, and the t interval is exact to compute and
    needs no seed. NaN (or a zero-width interval) for fewer than two values.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        mean = float(values.mean()) if len(values) else float("nan")
        return mean, float("nan"), float("nan")
    mean = float(values.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def compare_targets(models: Mapping[str, nn.Module], images, masks, class_idx: Sequence[int] | None = None,
                    method: str = "gradcam", batch_size: int = 32, confidence: float = 0.95) -> EnergyComparison:
    """Key-region energy per target over a split, with confidence intervals and the uniform baseline.

    ``models`` maps each CAM target to the model it is taken from, as in Figure 8:
    ``{"l4": full, "window": rw, "kroafe": full}``. ``images``: a preprocessed
    (N, 3, H, W) tensor or a list of PIL images; ``masks``: (N, h, w) key-region masks,
    resized (nearest) to the CAM size when they differ. ``class_idx``: the class each
    CAM explains, e.g. the labels (the mask is where the *label's* cue is drawn, so
    that is the natural question); ``None`` explains each model's prediction.

    ``method``: any :func:`~sfer.explain.cam.compute_cam` method, ``"sources"`` included.
    Shares are taken of the raw non-negative maps, before min-max scaling (which
    subtracts each map's minimum and so moves mass).

    Intervals are Student-t (:func:`t_interval`); ``lift`` is the paired per-image
    difference share - mask area, so it says whether a target beats looking everywhere.
    """
    masks = torch.as_tensor(np.asarray(masks, dtype=bool))
    if len(masks) != len(images):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    shares: dict[str, np.ndarray] = {}
    for target, model in models.items():
        per_batch = []
        for start in range(0, len(images), batch_size):
            stop = start + batch_size
            classes = None if class_idx is None else list(class_idx[start:stop])
            cams = compute_cam(model, images[start:stop], target, method=method, class_idx=classes, scaled=False)
            m = masks[start:stop]
            if tuple(m.shape[-2:]) != cams.shape[-2:]:
                m = F.interpolate(m[:, None].float(), size=cams.shape[-2:], mode="nearest")[:, 0] > 0.5
            per_batch.append(key_region_energy(cams, m.numpy()))
        shares[target] = np.concatenate(per_batch)
    area = masks.double().mean(dim=(1, 2)).numpy()  # what a uniform map scores
    shares["uniform"] = area

    summaries = {}
    for name, share in shares.items():
        mean, low, high = t_interval(share, confidence)
        lift, lift_low, lift_high = t_interval(share - area, confidence)
        summaries[name] = Summary(mean, low, high, lift, lift_low, lift_high,
                                  n=int(np.isfinite(share).sum()), undefined=int(np.isnan(share).sum()))
    return EnergyComparison(summaries, shares, confidence, method)
