"""Real data sets through the command line, as a new user runs them: AffectNet's class
count and face crops as flags, `sfer evaluate --skip-bad`, the one-line report of
skipped items, `sfer data check`, and a file passed where the folder belongs."""

import csv
import json
import warnings

import pytest
import torch
from PIL import Image

from sfer.cli import main
from sfer.data import build_dataset
from sfer.data.real import AFFECTNET_CLASSES
from sfer.data.cli import plain_data_warnings
from sfer.data.real import SkippedItemsWarning
from sfer.engine.evaluate import build_splits
from sfer.engine.train import resolve_config

AFFECTNET_HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                    "facial_landmarks", "expression", "valence", "arousal"]
PREPROCESSING = {"image_size": 112, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
FAST = ["--preset", "tiny", "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--num-workers", "0",
        "--no-progress"]


def write_affectnet_csv(root, codes_train, codes_val, bad_val=None):
    """The official layout: Manually_Annotated_file_lists/*.csv over Manually_Annotated_Images/."""
    lists, images = root / "Manually_Annotated_file_lists", root / "Manually_Annotated_Images"
    lists.mkdir(parents=True)
    for name, codes in (("training.csv", codes_train), ("validation.csv", codes_val)):
        rows = []
        for k, code in enumerate(codes):
            path = images / name[:5] / f"{k}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 48), (20 * code, 10 * k % 255, 90)).save(path)
            rows.append([f"{name[:5]}/{k}.jpg", 8, 4, 32, 32, "", code, 0.0, 0.0])
        with open(lists / name, "w", newline="") as f:
            csv.writer(f).writerows([AFFECTNET_HEADER, *rows])
    if bad_val is not None:
        (images / "valid" / f"{bad_val}.jpg").write_bytes(b"")
    return images


def test_config_fields_reach_the_affectnet_loader(tmp_path):
    write_affectnet_csv(tmp_path, codes_train=[0, 7, 8], codes_val=[1, 7])
    cfg, _ = resolve_config(dataset="affectnet", data=str(tmp_path), select_on_test=True)  # the whole train split
    seven = build_splits(cfg, PREPROCESSING, splits=("train",))["train"]
    assert seven.classes == list(AFFECTNET_CLASSES[:7]) and seven.targets == [0]
    assert [reason for _, reason in seven.excluded] == ["contempt (7-class setting)", "none"]
    assert seven.samples[0].box == (8, 4, 40, 36)  # cropped to the face box by default
    cfg, _ = resolve_config(dataset="affectnet", data=str(tmp_path), affectnet_classes=8, crop_faces=False,
                            select_on_test=True)
    eight = build_splits(cfg, PREPROCESSING, splits=("train",))["train"]
    assert eight.classes == list(AFFECTNET_CLASSES) and eight.targets == [0, 7]
    assert eight.samples[0].box is None and eight[0][0].shape == (3, 112, 112)
    with pytest.raises(ValueError, match="affectnet_classes must be 7 or 8"):
        resolve_config(dataset="affectnet", data=str(tmp_path), affectnet_classes=6)


def test_train_and_evaluate_flags_skip_bad_and_the_one_line_report(tmp_path, capsys):
    root = tmp_path / "affectnet"
    write_affectnet_csv(root, codes_train=list(range(8)) * 2, codes_val=list(range(8)), bad_val=3)
    run = tmp_path / "run"
    assert main(["train", "--dataset", "affectnet", "--data", str(root), "--affectnet-classes", "8",
                 "--no-crop-faces", "--skip-bad", "--val-fraction", "0.5", "--out", str(run), *FAST]) == 0
    err = capsys.readouterr().err
    check = f"`sfer data check affectnet {root} --splits test --affectnet-classes 8` lists them"
    # AffectNet's published validation split is the test split; validation is held out of train
    assert f"sfer train: affectnet test: skipped 1 bad item(s); {check}" in err
    assert "UserWarning" not in err and "real.py" not in err
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert ckpt["classes"] == list(AFFECTNET_CLASSES)
    assert (ckpt["config"]["affectnet_classes"], ckpt["config"]["crop_faces"]) == (8, False)

    # trained with --skip-bad, but evaluate does not inherit it: the bad file stops it, named
    ev = ["evaluate", "--checkpoint", str(run / "best.pt"), "--split", "test", "--out", str(tmp_path / "ev"),
          "--device", "cpu", "--no-progress"]
    assert main(ev) == 1
    bad = root / "Manually_Annotated_Images" / "valid" / "3.jpg"
    assert capsys.readouterr().err.strip().endswith(f"empty file: {bad}")
    assert main([*ev, "--skip-bad"]) == 0  # 8 classes and no crop: as trained
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("sfer evaluate: affectnet test: skipped 1")
    assert "(7 images, 1 bad skipped)" in captured.out
    saved = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert saved["skipped"] == [[f"{root / 'Manually_Annotated_file_lists' / 'validation.csv'}, line 5",
                                 f"empty file: {bad}"]]
    assert main([*ev, "--skip-bad", "--affectnet-classes", "7"]) == 1  # the label space must match the checkpoint
    assert "was trained on classes" in capsys.readouterr().err


def test_a_file_for_the_folder_on_the_command_line(tmp_path, capsys):
    (tmp_path / "fer2013").mkdir()
    given = tmp_path / "fer2013" / "fer2013.csv"
    given.write_text("emotion,pixels,Usage\n")
    assert main(["train", "--dataset", "fer2013", "--data", str(given), "--out", str(tmp_path / "r"), *FAST]) == 1
    assert capsys.readouterr().err.strip() == (
        f"sfer train: error: {given}: this is a file, but fer2013 reads the folder that holds fer2013.csv: "
        f"pass {tmp_path / 'fer2013'}")


def test_data_check_lists_every_bad_item_and_counts_exclusions(tmp_path, capsys):
    for split in ("train", "val"):
        for k in range(8):
            for j in range(2):
                path = tmp_path / split / str(k) / f"{j}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("L", (20, 20), 30 * j).save(path)
    for j in range(4):
        (tmp_path / "train" / "2" / f"bad{j}.png").write_bytes(b"")
    assert main(["data", "check", "affectnet", str(tmp_path), "--splits", "train"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("train: 14 images; neutral 2, happy 2, sad 2,")
    assert "  4 bad, skipped:\n" in out
    assert all(f"    {tmp_path / 'train' / '2' / f'bad{j}.png'}: empty file\n" in out for j in range(4))
    assert f"    2 contempt (7-class setting) (first: {tmp_path / 'train' / '7' / '0.png'})" in out
    assert main(["data", "check", "affectnet", str(tmp_path), "--splits", "val", "--affectnet-classes", "8"]) == 0
    assert capsys.readouterr().out.startswith("val: 16 images;")
    assert main(["data", "check", "rafdb", str(tmp_path), "--affectnet-classes", "8"]) == 2


def test_plain_data_warnings_formats_only_the_skipped_items_warning(tmp_path, capsys):
    for j in range(2):
        path = tmp_path / "test" / "a" / f"{j}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(path)
    (tmp_path / "test" / "a" / "2.png").write_bytes(b"")
    with warnings.catch_warnings(record=True) as shown_as_warnings:
        warnings.simplefilter("always")
        with plain_data_warnings("sfer x"):
            build_dataset("imagefolder", tmp_path, "test", skip_bad=True)
            warnings.warn("another warning")
        build_dataset("imagefolder", tmp_path, "test", skip_bad=True)  # outside: the Python warning again
    assert capsys.readouterr().err == (f"sfer x: imagefolder test: skipped 1 bad item(s); "
                                       f"`sfer data check imagefolder {tmp_path} --splits test` lists them\n")
    assert [(w.category, str(w.message)[:40]) for w in shown_as_warnings] == [
        (UserWarning, "another warning"),
        (SkippedItemsWarning, "imagefolder test: skipped 1 bad item(s) "),
    ]
