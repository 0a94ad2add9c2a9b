"""Evaluation: data splits for a config, the confusion matrix, reports and Figure 5.

Everything is computed from one confusion matrix (counts, rows = true class,
columns = predicted class): accuracy, per-class accuracy (recall) and
scikit-learn's classification report. A matrix sums across processes with one
``all_reduce``, so evaluation under ``torchrun`` needs no gathering of predictions.
The matrix and the loss accumulate on the device and are read once, at the end.
"""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.figure import Figure
from scipy.stats import binomtest
from sklearn.metrics import classification_report
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm  # text bars: a notebook widget bar is saved as a stale "0%" without a kernel

from sfer.data import build_dataset, eval_transform, synthetic_splits, train_transform
from sfer.data.real import DATASET_SPLITS
from sfer.data.real import hold_out, validation_is_test
from sfer.data.transforms import GpuPreprocess, collate_uint8, uint8_transform

from . import distributed
from .checkpoint import build_from_checkpoint, check_classes, load_checkpoint
from .config import TrainConfig

# ---------------------------------------------------------------------------- data

def selected_on(cfg: TrainConfig) -> str:
    """Which faces choose the best epoch, as ``metrics.json`` records it (``selected_on``).

    - ``"val"``: the data set's own validation split (FER2013's and FERPlus's
      PublicTest, an image-folder tree's ``val/``, the synthetic faces' val split).
    - ``"held-out train"``: RAF-DB and AffectNet, whose ``val`` would be the test split
      they report, hold out ``val_fraction`` of train instead (seeded by ``data_seed``,
      stratified by class), so the test faces never choose the model.
    - ``"test"``: with ``select_on_test``, the papers' protocol on those two data sets;
      the test accuracy is then optimistic, and :func:`sfer.engine.fit` warns.
    """
    if cfg.dataset == "synthetic" or not validation_is_test(cfg.dataset, cfg.data):
        if cfg.select_on_test:
            raise ValueError(f"select_on_test: {cfg.dataset} has a validation split of its own; "
                             f"it applies to RAF-DB and AffectNet, whose validation split is their test split")
        return "val"
    return "test" if cfg.select_on_test else "held-out train"


def build_splits(cfg: TrainConfig, preprocessing: dict[str, Any], splits=("train", "val", "test"),
                 uint8: bool = False) -> dict[str, Dataset]:
    """The data sets a config names, with training augmentation on ``train`` only; ``val``
    is the split :func:`selected_on` names.

    Their items are ``(normalised (3, S, S) float, label)``; with ``uint8`` (CUDA, see
    :func:`uses_device_preprocessing`), ``((3, h, w) uint8 at the image's own size, label)``
    with only the flip applied, for :func:`device_preprocess` to finish on the device.
    """
    size, mean, std = preprocessing["image_size"], preprocessing["mean"], preprocessing["std"]
    if uint8:
        transforms = {"train": uint8_transform(flip=cfg.flip), "val": uint8_transform(), "test": uint8_transform()}
    else:
        transforms = {"train": train_transform(size, mean, std, flip=cfg.flip, erase_p=cfg.erase_p),
                      "val": eval_transform(size, mean, std), "test": eval_transform(size, mean, std)}
    if cfg.dataset == "synthetic":
        if cfg.data != "synthetic":
            raise ValueError(f"--data {cfg.data} needs --dataset naming its loader, one of {list(DATASET_SPLITS)} "
                             f"(the synthetic data set generates its data and takes --data synthetic)")
        generated = synthetic_splits(cfg.num_train, cfg.num_val, cfg.num_test, seed=cfg.data_seed,
                                     image_size=size, nuisance=cfg.nuisance, cue=cfg.cue)
        return {split: Rendered(generated[split], transforms[split]) for split in splits}
    if cfg.data == "synthetic":
        raise ValueError(f"--dataset {cfg.dataset} reads files: pass --data FOLDER (the data set's folder)")
    if not Path(cfg.data).exists():
        raise FileNotFoundError(f"data path does not exist: {cfg.data} (for --dataset {cfg.dataset})")
    options = {"num_classes": cfg.affectnet_classes, "crop_faces": cfg.crop_faces} if cfg.dataset == "affectnet" \
        else {}

    def load(split: str, transform) -> Dataset:
        return build_dataset(cfg.dataset, cfg.data, split, transform=transform, skip_bad=cfg.skip_bad, **options)

    source = selected_on(cfg)
    loaded = {}
    if source == "held-out train" and {"train", "val"} & set(splits):
        loaded["train"], loaded["val"] = hold_out(load("train", transforms["train"]), cfg.val_fraction,
                                                  cfg.data_seed, transform=transforms["val"])
    for split in splits:
        if split not in loaded:
            loaded[split] = load("test" if split == "val" and source == "test" else split, transforms[split])
    return {split: loaded[split] for split in splits}


class Rendered(Dataset):
    """A synthetic split drawn once into memory; the (random) transform still runs per access.

    Drawing a face costs about as much as a training step of the tiny model on a CPU,
    so drawing it again every epoch would double the training time. A face is a pure
    function of ``(seed, index)``: drawing it once changes nothing else. The faces are
    drawn by worker processes, one per core, in index order.
    """

    def __init__(self, dataset: Dataset, transform):
        self.source, self.transform = dataset, transform
        self.classes, self.targets = list(dataset.classes), list(dataset.targets)
        dataset.transform = None  # PIL images out, the transform in __getitem__
        workers = min(8, distributed.usable_cores()) if len(dataset) >= 256 else 0
        self.images = [image for image, _ in DataLoader(dataset, batch_size=None, num_workers=workers,
                                                        worker_init_fn=_one_blas_thread)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.targets[i]


def _one_blas_thread(worker_id: int) -> None:
    """The drawing workers already use every core: a multi-threaded BLAS in each would
    oversubscribe them, and OpenBLAS's spinning threads then slow drawing ten-fold."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def eval_loader(dataset: Dataset, batch_size: int, ctx: distributed.Context, num_workers: int,
                collate_fn=None) -> DataLoader:
    """In-order batches of this process's shard (every ``world_size``-th sample, no padding).

    A shard may be empty (a split smaller than the process count); the workers stay
    alive between epochs rather than being forked again for each validation.
    """
    if ctx.distributed:
        dataset = Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=ctx.device.type == "cuda", persistent_workers=num_workers > 0,
                      collate_fn=collate_fn)


def uses_device_preprocessing(device: torch.device) -> bool:
    """Whether the loaders ship uint8 images and the device resizes, normalises and erases
    them (:func:`device_preprocess`): on CUDA only.

    On CUDA this takes the float work off the loader's workers and shrinks what they
    ship (``sfer.data.transforms``). The CPU keeps the PIL transforms: there the device
    is the host, so moving the work would save nothing, and every seeded CPU run keeps
    its random draws and so its weights, to the bit.
    """
    return device.type == "cuda"


def device_preprocess(preprocessing: dict[str, Any], device: torch.device, erase_p: float = 0.0
                      ) -> tuple[GpuPreprocess, Any]:
    """``(preprocess, collate_fn)`` for :func:`build_splits`'s uint8 splits: the module that
    finishes a batch on ``device`` (a checkpoint's ``image_size``, ``mean`` and ``std``;
    training's ``erase_p``), and the loaders' ``collate_fn``, which batches images of mixed sizes."""
    size = preprocessing["image_size"]
    return (GpuPreprocess(size, preprocessing["mean"], preprocessing["std"], erase_p).to(device),
            functools.partial(collate_uint8, size=size))


def uses_bf16(device: torch.device, amp: bool) -> bool:
    """bf16 autocast when ``amp`` and the device computes bf16 natively (CUDA from Ampere on,
    a CPU with AVX512-BF16 or AMX); plain fp32 otherwise: on other CPUs bf16 is emulated and
    slower than fp32."""
    return bool(amp) and distributed.native_bf16(device)


def uses_channels_last(device: torch.device, amp: bool) -> bool:
    """Channels-last tensors on CUDA, and on a CPU that runs bf16 (oneDNN's fast layout)."""
    return device.type == "cuda" or uses_bf16(device, amp)


def autocast(device: torch.device, amp: bool):
    """bf16 autocast where :func:`uses_bf16`; fp32 otherwise."""
    if uses_bf16(device, amp):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --------------------------------------------------------------------- the numbers

@torch.no_grad()
def confusion_matrix(model: nn.Module, loader: DataLoader, num_classes: int, ctx: distributed.Context,
                     amp: bool = True, progress: bool = False, desc: str = "eval", preprocess: nn.Module | None = None
                     ) -> tuple[torch.Tensor, float]:
    """``(counts (C, C) int64, mean cross-entropy)`` over the loader, summed over processes.

    ``preprocess`` finishes uint8 batches on the device (:func:`device_preprocess`).

    Pass the plain model, not a DDP or compiled wrapper: DDP's forward is a
    collective, which hangs when a process has no batch, and a compiled model would
    compile again for eval mode. ``scatter_add_`` counts on the device; ``bincount``
    would read its input's maximum back to the host on every batch.
    """
    model.eval()
    counts = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=ctx.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
    channels_last = uses_channels_last(ctx.device, amp)
    for images, labels in tqdm(loader, desc=desc, leave=False, disable=not (progress and ctx.is_main)):
        images = images.to(ctx.device, non_blocking=True)
        if preprocess is not None:
            images = preprocess(images)  # (B, 3, h, w) uint8 -> (B, 3, S, S) normalised
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(ctx.device, non_blocking=True)
        with autocast(ctx.device, amp):
            logits = model(images).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        cells = labels * num_classes + logits.argmax(1)  # (B,) index of (true, predicted)
        counts.scatter_add_(0, cells, torch.ones_like(cells))
    distributed.all_reduce_sum(counts, ctx)
    distributed.all_reduce_sum(loss_sum, ctx)
    counts = counts.view(num_classes, num_classes).cpu()
    return counts, float(loss_sum) / max(int(counts.sum()), 1)


def accuracy_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """``correct / n`` and its Wilson interval (scipy's ``binomtest(...).proportion_ci``).

    Wilson rather than the normal approximation ``p ± 1.96 sqrt(p(1 - p)/n)``: near 100%, as
    the synthetic test sets are, the normal interval reaches past 100% and is too narrow.
    """
    if n <= 0:
        raise ValueError(f"an accuracy needs at least one face, got n = {n}")
    low, high = binomtest(int(correct), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return correct / n, float(low), float(high)


def summarize(counts: torch.Tensor, classes: list[str]) -> dict[str, Any]:
    """Accuracy, per-class accuracy (recall of each true class) and the matrix as lists."""
    counts = counts.to(torch.float64)
    per_class = counts.diag() / counts.sum(1).clamp(min=1)
    return {
        "accuracy": float(counts.diag().sum() / counts.sum().clamp(min=1)),
        "per_class_accuracy": {name: float(a) for name, a in zip(classes, per_class)},
        "confusion_matrix": counts.to(torch.int64).tolist(),
    }


def report(counts: torch.Tensor, classes: list[str]) -> tuple[dict[str, Any], str]:
    """scikit-learn's classification report (dict and text) for a confusion matrix.

    The report depends on the counts alone, so the (true, predicted) pairs are
    re-expanded from the matrix rather than kept around during evaluation.
    """
    idx = np.arange(len(classes))
    flat = counts.numpy().ravel()
    y_true = np.repeat(np.repeat(idx, len(classes)), flat)
    y_pred = np.repeat(np.tile(idx, len(classes)), flat)
    kwargs = dict(labels=idx, target_names=list(classes), zero_division=0, digits=4)
    return (classification_report(y_true, y_pred, output_dict=True, **kwargs),
            classification_report(y_true, y_pred, **kwargs))


def plot_confusion_matrix(counts: torch.Tensor, classes: list[str], title: str | None = None) -> Figure:
    """A row-normalised confusion-matrix heatmap with class names, like the paper's Figure 5."""
    counts = counts.to(torch.float64)
    rates = (counts / counts.sum(1, keepdim=True).clamp(min=1)).numpy()
    n = len(classes)
    fig = Figure(figsize=(1.1 * n + 2.2, 1.0 * n + 1.6), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=9,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    if title:
        ax.set_title(title)
    return fig


# ----------------------------------------------------------------- a checkpoint

def evaluate_checkpoint(checkpoint: str | Path, data: str | None = None, dataset: str | None = None,
                        split: str = "test", out: str | Path | None = None, variant: str | None = None,
                        batch_size: int | None = None, device: str = "auto", num_workers: int | None = None,
                        num_test: int | None = None, progress: bool = True, skip_bad: bool = False,
                        affectnet_classes: int | None = None, crop_faces: bool | None = None) -> dict[str, Any]:
    """Accuracy, classification report and confusion matrix of a checkpoint on one split.

    ``data``/``dataset`` default to what the checkpoint was trained on (for the
    synthetic data: the same generated split, from the stored seed and sizes), and so
    do ``affectnet_classes`` and ``crop_faces``. ``skip_bad`` does not: whether
    training skipped bad images says nothing about the data evaluated now, so bad
    images stop the evaluation unless ``skip_bad=True`` (the result lists those
    skipped). With ``out``, writes ``evaluation.json`` and ``confusion_matrix.png`` there.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    ckpt = load_checkpoint(checkpoint)
    cfg = TrainConfig(**ckpt["config"]).replace(
        data=data, dataset=dataset or ("synthetic" if data == "synthetic" else None), num_test=num_test,
        batch_size=batch_size, device=device, skip_bad=skip_bad, affectnet_classes=affectnet_classes,
        crop_faces=crop_faces)
    ctx = distributed.Context(distributed.use_device(distributed.resolve_device(cfg.device)))
    model = build_from_checkpoint(ckpt, variant=variant, source=str(checkpoint)).to(ctx.device)
    if uses_channels_last(ctx.device, cfg.amp):
        model = model.to(memory_format=torch.channels_last)
    uint8 = uses_device_preprocessing(ctx.device)
    ds = build_splits(cfg, ckpt["preprocessing"], splits=(split,), uint8=uint8)[split]
    check_classes(ckpt["classes"], ds.classes, source=str(checkpoint))
    preprocess, collate_fn = device_preprocess(ckpt["preprocessing"], ctx.device) if uint8 else (None, None)
    workers = num_workers if num_workers is not None else (
        min(4, distributed.usable_cores()) if ctx.device.type == "cuda" else 0)
    counts, loss = confusion_matrix(model, eval_loader(ds, cfg.batch_size, ctx, workers, collate_fn),
                                    len(ds.classes), ctx, amp=cfg.amp, progress=progress, desc=f"evaluate {split}",
                                    preprocess=preprocess)
    as_dict, as_text = report(counts, ds.classes)
    result = {"checkpoint": str(checkpoint), "data": cfg.data, "dataset": cfg.dataset, "split": split,
              "num_samples": int(counts.sum()), "loss": loss, **summarize(counts, ds.classes),
              "classes": list(ds.classes), "report": as_dict, "report_text": as_text,
              "model_config": dict(ckpt["model_config"]),
              "skipped": [list(item) for item in getattr(ds, "skipped", [])]}  # (location, reason) of bad images
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps(result, indent=2))
        title = f"{ckpt['model_config']['preset']}/{ckpt['model_config']['variant']} on {cfg.dataset} {split}: " \
                f"{100 * result['accuracy']:.2f}%"
        plot_confusion_matrix(counts, ds.classes, title).savefig(out / "confusion_matrix.png", dpi=120)
    return result
