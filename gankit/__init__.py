"""gankit: a plugin-based GAN toolkit.

Train a generator in PyTorch, export it to a self-describing ONNX file, and run it
anywhere with the torch-free :mod:`gankit.runtime`.

Everything a plugin needs imports from here::

    from gankit import (AdversarialLoss, Dataset, DatasetSpec, ModelFamily, Regularizer,
                        RegularizerContext, hookimpl)

Importing this package is cheap: nothing here imports torch, and the names above are
loaded on first use (module ``__getattr__``), so ``gankit --help`` stays instant.
"""

__version__ = "0.1.0"

from gankit.errors import GankitError, UsageError  # noqa: E402
from gankit.config import Key  # noqa: E402
from gankit.hookspecs import hookimpl  # noqa: E402

# public name -> module that defines it; imported on first attribute access
_LAZY = {
    "ModelFamily": "gankit.family",
    "CORE_DEFAULTS": "gankit.family",
    "AdversarialLoss": "gankit.losses",
    "Regularizer": "gankit.regularizers",
    "RegularizerContext": "gankit.regularizers",
    "Dataset": "gankit.data",
    "DatasetSpec": "gankit.data",
    "ConformanceError": "gankit.testing",
    "check_family": "gankit.testing",
}

__all__ = ["__version__", "GankitError", "Key", "UsageError", "hookimpl", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gankit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
