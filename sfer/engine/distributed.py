"""Devices and ``torchrun``: one process per GPU (or per CPU slot with gloo).

Launched by ``torchrun --nproc_per_node N -m sfer.cli train ...``, every process
reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment, joins the
process group (NCCL on CUDA, gloo on CPU) and trains on its shard of each global
batch; gradients are averaged by DistributedDataParallel. Without those variables
the same code runs as a single process with ``world_size == 1``.

Devices: ``--device cuda`` (or ``auto``) gives each process the GPU of its
``LOCAL_RANK``; ``--device cuda:N`` names one GPU for a single process (under
``torchrun`` it is refused: restrict the GPUs with ``CUDA_VISIBLE_DEVICES``
instead). The chosen GPU is made the current one (``torch.cuda.set_device``), so
pinned-memory threads, the CUDA RNG state and NCCL all use it rather than GPU 0.

Batch norm over the global batch: under DDP each process normalises over its own
shard unless the model's BatchNorm layers are synchronised (:func:`sync_batchnorm`,
``--sync-batchnorm``, off by default as in timm): PyTorch's ``SyncBatchNorm``, CUDA only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass(frozen=True)
class Context:
    """Where this process runs: its device, rank and the number of processes."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created_group: bool = False  # sfer joined the process group, so sfer leaves it (teardown)

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, draws progress bars and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask), not the machine's count:
    under a batch scheduler or ``taskset`` the two differ."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively, so that bf16 autocast speeds it up.

    CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and later). CPU: the AVX512-BF16 or
    AMX instructions, as torch's own CPU probe reports them; elsewhere oneDNN emulates
    bf16 and it is slower than fp32, so such CPUs train in plain fp32.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_device(device: str | torch.device = "auto", local_rank: int = 0, world_size: int = 1) -> torch.device:
    """``auto`` picks CUDA when it is there, else the CPU; ``cuda`` is the GPU of ``local_rank``.

    A CUDA request without CUDA, a GPU index past the visible ones, or one fixed GPU
    for several ``torchrun`` processes is an error.
    """
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"--device {device!r} is not a device: use auto, cpu, cuda or cuda:N") from err
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    if device.index is not None and world_size > 1:
        raise ValueError(f"--device {device} puts all {world_size} torchrun processes on one GPU: use --device cuda "
                         f"(process LOCAL_RANK takes GPU LOCAL_RANK) and pick GPUs with CUDA_VISIBLE_DEVICES")
    visible = torch.cuda.device_count()
    if device.index is None:
        if local_rank >= visible:
            raise ValueError(f"torchrun process LOCAL_RANK={local_rank} takes GPU cuda:{local_rank}, but it sees "
                             f"{visible} GPU(s): start at most {visible} processes per machine, and let every "
                             f"process see every GPU (no per-process CUDA_VISIBLE_DEVICES)")
        device = torch.device("cuda", local_rank)
    if device.index >= visible:
        raise ValueError(f"--device {device} does not exist: torch sees {visible} GPU(s) (cuda:0..cuda:{visible - 1})")
    return device


def use_device(device: torch.device) -> torch.device:
    """Make a GPU the current device (a no-op for the CPU) and return it."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def setup(device: str | torch.device = "auto") -> Context:
    """Join the ``torchrun`` process group if there is one, and pick and select this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    resolved = use_device(resolve_device(device, local_rank, world_size))
    create = world_size > 1 and not dist.is_initialized()
    if create:
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return Context(resolved, rank, world_size, local_rank, created_group=create)


def teardown(ctx: Context) -> None:
    """Leave the process group if :func:`setup` joined it; a group the caller created (a
    script that calls ``fit`` twice, or trains and then evaluates) stays the caller's."""
    if ctx.created_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Sum a tensor over processes (a no-op on one process)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather(obj: Any, ctx: Context) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` on one process)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, ctx: Context) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_buffers(module: nn.Module, ctx: Context) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every process, in place.

    DDP broadcasts them at the start of each training forward, so after the last
    step every process holds rank 0's statistics plus its own last update; this makes
    them equal again before a process evaluates its unwrapped model.
    """
    if ctx.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``module`` normalising over the global batch of all processes:
    PyTorch's ``SyncBatchNorm``, which has CUDA kernels only. The parameters and buffers
    are moved, not copied, so build the optimiser afterwards.

    Off by default (``--sync-batchnorm`` turns it on), as in timm: it adds a collective to
    every batch-norm layer of every step and breaks a compiled graph there, and it
    matters only when each GPU's shard is small; ``docs/training.md`` says when.
    """
    if device.type != "cuda":
        raise ValueError(f"--sync-batchnorm needs CUDA (PyTorch's SyncBatchNorm has no {device.type} kernels): "
                         f"train without it")
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)
