"""Explainability: Grad-CAM of L4, window attention and KROAFE, the routing view, key-region energy."""

from .cam import METHODS, TARGETS, channel_last_to_first, compute_cam, target_layer
from .energy import EnergyComparison, Summary, compare_targets, key_region_energy, t_interval
from .loading import class_names, load_model, to_batch, to_rgb, transform_for
from .routing import RoutingView, draw_routing, region_boxes, routing_view

__all__ = [
    "METHODS", "TARGETS", "channel_last_to_first", "compute_cam", "target_layer", "EnergyComparison", "Summary",
    "compare_targets", "key_region_energy", "t_interval", "class_names", "load_model", "to_batch", "to_rgb",
    "transform_for", "RoutingView", "draw_routing", "region_boxes", "routing_view",
]
