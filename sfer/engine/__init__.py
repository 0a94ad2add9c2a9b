"""Training and evaluation: :func:`fit`, :func:`evaluate_checkpoint`, checkpoints and configs.

```python
from sfer.engine import fit, evaluate_checkpoint, load_model
metrics = fit(epochs=8, out="runs/demo")              # the synthetic recipe by default
metrics = fit("configs/rafdb.yaml", data="/data/RAF-DB", ir50="ir50.pth")
model = load_model("runs/demo/best.pt")              # eval mode, with .eval_transform and .class_names
ckpt = load_checkpoint("runs/demo/best.pt")          # the whole file: config, classes, preprocessing, metrics
result = evaluate_checkpoint("runs/demo/best.pt", out="runs/demo/eval")
```
"""

from .checkpoint import load_checkpoint, load_model
from .config import TrainConfig
from .evaluate import accuracy_interval, evaluate_checkpoint
from .train import NonFiniteLossError, fit

__all__ = ["fit", "evaluate_checkpoint", "accuracy_interval", "load_model", "load_checkpoint", "TrainConfig",
           "NonFiniteLossError"]
