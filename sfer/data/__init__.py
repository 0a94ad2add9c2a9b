"""Data: synthetic classroom faces with key-region masks, real FER loaders, transforms.

```python
from sfer.data import SyntheticClassroomFaces, synthetic_splits, build_dataset, train_transform
ds = SyntheticClassroomFaces(3000, seed=0)          # ds[i] -> (PIL image, label); ds.mask(i) -> (H, W) bool
splits = synthetic_splits(3000, 600, 600, seed=0)   # {"train", "val", "test"}
fer = build_dataset("fer2013", "path/to/fer2013", "train", transform=train_transform())
```
"""

from .real import DataError, build_dataset
from .synthetic import SyntheticClassroomFaces, synthetic_splits
from .transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform

__all__ = ["SyntheticClassroomFaces", "synthetic_splits", "build_dataset", "train_transform", "eval_transform",
           "IMAGENET_MEAN", "IMAGENET_STD", "DataError"]
