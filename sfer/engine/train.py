"""The training loop: :func:`fit` trains, validates, checkpoints, stops early and tests.

One epoch is: shuffle (a :class:`DistributedSampler` seeded by ``seed + epoch``, on
one process too, so the global batches are the same whatever the process count),
train, validate, step the schedule, write ``last.pt`` (and ``best.pt`` when the
validation accuracy improved) and ``log.csv``. After the last epoch, or when
``patience`` epochs pass without a better validation accuracy, the best weights
are tested and ``metrics.json`` and ``curves.png`` are written.

Reproducibility: the model is initialised from ``seed``; ``last.pt`` stores every
RNG each process uses (torch, CUDA, NumPy, Python, the loader's generator), so a
resumed run continues exactly where the interrupted one stopped: on the CPU with
``num_workers=0`` the weights are bit-identical to an uninterrupted run. ``last.pt``
is written every ``save_every`` epochs and after the last one (early stop included).

The GPU path: the training step queues work without waiting for it (no host sync:
the running loss, accuracy and a non-finite flag stay on the device and are read
every ``LOG_EVERY`` steps by rank 0 when its bar is shown, and at the end of the
epoch); fused Adam; cuDNN autotuning; channels-last and bf16 autocast; under
``torchrun`` batch norm over the global batch (``sync_batchnorm``). Validation and the
test run the plain model, never the DDP or compiled wrapper: a process whose shard of
a small split is empty then has nothing to wait for, and validation adds no compiled
graph. With ``compile`` the training loader drops its last partial batch, so that
every step has one shape (``docs/training.md`` lists what recompiles).
"""

from __future__ import annotations

import csv
import json
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm  # text bars: a notebook widget bar is saved as a stale "0%" without a kernel

from sfer.data import IMAGENET_MEAN, IMAGENET_STD
from sfer.models import PRESETS, CheckpointError, build_model, load_ir50

from . import distributed
from .checkpoint import (FORMAT, VERSION, atomic_save, capture_rng, check_classes, load_checkpoint,
                         restore_rng, strip_checkpoint)
from .config import ARCHITECTURE_FIELDS, TrainConfig, config_layer, from_dict
from .evaluate import (autocast, build_splits, confusion_matrix, eval_loader, report, summarize, uses_bf16,
                       uses_channels_last)

LOG_EVERY = 20  # steps between two reads of the running figures for the progress bar
LOG_FIELDS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "images_per_s",
              "epoch_time_s", "best")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: training stopped, the last good checkpoint is kept."""


def resolve_config(config: TrainConfig | dict | str | Path | None = None, **overrides: Any
                   ) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The run's config and, when resuming, the checkpoint it resumes from.

    Layers, later winning: defaults, the resumed checkpoint's config, ``config``
    (a :class:`TrainConfig`, dict or YAML path), then non-``None`` ``overrides``. A
    resumed run may not change the architecture (preset, variant, routing).
    """
    base = config_layer(config)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides.get("data") == "synthetic" and "dataset" not in overrides:
        overrides["dataset"] = "synthetic"  # `--data synthetic` on a real data set's recipe: a smoke test
    explicit = {**base, **overrides}
    if not explicit.get("resume"):
        return from_dict(explicit), None
    ckpt = load_checkpoint(explicit["resume"])
    cfg = from_dict(ckpt["config"], explicit)
    for name in ARCHITECTURE_FIELDS:
        wanted, stored = explicit.get(name), ckpt["model_config"].get(name)
        if wanted is not None and wanted != stored:
            raise CheckpointError(
                f"{explicit['resume']} holds a {name}={stored!r} model; it cannot be resumed as {name}={wanted!r}. "
                f"Drop the {name} setting, or start a new run without --resume")
    return cfg, ckpt


def fit(config: TrainConfig | dict | str | Path | None = None, *, datasets: dict[str, Dataset] | None = None,
        progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Train, validate, early-stop and test; return the final metrics (also in ``OUT/metrics.json``).

    ``config`` is a :class:`TrainConfig`, a dict or a YAML file; keyword ``overrides``
    win over it (``fit(epochs=2, out="runs/x")``). ``datasets`` replaces the data
    named by the config with ``{"train", "val", "test"}`` data sets of
    ``(image tensor, label)`` pairs that have a ``classes`` list. ``progress=False``
    swaps the tqdm bars for one printed line per epoch.
    """
    start = time.perf_counter()
    cfg, resumed = resolve_config(config, **overrides)
    ctx = distributed.setup(cfg.device)
    try:
        return _fit(cfg, resumed, ctx, datasets, progress, start)
    finally:
        distributed.teardown(ctx)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _fit(cfg: TrainConfig, resumed: dict | None, ctx: distributed.Context, datasets: dict | None,
         progress: bool, start: float) -> dict[str, Any]:
    out = Path(cfg.out)
    say = print if ctx.is_main else (lambda *a, **k: None)
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} (the global batch) must divide by the "
                         f"{ctx.world_size} processes")
    local_batch = cfg.batch_size // ctx.world_size
    cuda = ctx.device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # one input size: cuDNN times its algorithms once per shape
    workers = cfg.num_workers if cfg.num_workers is not None else (
        min(8, distributed.usable_cores() // ctx.world_size) if cuda else 0)

    # ---- data
    preprocessing = resumed["preprocessing"] if resumed else {
        "image_size": PRESETS[cfg.preset].image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    if datasets is None:
        datasets = build_splits(cfg, preprocessing)
    classes = list(datasets["train"].classes)
    for split in ("val", "test"):
        if list(datasets[split].classes) != classes:
            raise ValueError(f"the {split} split's classes {list(datasets[split].classes)} differ from "
                             f"the train split's {classes}")
    if resumed:
        check_classes(resumed["classes"], classes, source=cfg.resume)

    # ---- model and optimiser (initialised from the seed: the same on every process)
    _seed_everything(cfg.seed)
    model = build_model(cfg.preset, cfg.variant, num_classes=len(classes), topn=cfg.topn, regions=cfg.regions)
    if cfg.ir50 and not resumed:
        say(load_ir50(model, cfg.ir50))
    if resumed:
        model.load_state_dict(resumed["model"])
    synced = ctx.distributed and cfg.sync_batchnorm
    if synced:
        model = distributed.sync_batchnorm(model, ctx.device)
    model.to(ctx.device)
    channels_last = uses_channels_last(ctx.device, cfg.amp)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg, ctx.device)
    # Synchronised batch norm keeps the running statistics equal on every process, so
    # DDP need not broadcast them before every forward.
    net: nn.Module = DistributedDataParallel(model, device_ids=[ctx.device] if cuda else None,
                                             broadcast_buffers=not synced) if ctx.distributed else model
    compiled = will_compile(cfg, ctx.device)
    if compiled:
        net = torch.compile(net)

    # ---- loaders: the sampler shuffles by seed + epoch; the generator seeds worker processes
    _seed_everything(cfg.seed + ctx.rank)
    generator = torch.Generator().manual_seed(cfg.seed + ctx.rank)
    sampler = DistributedSampler(datasets["train"], num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=True, seed=cfg.seed)
    # A last batch of one image per process cannot be batch-normalised in training mode;
    # a compiled step would recompile for a last batch of any other size.
    last = len(sampler) % local_batch
    train_loader = training_loader(datasets["train"], local_batch, sampler, workers, ctx.device, generator,
                                   drop_last=compiled or last == 1)
    if len(train_loader) == 0:
        raise ValueError(f"the {len(datasets['train'])} training images make no full batch of {cfg.batch_size}"
                         f"{' (compiled training drops the partial one)' if compiled else ''}: lower --batch-size")
    val_loader = eval_loader(datasets["val"], local_batch, ctx, workers)
    test_loader = eval_loader(datasets["test"], local_batch, ctx, workers)

    # ---- state that a resume restores
    state = {"best_val_accuracy": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": [], "train_time_s": 0.0}
    first_epoch = 0
    if resumed:
        if "optimizer" not in resumed:
            raise CheckpointError(f"{cfg.resume} is an inference checkpoint (no optimiser state): "
                                  f"resume from the run's last.pt")
        load_optimizer_state(optimizer, resumed["optimizer"])
        state = dict(resumed["progress"])
        first_epoch = int(resumed["epoch"])
        rng = resumed["rng"]
        restore_rng(rng[ctx.rank] if len(rng) == ctx.world_size else rng[0], generator)
        say(f"resumed from {cfg.resume} after epoch {first_epoch}")
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)

    def checkpoint(epoch: int, metrics: dict, training_state: bool) -> dict[str, Any]:
        """The checkpoint dict; ``training_state`` adds what a resume needs (gathering the
        RNG states is a collective: every process calls this with the same arguments)."""
        ckpt = {"format": FORMAT, "version": VERSION, "model": model.state_dict(), "model_config": model.config,
                "classes": classes, "preprocessing": preprocessing, "config": cfg.to_dict(), "epoch": epoch,
                "metrics": metrics}
        if training_state:
            ckpt.update(optimizer=optimizer.state_dict(), rng=distributed.all_gather(capture_rng(generator), ctx),
                        progress=state)
        return ckpt

    # ---- epochs
    for epoch in range(first_epoch, cfg.epochs):
        if state["bad_epochs"] >= cfg.patience:
            break
        sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        lr = learning_rate(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        bar = tqdm(total=len(train_loader), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not (progress and ctx.is_main), dynamic_ncols=True)
        train = train_one_epoch(net, train_loader, optimizer, ctx, amp=cfg.amp, bar=bar, epoch=epoch + 1,
                                last_good=out / "last.pt", skip_on_device=cuda, channels_last=channels_last)
        distributed.broadcast_buffers(model, ctx)  # every process validates rank 0's running statistics
        counts, val_loss = confusion_matrix(model, val_loader, len(classes), ctx, amp=cfg.amp)
        val_acc = summarize(counts, classes)["accuracy"]
        if not math.isfinite(val_loss):
            raise NonFiniteLossError(f"the validation loss is {val_loss} after epoch {epoch + 1}: the weights "
                                     f"diverged; {_kept(out / 'last.pt')}. Lower --lr and resume or restart")
        improved = val_acc > state["best_val_accuracy"]
        if improved:
            state.update(best_val_accuracy=val_acc, best_epoch=epoch + 1, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        seconds = time.perf_counter() - t0
        state["train_time_s"] += seconds
        row = {"epoch": epoch + 1, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
               "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr, "images_per_s": train["images_per_s"],
               "epoch_time_s": seconds, "best": improved}
        state["history"].append(row)

        save_last = ((epoch + 1) % cfg.save_every == 0 or epoch + 1 == cfg.epochs
                     or state["bad_epochs"] >= cfg.patience)
        if save_last or improved:
            ckpt = checkpoint(epoch + 1, {"val_accuracy": val_acc, "val_loss": val_loss}, training_state=save_last)
            if ctx.is_main and save_last:
                atomic_save(ckpt, out / "last.pt")
            if ctx.is_main and improved:
                atomic_save(strip_checkpoint(ckpt), out / "best.pt")
        if ctx.is_main:
            write_log(state["history"], out / "log.csv")
        summary = (f"train loss {train['loss']:.4f} acc {train['accuracy']:.4f} | val loss {val_loss:.4f} "
                   f"acc {val_acc:.4f}{' (best)' if improved else ''} | {train['images_per_s']:.0f} img/s")
        if bar.disable:
            say(f"epoch {epoch + 1}/{cfg.epochs}: {summary} | {seconds:.1f} s")
        else:
            bar.set_postfix_str(summary)
        bar.close()
        if state["bad_epochs"] >= cfg.patience:
            say(f"early stop: no better validation accuracy for {cfg.patience} epochs "
                f"(best {state['best_val_accuracy']:.4f} at epoch {state['best_epoch']})")

    # ---- test the best weights
    distributed.barrier(ctx)  # rank 0 has written best.pt
    if not (out / "best.pt").is_file():
        raise RuntimeError(f"no epoch was trained and {out / 'best.pt'} does not exist: raise --epochs")
    model.load_state_dict(load_checkpoint(out / "best.pt", map_location=ctx.device)["model"])
    counts, test_loss = confusion_matrix(model, test_loader, len(classes), ctx, amp=cfg.amp,
                                         progress=progress, desc="test")
    test = summarize(counts, classes)
    history = state["history"]
    metrics = {
        "test_accuracy": test["accuracy"], "test_loss": test_loss,
        "best_val_accuracy": state["best_val_accuracy"], "best_epoch": state["best_epoch"],
        "epochs": len(history), "stopped_early": state["bad_epochs"] >= cfg.patience,
        "per_class_accuracy": test["per_class_accuracy"], "confusion_matrix": test["confusion_matrix"],
        "classification_report": report(counts, classes)[0], "classes": classes,
        "train_images_per_s": float(np.mean([r["images_per_s"] for r in history])) if history else None,
        "train_time_s": state["train_time_s"], "wall_time_s": time.perf_counter() - start,
        "device": str(ctx.device), "world_size": ctx.world_size, "torch": torch.__version__,
        "bf16": uses_bf16(ctx.device, cfg.amp), "compiled": compiled,
        "model_config": model.config, "config": cfg.to_dict(),
        "checkpoints": {"last": str(out / "last.pt"), "best": str(out / "best.pt")},
    }
    if ctx.is_main:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        plot_curves(history).savefig(out / "curves.png", dpi=110)
        say(f"test accuracy {test['accuracy']:.4f} (best val {state['best_val_accuracy']:.4f} at epoch "
            f"{state['best_epoch']}); {metrics['wall_time_s']:.0f} s; wrote {out}")
    return metrics


def will_compile(cfg: TrainConfig, device: torch.device) -> bool:
    """``cfg.compile``, or where it is ``None`` (the default): compile on a CPU that runs bf16
    natively when a C++ compiler is there for inductor's kernels.

    On such a CPU (AVX512-BF16 or AMX) bf16 autocast + channels-last + ``torch.compile``
    trains the tiny preset about twice as fast as plain fp32 (``docs/training.md``); the
    first compile takes about 47 s, and inductor's on-disk cache makes later runs of the
    same shapes start in seconds. CUDA keeps ``compile`` opt-in.
    """
    if cfg.compile is not None:
        return bool(cfg.compile)
    return device.type == "cpu" and uses_bf16(device, cfg.amp) and shutil.which("g++") is not None


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (0-based): constant, or a cosine decay to 0 over ``epochs``.

    A pure function of the config and the epoch, rather than a scheduler object with
    state: a resumed run recomputes it, and extending ``epochs`` stretches the decay.
    """
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
    return cfg.lr


def _kept(path: Path) -> str:
    return f"the last good checkpoint is {path}" if path.is_file() else "no checkpoint was written yet"


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam (paper, section 4.3). On CUDA the fused kernel: one launch for every
    parameter, and it reads ``found_inf``, so a step can be skipped on the device."""
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda")


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Load an optimiser state saved by a fused or an unfused Adam into either.

    ``load_state_dict`` takes the ``fused``/``foreach`` flags from the file; a run
    started on the CPU (unfused) and resumed on CUDA (fused) keeps this optimiser's,
    and the step counters move to the parameters' device as the fused kernel needs.
    """
    fused = bool(optimizer.defaults.get("fused"))
    groups = [{**group, "fused": fused, "foreach": None if fused else group.get("foreach")}
              for group in saved["param_groups"]]
    optimizer.load_state_dict({**saved, "param_groups": groups})


def training_loader(dataset: Dataset, batch_size: int, sampler: DistributedSampler, num_workers: int,
                    device: torch.device, generator: torch.Generator, drop_last: bool = False) -> DataLoader:
    """This process's training batches: pinned memory on CUDA, workers kept across epochs."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=device.type == "cuda", generator=generator, persistent_workers=num_workers > 0,
                      drop_last=drop_last)


def train_one_epoch(net: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, ctx: distributed.Context,
                    amp: bool = True, bar: tqdm | None = None, epoch: int = 1, last_good: Path | None = None,
                    skip_on_device: bool = False, channels_last: bool | None = None) -> dict[str, float]:
    """One pass over ``loader``; returns mean loss, accuracy and images/s over all processes.

    A step is bad when its gradients (averaged over processes, so every process
    agrees) hold a NaN or an infinity, which a non-finite loss always gives. The
    guarantee depends on ``skip_on_device``:

    - ``False`` (the CPU, where reading a value costs no wait): the flag is read
      after every backward pass and :class:`NonFiniteLossError` is raised before the
      update, so the bad step never reaches the weights.
    - ``True`` (CUDA; needs a fused optimiser): the step never waits for the GPU. The
      flag goes to the fused Adam kernel as ``found_inf``, which skips that step's
      update on the device (weights, moments and step count unchanged), and is
      counted there. It is read on the progress bar's refreshes (rank 0, one process
      only: the run then stops there) and at the end of the epoch, where every
      process raises :class:`NonFiniteLossError` together, before anything is saved.
      So no non-finite value reaches the weights, and the newest ``last.pt`` predates
      the first bad step; the steps between it and the stop are computed in vain.

    The running loss and accuracy also stay on the device: rank 0 reads them every
    ``LOG_EVERY`` steps, and only when ``bar`` is shown.
    """
    if skip_on_device and not optimizer.defaults.get("fused"):
        raise ValueError("skip_on_device needs a fused optimiser (torch.optim.Adam(..., fused=True)): "
                         "only the fused kernels read found_inf")
    net.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if channels_last is None:
        channels_last = uses_channels_last(ctx.device, amp)
    show = bar is not None and not bar.disable
    sums = torch.zeros(2, dtype=torch.float64, device=ctx.device)  # loss sum, correct predictions
    bad = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # bad steps, first bad step, its loss
    seen = 0  # this process's images: the host knows them, no device counter needed
    t0 = time.perf_counter()
    for step, (images, labels) in enumerate(loader):
        images = images.to(ctx.device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(ctx.device, non_blocking=True)
        with autocast(ctx.device, amp):
            logits = net(images)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # the largest |gradient| is NaN or infinite exactly when some gradient is
        found_inf = ~torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None],
                                                   float("inf")).isfinite()
        if skip_on_device:
            first = found_inf & (bad[0] == 0)
            bad[1] = torch.where(first, step + 1, bad[1])
            bad[2] = torch.where(first, loss.detach().double(), bad[2])
            bad[0] += found_inf
            optimizer.found_inf = found_inf.float()
        elif found_inf:
            raise NonFiniteLossError(_non_finite(loss.item(), epoch, step + 1, last_good, stopped="before the update"))
        optimizer.step()
        seen += labels.numel()
        sums[0] += loss.detach() * labels.numel()
        sums[1] += (logits.argmax(1) == labels).sum()
        if bar is not None:
            bar.update()
        if show and step % LOG_EVERY == 0:
            loss_sum, correct, skipped, first_step, first_loss = torch.cat([sums, bad]).tolist()
            if skipped and not ctx.distributed:
                raise NonFiniteLossError(_non_finite(first_loss, epoch, int(first_step), last_good,
                                                     stopped=f"at step {step + 1}; the bad steps' updates were skipped"))
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}",
                            img_s=f"{seen * ctx.world_size / (time.perf_counter() - t0):.0f}")
    totals = torch.cat([sums, sums.new_tensor([seen])])  # one host-to-device copy an epoch
    distributed.all_reduce_sum(totals, ctx)
    loss_sum, correct, seen, skipped, first_step, first_loss = torch.cat([totals, bad]).tolist()
    if skipped:
        raise NonFiniteLossError(_non_finite(first_loss, epoch, int(first_step), last_good,
                                             stopped="at the end of the epoch; the bad steps' updates were skipped"))
    return {"loss": loss_sum / seen, "accuracy": correct / seen,
            "images_per_s": seen / (time.perf_counter() - t0)}


def _non_finite(loss: float, epoch: int, step: int, last_good: Path | None, stopped: str) -> str:
    what = f"the training loss is {loss}" if not math.isfinite(loss) else \
        f"the gradients are not finite (training loss {loss:.4f})"
    where = f" ({_kept(last_good)})" if last_good is not None else ""
    return (f"{what} at epoch {epoch}, step {step}: training stopped {stopped}{where}. "
            f"Lower --lr or check the data for NaN or infinite pixels")


def write_log(history: list[dict[str, Any]], path: Path) -> None:
    """The per-epoch log as CSV, rewritten whole (so a resumed run's log has no stale rows)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(history)


def plot_curves(history: list[dict[str, Any]]) -> Figure:
    """Loss and accuracy per epoch, train and validation, with the best epoch marked."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in history]
    for ax, key, label in ((loss_ax, "loss", "cross-entropy"), (acc_ax, "accuracy", "accuracy")):
        ax.plot(epochs, [r[f"train_{key}"] for r in history], marker="o", label="train")
        ax.plot(epochs, [r[f"val_{key}"] for r in history], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    best = [r["epoch"] for r in history if r["best"]]
    if best:
        acc_ax.axvline(best[-1], color="grey", linestyle="--", label=f"best (epoch {best[-1]})")
    acc_ax.legend()
    return fig
