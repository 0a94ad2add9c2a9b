"""The routing view draws what model.routing computes, on the regions KROA really uses."""

import numpy as np
import pytest
import torch

from sfer.explain import routing_view
from sfer.explain.routing import draw_routing, region_boxes
from sfer.models import build_model


@pytest.fixture(scope="module")
def full():
    torch.manual_seed(0)
    return build_model("tiny", "full", num_classes=6).eval()


@pytest.mark.parametrize(("regions", "topn", "query"), [(7, 15, 24), (7, 1, 0), (4, 5, 9), (5, 3, (1, 2)), (1, 1, 0)])
def test_indices_are_model_routing(full, regions, topn, query):
    image = torch.randn(3, 112, 112)
    full.set_routing(topn=topn, regions=regions)
    try:
        view = routing_view(full, image, query)
        q = query[0] * regions + query[1] if isinstance(query, tuple) else query
        assert view.query == q and view.regions == regions
        assert view.indices == full.routing(image[None])[0, q].tolist() and len(view.indices) == topn
        assert view.image.shape == (112, 112, 3) and view.image.dtype == np.uint8
        assert view.figure.axes and view._repr_png_()[:4] == b"\x89PNG"
    finally:
        full.set_routing(topn=15, regions=7)


def test_padding_and_missing_kroa_are_refused(full):
    full.set_routing(topn=3, regions=5)  # 7 = 2 + 2 + 2 + 1: the fifth row and column are padding
    try:
        with pytest.raises(ValueError, match="query region 4 is not a region of the image"):
            routing_view(full, torch.randn(3, 112, 112), 4)
    finally:
        full.set_routing(topn=15, regions=7)
    with pytest.raises(ValueError, match="'na' variant has no KROA"):
        routing_view(build_model("tiny", "na", num_classes=6), torch.randn(3, 112, 112), 0)


@pytest.mark.parametrize("regions", range(1, 8))
def test_region_boxes_tile_the_image(regions):
    boxes = region_boxes(regions, 7, (112, 112))
    cover = np.zeros((112, 112), int)
    for box in boxes:
        if box is not None:
            t, b, l, r = box
            cover[t:b, l:r] += 1
    assert (cover == 1).all()
    real_side = -(-7 // -(-7 // regions))  # ceil(7 / ceil(7 / m)) regions hold real patches per side
    assert sum(b is not None for b in boxes) == real_side ** 2


def test_drawing_lights_the_attended_regions():
    rgb = np.full((112, 112, 3), 200, np.uint8)
    out = draw_routing(rgb, 7, query=0, indices=[0, 48])
    assert out[8, 8].tolist() == [200, 200, 200]  # attended: as it was (inside the query outline)
    assert out[104, 104].tolist() == [200, 200, 200]
    assert out[56, 56].tolist() == [60, 60, 60]  # not attended: dimmed
    assert out[0, 60].tolist() == [230, 40, 40]  # region border
