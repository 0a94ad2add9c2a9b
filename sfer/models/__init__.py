"""SFER-MDFAE: IR50 backbone, MDPFA, KROA/KROAFE, window attention, variants and presets."""

from .ir50 import BottleneckIR, IRBackbone
from .kroa import KROAFE, KeyRegionAttention, check_routing
from .mdpfa import MDPFA, ChannelAttention
from .pretrained import CheckpointError, LoadReport, load_ir50, read_state_dict
from .sfer_mdfae import PRESETS, VARIANT_DESCRIPTIONS, VARIANTS, Preset, SFERMDFAE, build_model
from .window import WindowAttention, WindowAttentionFE

__all__ = [
    "BottleneckIR", "IRBackbone", "KROAFE", "KeyRegionAttention", "check_routing", "MDPFA",
    "ChannelAttention", "CheckpointError", "LoadReport", "load_ir50", "read_state_dict", "PRESETS",
    "VARIANT_DESCRIPTIONS", "VARIANTS", "Preset", "SFERMDFAE", "build_model", "WindowAttention",
    "WindowAttentionFE",
]
