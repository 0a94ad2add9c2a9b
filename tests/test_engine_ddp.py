"""DistributedDataParallel on the CPU: gloo processes against one process, torchrun end to end.

Every multi-process test is bounded in time: a hang (a collective one process never
joins) fails the test instead of stalling the suite.
"""

import dataclasses
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from sfer.engine import distributed, fit
from sfer.engine.evaluate import build_splits
from sfer.engine.train import compile_model, resolve_config
from sfer.models import sfer_mdfae

SETTINGS = dict(num_train=64, num_val=32, num_test=32, batch_size=16, epochs=2, device="cpu", num_workers=0,
                compile=False)
PREPROCESSING = {"image_size": 112, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two(worker, *args, timeout: float = 300):
    """Run ``worker(rank, *args)`` in two spawned processes; fail if they outlive ``timeout``."""
    context = mp.start_processes(worker, args=args, nprocs=2, start_method="spawn", join=False)
    deadline = time.monotonic() + timeout
    try:
        while not context.join(max(0.0, deadline - time.monotonic())):  # False until both have ended
            if time.monotonic() >= deadline:
                pytest.fail(f"two gloo processes still running after {timeout} s: a collective hangs")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()


def join_group(rank: int, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two processes on a 2-core machine


# ------------------------------------------------------------ synchronised batch norm

class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose backward sums the gradients over processes too."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, on the CPU.

    PyTorch's ``SyncBatchNorm`` has CUDA kernels only, and sfer refuses it elsewhere;
    these tests stand it in under gloo, so that the engine's synchronised path (the
    conversion, DDP without buffer broadcasts) runs without a GPU. Every process sums
    its per-channel sum, sum of squares and count, one differentiable ``all_reduce``
    adds them up, and the batch is normalised by the global mean and biased variance;
    the running statistics take the unbiased variance, as ``BatchNorm2d`` does. Same
    parameters and buffers, so checkpoints do not change.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        x32 = x.float()
        local = torch.cat([x32.sum((0, 2, 3)), (x32 * x32).sum((0, 2, 3)),
                           x32.new_full((1,), x.numel() // c)])  # (2C + 1,)
        total = _AllReduceSum.apply(local)  # (2C + 1,) summed over processes
        n = total[-1]
        mean = total[:c] / n  # (C,)
        var = (total[c:2 * c] / n - mean * mean).clamp(min=0)  # biased variance (C,)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), momentum)
        scale = torch.rsqrt(var + self.eps) * (self.weight if self.affine else 1.0)  # (C,)
        shift = (self.bias if self.affine else 0.0) - mean * scale  # (C,)
        return (x32 * scale[:, None, None] + shift[:, None, None]).to(x.dtype)


def gloo_sync_batchnorm(module: nn.Module, device: torch.device = None) -> nn.Module:
    """Every BatchNorm2d of ``module`` replaced by a :class:`GlooSyncBatchNorm` holding the
    same parameters and buffers (moved, not copied); stands in for the engine's
    ``distributed.sync_batchnorm`` on the CPU."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = GlooSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats)
            synced.load_state_dict(child.state_dict())
            if child.affine:
                synced.weight, synced.bias = child.weight, child.bias
            synced.train(child.training)
            setattr(module, name, synced)
        else:
            gloo_sync_batchnorm(child)
    return module


def _sync_bn_worker(rank: int, port: int, out: str) -> None:
    join_group(rank, port)
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    x = torch.randn(6, 4, 5, 5) * 3 + 1  # the global batch; this process holds 3 of its images
    grad = torch.randn(6, 4, 5, 5)
    bn = GlooSyncBatchNorm(4)
    nn.init.uniform_(bn.weight), nn.init.uniform_(bn.bias)
    mine = x[3 * rank:3 * rank + 3].clone().requires_grad_()
    y = bn(mine)
    (y * grad[3 * rank:3 * rank + 3]).sum().backward()
    for p in bn.parameters():  # DDP would average: sum here to compare with one process
        dist.all_reduce(p.grad)
    torch.save({"y": y.detach(), "x_grad": mine.grad,
                "weight_grad": bn.weight.grad, "bias_grad": bn.bias.grad, "running_mean": bn.running_mean,
                "running_var": bn.running_var}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_gloo_sync_batchnorm_is_batchnorm_over_the_global_batch(tmp_path):
    run_two(_sync_bn_worker, free_port(), str(tmp_path), timeout=120)
    torch.manual_seed(0)
    x = (torch.randn(6, 4, 5, 5) * 3 + 1).requires_grad_()
    grad = torch.randn(6, 4, 5, 5)
    bn = nn.BatchNorm2d(4)
    nn.init.uniform_(bn.weight), nn.init.uniform_(bn.bias)
    y = bn(x)
    (y * grad).sum().backward()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in ranks]), x.grad, rtol=1e-4, atol=1e-5)
    for r in ranks:
        torch.testing.assert_close(r["weight_grad"], bn.weight.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(r["bias_grad"], bn.bias.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(r["running_mean"], bn.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r["running_var"], bn.running_var, rtol=1e-5, atol=1e-6)


def test_sync_batchnorm_is_off_by_default_and_refused_off_cuda():
    assert not resolve_config()[0].sync_batchnorm
    with pytest.raises(ValueError, match="--sync-batchnorm needs CUDA"):
        distributed.sync_batchnorm(sfer_mdfae.build_model("tiny", "full", num_classes=6), torch.device("cpu"))


def test_compiling_a_synchronised_model_warns():
    net = nn.Linear(2, 2)
    with pytest.warns(UserWarning, match="Dynamo breaks the graph at every SyncBatchNorm layer"):
        compile_model(net, synced=True, ctx=distributed.Context(torch.device("cpu")))


def test_the_gloo_stand_in_keeps_the_state_dict():
    model = sfer_mdfae.build_model("tiny", "full", num_classes=6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    synced = gloo_sync_batchnorm(model)
    assert not any(type(m) is nn.BatchNorm2d for m in synced.modules())
    assert sum(isinstance(m, GlooSyncBatchNorm) for m in synced.modules()) == \
        sum(isinstance(m, nn.BatchNorm2d) for m in sfer_mdfae.build_model("tiny", "full", 6).modules())
    after = synced.state_dict()
    assert list(after) == list(before) and all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------ two processes vs one

def _fit_worker(rank: int, ports: tuple[int, int], out: str, splits: str, settings: dict) -> None:
    sfer_mdfae.PRESETS["tiny"] = dataclasses.replace(sfer_mdfae.PRESETS["tiny"], dropout=0.0)
    with open(splits, "rb") as f:
        data = pickle.load(f)
    distributed.sync_batchnorm = gloo_sync_batchnorm  # PyTorch's SyncBatchNorm has no CPU kernels
    for sync, port in zip((True, False), ports):  # each fit sets up its own process group: a fresh port each
        join_group(rank, port)
        fit(out=f"{out}/sync-{sync}", datasets=data, progress=False, sync_batchnorm=sync, **settings)


@pytest.mark.slow
def test_two_gloo_processes_with_sync_batchnorm_match_one_process(tmp_path, monkeypatch):
    """Both see the same global batches (the sampler shuffles by seed + epoch) and the
    gradients are averaged. With the random draws taken out (no flip, no dropout: rank 1
    would draw them from its own RNG), what is left is batch norm: synchronised, it
    normalises over the global batch as one process does, and the two runs agree to
    float rounding (losses to 1e-3, measured 4e-5 at the test); per-process batch
    norm normalises over 8 images instead of 16 and the runs part (losses 4e-3 to 3e-2)."""
    settings = dict(SETTINGS, flip=False, amp=False)  # fp32: bf16 autocast would round the two runs apart
    monkeypatch.setitem(sfer_mdfae.PRESETS, "tiny", dataclasses.replace(sfer_mdfae.PRESETS["tiny"], dropout=0.0))
    cfg, _ = resolve_config(**settings)
    data = build_splits(cfg, PREPROCESSING)
    with open(tmp_path / "splits.pkl", "wb") as f:
        pickle.dump(data, f)
    one = fit(out=str(tmp_path / "one"), datasets=data, progress=False, **settings)
    run_two(_fit_worker, (free_port(), free_port()), str(tmp_path), str(tmp_path / "splits.pkl"), settings,
            timeout=400)

    def val_losses(run):
        return torch.tensor([r["val_loss"] for r in torch.load(tmp_path / run / "last.pt", weights_only=True)["progress"]["history"]])

    synced = json.loads((tmp_path / "sync-True" / "metrics.json").read_text())
    unsynced = json.loads((tmp_path / "sync-False" / "metrics.json").read_text())
    assert synced["world_size"] == 2 and synced["config"]["sync_batchnorm"]
    assert abs(synced["test_loss"] - one["test_loss"]) <= 1e-3
    assert abs(synced["test_accuracy"] - one["test_accuracy"]) <= 1 / SETTINGS["num_test"]  # one image at most
    gap_synced = (val_losses("sync-True") - val_losses("one")).abs().max()
    gap_unsynced = (val_losses("sync-False") - val_losses("one")).abs().max()
    assert gap_synced <= 1e-3 and gap_unsynced > 5 * gap_synced, (gap_synced, gap_unsynced)
    assert sum(map(sum, unsynced["confusion_matrix"])) == SETTINGS["num_test"]


# ------------------------------------------------------------ torchrun, the command line

def run_bounded(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run`` that, on a timeout, kills torchrun's workers too (its process group)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            pytest.fail(f"{' '.join(cmd[-12:])} still running after {timeout} s:\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(cmd, process.returncode, out, err)


@pytest.mark.slow
def test_torchrun_finishes_with_a_validation_split_smaller_than_the_process_count(tmp_path):
    """The issue's reproduction: one validation image for two processes. Rank 1's shard
    is empty; validation runs the plain model, so rank 1 has no DDP forward to join."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sfer.cli", "train", "--preset", "tiny", "--data", "synthetic", "--num-train", "64", "--num-val", "1",
           "--num-test", "8", "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--out", str(tmp_path),
           "--no-progress"]
    done = run_bounded(cmd, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("test accuracy") == 1  # rank 0 alone reports
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and not metrics["config"]["sync_batchnorm"]  # off by default
    assert sum(map(sum, metrics["confusion_matrix"])) == 8  # every test image, once
    history = torch.load(tmp_path / "last.pt", weights_only=True)["progress"]["history"]
    assert len(history) == 1 and history[0]["val_accuracy"] in (0.0, 1.0)  # one image, counted once
