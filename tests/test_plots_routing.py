"""Notebook 09: the accuracy grid, energy against topn (sfer.plots) and the (m, topn) control (sfer.widgets)."""

import base64

import numpy as np
import pytest

from sfer.plots import to_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_measures(m, topn):
    """What notebook 09's ``measure`` returns, made up from the setting (so each setting differs)."""
    acc = 0.5 + topn / (2 * m * m)
    return {"accuracy": (acc, acc - 0.05, min(1.0, acc + 0.05)), "same": topn / (m * m),
            "energy": {"Grad-CAM": (0.03, 0.02, 0.04), "sources": (0.1 + 0.01 * m, 0.09, 0.2)},
            "uniform": (0.035, 0.03, 0.04)}


def test_accuracy_grid_labels_every_valid_setting():
    from sfer.plots import accuracy_grid

    grid = np.full((3, 3), np.nan)
    grid[0, 0], grid[1, :2], grid[2, :] = 90.0, (91.0, 92.5), (93.0, 94.0, 95.0)
    fig = accuracy_grid(grid, (1, 4, 9), title="grid")
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["90.0", "91.0", "92.5", "93.0", "94.0", "95.0"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "4", "9"]
    assert to_png(fig).startswith(PNG_MAGIC)


def test_energy_against_topn_draws_one_curve_per_view():
    from sfer.plots import energy_against_topn

    sweep = {view: {t: fake_measures(7, t)["energy"][view] for t in (1, 15, 49)} for view in ("Grad-CAM", "sources")}
    fig = energy_against_topn(sweep, (0.035, 0.03, 0.04), trained_topn=15, title="energy")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert set(labels) == {"Grad-CAM", "sources", "uniform map (mask area)", "trained at topn = 15"}
    curves = fig.axes[0].containers  # one errorbar per view, in order
    np.testing.assert_allclose(curves[0].lines[0].get_ydata(), [0.03] * 3)
    np.testing.assert_allclose(curves[1].lines[0].get_ydata(), [0.17] * 3)


def test_routing_measures_widget_caches_and_clamps(tmp_path):
    from sfer.widgets import RoutingMeasuresWidget

    calls = []
    view = RoutingMeasuresWidget(lambda m, topn: calls.append((m, topn)) or fake_measures(m, topn), title="tiny, ")
    assert calls == [(7, 15)] and view.drawn["accuracy"][0] == pytest.approx(0.5 + 15 / 98)
    drawn = view.update(regions=4, topn=5)
    assert calls[-1] == (4, 5) and view.topn.max == 16 and drawn["same"] == pytest.approx(5 / 16)
    view.update(regions=7, topn=15)  # seen before: drawn from the cache
    assert calls == [(7, 15), (4, 5)] and repr(view) == "RoutingMeasuresWidget(regions=7, topn=15)"
    view.regions.value = 2  # a slider move clamps topn to m^2
    assert view.topn.value == 4 and calls[-1] == (2, 4)
    with pytest.raises(ValueError, match="topn must be"):
        view.update(regions=3, topn=10)
    view.save(tmp_path / "control.png")
    assert (tmp_path / "control.png").read_bytes().startswith(PNG_MAGIC)
    assert base64.b64decode(view._repr_mimebundle_()["image/png"]).startswith(PNG_MAGIC)
