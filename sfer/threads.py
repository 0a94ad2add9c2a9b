"""CPU threads on a shared machine: set where sfer starts the work, never at import.

torch runs its CPU operators on OpenMP; the Linux wheels use GNU OpenMP (libgomp: see
``torch.__config__.parallel_info()``). An operator is split over one thread per core, and
a thread that finishes its share *spins* (polls up to ``GOMP_SPINCOUNT`` = 300,000 times,
a few milliseconds) for the next operator instead of sleeping. Alone on the CPU that saves
a wake-up per operator. Beside another CPU-bound process the polling takes the time slices
that the threads still working (ours and the other process's) need, and every operator
waits for its slowest share: a tiny training step ran up to 10x slower, and a slider move
took up to 5 s, with one competing process on 2 cores (``docs/benchmarks.md``).

Two settings cure that, each applied only where it is asked for:

- :func:`configure`, which the ``sfer`` command line calls before it loads torch, as do
  the notebooks' first cells and a user's script: a short spin (``GOMP_SPINCOUNT``) that
  libgomp reads once, when torch loads, and intra-op threads no more than the cores this
  process may use (its affinity mask, capped by a cgroup CPU quota).
- :func:`interactive`: an Explorer redraw runs on one thread. Its operators are small, a
  second thread hardly speeds them up, and one thread has no share to wait for.

Overrides: ``SFER_THREADS=off`` leaves torch as it loads; ``OMP_NUM_THREADS`` or
``MKL_NUM_THREADS`` keeps the thread count the user chose; ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` keeps the user's wait policy. Under ``torchrun``, which sets its own
thread count, :func:`configure` does nothing.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from pathlib import Path

ENV = "SFER_THREADS"
THREAD_COUNT_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
WAIT_POLICY_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
# Polls before an idle OpenMP thread sleeps, instead of libgomp's 300,000: tens of microseconds, enough
# to bridge most gaps between a training step's operators, too short to hold a core another process needs.
SPIN_COUNT = 1_000


def available_cores() -> int:
    """The cores this process may run on: its affinity mask, capped by a cgroup v2 CPU quota
    (``cpu.max``, as ``docker --cpus`` sets), which the mask does not show."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """``quota / period`` from this process's cgroup v2 ``cpu.max``; None when unlimited or absent."""
    try:
        group = next(line.split("::", 1)[1] for line in membership.read_text().splitlines()
                     if line.startswith("0::"))
        quota, period = (root / group.lstrip("/") / "cpu.max").read_text().split()
    except (OSError, StopIteration, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _off() -> bool:
    return os.environ.get(ENV, "").strip().lower() in ("off", "0", "false", "no")


def _user_set(names) -> list[str]:
    return [f"{v}={os.environ[v]}" for v in names if os.environ.get(v)]


def configure() -> dict[str, str]:
    """Apply the policy to this process, best called before torch loads; return what was set.

    Sets ``GOMP_SPINCOUNT`` in the environment (so child processes share it) when torch has
    not loaded yet, then lowers torch's intra-op threads to :func:`available_cores` (never
    raises them). Calling it again only applies the thread count again.
    """
    if _off():
        return {"wait_policy": f"left to libgomp ({ENV}=off)", "threads": f"left to torch ({ENV}=off)"}
    if any(v in os.environ for v in TORCHRUN_VARS):
        return {"wait_policy": "left to libgomp (torchrun)", "threads": "left to torchrun"}
    if user := _user_set(WAIT_POLICY_VARS):
        wait_policy = f"left to libgomp ({', '.join(user)})"
    elif "torch" in sys.modules:
        wait_policy = "left to libgomp (torch loaded before configure())"
    else:
        os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
        wait_policy = f"GOMP_SPINCOUNT={SPIN_COUNT}"

    import torch  # after GOMP_SPINCOUNT: libgomp reads it when torch loads it

    if user := _user_set(THREAD_COUNT_VARS):
        threads = f"kept ({', '.join(user)})"
    else:
        torch.set_num_threads(min(torch.get_num_threads(), available_cores()))
        threads = "at most the usable cores"
    return {"wait_policy": wait_policy, "threads": f"{torch.get_num_threads()} intra-op, {threads}"}


@contextlib.contextmanager
def _one_thread():
    import torch

    if _off() or _user_set(THREAD_COUNT_VARS):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def interactive(fn=None):
    """Run a block (``with interactive():``) or a function (``@interactive``) on one thread, then restore
    the thread count; a thread count chosen with ``OMP_NUM_THREADS`` and ``SFER_THREADS=off`` are kept."""
    if fn is None:
        return _one_thread()

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _one_thread():
            return fn(*args, **kwargs)

    return wrapper
