"""Checkpoint I/O: atomic writes, weights_only reads, RNG round trips, clear refusals."""

import pickle
import random

import numpy as np
import pytest
import torch

from sfer.engine import load_checkpoint
from sfer.engine.checkpoint import atomic_save
from sfer.engine.checkpoint import capture_rng, restore_rng
from sfer.models import CheckpointError


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"epoch": torch.tensor(1)}, path)

    def dies_mid_write(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # as if the run were killed while writing

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"epoch": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_unsafe_and_foreign_files_are_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this would run",))

    unsafe = tmp_path / "unsafe.pt"
    unsafe.write_bytes(pickle.dumps({"format": "sfer-checkpoint", "x": Payload()}, protocol=2))
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(unsafe)

    bare = tmp_path / "bare.pt"
    torch.save({"body.0.weight": torch.zeros(1)}, bare)
    with pytest.raises(CheckpointError, match="bare state dict.*load_ir50"):
        load_checkpoint(bare)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(garbage)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    generator = torch.Generator().manual_seed(5)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.randn(3), np.random.randn(3), random.random(), torch.rand(2, generator=generator)
    atomic_save({"rng": capture_rng(generator)}, tmp_path / "rng.pt")
    expected = (torch.randn(4), np.random.randn(4), np.random.normal(), random.random(),
                torch.rand(4, generator=generator))

    torch.manual_seed(99), np.random.seed(99), random.seed(99), generator.manual_seed(99)
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"], generator)
    got = (torch.randn(4), np.random.randn(4), np.random.normal(), random.random(),
           torch.rand(4, generator=generator))
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2:4] == expected[2:4]
    torch.testing.assert_close(got[4], expected[4], rtol=0, atol=0)
