"""DistributedDataParallel through torchrun: two gloo processes on the CPU against one."""

import json
import os
import subprocess
import sys

import pytest

from sfer.engine import fit

SETTINGS = dict(num_train=64, num_val=32, num_test=32, batch_size=16, epochs=2, device="cpu", num_workers=0)


def flags(settings):
    return [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    """Both see the same global batches (the sampler shuffles by seed + epoch) and the
    gradients are averaged, so the runs differ only where the processes cannot agree:
    batch-norm statistics over half a batch, and the augmentation and dropout drawn by
    rank 1's RNG. Hence a tolerance, not equality."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sfer.cli", "train", "--data", "synthetic", *flags(SETTINGS), "--out", str(tmp_path / "ddp"),
           "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("test accuracy") == 1  # rank 0 alone reports
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    one = fit(out=str(tmp_path / "one"), progress=False, **SETTINGS)

    assert ddp["world_size"] == 2 and one["world_size"] == 1
    assert sum(map(sum, ddp["confusion_matrix"])) == SETTINGS["num_test"]  # every test image, once
    first_ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert first_ddp["epochs"] == one["epochs"] == 2
    assert abs(ddp["test_accuracy"] - one["test_accuracy"]) <= 0.15
    assert abs(ddp["best_val_accuracy"] - one["best_val_accuracy"]) <= 0.15
