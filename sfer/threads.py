"""CPU threads: fast on an idle CPU, polite on a shared one, with no environment variable to set.

torch runs its CPU operators on OpenMP; the Linux wheels use GNU OpenMP (libgomp: see
``torch.__config__.parallel_info()``). An operator is split over one thread per core, and
a thread that finishes its share *spins* (polls, up to ``GOMP_SPINCOUNT`` = 300,000 times)
for the next operator instead of sleeping. Alone on the CPU that saves a wake-up per
operator. Beside another CPU-bound process the polling eats the time slices that the
threads still working (ours and the other process's) need, and every operator waits for
its slowest share: the issue measured a tiny training step 4x slower and a slider move
3x slower (3 s worst) with one competing process on 2 cores.

``OMP_WAIT_POLICY=PASSIVE`` (never poll) cures that but costs idle speed, and libgomp reads
it once, when torch loads: set from Python after ``import torch`` it does nothing. This
module acts at run time instead, so it works whatever was imported first:

- **Intra-op threads**: the cores this process may use (its affinity mask, capped by a
  cgroup CPU quota), not torch's count of the machine's cores; never raised.
- **Wait policy, adaptive**: a monitor thread reads every ``INTERVAL_S`` how much CPU other
  processes take on those cores (``/proc/stat`` minus this process's CPU time). From
  ``BUSY_CORES`` cores on, it *parks* an idle OpenMP team of cores + 1 threads. libgomp then
  manages more threads than it has cores, and for that case it documents a throttled spin
  count (100 polls instead of 300,000: idle threads go to sleep almost at once). When the
  others stay under ``QUIET_CORES`` for ``RELEASE_S``, the parked team ends and full
  polling, the fastest on a free CPU, returns.
- **Interactive operations** (an Explorer redraw: :func:`interactive`) run on
  ``INTERACTIVE_THREADS`` thread(s): small operators gain little from a second thread,
  and a single thread has no share to wait for when another process holds a core.

``import sfer`` applies :func:`configure` once. Overrides: ``SFER_THREADS=off`` leaves
torch untouched; ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` keeps the thread count the user
chose; ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` leaves the wait policy to libgomp.
``docs/benchmarks.md`` has the measurements behind the constants.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import multiprocessing
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ENV = "SFER_THREADS"
THREAD_COUNT_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
WAIT_POLICY_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
INTERVAL_S = 0.25  # how often the monitor samples the CPU
BUSY_CORES = 0.5  # others' CPU use (in cores) that parks the team
QUIET_CORES = 0.25  # ... and under which, for RELEASE_S, the team ends
RELEASE_S = 2.0
INTERACTIVE_THREADS = 1


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


# ---------------------------------------------------------------- libgomp's throttled spin


def libgomp_path() -> str | None:
    """The GNU OpenMP library loaded in this process (torch's own copy first), or None."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    mapped = (line.split(maxsplit=5) for line in maps.splitlines())  # address perms offset dev inode path
    paths = sorted({f[5] for f in mapped if len(f) == 6 and Path(f[5]).name.startswith("libgomp")})
    torch_lib = str(Path(torch.__file__).parent / "lib")
    paths.sort(key=lambda p: not p.startswith(torch_lib))
    return paths[0] if paths else None


class ParkedTeam:
    """An idle OpenMP team of ``size`` threads that lives until :meth:`release`.

    libgomp counts every thread of every team (``gomp_managed_threads``); while that
    count exceeds the CPUs it found at start-up, each wait polls the throttled spin count
    (100, or 1000 under ``OMP_WAIT_POLICY=ACTIVE``) and then sleeps. A team started by a
    thread stays in that thread's pool until the thread exits, so a parked thread that
    opened one parallel region and then blocks keeps the count up; its team sleeps.
    """

    def __init__(self, library: str, size: int):
        gomp = ctypes.CDLL(library)
        # The region's body: libgomp calls it as void (*)(void *) on each thread; omp_get_thread_num
        # ignores the argument, so it is a no-op that needs no compiled code of ours.
        body = ctypes.cast(gomp.omp_get_thread_num, ctypes.c_void_p)
        self.size = size
        self._stop = threading.Event()
        started = threading.Event()

        def park():
            gomp.GOMP_parallel(body, None, ctypes.c_uint(size), ctypes.c_uint(0))
            started.set()
            self._stop.wait()

        self._thread = threading.Thread(target=park, name="sfer-parked-openmp-team", daemon=True)
        self._thread.start()
        started.wait()

    def release(self) -> None:
        """End the parked thread; libgomp frees its team and lowers its thread count."""
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- the monitor


def read_cpu_ticks(cpus: set[int], stat: str | None = None) -> int:
    """Busy clock ticks (all but idle and iowait) of ``cpus``, from ``/proc/stat``'s cpuN lines."""
    stat = Path("/proc/stat").read_text() if stat is None else stat
    busy = 0
    for line in stat.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(f) for f in fields]
            busy += sum(ticks[:8]) - ticks[3] - ticks[4]  # user..steal, less idle and iowait
    return busy


class Hysteresis:
    """Park when others use ``busy`` cores or more in one sample; release after ``hold`` quiet samples."""

    def __init__(self, busy: float = BUSY_CORES, quiet: float = QUIET_CORES,
                 hold: int = round(RELEASE_S / INTERVAL_S)):
        self.busy, self.quiet, self.hold = busy, quiet, hold
        self.parked = False
        self._quiet_samples = 0

    def step(self, others_cores: float) -> bool:
        """Feed one sample (cores used by other processes); return whether to keep a team parked."""
        if others_cores >= self.busy:
            self.parked, self._quiet_samples = True, 0
        elif self.parked:
            self._quiet_samples = self._quiet_samples + 1 if others_cores < self.quiet else 0
            if self._quiet_samples >= self.hold:
                self.parked, self._quiet_samples = False, 0
        return self.parked


class ContentionMonitor:
    """Parks a team while other processes load this process's cores (see :class:`Hysteresis`)."""

    def __init__(self, library: str, cores: int, cpus: set[int], interval_s: float = INTERVAL_S):
        self.library, self.cores, self.cpus, self.interval_s = library, cores, cpus, interval_s
        self.rule = Hysteresis()
        self.team: ParkedTeam | None = None
        self.others_cores = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sfer-contention-monitor", daemon=True)
        self._thread.start()

    def _run(self):
        hz = os.sysconf("SC_CLK_TCK")
        last = (time.monotonic(), read_cpu_ticks(self.cpus) / hz, time.process_time())
        while not self._stop.wait(self.interval_s):
            now = (time.monotonic(), read_cpu_ticks(self.cpus) / hz, time.process_time())
            wall, busy, own = (b - a for a, b in zip(last, now))
            last = now
            self.others_cores = max(0.0, busy - own) / wall if wall > 0 else 0.0
            self._apply(self.rule.step(self.others_cores))
        self._apply(False)

    def _apply(self, parked: bool):
        if parked and self.team is None:
            self.team = ParkedTeam(self.library, self.cores + 1)
        elif not parked and self.team is not None:
            self.team.release()
            self.team = None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- the policy


@dataclass
class Policy:
    """What :func:`configure` did, for :func:`state` and the docs."""

    enabled: bool
    cores: int
    intra_op_threads: int
    interactive_threads: int
    thread_count: str  # "set", "kept (OMP_NUM_THREADS=...)" or "off"
    wait_policy: str  # "adaptive", "left to libgomp (...)", "left to the OpenMP runtime (not libgomp)" or "off"
    openmp: str | None


_policy: Policy | None = None
_monitor: ContentionMonitor | None = None
_lock = threading.Lock()


def configure(enabled: bool | None = None) -> Policy:
    """Apply the policy (idempotent). ``enabled=None`` reads ``SFER_THREADS`` (``off`` disables)."""
    global _policy, _monitor
    with _lock:
        if enabled is None:
            enabled = os.environ.get(ENV, "").strip().lower() not in ("off", "0", "false", "no")
        if _monitor is not None:
            _monitor.stop()
            _monitor = None
        cores = available_cores()
        library = libgomp_path()
        if not enabled:
            _policy = Policy(False, cores, torch.get_num_threads(), torch.get_num_threads(), "off", "off", library)
            return _policy

        chosen = [f"{v}={os.environ[v]}" for v in THREAD_COUNT_VARS if os.environ.get(v)]
        if chosen:
            thread_count = f"kept ({', '.join(chosen)})"
        else:
            thread_count = "set"
            if torch.get_num_threads() > cores:
                torch.set_num_threads(cores)
        threads = torch.get_num_threads()

        waits = [f"{v}={os.environ[v]}" for v in WAIT_POLICY_VARS if os.environ.get(v)]
        if waits:
            wait_policy = f"left to libgomp ({', '.join(waits)})"
        elif library is None:
            wait_policy = "left to the OpenMP runtime (not libgomp)"
        elif multiprocessing.parent_process() is not None:
            wait_policy = "left to libgomp (a worker process)"
        else:
            wait_policy = "adaptive"
            cpus = os.sched_getaffinity(0)
            _monitor = ContentionMonitor(library, len(cpus), cpus)
        _policy = Policy(True, cores, threads, min(INTERACTIVE_THREADS, threads), thread_count, wait_policy, library)
        return _policy


def state() -> dict:
    """What the policy set, and whether a team is parked now (``others_cores``: the last sample)."""
    policy = _policy or configure()
    monitor = _monitor
    return {**asdict(policy), "parked": bool(monitor and monitor.team),
            "others_cores": round(monitor.others_cores, 2) if monitor else None}


@contextlib.contextmanager
def _interactive_threads():
    policy = _policy
    if policy is None or not policy.enabled or policy.thread_count != "set":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(policy.interactive_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def interactive(fn=None):
    """Run a block (``with interactive():``) or a function (``@interactive``) on the interactive thread count."""
    if fn is None:
        return _interactive_threads()

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _interactive_threads():
            return fn(*args, **kwargs)

    return wrapper


def _after_fork_in_child():
    """Threads do not survive fork: the child starts with no monitor (and a recorded policy)."""
    global _monitor
    _monitor = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
