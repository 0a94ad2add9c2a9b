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

The notebooks' smaller views work the same way, one figure of :mod:`sfer.plots` each:

```python
ChannelWeightsWidget(model, faces)                  # notebook 03: pick a face, watch W_i change
RoutingWidget(model, faces)                         # notebook 04: m, topn, query -> routing and attention
RoutingMeasuresWidget(measure, regions=7, topn=15)  # notebook 09: accuracy and energy at (m, topn)
```

Each redraws one PNG in place and puts the same PNG in its output next to the widget,
so a notebook read without a kernel (GitHub, nbviewer) still shows the picture of the
saved state; ``update(...)`` sets the controls without a browser and returns what was drawn.
"""

from __future__ import annotations

import base64
import io
import math
from contextlib import contextmanager
from pathlib import Path

import ipywidgets as w
import numpy as np
import torch
import torch.nn as nn
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from sfer.explain.cam import METHODS, compute_cam
from sfer.explain.figures import TITLES, overlay, probabilities
from sfer.explain.loading import (CHECKPOINTS, class_names, embedded_samples, load_model, to_batch, to_rgb,
                                  transform_for)
from sfer.explain.routing import draw_routing, region_boxes
from sfer.models.kroa import check_routing
from sfer.models.regions import region_ids
from sfer.plots import channel_weights, patch_attention, routed_counts, routing_measures, routing_panels, to_png
from sfer.threads import interactive

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class _Controls:
    """Widgets whose observers redraw; ``_held`` sets several controls with the observers muted."""

    _holding = False

    @contextmanager
    def _held(self):
        self._holding = True
        try:
            yield
        finally:
            self._holding = False


class Explorer(_Controls):
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
        with self._held():
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
            with self._held():
                self._set_regions(change["new"], old=change["old"])
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


class _PngView(_Controls):
    """Controls above one PNG that redraws in place; the output also carries the PNG itself."""

    def _setup(self, controls):
        self.view = w.Image(format="png")
        self.widget = w.VBox([w.HBox(controls), self.view])
        for control in controls:
            control.observe(self._on_change, names="value")

    def _on_change(self, change):
        if not self._holding:
            self.drawn = self._draw()

    def _show(self, figure: Figure):
        self.png = to_png(figure)
        self.view.value = self.png

    def save(self, path) -> None:
        """Write the current picture to ``path`` (PNG)."""
        with open(path, "wb") as f:
            f.write(self.png)

    def _repr_mimebundle_(self, include=None, exclude=None):
        # the widget where a kernel draws it; the PNG where none does (GitHub, nbviewer)
        data = self.widget._repr_mimebundle_()
        data["text/plain"] = repr(self)
        data["image/png"] = base64.b64encode(self.png).decode("ascii")
        return data


class ChannelWeightsWidget(_PngView):
    """Notebook 03: pick a face and watch MDPFA's channel weights W_1..W_4 (equation 1) change.

    ``faces``: a :class:`sfer.explain.loading.Faces` (images, labels, classes).
    """

    def __init__(self, model: nn.Module, faces, face: int = 0):
        self.model, self.faces = model, faces
        options = [(f"{i}: {faces.classes[y]}", i) for i, y in enumerate(faces.labels)]
        self.picker = w.Dropdown(options=options, value=face, description="face")
        self._setup([self.picker])
        self.drawn = self._draw()

    def __repr__(self) -> str:
        return f"ChannelWeightsWidget(face={self.picker.value}, faces={len(self.faces.images)})"

    def update(self, face: int) -> list[torch.Tensor]:
        """Show face ``face``; return its weights W_1..W_4."""
        self.picker.value = face  # redraws through the observer
        return self.drawn

    def _draw(self) -> list[torch.Tensor]:
        i = self.picker.value
        picture = self.faces.images[i]
        device = next(self.model.parameters()).device
        with torch.no_grad():
            feats = self.model.features(transform_for(self.model)(picture)[None].to(device))
            weights = [att.weights(feats[f"L{s + 1}"])[0].cpu()
                       for s, att in enumerate(self.model.mdpfa.attentions)]
        self._show(channel_weights(weights, f"face {i} ({self.faces.classes[self.faces.labels[i]]}): "
                                            f"channel weights of the trained model", picture=picture))
        return weights


class RoutingWidget(_PngView):
    """Notebook 04: m, ``topn`` and the query region drive KROA's routing and one patch's attention.

    Draws the face with its key-region mask, the query region's ``topn`` routed regions
    (Figure 3) and the attention weights of the query region's first patch. It changes the
    model's routing (``set_routing``): give it its own model.
    """

    def __init__(self, model: nn.Module, faces, face: int = 0, query: int | None = None):
        self.model, self.faces = model, faces
        attention = model.kroafe.attention
        m, size = attention.regions, model.map_size
        style = {"style": {"description_width": "initial"}}
        self.picker = w.Dropdown(options=[(f"{i}: {faces.classes[y]}", i) for i, y in enumerate(faces.labels)],
                                 value=face, description="face")
        self.regions = w.IntSlider(value=m, min=1, max=size, description="regions (m)", continuous_update=False,
                                   **style)
        self.topn = w.IntSlider(value=attention.topn, min=1, max=m * m, description="topn",
                                continuous_update=False, **style)
        self.query = w.IntSlider(value=(m * m) // 2 if query is None else query, min=0, max=m * m - 1,
                                 description="query region", continuous_update=False, **style)
        self._setup([self.picker, self.regions, self.topn, self.query])
        self.drawn = self._draw()

    def __repr__(self) -> str:
        return (f"RoutingWidget(face={self.picker.value}, regions={self.regions.value}, topn={self.topn.value}, "
                f"query={self.query.value})")

    def update(self, **changes) -> dict:
        """Set any of ``face``, ``regions``, ``topn``, ``query``; redraw once; return what was drawn:
        ``routed`` (the query's regions, most related first), ``attention`` (H, W), ``patch``, ``counts``
        (how many query regions route to each region)."""
        unknown = set(changes) - {"face", "regions", "topn", "query"}
        if unknown:
            raise TypeError(f"unknown RoutingWidget settings: {sorted(unknown)}")
        if "topn" in changes or "regions" in changes:  # a pair the sliders would clamp silently is an error
            check_routing(changes.get("topn", self.topn.value), changes.get("regions", self.regions.value),
                          self.model.map_size)
        with self._held():
            if "face" in changes:
                self.picker.value = changes["face"]
            if "regions" in changes:
                m = changes["regions"]
                self.regions.value = m
                self.topn.max, self.query.max = m * m, m * m - 1  # clamp topn and query to the new grid
            if "topn" in changes:
                self.topn.value = changes["topn"]
            if "query" in changes:
                self.query.value = changes["query"]
        self.drawn = self._draw()
        return self.drawn

    def _on_change(self, change):
        if change["owner"] is self.regions and not self._holding:
            m = change["new"]
            with self._held():
                self.topn.max, self.query.max = m * m, m * m - 1
        super()._on_change(change)

    def _draw(self) -> dict:
        i, m, topn = self.picker.value, self.regions.value, self.topn.value
        size = self.model.map_size
        boxes = region_boxes(m, size, (size, size))
        query = self.query.value if boxes[self.query.value] is not None else 0  # padding-only regions: region 0
        self.model.set_routing(topn=topn, regions=m)
        picture, mask = self.faces.images[i], self.faces.masks[i]
        device = next(self.model.parameters()).device
        with torch.no_grad():
            l4 = self.model.features(transform_for(self.model)(picture)[None].to(device))["L4"]
            x = self.model.kroafe.norm(l4.permute(0, 2, 3, 1))[0]  # LN(L4), (H, W, C)
            routing = self.model.kroafe.attention.routing(x[None])[0].cpu()  # (m², topn)
        patch = int((region_ids(size, size, m).flatten() == query).nonzero()[0])
        attention = patch_attention(self.model.kroafe.attention, x, patch).cpu()
        fig = routing_panels(picture, mask, routing, [query], m, map_size=size, attention=(attention, patch),
                             title=f"face {i} ({self.faces.classes[self.faces.labels[i]]}), trained model: "
                                   f"m = {m}, topn = {topn}")
        self._show(fig)
        return {"routed": routing[query].tolist(), "attention": attention, "patch": patch, "query": query,
                "counts": routed_counts(routing, m)}


class RoutingMeasuresWidget(_PngView):
    """Notebook 09: sliders for m and ``topn`` drive accuracy and KROAFE's key-region energy.

    ``measure(m, topn)`` returns what :func:`routing_measures` draws; results are cached per
    setting, so going back to a setting is instant. ``maximum``: the largest m (the map's side).
    """

    def __init__(self, measure, regions: int = 7, topn: int = 15, maximum: int = 7, title: str = ""):
        check_routing(topn, regions, maximum)
        self.measure, self.title, self.cache = measure, title, {}
        style = {"style": {"description_width": "initial"}}
        self.regions = w.IntSlider(value=regions, min=1, max=maximum, description="regions (m)",
                                   continuous_update=False, **style)
        self.topn = w.IntSlider(value=topn, min=1, max=regions * regions, description="topn",
                                continuous_update=False, **style)
        self._setup([self.regions, self.topn])
        self.drawn = self._draw()

    def __repr__(self) -> str:
        return f"RoutingMeasuresWidget(regions={self.regions.value}, topn={self.topn.value})"

    def update(self, regions: int | None = None, topn: int | None = None) -> dict:
        """Set m and/or ``topn`` (validated together), redraw once, return what was drawn."""
        regions = self.regions.value if regions is None else regions
        topn = self.topn.value if topn is None else topn
        check_routing(topn, regions, self.regions.max)
        with self._held():
            self.regions.value = regions
            self.topn.max = regions * regions
            self.topn.value = topn
        self.drawn = self._draw()
        return self.drawn

    def _on_change(self, change):
        if change["owner"] is self.regions and not self._holding:
            with self._held():
                self.topn.max = change["new"] ** 2  # clamps topn to the new grid
        super()._on_change(change)

    def _draw(self) -> dict:
        key = (self.regions.value, self.topn.value)
        if key not in self.cache:
            self.cache[key] = self.measure(*key)
        self._show(routing_measures(self.cache[key], *key, title=f"{self.title}m = {key[0]}, topn = {key[1]}"))
        return self.cache[key]
