"""SFER-MDFAE (paper, Figure 1 and equation 15), its presets and ablation variants."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .ir50 import IRBackbone
from .kroa import KROAFE
from .mdpfa import MDPFA
from .window import WindowAttentionFE

VARIANTS = ("full", "nm", "np", "na", "rw")
VARIANT_DESCRIPTIONS = {
    "full": "SFER-MDFAE: MDPFA on L1..L4 + KROAFE on L4",
    "nm": "MDPFA on L4 alone (no multi-scale features)",
    "np": "no MDPFA: F_t = F_dl",
    "na": "no KROA: F_dl = pool of L4",
    "rw": "window attention instead of KROA",
}


@dataclass(frozen=True)
class Preset:
    """Architecture sizes. ``image_size`` is the side the data pipeline resizes to."""

    units: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]
    stem_width: int
    num_heads: int
    image_size: int
    regions: int = 7
    topn: int = 15
    window_size: int = 3
    reduction: int = 16
    dropout: float = 0.2


PRESETS = {
    # IR50 as in the paper: (3, 4, 14, 3) units of depth (64, 128, 256, 512). Eight
    # heads of 64 channels in KROA (the paper gives no head count).
    "paper": Preset(units=(3, 4, 14, 3), widths=(64, 128, 256, 512), stem_width=64, num_heads=8, image_size=224),
    # One unit per stage, a quarter of the width: the same L1..L4 sizes (56, 28, 14, 7)
    # and the same KROA controls, trainable on a laptop CPU in minutes. Its data
    # pipeline feeds 112x112 images, the backbone's working size, so no resize is wasted.
    # r = 4 keeps MDPFA's hidden layer at 4..32 units (r = 16 would leave one unit at
    # 16 channels, a single ReLU that can die).
    "tiny": Preset(units=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem_width=16, num_heads=4, image_size=112,
                   reduction=4),
}


class SFERMDFAE(nn.Module):
    """IR backbone -> (MDPFA -> F_m, KROAFE -> F_dl) -> F_t = concat(F_m, F_dl) -> logits.

    Variants (section 4.5): ``full``; ``nm`` (MDPFA on L4 alone); ``np`` (no MDPFA,
    F_t = F_dl); ``na`` (no KROA, F_dl = pool of L4); ``rw`` (window attention
    instead of KROA). The KROA block is ``self.kroafe`` and the window block
    ``self.window_fe``; a variant without one has no such attribute.
    """

    def __init__(self, preset: str = "paper", variant: str = "full", num_classes: int = 7,
                 topn: int | None = None, regions: int | None = None):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {list(VARIANTS)}")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        p = PRESETS[preset]
        self.preset_name, self.variant, self.num_classes = preset, variant, num_classes
        self.map_size = 7  # L4 is 7x7: every preset's backbone works at 112x112
        self.backbone = IRBackbone(p.units, p.widths, p.stem_width)
        c4 = p.widths[-1]

        if variant != "np":
            self.mdpfa = MDPFA((c4,) if variant == "nm" else p.widths, p.reduction)
        if variant in ("full", "nm", "np"):
            topn = p.topn if topn is None else topn
            regions = p.regions if regions is None else regions
            self.kroafe = KROAFE(c4, num_heads=p.num_heads, regions=regions, topn=topn, max_regions=self.map_size)
        elif topn is not None or regions is not None:
            raise ValueError(f"variant {variant!r} has no KROA: topn and regions do not apply")
        if variant == "rw":
            self.window_fe = WindowAttentionFE(c4, num_heads=p.num_heads, window_size=p.window_size)

        mdpfa_features = self.mdpfa.out_features if hasattr(self, "mdpfa") else 0
        self.dropout = nn.Dropout(p.dropout)
        self.head = nn.Linear(mdpfa_features + c4, num_classes)

    @property
    def config(self) -> dict:
        """JSON-able arguments that rebuild this architecture with :func:`build_model`."""
        routing = {}
        if hasattr(self, "kroafe"):
            routing = {"topn": self.kroafe.attention.topn, "regions": self.kroafe.attention.regions}
        return {"preset": self.preset_name, "variant": self.variant, "num_classes": self.num_classes, **routing}

    @property
    def preset(self) -> Preset:
        return PRESETS[self.preset_name]

    def set_routing(self, topn: int | None = None, regions: int | None = None) -> None:
        """Change KROA's ``topn`` and region count m (weightless, so valid on a trained model).

        Raises ``ValueError`` for a variant without KROA or a value out of range
        (1 <= m <= 7, 1 <= topn <= m^2).
        """
        if not hasattr(self, "kroafe"):
            raise ValueError(f"variant {self.variant!r} has no KROA block; routing applies to full, nm and np")
        self.kroafe.attention.set_routing(topn=topn, regions=regions)

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """All intermediate results: L1..L4, F_m (absent for ``np``), R, F_dl, F_t and logits."""
        l1, l2, l3, l4 = self.backbone(images)  # (B, C_i, 56/2^(i-1), ...)
        out = {"L1": l1, "L2": l2, "L3": l3, "L4": l4}
        if hasattr(self, "kroafe"):
            r = self.kroafe(l4)  # R = L4 + KROA(LN(L4)), (B, C4, 7, 7)
        elif hasattr(self, "window_fe"):
            r = self.window_fe(l4)
        else:
            r = l4
        out["R"] = r
        out["F_dl"] = r.mean(dim=(2, 3))  # (B, C4)
        parts = [out["F_dl"]]
        if hasattr(self, "mdpfa"):
            scales = [l4] if self.variant == "nm" else [l1, l2, l3, l4]
            out["F_m"] = self.mdpfa(scales)  # (B, sum C_i)
            parts.insert(0, out["F_m"])
        out["F_t"] = torch.cat(parts, dim=1)  # equation 15
        out["logits"] = self.head(self.dropout(out["F_t"]))  # (B, classes)
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)["logits"]

    @torch.no_grad()
    def routing(self, images: torch.Tensor) -> torch.Tensor:
        """KROA's routing indices D (B, m², topn) for these images (row-major regions)."""
        if not hasattr(self, "kroafe"):
            raise ValueError(f"variant {self.variant!r} has no KROA block")
        return self.kroafe.routing(self.backbone(images)[-1])


def build_model(preset: str = "paper", variant: str = "full", num_classes: int = 7,
                topn: int | None = None, regions: int | None = None) -> SFERMDFAE:
    """Build SFER-MDFAE. ``topn``/``regions`` default to the paper's 15 and 7."""
    return SFERMDFAE(preset, variant, num_classes, topn=topn, regions=regions)
