"""Typed runtime errors. Both are :class:`gankit.UsageError`, so the CLI exits with code 2."""

from gankit.errors import UsageError


class ModelFormatError(UsageError):
    """The file is missing, not ONNX, or not a gankit model (wrong or missing metadata)."""


class RuntimeInputError(UsageError):
    """An argument does not fit the model: label out of range, wrong image/mask size or mode."""
