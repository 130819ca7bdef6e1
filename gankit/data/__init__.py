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


@dataclass
class DatasetSpec:
    """A registered dataset.

    ``name`` is what users type. With ``prefix=True`` the spec handles every name of the form
    ``NAME:ARG`` (like ``folder:PATH``) and ``load`` receives ``arg=...``.
    ``load(**options)`` returns a :class:`Dataset`.
    """

    name: str
    load: Callable[..., Dataset]
    description: str = ""
    prefix: bool = False
