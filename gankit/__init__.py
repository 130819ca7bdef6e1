"""gankit: a plugin-based GAN toolkit.

Train a generator in PyTorch, export it to a self-describing ONNX file, and run it
anywhere with the torch-free :mod:`gankit.runtime`.

Importing this package is cheap: nothing here imports torch.
"""

__version__ = "0.1.0"

from gankit.errors import GankitError, UsageError  # noqa: E402
from gankit.config import Key  # noqa: E402
from gankit.hookspecs import hookimpl  # noqa: E402

__all__ = ["__version__", "GankitError", "Key", "UsageError", "hookimpl"]
