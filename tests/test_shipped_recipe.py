"""The shipped checkpoints come from the code as it is: the first epoch of the shipped
recipe reproduces the first row of ``tiny_full.log.csv`` exactly (losses, accuracies, lr)."""

import csv
import json
from pathlib import Path

import pytest
import torch

from sfer.engine import fit
from sfer.engine.distributed import native_bf16

CHECKPOINTS = Path(__file__).resolve().parents[1] / "data_samples" / "checkpoints"
EXACT = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")  # the rest are timings


@pytest.mark.slow
def test_first_epoch_reproduces_the_shipped_log(tmp_path):
    shipped = json.loads((CHECKPOINTS / "tiny_full.metrics.json").read_text())
    if shipped["bf16"] != native_bf16(torch.device("cpu")):
        pytest.skip("the shipped run used bf16 (a CPU with AVX512-BF16 or AMX); this CPU trains another recipe")
    # one epoch of the same recipe: the cosine schedule starts at the same lr whatever the epoch count
    fit(shipped["config"], epochs=1, out=str(tmp_path), progress=False)
    with open(tmp_path / "log.csv") as f:
        ours = next(csv.DictReader(f))
    with open(CHECKPOINTS / "tiny_full.log.csv") as f:
        theirs = next(csv.DictReader(f))
    assert {k: ours[k] for k in EXACT} == {k: theirs[k] for k in EXACT}
