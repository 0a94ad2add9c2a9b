"""Training and evaluation: :func:`fit`, :func:`evaluate_checkpoint`, checkpoints and configs.

```python
from sfer.engine import fit, evaluate_checkpoint, load_model
metrics = fit(epochs=8, out="runs/demo")              # the synthetic recipe by default
metrics = fit("configs/rafdb.yaml", data="/data/RAF-DB", ir50="ir50.pth")
model, ckpt = load_model("runs/demo/best.pt")         # eval mode; ckpt["classes"], ckpt["preprocessing"]
result = evaluate_checkpoint("runs/demo/best.pt", out="runs/demo/eval")
```
"""

from .checkpoint import atomic_save, build_from_checkpoint, load_checkpoint, load_model, strip_checkpoint
from .config import TrainConfig, load_config_file, make_config
from .evaluate import evaluate_checkpoint, plot_confusion_matrix
from .train import NonFiniteLossError, fit

__all__ = [
    "atomic_save", "build_from_checkpoint", "load_checkpoint", "load_model", "strip_checkpoint", "TrainConfig",
    "load_config_file", "make_config", "evaluate_checkpoint", "plot_confusion_matrix", "NonFiniteLossError", "fit",
]
