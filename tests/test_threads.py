"""sfer.threads: what the policy sets, the overrides it respects, import order, and its parts.

What the policy sets is checked in fresh interpreters (``import sfer`` applies it once);
its speed is measured by ``benchmarks/contention.py``, not here.
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
from sfer.threads import Hysteresis, ParkedTeam, available_cores, libgomp_path, read_cpu_ticks

REPO = Path(__file__).resolve().parents[1]
linux_libgomp = pytest.mark.skipif(libgomp_path() is None, reason="torch does not run on GNU OpenMP here")

REPORT = """
import json, threading, torch, sfer
print(json.dumps({**sfer.threads.state(), "torch_threads": torch.get_num_threads(),
                  "threads": sorted(t.name for t in threading.enumerate())}))
"""


def run_python(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter (the overrides set, any SFER_/OMP_ variable of ours cleared)."""
    clean = {k: v for k, v in os.environ.items()
             if k != threads.ENV and k not in threads.THREAD_COUNT_VARS + threads.WAIT_POLICY_VARS}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("first", ["torch", "sfer"])
def test_import_applies_the_policy_whatever_was_imported_first(first):
    plain = run_python("import json, torch; print(json.dumps(torch.get_num_threads()))", SFER_THREADS="off")
    report = run_python(f"import {first}\n" + REPORT)
    assert report["enabled"] and report["thread_count"] == "set"
    assert report["intra_op_threads"] == report["torch_threads"] == min(report["cores"], plain)
    assert report["interactive_threads"] == 1
    if libgomp_path() is not None:
        assert report["wait_policy"] == "adaptive"
        assert "sfer-contention-monitor" in report["threads"]


def test_off_leaves_torch_alone():
    plain = run_python("import json, torch; print(json.dumps(torch.get_num_threads()))")
    report = run_python(REPORT, SFER_THREADS="off")
    assert not report["enabled"] and report["wait_policy"] == report["thread_count"] == "off"
    assert report["torch_threads"] == plain
    assert "sfer-contention-monitor" not in report["threads"]


def test_user_thread_count_and_wait_policy_are_kept():
    report = run_python(REPORT, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    assert report["thread_count"] == "kept (OMP_NUM_THREADS=1)" and report["torch_threads"] == 1
    assert report["wait_policy"] == "left to libgomp (OMP_WAIT_POLICY=PASSIVE)"
    assert "sfer-contention-monitor" not in report["threads"]
    report = run_python(REPORT, GOMP_SPINCOUNT="1000")
    assert report["wait_policy"] == "left to libgomp (GOMP_SPINCOUNT=1000)"


def test_a_lower_thread_count_is_never_raised():
    report = run_python("import torch\ntorch.set_num_threads(1)\n" + REPORT)
    assert report["torch_threads"] == report["intra_op_threads"] == 1


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")
def test_threads_follow_the_affinity_mask_set_after_torch_loaded():
    """torch counts cores once, when it loads; the policy counts those the process may use now."""
    report = run_python("import os, torch\nos.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n" + REPORT)
    assert report["cores"] == 1 and report["torch_threads"] == 1


def test_interactive_runs_on_one_thread_and_restores():
    policy = threads.configure()
    before = torch.get_num_threads()

    @threads.interactive
    def inside():
        return torch.get_num_threads()

    assert inside() == policy.interactive_threads == 1
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError):
        with threads.interactive():
            assert torch.get_num_threads() == 1
            raise KeyError("restored anyway")
    assert torch.get_num_threads() == before
    try:
        threads.configure(enabled=False)
        assert inside() == before
    finally:
        threads.configure()


def test_hysteresis_parks_at_once_and_releases_after_a_quiet_spell():
    rule = Hysteresis(busy=0.5, quiet=0.25, hold=3)
    assert [rule.step(x) for x in (0.1, 0.49, 0.5)] == [False, False, True]
    # a sample between quiet and busy restarts the quiet count
    assert [rule.step(x) for x in (0.1, 0.1, 0.3, 0.1, 0.1)] == [True] * 5
    assert rule.step(0.0) is False
    assert rule.step(1.8) is True


def test_read_cpu_ticks_counts_busy_ticks_of_the_given_cpus():
    stat = ("cpu  900 0 90 5000 10 0 0 0 0 0\n"
            "cpu0 100 5 20 1000 7 1 2 3 0 0\n"
            "cpu1 800 0 70 4000 3 0 0 0 0 0\n"
            "intr 12345\n")
    assert read_cpu_ticks({0}, stat) == 100 + 5 + 20 + 1 + 2 + 3
    assert read_cpu_ticks({0, 1}, stat) == 131 + 870
    assert read_cpu_ticks({7}, stat) == 0


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
    assert 1 <= available_cores() <= len(os.sched_getaffinity(0))


PARKED = """
import json, os, time, sfer.threads as st
count = lambda: len(os.listdir("/proc/self/task"))
before = count()
team = st.ParkedTeam(st.libgomp_path(), 3)
parked = count()
team.release()
deadline = time.monotonic() + 30
while count() > before and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps([before, parked, count()]))
"""


@linux_libgomp
def test_parked_team_holds_its_threads_until_released():
    """In a process without the monitor (SFER_THREADS=off), which parks teams of its own."""
    before, parked, after = run_python(PARKED, SFER_THREADS="off")
    assert parked == before + 3  # the parked thread and the two other members of its team
    assert after == before
