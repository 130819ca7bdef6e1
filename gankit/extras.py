"""Which optional parts of gankit are installed.

``pip install gankit`` is the torch-free runtime (onnxruntime, OpenVINO where it has wheels,
onnx, numpy, Pillow) and the commands
that only run models; ``pip install "gankit[train]"`` adds what training, export, evaluation
and benchmarks import. Commands that need the extra check for it before doing anything, so an
app that installed only the runtime gets one line saying what to install, not a traceback.
"""

from __future__ import annotations

import importlib.util

from gankit.errors import UsageError

# top-level modules of the [train] extra's distributions (pyproject.toml), by import name
# (onnx is a base dependency: the runtime reads file metadata with it)
TRAIN_MODULES = ("torch", "onnxscript", "safetensors", "scipy", "skimage", "mlxtend", "cv2", "matplotlib")
TRAIN_INSTALL = "pip install 'gankit[train]'"


class MissingExtraError(UsageError):
    """A command needs an optional extra that is not installed (exit code 2)."""


def missing_train_modules() -> list[str]:
    """Import names of the [train] extra that cannot be imported here (nothing is imported)."""
    missing = []
    for name in TRAIN_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):  # a broken install counts as missing
            missing.append(name)
    return missing


def require_train(command: str) -> None:
    """Raise :class:`MissingExtraError` unless every module of the [train] extra is importable."""
    if missing_train_modules():
        raise MissingExtraError(f"gankit {command} needs the training extra: {TRAIN_INSTALL}")


def as_missing_extra(exc: BaseException, argv: list[str]) -> MissingExtraError | None:
    """The one-line error for an ImportError of a [train] module under ``gankit ARGV``, else None."""
    name = (getattr(exc, "name", None) or "").split(".")[0] if isinstance(exc, ImportError) else ""
    if name not in TRAIN_MODULES:
        return None
    command = next((a for a in argv if not a.startswith("-")), "")
    return MissingExtraError(f"gankit {command} needs the training extra: {TRAIN_INSTALL}")
