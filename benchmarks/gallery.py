"""A per-class gallery of synthetic classroom faces with their key-region masks outlined.

    python benchmarks/gallery.py                  # writes docs/synthetic_gallery.png
    python benchmarks/gallery.py --regime hard    # writes docs/synthetic_gallery_hard.png

One row per class, ``--per-class`` faces in each, at a regime's nuisance and cue
strengths (``sfer.engine.config.REGIMES``: what ``sfer train --regime`` trains on); the yellow contour is the sample's key-region mask (the pixels of the parts
that carry its class cue), drawn from the same projected points as the face.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sfer.data import SyntheticClassroomFaces  # noqa: E402
from sfer.data.synthetic.expressions import BASIC_CLASSES
from sfer.engine.config import REGIMES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def gallery(per_class: int = 6, seed: int = 0, classes: str = "scfed", image_size: int = 112,
            regime: str = "default") -> plt.Figure:
    """Rows = classes, columns = faces; sample ``k + j * len(classes)`` is the j-th face of class k."""
    nuisance, cue = REGIMES[regime]
    # Enough samples for the larger class set; a sample does not depend on how many there are.
    faces = SyntheticClassroomFaces(per_class * len(BASIC_CLASSES), seed=seed, classes=classes, image_size=image_size,
                                    nuisance=nuisance, cue=cue)
    num_classes = len(faces.classes)
    fig, axes = plt.subplots(num_classes, per_class, figsize=(1.45 * per_class + 1.3, 1.5 * num_classes),
                             squeeze=False)
    for label, row in enumerate(axes):
        for j, ax in enumerate(row):
            i = label + j * num_classes
            ax.imshow(faces.render(i))
            ax.contour(faces.mask(i), levels=[0.5], colors="yellow", linewidths=0.8)
            if faces.nuisances(i)["occluder"] != "none":
                ax.contour(faces.occluder_mask(i), levels=[0.5], colors="cyan", linewidths=0.6, linestyles="dashed")
            ax.set_xticks([]), ax.set_yticks([])
        row[0].set_ylabel(f"{faces.classes[label]}\n({', '.join(faces.key_parts(label))})", fontsize=9)
    fig.suptitle(f"Synthetic classroom faces, {regime} regime (nuisance {nuisance}, cue {cue}; seed {seed}): "
                 "key-region mask in yellow, occluder dashed cyan", fontsize=10)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", choices=("scfed", "basic"), default="scfed")
    parser.add_argument("--regime", choices=list(REGIMES), default="default")
    parser.add_argument("--out", type=Path, help="default docs/synthetic_gallery.png (_hard for the hard regime)")
    args = parser.parse_args()
    args.out = args.out or ROOT / "docs" / f"synthetic_gallery{'' if args.regime == 'default' else '_' + args.regime}.png"
    fig = gallery(args.per_class, args.seed, args.classes, regime=args.regime)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
