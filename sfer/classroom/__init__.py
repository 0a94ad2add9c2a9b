"""Classroom frames: MTCNN detection, crops aligned to the training framing, expressions and heatmaps.

```python
from sfer.classroom import FaceDetector, analyse, read_frame, write_outputs
from sfer.explain import load_model
room = analyse(read_frame("frame.jpg"), load_model("data_samples/checkpoints/tiny_full.pt"), FaceDetector())
print(room.counts())                 # the room's class counts
write_outputs(room, "out/")          # students.csv, counts.csv, annotated.png, heatmaps/
```

MTCNN comes from facenet-pytorch, installed without its torch pin (``sfer.classroom.detect.INSTALL_COMMAND``).
"""

from .align import aligned_crop, square_crop
from .detect import ClassroomError, FaceDetector
from .pipeline import analyse, read_frame, write_outputs

__all__ = ["FaceDetector", "analyse", "read_frame", "write_outputs", "aligned_crop", "square_crop", "ClassroomError"]
