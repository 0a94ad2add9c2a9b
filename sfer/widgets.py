"""The Explorer: move ``topn`` and the region count m and watch KROAFE's heatmap change.

```python
from sfer.widgets import Explorer
explorer = Explorer()             # the shipped tiny checkpoints and the embedded sample faces
explorer                          # in Jupyter: the controls and one image that redraws in place
arrays = explorer.update(topn=5, regions=4)   # the same without a browser; arrays["kroafe"] is drawn
explorer.update(view="sources")   # window and KROAFE panels: where the evidence came from
explorer.save("explorer.png")     # the picture shown now, for readers without a kernel
```

Everything is drawn into one matplotlib figure, kept alive between updates: a move
changes the data of its artists (``set_data``), renders it once with Agg and swaps
the PNG bytes of a single ``ipywidgets.Image``. The output never stacks, never
clears (so it does not flicker) and keeps its place on the page.

What is recomputed on a move: ``topn``/``regions`` change the full model (its L4 and
KROAFE maps, its probabilities and its routing); the window map comes from the ``rw``
model, which has no routing, so it is cached per image, view, method and class.

The view switch shows the attention panels two ways: Grad-CAM of the block's output
("where the evidence sits") or its sources ("where it came from",
:mod:`sfer.explain.sources`). L4 has no attention, so its panel is always the CAM.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import ipywidgets as w
import numpy as np
import torch.nn as nn
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from sfer.explain.cam import METHODS, compute_cam
from sfer.explain.figures import TITLES, overlay, probabilities
from sfer.explain.loading import CHECKPOINTS, class_names, embedded_samples, load_model, to_batch, to_rgb
from sfer.explain.routing import draw_routing, region_boxes
from sfer.models.kroa import check_routing
from sfer.threads import interactive

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class Explorer:
    """Widgets for the image, the three heatmaps, the routing view and the class probabilities.

    ``checkpoint``: a full SFER-MDFAE checkpoint (path) or model, the source of the L4
    and KROAFE maps; ``window_checkpoint``: an ``rw`` checkpoint or model for the window
    map (left blank without one). With neither, the shipped ``tiny_full.pt`` and
    ``tiny_rw.pt``. ``images``: a folder (searched recursively), a list of paths or PIL
    images, or ``None`` for the embedded sample faces. ``view``: ``"gradcam"`` or
    ``"sources"`` for the attention panels. The explorer changes the full model's
    routing: give it its own model.
    """

    def __init__(self, checkpoint=None, window_checkpoint=None, images=None, method: str = "gradcam",
                 view: str = "gradcam"):
        if checkpoint is None:  # the shipped pair
            checkpoint = CHECKPOINTS / "tiny_full.pt"
            window_checkpoint = CHECKPOINTS / "tiny_rw.pt" if window_checkpoint is None else window_checkpoint
        self.model = _as_model(checkpoint)
        if not hasattr(self.model, "kroafe"):
            raise ValueError(f"the Explorer needs a model with KROA (full, nm or np), not {self.model.variant!r}")
        self.window_model = None if window_checkpoint is None else _as_model(window_checkpoint)
        self.names = class_names(self.model)
        self.images = embedded_samples() if images is None else _collect_images(images)
        self._window_cache: dict[tuple, np.ndarray] = {}
        self._holding = False
        attention = self.model.kroafe.attention
        m, map_size = attention.regions, self.model.map_size

        label = {"style": {"description_width": "initial"}}
        self.picker = w.Dropdown(options=[(name, i) for i, (name, _) in enumerate(self.images)], description="image",
                                 **label)
        self.method = w.Dropdown(options=list(METHODS), value=method, description="CAM method", **label)
        self.heatmaps = w.ToggleButtons(options=[("Grad-CAM: where evidence sits", "gradcam"),
                                                 ("sources: where it came from", "sources")],
                                        value=view, description="attention view", **label)
        self.target = w.Dropdown(options=[("predicted", -1)] + [(n, i) for i, n in enumerate(self.names)],
                                 value=-1, description="class", **label)
        # Sliders redraw on release (continuous_update=False): a drag is one redraw, not dozens.
        self.regions = w.IntSlider(value=m, min=1, max=map_size, description="regions (m)", continuous_update=False,
                                   **label)
        self.topn = w.IntSlider(value=attention.topn, min=1, max=m * m, description="topn", continuous_update=False,
                                **label)
        self.query = w.IntSlider(value=_centre_region(m, map_size), min=0, max=m * m - 1, description="query",
                                 continuous_update=False, **label)
        self.view = w.Image(format="png")
        self.view.add_class("sfer-explorer-view")
        self.caption = w.HTML()
        self.widget = w.VBox([w.HBox([self.picker, self.method, self.target]), self.heatmaps,
                              w.HBox([self.regions, self.topn, self.query]), self.view, self.caption])
        for control in (self.picker, self.method, self.target, self.heatmaps, self.regions, self.topn, self.query):
            control.observe(self._on_change, names="value")
        self._build_figure()
        self.arrays = self._draw()

    # ------------------------------------------------------------------ public

    def update(self, **changes) -> dict[str, np.ndarray]:
        """Set any of ``image`` (index or name), ``method``, ``view`` (``gradcam`` or ``sources``),
        ``class_idx`` (index, name or ``None`` for the prediction), ``regions``, ``topn``, ``query``;
        redraw once; return the arrays drawn.

        A ``regions`` change clamps ``topn`` to m² (as the slider does) unless ``topn`` is given
        too, in which case the pair must be valid. The arrays: ``image``, ``l4``, ``window``
        (``None`` without an rw model), ``kroafe``, ``routing``, ``routing_indices``,
        ``probabilities`` and ``class_idx``; ``window`` and ``kroafe`` are sources in the sources view.
        """
        unknown = set(changes) - {"image", "method", "view", "class_idx", "regions", "topn", "query"}
        if unknown:
            raise TypeError(f"unknown Explorer settings: {sorted(unknown)}")
        regions = changes.get("regions", self.regions.value)
        if "topn" in changes:
            check_routing(changes["topn"], regions, self.model.map_size)
        self._holding = True
        try:
            if "image" in changes:
                image = changes["image"]
                self.picker.value = image if isinstance(image, int) else [n for n, _ in self.images].index(image)
            if "method" in changes:
                self.method.value = changes["method"]
            if "view" in changes:
                if changes["view"] not in ("gradcam", "sources"):
                    raise ValueError(f"view must be 'gradcam' or 'sources', got {changes['view']!r}")
                self.heatmaps.value = changes["view"]
            if "class_idx" in changes:
                c = changes["class_idx"]
                self.target.value = -1 if c is None else (c if isinstance(c, int) else self.names.index(c))
            if "regions" in changes:
                self._set_regions(regions)
            if "topn" in changes:
                self.topn.value = changes["topn"]
            if "query" in changes:
                self.query.value = changes["query"]
        finally:
            self._holding = False
        self.arrays = self._draw()
        return self.arrays

    def save(self, path) -> Path:
        """Write the picture shown now as a PNG (what a reader without a kernel sees)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.view.value)
        return path

    def __repr__(self) -> str:
        return (f"Explorer(image={self.images[self.picker.value][0]!r}, view={self.heatmaps.value!r}, "
                f"method={self.method.value!r}, regions={self.regions.value}, topn={self.topn.value}, "
                f"query={self.query.value})")

    def _repr_mimebundle_(self, include=None, exclude=None):
        # the widget where a kernel draws it; the picture shown now where none does (GitHub, nbviewer)
        data = self.widget._repr_mimebundle_()
        data["text/plain"] = repr(self)
        data["image/png"] = base64.b64encode(self.view.value).decode("ascii")
        return data

    # ------------------------------------------------------------------ events

    def _on_change(self, change):
        if self._holding:
            return
        if change["owner"] is self.regions:
            self._holding = True
            try:
                self._set_regions(change["new"], old=change["old"])
            finally:
                self._holding = False
        self.arrays = self._draw()

    def _set_regions(self, m: int, old: int | None = None):
        """Region slider moved: topn's and query's ranges follow; the query keeps its place on the face."""
        map_size = self.model.map_size
        old = self.model.kroafe.attention.regions if old is None else old
        box = region_boxes(old, map_size, (map_size, map_size))[self.query.value]
        self.regions.value = m
        self.topn.max = m * m  # clamps topn
        self.query.max = m * m - 1
        cell = math.ceil(map_size / m)
        row, col = ((box[0] + box[1] - 1) // 2, (box[2] + box[3] - 1) // 2) if box else (map_size // 2,) * 2
        self.query.value = (row // cell) * m + col // cell

    # ------------------------------------------------------------------ drawing

    def _build_figure(self):
        panels = ("image", "l4", "window", "kroafe", "routing")
        self.figure = Figure(figsize=(13.5, 2.7), dpi=80)
        self.canvas = FigureCanvasAgg(self.figure)
        grid = self.figure.add_gridspec(1, 6, width_ratios=[1, 1, 1, 1, 1, 1.25], left=0.01, right=0.94,
                                        bottom=0.1, top=0.86, wspace=0.15)
        blank = np.zeros((2, 2, 3), np.uint8)
        self._axes, self._artists = {}, {}
        for i, name in enumerate(panels):
            ax = self.figure.add_subplot(grid[0, i])
            ax.set_xticks([]), ax.set_yticks([])
            self._axes[name], self._artists[name] = ax, ax.imshow(blank)
        ax = self.figure.add_subplot(grid[0, 5])
        y = np.arange(len(self.names))
        self._bars = ax.barh(y, np.zeros(len(self.names)), color="tab:blue")
        ax.set_yticks(y, self.names, fontsize=8)
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title("probabilities (SFER-MDFAE)", fontsize=9)
        ax.yaxis.tick_right()

    @interactive  # a redraw is many small operators: one thread never waits on a descheduled share
    def _draw(self) -> dict[str, np.ndarray]:
        _, image = self.images[self.picker.value]
        method = self.method.value
        m, topn, query = self.regions.value, self.topn.value, self.query.value
        self.model.set_routing(topn=topn, regions=m)
        batch = to_batch(self.model, image)
        size = tuple(batch.shape[-2:])
        rgb = to_rgb(image, size)
        probs = probabilities(self.model, batch)[0]
        explained = int(probs.argmax()) if self.target.value < 0 else self.target.value
        view = self.heatmaps.value
        attention_method = "sources" if view == "sources" else method
        cams = {"l4": compute_cam(self.model, batch, "l4", method, explained)[0],
                "kroafe": compute_cam(self.model, batch, "kroafe", attention_method, explained)[0],
                "window": self._window_cam(batch, attention_method, explained)}
        boxes = region_boxes(m, self.model.map_size, size)
        indices = self.model.routing(batch)[0, query].tolist() if boxes[query] is not None else []
        routing = draw_routing(rgb, m, query, indices, self.model.map_size) if indices else (rgb * 0.3).astype(np.uint8)

        self._artists["image"].set_data(rgb)
        self._axes["image"].set_title(f"{self.names[int(probs.argmax())]} ({probs.max():.2f})", fontsize=9)
        for t in ("l4", "window", "kroafe"):
            shown = rgb if cams[t] is None else overlay(rgb, cams[t])
            self._artists[t].set_data(shown)
            note = "  (no rw model)" if cams[t] is None else ""
            name = TITLES[f"{t}_sources"] if view == "sources" and t != "l4" else TITLES[t]
            self._axes[t].set_title(f"{name} → {self.names[explained]}{note}", fontsize=9)
        self._axes["kroafe"].set_xlabel(f"topn={topn}, m={m}", fontsize=8)
        self._artists["routing"].set_data(routing)
        self._axes["routing"].set_title(
            f"query {query}: its {topn} regions" if indices else f"region {query} is padding for m={m}", fontsize=9)
        for bar, p in zip(self._bars, probs):
            bar.set_width(p)
        for artist in self._artists.values():  # the panels keep the image's extent even if it was blank
            artist.set_extent((-0.5, size[1] - 0.5, size[0] - 0.5, -0.5))
        self.canvas.draw()
        buf = io.BytesIO()
        Image.fromarray(np.asarray(self.canvas.buffer_rgba())[..., :3]).save(buf, format="png", compress_level=1)
        self.view.value = buf.getvalue()
        self.caption.value = (f"<b>{self.names[int(probs.argmax())]}</b> predicted; heatmaps explain "
                              f"<b>{self.names[explained]}</b> ({method} of L4; "
                              f"{'sources' if view == 'sources' else method} of the attention blocks); "
                              f"KROA with m={m}, topn={topn}")
        return {"image": rgb, **cams, "routing": routing, "routing_indices": np.asarray(indices, dtype=np.int64),
                "probabilities": probs, "class_idx": explained}

    def _window_cam(self, batch, method: str, class_idx: int) -> np.ndarray | None:
        if self.window_model is None:
            return None
        key = (self.picker.value, method, class_idx)
        if key not in self._window_cache:
            self._window_cache[key] = compute_cam(self.window_model, batch, "window", method, class_idx)[0]
        return self._window_cache[key]


def _as_model(source) -> nn.Module:
    return source if isinstance(source, nn.Module) else load_model(source)


def _centre_region(m: int, map_size: int) -> int:
    cell = math.ceil(map_size / m)
    return (map_size // 2 // cell) * (m + 1)


def _collect_images(images) -> list[tuple[str, Image.Image]]:
    """(name, PIL image) pairs from a folder, a list of paths or PIL images."""
    if isinstance(images, (str, Path)):
        folder = Path(images)
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
        return [(str(p.relative_to(folder)), Image.open(p).convert("RGB")) for p in paths]
    out = []
    for i, item in enumerate(images):
        if isinstance(item, Image.Image):
            out.append((f"image {i}", item.convert("RGB")))
        else:
            out.append((Path(item).name, Image.open(item).convert("RGB")))
    if not out:
        raise ValueError("the Explorer needs at least one image")
    return out
