"""The training loop: :func:`fit` trains, validates, checkpoints, stops early and tests.

One epoch is: shuffle (a :class:`DistributedSampler` seeded by ``seed + epoch``, on
one process too, so the global batches are the same whatever the process count),
train, validate, step the schedule, write ``last.pt`` (and ``best.pt`` when the
validation accuracy improved) and ``log.csv``. After the last epoch, or when
``patience`` epochs pass without a better validation accuracy, the best weights
are tested and ``metrics.json`` and ``curves.png`` are written; ``metrics.json``
records which faces chose the best epoch (``selected_on``: see
:func:`sfer.engine.evaluate.selected_on`).

Reproducibility: the model is initialised from ``seed``; ``last.pt`` stores every
RNG each process uses (torch, CUDA, NumPy, Python, the loader's generator), so a
resumed run continues exactly where the interrupted one stopped: on the CPU with
``num_workers=0`` the weights are bit-identical to an uninterrupted run. ``last.pt``
is written every ``save_every`` epochs and after the last one (early stop included).

The GPU path: the training step queues work without waiting for it (no host sync:
the running loss, accuracy and a non-finite flag stay on the device and are read
every ``LOG_EVERY`` steps by rank 0 when its bar is shown, and at the end of the
epoch); fused Adam; cuDNN autotuning; channels-last and bf16 autocast; under
``torchrun``, optionally, batch norm over the global batch (``sync_batchnorm``). Validation and the
test run the plain model, never the DDP or compiled wrapper: a process whose shard of
a small split is empty then has nothing to wait for, and validation adds no compiled
graph. With ``compile`` the training loader drops its last partial batch, so that
every step has one shape (``docs/training.md`` lists what recompiles). The loader's
workers ship uint8 images at their own size, which the device resizes, normalises
and erases (:func:`sfer.engine.evaluate.uses_device_preprocessing`); the CPU keeps
the PIL transforms.
"""

from __future__ import annotations

import csv
import json
import math
import random
import shutil
import time
import warnings
from dataclasses import dataclass, field
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
from .evaluate import (autocast, build_splits, confusion_matrix, device_preprocess, eval_loader, report, selected_on,
                       summarize, uses_bf16, uses_channels_last, uses_device_preprocessing)

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

    The steps below run in the order of the random draws (model initialisation, then
    the loaders' seeds, then a resumed run's saved states), so the same seed gives the
    same weights.
    """
    start = time.perf_counter()
    cfg, resumed = resolve_config(config, **overrides)
    ctx = distributed.setup(cfg.device)
    try:
        data = _load_data(cfg, resumed, ctx, datasets)
        model, net, optimizer, compiled = _build(cfg, resumed, ctx, len(data.classes), len(data.splits["train"]))
        generator, sampler, loaders = _make_loaders(cfg, ctx, data.splits, compiled, data.collate_fn)
        run = _Run(cfg, ctx, data, model, net, optimizer, compiled, generator, sampler, loaders)
        _resume(run, resumed)
        for epoch in range(run.first_epoch, cfg.epochs):
            if run.state["bad_epochs"] >= cfg.patience:
                break
            _run_epoch(run, epoch, progress)
        return _test(run, progress, start)
    finally:
        distributed.teardown(ctx)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class _Data:
    """The splits of a run, their classes and preprocessing, and which faces choose the best epoch.

    Where the splits ship uint8 images (CUDA), the device finishes their batches:
    ``train_preprocess`` with random erasing, ``eval_preprocess`` without, and
    ``collate_fn`` batches them (see :func:`sfer.engine.evaluate.device_preprocess`).
    """

    splits: dict[str, Dataset]
    classes: list[str]
    preprocessing: dict[str, Any]
    selected_on: str
    train_preprocess: nn.Module | None = None
    eval_preprocess: nn.Module | None = None
    collate_fn: Any = None


@dataclass
class _Run:
    """What the steps of one run share: the model and its wrapper, the optimiser, the
    loaders and the early-stopping state that ``last.pt`` saves."""

    cfg: TrainConfig
    ctx: distributed.Context
    data: _Data
    model: nn.Module
    net: nn.Module  # what trains: the model, wrapped by DDP and torch.compile where they apply
    optimizer: torch.optim.Optimizer
    compiled: bool
    generator: torch.Generator
    sampler: DistributedSampler
    loaders: dict[str, DataLoader]
    state: dict[str, Any] = field(default_factory=lambda: {
        "best_val_accuracy": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": [], "train_time_s": 0.0})
    first_epoch: int = 0

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def channels_last(self) -> bool:
        return uses_channels_last(self.ctx.device, self.cfg.amp)

    def say(self, *args: Any) -> None:
        """Print on rank 0 only."""
        if self.ctx.is_main:
            print(*args)


def _load_data(cfg: TrainConfig, resumed: dict | None, ctx: distributed.Context,
               datasets: dict[str, Dataset] | None) -> _Data:
    """The splits (the config's, or ``datasets``), checked to share the train split's classes
    (and the resumed checkpoint's); a warning where the test split chooses the best epoch."""
    preprocessing = resumed["preprocessing"] if resumed else {
        "image_size": PRESETS[cfg.preset].image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    source = "val" if datasets is not None else selected_on(cfg)
    uint8 = datasets is None and uses_device_preprocessing(ctx.device)  # given data sets keep their own transforms
    if datasets is None:
        datasets = build_splits(cfg, preprocessing, uint8=uint8)
    classes = list(datasets["train"].classes)
    for split in ("val", "test"):
        if list(datasets[split].classes) != classes:
            raise ValueError(f"the {split} split's classes {list(datasets[split].classes)} differ from "
                             f"the train split's {classes}")
    if resumed:
        check_classes(resumed["classes"], classes, source=cfg.resume)
    if source == "test" and ctx.is_main:
        warnings.warn(f"{cfg.dataset}: select_on_test chooses the best epoch on the test split that metrics.json "
                      f"reports (the papers' protocol), so its test accuracy is optimistic; without it, "
                      f"{cfg.val_fraction:.0%} of train is held out for validation", stacklevel=3)
    data = _Data(datasets, classes, preprocessing, source)
    if uint8:
        data.train_preprocess, data.collate_fn = device_preprocess(preprocessing, ctx.device, cfg.erase_p)
        data.eval_preprocess, _ = device_preprocess(preprocessing, ctx.device)
    return data


def _build(cfg: TrainConfig, resumed: dict | None, ctx: distributed.Context, num_classes: int, num_train: int
           ) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer, bool]:
    """``(model, net, optimizer, compiled)``: the model (initialised from the seed, so the same on
    every process; a resumed run's weights), the optimiser, and ``net``, the model wrapped by
    DDP and ``torch.compile`` where they apply, which is what trains."""
    cuda = ctx.device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # one input size: cuDNN times its algorithms once per shape
    _seed_everything(cfg.seed)
    model = build_model(cfg.preset, cfg.variant, num_classes=num_classes, topn=cfg.topn, regions=cfg.regions)
    if cfg.ir50 and not resumed:
        loaded = load_ir50(model, cfg.ir50)
        if ctx.is_main:
            print(loaded)
    if resumed:
        model.load_state_dict(resumed["model"])
    synced = ctx.distributed and cfg.sync_batchnorm
    if synced:
        model = distributed.sync_batchnorm(model, ctx.device)
    model.to(ctx.device)
    if uses_channels_last(ctx.device, cfg.amp):
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg, ctx.device)
    # Synchronised batch norm keeps the running statistics equal on every process, so
    # DDP need not broadcast them before every forward.
    net: nn.Module = DistributedDataParallel(model, device_ids=[ctx.device] if cuda else None,
                                             broadcast_buffers=not synced) if ctx.distributed else model
    compiled = will_compile(cfg, ctx.device, num_train)
    if compiled:
        net = compile_model(net, synced, ctx)
    return model, net, optimizer, compiled


def _make_loaders(cfg: TrainConfig, ctx: distributed.Context, splits: dict[str, Dataset], compiled: bool,
                  collate_fn=None) -> tuple[torch.Generator, DistributedSampler, dict[str, DataLoader]]:
    """The loaders: the sampler shuffles by ``seed + epoch``; the generator (seeded by
    ``seed + rank``) seeds the worker processes. A compiled step would recompile for a
    last partial batch, so compiled training drops it."""
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} (the global batch) must divide by the "
                         f"{ctx.world_size} processes")
    local_batch = cfg.batch_size // ctx.world_size
    workers = cfg.num_workers if cfg.num_workers is not None else (
        min(8, distributed.usable_cores() // ctx.world_size) if ctx.device.type == "cuda" else 0)
    _seed_everything(cfg.seed + ctx.rank)
    generator = torch.Generator().manual_seed(cfg.seed + ctx.rank)
    sampler = DistributedSampler(splits["train"], num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=True, seed=cfg.seed)
    train_loader = training_loader(splits["train"], local_batch, sampler, workers, ctx.device, generator,
                                   drop_last=compiled, collate_fn=collate_fn)
    if len(train_loader) == 0:
        raise ValueError(f"the {len(splits['train'])} training images make no full batch of {cfg.batch_size}"
                         f"{' (compiled training drops the partial one)' if compiled else ''}: lower --batch-size")
    return generator, sampler, {
        "train": train_loader, "val": eval_loader(splits["val"], local_batch, ctx, workers, collate_fn),
        "test": eval_loader(splits["test"], local_batch, ctx, workers, collate_fn)}


def _resume(run: _Run, resumed: dict | None) -> None:
    """Restore the optimiser, the early-stopping state and every RNG from ``last.pt``; make ``--out``."""
    if resumed:
        if "optimizer" not in resumed:
            raise CheckpointError(f"{run.cfg.resume} is an inference checkpoint (no optimiser state): "
                                  f"resume from the run's last.pt")
        load_optimizer_state(run.optimizer, resumed["optimizer"])
        run.state = dict(resumed["progress"])
        run.first_epoch = int(resumed["epoch"])
        rng = resumed["rng"]
        restore_rng(rng[run.ctx.rank] if len(rng) == run.ctx.world_size else rng[0], run.generator)
        run.say(f"resumed from {run.cfg.resume} after epoch {run.first_epoch}")
    if run.ctx.is_main:
        run.out.mkdir(parents=True, exist_ok=True)


def _run_epoch(run: _Run, epoch: int, progress: bool) -> None:
    """Train one epoch (0-based ``epoch``), validate, update the early-stopping state, save, log."""
    cfg, ctx, state = run.cfg, run.ctx, run.state
    run.sampler.set_epoch(epoch)
    t0 = time.perf_counter()
    lr = learning_rate(cfg, epoch)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    bar = tqdm(total=len(run.loaders["train"]), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
               disable=not (progress and ctx.is_main), dynamic_ncols=True)
    train = train_one_epoch(run.net, run.loaders["train"], run.optimizer, ctx, amp=cfg.amp, bar=bar,
                            epoch=epoch + 1, last_good=run.out / "last.pt", sync_free=ctx.device.type == "cuda",
                            channels_last=run.channels_last, preprocess=run.data.train_preprocess)
    distributed.broadcast_buffers(run.model, ctx)  # every process validates rank 0's running statistics
    counts, val_loss = confusion_matrix(run.model, run.loaders["val"], len(run.data.classes), ctx, amp=cfg.amp,
                                        preprocess=run.data.eval_preprocess)
    val_acc = summarize(counts, run.data.classes)["accuracy"]
    if not math.isfinite(val_loss):
        raise NonFiniteLossError(f"the validation loss is {val_loss} after epoch {epoch + 1}: the weights "
                                 f"diverged; {_kept(run.out / 'last.pt')}. Lower --lr and resume or restart")
    improved = val_acc > state["best_val_accuracy"]
    if improved:
        state.update(best_val_accuracy=val_acc, best_epoch=epoch + 1, bad_epochs=0)
    else:
        state["bad_epochs"] += 1
    seconds = time.perf_counter() - t0
    state["train_time_s"] += seconds
    state["history"].append({
        "epoch": epoch + 1, "train_loss": train["loss"], "train_accuracy": train["accuracy"], "val_loss": val_loss,
        "val_accuracy": val_acc, "lr": lr, "images_per_s": train["images_per_s"], "epoch_time_s": seconds,
        "best": improved})
    _save(run, epoch + 1, {"val_accuracy": val_acc, "val_loss": val_loss}, improved)
    summary = (f"train loss {train['loss']:.4f} acc {train['accuracy']:.4f} | val loss {val_loss:.4f} "
               f"acc {val_acc:.4f}{' (best)' if improved else ''} | {train['images_per_s']:.0f} img/s")
    if bar.disable:
        run.say(f"epoch {epoch + 1}/{cfg.epochs}: {summary} | {seconds:.1f} s")
    else:
        bar.set_postfix_str(summary)
    bar.close()
    if state["bad_epochs"] >= cfg.patience:
        run.say(f"early stop: no better validation accuracy for {cfg.patience} epochs "
                f"(best {state['best_val_accuracy']:.4f} at epoch {state['best_epoch']})")


def _save(run: _Run, epochs_done: int, metrics: dict[str, float], improved: bool) -> None:
    """``last.pt`` every ``save_every`` epochs, after the last and at an early stop; ``best.pt``
    when the validation accuracy improved; ``log.csv`` always. Gathering the RNG states
    for ``last.pt`` is a collective: every process takes the same branch."""
    cfg, state = run.cfg, run.state
    save_last = epochs_done % cfg.save_every == 0 or epochs_done == cfg.epochs or state["bad_epochs"] >= cfg.patience
    if save_last or improved:
        ckpt = _checkpoint(run, epochs_done, metrics, training_state=save_last)
        if run.ctx.is_main and save_last:
            atomic_save(ckpt, run.out / "last.pt")
        if run.ctx.is_main and improved:
            atomic_save(strip_checkpoint(ckpt), run.out / "best.pt")
    if run.ctx.is_main:
        write_log(state["history"], run.out / "log.csv")


def _checkpoint(run: _Run, epoch: int, metrics: dict, training_state: bool) -> dict[str, Any]:
    """The checkpoint dict; ``training_state`` adds what a resume needs."""
    ckpt = {"format": FORMAT, "version": VERSION, "model": run.model.state_dict(), "model_config": run.model.config,
            "classes": run.data.classes, "preprocessing": run.data.preprocessing, "config": run.cfg.to_dict(),
            "epoch": epoch, "metrics": metrics}
    if training_state:
        ckpt.update(optimizer=run.optimizer.state_dict(),
                    rng=distributed.all_gather(capture_rng(run.generator), run.ctx), progress=run.state)
    return ckpt


def _test(run: _Run, progress: bool, start: float) -> dict[str, Any]:
    """Test the best weights; write ``metrics.json`` and ``curves.png``; return the metrics."""
    cfg, ctx, state, out, classes = run.cfg, run.ctx, run.state, run.out, run.data.classes
    distributed.barrier(ctx)  # rank 0 has written best.pt
    if not (out / "best.pt").is_file():
        raise RuntimeError(f"no epoch was trained and {out / 'best.pt'} does not exist: raise --epochs")
    run.model.load_state_dict(load_checkpoint(out / "best.pt", map_location=ctx.device)["model"])
    counts, test_loss = confusion_matrix(run.model, run.loaders["test"], len(classes), ctx, amp=cfg.amp,
                                         progress=progress, desc="test", preprocess=run.data.eval_preprocess)
    test = summarize(counts, classes)
    history = state["history"]
    metrics = {
        "test_accuracy": test["accuracy"], "test_loss": test_loss,
        "best_val_accuracy": state["best_val_accuracy"], "best_epoch": state["best_epoch"],
        "selected_on": run.data.selected_on,
        "epochs": len(history), "stopped_early": state["bad_epochs"] >= cfg.patience,
        "per_class_accuracy": test["per_class_accuracy"], "confusion_matrix": test["confusion_matrix"],
        "classification_report": report(counts, classes)[0], "classes": classes,
        "train_images_per_s": float(np.mean([r["images_per_s"] for r in history])) if history else None,
        "train_time_s": state["train_time_s"], "wall_time_s": time.perf_counter() - start,
        "device": str(ctx.device), "world_size": ctx.world_size, "torch": torch.__version__,
        "bf16": uses_bf16(ctx.device, cfg.amp), "compiled": run.compiled,
        "model_config": run.model.config, "config": cfg.to_dict(),
        "checkpoints": {"last": str(out / "last.pt"), "best": str(out / "best.pt")},
    }
    if ctx.is_main:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        plot_curves(history).savefig(out / "curves.png", dpi=110)
        run.say(f"test accuracy {test['accuracy']:.4f} (best val {state['best_val_accuracy']:.4f} at epoch "
                f"{state['best_epoch']}, chosen on {run.data.selected_on}); {metrics['wall_time_s']:.0f} s; "
                f"wrote {out}")
    return metrics


MIN_COMPILED_BATCHES = 10  # a training split of fewer full batches is a smoke test: compiling would not pay


def will_compile(cfg: TrainConfig, device: torch.device, num_train: int | None = None) -> bool:
    """``cfg.compile``, or where it is ``None`` (the default): compile on a CPU that runs bf16
    natively when a C++ compiler is there for inductor's kernels, for a training split of at
    least ``MIN_COMPILED_BATCHES`` full batches (``num_train`` images; ``None``: assume so).

    On such a CPU (AVX512-BF16 or AMX) bf16 autocast + channels-last + ``torch.compile``
    trains the tiny preset about twice as fast as plain fp32 (``docs/training.md``); the
    first compile takes about 47 s, and inductor's on-disk cache makes later runs of the
    same shapes start in seconds, so it pays over a real run and not over a few batches
    (compiled training also drops the last partial batch). CUDA keeps ``compile`` opt-in.
    """
    if cfg.compile is not None:
        return bool(cfg.compile)
    enough = num_train is None or num_train >= MIN_COMPILED_BATCHES * cfg.batch_size
    return device.type == "cpu" and enough and uses_bf16(device, cfg.amp) and shutil.which("g++") is not None


def compile_model(net: nn.Module, synced: bool, ctx: distributed.Context) -> nn.Module:
    """``torch.compile(net)``; with synchronised batch norm, a warning first (rank 0): Dynamo
    cannot trace ``SyncBatchNorm``'s collective and breaks the graph at every such layer,
    so the compiled step runs as many small graphs and gains little."""
    if synced and ctx.is_main:
        warnings.warn("--compile with --sync-batchnorm: Dynamo breaks the graph at every SyncBatchNorm layer, "
                      "which costs most of the speed-up; drop one of the two", stacklevel=2)
    return torch.compile(net)


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
    """Adam (paper, section 4.3). On CUDA the fused kernel: one launch for every parameter."""
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda")


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Load the saved moments and step counts into ``optimizer``, keeping its settings.

    ``load_state_dict`` would also restore every setting the file holds: the weight
    decay and betas of the interrupted run, though ``--resume last.pt --weight-decay 0``
    asks for others, and the ``fused`` flag of the device it ran on. The settings are
    this optimiser's (built from the resumed run's config), so a resumed run trains with
    the config it records; the state is the file's (a run started on the CPU, unfused,
    resumes on CUDA, fused, and back: the step counters move to the parameters' device).
    """
    settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    if len(settings) != len(saved["param_groups"]):
        raise CheckpointError(f"the saved optimiser has {len(saved['param_groups'])} parameter groups, "
                              f"this one {len(settings)}")
    groups = [{**group, **own} for group, own in zip(saved["param_groups"], settings)]
    optimizer.load_state_dict({**saved, "param_groups": groups})


def training_loader(dataset: Dataset, batch_size: int, sampler: DistributedSampler, num_workers: int,
                    device: torch.device, generator: torch.Generator, drop_last: bool = False,
                    collate_fn=None) -> DataLoader:
    """This process's training batches: pinned memory on CUDA, workers kept across epochs."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=device.type == "cuda", generator=generator, persistent_workers=num_workers > 0,
                      drop_last=drop_last, collate_fn=collate_fn)


def train_one_epoch(net: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, ctx: distributed.Context,
                    amp: bool = True, bar: tqdm | None = None, epoch: int = 1, last_good: Path | None = None,
                    sync_free: bool = False, channels_last: bool | None = None, preprocess: nn.Module | None = None
                    ) -> dict[str, float]:
    """One pass over ``loader``; returns mean loss, accuracy and images/s over all processes.

    ``preprocess`` finishes uint8 batches on the device, random erasing included
    (:func:`sfer.engine.evaluate.device_preprocess`); ``None`` takes the batches as they come.

    A step is bad when its gradients (averaged over processes, so every process
    agrees) hold a NaN or an infinity, which a non-finite loss always gives. A bad
    step stops the run with :class:`NonFiniteLossError`, naming the first bad step,
    before anything is saved after it, so ``last_good`` stays the newest checkpoint.
    When the flag is read depends on ``sync_free``:

    - ``False`` (the CPU, where reading a value costs no wait): after every backward
      pass, and the run stops before the update.
    - ``True`` (CUDA): the step never waits for the GPU. The flag, the first bad
      step and its loss stay on the device and are read on the progress bar's
      refreshes (rank 0, one process only: the run then stops there) and at the end of
      the epoch, where every process stops together. The updates of the bad steps
      have reached the weights in memory by then; they are never saved.

    Why not skip the bad update on the device, as ``GradScaler`` does by handing fused
    Adam a ``found_inf`` tensor: the run stops at the next read either way and saves
    nothing after the bad step, so the skip would keep clean only weights that are
    then thrown away, at the price of a private optimiser attribute and a fused-only
    optimiser.

    The running loss and accuracy also stay on the device: rank 0 reads them every
    ``LOG_EVERY`` steps, and only when ``bar`` is shown.
    """
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
        if preprocess is not None:
            images = preprocess(images)  # (B, 3, h, w) uint8 -> (B, 3, S, S) normalised, erased
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
        if sync_free:
            first = found_inf & (bad[0] == 0)
            bad[1] = torch.where(first, step + 1, bad[1])
            bad[2] = torch.where(first, loss.detach().double(), bad[2])
            bad[0] += found_inf
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
                                                     stopped=f"at step {step + 1}"))
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}",
                            img_s=f"{seen * ctx.world_size / (time.perf_counter() - t0):.0f}")
    totals = torch.cat([sums, sums.new_tensor([seen])])  # one host-to-device copy an epoch
    distributed.all_reduce_sum(totals, ctx)
    loss_sum, correct, seen, skipped, first_step, first_loss = torch.cat([totals, bad]).tolist()
    if skipped:
        raise NonFiniteLossError(_non_finite(first_loss, epoch, int(first_step), last_good,
                                             stopped="at the end of the epoch"))
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
