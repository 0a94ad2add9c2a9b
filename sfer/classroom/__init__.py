"""Classroom frames: MTCNN detection, crops aligned to the training framing, expressions and heatmaps.

```python
from sfer.classroom import FaceDetector, analyse, read_frame, write_outputs
from sfer.explain import load_model
room = analyse(read_frame("frame.jpg"), load_model("data_samples/checkpoints/tiny_full.pt"), FaceDetector())
print(room.counts())                 # the room's class counts
write_outputs(room, "out/")          # students.csv, counts.csv, annotated.png, heatmaps/
```

MTCNN comes from facenet-pytorch, installed without its torch pin (``INSTALL_COMMAND``).
"""

from .align import (
    DETECTED_TEMPLATE,
    LANDMARK_WEIGHTS,
    TEMPLATE,
    TRAINING_SIDE,
    aligned_crop,
    alignment,
    box_crop,
    similarity,
    square_crop,
)
from .detect import INSTALL_COMMAND, LANDMARKS, ClassroomError, Detections, FaceDetector, as_rgb, iou, match
from .pipeline import (
    CROPS,
    VIEWS,
    Room,
    Student,
    analyse,
    annotate,
    classify,
    columns,
    crops_for,
    heatmap_strip,
    read_frame,
    write_outputs,
)

__all__ = [
    "DETECTED_TEMPLATE", "LANDMARK_WEIGHTS", "TEMPLATE", "TRAINING_SIDE", "aligned_crop", "alignment", "box_crop",
    "similarity", "square_crop",
    "INSTALL_COMMAND", "LANDMARKS", "ClassroomError", "Detections", "FaceDetector", "as_rgb", "iou", "match",
    "CROPS", "VIEWS", "Room", "Student", "analyse", "annotate", "classify", "columns", "crops_for",
    "heatmap_strip", "read_frame", "write_outputs",
]
