"""Loading the public ``ir50.pth`` (MS-Celeb-1M) weights into the backbone."""

from __future__ import annotations

import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, unsafe, or with wrong keys or shapes."""


@dataclass
class LoadReport:
    """What :func:`load_ir50` did: backbone keys matched, checkpoint keys ignored, keys missing."""

    path: str
    matched: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.path}: {len(self.matched)} backbone tensors loaded, {len(self.ignored)} checkpoint keys ignored"
        if self.missing:
            text += f", {len(self.missing)} backbone keys missing (left as initialised)"
        return text


_SPLIT_BODY = re.compile(r"^body([1-4])\.(\d+)\.(.*)$")


def _canonical_keys(state: dict[str, torch.Tensor], stage_ends: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Undo a ``module.`` prefix and POSTER++'s ``body1``..``body4`` split into ``body.N``."""
    stage_starts = (0,) + tuple(end + 1 for end in stage_ends[:-1])
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        split = _SPLIT_BODY.match(key)
        if split:
            stage, unit, rest = int(split[1]), int(split[2]), split[3]
            key = f"body.{stage_starts[stage - 1] + unit}.{rest}"
        out[key] = value
    return out


def _refused_content(message: str) -> str:
    """What torch's weights-only reader refused, from its error message, leaving out
    its advice on how to load the file anyway."""
    if found := re.search(r"GLOBAL (\S+) was not an allowed global", message):
        return f"unpickling it would import {found[1]}, which is code, not a tensor or a plain container"
    if found := re.search(r"whose module (\S+) is blocked", message):
        return f"unpickling it would import from the module {found[1]}"
    if found := re.search(r"(\S+) must be (\S+) to load", message):
        return f"unpickling it needs {found[1]}, which is not a tensor or a plain container"
    detail = message.rsplit("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0].strip() \
        if "WeightsUnpickler error:" in message else ""
    return "it holds pickle instructions that a file of tensors never needs" + (
        f" ({detail.splitlines()[0]})" if detail else "")


def load_weights_only(path: str | Path, map_location: str | torch.device = "cpu"):
    """``torch.load(path, weights_only=True)``: tensors and plain containers, never code.

    A file that holds anything else is refused, without running it, with a two-line
    :class:`CheckpointError`: what was refused, and why. torch's own message is not
    passed on, because it advises re-running with ``weights_only=False``, which for a
    file from an unknown source is the wrong advice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(2)
    if not magic:
        raise CheckpointError(f"{path}: empty file")
    if magic != b"PK" and magic[:1] != b"\x80":  # torch.save writes a zip archive, or a pickle (protocol 2+)
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # torch's note before refusing
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: {_refused_content(str(err))}.\n"
            "sfer reads only tensors and plain containers from a checkpoint, so that no file can run code on "
            "this machine.") from None
    except (RuntimeError, EOFError, OSError, LookupError, ValueError) as err:  # raised on bytes torch cannot parse
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict with :func:`load_weights_only`; unwrap ``{"state_dict": ...}``.

    A file whose unpickling would run code (or that holds anything but tensors and
    plain containers) is refused, without running it, with a :class:`CheckpointError`.
    """
    state = load_weights_only(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state dict), got {type(state).__name__}")
    return state


def load_ir50(model: nn.Module, path: str | Path, strict: bool = True) -> LoadReport:
    """Load ``ir50.pth`` into ``model.backbone`` (or into ``model`` if it is the backbone).

    Accepted layouts: the canonical ``input_layer.*`` / ``body.0.*`` .. ``body.23.*``
    (``output_layer.*`` and other keys are ignored and listed in the report), with a
    ``module.`` prefix, inside a ``{"state_dict": ...}`` wrapper, or split by stage
    as POSTER++ stores it (``body1.*``, ``body2.*``, ``body3.*``). A backbone key
    that is missing raises :class:`CheckpointError` naming it (with ``strict=False``
    it is reported and left as initialised, e.g. for POSTER++'s three-stage file); a
    key of the wrong shape always raises. Nothing is changed when it raises.
    """
    backbone = getattr(model, "backbone", model)
    state = _canonical_keys(read_state_dict(path), backbone.stage_ends)
    own = backbone.state_dict()
    report = LoadReport(path=str(path))
    for key, value in own.items():
        if key not in state:
            report.missing.append(key)
        elif state[key].shape != value.shape:
            raise CheckpointError(
                f"{path}: key {key!r} has shape {tuple(state[key].shape)}, the backbone expects {tuple(value.shape)}"
            )
        else:
            report.matched.append(key)
    report.ignored = sorted(set(state) - set(own))
    if report.missing and strict:
        shown = ", ".join(repr(k) for k in report.missing[:5])
        raise CheckpointError(
            f"{path}: {len(report.missing)} backbone keys missing, e.g. {shown}; "
            "is this an IR50 checkpoint for this preset? (strict=False loads the rest)"
        )
    backbone.load_state_dict({k: state[k] for k in report.matched}, strict=False)
    return report
