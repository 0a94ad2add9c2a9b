"""The training loop on the real tiny model and synthetic faces: outputs, exact resume,
faults, mismatch errors, evaluation and the command line."""

import csv
import json

import pytest
import torch
from torch.utils.data import Dataset

from sfer.cli import main
from sfer.engine import NonFiniteLossError, evaluate_checkpoint, fit, load_checkpoint, load_model
from sfer.engine.evaluate import build_splits
from sfer.engine.train import resolve_config
from sfer.models import CheckpointError

# Small enough for seconds per run on two CPU cores; CPU + num_workers=0 is bit-reproducible.
SMALL = dict(num_train=48, num_val=24, num_test=24, batch_size=16, epochs=2, device="cpu", num_workers=0)


@pytest.fixture(scope="module")
def run2(tmp_path_factory):
    """An uninterrupted two-epoch run: its folder and metrics."""
    out = tmp_path_factory.mktemp("run2")
    return out, fit(out=str(out), progress=False, **SMALL)


class Faulty(Dataset):
    """Wraps a data set; after ``after`` items, returns NaN images or raises ``error``."""

    def __init__(self, dataset, after, error=None):
        self.dataset, self.after, self.error, self.served = dataset, after, error, 0
        self.classes = dataset.classes

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        self.served += 1
        image, label = self.dataset[i]
        if self.served > self.after:
            if self.error is not None:
                raise self.error
            image = torch.full_like(image, float("nan"))
        return image, label


def splits(**overrides):
    cfg, _ = resolve_config(**SMALL, **overrides)
    return build_splits(cfg, {"image_size": 112, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})


def test_a_run_writes_checkpoints_log_metrics_and_curves(run2):
    out, metrics = run2
    assert {p.name for p in out.iterdir()} >= {"last.pt", "best.pt", "metrics.json", "log.csv", "curves.png"}
    assert json.loads((out / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert set(metrics["per_class_accuracy"]) == set(metrics["classes"])
    assert sum(map(sum, metrics["confusion_matrix"])) == SMALL["num_test"]
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]

    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2 and {"optimizer", "rng", "progress"} <= set(last)
    assert last["preprocessing"]["image_size"] == 112 and last["classes"] == metrics["classes"]
    best = load_checkpoint(out / "best.pt")
    assert "optimizer" not in best and best["epoch"] == metrics["best_epoch"]
    model, _ = load_model(out / "best.pt")
    assert not model.training and model.config["variant"] == "full"


def test_resume_after_an_interruption_is_bit_identical(run2, tmp_path):
    """Killed during epoch 2, resumed from last.pt: the same weights as never stopping."""
    data = splits()
    data["train"] = Faulty(data["train"], after=SMALL["num_train"], error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        fit(out=str(tmp_path), datasets=data, progress=False, **SMALL)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1

    metrics = fit(resume=str(tmp_path / "last.pt"), progress=False)
    expected, got = load_checkpoint(run2[0] / "last.pt"), load_checkpoint(tmp_path / "last.pt")
    assert got["epoch"] == 2
    for name, tensor in expected["model"].items():
        assert torch.equal(tensor, got["model"][name]), name
    for a, b in zip(expected["optimizer"]["state"].values(), got["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics["test_accuracy"] == run2[1]["test_accuracy"]
    assert [r["val_loss"] for r in got["progress"]["history"]] == \
        [r["val_loss"] for r in expected["progress"]["history"]]


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    data = splits()
    data["train"] = Faulty(data["train"], after=SMALL["num_train"] + 5)  # NaN images in epoch 2
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at epoch 2.*last good checkpoint"):
        fit(out=str(tmp_path), datasets=data, progress=False, **SMALL)
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    assert not (tmp_path / "metrics.json").exists()


def test_mismatches_are_clear_errors(run2, tmp_path):
    out, _ = run2
    with pytest.raises(CheckpointError, match="variant='full' model; it cannot be resumed as variant='rw'"):
        fit(resume=str(out / "last.pt"), variant="rw", progress=False)
    with pytest.raises(CheckpointError, match="inference checkpoint"):
        fit(resume=str(out / "best.pt"), out=str(tmp_path), progress=False)
    with pytest.raises(CheckpointError, match="holds a variant 'full' model, not 'na'"):
        evaluate_checkpoint(out / "best.pt", variant="na", progress=False)

    renamed = splits()
    for ds in renamed.values():
        ds.classes = [f"other_{c}" for c in ds.classes]
    with pytest.raises(CheckpointError, match="trained on classes"):
        fit(resume=str(out / "last.pt"), out=str(tmp_path), datasets=renamed, progress=False)

    with pytest.raises(FileNotFoundError, match="data path does not exist"):
        fit(data=str(tmp_path / "nowhere"), dataset="rafdb", out=str(tmp_path), progress=False)


def test_evaluate_writes_the_report_and_figure_5(run2, tmp_path):
    out, metrics = run2
    result = evaluate_checkpoint(out / "best.pt", out=tmp_path, progress=False)
    assert result["accuracy"] == metrics["test_accuracy"]  # the same regenerated test split
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["confusion_matrix"] == metrics["confusion_matrix"]
    assert set(saved["report"]) >= set(metrics["classes"]) | {"accuracy", "macro avg"}
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 10_000


def test_the_command_line_trains_and_evaluates(tmp_path, capsys):
    args = ["--data", "synthetic", "--num-train", "32", "--num-val", "16", "--num-test", "16", "--epochs", "1",
            "--batch-size", "16", "--lr", "3e-4", "--device", "cpu", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(["train", *args]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["lr"] == 3e-4 and metrics["config"]["num_train"] == 32

    assert main(["evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--out", str(tmp_path / "ev"),
                 "--no-progress"]) == 0
    assert "precision" in capsys.readouterr().out
    assert (tmp_path / "ev" / "confusion_matrix.png").is_file()

    assert main(["train", "--data", str(tmp_path / "nowhere"), "--dataset", "imagefolder",
                 "--out", str(tmp_path / "x")]) == 1
    assert "data path does not exist" in capsys.readouterr().err
