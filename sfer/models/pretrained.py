"""Loading the public ``ir50.pth`` (MS-Celeb-1M) weights into the backbone."""

from __future__ import annotations

import pickle
import re
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


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict with ``torch.load(weights_only=True)``; unwrap ``{"state_dict": ...}``.

    A file whose unpickling would run code (or that holds anything but tensors and
    plain containers) is refused, without running it, with a :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: it is not a plain tensor checkpoint and unpickling it could run code "
            f"(torch.load weights_only=True said: {str(err).splitlines()[0]})"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({err})") from err
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
