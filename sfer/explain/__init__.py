"""Explainability: Grad-CAM of L4, window attention and KROAFE, their sources, the routing view, the measures.

```python
from sfer.explain import load_model, compute_cam, routing_view, compare_targets, explain, figure8
full, rw = load_model("data_samples/checkpoints/tiny_full.pt"), load_model("data_samples/checkpoints/tiny_rw.pt")
cams = compute_cam(full, pil_images, "kroafe")             # (B, H, W) in [0, 1]; "l4", "window" (rw), ...
sources = compute_cam(full, pil_images, "kroafe", method="sources")  # where KROAFE's evidence came from
parts = token_contributions(full, pil_images, "kroafe")   # parts.tokens (B, 7, 7) + parts.rest == logit share
view = routing_view(full, pil_image, query_region=24)      # view.indices, view.figure (Figure 3)
result = compare_targets({"l4": full, "window": rw, "kroafe": full}, images, masks, class_idx=labels)
print(result.markdown())                                   # key-region energy, 95% CI, uniform baseline
```
"""

from .cam import METHODS, TARGETS, channel_last_to_first, compute_cam, target_layer
from .energy import EnergyComparison, Summary, compare_targets, key_region_energy, t_interval
from .figures import energy_figure, explain, figure8, overlay
from .loading import class_names, embedded_samples, load_model, synthetic_faces, to_batch, to_rgb, transform_for
from .measures import MapMeasures, measure_maps, pointing_game, road_scores
from .routing import RoutingView, draw_routing, region_boxes, routing_view
from .sources import TokenContributions, token_contributions

__all__ = [
    "METHODS", "TARGETS", "channel_last_to_first", "compute_cam", "target_layer",
    "EnergyComparison", "Summary", "compare_targets", "key_region_energy", "t_interval",
    "energy_figure", "explain", "figure8", "overlay",
    "class_names", "embedded_samples", "load_model", "synthetic_faces", "to_batch", "to_rgb", "transform_for",
    "RoutingView", "draw_routing", "region_boxes", "routing_view",
    "MapMeasures", "measure_maps", "pointing_game", "road_scores", "TokenContributions", "token_contributions",
]
