"""The torch-free runtime: run exported gankit models with onnxruntime, numpy and Pillow.

    >>> import gankit.runtime as gr
    >>> model = gr.load("exported/cgan-001.onnx")
    >>> sevens = model.generate(16, labels=7, seed=0)      # uint8 [16, 28, 28, 1]
    >>> up = gr.load("exported/restore-001.onnx")           # a restore model (x2 super-resolution)
    >>> big = up.restore(photo)                             # any size, in tiles: [2H, 2W, C], photo's dtype

The model knows its task, shapes and classes from the file's metadata, checked at load
against the graph and a batch-1 probe run; misuse raises :class:`RuntimeInputError`, a
file that breaks the contract :class:`ModelFormatError` (one line each). Sessions prefer
CUDA when a CUDA driver is present and fall back to the CPU quietly. This package never
imports torch, so it starts fast and embeds anywhere.
"""

from __future__ import annotations

from gankit.runtime.errors import ModelFormatError, RuntimeInputError
from gankit.runtime.engines import BACKENDS, default_providers
from gankit.runtime.model import GankitModel, load

__all__ = ["load", "GankitModel", "ModelFormatError", "RuntimeInputError", "default_providers", "BACKENDS"]
