"""IR50: the ArcFace-style improved-residual backbone that gives L1..L4.

The layout follows the public ``ir50.pth`` (MS-Celeb-1M) checkpoint that POSTER,
POSTER++ and SFER-MDFAE start from: ``input_layer.*`` then ``body.0.*`` ..
``body.23.*``, one entry per residual unit, so that file loads key for key.
The checkpoint's ``output_layer`` (a 512-d face-embedding head) is not built:
SFER-MDFAE reads the stage outputs L1..L4 instead.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class BottleneckIR(nn.Module):
    """One improved-residual unit: BN -> conv3x3 -> PReLU -> conv3x3(stride) -> BN, plus a shortcut.

    The stride sits on the second convolution, so the first one runs at the input
    resolution (as in the public checkpoint). The shortcut is a 1x1 max-pool (a pure
    subsampling) when the depth is kept, else conv1x1 + BN.
    """

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRBackbone(nn.Module):
    """Improved-residual network returning the four stage outputs [L1, L2, L3, L4].

    ``units`` and ``widths`` give the number of units and the depth of each of the
    four stages: (3, 4, 14, 3) and (64, 128, 256, 512) for IR50. Every stage halves
    the resolution in its first unit, so a 112x112 input gives L1..L4 at 56, 28, 14
    and 7 pixels whatever the widths.

    Inputs of another size are resized to ``input_size`` first with ``F.interpolate``'s
    default mode, nearest, exactly as POSTER and POSTER++ do with their 224x224 crops:
    the public weights were trained on 112x112 aligned faces.
    """

    def __init__(
        self,
        units: tuple[int, int, int, int] = (3, 4, 14, 3),
        widths: tuple[int, int, int, int] = (64, 128, 256, 512),
        stem_width: int = 64,
        input_size: int = 112,
    ):
        super().__init__()
        self.input_size = input_size
        self.widths = tuple(widths)
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, stem_width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.PReLU(stem_width),
        )
        layers, in_channels, stage_ends = [], stem_width, []
        for num_units, depth in zip(units, widths):
            for i in range(num_units):
                layers.append(BottleneckIR(in_channels, depth, stride=2 if i == 0 else 1))
                in_channels = depth
            stage_ends.append(len(layers) - 1)
        self.body = nn.Sequential(*layers)
        self.stage_ends = tuple(stage_ends)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.shape[-2:] != (self.input_size, self.input_size):
            images = F.interpolate(images, size=(self.input_size, self.input_size))  # nearest, as POSTER
        x = self.input_layer(images)  # (B, stem, 112, 112)
        stages = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.stage_ends:
                stages.append(x)  # L1 (B, C1, 56, 56) .. L4 (B, C4, 7, 7)
        return stages
