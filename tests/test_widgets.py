"""The Explorer, driven headless: updates return what they draw, in one image that is redrawn in place."""

from pathlib import Path

import ipywidgets
import numpy as np
import pytest

from sfer.explain.loading import synthetic_faces
from sfer.widgets import Explorer

CHECKPOINTS = Path(__file__).resolve().parents[1] / "data_samples" / "checkpoints"


@pytest.fixture(scope="module")
def explorer():
    faces = synthetic_faces(3, seed=11)
    return Explorer(checkpoint=CHECKPOINTS / "tiny_full.pt", window_checkpoint=CHECKPOINTS / "tiny_rw.pt",
                    images=faces.images)


def test_update_returns_the_arrays_drawn(explorer):
    arrays = explorer.update(topn=15, regions=7, query=24)
    for name in ("l4", "window", "kroafe"):
        assert arrays[name].shape == (112, 112) and 0 <= arrays[name].min() and arrays[name].max() <= 1
    assert arrays["image"].shape == arrays["routing"].shape == (112, 112, 3)
    assert arrays["probabilities"].shape == (len(explorer.names),)
    assert np.isclose(arrays["probabilities"].sum(), 1, atol=1e-5)
    indices = explorer.model.routing(explorer.model.eval_transform(explorer.images[0][1])[None])[0, 24]
    assert arrays["routing_indices"].tolist() == indices.tolist()


def test_topn_changes_the_kroafe_heatmap_of_a_trained_checkpoint(explorer):
    before = explorer.update(topn=15, regions=7)
    png = explorer.view.value
    after = explorer.update(topn=1)
    assert not np.allclose(before["kroafe"], after["kroafe"], atol=1e-3)
    assert np.array_equal(before["window"], after["window"])  # rw has no routing
    assert explorer.view.value != png and explorer.view.value[:4] == b"\x89PNG"
    assert explorer.model.kroafe.attention.topn == 1


def test_sliders_redraw_and_follow_each_other(explorer):
    explorer.update(topn=15, regions=7)
    assert (explorer.topn.description, explorer.regions.description) == ("topn", "regions (m)")
    kroafe = explorer.arrays["kroafe"]
    explorer.regions.value = 3  # as a browser would: the observer redraws
    assert explorer.topn.max == 9 and explorer.topn.value == 9 and explorer.query.max == 8
    assert explorer.model.kroafe.attention.regions == 3
    assert explorer.query.value == 4  # the centre region stays the query
    assert not np.allclose(kroafe, explorer.arrays["kroafe"], atol=1e-3)
    explorer.regions.value = 7
    assert explorer.topn.max == 49 and explorer.topn.value == 9


def test_one_persistent_output(explorer):
    children = list(explorer.widget.children)
    view = explorer.view
    for change in (dict(image=1), dict(method="gradcam++"), dict(class_idx=0), dict(regions=5, topn=4),
                   dict(query=4)):  # region 4 is padding for m = 5: drawn as a note, not an error
        explorer.update(**change)
    assert list(explorer.widget.children) == children and explorer.view is view
    assert isinstance(view, ipywidgets.Image) and view.format == "png"
    assert explorer.arrays["routing_indices"].size == 0


def test_bad_settings_are_refused(explorer):
    with pytest.raises(ValueError, match="topn must be an integer in 1..4"):
        explorer.update(topn=5, regions=2)
    with pytest.raises(TypeError, match="unknown Explorer settings"):
        explorer.update(top_n=3)


def test_sources_view_switches_the_attention_panels(explorer, tmp_path):
    gradcam = explorer.update(view="gradcam", topn=15, regions=7, image=0)
    sources = explorer.update(view="sources")
    # L4 has no attention: always its CAM (recomputed, so equal up to the thread split's rounding)
    np.testing.assert_allclose(gradcam["l4"], sources["l4"], atol=1e-4)
    for t in ("window", "kroafe"):
        assert not np.allclose(gradcam[t], sources[t], atol=1e-3)
        assert 0 <= sources[t].min() and sources[t].max() <= 1
    assert explorer.heatmaps.value == "sources" and "sources" in explorer.caption.value
    moved = explorer.update(topn=3)  # the sliders drive the sources view too
    assert not np.allclose(moved["kroafe"], sources["kroafe"], atol=1e-3)
    png = explorer.save(tmp_path / "explorer.png")
    assert png.read_bytes() == explorer.view.value
    with pytest.raises(ValueError, match="view must be"):
        explorer.update(view="lrp")
    explorer.update(view="gradcam", topn=15)
