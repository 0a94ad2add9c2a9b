"""sfer.data.examples: the stand-in files of notebook 01 are read back by the real loaders."""

import pytest

from sfer.data import build_dataset
from sfer.data.real import AFFECTNET_CLASSES, FER2013_CLASSES, FERPLUS_CLASSES, RAFDB_CLASSES
from sfer.data.examples import example_faces, label_in, tree_lines, write_example_datasets


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return write_example_datasets(tmp_path_factory.mktemp("examples"), seed=0)


def test_label_in_maps_fer2013_names_through_synonyms():
    assert label_in(RAFDB_CLASSES, "happy") == RAFDB_CLASSES.index("happiness")
    assert label_in(AFFECTNET_CLASSES, "angry") == AFFECTNET_CLASSES.index("anger")
    assert label_in(FERPLUS_CLASSES, "neutral") == 0


@pytest.mark.parametrize("name, split, size, excluded", [
    ("fer2013", "train", 7, 0), ("ferplus", "train", 6, 1), ("rafdb", "train", 10, 0),
    ("rafdb", "test", 4, 0), ("affectnet", "train", 7, 0), ("imagefolder", "train", 18, 0)])
def test_every_layout_reads_back(written, name, split, size, excluded):
    ds = build_dataset(name, written[name], split)
    assert len(ds) == size and len(ds.excluded) == excluded
    image, label = ds[0]
    assert image.mode == "RGB" and 0 <= label < len(ds.classes)


@pytest.mark.parametrize("name, classes", [("fer2013", FER2013_CLASSES), ("rafdb", RAFDB_CLASSES),
                                           ("affectnet", AFFECTNET_CLASSES)])
def test_labels_name_the_drawn_expression(written, name, classes):
    drawn = [expression for _, expression in example_faces(0)]
    ds = build_dataset(name, written[name], "train")
    named = sorted(ds.classes[y] for y in ds.targets)  # AffectNet lists its samples folder by folder
    assert named == sorted(classes[label_in(classes, e)] for e in drawn[:len(ds)])


def test_ferplus_tie_is_excluded_with_its_line(written):
    ds = build_dataset("ferplus", written["ferplus"], "train")
    (where, why), = ds.excluded
    assert where.endswith("fer2013new.csv, line 3") and "tie" in why


def test_tree_lines_list_folders_first_and_elide(written):
    lines = tree_lines(written["rafdb"], limit=3)
    assert lines[:2] == ["    EmoLabel/", "        list_patition_label.txt"]
    assert lines[-1] == "            ... 11 more"
