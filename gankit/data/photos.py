"""``photos``: square RGB patches cut from the photographs bundled with scikit-image.

Training patches are cut at seeded random positions from ``chelsea``, ``rocket``,
``immunohistochemistry``, ``retina``, ``hubble_deep_field`` and the grayscale ``camera``,
``coins``, ``moon``, ``brick``, ``grass``, ``gravel`` (replicated to RGB). ``astronaut``
and ``coffee`` are held out: they are cut into a grid of non-overlapping patches that form
the test split and are never seen in training. Labels are the index of the source photo.
"""

from __future__ import annotations

import numpy as np

from gankit.data import Dataset
from gankit.errors import UsageError

TRAIN_IMAGES = (
    "chelsea", "rocket", "immunohistochemistry", "retina", "hubble_deep_field",
    "camera", "coins", "moon", "brick", "grass", "gravel",
)
TEST_IMAGES = ("astronaut", "coffee")


def _rgb(name: str) -> np.ndarray:
    import skimage.data

    a = np.asarray(getattr(skimage.data, name)())
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a[..., :3].astype(np.uint8))


def load_photos(size: int = 64, train_patches: int = 6000, seed: int = 0, **_: object) -> Dataset:
    if size < 8 or size > 256:
        raise UsageError(f"photo patch size must be between 8 and 256, got {size}")
    rng = np.random.default_rng(seed)
    names = list(TRAIN_IMAGES) + list(TEST_IMAGES)
    per_image = int(np.ceil(train_patches / len(TRAIN_IMAGES)))
    xs, ys = [], []
    for label, name in enumerate(TRAIN_IMAGES):
        img = _rgb(name)
        h, w, _ = img.shape
        tops = rng.integers(0, h - size + 1, per_image)
        lefts = rng.integers(0, w - size + 1, per_image)
        for t, l in zip(tops, lefts):
            xs.append(img[t : t + size, l : l + size].transpose(2, 0, 1))
            ys.append(label)
    x_train, y_train = np.stack(xs)[:train_patches], np.array(ys, dtype=np.int64)[:train_patches]
    xt, yt = [], []
    for label, name in enumerate(TEST_IMAGES, start=len(TRAIN_IMAGES)):
        img = _rgb(name)
        h, w, _ = img.shape
        for t in range(0, h - size + 1, size):
            for l in range(0, w - size + 1, size):
                xt.append(img[t : t + size, l : l + size].transpose(2, 0, 1))
                yt.append(label)
    return Dataset(
        name="photos",
        x_train=x_train,
        y_train=y_train,
        x_test=np.stack(xt),
        y_test=np.array(yt, dtype=np.int64),
        class_names=names,
        info={"source": "skimage.data", "held_out": list(TEST_IMAGES), "patch": size},
    )
