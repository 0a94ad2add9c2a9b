"""Window attention, the ``rw`` baseline (POSTER++'s window mechanism on L4)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kroa import fixed_scale_norm
from .regions import from_cells, pad_to_multiple, to_cells, valid_positions


class WindowAttention(nn.Module):
    """Multi-head attention inside fixed w x w windows with a relative position bias.

    POSTER++ takes the queries of its window cross-attention from a facial-landmark
    network. SFER-MDFAE removes that network, so here the queries come from L4
    itself through a learned linear map, like the keys and values: the only
    difference from KROA is then *where* a patch may look (a fixed local window
    instead of routed regions). The default w = 3 keeps the window local on the
    7x7 L4 (a patch sees at most 9 of 49 patches); the map is padded to a multiple
    of w and the padding is masked out of the attention. The bias table is Swin's:
    one learned value per head and relative offset.
    """

    def __init__(self, dim: int, num_heads: int = 8, window_size: int = 3):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.window_size = num_heads, window_size
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
        coords = coords.flatten(1)  # (2, w*w)
        offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window_size - 1  # (w², w², 2)
        self.register_buffer("relative_index", offsets[..., 0] * (2 * window_size - 1) + offsets[..., 1],
                             persistent=False)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, window_size={self.window_size}"

    def forward(self, x: torch.Tensor, frozen: torch.Tensor | None = None) -> torch.Tensor:
        """Window attention of ``x`` (B, H, W, C). With ``frozen``, explain mode: the attention
        probabilities come from ``frozen`` (detached) and are written out, so the output is
        affine in ``x``; the ordinary forward uses ``scaled_dot_product_attention``."""
        b, h, w, c = x.shape
        ws, heads = self.window_size, self.num_heads
        q, k, v = self._windows(x)  # (B*windows, heads, w², d) each, windows folded into the batch
        if frozen is not None:
            q, k, _ = self._windows(frozen.detach())
        windows = q.shape[0] // b
        bias = self.relative_position_bias[self.relative_index].permute(2, 0, 1)  # (heads, w², w²)
        valid = valid_positions(h, w, ws, x.device)  # (Hp, Wp)
        key_valid = to_cells(valid[..., None], ws, ws)[..., 0]  # (windows, w²)
        bias = bias.masked_fill(~key_valid[:, None, None, :], float("-inf"))  # (windows, heads, w², w²)
        bias = bias.to(q.dtype).repeat(b, 1, 1, 1)  # (B*windows, heads, w², w²)
        if frozen is None:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B*windows, heads, w², d)
        else:
            scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5 + bias
            attended = scores.softmax(dim=-1).detach() @ v
        attended = attended.transpose(1, 2).reshape(b, windows, ws * ws, c)
        hp, wp = valid.shape
        attended = from_cells(attended, ws, ws, hp, wp)[:, :h, :w]  # (B, H, W, C)
        return self.proj(attended)

    def _windows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of each window, (B*windows, heads, w², d): 4-D, so SDPA can use a fused kernel."""
        b, _, _, c = x.shape
        ws = self.window_size
        cells = to_cells(pad_to_multiple(x, ws)[0], ws, ws)  # (B, windows, w², C); padding < w
        q, k, v = self.qkv(cells).chunk(3, dim=-1)  # (B, windows, w², C) each
        return tuple(t.reshape(-1, ws * ws, self.num_heads, c // self.num_heads).transpose(1, 2) for t in (q, k, v))


class WindowAttentionFE(nn.Module):
    """The ``rw`` block: R = L4 + WindowAttention(LayerNorm(L4)), channel-first in and out."""

    def __init__(self, dim: int, **attention_kwargs):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attention = WindowAttention(dim, **attention_kwargs)

    def forward(self, l4: torch.Tensor, frozen: torch.Tensor | None = None) -> torch.Tensor:
        """R from L4 (B, C, H, W); ``frozen`` gives explain mode, as in :class:`~sfer.models.kroa.KROAFE`."""
        x = l4.permute(0, 2, 3, 1)  # (B, H, W, C)
        if frozen is None:
            r = x + self.attention(self.norm(x))
        else:
            ref = frozen.detach().permute(0, 2, 3, 1)
            r = x + self.attention(fixed_scale_norm(self.norm, x, ref), frozen=self.norm(ref))
        return r.permute(0, 3, 1, 2)  # (B, C, H, W)
