"""Write synthetic faces to disk as an image-folder tree, with their masks and a manifest.

Layout under ``out_dir`` (what ``build_dataset("imagefolder", out_dir, split)`` and
``load_masks(out_dir, split)`` read)::

    classes.txt                          class names, one a line, in label order
    manifest.csv                         one row per image: file, split, index, label, class,
                                         mask_file, key_parts, seed, nuisance and expression values
    generator.json                       the arguments that made the tree
    {train,val,test}/<class>/00000.png   RGB images
    masks/{train,val,test}/<class>/00000.png   1-bit key-region masks, same size
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image

from .. import __version__
from .real import CLASSES_FILE, MASKS_DIR
from .synthetic import NuisanceStrengths, synthetic_splits

SPLITS = ("train", "val", "test")
_OUTPUTS = (*SPLITS, MASKS_DIR, "manifest.csv", CLASSES_FILE, "generator.json")


def split_sizes(n: int, fractions: Sequence[float]) -> dict[str, int]:
    """``n`` images shared out by ``fractions`` (train, val, test); test takes the rounding."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split_fractions must be three non-negative numbers summing to 1, got {fractions}")
    n_train, n_val = round(n * fractions[0]), round(n * fractions[1])
    return {"train": n_train, "val": n_val, "test": n - n_train - n_val}


def export_synthetic(out_dir, n: int, seed: int = 0, image_size: int = 112,
                     split_fractions: Sequence[float] = (0.7, 0.15, 0.15), classes: str | Sequence[str] = "scfed",
                     nuisance: float | Mapping[str, float] | NuisanceStrengths = 1.0,
                     overwrite: bool = False) -> Path:
    """Write ``n`` faces from ``synthetic_splits(seed=seed)`` under ``out_dir``; returns the manifest path.

    Refuses to write over an earlier export unless ``overwrite`` (which first removes
    only what an export writes: the split and mask folders and the three files).
    """
    out_dir = Path(out_dir)
    existing = [out_dir / name for name in _OUTPUTS if (out_dir / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{out_dir} already holds an export ({existing[0].name}); pass overwrite=True")
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    sizes = split_sizes(n, split_fractions)
    datasets = synthetic_splits(sizes["train"], sizes["val"], sizes["test"], seed=seed, image_size=image_size,
                                classes=classes, nuisance=nuisance)
    class_names = datasets["train"].classes
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CLASSES_FILE).write_text("".join(f"{c}\n" for c in class_names), encoding="utf-8")
    (out_dir / "generator.json").write_text(json.dumps({
        "generator": "sfer.data.SyntheticClassroomFaces", "sfer_version": __version__, "n": n, "seed": seed,
        "image_size": image_size, "split_fractions": list(split_fractions), "classes": class_names,
        "nuisance": vars(datasets["train"].strengths), "split_seeds": {s: d.seed for s, d in datasets.items()},
    }, indent=2) + "\n", encoding="utf-8")

    rows = []
    for split, ds in datasets.items():
        for name in class_names:
            (out_dir / split / name).mkdir(parents=True)
            (out_dir / MASKS_DIR / split / name).mkdir(parents=True)
        for i in range(len(ds)):
            label = ds.targets[i]
            file = f"{split}/{class_names[label]}/{i:05d}.png"
            mask_file = f"{MASKS_DIR}/{file}"
            ds.render(i).save(out_dir / file, optimize=True)
            Image.fromarray(ds.mask(i)).save(out_dir / mask_file, optimize=True)  # bool -> 1-bit PNG
            rows.append({"file": file, "split": split, "index": i, "label": label, "class": class_names[label],
                         "mask_file": mask_file, "key_parts": "+".join(ds.key_parts(label)), "seed": ds.seed,
                         **ds.nuisances(i), **ds.expression(i)})
    manifest = out_dir / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["file"])
        writer.writeheader()
        writer.writerows({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in rows)
    return manifest
