"""Figure 8 of the paper, two ways: each face, the Grad-CAM of L4, and for window attention
and KROAFE both Grad-CAM ("where the evidence sits") and sources ("where it came from").

:func:`explain` computes what the figure shows (shared by the CLI and the widgets);
:func:`figure8` draws it; :func:`measures_figure` draws the measures of the maps.
All figures are plain ``matplotlib.figure.Figure`` objects (no pyplot state).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from PIL import Image
from pytorch_grad_cam.utils.image import show_cam_on_image

from .cam import compute_cam
from .loading import to_batch, to_rgb
from .measures import MEASURES, PRIOR, UNIFORM, MapMeasures

COLUMNS = ("l4", "window", "kroafe")
TITLES = {"l4": "L4", "window": "window attention", "kroafe": "KROAFE", "kroa": "KROA branch",
          "window_attention": "window-attention branch", "window_sources": "window sources",
          "kroafe_sources": "KROAFE sources"}


def cam_sources(model: nn.Module, window_model: nn.Module | None = None) -> dict[str, nn.Module | None]:
    """Which model each Figure 8 column comes from: L4 and KROAFE from ``model`` (the full
    SFER-MDFAE), window attention from ``window_model`` (an ``rw`` model) or from ``model``
    if that is the ``rw`` one. ``None`` marks a column neither model has."""
    return {
        "l4": model,
        "window": window_model if window_model is not None else (model if hasattr(model, "window_fe") else None),
        "kroafe": model if hasattr(model, "kroafe") else None,
    }


@torch.no_grad()
def probabilities(model: nn.Module, images) -> np.ndarray:
    """Softmax class probabilities (B, classes) in eval mode (the model's mode is restored)."""
    was_training = model.training
    try:
        return model.eval()(to_batch(model, images)).softmax(dim=1).cpu().numpy()
    finally:
        model.train(was_training)


def explain(model: nn.Module, images, window_model: nn.Module | None = None, method: str = "gradcam",
            class_idx: int | Sequence[int] | None = None, sources: bool = True) -> dict[str, np.ndarray | None]:
    """Everything Figure 8 shows for a list of PIL images (or a preprocessed batch).

    Returns ``image`` (B, H, W, 3) uint8 at the input size, ``l4``/``window``/``kroafe``
    CAMs (B, H, W) in [0, 1] (``None`` for a column no model has), with ``sources`` also
    ``window_sources``/``kroafe_sources`` (the same scale): the *attention part* of each
    block's sources, since the residual part (w_c . L4_t / hw) bypasses attention
    and would blur the contrast Figure 8 is about; ``probabilities``
    (B, classes) of ``model``, ``window_probabilities`` (of ``window_model`` or ``None``)
    and ``class_idx`` (B,), the class all three maps explain: ``class_idx`` when given,
    else ``model``'s prediction, so the columns answer the same question.
    """
    if isinstance(images, Image.Image):
        images = [images]
    batch = to_batch(model, images)
    shown = batch if isinstance(images, torch.Tensor) else images  # PIL pixels when we have them
    probs = probabilities(model, batch)
    classes = probs.argmax(axis=1) if class_idx is None else np.broadcast_to(np.asarray(class_idx), len(batch))
    out: dict[str, np.ndarray | None] = {
        "image": np.stack([to_rgb(im, tuple(batch.shape[-2:])) for im in shown]),
        "probabilities": probs,
        "window_probabilities": probabilities(window_model, batch) if window_model is not None else None,
        "class_idx": classes,
    }
    for target, source in cam_sources(model, window_model).items():
        out[target] = None if source is None else compute_cam(source, batch, target, method, [int(c) for c in classes])
        if sources and target != "l4":
            out[f"{target}_sources"] = (None if source is None else
                                        compute_cam(source, batch, target, "attention_sources", [int(c) for c in classes]))
    return out


def overlay(rgb: np.ndarray, cam: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """The CAM as a jet heatmap over the image, (H, W, 3) uint8 (pytorch-grad-cam's overlay)."""
    return show_cam_on_image(rgb.astype(np.float32) / 255, cam, use_rgb=True, image_weight=image_weight)


def figure8(result: dict, names: Sequence[str], method: str = "gradcam",
            row_labels: Sequence[str] | None = None) -> Figure:
    """Rows of faces; columns: original, L4, window attention, KROAFE (and, when ``result``
    has them, the sources of window attention and KROAFE next to their Grad-CAM), then the
    class probabilities.

    ``result`` is what :func:`explain` returns; ``row_labels`` (e.g. file names or true
    classes) go to the left of each row.
    """
    columns = ["l4", "window", "window_sources", "kroafe", "kroafe_sources"] if "kroafe_sources" in result \
        else list(COLUMNS)
    rows, cols = len(result["image"]), len(columns) + 2
    fig = Figure(figsize=(2.1 * cols + 0.6, 2.2 * rows), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, width_ratios=[1] * (cols - 1) + [1.3])
    for i, ax_row in enumerate(axes):
        probs, explained = result["probabilities"][i], int(result["class_idx"][i])
        ax_row[0].imshow(result["image"][i])
        ax_row[0].set_title(f"predicted {names[int(probs.argmax())]} ({probs.max():.2f})", fontsize=9)
        if row_labels is not None:
            ax_row[0].set_ylabel(row_labels[i], fontsize=8)
        for ax, target in zip(ax_row[1:-1], columns):
            cam = result[target]
            if cam is None:
                ax.text(0.5, 0.5, "no model\nwith this block", ha="center", va="center", fontsize=8)
            else:
                ax.imshow(overlay(result["image"][i], cam[i]))
            ax.set_title(f"{TITLES[target]} → {names[explained]}", fontsize=9)
        for ax in ax_row[:-1]:
            ax.set_xticks([]), ax.set_yticks([])
        bar = ax_row[-1]
        y = np.arange(len(names))
        bar.barh(y, probs, color="tab:blue", label="SFER-MDFAE")
        if result["window_probabilities"] is not None:
            bar.barh(y, result["window_probabilities"][i], height=0.35, color="tab:orange", label="rw")
        bar.set_yticks(y, names, fontsize=7)
        bar.set_xlim(0, 1)
        bar.invert_yaxis()
        bar.tick_params(axis="x", labelsize=7)
        if i == 0:
            bar.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    title = f"{method}: each heatmap explains the class after its arrow"
    if "kroafe_sources" in result:
        title = (f"{method} shows where the evidence sits; sources show which L4 tokens it was read from; "
                 "each heatmap explains the class after its arrow")
    fig.suptitle(title, fontsize=10)
    return fig


def measures_figure(measures: MapMeasures, sweep: dict[str, dict[int, float | tuple]] | None = None) -> Figure:
    """One bar panel per measure (mean and interval per map, the baselines as lines), and
    optionally KROAFE's key-region energy against ``topn`` for each view.

    ``measures``: a :class:`~sfer.explain.measures.MapMeasures`; ``sweep``: view name ->
    {topn: (mean, low, high)}.
    """
    baselines = [n for n in (UNIFORM, PRIOR) if n in measures.scores]
    names = [n for n in measures.scores if n not in baselines]
    shown = [m for m in MEASURES if all(m in measures.scores[n] for n in names)]
    panels = len(shown) + (1 if sweep else 0)
    columns = min(panels, 3)  # a grid, not a strip: each panel stays legible at notebook width
    rows = -(-panels // columns)
    fig = Figure(figsize=(4.8 * columns, 4.2 * rows), dpi=100, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[panels:]:
        ax.set_visible(False)
    colors = ["tab:orange" if "sources" in n else "tab:blue" for n in names]
    labels = {"energy": ("key-region energy (raw map)", "share of the map's mass"),
              "pointing": ("pointing game (1 L4 cell tolerance)", "share of faces"),
              "occluder": ("share on the occluder", "share of the map's mass"),
              "background": ("share on the background", "share of the map's mass"),
              "class_sensitivity": ("class sensitivity", "TV distance between two classes' maps"),
              "road": ("ROAD, higher = faithful", "(LeRF − MoRF)/2 of the class probability")}
    for ax, measure in zip(axes, shown):
        stats = [measures.summary(n, measure) for n in names]
        ax.bar(range(len(names)), [s[0] for s in stats], color=colors,
               yerr=[[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]], capsize=3)
        for base, style in zip(baselines, ("--", ":")):
            ax.axhline(measures.summary(base, measure)[0], color="grey", ls=style, label=f"{base} map")
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        counts = sorted({s[3] for s in stats})  # faces with a score: fewer where a map is empty or no occluder
        n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        ax.set_title(f"{labels[measure][0]} (n = {n} faces)", fontsize=9)
        ax.set_ylabel(labels[measure][1], fontsize=8)
    if sweep:
        ax = axes[panels - 1]
        for view, points in sweep.items():
            topns = sorted(points)
            mean, low, high = (np.array([points[t][i] for t in topns]) for i in range(3))
            ax.errorbar(topns, mean, yerr=[mean - low, high - mean], marker="o", capsize=3, label=f"KROAFE {view}")
        ax.axhline(measures.summary(UNIFORM, "energy")[0], color="grey", ls="--", label="uniform map")
        ax.set_xlabel("topn (m = 7, re-routed, not retrained)")
        ax.set_ylabel("key-region energy")
        ax.set_title("KROAFE energy against topn", fontsize=9)
        ax.legend(fontsize=7)
    if baselines:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(baselines), fontsize=8)
    fig.suptitle(f"mean and {measures.confidence:.0%} interval over faces; blue: Grad-CAM (where evidence sits), "
                 "orange: sources (where it came from)", fontsize=9)
    return fig
