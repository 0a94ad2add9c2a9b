"""Is the synthetic task too easy? A linear classifier on pixels against a small CNN.

    python benchmarks/linear_probe.py                  # 3000 train / 600 val / 600 test faces, seed 0
    python benchmarks/linear_probe.py --nuisance 1     # the nuisances at full strength

If a linear map of the raw pixels separated the classes, the synthetic faces would not
test what the workbook is about (spatial attention to small facial parts under
classroom nuisances). Both classifiers see the same ``synthetic_splits(seed=0)``, by
default at the nuisance strength the shipped checkpoints were trained at
(``TrainConfig.nuisance``, 0.5):

- **Linear probe**: scikit-learn's multinomial ``LogisticRegression`` on grayscale
  pixels downsampled to ``--probe-size`` (56: 3136 features), standardised per pixel.
  Grayscale because the cues are shapes (brow position, lid opening, mouth curve), not
  colours, and colour mostly carries identity (skin, hair, shirt, wall); 56 pixels
  because a brow or lash line 2-3 pixels thick at 112 is still about a pixel there.
  The L2 strength ``C`` is picked on the validation split. The choice hardly matters:
  with full-strength nuisances (seed 0), 28x28 grayscale gives 0.530 and 28x28 RGB
  0.537, against 0.525 for 56x56 grayscale.
- **Small CNN**: four conv-BN-ReLU blocks (16-32-64-128 channels, 45 M multiply-adds
  per 112x112 RGB face), global average pooling and a linear layer; Adam with a
  one-cycle schedule for ``--epochs`` epochs and random horizontal flips, seeded, on CPU.

Prints a markdown table of test accuracies with chance (1 / classes) for reference.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from sfer.data import synthetic_splits
from sfer.engine.config import TrainConfig


def to_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 images and (N,) labels."""
    images = np.stack([np.asarray(dataset.render(i)) for i in range(len(dataset))])
    return images, np.asarray(dataset.targets)


def probe_features(images: np.ndarray, size: int) -> np.ndarray:
    """Grayscale (ITU-R 601 luma), area-downsampled to size x size, flattened: (N, size^2)."""
    gray = torch.from_numpy(images).float() @ torch.tensor([0.299, 0.587, 0.114])
    return F.adaptive_avg_pool2d(gray[:, None], size).flatten(1).numpy()


def linear_probe(train, val, test, size: int, cs=(1e-3, 1e-2, 1e-1, 1.0)) -> tuple[float, float]:
    """Test accuracy of the logistic regression whose C does best on val; and that C."""
    scaler = StandardScaler().fit(probe_features(train[0], size))
    x_train, x_val, x_test = (scaler.transform(probe_features(split[0], size)) for split in (train, val, test))
    best = None
    for c in cs:
        clf = LogisticRegression(C=c, max_iter=2000).fit(x_train, train[1])
        val_acc = clf.score(x_val, val[1])
        if best is None or val_acc > best[0]:
            best = (val_acc, c, clf)
    _, c, clf = best
    return clf.score(x_test, test[1]), c


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class SmallCNN(nn.Module):
    """112x112 RGB -> logits; a strided first conv keeps it cheap enough for a CPU."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            conv_block(3, 16, stride=2),           # 56x56
            conv_block(16, 32), nn.MaxPool2d(2),   # 28x28
            conv_block(32, 64), nn.MaxPool2d(2),   # 14x14
            conv_block(64, 128), nn.MaxPool2d(2),  # 7x7
        )
        self.head = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W), each channel roughly zero-mean, unit-variance."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (x - 0.5) / 0.25


def train_cnn(train, test, num_classes: int, epochs: int, batch_size: int = 64, seed: int = 0) -> float:
    """Test accuracy of a seeded SmallCNN after ``epochs`` epochs."""
    torch.manual_seed(seed)
    model = SmallCNN(num_classes)
    x_train, y_train = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    steps = epochs * math.ceil(len(x_train) / batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            x = to_tensor(x_train[index].numpy())
            flip = torch.rand(len(index), generator=generator) < 0.5
            x[flip] = x[flip].flip(-1)
            loss = F.cross_entropy(model(x), y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"  cnn epoch {epoch + 1}/{epochs}: last batch loss {loss.item():.3f}", flush=True)
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test[0]), 200):
            logits = model(to_tensor(test[0][start:start + 200]))
            correct += int((logits.argmax(1).numpy() == test[1][start:start + 200]).sum())
    return correct / len(test[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-val", type=int, default=600)
    parser.add_argument("--n-test", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-size", type=int, default=56, help="side of the probe's grayscale input")
    parser.add_argument("--epochs", type=int, default=8, help="CNN epochs")
    parser.add_argument("--nuisance", type=float, default=TrainConfig.nuisance,
                        help="strength of every classroom nuisance, 0..1 (default: the training recipe's)")
    args = parser.parse_args()

    # One BLAS thread: the generator's and the probe's matrices are small, and on a busy
    # machine a second BLAS thread makes rendering many times slower, not faster.
    with threadpool_limits(1, user_api="blas"):
        start = time.perf_counter()
        splits = synthetic_splits(args.n_train, args.n_val, args.n_test, seed=args.seed, image_size=112,
                                  nuisance=args.nuisance)
        train, val, test = (to_arrays(splits[s]) for s in ("train", "val", "test"))
        num_classes = len(splits["train"].classes)
        print(f"generated {args.n_train}/{args.n_val}/{args.n_test} faces in {time.perf_counter() - start:.0f} s")

        start = time.perf_counter()
        probe_acc, c = linear_probe(train, val, test, args.probe_size)
    print(f"linear probe: {probe_acc:.3f} (C = {c:g}) in {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    cnn_acc = train_cnn(train, test, num_classes, args.epochs, seed=args.seed)
    print(f"small CNN: {cnn_acc:.3f} in {time.perf_counter() - start:.0f} s\n")

    print(f"| classifier ({num_classes} classes, {args.n_train} train / {args.n_test} test faces, seed {args.seed}, "
          f"nuisance {args.nuisance:g}) | test accuracy |")
    print("| --- | ---: |")
    print(f"| chance | {1 / num_classes:.3f} |")
    print(f"| logistic regression on {args.probe_size}x{args.probe_size} grayscale pixels (C = {c:g}) "
          f"| {probe_acc:.3f} |")
    print(f"| small CNN, 4 conv layers, {args.epochs} epochs | {cnn_acc:.3f} |")


if __name__ == "__main__":
    main()
