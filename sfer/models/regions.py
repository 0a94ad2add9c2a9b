"""Grid helpers shared by key-region attention and window attention.

Both split a channel-last map (B, H, W, C) into a grid of equal cells: KROA into
m x m regions, window attention into w x w windows. When the cells do not tile the
map, it is padded at the bottom and right and a boolean ``valid`` map says which
positions are real, so that callers can keep the padding out of means and attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (B, H, W, C) with zeros to (B, Hp, Wp, C), Hp and Wp multiples of ``multiple``.

    Returns the padded map and ``valid``, a (Hp, Wp) bool tensor, True on real positions.
    """
    _, h, w, _ = x.shape
    valid = valid_positions(h, w, multiple, x.device)
    hp, wp = valid.shape
    if (hp, wp) != (h, w):
        x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
    return x, valid


def valid_positions(h: int, w: int, multiple: int, device=None) -> torch.Tensor:
    """(Hp, Wp) bool map, True on the h x w real positions of a map padded to multiples of ``multiple``."""
    hp, wp = math.ceil(h / multiple) * multiple, math.ceil(w / multiple) * multiple
    valid = torch.zeros(hp, wp, dtype=torch.bool, device=device)
    valid[:h, :w] = True
    return valid


def to_cells(x: torch.Tensor, cell_h: int, cell_w: int) -> torch.Tensor:
    """(..., Hp, Wp, C) -> (..., cells, cell_h * cell_w, C), cells in row-major order."""
    *lead, hp, wp, c = x.shape
    gh, gw = hp // cell_h, wp // cell_w
    x = x.reshape(*lead, gh, cell_h, gw, cell_w, c)
    x = x.movedim(-4, -3)  # (..., gh, gw, cell_h, cell_w, C)
    return x.reshape(*lead, gh * gw, cell_h * cell_w, c)


def from_cells(x: torch.Tensor, cell_h: int, cell_w: int, hp: int, wp: int) -> torch.Tensor:
    """Inverse of :func:`to_cells`: (..., cells, cell_h * cell_w, C) -> (..., Hp, Wp, C)."""
    *lead, _, _, c = x.shape
    gh, gw = hp // cell_h, wp // cell_w
    x = x.reshape(*lead, gh, gw, cell_h, cell_w, c)
    x = x.movedim(-3, -4)  # (..., gh, cell_h, gw, cell_w, C)
    return x.reshape(*lead, hp, wp, c)


def region_ids(h: int, w: int, m: int) -> torch.Tensor:
    """Row-major region index of every patch (H, W) for m x m regions of a map padded to ceil(H/m) m."""
    cell_h, cell_w = math.ceil(h / m), math.ceil(w / m)
    return (torch.arange(h)[:, None] // cell_h) * m + torch.arange(w)[None, :] // cell_w
