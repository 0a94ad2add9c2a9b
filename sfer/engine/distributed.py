"""Devices and ``torchrun``: one process per GPU (or per CPU slot with gloo).

Launched by ``torchrun --nproc_per_node N -m sfer.cli train ...``, every process
reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment, joins the
process group (NCCL on CUDA, gloo on CPU) and trains on its shard of each global
batch; gradients are averaged by DistributedDataParallel. Without those variables
the same code runs as a single process with ``world_size == 1``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    """Where this process runs: its device, rank and the number of processes."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, draws progress bars and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when it is there, else the CPU; a CUDA request without CUDA is an error."""
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def setup(device: str | torch.device = "auto") -> Context:
    """Join the ``torchrun`` process group if there is one, and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return Context(resolved, rank, world_size, local_rank)


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
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
