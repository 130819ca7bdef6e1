"""Typed runtime errors. Both are :class:`gankit.UsageError`, so the CLI exits with code 2.

Their messages are always one line (whitespace collapsed, length capped): a caller may print
``str(err)`` as is, and a file's hostile metadata cannot smuggle extra lines into a log.
"""

from gankit.errors import UsageError

_MAX_MESSAGE = 600


class _OneLineError(UsageError):
    def __init__(self, message: object = ""):
        text = " ".join(str(message).split())
        if len(text) > _MAX_MESSAGE:
            text = text[: _MAX_MESSAGE - 3] + "..."
        super().__init__(text)


class ModelFormatError(_OneLineError):
    """The file is missing, not ONNX, not a gankit model, or breaks the file contract
    (metadata that does not parse or disagrees with the graph, a graph that does not run)."""


class RuntimeInputError(_OneLineError):
    """An argument does not fit the model: label out of range, wrong image/mask size or mode,
    a wrong type, NaN or infinity, a request too large to hold in memory."""


def show(value: object, limit: int = 60) -> str:
    """A short, safe repr of a user's argument for an error message (never raises)."""
    try:
        text = repr(value)
    except Exception:  # huge ints (int max str digits), broken __repr__ ...
        bits = value.bit_length() if isinstance(value, int) else None
        text = f"<int of {bits} bits>" if bits is not None else f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
