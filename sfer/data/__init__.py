"""Data: synthetic classroom faces with key-region masks, real FER loaders, transforms.

```python
from sfer.data import SyntheticClassroomFaces, synthetic_splits, build_dataset, train_transform
ds = SyntheticClassroomFaces(3000, seed=0)          # ds[i] -> (PIL image, label); ds.mask(i) -> (H, W) bool
splits = synthetic_splits(3000, 600, 600, seed=0)   # {"train", "val", "test"}
fer = build_dataset("fer2013", "path/to/fer2013", "train", transform=train_transform())
```
"""

from .real import (
    AFFECTNET_CLASSES,
    DATASET_SPLITS,
    FER2013_CLASSES,
    FERPLUS_CLASSES,
    RAFDB_CLASSES,
    DataError,
    SkippedItemsWarning,
    FaceDataset,
    ImageFolderDataset,
    build_dataset,
    load_masks,
)
from .synthetic import (
    BASIC_CLASSES,
    EXPRESSIONS,
    KEY_PARTS,
    NUISANCE_KINDS,
    SCFED_CLASSES,
    NuisanceStrengths,
    SyntheticClassroomFaces,
    synthetic_splits,
)
from .transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform

__all__ = [
    "AFFECTNET_CLASSES", "BASIC_CLASSES", "DATASET_SPLITS", "EXPRESSIONS", "FER2013_CLASSES", "FERPLUS_CLASSES",
    "IMAGENET_MEAN", "IMAGENET_STD", "KEY_PARTS", "NUISANCE_KINDS", "RAFDB_CLASSES", "SCFED_CLASSES",
    "DataError", "FaceDataset", "ImageFolderDataset", "NuisanceStrengths", "SkippedItemsWarning",
    "SyntheticClassroomFaces", "build_dataset", "eval_transform", "load_masks", "synthetic_splits", "train_transform",
]
