"""Write scikit-learn's bundled 8x8 handwritten digits (1,797 images, UCI; they ship inside the
sklearn wheel, so nothing is downloaded) as a ``folder:`` dataset: one PNG per image, one
subfolder per class. It is the data of the README's ``folder:`` example runs, a set that is not
one of gankit's built-ins, so the run goes through the same door a user's own folder does.

    python benchmarks/digits_folder.py /tmp/digits8
    gankit train --plugin stylegan --data folder:/tmp/digits8 --image-size 16
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    d = load_digits()
    # the set's values are stroke counts 0..16 per 4x4 block of the original 32x32 bitmap
    images = np.clip(d.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    for i, (img, label) in enumerate(zip(images, d.target)):
        folder = args.out / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, "L").save(folder / f"{i:04d}.png")
    print(f"wrote {len(images)} images in {len(set(d.target.tolist()))} class folders under {args.out}")


if __name__ == "__main__":
    main()
