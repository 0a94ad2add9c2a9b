"""Loading ir50.pth: every accepted layout, and every way a checkpoint can be wrong."""

import pytest
import torch

from sfer.models import CheckpointError, build_model, load_ir50


def canonical_ir50(model):
    """A state dict in the public ir50.pth layout, with its embedding head."""
    state = {k: v + 0.5 if v.is_floating_point() else v + 1 for k, v in model.backbone.state_dict().items()}
    state["output_layer.3.weight"] = torch.randn(512, 8)
    return state


def test_paper_backbone_has_the_canonical_ir50_keys():
    keys = set(build_model("paper", "full").backbone.state_dict())
    units = {int(k.split(".")[1]) for k in keys if k.startswith("body.")}
    assert units == set(range(24))
    assert {k for k in keys if "shortcut_layer.0.weight" in k} == {
        "body.3.shortcut_layer.0.weight", "body.7.shortcut_layer.0.weight", "body.21.shortcut_layer.0.weight"}
    shapes = build_model("paper", "full").backbone.state_dict()
    assert shapes["input_layer.0.weight"].shape == (64, 3, 3, 3)
    assert shapes["body.23.res_layer.3.weight"].shape == (512, 512, 3, 3)


def split_layout(state, stage_ends):
    starts = (0,) + tuple(e + 1 for e in stage_ends[:-1])
    out = {}
    for key, value in state.items():
        if key.startswith("body."):
            unit = int(key.split(".")[1])
            stage = max(i for i, s in enumerate(starts) if unit >= s)
            rest = key.split(".", 2)[2]
            key = f"body{stage + 1}.{unit - starts[stage]}.{rest}"
        out[key] = value
    return out


@pytest.mark.parametrize("layout", ["canonical", "module", "wrapped", "split"])
def test_ir50_round_trips_in_each_layout(tmp_path, layout):
    model = build_model("tiny", "full", num_classes=6)
    state = canonical_ir50(model)
    saved = {
        "canonical": state,
        "module": {f"module.{k}": v for k, v in state.items()},
        "wrapped": {"state_dict": state, "epoch": torch.tensor(3)},
        "split": split_layout(state, model.backbone.stage_ends),
    }[layout]
    path = tmp_path / "ir50.pth"
    torch.save(saved, path)
    report = load_ir50(model, path)
    own = model.backbone.state_dict()
    assert sorted(report.matched) == sorted(own)
    assert report.missing == []
    assert "output_layer.3.weight" in report.ignored
    for key, value in own.items():
        torch.testing.assert_close(value, state[key])
    assert str(len(own)) in str(report)


def test_missing_backbone_key_names_it_and_changes_nothing(tmp_path):
    model = build_model("tiny", "full", num_classes=6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = canonical_ir50(model)
    del state["body.2.res_layer.1.weight"]
    torch.save(state, tmp_path / "ir50.pth")
    with pytest.raises(CheckpointError, match=r"body\.2\.res_layer\.1\.weight"):
        load_ir50(model, tmp_path / "ir50.pth")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    report = load_ir50(model, tmp_path / "ir50.pth", strict=False)
    assert report.missing == ["body.2.res_layer.1.weight"]


def test_wrong_shape_names_the_key(tmp_path):
    model = build_model("tiny", "full", num_classes=6)
    state = canonical_ir50(model)
    state["input_layer.0.weight"] = torch.randn(64, 3, 3, 3)
    torch.save(state, tmp_path / "ir50.pth")
    with pytest.raises(CheckpointError, match=r"'input_layer\.0\.weight' has shape \(64, 3, 3, 3\)"):
        load_ir50(model, tmp_path / "ir50.pth")


class _Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("touch pwned-by-checkpoint",))


def test_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"input_layer.0.weight": torch.zeros(1), "payload": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="evil.pth: refused to load"):
        load_ir50(build_model("tiny", "full", num_classes=6), path)
    assert not (tmp_path / "pwned-by-checkpoint").exists()


def test_unreadable_and_missing_files(tmp_path):
    model = build_model("tiny", "full", num_classes=6)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_ir50(model, tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_ir50(model, tmp_path / "junk.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="list.pth: expected a dict of tensors"):
        load_ir50(model, tmp_path / "list.pth")
