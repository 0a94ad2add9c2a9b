"""``sfer demo``: the workbook's main job in one command, offline, on a CPU.

Trains the tiny ``full`` SFER-MDFAE and its ``rw`` baseline (window attention
instead of KROA) on the synthetic classroom faces, or loads the shipped
checkpoints; evaluates both on the synthetic test split; explains them with
Grad-CAM of L4, window attention and KROAFE (the paper's Figure 8), with the
sources of the two attention blocks beside their Grad-CAM, and measures how much
of each map lies on the faces' key regions (energy and pointing game). Everything lands in one
folder::

    report/
      index.md          the report (Markdown), linking the figures below
      summary.json      its numbers
      accuracy.png      test accuracy of both models, overall and per class
      figure8.png       one face per class: the face, L4, window attention and KROAFE (Grad-CAM and sources)
      energy.png        key-region energy and pointing game per map, with the uniform baseline
      evaluation/<variant>/   evaluation.json, confusion_matrix.png (Figure 5)
      runs/<variant>/         training outputs (checkpoints, log, curves), when trained here

The explained faces are drawn from their own seed, so none of them was seen in training.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from sfer.engine import NonFiniteLossError, evaluate_checkpoint, fit
from sfer.engine.distributed import resolve_device
from sfer.explain import METHODS, class_names, explain, figure8, load_model, measure_maps
from sfer.explain.figures import measures_figure
from sfer.explain.loading import CHECKPOINTS, synthetic_faces

MODELS = {"full": "KROA (SFER-MDFAE)", "rw": "window attention"}
WORKBOOK_COMMAND = "jupyter lab notebooks/"


def shown(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies under it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def shipped_checkpoints(folder: str | Path) -> dict[str, Path]:
    """``{"full": folder/tiny_full.pt, "rw": folder/tiny_rw.pt}``; a clear error names a missing one."""
    paths = {variant: Path(folder) / f"tiny_{variant}.pt" for variant in MODELS}
    for path in paths.values():
        if not path.is_file():
            raise FileNotFoundError(
                f"checkpoint not found: {shown(path)} (--use-shipped reads tiny_full.pt and tiny_rw.pt from "
                f"{shown(folder)}; pass --checkpoints DIR to read another folder, or drop --use-shipped to "
                f"train the models here)")
    return paths


def accuracy_figure(evaluations: dict[str, dict[str, Any]]) -> Figure:
    """Test accuracy of each model, overall and per true class, with the chance level."""
    first = next(iter(evaluations.values()))
    names = first["classes"]
    groups = ["all", *names]
    x = np.arange(len(groups))
    width = 0.8 / len(evaluations)
    fig = Figure(figsize=(1.1 * len(groups) + 1.5, 3.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for k, (variant, result) in enumerate(evaluations.items()):
        values = [result["accuracy"], *(result["per_class_accuracy"][name] for name in names)]
        bars = ax.bar(x + (k - (len(evaluations) - 1) / 2) * width, values, width,
                      label=f"{variant}, {MODELS[variant]}: {result['accuracy']:.1%}")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.axhline(1 / len(names), color="grey", ls="--", label="chance")
    ax.set_xticks(x, groups)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("test accuracy")
    ax.set_xlabel(f"true class ('all': over the {first['num_samples']} synthetic test faces)")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    return fig


def _finite(value: float) -> float | None:
    """JSON has no NaN: an undefined interval becomes ``null``."""
    return value if math.isfinite(value) else None


def run_demo(out: str | Path = "report", checkpoints: str | Path | None = None, epochs: int | None = None,
             num_train: int | None = None, num_val: int | None = None, num_test: int | None = None,
             num_faces: int = 6, num_energy_faces: int = 120, faces_seed: int = 1, method: str = "gradcam",
             device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Train (or load from ``checkpoints``) the tiny full and rw models, evaluate, explain, report.

    ``checkpoints``: a folder with ``tiny_full.pt`` and ``tiny_rw.pt`` (the shipped ones
    are in :data:`sfer.explain.loading.CHECKPOINTS`); ``None`` trains both with
    :func:`sfer.engine.fit`'s synthetic recipe, ``epochs``/``num_train``/``num_val``
    overriding it. ``num_test`` sizes the test split (default: as trained).
    ``num_faces`` faces go to Figure 8 and ``num_energy_faces`` to the key-region
    energy, all drawn from ``faces_seed``. Returns what ``summary.json`` holds.
    """
    start = time.perf_counter()
    out = Path(out)
    trained_here = checkpoints is None
    if not trained_here and any(v is not None for v in (epochs, num_train, num_val)):
        raise ValueError("--epochs, --num-train and --num-val set up training, and --use-shipped trains nothing: "
                         "drop them, or drop --use-shipped")
    if num_faces < 1 or num_energy_faces < 2:
        raise ValueError(f"the report needs at least 1 face for Figure 8 and 2 for the energy's confidence "
                         f"interval, got --num-faces {num_faces} and --num-energy-faces {num_energy_faces}")
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {list(METHODS)}")
    try:
        cam_device = resolve_device(device)
    except RuntimeError as err:  # CUDA asked for and absent: the user's to fix
        raise ValueError(str(err)) from None
    paths = None if trained_here else shipped_checkpoints(checkpoints)
    out.mkdir(parents=True, exist_ok=True)
    stages = 5 if trained_here else 4  # train full and rw (or load them), evaluate, Figure 8, energy
    steps = iter(range(1, stages + 1))

    def stage(text: str) -> None:
        print(f"[{next(steps)}/{stages}] {text}")

    training = {}
    if trained_here:
        paths = {}
        for variant in MODELS:
            run_dir = out / "runs" / variant
            stage(f"training the {variant} model ({MODELS[variant]}) in {shown(run_dir)}")
            metrics = fit(variant=variant, out=str(run_dir), epochs=epochs, num_train=num_train, num_val=num_val,
                          num_test=num_test, device=device, progress=progress)
            paths[variant] = run_dir / "best.pt"
            training[variant] = {key: metrics[key] for key in (
                "epochs", "best_epoch", "best_val_accuracy", "train_time_s", "wall_time_s")}
    else:
        stage("using the checkpoints " + " and ".join(shown(p) for p in paths.values()))

    stage("evaluating both models on the synthetic test split")
    evaluations = {variant: evaluate_checkpoint(path, split="test", out=out / "evaluation" / variant,
                                                variant=variant, device=device, num_test=num_test, progress=progress)
                   for variant, path in paths.items()}
    if evaluations["full"]["classes"] != evaluations["rw"]["classes"]:
        raise ValueError(f"{shown(paths['rw'])} has classes {evaluations['rw']['classes']}, {shown(paths['full'])} "
                         f"has {evaluations['full']['classes']}: the two models cannot be compared")
    accuracy_figure(evaluations).savefig(out / "accuracy.png")

    full, window = (load_model(paths[v], map_location=cam_device) for v in MODELS)
    # labels cycle through the classes, so the first six faces show one class each
    faces = synthetic_faces(max(num_faces, num_energy_faces), seed=faces_seed)
    names = class_names(full)
    if names != faces.classes:
        raise ValueError(f"{shown(paths['full'])} has classes {names}, the synthetic faces have {faces.classes}")

    stage(f"Grad-CAM and sources of L4, window attention and KROAFE on {num_faces} faces (Figure 8)")
    result = explain(full, faces.images[:num_faces], window, method=method)
    figure8(result, names, method=method,
            row_labels=[f"true: {names[y]}" for y in faces.labels[:num_faces]]).savefig(out / "figure8.png")

    stage(f"key-region energy of {num_energy_faces} fresh faces (seed {faces_seed})")
    maps = {"l4": (full, "l4", method), "window": (window, "window", method), "kroafe": (full, "kroafe", method),
            "window sources": (window, "window", "attention_sources"),
            "kroafe sources": (full, "kroafe", "attention_sources")}
    energy = measure_maps(maps, faces.images[:num_energy_faces], faces.masks[:num_energy_faces],
                          faces.labels[:num_energy_faces], measures=("energy", "pointing"))
    measures_figure(energy).savefig(out / "energy.png", dpi=120)

    summary = {
        "source": "trained" if trained_here else "checkpoints",
        "models": {variant: {"checkpoint": shown(paths[variant]), "accuracy": evaluations[variant]["accuracy"],
                             "loss": evaluations[variant]["loss"], "num_samples": evaluations[variant]["num_samples"],
                             "per_class_accuracy": evaluations[variant]["per_class_accuracy"],
                             **({"training": training[variant]} if trained_here else {})}
                   for variant in MODELS},
        "classes": names,
        "energy": {"method": method, "confidence": energy.confidence, "num_faces": num_energy_faces,
                   "faces_seed": faces_seed, "explains": "true label",
                   "targets": {name: {measure: dict(zip(("mean", "low", "high"),
                                                        map(_finite, energy.summary(name, measure)[:3])),
                                                    n=energy.summary(name, measure)[3])
                                      for measure in scores}
                               for name, scores in energy.scores.items()}},
        "figure8": {"num_faces": num_faces, "faces_seed": faces_seed, "method": method},
        "figures": {"accuracy": "accuracy.png", "confusion_matrix": "evaluation/full/confusion_matrix.png",
                    "figure8": "figure8.png", "energy": "energy.png"},
        "wall_time_s": time.perf_counter() - start,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "index.md").write_text(report_markdown(summary, energy.markdown()), encoding="utf-8")
    return summary


def report_markdown(summary: dict[str, Any], energy_table: str) -> str:
    """``index.md``: what was run, the numbers and the figures, each with a sentence on how to read it."""
    models, energy = summary["models"], summary["energy"]
    if summary["source"] == "trained":
        run = models["full"]["training"]
        origin = (f"trained here from scratch on the synthetic classroom faces ({run['epochs']} epochs for the full "
                  f"model; training outputs in `runs/`)")
    else:
        origin = "loaded from " + " and ".join(f"`{m['checkpoint']}`" for m in models.values())
    lines = [
        "# SFER-MDFAE demo report",
        "",
        f"Two tiny models, {origin}: `full` is SFER-MDFAE (MDPFA + KROAFE), `rw` replaces KROA by window "
        f"attention over fixed local windows. Classes: {', '.join(summary['classes'])}.",
        "",
        f"## Accuracy on the synthetic test split ({models['full']['num_samples']} faces)",
        "",
        "| model | attention on L4 | checkpoint | test accuracy | test loss |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {v} | {MODELS[v]} | `{m['checkpoint']}` | {m['accuracy']:.2%} | {m['loss']:.4f} |"
          for v, m in models.items()),
        "",
        "![test accuracy of both models, overall and per class](accuracy.png)",
        "",
        "The full model's confusion matrix, row-normalised (the paper's Figure 5): row = true class, "
        "column = predicted class. `dedicated` and `neutral` are drawn close on purpose.",
        "",
        f"![confusion matrix of the full model]({summary['figures']['confusion_matrix']})",
        "",
    ]
    if summary["source"] == "trained":
        lines += ["Training curves: [full](runs/full/curves.png), [rw](runs/rw/curves.png).", ""]
    lines += [
        "## Where the models look (the paper's Figure 8)",
        "",
        f"{summary['figure8']['num_faces']} faces never seen in training (seed {summary['figure8']['faces_seed']}); "
        f"{summary['figure8']['method']} of L4 and KROAFE (full model) and of window attention (rw model), "
        "every map explaining the class the full model predicts. The attention blocks are shown two ways: "
        f"{summary['figure8']['method']} of their output shows where the evidence *sits* after attention "
        "moved it; their *sources* show which L4 tokens it was read from (the attention probabilities and "
        "LayerNorm's scale held fixed, so each token's share of the logit is exact), without the part every "
        "token carries straight through the residual join, past the attention.",
        "",
        "![Grad-CAM and sources of L4, window attention and KROAFE](figure8.png)",
        "",
        "## Key-region energy and pointing game",
        "",
        f"Energy: the share of each map's raw mass inside the face's key-region mask (the pixels where its class "
        f"cue is drawn). Pointing game: whether the map's maximum lies on the mask, one L4 cell of tolerance. "
        f"Over {energy['num_faces']} fresh faces (seed {energy['faces_seed']}), each map explaining the true "
        f"label, mean and 95% interval; `uniform` is what a map that looks everywhere alike scores. ROAD "
        f"faithfulness costs minutes more: `python benchmarks/key_region_energy.py`, figures in "
        f"`docs/explainability.md`.",
        "",
        energy_table,
        "",
        "![key-region energy and pointing game per map](energy.png)",
        "",
        "## Next",
        "",
        f"Open the workbook, which builds every module step by step: `{WORKBOOK_COMMAND}`. The numbers of this "
        "report are in `summary.json`.",
        "",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    checkpoints = args.checkpoints or (CHECKPOINTS if args.use_shipped else None)
    try:
        run_demo(args.out, checkpoints=checkpoints, epochs=args.epochs, num_train=args.num_train,
                 num_val=args.num_val, num_test=args.num_test, num_faces=args.num_faces,
                 num_energy_faces=args.num_energy_faces, faces_seed=args.faces_seed, method=args.method,
                 device=args.device, progress=not args.no_progress)
    except (OSError, ValueError, NonFiniteLossError) as err:  # CheckpointError is a ValueError
        print(f"sfer demo: error: {err}", file=sys.stderr)
        return 1
    print(f"report: {shown(Path(args.out) / 'index.md')}")
    print(f"open the workbook: {WORKBOOK_COMMAND}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="train (or load) the tiny full and rw models, evaluate and explain them: a report folder",
        description="The main job, offline on a CPU: train the tiny full and rw models on synthetic classroom "
                    "faces (or load the shipped ones with --use-shipped), evaluate them on the test split, "
                    "draw Grad-CAM of L4, window attention and KROAFE and measure the key-region energy. "
                    "Writes OUT/index.md, OUT/summary.json and the figures.")
    arg = parser.add_argument
    arg("--out", default="report", metavar="DIR", help="report folder (default report)")
    arg("--use-shipped", action="store_true",
        help="load data_samples/checkpoints/tiny_full.pt and tiny_rw.pt instead of training")
    arg("--checkpoints", metavar="DIR", help="load tiny_full.pt and tiny_rw.pt from DIR (implies --use-shipped)")
    arg("--epochs", type=int, help="training epochs (default 8)")
    arg("--num-train", type=int, help="synthetic training images (default 2400)")
    arg("--num-val", type=int, help="synthetic validation images (default 600)")
    arg("--num-test", type=int, help="synthetic test images (default 600, or as the checkpoints were trained)")
    arg("--num-faces", type=int, default=6, help="faces in the Figure 8 grid (default 6, one per class)")
    arg("--num-energy-faces", type=int, default=120, help="faces the key-region energy averages (default 120)")
    arg("--faces-seed", type=int, default=1, help="seed of the explained faces, not a training seed (default 1)")
    arg("--method", default="gradcam", choices=list(METHODS), help="CAM method (default gradcam)")
    arg("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    arg("--no-progress", action="store_true", help="one line per epoch instead of progress bars")
    parser.set_defaults(func=run)
