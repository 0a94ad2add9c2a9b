"""Device choice without a GPU: CUDA's functions are replaced by mocks that record calls."""

import pytest
import torch

from sfer.engine import distributed


@pytest.fixture
def two_gpus(monkeypatch):
    """torch sees two GPUs; ``set_device`` and ``init_process_group`` only record their arguments."""
    calls = {"set_device": [], "init_process_group": []}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls["set_device"].append(torch.device(d)))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group",
                        lambda backend: calls["init_process_group"].append(backend))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return calls


def torchrun(monkeypatch, rank, world_size=2):
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))


def test_cuda_n_becomes_the_current_device(two_gpus):
    ctx = distributed.setup("cuda:1")
    assert ctx.device == torch.device("cuda", 1) and not ctx.distributed
    assert two_gpus["set_device"] == [torch.device("cuda", 1)]  # not left on GPU 0
    assert two_gpus["init_process_group"] == []


def test_under_torchrun_each_process_takes_its_local_rank_gpu(two_gpus, monkeypatch):
    torchrun(monkeypatch, rank=1)
    for requested in ("auto", "cuda"):
        ctx = distributed.setup(requested)
        assert ctx.device == torch.device("cuda", 1) and ctx.rank == 1 and ctx.world_size == 2
    assert two_gpus["set_device"] == [torch.device("cuda", 1)] * 2
    assert two_gpus["init_process_group"] == ["nccl", "nccl"]


def test_one_fixed_gpu_for_every_torchrun_process_is_refused(two_gpus, monkeypatch):
    torchrun(monkeypatch, rank=0)
    with pytest.raises(ValueError, match="puts all 2 torchrun processes on one GPU.*CUDA_VISIBLE_DEVICES"):
        distributed.setup("cuda:0")
    assert two_gpus["set_device"] == [] and two_gpus["init_process_group"] == []


def test_bad_devices_are_clear_errors(two_gpus, monkeypatch):
    with pytest.raises(ValueError, match=r"cuda:2 does not exist: torch sees 2 GPU\(s\)"):
        distributed.resolve_device("cuda:2")
    with pytest.raises(ValueError, match="LOCAL_RANK=2 takes GPU cuda:2, but it sees 2 GPU"):
        distributed.resolve_device("cuda", local_rank=2, world_size=3)
    with pytest.raises(ValueError, match="'gpu' is not a device"):
        distributed.resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device; use --device cpu"):
        distributed.resolve_device("cuda")
    assert distributed.resolve_device("auto") == torch.device("cpu")


def test_the_cpu_needs_no_set_device(two_gpus):
    assert distributed.setup("cpu").device == torch.device("cpu")
    assert two_gpus["set_device"] == []


def test_worker_counts_follow_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: {4, 5, 6}, raising=False)
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: 64)
    assert distributed.usable_cores() == 3


def test_teardown_leaves_only_the_process_group_sfer_created(monkeypatch):
    """A group sfer joined is left at the end of ``fit``; a group the caller created (to
    call ``fit`` twice, or to train and then evaluate) stays the caller's."""
    dist = distributed.dist
    create = dist.init_process_group
    torchrun(monkeypatch, rank=0)
    monkeypatch.setattr(dist, "init_process_group",  # one process stands in for torchrun's two
                        lambda backend: create(backend, store=dist.HashStore(), rank=0, world_size=1))
    ctx = distributed.setup("cpu")
    assert ctx.created_group and dist.is_initialized()
    distributed.teardown(ctx)
    assert not dist.is_initialized()

    create("gloo", store=dist.HashStore(), rank=0, world_size=1)  # the caller's group
    try:
        ctx = distributed.setup("cpu")
        assert not ctx.created_group
        distributed.teardown(ctx)
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()
