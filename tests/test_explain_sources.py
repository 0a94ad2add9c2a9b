"""Sources (conservative propagation through KROAFE and window attention), split into attention and residual."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from sfer.explain import compute_cam, load_model, synthetic_faces, token_contributions
from sfer.models import build_model

CHECKPOINTS = Path(__file__).resolve().parents[1] / "data_samples" / "checkpoints"


@pytest.fixture(scope="module")
def trained():
    """The shipped full model, a seeded rw model (completeness is a property of the block, not of
    its weights; the rw block is being rebuilt as a matched control) and eight faces."""
    faces = synthetic_faces(8, seed=4321, nuisance=0.5)
    torch.manual_seed(0)
    rw = build_model("tiny", "rw", num_classes=6).eval()
    return load_model(CHECKPOINTS / "tiny_full.pt"), rw, faces


@pytest.mark.parametrize("variant,block", [("full", "kroafe"), ("rw", "window_fe")])
@pytest.mark.parametrize("routing", [(15, 7), (4, 3), (49, 7), (1, 1)])
def test_explain_mode_gives_the_ordinary_output(variant, block, routing):
    model = build_model("tiny", variant, num_classes=6).eval()
    if variant == "full":
        model.set_routing(*routing)
    l4 = torch.randn(2, 128, 7, 7)
    module = getattr(model, block)
    torch.testing.assert_close(module(l4, frozen=l4), module(l4), atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("routing", [(15, 7), (4, 3), (9, 5)])
def test_completeness_on_the_trained_tiny_models(trained, routing):
    full, rw, faces = trained
    full.set_routing(*routing)
    try:
        for model, target in ((full, "kroafe"), (rw, "window")):
            result = token_contributions(model, faces.images, target, faces.labels)
            assert result.tokens.shape == (8, 7, 7)  # padded positions are not tokens: they get nothing
            assert result.completeness_error.max() < 1e-5 * result.share.abs().max()
            if model is full:
                assert (result.rest.abs() < result.share.abs()).all()  # trained: the biases own a small part
    finally:
        full.set_routing(15, 7)


@pytest.mark.parametrize("regions", [7, 4])
def test_completeness_on_the_paper_preset(regions):
    model = build_model("paper", "full", num_classes=7, topn=min(15, regions ** 2), regions=regions).eval()
    result = token_contributions(model, torch.randn(1, 3, 224, 224), "kroafe", class_idx=3)
    assert result.completeness_error.item() < 1e-5 * max(1.0, result.share.abs().item())


def test_hand_decomposition_equals_token_contributions(trained):
    """Attention column sums, LePE and the residual, written out for m = 7 (one token a region)."""
    full, _, faces = trained
    c = 2
    result = token_contributions(full, faces.images[:2], "kroafe", class_idx=c)
    block, kroa = full.kroafe, full.kroafe.attention
    with torch.no_grad():
        x = full.features(torch.stack([full.eval_transform(im) for im in faces.images[:2]]))["L4"]
        x = x.flatten(2).transpose(1, 2)  # (B, N, C) tokens, row-major
        b, n, ch = x.shape
        heads, d = kroa.num_heads, ch // kroa.num_heads
        w = full.head.weight[c, -ch:]  # (C,)
        sigma = (x.var(-1, unbiased=False, keepdim=True) + block.norm.eps).sqrt()
        linear_norm = (x - x.mean(-1, keepdim=True)) / sigma * block.norm.weight  # LN without beta
        q, k, _ = (block.norm(x) @ kroa.qkv.weight.T + kroa.qkv.bias).chunk(3, -1)
        allowed = torch.zeros(b, n, n, dtype=torch.bool)  # routing: query region -> its topn regions
        allowed.scatter_(2, full.kroafe.routing(x.transpose(1, 2).reshape(b, ch, 7, 7)), True)
        q, k = (t.reshape(b, n, heads, d).transpose(1, 2) for t in (q, k))  # (B, heads, N, d)
        scores = (q @ k.transpose(-1, -2) / d ** 0.5).masked_fill(~allowed[:, None], float("-inf"))
        column_sums = scores.softmax(-1).sum(dim=2)  # (B, heads, N): how much each key token is read
        v_linear = linear_norm @ kroa.qkv.weight[2 * ch:].T  # (B, N, C), V without biases
        read = (w @ kroa.proj.weight).reshape(heads, d)  # w . W^o, per head
        attention = torch.einsum("bhs,bshd,hd->bs", column_sums, v_linear.reshape(b, n, heads, d), read)
        reach = F.conv_transpose2d(torch.ones(1, ch, 7, 7), kroa.lepe.weight, padding=2, groups=ch)
        lepe = (v_linear * reach.flatten(2).transpose(1, 2)) @ w  # each V token's weight in mean(LePE)
        tokens = (x @ w + attention + lepe) / n  # residual + attention + LePE, through the mean pool
    torch.testing.assert_close(result.tokens.float(), tokens.reshape(b, 7, 7), atol=1e-5, rtol=1e-4)


def test_randomised_kroa_and_head_change_the_sources(trained):
    """Model-randomisation sanity check (Adebayo et al. 2018): sources must depend on the weights."""
    full, _, faces = trained
    randomised = load_model(CHECKPOINTS / "tiny_full.pt")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in [*randomised.kroafe.parameters(), *randomised.head.parameters()]:
            p.copy_(torch.randn(p.shape, generator=gen) * p.std().clamp(min=0.02))
    before = token_contributions(full, faces.images, "kroafe", faces.labels).tokens.flatten(1).numpy()
    after = token_contributions(randomised, faces.images, "kroafe", faces.labels).tokens.flatten(1).numpy()
    rho = [stats.spearmanr(a, b).statistic for a, b in zip(before, after)]
    assert np.mean(rho) < 0.5, rho


def test_sources_cam_and_refusals(trained):
    full, rw, faces = trained
    cams = compute_cam(full, faces.images[:3], "kroafe", method="sources")
    assert cams.shape == (3, 112, 112) and cams.min() >= 0 and np.allclose(cams.max(axis=(1, 2)), 1, atol=1e-5)
    raw = compute_cam(full, faces.images[:3], "kroafe", method="sources", scaled=False)
    assert raw.min() >= 0 and raw.max() > 1  # raw logit shares, not scaled
    assert compute_cam(rw, faces.images[:3], "window", method="attention_sources").shape == (3, 112, 112)
    with pytest.raises(ValueError, match="attention blocks"):
        compute_cam(full, faces.images[:1], "l4", method="sources")
    with pytest.raises(ValueError, match="rw variant"):
        token_contributions(full, faces.images[:1], "window")
    with pytest.raises(ValueError, match="out of range"):
        token_contributions(full, faces.images[:1], "kroafe", class_idx=6)


@pytest.mark.parametrize("variant,target", [("full", "kroafe"), ("rw", "window")])
def test_tokens_split_into_attention_and_residual(variant, target):
    """tokens = attention + residual, with the residual in closed form: w_c . L4_t / (h w)."""
    torch.manual_seed(0)
    model = build_model("tiny", variant, num_classes=6).eval()
    images, classes = torch.randn(3, 3, 112, 112), [0, 2, 5]
    result = token_contributions(model, images, target, classes)
    scale = result.share.abs().max()
    assert result.attention.shape == result.residual.shape == (3, 7, 7)
    torch.testing.assert_close(result.attention + result.residual, result.tokens, atol=1e-5 * scale, rtol=0)
    with torch.no_grad():
        l4 = model.features(images)["L4"].double()  # (B, C, 7, 7)
        w = model.head.weight[classes, -l4.shape[1]:].double()  # (B, C)
    torch.testing.assert_close(result.residual, torch.einsum("bc,bchw->bhw", w, l4) / 49)
    assert result.completeness_error.max() < 1e-5 * scale
    assert (result.attention - result.tokens).abs().max() > 1e-3 * scale  # the residual part is not nothing


def test_attention_sources_map_the_attention_part(trained):
    full, _, faces = trained
    parts = token_contributions(full, faces.images[:2], "kroafe", faces.labels[:2])
    raw = compute_cam(full, faces.images[:2], "kroafe", "attention_sources", faces.labels[:2], scaled=False)
    by_hand = F.interpolate(parts.attention.clamp(min=0)[:, None].float(), size=(112, 112), mode="bilinear",
                            align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(raw, by_hand, rtol=1e-5, atol=1e-6)
    whole = compute_cam(full, faces.images[:2], "kroafe", "sources", faces.labels[:2], scaled=False)
    assert not np.allclose(raw, whole)
    scaled = compute_cam(full, faces.images[:2], "kroafe", "attention_sources", faces.labels[:2])
    assert np.allclose(scaled.max(axis=(1, 2)), 1, atol=1e-5)
