"""Checkpoints: atomic writes, ``weights_only`` reads, RNG capture, validation.

A checkpoint is a plain dict of tensors and primitive containers, so that
``torch.load(weights_only=True)`` reads it: a checkpoint downloaded from the
internet can then carry weights but never run code. Keys:

- ``format``, ``version``: identify the file (``sfer-checkpoint``, 1).
- ``model``: the state dict; ``model_config``: :func:`sfer.models.build_model`'s
  arguments; ``classes``: class names in label order; ``preprocessing``: the
  ``image_size``, ``mean`` and ``std`` the model was trained with.
- ``config``: the :class:`~sfer.engine.config.TrainConfig` as a dict; ``epoch``:
  epochs completed; ``metrics``: the figures at that epoch.
- Training state, absent from an inference checkpoint (:func:`strip_checkpoint`):
  ``optimizer``, ``rng`` (one entry per process) and ``progress`` (early-stopping
  counters, the per-epoch history, the accumulated training time). There is no
  scheduler state: the learning rate is a function of the config and the epoch
  (:func:`sfer.engine.train.learning_rate`).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sfer.models import CheckpointError, build_model
from sfer.models.pretrained import load_weights_only

FORMAT, VERSION = "sfer-checkpoint", 1
TRAINING_KEYS = ("optimizer", "rng", "progress")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace``.

    ``os.replace`` is atomic on POSIX and Windows when both names are on one file
    system (hence the same folder): a reader, or a run killed mid-write, sees either
    the old file or the new one, never a truncated mix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read an sfer checkpoint with ``torch.load(weights_only=True)`` and check its format."""
    path = Path(path)
    ckpt = load_weights_only(path, map_location)  # refuses, in two lines, a file that would run code
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        hint = " It looks like a bare state dict: use sfer.models.load_ir50 for backbone weights." \
            if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()) else ""
        raise CheckpointError(f"{path}: not an sfer checkpoint (no format={FORMAT!r} entry).{hint}")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt['version']} is newer than this sfer ({VERSION})")
    missing = [k for k in ("model", "model_config", "classes", "preprocessing", "config", "epoch") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    return ckpt


def strip_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The inference part of a checkpoint: no optimiser, RNG or progress state."""
    return {k: v for k, v in ckpt.items() if k not in TRAINING_KEYS}


def build_from_checkpoint(ckpt: dict[str, Any], variant: str | None = None, preset: str | None = None,
                          source: str = "checkpoint") -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (strictly).

    ``variant``/``preset``, when given, must match the checkpoint's: asking for the
    ``full`` model and silently getting ``rw`` weights would make every comparison wrong.
    """
    config = dict(ckpt["model_config"])
    for name, wanted in (("variant", variant), ("preset", preset)):
        if wanted is not None and wanted != config[name]:
            raise CheckpointError(
                f"{source} holds a {name} {config[name]!r} model, not {wanted!r}; "
                f"drop --{name} or pick a checkpoint trained as {wanted!r}")
    model = build_model(**config)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{source}: weights do not fit a {config} model: {err}") from err
    return model


def load_model(path: str | Path, variant: str | None = None, map_location: str | torch.device = "cpu"
               ) -> nn.Module:
    """A trained model in eval mode, rebuilt from the checkpoint's own config (the one loader).

    The file is read with ``torch.load(weights_only=True)`` (a checkpoint cannot run code)
    and checked (:func:`build_from_checkpoint`). The model gets two plain attributes that the
    explainers, the classroom pipeline and the widgets use: ``eval_transform``, the
    preprocessing it was trained with (PIL image -> normalised tensor, from the checkpoint's
    image size, mean and std), and ``class_names``. Everything else the file holds (the
    training config, the metrics) is :func:`load_checkpoint`'s.
    """
    from sfer.data import eval_transform

    ckpt = load_checkpoint(path, map_location)
    model = build_from_checkpoint(ckpt, variant=variant, source=str(path))
    pre = ckpt["preprocessing"]
    model.eval_transform = eval_transform(pre["image_size"], pre["mean"], pre["std"])
    model.class_names = list(ckpt["classes"])
    return model.eval()


def check_classes(checkpoint_classes: list[str], data_classes: list[str], source: str = "checkpoint") -> None:
    """Refuse a data set whose class names or order differ from the checkpoint's."""
    if list(checkpoint_classes) != list(data_classes):
        raise CheckpointError(
            f"{source} was trained on classes {list(checkpoint_classes)} but the data set has "
            f"{list(data_classes)}: the labels would not mean the same thing")


def capture_rng(generator: torch.Generator | None = None) -> dict[str, Any]:
    """This process's RNG states (torch, CUDA device, NumPy, Python, the loader's generator) as tensors."""
    keys, pos, has_gauss, cached = np.random.get_state()[1:]
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Undo :func:`capture_rng`."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"].cpu())
