"""`sfer demo`: the report from given checkpoints, from a tiny training run, and its user errors."""

import json

import pytest
import torch

from sfer import demo
from sfer.cli import main
from sfer.data import IMAGENET_MEAN, IMAGENET_STD
from sfer.data.synthetic.expressions import SCFED_CLASSES
from sfer.engine import TrainConfig
from sfer.engine.checkpoint import atomic_save
from sfer.engine.checkpoint import FORMAT, VERSION
from sfer.models import PRESETS, build_model

FIGURES = ("accuracy.png", "figure8.png", "energy.png", "evaluation/full/confusion_matrix.png")
FEW_FACES = ["--num-faces", "2", "--num-energy-faces", "4", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """tiny_full.pt and tiny_rw.pt in the engine's inference format, untrained (the demo
    reads them the same way), with a 12-face test split so that evaluation takes a second."""
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    for variant in ("full", "rw"):
        model = build_model("tiny", variant, num_classes=len(SCFED_CLASSES))
        atomic_save({"format": FORMAT, "version": VERSION, "model": model.state_dict(),
                     "model_config": model.config, "classes": list(SCFED_CLASSES),
                     "preprocessing": {"image_size": PRESETS["tiny"].image_size, "mean": list(IMAGENET_MEAN),
                                       "std": list(IMAGENET_STD)},
                     "config": TrainConfig(variant=variant, num_test=12).to_dict(), "epoch": 0},
                    folder / f"tiny_{variant}.pt")
    return folder


def test_checkpoints_give_a_report_with_its_numbers(checkpoints, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--use-shipped", "--checkpoints", str(checkpoints), *FEW_FACES]) == 0
    report = tmp_path / "report"
    for name in ("index.md", "summary.json", *FIGURES):
        assert (report / name).is_file(), name
    summary = json.loads((report / "summary.json").read_text())
    evaluation = json.loads((report / "evaluation" / "full" / "evaluation.json").read_text())
    assert summary["source"] == "checkpoints" and summary["classes"] == list(SCFED_CLASSES)
    assert summary["models"]["full"]["accuracy"] == evaluation["accuracy"]
    assert summary["models"]["rw"]["num_samples"] == 12
    assert set(summary["energy"]["targets"]) == {"l4", "window", "kroafe", "window sources", "kroafe sources",
                                                 "uniform"}
    assert summary["energy"]["num_faces"] == 4 and summary["figure8"]["num_faces"] == 2

    index = (report / "index.md").read_text()
    for variant in ("full", "rw"):
        assert f"{summary['models'][variant]['accuracy']:.2%}" in index
    uniform = summary["energy"]["targets"]["uniform"]["energy"]
    assert f"| uniform | {uniform['mean']:.3f} [{uniform['low']:.3f}, {uniform['high']:.3f}]" in index
    for name in FIGURES:
        assert f"({name})" in index

    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("[1/4] using the checkpoints")
    assert printed[-2:] == ["report: report/index.md", "open the workbook: jupyter lab notebooks/"]


def test_without_checkpoints_it_trains_both_models(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["demo", "--out", "tiny-report", "--epochs", "1", "--num-train", "24", "--num-val", "12",
               "--num-test", "12", "--device", "cpu", *FEW_FACES])
    assert rc == 0
    report = tmp_path / "tiny-report"
    for variant in ("full", "rw"):
        assert (report / "runs" / variant / "best.pt").is_file()
    summary = json.loads((report / "summary.json").read_text())
    assert summary["source"] == "trained"
    assert summary["models"]["full"]["checkpoint"] == "tiny-report/runs/full/best.pt"
    assert summary["models"]["rw"]["training"]["epochs"] == 1 and summary["models"]["rw"]["num_samples"] == 12
    assert "runs/full/curves.png" in (report / "index.md").read_text()
    printed = capsys.readouterr().out
    assert "[1/5] training the full model" in printed and "[2/5] training the rw model" in printed
    assert printed.rstrip().endswith("open the workbook: jupyter lab notebooks/")


def test_user_errors_exit_1_with_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "CHECKPOINTS", tmp_path / "checkpoints")
    assert main(["demo", "--use-shipped", "--out", str(tmp_path / "report")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sfer demo: error: checkpoint not found:") and "tiny_full.pt" in err
    assert "Traceback" not in err and not (tmp_path / "report").exists()

    assert main(["demo", "--use-shipped", "--epochs", "2"]) == 1
    assert "--use-shipped trains nothing" in capsys.readouterr().err
