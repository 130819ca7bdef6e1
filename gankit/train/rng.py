"""The random state of a run: everything a checkpoint needs to continue it bit for bit.

Training draws from torch's global generator (weight init, dropout-like ops), the trainer's
own generators (noise, augmentation), numpy and Python's ``random`` (data helpers of plugins).
Each is captured as a tensor or a JSON-able value for :mod:`gankit.train.checkpoint`.
"""

from __future__ import annotations

import random

import numpy as np


def seed_all(seed: int) -> None:
    """Seed torch, numpy and Python's ``random`` from one run seed."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def capture(generators: dict) -> dict:
    """The states to save: torch's global generator, ``generators`` by name, numpy and Python."""
    import torch

    states = {"torch": torch.get_rng_state(), **{k: g.get_state() for k, g in generators.items()},
              "numpy": _np_state(), "python": _py_state()}
    return states


def restore(checkpoint, generators: dict) -> None:
    """Put back what :func:`capture` saved (a generator missing from an older checkpoint keeps its seed)."""
    import torch

    torch.set_rng_state(checkpoint.rng("torch"))
    for name, g in generators.items():
        if f"rng/{name}" in checkpoint.tensors:
            g.set_state(checkpoint.rng(name))
    _set_np_state(checkpoint.rng("numpy"))
    _set_py_state(checkpoint.rng("python"))


def _np_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_np_state(s: dict) -> None:
    np.random.set_state((s["name"], np.array(s["keys"], dtype=np.uint32), s["pos"], s["has_gauss"], s["cached"]))


def _py_state() -> list:
    v, internal, gauss = random.getstate()
    return [v, list(internal), gauss]


def _set_py_state(s: list) -> None:
    random.setstate((s[0], tuple(s[1]), s[2]))
