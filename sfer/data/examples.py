"""Small stand-ins for the real data sets' files, drawn as synthetic faces (notebook 01).

The real data sets cannot ship, so notebook 01 writes a tiny copy of each layout, the
seven basic expressions drawn twice, and reads it back with :func:`sfer.data.build_dataset`:

```python
from sfer.data.examples import write_example_datasets, tree_lines
paths = write_example_datasets(root)            # root/fer2013, rafdb, affectnet, scfed_like
print("\\n".join(tree_lines(paths["rafdb"])))
```

Each writer follows the layout its loader reads (``docs/data.md``): FER2013's CSV of
48x48 gray pixels as text, FERPlus's vote counts next to it (row 1 is a 5-5 tie, which
the loader must exclude, not drop silently), RAF-DB's label file and aligned images,
AffectNet's folder per class index, and an ImageFolder tree with masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .real import AFFECTNET_CLASSES, FER2013_CLASSES, FERPLUS_CLASSES, RAFDB_CLASSES

SYNONYMS = {"angry": "anger", "happy": "happiness", "sad": "sadness"}  # FER2013's names in RAF-DB and FERPlus
USAGE = ["Training"] * 7 + ["PublicTest"] * 4 + ["PrivateTest"] * 3  # FER2013's split of the 14 rows


def label_in(classes: list[str], expression: str) -> int:
    """Index of one of the seven basic expressions (FER2013's names) in another data set's class list."""
    return classes.index(expression) if expression in classes else classes.index(SYNONYMS[expression])


def example_faces(seed: int = 0, n: int = 14, image_size: int = 100) -> list[tuple[Image.Image, str]]:
    """``n`` synthetic faces of the seven basic expressions, in order, with their FER2013 names."""
    from .synthetic import SyntheticClassroomFaces

    faces = SyntheticClassroomFaces(n, seed=seed, classes="basic", image_size=image_size, nuisance=0.5)
    return [(faces.render(i), faces.classes[faces.targets[i]]) for i in range(n)]


def write_fer2013(folder: Path, drawn: list[tuple[Image.Image, str]]) -> Path:
    """``fer2013.csv``: ``emotion,pixels,Usage``, 48x48 gray pixels as space-separated text."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "fer2013.csv", "w") as f:
        f.write("emotion,pixels,Usage\n")
        for (image, expression), use in zip(drawn, USAGE):
            pixels = np.asarray(image.convert("L").resize((48, 48), Image.BILINEAR))
            f.write(f"{FER2013_CLASSES.index(expression)},{' '.join(map(str, pixels.flatten()))},{use}\n")
    return folder / "fer2013.csv"


def write_ferplus(folder: Path, drawn: list[tuple[Image.Image, str]]) -> Path:
    """``fer2013new.csv``: the same rows relabelled by 10 annotators; row 1 is a 5-5 tie with neutral."""
    with open(folder / "fer2013new.csv", "w") as f:
        f.write("Usage,Image name," + ",".join(FERPLUS_CLASSES) + ",unknown,NF\n")
        for row, ((_, expression), use) in enumerate(zip(drawn, USAGE)):
            votes = [0] * 10
            votes[label_in(FERPLUS_CLASSES, expression)] = 8 if row != 1 else 5
            votes[0] += 2 if row != 1 else 5  # votes[0] is neutral
            f.write(f"{use},fer{row:07d}.png,{','.join(map(str, votes))}\n")
    return folder / "fer2013new.csv"


def write_rafdb(folder: Path, drawn: list[tuple[Image.Image, str]], num_train: int = 10) -> Path:
    """``EmoLabel/list_patition_label.txt`` (labels 1..7) and ``Image/aligned/<name>_aligned.jpg``."""
    (folder / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (folder / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (image, expression) in enumerate(drawn):
        name = f"train_{k + 1:05d}" if k < num_train else f"test_{k - num_train + 1:04d}"
        image.save(folder / "Image" / "aligned" / f"{name}_aligned.jpg", quality=90)
        lines.append(f"{name}.jpg {label_in(RAFDB_CLASSES, expression) + 1}\n")
    (folder / "EmoLabel" / "list_patition_label.txt").write_text("".join(lines))
    return folder


def write_affectnet(folder: Path, drawn: list[tuple[Image.Image, str]], num_train: int = 7) -> Path:
    """``train/<class index>/`` and ``val/<class index>/`` folders of JPEGs."""
    for k, (image, expression) in enumerate(drawn):
        split = folder / ("train" if k < num_train else "val") / str(label_in(AFFECTNET_CLASSES, expression))
        split.mkdir(parents=True, exist_ok=True)
        image.save(split / f"{k:04d}.jpg", quality=90)
    return folder


def write_example_datasets(root, seed: int = 0) -> dict[str, Path]:
    """Every stand-in under ``root``: ``fer2013`` (FER2013 and FERPlus), ``rafdb``, ``affectnet``
    and ``scfed_like`` (an ImageFolder tree with masks, as ``sfer data synth`` writes it)."""
    from .export import export_synthetic

    root, drawn = Path(root), example_faces(seed)
    write_fer2013(root / "fer2013", drawn)
    write_ferplus(root / "fer2013", drawn)
    write_rafdb(root / "rafdb", drawn)
    write_affectnet(root / "affectnet", drawn)
    export_synthetic(root / "scfed_like", n=36, seed=seed, split_fractions=(0.5, 0.25, 0.25))
    return {"fer2013": root / "fer2013", "ferplus": root / "fer2013", "rafdb": root / "rafdb",
            "affectnet": root / "affectnet", "imagefolder": root / "scfed_like"}


def tree_lines(folder, limit: int = 3, depth: int = 1) -> list[str]:
    """The layout under ``folder``, like the ``tree`` command: folders first, ``limit`` entries per folder."""
    entries = sorted(Path(folder).iterdir(), key=lambda p: (p.is_file(), p.name))
    lines = []
    for path in entries[:limit]:
        lines.append("    " * depth + path.name + "/" * path.is_dir())
        if path.is_dir():
            lines += tree_lines(path, limit, depth + 1)
    if len(entries) > limit:
        lines.append("    " * depth + f"... {len(entries) - limit} more")
    return lines
