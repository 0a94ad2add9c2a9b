"""The notebooks' figures.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so a
notebook shows it once (as the cell's value) and a script can ``savefig`` it:

```python
from sfer.plots import channel_weights
channel_weights([w1, w2, w3, w4])                      # notebook 03: W_i of every scale
```

The interactive views that redraw these figures live in :mod:`sfer.widgets`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sfer.explain.routing import region_boxes
from sfer.models.regions import region_ids

SCALE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def _np(t) -> np.ndarray:
    """A tensor (or array) as a float numpy array, which matplotlib takes without conversion warnings."""
    return t.detach().float().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float32)


def _bare(ax):
    ax.set_xticks([]), ax.set_yticks([])


def to_png(figure: Figure) -> bytes:
    """The figure rendered by Agg, as PNG bytes."""
    FigureCanvasAgg(figure)
    buf = io.BytesIO()
    figure.savefig(buf, format="png")
    return buf.getvalue()


# ----------------------------------------------------------------------------- 01: the data

def outline(ax, mask: np.ndarray, color: str = "yellow", **kwargs) -> None:
    """Draw the border of a boolean mask (H, W) on ``ax``."""
    ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors=color, linewidths=1.0, **kwargs)


def image_grid(rows: Sequence[Sequence], titles: Sequence[Sequence[str]] | None = None,
               row_labels: Sequence[str] | None = None, masks: Sequence[Sequence] | None = None,
               suptitle: str = "", size: float = 1.9, fontsize: int = 8, cmap: str | None = None) -> Figure:
    """Images in rows (PIL images, (H, W[, 3]) arrays or (H, W, 3) tensors), with optional titles,
    row labels and mask outlines (same nesting as ``rows``; ``None`` for no mask). Rows may differ in length."""
    columns = max(len(row) for row in rows)
    fig = Figure(figsize=(size * columns, (size + 0.25) * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for r, row in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            _bare(ax)
            if c >= len(row):
                ax.set_axis_off()
                continue
            ax.imshow(_np(row[c]) if isinstance(row[c], torch.Tensor) else row[c], cmap=cmap)
            if titles is not None and titles[r][c]:
                ax.set_title(titles[r][c], fontsize=fontsize)
            if masks is not None and masks[r][c] is not None:
                outline(ax, masks[r][c])
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=9)
    fig.suptitle(suptitle, fontsize=10)
    return fig


def class_grid(dataset, per_class: int, title: str = "") -> Figure:
    """Rows = classes, columns = the first ``per_class`` images of each class of a data set
    with ``classes`` and ``targets``."""
    targets = np.asarray(dataset.targets)
    rows = [[dataset[int(i)][0] for i in np.flatnonzero(targets == label)[:per_class]]
            for label in range(len(dataset.classes))]
    return image_grid(rows, row_labels=list(dataset.classes), suptitle=title, size=1.3)


# ----------------------------------------------------------------------------- 02: the backbone

def feature_scales(maps: Sequence[torch.Tensor], picture, channels: int = 4, title: str = "") -> Figure:
    """One row per scale L_i: the picture with L_i's position grid, the mean |activation| over the
    channels and the ``channels`` channels that vary most over the face. ``maps``: (1, C, H, W) each."""
    rows, cols = len(maps), channels + 2
    fig = Figure(figsize=(1.9 * cols, 1.9 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    side = picture.size[0]
    for row, l_i in enumerate(maps):
        fmap = l_i[0].detach().float().cpu()  # (C, H, W)
        top = fmap.flatten(1).std(dim=1).argsort(descending=True)[:channels]
        axes[row, 0].imshow(picture)
        if fmap.shape[1] <= 28:  # the grid of L_i's positions on the face
            for t in range(1, fmap.shape[1]):
                axes[row, 0].axhline(t * side / fmap.shape[1] - 0.5, color="white", lw=0.4, alpha=0.6)
                axes[row, 0].axvline(t * side / fmap.shape[2] - 0.5, color="white", lw=0.4, alpha=0.6)
        axes[row, 0].set_ylabel(f"L{row + 1}\n{fmap.shape[1]}x{fmap.shape[2]}", rotation=0, labelpad=22)
        axes[row, 1].imshow(_np(fmap.abs().mean(0)), cmap="magma")
        for col, c in enumerate(top.tolist(), start=2):
            axes[row, col].imshow(_np(fmap[c]), cmap="viridis")
            axes[row, col].set_title(f"channel {c} (own scale)", fontsize=8)
        for ax in axes[row]:
            _bare(ax)
    axes[0, 0].set_title("input (grid: positions of L_i)", fontsize=8)
    axes[0, 1].set_title("mean |activation|", fontsize=8)
    fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- 03: MDPFA

def poolings_and_weights(avg_pooled: torch.Tensor, max_pooled: torch.Tensor, weights: torch.Tensor,
                         name: str = "L4") -> Figure:
    """Left: each channel's AvgPool against its MaxPool; right: the channel weights W, sorted."""
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.scatter(_np(avg_pooled), _np(max_pooled), s=10)
    left.set_xlabel("AvgPool (mean over the face)"), left.set_ylabel("MaxPool (strongest response)")
    left.set_title(f"{name}: the two poolings of each channel", fontsize=10)
    ordered = np.sort(_np(weights))[::-1]
    right.bar(np.arange(len(ordered)), ordered, width=1.0, color="tab:purple")
    right.set_xlabel("channel (sorted by weight)"), right.set_ylabel("W"), right.set_ylim(0, 1)
    right.set_title(f"{name}: channel attention weights W", fontsize=10)
    return fig


def f_m_blocks(F_m: torch.Tensor, widths: Sequence[int]) -> Figure:
    """F_m (C1 + .. + C4,) drawn as its four blocks G_1..G_4."""
    fig = Figure(figsize=(11, 2.6), layout="constrained")
    ax = fig.subplots()
    values, start = _np(F_m).ravel(), 0
    for i, c in enumerate(widths):
        ax.bar(np.arange(start, start + c), values[start:start + c], width=1.0, color=SCALE_COLORS[i],
               label=f"G{i + 1} ({c})")
        start += c
    ax.set_xlim(0, start), ax.set_xlabel("position in F_m"), ax.set_ylabel("value")
    ax.set_title(f"F_m of one face: {start} values from four scales", fontsize=10)
    ax.legend(ncol=4, fontsize=8)
    return fig


def channel_weights(weights: Sequence[torch.Tensor], title: str = "", picture=None) -> Figure:
    """The channel weights W_1..W_4 (one (C_i,) vector per scale), each as bars in channel order;
    with ``picture``, the face first."""
    panels = len(weights) + (picture is not None)
    fig = Figure(figsize=(3.1 * panels, 2.8), layout="constrained")
    axes = list(fig.subplots(1, panels))
    if picture is not None:
        axes.pop(0).imshow(picture)
        _bare(fig.axes[0])
    for i, (ax, w_i) in enumerate(zip(axes, weights)):
        w_i = _np(w_i)
        ax.bar(np.arange(len(w_i)), w_i, width=1.0, color=SCALE_COLORS[i % 4])
        ax.axhline(0.5, color="gray", lw=0.6, ls="--")
        ax.set_title(f"W{i + 1}: {len(w_i)} channels of L{i + 1}", fontsize=10)
        ax.set_xlabel("channel"), ax.set_ylim(0, 1)
    axes[0].set_ylabel("channel weight")
    fig.suptitle(title, fontsize=10)
    return fig


# ----------------------------------------------------------------------------- 04: KROA

def region_grids(m_values: Sequence[int], h: int = 7, w: int = 7) -> Figure:
    """The H x W map with each patch's region number, for every m in ``m_values``."""
    fig = Figure(figsize=(3 * len(m_values), 3.2), layout="constrained")
    for ax, m in zip(fig.subplots(1, len(m_values), squeeze=False)[0], m_values):
        ids = region_ids(h, w, m)
        ax.imshow(_np(ids % 2 + (ids // m) % 2), cmap="Pastel1", vmin=0, vmax=8)
        cell = math.ceil(h / m)
        for i in range(1, m):
            if i * cell < h:
                ax.axhline(i * cell - 0.5, color="red", lw=1.5), ax.axvline(i * cell - 0.5, color="red", lw=1.5)
        for r in range(h):
            for c in range(w):
                ax.text(c, r, int(ids[r, c]), ha="center", va="center", fontsize=7)
        ax.set_title(f"m = {m}: region of each patch", fontsize=9)
        _bare(ax)
    return fig


def relation_matrix(M: torch.Tensor, D: torch.Tensor, title: str = "") -> Figure:
    """The relation matrix M (m², m²) with the routed entries D (m², topn) marked."""
    shown = _np(M)
    shown[~np.isfinite(shown)] = np.nan
    fig = Figure(figsize=(6.2, 5.4), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="coolwarm")
    rows = torch.arange(D.shape[0])[:, None].expand_as(D)
    ax.scatter(_np(D).ravel(), _np(rows).ravel(), s=4, c="black", marker="s", label=f"D: top-{D.shape[1]} of each row")
    ax.set_xlabel("key region"), ax.set_ylabel("query region")
    ax.set_title(title or f"relation matrix M and the routing D", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def routed_counts(D: torch.Tensor, regions: int) -> torch.Tensor:
    """How many query regions route to each region: (m²,) from D (m², topn)."""
    return torch.bincount(D.flatten().cpu(), minlength=regions * regions)


def patch_attention(kroa: nn.Module, x: torch.Tensor, patch: int) -> torch.Tensor:
    """One patch's attention weights over the map, averaged over the heads (eq 11): (H, W).

    ``x``: KROA's channel-last input (H, W, C). Zero outside the patches of the ``topn``
    regions its region routes to: the module's own ``attention_probabilities``.
    """
    h, w, _ = x.shape
    return kroa.attention_probabilities(x[None])[0, :, patch].mean(0).reshape(h, w)


def routing_panels(picture, mask: np.ndarray | None, routing: torch.Tensor, queries: Sequence[int], regions: int,
                   title: str = "", map_size: int = 7, attention: tuple[torch.Tensor, int] | None = None) -> Figure:
    """The face (with its key-region mask), then for each query region its routed regions (the
    paper's Figure 3): filled and outlined in cyan with a dark edge, so that they show on dark hair
    and skin, the query region in yellow; with ``attention`` = (map (H, W), patch), that patch's
    attention last."""
    from matplotlib.patches import Rectangle

    side = picture.size[0]
    boxes = region_boxes(regions, map_size, (side, side))
    panels = len(queries) + (mask is not None) + (attention is not None)
    fig = Figure(figsize=(3.3 * panels, 3.7), layout="constrained")
    axes = list(fig.subplots(1, panels, squeeze=False)[0])
    if mask is not None:
        ax = axes.pop(0)
        ax.imshow(picture), ax.imshow(np.ma.masked_where(~mask, mask), cmap="autumn", alpha=0.6)
        ax.set_title("key-region mask", fontsize=9)

    def box(ax, b, color, lw, alpha):
        t, bt, left, right = b
        ax.add_patch(Rectangle((left - 0.5, t - 0.5), right - left, bt - t, facecolor=color, alpha=alpha, lw=0))
        for c, w in (("black", lw + 1.5), (color, lw)):
            ax.add_patch(Rectangle((left, t), right - left - 1, bt - t - 1, fill=False, edgecolor=c, lw=w))

    for ax, j in zip(axes, queries):
        ax.imshow(picture)
        for r in routing[j].tolist():
            if boxes[r] is not None:
                box(ax, boxes[r], "cyan", 1.2, 0.3)
        box(ax, boxes[j], "yellow", 2.5, 0.0)
        ax.set_xlim(-0.5, side - 0.5), ax.set_ylim(side - 0.5, -0.5)
        ax.set_title(f"query region {j} (yellow): its top-{routing.shape[1]} (cyan)", fontsize=9)
    if attention is not None:
        _draw_attention(axes[-1], picture, *attention)
        axes[-1].set_title(f"patch {attention[1]} (cyan): its attention", fontsize=9)
    for ax in fig.axes:
        _bare(ax)
    fig.suptitle(title, fontsize=10)
    return fig


def _draw_attention(ax, picture, seen: torch.Tensor, patch: int) -> None:
    """A patch's attention map (H, W) over the face, zeros left uncoloured, the patch outlined in cyan."""
    from matplotlib.patches import Rectangle

    side, seen = picture.size[0], seen.detach().cpu().numpy()
    h, w = seen.shape
    ax.imshow(picture)
    ax.imshow(np.ma.masked_where(seen == 0, seen), cmap="inferno", alpha=0.7, extent=(0, side, side, 0))
    r, c = divmod(patch, w)
    ax.add_patch(Rectangle((c * side / w, r * side / h), side / w, side / h, fill=False, color="cyan", lw=2))
    ax.set_xlim(0, side), ax.set_ylim(side, 0)


def padding_grids(m_values: Sequence[int], h: int = 7, w: int = 7) -> Figure:
    """Real patches (light) and padding (dark) of the padded map, with the region borders, per m."""
    fig = Figure(figsize=(3.4 * len(m_values), 3.6), layout="constrained")
    for ax, m in zip(fig.subplots(1, len(m_values), squeeze=False)[0], m_values):
        cell = math.ceil(h / m)
        side = cell * m
        real = np.zeros((side, side))
        real[:h, :w] = 1
        ax.imshow(real, cmap="Greys_r", vmin=-1, vmax=1.3)
        for i in range(1, m):
            ax.axhline(i * cell - 0.5, color="red", lw=1.5), ax.axvline(i * cell - 0.5, color="red", lw=1.5)
        empty = sum(box is None for box in region_boxes(m, h, (side, side)))
        ax.set_title(f"m = {m}: {h}x{w} padded to {side}x{side}\n{m * m} regions, {empty} only padding", fontsize=9)
        _bare(ax)
    fig.suptitle("real patches (light) and padding (dark); red: region borders", fontsize=10)
    return fig


def attention_macs(module: nn.Module, inputs: torch.Tensor) -> int:
    """Multiply-adds of the batched matrix products (routing and attention), counted by PyTorch."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        module(inputs)
    return sum(v for op, v in counter.get_flop_counts()["Global"].items() if "bmm" in str(op)) // 2


def attention_macs_formula(n_side: int, m: int, topn: int, c: int) -> int:
    """Routing m²·m²·C plus attention 2·N_p·topn·(N_p/m²)·C for an n_side² map padded to N_p patches."""
    cell = math.ceil(n_side / m)
    padded, per_region = (cell * m) ** 2, cell * cell
    return m ** 4 * c + 2 * padded * topn * per_region * c


def attention_cost(n_sides: Sequence[int] = (7, 28), m: int = 7, c: int = 128, num_heads: int = 4,
                   paper_topn: int = 15) -> Figure:
    """KROA's counted attention multiply-adds against ``topn`` (checked against the formula) and
    plain attention's 2 N² C, one panel per map side."""
    from sfer.models import KeyRegionAttention

    fig = Figure(figsize=(5 * len(n_sides), 3.8), layout="constrained")
    for ax, n_side in zip(fig.subplots(1, len(n_sides), squeeze=False)[0], n_sides):
        module = KeyRegionAttention(c, num_heads=num_heads, regions=m, topn=1, max_regions=n_side).eval()
        inputs = torch.randn(1, n_side, n_side, c, generator=torch.Generator().manual_seed(0))
        topns = sorted(set(range(1, m * m + 1, 3)) | {m * m})
        counted = []
        for topn in topns:
            module.set_routing(topn=topn)
            counted.append(attention_macs(module, inputs))
            if counted[-1] != attention_macs_formula(n_side, m, topn, c):
                raise AssertionError(f"counted {counted[-1]} multiply-adds, formula gives "
                                     f"{attention_macs_formula(n_side, m, topn, c)} (n={n_side}, m={m}, topn={topn})")
        ax.plot(topns, np.array(counted) / 1e6, "o-", ms=3, label="KROA (routing + attention)")
        ax.axhline(2 * n_side ** 4 * c / 1e6, color="gray", ls="--", label="plain attention")
        ax.axvline(paper_topn, color="red", lw=0.8, ls=":", label=f"paper: topn = {paper_topn}")
        ax.set_xlabel("topn"), ax.set_ylabel("multiply-adds (M)")
        ax.set_title(f"{n_side}x{n_side} map, m = {m}, C = {c}", fontsize=10)
        ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------------- 05: the model

def class_probabilities(pictures: Sequence, probs: torch.Tensor, classes: Sequence[str], labels: Sequence[int],
                        title: str = "") -> Figure:
    """Each face with its true label, and under it the model's class probabilities (B, K)."""
    n = len(pictures)
    fig = Figure(figsize=(2.6 * n, 3.6))
    for i, ax in enumerate(fig.subplots(1, n, squeeze=False)[0]):
        ax.imshow(pictures[i])
        guess = int(probs[i].argmax())
        ax.set_title(f"label: {classes[labels[i]]}", fontsize=9, color="green" if guess == labels[i] else "red")
        _bare(ax)
        inset = ax.inset_axes([0, -0.55, 1, 0.45])
        inset.barh(np.arange(len(classes)), _np(probs[i]), color="tab:blue")
        inset.set_yticks(range(len(classes)), classes, fontsize=7), inset.invert_yaxis()
        inset.set_xlim(0, 1), inset.tick_params(axis="x", labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(bottom=0.35, wspace=0.45)
    return fig


# ----------------------------------------------------------------------------- 09: topn and the region count

def accuracy_grid(grid: np.ndarray, topns: Sequence[int], title: str = "") -> Figure:
    """Accuracy (%) over (m, topn): rows m = 1..len(grid), columns ``topns``; NaN cells (topn > m²) grey."""
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    grid = np.asarray(grid, dtype=float)
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
    ax.set_facecolor("lightgrey")
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8,
                    color="white" if value < np.nanmean(grid) else "black")
    ax.set_xticks(range(len(topns)), topns), ax.set_yticks(range(len(grid)), range(1, len(grid) + 1))
    ax.set_xlabel("topn"), ax.set_ylabel("regions m")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def energy_against_topn(sweep: dict[str, dict[int, tuple[float, float, float]]], uniform: tuple[float, float, float],
                        trained_topn: int | None = None, title: str = "") -> Figure:
    """Key-region energy against ``topn``, one line per view (e.g. Grad-CAM and sources), each point a
    (mean, low, high) interval, with the uniform map's band and the trained setting marked."""
    fig = Figure(figsize=(6.8, 3.6), layout="constrained")
    ax = fig.subplots()
    for view, points in sweep.items():
        topns = sorted(points)
        mean, low, high = (np.array([points[t][k] for t in topns]) for k in range(3))
        ax.errorbar(topns, mean, yerr=[mean - low, high - mean], marker="o", capsize=4, label=view)
    ax.axhspan(uniform[1], uniform[2], color="grey", alpha=0.3)
    ax.axhline(uniform[0], color="grey", ls="--", label="uniform map (mask area)")
    if trained_topn is not None:
        ax.axvline(trained_topn, color="black", lw=0.8, ls=":", label=f"trained at topn = {trained_topn}")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("topn (m = 7, re-routed, not retrained)"), ax.set_ylabel("key-region energy (raw maps)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def routing_measures(result: dict, m: int, topn: int, title: str = "") -> Figure:
    """Accuracy and key-region energy at one (m, topn): ``result`` has ``accuracy`` and ``energy[view]``
    as (mean, low, high), ``same`` (share of predictions unchanged) and ``uniform`` (mean, low, high)."""
    fig = Figure(figsize=(8.4, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.6])
    bars = {"accuracy": result["accuracy"], "same prediction": (result["same"],) * 3}  # a count: no interval
    for x, (name, (mean, low, high)) in enumerate(bars.items()):
        left.bar(x, mean, yerr=[[mean - low], [high - mean]] if high > low else None, capsize=4,
                 color=("tab:red", "tab:gray")[x])
        left.text(x, mean / 2, f"{100 * mean:.1f}%", ha="center", color="white", fontsize=9)
    left.set_xticks(range(len(bars)), list(bars), fontsize=8), left.set_ylim(0, 1.05)
    left.set_title("test faces (95% CI)", fontsize=9)
    views = list(result["energy"])
    for x, view in enumerate(views):
        mean, low, high = result["energy"][view]
        right.bar(x, mean, yerr=[[mean - low], [high - mean]], capsize=4, color=("tab:blue", "tab:orange")[x % 2])
        right.text(x, mean / 2, f"{mean:.3f}", ha="center", color="white", fontsize=9)
    right.axhspan(result["uniform"][1], result["uniform"][2], color="grey", alpha=0.3)
    right.axhline(result["uniform"][0], color="grey", ls="--", label="uniform map (mask area)")
    right.set_xticks(range(len(views)), views, fontsize=8)
    right.set_ylim(0, max(0.05, 1.15 * max(result["energy"][v][2] for v in views)))
    right.set_title("KROAFE key-region energy, raw maps (95% CI)", fontsize=9)
    right.legend(fontsize=7, loc="upper left")
    fig.suptitle(title or f"m = {m}, topn = {topn}", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- notebooks 02-04, issue 20's figures

def _cells(ax, side: int, cells: np.ndarray, face: str, edge: str = "black", lw: float = 1.6, alpha: float = 0.35,
           map_size: int = 7) -> None:
    """Fill the cells of a (map_size, map_size) bool grid on an image of ``side`` px, each with a dark edge,
    so that they show on dark hair and skin as on a light background."""
    from matplotlib.patches import Rectangle

    step = side / map_size
    for r, c in zip(*np.nonzero(cells)):
        ax.add_patch(Rectangle((c * step, r * step), step, step, facecolor=face, alpha=alpha, edgecolor="none"))
        ax.add_patch(Rectangle((c * step + 0.5, r * step + 0.5), step - 1, step - 1, fill=False, edgecolor=edge,
                               lw=lw + 1.2))
        ax.add_patch(Rectangle((c * step + 0.5, r * step + 0.5), step - 1, step - 1, fill=False, edgecolor=face, lw=lw))


def receptive_fields(picture, grads: dict[str, torch.Tensor], cell: tuple[int, int], map_size: int = 7) -> Figure:
    """Notebook 02: |d L4[cell] / d input| (H, W) for each label of ``grads``, over the face, summed over
    4x4-pixel blocks (the strides leave a checkerboard) on a square-root colour scale; the cell's nominal
    square (input side / map_size) in cyan, its 3x3 neighbourhood dashed. The titles give the share of the
    gradient mass inside each."""
    from matplotlib.colors import PowerNorm
    from matplotlib.patches import Rectangle

    side = picture.size[0]
    fig = Figure(figsize=(4.6 * len(grads) + 0.4, 4.6), layout="constrained")
    axes = fig.subplots(1, len(grads), squeeze=False)[0]
    step, (r, c) = side / map_size, cell
    for ax, (label, g) in zip(axes, grads.items()):
        g = _np(g)
        share = [g[int(max(r - k, 0) * step):int((r + 1 + k) * step), int(max(c - k, 0) * step):int((c + 1 + k) * step)]
                 .sum() / g.sum() for k in (0, 1)]
        blocks = g.reshape(g.shape[0] // 4, 4, g.shape[1] // 4, 4).sum((1, 3))
        ax.imshow(picture.convert("L"), cmap="gray", alpha=0.6)
        im = ax.imshow(np.ma.masked_where(blocks <= 1e-3 * blocks.max(), blocks / blocks.max()), cmap="inferno",
                       alpha=0.8, norm=PowerNorm(0.5, 0, 1), extent=(0, side, side, 0))
        ax.add_patch(Rectangle((c * step, r * step), step, step, fill=False, edgecolor="cyan", lw=2))
        ax.add_patch(Rectangle(((c - 1) * step, (r - 1) * step), 3 * step, 3 * step, fill=False, edgecolor="cyan",
                               lw=1.2, ls="--"))
        ax.set_xlim(0, side), ax.set_ylim(side, 0)
        ax.set_title(f"{label}\n|gradient| inside the cell {share[0]:.0%}, inside its 3x3 cells {share[1]:.0%}",
                     fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8, label="|gradient| per 4x4 px / maximum (sqrt scale)")
        _bare(ax)
    fig.suptitle(f"receptive field of the L4 cell at row {r}, column {c}: the input pixels it depends on",
                 fontsize=10)
    return fig


def channels_on_face(picture, Q: torch.Tensor, weights: torch.Tensor, count: int = 3) -> Figure:
    """Notebook 03: the ``count`` channels of Q (C, h, w) with the highest and the lowest weights, each
    upsampled (nearest: one square per position) and laid over the face, on one shared colour scale."""
    order = weights.detach().cpu().argsort(descending=True).tolist()
    shown = order[:count] + order[-count:]
    side, Q = picture.size[0], _np(Q)
    top = float(np.abs(Q[shown]).max()) or 1.0
    fig = Figure(figsize=(2.3 * (len(shown) + 1) + 0.6, 2.9), layout="constrained")
    axes = fig.subplots(1, len(shown) + 1)
    axes[0].imshow(picture), axes[0].set_title("face", fontsize=9)
    for ax, c in zip(axes[1:], shown):
        ax.imshow(picture.convert("L"), cmap="gray")
        im = ax.imshow(Q[c], cmap="coolwarm", vmin=-top, vmax=top, alpha=0.6, extent=(0, side, side, 0))
        ax.set_xlim(0, side), ax.set_ylim(side, 0)
        ax.set_title(f"ch {c}: W = {weights[c].item():.2f}", fontsize=9)
    for ax in axes:
        _bare(ax)
    fig.colorbar(im, ax=list(axes[1:]), shrink=0.85, label="Q value")
    fig.suptitle(f"channels of Q over the face: the {count} highest weights (left), the {count} lowest (right)",
                 fontsize=10)
    return fig


def weights_across_faces_by_class(weights: torch.Tensor, labels: Sequence[int], classes: Sequence[str],
                                  scale: int = 4) -> Figure:
    """Notebook 03: W_i of several faces (N, C), channels sorted by their mean weight, one line per face,
    coloured by the face's class (one legend entry per class)."""
    weights = _np(weights)
    order = np.argsort(-weights.mean(0), kind="stable")
    colors = [f"C{k}" for k in range(len(classes))]
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    ax = fig.subplots()
    named = set()
    for row, label in zip(weights, labels):
        ax.plot(row[order], lw=1.0, alpha=0.85, color=colors[label],
                label=None if label in named else classes[label])
        named.add(label)
    ax.set_xlabel(f"channel of L{scale} (sorted by mean weight)"), ax.set_ylabel(f"W{scale}")
    ax.set_title(f"W{scale} for {len(weights)} faces, coloured by class", fontsize=10)
    ax.legend(fontsize=8, ncol=len(named), loc="lower left")
    return fig


def readable_keys(picture, readable: dict[str, torch.Tensor], patch: int, map_size: int = 7) -> Figure:
    """Notebook 04: for one query patch (yellow), the key patches it may read (cyan, dark-edged), one
    panel per label of ``readable``: (HW,) bool rows of each attention's key mask."""
    side = picture.size[0]
    fig = Figure(figsize=(3.6 * len(readable), 3.9), layout="constrained")
    for ax, (label, keys) in zip(fig.subplots(1, len(readable), squeeze=False)[0], readable.items()):
        keys = _np(keys).reshape(map_size, map_size) > 0
        ax.imshow(picture)
        _cells(ax, side, keys, "cyan", map_size=map_size)
        query = np.zeros((map_size, map_size), bool)
        query.flat[patch] = True
        _cells(ax, side, query, "yellow", alpha=0.0, lw=2.5, map_size=map_size)
        ax.set_xlim(0, side), ax.set_ylim(side, 0)
        ax.set_title(f"{label}: {int(keys.sum())} of {keys.size} keys", fontsize=10)
        _bare(ax)
    fig.suptitle(f"the keys query patch {patch} (yellow) may read (cyan)", fontsize=11)
    return fig


def patch_attention_scaled(picture, maps: dict[str, torch.Tensor], patch: int, title: str = "") -> Figure:
    """Each map (H, W) of a query patch's attention over the face, on one shared colour scale with a colour bar."""
    from matplotlib.patches import Rectangle

    side, top = picture.size[0], max(float(_np(m).max()) for m in maps.values())
    fig = Figure(figsize=(3.4 * len(maps) + 0.8, 3.6), layout="constrained")
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    for ax, (label, seen) in zip(axes, maps.items()):
        seen = _np(seen)
        h, w = seen.shape
        ax.imshow(picture)
        im = ax.imshow(np.ma.masked_where(seen == 0, seen), cmap="inferno", alpha=0.75, vmin=0, vmax=top,
                       extent=(0, side, side, 0))
        r, c = divmod(patch, w)
        ax.add_patch(Rectangle((c * side / w, r * side / h), side / w, side / h, fill=False, color="cyan", lw=2))
        ax.set_xlim(0, side), ax.set_ylim(side, 0)
        ax.set_title(f"{label}: {int((seen > 0).sum())} of {seen.size} patches seen", fontsize=9)
        _bare(ax)
    fig.colorbar(im, ax=list(axes), shrink=0.85, label="attention weight (mean over heads)")
    fig.suptitle(title, fontsize=10)
    return fig
