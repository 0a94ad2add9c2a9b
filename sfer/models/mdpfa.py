"""MDPFA: multi-scale dual-pooling feature aggregation (paper, equations 1-3)."""

from __future__ import annotations

import torch
import torch.nn as nn


class ChannelAttention(nn.Module):
    """W = sigmoid(MLP(MaxPool(L)) + MLP(AvgPool(L))), Q = L * W (equations 1-2).

    One MLP (C -> C/r -> C, ReLU between, no biases as in CBAM) is shared by both
    poolings; r = 16 as in CBAM, which the paper's "shared MLP" follows. The hidden
    width is kept at least 1 so that narrow presets still work.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
        )

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Channel attention weights W, (B, C) in (0, 1) (equation 1)."""
        max_pooled = x.amax(dim=(2, 3))  # (B, C)
        avg_pooled = x.mean(dim=(2, 3))  # (B, C)
        return torch.sigmoid(self.mlp(max_pooled) + self.mlp(avg_pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weights(x)  # (B, C)
        return x * w[:, :, None, None]  # Q = L * W, (B, C, H, W)


class MDPFA(nn.Module):
    """F_m = concat(GAP(Q_1), .., GAP(Q_n)) over the given scales (equation 3).

    With the four IR50 scales (64, 128, 256, 512 channels) F_m has 960 values.
    """

    def __init__(self, channels: tuple[int, ...], reduction: int = 16):
        super().__init__()
        self.attentions = nn.ModuleList(ChannelAttention(c, reduction) for c in channels)
        self.out_features = sum(channels)

    def forward(self, scales: list[torch.Tensor]) -> torch.Tensor:
        pooled = [att(l_i).mean(dim=(2, 3)) for att, l_i in zip(self.attentions, scales)]  # G_i (B, C_i)
        return torch.cat(pooled, dim=1)  # F_m (B, sum C_i)
