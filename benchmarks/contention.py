"""A training step and an Explorer slider move, alone and beside one competing CPU-bound process.

    python benchmarks/contention.py                  # both policies, idle and contended, 3 rounds
    python benchmarks/contention.py --rounds 1 --steps 8 --moves 10  # quicker, noisier

The competing process is the same tiny training loop in plain torch (``SFER_THREADS=off``:
torch's own threads and spinning, as another user's job would be). Each figure comes from
a fresh process that calls ``sfer.threads.configure()`` before it loads torch, as the
``sfer`` command and the notebooks' first cells do: under ``SFER_THREADS=off`` that leaves
torch's defaults (before), otherwise it applies the policy (after).

- training step: ``sfer.engine.train.train_one_epoch`` over one batch of 32 random
  112x112 images, tiny preset, the synthetic recipe's Adam; median of ``--steps`` steps
  after ``--warmup``.
- slider move: ``Explorer.update(topn=...)``, what a topn slider move runs (as in
  ``benchmarks/explain_latency.py``): new routing, L4 and KROAFE Grad-CAM, probabilities,
  the redrawn PNG (the window map is cached: it does not follow topn), under
  ``sfer.threads.interactive`` (one thread) unless the policy is off; median and worst of
  ``--moves`` moves after ``--warmup``.

Rounds run the cases in alternating order, so that a change in the machine's load hits
both policies; each figure is the median over rounds (the worst move: the median of the
rounds' worst).
Targets (issue 18), with one competing process on 2 cores: a step at most 2.6x its idle
time, a move at most 0.25 s median and 0.5 s worst. Prints a markdown table (paste it into
docs/benchmarks.md) headed by the machine and its load average, which other users of the
machine raise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import sfer.threads

POLICIES = {"torch defaults (before)": "off", "sfer.threads (after)": "on"}


def train_step():
    """One ``sfer train`` step (tiny preset, batch 32) on a fixed batch, as a callable."""
    import torch

    from sfer.engine import distributed
    from sfer.engine.config import TrainConfig
    from sfer.engine.train import build_optimizer, train_one_epoch
    from sfer.models import PRESETS, build_model

    cfg = TrainConfig()
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = build_model(cfg.preset, cfg.variant, num_classes=7)
    size = PRESETS[cfg.preset].image_size
    batch = [(torch.randn(cfg.batch_size, 3, size, size), torch.randint(0, 7, (cfg.batch_size,)))]
    optimizer = build_optimizer(model, cfg, cpu)
    ctx = distributed.Context(device=cpu)
    return lambda: train_one_epoch(model, batch, optimizer, ctx, amp=False)


def slider_move():
    """One topn slider move of the Explorer (shipped full checkpoint, synthetic faces), as a callable.

    Without the rw model: its window map has no routing, so the Explorer computes it once per image
    and a topn move never recomputes it."""
    from sfer.explain.loading import CHECKPOINTS, synthetic_faces
    from sfer.widgets import Explorer

    explorer = Explorer(CHECKPOINTS / "tiny_full.pt", images=synthetic_faces(4, seed=7).images)
    moves = iter(range(10 ** 9))
    return lambda: explorer.update(topn=1 + next(moves) % 49)


def measure(what: str, args) -> None:
    """Child process: apply the policy (or not) before torch loads, time ``what`` and print one JSON line."""
    policy = sfer.threads.configure()
    import torch
    from explain_latency import machine, timings

    fn = train_step() if what == "train" else slider_move()
    values = timings(fn, args.warmup, args.steps if what == "train" else args.moves)
    print(json.dumps({"median": statistics.median(values), "worst": max(values), "policy": policy,
                      "machine": machine(), "torch": torch.__version__}))


def compete() -> None:
    """Child process: train forever; say "ready" after the first step."""
    step = train_step()
    step()
    print("ready", flush=True)
    while True:
        step()


def child(*argv: str, policy: str) -> subprocess.Popen:
    env = dict(os.environ, SFER_THREADS=policy)
    return subprocess.Popen([sys.executable, __file__, *argv], env=env, stdout=subprocess.PIPE, text=True)


def run(what: str, contended: bool, policy: str, args) -> dict:
    rival = None
    if contended:
        rival = child("--compete", policy="off")
        if rival.stdout.readline().strip() != "ready":
            raise RuntimeError("the competing process did not start")
    try:
        proc = child("--measure", what, "--warmup", str(args.warmup), "--steps", str(args.steps),
                     "--moves", str(args.moves), policy=policy)
        out, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"measuring {what} ({policy}) failed with exit code {proc.returncode}")
        return json.loads(out.strip().splitlines()[-1])
    finally:
        if rival is not None:
            rival.kill()
            rival.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per figure")
    parser.add_argument("--moves", type=int, default=20, help="timed slider moves per figure")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--measure", choices=["train", "slider"], help=argparse.SUPPRESS)
    parser.add_argument("--compete", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compete:
        return compete()
    if args.measure:
        return measure(args.measure, args)

    load_before = os.getloadavg()
    before, after = POLICIES
    cases = [(what, contended, name) for what in ("train", "slider") for contended in (False, True) for name in POLICIES]
    results = {case: [] for case in cases}
    for r in range(args.rounds):
        for case in cases[::1 if r % 2 == 0 else -1]:
            what, contended, name = case
            results[case].append(run(what, contended, POLICIES[name], args))
            print(f"round {r + 1}/{args.rounds}: {what}, {'contended' if contended else 'idle'}, {name}: "
                  f"{results[case][-1]['median']:.3f} s", file=sys.stderr, flush=True)
    load_after = os.getloadavg()

    def fig(name, what, contended, key="median"):
        return statistics.median(r[key] for r in results[what, contended, name])

    first = results["train", False, after][0]
    print(f"Machine: {results['train', False, before][0]['machine']}; torch {first['torch']}; "
          f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; {args.rounds} rounds")
    print(f"Policy: wait policy {first['policy']['wait_policy']}; threads {first['policy']['threads']}; "
          f"slider moves on 1 thread (sfer.threads.interactive)\n")
    print("| policy | train step idle (ms) | contended (ms) | ratio | slider move idle: median / worst (s) "
          "| contended: median / worst (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in POLICIES:
        print(f"| {name} | {fig(name, 'train', False) * 1e3:.0f} | {fig(name, 'train', True) * 1e3:.0f} "
              f"| {fig(name, 'train', True) / fig(name, 'train', False):.2f}x "
              f"| {fig(name, 'slider', False):.3f} / {fig(name, 'slider', False, 'worst'):.3f} "
              f"| {fig(name, 'slider', True):.3f} / {fig(name, 'slider', True, 'worst'):.3f} |")
    print(f"\nIdle speed against torch's defaults: training step "
          f"{fig(after, 'train', False) / fig(before, 'train', False):.3f}; slider move "
          f"{fig(after, 'slider', False) / fig(before, 'slider', False):.3f}")
    print("Targets with one competing process: step ratio at most 2.6x; slider move median at most 0.25 s, "
          "worst at most 0.5 s")


if __name__ == "__main__":
    main()
