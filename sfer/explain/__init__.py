"""Explainability: Grad-CAM of L4, window attention and KROAFE, their sources, the routing view, the measures.

```python
from sfer.explain import load_model, compute_cam, token_contributions, routing_view, measure_faces, mean_mask
full, rw = load_model("data_samples/checkpoints/tiny_full.pt"), load_model("data_samples/checkpoints/tiny_rw.pt")
cams = compute_cam(full, pil_images, "kroafe")             # (B, H, W) in [0, 1]; "l4", "window" (rw), ...
sources = compute_cam(full, pil_images, "kroafe", method="attention_sources")  # what KROA read, by L4 token
parts = token_contributions(full, pil_images, "kroafe")   # tokens = attention + residual; tokens.sum + rest = share
view = routing_view(full, pil_image, query_region=24)      # view.indices, view.figure (Figure 3)
maps = {"L4 Grad-CAM": (full, "l4", "gradcam"), "KROAFE sources": (full, "kroafe", "attention_sources"),
        "window sources": (rw, "window", "attention_sources")}
result = measure_faces(maps, test_faces, prior=mean_mask(train_faces))  # SyntheticClassroomFaces splits
print(result.markdown())                                   # energy, pointing, distractors, class sensitivity
```
"""

from .cam import METHODS, compute_cam
from .figures import explain, figure8, overlay
from .loading import class_names, load_model, synthetic_faces
from .measures import MapMeasures, mean_mask, measure_faces, measure_maps
from .routing import routing_view
from .sources import token_contributions

__all__ = [
    "compute_cam", "token_contributions", "explain", "figure8", "overlay", "routing_view", "measure_maps",
    "measure_faces", "mean_mask", "MapMeasures", "load_model", "synthetic_faces", "class_names", "METHODS",
]
