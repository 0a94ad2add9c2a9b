"""sfer.threads: importing sfer changes nothing; the CLI and configure() apply the policy; its overrides.

Each check runs in a fresh interpreter, since what torch and libgomp do depends on what the
process did before. The policy's speed is measured by ``benchmarks/contention.py``, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sfer import threads

REPO = Path(__file__).resolve().parents[1]
OURS = (threads.ENV, *threads.THREAD_COUNT_VARS, *threads.WAIT_POLICY_VARS, *threads.TORCHRUN_VARS)

STATE = """
import json, os, sys, threading
def state():
    import torch
    return {"python_threads": threading.active_count(), "os_threads": len(os.listdir("/proc/self/task")),
            "torch_threads": torch.get_num_threads(), "env": {v: os.environ.get(v) for v in %r}}
""" % (OURS,)

IMPORT_ALL = """
import importlib, pkgutil, sfer
for module in pkgutil.walk_packages(sfer.__path__, "sfer."):
    importlib.import_module(module.name)
"""


def run_python(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter with our variables cleared (then ``env`` set); its last line's JSON.

    ``OPENBLAS_NUM_THREADS=1``: OpenBLAS (numpy's, scipy's and OpenCV's copies) starts a pool of
    threads when it loads; with one thread it starts none, so a new OS thread would be sfer's.
    """
    clean = {k: v for k, v in os.environ.items() if k not in OURS}
    out = subprocess.run([sys.executable, "-c", STATE + code], env={**clean, "OPENBLAS_NUM_THREADS": "1", **env},
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def torch_alone() -> dict:
    return run_python("import torch\nprint(json.dumps(state()))")


@pytest.mark.parametrize("first", ["torch", "sfer"])
def test_importing_sfer_starts_no_thread_and_sets_nothing(first, torch_alone):
    """Every module of the package, imported before or after torch: no Python or OS thread, torch's own
    thread count, no OpenMP variable."""
    assert torch_alone["python_threads"] == 1 and torch_alone["os_threads"] == 1
    report = run_python(f"import {first}\n" + IMPORT_ALL + "print(json.dumps(state()))")
    assert report == torch_alone


def test_the_cli_applies_the_policy_before_torch_loads(torch_alone):
    """``sfer`` sets the spin count before its sub-commands load torch (shown by ``--help``, which
    exits after configure() and the parser ran); the variable reaches the processes it starts."""
    report = run_python("import atexit\natexit.register(lambda: print(json.dumps(state())))\n"
                        "from sfer.cli import main\nmain(['--help'])")
    assert report["env"]["GOMP_SPINCOUNT"] == str(threads.SPIN_COUNT)
    assert report["torch_threads"] == min(torch_alone["torch_threads"], threads.available_cores())
    assert report["python_threads"] == 1


def test_configure_before_torch_sets_the_spin_count():
    report = run_python("import sfer.threads\ndone = sfer.threads.configure()\nprint(json.dumps(done))")
    assert report["wait_policy"] == f"GOMP_SPINCOUNT={threads.SPIN_COUNT}"


def test_configure_after_torch_sets_only_the_thread_count():
    """libgomp read its variables when torch loaded: setting one then would only mislead child processes."""
    report = run_python("import torch, sfer.threads\ndone = sfer.threads.configure()\n"
                        "print(json.dumps({**done, **state()}))")
    assert report["wait_policy"] == "left to libgomp (torch loaded before configure())"
    assert report["env"]["GOMP_SPINCOUNT"] is None


@pytest.mark.parametrize("env, wait_policy, threads_set", [
    ({"SFER_THREADS": "off"}, "left to libgomp (SFER_THREADS=off)", "left to torch (SFER_THREADS=off)"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "left to libgomp (torchrun)", "left to torchrun"),
    ({"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}, "left to libgomp (OMP_WAIT_POLICY=PASSIVE)",
     "1 intra-op, kept (OMP_NUM_THREADS=1)"),
])
def test_overrides(env, wait_policy, threads_set):
    report = run_python("import sfer.threads\ndone = sfer.threads.configure()\nprint(json.dumps({**done, **state()}))",
                        **env)
    assert (report["wait_policy"], report["threads"]) == (wait_policy, threads_set)
    assert report["env"]["GOMP_SPINCOUNT"] is None


def test_a_lower_thread_count_is_never_raised():
    report = run_python("import torch, sfer.threads\ntorch.set_num_threads(1)\nsfer.threads.configure()\n"
                        "print(json.dumps(state()))")
    assert report["torch_threads"] == 1


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")
def test_threads_follow_the_affinity_mask_set_after_torch_loaded():
    """torch counts cores once, when it loads; configure() counts those the process may use now."""
    report = run_python("import os, torch, sfer.threads\nos.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
                        "sfer.threads.configure()\nprint(json.dumps(state()))")
    assert report["torch_threads"] == 1


def test_interactive_runs_on_one_thread_and_restores(monkeypatch):
    for name in (threads.ENV, *threads.THREAD_COUNT_VARS):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()

    @threads.interactive
    def inside():
        return torch.get_num_threads()

    assert inside() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError):
        with threads.interactive():
            assert torch.get_num_threads() == 1
            raise KeyError("restored anyway")
    assert torch.get_num_threads() == before
    monkeypatch.setenv("OMP_NUM_THREADS", str(before))  # a thread count the user chose is kept
    assert inside() == before
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv(threads.ENV, "off")
    assert inside() == before


def test_cgroup_quota(tmp_path):
    membership = tmp_path / "cgroup"
    membership.write_text("0::/user.slice/job\n")
    limit = tmp_path / "user.slice" / "job" / "cpu.max"
    limit.parent.mkdir(parents=True)
    limit.write_text("150000 100000\n")
    assert threads._cgroup_quota(tmp_path, membership) == 1.5
    limit.write_text("max 100000\n")
    assert threads._cgroup_quota(tmp_path, membership) is None
    assert threads._cgroup_quota(tmp_path / "absent", membership) is None
    assert 1 <= threads.available_cores() <= len(os.sched_getaffinity(0))
