"""KROA, key region-oriented attention, and KROAFE (paper, equations 4-14).

KROA is BiFormer's bi-level routing attention applied to L4: patches are grouped
into m x m regions, each region keeps the ``topn`` regions most related to it, and
each patch attends only to the patches of those regions.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .regions import from_cells, pad_to_multiple, region_ids, to_cells


def check_routing(topn: int, regions: int, max_regions: int) -> None:
    """Raise ``ValueError`` unless 1 <= regions <= max_regions and 1 <= topn <= regions**2."""
    if isinstance(regions, bool) or not isinstance(regions, int) or not 1 <= regions <= max_regions:
        raise ValueError(f"regions (m) must be an integer in 1..{max_regions} (the size of L4), got {regions!r}")
    if isinstance(topn, bool) or not isinstance(topn, int) or not 1 <= topn <= regions**2:
        raise ValueError(f"topn must be an integer in 1..{regions ** 2} (m^2 for m = {regions}), got {topn!r}")


class KeyRegionAttention(nn.Module):
    """Key region-oriented attention on a channel-last map (B, H, W, C) (equations 4-14).

    Steps: q, k, v = linear maps of the map (eqs 4-6); pad to a multiple of m and split
    into m x m regions; region query and key = mean over the region's real patches
    (eqs 7-8); relation M = Q_r K_r^T (eq 9); D = indices of each region's ``topn``
    largest relations (eq 10); every patch attends, with ``num_heads`` heads, to all
    real patches of its region's ``topn`` regions (eqs 11-13); LePE, a depthwise 5x5
    convolution of V, is added after the output projection (eq 14).

    Choices the paper leaves open, after BiFormer: routing is not differentiated
    (M is computed from detached region means, so gradients reach q and k only
    through the patch attention); padded positions are masked out of region means
    and attention, and a region made only of padding is never routed to before a
    real one, so with ``topn = m^2`` the output equals plain multi-head
    self-attention + LePE over the real positions, for every m. LePE runs on the
    unpadded V with the convolution's own zero border, so it does not depend on m.

    ``topn`` and ``regions`` hold no weights: :meth:`set_routing` changes them on a
    trained model.

    Explain mode (``forward(x, frozen=x_ref)``): the routing and the attention
    probabilities are computed from ``frozen`` (detached) and written out explicitly,
    while V, LePE and W^o act on ``x``. The output is then linear (affine) in ``x``,
    which is what attribution by conservative propagation needs (Ali et al., ICML
    2022); with ``frozen = x`` it equals the ordinary forward. The ordinary forward
    keeps ``scaled_dot_product_attention`` and its fused kernels.
    """

    def __init__(self, dim: int, num_heads: int = 8, regions: int = 7, topn: int = 15,
                 max_regions: int = 7, lepe_kernel: int = 5):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.max_regions = max_regions
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.lepe = nn.Conv2d(dim, dim, lepe_kernel, padding=lepe_kernel // 2, groups=dim)
        self.set_routing(topn=topn, regions=regions)

    def set_routing(self, topn: int | None = None, regions: int | None = None) -> None:
        """Change ``topn`` and/or the region count m, validated together."""
        topn = self.topn if topn is None else topn
        regions = self.regions if regions is None else regions
        check_routing(topn, regions, self.max_regions)
        self.topn, self.regions = topn, regions

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, regions={self.regions}, topn={self.topn}"

    def _regions(self, x: torch.Tensor):
        """Linear maps (eqs 4-6) and region split: per-region q, k, v, valid mask and LePE."""
        _, h, w, _ = x.shape
        if self.regions > min(h, w):
            raise ValueError(f"regions (m) = {self.regions} exceeds the {h}x{w} feature map")
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # (B, H, W, C) each
        lepe = self.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, H, W, C)
        m = self.regions
        q, valid = pad_to_multiple(q, m)  # (B, Hp, Wp, C), (Hp, Wp)
        k, _ = pad_to_multiple(k, m)
        v, _ = pad_to_multiple(v, m)
        cell = (valid.shape[0] // m, valid.shape[1] // m)  # region size
        valid_cells = to_cells(valid[..., None], *cell)[..., 0]  # (m², P)
        return to_cells(q, *cell), to_cells(k, *cell), to_cells(v, *cell), valid_cells, valid.shape, lepe

    def _route(self, q_cells: torch.Tensor, k_cells: torch.Tensor, valid_cells: torch.Tensor) -> torch.Tensor:
        """Region means (eqs 7-8), relations M (eq 9) and top-n indices D (eq 10): (B, m², topn)."""
        # fp32 even under bf16 autocast: near-ties must route alike on every device
        weights = valid_cells.float()[..., None]  # (m², P, 1)
        count = weights.sum(dim=1)  # (m², 1)
        q_r = (q_cells.detach().float() * weights).sum(dim=2) / count.clamp(min=1)  # (B, m², C)
        k_r = (k_cells.detach().float() * weights).sum(dim=2) / count.clamp(min=1)  # (B, m², C)
        with torch.autocast(q_r.device.type, enabled=False):
            relation = q_r @ k_r.transpose(-1, -2)  # M (B, m², m²)
        relation = relation.masked_fill(count[:, 0] == 0, float("-inf"))  # all-padding regions go last
        return relation.topk(self.topn, dim=-1).indices  # D (B, m², topn)

    @torch.no_grad()
    def routing(self, x: torch.Tensor) -> torch.Tensor:
        """The routing indices D (B, m², topn) for a channel-last map (B, H, W, C)."""
        q_cells, k_cells, _, valid_cells, _, _ = self._regions(x)
        return self._route(q_cells, k_cells, valid_cells)

    def forward(self, x: torch.Tensor, frozen: torch.Tensor | None = None) -> torch.Tensor:
        """KROA of ``x`` (B, H, W, C); with ``frozen``, explain mode (see the class docstring)."""
        b, h, w, c = x.shape
        q_cells, k_cells, v_cells, valid_cells, (hp, wp), lepe = self._regions(x)  # (B, m², P, C)
        if frozen is not None:
            q_cells, k_cells, _, _, _, _ = self._regions(frozen.detach())
        index = self._route(q_cells, k_cells, valid_cells)  # D (B, m², n)

        batch = torch.arange(b, device=x.device)[:, None, None]
        k_sel = k_cells[batch, index].flatten(2, 3)  # K' (B, m², n*P, C)
        v_sel = v_cells[batch, index].flatten(2, 3)  # V' (B, m², n*P, C)
        key_valid = valid_cells[index].flatten(2, 3)  # (B, m², n*P)

        heads, cells, patches = self.num_heads, q_cells.shape[1], q_cells.shape[2]

        def split_heads(t):  # (B, m², L, C) -> (B*m², heads, L, C/heads)
            return t.reshape(b * cells, -1, heads, c // heads).transpose(1, 2)

        q, k, v = split_heads(q_cells), split_heads(k_sel), split_heads(v_sel)
        # no mask when nothing is padded (m divides the map), so the flash kernel stays eligible
        mask = None if (hp, wp) == (h, w) else key_valid.reshape(b * cells, 1, 1, -1)
        if frozen is None:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # eq 11, (B*m², heads, P, d)
        else:
            attended = self.probabilities(q, k, mask) @ v  # the same, with detached probabilities
        attended = attended.transpose(1, 2).reshape(b, cells, patches, c)  # concat heads (eq 13)
        attended = from_cells(attended, hp // self.regions, wp // self.regions, hp, wp)[:, :h, :w]  # (B, H, W, C)
        return self.proj(attended) + lepe  # W^o and LePE (eqs 13-14)

    @torch.no_grad()
    def attention_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """What each patch reads, as a dense map: (B, heads, HW, HW), rows sum to 1.

        The same probabilities as :meth:`forward` (eq 11), written over the whole map:
        zero outside the patches of the ``topn`` regions its region routes to.
        """
        b, h, w, c = x.shape
        q, k, _ = self.qkv(x).reshape(b, h * w, 3, self.num_heads, c // self.num_heads).unbind(2)  # (B, HW, heads, d)
        ids = region_ids(h, w, self.regions).flatten().to(x.device)  # (HW,) region of each patch
        routed = self.routing(x)[:, ids]  # (B, HW, topn) regions each patch's region reads
        readable = (routed[:, :, :, None] == ids[None, None, None, :]).any(dim=2)  # (B, HW, HW)
        return self.probabilities(q.transpose(1, 2), k.transpose(1, 2), readable[:, None])

    @staticmethod
    def probabilities(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) (eq 11) written out and detached: (..., P, L)."""
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-1).detach()


class ResidualAttention(nn.Module):
    """The pre-norm residual attention block: R = X + Attention(LayerNorm(X)), channel-first in and out.

    The paper joins KROA's output with L4 by a residual; the pre-norm follows BiFormer's
    block. KROAFE and the window-attention control are this block around their attention.

    Explain mode (``forward(l4, frozen=l4)``): the attention probabilities and LayerNorm's
    standard deviation come from ``frozen`` (detached), so R is affine in ``l4``
    (``sfer.explain.token_contributions`` relies on it).
    """

    def __init__(self, dim: int, attention: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attention = attention

    def forward(self, l4: torch.Tensor, frozen: torch.Tensor | None = None) -> torch.Tensor:
        x = l4.permute(0, 2, 3, 1)  # (B, H, W, C)
        if frozen is None:
            r = x + self.attention(self.norm(x))  # (B, H, W, C)
        else:
            ref = frozen.detach().permute(0, 2, 3, 1)
            r = x + self.attention(fixed_scale_norm(self.norm, x, ref), frozen=self.norm(ref))
        return r.permute(0, 3, 1, 2)  # R (B, C, H, W)

    @torch.no_grad()
    def attention_probabilities(self, l4: torch.Tensor) -> torch.Tensor:
        """What each position reads: (B, heads, HW, HW), rows sum to 1 (see the attention's method)."""
        return self.attention.attention_probabilities(self.norm(l4.permute(0, 2, 3, 1)))


class KROAFE(ResidualAttention):
    """Key region-oriented attention feature enhancement: R = L4 + KROA(LayerNorm(L4))."""

    def __init__(self, dim: int, **attention_kwargs):
        super().__init__(dim, KeyRegionAttention(dim, **attention_kwargs))

    @torch.no_grad()
    def routing(self, l4: torch.Tensor) -> torch.Tensor:
        """Routing indices D (B, m², topn) that KROA uses on this L4."""
        return self.attention.routing(self.norm(l4.permute(0, 2, 3, 1)))


def fixed_scale_norm(norm: nn.LayerNorm, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """LayerNorm of ``x`` with the standard deviation taken from ``ref`` and held fixed.

    (x - mean(x)) / std(ref) * gamma + beta: affine in ``x``, and equal to ``norm(x)``
    when ``ref`` is ``x``. Centring stays a function of ``x`` because it is linear.
    """
    std = (ref.var(dim=-1, unbiased=False, keepdim=True) + norm.eps).sqrt().detach()
    return (x - x.mean(dim=-1, keepdim=True)) / std * norm.weight + norm.bias
