"""sfer.plots and its two views in sfer.widgets: the notebooks' figures, the attention and cost helpers."""

import base64
import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from sfer.data import eval_transform
from sfer.explain import synthetic_faces
from sfer.explain.routing import region_boxes
from sfer.models import KeyRegionAttention, build_model
from sfer.plots import (attention_cost, attention_macs, attention_macs_formula, channel_weights, class_grid,
                        class_probabilities, f_m_blocks, feature_scales, image_grid, padding_grids, patch_attention,
                        patch_attention_scaled, poolings_and_weights, region_grids, region_ids, relation_matrix,
                        routed_counts, routing_panels, to_png, channels_on_face, weights_across_faces_by_class)
from sfer.widgets import ChannelWeightsWidget, RoutingWidget

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(3, seed=0)


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return build_model("tiny", num_classes=6).eval()  # no eval_transform: the views use the preset's default


@pytest.mark.parametrize("m", range(1, 8))
def test_region_ids_agree_with_the_routing_view_boxes(m):
    ids = region_ids(7, 7, m)
    for r, box in enumerate(region_boxes(m, 7, (7, 7))):
        if box is None:
            assert not (ids == r).any()
        else:
            t, b, l, rt = box
            assert (ids[t:b, l:rt] == r).all() and (ids == r).sum() == (b - t) * (rt - l)


def plain_attention(kroa, x, patch):
    h, w, c = x.shape
    heads, d = kroa.num_heads, c // kroa.num_heads
    q, k, _ = kroa.qkv(x).reshape(h * w, 3, heads, d).permute(1, 2, 0, 3)  # (heads, HW, d)
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)[:, patch].mean(0).reshape(h, w)


@pytest.mark.parametrize("m", [1, 3, 4, 7])
def test_patch_attention_is_plain_attention_when_every_region_is_routed(m):
    torch.manual_seed(1)
    kroa = KeyRegionAttention(32, num_heads=4, regions=m, topn=m * m).eval()
    x = torch.randn(7, 7, 32)
    for patch in (0, 24, 48):
        torch.testing.assert_close(patch_attention(kroa, x, patch), plain_attention(kroa, x, patch))


def test_patch_attention_sees_only_its_routed_regions():
    torch.manual_seed(2)
    kroa = KeyRegionAttention(32, num_heads=4, regions=4, topn=3).eval()
    x = torch.randn(7, 7, 32)
    ids, routing = region_ids(7, 7, 4), kroa.routing(x[None])[0]
    for patch in (0, 10, 48):
        seen = patch_attention(kroa, x, patch)
        allowed = torch.isin(ids, routing[ids.flatten()[patch]])
        assert torch.isclose(seen.sum(), torch.tensor(1.0))
        assert (seen[~allowed] == 0).all() and (seen[allowed] > 0).all()


def test_routed_counts_count_every_query():
    D = torch.tensor([[0, 1], [1, 0], [1, 3], [1, 2]])
    assert routed_counts(D, 2).tolist() == [2, 4, 1, 1]


@pytest.mark.parametrize("n_side, m, topn", [(7, 7, 1), (7, 7, 15), (7, 4, 5), (9, 3, 9)])
def test_counted_attention_macs_match_the_formula(n_side, m, topn):
    module = KeyRegionAttention(16, num_heads=2, regions=m, topn=topn, max_regions=n_side).eval()
    assert attention_macs(module, torch.randn(1, n_side, n_side, 16)) == attention_macs_formula(n_side, m, topn, 16)


def test_attention_cost_draws_both_maps():
    fig = attention_cost(n_sides=(7,), c=16)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert to_png(fig).startswith(PNG_MAGIC)


def test_figures_have_one_panel_per_item(faces, model):
    picture = faces.images[0]
    feats = model.features(eval_transform(112)(picture)[None])
    maps = [feats[f"L{i}"] for i in range(1, 5)]
    weights = [att.weights(l_i)[0] for l_i, att in zip(maps, model.mdpfa.attentions)]
    M, D = torch.randn(49, 49), torch.randint(0, 49, (49, 15))
    drawn = {
        feature_scales(maps, picture, channels=2): 16,
        poolings_and_weights(torch.rand(8), torch.rand(8), torch.rand(8)): 2,
        channels_on_face(picture, torch.rand(8, 7, 7), torch.rand(8), count=2): 6,  # maps and a colour bar
        f_m_blocks(feats["F_m"][0], (16, 32, 64, 128)): 1,
        channel_weights(weights): 4,
        channel_weights(weights, picture=picture): 5,
        weights_across_faces_by_class(torch.rand(3, 8), [0, 1, 0], ["a", "b"]): 1,
        region_grids((7, 3, 2)): 3,
        relation_matrix(M, D): 2,  # the matrix and its colour bar
        routing_panels(picture, faces.masks[0], D, [24, 10], 7): 3,
        routing_panels(picture, None, D, [24], 7, attention=(torch.rand(7, 7), 24)): 2,
        patch_attention_scaled(picture, {"a": torch.rand(7, 7), "b": torch.rand(7, 7)}, 3): 3,  # and a colour bar
        padding_grids((4, 5, 6)): 3,
        class_probabilities(faces.images, torch.rand(3, 6).softmax(1), faces.classes, faces.labels): 3,  # insets are children
    }
    for fig, panels in drawn.items():
        assert isinstance(fig, Figure) and len(fig.axes) == panels
    assert to_png(channel_weights(weights)).startswith(PNG_MAGIC)


def test_channel_weights_widget_follows_the_face(faces, model):
    view = ChannelWeightsWidget(model, faces)
    first = [w.clone() for w in view.drawn]
    assert [len(w) for w in first] == [16, 32, 64, 128]
    second = view.update(face=2)
    assert view.picker.value == 2 and not torch.equal(first[3], second[3])
    feats = model.features(eval_transform(112)(faces.images[2])[None])
    torch.testing.assert_close(second[3], model.mdpfa.attentions[3].weights(feats["L4"])[0])
    bundle = view._repr_mimebundle_()
    assert base64.b64decode(bundle["image/png"]).startswith(PNG_MAGIC)
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == "ChannelWeightsWidget(face=2, faces=3)"


def test_routing_widget_reroutes_the_model(faces, model):
    view = RoutingWidget(model, faces)
    assert view.drawn["query"] == 24 and len(view.drawn["routed"]) == 15
    drawn = view.update(regions=4, topn=5, query=5)
    attention = model.kroafe.attention
    assert (attention.regions, attention.topn) == (4, 5)
    assert view.topn.max == 16 and view.query.max == 15
    assert len(drawn["routed"]) == 5 and int(drawn["counts"].sum()) == 16 * 5
    assert torch.isclose(drawn["attention"].sum(), torch.tensor(1.0))
    assert region_ids(7, 7, 4).flatten()[drawn["patch"]] == 5
    view.regions.value = 2  # a slider move clamps topn and the query to the smaller grid
    assert view.topn.value <= 4 and view.query.value <= 3 and attention.regions == 2
    with pytest.raises(TypeError, match="unknown RoutingWidget settings"):
        view.update(heads=2)
    with pytest.raises(ValueError, match="topn must be"):
        view.update(regions=3, topn=10)
    assert view._repr_mimebundle_()["text/plain"].startswith("RoutingWidget(face=0, regions=")


def test_image_grid_takes_ragged_rows_titles_and_masks(faces):
    mask = faces.masks[0]
    fig = image_grid([[faces.images[0], np.zeros((8, 8))], [torch.rand(8, 8, 3)]], titles=[["a", "b"], ["c"]],
                     row_labels=["one", "two"], masks=[[mask, None], [None]], suptitle="grid")
    assert len(fig.axes) == 4 and not fig.axes[3].axison  # the missing cell is blank
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"]
    assert len(fig.axes[0].collections) == 1 and not fig.axes[1].collections  # the outline is on the first only
    assert to_png(fig).startswith(PNG_MAGIC)


def test_class_grid_has_one_row_per_class():
    from sfer.data import SyntheticClassroomFaces

    faces = SyntheticClassroomFaces(12, seed=0)
    fig = class_grid(faces, per_class=2, title="grid")
    assert len(fig.axes) == 6 * 2
    assert [ax.get_ylabel() for ax in fig.axes[::2]] == list(faces.classes)
