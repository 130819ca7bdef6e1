"""Datasets: what the trainer learns from and what evaluation compares against.

A :class:`Dataset` holds images as uint8 arrays ``[N, C, H, W]`` (compact, torch-free) with
integer labels, split into train and test. Training only ever sees the train split.
Datasets are registered through the ``register_datasets`` hook;
:func:`gankit.plugins.load_dataset` resolves names such as ``mnist5k``, ``photos`` or
``folder:PATH``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class Dataset:
    """Images and labels, split into train and test (``from gankit import Dataset``).

    ``name``: shown in logs and saved in the run's config. ``x_train`` / ``x_test``: uint8
    arrays ``[N, C, H, W]`` (C = 1 or 3; square images: H == W). ``y_train`` / ``y_test``:
    int64 arrays ``[N]``, class indices into ``class_names`` (all 0 with
    ``class_names=["all"]`` for unlabelled data). ``class_names``: one name per class; a
    label-conditioned family's ``num_classes`` is its length. ``info``: anything else worth
    recording (source, licence, preprocessing), shown by ``describe()``.
    """

    name: str
    x_train: np.ndarray  # uint8 [N, C, H, W]
    y_train: np.ndarray  # int64 [N]
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return tuple(int(s) for s in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return x.astype(np.float32) / 127.5 - 1.0


def spread_indices(n: int, limit: int) -> np.ndarray:
    """``limit`` indices spread evenly over ``range(n)``, first and last included."""
    return np.linspace(0, n - 1, limit).astype(int)


def held_out(x: np.ndarray, limit: int | None) -> np.ndarray:
    """``limit`` test images spread evenly over the split (all of them when None or larger):
    the built-in splits are sorted by class or by photo, so the first N would judge one."""
    if limit is None or limit >= len(x):
        return x
    return x[spread_indices(len(x), limit)]


@dataclass
class DatasetSpec:
    """A registered dataset (``from gankit import DatasetSpec``).

    ``name`` is what users type (``--data NAME``). ``load(**options)`` returns a
    :class:`Dataset`; the options it may receive (accept ``**options`` and ignore the rest):

    - ``size``: an int, from ``gankit train --image-size N`` (only when given), or from
      evaluation and the bench, which ask for the side of the model they judge (usually the
      data's own, so ``size`` equal to it must give what loading without it gives): resize to
      ``size`` x ``size`` (a dataset that ignores it is refused by ``train --image-size``);
    - ``arg``: with ``prefix=True`` the spec handles every name ``NAME:ARG`` (like
      ``folder:PATH``) and ``load`` receives the text after the colon as ``arg``.

    Raise :class:`gankit.UsageError` with one line for data the user got wrong (missing
    folder, unreadable file).
    """

    name: str
    load: Callable[..., Dataset]
    description: str = ""
    prefix: bool = False
