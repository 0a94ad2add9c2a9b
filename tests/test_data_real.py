"""Real data-set loaders, each read from tiny files written here in that set's exact layout,
and every kind of bad input: an error naming the file (and line), or skipped, counted and warned."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from sfer.data import DataError, build_dataset, eval_transform, train_transform
from sfer.data.real import AFFECTNET_CLASSES, FER2013_CLASSES, FERPLUS_CLASSES, RAFDB_CLASSES
from sfer.data.real import SkippedItemsWarning, ferplus_exclusion, ferplus_label, hold_out, validation_is_test

# -- writers --------------------------------------------------------------------------


def pixel_text(value: int) -> str:
    return " ".join([str(value)] * 2304)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_image(path, value=128, size=(40, 40), mode="RGB", fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, value // 2, 255 - value)).save(path, format=fmt)
    return path


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


FER_ROWS = [  # emotion, pixel value, Usage
    (3, 10, "Training"), (0, 20, "Training"), (6, 30, "Training"),
    (4, 40, "PublicTest"), (5, 50, "PublicTest"),
    (1, 60, "PrivateTest"),
]


def write_fer2013(root, rows=FER_ROWS):
    return write_csv(root / "fer2013.csv", ["emotion", "pixels", "Usage"],
                     [[e, pixel_text(v), u] for e, v, u in rows])


def assert_names(err: pytest.ExceptionInfo, path, line=None):
    message = str(err.value)
    assert str(path) in message, message
    if line is not None:
        assert f"line {line}" in message, message
    assert isinstance(err.value, ValueError)


# -- FER2013 --------------------------------------------------------------------------


def test_fer2013_reads_splits_labels_and_gray_as_rgb(tmp_path):
    write_fer2013(tmp_path)
    sizes = {}
    for split in ("train", "val", "test"):
        ds = build_dataset("fer2013", tmp_path, split)
        sizes[split] = len(ds)
        assert ds.classes == list(FER2013_CLASSES)
    assert sizes == {"train": 3, "val": 2, "test": 1}
    ds = build_dataset("fer2013", tmp_path, "train")
    assert ds.targets == [3, 0, 6]
    image, label = ds[1]
    assert image.mode == "RGB" and image.size == (48, 48) and label == 0
    assert np.all(np.asarray(image) == 20)
    tensor, _ = build_dataset("fer2013", tmp_path, "val", transform=eval_transform(224))[0]
    assert tensor.shape == (3, 224, 224)


@pytest.mark.parametrize("row, message", [
    (["3", pixel_text(1)], "wrong number of fields"),
    (["7", pixel_text(1), "Training"], "0..6"),
    (["x", pixel_text(1), "Training"], "0..6"),
    (["2", pixel_text(1), "Validation"], "unknown Usage"),
    (["2", " ".join(["1"] * 2000), "Training"], "2000 pixels"),
    (["2", pixel_text(1).replace("1", "a", 1), "Training"], "not space-separated integers"),
    (["2", pixel_text(300), "Training"], "outside 0..255"),
])
def test_fer2013_bad_row_names_file_and_line(tmp_path, row, message):
    rows = [[e, pixel_text(v), u] for e, v, u in FER_ROWS]
    rows.insert(2, row)  # the header is line 1, so this row is line 4
    path = write_csv(tmp_path / "fer2013.csv", ["emotion", "pixels", "Usage"], rows)
    with pytest.raises(DataError, match=message) as err:
        build_dataset("fer2013", tmp_path, "train")
    assert_names(err, path, line=4)
    with pytest.warns(UserWarning, match="skipped 1 bad item"):
        ds = build_dataset("fer2013", tmp_path, "train", skip_bad=True)
    assert len(ds) == 3 and len(ds.skipped) == 1
    assert ds.skipped[0][0] == f"{path}, line 4" and message.split()[0] in ds.skipped[0][1]


def test_fer2013_missing_empty_or_headerless_file_and_empty_split(tmp_path):
    with pytest.raises(DataError, match="file not found") as err:
        build_dataset("fer2013", tmp_path, "train")
    assert_names(err, tmp_path / "fer2013.csv")
    (tmp_path / "fer2013.csv").write_text("")
    with pytest.raises(DataError, match="empty file"):
        build_dataset("fer2013", tmp_path, "train", skip_bad=True)
    (tmp_path / "fer2013.csv").write_text("label,pixels\n1,2\n")
    with pytest.raises(DataError, match="missing column") as err:
        build_dataset("fer2013", tmp_path, "train")
    assert_names(err, tmp_path / "fer2013.csv", line=1)
    write_fer2013(tmp_path, FER_ROWS[:3])
    with pytest.raises(DataError, match="'test' split of fer2013 is empty"):
        build_dataset("fer2013", tmp_path, "test", skip_bad=True)


# -- FERPlus --------------------------------------------------------------------------

VOTE_HEADER = ["Usage", "Image name", *FERPLUS_CLASSES, "unknown", "NF"]


def votes(**counts):
    return [counts.get(c, 0) for c in (*FERPLUS_CLASSES, "unknown", "NF")]


def test_ferplus_majority_rule():
    assert ferplus_label(votes(happiness=8, neutral=2)) == FERPLUS_CLASSES.index("happiness")
    assert ferplus_label(votes(sadness=4, anger=4, fear=2)) is None  # tie: no majority
    assert ferplus_label(votes(neutral=5, surprise=5)) is None  # exactly half is not a majority
    assert ferplus_label(votes(contempt=6, neutral=1, disgust=1, fear=1, anger=1)) == 7  # single votes dropped
    assert ferplus_label(votes(unknown=7, happiness=3)) is None
    assert ferplus_label(votes(NF=10)) is None
    assert ferplus_label(votes(happiness=1, neutral=1)) is None  # only outliers left


def test_ferplus_reads_labels_and_lists_exclusions(tmp_path):
    write_fer2013(tmp_path)
    write_csv(tmp_path / "fer2013new.csv", VOTE_HEADER, [
        ["Training", "fer0000000.png", *votes(happiness=9, neutral=1)],
        ["Training", "fer0000001.png", *votes(sadness=5, anger=5)],
        ["Training", "", *votes(NF=10)],
        ["PublicTest", "fer0000003.png", *votes(contempt=6, neutral=4)],
        ["PublicTest", "fer0000004.png", *votes(unknown=8, surprise=2)],
        ["PrivateTest", "fer0000005.png", *votes(fear=10)],
    ])
    train = build_dataset("ferplus", tmp_path, "train")
    assert train.classes == list(FERPLUS_CLASSES)
    assert train.targets == [FERPLUS_CLASSES.index("happiness")]
    assert np.all(np.asarray(train[0][0]) == 10)  # the image of fer2013.csv row 1
    assert [reason for _, reason in train.excluded] == ["no majority: a tie between sadness and anger",
                                                        "no image name: FERPlus removed this image"]
    val = build_dataset("ferplus", tmp_path, "val")
    assert val.targets == [7] and len(val.excluded) == 1
    assert build_dataset("ferplus", tmp_path, "test").targets == [FERPLUS_CLASSES.index("fear")]


def test_ferplus_exclusions_say_tie_unknown_or_not_a_face(tmp_path):
    assert ferplus_exclusion(votes(happiness=8, neutral=2)) is None  # labelled: nothing to explain
    assert ferplus_exclusion(votes(sadness=4, anger=4, fear=2)) == "no majority: a tie between sadness and anger"
    assert ferplus_exclusion(votes(neutral=4, surprise=3, fear=3)) == \
        "no majority: no column has more than half of the votes"
    assert ferplus_exclusion(votes(unknown=7, happiness=3)) == \
        "majority unknown: the annotators could not tell the emotion"
    assert ferplus_exclusion(votes(NF=10)) == "majority NF: not a face"
    assert ferplus_exclusion(votes(happiness=1, neutral=1)).startswith("no majority: only single votes")

    write_fer2013(tmp_path, [(0, 10, "Training")] * 4 + [(0, 20, "PublicTest"), (0, 30, "PrivateTest")])
    path = write_csv(tmp_path / "fer2013new.csv", VOTE_HEADER, [
        ["Training", "fer0000000.png", *votes(fear=5, surprise=5)],
        ["Training", "fer0000001.png", *votes(unknown=6, happiness=4)],
        ["Training", "fer0000002.png", *votes(NF=9, neutral=1)],
        ["Training", "fer0000003.png", *votes(anger=10)],
        ["PublicTest", "fer0000004.png", *votes(neutral=10)],
        ["PrivateTest", "fer0000005.png", *votes(neutral=10)],
    ])
    train = build_dataset("ferplus", tmp_path, "train")
    assert train.targets == [FERPLUS_CLASSES.index("anger")]
    assert train.excluded == [(f"{path}, line 2", "no majority: a tie between surprise and fear"),
                              (f"{path}, line 3", "majority unknown: the annotators could not tell the emotion"),
                              (f"{path}, line 4", "majority NF: not a face")]


def test_ferplus_bad_votes_and_misaligned_files(tmp_path):
    write_fer2013(tmp_path)
    rows = [["Training", f"fer{i}.png", *votes(happiness=10)] for i in range(3)]
    rows += [["PublicTest", "a.png", *votes(neutral=10)]] * 2 + [["PrivateTest", "b.png", *votes(neutral=10)]]
    rows[1][4] = "many"
    path = write_csv(tmp_path / "fer2013new.csv", VOTE_HEADER, rows)
    with pytest.raises(DataError, match="vote counts must be integers") as err:
        build_dataset("ferplus", tmp_path, "train")
    assert_names(err, path, line=3)
    with pytest.warns(UserWarning):
        assert len(build_dataset("ferplus", tmp_path, "train", skip_bad=True)) == 2

    write_csv(path, VOTE_HEADER, rows[:1])
    with pytest.raises(DataError, match="1 rows, but") as err:
        build_dataset("ferplus", tmp_path, "train")
    assert_names(err, path)

    rows = [["PublicTest", f"fer{i}.png", *votes(happiness=10)] for i in range(6)]  # Usage disagrees
    write_csv(path, VOTE_HEADER, rows)
    with pytest.raises(DataError, match="does not match") as err:
        build_dataset("ferplus", tmp_path, "val")
    assert_names(err, tmp_path / "fer2013.csv", line=2)


# -- RAF-DB ---------------------------------------------------------------------------


def write_rafdb(root, lines):
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("".join(f"{line}\n" for line in lines))
    for line in lines:
        name = line.split()[0]
        stem = name.rsplit(".", 1)[0]
        write_image(root / "Image" / "aligned" / f"{stem}_aligned.jpg", value=40, size=(100, 100),
                    mode="L" if stem.endswith("2") else "RGB")
    return root / "EmoLabel" / "list_patition_label.txt"


RAF_LINES = ["train_00001.jpg 5", "train_00002.jpg 1", "train_00003.jpg 7", "test_0001.jpg 4", "test_0002.jpg 2"]


def test_rafdb_reads_labels_one_to_seven_and_splits(tmp_path):
    write_rafdb(tmp_path, RAF_LINES)
    train = build_dataset("rafdb", tmp_path, "train")
    assert train.classes == list(RAFDB_CLASSES)
    assert train.targets == [4, 0, 6]  # labels 1..7 -> 0..6
    image, _ = train[1]  # saved grayscale
    assert image.mode == "RGB" and image.size == (100, 100)
    assert build_dataset("rafdb", tmp_path, "test").targets == [3, 1]
    with pytest.raises(ValueError, match="no validation split"):
        build_dataset("rafdb", tmp_path, "val")


@pytest.mark.parametrize("line, message", [
    ("train_00009.jpg 8", "label 8 out of range 1..7"),
    ("train_00009.jpg 0", "label 0 out of range"),
    ("train_00009.jpg", "malformed line"),
    ("train_00009.jpg happy", "malformed line"),
    ("val_00009.jpg 3", "neither train_ nor test_"),
])
def test_rafdb_bad_label_line(tmp_path, line, message):
    path = write_rafdb(tmp_path, RAF_LINES)
    path.write_text(path.read_text() + f"{line}\n")
    with pytest.raises(DataError, match=message) as err:
        build_dataset("rafdb", tmp_path, "train")
    assert_names(err, path, line=6)
    with pytest.warns(UserWarning, match="skipped 1"):
        assert len(build_dataset("rafdb", tmp_path, "train", skip_bad=True)) == 3


def test_rafdb_missing_or_empty_label_file(tmp_path):
    path = tmp_path / "EmoLabel" / "list_patition_label.txt"
    with pytest.raises(DataError, match="label file not found") as err:
        build_dataset("rafdb", tmp_path, "train")
    assert_names(err, path)
    path.parent.mkdir()
    path.write_text("\n")
    with pytest.raises(DataError, match="empty label file"):
        build_dataset("rafdb", tmp_path, "train", skip_bad=True)


def test_rafdb_bad_images_named_at_build_or_load_and_skipped(tmp_path):
    write_rafdb(tmp_path, RAF_LINES)
    aligned = tmp_path / "Image" / "aligned"
    (aligned / "train_00001_aligned.jpg").unlink()
    with pytest.raises(DataError, match="image file not found") as err:
        build_dataset("rafdb", tmp_path, "train")
    assert_names(err, aligned / "train_00001_aligned.jpg")
    (aligned / "train_00001_aligned.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="empty file") as err:
        build_dataset("rafdb", tmp_path, "train")
    assert_names(err, aligned / "train_00001_aligned.jpg")

    write_image(aligned / "train_00001_aligned.jpg", size=(100, 100))
    (aligned / "train_00002_aligned.jpg").write_bytes(b"this is not a jpeg at all")
    truncate(aligned / "train_00003_aligned.jpg")
    ds = build_dataset("rafdb", tmp_path, "train")  # decoding waits for loading...
    for i, name in ((1, "train_00002_aligned.jpg"), (2, "train_00003_aligned.jpg")):
        with pytest.raises(DataError, match="image") as err:  # ...which names the file
            ds[i]
        assert_names(err, aligned / name)
    with pytest.warns(UserWarning, match="skipped 2 bad item"):
        ds = build_dataset("rafdb", tmp_path, "train", skip_bad=True)
    assert len(ds) == 1 and ds.targets == [4]
    assert {reason.split(" (")[0] for _, reason in ds.skipped} == {"not an image", "corrupt or truncated image"}


def many_rafdb_lines(per_class):
    """RAF-DB label lines: ``per_class[k]`` training images of label k + 1, and one test image per class."""
    lines = [f"train_{k}{j:03d}.jpg {k + 1}" for k, count in enumerate(per_class) for j in range(count)]
    return lines + [f"test_{k}000.jpg {k + 1}" for k in range(len(per_class))]


def test_a_held_out_validation_split_is_stratified_seeded_and_disjoint(tmp_path):
    """RAF-DB's val would be its test split: 10% of every class of train is held out instead."""
    write_rafdb(tmp_path, many_rafdb_lines([20, 10, 30, 10, 20, 10, 100]))
    full = build_dataset("rafdb", tmp_path, "train", transform=train_transform(112))
    train, val = hold_out(full, 0.1, seed=0, transform=eval_transform(112))
    assert np.bincount(val.targets).tolist() == [2, 1, 3, 1, 2, 1, 10]  # every class keeps its share
    assert len(train) + len(val) == len(full) == 200
    files = lambda ds: [item.source for item in ds.samples]  # noqa: E731
    assert not set(files(train)) & set(files(val)) and files(train) == sorted(files(train))
    assert files(hold_out(full, 0.1, seed=0)[1]) == files(val) != files(hold_out(full, 0.1, seed=1)[1])
    assert train.transform is full.transform and val.transform is not full.transform and val.split != "test"
    with pytest.raises(DataError, match=r"rafdb test: cannot hold out a stratified 10%") as err:
        hold_out(build_dataset("rafdb", tmp_path, "test"), 0.1, seed=0)  # one image per class
    assert_names(err, tmp_path)


def test_the_validation_split_is_the_test_split_for_rafdb_and_affectnet_only(tmp_path):
    assert validation_is_test("rafdb", tmp_path) and validation_is_test("affectnet", tmp_path)
    (tmp_path / "test").mkdir()
    assert not validation_is_test("affectnet", tmp_path)  # a folder tree with a test/ of its own
    assert not any(validation_is_test(name, tmp_path) for name in ("fer2013", "ferplus", "imagefolder"))


# -- AffectNet ------------------------------------------------------------------------


def test_affectnet_class_folders_by_index_or_name(tmp_path):
    for k in range(7):
        folder = str(k) if k % 2 else AFFECTNET_CLASSES[k]
        write_image(tmp_path / "train" / folder / f"{k}.png")
        write_image(tmp_path / "val" / folder / f"{k}a.jpg", mode="L")
    write_image(tmp_path / "val" / "3" / "extra.png")
    train = build_dataset("affectnet", tmp_path, "train")
    assert train.classes == list(AFFECTNET_CLASSES[:7]) and sorted(train.targets) == list(range(7))
    test = build_dataset("affectnet", tmp_path, "test")  # no test/ folder: the validation set
    assert len(test) == 8 and test[0][0].mode == "RGB"
    write_image(tmp_path / "train" / "sadness" / "c.png")
    with pytest.raises(DataError, match="unknown class folder") as err:
        build_dataset("affectnet", tmp_path, "train")
    assert_names(err, tmp_path / "train" / "sadness")


def test_affectnet_contempt_folder_left_out_and_listed_in_the_7_class_setting(tmp_path):
    """AffectNet's usual train/0..7 folders: 7 (contempt) is excluded with 7 classes, a class with 8."""
    for k in range(8):
        for j in range(2):
            write_image(tmp_path / "train" / str(k) / f"{j}.png", value=10 * k)
    write_image(tmp_path / "train" / "10" / "noface.png")  # AffectNet's own code for no-face
    seven = build_dataset("affectnet", tmp_path, "train")
    assert seven.classes == list(AFFECTNET_CLASSES[:7]) and sorted(set(seven.targets)) == list(range(7))
    assert seven.excluded == [(str(tmp_path / "train" / "10" / "noface.png"), "no-face"),
                              (str(tmp_path / "train" / "7" / "0.png"), "contempt (7-class setting)"),
                              (str(tmp_path / "train" / "7" / "1.png"), "contempt (7-class setting)")]
    eight = build_dataset("affectnet", tmp_path, "train", num_classes=8)
    assert eight.classes == list(AFFECTNET_CLASSES) and eight.targets.count(7) == 2
    assert [reason for _, reason in eight.excluded] == ["no-face"]
    (tmp_path / "train" / "7").rename(tmp_path / "train" / "contempt")  # a folder named by its class
    assert len(build_dataset("affectnet", tmp_path, "train").excluded) == 3


AFFECTNET_HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                    "facial_landmarks", "expression", "valence", "arousal"]


def test_affectnet_official_csv_crops_faces_and_excludes_non_expressions(tmp_path):
    images = tmp_path / "Manually_Annotated_Images"
    rows = []
    for k, code in enumerate([0, 1, 6, 7, 8, 9, 10]):
        write_image(images / "12" / f"img{k}.jpg", size=(80, 60))
        rows.append([f"12/img{k}.jpg", 10, 5, 40, 30, "1;2;3", code, 0.1, -0.2])
    lists = tmp_path / "Manually_Annotated_file_lists"
    lists.mkdir()
    write_csv(lists / "training.csv", AFFECTNET_HEADER, rows)
    write_csv(lists / "validation.csv", AFFECTNET_HEADER, rows[:2])
    ds = build_dataset("affectnet", tmp_path, "train")
    assert ds.targets == [0, 1, 6]
    assert [reason for _, reason in ds.excluded] == ["contempt (7-class setting)", "none", "uncertain", "no-face"]
    assert ds[0][0].size == (40, 30)  # cropped to the face box
    assert build_dataset("affectnet", tmp_path, "train", crop_faces=False)[0][0].size == (80, 60)
    assert build_dataset("affectnet", tmp_path, "train", num_classes=8).targets == [0, 1, 6, 7]
    assert len(build_dataset("affectnet", tmp_path, "test")) == 2  # the official validation set

    rows[1][6] = 11
    rows[2][3] = "left"
    write_csv(lists / "training.csv", AFFECTNET_HEADER, rows)
    with pytest.raises(DataError, match="expression 11 out of range") as err:
        build_dataset("affectnet", tmp_path, "train")
    assert_names(err, lists / "training.csv", line=3)
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = build_dataset("affectnet", tmp_path, "train", skip_bad=True)
    assert ds.targets == [0] and "face box" in ds.skipped[1][1]


def test_affectnet_without_any_layout(tmp_path):
    with pytest.raises(DataError, match="no AffectNet layout") as err:
        build_dataset("affectnet", tmp_path, "train")
    assert_names(err, tmp_path)


# -- image folders --------------------------------------------------------------------


def write_tree(root, classes=("b_sad", "a_happy"), per_class=2):
    for split in ("train", "val"):
        for c in classes:
            for k in range(per_class):
                write_image(root / split / c / f"{k}.png", value=30 * k, mode="L" if k else "RGB")
    return root


def test_imagefolder_class_order_and_rgb(tmp_path):
    write_tree(tmp_path)
    ds = build_dataset("imagefolder", tmp_path, "train")
    assert ds.classes == ["a_happy", "b_sad"] and ds.targets == [0, 0, 1, 1]
    assert all(ds[i][0].mode == "RGB" for i in range(len(ds)))
    (tmp_path / "classes.txt").write_text("b_sad\na_happy\n")
    assert build_dataset("imagefolder", tmp_path, "val").classes == ["b_sad", "a_happy"]
    (tmp_path / "train" / "a_happy" / "notes.txt").write_text("x")
    ds = build_dataset("imagefolder", tmp_path, "train")
    assert ds.excluded == [(str(tmp_path / "train" / "a_happy" / "notes.txt"), "not an image file name")]
    assert not ds.has_masks


def test_imagefolder_empty_or_missing_class_folder_and_split(tmp_path):
    write_tree(tmp_path)
    for f in (tmp_path / "val" / "b_sad").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="empty class folder") as err:
        build_dataset("imagefolder", tmp_path, "val")
    assert_names(err, tmp_path / "val" / "b_sad")
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = build_dataset("imagefolder", tmp_path, "val", skip_bad=True)
    assert ds.classes == ["a_happy", "b_sad"] and ds.targets == [0, 0]  # labels keep their meaning
    (tmp_path / "val" / "b_sad").rmdir()
    with pytest.raises(DataError, match="class folder missing"):
        build_dataset("imagefolder", tmp_path, "val")
    with pytest.raises(DataError, match="split folder not found") as err:
        build_dataset("imagefolder", tmp_path, "test")
    assert_names(err, tmp_path / "test")
    for f in (tmp_path / "val" / "a_happy").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="split of imagefolder is empty"):
        build_dataset("imagefolder", tmp_path, "val", skip_bad=True)


def test_imagefolder_corrupt_and_truncated_png(tmp_path):
    write_tree(tmp_path)
    bad = tmp_path / "train" / "b_sad" / "1.png"
    truncate(bad)
    ds = build_dataset("imagefolder", tmp_path, "train")
    with pytest.raises(DataError, match="corrupt or truncated") as err:
        ds[3]
    assert_names(err, bad)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = build_dataset("imagefolder", tmp_path, "train", skip_bad=True)
    assert len(ds) == 3 and ds.skipped[0][0] == str(bad)


def test_unknown_names_and_splits(tmp_path):
    with pytest.raises(ValueError, match="unknown data set"):
        build_dataset("ckplus", tmp_path, "train")
    with pytest.raises(ValueError, match="splits"):
        build_dataset("fer2013", tmp_path, "validation")


# -- transforms -----------------------------------------------------------------------


@pytest.mark.parametrize("mode, size", [("L", (48, 48)), ("RGB", (100, 90)), ("RGBA", (64, 64)), ("P", (30, 50))])
def test_transforms_shapes_and_determinism(mode, size):
    image = Image.new(mode, size)
    torch.manual_seed(0)
    assert train_transform(224)(image).shape == (3, 224, 224)
    assert train_transform(112)(image).shape == (3, 112, 112)
    pil = Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).convert(mode)
    first, second = eval_transform(224)(pil), eval_transform(224)(pil)
    assert first.shape == (3, 224, 224) and torch.equal(first, second)


def test_eval_transform_normalises_with_given_statistics():
    image = Image.new("RGB", (10, 10), (255, 0, 128))
    out = eval_transform(8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))(image)
    assert torch.allclose(out[:, 0, 0], torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]), atol=1e-6)


def test_train_transform_flips_and_erases():
    image = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (64, 1)))
    torch.manual_seed(0)
    outs = [train_transform(64)(image) for _ in range(40)]
    reference = eval_transform(64)(image)
    assert any(torch.allclose(o, reference.flip(-1)) or torch.allclose(o, reference) for o in outs)
    assert any(not (torch.allclose(o, reference) or torch.allclose(o, reference.flip(-1))) for o in outs)



# -- what a new user runs into ----------------------------------------------------------


@pytest.mark.parametrize("name, given, folder", [
    ("fer2013", "fer/fer2013.csv", "fer"),
    ("ferplus", "fer/fer2013new.csv", "fer"),
    ("ferplus", "fer/fer2013.csv", "fer"),
    ("rafdb", "raf/EmoLabel/list_patition_label.txt", "raf"),
    ("affectnet", "aff/training.csv", "aff"),
    ("affectnet", "aff/Manually_Annotated_file_lists/validation.csv", "aff"),
    ("imagefolder", "tree/train/a/0.png", "tree/train/a"),
])
def test_a_file_given_for_the_folder_says_so_and_names_the_folder(tmp_path, name, given, folder):
    path = tmp_path / given
    path.parent.mkdir(parents=True)
    path.write_text("x")
    with pytest.raises(DataError) as err:
        build_dataset(name, path, "test")
    message = str(err.value)
    assert message.startswith(f"{path}: this is a file, but {name} reads ")
    assert message.endswith(str(tmp_path / folder))
    assert str(path / path.name) not in message  # not ".../fer2013.csv/fer2013.csv: file not found"


def test_bad_image_messages_name_the_file_once(tmp_path):
    write_tree(tmp_path)
    empty, missing_later = tmp_path / "train" / "a_happy" / "0.png", tmp_path / "train" / "b_sad" / "0.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError) as err:
        build_dataset("imagefolder", tmp_path, "train")
    assert str(err.value) == f"{empty}: empty file"
    (tmp_path / "train" / "a_happy" / "1.png").write_bytes(b"GIF89a but no image")
    with pytest.warns(SkippedItemsWarning):
        ds = build_dataset("imagefolder", tmp_path, "train", skip_bad=True)
    assert ds.skipped == [(str(empty), "empty file"),
                          (str(tmp_path / "train" / "a_happy" / "1.png"), "not an image (no image format recognised)")]
    missing_later.unlink()
    with pytest.raises(DataError) as err:  # a file removed after the data set was built
        ds.load_image(0)
    assert str(err.value) == f"{missing_later}: image file not found"

    rafdb_root = tmp_path / "raf"
    write_rafdb(rafdb_root, RAF_LINES)
    gone = rafdb_root / "Image" / "aligned" / "train_00001_aligned.jpg"
    gone.unlink()
    with pytest.raises(DataError) as err:
        build_dataset("rafdb", rafdb_root, "train")
    assert str(err.value) == f"{gone}: image file not found"

    # A CSV row names its line, and then the image file once
    images = tmp_path / "aff" / "Manually_Annotated_Images"
    write_image(images / "1" / "a.jpg")
    (images / "1" / "b.jpg").write_bytes(b"")
    rows = [[f"1/{n}.jpg", 0, 0, 10, 10, "", 0, 0, 0] for n in "ab"]
    csv_path = write_csv(tmp_path / "aff" / "training.csv", AFFECTNET_HEADER, rows)
    with pytest.raises(DataError) as err:
        build_dataset("affectnet", tmp_path / "aff", "train")
    assert str(err.value) == f"{csv_path}, line 3: empty file: {images / '1' / 'b.jpg'}"


def test_skipped_items_warn_once_at_the_caller_with_a_plain_summary(tmp_path):
    write_tree(tmp_path)
    for name in ("0.png", "1.png"):
        (tmp_path / "val" / "b_sad" / name).write_bytes(b"")
    (tmp_path / "val" / "b_sad" / "2.png").write_bytes(b"")
    with pytest.warns(SkippedItemsWarning) as caught:
        ds = build_dataset("imagefolder", tmp_path, "val", skip_bad=True)
    assert len(caught) == 1 and issubclass(caught[0].category, UserWarning)  # Python users keep a UserWarning
    assert caught[0].filename == __file__  # it points at the line that built the data set, not at real.py
    warning = caught[0].message
    assert (warning.count, warning.name, warning.split) == (3, "imagefolder", "val") == (len(ds.skipped), ds.name,
                                                                                           ds.split)
    assert "(listed in .skipped)" in str(warning) and str(tmp_path / "val" / "b_sad" / "0.png") in str(warning)
    assert warning.summary() == (f"imagefolder val: skipped 3 bad item(s); "
                                 f"`sfer data check imagefolder {tmp_path} --splits val` lists them")
