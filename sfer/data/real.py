"""Loaders for the real FER data sets the paper uses, which the user brings.

``build_dataset(name, root, split)`` reads each set in the layout it is distributed in:

| name | layout under ``root`` | splits | classes |
| --- | --- | --- | --- |
| ``fer2013`` | ``fer2013.csv``: emotion, pixels, Usage | train/val/test = Training/PublicTest/PrivateTest | ``FER2013_CLASSES`` |
| ``ferplus`` | ``fer2013new.csv`` votes + ``fer2013.csv`` images, row by row | as FER2013 | ``FERPLUS_CLASSES`` |
| ``rafdb`` | ``EmoLabel/list_patition_label.txt``, ``Image/aligned/*_aligned.jpg`` | train/test | ``RAFDB_CLASSES`` |
| ``affectnet`` | ``<split>/<class>/`` folders, or the official ``training.csv``/``validation.csv`` | train/val/test | ``AFFECTNET_CLASSES`` |
| ``imagefolder`` | ``<split>/<class>/*.png`` (SCFED-like, ``sfer data synth``) | train/val/test | ``classes.txt`` or sorted folders |

Every data set yields ``(PIL RGB image, int)`` (or the transformed image) and has
``classes`` and ``targets``. Grayscale images become 3-channel RGB.

**Bad input.** A corrupt or truncated image, an empty file, a missing file or label
file, a label out of range, a malformed CSV row or label line, an empty split or
class folder: by default a ``DataError`` naming the file (and line). Checks that
cost little (files exist and are not empty, labels, CSV fields) run when the data
set is built; decoding an image runs when it is loaded, and a failure names the
file. With ``skip_bad=True`` every image is also decoded once when the data set is
built, and bad items are left out, listed in ``ds.skipped`` as ``(location,
reason)`` and announced by a ``SkippedItemsWarning`` (the command line prints it as
one plain line). An empty split is an error either way. A file given where the data
set's folder is expected (``root=".../fer2013.csv"``) is an error that names the
folder to pass instead.

**Left out on purpose.** Some rows are not usable samples by the data set's own
protocol: FERPlus rows without a majority emotion (a tie, a majority for unknown or
for not-a-face: see ``ferplus_exclusion``), AffectNet rows or class folders of
contempt (7-class setting), none, uncertain or no-face. They are listed in
``ds.excluded`` as ``(location, reason)``, never silently dropped.
"""

from __future__ import annotations

import copy
import csv
import os
import shlex
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FERPLUS_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
RAFDB_CLASSES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
AFFECTNET_CLASSES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
MASKS_DIR = "masks"  # an exported synthetic tree keeps its key-region masks in root/masks/<split>/<class>/
CLASSES_FILE = "classes.txt"  # optional class order of an image-folder tree, one name per line

FER2013_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
DATASET_SPLITS = {
    "fer2013": ("train", "val", "test"),
    "ferplus": ("train", "val", "test"),
    "rafdb": ("train", "test"),  # RAF-DB has no validation split
    "affectnet": ("train", "val", "test"),  # test = the official validation set (see validation_is_test)
    "imagefolder": ("train", "val", "test"),
}


class DataError(ValueError):
    """A bad input file; the message names the file (and line) and what is wrong."""

    def __init__(self, path, reason: str, line: int | None = None):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{_location(path, line)}: {reason}")


def _location(path, line: int | None = None) -> str:
    return f"{path}, line {line}" if line is not None else str(path)


def _data_root(root, name: str, holds: str, layout: tuple[str, ...] = ()) -> Path:
    """``root`` as a Path; a ``DataError`` if it is a file, naming the folder to pass instead.

    ``holds`` says what the folder holds; ``layout`` lists files the loader reads, as
    paths under the folder. Given one of them (``--data .../fer2013.csv``), the folder
    to pass is where the layout puts it (the folder above ``EmoLabel/`` for RAF-DB's
    label file); given any other file, the message names the folder that holds it.
    """
    root = Path(root)
    if not root.is_file():
        return root
    for relative in sorted(layout, key=lambda r: -len(Path(r).parts)):  # the longest match first
        parts = Path(relative).parts
        if len(root.parts) > len(parts) and root.parts[-len(parts):] == parts:
            folder = root.parents[len(parts) - 1]
            raise DataError(root, f"this is a file, but {name} reads the folder that holds {relative}: pass {folder}")
    raise DataError(root, f"this is a file, but {name} reads a folder that holds {holds}; "
                          f"the folder that holds this file is {root.parent}")


class SkippedItemsWarning(UserWarning):
    """``skip_bad=True`` left bad items out of a data set; ``dataset.skipped`` lists them.

    ``str()`` is the message for Python users (the first items, and where the full list
    is); ``summary()`` is the one plain line the command line prints instead.
    """

    def __init__(self, dataset: FaceDataset):
        self.name, self.split, self.root = dataset.name, dataset.split, dataset.root
        self.count = len(dataset.skipped)
        self.check_options = " --affectnet-classes 8" if dataset.name == "affectnet" and len(dataset.classes) == 8 \
            else ""
        first = "; ".join(f"{where}: {reason}" for where, reason in dataset.skipped[:3])
        super().__init__(f"{self.name} {self.split}: skipped {self.count} bad item(s) (listed in .skipped): "
                         f"{first}{' ...' if self.count > 3 else ''}")

    def summary(self) -> str:
        check = f"sfer data check {self.name} {shlex.quote(str(self.root))} --splits {self.split}{self.check_options}"
        return f"{self.name} {self.split}: skipped {self.count} bad item(s); `{check}` lists them"


def _warn_at_caller(warning: Warning) -> None:
    """Warn at the first frame outside ``sfer.data``, so that the warning points at the
    line that built the data set rather than at this module."""
    here, level, frame = os.path.dirname(__file__), 2, sys._getframe(1)
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == here:
        frame, level = frame.f_back, level + 1
    warnings.warn(warning, stacklevel=level)


@dataclass(frozen=True)
class Item:
    """One sample: an image file (with an optional face box) or decoded grayscale pixels."""

    source: Path | np.ndarray  # a file, or a (H, W) uint8 array
    label: int
    where: str  # what an error names: the file, or "file, line N"
    box: tuple[int, int, int, int] | None = None  # (left, top, right, bottom) crop


class FaceDataset(Dataset):
    """The common shape of every real data set: ``samples`` of ``Item``, ``classes``,
    ``targets``, ``skipped`` and ``excluded``; ``ds[i]`` is ``(image, label)``. ``root``
    is the folder the loader was given."""

    def __init__(self, name: str, split: str, classes, transform=None, skip_bad: bool = False, root=None):
        self.name, self.split, self.classes, self.root = name, split, list(classes), root
        self.transform, self.skip_bad = transform, skip_bad
        self.samples: list[Item] = []
        self.skipped: list[tuple[str, str]] = []  # bad input left out (skip_bad=True)
        self.excluded: list[tuple[str, str]] = []  # left out by the data set's protocol

    @property
    def targets(self) -> list[int]:
        return [item.label for item in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, split={self.split!r}, {len(self)} samples, "
                f"{len(self.classes)} classes, {len(self.skipped)} skipped, {len(self.excluded)} excluded)")

    def __getitem__(self, i: int):
        item = self.samples[i]
        image = self.load_image(i)
        if self.transform is not None:
            image = self.transform(image)
        return image, item.label

    def load_image(self, i: int) -> Image.Image:
        """Sample ``i`` as a PIL RGB image; a ``DataError`` naming the file if it cannot be read."""
        item = self.samples[i]
        if isinstance(item.source, np.ndarray):
            return Image.fromarray(item.source, mode="L").convert("RGB")
        return _read_image(item.source, item.box)

    # -- building helpers shared by the loaders -------------------------------------------

    def bad(self, path, reason: str, line: int | None = None) -> None:
        """A bad item: raise, or with ``skip_bad`` record it to leave it out."""
        if not self.skip_bad:
            raise DataError(path, reason, line)
        self.skipped.append((_location(path, line), reason))

    def add_file(self, path: Path, label: int, where: str | None = None, box=None) -> None:
        """Add an image file after the cheap checks (and a full decode with ``skip_bad``).

        ``where`` is what a problem names (default: the file); when it is another
        location (a CSV line), the reason names the file too.
        """
        where = where or str(path)
        of_file = "" if where == str(path) else f": {path}"
        if not path.is_file():
            return self.bad(where, f"image file not found{of_file}")
        if path.stat().st_size == 0:
            return self.bad(where, f"empty file{of_file}")
        if self.skip_bad:
            try:
                _read_image(path, box)
            except DataError as err:
                return self.bad(where, f"{err.reason}{of_file}")
        self.samples.append(Item(path, label, where, box))

    def finish(self, source) -> FaceDataset:
        """Refuse an empty split; warn about what was skipped."""
        if not self.samples:
            raise DataError(source, f"the {self.split!r} split of {self.name} is empty"
                            + (f" ({len(self.skipped)} bad items skipped)" if self.skipped else ""))
        if self.skipped:
            _warn_at_caller(SkippedItemsWarning(self))
        return self


def _read_image(path: Path, box=None) -> Image.Image:
    """Decode fully (so that a truncated file fails here, not later) and convert to RGB."""
    try:
        with Image.open(path) as image:
            image.load()
            if box is not None:
                image = image.crop(box)
            return image.convert("RGB")
    except FileNotFoundError:  # removed since the data set was built
        raise DataError(path, "image file not found") from None
    except UnidentifiedImageError:  # PIL's message repeats the path: say it once
        raise DataError(path, "not an image (no image format recognised)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(path, f"corrupt or truncated image ({err})") from None


def _csv_rows(path: Path, required: tuple[str, ...]):
    """Yield (line, row dict) of a CSV with a header; a missing file or column is a DataError.

    ``line`` is the physical line where the row starts (header = line 1); a row with
    too few or too many fields comes with ``None`` as its dict.
    """
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        missing = [c for c in required if c not in (header or [])]
        if missing:
            raise DataError(path, f"missing column(s) {missing} in the header {header}", 1)
        line = reader.line_num + 1
        for fields in reader:
            if fields:  # blank lines are not rows
                yield line, (dict(zip(header, fields)) if len(fields) == len(header) else None)
            line = reader.line_num + 1


# -- FER2013 and FERPlus ---------------------------------------------------------------


def _parse_pixels(text: str) -> np.ndarray:
    """48 x 48 grayscale from FER2013's space-separated pixel string; ValueError if malformed."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns, and stops, at an unparsable token
        try:
            values = np.fromstring(text, dtype=np.int64, sep=" ")
        except (DeprecationWarning, ValueError):
            raise ValueError("pixels are not space-separated integers") from None
    if values.size != 48 * 48:
        raise ValueError(f"{values.size} pixels, expected 48 x 48 = 2304")
    if values.min() < 0 or values.max() > 255:
        raise ValueError("pixel values outside 0..255")
    return values.astype(np.uint8).reshape(48, 48)


def _fer2013_rows(ds: FaceDataset, csv_path: Path):
    """Yield (line, emotion or None, usage, pixel text) of every well-formed fer2013.csv row;
    malformed rows go to ``ds.bad``. The emotion is None when it is not an integer."""
    for line, row in _csv_rows(csv_path, ("emotion", "pixels", "Usage")):
        if row is None:
            ds.bad(csv_path, "malformed row (wrong number of fields)", line)
            continue
        if row["Usage"] not in FER2013_USAGE.values():
            ds.bad(csv_path, f"unknown Usage {row['Usage']!r} (expected one of {list(FER2013_USAGE.values())})", line)
            continue
        try:
            emotion = int(row["emotion"])
        except ValueError:
            emotion = None
        yield line, emotion, row["Usage"], row["pixels"]


def _add_pixels(ds: FaceDataset, csv_path: Path, line: int, text: str, label: int) -> None:
    try:
        ds.samples.append(Item(_parse_pixels(text), label, _location(csv_path, line)))
    except ValueError as err:
        ds.bad(csv_path, str(err), line)


def fer2013(root, split: str, transform=None, skip_bad: bool = False) -> FaceDataset:
    """FER2013 from ``root/fer2013.csv``: 48x48 grayscale, labels 0..6 in ``FER2013_CLASSES`` order."""
    root = _data_root(root, "fer2013", "fer2013.csv", ("fer2013.csv",))
    csv_path = root / "fer2013.csv"
    ds = FaceDataset("fer2013", split, FER2013_CLASSES, transform, skip_bad, root)
    for line, emotion, usage, pixels in _fer2013_rows(ds, csv_path):
        if emotion is None or not 0 <= emotion < len(FER2013_CLASSES):
            ds.bad(csv_path, f"emotion label must be an integer in 0..{len(FER2013_CLASSES) - 1}", line)
        elif usage == FER2013_USAGE[split]:
            _add_pixels(ds, csv_path, line, pixels, emotion)
    return ds.finish(csv_path)


FERPLUS_VOTE_COLUMNS = FERPLUS_CLASSES + ("unknown", "NF")


def _ferplus_vote(votes: list[int]) -> tuple[int | None, str | None]:
    """``(label, None)`` for a FERPlus majority emotion, else ``(None, why there is none)``."""
    kept = [v if v > 1 else 0 for v in votes]
    if not sum(kept):
        return None, "no majority: only single votes, which FERPlus drops as outliers"
    ranked = sorted(range(len(kept)), key=kept.__getitem__, reverse=True)
    best, second = ranked[0], ranked[1]
    if kept[best] * 2 > sum(kept):
        if best < len(FERPLUS_CLASSES):
            return best, None
        return None, ("majority unknown: the annotators could not tell the emotion" if best == len(FERPLUS_CLASSES)
                      else "majority NF: not a face")
    if kept[best] == kept[second]:
        tied = [FERPLUS_VOTE_COLUMNS[k] for k in ranked if kept[k] == kept[best]]
        return None, f"no majority: a tie between {' and '.join(tied)}"
    return None, "no majority: no column has more than half of the votes"


def ferplus_label(votes: list[int]) -> int | None:
    """FERPlus's own ``majority`` rule (Microsoft/FERPlus, ``ferplus.py``), over the 10 vote
    columns (8 emotions, unknown, NF): single votes are dropped as outliers; the label
    is the column with more than half of the remaining votes, if that column is an
    emotion. Ties, no majority, and majorities for unknown or NF give None."""
    return _ferplus_vote(votes)[0]


def ferplus_exclusion(votes: list[int]) -> str | None:
    """Why a FERPlus row has no label (``ferplus_label`` is None), in ``ds.excluded``: a
    tie, no majority, a majority for unknown, or a majority for NF (not a face)."""
    return _ferplus_vote(votes)[1]


def ferplus(root, split: str, transform=None, skip_bad: bool = False) -> FaceDataset:
    """FERPlus: ``root/fer2013new.csv`` votes for the images of ``root/fer2013.csv``, row by row.

    Each fer2013new.csv row labels the fer2013.csv row of the same position; both files
    must have the same number of rows and the same Usage on each. Left out (in
    ``ds.excluded``): rows with an empty ``Image name`` (images FERPlus removed) and
    rows without a majority emotion, each with its reason (``ferplus_exclusion``:
    a tie, no majority, unknown, not a face). Labels follow the vote columns:
    ``FERPLUS_CLASSES``.
    """
    root = _data_root(root, "ferplus", "fer2013new.csv and fer2013.csv", ("fer2013new.csv", "fer2013.csv"))
    votes_path, images_path = root / "fer2013new.csv", root / "fer2013.csv"
    ds = FaceDataset("ferplus", split, FERPLUS_CLASSES, transform, skip_bad, root)
    columns = FERPLUS_VOTE_COLUMNS
    votes_rows = list(_csv_rows(votes_path, ("Usage", "Image name") + columns))
    image_rows = list(_csv_rows(images_path, ("emotion", "pixels", "Usage")))
    if len(votes_rows) != len(image_rows):
        raise DataError(votes_path, f"{len(votes_rows)} rows, but {images_path} has {len(image_rows)}: "
                                    "FERPlus labels FER2013 row by row")
    for (line, row), (image_line, image_row) in zip(votes_rows, image_rows):
        if row is None:
            ds.bad(votes_path, "malformed row (wrong number of fields)", line)
            continue
        if row["Usage"] != FER2013_USAGE[split]:
            continue
        if image_row is None or image_row["Usage"] != row["Usage"]:
            ds.bad(images_path, f"row does not match {_location(votes_path, line)} (malformed, or another Usage)",
                   image_line)
            continue
        try:
            votes = [int(row[c]) for c in columns]
        except ValueError:
            ds.bad(votes_path, "vote counts must be integers", line)
            continue
        if min(votes) < 0:
            ds.bad(votes_path, "negative vote count", line)
            continue
        label, why_none = _ferplus_vote(votes)
        if not row["Image name"].strip():
            ds.excluded.append((_location(votes_path, line), "no image name: FERPlus removed this image"))
        elif label is None:
            ds.excluded.append((_location(votes_path, line), why_none))
        else:
            _add_pixels(ds, images_path, image_line, image_row["pixels"], label)
    return ds.finish(votes_path)


# -- RAF-DB ----------------------------------------------------------------------------


def rafdb(root, split: str, transform=None, skip_bad: bool = False) -> FaceDataset:
    """RAF-DB basic: ``EmoLabel/list_patition_label.txt`` (sic) lines ``train_00001.jpg 5``;
    images ``Image/aligned/train_00001_aligned.jpg``; labels 1..7 -> ``RAFDB_CLASSES``.

    The split is the name's prefix (``train_`` or ``test_``); RAF-DB has no validation split.
    """
    root = _data_root(root, "rafdb", "EmoLabel/ and Image/aligned/", ("EmoLabel/list_patition_label.txt",))
    label_path = root / "EmoLabel" / "list_patition_label.txt"
    ds = FaceDataset("rafdb", split, RAFDB_CLASSES, transform, skip_bad, root)
    if not label_path.is_file():
        raise DataError(label_path, "label file not found")
    text = label_path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataError(label_path, "empty label file")
    for line, content in enumerate(text.splitlines(), start=1):
        fields = content.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            ds.bad(label_path, f"malformed line {content.strip()!r} (expected 'NAME.jpg LABEL')", line)
            continue
        name, label = fields[0], int(fields[1])
        if not 1 <= label <= len(RAFDB_CLASSES):
            ds.bad(label_path, f"label {label} out of range 1..{len(RAFDB_CLASSES)}", line)
            continue
        prefix = name.split("_", 1)[0]
        if prefix not in ("train", "test"):
            ds.bad(label_path, f"name {name!r} starts with neither train_ nor test_", line)
        elif prefix == split:
            image = root / "Image" / "aligned" / f"{Path(name).stem}_aligned.jpg"
            ds.add_file(image, label - 1, where=str(image))
    return ds.finish(label_path)


# -- AffectNet -------------------------------------------------------------------------

AFFECTNET_CSV = {"train": "training.csv", "val": "validation.csv", "test": "validation.csv"}
_AFFECTNET_NON_EXPRESSIONS = {8: "none", 9: "uncertain", 10: "no-face"}
_AFFECTNET_CONTEMPT = "contempt (7-class setting)"


def affectnet(root, split: str, transform=None, skip_bad: bool = False, num_classes: int = 7,
              crop_faces: bool = True) -> FaceDataset:
    """AffectNet, 7 classes (the paper's setting) or 8 with contempt: ``AFFECTNET_CLASSES``.

    Two layouts, tried in this order:

    - folders ``root/<split>/<class>/`` (``train``, ``val``; ``test`` if present, else
      ``val``), each class folder named by its index (``0``..``7``) or its name; the
      images of a contempt folder (``7``, in the 7-class setting) and of folders
      ``8``..``10`` (none, uncertain, no-face) are listed in ``ds.excluded``;
    - the official CSV ``training.csv`` (train) / ``validation.csv`` (val and test: the
      official validation set is the test set papers report on), in ``root`` or
      ``root/Manually_Annotated_file_lists``, with image paths
      (``subDirectory_filePath``) under ``root/Manually_Annotated_Images`` or
      ``root``. Codes 0..7 are the classes; contempt (7, in the 7-class setting),
      none (8), uncertain (9) and no-face (10) are excluded. With ``crop_faces`` the
      image is cropped to its face box (face_x, face_y, face_width, face_height).
    """
    if num_classes not in (7, 8):
        raise ValueError(f"AffectNet has 7 or 8 classes, not {num_classes}")
    csv_names = ("training.csv", "validation.csv")
    root = _data_root(root, "affectnet", "train/ and val/ class folders, or training.csv and validation.csv",
                      csv_names + tuple(f"Manually_Annotated_file_lists/{name}" for name in csv_names))
    classes = AFFECTNET_CLASSES[:num_classes]
    folder = next((f for f in [root / split] + [root / "val"] * (split == "test") if f.is_dir()), None)
    if folder is not None:
        ds = FaceDataset("affectnet", split, classes, transform, skip_bad, root)
        names = {name: k for k, name in enumerate(classes)} | {str(k): k for k in range(num_classes)}
        left_out = {str(code): reason for code, reason in _AFFECTNET_NON_EXPRESSIONS.items()}
        if num_classes == 7:
            left_out |= {"7": _AFFECTNET_CONTEMPT, AFFECTNET_CLASSES[7]: _AFFECTNET_CONTEMPT}
        return _fill_from_folders(ds, folder, names, left_out)
    lists = next((d for d in (root, root / "Manually_Annotated_file_lists") if (d / AFFECTNET_CSV[split]).is_file()),
                 None)
    if lists is None:
        raise DataError(root, f"no AffectNet layout: neither a {split}/ folder of class folders nor "
                              f"{AFFECTNET_CSV[split]} (in root or Manually_Annotated_file_lists/)")
    csv_path = lists / AFFECTNET_CSV[split]
    images = root / "Manually_Annotated_Images" if (root / "Manually_Annotated_Images").is_dir() else root
    ds = FaceDataset("affectnet", split, classes, transform, skip_bad, root)
    for line, row in _csv_rows(csv_path, ("subDirectory_filePath", "expression")):
        if row is None:
            ds.bad(csv_path, "malformed row (wrong number of fields)", line)
            continue
        try:
            code = int(row["expression"])
        except ValueError:
            ds.bad(csv_path, f"expression {row['expression']!r} is not an integer", line)
            continue
        if not 0 <= code <= 10:
            ds.bad(csv_path, f"expression {code} out of range 0..10", line)
        elif code >= num_classes:
            reason = _AFFECTNET_NON_EXPRESSIONS.get(code, _AFFECTNET_CONTEMPT)
            ds.excluded.append((_location(csv_path, line), reason))
        else:
            box = None
            if crop_faces:
                try:
                    x, y, w, h = (int(float(row[k])) for k in ("face_x", "face_y", "face_width", "face_height"))
                except (KeyError, TypeError, ValueError):
                    ds.bad(csv_path, "face box (face_x, face_y, face_width, face_height) missing or not numbers", line)
                    continue
                if w <= 0 or h <= 0:
                    ds.bad(csv_path, f"empty face box {w}x{h}", line)
                    continue
                box = (x, y, x + w, y + h)
            ds.add_file(images / row["subDirectory_filePath"], code, where=_location(csv_path, line), box=box)
    return ds.finish(csv_path)


# -- Image folders (SCFED-like, and the exported synthetic tree) ------------------------


def _fill_from_folders(ds: FaceDataset, folder: Path, folder_labels: dict[str, int],
                       left_out: dict[str, str] | None = None) -> FaceDataset:
    """Add the images of ``folder/<class>/``; ``folder_labels`` maps a folder name to a label.

    Every class needs a non-empty folder; an unknown folder is bad input (its images
    would have no label); the files of a folder named in ``left_out`` (folder name ->
    reason) and files without an image extension are listed in ``excluded``.
    """
    left_out = left_out or {}
    found: dict[int, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name in left_out:
            ds.excluded += [(str(f), left_out[sub.name]) for f in sorted(sub.iterdir()) if f.is_file()]
        elif sub.name not in folder_labels:
            ds.bad(sub, f"unknown class folder (classes: {ds.classes})")
        else:
            found.setdefault(folder_labels[sub.name], []).append(sub)
    for label, class_name in enumerate(ds.classes):
        if label not in found:
            ds.bad(folder / class_name, "class folder missing")
            continue
        files = sorted(f for sub in found[label] for f in sub.iterdir() if f.is_file())
        images = [f for f in files if f.suffix.lower() in IMAGE_EXTENSIONS]
        ds.excluded += [(str(f), "not an image file name") for f in files if f.suffix.lower() not in IMAGE_EXTENSIONS]
        if not images:
            ds.bad(found[label][0], "empty class folder")
        for f in images:
            ds.add_file(f, label)
    return ds.finish(folder)


def read_classes(root) -> list[str] | None:
    """The class order of an image-folder tree from ``root/classes.txt``, if there is one."""
    path = Path(root) / CLASSES_FILE
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names or len(set(names)) != len(names):
        raise DataError(path, "needs at least one class name per line, without repeats")
    return names


class ImageFolderDataset(FaceDataset):
    """An image-folder split; ``mask(i)`` reads the key-region mask an exported synthetic
    tree keeps for each image (``mask_path``)."""

    def __init__(self, root: Path, split: str, classes, transform=None, skip_bad: bool = False):
        super().__init__("imagefolder", split, classes, transform, skip_bad, root)

    @property
    def has_masks(self) -> bool:
        return (self.root / MASKS_DIR / self.split).is_dir()

    def mask(self, i: int) -> np.ndarray:
        """Boolean (H, W) key-region mask of sample ``i``."""
        return _read_mask(mask_path(self.root, self.samples[i].source), self.samples[i].source)


def imagefolder(root, split: str, transform=None, skip_bad: bool = False, classes=None) -> ImageFolderDataset:
    """``root/<split>/<class>/*.png|jpg|...``, e.g. SCFED or ``sfer data synth`` output.

    Class order: ``classes`` if given, else ``root/classes.txt`` (one name per line;
    ``sfer data synth`` writes it in SCFED order), else the sorted folder names of
    ``root/train`` (or of the split when there is no train folder), so that every split
    numbers the classes alike.
    """
    root = _data_root(root, "imagefolder", "train/, val/ and test/ class folders")
    folder = root / split
    if not folder.is_dir():
        raise DataError(folder, "split folder not found")
    if classes is None:
        classes = read_classes(root)
    if classes is None:
        reference = root / "train" if (root / "train").is_dir() else folder
        classes = sorted(p.name for p in reference.iterdir() if p.is_dir())
    ds = ImageFolderDataset(root, split, classes, transform, skip_bad)
    return _fill_from_folders(ds, folder, {c: k for k, c in enumerate(ds.classes)})


def mask_path(root, image_path) -> Path:
    """Where an exported tree keeps the key-region mask of ``image_path``:
    ``root/masks/<split>/<class>/<name>.png``."""
    root, image_path = Path(root), Path(image_path)
    return root / MASKS_DIR / image_path.relative_to(root).with_suffix(".png")


def _read_mask(path: Path, image_path) -> np.ndarray:
    if not path.is_file():
        raise DataError(path, f"mask file not found (for {image_path})")
    try:
        with Image.open(path) as mask:
            return np.asarray(mask.convert("L")) > 127
    except OSError as err:
        raise DataError(path, f"corrupt mask ({err})") from None


def load_masks(root, split: str) -> np.ndarray:
    """Boolean key-region masks (N, H, W) of an exported synthetic tree, in the order of
    ``build_dataset("imagefolder", root, split)``."""
    ds = imagefolder(root, split)
    return np.stack([ds.mask(i) for i in range(len(ds))])


LOADERS: dict[str, Callable[..., FaceDataset]] = {
    "fer2013": fer2013, "ferplus": ferplus, "rafdb": rafdb, "affectnet": affectnet, "imagefolder": imagefolder,
}


def build_dataset(name: str, root, split: str, transform=None, skip_bad: bool = False, **options) -> FaceDataset:
    """A real data set's ``split`` (see the module docstring); ``options`` go to its loader
    (``affectnet``: num_classes, crop_faces; ``imagefolder``: classes)."""
    if name not in LOADERS:
        raise ValueError(f"unknown data set {name!r}; known: {sorted(LOADERS)}")
    if split not in DATASET_SPLITS[name]:
        hint = " (RAF-DB has no validation split: hold_out one from train)" if name == "rafdb" else ""
        raise ValueError(f"{name} has splits {DATASET_SPLITS[name]}, not {split!r}{hint}")
    return LOADERS[name](root, split, transform=transform, skip_bad=skip_bad, **options)


# -- A validation split where the data set publishes none --------------------------------


def validation_is_test(name: str, root) -> bool:
    """Whether the ``val`` split of data set ``name`` under ``root`` holds the faces papers
    report as its test: RAF-DB has no validation split, and AffectNet's official
    validation set is its test set (unless a folder tree has a ``test/`` of its own).
    Choosing the best epoch on such a split reports a test accuracy chosen on the test
    faces: hold a validation split out of train instead (:func:`hold_out`)."""
    if name == "rafdb":
        return True
    return name == "affectnet" and not (Path(root) / "test").is_dir()


def hold_out(ds: FaceDataset, fraction: float, seed: int, transform=None) -> tuple[FaceDataset, FaceDataset]:
    """``ds`` parted into ``(train, val)``: ``fraction`` of every class held out, drawn by
    ``seed`` (scikit-learn's stratified ``train_test_split``), so that every seed of a run
    validates on the same faces and every class keeps its share. Both parts keep the file
    order; ``val`` takes ``transform`` (evaluation's, not training's augmentation)."""
    from sklearn.model_selection import train_test_split  # here: `import sfer.data` stays light

    try:
        keep, held = train_test_split(np.arange(len(ds)), test_size=fraction, random_state=seed, stratify=ds.targets)
    except ValueError as err:  # a class with one image, or fewer held-out images than classes
        raise DataError(ds.root, f"{ds.name} {ds.split}: cannot hold out a stratified {fraction:.0%} for "
                                 f"validation ({err})") from None
    return _part(ds, sorted(keep), ds.split, ds.transform), _part(ds, sorted(held), "val (held out of train)", transform)


def _part(ds: FaceDataset, indices, split: str, transform) -> FaceDataset:
    """The samples ``indices`` of ``ds`` as a data set of its own; what was skipped or
    excluded while reading stays listed on the training part only."""
    part = copy.copy(ds)
    part.split, part.transform = split, transform
    part.samples = [ds.samples[i] for i in indices]
    if split != ds.split:
        part.skipped, part.excluded = [], []
    return part
