"""SFER-MDFAE: IR50 backbone, MDPFA, KROA/KROAFE, window attention, variants and presets."""

from .kroa import KROAFE, KeyRegionAttention
from .mdpfa import MDPFA
from .pretrained import CheckpointError, load_ir50
from .sfer_mdfae import PRESETS, VARIANTS, build_model
from .window import WindowAttention

__all__ = ["build_model", "load_ir50", "PRESETS", "VARIANTS", "CheckpointError", "KeyRegionAttention", "KROAFE",
           "WindowAttention", "MDPFA"]
