"""The routing view (the paper's Figure 3): which ``topn`` regions a query region attends to.

KROA splits the 7x7 map L4 into m x m regions (padded at the bottom and right to a
multiple of m) and each region attends to its ``topn`` most related regions. L4
covers the whole input image, so region r of the grid covers the image block that
its L4 patches see. For m = 5 or 6 some regions hold only padding: they lie outside
the image and are never drawn (nor routed to while a real region is left).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch.nn as nn
from matplotlib.figure import Figure

from .loading import to_batch, to_rgb

GRID = (230, 40, 40)  # red region borders, as in Figure 3
QUERY = (255, 215, 0)  # the query region's outline
DIM = 0.3  # brightness of regions the query does not attend to


def region_boxes(regions: int, map_size: int, image_size: tuple[int, int]) -> list[tuple[int, int, int, int] | None]:
    """Pixel boxes (top, bottom, left, right) of the m x m regions in row-major order.

    A region made only of padding gets ``None``.
    """
    cell = math.ceil(map_size / regions)  # patches per region side (after padding)
    (h, w), boxes = image_size, []
    for r in range(regions * regions):
        p0, q0 = (r // regions) * cell, (r % regions) * cell  # first patch row, column
        if p0 >= map_size or q0 >= map_size:
            boxes.append(None)
            continue
        p1, q1 = min(p0 + cell, map_size), min(q0 + cell, map_size)
        boxes.append((round(p0 * h / map_size), round(p1 * h / map_size),
                      round(q0 * w / map_size), round(q1 * w / map_size)))
    return boxes


def draw_routing(rgb: np.ndarray, regions: int, query: int, indices, map_size: int = 7) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 with the region grid, the attended regions lit, the others dimmed
    and the query region outlined. Plain numpy, so the widgets can redraw it quickly."""
    out = rgb.astype(np.float32) * DIM
    boxes = region_boxes(regions, map_size, rgb.shape[:2])
    for r in indices:
        if boxes[r] is not None:
            t, b, l, rt = boxes[r]
            out[t:b, l:rt] = rgb[t:b, l:rt]
    out = out.round().astype(np.uint8)
    for box in boxes:
        if box is not None:
            t, b, l, rt = box
            out[t, l:rt] = out[b - 1, l:rt] = GRID
            out[t:b, l] = out[t:b, rt - 1] = GRID
    t, b, l, rt = boxes[query]
    width = max(2, rgb.shape[0] // 56)
    out[t:t + width, l:rt] = out[b - width:b, l:rt] = QUERY
    out[t:b, l:l + width] = out[t:b, rt - width:rt] = QUERY
    return out


@dataclass
class RoutingView:
    """The result of :func:`routing_view`: the indices and their drawing."""

    query: int
    indices: list[int]  # the query's topn regions, most related first, row-major numbering
    regions: int
    image: np.ndarray  # (H, W, 3) uint8 drawing
    figure: Figure

    def _repr_png_(self):
        from io import BytesIO

        buf = BytesIO()
        self.figure.savefig(buf, format="png")
        return buf.getvalue()


def routing_view(model: nn.Module, image, query_region: int | tuple[int, int], size: int | None = None) -> RoutingView:
    """KROA's routing for one image, drawn on the face like the paper's Figure 3.

    ``image``: a PIL image or a preprocessed (3, H, W) tensor. ``query_region``: a
    row-major index in 0..m²-1 or a (row, column) pair, for the model's current m
    (set it with ``model.set_routing``). Returns the query's ``topn`` region indices
    (those of ``model.routing``, most related first) and the drawing, as an array and
    as a matplotlib figure whose labels give each attended region's rank.
    """
    m = model.kroafe.attention.regions if hasattr(model, "kroafe") else None
    if m is None:
        raise ValueError(f"the {model.variant!r} variant has no KROA block, so no routing to show")
    query = query_region[0] * m + query_region[1] if isinstance(query_region, tuple) else int(query_region)
    batch = to_batch(model, image)
    side = size or batch.shape[-1]
    boxes = region_boxes(m, model.map_size, (side, side))
    if not 0 <= query < m * m or boxes[query] is None:
        raise ValueError(f"query region {query_region!r} is not a region of the image for m = {m} "
                         f"(real regions: {[r for r, b in enumerate(boxes) if b is not None]})")
    indices = model.routing(batch)[0, query].tolist()
    drawn = draw_routing(to_rgb(image, (side, side)), m, query, indices, model.map_size)

    figure = Figure(figsize=(3.2, 3.4), dpi=100, layout="constrained")
    ax = figure.add_subplot()
    ax.imshow(drawn)
    for rank, r in enumerate(indices, start=1):
        if boxes[r] is not None:
            t, b, l, rt = boxes[r]
            ax.text((l + rt) / 2, (t + b) / 2, str(rank), color="white", ha="center", va="center", fontsize=7)
    ax.set_title(f"query region {query} (m={m}): its topn={len(indices)} regions", fontsize=8)
    ax.axis("off")
    return RoutingView(query, indices, m, drawn, figure)
