"""The SFER-MDFAE model: shapes, KROA's routing, gradients, complexity, settings."""

import math

import pytest
import torch
import torch.nn.functional as F

from sfer.models import PRESETS, VARIANTS, KeyRegionAttention, build_model
from sfer.models.complexity import PAPER_MACS, PAPER_PARAMETERS, count_macs, count_parameters


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_feature_shapes(variant):
    model = build_model("tiny", variant, num_classes=6).eval()
    feats = model.features(torch.randn(2, 3, 112, 112))
    widths = PRESETS["tiny"].widths
    for i, (c, s) in enumerate(zip(widths, (56, 28, 14, 7)), start=1):
        assert feats[f"L{i}"].shape == (2, c, s, s)
    assert feats["R"].shape == (2, 128, 7, 7)
    assert feats["F_dl"].shape == (2, 128)
    expected_fm = {"full": 240, "nm": 128, "na": 240, "rw": 240}
    if variant == "np":
        assert "F_m" not in feats
        assert feats["F_t"].shape == (2, 128)
    else:
        assert feats["F_m"].shape == (2, expected_fm[variant])
        assert feats["F_t"].shape == (2, expected_fm[variant] + 128)
    assert model(torch.randn(2, 3, 224, 224)).shape == (2, 6)


def test_paper_shapes_at_224():
    model = build_model("paper", "full", num_classes=7).eval()
    with torch.no_grad():
        feats = model.features(torch.randn(1, 3, 224, 224))
    assert [tuple(feats[f"L{i}"].shape[1:]) for i in range(1, 5)] == [
        (64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]
    assert feats["F_m"].shape == (1, 960) and feats["F_t"].shape == (1, 1472)


def test_na_variant_pools_l4_directly():
    model = build_model("tiny", "na", num_classes=6).eval()
    feats = model.features(torch.randn(2, 3, 112, 112))
    torch.testing.assert_close(feats["R"], feats["L4"])
    assert not hasattr(model, "kroafe") and not hasattr(model, "window_fe")


def reference_attention(kroa: KeyRegionAttention, x: torch.Tensor) -> torch.Tensor:
    """Plain multi-head self-attention over all positions + LePE, with KROA's weights."""
    b, h, w, c = x.shape
    q, k, v = kroa.qkv(x).reshape(b, h * w, 3, kroa.num_heads, c // kroa.num_heads).permute(2, 0, 3, 1, 4)
    attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // kroa.num_heads), dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(b, h, w, c)
    v_map = v.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)
    return kroa.proj(out) + kroa.lepe(v_map).permute(0, 2, 3, 1)


@pytest.mark.parametrize("m", range(1, 8))
def test_full_routing_equals_plain_attention(m):
    kroa = KeyRegionAttention(32, num_heads=4, regions=m, topn=m * m, max_regions=7).double()
    x = torch.randn(2, 7, 7, 32, dtype=torch.float64)
    torch.testing.assert_close(kroa(x), reference_attention(kroa, x))


def test_full_routing_equals_plain_attention_on_non_square_map():
    kroa = KeyRegionAttention(16, num_heads=2, regions=3, topn=9, max_regions=5).double()
    x = torch.randn(1, 5, 8, 16, dtype=torch.float64)
    torch.testing.assert_close(kroa(x), reference_attention(kroa, x))


def test_partial_routing_changes_output_and_keeps_topn_regions():
    kroa = KeyRegionAttention(32, num_heads=4, regions=7, topn=49, max_regions=7).eval()
    x = torch.randn(2, 7, 7, 32)
    full = kroa(x)
    kroa.set_routing(topn=3)
    partial = kroa(x)
    assert not torch.allclose(full, partial, atol=1e-4)
    index = kroa.routing(x)
    assert index.shape == (2, 49, 3)
    assert all(len(set(row.tolist())) == 3 for row in index.reshape(-1, 3))


def test_padding_regions_are_never_routed_first():
    # m = 6 on a 7x7 map: cells of 2x2 leave whole regions of padding at the right and bottom
    kroa = KeyRegionAttention(16, num_heads=2, regions=6, topn=1, max_regions=7)
    index = kroa.routing(torch.randn(3, 7, 7, 16))
    real = {r * 6 + c for r in range(4) for c in range(4)}
    assert set(index.flatten().tolist()) <= real
    assert torch.isfinite(kroa(torch.randn(3, 7, 7, 16))).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_parameter_gets_a_gradient(variant):
    model = build_model("tiny", variant, num_classes=6).train()
    images, labels = torch.randn(4, 3, 112, 112), torch.tensor([0, 1, 2, 3])
    F.cross_entropy(model(images), labels).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_routing_settings_change_a_trained_model_without_new_weights():
    model = build_model("tiny", "full", num_classes=6).eval()
    keys = set(model.state_dict())
    x = torch.randn(1, 3, 112, 112)
    before = model(x)
    model.set_routing(topn=2, regions=4)
    assert set(model.state_dict()) == keys
    assert model.config["topn"] == 2 and model.config["regions"] == 4
    assert not torch.allclose(before, model(x))
    assert model.routing(x).shape == (1, 16, 2)


@pytest.mark.parametrize("kwargs, message", [
    ({"topn": 0}, "topn must be an integer in 1..49"),
    ({"topn": 50}, "topn must be an integer in 1..49"),
    ({"regions": 8}, "regions (m) must be an integer in 1..7"),
    ({"regions": 0}, "regions (m) must be an integer in 1..7"),
    ({"regions": 3, "topn": 10}, "topn must be an integer in 1..9"),
    ({"topn": 2.5}, "topn must be an integer"),
])
def test_out_of_range_routing_is_refused(kwargs, message):
    model = build_model("tiny", "full", num_classes=6)
    with pytest.raises(ValueError) as err:
        model.set_routing(**kwargs)
    assert message in str(err.value)
    assert model.config["topn"] == 15 and model.config["regions"] == 7
    with pytest.raises(ValueError):
        build_model("tiny", "full", num_classes=6, **kwargs)


def test_routing_on_a_variant_without_kroa_is_refused():
    for variant in ("na", "rw"):
        with pytest.raises(ValueError, match="no KROA"):
            build_model("tiny", variant, num_classes=6).set_routing(topn=3)


@pytest.mark.parametrize("kwargs", [{"preset": "huge"}, {"variant": "xx"}, {"num_classes": 1}])
def test_bad_build_arguments(kwargs):
    with pytest.raises(ValueError):
        build_model(**{"preset": "tiny", **kwargs})


def test_config_rebuilds_the_same_architecture():
    model = build_model("tiny", "full", num_classes=6, topn=5, regions=4)
    clone = build_model(**model.config)
    clone.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 112, 112)
    torch.testing.assert_close(model.eval()(x), clone.eval()(x))


def test_window_attention_is_local():
    model = build_model("tiny", "rw", num_classes=6).eval()
    block = model.window_fe
    x = torch.randn(1, 128, 7, 7, requires_grad=True)
    block(x)[0, :, 0, 0].sum().backward()
    seen = (x.grad[0].abs().sum(0) > 0).sum().item()
    assert 1 < seen < 49  # a corner patch sees only its 3x3 window


def test_paper_complexity_matches_table_4():
    model = build_model("paper", "full", num_classes=7)
    params, macs = count_parameters(model), count_macs(model, 224)
    assert abs(params / PAPER_PARAMETERS - 1) < 0.01, params
    assert abs(macs / PAPER_MACS - 1) < 0.02, macs


def test_tiny_is_small():
    model = build_model("tiny", "full", num_classes=6)
    assert count_parameters(model) < 1e6
    assert count_macs(model, 112) < 0.2e9


def test_profile_cli_writes_table(tmp_path, capsys):
    from sfer.cli import main

    out = tmp_path / "complexity.md"
    assert main(["profile", "--presets", "tiny", "--variants", "full", "rw", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| tiny | full |" in text and "| tiny | rw |" in text
    assert "| tiny | full |" in capsys.readouterr().out


def test_window_attention_is_kroas_matched_control():
    """rw differs from KROA only in which keys a query reads: the same parameters (names and
    shapes), and with one window over the whole map it equals KROA at topn = m^2."""
    from sfer.models.kroa import KROAFE
    from sfer.models.window import WindowAttentionFE

    kroa = KROAFE(32, num_heads=4, regions=7, topn=49).eval()
    window = WindowAttentionFE(32, num_heads=4, window_size=7).eval()
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(kroa) == shapes(window)
    window.load_state_dict(kroa.state_dict())
    l4 = torch.randn(2, 32, 7, 7)
    torch.testing.assert_close(window(l4), kroa(l4))
    torch.testing.assert_close(window(l4, frozen=l4), kroa(l4), rtol=1e-5, atol=1e-5)
    full, rw = build_model("tiny", "full", num_classes=6), build_model("tiny", "rw", num_classes=6)
    assert shapes(full.kroafe) == shapes(rw.window_fe)


def test_attention_probabilities_match_the_forward():
    """Each module's dense attention_probabilities (what plots draw) gives its forward output."""
    torch.manual_seed(0)
    for variant, block in (("full", "kroafe"), ("rw", "window_fe")):
        model = build_model("tiny", variant, num_classes=6).eval()
        fe = getattr(model, block)
        l4 = torch.randn(2, 128, 7, 7)
        x = fe.norm(l4.permute(0, 2, 3, 1))  # (B, H, W, C)
        probs = fe.attention_probabilities(l4)  # (B, heads, HW, HW)
        attn = fe.attention
        b, h, w, c = x.shape
        v = attn.qkv(x).reshape(b, h * w, 3, attn.num_heads, c // attn.num_heads)[:, :, 2].transpose(1, 2)
        lepe = attn.lepe(v.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        out = attn.proj((probs @ v).transpose(1, 2).reshape(b, h, w, c)) + lepe
        torch.testing.assert_close(out, attn(x), rtol=1e-5, atol=1e-5)
